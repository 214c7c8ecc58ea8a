//! Data calls: `POST /<entity>/<method>/?access_token=…[&json=true][&human_errors=true]`, answered
//! with bare arrays for lists, `{count}`, `{valid, <id>}` for writes and the validation array for
//! rejected calls (HTTP 200, as clients detect errors from the body).

use super::auth::{self, token_problem};
use super::model::{id_of, text_of, Customer, Invalid, Store};
use super::time::parse as parse_time;
use super::{json_response, Inner};
use crate::faults::FaultConfig;
use crate::ratelimit::RateLimitConfig;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Moloni's page cap: `qty` defaults to 50 and never exceeds it.
pub const MAX_QTY: u64 = 50;

pub fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/grant", get(auth::grant).post(auth::grant))
        .route("/grant/", get(auth::grant).post(auth::grant))
        .route("/authorize", get(auth::authorize))
        .route("/authorize/", get(auth::authorize))
        .route("/{entity}/{method}", post(data))
        .route("/{entity}/{method}/", post(data))
}

pub fn admin_router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/_sandbox/credentials", get(admin_credentials))
        .route(
            "/_sandbox/faults",
            get(admin_faults).put(admin_set_faults).post(admin_set_faults),
        )
        .route("/_sandbox/rate-limit", get(admin_rate_limit).put(admin_set_rate_limit))
        .route("/_sandbox/reset", post(admin_reset))
        .route("/_sandbox/state", get(admin_state))
        .route("/_sandbox/expire-tokens", post(admin_expire))
        .route("/_sandbox/authorization-codes", post(admin_code))
        .route("/_sandbox/requests", get(admin_requests))
        .route("/_sandbox/logins", get(admin_logins))
        .route("/_sandbox/documents/{id}/pay", post(admin_pay))
        .route("/_sandbox/documents/{id}/cancel", post(admin_cancel))
}

async fn admin_pay(State(emu): State<Arc<Inner>>, Path(id): Path<u64>) -> Response {
    let now = emu.now();
    let result = emu.store().pay_document(id, now);
    changed(id, result)
}

async fn admin_cancel(State(emu): State<Arc<Inner>>, Path(id): Path<u64>) -> Response {
    let now = emu.now();
    let result = emu.store().void_document(id, now);
    changed(id, result)
}

