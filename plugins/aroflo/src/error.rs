//! What can go wrong talking to AroFlo, and how each maps onto the engine's error kinds.

use tether_abi::ConnectorError;

#[derive(Debug, thiserror::Error)]
pub enum AroFloError {
    #[error("the aroflo plugin config is not usable: {0}")]
    Config(String),
    #[error("AroFlo refused the credentials (status {status}): {message}")]
    Auth { status: i64, message: String },
    #[error("AroFlo rate limit (status {status}): {message}")]
    RateLimited {
        status: i64,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// A request AroFlo will refuse again as it is (bad WHERE clause, no zone, too large).
    #[error("AroFlo refused the request (status {status}): {message}")]
    Refused { status: i64, message: String },
    #[error("AroFlo does not accept the method (status {status}): {message}")]
    Method { status: i64, message: String },
    #[error("AroFlo timed out the query (status {status}): {message}")]
    Timeout { status: i64, message: String },
    /// `postresults.errors` or a per-record `error`, even under `status "0"`.
    #[error("AroFlo rejected the {zone} write: {message}{}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    Rejected {
        zone: String,
        code: Option<String>,
        message: String,
        duplicate: bool,
    },
    #[error("HTTP {status} from AroFlo: {body}")]
    Http { status: u16, body: String },
    #[error("unexpected AroFlo response: {0}")]
    Malformed(String),
    #[error("{0}")]
    Input(String),
    #[error("AroFlo has no {0}")]
    NotFound(String),
    #[error(transparent)]
    Host(#[from] ConnectorError),
}

impl From<AroFloError> for ConnectorError {
    fn from(error: AroFloError) -> Self {
        let message = error.to_string();
        match error {
            AroFloError::Host(inner) => inner,
            AroFloError::Auth { .. } => ConnectorError::auth(message),
            AroFloError::RateLimited { retry_after_ms, .. } => ConnectorError::rate_limited(retry_after_ms, message),
            AroFloError::Timeout { .. } => ConnectorError::transient(message),
            AroFloError::Http { status, .. } if status >= 500 => ConnectorError::transient(message),
            AroFloError::Rejected { duplicate: true, .. } => ConnectorError::conflict(message),
            AroFloError::NotFound(_) => ConnectorError::not_found(message),
            AroFloError::Refused { .. }
            | AroFloError::Rejected { .. }
            | AroFloError::Input(_)
            | AroFloError::Http { .. } => ConnectorError::invalid(message),
            AroFloError::Config(_) | AroFloError::Method { .. } | AroFloError::Malformed(_) => {
                ConnectorError::fatal(message)
            }
        }
    }
}
