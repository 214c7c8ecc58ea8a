//! The typed Contacts API v2 client (NOTES §2). Every request goes through `Host::http`, behind
//! the rate [`Governor`] of its (app, location), with the bearer token from [`Auth`].
//!
//! Response types keep the fields the connector uses typed and everything else in `other`, so a
//! record round-trips to [`Fields`] without loss and unknown fields never fail a parse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tether_abi::{ErrorKind, Fields, Host, HttpMethod, HttpRequest, HttpResponse};

use crate::auth::Auth;
use crate::error::{from_status, GhlError};
use crate::governor::{self, Governor, RateHeaders};

pub const DEFAULT_BASE_URL: &str = "https://services.leadconnectorhq.com";
/// The API version this client speaks (NOTES §1).
pub const API_VERSION: &str = "2021-07-28";
/// 429s retried per call after the governor's wait; more means someone else floods the key.
const MAX_THROTTLE_RETRIES: u32 = 4;

/// `null` where a list or flag is expected reads as empty/false.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// Tells "absent" (`None`) from "null" (`Some(None)`), which GHL reads as "clear this field".
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------------------------------
// Records

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomFieldValue {
    #[serde(default)]
    pub id: String,
    /// Any JSON: string, number, list of strings, file object.
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_added: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_updated: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub custom_fields: Vec<CustomFieldValue>,
    /// The paging cursor of a search hit (`[sort values…, id]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_after: Option<Vec<Value>>,
    #[serde(flatten)]
    pub other: Fields,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub completed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(flatten)]
    pub other: Fields,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_added: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(flatten)]
    pub other: Fields,
}

/// An appointment (`GetEventSchema`); times are `YYYY-MM-DD HH:mm:ss` (NOTES §1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_updated: Option<String>,
    #[serde(flatten)]
    pub other: Fields,
}

/// An item of `GET /locations/:id/customFields`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomFieldDef {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    #[serde(flatten)]
    pub other: Fields,
}

/// A record as [`Fields`], for pages and write results.
pub fn to_fields<T: Serialize>(record: &T) -> Fields {
    match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map,
        _ => Fields::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Response envelopes

#[derive(Debug, Deserialize)]
struct ContactEnvelope {
    contact: Contact,
}

#[derive(Debug, Deserialize)]
struct UpdatedContact {
    #[serde(default)]
    contact: Option<Contact>,
}

/// `POST /contacts/upsert`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upserted {
    /// `true` when the upsert created the contact.
    #[serde(default, deserialize_with = "null_default")]
    pub new: bool,
    pub contact: Contact,
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// `{ "succeded": true }`: GHL's spelling (NOTES §2.1).
#[derive(Debug, Deserialize)]
struct Succeded {
    #[serde(default, deserialize_with = "null_default")]
    succeded: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SearchResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub next_page_url: Option<String>,
    #[serde(default)]
    pub start_after_id: Option<String>,
    #[serde(default)]
    pub start_after: Option<i64>,
    #[serde(default)]
    pub current_page: Option<u64>,
    #[serde(default)]
    pub next_page: Option<u64>,
    #[serde(default)]
    pub prev_page: Option<u64>,
}

/// `GET /contacts/` (deprecated list).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContactList {
    #[serde(default, deserialize_with = "null_default")]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub meta: Option<ListMeta>,
}

#[derive(Debug, Deserialize)]
struct Tasks {
    #[serde(default, deserialize_with = "null_default")]
    tasks: Vec<Task>,
}

#[derive(Debug, Deserialize)]
struct TaskEnvelope {
    task: Task,
}

#[derive(Debug, Deserialize)]
struct Notes {
    #[serde(default, deserialize_with = "null_default")]
    notes: Vec<Note>,
}

#[derive(Debug, Deserialize)]
struct NoteEnvelope {
    note: Note,
}

#[derive(Debug, Deserialize)]
struct Tags {
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Events {
    #[serde(default, deserialize_with = "null_default")]
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomFields {
    #[serde(default, deserialize_with = "null_default")]
    custom_fields: Vec<CustomFieldDef>,
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A custom field value to write: by `id` (resolved from a name by the client) or `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub field_value: Value,
}

/// The contact fields of create, update and upsert (NOTES §2.3). `Some(None)` sends `null`,
/// which GHL reads as "clear this field"; `None` leaves the field out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub address1: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub state: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub website: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Create and upsert only (absent from `UpdateContactDto`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub company_name: Option<Option<String>>,
    /// Create and upsert only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub source: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnd: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnd_settings: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_dnd_settings: Option<Value>,
    /// Replaces every tag of the contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_fields: Option<Vec<CustomFieldInput>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WithLocation<'a, T> {
    location_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_new_if_duplicate_allowed: Option<bool>,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SortSpec {
    pub field: String,
    pub direction: String,
}

/// `POST /contacts/search` (NOTES §2.7). `location_id` is filled in by the client.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    pub page_limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_after: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<SortSpec>,
}

/// Task create/update body. Create requires `title`, `due_date` and `completed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
}

/// Note create/update body. Create requires `body`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoteInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
}

#[derive(Serialize)]
struct TagsBody<'a> {
    tags: &'a [String],
}

