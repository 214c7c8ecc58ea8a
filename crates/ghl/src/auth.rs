//! Credentials: a static Private Integration Token, or OAuth 2.0 tokens kept fresh by a
//! [`TokenManager`].
//!
//! OAuth runs on the `oauth2` crate with [`HostHttp`] as its HTTP client, so token requests go
//! through `Host::http` like every other request (no reqwest in this crate). Tokens live only in
//! the host's encrypted secret store (`Host::secret_put/secret_get`).

use std::sync::{Arc, Mutex, MutexGuard};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::http;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tether_abi::{ConnectorError, Host, HttpMethod, HttpRequest, LogLevel};

use crate::error::GhlError;

/// Secret holding the current refresh token.
pub const REFRESH_TOKEN_SECRET: &str = "ghl.oauth.refresh_token";
/// Secret holding the current access token and its expiry, as JSON.
pub const ACCESS_TOKEN_SECRET: &str = "ghl.oauth.access_token";
/// Non-empty once the refresh token was refused: the reason. Empty after a new consent.
pub const NEEDS_RECONNECT_SECRET: &str = "ghl.oauth.needs_reconnect";

/// Refresh this long before the access token expires, so no request carries a token that dies
/// in flight.
pub const REFRESH_MARGIN_MS: i64 = 120_000;

pub const DEFAULT_AUTHORIZE_URL: &str = "https://marketplace.gohighlevel.com/v2/oauth/chooselocation";
pub const DEFAULT_SCOPES: &[&str] = &["contacts.readonly", "contacts.write", "locations/customFields.readonly"];

/// The token response's GHL-specific fields (NOTES §3.1); the rest is ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GhlTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl ExtraTokenFields for GhlTokenFields {}

type GhlTokenResponse = StandardTokenResponse<GhlTokenFields, BasicTokenType>;

type OAuthClient = Client<
    BasicErrorResponse,
    GhlTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A marketplace app: what the consent URL and the token endpoint need.
#[derive(Clone, PartialEq)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    /// `https://services.leadconnectorhq.com/oauth/token` in production.
    pub token_url: String,
    pub authorize_url: String,
    pub redirect_uri: Option<String>,
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url)
            .field("authorize_url", &self.authorize_url)
            .finish_non_exhaustive()
    }
}

impl OAuthApp {
    fn client(&self) -> Result<OAuthClient, GhlError> {
        let bad = |what: &str, e: oauth2::url::ParseError| GhlError::Config(format!("{what}: {e}"));
        let mut client = Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_uri(AuthUrl::new(self.authorize_url.clone()).map_err(|e| bad("authorize_url", e))?)
            .set_token_uri(TokenUrl::new(self.token_url.clone()).map_err(|e| bad("token_url", e))?)
            // GHL reads client_id and client_secret from the form body, not Basic auth.
            .set_auth_type(AuthType::RequestBody);
        if let Some(uri) = &self.redirect_uri {
            client = client.set_redirect_uri(RedirectUrl::new(uri.clone()).map_err(|e| bad("redirect_uri", e))?);
        }
        Ok(client)
    }

    /// The consent page URL (`chooselocation`) for `state`.
    pub fn consent_url(&self, state: &str) -> Result<String, GhlError> {
        if self.redirect_uri.is_none() {
            return Err(GhlError::Config("redirect_uri is required for the consent URL".into()));
        }
        let state = state.to_owned();
        let (url, _) = self
            .client()?
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .url();
        Ok(url.to_string())
    }
}

/// Sends `oauth2`'s requests through the host.
pub struct HostHttp<'a> {
    pub host: &'a Host,
    /// Values in the request body the host must never log (client secret, refresh token).
    pub secrets: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostHttpError(pub ConnectorError);

