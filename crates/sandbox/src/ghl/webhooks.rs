//! Webhook events: stamped with `timestamp` and `webhookId`, signed with Ed25519 over the exact
//! body bytes (base64 in `x-ghl-signature`), delivered in the background in emission order, and
//! retried only when the receiver answers 429, like GHL.

use crate::timefmt::{iso_ms, now_ms};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// Delivery tuning; GHL retries 429s about every 10 minutes, the emulator much sooner.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry_interval: Duration,
    /// Further attempts after the first 429.
    pub max_retries: u32,
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_interval: Duration::from_millis(500),
            max_retries: 5,
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Outgoing {
    body: Arc<Vec<u8>>,
    signature: String,
    webhook_id: String,
    event_type: String,
}

/// The keeping and sending of events. Cheap to share behind the emulator's `Arc`.
#[derive(Debug)]
pub struct Webhooks {
    key: SigningKey,
    config: DeliveryConfig,
    urls: Arc<Mutex<Vec<String>>>,
    /// Every emitted event as sent (most recent last).
    events: Mutex<Vec<Value>>,
    /// One record per (event, url): attempts and last status.
    deliveries: Arc<Mutex<Vec<Value>>>,
    tx: OnceLock<mpsc::UnboundedSender<Outgoing>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const KEEP: usize = 10_000;

impl Webhooks {
    pub fn new(key: SigningKey, urls: Vec<String>, config: DeliveryConfig) -> Self {
        Self {
            key,
            config,
            urls: Arc::new(Mutex::new(urls)),
            events: Mutex::new(Vec::new()),
            deliveries: Arc::new(Mutex::new(Vec::new())),
            tx: OnceLock::new(),
        }
    }

    pub fn register(&self, url: String) {
        let mut u = lock(&self.urls);
        if !u.contains(&url) {
            u.push(url);
        }
    }

    pub fn clear(&self) {
        lock(&self.urls).clear();
    }

    pub fn urls(&self) -> Vec<String> {
        lock(&self.urls).clone()
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

    /// Signs `body` as GHL does: Ed25519 over the raw bytes, base64.
    pub fn sign(&self, body: &[u8]) -> String {
        STANDARD.encode(self.key.sign(body).to_bytes())
    }

    /// Stamps, signs, records and queues one event. Must run inside a tokio runtime (it does:
    /// handlers call it), which starts the delivery task on first use.
    pub fn emit(&self, mut payload: Value, webhook_id: String) {
        if let Value::Object(m) = &mut payload {
            m.insert("timestamp".into(), json!(iso_ms(now_ms())));
            m.insert("webhookId".into(), json!(webhook_id));
        }
        let event_type = payload["type"].as_str().unwrap_or_default().to_string();
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let signature = self.sign(&body);
        {
            let mut ev = lock(&self.events);
            ev.push(payload);
            if ev.len() > KEEP {
                ev.remove(0);
            }
        }
        let out = Outgoing {
            body: Arc::new(body),
            signature,
            webhook_id,
            event_type,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(dispatch(
                rx,
                self.urls.clone(),
                self.deliveries.clone(),
                self.config.clone(),
            ));
            tx
        });
        let _ = tx.send(out);
    }
}

async fn post(client: &reqwest::Client, url: &str, ev: &Outgoing) -> Result<u16, String> {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-ghl-signature", &ev.signature)
        .body(ev.body.as_ref().clone())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn record(deliveries: &Mutex<Vec<Value>>, idx: usize, attempts: u32, res: &Result<u16, String>) {
    let mut d = lock(deliveries);
    if let Some(r) = d.get_mut(idx) {
        r["attempts"] = json!(attempts);
        match res {
            Ok(s) => {
                r["status"] = json!(s);
                r["error"] = Value::Null;
            }
            Err(e) => {
                r["status"] = Value::Null;
                r["error"] = json!(e);
            }
        }
    }
}

async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    urls: Arc<Mutex<Vec<String>>>,
    deliveries: Arc<Mutex<Vec<Value>>>,
    cfg: DeliveryConfig,
) {
    let client = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .build()
        .unwrap_or_default();
    while let Some(ev) = rx.recv().await {
        let ev = Arc::new(ev);
        let targets = lock(&urls).clone();
        for url in targets {
            let idx = {
                let mut d = lock(&deliveries);
                if d.len() >= KEEP {
                    // Dropping old records shifts indexes; the record of a retrying delivery
                    // may then be lost, which only affects the log.
                    d.clear();
                }
                d.push(json!({
                    "webhookId": ev.webhook_id, "type": ev.event_type, "url": url,
                    "attempts": 0, "status": null, "error": null,
                }));
                d.len() - 1
            };
            let res = post(&client, &url, &ev).await;
            record(&deliveries, idx, 1, &res);
            if res == Ok(429) && cfg.max_retries > 0 {
                // Retries run on their own so one throttling receiver does not hold up others.
                let (client, ev, deliveries, cfg) = (client.clone(), ev.clone(), deliveries.clone(), cfg.clone());
                tokio::spawn(async move {
                    for attempt in 2..=cfg.max_retries + 1 {
                        tokio::time::sleep(cfg.retry_interval).await;
                        let res = post(&client, &url, &ev).await;
                        record(&deliveries, idx, attempt, &res);
                        if res != Ok(429) {
                            break;
                        }
                    }
                });
            }
        }
    }
}
