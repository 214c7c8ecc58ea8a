//! The Moloni classic API emulator (shared/reference/moloni/NOTES.md): `/grant/` with the password,
//! authorization_code and rotating refresh_token grants and the 3-failed-logins lockout,
//! customers, invoices and documents with Moloni's paging (50-row cap), validation arrays (plain or
//! `human_errors`), `json=true` or form bodies, seeding and fault injection. Routes answer with and
//! without the `/v1` prefix and the trailing slash.
//!
//! Where the notes are uncertain the emulator picks what a real client must survive: a refused or
//! expired access token is HTTP 401 `{"error": "invalid_token"}`, a refresh token works once,
//! update demands the full record like insert, `getModifiedSince` includes its bound, unknown ids
//! on getOne answer `[]`, and `documents/count` gives its count as a string (as recorded).
//!
//! `GET /authorize/` gives consent at once and redirects with `?code=` (the user's login page is
//! not emulated).
//!
//! Admin routes (no auth, never faulted or rate limited):
//! - `GET /_sandbox/credentials`
//! - `GET|PUT /_sandbox/faults`: [`FaultConfig`] as camelCase JSON
//! - `GET|PUT /_sandbox/rate-limit`: [`RateLimitConfig`]
//! - `POST /_sandbox/reset`: seeded data back; tokens, lockout, logs and faults cleared
//! - `GET /_sandbox/state`: the company, customers (with `_modified`), documents, settings lists
//! - `POST /_sandbox/expire-tokens`: every access token expires now
//! - `POST /_sandbox/authorization-codes`: `{"redirect_uri"}` → `{"code"}` (consent given)
//! - `GET /_sandbox/requests`: every data call (`path`, `params` without the token)
//! - `GET /_sandbox/logins`: every `/grant/` call (`grant_type`, `status`)
//! - `POST /_sandbox/documents/{id}/pay`: a closed invoice paid in full (`reconciled_value`)
//! - `POST /_sandbox/documents/{id}/cancel`: a closed invoice voided (`status` [`STATUS_VOIDED`])
//!
//! How a voided document reads is not in the reference (it names no call and no field): the
//! emulator keeps the document with `status` 2 ([`STATUS_VOIDED`]), the plugin's one assumption too.

mod api;
mod auth;
mod model;
mod seed;

pub use seed::nif_from;
mod time;

pub use model::{Invalid, COUNTRIES, PORTUGAL, SPAIN, STATUS_CLOSED, STATUS_DRAFT, STATUS_VOIDED};
pub use seed::{nif, valid_nif};
pub use time::{lisbon, parse as parse_time};

use crate::faults::{Fault, FaultConfig, FaultInjector, FaultLayer};
use crate::ids::{rng_for, IdGen};
use crate::ratelimit::{RateLimitConfig, SlidingWindowLimiter};
use crate::serve::{self, ServerHandle};
use crate::timefmt::MonotonicClock;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use model::Store;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How to run the emulator. `Default` is an empty company with Moloni's documented limits.
#[derive(Debug, Clone)]
pub struct MoloniConfig {
    /// Makes credentials, ids, seeded data and random faults reproducible.
    pub seed: Option<u64>,
    pub seed_customers: usize,
    /// Invoices spread over the seeded customers in the last 90 days.
    pub seed_invoices: usize,
    /// Moloni publishes no numbers; the default is generous and refusals are plain 429s.
    pub rate_limit: RateLimitConfig,
    pub faults: FaultConfig,
    /// `expires_in` of access tokens (Moloni: 3600).
    pub access_token_ttl: Duration,
    /// Refresh tokens (14 days per the Laravel client).
    pub refresh_token_ttl: Duration,
    /// Failed password logins before the lockout (3 since 2024-03-25).
    pub login_attempts: u32,
    pub login_cooldown: Duration,
    /// Fixed credentials instead of seed-derived ones.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for MoloniConfig {
    fn default() -> Self {
        Self {
            seed: None,
            seed_customers: 0,
            seed_invoices: 0,
            rate_limit: RateLimitConfig {
                enabled: true,
                burst_max: 300,
                window_ms: 60_000,
                daily_limit: 100_000,
            },
            faults: FaultConfig::default(),
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(14 * 86_400),
            login_attempts: 3,
            login_cooldown: Duration::from_secs(300),
            client_id: None,
            client_secret: None,
            username: None,
            password: None,
        }
    }
}

impl MoloniConfig {
    /// A reproducible company with `customers` customers and about one invoice per two.
    pub fn seeded(seed: u64, customers: usize) -> Self {
        Self {
            seed: Some(seed),
            seed_customers: customers,
            seed_invoices: customers / 2,
            ..Self::default()
        }
    }
}

