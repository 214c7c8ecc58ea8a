//! Records in memory: contacts, tasks, notes, milestones, users and webhook subscriptions, with
//! the contract's validation, soft deletes and keyset-paged lists.

use super::error::ApiError;
use crate::timefmt::{iso_ms, parse_iso};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const STAGES: &[&str] = &[
    "new_lead",
    "pre_approval",
    "application",
    "processing",
    "clear_to_close",
    "closed",
    "lost",
];
pub const CONTACT_TYPES: &[&str] = &["borrower", "partner"];
pub const EVENTS: &[&str] = &[
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "contact.stage_changed",
    "task.created",
    "task.updated",
    "task.completed",
    "task.deleted",
    "note.created",
    "note.updated",
    "note.deleted",
];

/// One stored object: its JSON fields and the time lists order it by.
#[derive(Debug, Clone)]
pub struct Obj {
    pub fields: Map<String, Value>,
    pub time_ms: i64,
}

impl Obj {
    pub fn deleted(&self) -> bool {
        !matches!(self.fields.get("deleted_at"), None | Some(Value::Null))
    }

    pub fn id(&self) -> &str {
        self.fields.get("id").and_then(Value::as_str).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
}

impl Subscription {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event || e == "*")
    }

    pub fn public(&self) -> Value {
        json!({"id": self.id, "url": self.url, "events": self.events})
    }
}

#[derive(Debug, Clone, Default)]
pub struct Store {
    pub contacts: BTreeMap<String, Obj>,
    pub tasks: BTreeMap<String, Obj>,
    pub notes: BTreeMap<String, Obj>,
    pub milestones: BTreeMap<String, Obj>,
    pub users: Vec<Value>,
    pub subscriptions: Vec<Subscription>,
}

impl Store {
    pub fn live_contact(&self, id: &str) -> Result<&Obj, ApiError> {
        self.contacts
            .get(id)
            .filter(|c| !c.deleted())
            .ok_or_else(|| ApiError::not_found("contact", id))
    }

    pub fn user_exists(&self, id: &str) -> bool {
        self.users.iter().any(|u| u["id"] == id)
    }

    pub fn dump(&self) -> Value {
        let all =
            |m: &BTreeMap<String, Obj>| -> Vec<Value> { m.values().map(|o| Value::Object(o.fields.clone())).collect() };
        json!({
            "contacts": all(&self.contacts),
            "tasks": all(&self.tasks),
            "notes": all(&self.notes),
            "milestones": all(&self.milestones),
            "users": self.users,
            "webhooks": self.subscriptions.iter().map(Subscription::public).collect::<Vec<_>>(),
        })
    }
}

/// The query every list takes.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub limit: usize,
    pub after: Option<(i64, String)>,
    pub since_ms: Option<i64>,
    pub include_deleted: bool,
    pub contact_id: Option<String>,
}

pub fn encode_cursor(time_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time_ms}:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (ms, id) = raw.split_once(':')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

