//! What an operator watches: `/metrics` of a running `tether run`, parsed as Prometheus text,
//! and alerts sent to a local receiver: one message per incident, however many checks and
//! restarts, and one resolved message when it clears.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};
use support::ghl_flow::{config, contacts_of, emulator};
use support::host_process::{eventually, RunningHost};
use tether_core::config::Config;
use tether_core::scheduler::{Scheduler, SchedulerSettings};
use tether_core::store::{EventKind, Store};
use tether_core::vault::{SecretKey, Vault};
use tether_ghl::auth::NEEDS_RECONNECT_SECRET;
use tether_host::alerts::{CheckReport, Checker};
use tether_sandbox::RunningGhl;

mod support;

const FLOW: &str = "copy-contacts";

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses Prometheus text format (what the exporter writes: no escapes inside label values
/// beyond `\"`, no timestamps).
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                    labels.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        samples.push((name, labels, value));
    }
    samples
}

/// The value of the one sample of `name` carrying every label of `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, labels, _)| n == name && want.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
        .collect();
    assert!(matching.len() <= 1, "{name} {want:?} is ambiguous: {matching:?}");
    matching.first().copied()
}

fn scrape(runtime: &tokio::runtime::Runtime, host: &RunningHost) -> (String, Vec<Sample>) {
    let text = runtime.block_on(async {
        let response = reqwest::get(format!("{}/metrics", host.base))
            .await
            .expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200);
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(kind.starts_with("text/plain"), "{kind}");
        response.text().await.expect("body")
    });
    let samples = parse_exposition(&text);
    (text, samples)
}

fn put_contact(runtime: &tokio::runtime::Runtime, ghl: &RunningGhl, id: &str, body: Value) {
    let url = format!("{}/contacts/{id}", ghl.base_url());
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .put(url)
            .bearer_auth(&ghl.credentials.pit)
            .header("Version", "2021-07-28")
            .json(&body)
            .send()
            .await
            .expect("PUT contact")
            .status()
    });
    assert!(status.is_success(), "PUT contact: {status}");
}

fn state_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.sqlite").display())
}

#[test]
fn metrics_after_a_sync_count_writes_requests_and_latency() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 61, 12);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    let store = runtime.block_on(Store::open(&state_url(dir.path()))).expect("store");
    let written_events = || {
        runtime
            .block_on(store.events(Some(FLOW), Some(EventKind::Written), 10_000))
            .expect("events")
            .len() as f64
    };
    // Settled: the queue is empty and the counter agrees with the store's record of writes.
    let mut last = (String::new(), Vec::new());
    let settled = eventually(Duration::from_secs(60), || {
        last = scrape(&runtime, &host);
        let samples = &last.1;
        let written = value(samples, "tether_records_written_total", &[("flow", FLOW)]);
        value(samples, "tether_queue_depth", &[("flow", FLOW)]) == Some(0.0)
            && written.is_some_and(|w| w > 0.0 && w == written_events())
    });
    let (text, samples) = last;
    assert!(settled, "the written counter matches the store's writes:\n{text}");
    let written = value(&samples, "tether_records_written_total", &[("flow", FLOW)]).unwrap_or_default();
    let b = ghl.credentials.other_location_id.clone();
    assert!(
        written <= contacts_of(&ghl, &b).len() as f64,
        "no more writes than contacts in B: {written}"
    );
    let read = value(&samples, "tether_records_read_total", &[("flow", FLOW)]).unwrap_or_default();
    assert!(read >= written, "read {read} < written {written}");
    assert_eq!(value(&samples, "tether_dead_letters", &[("flow", FLOW)]), Some(0.0));

    // Both connectors sent requests: A was read, B was written; every request has a latency.
    for connector in ["ghl_a", "ghl_b"] {
        let requests = value(&samples, "tether_http_requests_total", &[("connector", connector)]);
        assert!(requests.is_some_and(|r| r > 0.0), "{connector}: {requests:?}\n{text}");
        let count = value(
            &samples,
            "tether_http_request_duration_seconds_count",
            &[("connector", connector)],
        );
        assert_eq!(count, requests, "{connector}: one latency per request");
        let infinite = value(
            &samples,
            "tether_http_request_duration_seconds_bucket",
            &[("connector", connector), ("le", "+Inf")],
        );
        assert_eq!(infinite, requests, "{connector}: the +Inf bucket holds every request");
        let sum = value(
            &samples,
            "tether_http_request_duration_seconds_sum",
            &[("connector", connector)],
        );
        assert!(sum.is_some_and(|s| s > 0.0), "{connector}: {sum:?}");
    }
    assert!(
        text.lines()
            .any(|l| l == "# TYPE tether_http_request_duration_seconds histogram"),
        "latency renders as a histogram:\n{text}"
    );
    assert_eq!(host.stop(), Some(0));
}

