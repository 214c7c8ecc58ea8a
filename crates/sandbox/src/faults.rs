//! Run-time fault injection shared by every emulator: random or counted 5xx errors, added
//! latency, bursts of 429s, and dropped connections (closed without any response).

use crate::ids::IdGen;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to inject. All off by default. Rates are probabilities in `[0, 1]`; the `*_next`
/// counters fail exactly that many upcoming requests, which is what deterministic tests want.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FaultConfig {
    pub error_rate: f64,
    pub error_next: u32,
    /// Status for injected errors (a 5xx).
    pub error_status: u16,
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    pub rate_limit_rate: f64,
    pub rate_limit_next: u32,
    pub drop_rate: f64,
    pub drop_next: u32,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            error_next: 0,
            error_status: 500,
            latency_ms: 0,
            latency_jitter_ms: 0,
            rate_limit_rate: 0.0,
            rate_limit_next: 0,
            drop_rate: 0.0,
            drop_next: 0,
        }
    }
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("errorRate", self.error_rate),
            ("rateLimitRate", self.rate_limit_rate),
            ("dropRate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if !(500..=599).contains(&self.error_status) {
            return Err("errorStatus must be a 5xx status".into());
        }
        Ok(())
    }
}

/// One injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Error(StatusCode),
    TooManyRequests,
    Drop,
}

/// Marker put in a response's extensions: the connection loop in [`crate::serve`] closes the
/// connection instead of writing that response.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// A response that makes the server close the connection without answering.
pub fn drop_connection() -> Response {
    let mut r = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    r.extensions_mut().insert(DropConnection);
    r
}

#[derive(Debug)]
pub struct FaultInjector {
    config: Mutex<FaultConfig>,
    rng: IdGen,
}

impl FaultInjector {
    pub fn new(config: FaultConfig, rng: IdGen) -> Self {
        Self {
            config: Mutex::new(config),
            rng,
        }
    }

    pub fn get(&self) -> FaultConfig {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, config: FaultConfig) -> Result<(), String> {
        config.validate()?;
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// Decides the latency and the failure (if any) for one request, consuming counters.
    /// Drops win over 429s, which win over errors, so each counter is used up predictably.
    pub fn decide(&self) -> (Duration, Option<Fault>) {
        let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let jitter = if c.latency_jitter_ms > 0 {
            (self.rng.unit() * c.latency_jitter_ms as f64) as u64
        } else {
            0
        };
        let latency = Duration::from_millis(c.latency_ms + jitter);
        let status = StatusCode::from_u16(c.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let fault = if c.drop_next > 0 {
            c.drop_next -= 1;
            Some(Fault::Drop)
        } else if c.rate_limit_next > 0 {
            c.rate_limit_next -= 1;
            Some(Fault::TooManyRequests)
        } else if c.error_next > 0 {
            c.error_next -= 1;
            Some(Fault::Error(status))
        } else if c.drop_rate > 0.0 && self.rng.unit() < c.drop_rate {
            Some(Fault::Drop)
        } else if c.rate_limit_rate > 0.0 && self.rng.unit() < c.rate_limit_rate {
            Some(Fault::TooManyRequests)
        } else if c.error_rate > 0.0 && self.rng.unit() < c.error_rate {
            Some(Fault::Error(status))
        } else {
            None
        };
        (latency, fault)
    }
}

/// Renders an injected 5xx or 429 the way the emulated API would.
pub type FaultRenderer = Arc<dyn Fn(Fault) -> Response + Send + Sync>;

/// State for [`middleware`].
#[derive(Clone)]
pub struct FaultLayer {
    pub injector: Arc<FaultInjector>,
    pub render: FaultRenderer,
    /// Paths starting with this are never faulted (the emulator's own admin routes).
    pub exempt_prefix: &'static str,
}

/// axum middleware: `Router::layer(axum::middleware::from_fn_with_state(layer, middleware))`.
pub async fn middleware(State(layer): State<FaultLayer>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with(layer.exempt_prefix) {
        return next.run(req).await;
    }
    let (latency, fault) = layer.injector.decide();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Drop) => drop_connection(),
        Some(f) => (layer.render)(f),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::rng_for;

    #[test]
    fn counters_are_consumed_in_order() {
        let f = FaultInjector::new(
            FaultConfig {
                drop_next: 1,
                rate_limit_next: 1,
                error_next: 1,
                error_status: 503,
                ..FaultConfig::default()
            },
            IdGen::new(rng_for(Some(1), 9)),
        );
        assert_eq!(f.decide().1, Some(Fault::Drop));
        assert_eq!(f.decide().1, Some(Fault::TooManyRequests));
        assert_eq!(f.decide().1, Some(Fault::Error(StatusCode::SERVICE_UNAVAILABLE)));
        assert_eq!(f.decide().1, None);
        assert!(f
            .set(FaultConfig {
                error_rate: 2.0,
                ..FaultConfig::default()
            })
            .is_err());
    }
}