#[derive(Serialize)]
struct CompletedBody {
    completed: bool,
}

// ---------------------------------------------------------------------------------------------
// The client

/// Checks an id used as a path segment: ids come from webhooks and flows, not only from GHL,
/// and one like `..` or `a/b` must not address another resource.
fn seg(s: &str) -> Result<&str, GhlError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(s)
    } else {
        Err(GhlError::Input(format!("`{s}` is not a GHL id")))
    }
}

fn query(pairs: &[(&str, String)]) -> String {
    let mut q = oauth2::url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// The Contacts API v2 for one location.
pub struct GhlClient {
    host: Host,
    base_url: String,
    location_id: String,
    auth: Auth,
    governor: Arc<Governor>,
    /// Custom field name (and key) → id, loaded on first use.
    field_ids: Mutex<Option<HashMap<String, String>>>,
}

impl std::fmt::Debug for GhlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhlClient")
            .field("base_url", &self.base_url)
            .field("location_id", &self.location_id)
            .finish_non_exhaustive()
    }
}

impl GhlClient {
    /// A client on the process-wide governor of its (app, location).
    pub fn new(host: Host, base_url: &str, location_id: &str, auth: Auth) -> GhlClient {
        let governor = governor::shared(&auth.rate_key(), location_id);
        GhlClient::with_governor(host, base_url, location_id, auth, governor)
    }

    pub fn with_governor(
        host: Host,
        base_url: &str,
        location_id: &str,
        auth: Auth,
        governor: Arc<Governor>,
    ) -> GhlClient {
        GhlClient {
            host,
            base_url: base_url.trim_end_matches('/').to_owned(),
            location_id: location_id.to_owned(),
            auth,
            governor,
            field_ids: Mutex::new(None),
        }
    }

    pub fn location_id(&self) -> &str {
        &self.location_id
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Sends one request: governor first, then the host; 429s wait and retry, a 401 on an
    /// OAuth token refreshes once. Returns the 2xx response or a typed error.
    fn send(&self, method: HttpMethod, path: &str, body: Option<String>) -> Result<HttpResponse, GhlError> {
        // POST /contacts/search only reads: the host may repeat it like a GET.
        let repeatable = path == "/contacts/search";
        let url = format!("{}{}", self.base_url, path);
        let mut token = self.auth.token()?;
        let mut reauthorized = false;
        let mut throttles = 0;
        loop {
            self.governor
                .acquire(governor::current_priority())
                .map_err(|_| GhlError::RateLimited {
                    retry_after_ms: None,
                    message: "the daily request budget of this location is spent".into(),
                })?;
            let mut request = HttpRequest::new(method, url.clone())
                .header("Authorization", format!("Bearer {token}"))
                .header("Version", API_VERSION)
                .header("Accept", "application/json");
            if let Some(body) = &body {
                request = request.header("Content-Type", "application/json").body(body.clone());
            }
            request.idempotent = repeatable;
            let response = match self.host.http(request) {
                Ok(response) => response,
                Err(e) => {
                    if let ErrorKind::RateLimited { retry_after_ms } = e.kind {
                        // The host gave up on 429s (or a POST got one, which it never repeats):
                        // a 429 means the server did nothing, so waiting and resending is safe.
                        self.governor.throttled(retry_after_ms, &RateHeaders::default());
                        if throttles < MAX_THROTTLE_RETRIES {
                            throttles += 1;
                            continue;
                        }
                    } else {
                        self.governor.failed();
                    }
                    return Err(e.into());
                }
            };
            let headers = RateHeaders::parse(&response.headers);
            let retry_after_ms = response
                .header("retry-after")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| (s * 1000.0) as u64);
            if response.status == 429 {
                self.governor.throttled(retry_after_ms, &headers);
                if throttles < MAX_THROTTLE_RETRIES {
                    throttles += 1;
                    continue;
                }
                return Err(from_status(429, &response.body, retry_after_ms.or(headers.interval_ms)));
            }
            self.governor.complete(&headers);
            if (200..300).contains(&response.status) {
                return Ok(response);
            }
            let error = from_status(response.status, &response.body, retry_after_ms);
            if let GhlError::Unauthorized(message) = &error {
                // Only an expired or revoked token heals by refreshing; scope and Version
                // errors do not.
                let lower = message.to_ascii_lowercase();
                let token_problem =
                    !(lower.contains("scope") || lower.contains("version") || lower.contains("authclass"));
                if token_problem && !reauthorized {
                    if let Some(fresh) = self.auth.after_unauthorized(&token)? {
                        token = fresh;
                        reauthorized = true;
                        continue;
                    }
                }
            }
            return Err(error);
        }
    }

