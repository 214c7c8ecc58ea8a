//! The AroFlo zone API emulator (`shared/reference/aroflo/NOTES.md`, part 2).
//!
//! One endpoint, `/`: GET reads a zone, POST writes `postxml`; anything else is status 5.
//! Every call is signed (HMAC-SHA512, checked over the raw string received, within a timestamp
//! window); failures are status -99999. The format follows `Accept`: `text/json` gets JSON,
//! anything else XML under `<imsapi>` (AroFlo's default). Statuses travel in the body with HTTP 200, except
//! the per-second limit, which is HTTP 429 with status 429 (a client must handle both).
//!
//! Zones: `clients` (join `contacts`, `notes`), `contacts`, `tasks` (join `notes`),
//! `clientnotes`, `users`, `lastupdate`. WHERE with and/or, brackets, `=`, `<`, `>`, `!=`,
//! `IN`, `NOT IN` on each zone's documented fields; without WHERE the zone's 30-day default
//! filter applies and the status message says so. `order`, `join`, `page`, `pageSize` (≤ 500).
//!
//! Admin routes (no auth, never faulted or rate limited):
//! - `GET /_sandbox/credentials`; `GET /_sandbox/state`; `POST /_sandbox/reset`
//! - `GET|PUT /_sandbox/faults`: [`FaultConfig`]
//! - `GET|PUT /_sandbox/rate-limit`: [`AroFloLimits`] (resets the counters)
//! - `POST /_sandbox/ui/{zone}`: a raw postxml body applied as if typed in AroFlo's UI
//!   (clients written there become `postable`)

mod auth;
mod model;
mod post;
mod query;
mod seed;
mod xml;

pub use auth::AroFloCredentials;
pub use seed::abn_is_valid;

use crate::faults::{Fault, FaultConfig, FaultInjector, FaultLayer};
use crate::ids::{rng_for, IdGen};
use crate::ratelimit::{RateLimitConfig, SlidingWindowLimiter};
use crate::serve::{self, ServerHandle};
use crate::timefmt::{now_ms, MonotonicClock};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use model::{FieldValue, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// AroFlo's documented limits (the Limits section; the status table's 60/min and 1/s variant is
/// [`AroFloLimits::strict`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AroFloLimits {
    pub enabled: bool,
    pub per_second: u32,
    pub per_minute: u32,
    /// Requests a day; `lastupdate` reads do not count.
    pub daily: u64,
    /// GETs of one record by id, a separate daily budget.
    pub single_id_daily: u64,
}

impl Default for AroFloLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 3,
            per_minute: 120,
            daily: 2_000,
            single_id_daily: 20_000,
        }
    }
}

