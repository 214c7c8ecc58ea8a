//! [`Ghl`]: the GHL connector behind the same [`Connector`]/[`Plugin`] traits as every plugin.

use std::sync::Arc;

use serde_json::{json, Value};
use tether_abi::{FieldKind as K, TriggerKind as T, *};

use crate::auth::{Auth, Grant, OAuthApp, TokenManager, DEFAULT_AUTHORIZE_URL, DEFAULT_SCOPES};
use crate::client::{
    to_fields, Contact, ContactInput, GhlClient, NoteInput, SearchRequest, SortSpec, TaskInput, DEFAULT_BASE_URL,
};
use crate::error::GhlError;
use crate::governor;
use crate::webhook::{parse_events, WebhookVerifier};

/// Records per contacts page unless the engine asks for fewer (search allows 500).
const DEFAULT_PAGE: u32 = 100;

/// A connector instance's validated config.
#[derive(Clone, PartialEq)]
pub struct GhlConfig {
    pub base_url: String,
    pub location_id: String,
    pub private_token: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub redirect_uri: Option<String>,
    pub authorize_url: String,
    pub scopes: Vec<String>,
    pub webhook_public_key: Option<String>,
    pub allow_legacy_rsa_webhooks: bool,
}

impl std::fmt::Debug for GhlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhlConfig")
            .field("base_url", &self.base_url)
            .field("location_id", &self.location_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn text(config: &Fields, key: &str) -> Result<Option<String>, GhlError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(GhlError::Config(format!("`{key}` must be a string, not {other}"))),
    }
}

impl GhlConfig {
    pub fn from_fields(config: &Fields) -> Result<GhlConfig, GhlError> {
        let location_id =
            text(config, "location_id")?.ok_or_else(|| GhlError::Config("`location_id` is required".into()))?;
        let private_token = text(config, "private_token")?;
        let client_id = text(config, "client_id")?;
        let client_secret = text(config, "client_secret")?;
        match (&private_token, &client_id, &client_secret) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (Some(_), _, _) => {
                return Err(GhlError::Config(
                    "set either `private_token` or `client_id`/`client_secret`, not both".into(),
                ))
            }
            _ => {
                return Err(GhlError::Config(
                    "set `private_token`, or both `client_id` and `client_secret` for OAuth".into(),
                ))
            }
        }
        let scopes = match config.get("scopes") {
            None | Some(Value::Null) => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| GhlError::Config("`scopes` must be strings".into()))?,
            Some(other) => return Err(GhlError::Config(format!("`scopes` must be a list, not {other}"))),
        };
        let allow_legacy_rsa_webhooks = match config.get("allow_legacy_rsa_webhooks") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                return Err(GhlError::Config(format!(
                    "`allow_legacy_rsa_webhooks` must be true or false, not {other}"
                )))
            }
        };
        Ok(GhlConfig {
            base_url: text(config, "base_url")?.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            location_id,
            private_token,
            client_id,
            client_secret,
            redirect_uri: text(config, "redirect_uri")?,
            authorize_url: text(config, "authorize_url")?.unwrap_or_else(|| DEFAULT_AUTHORIZE_URL.to_owned()),
            scopes,
            webhook_public_key: text(config, "webhook_public_key")?,
            allow_legacy_rsa_webhooks,
        })
    }

    fn oauth_app(&self) -> Option<OAuthApp> {
        Some(OAuthApp {
            client_id: self.client_id.clone()?,
            client_secret: self.client_secret.clone()?,
            token_url: format!("{}/oauth/token", self.base_url.trim_end_matches('/')),
            authorize_url: self.authorize_url.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scopes: self.scopes.clone(),
        })
    }
}

/// The GHL connector.
pub struct Ghl {
    host: Host,
    config: GhlConfig,
    client: GhlClient,
    tokens: Option<Arc<TokenManager>>,
    webhooks: WebhookVerifier,
}

