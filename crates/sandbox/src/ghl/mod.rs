//! The GoHighLevel Contacts API v2 + OAuth emulator.
//!
//! Behaviour follows `shared/reference/ghl/NOTES.md` and the official OpenAPI files; where the
//! notes are uncertain the emulator picks what a real client must survive (strict validation,
//! rotating single-use refresh tokens, 400 for unknown ids, 401 for missing scopes).
//!
//! Admin routes (no auth, never faulted or rate limited):
//! - `GET /_sandbox/public-key`: the Ed25519 webhook key (raw base64, SPKI base64, PEM)
//! - `GET /_sandbox/credentials`: location ids, PITs, OAuth client id/secret
//! - `GET|PUT /_sandbox/faults`: [`FaultConfig`] as camelCase JSON
//! - `POST /_sandbox/reset`: seeded data back, counters, faults and event log cleared
//! - `GET /_sandbox/requests`: API requests received so far by method and route ([`RequestCounts`])
//! - `GET /_sandbox/state`: every location, contact, task, note, appointment, custom field
//! - `GET|POST|DELETE /_sandbox/webhooks`: receivers (`{"url"}`) and the delivery log
//! - `GET /_sandbox/events`: every emitted webhook payload
//! - `POST /_sandbox/tokens`: a PIT with chosen `locationId` and `scopes`
//! - `GET|PUT /_sandbox/settings`: `{"allowDuplicateContact"}`
//! - `GET|PUT /_sandbox/rate-limit`: [`RateLimitConfig`] (resets the counters)
//! - `POST /_sandbox/custom-fields`: `{"name", "dataType"?, "options"?, "locationId"?}`

mod admin;
mod auth;
mod contacts;
mod error;
mod model;
mod requests;
mod search;
mod seed;
mod subres;
mod validate;
mod webhooks;

pub use auth::{ACCEPTED_VERSIONS, DEFAULT_SCOPES};
pub use model::CustomFieldSpec;
pub use requests::RequestCounts;
pub use webhooks::DeliveryConfig;

use crate::faults::{Fault, FaultConfig, FaultInjector, FaultLayer};
use crate::ids::{rng_for, IdGen};
use crate::ratelimit::{RateLimitConfig, RateLimitStatus, SlidingWindowLimiter};
use crate::serve::{self, ServerHandle};
use crate::timefmt::MonotonicClock;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;
use error::ApiError;
use model::Store;
use serde::Serialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How to run the emulator. `Default` is an empty, unseeded location with GHL's real limits.
#[derive(Debug, Clone)]
pub struct GhlConfig {
    /// Makes ids, keys, credentials, seeded data and random faults reproducible.
    pub seed: Option<u64>,
    /// Contacts to create at start (about one in five in the second location), with tasks,
    /// notes and appointments on some of them.
    pub seed_contacts: usize,
    pub rate_limit: RateLimitConfig,
    /// Send `Retry-After` on rate-limit 429s (GHL does not document one).
    pub send_retry_after: bool,
    /// OAuth access-token lifetime (GHL: one day; `expires_in` is one second less).
    pub access_token_ttl: Duration,
    /// The location setting `allowDuplicateContact`.
    pub allow_duplicate_contact: bool,
    /// Status for unknown contact/task/note ids: 400 as observed, or 404.
    pub missing_record_status: u16,
    /// Faults active from the start.
    pub faults: FaultConfig,
    /// Custom fields added to both locations besides the five defaults.
    pub custom_fields: Vec<CustomFieldSpec>,
    /// Webhook receivers registered from the start.
    pub webhook_urls: Vec<String>,
    pub webhook_delivery: DeliveryConfig,
    /// Fixed credentials, e.g. for a `tether sandbox` whose config must survive restarts.
    pub location_id: Option<String>,
    pub pit: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Base URL put in `nextPageUrl`; defaults to `http://<bound address>`.
    pub public_base_url: Option<String>,
}

impl Default for GhlConfig {
    fn default() -> Self {
        Self {
            seed: None,
            seed_contacts: 0,
            rate_limit: RateLimitConfig::default(),
            send_retry_after: false,
            access_token_ttl: Duration::from_secs(86_400),
            allow_duplicate_contact: false,
            missing_record_status: 400,
            faults: FaultConfig::default(),
            custom_fields: Vec::new(),
            webhook_urls: Vec::new(),
            webhook_delivery: DeliveryConfig::default(),
            location_id: None,
            pit: None,
            client_id: None,
            client_secret: None,
            public_base_url: None,
        }
    }
}