impl ListQuery {
    pub fn parse(params: &BTreeMap<String, String>) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            limit: 50,
            ..ListQuery::default()
        };
        for (key, value) in params {
            match key.as_str() {
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=100).contains(&n) => q.limit = n,
                    _ => return Err(ApiError::field("limit", "must be 1 to 100")),
                },
                "cursor" => q.after = Some(decode_cursor(value).ok_or_else(|| ApiError::field("cursor", "invalid"))?),
                "updated_since" => {
                    q.since_ms =
                        Some(parse_iso(value).ok_or_else(|| ApiError::field("updated_since", "not an ISO-8601 time"))?)
                }
                "include_deleted" => match value.as_str() {
                    "true" => q.include_deleted = true,
                    "false" => q.include_deleted = false,
                    _ => return Err(ApiError::field("include_deleted", "must be true or false")),
                },
                "contact_id" => q.contact_id = Some(value.clone()),
                other => return Err(ApiError::field(other, "unknown query parameter")),
            }
        }
        Ok(q)
    }

    /// `{"data", "next_cursor"}` over `items`, ordered by time then id.
    pub fn page<'a>(&self, items: impl Iterator<Item = &'a Obj>) -> Value {
        let mut selected: Vec<&Obj> = items
            .filter(|o| self.include_deleted || !o.deleted())
            .filter(|o| self.since_ms.is_none_or(|s| o.time_ms >= s))
            .filter(|o| {
                self.contact_id
                    .as_deref()
                    .is_none_or(|c| o.fields.get("contact_id").and_then(Value::as_str) == Some(c))
            })
            .filter(|o| {
                self.after
                    .as_ref()
                    .is_none_or(|(ms, id)| (o.time_ms, o.id()) > (*ms, id.as_str()))
            })
            .collect();
        selected.sort_by(|a, b| (a.time_ms, a.id()).cmp(&(b.time_ms, b.id())));
        let more = selected.len() > self.limit;
        selected.truncate(self.limit);
        let next = match (more, selected.last()) {
            (true, Some(last)) => json!(encode_cursor(last.time_ms, last.id())),
            _ => Value::Null,
        };
        json!({
            "data": selected.iter().map(|o| Value::Object(o.fields.clone())).collect::<Vec<_>>(),
            "next_cursor": next,
        })
    }
}

/// Collects field problems so one answer names them all.
#[derive(Default)]
pub struct Problems(Map<String, Value>);

impl Problems {
    pub fn add(&mut self, field: &str, reason: &str) {
        self.0.insert(field.to_owned(), json!(reason));
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// US numbers (10 digits, or 11 with the leading 1), in any punctuation, or E.164.
fn is_phone(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let allowed = s.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    allowed
        && (digits.len() == 10
            || (s.trim_start().starts_with('+') && (11..=15).contains(&digits.len()))
            || (digits.len() == 11 && digits.starts_with('1')))
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && parse_iso(s).is_some()
}

fn string_or_null(v: &Value) -> bool {
    v.is_string() || v.is_null()
}

/// Checks a contact body; `creating` makes the identity rule apply.
pub fn validate_contact(body: &Map<String, Value>, store: &Store, creating: bool) -> Result<(), ApiError> {
    let mut p = Problems::default();
    for (key, value) in body {
        match key.as_str() {
            "type" => {
                if !value.as_str().is_some_and(|t| CONTACT_TYPES.contains(&t)) {
                    p.add(key, "must be borrower or partner");
                }
            }
            "first_name" | "last_name" | "source" => {
                if !string_or_null(value) {
                    p.add(key, "must be a string");
                }
            }
            "email" => match value {
                Value::Null => {}
                Value::String(s) if is_email(s) => {}
                _ => p.add(key, "invalid"),
            },
            "phone" => match value {
                Value::Null => {}
                Value::String(s) if is_phone(s) => {}
                _ => p.add(key, "invalid"),
            },
            "tags" => {
                if !value.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    p.add(key, "must be a list of strings");
                }
            }
            "custom_fields" => {
                if !value.is_object() {
                    p.add(key, "must be an object");
                }
            }
            "pipeline_stage" => {
                if !value.as_str().is_some_and(|s| STAGES.contains(&s)) {
                    p.add(key, "unknown stage");
                }
            }
            "loan_amount" => {
                if !(value.is_null() || value.as_f64().is_some_and(|n| n >= 0.0)) {
                    p.add(key, "must be a non-negative number");
                }
            }
            "address" => match value {
                Value::Null => {}
                Value::Object(a) => {
                    for (k, v) in a {
                        if !["street", "city", "state", "county", "zip"].contains(&k.as_str()) || !string_or_null(v) {
                            p.add(&format!("address.{k}"), "unknown or not a string");
                        }
                    }
                }
                _ => p.add(key, "must be an object"),
            },
            "dob" => {
                if !(value.is_null() || value.as_str().is_some_and(is_date)) {
                    p.add(key, "must be YYYY-MM-DD");
                }
            }
            "assigned_user_id" => {
                if !(value.is_null() || value.as_str().is_some_and(|u| store.user_exists(u))) {
                    p.add(key, "no such user");
                }
            }
            _ => p.add(key, "unknown field"),
        }
    }
    if creating {
        let has = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        };
        if !["first_name", "last_name", "email", "phone"].iter().any(|k| has(k)) {
            p.add("first_name", "a contact needs a name, an email or a phone");
        }
    }
    p.into_result()
}