impl std::fmt::Debug for Ghl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ghl")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn contact_fields() -> Vec<FieldDef> {
    let text = [
        "firstName",
        "lastName",
        "name",
        "companyName",
        "address1",
        "city",
        "state",
        "postalCode",
        "country",
        "website",
        "timezone",
        "source",
        "assignedTo",
        "gender",
    ];
    let mut fields: Vec<FieldDef> = text.iter().map(|n| FieldDef::new(n, K::String)).collect();
    fields.extend([
        FieldDef::new("email", K::Email),
        FieldDef::new("phone", K::Phone),
        FieldDef::new("dateOfBirth", K::Date),
        FieldDef::new("dnd", K::Bool),
        FieldDef::new("dndSettings", K::Object),
        FieldDef::new("tags", K::Array),
        FieldDef::new("customFields", K::Array),
    ]);
    fields
}

fn contact_input_fields() -> Vec<FieldDef> {
    let mut fields = contact_fields();
    fields.push(FieldDef::new("inboundDndSettings", K::Object));
    fields.push(FieldDef {
        description: "custom field values by field name (or key), resolved to ids".into(),
        ..FieldDef::new("custom_fields", K::Object)
    });
    fields
}

fn contact_record_fields() -> Vec<FieldDef> {
    let mut fields = contact_fields();
    fields.extend([
        FieldDef::new("id", K::String),
        FieldDef::new("locationId", K::String),
        FieldDef::new("type", K::String),
        FieldDef::new("businessId", K::String),
        FieldDef::new("dateAdded", K::DateTime),
        FieldDef::new("dateUpdated", K::DateTime),
        FieldDef::new("lastActivity", K::DateTime),
        FieldDef::new("followers", K::Array),
        FieldDef::new("attachments", K::Array),
    ]);
    fields
}

fn task_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("title", K::String),
        FieldDef::new("body", K::String),
        FieldDef::new("dueDate", K::DateTime),
        FieldDef::new("completed", K::Bool),
        FieldDef::new("assignedTo", K::String),
    ]
}

fn note_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("body", K::String),
        FieldDef::new("userId", K::String),
        FieldDef::new("title", K::String),
        FieldDef::new("color", K::String),
        FieldDef::new("pinned", K::Bool),
    ]
}

fn with_ids(mut fields: Vec<FieldDef>, extra: &[(&str, FieldKind)]) -> Vec<FieldDef> {
    fields.push(FieldDef::new("id", K::String));
    fields.push(FieldDef::new("contactId", K::String));
    fields.extend(extra.iter().map(|(n, k)| FieldDef::new(n, *k)));
    fields
}

