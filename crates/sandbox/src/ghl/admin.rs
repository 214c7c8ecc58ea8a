//! `/_sandbox/` routes for tests and operators: key, faults, reset, state, webhooks, tokens,
//! settings. Never faulted, never rate limited, no auth (the emulator binds loopback).

use super::error::{created, ok, ApiError, ApiResult};
use super::validate::parse_body;
use super::Inner;
use crate::faults::FaultConfig;
use crate::ratelimit::RateLimitConfig;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/_sandbox/public-key", get(public_key))
        .route("/_sandbox/credentials", get(credentials))
        .route("/_sandbox/faults", get(get_faults).put(set_faults).post(set_faults))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/state", get(state))
        .route(
            "/_sandbox/webhooks",
            get(webhooks).post(add_webhook).delete(clear_webhooks),
        )
        .route("/_sandbox/events", get(events))
        .route("/_sandbox/requests", get(requests))
        .route("/_sandbox/tokens", post(mint_token))
        .route("/_sandbox/settings", get(settings).put(set_settings))
        .route("/_sandbox/rate-limit", get(rate_limit).put(set_rate_limit))
        .route("/_sandbox/custom-fields", post(add_custom_field))
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_value(parse_body(body)?).map_err(|e| ApiError::unprocessable(vec![e.to_string()]))
}

async fn requests(State(emu): State<Arc<Inner>>) -> ApiResult {
    let counts = emu.requests.snapshot();
    ok(json!({ "byRoute": counts.by_route, "total": counts.total(), "writes": counts.writes() }))
}

async fn public_key(State(emu): State<Arc<Inner>>) -> ApiResult {
    let k = &emu.public_key;
    ok(json!({
        "algorithm": "Ed25519",
        "header": "x-ghl-signature",
        "publicKey": k.base64,
        "spki": k.spki_base64,
        "pem": k.pem,
    }))
}

async fn credentials(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(serde_json::to_value(&emu.credentials).unwrap_or(Value::Null))
}

async fn get_faults(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(serde_json::to_value(emu.faults.get()).unwrap_or(Value::Null))
}

async fn set_faults(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let f: FaultConfig = parse(&body)?;
    emu.faults.set(f).map_err(|e| ApiError::unprocessable(vec![e]))?;
    ok(serde_json::to_value(emu.faults.get()).unwrap_or(Value::Null))
}

async fn reset(State(emu): State<Arc<Inner>>) -> ApiResult {
    emu.reset();
    ok(json!({ "reset": true }))
}

async fn state(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(emu.store().dump())
}

async fn webhooks(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(json!({ "urls": emu.webhooks.urls(), "deliveries": emu.webhooks.deliveries() }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlBody {
    url: String,
}

async fn add_webhook(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let b: UrlBody = parse(&body)?;
    if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
        return Err(ApiError::unprocessable(vec!["url must be a URL address".into()]));
    }
    emu.webhooks.register(b.url);
    created(json!({ "urls": emu.webhooks.urls() }))
}

async fn clear_webhooks(State(emu): State<Arc<Inner>>) -> ApiResult {
    emu.webhooks.clear();
    ok(json!({ "urls": [] }))
}

async fn events(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(json!({ "events": emu.webhooks.events() }))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenBody {
    location_id: Option<String>,
    scopes: Option<Vec<String>>,
}

/// Mints a PIT with chosen scopes and location (for scope and tenancy tests).
async fn mint_token(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let b: TokenBody = parse(&body)?;
    let loc = b.location_id.unwrap_or_else(|| emu.credentials.location_id.clone());
    let scopes = b
        .scopes
        .unwrap_or_else(|| super::DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    let token = emu.mint_pit(&loc, scopes.clone());
    created(json!({ "token": token, "locationId": loc, "scopes": scopes }))
}

async fn settings(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(json!({ "allowDuplicateContact": emu.allow_duplicates() }))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsBody {
    allow_duplicate_contact: bool,
}

async fn set_settings(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let b: SettingsBody = parse(&body)?;
    emu.settings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow_duplicate_contact = b.allow_duplicate_contact;
    ok(json!({ "allowDuplicateContact": b.allow_duplicate_contact }))
}

async fn rate_limit(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(serde_json::to_value(emu.limiter.config()).unwrap_or(Value::Null))
}

async fn set_rate_limit(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let c: RateLimitConfig = parse(&body)?;
    emu.limiter.set_config(c);
    emu.limiter.reset();
    ok(serde_json::to_value(emu.limiter.config()).unwrap_or(Value::Null))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CustomFieldBody {
    location_id: Option<String>,
    name: String,
    data_type: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

/// Adds a custom field to one location (default: the main one). `reset` removes it again.
async fn add_custom_field(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let b: CustomFieldBody = parse(&body)?;
    let loc = b.location_id.unwrap_or_else(|| emu.credentials.location_id.clone());
    let mut st = emu.store();
    if st.location(&loc).is_none() {
        return Err(ApiError::unprocessable(vec!["locationId is unknown".into()]));
    }
    let spec = super::CustomFieldSpec {
        name: b.name,
        data_type: b.data_type.unwrap_or_else(|| "TEXT".into()),
        options: b.options,
    };
    let key = spec.field_key();
    if st
        .custom_fields
        .iter()
        .any(|d| d.location_id == loc && d.field_key == key)
    {
        return Err(ApiError::bad_request(format!("Custom field {key} already exists")));
    }
    let def = spec.to_def(emu.ids.alnum(20), &loc, st.custom_fields.len());
    let out = def.json();
    st.custom_fields.push(def);
    created(json!({ "customField": out }))
}
