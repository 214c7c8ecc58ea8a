//! The connector's typed errors and their mapping to the ABI's error kinds.

use serde::Deserialize;
use tether_abi::{ConnectorError, ErrorKind};

/// Everything that can go wrong talking to GHL. Mapped to [`ConnectorError`] kinds only at the
/// trait boundary, so Rust callers (and `tether auth ghl`) can match on the cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GhlError {
    /// 401: bad or expired token, missing scope, bad Version header.
    #[error("GHL refused the credentials: {0}")]
    Unauthorized(String),
    /// 403: the token belongs to another location.
    #[error("GHL refused access: {0}")]
    Forbidden(String),
    /// 404, or a 400 whose message says the record does not exist.
    #[error("not found in GHL: {0}")]
    NotFound(String),
    /// 422: the message array, joined.
    #[error("GHL rejected the request: {}", .0.join(", "))]
    Validation(Vec<String>),
    /// 400 on create when the location does not allow duplicates.
    #[error("duplicate contact: existing_contact_id={} ({message})", contact_id.as_deref().unwrap_or("?"))]
    Duplicate {
        contact_id: Option<String>,
        matching_field: Option<String>,
        message: String,
    },
    #[error("GHL answered 400: {0}")]
    BadRequest(String),
    #[error("GHL rate limit reached: {message}")]
    RateLimited {
        retry_after_ms: Option<u64>,
        message: String,
    },
    #[error("GHL server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("unexpected GHL status {status}: {message}")]
    Status { status: u16, message: String },
    /// A response that does not parse as documented.
    #[error("unexpected GHL response: {0}")]
    Decode(String),
    /// The refresh token was refused (`invalid_grant`): only a new consent helps.
    #[error("GHL authorization expired or was revoked: run `tether auth ghl` to reconnect")]
    NeedsReconnect,
    /// No tokens stored yet.
    #[error("not connected to GHL: run `tether auth ghl` first")]
    NotConnected,
    #[error("OAuth token endpoint: {0}")]
    OAuth(String),
    #[error("GHL connector configuration: {0}")]
    Config(String),
    /// The caller's input does not fit the action.
    #[error("invalid input: {0}")]
    Input(String),
    #[error("webhook refused: {0}")]
    Webhook(String),
    /// A genuine delivery received before (GHL or a proxy sending it again): nothing new.
    #[error("webhook already received: {0}")]
    WebhookReplay(String),
    /// A failure of the host's services (transport, secret store), kept as the host typed it.
    #[error("{0}")]
    Host(ConnectorError),
}

impl GhlError {
    /// The id of the existing contact a duplicate create collided with.
    pub fn existing_contact_id(&self) -> Option<&str> {
        match self {
            GhlError::Duplicate { contact_id, .. } => contact_id.as_deref(),
            _ => None,
        }
    }
}

impl From<ConnectorError> for GhlError {
    fn from(e: ConnectorError) -> Self {
        match e.kind {
            ErrorKind::RateLimited { retry_after_ms } => GhlError::RateLimited {
                retry_after_ms,
                message: e.message,
            },
            _ => GhlError::Host(e),
        }
    }
}

impl From<GhlError> for ConnectorError {
    fn from(e: GhlError) -> Self {
        let message = e.to_string();
        match e {
            GhlError::Unauthorized(_)
            | GhlError::Forbidden(_)
            | GhlError::NeedsReconnect
            | GhlError::NotConnected
            | GhlError::Webhook(_) => ConnectorError::auth(message),
            GhlError::NotFound(_) => ConnectorError::not_found(message),
            GhlError::Validation(_) | GhlError::BadRequest(_) | GhlError::Input(_) => ConnectorError::invalid(message),
            GhlError::Duplicate { .. } | GhlError::WebhookReplay(_) => ConnectorError::conflict(message),
            GhlError::RateLimited { retry_after_ms, .. } => ConnectorError::rate_limited(retry_after_ms, message),
            GhlError::Server { .. } => ConnectorError::transient(message),
            GhlError::Status { .. } | GhlError::Decode(_) | GhlError::OAuth(_) | GhlError::Config(_) => {
                ConnectorError::fatal(message)
            }
            GhlError::Host(inner) => inner,
        }
    }
}

