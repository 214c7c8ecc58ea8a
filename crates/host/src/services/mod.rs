//! The services the host gives each connector instance ([`HostServices`]).
//!
//! Connector calls are synchronous and run on blocking threads; these services bridge into the
//! host's tokio runtime with `Handle::block_on`.

pub mod http;
pub mod redact;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tether_abi::{ConnectorError, Fields, Host, HostServices, HttpRequest, HttpResponse, LogLevel};
use tether_core::config::{HttpSettings, RateLimit};
use tether_core::telemetry;
use tether_core::vault::Vault;
use tokio::runtime::Handle;

pub use self::http::HttpService;
use self::http::Limiter;
pub use self::redact::Redactor;

/// What every connector instance of one host shares.
pub struct HostContext {
    runtime: Handle,
    http: HttpService,
    vault: Arc<Vault>,
    redactor: Arc<Redactor>,
    rates: RateBook,
}

/// The rate-limit budget a connector's API last reported (`X-RateLimit-*` response headers),
/// for the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RateSeen {
    pub remaining: Option<u32>,
    pub max: Option<u32>,
    pub interval_ms: Option<u64>,
    pub daily_remaining: Option<u64>,
    pub daily_limit: Option<u64>,
    pub at_ms: i64,
}

/// The last [`RateSeen`] of each connector instance.
#[derive(Default)]
pub struct RateBook(std::sync::Mutex<std::collections::BTreeMap<String, RateSeen>>);

impl RateBook {
    fn note(&self, instance: &str, headers: &[(String, String)], now_ms: i64) {
        let parsed = tether_ghl::governor::RateHeaders::parse(headers);
        if parsed == tether_ghl::governor::RateHeaders::default() {
            return;
        }
        let seen = RateSeen {
            remaining: parsed.remaining,
            max: parsed.max,
            interval_ms: parsed.interval_ms,
            daily_remaining: parsed.daily_remaining,
            daily_limit: parsed.daily_limit,
            at_ms: now_ms,
        };
        // A poisoned lock only means another thread panicked mid-insert: the map is still usable.
        let mut book = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        book.insert(instance.to_owned(), seen);
    }

    pub fn get(&self, instance: &str) -> Option<RateSeen> {
        let book = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        book.get(instance).copied()
    }
}

impl HostContext {
    pub fn new(
        runtime: Handle,
        settings: HttpSettings,
        vault: Arc<Vault>,
        redactor: Arc<Redactor>,
    ) -> Result<Arc<HostContext>, reqwest::Error> {
        Ok(Arc::new(HostContext {
            runtime,
            http: HttpService::new(settings)?,
            vault,
            redactor,
            rates: RateBook::default(),
        }))
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub fn rates(&self) -> &RateBook {
        &self.rates
    }

    /// The services for one connector instance, with its own rate limit.
    pub fn for_instance(self: &Arc<Self>, instance: &str, rate_limit: Option<RateLimit>) -> Host {
        Arc::new(ConnectorServices {
            instance: instance.to_owned(),
            context: Arc::clone(self),
            limiter: rate_limit.and_then(http::limiter),
        })
    }
}

struct ConnectorServices {
    instance: String,
    context: Arc<HostContext>,
    limiter: Option<Arc<Limiter>>,
}

impl ConnectorServices {
    /// Runs `future` on the host runtime from the connector's blocking thread. On a runtime
    /// worker thread tokio panics instead; the FFI adapters turn that into a `fatal` error.
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.context.runtime.block_on(future)
    }
}

impl HostServices for ConnectorServices {
    fn http(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let context = &self.context;
        let response = self.block_on(context.http.send(
            &self.instance,
            self.limiter.as_deref(),
            &context.redactor,
            request,
        ))?;
        context.rates.note(&self.instance, &response.headers, now_ms());
        Ok(response)
    }

    fn log(&self, level: LogLevel, message: &str, fields: &Fields) {
        let redactor = &self.context.redactor;
        let message = redactor.redact(message);
        let fields = serde_json::Value::Object(redactor.redact_fields(fields));
        let connector = self.instance.as_str();
        match level {
            LogLevel::Error => tracing::error!(target: "tether::connector", connector, %fields, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "tether::connector", connector, %fields, "{message}"),
            LogLevel::Info => tracing::info!(target: "tether::connector", connector, %fields, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "tether::connector", connector, %fields, "{message}"),
            LogLevel::Trace => tracing::trace!(target: "tether::connector", connector, %fields, "{message}"),
        }
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn secret_get(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        let value = self
            .block_on(self.context.vault.get(&self.instance, key))
            .map_err(|e| ConnectorError::fatal(format!("secret store: {e}")))?;
        if let Some(value) = &value {
            self.context.redactor.learn(value);
        }
        Ok(value)
    }

    fn secret_put(&self, key: &str, value: &str) -> Result<(), ConnectorError> {
        self.context.redactor.learn(value);
        self.block_on(self.context.vault.put(&self.instance, key, value, now_ms()))
            .map_err(|e| ConnectorError::transient(format!("secret store: {e}")))?;
        if is_new_access_token(key, value) {
            metrics::counter!(telemetry::TOKEN_REFRESHES, "connector" => self.instance.clone()).increment(1);
        }
        Ok(())
    }
}

/// A token refresh, seen from the host: a connector storing a new access token. Connectors name
/// it `access_token` (Moloni), `ghl.oauth.access_token` (GHL) or `oauth_token` (MLOFLO); an
/// empty value clears a token and is not a refresh.
fn is_new_access_token(key: &str, value: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    !value.is_empty() && matches!(last, "access_token" | "oauth_token")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::is_new_access_token;

    #[test]
    fn access_tokens_of_every_connector_count_as_refreshes() {
        assert!(is_new_access_token("access_token", "abc"));
        assert!(is_new_access_token("ghl.oauth.access_token", "{\"token\":\"x\"}"));
        assert!(is_new_access_token("oauth_token", "{}"));
        assert!(!is_new_access_token("access_token", ""), "a cleared token");
        assert!(!is_new_access_token("ghl.oauth.refresh_token", "r"));
        assert!(!is_new_access_token("access_token_expires_at_ms", "1"));
        assert!(!is_new_access_token("ghl.oauth.needs_reconnect", "refused"));
    }
}
