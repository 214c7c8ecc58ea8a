use crate::common::{env, Env};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
}

#[derive(Clone)]
struct Rx {
    tx: mpsc::UnboundedSender<(HeaderMap, Bytes)>,
    /// Statuses to answer with, in order; 200 once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
}

async fn hook(State(s): State<Rx>, headers: HeaderMap, body: Bytes) -> AxStatus {
    let _ = s.tx.send((headers, body));
    let code = s.script.lock().ok().and_then(|mut q| q.pop_front()).unwrap_or(200);
    AxStatus::from_u16(code).unwrap_or(AxStatus::OK)
}

async fn receiver(script: Vec<u16>) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Rx {
        tx,
        script: Arc::new(Mutex::new(script.into())),
    };
    let app = Router::new().route("/hook", post(hook)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        rx,
    }
}

async fn next(r: &mut Receiver) -> (HeaderMap, Bytes, Value) {
    let (h, b) = tokio::time::timeout(Duration::from_secs(5), r.rx.recv())
        .await
        .expect("a webhook arrives in time")
        .expect("channel open");
    let v: Value = serde_json::from_slice(&b).expect("json body");
    (h, b, v)
}

async fn key(e: &Env) -> VerifyingKey {
    let r = e.admin(Method::GET, "/_sandbox/public-key", None).await;
    assert_eq!(r.body["algorithm"], "Ed25519");
    let raw = STANDARD
        .decode(r.body["publicKey"].as_str().unwrap_or_default())
        .expect("b64");
    let spki = STANDARD
        .decode(r.body["spki"].as_str().unwrap_or_default())
        .expect("b64");
    assert_eq!(
        &spki[..12],
        &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
    );
    assert_eq!(&spki[12..], raw.as_slice());
    assert_eq!(raw.as_slice(), e.ghl.webhook_public_key.raw.as_slice());
    let arr: [u8; 32] = raw.try_into().expect("32 bytes");
    VerifyingKey::from_bytes(&arr).expect("key")
}

