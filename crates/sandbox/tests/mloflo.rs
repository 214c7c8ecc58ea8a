//! The MLOFLO emulator over HTTP: auth and scopes, OAuth, lists with cursors, `updated_since`
//! and soft deletes, milestones on stage changes, validation, rate limits, faults, and webhooks
//! signed and retried.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use axum::Router;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_sandbox::mloflo::{self, DeliveryConfig, MlofloConfig, RunningMloflo, STAGES};
use tether_sandbox::{FaultConfig, RateLimitConfig};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Env {
    mlo: RunningMloflo,
    http: reqwest::Client,
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

async fn env_with(config: MlofloConfig) -> Env {
    let mlo = mloflo::start(loopback(), config).await.expect("emulator starts");
    Env {
        mlo,
        http: reqwest::Client::new(),
    }
}

async fn env(contacts: usize) -> Env {
    env_with(MlofloConfig {
        rate_limit: RateLimitConfig::disabled(),
        ..MlofloConfig::seeded(7, contacts)
    })
    .await
}

impl Env {
    async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.mlo.base_url()))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Resp { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let key = self.mlo.credentials.api_key.clone();
        self.call_as(&key, method, path, body).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> Resp {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.mlo.base_url()))
            .form(form)
            .send()
            .await
            .expect("token request");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.json().await.expect("token JSON");
        Resp { status, headers, body }
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn api_keys_are_scoped_and_unknown_tokens_refused() {
    let e = env(3).await;
    let ok = e.get("/contacts").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ids(&ok.body).len(), 3);
    let bad = e.call_as("mlo_test_nope", Method::GET, "/contacts", None).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["error"]["code"], "unauthorized");
    let readonly = e.mlo.credentials.readonly_api_key.clone();
    assert_eq!(
        e.call_as(&readonly, Method::GET, "/contacts", None).await.status,
        StatusCode::OK
    );
    let refused = e
        .call_as(&readonly, Method::POST, "/contacts", Some(json!({"first_name": "Ann"})))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "forbidden");
    assert!(e.mlo.credentials.api_key.starts_with("mlo_test_"));
    assert_eq!(e.mlo.credentials.api_key.len(), "mlo_test_".len() + 32);
}

#[tokio::test]
async fn client_credentials_grant_tokens_that_expire() {
    let e = env(1).await;
    let c = e.mlo.credentials.clone();
    let wrong = e
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", "x"),
        ])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"], "invalid_client");
    let granted = e
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("scope", "contacts:read"),
        ])
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.body);
    assert_eq!(granted.body["token_type"], "Bearer");
    assert_eq!(granted.body["expires_in"], 3600);
    let token = granted.body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        e.call_as(&token, Method::GET, "/contacts", None).await.status,
        StatusCode::OK
    );
    let write = e.call_as(&token, Method::POST, "/tasks", Some(json!({}))).await;
    assert_eq!(write.status, StatusCode::FORBIDDEN, "scope was only contacts:read");
    e.mlo.emulator.expire_tokens();
    let expired = e.call_as(&token, Method::GET, "/contacts", None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    // API keys do not expire with tokens.
    assert_eq!(e.get("/contacts").await.status, StatusCode::OK);
}

