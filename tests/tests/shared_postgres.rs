//! Hosts on one PostgreSQL. Three: `tether backfill` on one and `tether run` on two others share a
//! backfill of ~5,000 contacts; each contact is written exactly once, and the work is shared.
//! Two: `tether run` twice polling one Moloni flow; one host polls (the lease `poll:<flow>`), the
//! other takes over once the first is killed, and each customer reaches GHL once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;
use support::ghl_flow::{contacts_of, emulator};
use support::host_process::{eventually, RunningHost};
use tether_core::store::{EventKind, Store};
use tether_e2e::postgres::ScratchDatabase;
use tether_e2e::{plugin_dir, tether_bin};
use tether_sandbox::moloni::{self, MoloniConfig};
use tether_sandbox::{FaultConfig, GhlConfig, RateLimitConfig};

mod support;

fn admin_url_or_skip(test: &str) -> Option<String> {
    let url = std::env::var("TETHER_TEST_DATABASE_URL").ok();
    if url.is_none() {
        let notice =
            format!("notice: TETHER_TEST_DATABASE_URL is not set; the shared-PostgreSQL test {test} was skipped\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    }
    url
}

#[test]
fn three_hosts_share_a_backfill_and_write_each_record_once() {
    let Some(admin_url) = admin_url_or_skip("three_hosts_share_a_backfill_and_write_each_record_once") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let database = runtime
        .block_on(ScratchDatabase::create(&admin_url, "tether_two_hosts"))
        .expect("scratch database");
    // About four in five seeded contacts are in location A: ~5,000 to copy.
    let ghl = emulator(&runtime, 53, 6_250);
    // A little latency per call, like a real API, so the work takes long enough to share.
    ghl.emulator
        .set_faults(FaultConfig {
            latency_ms: 2,
            ..FaultConfig::default()
        })
        .expect("faults");
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let source = contacts_of(&ghl, &a);
    let before_b = contacts_of(&ghl, &b).len();
    assert!(source.len() >= 4_800, "seeded {} contacts in A", source.len());

    let dir = tempfile::tempdir().expect("tempdir");
    let config = support::ghl_flow::config(dir.path(), &ghl);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("sqlite://state.sqlite", &database.url)
        .replace("trigger = \"poll\"", "trigger = \"backfill\"");
    std::fs::write(&config, text).expect("config");
    let flow = dir.path().join("flows/copy-contacts.toml");
    let text = std::fs::read_to_string(&flow)
        .expect("flow")
        .replace("trigger = \"poll\"", "trigger = \"backfill\"");
    std::fs::write(&flow, text).expect("flow");

    let helpers = [
        RunningHost::start(&config, &["--workers", "2", "--idle-ms", "20"]),
        RunningHost::start(&config, &["--workers", "2", "--idle-ms", "20"]),
    ];
    let output = Command::new(tether_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "backfill",
            "copy-contacts",
            "--json",
        ])
        .args(["--since", "2025-01-01", "--until", "2026-01-01", "--window", "30d"])
        .output()
        .expect("run tether backfill");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("backfill report");
    assert_eq!(report["total"]["read"], source.len(), "{report}");

    let written = || {
        runtime.block_on(async {
            let store = Store::open(&database.url).await.expect("store");
            store
                .events(Some("copy-contacts"), Some(EventKind::Written), 100_000)
                .await
                .expect("events")
                .len()
        })
    };
    assert!(
        eventually(Duration::from_secs(120), || written() >= source.len()),
        "the helper hosts finish what they took"
    );
    for helper in helpers {
        assert_eq!(helper.stop(), Some(0));
    }

    let copied = contacts_of(&ghl, &b);
    assert_eq!(copied.len(), before_b + source.len(), "each contact exactly once in B");
    assert_eq!(written(), source.len(), "one write per record, across both hosts");
    let by_backfill = report["total"]["written"].as_u64().unwrap_or(0) as usize;
    assert!(by_backfill > 0, "the backfilling host wrote some: {report}");
    assert!(
        by_backfill < source.len(),
        "the other hosts wrote the rest ({} of {})",
        source.len() - by_backfill,
        source.len()
    );
    let counts = runtime.block_on(async {
        let store = Store::open(&database.url).await.expect("store");
        store.flow_counts().await.expect("counts")
    });
    let flow = counts.iter().find(|c| c.flow == "copy-contacts").expect("flow counts");
    assert_eq!((flow.pending, flow.dead), (0, 0), "nothing left queued or dead");
    runtime.block_on(database.drop_it());
}

/// A loopback HTTP proxy in front of one emulator, one per host, so the test sees which host
/// called: it counts calls to the change feed (`.../getModifiedSince`).
struct Proxy {
    addr: SocketAddr,
    feed_calls: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let feed_calls = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&feed_calls);
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (client, upstream, calls) = (client.clone(), upstream.clone(), Arc::clone(&calls));
            async move { forward(&client, &upstream, &calls, request).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { addr, feed_calls }
    }

    fn feed_calls(&self) -> usize {
        self.feed_calls.load(Ordering::SeqCst)
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    feed_calls: &AtomicUsize,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    if parts.uri.path().contains("getModifiedSince") {
        feed_calls.fetch_add(1, Ordering::SeqCst);
    }
    let target = format!("{upstream}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut outgoing = client.request(parts.method, target).body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != axum::http::header::CONTENT_LENGTH && name != axum::http::header::TRANSFER_ENCODING {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// The pid in a host id (`HOSTNAME-PID`, see `tether run`).
fn holder_pid(holder: &str) -> Option<u32> {
    holder.rsplit('-').next()?.parse().ok()
}

#[test]
fn two_hosts_poll_a_flow_one_at_a_time_and_the_survivor_takes_over() {
    let Some(admin_url) = admin_url_or_skip("two_hosts_poll_a_flow_one_at_a_time_and_the_survivor_takes_over") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let database = runtime
        .block_on(ScratchDatabase::create(&admin_url, "tether_poll_lease"))
        .expect("scratch database");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut ghl_config = GhlConfig::seeded(67, 0);
    ghl_config.rate_limit = RateLimitConfig::disabled();
    let ghl = runtime.block_on(tether_sandbox::start(addr, ghl_config)).expect("ghl");
    let mut moloni_config = MoloniConfig::seeded(67, 0);
    moloni_config.rate_limit = RateLimitConfig::disabled();
    let moloni = runtime.block_on(moloni::start(addr, moloni_config)).expect("moloni");
    // Each host reaches Moloni through its own proxy: the proxies tell the hosts' polls apart.
    let proxies = [
        runtime.block_on(Proxy::start(moloni.base_url())),
        runtime.block_on(Proxy::start(moloni.base_url())),
    ];

    // Two configurations, one database and one key file; only Moloni's address differs.
    let plugins = plugin_dir(&["tether-moloni"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let configs: Vec<std::path::PathBuf> = proxies
        .iter()
        .enumerate()
        .map(|(i, proxy)| {
            let path = dir.path().join(format!("host-{i}.toml"));
            let moloni_toml = moloni
                .connector_toml("moloni_pt")
                .replace(&moloni.base_url(), &format!("http://{}", proxy.addr));
            std::fs::write(
                &path,
                format!(
                    "plugins_dir = \"{}\"\nflows_dir = \"flows\"\n[state]\nurl = \"{}\"\n\n{}\n{}",
                    plugins.path().display(),
                    database.url,
                    ghl.connector_toml("ghl"),
                    moloni_toml,
                ),
            )
            .expect("config");
            path
        })
        .collect();
    std::fs::create_dir(dir.path().join("flows")).expect("flows");
    std::fs::write(
        dir.path().join("flows/moloni-customers.toml"),
        r#"phone_region = "PT"
[source]
connector = "moloni_pt"
stream = "customers"
trigger = "poll"
every = "1s"
[target]
connector = "ghl"
action = "contact.upsert"
[match]
keys = ["email"]
[mapping.fields]
firstName = "name | first_name"
lastName = "name | last_name"
email = "email | lower"
phone = "phone | e164"
source = "'moloni'"
"#,
    )
    .expect("flow");

    let mut added = Vec::new();
    let add_customers = |added: &mut Vec<String>, n: usize| {
        for _ in 0..n {
            let i = added.len();
            let email = format!("cliente{i}@exemplo.pt");
            moloni
                .emulator
                .add_customer(json!({
                    "name": format!("Cliente {i} Silva"), "vat": "123456789", "number": format!("C-{i}"),
                    "language_id": 1, "address": "Rua Augusta 1", "city": "Lisboa", "zip_code": "1100-048",
                    "country_id": 1, "maturity_date_id": 0,
                    "payment_method_id": moloni.credentials.payment_method_id,
                    "email": email, "phone": format!("91{:07}", 1_000 + i)
                }))
                .unwrap_or_else(|e| panic!("customer refused: {e:?}"));
            added.push(email);
        }
    };
    let arrived = |emails: &[String]| {
        let contacts: Vec<Value> = contacts_of(&ghl, &ghl.credentials.location_id);
        emails
            .iter()
            .all(|email| contacts.iter().any(|c| c["email"] == email.as_str()))
    };
    let lease_holder = || {
        runtime.block_on(async {
            let mut db = sqlx::PgConnection::connect(&database.url).await.expect("connect");
            let row: Option<(String,)> =
                sqlx::query_as("SELECT holder FROM leases WHERE name = 'poll:moloni-customers'")
                    .fetch_optional(&mut db)
                    .await
                    .expect("lease");
            row.map(|(holder,)| holder)
        })
    };

    // A lease of 4 s at a 1 s interval: the holder renews it every poll.
    let args = ["--workers", "2", "--idle-ms", "50", "--poll-lease-ms", "4000"];
    let mut hosts: Vec<Option<RunningHost>> = configs
        .iter()
        .map(|config| Some(RunningHost::start(config, &args)))
        .collect();
    // Customers created while both hosts run, a few at a time.
    for _ in 0..4 {
        add_customers(&mut added, 3);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(
        eventually(Duration::from_secs(60), || arrived(&added)),
        "every customer reaches GHL while both hosts run"
    );
    let calls: Vec<usize> = proxies.iter().map(Proxy::feed_calls).collect();
    let polling: Vec<usize> = (0..2).filter(|&i| calls[i] > 0).collect();
    assert_eq!(
        polling.len(),
        1,
        "one host polls the change feed, not both: calls per host {calls:?}"
    );
    let (holder, survivor) = (polling[0], 1 - polling[0]);
    let holder_id = lease_holder().expect("a poll lease is held");
    let pids: Vec<u32> = hosts.iter().flatten().map(|h| h.child.id()).collect();
    assert_eq!(
        holder_pid(&holder_id),
        Some(pids[holder]),
        "the polling host holds `poll:moloni-customers` ({holder_id})"
    );

    // The holder dies without a word; its lease runs out and the survivor polls.
    if let Some(mut killed) = hosts[holder].take() {
        killed.child.kill().expect("SIGKILL");
        let _ = killed.child.wait();
    }
    let calls_at_kill = proxies[holder].feed_calls();
    add_customers(&mut added, 3);
    assert!(
        eventually(Duration::from_secs(60), || arrived(&added)),
        "customers created after the kill arrive through the survivor"
    );
    assert!(
        proxies[survivor].feed_calls() > 0,
        "the survivor polls once the lease expired"
    );
    assert_eq!(
        proxies[holder].feed_calls(),
        calls_at_kill,
        "the killed host polls no more"
    );
    let taken_over = lease_holder().expect("a poll lease is held");
    assert_eq!(
        holder_pid(&taken_over),
        Some(pids[survivor]),
        "the survivor holds the lease ({taken_over})"
    );
    // Arrival is not the end: the survivor re-reads from the stored cursor, and what it queued
    // again (unchanged, so no GHL write) must be delivered before it stops.
    let drained = || {
        runtime.block_on(async {
            let store = Store::open(&database.url).await.expect("store");
            let counts = store.flow_counts().await.expect("counts");
            counts
                .iter()
                .find(|c| c.flow == "moloni-customers")
                .is_none_or(|c| c.pending == 0)
        })
    };
    assert!(
        eventually(Duration::from_secs(60), drained),
        "the survivor delivers everything queued"
    );
    if let Some(host) = hosts[survivor].take() {
        assert_eq!(host.stop(), Some(0));
    }

    // Each customer once in GHL, written once across both hosts.
    let contacts = contacts_of(&ghl, &ghl.credentials.location_id);
    let mut per_email: BTreeMap<String, usize> = BTreeMap::new();
    for contact in &contacts {
        if let Some(email) = contact["email"].as_str() {
            *per_email.entry(email.to_owned()).or_default() += 1;
        }
    }
    for email in &added {
        assert_eq!(per_email.get(email), Some(&1), "{email} once in GHL");
    }
    assert_eq!(contacts.len(), added.len(), "no other contact");
    let (written, counts) = runtime.block_on(async {
        let store = Store::open(&database.url).await.expect("store");
        let written = store
            .events(Some("moloni-customers"), Some(EventKind::Written), 10_000)
            .await
            .expect("events")
            .len();
        (written, store.flow_counts().await.expect("counts"))
    });
    assert_eq!(written, added.len(), "one write per customer across both hosts");
    let flow = counts
        .iter()
        .find(|c| c.flow == "moloni-customers")
        .expect("flow counts");
    if (flow.pending, flow.dead) != (0, 0) {
        // id, source id, status, claimed by, attempts, last error
        type LeftRow = (i64, String, String, Option<String>, i64, Option<String>);
        let left: Vec<LeftRow> = runtime.block_on(async {
            let mut db = sqlx::PgConnection::connect(&database.url).await.expect("connect");
            sqlx::query_as(
                "SELECT id, source_id, status, claimed_by, attempts, last_error FROM outbox \
                 WHERE flow = 'moloni-customers' AND status <> 'done' ORDER BY id",
            )
            .fetch_all(&mut db)
            .await
            .expect("rows left")
        });
        panic!(
            "nothing should be left queued or dead, but {} pending and {} dead (host pids {pids:?}): {left:#?}",
            flow.pending, flow.dead
        );
    }
    runtime.block_on(database.drop_it());
}
