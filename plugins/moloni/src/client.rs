//! Moloni over `Host::http`: the `/grant/` logins (password, authorization_code, refresh_token),
//! token storage, and data calls (`POST <entity>/<method>/?access_token=…&json=true&human_errors=true`)
//! with their error formats translated into [`MoloniError`].

use std::sync::Mutex;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tether_abi::{Host, HttpMethod, HttpRequest, HttpResponse, LogLevel};

use crate::config::MoloniConfig;
use crate::error::{FieldError, MoloniError};

/// Access tokens live 1 h; refresh this long before the end, as the official plugin does (it
/// refreshes tokens older than 3,000 s).
pub const REFRESH_MARGIN_MS: i64 = 600_000;

pub const SECRET_REFRESH: &str = "refresh_token";
pub const SECRET_ACCESS: &str = "access_token";
pub const SECRET_EXPIRES: &str = "access_token_expires_at_ms";
/// A fingerprint of credentials Moloni refused; the same ones are not tried again.
pub const SECRET_REFUSED: &str = "login_refused";
/// Until when Moloni's failed-login lockout lasts (epoch ms).
pub const SECRET_COOLDOWN: &str = "login_cooldown_until_ms";
/// A fingerprint of the authorization code already exchanged (codes are single-use).
pub const SECRET_CODE_USED: &str = "authorization_code_used";

#[derive(Clone, Debug)]
struct Token {
    access: String,
    expires_at_ms: i64,
}

pub struct Client {
    host: Host,
    pub config: MoloniConfig,
    /// Single flight: one login or refresh at a time, since a refresh token works once.
    token: Mutex<Option<Token>>,
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    response
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
}

fn parse_json(body: &str) -> Result<Value, MoloniError> {
    serde_json::from_str(body).map_err(|e| MoloniError::Decode(format!("{e}: {}", excerpt(body))))
}

fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

/// A validation entry: `"2 vat"` or `{"code": "2 vat", "description": "…"}`, possibly nested one
/// level (`{"0": {"code": …, "description": …}}`, per line of a document).
fn field_error(item: &Value) -> Option<FieldError> {
    let (code, description) = match item {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => match o.get("code") {
            Some(Value::String(code)) if o.keys().all(|k| k == "code" || k == "description") => {
                (code.as_str(), o.get("description").and_then(Value::as_str))
            }
            Some(_) => return None,
            // A wrapper holds nothing but errors.
            None if !o.is_empty() && o.values().all(|v| v.is_object()) => {
                let errors: Option<Vec<FieldError>> = o.values().map(field_error).collect();
                return errors.and_then(|e| e.into_iter().next());
            }
            None => return None,
        },
        _ => return None,
    };
    let (number, field) = code.trim().split_once(' ')?;
    let field = field.trim();
    // Field names are snake case, possibly indexed (`products[0].qty`).
    let snake = field.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && field
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '[' | ']'));
    if !snake {
        return None;
    }
    Some(FieldError {
        code: number.parse().ok()?,
        field: field.to_owned(),
        description: description.map(str::to_owned),
    })
}

/// Moloni answers a rejected call with a bare array of errors where a list endpoint answers a bare
/// array of records: it is an error list when every entry reads as one.
pub fn validation_errors(body: &Value) -> Option<Vec<FieldError>> {
    let items = body.as_array()?;
    if items.is_empty() {
        return None;
    }
    items.iter().map(field_error).collect()
}

impl Client {
    pub fn new(host: Host, config: MoloniConfig) -> Self {
        Client {
            host,
            config,
            token: Mutex::new(None),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.host.now_ms()
    }

    fn secret(&self, key: &str) -> Result<Option<String>, MoloniError> {
        Ok(self.host.secret_get(key)?.filter(|v| !v.is_empty()))
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, message, &tether_abi::Fields::new());
    }

    /// A valid access token: cached, stored, refreshed, or from a new login, in that order.
    pub fn access_token(&self) -> Result<String, MoloniError> {
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now_ms();
        let fresh = |t: &Token| now < t.expires_at_ms - REFRESH_MARGIN_MS;
        if let Some(token) = cached.as_ref().filter(|t| fresh(t)) {
            return Ok(token.access.clone());
        }
        if cached.is_none() {
            let stored = self.secret(SECRET_ACCESS)?;
            let expires = self.secret(SECRET_EXPIRES)?.and_then(|v| v.parse::<i64>().ok());
            if let (Some(access), Some(expires_at_ms)) = (stored, expires) {
                let token = Token { access, expires_at_ms };
                if fresh(&token) {
                    *cached = Some(token.clone());
                    return Ok(token.access);
                }
            }
        }
        let token = self.obtain_token()?;
        *cached = Some(token.clone());
        Ok(token.access)
    }