/// The connector's description: config, streams and actions.
pub fn manifest() -> Manifest {
    let tags = || vec![FieldDef::new("tags", K::Array).required()];
    Manifest {
        name: "ghl".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "GoHighLevel (LeadConnector) Contacts API v2: contacts, tasks, notes, appointments".into(),
        config: vec![
            ConfigKey::optional("base_url", "API base URL").default_value(DEFAULT_BASE_URL),
            ConfigKey::required("location_id", "the sub-account (location) every call addresses"),
            ConfigKey::optional("private_token", "Private Integration Token (pit-…), instead of OAuth").secret(),
            ConfigKey::optional("client_id", "marketplace app client id, for OAuth"),
            ConfigKey::optional("client_secret", "marketplace app client secret, for OAuth").secret(),
            ConfigKey::optional(
                "redirect_uri",
                "OAuth redirect URI registered with the app (tether auth ghl)",
            ),
            ConfigKey::optional("authorize_url", "OAuth consent page").default_value(DEFAULT_AUTHORIZE_URL),
            ConfigKey::optional("scopes", "OAuth scopes to request").default_value(DEFAULT_SCOPES.join(" ")),
            ConfigKey::optional(
                "webhook_public_key",
                "Ed25519 key verifying x-ghl-signature (PEM, base64 or hex)",
            ),
            ConfigKey::optional(
                "allow_legacy_rsa_webhooks",
                "also accept the deprecated RSA x-wh-signature, against GHL's published key",
            )
            .default_value(false),
        ],
        streams: vec![
            StreamDef::new(
                "contacts",
                "contacts created or changed (search by dateUpdated; ContactCreate/Update/Delete/TagUpdate webhooks)",
                &[T::Poll, T::Webhook, T::Backfill],
            )
            .fields(contact_record_fields()),
            StreamDef::new(
                "tasks",
                "tasks of a contact (TaskCreate/Complete/Delete webhooks)",
                &[T::Poll, T::Webhook],
            )
            .fields(with_ids(task_fields(), &[]))
            .child_of("contacts")
            .read_per_parent(),
            StreamDef::new(
                "notes",
                "notes of a contact (NoteCreate/Update/Delete webhooks)",
                &[T::Poll, T::Webhook],
            )
            .fields(with_ids(note_fields(), &[("dateAdded", K::DateTime)]))
            .child_of("contacts")
            .read_per_parent(),
            StreamDef::new("appointments", "appointments of a contact", &[T::Poll])
                .fields(with_ids(
                    vec![
                        FieldDef::new("calendarId", K::String),
                        FieldDef::new("title", K::String),
                        FieldDef::new("status", K::String),
                        FieldDef::new("appointmentStatus", K::String),
                        FieldDef::new("startTime", K::String),
                        FieldDef::new("endTime", K::String),
                        FieldDef::new("address", K::String),
                        FieldDef::new("notes", K::String),
                    ],
                    &[],
                ))
                .child_of("contacts")
                .read_per_parent(),
            StreamDef::new(
                "business_contacts",
                "contacts of a business (read with the business id as parent id)",
                &[T::Poll],
            )
            .fields(contact_record_fields())
            .read_per_parent(),
        ],
        actions: vec![
            ActionDef::new(
                "contact.create",
                "create a contact (a duplicate is a conflict naming the existing id)",
            )
            .fields(contact_input_fields()),
            ActionDef::new("contact.update", "update a contact (tags replace all tags)")
                .fields(contact_input_fields())
                .on_existing(),
            ActionDef::new("contact.upsert", "create or update the contact matching email/phone").fields({
                let mut f = contact_input_fields();
                f.push(FieldDef::new("createNewIfDuplicateAllowed", K::Bool));
                f
            }),
            ActionDef::new("contact.delete", "delete a contact").on_existing(),
            ActionDef::new("contact.tags.add", "add tags to a contact")
                .fields(tags())
                .on_existing(),
            ActionDef::new("contact.tags.remove", "remove tags from a contact")
                .fields(tags())
                .on_existing(),
            ActionDef::new("task.create", "create a task on a contact")
                .fields(task_fields())
                .child_of("contacts"),
            ActionDef::new("task.update", "update a task")
                .fields(task_fields())
                .on_existing()
                .child_of("contacts"),
            ActionDef::new("task.complete", "mark a task completed (or not, with completed=false)")
                .fields([FieldDef::new("completed", K::Bool)])
                .on_existing()
                .child_of("contacts"),
            ActionDef::new("task.delete", "delete a task")
                .on_existing()
                .child_of("contacts"),
            ActionDef::new("note.create", "add a note to a contact")
                .fields(note_fields())
                .child_of("contacts"),
            ActionDef::new("note.update", "update a note")
                .fields(note_fields())
                .on_existing()
                .child_of("contacts"),
            ActionDef::new("note.delete", "delete a note")
                .on_existing()
                .child_of("contacts"),
        ],
    }
}

/// Opens an instance: validates config, picks PIT or OAuth, shares the location's governor.
pub fn open(host: Host, request: OpenRequest) -> Result<Ghl, ConnectorError> {
    Ghl::open_with(host, &request.config).map_err(ConnectorError::from)
}

fn required<'a>(value: &'a Option<String>, what: &str) -> Result<&'a str, GhlError> {
    value
        .as_deref()
        .ok_or_else(|| GhlError::Input(format!("this action needs {what}")))
}

fn record(id: String, updated_at: Option<String>, parent: Option<&str>, fields: Fields) -> Record {
    Record {
        id,
        updated_at,
        deleted: false,
        parent: parent.map(|p| RecordRef {
            stream: "contacts".into(),
            id: p.to_owned(),
        }),
        event: None,
        fields,
    }
}

fn contact_record(contact: Contact) -> Record {
    let mut fields = to_fields(&contact);
    // The paging cursor is not part of the contact.
    fields.remove("searchAfter");
    record(contact.id, contact.date_updated, None, fields)
}