    fn call<T: DeserializeOwned>(&self, method: HttpMethod, path: &str, body: Option<String>) -> Result<T, GhlError> {
        let response = self.send(method, path, body)?;
        serde_json::from_str(&response.body).map_err(|e| GhlError::Decode(format!("{} {path}: {e}", method.as_str())))
    }

    fn json<T: Serialize>(body: &T) -> Result<Option<String>, GhlError> {
        serde_json::to_string(body)
            .map(Some)
            .map_err(|e| GhlError::Input(e.to_string()))
    }

    // -- contacts --------------------------------------------------------------------------

    pub fn get_contact(&self, id: &str) -> Result<Contact, GhlError> {
        let r: ContactEnvelope = self.call(HttpMethod::Get, &format!("/contacts/{}", seg(id)?), None)?;
        Ok(r.contact)
    }

    pub fn create_contact(&self, input: &ContactInput) -> Result<Contact, GhlError> {
        let body = WithLocation {
            location_id: &self.location_id,
            create_new_if_duplicate_allowed: None,
            body: input,
        };
        let r: ContactEnvelope = self.call(HttpMethod::Post, "/contacts/", Self::json(&body)?)?;
        Ok(r.contact)
    }

    pub fn update_contact(&self, id: &str, input: &ContactInput) -> Result<Contact, GhlError> {
        let path = format!("/contacts/{}", seg(id)?);
        let r: UpdatedContact = self.call(HttpMethod::Put, &path, Self::json(input)?)?;
        r.contact
            .ok_or_else(|| GhlError::Decode(format!("PUT {path}: no contact in the response")))
    }

    pub fn upsert_contact(
        &self,
        input: &ContactInput,
        create_new_if_duplicate_allowed: Option<bool>,
    ) -> Result<Upserted, GhlError> {
        let body = WithLocation {
            location_id: &self.location_id,
            create_new_if_duplicate_allowed,
            body: input,
        };
        self.call(HttpMethod::Post, "/contacts/upsert", Self::json(&body)?)
    }

    pub fn delete_contact(&self, id: &str) -> Result<(), GhlError> {
        let path = format!("/contacts/{}", seg(id)?);
        let r: Succeded = self.call(HttpMethod::Delete, &path, None)?;
        succeeded(r, &path)
    }

    pub fn search_contacts(&self, request: &SearchRequest) -> Result<SearchResponse, GhlError> {
        let body = WithLocation {
            location_id: &self.location_id,
            create_new_if_duplicate_allowed: None,
            body: request,
        };
        self.call(HttpMethod::Post, "/contacts/search", Self::json(&body)?)
    }

    /// The deprecated `GET /contacts/`, newest first; `start_after` is the previous page's
    /// `(meta.startAfter, meta.startAfterId)`.
    pub fn list_contacts(
        &self,
        text: Option<&str>,
        limit: u32,
        start_after: Option<(i64, &str)>,
    ) -> Result<ContactList, GhlError> {
        let mut pairs = vec![("locationId", self.location_id.clone()), ("limit", limit.to_string())];
        if let Some(text) = text {
            pairs.push(("query", text.to_owned()));
        }
        if let Some((ms, id)) = start_after {
            pairs.push(("startAfter", ms.to_string()));
            pairs.push(("startAfterId", id.to_owned()));
        }
        self.call(HttpMethod::Get, &format!("/contacts/?{}", query(&pairs)), None)
    }

    /// Contacts of a business, `skip`/`limit` paging.
    pub fn business_contacts(&self, business_id: &str, limit: u32, skip: u64) -> Result<ContactList, GhlError> {
        let pairs = [
            ("locationId", self.location_id.clone()),
            ("limit", limit.to_string()),
            ("skip", skip.to_string()),
        ];
        let path = format!("/contacts/business/{}?{}", seg(business_id)?, query(&pairs));
        self.call(HttpMethod::Get, &path, None)
    }