    /// Forgets an access token Moloni refused, so the next call logs in again.
    fn discard_token(&self, refused: &str) -> Result<(), MoloniError> {
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if cached.as_ref().is_some_and(|t| t.access == refused) {
            *cached = None;
        }
        if self.secret(SECRET_ACCESS)?.as_deref() == Some(refused) {
            self.host.secret_put(SECRET_ACCESS, "")?;
            self.host.secret_put(SECRET_EXPIRES, "")?;
        }
        Ok(())
    }

    fn obtain_token(&self) -> Result<Token, MoloniError> {
        if let Some(refresh) = self.secret(SECRET_REFRESH)? {
            match self.grant(
                &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
                &[&refresh],
            ) {
                Ok(token) => return Ok(token),
                // An expired or already-used refresh token: fall back to a first login if we can.
                Err(MoloniError::Grant { code, description })
                    if code == "invalid_grant" || code == "invalid_request" =>
                {
                    self.log(
                        LogLevel::Warn,
                        &format!("Moloni refused the refresh token ({code}: {description}); logging in again"),
                    );
                    self.host.secret_put(SECRET_REFRESH, "")?;
                }
                Err(other) => return Err(other),
            }
        }
        let c = &self.config;
        if let (Some(username), Some(password)) = (&c.username, &c.password) {
            return self.password_login(username, password);
        }
        if let (Some(code), Some(redirect)) = (&c.authorization_code, &c.redirect_uri) {
            let print = fingerprint(&[&c.client_id, code]);
            if self.secret(SECRET_CODE_USED)?.as_deref() == Some(print.as_str()) {
                return Err(MoloniError::Grant {
                    code: "invalid_grant".into(),
                    description: "the authorization code was already exchanged and the refresh token has expired; authorize again".into(),
                });
            }
            self.host.secret_put(SECRET_CODE_USED, &print)?;
            return self.grant(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect),
                ],
                &[code],
            );
        }
        Err(MoloniError::NoCredentials)
    }

    fn password_login(&self, username: &str, password: &str) -> Result<Token, MoloniError> {
        let now = self.now_ms();
        if let Some(until) = self.secret(SECRET_COOLDOWN)?.and_then(|v| v.parse::<i64>().ok()) {
            if now < until {
                let seconds = u64::try_from((until - now + 999) / 1000).unwrap_or(1);
                return Err(MoloniError::LoginCooldown { seconds });
            }
        }
        let print = fingerprint(&[&self.config.client_id, &self.config.client_secret, username, password]);
        if self.secret(SECRET_REFUSED)?.as_deref() == Some(print.as_str()) {
            return Err(MoloniError::LoginRefusedBefore);
        }
        match self.grant(
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
            &[password],
        ) {
            Err(MoloniError::Grant { code, description }) => {
                if matches!(
                    code.as_str(),
                    "invalid_grant" | "invalid_client" | "unauthorized_client"
                ) {
                    self.host.secret_put(SECRET_REFUSED, &print)?;
                }
                Err(MoloniError::Grant { code, description })
            }
            other => other,
        }
    }

    /// `GET /grant/?grant_type=…` (the form production accepts), stored in rotation order: the new
    /// refresh token is durable before the new access token is used.
    fn grant(&self, params: &[(&str, &str)], secrets: &[&str]) -> Result<Token, MoloniError> {
        let c = &self.config;
        let mut query = vec![
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ];
        query.extend_from_slice(params);
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
        let mut request = HttpRequest::new(HttpMethod::Get, format!("{}/grant/?{}", c.base_url, query.join("&")));
        request.secrets = std::iter::once(c.client_secret.clone())
            .chain(secrets.iter().map(|s| s.to_string()))
            .collect();
        let sent_at = self.now_ms();
        let response = self.host.http(request)?;
        if response.status == 403 {
            let seconds = response
                .header("moloni-login-cooldown-seconds")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(60);
            let until = sent_at.saturating_add(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
            self.host.secret_put(SECRET_COOLDOWN, &until.to_string())?;
            return Err(MoloniError::LoginCooldown { seconds });
        }
        let body = self.status_checked(&response)?;
        if let Some(code) = body.get("error").and_then(Value::as_str) {
            return Err(MoloniError::Grant {
                code: code.to_owned(),
                description: body
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        let access = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| MoloniError::Decode("the grant response has no access_token".into()))?;
        let expires_in = body.get("expires_in").and_then(Value::as_i64).unwrap_or(3600);
        if let Some(refresh) = body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            self.host.secret_put(SECRET_REFRESH, refresh)?;
        }
        let expires_at_ms = sent_at.saturating_add(expires_in.saturating_mul(1000));
        self.host.secret_put(SECRET_ACCESS, access)?;
        self.host.secret_put(SECRET_EXPIRES, &expires_at_ms.to_string())?;
        Ok(Token {
            access: access.to_owned(),
            expires_at_ms,
        })
    }

    /// Statuses that mean the same on every endpoint; a 400 body is left to the caller (OAuth
    /// errors come with it).
    fn status_checked(&self, response: &HttpResponse) -> Result<Value, MoloniError> {
        match response.status {
            200..=299 | 400 | 401 => parse_json(&response.body),
            429 => Err(MoloniError::RateLimited {
                retry_after_ms: retry_after_ms(response),
            }),
            status @ 500..=599 => Err(MoloniError::Server {
                status,
                body: excerpt(&response.body),
            }),
            status => Err(MoloniError::Status {
                status,
                body: excerpt(&response.body),
            }),
        }
    }

    /// One data call. `body` gets `company_id`. Reads are marked safe to repeat so the host may
    /// retry them; writes are not.
    pub fn call(&self, path: &str, body: Value, repeatable: bool) -> Result<Value, MoloniError> {
        let token = self.access_token()?;
        match self.call_with(path, &body, repeatable, &token) {
            // The token was refused (revoked, or expired early): one new login, then the call once.
            Err(MoloniError::Unauthorized(_)) => {
                self.discard_token(&token)?;
                let token = self.access_token()?;
                self.call_with(path, &body, repeatable, &token)
            }
            other => other,
        }
    }

    fn call_with(&self, path: &str, body: &Value, repeatable: bool, token: &str) -> Result<Value, MoloniError> {
        let mut body = body.clone();
        if let Value::Object(fields) = &mut body {
            fields.insert("company_id".into(), json!(self.config.company_id));
        }
        let url = format!(
            "{}/{path}/?access_token={}&json=true&human_errors=true",
            self.config.base_url,
            enc(token)
        );
        let mut request = HttpRequest::new(HttpMethod::Post, url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(body.to_string());
        request.idempotent = repeatable;
        request.secrets = vec![token.to_owned()];
        let response = self.host.http(request)?;
        let value = self.status_checked(&response)?;
        if let Some(code) = value.get("error").and_then(Value::as_str) {
            let description = value
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            return Err(match code {
                "invalid_token" | "expired_token" | "invalid_grant" => MoloniError::Unauthorized(description),
                _ if response.status == 401 => MoloniError::Unauthorized(description),
                _ => MoloniError::Status {
                    status: response.status,
                    body: format!("{code}: {description}"),
                },
            });
        }
        if response.status == 401 {
            return Err(MoloniError::Unauthorized(excerpt(&response.body)));
        }
        if let Some(errors) = validation_errors(&value) {
            return Err(MoloniError::Validation(errors));
        }
        if response.status == 400 {
            return Err(MoloniError::Status {
                status: 400,
                body: excerpt(&response.body),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_arrays_in_both_forms_are_recognised() {
        let plain = validation_errors(&json!(["2 vat", "1 name"]));
        assert_eq!(plain.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            plain
                .as_ref()
                .and_then(|e| e.first())
                .map(|e| (e.code, e.field.as_str())),
            Some((2, "vat"))
        );
        let human = validation_errors(&json!([{"code": "4 number", "description": "Field 'number' already exists"}]));
        assert_eq!(
            human.and_then(|e| e.into_iter().next()).and_then(|e| e.description),
            Some("Field 'number' already exists".to_owned())
        );
        let nested =
            validation_errors(&json!([{"0": {"code": "3 qty", "description": "Field 'qty' must be numeric"}}]));
        assert_eq!(nested.map(|e| e[0].field.clone()), Some("qty".to_owned()));
        // Records are not errors, nor is an empty list.
        assert_eq!(validation_errors(&json!([{"customer_id": 1, "name": "Ana"}])), None);
        assert_eq!(validation_errors(&json!([])), None);
        assert_eq!(validation_errors(&json!(["Ana Conceição"])), None);
        assert_eq!(validation_errors(&json!(["30 Dias"])), None);
        // A record whose nested objects hold text that looks like a code is still a record.
        assert_eq!(
            validation_errors(&json!([{"maturity_date": {"name": "30 dias"}, "country": {"name": "pt pt"}}])),
            None
        );
    }
}
