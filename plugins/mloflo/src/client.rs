//! HTTP through the host: auth (API key, or an OAuth client-credentials token cached in the
//! host's secret store and renewed before it expires or when refused), JSON in and out, and the
//! contract's error envelope turned into [`MlofloError::Api`].

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_abi::{Host, HttpMethod, HttpRequest, HttpResponse};

use crate::api;
use crate::error::MlofloError;

/// How the plugin authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    ApiKey(String),
    ClientCredentials {
        client_id: String,
        client_secret: String,
        scope: String,
    },
}

/// A token obtained with client credentials, as kept in the secret store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    pub access_token: String,
    pub expires_at_ms: i64,
}

/// Secret-store key of the cached OAuth token.
pub const TOKEN_SECRET_KEY: &str = "oauth_token";
/// A token this close to expiry is renewed first rather than risk a refusal mid-request.
const RENEW_MARGIN_MS: i64 = 60_000;

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

pub struct Client {
    host: Host,
    base_url: String,
    credentials: Option<Credentials>,
    token: Mutex<Option<CachedToken>>,
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn query(pairs: &[(&str, String)]) -> String {
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

/// `Retry-After` in seconds (or an HTTP date, which the contract does not use: then unknown).
fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    response
        .header(api::H_RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
}

/// The contract's `{"error":{"code","message","fields"}}`, or OAuth's `{"error":"...","error_description"}`.
fn api_error(response: &HttpResponse) -> MlofloError {
    let body: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    let (code, mut message) = match &body["error"] {
        Value::Object(e) => (
            e.get("code").and_then(Value::as_str).unwrap_or("error").to_owned(),
            e.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
        ),
        Value::String(code) => (
            code.clone(),
            body["error_description"].as_str().unwrap_or("").to_owned(),
        ),
        _ => ("error".to_owned(), response.body.chars().take(200).collect()),
    };
    if let Some(fields) = body["error"]["fields"].as_object().filter(|f| !f.is_empty()) {
        let list: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("invalid")))
            .collect();
        message = format!("{message} ({})", list.join(", "));
    }
    MlofloError::Api {
        status: response.status,
        code,
        message,
        retry_after_ms: retry_after_ms(response),
    }
}

impl Client {
    pub fn new(host: Host, base_url: &str, credentials: Option<Credentials>) -> Client {
        Client {
            host,
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            token: Mutex::new(None),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn now_ms(&self) -> i64 {
        self.host.now_ms()
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    fn credentials_or_fail(&self) -> Result<&Credentials, MlofloError> {
        self.credentials.as_ref().ok_or_else(|| {
            MlofloError::Config(
                "the mloflo plugin has no credentials: set `api_key`, or `client_id` and `client_secret`".into(),
            )
        })
    }

    fn cached(&self) -> Option<CachedToken> {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn remember(&self, token: Option<CachedToken>) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// The bearer value: the API key, or a live OAuth token (from memory, the secret store, or
    /// a new grant). `renew` skips the caches after the API refused the cached token.
    fn bearer(&self, renew: bool) -> Result<String, MlofloError> {
        let (client_id, client_secret, scope) = match self.credentials_or_fail()? {
            Credentials::ApiKey(key) => return Ok(key.clone()),
            Credentials::ClientCredentials {
                client_id,
                client_secret,
                scope,
            } => (client_id, client_secret, scope),
        };
        let now = self.host.now_ms();
        let fresh = |t: &CachedToken| t.expires_at_ms - RENEW_MARGIN_MS > now;
        if !renew {
            if let Some(token) = self.cached().filter(fresh) {
                return Ok(token.access_token);
            }
            let stored = self
                .host
                .secret_get(TOKEN_SECRET_KEY)?
                .and_then(|s| serde_json::from_str::<CachedToken>(&s).ok());
            if let Some(token) = stored.filter(fresh) {
                self.remember(Some(token.clone()));
                return Ok(token.access_token);
            }
        }
        let token = self.grant(client_id, client_secret, scope)?;
        let text = serde_json::to_string(&token).map_err(|e| MlofloError::Input(e.to_string()))?;
        self.host.secret_put(TOKEN_SECRET_KEY, &text)?;
        self.remember(Some(token.clone()));
        Ok(token.access_token)
    }

    fn grant(&self, client_id: &str, client_secret: &str, scope: &str) -> Result<CachedToken, MlofloError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("scope", scope),
        ];
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let mut request = HttpRequest::new(HttpMethod::Post, format!("{}{}", self.base_url, api::TOKEN_PATH))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .body(body.join("&"));
        request.secrets.push(client_secret.to_owned());
        let now = self.host.now_ms();
        let response = self.host.http(request)?;
        if !(200..300).contains(&response.status) {
            return Err(match api_error(&response) {
                // The token endpoint refusing the client is a credentials problem, whatever status.
                MlofloError::Api {
                    status, code, message, ..
                } if (400..500).contains(&status) && status != 429 => MlofloError::Api {
                    status: 401,
                    code,
                    message: format!("token request refused ({status}): {message}"),
                    retry_after_ms: None,
                },
                other => other,
            });
        }
        let answer: TokenAnswer = serde_json::from_str(&response.body).map_err(|e| MlofloError::Decode {
            status: response.status,
            detail: format!("token answer: {e}"),
        })?;
        if answer.access_token.is_empty() {
            return Err(MlofloError::Decode {
                status: response.status,
                detail: "empty access_token".into(),
            });
        }
        let lifetime_ms = answer.expires_in.unwrap_or(3600).max(0).saturating_mul(1000);
        Ok(CachedToken {
            access_token: answer.access_token,
            expires_at_ms: now.saturating_add(lifetime_ms),
        })
    }

    fn send_once(
        &self,
        method: HttpMethod,
        path: &str,
        body: Option<&Value>,
        renew: bool,
    ) -> Result<HttpResponse, MlofloError> {
        let bearer = self.bearer(renew)?;
        let mut request = HttpRequest::new(method, format!("{}{path}", self.base_url))
            .header("Authorization", format!("Bearer {bearer}"))
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        request.secrets.push(bearer);
        Ok(self.host.http(request)?)
    }

    /// One call: JSON answer on 2xx (`null` for an empty body), a typed error otherwise. An
    /// OAuth token the API refuses (revoked, expired early) is renewed once.
    pub fn send(&self, method: HttpMethod, path: &str, body: Option<&Value>) -> Result<Value, MlofloError> {
        let mut response = self.send_once(method, path, body, false)?;
        let oauth = matches!(self.credentials, Some(Credentials::ClientCredentials { .. }));
        if response.status == 401 && oauth {
            self.remember(None);
            response = self.send_once(method, path, body, true)?;
        }
        if !(200..300).contains(&response.status) {
            return Err(api_error(&response));
        }
        if response.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&response.body).map_err(|e| MlofloError::Decode {
            status: response.status,
            detail: e.to_string(),
        })
    }

    /// A list page: its objects and the next cursor.
    pub fn list(&self, path: &str, pairs: &[(&str, String)]) -> Result<(Vec<Value>, Option<String>), MlofloError> {
        let answer = self.send(HttpMethod::Get, &format!("{path}{}", query(pairs)), None)?;
        let data = match answer.get(api::LIST_DATA) {
            Some(Value::Array(items)) => items.clone(),
            _ => {
                return Err(MlofloError::Decode {
                    status: 200,
                    detail: format!("a list answer without `{}`", api::LIST_DATA),
                })
            }
        };
        let next = answer
            .get(api::LIST_NEXT)
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        Ok((data, next))
    }
}
