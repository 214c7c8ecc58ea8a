//! The MLOFLO emulator. MLOFLO publishes no API; this serves the contract this project defines
//! (`shared/reference/mloflo/CONTRACT.md`): API keys and OAuth client credentials with scopes,
//! contacts/tasks/notes with soft deletes, milestones, users and webhook subscriptions; lists
//! ordered by `updated_at` then `id` with `updated_since`, `include_deleted` and keyset cursors;
//! 120 requests per minute per key with `X-RateLimit-*` headers and 429 + `Retry-After`;
//! webhooks signed with HMAC-SHA256 and retried along the contract's backoff.
//!
//! Admin routes (no auth, never faulted or rate limited):
//! - `GET /_sandbox/credentials`: API keys, OAuth client, the webhook secret
//! - `GET|PUT /_sandbox/faults`: [`FaultConfig`] as camelCase JSON
//! - `GET|PUT /_sandbox/rate-limit`: [`RateLimitConfig`] (resets the counters)
//! - `POST /_sandbox/reset`: seeded data back, counters, faults, tokens and logs cleared
//! - `GET /_sandbox/state`: every record (deleted ones included) and subscription
//! - `GET|POST /_sandbox/webhooks`: deliveries; `{"url"}` subscribes a receiver to every
//!   event with the credentials' webhook secret
//! - `GET /_sandbox/events`: every emitted event
//! - `POST /_sandbox/expire-tokens`: every OAuth token issued so far stops working

mod admin;
mod api;
mod error;
mod seed;
mod store;
mod webhooks;

pub use store::{EVENTS, STAGES};
pub use webhooks::{sign, DeliveryConfig};

use crate::faults::{Fault, FaultConfig, FaultInjector, FaultLayer};
use crate::ids::{rng_for, IdGen};
use crate::ratelimit::{RateLimitConfig, RateLimitStatus, SlidingWindowLimiter};
use crate::serve::{self, ServerHandle};
use crate::timefmt::{iso_ms, MonotonicClock};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::ApiError;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Store, Subscription};

pub const ALL_SCOPES: &[&str] = &[
    "contacts:read",
    "contacts:write",
    "tasks:read",
    "tasks:write",
    "notes:read",
    "notes:write",
    "webhooks:write",
];

/// How to run the emulator. `Default` is empty, unseeded, with the contract's limits.
#[derive(Debug, Clone)]
pub struct MlofloConfig {
    /// Makes ids, credentials, seeded data and random faults reproducible.
    pub seed: Option<u64>,
    /// Contacts created at start (one in four a partner), at every pipeline stage in turn.
    pub seed_contacts: usize,
    /// 120 requests per 60 s per key by default.
    pub rate_limit: RateLimitConfig,
    pub faults: FaultConfig,
    /// OAuth access-token lifetime (the contract: 3600 s).
    pub access_token_ttl: Duration,
    /// Receivers subscribed to every event from the start, with the webhook secret.
    pub webhook_urls: Vec<String>,
    pub webhook_delivery: DeliveryConfig,
    /// Fixed credentials, e.g. for a `tether sandbox` config that must survive restarts.
    pub api_key: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub webhook_secret: Option<String>,
}

impl Default for MlofloConfig {
    fn default() -> Self {
        Self {
            seed: None,
            seed_contacts: 0,
            rate_limit: RateLimitConfig {
                enabled: true,
                burst_max: 120,
                window_ms: 60_000,
                daily_limit: u64::MAX,
            },
            faults: FaultConfig::default(),
            access_token_ttl: Duration::from_secs(3600),
            webhook_urls: Vec::new(),
            webhook_delivery: DeliveryConfig::default(),
            api_key: None,
            client_id: None,
            client_secret: None,
            webhook_secret: None,
        }
    }
}

impl MlofloConfig {
    pub fn seeded(seed: u64, contacts: usize) -> Self {
        Self {
            seed: Some(seed),
            seed_contacts: contacts,
            ..Self::default()
        }
    }
}

/// What a client needs to call the emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MlofloCredentials {
    /// `mlo_test_…` with every scope.
    pub api_key: String,
    /// `mlo_test_…` with `contacts:read` only, for 403 tests.
    pub readonly_api_key: String,
    pub client_id: String,
    pub client_secret: String,
    /// Signs deliveries to receivers registered through config or `/_sandbox/webhooks`.
    pub webhook_secret: String,
}

#[derive(Debug, Clone)]
struct Grant {
    /// The rate-limit key: the API key, or the OAuth client id.
    key: String,
    scopes: Vec<String>,
    expires_at_ms: Option<i64>,
}

/// The scopes of the authenticated caller, for handlers.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    scopes: Vec<String>,
}

impl Caller {
    pub(crate) fn need(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(scope))
        }
    }
}

