//! `/_sandbox/` routes for tests and operators. Never faulted, never rate limited, no auth (the
//! emulator binds loopback).

use super::error::{ok, ApiError, ApiResult};
use super::store::Subscription;
use super::Inner;
use crate::faults::FaultConfig;
use crate::ratelimit::RateLimitConfig;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/_sandbox/credentials", get(credentials))
        .route("/_sandbox/faults", get(get_faults).put(set_faults).post(set_faults))
        .route("/_sandbox/rate-limit", get(rate_limit).put(set_rate_limit))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/state", get(state))
        .route("/_sandbox/webhooks", get(webhooks).post(add_webhook))
        .route("/_sandbox/events", get(events))
        .route("/_sandbox/expire-tokens", post(expire_tokens))
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))
}

async fn credentials(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(serde_json::to_value(&emu.credentials).unwrap_or(Value::Null))
}

async fn get_faults(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(serde_json::to_value(emu.faults.get()).unwrap_or(Value::Null))
}

async fn set_faults(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let faults: FaultConfig = parse(&body)?;
    emu.faults.set(faults).map_err(|e| ApiError::field("faults", &e))?;
    ok(serde_json::to_value(emu.faults.get()).unwrap_or(Value::Null))
}

async fn rate_limit(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(serde_json::to_value(emu.limiter.config()).unwrap_or(Value::Null))
}

async fn set_rate_limit(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let config: RateLimitConfig = parse(&body)?;
    emu.limiter.set_config(config);
    emu.limiter.reset();
    ok(serde_json::to_value(emu.limiter.config()).unwrap_or(Value::Null))
}

async fn reset(State(emu): State<Arc<Inner>>) -> ApiResult {
    emu.reset();
    ok(json!({"reset": true}))
}

async fn state(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(emu.store().dump())
}

async fn webhooks(State(emu): State<Arc<Inner>>) -> ApiResult {
    let subs: Vec<Value> = emu.store().subscriptions.iter().map(Subscription::public).collect();
    ok(json!({"subscriptions": subs, "deliveries": emu.webhooks.deliveries()}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlBody {
    url: String,
}

async fn add_webhook(State(emu): State<Arc<Inner>>, body: Bytes) -> ApiResult {
    let UrlBody { url } = parse(&body)?;
    let sub = Subscription {
        id: emu.ids.hex(24),
        url,
        events: Vec::new(),
        secret: emu.credentials.webhook_secret.clone(),
    };
    let out = sub.public();
    emu.store().subscriptions.push(sub);
    ok(out)
}

async fn events(State(emu): State<Arc<Inner>>) -> ApiResult {
    ok(Value::Array(emu.webhooks.events()))
}

async fn expire_tokens(State(emu): State<Arc<Inner>>) -> ApiResult {
    emu.grants().retain(|_, g| g.expires_at_ms.is_none());
    ok(json!({"expired": true}))
}