fn verify(k: &VerifyingKey, h: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = h.get("x-ghl-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(bytes) = STANDARD.decode(sig) else { return false };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    k.verify(body, &sig).is_ok()
}

#[tokio::test]
async fn signed_events_for_contact_task_and_note_mutations() {
    let e = env(0).await;
    let mut rcv = receiver(vec![]).await;
    let r = e
        .admin(Method::POST, "/_sandbox/webhooks", Some(json!({"url": rcv.url})))
        .await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let k = key(&e).await;

    let cid = e
        .create_contact(json!({"firstName": "Hook", "lastName": "Test", "email": "hook@example.com", "tags": ["a"]}))
        .await;
    let (h, body, v) = next(&mut rcv).await;
    assert!(verify(&k, &h, &body), "signature verifies over the raw body");
    let mut tampered = body.to_vec();
    tampered[body.len() / 2] ^= 1;
    assert!(!verify(&k, &h, &tampered), "and fails for a changed body");
    assert_eq!(v["type"], "ContactCreate");
    assert_eq!(v["id"], cid.as_str());
    assert_eq!(v["locationId"], e.loc().as_str());
    assert_eq!(v["name"], "Hook Test");
    assert_eq!(v["tags"], json!(["a"]));
    assert_eq!(v["attachments"], json!([]));
    assert!(v["webhookId"].as_str().is_some_and(|w| w.len() == 36));
    assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    e.put(&format!("/contacts/{cid}"), json!({"tags": ["b"], "dnd": true}))
        .await;
    let mut types = Vec::new();
    for _ in 0..3 {
        let (h, b, v) = next(&mut rcv).await;
        assert!(verify(&k, &h, &b));
        types.push(v["type"].as_str().unwrap_or_default().to_string());
        if v["type"] == "ContactDndUpdate" {
            assert!(v["dndSettings"].is_object());
        }
    }
    assert_eq!(types, ["ContactUpdate", "ContactTagUpdate", "ContactDndUpdate"]);

    let t = e
        .post(
            &format!("/contacts/{cid}/tasks"),
            json!({"title": "T", "dueDate": "2030-01-01", "completed": false}),
        )
        .await;
    let tid = t.body["task"]["id"].as_str().unwrap_or_default().to_string();
    e.put(
        &format!("/contacts/{cid}/tasks/{tid}/completed"),
        json!({"completed": true}),
    )
    .await;
    e.delete(&format!("/contacts/{cid}/tasks/{tid}"), None).await;
    let n = e
        .post(&format!("/contacts/{cid}/notes"), json!({"body": "hello"}))
        .await;
    let nid = n.body["note"]["id"].as_str().unwrap_or_default().to_string();
    e.put(&format!("/contacts/{cid}/notes/{nid}"), json!({"body": "edited"}))
        .await;
    e.delete(&format!("/contacts/{cid}/notes/{nid}"), None).await;
    e.post(&format!("/contacts/{cid}/tags"), json!({"tags": ["c"]})).await;
    e.delete(&format!("/contacts/{cid}"), None).await;
    let mut got = Vec::new();
    for _ in 0..8 {
        let (h, b, v) = next(&mut rcv).await;
        assert!(verify(&k, &h, &b));
        got.push(v);
    }
    let types: Vec<&str> = got.iter().map(|v| v["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        types,
        [
            "TaskCreate",
            "TaskComplete",
            "TaskDelete",
            "NoteCreate",
            "NoteUpdate",
            "NoteDelete",
            "ContactTagUpdate",
            "ContactDelete"
        ]
    );
    assert_eq!(got[0]["title"], "T");
    assert_eq!(got[0]["contactId"], cid.as_str());
    assert_eq!(got[0]["dueDate"], "2030-01-01T00:00:00.000Z");
    assert_eq!(got[4]["body"], "edited");
    assert_eq!(got[6]["tags"], json!(["b", "c"]));
    let ids: std::collections::HashSet<&str> = got.iter().filter_map(|v| v["webhookId"].as_str()).collect();
    assert_eq!(ids.len(), 8, "webhookIds are unique");
    // The admin event log holds the same events.
    let log = e.admin(Method::GET, "/_sandbox/events", None).await;
    assert_eq!(log.body["events"].as_array().map(Vec::len), Some(12));
}

#[tokio::test]
async fn retried_only_on_429() {
    let e = crate::common::env_with(tether_sandbox::GhlConfig {
        webhook_delivery: tether_sandbox::ghl::DeliveryConfig {
            retry_interval: Duration::from_millis(50),
            max_retries: 3,
            timeout: Duration::from_secs(5),
        },
        rate_limit: tether_sandbox::RateLimitConfig::disabled(),
        ..tether_sandbox::GhlConfig::seeded(5, 0)
    })
    .await;
    // First event: 429, 429, then 200. Second event: 500, dropped.
    let mut rcv = receiver(vec![429, 429, 200, 500]).await;
    e.ghl.emulator.register_webhook(rcv.url.clone());
    e.create_contact(json!({"firstName": "Retry"})).await;
    let (_, b1, v1) = next(&mut rcv).await;
    let (_, b2, _) = next(&mut rcv).await;
    let (_, b3, _) = next(&mut rcv).await;
    assert_eq!(v1["type"], "ContactCreate");
    assert_eq!(b1, b2, "a retry resends the same bytes");
    assert_eq!(b1, b3);
    e.create_contact(json!({"firstName": "Dropped"})).await;
    let (_, _, v) = next(&mut rcv).await;
    assert_eq!(v["firstName"], "Dropped");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rcv.rx.try_recv().is_err(), "a 500 is not retried");
    let d = e.admin(Method::GET, "/_sandbox/webhooks", None).await;
    let deliveries = d.body["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(
        (deliveries[0]["attempts"].clone(), deliveries[0]["status"].clone()),
        (json!(3), json!(200))
    );
    assert_eq!(
        (deliveries[1]["attempts"].clone(), deliveries[1]["status"].clone()),
        (json!(1), json!(500))
    );
}
