//! Three hosts on one PostgreSQL: `tether backfill` on one and `tether run` on two others share a
//! backfill of ~5,000 contacts. Each contact is written exactly once, and the work is shared.

use std::process::Command;
use std::time::Duration;

use sqlx::Connection;
use support::ghl_flow::{contacts_of, emulator};
use support::host_process::{eventually, RunningHost};
use tether_core::store::{EventKind, Store};
use tether_e2e::tether_bin;
use tether_sandbox::FaultConfig;

mod support;

/// A database of its own under the server `TETHER_TEST_DATABASE_URL` names, dropped after.
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin_url: &str) -> ScratchDatabase {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("tether_two_hosts_{nanos}");
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        // The hosts are what this test kills and races, not the database server: commits need
        // not wait for the disk.
        sqlx::query(&format!("ALTER DATABASE {name} SET synchronous_commit = off"))
            .execute(&mut admin)
            .await
            .expect("tune database");
        let (base, query) = admin_url.split_once('?').unwrap_or((admin_url, ""));
        let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
        let url = if query.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{query}")
        };
        ScratchDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        }
    }

    async fn drop_it(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut admin)
                .await;
        }
    }
}

#[test]
fn three_hosts_share_a_backfill_and_write_each_record_once() {
    let Ok(admin_url) = std::env::var("TETHER_TEST_DATABASE_URL") else {
        let notice = "notice: TETHER_TEST_DATABASE_URL is not set; the shared-PostgreSQL test was skipped\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let database = runtime.block_on(ScratchDatabase::create(&admin_url));
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
