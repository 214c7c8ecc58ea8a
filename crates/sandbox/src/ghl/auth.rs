//! Tokens (OAuth access/refresh, PITs), the OAuth endpoints, and the guard every API route runs
//! behind: Version header, bearer token, rate limit, and the `X-RateLimit-*` headers.

use super::error::{ApiError, ApiResult};
use super::Inner;
use crate::ratelimit::RateLimitStatus;
use crate::timefmt::now_ms;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Versions GHL accepts (NOTES §1); anything else is a 401.
pub const ACCEPTED_VERSIONS: &[&str] = &["2021-07-28", "2021-04-15", "2023-02-21", "v3", "legacy"];

pub const SCOPE_READ: &str = "contacts.readonly";
pub const SCOPE_WRITE: &str = "contacts.write";
pub const SCOPE_LOCATIONS_READ: &str = "locations.readonly";
pub const SCOPE_CUSTOM_FIELDS_READ: &str = "locations/customFields.readonly";

/// Scopes granted when a request names none.
pub const DEFAULT_SCOPES: &[&str] = &[SCOPE_READ, SCOPE_WRITE, SCOPE_LOCATIONS_READ, SCOPE_CUSTOM_FIELDS_READ];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Pit,
    OAuth,
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub location_id: String,
    pub scopes: Vec<String>,
    /// The rate-limit "client": the OAuth client id, or the PIT itself.
    pub client_key: String,
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct CodeInfo {
    client_id: String,
    location_id: String,
    scopes: Vec<String>,
    redirect_uri: String,
    expires_at_ms: i64,
}

#[derive(Debug, Clone)]
struct RefreshInfo {
    client_id: String,
    location_id: String,
    scopes: Vec<String>,
    used: bool,
}

#[derive(Debug, Default)]
pub struct AuthState {
    pub tokens: HashMap<String, TokenInfo>,
    codes: HashMap<String, CodeInfo>,
    refresh: HashMap<String, RefreshInfo>,
}

/// What the guard learned about the caller; handlers read it from request extensions.
#[derive(Debug, Clone)]
pub struct AuthCtx {
    pub location_id: String,
    pub scopes: Vec<String>,
}

impl AuthCtx {
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(ApiError::scope())
        }
    }

    pub fn location(&self, location_id: &str) -> Result<(), ApiError> {
        if self.location_id == location_id {
            Ok(())
        } else {
            Err(ApiError::wrong_location())
        }
    }
}

pub fn parse_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

impl Inner {
    /// Mints a PIT for `location_id` with `scopes`.
    pub fn mint_pit(&self, location_id: &str, scopes: Vec<String>) -> String {
        let token = format!("pit-{}", self.ids.uuid());
        self.auth_state().tokens.insert(
            token.clone(),
            TokenInfo {
                kind: TokenKind::Pit,
                location_id: location_id.to_string(),
                scopes,
                client_key: token.clone(),
                expires_at_ms: None,
            },
        );
        token
    }