    // -- tags ------------------------------------------------------------------------------

    pub fn add_tags(&self, contact_id: &str, tags: &[String]) -> Result<Vec<String>, GhlError> {
        let path = format!("/contacts/{}/tags", seg(contact_id)?);
        let r: Tags = self.call(HttpMethod::Post, &path, Self::json(&TagsBody { tags })?)?;
        Ok(r.tags)
    }

    pub fn remove_tags(&self, contact_id: &str, tags: &[String]) -> Result<Vec<String>, GhlError> {
        let path = format!("/contacts/{}/tags", seg(contact_id)?);
        let r: Tags = self.call(HttpMethod::Delete, &path, Self::json(&TagsBody { tags })?)?;
        Ok(r.tags)
    }

    // -- tasks -----------------------------------------------------------------------------

    pub fn list_tasks(&self, contact_id: &str) -> Result<Vec<Task>, GhlError> {
        let r: Tasks = self.call(HttpMethod::Get, &format!("/contacts/{}/tasks", seg(contact_id)?), None)?;
        Ok(r.tasks)
    }

    pub fn get_task(&self, contact_id: &str, task_id: &str) -> Result<Task, GhlError> {
        let path = format!("/contacts/{}/tasks/{}", seg(contact_id)?, seg(task_id)?);
        let r: TaskEnvelope = self.call(HttpMethod::Get, &path, None)?;
        Ok(r.task)
    }

    pub fn create_task(&self, contact_id: &str, input: &TaskInput) -> Result<Task, GhlError> {
        let mut missing = Vec::new();
        if input.title.is_none() {
            missing.push("title");
        }
        if input.due_date.is_none() {
            missing.push("dueDate");
        }
        if !missing.is_empty() {
            return Err(GhlError::Input(format!("a task needs {}", missing.join(" and "))));
        }
        let mut input = input.clone();
        // Required by GHL; a new task is open unless told otherwise.
        input.completed.get_or_insert(false);
        let path = format!("/contacts/{}/tasks", seg(contact_id)?);
        let r: TaskEnvelope = self.call(HttpMethod::Post, &path, Self::json(&input)?)?;
        Ok(r.task)
    }

    pub fn update_task(&self, contact_id: &str, task_id: &str, input: &TaskInput) -> Result<Task, GhlError> {
        let path = format!("/contacts/{}/tasks/{}", seg(contact_id)?, seg(task_id)?);
        let r: TaskEnvelope = self.call(HttpMethod::Put, &path, Self::json(input)?)?;
        Ok(r.task)
    }

    pub fn complete_task(&self, contact_id: &str, task_id: &str, completed: bool) -> Result<Task, GhlError> {
        let path = format!("/contacts/{}/tasks/{}/completed", seg(contact_id)?, seg(task_id)?);
        let r: TaskEnvelope = self.call(HttpMethod::Put, &path, Self::json(&CompletedBody { completed })?)?;
        Ok(r.task)
    }

    pub fn delete_task(&self, contact_id: &str, task_id: &str) -> Result<(), GhlError> {
        let path = format!("/contacts/{}/tasks/{}", seg(contact_id)?, seg(task_id)?);
        let r: Succeded = self.call(HttpMethod::Delete, &path, None)?;
        succeeded(r, &path)
    }

    // -- notes -----------------------------------------------------------------------------

    pub fn list_notes(&self, contact_id: &str) -> Result<Vec<Note>, GhlError> {
        let r: Notes = self.call(HttpMethod::Get, &format!("/contacts/{}/notes", seg(contact_id)?), None)?;
        Ok(r.notes)
    }

    pub fn get_note(&self, contact_id: &str, note_id: &str) -> Result<Note, GhlError> {
        let path = format!("/contacts/{}/notes/{}", seg(contact_id)?, seg(note_id)?);
        let r: NoteEnvelope = self.call(HttpMethod::Get, &path, None)?;
        Ok(r.note)
    }

    pub fn create_note(&self, contact_id: &str, input: &NoteInput) -> Result<Note, GhlError> {
        if input.body.is_none() {
            return Err(GhlError::Input("a note needs a body".into()));
        }
        let path = format!("/contacts/{}/notes", seg(contact_id)?);
        let r: NoteEnvelope = self.call(HttpMethod::Post, &path, Self::json(input)?)?;
        Ok(r.note)
    }

    pub fn update_note(&self, contact_id: &str, note_id: &str, input: &NoteInput) -> Result<Note, GhlError> {
        let path = format!("/contacts/{}/notes/{}", seg(contact_id)?, seg(note_id)?);
        let r: NoteEnvelope = self.call(HttpMethod::Put, &path, Self::json(input)?)?;
        Ok(r.note)
    }

