use std::sync::Arc;

use crate::wire::*;

/// What the host offers every connector. HTTP, logging, time and token storage exist once, in
/// the host: a connector holds no HTTP client, retry loop or logger of its own.
///
/// Calls block; the host runs every connector call on a blocking thread.
pub trait HostServices: Send + Sync {
    /// Sends a request with the host's timeouts, retries of transient failures (idempotent
    /// requests only), the connector's rate limit and redacted tracing. Non-2xx statuses that are
    /// not retried come back as a response for the connector to translate; a failure that
    /// outlasts the retry budget comes back as a typed error.
    fn http(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError>;
    fn log(&self, level: LogLevel, message: &str, fields: &Fields);
    /// Milliseconds since the Unix epoch, from the host's clock (tests can move it).
    fn now_ms(&self) -> i64;
    /// A value stored with [`HostServices::secret_put`] by this connector instance, decrypted.
    fn secret_get(&self, key: &str) -> Result<Option<String>, ConnectorError>;
    /// Stores a value encrypted at rest, durably, before returning.
    fn secret_put(&self, key: &str, value: &str) -> Result<(), ConnectorError>;
}

/// The host handle a connector keeps.
pub type Host = Arc<dyn HostServices>;

/// A connector instance: the calls the engine makes. Implemented by plugins (through
/// [`crate::export_plugin!`]) and by native connectors alike.
pub trait Connector: Send + Sync {
    /// Verifies config and credentials against the remote system.
    fn check(&self) -> Result<CheckReport, ConnectorError>;
    /// Reads one page of a stream.
    fn read(&self, request: ReadRequest) -> Result<Page, ConnectorError>;
    /// Performs one action.
    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError>;
    /// Verifies and parses one inbound webhook. A bad signature is an `auth` error.
    fn webhook(&self, request: WebhookRequest) -> Result<Vec<WebhookEvent>, ConnectorError> {
        let _ = request;
        Err(ConnectorError::invalid("this connector does not receive webhooks"))
    }
}

/// A connector type that can describe itself and open instances: what a plugin library exports.
pub trait Plugin: Connector + Sized + 'static {
    fn manifest() -> Manifest;
    fn open(host: Host, request: OpenRequest) -> Result<Self, ConnectorError>;
}
