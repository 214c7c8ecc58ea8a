//! The contract's error envelope: `{"error":{"code","message","fields"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Map<String, Value>,
}

pub type ApiResult = Result<Response, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Map::new(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this credential lacks the `{scope}` scope"),
        )
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} {id}"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422 with a per-field reason.
    pub fn validation(fields: Map<String, Value>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "the request is not valid",
        );
        e.fields = fields;
        e
    }

    pub fn field(name: &str, reason: &str) -> Self {
        let mut fields = Map::new();
        fields.insert(name.to_owned(), json!(reason));
        Self::validation(fields)
    }

    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded: 120 requests per minute per key",
        )
    }

    pub fn internal(status: StatusCode) -> Self {
        Self::new(status, "internal_error", "the server failed; try again later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.fields.is_empty() {
            error["fields"] = Value::Object(self.fields);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

pub fn ok(value: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(value)).into_response())
}

pub fn created(value: Value) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}
