use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use tether_sandbox::{GhlConfig, RateLimitConfig, RunningGhl};

pub struct Env {
    pub ghl: RunningGhl,
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    pub fn header_u64(&self, name: &str) -> u64 {
        self.header(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("header {name} missing or not a number"))
    }
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A seeded emulator with rate limits off (the rate-limit tests turn them on).
pub async fn env(contacts: usize) -> Env {
    env_with(GhlConfig {
        rate_limit: RateLimitConfig::disabled(),
        ..GhlConfig::seeded(42, contacts)
    })
    .await
}

pub async fn env_with(config: GhlConfig) -> Env {
    let ghl = tether_sandbox::start(loopback(), config)
        .await
        .expect("emulator starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = ghl.base_url();
    Env { ghl, http, base }
}

impl Env {
    pub fn pit(&self) -> String {
        self.ghl.credentials.pit.clone()
    }

    pub fn loc(&self) -> String {
        self.ghl.credentials.location_id.clone()
    }

    pub fn request(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("Version", "2021-07-28")
            .bearer_auth(token)
    }

    pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request completes");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut rb = self.request(method, path, token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Self::send(rb).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, &self.pit(), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, &self.pit(), Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, &self.pit(), Some(body)).await
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> Resp {
        self.call(Method::DELETE, path, &self.pit(), body).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Self::send(rb).await
    }

    pub async fn state(&self) -> Value {
        self.admin(Method::GET, "/_sandbox/state", None).await.body
    }

    /// Creates a contact in the main location and returns its id.
    pub async fn create_contact(&self, body: Value) -> String {
        let mut b = body;
        b["locationId"] = Value::String(self.loc());
        let r = self.post("/contacts/", b).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["contact"]["id"].as_str().expect("id").to_string()
    }

    /// Seeded contacts of the main location, from the state dump.
    pub async fn my_contacts(&self) -> Vec<Value> {
        let loc = self.loc();
        self.state().await["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .filter(|c| c["locationId"] == loc.as_str())
            .cloned()
            .collect()
    }
}

pub fn messages(body: &Value) -> Vec<String> {
    body["message"]
        .as_array()
        .unwrap_or_else(|| panic!("message is not an array: {body}"))
        .iter()
        .map(|m| m.as_str().unwrap_or_default().to_string())
        .collect()
}