fn changed(id: u64, result: Result<(), Vec<Invalid>>) -> Response {
    match result {
        Ok(()) => ok(json!({"valid": 1, "document_id": id})),
        Err(errors) => unprocessable(
            errors
                .iter()
                .map(|e| e.description.clone())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

fn unprocessable(message: String) -> Response {
    json_response(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": message}))
}

async fn admin_credentials(State(emu): State<Arc<Inner>>) -> Response {
    ok(serde_json::to_value(&emu.credentials).unwrap_or(Value::Null))
}

async fn admin_faults(State(emu): State<Arc<Inner>>) -> Response {
    ok(serde_json::to_value(emu.faults.get()).unwrap_or(Value::Null))
}

async fn admin_set_faults(State(emu): State<Arc<Inner>>, body: Bytes) -> Response {
    let faults: FaultConfig = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return unprocessable(e.to_string()),
    };
    match emu.faults.set(faults) {
        Ok(()) => ok(serde_json::to_value(emu.faults.get()).unwrap_or(Value::Null)),
        Err(e) => unprocessable(e),
    }
}

async fn admin_rate_limit(State(emu): State<Arc<Inner>>) -> Response {
    ok(serde_json::to_value(emu.limiter.config()).unwrap_or(Value::Null))
}

async fn admin_set_rate_limit(State(emu): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<RateLimitConfig>(&body) {
        Ok(config) => {
            emu.limiter.set_config(config);
            emu.limiter.reset();
            ok(serde_json::to_value(emu.limiter.config()).unwrap_or(Value::Null))
        }
        Err(e) => unprocessable(e.to_string()),
    }
}

async fn admin_reset(State(emu): State<Arc<Inner>>) -> Response {
    emu.reset();
    ok(json!({"reset": true}))
}

async fn admin_state(State(emu): State<Arc<Inner>>) -> Response {
    ok(emu.store().dump())
}

async fn admin_expire(State(emu): State<Arc<Inner>>) -> Response {
    emu.auth_state().expire_access();
    ok(json!({"expired": true}))
}

async fn admin_code(State(emu): State<Arc<Inner>>, body: Bytes) -> Response {
    let redirect = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("redirect_uri").and_then(Value::as_str).map(str::to_owned));
    let Some(redirect) = redirect else {
        return unprocessable("send {\"redirect_uri\": \"…\"}".into());
    };
    let code = emu.ids.hex(40);
    emu.auth_state().codes.insert(code.clone(), redirect);
    ok(json!({"code": code}))
}

async fn admin_requests(State(emu): State<Arc<Inner>>) -> Response {
    ok(Value::Array(
        emu.requests.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    ))
}

async fn admin_logins(State(emu): State<Arc<Inner>>) -> Response {
    ok(Value::Array(emu.auth_state().log.clone()))
}

/// `a[0][b]=1` form keys into nested JSON; objects keyed 0..n become arrays.
fn form_to_json(pairs: Vec<(String, String)>) -> Value {
    fn insert(target: &mut Map<String, Value>, path: &[String], value: String) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            target.insert(first.clone(), Value::String(value));
            return;
        }
        let entry = target.entry(first.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(inner) = entry {
            insert(inner, rest, value);
        }
    }
    fn arrays(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let numeric = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
                if numeric {
                    let mut items: Vec<(usize, Value)> = map
                        .into_iter()
                        .filter_map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, arrays(v))))
                        .collect();
                    items.sort_by_key(|(i, _)| *i);
                    Value::Array(items.into_iter().map(|(_, v)| v).collect())
                } else {
                    Value::Object(map.into_iter().map(|(k, v)| (k, arrays(v))).collect())
                }
            }
            other => other,
        }
    }
    let mut root = Map::new();
    for (key, value) in pairs {
        let mut path = Vec::new();
        let (head, tail) = key.split_once('[').map_or((key.as_str(), ""), |(h, t)| (h, t));
        path.push(head.to_owned());
        for part in tail.split('[') {
            let part = part.trim_end_matches(']');
            if !part.is_empty() {
                path.push(part.to_owned());
            }
        }
        insert(&mut root, &path, value);
    }
    arrays(Value::Object(root))
}

/// The validation array, in the form the caller asked for.
fn rejected(errors: &[Invalid], human: bool) -> Response {
    let items: Vec<Value> = errors
        .iter()
        .map(|e| {
            let code = format!("{} {}", e.code, e.field);
            if human {
                json!({"code": code, "description": e.description})
            } else {
                json!(code)
            }
        })
        .collect();
    ok(Value::Array(items))
}

struct Call<'a> {
    params: &'a Map<String, Value>,
}

impl Call<'_> {
    fn id(&self, key: &str) -> Result<u64, Vec<Invalid>> {
        match self.params.get(key) {
            None | Some(Value::Null) => Err(vec![Invalid::required(key)]),
            Some(v) => id_of(Some(v))
                .filter(|n| *n > 0)
                .ok_or_else(|| vec![Invalid::integer(key)]),
        }
    }
    fn optional_id(&self, key: &str) -> Option<u64> {
        id_of(self.params.get(key)).filter(|n| *n > 0)
    }
    fn text(&self, key: &str) -> Result<String, Vec<Invalid>> {
        text_of(self.params.get(key))
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| vec![Invalid::required(key)])
    }
    /// `(qty, offset)` with Moloni's defaults and cap.
    fn page(&self) -> (usize, usize) {
        let qty = id_of(self.params.get("qty"))
            .filter(|q| *q > 0)
            .unwrap_or(MAX_QTY)
            .min(MAX_QTY);
        let offset = id_of(self.params.get("offset")).unwrap_or(0);
        (qty as usize, offset as usize)
    }
    fn since(&self) -> Result<i64, Vec<Invalid>> {
        let text = self.text("lastmodified")?;
        parse_time(&text).ok_or_else(|| vec![Invalid::bad_value("lastmodified", "must be a valid date")])
    }
    fn exact(&self) -> bool {
        matches!(text_of(self.params.get("exact")).as_deref(), Some("1") | Some("true"))
    }
}