impl oauth2::SyncHttpClient for HostHttp<'_> {
    type Error = HostHttpError;

    fn call(&self, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HostHttpError> {
        let method = match *request.method() {
            http::Method::GET => HttpMethod::Get,
            http::Method::POST => HttpMethod::Post,
            http::Method::PUT => HttpMethod::Put,
            http::Method::DELETE => HttpMethod::Delete,
            http::Method::PATCH => HttpMethod::Patch,
            ref other => {
                return Err(HostHttpError(ConnectorError::fatal(format!(
                    "unsupported OAuth method {other}"
                ))))
            }
        };
        let mut out = HttpRequest::new(method, request.uri().to_string());
        for (name, value) in request.headers() {
            if let Ok(value) = value.to_str() {
                out = out.header(name.as_str(), value);
            }
        }
        out.body = Some(String::from_utf8_lossy(request.body()).into_owned());
        out.secrets = self.secrets.clone();
        let response = self.host.http(out).map_err(HostHttpError)?;
        let mut builder = http::Response::builder().status(response.status);
        for (name, value) in &response.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(response.body.into_bytes())
            .map_err(|e| HostHttpError(ConnectorError::fatal(format!("token response: {e}"))))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredAccess {
    token: String,
    expires_at_ms: i64,
    #[serde(default)]
    issued_at_ms: i64,
}

impl StoredAccess {
    /// Still good for a while: refresh [`REFRESH_MARGIN_MS`] before expiry, or at three
    /// quarters of the lifetime for tokens shorter-lived than a few margins (else every call
    /// would refresh).
    fn fresh_at(&self, now: i64) -> bool {
        let lifetime = (self.expires_at_ms - self.issued_at_ms).max(0);
        let margin = REFRESH_MARGIN_MS.min(lifetime / 4);
        now < self.expires_at_ms - margin
    }
}

#[derive(Debug, Default)]
struct TokenState {
    loaded: bool,
    access: Option<StoredAccess>,
    refresh: Option<String>,
    /// A rotated refresh token the secret store has not accepted yet: it must be stored
    /// before anything else, since the previous one is already spent.
    refresh_unsaved: bool,
    reconnect_reason: Option<String>,
}

/// What a successful code exchange or refresh produced (no token values).
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub location_id: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at_ms: i64,
}

/// OAuth tokens of one connector instance. One mutex guards the state and is held across a
/// refresh: exactly one refresh runs at a time, and callers waiting on it reuse its result.
pub struct TokenManager {
    host: Host,
    app: OAuthApp,
    state: Mutex<TokenState>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    pub fn new(host: Host, app: OAuthApp) -> TokenManager {
        TokenManager {
            host,
            app,
            state: Mutex::new(TokenState::default()),
        }
    }

    pub fn app(&self) -> &OAuthApp {
        &self.app
    }

    fn lock(&self) -> MutexGuard<'_, TokenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load(&self, state: &mut TokenState) -> Result<(), GhlError> {
        if state.loaded {
            return Ok(());
        }
        let reason = self.host.secret_get(NEEDS_RECONNECT_SECRET)?;
        state.reconnect_reason = reason.filter(|r| !r.is_empty());
        state.refresh = self.host.secret_get(REFRESH_TOKEN_SECRET)?.filter(|t| !t.is_empty());
        // An unreadable stored access token is only a lost cache: the refresh token recovers.
        state.access = self
            .host
            .secret_get(ACCESS_TOKEN_SECRET)?
            .and_then(|json| serde_json::from_str(&json).ok());
        state.loaded = true;
        Ok(())
    }

    /// Whether a new consent is needed, with the reason recorded when it became so.
    pub fn needs_reconnect(&self) -> Result<Option<String>, GhlError> {
        let mut state = self.lock();
        self.load(&mut state)?;
        Ok(state.reconnect_reason.clone())
    }

    /// A valid access token, refreshed first when it expires within [`REFRESH_MARGIN_MS`].
    pub fn access_token(&self) -> Result<String, GhlError> {
        let mut state = self.lock();
        self.load(&mut state)?;
        self.usable(&mut state)?;
        let now = self.host.now_ms();
        if let Some(access) = state.access.as_ref().filter(|a| a.fresh_at(now)) {
            return Ok(access.token.clone());
        }
        self.refresh_locked(&mut state)
    }

    /// GHL refused `used` with a 401: refresh, unless another caller already replaced it.
    pub fn refresh_after_unauthorized(&self, used: &str) -> Result<String, GhlError> {
        let mut state = self.lock();
        self.load(&mut state)?;
        self.usable(&mut state)?;
        if let Some(access) = &state.access {
            if access.token != used {
                return Ok(access.token.clone());
            }
        }
        self.refresh_locked(&mut state)
    }

    /// Fails fast in the needs-reconnect state; finishes storing a rotated refresh token.
    fn usable(&self, state: &mut TokenState) -> Result<(), GhlError> {
        if state.reconnect_reason.is_some() {
            return Err(GhlError::NeedsReconnect);
        }
        if state.refresh_unsaved {
            let refresh = state.refresh.clone().unwrap_or_default();
            self.host.secret_put(REFRESH_TOKEN_SECRET, &refresh)?;
            state.refresh_unsaved = false;
        }
        Ok(())
    }

    fn refresh_locked(&self, state: &mut TokenState) -> Result<String, GhlError> {
        let refresh = state.refresh.clone().ok_or(GhlError::NotConnected)?;
        let client = self.app.client()?;
        let http = HostHttp {
            host: &self.host,
            secrets: vec![self.app.client_secret.clone(), refresh.clone()],
        };
        let result = client
            .exchange_refresh_token(&RefreshToken::new(refresh))
            .add_extra_param("user_type", "Location")
            .request(&http);
        match result {
            Ok(response) => {
                self.store(state, &response)?;
                self.host.log(
                    LogLevel::Info,
                    "refreshed the GHL access token",
                    &tether_abi::Fields::new(),
                );
                state
                    .access
                    .as_ref()
                    .map(|a| a.token.clone())
                    .ok_or_else(|| GhlError::OAuth("no access token after refresh".into()))
            }
            Err(RequestTokenError::ServerResponse(e)) if e.error().as_ref() == "invalid_grant" => {
                let reason = format!(
                    "refresh token refused ({}) at {}",
                    e.error_description().map(String::as_str).unwrap_or("invalid_grant"),
                    self.host.now_ms()
                );
                // Remember it durably: no later call (nor a restart) asks the token endpoint again.
                state.reconnect_reason = Some(reason.clone());
                self.host.secret_put(NEEDS_RECONNECT_SECRET, &reason)?;
                self.host.log(
                    LogLevel::Error,
                    "GHL refused the refresh token: run `tether auth ghl` to reconnect",
                    &tether_abi::Fields::new(),
                );
                Err(GhlError::NeedsReconnect)
            }
            Err(e) => Err(token_error(e)),
        }
    }

    /// Exchanges an authorization code (`tether auth ghl`) and stores the tokens; clears a
    /// needs-reconnect state.
    pub fn exchange_code(&self, code: &str) -> Result<Grant, GhlError> {
        let mut state = self.lock();
        let client = self.app.client()?;
        let http = HostHttp {
            host: &self.host,
            secrets: vec![self.app.client_secret.clone(), code.to_owned()],
        };
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .add_extra_param("user_type", "Location")
            .request(&http)
            .map_err(token_error)?;
        let grant = self.store(&mut state, &response)?;
        self.host.secret_put(NEEDS_RECONNECT_SECRET, "")?;
        state.reconnect_reason = None;
        state.loaded = true;
        Ok(grant)
    }

    /// Persists a token response: the refresh token first (the old one is spent), then the
    /// access token; only then does memory, and so any request, see the new access token.
    fn store(&self, state: &mut TokenState, response: &GhlTokenResponse) -> Result<Grant, GhlError> {
        let now = self.host.now_ms();
        let expires_in_ms = response
            .expires_in()
            .map(|d| d.as_millis() as i64)
            .unwrap_or(86_399_000);
        let access = StoredAccess {
            token: response.access_token().secret().clone(),
            expires_at_ms: now + expires_in_ms,
            issued_at_ms: now,
        };
        if let Some(rotated) = response.refresh_token() {
            state.refresh = Some(rotated.secret().clone());
            if let Err(e) = self.host.secret_put(REFRESH_TOKEN_SECRET, rotated.secret()) {
                state.refresh_unsaved = true;
                state.access = None;
                return Err(e.into());
            }
            state.refresh_unsaved = false;
        }
        let json = serde_json::to_string(&access).map_err(|e| GhlError::Decode(e.to_string()))?;
        self.host.secret_put(ACCESS_TOKEN_SECRET, &json)?;
        let grant = Grant {
            location_id: response.extra_fields().location_id.clone(),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            expires_at_ms: access.expires_at_ms,
        };
        state.access = Some(access);
        Ok(grant)
    }
}