/// `message` is a string on most errors and an array of strings on 422 (NOTES §5).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Message {
    One(String),
    Many(Vec<String>),
}

impl Message {
    pub fn lines(&self) -> Vec<String> {
        match self {
            Message::One(s) => vec![s.clone()],
            Message::Many(v) => v.clone(),
        }
    }

    pub fn joined(&self) -> String {
        self.lines().join(", ")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuplicateMeta {
    pub contact_id: Option<String>,
    pub matching_field: Option<String>,
}

/// GHL's error body: `{statusCode, message, error?, meta?, traceId?}`; every part optional,
/// since proxies and unknown routes answer with other shapes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: Option<Message>,
    pub error: Option<String>,
    pub meta: Option<DuplicateMeta>,
}

/// Turns a non-2xx response into a typed error.
pub fn from_status(status: u16, body: &str, retry_after_ms: Option<u64>) -> GhlError {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let message = parsed
        .message
        .as_ref()
        .map(Message::joined)
        .or_else(|| parsed.error.clone())
        .unwrap_or_else(|| truncate(body));
    match status {
        401 => GhlError::Unauthorized(message),
        403 => GhlError::Forbidden(message),
        404 => GhlError::NotFound(message),
        422 => GhlError::Validation(parsed.message.map(|m| m.lines()).unwrap_or_else(|| vec![message])),
        429 => GhlError::RateLimited {
            retry_after_ms,
            message,
        },
        400 => {
            if let Some(meta) = parsed.meta.filter(|m| m.contact_id.is_some()) {
                GhlError::Duplicate {
                    contact_id: meta.contact_id,
                    matching_field: meta.matching_field,
                    message,
                }
            } else if message.to_ascii_lowercase().contains("not found") {
                // GHL answers an unknown id with 400 "... not found" (NOTES §5).
                GhlError::NotFound(message)
            } else {
                GhlError::BadRequest(message)
            }
        }
        500..=599 => GhlError::Server { status, message },
        _ => GhlError::Status { status, message },
    }
}

fn truncate(body: &str) -> String {
    let mut s: String = body.chars().take(200).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let e = from_status(
            422,
            r#"{"statusCode":422,"message":["a should not exist","b must be a string"]}"#,
            None,
        );
        assert_eq!(
            e,
            GhlError::Validation(vec!["a should not exist".into(), "b must be a string".into()])
        );
        let c: ConnectorError = e.into();
        assert_eq!(c.kind, ErrorKind::Invalid);
        assert!(c.message.contains("a should not exist, b must be a string"), "{c}");

        let dup = from_status(
            400,
            r#"{"statusCode":400,"message":"This location does not allow duplicated contacts.","meta":{"contactId":"abc","matchingField":"email"}}"#,
            None,
        );
        assert_eq!(dup.existing_contact_id(), Some("abc"));
        let c: ConnectorError = dup.into();
        assert_eq!(c.kind, ErrorKind::Conflict);
        assert!(c.message.contains("existing_contact_id=abc"));

        let nf: ConnectorError = from_status(400, r#"{"message":"Contact with id x not found"}"#, None).into();
        assert_eq!(nf.kind, ErrorKind::NotFound);
        let bad: ConnectorError = from_status(400, r#"{"message":"Invalid field x"}"#, None).into();
        assert_eq!(bad.kind, ErrorKind::Invalid);
        assert_eq!(ConnectorError::from(from_status(401, "{}", None)).kind, ErrorKind::Auth);
        assert_eq!(ConnectorError::from(from_status(403, "", None)).kind, ErrorKind::Auth);
        assert_eq!(
            ConnectorError::from(from_status(404, "", None)).kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            ConnectorError::from(from_status(502, "<html>", None)).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            ConnectorError::from(from_status(429, "", Some(5))).kind,
            ErrorKind::RateLimited {
                retry_after_ms: Some(5)
            }
        );
    }
}