#[tokio::test]
async fn seeding_covers_every_stage_with_us_contacts_and_history() {
    let e = env(28).await;
    let state = e.mlo.emulator.state();
    let contacts = state["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 28);
    for kind in ["borrower", "partner"] {
        let stages: HashSet<&str> = contacts
            .iter()
            .filter(|c| c["type"] == kind)
            .filter_map(|c| c["pipeline_stage"].as_str())
            .collect();
        assert_eq!(stages.len(), STAGES.len(), "{kind} stages: {stages:?}");
    }
    for c in contacts {
        let phone = c["phone"].as_str().expect("phone");
        assert!(phone.starts_with("+1") && phone.len() == 12, "{phone}");
        assert_eq!(c["address"]["state"].as_str().map(str::len), Some(2));
        assert_eq!(c["address"]["zip"].as_str().map(str::len), Some(5));
    }
    let closed = contacts
        .iter()
        .find(|c| c["pipeline_stage"] == "closed")
        .expect("a closed contact");
    let id = closed["id"].as_str().expect("id");
    let milestones = e.get(&format!("/contacts/{id}/milestones")).await;
    let path: Vec<&str> = milestones.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["to_stage"].as_str())
        .collect();
    assert_eq!(
        path,
        ["pre_approval", "application", "processing", "clear_to_close", "closed"]
    );
    assert!(state["notes"][0]["attachments"][0]["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://")));
    // The same seed gives the same data (times follow the clock).
    let people = |state: &Value| -> Vec<(String, String)> {
        state["contacts"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| (c["id"].to_string(), c["email"].to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let again = env(28).await;
    assert_eq!(people(&again.mlo.emulator.state()), people(&state));
}

#[tokio::test]
async fn lists_page_with_cursors_and_updated_since_and_hide_soft_deletes() {
    let e = env(7).await;
    let first = e.get("/contacts?limit=3").await;
    assert_eq!(ids(&first.body).len(), 3);
    let mut all = ids(&first.body);
    let mut cursor = first.body["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = e.get(&format!("/contacts?limit=3&cursor={c}")).await;
        all.extend(ids(&page.body));
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(all.len(), 7);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 7, "no repeats across pages");

    let victim = all[0].clone();
    let gone = e.call(Method::DELETE, &format!("/contacts/{victim}"), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        e.get(&format!("/contacts/{victim}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(!ids(&e.get("/contacts").await.body).contains(&victim));
    let with_deleted = e.get("/contacts?include_deleted=true").await;
    let last = with_deleted.body["data"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .expect("last");
    assert_eq!(last["id"], victim.as_str(), "a delete is a change: it sorts last");
    assert!(last["deleted_at"].is_string());

    let since = last["updated_at"].as_str().expect("updated_at").to_owned();
    let changed = e
        .get(&format!("/contacts?include_deleted=true&updated_since={since}"))
        .await;
    assert_eq!(ids(&changed.body), std::slice::from_ref(&victim));

    for bad in [
        "limit=0",
        "limit=101",
        "cursor=%21%21",
        "updated_since=yesterday",
        "include_deleted=maybe",
        "sort=name",
    ] {
        let r = e.get(&format!("/contacts?{bad}")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(r.body["error"]["code"], "validation_error");
    }
}

#[tokio::test]
async fn writes_validate_and_a_stage_change_records_a_milestone() {
    let e = env(1).await;
    let bad = e
        .call(
            Method::POST,
            "/contacts",
            Some(json!({"first_name": "Ann", "email": "not-an-email", "pipeline_stage": "funded", "color": "red"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["email", "pipeline_stage", "color"] {
        assert!(
            bad.body["error"]["fields"][field].is_string(),
            "{field}: {:?}",
            bad.body
        );
    }
    let made = e
        .call(
            Method::POST,
            "/contacts",
            Some(
                json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "phone": "(512) 555-0100"}),
            ),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    assert_eq!(made.body["pipeline_stage"], "new_lead");
    let id = made.body["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 24);
    let dup = e
        .call(
            Method::POST,
            "/contacts",
            Some(json!({"first_name": "Other", "email": "ANN@example.com"})),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    let moved = e
        .call(
            Method::PATCH,
            &format!("/contacts/{id}"),
            Some(json!({"pipeline_stage": "pre_approval"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK);
    let milestones = e.get(&format!("/contacts/{id}/milestones")).await;
    assert_eq!(milestones.body["data"][0]["from_stage"], "new_lead");
    assert_eq!(milestones.body["data"][0]["to_stage"], "pre_approval");
    let events = e.mlo.emulator.events();
    let kinds: Vec<&str> = events.iter().filter_map(|ev| ev["type"].as_str()).collect();
    assert_eq!(kinds, ["contact.created", "contact.stage_changed"]);
    assert_eq!(events[1]["data"]["milestone"]["to_stage"], "pre_approval");

    let task = e
        .call(
            Method::POST,
            "/tasks",
            Some(json!({"contact_id": id, "title": "Call back"})),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED);
    let task_id = task.body["id"].as_str().expect("task id").to_owned();
    let done = e
        .call(
            Method::PATCH,
            &format!("/tasks/{task_id}"),
            Some(json!({"status": "completed"})),
        )
        .await;
    assert!(done.body["completed_at"].is_string());
    assert_eq!(
        e.mlo.emulator.events().last().map(|ev| ev["type"].clone()),
        Some(json!("task.completed"))
    );
    let orphan = e
        .call(
            Method::POST,
            "/tasks",
            Some(json!({"contact_id": "000000000000000000000000", "title": "x"})),
        )
        .await;
    assert_eq!(orphan.status, StatusCode::UNPROCESSABLE_ENTITY);

    let note = e
        .call(
            Method::POST,
            &format!("/contacts/{id}/notes"),
            Some(json!({"body": "Docs in", "attachments": [{"file_name": "w2.pdf", "url": "https://files.example/w2.pdf"}]})),
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED);
    assert_eq!(note.body["attachments"][0]["id"].as_str().map(str::len), Some(24));
    let listed = e.get(&format!("/contacts/{id}/notes")).await;
    assert_eq!(
        ids(&listed.body),
        [note.body["id"].as_str().expect("note id").to_owned()]
    );
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_rate_headers() {
    let e = env_with(MlofloConfig {
        rate_limit: RateLimitConfig {
            enabled: true,
            burst_max: 3,
            window_ms: 60_000,
            daily_limit: u64::MAX,
        },
        ..MlofloConfig::seeded(7, 1)
    })
    .await;
    let first = e.get("/contacts").await;
    assert_eq!(first.header("x-ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(first.header("x-ratelimit-remaining").as_deref(), Some("2"));
    let reset: i64 = first
        .header("x-ratelimit-reset")
        .and_then(|v| v.parse().ok())
        .expect("reset");
    assert!(reset > 1_700_000_000, "epoch seconds: {reset}");
    e.get("/contacts").await;
    e.get("/contacts").await;
    let refused = e.get("/contacts").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["error"]["code"], "rate_limited");
    let wait: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    // Another key has its own budget.
    let other = e.mlo.credentials.readonly_api_key.clone();
    assert_eq!(
        e.call_as(&other, Method::GET, "/contacts", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn faults_inject_errors_and_429s_but_spare_admin_routes() {
    let e = env(1).await;
    e.mlo
        .set_faults(FaultConfig {
            error_next: 1,
            error_status: 503,
            rate_limit_next: 1,
            ..FaultConfig::default()
        })
        .expect("faults");
    let limited = e.get("/contacts").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.header("retry-after").is_some());
    let failed = e.get("/contacts").await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.body["error"]["code"], "internal_error");
    assert_eq!(e.get("/contacts").await.status, StatusCode::OK);
    let admin = e
        .http
        .put(format!("{}/_sandbox/faults", e.mlo.admin_url()))
        .json(&json!({"errorNext": 5}))
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), StatusCode::OK);
    let creds = e
        .http
        .get(format!("{}/_sandbox/credentials", e.mlo.admin_url()))
        .send()
        .await
        .expect("admin");
    assert_eq!(creds.status(), StatusCode::OK, "admin routes are never faulted");
    assert_eq!(e.get("/contacts").await.status.as_u16(), 500);
}

/// A receiver that refuses the first `refuse` deliveries with 500, then accepts.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

async fn receiver(refuse: usize) -> Receiver {
    let got: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let seen = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().expect("lock");
                seen.push((headers, String::from_utf8_lossy(&body).into_owned()));
                if seen.len() <= refuse {
                    AxStatus::INTERNAL_SERVER_ERROR
                } else {
                    AxStatus::NO_CONTENT
                }
            }
        }),
    );
    let listener = tether_sandbox::serve::bind(loopback()).await.expect("bind");
    let server = tether_sandbox::serve::spawn(listener, app).expect("serve");
    let url = format!("http://{}/hook", server.addr);
    std::mem::forget(server);
    Receiver { url, got }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_until_accepted() {
    let hook = receiver(2).await;
    let e = env_with(MlofloConfig {
        rate_limit: RateLimitConfig::disabled(),
        webhook_urls: vec![hook.url.clone()],
        webhook_delivery: DeliveryConfig::fast(Duration::from_millis(20)),
        ..MlofloConfig::seeded(7, 0)
    })
    .await;
    let made = e
        .call(
            Method::POST,
            "/contacts",
            Some(json!({"first_name": "Ann", "email": "ann@example.com"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    wait_for("three attempts", || hook.got.lock().expect("lock").len() == 3).await;
    let got = hook.got.lock().expect("lock").clone();
    let secret = e.mlo.credentials.webhook_secret.clone();
    let event_ids: HashSet<String> = got
        .iter()
        .map(|(h, _)| h["x-mloflo-event-id"].to_str().expect("id").to_owned())
        .collect();
    assert_eq!(event_ids.len(), 1, "a retry is the same event");
    for (headers, body) in &got {
        let ts = headers["x-mloflo-timestamp"].to_str().expect("ts");
        let sig = headers["x-mloflo-signature"].to_str().expect("sig");
        assert_eq!(sig, mloflo::sign(&secret, ts, body));
        assert_ne!(sig, mloflo::sign("another secret", ts, body));
        let event: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(event["type"], "contact.created");
        assert_eq!(event["data"]["id"], made.body["id"]);
        assert!(event["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_") && id.len() == 28));
    }
    wait_for("the delivered state", || {
        e.mlo
            .emulator
            .deliveries()
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(e.mlo.emulator.deliveries()[0]["attempts"], 3);
}

#[tokio::test]
async fn api_subscriptions_get_their_own_secret_once_and_their_events_only() {
    let hook = receiver(0).await;
    let e = env_with(MlofloConfig {
        rate_limit: RateLimitConfig::disabled(),
        webhook_delivery: DeliveryConfig::fast(Duration::from_millis(20)),
        ..MlofloConfig::seeded(7, 1)
    })
    .await;
    let sub = e
        .call(
            Method::POST,
            "/webhooks",
            Some(json!({"url": hook.url, "events": ["note.created"]})),
        )
        .await;
    assert_eq!(sub.status, StatusCode::CREATED);
    let secret = sub.body["secret"].as_str().expect("secret once").to_owned();
    let listed = e.get("/webhooks").await;
    assert!(listed.body["data"][0].get("secret").is_none(), "never shown again");
    let bad = e
        .call(
            Method::POST,
            "/webhooks",
            Some(json!({"url": hook.url, "events": ["deal.won"]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let contact = e.get("/contacts").await.body["data"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    e.call(
        Method::PATCH,
        &format!("/contacts/{contact}"),
        Some(json!({"source": "zillow"})),
    )
    .await;
    e.call(
        Method::POST,
        &format!("/contacts/{contact}/notes"),
        Some(json!({"body": "hello"})),
    )
    .await;
    wait_for("the note event", || !hook.got.lock().expect("lock").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = hook.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "contact.updated was not subscribed");
    let (headers, body) = &got[0];
    let ts = headers["x-mloflo-timestamp"].to_str().expect("ts");
    assert_eq!(
        headers["x-mloflo-signature"].to_str().expect("sig"),
        mloflo::sign(&secret, ts, body)
    );
}