fn token_error(e: RequestTokenError<HostHttpError, BasicErrorResponse>) -> GhlError {
    match e {
        RequestTokenError::ServerResponse(r) => GhlError::OAuth(format!(
            "{}{}",
            r.error().as_ref(),
            r.error_description().map(|d| format!(": {d}")).unwrap_or_default()
        )),
        RequestTokenError::Request(HostHttpError(inner)) => GhlError::from(inner),
        RequestTokenError::Parse(e, _) => GhlError::OAuth(format!("unreadable token response: {e}")),
        RequestTokenError::Other(e) => GhlError::OAuth(e),
    }
}

/// How requests are authorised.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A Private Integration Token: static, never refreshed.
    Pit(String),
    OAuth(Arc<TokenManager>),
}

impl Auth {
    pub fn token(&self) -> Result<String, GhlError> {
        match self {
            Auth::Pit(token) => Ok(token.clone()),
            Auth::OAuth(manager) => manager.access_token(),
        }
    }

    /// After a 401: a new token to retry with once, or `None` when retrying cannot help.
    pub fn after_unauthorized(&self, used: &str) -> Result<Option<String>, GhlError> {
        match self {
            Auth::Pit(_) => Ok(None),
            Auth::OAuth(manager) => manager.refresh_after_unauthorized(used).map(Some),
        }
    }

