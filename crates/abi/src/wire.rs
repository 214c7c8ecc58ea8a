//! The serde types that cross the plugin boundary as JSON text.
//!
//! Field names are part of the ABI: renaming one is an [`crate::ABI_VERSION`] bump.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object: the fields of a record or the input of a write.
pub type Fields = Map<String, Value>;

/// What a connector says about itself: listed by `tether plugins` and `tether catalog`, and used
/// by `tether check` to validate connector config and flows before anything runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Unique among loaded connectors; what `plugin = "..."` in tether.toml refers to.
    pub name: String,
    pub version: String,
    pub description: String,
    #[serde(default)]
    pub config: Vec<ConfigKey>,
    #[serde(default)]
    pub streams: Vec<StreamDef>,
    #[serde(default)]
    pub actions: Vec<ActionDef>,
}

impl Manifest {
    pub fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.streams.iter().find(|s| s.name == name)
    }

    pub fn action(&self, name: &str) -> Option<&ActionDef> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// One key of a connector's `[connectors.NAME.config]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigKey {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub required: bool,
    /// Secret values are redacted from every log line, error and page the host produces.
    #[serde(default)]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

impl ConfigKey {
    pub fn optional(name: &str, description: &str) -> Self {
        ConfigKey {
            name: name.into(),
            description: description.into(),
            required: false,
            secret: false,
            default: None,
        }
    }

    pub fn required(name: &str, description: &str) -> Self {
        ConfigKey {
            required: true,
            ..ConfigKey::optional(name, description)
        }
    }

    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    pub fn default_value(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }
}

/// A readable stream of records (a trigger, in catalog terms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamDef {
    pub name: String,
    pub description: String,
    /// How the stream can be driven.
    pub triggers: Vec<TriggerKind>,
    /// The fields a record of this stream carries; flows referencing others do not load.
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// The stream whose records own these (tasks and notes follow their contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Read one parent at a time: a read needs `ReadRequest::parent_id` (GHL lists one
    /// contact's tasks, never a location's). Absent in older manifests: `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_parent: bool,
}

impl StreamDef {
    pub fn new(name: &str, description: &str, triggers: &[TriggerKind]) -> Self {
        StreamDef {
            name: name.into(),
            description: description.into(),
            triggers: triggers.to_vec(),
            fields: Vec::new(),
            parent: None,
            per_parent: false,
        }
    }

    pub fn fields(mut self, fields: impl IntoIterator<Item = FieldDef>) -> Self {
        self.fields.extend(fields);
        self
    }

    pub fn child_of(mut self, parent: &str) -> Self {
        self.parent = Some(parent.into());
        self
    }

    /// Readable only per parent record: see [`StreamDef::per_parent`].
    pub fn read_per_parent(mut self) -> Self {
        self.per_parent = true;
        self
    }
}

/// How a stream is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// A change feed read from a stored cursor.
    Poll,
    /// Pushed by the source; see [`WebhookRequest`].
    Webhook,
    /// History read in date windows.
    Backfill,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Poll => "poll",
            TriggerKind::Webhook => "webhook",
            TriggerKind::Backfill => "backfill",
        }
    }
}

