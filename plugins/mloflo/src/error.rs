//! The plugin's errors, and their translation to the typed [`ConnectorError`] at the boundary.

use tether_abi::{ConnectorError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum MlofloError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Input(String),
    /// A non-2xx answer, with the contract's error envelope when it had one.
    #[error("MLOFLO answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
    #[error("MLOFLO answered {status} with a body that is not what the contract says: {detail}")]
    Decode { status: u16, detail: String },
    #[error("webhook refused: {0}")]
    Webhook(String),
    #[error("CSV: {0}")]
    Csv(String),
    #[error(transparent)]
    Host(#[from] ConnectorError),
}

impl From<MlofloError> for ConnectorError {
    fn from(e: MlofloError) -> Self {
        let message = e.to_string();
        match e {
            MlofloError::Config(_) => ConnectorError::fatal(message),
            MlofloError::Input(_) | MlofloError::Csv(_) => ConnectorError::invalid(message),
            MlofloError::Webhook(_) => ConnectorError::auth(message),
            MlofloError::Decode { .. } => ConnectorError::transient(message),
            MlofloError::Host(inner) => inner,
            MlofloError::Api {
                status,
                ref code,
                retry_after_ms,
                ..
            } => {
                let kind = match (status, code.as_str()) {
                    (429, _) | (_, "rate_limited") => ErrorKind::RateLimited { retry_after_ms },
                    (401 | 403, _) => ErrorKind::Auth,
                    (404, _) => ErrorKind::NotFound,
                    (409, _) => ErrorKind::Conflict,
                    (408, _) | (500..=599, _) => ErrorKind::Transient,
                    _ => ErrorKind::Invalid,
                };
                ConnectorError::new(kind, message)
            }
        }
    }
}
