//! `/grant/`: password, authorization_code and refresh_token grants (NOTES §1.2), errors as HTTP 400
//! `{error, error_description}`, and the lockout after 3 failed password logins (HTTP 403 with
//! `moloni-login-cooldown-seconds` and `moloni-login-attempts`).

use super::{json_response, Inner};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct AuthState {
    /// access token → expiry (epoch ms)
    pub access: HashMap<String, i64>,
    /// refresh token → expiry; removed when used (they rotate)
    pub refresh: HashMap<String, i64>,
    /// authorization code → redirect URI; removed when exchanged
    pub codes: HashMap<String, String>,
    pub failed_logins: u32,
    pub locked_until_ms: i64,
    pub log: Vec<Value>,
}

impl AuthState {
    pub fn expire_access(&mut self) {
        for expiry in self.access.values_mut() {
            *expiry = 0;
        }
    }
}

/// Why a data call's token is refused, if it is.
pub fn token_problem(emu: &Inner, token: Option<&str>) -> Option<&'static str> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Some("The access token was not found");
    };
    match emu.auth_state().access.get(token) {
        None => Some("The access token provided is invalid"),
        Some(expiry) if *expiry <= emu.now() => Some("The access token provided has expired"),
        Some(_) => None,
    }
}

fn oauth_error(code: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": code, "error_description": description}),
    )
}

pub fn params(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for source in [query.unwrap_or("").as_bytes(), body] {
        if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(source) {
            out.extend(pairs);
        }
    }
    out
}

fn issue(emu: &Inner, state: &mut AuthState) -> Value {
    let now = emu.now();
    let access = emu.ids.hex(40);
    let refresh = emu.ids.hex(40);
    let ttl = emu.config.access_token_ttl.as_secs();
    state.access.insert(access.clone(), now + (ttl as i64) * 1000);
    state
        .refresh
        .insert(refresh.clone(), now + (emu.config.refresh_token_ttl.as_millis() as i64));
    json!({"access_token": access, "expires_in": ttl, "token_type": "bearer", "scope": null, "refresh_token": refresh})
}

/// `GET|POST /grant/`: parameters from the query string (what production accepts) or a form body.
pub async fn grant(State(emu): State<Arc<Inner>>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let p = params(query.as_deref(), &body);
    let grant_type = p.get("grant_type").cloned().unwrap_or_default();
    let response = grant_inner(&emu, &p, &grant_type);
    emu.auth_state()
        .log
        .push(json!({"grant_type": grant_type, "status": response.status().as_u16()}));
    response
}

fn grant_inner(emu: &Inner, p: &HashMap<String, String>, grant_type: &str) -> Response {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if grant_type.is_empty() {
        return oauth_error("invalid_request", "The grant type was not specified in the request");
    }
    let creds = &emu.credentials;
    match get("client_id") {
        "" => return oauth_error("invalid_client", "No client id supplied"),
        id if id != creds.client_id => return oauth_error("invalid_client", "The client id supplied is invalid"),
        _ => {}
    }
    if get("client_secret") != creds.client_secret {
        return oauth_error("invalid_client", "The client credentials are invalid");
    }
    let now = emu.now();
    let mut state = emu.auth_state();
    match grant_type {
        "password" => {
            if now < state.locked_until_ms {
                let seconds = ((state.locked_until_ms - now) + 999) / 1000;
                let mut r = json_response(
                    StatusCode::FORBIDDEN,
                    &json!({"error": "too_many_attempts", "error_description": "Too many failed login attempts"}),
                );
                let h = r.headers_mut();
                h.insert(
                    "moloni-login-cooldown-seconds",
                    HeaderValue::from(seconds.max(1) as u64),
                );
                h.insert("moloni-login-attempts", HeaderValue::from(state.failed_logins));
                return r;
            }
            if get("username").is_empty() || get("password").is_empty() {
                return oauth_error(
                    "invalid_request",
                    "Missing parameters: 'username' and 'password' required",
                );
            }
            if get("username") != creds.username || get("password") != creds.password {
                state.failed_logins += 1;
                if state.failed_logins >= emu.config.login_attempts {
                    state.locked_until_ms = now + emu.config.login_cooldown.as_millis() as i64;
                }
                return oauth_error("invalid_grant", "Invalid username and password combination");
            }
            state.failed_logins = 0;
            json_response(StatusCode::OK, &issue(emu, &mut state))
        }
        "refresh_token" => {
            let token = get("refresh_token");
            if token.is_empty() {
                return oauth_error("invalid_request", "Missing parameter: \"refresh_token\" is required");
            }
            match state.refresh.remove(token) {
                Some(expiry) if expiry > now => json_response(StatusCode::OK, &issue(emu, &mut state)),
                Some(_) => oauth_error("invalid_grant", "Refresh token has expired"),
                None => oauth_error("invalid_grant", "Invalid refresh token"),
            }
        }
        "authorization_code" => {
            let redirect = get("redirect_uri");
            if redirect.is_empty() {
                return oauth_error(
                    "redirect_uri_mismatch",
                    "The redirect URI is mandatory and was not supplied",
                );
            }
            match state.codes.get(get("code")).cloned() {
                None => oauth_error(
                    "invalid_grant",
                    "Authorization code doesn't exist or is invalid for the client",
                ),
                Some(expected) if expected != redirect => oauth_error(
                    "redirect_uri_mismatch",
                    "The redirect URI provided is missing or does not match",
                ),
                Some(_) => {
                    state.codes.remove(get("code"));
                    json_response(StatusCode::OK, &issue(emu, &mut state))
                }
            }
        }
        other => oauth_error(
            "unsupported_grant_type",
            &format!("Grant type \"{other}\" not supported"),
        ),
    }
}

/// `GET /authorize/?response_type=code&client_id=…&redirect_uri=…`: consent is given at once and
/// the browser is sent back with `?code=`. The redirect URI must carry no query of its own.
pub async fn authorize(State(emu): State<Arc<Inner>>, RawQuery(query): RawQuery) -> Response {
    let p = params(query.as_deref(), b"");
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if get("response_type") != "code" {
        return oauth_error("invalid_request", "Invalid or missing response type");
    }
    if get("client_id") != emu.credentials.client_id {
        return oauth_error("invalid_client", "The client id supplied is invalid");
    }
    let redirect = get("redirect_uri");
    if redirect.is_empty() || redirect.contains('?') || redirect.contains('#') {
        return oauth_error("invalid_uri", "The redirect URI must not contain a fragment or a query");
    }
    let code = emu.ids.hex(40);
    emu.auth_state().codes.insert(code.clone(), redirect.to_owned());
    let location = format!("{redirect}?code={code}");
    let mut r = axum::response::IntoResponse::into_response(StatusCode::FOUND);
    if let Ok(value) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(axum::http::header::LOCATION, value);
    }
    r
}
