//! Webhook delivery: each event POSTed to every subscription that wants it, signed
//! `v1=HMAC-SHA256(secret, timestamp + "." + body)` afresh on each attempt, and retried on any
//! non-2xx answer or failure along the backoff schedule (the contract: 1 min, 5 min, 30 min,
//! 2 h, 12 h; tests shorten it).

use super::store::Subscription;
use crate::timefmt::now_ms;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Waits before each retry; after the last, the delivery is given up.
    pub backoff: Vec<Duration>,
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            backoff: vec![minutes(1), minutes(5), minutes(30), minutes(120), minutes(720)],
            timeout: Duration::from_secs(10),
        }
    }
}

impl DeliveryConfig {
    /// The contract's schedule compressed to `step` per retry, for tests.
    pub fn fast(step: Duration) -> Self {
        Self {
            backoff: vec![step; 5],
            timeout: Duration::from_secs(5),
        }
    }
}

/// `v1=<hex>` for `timestamp.body`.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

const KEEP: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
pub struct Webhooks {
    config: DeliveryConfig,
    events: Mutex<Vec<Value>>,
    deliveries: Arc<Mutex<Vec<Value>>>,
    client: reqwest::Client,
}

impl Webhooks {
    pub fn new(config: DeliveryConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        Self {
            config,
            events: Mutex::new(Vec::new()),
            deliveries: Arc::new(Mutex::new(Vec::new())),
            client,
        }
    }

    pub fn events(&self) -> Vec<Value> {
        lock(&self.events).clone()
    }

    pub fn deliveries(&self) -> Vec<Value> {
        lock(&self.deliveries).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.events).clear();
        lock(&self.deliveries).clear();
    }

    /// Records `event` and starts its deliveries. Outside a tokio runtime it is only recorded.
    pub fn emit(&self, event: Value, subscriptions: &[Subscription]) {
        let kind = event["type"].as_str().unwrap_or_default().to_owned();
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        {
            let mut events = lock(&self.events);
            if events.len() >= KEEP {
                events.remove(0);
            }
            events.push(event.clone());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let body = Arc::new(event.to_string());
        for sub in subscriptions.iter().filter(|s| s.wants(&kind)) {
            let index = {
                let mut log = lock(&self.deliveries);
                if log.len() >= KEEP {
                    log.clear();
                }
                log.push(json!({
                    "event_id": id, "type": kind, "url": sub.url, "subscription_id": sub.id,
                    "attempts": 0, "state": "pending", "last_status": null, "last_error": null,
                }));
                log.len() - 1
            };
            let job = Delivery {
                client: self.client.clone(),
                url: sub.url.clone(),
                secret: sub.secret.clone(),
                event_id: id.clone(),
                body: body.clone(),
                backoff: self.config.backoff.clone(),
                log: self.deliveries.clone(),
                index,
            };
            tokio::spawn(job.run());
        }
    }
}

struct Delivery {
    client: reqwest::Client,
    url: String,
    secret: String,
    event_id: String,
    body: Arc<String>,
    backoff: Vec<Duration>,
    log: Arc<Mutex<Vec<Value>>>,
    index: usize,
}

impl Delivery {
    async fn attempt(&self) -> Result<u16, String> {
        let timestamp = (now_ms() / 1000).to_string();
        self.client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("X-Mloflo-Event-Id", &self.event_id)
            .header("X-Mloflo-Timestamp", &timestamp)
            .header("X-Mloflo-Signature", sign(&self.secret, &timestamp, &self.body))
            .body(self.body.as_ref().clone())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    fn note(&self, attempts: usize, result: &Result<u16, String>, state: &str) {
        let mut log = lock(&self.log);
        if let Some(entry) = log.get_mut(self.index) {
            entry["attempts"] = json!(attempts);
            entry["state"] = json!(state);
            match result {
                Ok(status) => entry["last_status"] = json!(status),
                Err(e) => entry["last_error"] = json!(e),
            }
        }
    }

    async fn run(self) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self.attempt().await;
            let delivered = matches!(result, Ok(s) if (200..300).contains(&s));
            let Some(wait) = self.backoff.get(attempts - 1).copied().filter(|_| !delivered) else {
                self.note(attempts, &result, if delivered { "delivered" } else { "failed" });
                return;
            };
            self.note(attempts, &result, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}