    pub fn auth_state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A JWT-shaped token (clients decode `exp`), signed with the emulator's Ed25519 key.
    fn jwt(&self, claims: Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = self.signing_key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// Issues an access + refresh token pair and returns the `/oauth/token` response body.
    fn issue_tokens(&self, client_id: &str, location_id: &str, scopes: Vec<String>) -> Value {
        let now = now_ms();
        let ttl_s = self.config.access_token_ttl.as_secs().max(1);
        let app_id = client_id.split('-').next().unwrap_or(client_id).to_string();
        let iat = now as f64 / 1000.0;
        let access = self.jwt(json!({
            "authClass": "Location",
            "authClassId": location_id,
            "primaryAuthClassId": location_id,
            "source": "INTEGRATION",
            "sourceId": client_id,
            "channel": "OAUTH",
            "oauthMeta": {"scopes": scopes, "client": app_id, "versionId": app_id, "clientKey": client_id},
            "jti": self.ids.alnum(16),
            "iat": iat,
            "exp": iat + ttl_s as f64,
        }));
        let refresh = self.jwt(json!({
            "authClass": "Location",
            "authClassId": location_id,
            "source": "INTEGRATION",
            "sourceId": client_id,
            "channel": "OAUTH",
            "oauthMeta": {"scopes": scopes, "client": app_id, "versionId": app_id, "clientKey": client_id},
            "uniqueId": self.ids.uuid(),
            "v": 2,
            "iat": iat,
            "exp": iat + 365.0 * 86_400.0,
        }));
        let mut st = self.auth_state();
        st.tokens.insert(
            access.clone(),
            TokenInfo {
                kind: TokenKind::OAuth,
                location_id: location_id.to_string(),
                scopes: scopes.clone(),
                client_key: client_id.to_string(),
                expires_at_ms: Some(now + (ttl_s as i64) * 1000),
            },
        );
        st.refresh.insert(
            refresh.clone(),
            RefreshInfo {
                client_id: client_id.to_string(),
                location_id: location_id.to_string(),
                scopes: scopes.clone(),
                used: false,
            },
        );
        drop(st);
        let company = self
            .store()
            .location(location_id)
            .map(|l| l.company_id.clone())
            .unwrap_or_default();
        json!({
            "access_token": access,
            "token_type": "Bearer",
            // One second short of the lifetime, like GHL's 86399 for a one-day token.
            "expires_in": ttl_s.saturating_sub(1),
            "refresh_token": refresh,
            "scope": scopes.join(" "),
            "refreshTokenId": self.ids.hex(24),
            "userType": "Location",
            "companyId": company,
            "locationId": location_id,
            "userId": self.credentials.user_id,
            "isBulkInstallation": false,
        })
    }

    fn lookup_token(&self, token: &str) -> Result<TokenInfo, ApiError> {
        let invalid = if token.starts_with("pit-") {
            "Invalid Private Integration token"
        } else {
            "Invalid JWT"
        };
        let info = self
            .auth_state()
            .tokens
            .get(token)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized(invalid))?;
        // PITs never expire on their own (they are rotated by hand in GHL's UI).
        let expired = info.expires_at_ms.is_some_and(|exp| now_ms() >= exp);
        if info.kind == TokenKind::OAuth && expired {
            return Err(ApiError::unauthorized("Invalid JWT"));
        }
        Ok(info)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    // GHL's OAuth error body is undocumented; carry both the NestJS keys and the RFC 6749 keys
    // so clients reading either find what they expect.
    super::error::json_response(
        status,
        &json!({
            "statusCode": status.as_u16(),
            "message": description,
            "error": error,
            "error_description": description,
        }),
    )
}

/// `GET /oauth/chooselocation`: the consent page, which here grants at once and redirects.
pub async fn authorize(
    State(emu): State<Arc<Inner>>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(pairs)) = query else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Malformed query");
    };
    let q: HashMap<String, String> = pairs.into_iter().collect();
    if q.get("response_type").map(String::as_str) != Some("code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    if q.get("client_id") != Some(&emu.credentials.client_id) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "Unknown client_id");
    }
    let Some(redirect_uri) = q.get("redirect_uri").filter(|u| !u.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "redirect_uri is required");
    };
    // `locationId` is a sandbox extension standing in for the location picker.
    let location_id = q
        .get("locationId")
        .cloned()
        .unwrap_or_else(|| emu.credentials.location_id.clone());
    if emu.store().location(&location_id).is_none() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Unknown location");
    }
    let scopes = match q.get("scope").map(|s| parse_scopes(s)) {
        Some(s) if !s.is_empty() => s,
        _ => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
    };
    let code = emu.ids.hex(40);
    emu.auth_state().codes.insert(
        code.clone(),
        CodeInfo {
            client_id: emu.credentials.client_id.clone(),
            location_id,
            scopes,
            redirect_uri: redirect_uri.clone(),
            expires_at_ms: now_ms() + 10 * 60 * 1000,
        },
    );
    let mut params = vec![("code", code)];
    if let Some(state) = q.get("state") {
        params.push(("state", state.clone()));
    }
    let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{qs}");
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Bad redirect_uri"),
    }
}