    /// The "app" half of the rate-limit key: GHL counts per app (client) per location.
    pub fn rate_key(&self) -> String {
        match self {
            Auth::Pit(_) => "pit".into(),
            Auth::OAuth(manager) => format!("oauth:{}", manager.app().client_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> OAuthApp {
        OAuthApp {
            client_id: "66aa-xyz".into(),
            client_secret: "s3cret".into(),
            token_url: "https://services.leadconnectorhq.com/oauth/token".into(),
            authorize_url: DEFAULT_AUTHORIZE_URL.into(),
            redirect_uri: Some("http://127.0.0.1:8787/oauth/callback".into()),
            scopes: vec!["contacts.readonly".into(), "contacts.write".into()],
        }
    }

    #[test]
    fn consent_url_carries_the_documented_parameters() {
        let url = app().consent_url("st-1").expect("url");
        assert!(url.starts_with("https://marketplace.gohighlevel.com/v2/oauth/chooselocation?"));
        for part in [
            "response_type=code",
            "client_id=66aa-xyz",
            "state=st-1",
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A8787%2Foauth%2Fcallback",
            "scope=contacts.readonly+contacts.write",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        assert!(!url.contains("s3cret"));
        let mut no_redirect = app();
        no_redirect.redirect_uri = None;
        assert!(matches!(no_redirect.consent_url("x"), Err(GhlError::Config(_))));
    }

    #[test]
    fn access_tokens_refresh_before_expiry() {
        let day = StoredAccess {
            token: "t".into(),
            expires_at_ms: 86_399_000,
            issued_at_ms: 0,
        };
        assert!(day.fresh_at(86_399_000 - REFRESH_MARGIN_MS - 1));
        assert!(!day.fresh_at(86_399_000 - REFRESH_MARGIN_MS));
        let short = StoredAccess {
            token: "t".into(),
            expires_at_ms: 2_000,
            issued_at_ms: 0,
        };
        assert!(short.fresh_at(1_499));
        assert!(!short.fresh_at(1_500));
        // A token stored without its issue time (older format) refreshes at expiry at the latest.
        let legacy: StoredAccess = serde_json::from_str(r#"{"token":"t","expires_at_ms":5}"#).expect("json");
        assert!(!legacy.fresh_at(5));
    }

    use tether_abi::HostServices as _;

    /// A host whose token endpoint rotates tokens and whose secret store can be made to fail.
    #[derive(Default)]
    struct FakeHost {
        secrets: Mutex<std::collections::HashMap<String, String>>,
        puts: Mutex<Vec<String>>,
        fail_next_put: std::sync::atomic::AtomicBool,
        token_calls: std::sync::atomic::AtomicUsize,
    }

    impl tether_abi::HostServices for FakeHost {
        fn http(&self, request: HttpRequest) -> Result<tether_abi::HttpResponse, ConnectorError> {
            let n = self.token_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            assert!(request
                .body
                .as_deref()
                .is_some_and(|b| b.contains("user_type=Location")));
            Ok(tether_abi::HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: serde_json::json!({"access_token": format!("access-{n}"), "token_type": "Bearer",
                    "expires_in": 86399, "refresh_token": format!("refresh-{n}"), "locationId": "L"})
                .to_string(),
            })
        }
        fn log(&self, _: LogLevel, _: &str, _: &tether_abi::Fields) {}
        fn now_ms(&self) -> i64 {
            1_000_000
        }
        fn secret_get(&self, key: &str) -> Result<Option<String>, ConnectorError> {
            Ok(self.secrets.lock().expect("lock").get(key).cloned())
        }
        fn secret_put(&self, key: &str, value: &str) -> Result<(), ConnectorError> {
            if self.fail_next_put.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(ConnectorError::transient("disk full"));
            }
            self.puts.lock().expect("lock").push(key.to_owned());
            self.secrets.lock().expect("lock").insert(key.into(), value.into());
            Ok(())
        }
    }

    #[test]
    fn the_rotated_refresh_token_is_stored_before_the_access_token_is_used() {
        let fake = Arc::new(FakeHost::default());
        fake.secrets
            .lock()
            .expect("lock")
            .insert(REFRESH_TOKEN_SECRET.into(), "refresh-0".into());
        let manager = TokenManager::new(fake.clone(), app());
        assert_eq!(manager.access_token().expect("refresh"), "access-1");
        assert_eq!(
            *fake.puts.lock().expect("lock"),
            vec![REFRESH_TOKEN_SECRET, ACCESS_TOKEN_SECRET]
        );
        assert_eq!(
            fake.secret_get(REFRESH_TOKEN_SECRET).expect("get").as_deref(),
            Some("refresh-1")
        );

        // The store refuses the next rotated token: the call fails and no access token is
        // handed out; the next call stores it first, then refreshes with it.
        let stale = TokenManager::new(fake.clone(), app());
        fake.fail_next_put.store(true, std::sync::atomic::Ordering::SeqCst);
        {
            let mut state = stale.lock();
            stale.load(&mut state).expect("load");
            state.access = None;
            let e = stale.refresh_locked(&mut state).expect_err("store failed");
            assert!(matches!(e, GhlError::Host(_)), "{e:?}");
            assert!(state.refresh_unsaved && state.access.is_none());
        }
        assert_eq!(
            fake.secret_get(REFRESH_TOKEN_SECRET).expect("get").as_deref(),
            Some("refresh-1")
        );
        assert_eq!(stale.access_token().expect("recovers"), "access-3");
        assert_eq!(
            fake.secret_get(REFRESH_TOKEN_SECRET).expect("get").as_deref(),
            Some("refresh-3")
        );
        let puts = fake.puts.lock().expect("lock").clone();
        assert_eq!(
            &puts[2..],
            &[REFRESH_TOKEN_SECRET, REFRESH_TOKEN_SECRET, ACCESS_TOKEN_SECRET],
            "refresh-2 stored before refresh-3 was fetched"
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        assert!(!format!("{:?}", app()).contains("s3cret"));
    }
}