/// Parses a stored contacts cursor: the last record's `[dateUpdated ms, id]`.
fn parse_cursor(cursor: &str) -> Result<Vec<Value>, GhlError> {
    match serde_json::from_str::<Vec<Value>>(cursor) {
        Ok(values) if values.len() == 2 => Ok(values),
        _ => Err(GhlError::Input(format!("`{cursor}` is not a contacts cursor"))),
    }
}

fn typed<T: serde::de::DeserializeOwned>(input: Fields, what: &str) -> Result<T, GhlError> {
    serde_json::from_value(Value::Object(input)).map_err(|e| GhlError::Input(format!("{what}: {e}")))
}

impl Ghl {
    pub fn open_with(host: Host, config: &Fields) -> Result<Ghl, GhlError> {
        let config = GhlConfig::from_fields(config)?;
        let (auth, tokens) = match (&config.private_token, config.oauth_app()) {
            (Some(token), _) => (Auth::Pit(token.clone()), None),
            (None, Some(app)) => {
                let manager = Arc::new(TokenManager::new(host.clone(), app));
                (Auth::OAuth(manager.clone()), Some(manager))
            }
            (None, None) => return Err(GhlError::Config("no credentials".into())),
        };
        let webhooks =
            WebhookVerifier::from_config(config.webhook_public_key.as_deref(), config.allow_legacy_rsa_webhooks)?;
        let client = GhlClient::new(host.clone(), &config.base_url, &config.location_id, auth);
        Ok(Ghl {
            host,
            config,
            client,
            tokens,
            webhooks,
        })
    }

    pub fn client(&self) -> &GhlClient {
        &self.client
    }

    pub fn config(&self) -> &GhlConfig {
        &self.config
    }

    /// The OAuth token manager, when this instance uses OAuth.
    pub fn tokens(&self) -> Option<&Arc<TokenManager>> {
        self.tokens.as_ref()
    }

    fn oauth(&self) -> Result<&TokenManager, GhlError> {
        self.tokens
            .as_deref()
            .ok_or_else(|| GhlError::Config("this instance uses a private token, not OAuth".into()))
    }

    /// `tether auth ghl`, step one: the consent page URL.
    pub fn consent_url(&self, state: &str) -> Result<String, GhlError> {
        self.oauth()?.app().consent_url(state)
    }

    /// `tether auth ghl`, step two: the code from the redirect, exchanged and stored.
    pub fn exchange_code(&self, code: &str) -> Result<Grant, GhlError> {
        let grant = self.oauth()?.exchange_code(code)?;
        if let Some(location) = &grant.location_id {
            if location != &self.config.location_id {
                return Err(GhlError::Config(format!(
                    "the consent was given for location {location}, but this instance is configured for {}",
                    self.config.location_id
                )));
            }
        }
        Ok(grant)
    }