/// An alert receiver on loopback: keeps the text of every message it accepted; refuses the
/// first `refuse` requests with a 503.
struct Receiver {
    url: String,
    accepted: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(runtime: &tokio::runtime::Runtime, refuse: usize) -> Receiver {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0_usize));
        let app = axum::Router::new().route(
            "/hooks/secret-path",
            post({
                let (accepted, requests) = (Arc::clone(&accepted), Arc::clone(&requests));
                move |body: String| async move {
                    let mut seen = requests.lock().expect("lock");
                    *seen += 1;
                    if *seen <= refuse {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let body: Value = serde_json::from_str(&body).expect("JSON body");
                    let text = body["text"].as_str().expect("a text field").to_owned();
                    accepted.lock().expect("lock").push(text);
                    StatusCode::OK
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address = listener.local_addr().expect("address");
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{address}/hooks/secret-path"),
            accepted,
            requests,
        }
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().expect("lock").clone()
    }

    fn requests(&self) -> usize {
        *self.requests.lock().expect("lock")
    }
}

/// Waits until the host has completed `more` further alert checks.
fn checks_pass(runtime: &tokio::runtime::Runtime, host: &RunningHost, more: f64) {
    let checks = || value(&scrape(runtime, host).1, "tether_alert_checks_total", &[]).unwrap_or(0.0);
    let start = checks();
    assert!(
        eventually(Duration::from_secs(30), || checks() >= start + more),
        "{more} more alert checks"
    );
}

#[test]
fn dead_letters_past_the_threshold_alert_once_and_resolve_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let receiver = Receiver::start(&runtime, 1);
    let ghl = emulator(&runtime, 62, 10);
    let a = ghl.credentials.location_id.clone();
    // Two contacts the mapping cannot convert: two dead letters, over a threshold of 1.
    for contact in contacts_of(&ghl, &a).iter().take(2) {
        let id = contact["id"].as_str().expect("id");
        put_contact(&runtime, &ghl, id, json!({"lastName": "Unmappable"}));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!(
            "{text}\n[alerts]\nwebhook_url = \"{}\"\ndead_letters_over = 1\ncheck_every_secs = 1\n",
            receiver.url
        ),
    )
    .expect("config");

    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    assert!(
        eventually(Duration::from_secs(60), || !receiver.accepted().is_empty()),
        "an alert arrives"
    );
    // The first send was refused (503) and so was not recorded: the next check sent it again.
    assert!(receiver.requests() >= 2, "{}", receiver.requests());
    checks_pass(&runtime, &host, 3.0);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "one incident, one alert: {accepted:?}");
    assert!(
        accepted[0].contains(&format!("flow `{FLOW}` has 2 dead letters (more than 1)")),
        "{accepted:?}"
    );

    // A restart does not send the open incident again.
    assert_eq!(host.stop(), Some(0));
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    checks_pass(&runtime, &host, 3.0);
    assert_eq!(receiver.accepted().len(), 1, "{:?}", receiver.accepted());

    // Dropping the dead letters clears the incident: one resolved message.
    runtime.block_on(async {
        let store = Store::open(&state_url(dir.path())).await.expect("store");
        for letter in store.dead_letters(Some(FLOW), 100).await.expect("dead letters") {
            assert!(store.drop_dead(letter.id).await.expect("drop"));
        }
    });
    assert!(
        eventually(Duration::from_secs(30), || receiver.accepted().len() == 2),
        "a resolved message arrives: {:?}",
        receiver.accepted()
    );
    checks_pass(&runtime, &host, 3.0);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(
        accepted[1],
        format!("Resolved: flow `{FLOW}` is back within its dead-letter threshold")
    );
    let (_, samples) = scrape(&runtime, &host);
    assert_eq!(
        value(&samples, "tether_alerts_sent_total", &[("state", "resolved")]),
        Some(1.0)
    );
    assert_eq!(host.stop(), Some(0));
    runtime.block_on(async {
        let store = Store::open(&state_url(dir.path())).await.expect("store");
        let alerts = store.alerts(10).await.expect("alerts");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].key, format!("dead_letters:{FLOW}"));
        assert!(alerts[0].resolved_at.is_some(), "{alerts:?}");
    });
}