pub(crate) struct Inner {
    config: MlofloConfig,
    store: Mutex<Store>,
    initial: Store,
    grants: Mutex<HashMap<String, Grant>>,
    ids: IdGen,
    clock: MonotonicClock,
    limiter: SlidingWindowLimiter<String>,
    faults: Arc<FaultInjector>,
    webhooks: webhooks::Webhooks,
    credentials: MlofloCredentials,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn grants(&self) -> MutexGuard<'_, HashMap<String, Grant>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fixed_grants(&self) -> HashMap<String, Grant> {
        let c = &self.credentials;
        let grant = |key: &str, scopes: &[&str]| Grant {
            key: key.to_owned(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at_ms: None,
        };
        HashMap::from([
            (c.api_key.clone(), grant(&c.api_key, ALL_SCOPES)),
            (
                c.readonly_api_key.clone(),
                grant(&c.readonly_api_key, &["contacts:read"]),
            ),
        ])
    }

    /// Emits one event to every subscription that wants it (call with the store unlocked).
    fn emit(&self, kind: &str, data: Value) {
        let event = json!({
            "id": format!("evt_{}", self.ids.hex(24)),
            "type": kind,
            "occurred_at": iso_ms(self.clock.now()),
            "data": data,
        });
        let subscriptions = self.store().subscriptions.clone();
        self.webhooks.emit(event, &subscriptions);
    }

    fn reset(&self) {
        *self.store() = self.initial.clone();
        *self.grants() = self.fixed_grants();
        self.limiter.reset();
        let _ = self.faults.set(self.config.faults.clone());
        self.webhooks.clear_log();
    }
}

/// A configured emulator, not yet listening.
#[derive(Clone)]
pub struct MlofloEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MlofloEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlofloEmulator").finish_non_exhaustive()
    }
}

impl MlofloEmulator {
    pub fn new(config: MlofloConfig) -> Result<Self, crate::Error> {
        config.faults.validate().map_err(crate::Error::Config)?;
        let ids = IdGen::new(rng_for(config.seed, 12));
        let credentials = MlofloCredentials {
            api_key: config
                .api_key
                .clone()
                .unwrap_or_else(|| format!("mlo_test_{}", ids.alnum(32))),
            readonly_api_key: format!("mlo_test_{}", ids.alnum(32)),
            client_id: config
                .client_id
                .clone()
                .unwrap_or_else(|| format!("mlo_client_{}", ids.hex(16))),
            client_secret: config.client_secret.clone().unwrap_or_else(|| ids.alnum(40)),
            webhook_secret: config
                .webhook_secret
                .clone()
                .unwrap_or_else(|| format!("whsec_{}", ids.alnum(32))),
        };
        let mut seeded = seed::build(&mut rng_for(config.seed, 11), config.seed_contacts);
        for url in &config.webhook_urls {
            seeded.subscriptions.push(Subscription {
                id: ids.hex(24),
                url: url.clone(),
                events: Vec::new(),
                secret: credentials.webhook_secret.clone(),
            });
        }
        let inner = Inner {
            store: Mutex::new(seeded.clone()),
            initial: seeded,
            grants: Mutex::new(HashMap::new()),
            clock: MonotonicClock::new(),
            limiter: SlidingWindowLimiter::new(config.rate_limit.clone()),
            faults: Arc::new(FaultInjector::new(
                config.faults.clone(),
                IdGen::new(rng_for(config.seed, 13)),
            )),
            webhooks: webhooks::Webhooks::new(config.webhook_delivery.clone()),
            ids,
            credentials,
            config,
        };
        *inner.grants() = inner.fixed_grants();
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn credentials(&self) -> &MlofloCredentials {
        &self.inner.credentials
    }

    pub fn router(&self) -> Router {
        router(self.inner.clone())
    }

    pub fn faults(&self) -> FaultConfig {
        self.inner.faults.get()
    }

    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), crate::Error> {
        self.inner.faults.set(faults).map_err(crate::Error::Config)
    }

    pub fn set_rate_limit(&self, config: RateLimitConfig) {
        self.inner.limiter.set_config(config);
        self.inner.limiter.reset();
    }

    /// Subscribes `url` to every event, signed with the credentials' webhook secret.
    pub fn register_webhook(&self, url: impl Into<String>) {
        let sub = Subscription {
            id: self.inner.ids.hex(24),
            url: url.into(),
            events: Vec::new(),
            secret: self.inner.credentials.webhook_secret.clone(),
        };
        self.inner.store().subscriptions.push(sub);
    }