    fn read_contacts(&self, request: &ReadRequest) -> Result<Page, GhlError> {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 500);
        let sort = vec![SortSpec {
            field: "dateUpdated".into(),
            direction: "asc".into(),
        }];
        let (after, filters, window) = match &request.position {
            ReadPosition::Cursor { cursor } => (cursor.as_deref().map(parse_cursor).transpose()?, vec![], false),
            ReadPosition::Window { since, until, page } => (
                page.as_deref().map(parse_cursor).transpose()?,
                vec![json!({"field": "dateUpdated", "operator": "range", "value": {"gte": since, "lt": until}})],
                true,
            ),
        };
        let response = self.client.search_contacts(&SearchRequest {
            page_limit: limit,
            search_after: after,
            filters,
            sort,
            ..SearchRequest::default()
        })?;
        let full = response.contacts.len() as u32 >= limit;
        let last = response
            .contacts
            .last()
            .and_then(|c| c.search_after.as_ref())
            .map(|after| Value::Array(after.clone()).to_string());
        let records = response.contacts.into_iter().map(contact_record).collect();
        let (next, has_more) = match (&request.position, window) {
            (_, true) => {
                let next = if full { last } else { None };
                let more = next.is_some();
                (next, more)
            }
            (ReadPosition::Cursor { cursor }, false) => (last.or_else(|| cursor.clone()), full),
            (ReadPosition::Window { .. }, false) => (None, false),
        };
        Ok(Page {
            records,
            next,
            has_more,
        })
    }

    fn read_business(&self, request: &ReadRequest, business_id: &str) -> Result<Page, GhlError> {
        let limit = request.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 100);
        let position = match &request.position {
            ReadPosition::Cursor { cursor } => cursor.as_deref(),
            ReadPosition::Window { page, .. } => page.as_deref(),
        };
        let skip = match position {
            Some(p) => p
                .parse::<u64>()
                .map_err(|_| GhlError::Input(format!("`{p}` is not a business_contacts cursor")))?,
            None => 0,
        };
        let list = self.client.business_contacts(business_id, limit, skip)?;
        let n = list.contacts.len() as u64;
        let has_more = list.count.map_or(n >= u64::from(limit), |count| skip + n < count);
        let records = list.contacts.into_iter().map(contact_record).collect();
        Ok(Page {
            records,
            next: Some((skip + n).to_string()),
            has_more,
        })
    }

    fn read_inner(&self, request: ReadRequest) -> Result<Page, GhlError> {
        let parent = || required(&request.parent_id, "the parent id (a contact id)");
        let records = match request.stream.as_str() {
            "contacts" => return self.read_contacts(&request),
            "business_contacts" => {
                let business = required(&request.parent_id, "the business id as parent id")?;
                return self.read_business(&request, business);
            }
            "tasks" => {
                let contact = parent()?;
                self.client
                    .list_tasks(contact)?
                    .into_iter()
                    .map(|t| record(t.id.clone(), None, Some(contact), to_fields(&t)))
                    .collect()
            }
            "notes" => {
                let contact = parent()?;
                self.client
                    .list_notes(contact)?
                    .into_iter()
                    .map(|n| record(n.id.clone(), n.date_added.clone(), Some(contact), to_fields(&n)))
                    .collect()
            }
            "appointments" => {
                let contact = parent()?;
                self.client
                    .appointments(contact)?
                    .into_iter()
                    .map(|e| record(e.id.clone(), None, Some(contact), to_fields(&e)))
                    .collect()
            }
            other => return Err(GhlError::Input(format!("unknown stream `{other}`"))),
        };
        // GHL lists a contact's children whole, unpaged: one page, no cursor to keep.
        Ok(Page {
            records,
            next: None,
            has_more: false,
        })
    }

    /// Contact input: `custom_fields` by name resolved to ids and appended to `customFields`.
    fn contact_input(&self, mut input: Fields) -> Result<ContactInput, GhlError> {
        let named = match input.remove("custom_fields") {
            None | Some(Value::Null) => None,
            Some(Value::Object(named)) => Some(named),
            Some(other) => return Err(GhlError::Input(format!("custom_fields must be an object, not {other}"))),
        };
        let mut contact: ContactInput = typed(input, "contact")?;
        if let Some(named) = named.filter(|n| !n.is_empty()) {
            let resolved = self.client.resolve_custom_fields(&named)?;
            contact.custom_fields.get_or_insert_with(Vec::new).extend(resolved);
        }
        Ok(contact)
    }

    fn write_inner(&self, request: WriteRequest) -> Result<WriteResult, GhlError> {
        let target = || required(&request.target_id, "the target id");
        let contact = || required(&request.parent_id, "the contact id (parent id)");
        let tags = |input: &Fields| -> Result<Vec<String>, GhlError> {
            let tags: Vec<String> = input
                .get("tags")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| GhlError::Input(format!("tags: {e}")))?
                .unwrap_or_default();
            if tags.is_empty() {
                return Err(GhlError::Input("tags must be a non-empty list of strings".into()));
            }
            Ok(tags)
        };
        let done = |id: String, returned: Fields| WriteResult {
            target_id: Some(id),
            returned,
        };
        let tag_result = |id: &str, tags: Vec<String>| {
            let mut returned = Fields::new();
            returned.insert("tags".into(), json!(tags));
            done(id.to_owned(), returned)
        };
        let input = request.input.clone();
        Ok(match request.action.as_str() {
            "contact.create" => {
                let c = self.client.create_contact(&self.contact_input(input)?)?;
                done(c.id.clone(), to_fields(&c))
            }
            "contact.update" => {
                let c = self.client.update_contact(target()?, &self.contact_input(input)?)?;
                done(c.id.clone(), to_fields(&c))
            }
            "contact.upsert" => {
                let mut input = input;
                let create_new = match input.remove("createNewIfDuplicateAllowed") {
                    None | Some(Value::Null) => None,
                    Some(Value::Bool(b)) => Some(b),
                    Some(other) => {
                        return Err(GhlError::Input(format!(
                            "createNewIfDuplicateAllowed must be a bool, not {other}"
                        )))
                    }
                };
                let upserted = self.client.upsert_contact(&self.contact_input(input)?, create_new)?;
                let mut returned = to_fields(&upserted.contact);
                returned.insert("new".into(), json!(upserted.new));
                done(upserted.contact.id.clone(), returned)
            }
            "contact.delete" => {
                self.client.delete_contact(target()?)?;
                done(target()?.to_owned(), Fields::new())
            }
            "contact.tags.add" => tag_result(target()?, self.client.add_tags(target()?, &tags(&input)?)?),
            "contact.tags.remove" => tag_result(target()?, self.client.remove_tags(target()?, &tags(&input)?)?),
            "task.create" => {
                let t = self
                    .client
                    .create_task(contact()?, &typed::<TaskInput>(input, "task")?)?;
                done(t.id.clone(), to_fields(&t))
            }
            "task.update" => {
                let t = self
                    .client
                    .update_task(contact()?, target()?, &typed::<TaskInput>(input, "task")?)?;
                done(t.id.clone(), to_fields(&t))
            }
            "task.complete" => {
                let completed = match input.get("completed") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => return Err(GhlError::Input(format!("completed must be a bool, not {other}"))),
                };
                let t = self.client.complete_task(contact()?, target()?, completed)?;
                done(t.id.clone(), to_fields(&t))
            }
            "task.delete" => {
                self.client.delete_task(contact()?, target()?)?;
                done(target()?.to_owned(), Fields::new())
            }
            "note.create" => {
                let n = self
                    .client
                    .create_note(contact()?, &typed::<NoteInput>(input, "note")?)?;
                done(n.id.clone(), to_fields(&n))
            }
            "note.update" => {
                let n = self
                    .client
                    .update_note(contact()?, target()?, &typed::<NoteInput>(input, "note")?)?;
                done(n.id.clone(), to_fields(&n))
            }
            "note.delete" => {
                self.client.delete_note(contact()?, target()?)?;
                done(target()?.to_owned(), Fields::new())
            }
            other => return Err(GhlError::Input(format!("unknown action `{other}`"))),
        })
    }

    fn check_inner(&self) -> Result<CheckReport, GhlError> {
        let mut notes = Vec::new();
        match &self.tokens {
            Some(tokens) => {
                if let Some(reason) = tokens.needs_reconnect()? {
                    self.host.log(
                        LogLevel::Warn,
                        &format!("GHL needs a reconnect: {reason}"),
                        &Fields::new(),
                    );
                    return Err(GhlError::NeedsReconnect);
                }
                notes.push("auth: OAuth".to_owned());
            }
            None => notes.push("auth: private integration token".to_owned()),
        }
        let found = self.client.search_contacts(&SearchRequest {
            page_limit: 1,
            ..SearchRequest::default()
        })?;
        if let Some(total) = found.total {
            notes.push(format!("{total} contacts"));
        }
        if self.config.webhook_public_key.is_none() {
            notes.push("no webhook_public_key: webhooks will be refused".to_owned());
        }
        Ok(CheckReport {
            account: Some(format!("location {}", self.config.location_id)),
            notes,
        })
    }
}