/// A write a connector can perform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionDef {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// Whether the write addresses an existing target record (update, delete) or creates one.
    #[serde(default)]
    pub needs_target_id: bool,
    /// The parent record the write hangs off (a task needs its contact), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl ActionDef {
    pub fn new(name: &str, description: &str) -> Self {
        ActionDef {
            name: name.into(),
            description: description.into(),
            fields: Vec::new(),
            needs_target_id: false,
            parent: None,
        }
    }

    pub fn fields(mut self, fields: impl IntoIterator<Item = FieldDef>) -> Self {
        self.fields.extend(fields);
        self
    }

    pub fn on_existing(mut self) -> Self {
        self.needs_target_id = true;
        self
    }

    pub fn child_of(mut self, parent: &str) -> Self {
        self.parent = Some(parent.into());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl FieldDef {
    pub fn new(name: &str, kind: FieldKind) -> Self {
        FieldDef {
            name: name.to_owned(),
            kind,
            required: false,
            description: String::new(),
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    Number,
    Bool,
    Date,
    DateTime,
    Email,
    Phone,
    Object,
    Array,
    Any,
}

/// A reference to a record in a stream of the same connector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordRef {
    pub stream: String,
    pub id: String,
}

/// One record read from a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Stable id in the source system.
    pub id: String,
    /// RFC 3339 time of the last change, when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RecordRef>,
    /// The source's event, for change feeds that carry one (Moloni `eventId`, webhook ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventInfo>,
    pub fields: Fields,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Where a read starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ReadPosition {
    /// Changes after `cursor` (`None`: from the beginning of the feed).
    Cursor { cursor: Option<String> },
    /// Records changed in `[since, until)`, RFC 3339; `page` continues a window across pages.
    Window {
        since: String,
        until: String,
        page: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub stream: String,
    pub position: ReadPosition,
    /// Upper bound on records in the page; the connector may return fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// For child streams (tasks of a contact): the parent's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub records: Vec<Record>,
    /// For a cursor read: the cursor to store once these records are safely queued.
    /// For a window read: the token of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// More records are ready now: read again without waiting for the next poll.
    #[serde(default)]
    pub has_more: bool,
}

/// Whose traffic a call is: live changes go before history when a rate budget is shared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Live,
    Backfill,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub action: String,
    /// Backfill writes yield to live ones on a shared rate budget. Window reads are backfill.
    #[serde(default)]
    pub priority: Priority,
    /// The target record for actions with `needs_target_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The parent's target id (the contact a task belongs to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub input: Fields,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The id of the written record in the target system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The record as the target returned it, for write verification (fields it dropped).
    #[serde(default)]
    pub returned: Fields,
}

/// An inbound webhook, as received: the raw body, so signatures verify over the exact bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub received_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub stream: String,
    pub record: Record,
}

/// What `check` found: who the credentials belong to, and anything worth telling the user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The config a connector instance is opened with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// The instance name from `[connectors.NAME]`.
    pub instance: String,
    /// The instance's config table, `${ENV}` already expanded.
    pub config: Fields,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// Methods whose repetition has no further effect (RFC 9110 §9.2.2).
    pub fn is_idempotent(self) -> bool {
        !matches!(self, HttpMethod::Post | HttpMethod::Patch)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// An outbound HTTP request a connector asks the host to send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Overrides the host's default timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Marks a POST as safe to repeat (it carries an idempotency key).
    #[serde(default)]
    pub idempotent: bool,
    /// Values in this request that must never be logged beyond what the host already knows
    /// (a signature, a token placed in the body).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

impl HttpRequest {
    pub fn new(method: HttpMethod, url: impl Into<String>) -> Self {
        HttpRequest {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
            idempotent: false,
            secrets: Vec::new(),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// A typed error: the engine, not the connector, decides from the kind what to retry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ConnectorError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ErrorKind {
    /// Credentials missing, refused or expired beyond refresh: the user must act.
    Auth,
    /// The remote asked us to slow down; retry after the given delay.
    RateLimited {
        retry_after_ms: Option<u64>,
    },
    /// May succeed later as it is (5xx, timeouts, dropped connections).
    Transient,
    /// The request itself is wrong (validation); retrying it unchanged cannot help.
    Invalid,
    NotFound,
    /// The write collides with the target's state (a duplicate, a stale version).
    Conflict,
    /// Anything else that will not heal by waiting, including a panic inside a connector.
    Fatal,
}

impl ErrorKind {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorKind::RateLimited { .. } | ErrorKind::Transient)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Auth => f.write_str("auth"),
            ErrorKind::RateLimited {
                retry_after_ms: Some(ms),
            } => {
                write!(f, "rate limited (retry after {ms} ms)")
            }
            ErrorKind::RateLimited { retry_after_ms: None } => f.write_str("rate limited"),
            ErrorKind::Transient => f.write_str("transient"),
            ErrorKind::Invalid => f.write_str("invalid"),
            ErrorKind::NotFound => f.write_str("not found"),
            ErrorKind::Conflict => f.write_str("conflict"),
            ErrorKind::Fatal => f.write_str("fatal"),
        }
    }
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            message: message.into(),
        }
    }
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }
    pub fn rate_limited(retry_after_ms: Option<u64>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited { retry_after_ms }, message)
    }
}