fn page_of<T>(items: Vec<T>, (qty, offset): (usize, usize)) -> Vec<T> {
    items.into_iter().skip(offset).take(qty).collect()
}

/// A data call: token, rate limit, body, company, then the entity's method.
async fn data(
    State(emu): State<Arc<Inner>>,
    Path((entity, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query_params = auth::params(query.as_deref(), b"");
    let token = query_params.get("access_token").map(String::as_str);
    if let Some(problem) = token_problem(&emu, token) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "error_description": problem}),
        );
    }
    if !emu.limiter.check(&()).allowed {
        return json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "too_many_requests", "error_description": "Too Many Requests"}),
        );
    }
    let flag = |k: &str| matches!(query_params.get(k).map(String::as_str), Some("true") | Some("1"));
    let human = flag("human_errors");
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let params = if flag("json") && is_json {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) if body.is_empty() => Map::new(),
            _ => return rejected(&[Invalid::bad_value("json", "must be a JSON object")], human),
        }
    } else {
        match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
            Ok(pairs) => match form_to_json(pairs) {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            Err(_) => Map::new(),
        }
    };
    emu.log_request(json!({"path": format!("{entity}/{method}"), "params": Value::Object(params.clone())}));
    let call = Call { params: &params };
    let company = match call.id("company_id") {
        Ok(c) => c,
        Err(e) => return rejected(&e, human),
    };
    if company != emu.credentials.company_id {
        return rejected(&[Invalid::bad_value("company_id", "must be valid")], human);
    }
    let result = match entity.as_str() {
        "companies" => companies(&emu, &method),
        "customers" => customers(&emu, &method, &call),
        "invoices" | "documents" => documents(&emu, &entity, &method, &call),
        _ => None,
    };
    match result {
        Some(Ok(body)) => ok(body),
        Some(Err(errors)) => rejected(&errors, human),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "error_description": format!("Unknown method {entity}/{method}")}),
        ),
    }
}

type Outcome = Option<Result<Value, Vec<Invalid>>>;

fn companies(emu: &Inner, method: &str) -> Outcome {
    let store = emu.store();
    let company =
        json!({"company_id": store.company_id, "name": store.company_name, "vat": store.company_vat, "country_id": 1});
    match method {
        "getOne" => Some(Ok(company)),
        "getAll" => Some(Ok(json!([company]))),
        _ => None,
    }
}

fn matches(value: &str, wanted: &str, exact: bool) -> bool {
    let (value, wanted) = (value.to_lowercase(), wanted.to_lowercase());
    if exact {
        value == wanted
    } else {
        value.contains(wanted.trim_matches('%'))
    }
}

fn field_text(c: &Customer, key: &str) -> String {
    c.fields.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// The customers a `getBy*` / `countBy*` method selects, ordered by id.
fn select<'a>(store: &'a Store, by: &str, call: &Call) -> Result<Vec<&'a Customer>, Vec<Invalid>> {
    let (key, fields): (&str, &[&str]) = match by {
        "Search" => ("search", &["name", "number", "vat", "email"]),
        "Vat" => ("vat", &["vat"]),
        "Email" => ("email", &["email"]),
        "Name" => ("name", &["name"]),
        "Number" => ("number", &["number"]),
        _ => return Err(vec![Invalid::bad_value("method", "is not known")]),
    };
    let wanted = call.text(key)?;
    let exact = call.exact() && by != "Search";
    Ok(store
        .customers
        .values()
        .filter(|c| fields.iter().any(|f| matches(&field_text(c, f), &wanted, exact)))
        .collect())
}