impl Connector for Ghl {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.check_inner().map_err(ConnectorError::from)
    }

    fn read(&self, request: ReadRequest) -> Result<Page, ConnectorError> {
        // Reading history in windows is backfill: it yields the shared budget to live traffic.
        let priority = match request.position {
            ReadPosition::Window { .. } => Priority::Backfill,
            ReadPosition::Cursor { .. } => Priority::Live,
        };
        let _scope = governor::priority_scope(priority);
        self.read_inner(request).map_err(ConnectorError::from)
    }

    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError> {
        let _scope = governor::priority_scope(request.priority);
        self.write_inner(request).map_err(ConnectorError::from)
    }

    fn webhook(&self, request: WebhookRequest) -> Result<Vec<WebhookEvent>, ConnectorError> {
        let payload = self
            .webhooks
            .verify(&request.headers, &request.body, request.received_at_ms)?;
        Ok(parse_events(&payload, &self.config.location_id)?)
    }
}

impl Plugin for Ghl {
    fn manifest() -> Manifest {
        manifest()
    }

    fn open(host: Host, request: OpenRequest) -> Result<Self, ConnectorError> {
        open(host, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, Value)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn config_needs_a_location_and_one_kind_of_credentials() {
        let ok = GhlConfig::from_fields(&config(&[
            ("location_id", json!("L")),
            ("private_token", json!("pit-x")),
        ]))
        .expect("pit");
        assert_eq!(ok.base_url, DEFAULT_BASE_URL);
        assert!(!ok.allow_legacy_rsa_webhooks);
        for bad in [
            config(&[("private_token", json!("pit-x"))]),
            config(&[("location_id", json!("L"))]),
            config(&[("location_id", json!("L")), ("client_id", json!("c"))]),
            config(&[
                ("location_id", json!("L")),
                ("private_token", json!("p")),
                ("client_id", json!("c")),
                ("client_secret", json!("s")),
            ]),
            config(&[("location_id", json!(5)), ("private_token", json!("p"))]),
        ] {
            assert!(
                matches!(GhlConfig::from_fields(&bad), Err(GhlError::Config(_))),
                "{bad:?}"
            );
        }
        let oauth = GhlConfig::from_fields(&config(&[
            ("location_id", json!("L")),
            ("client_id", json!("c")),
            ("client_secret", json!("s")),
            ("scopes", json!(["contacts.readonly"])),
            ("base_url", json!("http://127.0.0.1:9/")),
        ]))
        .expect("oauth");
        let app = oauth.oauth_app().expect("app");
        assert_eq!(app.token_url, "http://127.0.0.1:9/oauth/token");
        assert_eq!(app.scopes, vec!["contacts.readonly".to_owned()]);
        assert!(!format!("{oauth:?}").contains("\"s\""));
    }

    #[test]
    fn the_manifest_declares_streams_actions_and_secrets() {
        let m = manifest();
        for stream in ["contacts", "tasks", "notes", "appointments", "business_contacts"] {
            assert!(m.stream(stream).is_some(), "{stream}");
        }
        assert!(m
            .stream("contacts")
            .expect("contacts")
            .triggers
            .contains(&TriggerKind::Webhook));
        assert_eq!(
            m.stream("tasks").and_then(|s| s.parent.clone()).as_deref(),
            Some("contacts")
        );
        assert!(m.stream("tasks").is_some_and(|s| s.per_parent), "listed per contact");
        assert!(!m.stream("contacts").is_some_and(|s| s.per_parent));
        for action in [
            "contact.create",
            "contact.update",
            "contact.upsert",
            "contact.delete",
            "contact.tags.add",
            "contact.tags.remove",
            "task.create",
            "task.update",
            "task.complete",
            "task.delete",
            "note.create",
            "note.update",
            "note.delete",
        ] {
            assert!(m.action(action).is_some(), "{action}");
        }
        let secret = |k: &str| m.config.iter().find(|c| c.name == k).map(|c| c.secret);
        assert_eq!(secret("private_token"), Some(true));
        assert_eq!(secret("client_secret"), Some(true));
        assert_eq!(secret("location_id"), Some(false));
    }

    #[test]
    fn cursors_parse_or_fail_typed() {
        assert_eq!(parse_cursor(r#"[1700000000000,"abc"]"#).expect("cursor").len(), 2);
        assert!(parse_cursor("garbage").is_err());
        assert!(parse_cursor("[1]").is_err());
    }
}