pub fn validate_task(body: &Map<String, Value>, store: &Store, creating: bool) -> Result<(), ApiError> {
    let mut p = Problems::default();
    for (key, value) in body {
        match key.as_str() {
            "contact_id" => {
                if !creating {
                    p.add(key, "cannot be changed");
                } else if value.as_str().is_none_or(|c| store.live_contact(c).is_err()) {
                    p.add(key, "no such contact");
                }
            }
            "title" => {
                if value.as_str().is_none_or(|t| t.trim().is_empty()) {
                    p.add(key, "required");
                }
            }
            "description" => {
                if !string_or_null(value) {
                    p.add(key, "must be a string");
                }
            }
            "due_at" => {
                if !(value.is_null() || value.as_str().is_some_and(|d| parse_iso(d).is_some())) {
                    p.add(key, "not an ISO-8601 time");
                }
            }
            "status" => {
                if !matches!(value.as_str(), Some("open" | "completed")) {
                    p.add(key, "must be open or completed");
                }
            }
            "assigned_user_id" => {
                if !(value.is_null() || value.as_str().is_some_and(|u| store.user_exists(u))) {
                    p.add(key, "no such user");
                }
            }
            _ => p.add(key, "unknown field"),
        }
    }
    if creating {
        for required in ["contact_id", "title"] {
            if !body.contains_key(required) {
                p.add(required, "required");
            }
        }
    }
    p.into_result()
}

pub fn validate_note(body: &Map<String, Value>, store: &Store, creating: bool) -> Result<(), ApiError> {
    let mut p = Problems::default();
    for (key, value) in body {
        match key.as_str() {
            "body" => {
                if value.as_str().is_none_or(|t| t.trim().is_empty()) {
                    p.add(key, "required");
                }
            }
            "author_user_id" => {
                if !(value.is_null() || value.as_str().is_some_and(|u| store.user_exists(u))) {
                    p.add(key, "no such user");
                }
            }
            "attachments" => {
                let ok = value.as_array().is_some_and(|items| {
                    items.iter().all(|a| {
                        a.get("file_name").is_some_and(Value::is_string)
                            && a.get("url")
                                .and_then(Value::as_str)
                                .is_some_and(|u| u.starts_with("http"))
                    })
                });
                if !ok {
                    p.add(key, "each attachment needs file_name and an http(s) url");
                }
            }
            _ => p.add(key, "unknown field"),
        }
    }
    if creating && !body.contains_key("body") {
        p.add("body", "required");
    }
    p.into_result()
}

/// Stamps a new object's server fields.
pub fn stamp_new(fields: &mut Map<String, Value>, id: &str, now_ms: i64) {
    fields.insert("id".into(), json!(id));
    fields.insert("created_at".into(), json!(iso_ms(now_ms)));
    fields.insert("updated_at".into(), json!(iso_ms(now_ms)));
    fields.insert("deleted_at".into(), Value::Null);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_phones_are_us_numbers() {
        assert_eq!(decode_cursor(&encode_cursor(12, "ab")), Some((12, "ab".into())));
        assert_eq!(decode_cursor("!!"), None);
        assert!(is_phone("(512) 555-0147"));
        assert!(is_phone("+15125550147"));
        assert!(!is_phone("555-0147"));
        assert!(!is_phone("call me"));
        assert!(is_email("a.b@example.com"));
        assert!(!is_email("a@b"));
    }
}
