//! Everything specific to MLOFLO's API in one place: base URL, paths, query and header names,
//! field names, event types and CSV columns. MLOFLO publishes no API documentation; these follow
//! this project's contract (shared/reference/mloflo/CONTRACT.md). When MLOFLO publishes its real
//! API, this module is what changes.

pub const DEFAULT_BASE_URL: &str = "https://api.mloflo.com/v1";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const DEFAULT_SCOPES: &str =
    "contacts:read contacts:write tasks:read tasks:write notes:read notes:write webhooks:write";
/// API keys look like `mlo_live_<32>` or `mlo_test_<32>`.
pub const API_KEY_PREFIXES: &[&str] = &["mlo_live_", "mlo_test_"];

/// The largest page a list answers.
pub const MAX_PAGE: u32 = 100;
pub const DEFAULT_PAGE: u32 = 50;

pub const Q_LIMIT: &str = "limit";
pub const Q_CURSOR: &str = "cursor";
pub const Q_UPDATED_SINCE: &str = "updated_since";
pub const Q_INCLUDE_DELETED: &str = "include_deleted";

pub const F_ID: &str = "id";
pub const F_UPDATED_AT: &str = "updated_at";
pub const F_DELETED_AT: &str = "deleted_at";
pub const F_CONTACT_ID: &str = "contact_id";
pub const F_OCCURRED_AT: &str = "occurred_at";
pub const F_MILESTONE: &str = "milestone";
pub const LIST_DATA: &str = "data";
pub const LIST_NEXT: &str = "next_cursor";

pub const H_EVENT_ID: &str = "X-Mloflo-Event-Id";
pub const H_TIMESTAMP: &str = "X-Mloflo-Timestamp";
pub const H_SIGNATURE: &str = "X-Mloflo-Signature";
pub const SIGNATURE_VERSION: &str = "v1=";
/// Receivers refuse a webhook whose timestamp is further than this from their clock.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;

pub const H_RETRY_AFTER: &str = "Retry-After";

pub fn contacts() -> String {
    "/contacts".into()
}
pub fn contact(id: &str) -> String {
    format!("/contacts/{}", id)
}
pub fn tasks() -> String {
    "/tasks".into()
}
pub fn task(id: &str) -> String {
    format!("/tasks/{}", id)
}
pub fn notes_of(contact_id: &str) -> String {
    format!("/contacts/{}/notes", contact_id)
}
pub fn note(id: &str) -> String {
    format!("/notes/{}", id)
}
pub fn milestones_of(contact_id: &str) -> String {
    format!("/contacts/{}/milestones", contact_id)
}
pub fn users() -> String {
    "/users".into()
}

/// Ids are 24-hex strings; the client refuses anything that could change a path.
pub fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The stream a webhook event feeds, and whether it is a delete.
pub fn event_stream(event_type: &str) -> Option<(&'static str, bool)> {
    Some(match event_type {
        "contact.created" | "contact.updated" | "contact.stage_changed" => ("contacts", false),
        "contact.deleted" => ("contacts", true),
        "task.created" | "task.updated" | "task.completed" => ("tasks", false),
        "task.deleted" => ("tasks", true),
        "note.created" | "note.updated" => ("notes", false),
        "note.deleted" => ("notes", true),
        _ => return None,
    })
}

pub const STAGE_CHANGED: &str = "contact.stage_changed";

/// MLOFLO's CSV export/import columns.
pub const CSV_COLUMNS: &[&str] = &[
    "first", "last", "email", "phone", "street", "city", "state", "county", "zip", "dob", "source", "tags",
];
/// A row needs at least one of these to become a contact.
pub const CSV_IDENTITY: &[&str] = &["email", "phone"];
