//! A minimal signing client for the emulator tests, written from the reference (§2.2), not from
//! the plugin, so the two are checked against each other only through the emulator.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha512;
use tether_sandbox::aroflo::{AroFloConfig, AroFloCredentials, AroFloLimits, RunningAroFlo};
use tether_sandbox::timefmt::{iso_ms, now_ms};

pub async fn emulator(clients: usize) -> RunningAroFlo {
    let mut config = AroFloConfig::seeded(42, clients);
    config.rate_limit = AroFloLimits::disabled();
    tether_sandbox::aroflo::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("emulator")
}

/// `encodeURIComponent`, plus `'`: reqwest's URL parser would escape it after signing.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.!~*()".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub struct Signer {
    pub credentials: AroFloCredentials,
    pub timestamp_ms: i64,
    pub host_ip: Option<String>,
    pub accept: String,
}

impl Signer {
    pub fn new(credentials: &AroFloCredentials) -> Self {
        Signer {
            credentials: credentials.clone(),
            timestamp_ms: now_ms(),
            host_ip: None,
            accept: "text/json".into(),
        }
    }

    pub fn headers(&self, method: &str, var_string: &str) -> Vec<(String, String)> {
        let c = &self.credentials;
        let authorization = format!(
            "uencoded={}&pencoded={}&orgEncoded={}",
            encode(&c.uencoded),
            encode(&c.pencoded),
            encode(&c.org_encoded)
        );
        let timestamp = iso_ms(self.timestamp_ms);
        let mut parts = vec![method.to_owned()];
        parts.extend(self.host_ip.clone());
        parts.extend([
            String::new(),
            self.accept.clone(),
            authorization.clone(),
            timestamp.clone(),
            var_string.into(),
        ]);
        let mut mac = Hmac::<Sha512>::new_from_slice(c.secret_key.as_bytes()).expect("key");
        mac.update(parts.join("+").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let mut headers = vec![
            ("Authentication".to_owned(), format!("HMAC {signature}")),
            ("Authorization".to_owned(), authorization),
            ("Accept".to_owned(), self.accept.clone()),
            ("afdatetimeutc".to_owned(), timestamp),
        ];
        if let Some(ip) = &self.host_ip {
            headers.push(("HostIP".to_owned(), ip.clone()));
        }
        headers
    }
}

pub struct Reply {
    pub http: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or("?")
    }

    pub fn message(&self) -> &str {
        self.body["statusmessage"].as_str().unwrap_or("?")
    }

    pub fn rows(&self, zone: &str) -> Vec<Value> {
        self.body["zoneresponse"][zone].as_array().cloned().unwrap_or_default()
    }

    pub fn results(&self) -> &Value {
        &self.body["zoneresponse"]["postresults"]
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let http = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { http, headers, body }
}

pub async fn send_get(aroflo: &RunningAroFlo, signer: &Signer, signed: &str, sent: &str) -> Reply {
    let mut request = reqwest::Client::new().get(format!("{}?{sent}", aroflo.base_url()));
    for (k, v) in signer.headers("GET", signed) {
        request = request.header(k, v);
    }
    reply(request.send().await.expect("send")).await
}

pub async fn get(aroflo: &RunningAroFlo, pairs: &[(&str, &str)]) -> Reply {
    let q = query(pairs);
    send_get(aroflo, &Signer::new(&aroflo.credentials), &q, &q).await
}

pub async fn post(aroflo: &RunningAroFlo, zone: &str, xml: &str) -> Reply {
    let body = query(&[("zone", zone), ("postxml", xml)]);
    let mut request = reqwest::Client::new()
        .post(aroflo.base_url())
        .header("Content-Type", "application/x-www-form-urlencoded");
    for (k, v) in Signer::new(&aroflo.credentials).headers("POST", &body) {
        request = request.header(k, v);
    }
    reply(request.body(body).send().await.expect("send")).await
}