pub fn insert_customer(emu: &Inner, input: Map<String, Value>) -> Result<u64, Vec<Invalid>> {
    let now = emu.now();
    let mut store = emu.store();
    let fields = store.check_customer(&input, None)?;
    let id = store.next_customer_id;
    store.next_customer_id += 1 + (now as u64 % 13);
    if let Some(n) = fields
        .get("number")
        .and_then(Value::as_str)
        .and_then(|n| n.parse::<u64>().ok())
    {
        store.next_customer_number = store.next_customer_number.max(n + 1);
    }
    store.customers.insert(
        id,
        Customer {
            id,
            fields,
            modified_ms: now,
        },
    );
    Ok(id)
}

pub fn update_customer(emu: &Inner, id: u64, input: Map<String, Value>) -> Result<u64, Vec<Invalid>> {
    let now = emu.now();
    let mut store = emu.store();
    let Some(existing) = store.customers.get(&id).cloned() else {
        return Err(vec![Invalid::bad_value("customer_id", "must be valid")]);
    };
    let mut fields = store.check_customer(&input, Some(&existing))?;
    // A customer on documents keeps its vat and number; Moloni ignores changes to them silently.
    if store.referenced(id) {
        for key in ["vat", "number"] {
            if let Some(old) = existing.fields.get(key) {
                fields.insert(key.into(), old.clone());
            }
        }
    }
    store.customers.insert(
        id,
        Customer {
            id,
            fields,
            modified_ms: now,
        },
    );
    Ok(id)
}

fn customers(emu: &Inner, method: &str, call: &Call) -> Outcome {
    let render = |store: &Store, list: Vec<&Customer>| -> Value {
        Value::Array(list.into_iter().map(|c| store.render_customer(c)).collect())
    };
    let result = match method {
        "count" => Ok(json!({"count": emu.store().customers.len()})),
        "getAll" => {
            let store = emu.store();
            Ok(render(&store, page_of(store.customers.values().collect(), call.page())))
        }
        "getOne" => (|| {
            let id = call.id("customer_id")?;
            let store = emu.store();
            Ok(store.customers.get(&id).map_or(json!([]), |c| store.render_customer(c)))
        })(),
        "getModifiedSince" | "countModifiedSince" => (|| {
            let since = call.since()?;
            let store = emu.store();
            let mut list: Vec<&Customer> = store
                .customers
                .values()
                .filter(|c| c.modified_ms / 1000 * 1000 >= since)
                .collect();
            list.sort_by_key(|c| (c.modified_ms, c.id));
            if method == "countModifiedSince" {
                return Ok(json!({"count": list.len()}));
            }
            Ok(render(&store, page_of(list, call.page())))
        })(),
        "getNextNumber" => {
            let store = emu.store();
            let mut next = store.next_customer_number;
            let taken = |n: u64| {
                store
                    .customers
                    .values()
                    .any(|c| field_text(c, "number") == format!("{n:05}"))
            };
            while taken(next) {
                next += 1;
            }
            Ok(json!({"number": format!("{next:05}")}))
        }
        "insert" => insert_customer(emu, call.params.clone()).map(|id| json!({"valid": 1, "customer_id": id})),
        "update" => (|| {
            let id = call.id("customer_id")?;
            update_customer(emu, id, call.params.clone()).map(|id| json!({"valid": 1, "customer_id": id}))
        })(),
        "delete" => (|| {
            let id = call.id("customer_id")?;
            let mut store = emu.store();
            // Referenced by a document (or unknown): not deleted, `valid: 0`.
            if !store.customers.contains_key(&id) || store.referenced(id) {
                return Ok(json!({"valid": 0}));
            }
            store.customers.remove(&id);
            Ok(json!({"valid": 1}))
        })(),
        m if m.starts_with("getBy") || m.starts_with("countBy") => (|| {
            let count = m.starts_with("countBy");
            let by = m.trim_start_matches("getBy").trim_start_matches("countBy");
            let store = emu.store();
            let list = select(&store, by, call)?;
            if count {
                return Ok(json!({"count": list.len()}));
            }
            Ok(render(&store, page_of(list, call.page())))
        })(),
        _ => return None,
    };
    Some(result)
}