/// `POST /oauth/token` (form body): `authorization_code` and rotating `refresh_token` grants.
pub async fn token(State(emu): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Malformed form body");
    };
    let f: HashMap<String, String> = pairs.into_iter().collect();
    let mut missing = Vec::new();
    for k in ["client_id", "client_secret", "grant_type"] {
        if f.get(k).is_none_or(|v| v.is_empty()) {
            missing.push(format!("{k} should not be empty"));
        }
    }
    if !missing.is_empty() {
        return ApiError::unprocessable(missing).into_response();
    }
    let client_id = f.get("client_id").cloned().unwrap_or_default();
    if client_id != emu.credentials.client_id || f.get("client_secret") != Some(&emu.credentials.client_secret) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Invalid client credentials");
    }
    if f.get("user_type").is_some_and(|t| t != "Location") {
        // Company (agency) tokens are out of the emulator's scope: every token is a location's.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Only user_type=Location is supported by the sandbox",
        );
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = f.get("code").cloned().unwrap_or_default();
            // Codes are single-use: removed whether or not the rest checks out.
            let info = emu.auth_state().codes.remove(&code);
            let Some(info) = info else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid authorization code");
            };
            if info.expires_at_ms <= now_ms() || info.client_id != client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Authorization code expired or issued to another client",
                );
            }
            if f.get("redirect_uri").is_some_and(|r| r != &info.redirect_uri) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri does not match the authorization request",
                );
            }
            let body = emu.issue_tokens(&client_id, &info.location_id, info.scopes);
            super::error::json_response(StatusCode::OK, &body)
        }
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            let info = {
                let mut st = emu.auth_state();
                match st.refresh.get_mut(&rt) {
                    // Rotation: a refresh token works once; reuse is refused.
                    Some(i) if !i.used && i.client_id == client_id => {
                        i.used = true;
                        Some(i.clone())
                    }
                    _ => None,
                }
            };
            let Some(info) = info else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid grant: refresh token is invalid",
                );
            };
            let body = emu.issue_tokens(&client_id, &info.location_id, info.scopes);
            super::error::json_response(StatusCode::OK, &body)
        }
        Some("client_credentials") => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "client_credentials is not supported",
        ),
        _ => ApiError::unprocessable(vec![
            "grant_type must be one of the following values: authorization_code, refresh_token, client_credentials"
                .into(),
        ])
        .into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

pub fn rate_headers(h: &mut HeaderMap, s: &RateLimitStatus) {
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set("x-ratelimit-limit-daily", s.daily_limit.to_string());
    set("x-ratelimit-daily-remaining", s.daily_remaining.to_string());
    set("x-ratelimit-interval-milliseconds", s.interval_ms.to_string());
    set("x-ratelimit-max", s.max.to_string());
    set("x-ratelimit-remaining", s.remaining.to_string());
}

/// The guard in front of every `/contacts` and `/locations` route. Version is checked before
/// the token (a missing Version is a 401 even with a good token, NOTES §9.2).
pub async fn api_guard(State(emu): State<Arc<Inner>>, mut req: Request, next: Next) -> ApiResult {
    match req.headers().get("version").map(|v| v.to_str().unwrap_or("")) {
        None => return Err(ApiError::unauthorized("version header was not found.")),
        Some(v) if !ACCEPTED_VERSIONS.contains(&v) => return Err(ApiError::unauthorized("version header is invalid")),
        Some(_) => {}
    }
    let token = bearer(req.headers()).ok_or_else(|| ApiError::unauthorized("Invalid JWT"))?;
    let info = emu.lookup_token(token)?;
    let status = emu.limiter.check(&(info.client_key.clone(), info.location_id.clone()));
    if !status.allowed {
        let mut r = ApiError::too_many().into_response();
        rate_headers(r.headers_mut(), &status);
        if emu.config.send_retry_after {
            let secs = status.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        return Ok(r);
    }
    req.extensions_mut().insert(AuthCtx {
        location_id: info.location_id,
        scopes: info.scopes,
    });
    let mut resp = next.run(req).await;
    rate_headers(resp.headers_mut(), &status);
    Ok(resp)
}
