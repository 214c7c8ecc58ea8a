//! The plugin's typed errors and their mapping to the ABI's error kinds.

use tether_abi::{ConnectorError, ErrorKind};

/// One entry of Moloni's validation array: `"<code> <field>"` and, with `human_errors=true`, a
/// description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub code: u32,
    pub field: String,
    pub description: Option<String>,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{} ({} {})", d, self.code, self.field),
            None => write!(f, "{} {}", self.code, self.field),
        }
    }
}

/// Code Moloni answers for a value that must be unique and already exists (`"4 number"`).
pub const CODE_ALREADY_EXISTS: u32 = 4;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoloniError {
    #[error("Moloni connector configuration: {0}")]
    Config(String),
    /// `/grant/` refused the credentials (HTTP 400 `{error, error_description}`).
    #[error("Moloni refused the login ({code}): {description}")]
    Grant { code: String, description: String },
    /// The password was refused before and the configuration has not changed since: asking again
    /// would only count towards the 3-failed-logins lockout.
    #[error("Moloni refused this username/password earlier; fix the configuration (not retried, to avoid the login lockout)")]
    LoginRefusedBefore,
    /// HTTP 403 "Too many failed login attempts".
    #[error("Moloni blocks logins after 3 failures; try again in {seconds} s")]
    LoginCooldown { seconds: u64 },
    #[error("no Moloni credentials: set `username` and `password`, or `authorization_code` and `redirect_uri`")]
    NoCredentials,
    /// The access token was refused even after a fresh login.
    #[error("Moloni refused the access token: {0}")]
    Unauthorized(String),
    /// The validation array of a write (or of a read with bad parameters).
    #[error("Moloni rejected the request: {}", join(.0))]
    Validation(Vec<FieldError>),
    /// `{"valid": 0}` without details, e.g. deleting a customer that documents reference.
    #[error("Moloni refused the change: {0}")]
    Refused(String),
    #[error("not found in Moloni: {0}")]
    NotFound(String),
    #[error("Moloni rate limit reached")]
    RateLimited { retry_after_ms: Option<u64> },
    #[error("Moloni server error {status}: {body}")]
    Server { status: u16, body: String },
    #[error("unexpected Moloni status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected Moloni response: {0}")]
    Decode(String),
    #[error("invalid input: {0}")]
    Input(String),
    /// A failure of the host's services, kept as the host typed it.
    #[error("{0}")]
    Host(ConnectorError),
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl From<ConnectorError> for MoloniError {
    fn from(e: ConnectorError) -> Self {
        MoloniError::Host(e)
    }
}

impl From<MoloniError> for ConnectorError {
    fn from(e: MoloniError) -> Self {
        let message = e.to_string();
        let kind = match e {
            MoloniError::Host(inner) => return inner,
            MoloniError::Config(_) | MoloniError::Decode(_) | MoloniError::Status { .. } => ErrorKind::Fatal,
            MoloniError::Grant { .. }
            | MoloniError::LoginRefusedBefore
            | MoloniError::NoCredentials
            | MoloniError::Unauthorized(_) => ErrorKind::Auth,
            MoloniError::LoginCooldown { seconds } => ErrorKind::RateLimited {
                retry_after_ms: Some(seconds.saturating_mul(1000)),
            },
            MoloniError::RateLimited { retry_after_ms } => ErrorKind::RateLimited { retry_after_ms },
            MoloniError::Validation(errors) => {
                if !errors.is_empty() && errors.iter().all(|e| e.code == CODE_ALREADY_EXISTS) {
                    ErrorKind::Conflict
                } else {
                    ErrorKind::Invalid
                }
            }
            MoloniError::Refused(_) => ErrorKind::Conflict,
            MoloniError::NotFound(_) => ErrorKind::NotFound,
            MoloniError::Server { .. } => ErrorKind::Transient,
            MoloniError::Input(_) => ErrorKind::Invalid,
        };
        ConnectorError::new(kind, message)
    }
}