impl GhlConfig {
    /// A reproducible emulator with `contacts` seeded contacts.
    pub fn seeded(seed: u64, contacts: usize) -> Self {
        Self {
            seed: Some(seed),
            seed_contacts: contacts,
            ..Self::default()
        }
    }
}

/// What a test (or a user of `tether sandbox`) needs to call the emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GhlCredentials {
    pub location_id: String,
    pub company_id: String,
    pub user_id: String,
    /// PIT for `location_id` with the default scopes (contacts read/write, location reads).
    pub pit: String,
    /// PIT for `location_id` with `contacts.readonly` only.
    pub readonly_pit: String,
    pub client_id: String,
    pub client_secret: String,
    /// A second location and a PIT for it, for tenancy (403) tests.
    pub other_location_id: String,
    pub other_pit: String,
}

/// The webhook verification key in the forms clients accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPublicKey {
    pub raw: [u8; 32],
    /// Raw 32 bytes, base64.
    pub base64: String,
    /// SubjectPublicKeyInfo DER, base64 (the `MCowBQYDK2VwAyEA…` form).
    pub spki_base64: String,
    pub pem: String,
}

impl WebhookPublicKey {
    fn new(raw: [u8; 32]) -> Self {
        // The Ed25519 SPKI is a fixed 12-byte prefix plus the key.
        let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        der.extend_from_slice(&raw);
        let spki = STANDARD.encode(&der);
        Self {
            raw,
            base64: STANDARD.encode(raw),
            pem: format!("-----BEGIN PUBLIC KEY-----\n{spki}\n-----END PUBLIC KEY-----\n"),
            spki_base64: spki,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    allow_duplicate_contact: bool,
}

/// Shared state behind every handler.
pub(crate) struct Inner {
    config: GhlConfig,
    store: Mutex<Store>,
    initial: Store,
    auth: Mutex<auth::AuthState>,
    ids: IdGen,
    clock: MonotonicClock,
    limiter: SlidingWindowLimiter<(String, String)>,
    faults: Arc<FaultInjector>,
    requests: Arc<requests::RequestCounter>,
    webhooks: webhooks::Webhooks,
    settings: Mutex<Settings>,
    credentials: GhlCredentials,
    signing_key: SigningKey,
    public_key: WebhookPublicKey,
    base_url: Mutex<String>,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn allow_duplicates(&self) -> bool {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow_duplicate_contact
    }

    fn missing_status(&self) -> StatusCode {
        StatusCode::from_u16(self.config.missing_record_status).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn emit(&self, payload: Value) {
        self.webhooks.emit(payload, self.ids.uuid());
    }

    fn reset(&self) {
        *self.store() = self.initial.clone();
        self.limiter.reset();
        self.requests.clear();
        let _ = self.faults.set(self.config.faults.clone());
        self.webhooks.clear_log();
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow_duplicate_contact = self.config.allow_duplicate_contact;
    }
}

/// A configured emulator, not yet listening. Use [`start`] unless you mount the router yourself.
#[derive(Clone)]
pub struct GhlEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GhlEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhlEmulator")
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl GhlEmulator {
    pub fn new(config: GhlConfig) -> Result<Self, crate::Error> {
        config.faults.validate().map_err(crate::Error::Config)?;
        if StatusCode::from_u16(config.missing_record_status).is_err() {
            return Err(crate::Error::Config("missing_record_status".into()));
        }
        let mut seed_rng = rng_for(config.seed, 1);
        let key_bytes = IdGen::new(rng_for(config.seed, 4)).bytes32();
        let signing_key = SigningKey::from_bytes(&key_bytes);
        let public_key = WebhookPublicKey::new(signing_key.verifying_key().to_bytes());
        let seeded = seed::build(&config, &mut seed_rng);
        let ids = IdGen::new(rng_for(config.seed, 2));
        let client_id = config
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", ids.hex(24), ids.alnum(8).to_lowercase()));
        let client_secret = config.client_secret.clone().unwrap_or_else(|| ids.uuid());
        let credentials = GhlCredentials {
            location_id: seeded.location_id.clone(),
            company_id: seeded.company_id.clone(),
            user_id: seeded.user_id.clone(),
            pit: String::new(),
            readonly_pit: String::new(),
            client_id,
            client_secret,
            other_location_id: seeded.other_location_id.clone(),
            other_pit: String::new(),
        };
        let inner = Inner {
            store: Mutex::new(seeded.store.clone()),
            initial: seeded.store,
            auth: Mutex::new(auth::AuthState::default()),
            ids,
            clock: MonotonicClock::new(),
            limiter: SlidingWindowLimiter::new(config.rate_limit.clone()),
            faults: Arc::new(FaultInjector::new(
                config.faults.clone(),
                IdGen::new(rng_for(config.seed, 3)),
            )),
            requests: Arc::default(),
            webhooks: webhooks::Webhooks::new(
                signing_key.clone(),
                config.webhook_urls.clone(),
                config.webhook_delivery.clone(),
            ),
            settings: Mutex::new(Settings {
                allow_duplicate_contact: config.allow_duplicate_contact,
            }),
            credentials,
            signing_key,
            public_key,
            base_url: Mutex::new(String::new()),
            config,
        };
        let full: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
        let loc = inner.credentials.location_id.clone();
        let other = inner.credentials.other_location_id.clone();
        let pit = match inner.config.pit.clone() {
            Some(p) => {
                inner.auth_state().tokens.insert(
                    p.clone(),
                    auth::TokenInfo {
                        kind: auth::TokenKind::Pit,
                        location_id: loc.clone(),
                        scopes: full.clone(),
                        client_key: p.clone(),
                        expires_at_ms: None,
                    },
                );
                p
            }
            None => inner.mint_pit(&loc, full.clone()),
        };
        let readonly_pit = inner.mint_pit(&loc, vec![auth::SCOPE_READ.to_string()]);
        let other_pit = inner.mint_pit(&other, full);
        let mut inner = inner;
        inner.credentials.pit = pit;
        inner.credentials.readonly_pit = readonly_pit;
        inner.credentials.other_pit = other_pit;
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn credentials(&self) -> &GhlCredentials {
        &self.inner.credentials
    }

    pub fn webhook_public_key(&self) -> &WebhookPublicKey {
        &self.inner.public_key
    }

    /// The whole app: API, OAuth, and `/_sandbox/` admin routes.
    pub fn router(&self) -> Router {
        router(self.inner.clone())
    }

    pub fn faults(&self) -> FaultConfig {
        self.inner.faults.get()
    }

    /// Replaces the active faults; refuses out-of-range values.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), crate::Error> {
        self.inner.faults.set(faults).map_err(crate::Error::Config)
    }

    pub fn set_rate_limit(&self, config: RateLimitConfig) {
        self.inner.limiter.set_config(config);
    }

    pub fn set_allow_duplicate_contact(&self, allow: bool) {
        self.inner
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow_duplicate_contact = allow;
    }

    pub fn register_webhook(&self, url: impl Into<String>) {
        self.inner.webhooks.register(url.into());
    }

    /// Signs `body` with the location's webhook key, as GHL signs what it sends: lets a test
    /// or a user replay an event exactly as GHL would deliver it.
    pub fn sign_webhook(&self, body: &[u8]) -> String {
        self.inner.webhooks.sign(body)
    }

    /// Events emitted so far, as delivered (with `timestamp` and `webhookId`).
    pub fn webhook_events(&self) -> Vec<Value> {
        self.inner.webhooks.events()
    }

    /// A PIT for any location with any scopes.
    pub fn mint_pit(&self, location_id: &str, scopes: &[&str]) -> String {
        self.inner
            .mint_pit(location_id, scopes.iter().map(|s| s.to_string()).collect())
    }

    /// Everything stored, as `GET /_sandbox/state` returns it.
    pub fn state(&self) -> Value {
        self.inner.store().dump()
    }

    /// API requests received so far (admin routes not counted); [`reset`](Self::reset) clears them.
    pub fn request_counts(&self) -> RequestCounts {
        self.inner.requests.snapshot()
    }

    /// Back to the seeded data; clears rate-limit counters, faults and the event log.
    pub fn reset(&self) {
        self.inner.reset();
    }

    /// Binds `addr` and serves until [`RunningGhl::shutdown`].
    pub async fn start(self, addr: SocketAddr) -> Result<RunningGhl, crate::Error> {
        let listener = serve::bind(addr).await?;
        let bound = listener
            .local_addr()
            .map_err(|source| crate::Error::Bind { addr, source })?;
        let base = self
            .inner
            .config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        *self.inner.base_url.lock().unwrap_or_else(|e| e.into_inner()) = base;
        let server = serve::spawn(listener, self.router())?;
        Ok(RunningGhl {
            addr: server.addr,
            credentials: self.inner.credentials.clone(),
            webhook_public_key: self.inner.public_key.clone(),
            emulator: self,
            server,
        })
    }
}

/// Starts a GHL emulator on `addr` (port 0 picks a free port).
pub async fn start(addr: SocketAddr, config: GhlConfig) -> Result<RunningGhl, crate::Error> {
    GhlEmulator::new(config)?.start(addr).await
}

/// A listening emulator.
#[derive(Debug)]
pub struct RunningGhl {
    pub addr: SocketAddr,
    pub credentials: GhlCredentials,
    pub webhook_public_key: WebhookPublicKey,
    pub emulator: GhlEmulator,
    server: ServerHandle,
}

impl RunningGhl {
    /// The `tether.toml` section of a connector instance `instance` using this emulator's first
    /// location and its private integration token; its `.config` table comes last, so more keys
    /// can be appended.
    pub fn connector_toml(&self, instance: &str) -> String {
        format!(
            "[connectors.{instance}]\nplugin = \"ghl\"\n[connectors.{instance}.config]\n\
             base_url = \"{}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n",
            self.base_url(),
            self.credentials.location_id,
            self.credentials.pit
        )
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), crate::Error> {
        self.emulator.set_faults(faults)
    }

    pub fn faults(&self) -> FaultConfig {
        self.emulator.faults()
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn render_fault(limit: RateLimitConfig) -> crate::faults::FaultRenderer {
    Arc::new(move |f: Fault| match f {
        Fault::Error(status) => ApiError::internal(status).into_response(),
        _ => {
            let mut r = ApiError::too_many().into_response();
            auth::rate_headers(
                r.headers_mut(),
                &RateLimitStatus {
                    allowed: false,
                    max: limit.burst_max,
                    remaining: 0,
                    interval_ms: limit.window_ms,
                    daily_limit: limit.daily_limit,
                    daily_remaining: limit.daily_limit,
                    retry_after: Duration::ZERO,
                },
            );
            r
        }
    })
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::not_found_route(method.as_str(), uri.path()).into_response()
}

fn router(inner: Arc<Inner>) -> Router {
    use contacts as c;
    use subres as s;
    let api = Router::new()
        .route("/contacts/", get(c::list).post(c::create))
        .route("/contacts", get(c::list).post(c::create))
        .route("/contacts/upsert", post(c::upsert))
        .route("/contacts/search", post(c::search))
        .route("/contacts/search/duplicate", get(c::duplicate))
        .route("/contacts/business/{businessId}", get(c::business))
        .route(
            "/contacts/{contactId}",
            get(c::get_one).put(c::update).delete(c::delete),
        )
        .route("/contacts/{contactId}/tags", post(c::add_tags).delete(c::remove_tags))
        .route("/contacts/{contactId}/appointments", get(c::appointments))
        .route("/contacts/{contactId}/tasks", get(s::list_tasks).post(s::create_task))
        .route(
            "/contacts/{contactId}/tasks/{taskId}",
            get(s::get_task).put(s::update_task).delete(s::delete_task),
        )
        .route("/contacts/{contactId}/tasks/{taskId}/completed", put(s::complete_task))
        .route("/contacts/{contactId}/notes", get(s::list_notes).post(s::create_note))
        .route(
            "/contacts/{contactId}/notes/{id}",
            get(s::get_note).put(s::update_note).delete(s::delete_note),
        )
        .route("/locations/{locationId}", get(c::location))
        .route("/locations/{locationId}/customFields", get(c::custom_fields))
        .route_layer(axum::middleware::from_fn_with_state(inner.clone(), auth::api_guard));
    let oauth = Router::new()
        .route("/oauth/chooselocation", get(auth::authorize))
        .route("/v2/oauth/chooselocation", get(auth::authorize))
        .route("/oauth/token", post(auth::token));
    let faults = FaultLayer {
        injector: inner.faults.clone(),
        render: render_fault(inner.config.rate_limit.clone()),
        exempt_prefix: "/_sandbox",
    };
    api.merge(oauth)
        .merge(admin::router())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(faults, crate::faults::middleware))
        .layer(axum::middleware::from_fn_with_state(
            inner.requests.clone(),
            requests::middleware,
        ))
        .with_state(inner)
}