#[test]
fn a_connector_whose_refresh_token_was_refused_alerts_until_reconnected() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let receiver = Receiver::start(&runtime, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tether.toml");
    let text = format!(
        "[state]\nurl = \"sqlite://state.sqlite\"\nkey_file = \"tether.key\"\n\n[alerts]\nwebhook_url = \"{}\"\n\n\
         [connectors.ghl_oauth]\nplugin = \"ghl\"\n[connectors.ghl_oauth.config]\nlocation_id = \"loc\"\nclient_id = \"c\"\n",
        receiver.url
    );
    std::fs::write(&file, &text).expect("config");
    let config = Config::parse(&file, &text, &|_| None).expect("config");
    let settings = config.alerts.clone().expect("alerts");
    runtime.block_on(async {
        let store = Store::open(&config.state_url).await.expect("store");
        let vault = Arc::new(Vault::new(
            SecretKey::load(None, &config.key_file).expect("key"),
            store.clone(),
        ));
        let scheduler = Scheduler::new(
            store.clone(),
            Vec::new(),
            SchedulerSettings {
                retry: config.delivery,
                host_id: "test".into(),
                workers: 1,
                idle_ms: 50,
                poll_lease_ms: 60_000,
            },
            Arc::new(|| 1_000),
        );
        let checker = Checker::new(
            store.clone(),
            config.clone(),
            settings,
            scheduler,
            Arc::clone(&vault),
            "test".into(),
            Arc::new(|| 1_000),
        )
        .expect("checker");
        let report = |opened, resolved| CheckReport {
            opened,
            resolved,
            failed: 0,
        };
        assert_eq!(
            checker.check_once().await.expect("check"),
            report(0, 0),
            "not connected yet is no incident"
        );
        // What the GHL connector stores when the token endpoint answers invalid_grant.
        vault
            .put(
                "ghl_oauth",
                NEEDS_RECONNECT_SECRET,
                "refresh token refused (invalid_grant) at 5",
                2,
            )
            .await
            .expect("marker");
        assert_eq!(checker.check_once().await.expect("check"), report(1, 0));
        assert_eq!(checker.check_once().await.expect("check"), report(0, 0), "sent once");
        // `tether auth ghl` clears the marker with an empty value.
        vault
            .put("ghl_oauth", NEEDS_RECONNECT_SECRET, "", 3)
            .await
            .expect("clear");
        assert_eq!(checker.check_once().await.expect("check"), report(0, 1));
        assert_eq!(checker.check_once().await.expect("check"), report(0, 0));
    });
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(
        accepted[0],
        "Tether: connector `ghl_oauth` needs reconnecting: refresh token refused (invalid_grant) at 5; \
         run `tether auth ghl --connector ghl_oauth`"
    );
    assert_eq!(accepted[1], "Resolved: connector `ghl_oauth` works again");
}
