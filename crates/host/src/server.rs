//! The host's HTTP server: webhook intake (`POST /webhooks/{connector}`), `/healthz`,
//! `/readyz`, `/metrics` (Prometheus text, see [`crate::telemetry`]) and the console (see
//! [`crate::console`]).
//!
//! Webhooks and health stay open: webhooks are verified by their signatures, health checks
//! reveal nothing. `/metrics` and the console are behind the console's access check.
//!
//! A webhook is answered 200 only once its events are queued durably (see
//! `tether_core::scheduler`); a store failure is a 503 so the sender retries.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tether_abi::WebhookRequest;
use tether_core::scheduler::{Intake, Scheduler};
use tether_core::store::Store;

use crate::console::{self, Console};

#[derive(Clone)]
pub struct ServerState {
    pub scheduler: Arc<Scheduler>,
    pub store: Store,
    pub clock: tether_core::scheduler::Clock,
}

pub fn router(state: ServerState, console: Arc<Console>) -> Router {
    Router::new()
        .route("/webhooks/{connector}", post(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .route_layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&console),
                    console::guard,
                )),
        )
        .with_state(state)
        .merge(console::router(console))
}

async fn webhook(
    State(state): State<ServerState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8").into_response();
    };
    let request = WebhookRequest {
        headers: headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect(),
        body,
        received_at_ms: (state.clock)(),
    };
    match state.scheduler.intake(&connector, request).await {
        Ok(Intake::Queued { rows, duplicates }) => (
            StatusCode::OK,
            Json(serde_json::json!({ "queued": rows, "duplicates": duplicates })),
        )
            .into_response(),
        Ok(Intake::Refused(why)) => (StatusCode::UNAUTHORIZED, why).into_response(),
        Ok(Intake::Invalid(why)) => (StatusCode::BAD_REQUEST, why).into_response(),
        Ok(Intake::UnknownConnector) => (
            StatusCode::NOT_FOUND,
            format!("no webhook-driven flow reads connector `{connector}`"),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%connector, %error, "webhook not stored; answered 503 so the sender retries");
            (StatusCode::SERVICE_UNAVAILABLE, "not stored; retry").into_response()
        }
    }
}

/// Ready when the state store answers.
async fn ready(State(state): State<ServerState>) -> Response {
    match state.store.flow_counts().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

/// Prometheus text format; queue depth and dead letters are read from the store now.
async fn metrics(State(state): State<ServerState>) -> Response {
    match crate::telemetry::render(&state.store).await {
        Ok(text) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}