fn documents(emu: &Inner, entity: &str, method: &str, call: &Call) -> Outcome {
    let of_entity = |d: &&super::model::Document| entity == "documents" || d.document_type_id == 1;
    let result = match method {
        "count" => {
            let store = emu.store();
            let n = store.documents.values().filter(of_entity).count();
            // As recorded: documents/count gives its count as a string.
            Ok(if entity == "documents" {
                json!({"count": n.to_string()})
            } else {
                json!({"count": n})
            })
        }
        "getAll" => {
            let store = emu.store();
            let customer = call.optional_id("customer_id");
            let status = id_of(call.params.get("status"));
            let mut list: Vec<_> = store
                .documents
                .values()
                .filter(of_entity)
                .filter(|d| customer.is_none_or(|c| d.customer_id == c))
                .filter(|d| status.is_none_or(|s| d.fields.get("status").and_then(Value::as_u64) == Some(s)))
                .collect();
            list.sort_by_key(|d| {
                std::cmp::Reverse((d.fields.get("date").and_then(Value::as_str).and_then(parse_time), d.id))
            });
            Ok(Value::Array(
                page_of(list, call.page())
                    .into_iter()
                    .map(|d| store.render_document(d))
                    .collect(),
            ))
        }
        "getOne" => (|| {
            let id = call.id("document_id")?;
            let store = emu.store();
            Ok(store
                .documents
                .get(&id)
                .filter(of_entity)
                .map_or(json!([]), |d| store.render_document(d)))
        })(),
        "getModifiedSince" | "countModifiedSince" => (|| {
            let since = call.since()?;
            let status = id_of(call.params.get("status"));
            let customer = call.optional_id("customer_id");
            let store = emu.store();
            let mut list: Vec<_> = store
                .documents
                .values()
                .filter(of_entity)
                .filter(|d| d.modified_ms / 1000 * 1000 >= since)
                .filter(|d| customer.is_none_or(|c| d.customer_id == c))
                .filter(|d| status.is_none_or(|s| d.fields.get("status").and_then(Value::as_u64) == Some(s)))
                .collect();
            list.sort_by_key(|d| (d.modified_ms, d.id));
            if method == "countModifiedSince" {
                return Ok(json!({"count": list.len()}));
            }
            Ok(Value::Array(
                page_of(list, call.page())
                    .into_iter()
                    .map(|d| store.render_document(d))
                    .collect(),
            ))
        })(),
        "insert" if entity == "invoices" => (|| {
            let mut errors = Vec::new();
            let date = call
                .text("date")
                .and_then(|d| parse_time(&d).ok_or_else(|| vec![Invalid::bad_value("date", "must be a valid date")]));
            let due = call.text("expiration_date").and_then(|d| {
                parse_time(&d).ok_or_else(|| vec![Invalid::bad_value("expiration_date", "must be a valid date")])
            });
            let set = call.id("document_set_id");
            let customer = call.id("customer_id");
            let lines = call.params.get("products").and_then(Value::as_array).cloned();
            for r in [&date, &due] {
                if let Err(e) = r {
                    errors.extend(e.clone());
                }
            }
            for r in [&set, &customer] {
                if let Err(e) = r {
                    errors.extend(e.clone());
                }
            }
            if lines.as_ref().is_none_or(Vec::is_empty) {
                errors.push(Invalid::required("products"));
            }
            let now = emu.now();
            let mut store = emu.store();
            if let Ok(set) = set {
                if set != store.document_set.0 {
                    errors.push(Invalid::bad_value("document_set_id", "must be valid"));
                }
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            let status = id_of(call.params.get("status")).unwrap_or(0);
            let (Ok(date), Ok(due), Ok(customer), Some(lines)) = (date, due, customer, lines) else {
                return Err(vec![Invalid::required("products")]);
            };
            let doc = store.new_invoice(customer, date, due, &lines, status, now)?;
            let id = doc.id;
            store.documents.insert(id, doc);
            Ok(json!({"valid": 1, "document_id": id}))
        })(),
        _ => return None,
    };
    Some(result)
}
