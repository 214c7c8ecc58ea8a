//! GHL error bodies (NOTES §5): `{statusCode, message, error?}` with `message` an array for 422.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, body: Value) -> Self {
        Self { status, body }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "message": message.into(), "error": "Bad Request"}),
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            json!({"statusCode": 401, "message": message, "error": "Unauthorized"}),
        )
    }

    pub fn scope() -> Self {
        Self::unauthorized("The token is not authorized for this scope.")
    }

    pub fn wrong_location() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            json!({"statusCode": 403, "message": "The token does not have access to this location"}),
        )
    }

    pub fn unprocessable(messages: Vec<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"statusCode": 422, "message": messages, "error": "Unprocessable Entity"}),
        )
    }

    pub fn not_found_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            json!({"statusCode": 404, "message": format!("Cannot {method} {path}"), "error": "Not Found"}),
        )
    }

    /// GHL answers an unknown id with 400 (NOTES §5); `status` lets a run choose 404 instead,
    /// since clients must survive both.
    pub fn missing(status: StatusCode, message: String) -> Self {
        let error = if status == StatusCode::NOT_FOUND {
            "Not Found"
        } else {
            "Bad Request"
        };
        Self::new(
            status,
            json!({"statusCode": status.as_u16(), "message": message, "error": error}),
        )
    }

    pub fn too_many() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"statusCode": 429, "message": "Too Many Requests"}),
        )
    }

    pub fn internal(status: StatusCode) -> Self {
        let reason = status.canonical_reason().unwrap_or("Internal Server Error");
        Self::new(status, json!({"statusCode": status.as_u16(), "message": reason}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// A JSON response with GHL's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

pub type ApiResult = Result<Response, ApiError>;

pub fn ok(body: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, &body))
}

pub fn created(body: Value) -> ApiResult {
    Ok(json_response(StatusCode::CREATED, &body))
}