/// What a client needs: the developer credentials, the account login, the company, and the ids a
/// new customer must name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoloniCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    pub company_id: u64,
    /// A valid `payment_method_id` (required on customer insert).
    pub payment_method_id: u64,
    pub maturity_date_id: u64,
    pub document_set_id: u64,
    pub tax_id: u64,
}

pub(crate) struct Inner {
    config: MoloniConfig,
    store: Mutex<Store>,
    initial: Store,
    auth: Mutex<auth::AuthState>,
    ids: IdGen,
    clock: MonotonicClock,
    limiter: SlidingWindowLimiter<()>,
    faults: Arc<FaultInjector>,
    credentials: MoloniCredentials,
    requests: Mutex<Vec<Value>>,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn auth_state(&self) -> MutexGuard<'_, auth::AuthState> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, to the second (Moloni's resolution), strictly increasing in milliseconds.
    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn log_request(&self, entry: Value) {
        let mut log = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= 20_000 {
            log.drain(..10_000);
        }
        log.push(entry);
    }

    fn reset(&self) {
        *self.store() = self.initial.clone();
        *self.auth_state() = auth::AuthState::default();
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.limiter.reset();
        let _ = self.faults.set(self.config.faults.clone());
    }
}

/// A configured emulator, not yet listening.
#[derive(Clone)]
pub struct MoloniEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MoloniEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoloniEmulator")
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl MoloniEmulator {
    pub fn new(config: MoloniConfig) -> Result<Self, crate::Error> {
        config.faults.validate().map_err(crate::Error::Config)?;
        if config.login_attempts == 0 {
            return Err(crate::Error::Config("login_attempts must be at least 1".into()));
        }
        let ids = IdGen::new(rng_for(config.seed, 12));
        let mut rng = rng_for(config.seed, 11);
        let company_id = rng.gen_range(100_000..999_999);
        let store = Store::empty(company_id, rng.gen_range(80_000_000..90_000_000));
        let clock = MonotonicClock::new();
        let store = seed::build(
            store,
            &mut rng,
            config.seed_customers,
            config.seed_invoices,
            clock.now(),
        );
        let credentials = MoloniCredentials {
            client_id: config
                .client_id
                .clone()
                .unwrap_or_else(|| format!("tether-{}", ids.alnum(8).to_lowercase())),
            client_secret: config.client_secret.clone().unwrap_or_else(|| ids.alnum(40)),
            username: config.username.clone().unwrap_or_else(|| "demo@tether.test".into()),
            password: config.password.clone().unwrap_or_else(|| ids.alnum(16)),
            company_id,
            payment_method_id: store.payment_methods[0].0,
            maturity_date_id: store.maturity_dates[0].0,
            document_set_id: store.document_set.0,
            tax_id: store.vat_tax_id,
        };
        let inner = Inner {
            store: Mutex::new(store.clone()),
            initial: store,
            auth: Mutex::new(auth::AuthState::default()),
            ids,
            clock,
            limiter: SlidingWindowLimiter::new(config.rate_limit.clone()),
            faults: Arc::new(FaultInjector::new(
                config.faults.clone(),
                IdGen::new(rng_for(config.seed, 13)),
            )),
            credentials,
            requests: Mutex::new(Vec::new()),
            config,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn credentials(&self) -> &MoloniCredentials {
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

    /// Everything stored, as `GET /_sandbox/state` returns it.
    pub fn state(&self) -> Value {
        self.inner.store().dump()
    }

    pub fn reset(&self) {
        self.inner.reset();
    }

    /// Every access token expires now (refresh tokens stay valid).
    pub fn expire_access_tokens(&self) {
        self.inner.auth_state().expire_access();
    }

    /// An authorization code for `redirect_uri`, as if the user had consented.
    pub fn authorization_code(&self, redirect_uri: &str) -> String {
        let code = self.inner.ids.hex(40);
        self.inner
            .auth_state()
            .codes
            .insert(code.clone(), redirect_uri.to_owned());
        code
    }

    /// Every data call so far: `{"path", "params"}` (the token left out).
    pub fn requests(&self) -> Vec<Value> {
        self.inner.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every `/grant/` call so far: `{"grant_type", "status"}`.
    pub fn logins(&self) -> Vec<Value> {
        self.inner.auth_state().log.clone()
    }

    /// One customer as the API returns it.
    pub fn customer(&self, customer_id: u64) -> Option<Value> {
        let store = self.inner.store();
        store.customers.get(&customer_id).map(|c| store.render_customer(c))
    }

    pub fn customers(&self) -> Vec<Value> {
        let store = self.inner.store();
        store.customers.values().map(|c| store.render_customer(c)).collect()
    }

    /// A customer created as if in Moloni's web app, with the same validation as the API.
    pub fn add_customer(&self, fields: Value) -> Result<u64, Vec<Invalid>> {
        api::insert_customer(&self.inner, as_map(fields))
    }

    /// Changes to a customer as if made in Moloni's web app (`fields` over the current record).
    pub fn edit_customer(&self, customer_id: u64, fields: Value) -> Result<(), Vec<Invalid>> {
        let current = {
            let store = self.inner.store();
            match store.customers.get(&customer_id) {
                Some(c) => c.fields.clone(),
                None => return Err(vec![Invalid::bad_value("customer_id", "must be valid")]),
            }
        };
        let mut merged = current;
        merged.extend(as_map(fields));
        api::update_customer(&self.inner, customer_id, merged).map(|_| ())
    }

    /// An FT invoice issued now, dated `date` and due `due` (`YYYY-MM-DD`), from `{name, qty, price}` lines.
    pub fn add_invoice(&self, customer_id: u64, date: &str, due: &str, lines: Vec<Value>) -> Result<u64, Vec<Invalid>> {
        self.add_invoice_with_status(customer_id, date, due, lines, 1)
    }

    /// Like [`MoloniEmulator::add_invoice`], with a `status`: [`STATUS_DRAFT`], [`STATUS_CLOSED`] (issued).
    pub fn add_invoice_with_status(
        &self,
        customer_id: u64,
        date: &str,
        due: &str,
        lines: Vec<Value>,
        status: u64,
    ) -> Result<u64, Vec<Invalid>> {
        let date_ms = time::parse(date).ok_or_else(|| vec![Invalid::bad_value("date", "must be a date")])?;
        let due_ms = time::parse(due).ok_or_else(|| vec![Invalid::bad_value("expiration_date", "must be a date")])?;
        let now = self.inner.now();
        let mut store = self.inner.store();
        let doc = store.new_invoice(customer_id, date_ms, due_ms, &lines, status, now)?;
        let id = doc.id;
        store.documents.insert(id, doc);
        Ok(id)
    }

    /// A closed invoice paid in full, as if a receipt were reconciled against it in the web app:
    /// `reconciled_value` becomes `net_value` and `lastmodified` moves.
    pub fn pay_invoice(&self, document_id: u64) -> Result<(), Vec<Invalid>> {
        let now = self.inner.now();
        self.inner.store().pay_document(document_id, now)
    }

    /// A closed invoice voided ("anulado") as if in the web app: `status` becomes
    /// [`STATUS_VOIDED`] and `lastmodified` moves; the document and its values stay.
    pub fn cancel_invoice(&self, document_id: u64) -> Result<(), Vec<Invalid>> {
        let now = self.inner.now();
        self.inner.store().void_document(document_id, now)
    }

    pub async fn start(self, addr: SocketAddr) -> Result<RunningMoloni, crate::Error> {
        let listener = serve::bind(addr).await?;
        let server = serve::spawn(listener, self.router())?;
        Ok(RunningMoloni {
            addr: server.addr,
            credentials: self.inner.credentials.clone(),
            emulator: self,
            server,
        })
    }
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Starts a Moloni emulator on `addr` (port 0 picks a free port).
pub async fn start(addr: SocketAddr, config: MoloniConfig) -> Result<RunningMoloni, crate::Error> {
    MoloniEmulator::new(config)?.start(addr).await
}

#[derive(Debug)]
pub struct RunningMoloni {
    pub addr: SocketAddr,
    pub credentials: MoloniCredentials,
    pub emulator: MoloniEmulator,
    server: ServerHandle,
}

impl RunningMoloni {
    /// The `tether.toml` section of a Moloni connector instance `instance` on this emulator; its
    /// `.config` table comes last, so more keys can be appended.
    pub fn connector_toml(&self, instance: &str) -> String {
        let c = &self.credentials;
        format!(
            "[connectors.{instance}]\nplugin = \"moloni\"\n[connectors.{instance}.config]\n\
             base_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nusername = \"{}\"\n\
             password = \"{}\"\ncompany_id = {}\n",
            self.base_url(),
            c.client_id,
            c.client_secret,
            c.username,
            c.password,
            c.company_id
        )
    }

    /// `http://127.0.0.1:PORT`, no trailing slash (the `/v1` prefix is optional).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), crate::Error> {
        self.emulator.set_faults(faults)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn render_fault() -> crate::faults::FaultRenderer {
    Arc::new(move |f: Fault| match f {
        Fault::Error(status) => json_response(
            status,
            &json!({"error": "server_error", "error_description": status.canonical_reason().unwrap_or("error")}),
        ),
        _ => json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "too_many_requests", "error_description": "Too Many Requests"}),
        ),
    })
}

fn router(inner: Arc<Inner>) -> Router {
    let faults = FaultLayer {
        injector: inner.faults.clone(),
        render: render_fault(),
        exempt_prefix: "/_sandbox",
    };
    let api = api::router();
    Router::new()
        .merge(api.clone())
        .nest("/v1", api)
        .merge(api::admin_router())
        .layer(axum::middleware::from_fn_with_state(faults, crate::faults::middleware))
        .with_state(inner)
}