    pub fn delete_note(&self, contact_id: &str, note_id: &str) -> Result<(), GhlError> {
        let path = format!("/contacts/{}/notes/{}", seg(contact_id)?, seg(note_id)?);
        let r: Succeded = self.call(HttpMethod::Delete, &path, None)?;
        succeeded(r, &path)
    }

    // -- appointments, custom fields -------------------------------------------------------

    pub fn appointments(&self, contact_id: &str) -> Result<Vec<Event>, GhlError> {
        let path = format!("/contacts/{}/appointments", seg(contact_id)?);
        let r: Events = self.call(HttpMethod::Get, &path, None)?;
        Ok(r.events)
    }

    pub fn custom_fields(&self) -> Result<Vec<CustomFieldDef>, GhlError> {
        let path = format!("/locations/{}/customFields?model=contact", seg(&self.location_id)?);
        let r: CustomFields = self.call(HttpMethod::Get, &path, None)?;
        Ok(r.custom_fields)
    }

    /// Resolves `{name: value}` to GHL's `[{id, field_value}]`. Names match the field's name
    /// or key, case-insensitively. The id map is cached; a miss reloads it once, since a field
    /// may have been created since.
    pub fn resolve_custom_fields(&self, named: &Fields) -> Result<Vec<CustomFieldInput>, GhlError> {
        let lookup = |map: &HashMap<String, String>| -> Result<Vec<CustomFieldInput>, String> {
            named
                .iter()
                .map(|(name, value)| {
                    map.get(&name.to_lowercase())
                        .map(|id| CustomFieldInput {
                            id: Some(id.clone()),
                            key: None,
                            field_value: value.clone(),
                        })
                        .ok_or_else(|| name.clone())
                })
                .collect()
        };
        let cached = self.field_ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(map) = &cached {
            if let Ok(resolved) = lookup(map) {
                return Ok(resolved);
            }
        }
        let mut map = HashMap::new();
        for def in self.custom_fields()? {
            if let Some(key) = &def.field_key {
                map.insert(key.to_lowercase(), def.id.clone());
                if let Some(short) = key.strip_prefix("contact.") {
                    map.insert(short.to_lowercase(), def.id.clone());
                }
            }
            // Names win over keys when both spell the same text.
            map.insert(def.name.to_lowercase(), def.id.clone());
        }
        let resolved = lookup(&map);
        *self.field_ids.lock().unwrap_or_else(|e| e.into_inner()) = Some(map);
        resolved.map_err(|name| GhlError::Input(format!("unknown custom field `{name}` in this location")))
    }
}

fn succeeded(r: Succeded, path: &str) -> Result<(), GhlError> {
    if r.succeded {
        Ok(())
    } else {
        Err(GhlError::Decode(format!("DELETE {path}: succeded is not true")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contacts_keep_unknown_fields_and_tolerate_nulls() {
        let c: Contact = serde_json::from_value(json!({
            "id": "c1", "firstName": "Ana", "tags": null, "customFields": [{"id": "f", "value": [1, 2]}],
            "additionalEmails": ["x@y.z"], "dnd": false
        }))
        .expect("parse");
        assert_eq!(c.id, "c1");
        assert!(c.tags.is_empty());
        assert_eq!(c.custom_fields[0].value, json!([1, 2]));
        let fields = to_fields(&c);
        assert_eq!(fields["additionalEmails"], json!(["x@y.z"]));
        assert_eq!(fields["firstName"], json!("Ana"));
        assert!(!fields.contains_key("lastName"));
    }

    #[test]
    fn contact_input_tells_null_from_absent_and_refuses_unknown_keys() {
        let input: ContactInput = serde_json::from_value(json!({"email": null, "firstName": "Ana"})).expect("parse");
        assert_eq!(input.email, Some(None));
        let body = serde_json::to_value(WithLocation {
            location_id: "L",
            create_new_if_duplicate_allowed: None,
            body: &input,
        })
        .expect("json");
        assert_eq!(body, json!({"locationId": "L", "email": null, "firstName": "Ana"}));
        assert!(serde_json::from_value::<ContactInput>(json!({"nickname": "x"})).is_err());
    }

    #[test]
    fn ids_must_be_plain_path_segments() {
        assert_eq!(seg("abc-DEF_1"), Ok("abc-DEF_1"));
        for bad in ["", "..", "a/b", "x y", "a%2F"] {
            assert!(seg(bad).is_err(), "{bad}");
        }
    }
}