    /// Every emitted event, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.inner.webhooks.events()
    }

    /// One entry per (event, receiver): attempts, state (`retrying`, `delivered`, `failed`).
    pub fn deliveries(&self) -> Vec<Value> {
        self.inner.webhooks.deliveries()
    }

    /// Makes every OAuth token issued so far answer 401, as an early expiry or revocation would.
    pub fn expire_tokens(&self) {
        self.inner.grants().retain(|_, g| g.expires_at_ms.is_none());
    }

    /// Everything stored, as `GET /_sandbox/state` returns it.
    pub fn state(&self) -> Value {
        self.inner.store().dump()
    }

    pub fn reset(&self) {
        self.inner.reset();
    }

    pub async fn start(self, addr: SocketAddr) -> Result<RunningMloflo, crate::Error> {
        let listener = serve::bind(addr).await?;
        let server = serve::spawn(listener, self.router())?;
        Ok(RunningMloflo {
            addr: server.addr,
            credentials: self.inner.credentials.clone(),
            emulator: self,
            server,
        })
    }
}

/// Starts an MLOFLO emulator on `addr` (port 0 picks a free port).
pub async fn start(addr: SocketAddr, config: MlofloConfig) -> Result<RunningMloflo, crate::Error> {
    MlofloEmulator::new(config)?.start(addr).await
}

#[derive(Debug)]
pub struct RunningMloflo {
    pub addr: SocketAddr,
    pub credentials: MlofloCredentials,
    pub emulator: MlofloEmulator,
    server: ServerHandle,
}

impl RunningMloflo {
    /// `http://127.0.0.1:PORT/v1`, the API base like the contract's `https://api.mloflo.com/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, where the `/_sandbox/` admin routes are.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), crate::Error> {
        self.emulator.set_faults(faults)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn rate_headers(headers: &mut HeaderMap, status: &RateLimitStatus) {
    let reset = crate::timefmt::now_ms() / 1000 + status.retry_after.as_secs_f64().ceil() as i64;
    for (name, value) in [
        ("x-ratelimit-limit", status.max.to_string()),
        ("x-ratelimit-remaining", status.remaining.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn too_many(retry_after: Duration, status: &RateLimitStatus) -> Response {
    let mut r = ApiError::rate_limited().into_response();
    rate_headers(r.headers_mut(), status);
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// Injected 429s look like the real limit: the window's remaining time as `Retry-After`.
fn render_fault(limit: RateLimitConfig) -> crate::faults::FaultRenderer {
    Arc::new(move |f: Fault| match f {
        Fault::Error(status) => ApiError::internal(status).into_response(),
        _ => {
            let window = Duration::from_millis(limit.window_ms);
            too_many(
                window,
                &RateLimitStatus {
                    allowed: false,
                    max: limit.burst_max,
                    remaining: 0,
                    interval_ms: limit.window_ms,
                    daily_limit: limit.daily_limit,
                    daily_remaining: limit.daily_limit,
                    retry_after: window,
                },
            )
        }
    })
}

async fn guard(
    axum::extract::State(emu): axum::extract::State<Arc<Inner>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let grant = emu.grants().get(&token).cloned();
    let grant = match grant {
        None => return ApiError::unauthorized("missing or unknown token").into_response(),
        Some(g) if g.expires_at_ms.is_some_and(|at| at <= crate::timefmt::now_ms()) => {
            return ApiError::unauthorized("the token has expired").into_response()
        }
        Some(g) => g,
    };
    let status = emu.limiter.check(&grant.key);
    if !status.allowed {
        return too_many(status.retry_after, &status);
    }
    req.extensions_mut().insert(Caller { scopes: grant.scopes });
    let mut response = next.run(req).await;
    rate_headers(response.headers_mut(), &status);
    response
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {}", uri.path()),
    )
    .into_response()
}

fn router(inner: Arc<Inner>) -> Router {
    use axum::routing::{delete, get};
    let v1 = Router::new()
        .route("/contacts", get(api::list_contacts).post(api::create_contact))
        .route(
            "/contacts/{id}",
            get(api::get_contact)
                .patch(api::update_contact)
                .delete(api::delete_contact),
        )
        .route("/contacts/{id}/notes", get(api::list_notes).post(api::create_note))
        .route("/contacts/{id}/milestones", get(api::list_milestones))
        .route("/tasks", get(api::list_tasks).post(api::create_task))
        .route(
            "/tasks/{id}",
            get(api::get_task).patch(api::update_task).delete(api::delete_task),
        )
        .route(
            "/notes/{id}",
            get(api::get_note).patch(api::update_note).delete(api::delete_note),
        )
        .route("/users", get(api::list_users))
        .route("/webhooks", get(api::list_webhooks).post(api::create_webhook))
        .route("/webhooks/{id}", delete(api::delete_webhook))
        .route_layer(axum::middleware::from_fn_with_state(inner.clone(), guard));
    let faults = FaultLayer {
        injector: inner.faults.clone(),
        render: render_fault(inner.config.rate_limit.clone()),
        exempt_prefix: "/_sandbox",
    };
    let v1 = v1.route("/oauth/token", axum::routing::post(api::token));
    Router::new()
        .nest("/v1", v1)
        .merge(admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(faults, crate::faults::middleware))
        .with_state(inner)
}