impl AroFloLimits {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The status table's stricter reading: 60 a minute, 1 a second.
    pub fn strict() -> Self {
        Self {
            per_second: 1,
            per_minute: 60,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct AroFloConfig {
    pub seed: Option<u64>,
    /// Clients to create at start, with contacts, tasks (with notes) and client notes.
    pub seed_clients: usize,
    pub rate_limit: AroFloLimits,
    pub faults: FaultConfig,
    /// How far `afdatetimeutc` may be from the emulator's clock (AroFlo: "a small window").
    pub timestamp_tolerance: Duration,
    /// Fixed credentials, e.g. for a `tether sandbox` whose config must survive restarts.
    pub credentials: Option<AroFloCredentials>,
}

impl Default for AroFloConfig {
    fn default() -> Self {
        Self {
            seed: None,
            seed_clients: 0,
            rate_limit: AroFloLimits::default(),
            faults: FaultConfig::default(),
            timestamp_tolerance: Duration::from_secs(300),
            credentials: None,
        }
    }
}

impl AroFloConfig {
    pub fn seeded(seed: u64, clients: usize) -> Self {
        Self {
            seed: Some(seed),
            seed_clients: clients,
            ..Self::default()
        }
    }
}

struct Limiters {
    per_second: SlidingWindowLimiter<String>,
    per_minute: SlidingWindowLimiter<String>,
    daily: SlidingWindowLimiter<String>,
    single_id: SlidingWindowLimiter<String>,
    config: Mutex<AroFloLimits>,
}

impl Limiters {
    fn new(limits: AroFloLimits) -> Self {
        let l = Self {
            per_second: SlidingWindowLimiter::new(RateLimitConfig::default()),
            per_minute: SlidingWindowLimiter::new(RateLimitConfig::default()),
            daily: SlidingWindowLimiter::new(RateLimitConfig::default()),
            single_id: SlidingWindowLimiter::new(RateLimitConfig::default()),
            config: Mutex::new(AroFloLimits::default()),
        };
        l.set(limits);
        l
    }

    fn set(&self, limits: AroFloLimits) {
        let window = |burst: u32, window_ms: u64, daily: u64| RateLimitConfig {
            enabled: limits.enabled,
            burst_max: burst,
            window_ms,
            daily_limit: daily,
        };
        self.per_second.set_config(window(limits.per_second, 1_000, u64::MAX));
        self.per_minute.set_config(window(limits.per_minute, 60_000, u64::MAX));
        self.daily.set_config(window(u32::MAX, 1, limits.daily));
        self.single_id.set_config(window(u32::MAX, 1, limits.single_id_daily));
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = limits;
        self.reset();
    }

    fn get(&self) -> AroFloLimits {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn reset(&self) {
        self.per_second.reset();
        self.per_minute.reset();
        self.daily.reset();
        self.single_id.reset();
    }
}

/// What a request costs: which daily budget it draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Daily,
    SingleId,
    /// `lastupdate` does not count against the daily limit.
    Free,
}

pub(crate) struct Inner {
    config: AroFloConfig,
    store: Mutex<Store>,
    initial: Store,
    ids: IdGen,
    clock: MonotonicClock,
    limits: Limiters,
    faults: Arc<FaultInjector>,
    credentials: AroFloCredentials,
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset(&self) {
        *self.store() = self.initial.clone();
        self.limits.reset();
        let _ = self.faults.set(self.config.faults.clone());
    }
}

/// A configured emulator, not yet listening.
#[derive(Clone)]
pub struct AroFloEmulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AroFloEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AroFloEmulator")
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

// RNG streams of their own, so a shared seed gives the GHL emulator unrelated values.
const STREAM_SEED: u64 = 0xA0F1_0001;
const STREAM_IDS: u64 = 0xA0F1_0002;
const STREAM_FAULTS: u64 = 0xA0F1_0003;
const STREAM_SEED_IDS: u64 = 0xA0F1_0004;

fn token(ids: &IdGen, len: usize) -> String {
    use base64::Engine;
    let bytes = ids.bytes32();
    base64::engine::general_purpose::STANDARD.encode(&bytes[..len.min(32)])
}

impl AroFloEmulator {
    pub fn new(config: AroFloConfig) -> Result<Self, crate::Error> {
        config.faults.validate().map_err(crate::Error::Config)?;
        let ids = IdGen::new(rng_for(config.seed, STREAM_IDS));
        let credentials = config.credentials.clone().unwrap_or_else(|| AroFloCredentials {
            uencoded: token(&ids, 12),
            pencoded: token(&ids, 24),
            org_encoded: token(&ids, 12),
            secret_key: ids.hex(64),
        });
        let mut seed_rng = rng_for(config.seed, STREAM_SEED);
        let seed_ids = IdGen::new(rng_for(config.seed, STREAM_SEED_IDS));
        let store = seed::build(&mut seed_rng, &seed_ids, now_ms(), config.seed_clients);
        Ok(Self {
            inner: Arc::new(Inner {
                store: Mutex::new(store.clone()),
                initial: store,
                ids,
                clock: MonotonicClock::new(),
                limits: Limiters::new(config.rate_limit.clone()),
                faults: Arc::new(FaultInjector::new(
                    config.faults.clone(),
                    IdGen::new(rng_for(config.seed, STREAM_FAULTS)),
                )),
                credentials,
                config,
            }),
        })
    }

    pub fn credentials(&self) -> &AroFloCredentials {
        &self.inner.credentials
    }

    pub fn router(&self) -> Router {
        router(self.inner.clone())
    }

    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), crate::Error> {
        self.inner.faults.set(faults).map_err(crate::Error::Config)
    }

    pub fn faults(&self) -> FaultConfig {
        self.inner.faults.get()
    }

    /// Replaces the limits and forgets usage so far.
    pub fn set_rate_limit(&self, limits: AroFloLimits) {
        self.inner.limits.set(limits);
    }

    /// Everything stored, as `GET /_sandbox/state` returns it.
    pub fn state(&self) -> Value {
        self.inner.store().dump()
    }

    /// Applies postxml as a user of AroFlo's UI would: no signing, no limits; clients written
    /// become `postable`. Returns `postresults`.
    pub fn ui_post(&self, zone: &str, xml: &str) -> Result<Value, String> {
        ui_post(&self.inner, zone, xml)
    }

    /// The org (business unit) and task type ids new tasks can use.
    pub fn task_defaults(&self) -> (String, String) {
        let store = self.inner.store();
        (
            store.orgs.first().map(|o| o.id.clone()).unwrap_or_default(),
            store.task_types.first().map(|t| t.id.clone()).unwrap_or_default(),
        )
    }

    pub fn reset(&self) {
        self.inner.reset();
    }

    pub async fn start(self, addr: SocketAddr) -> Result<RunningAroFlo, crate::Error> {
        let listener = serve::bind(addr).await?;
        let server = serve::spawn(listener, self.router())?;
        Ok(RunningAroFlo {
            addr: server.addr,
            credentials: self.inner.credentials.clone(),
            emulator: self,
            server,
        })
    }
}

/// Starts an AroFlo emulator on `addr` (port 0 picks a free port).
pub async fn start(addr: SocketAddr, config: AroFloConfig) -> Result<RunningAroFlo, crate::Error> {
    AroFloEmulator::new(config)?.start(addr).await
}

#[derive(Debug)]
pub struct RunningAroFlo {
    pub addr: SocketAddr,
    pub credentials: AroFloCredentials,
    pub emulator: AroFloEmulator,
    server: ServerHandle,
}

impl RunningAroFlo {
    /// `http://127.0.0.1:PORT/`: AroFlo's one endpoint is the root.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn envelope(status: i64, message: &str, zone_response: Option<Value>) -> Value {
    let mut body = json!({"status": status.to_string(), "statusmessage": message});
    if let Some(z) = zone_response {
        body["zoneresponse"] = z;
    }
    body
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The element name for one member of a list: `clients` → `client`.
fn singular(name: &str) -> &str {
    name.strip_suffix('s').filter(|s| !s.is_empty()).unwrap_or(name)
}

fn xml_element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (key, child) in map {
                xml_element(out, key, child);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for item in items {
                xml_element(out, singular(name), item);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(text) => out.push_str(&format!("<{name}>{}</{name}>", escape(text))),
        Value::Null => out.push_str(&format!("<{name}/>")),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

/// AroFlo's default format: the same envelope under an `<imsapi>` root.
fn to_xml(body: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    xml_element(&mut out, "imsapi", body);
    out
}

tokio::task_local! {
    /// Whether the current request asked for `text/json`; anything else gets XML, as AroFlo does.
    static WANTS_JSON: bool;
}

fn respond(http: StatusCode, body: Value, extra: Vec<(&'static str, String)>) -> Response {
    let json = WANTS_JSON.try_with(|j| *j).unwrap_or(true);
    let (text, content_type) = if json {
        (body.to_string(), "text/json; charset=utf-8")
    } else {
        (to_xml(&body), "text/xml; charset=utf-8")
    };
    let mut response = (http, text).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    if let Some(status) = body
        .get("status")
        .and_then(Value::as_str)
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert("status", status);
    }
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    response
}

fn refuse(status: i64, message: &str) -> Response {
    respond(StatusCode::OK, envelope(status, message, None), Vec::new())
}

fn render_fault() -> crate::faults::FaultRenderer {
    Arc::new(|f: Fault| match f {
        Fault::Error(status) => (status, "<html><body>Service Unavailable</body></html>").into_response(),
        _ => respond(
            StatusCode::TOO_MANY_REQUESTS,
            envelope(429, "Too Many Requests Per Second (max x3)", None),
            vec![("retry-after", "1".into())],
        ),
    })
}

/// A zone's documented query surface.
struct ZoneSpec {
    name: &'static str,
    id_field: &'static str,
    where_fields: &'static [&'static str],
    order_fields: &'static [&'static str],
    joins: &'static [&'static str],
    /// The field of the zone's default filter (`> now - 30 days`).
    default_field: &'static str,
}

const ZONES: &[ZoneSpec] = &[
    ZoneSpec {
        name: "clients",
        id_field: "clientid",
        where_fields: &[
            "clientid",
            "archived",
            "clientname",
            "postable",
            "datecreated",
            "dateinserted",
            "datetimeinserted",
            "lastupdateutc",
            "lastupdatedatetimeutc",
        ],
        order_fields: &["clientname", "datecreated", "lastupdatedatetimeutc"],
        joins: &[
            "locations",
            "locationcustomfields",
            "contacts",
            "customfields",
            "priorities",
            "notes",
            "documentsandphotos",
        ],
        default_field: "createdutc",
    },
    ZoneSpec {
        name: "contacts",
        id_field: "userid",
        where_fields: &["userid", "archived", "contacttype", "createdutc", "createddatetimeutc"],
        order_fields: &["createdutc"],
        joins: &["customfields", "notes", "documentsandphotos"],
        default_field: "createdutc",
    },
    ZoneSpec {
        name: "tasks",
        id_field: "taskid",
        where_fields: &[
            "taskid",
            "clientname",
            "orgname",
            "orgid",
            "jobnumber",
            "tasktypeid",
            "status",
            "daterequested",
            "datetimerequested",
            "datecompleted",
            "datetimecompleted",
            "lastupdatedutc",
            "lastupdateddatetimeutc",
            "duedate",
            "duedatetime",
            "linkprocessed",
            "createdutc",
            "createddatetimeutc",
        ],
        order_fields: &["clientname", "orgname", "daterequested", "datecompleted", "lastupdated"],
        joins: &[
            "documentsandphotos",
            "notes",
            "tasknotes",
            "assignedhistory",
            "material",
            "labour",
            "expense",
            "purchaseorders",
            "assets",
            "customfields",
            "location",
            "locationcustomfields",
            "project",
            "tasktotals",
            "substatus",
            "salesperson",
            "quote",
        ],
        default_field: "datetimerequested",
    },
    ZoneSpec {
        name: "clientnotes",
        id_field: "noteid",
        where_fields: &["noteid", "createdutc"],
        order_fields: &["dateposted"],
        joins: &[],
        default_field: "createdutc",
    },
    ZoneSpec {
        name: "users",
        id_field: "userid",
        where_fields: &[
            "userid",
            "givennames",
            "surname",
            "position",
            "createdutc",
            "createddatetimeutc",
            "lastupdatedutc",
            "lastupdateddatetimeutc",
            "archived",
        ],
        order_fields: &["givennames", "surname"],
        joins: &[
            "customfields",
            "permissiongroups",
            "documentsandphotos",
            "notes",
            "trackingcentredefaults",
            "featureaccess",
        ],
        default_field: "createddatetimeutc",
    },
    ZoneSpec {
        name: "lastupdate",
        id_field: "zoneid",
        where_fields: &["zonename", "zoneid", "lastupdateutc"],
        order_fields: &["lastupdateutc"],
        joins: &[],
        default_field: "lastupdateutc",
    },
];

/// One record of a zone, by position in the store.
#[derive(Debug, Clone, Copy)]
enum Item {
    Client(usize),
    Contact(usize, usize),
    Task(usize),
    ClientNote(usize),
    User(usize),
    LastUpdate(usize),
}

fn items(store: &Store, zone: &str) -> Vec<Item> {
    match zone {
        "clients" => (0..store.clients.len()).map(Item::Client).collect(),
        "contacts" => store
            .clients
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| (0..c.contacts.len()).map(move |k| Item::Contact(ci, k)))
            .collect(),
        "tasks" => (0..store.tasks.len()).map(Item::Task).collect(),
        "clientnotes" => (0..store.clientnotes.len()).map(Item::ClientNote).collect(),
        "users" => (0..store.users.len()).map(Item::User).collect(),
        "lastupdate" => (0..store.lastupdate.len()).map(Item::LastUpdate).collect(),
        _ => Vec::new(),
    }
}

fn field(store: &Store, item: Item, name: &str) -> Option<FieldValue> {
    match item {
        Item::Client(i) => store.clients[i].field(name),
        Item::Contact(c, k) => store.clients[c].contacts[k].field(name),
        Item::Task(i) => store.tasks[i].field(store, name),
        Item::ClientNote(i) => store.clientnotes[i].field(name),
        Item::User(i) => store.users[i].field(name),
        Item::LastUpdate(i) => store.lastupdate[i].field(name),
    }
}

fn render(store: &Store, item: Item, joins: &[String]) -> Value {
    match item {
        Item::Client(i) => store.clients[i].render(store, joins),
        Item::Contact(c, k) => store.clients[c].contacts[k].render(&store.clients[c]),
        Item::Task(i) => store.tasks[i].render(store, joins),
        Item::ClientNote(i) => store.clientnotes[i].render(store),
        Item::User(i) => store.users[i].render(store),
        Item::LastUpdate(i) => store.lastupdate[i].render(),
    }
}

fn compare_values(a: &Option<FieldValue>, b: &Option<FieldValue>) -> std::cmp::Ordering {
    use FieldValue::*;
    match (a, b) {
        (Some(Text(x)), Some(Text(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(Bool(x)), Some(Bool(y))) => x.cmp(y),
        (Some(Time(x) | Day(x)), Some(Time(y) | Day(y))) => x.cmp(y),
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    }
}

const INVALID_WHERE: i64 = 1001;
const DEFAULT_WINDOW_MS: i64 = 30 * 86_400_000;

/// A GET: the zone response and its status message, or a refusal.
fn read(
    inner: &Inner,
    spec: &ZoneSpec,
    pairs: &[(String, String)],
) -> Result<(Value, &'static str, Budget), (i64, String)> {
    let values = |key: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let wheres = values("where");
    let expr = query::parse_where(&wheres, spec.where_fields)
        .map_err(|e| (INVALID_WHERE, format!("Invalid WHERE Clause - {e}")))?;
    let mut orders = Vec::new();
    for order in values("order") {
        let (field, direction) = order.split_once('|').unwrap_or((&order, "asc"));
        let field = field.trim().to_ascii_lowercase();
        if !spec.order_fields.contains(&field.as_str()) {
            return Err((
                INVALID_WHERE,
                format!("Invalid ORDER Clause - `{field}` cannot be ordered on"),
            ));
        }
        let descending = match direction.trim().to_ascii_lowercase().as_str() {
            "asc" => false,
            "desc" => true,
            other => {
                return Err((
                    INVALID_WHERE,
                    format!("Invalid ORDER Clause - `{other}` is not asc/desc"),
                ))
            }
        };
        orders.push((field, descending));
    }
    let mut joins = Vec::new();
    for join in values("join") {
        for area in join
            .split(',')
            .map(|a| a.trim().to_ascii_lowercase())
            .filter(|a| !a.is_empty())
        {
            if !spec.joins.contains(&area.as_str()) {
                return Err((
                    INVALID_WHERE,
                    format!("Invalid JOIN - `{area}` cannot be joined to {}", spec.name),
                ));
            }
            joins.push(area);
        }
    }
    let number = |key: &str, default: usize| {
        values(key)
            .first()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(default)
    };
    let page = number("page", 1).max(1);
    let page_size = number("pagesize", 500).clamp(1, 500);
    let now = inner.clock.now();
    let store = inner.store();
    let mut matched = Vec::new();
    for item in items(&store, spec.name) {
        let keep = match &expr {
            Some(expr) => expr
                .matches(&|name: &str| field(&store, item, name))
                .map_err(|e| (INVALID_WHERE, format!("Invalid WHERE Clause - {e}")))?,
            None => match field(&store, item, spec.default_field) {
                Some(FieldValue::Time(ms) | FieldValue::Day(ms)) => ms > now - DEFAULT_WINDOW_MS,
                _ => false,
            },
        };
        if keep {
            matched.push(item);
        }
    }
    for (field_name, descending) in orders.iter().rev() {
        matched.sort_by(|a, b| {
            let ordering = compare_values(&field(&store, *a, field_name), &field(&store, *b, field_name));
            if *descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    let rows: Vec<Value> = matched
        .iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(|item| render(&store, *item, &joins))
        .collect();
    let budget = match (&expr, spec.name) {
        (_, "lastupdate") => Budget::Free,
        (Some(e), _) if e.single_id(spec.id_field) => Budget::SingleId,
        _ => Budget::Daily,
    };
    let message = if expr.is_some() {
        "Login OK"
    } else {
        "Login OK. No WHERE clause found, default filter applied."
    };
    let count = rows.len();
    Ok((
        json!({
            spec.name: rows,
            "maxpageresults": page_size.to_string(),
            "pagenumber": page.to_string(),
            "currentpageresults": count,
            "queryresponsetimes": {spec.name: 3},
            "generatedisplayresponsetime": 5,
        }),
        message,
        budget,
    ))
}

fn ui_post(inner: &Inner, zone: &str, xml: &str) -> Result<Value, String> {
    let root = xml::parse(xml)?;
    let mut store = inner.store();
    let user_id = store.users.first().map(|u| u.userid.clone()).unwrap_or_default();
    let now = inner.clock.now();
    let before: Vec<String> = store.clients.iter().map(|c| c.clientid.clone()).collect();
    let results = post::Post {
        store: &mut store,
        ids: &inner.ids,
        now_ms: now,
        user_id,
    }
    .apply(&zone.to_ascii_lowercase(), &root);
    // The UI marks a client postable whenever it is created or changed there.
    for client in store
        .clients
        .iter_mut()
        .filter(|c| c.updated_ms == now || !before.contains(&c.clientid))
    {
        client.postable = true;
    }
    Ok(results.render())
}

/// Rate limits for one authenticated call; `Err` is the refusal response.
fn charge(inner: &Inner, budget: Budget) -> Result<Vec<(&'static str, String)>, Box<Response>> {
    let key = inner.credentials.org_encoded.clone();
    let limits = inner.limits.get();
    let second = inner.limits.per_second.check(&key);
    if !second.allowed {
        return Err(Box::new(respond(
            StatusCode::TOO_MANY_REQUESTS,
            envelope(429, "Too Many Requests Per Second (max x3)", None),
            vec![("retry-after", second.retry_after.as_secs().max(1).to_string())],
        )));
    }
    let minute = inner.limits.per_minute.check(&key);
    if !minute.allowed {
        return Err(Box::new(respond(
            StatusCode::OK,
            envelope(6, "Exceeded Rate Limit - Requests per Minute", None),
            vec![
                ("x-ratelimit-limit", limits.per_minute.to_string()),
                ("x-ratelimit-remaining", "0".into()),
            ],
        )));
    }
    let mut headers = vec![
        ("x-ratelimit-limit", limits.per_minute.to_string()),
        ("x-ratelimit-remaining", minute.remaining.to_string()),
    ];
    let (limiter, limit_name, remaining_name, limit) = match budget {
        Budget::Free => return Ok(headers),
        Budget::Daily => (
            &inner.limits.daily,
            "x-ratelimit-daily-limit",
            "x-ratelimit-daily-remaining",
            limits.daily,
        ),
        Budget::SingleId => (
            &inner.limits.single_id,
            "x-ratelimit-secondary-daily-limit",
            "x-ratelimit-secondary-daily-remaining",
            limits.single_id_daily,
        ),
    };
    let day = limiter.check(&key);
    headers.push((limit_name, limit.to_string()));
    headers.push((remaining_name, day.daily_remaining.to_string()));
    if !day.allowed {
        return Err(Box::new(respond(
            StatusCode::OK,
            envelope(7, "Exceeded Rate Limit - Daily", None),
            headers,
        )));
    }
    Ok(headers)
}

fn form_pairs(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default()
}

async fn api(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let wants_json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.to_ascii_lowercase().contains("json"));
    WANTS_JSON
        .scope(wants_json, answer(inner, method, uri, headers, body))
        .await
}

async fn answer(inner: Arc<Inner>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let raw = match method {
        Method::GET => uri.query().unwrap_or("").to_owned(),
        Method::POST => String::from_utf8_lossy(&body).into_owned(),
        _ => return refuse(5, "Invalid Request Method"),
    };
    let tolerance = inner.config.timestamp_tolerance.as_millis() as i64;
    if let Err(refusal) = auth::verify(&inner.credentials, method.as_str(), &headers, &raw, now_ms(), tolerance) {
        return refuse(refusal.status, refusal.message);
    }
    let pairs = form_pairs(&raw);
    let zone = pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("zone"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let Some(spec) = ZONES.iter().find(|z| z.name == zone) else {
        return refuse(6, "No Zone Specified");
    };
    if method == Method::GET {
        let (zone_response, message, budget) = match read(&inner, spec, &pairs) {
            Ok(done) => done,
            Err((status, message)) => return refuse(status, &message),
        };
        let headers = match charge(&inner, budget) {
            Ok(h) => h,
            Err(refused) => return *refused,
        };
        return respond(StatusCode::OK, envelope(0, message, Some(zone_response)), headers);
    }
    let headers = match charge(&inner, Budget::Daily) {
        Ok(h) => h,
        Err(refused) => return *refused,
    };
    let Some(xml_text) = pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("postxml"))
        .map(|(_, v)| v.clone())
    else {
        let results = json!({"postresults": {"inserttotal": 0, "updatetotal": "0", "inserts": {}, "updates": {},
            "errors": [{"message": "Invalid XML", "code": "100", "detail": "postxml is missing", "type": "Validation"}]}});
        return respond(StatusCode::OK, envelope(0, "Login OK", Some(results)), headers);
    };
    let results = match xml::parse(&xml_text) {
        Ok(root) => {
            let mut store = inner.store();
            let user_id = store.users.first().map(|u| u.userid.clone()).unwrap_or_default();
            post::Post {
                store: &mut store,
                ids: &inner.ids,
                now_ms: inner.clock.now(),
                user_id,
            }
            .apply(spec.name, &root)
            .render()
        }
        Err(e) => json!({"postresults": {"inserttotal": 0, "updatetotal": "0", "inserts": {}, "updates": {},
            "errors": [{"message": "Invalid XML", "code": "100", "detail": e, "type": "Validation"}]}}),
    };
    respond(StatusCode::OK, envelope(0, "Login OK", Some(results)), headers)
}

async fn admin_credentials(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(serde_json::to_value(&inner.credentials).unwrap_or(Value::Null)).into_response()
}

async fn admin_state(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(inner.store().dump()).into_response()
}

async fn admin_reset(State(inner): State<Arc<Inner>>) -> Response {
    inner.reset();
    axum::Json(json!({"reset": true})).into_response()
}

async fn admin_get_faults(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(serde_json::to_value(inner.faults.get()).unwrap_or(Value::Null)).into_response()
}

async fn admin_set_faults(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let parsed: Result<FaultConfig, String> = serde_json::from_slice(&body).map_err(|e| e.to_string());
    match parsed.and_then(|f| inner.faults.set(f)) {
        Ok(()) => axum::Json(serde_json::to_value(inner.faults.get()).unwrap_or(Value::Null)).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": e}))).into_response(),
    }
}

async fn admin_get_limits(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(serde_json::to_value(inner.limits.get()).unwrap_or(Value::Null)).into_response()
}

async fn admin_set_limits(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<AroFloLimits>(&body) {
        Ok(limits) => {
            inner.limits.set(limits);
            axum::Json(serde_json::to_value(inner.limits.get()).unwrap_or(Value::Null)).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn admin_ui_post(State(inner): State<Arc<Inner>>, Path(zone): Path<String>, body: Bytes) -> Response {
    match ui_post(&inner, &zone, &String::from_utf8_lossy(&body)) {
        Ok(results) => axum::Json(results).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": e}))).into_response(),
    }
}

fn router(inner: Arc<Inner>) -> Router {
    let faults = FaultLayer {
        injector: inner.faults.clone(),
        render: render_fault(),
        exempt_prefix: "/_sandbox",
    };
    Router::new()
        .route("/", any(api))
        .route("/_sandbox/credentials", get(admin_credentials))
        .route("/_sandbox/state", get(admin_state))
        .route("/_sandbox/reset", post(admin_reset))
        .route(
            "/_sandbox/faults",
            get(admin_get_faults).put(admin_set_faults).post(admin_set_faults),
        )
        .route("/_sandbox/rate-limit", get(admin_get_limits).put(admin_set_limits))
        .route("/_sandbox/ui/{zone}", post(admin_ui_post))
        .fallback(|| async { refuse(1, "Login Failed - Invalid Request String") })
        .layer(axum::middleware::from_fn_with_state(faults, crate::faults::middleware))
        .with_state(inner)
}
