//! `tether sync` end to end with real parts on both sides: the GHL connector reads contacts from
//! one location of the GHL emulator and upserts them into another. Checks the writes against the
//! emulator's state, the cursor (a second pass reads nothing), the content hash (a change to an
//! unmapped field costs no write), and that a record the mapping rejects becomes a dead letter.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::ghl_flow::{config, contacts_of, emulator, sync};
use tether_e2e::tether_bin;
use tether_sandbox::RunningGhl;

mod support;

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

#[test]
fn contacts_flow_between_locations_once_and_unchanged_records_cost_nothing() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 21, 40);
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    let source = contacts_of(&ghl, &a);
    let before_b = contacts_of(&ghl, &b).len();
    assert!(source.len() >= 20, "seeded {} contacts in A", source.len());

    // First pass: everything in A is read and written to B once.
    let (code, report, stderr) = sync(&config);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["read"], source.len(), "{report}");
    assert_eq!(report["written"], source.len(), "{report}");
    assert_eq!(report["dead"], 0, "{report}");
    let copied: Vec<Value> = contacts_of(&ghl, &b)
        .into_iter()
        .filter(|c| c["tags"].as_array().is_some_and(|t| t.contains(&json!("copied"))))
        .collect();
    assert_eq!(copied.len(), source.len());
    assert_eq!(
        contacts_of(&ghl, &b).len(),
        before_b + source.len(),
        "no duplicates in B"
    );
    let mut emails_a: Vec<&str> = source.iter().filter_map(|c| c["email"].as_str()).collect();
    let mut emails_b: Vec<&str> = copied.iter().filter_map(|c| c["email"].as_str()).collect();
    emails_a.sort();
    emails_b.sort();
    assert_eq!(emails_a, emails_b);

    // Second pass: the cursor moved past everything.
    let (code, report, _) = sync(&config);
    assert_eq!(
        (code, report["read"].clone(), report["written"].clone()),
        (Some(0), json!(0), json!(0)),
        "{report}"
    );

    // A mapped change is written; a change to a field the flow does not map costs no write.
    let renamed = source[0]["id"].as_str().expect("id");
    let untouched = source[1]["id"].as_str().expect("id");
    put_contact(&runtime, &ghl, renamed, json!({"firstName": "Renamed"}));
    put_contact(&runtime, &ghl, untouched, json!({"city": "Porto"}));
    let (code, report, _) = sync(&config);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        (
            report["read"].clone(),
            report["written"].clone(),
            report["unchanged"].clone()
        ),
        (json!(2), json!(1), json!(1)),
        "{report}"
    );
    let email = source[0]["email"].as_str().expect("email");
    let in_b = contacts_of(&ghl, &b)
        .into_iter()
        .find(|c| c["email"] == email)
        .expect("copy in B");
    assert_eq!(in_b["firstName"], "Renamed");

    // A record the mapping cannot convert goes to the dead-letter list with the reason.
    let broken = source[2]["id"].as_str().expect("id");
    put_contact(&runtime, &ghl, broken, json!({"lastName": "Unmappable"}));
    let (code, report, _) = sync(&config);
    assert_eq!(code, Some(1), "a dead letter fails the pass: {report}");
    assert_eq!(report["dead"], 1, "{report}");
    let listed = Command::new(tether_bin())
        .args(["--config", &config.display().to_string(), "dlq", "list", "--json"])
        .output()
        .expect("dlq");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["source_id"], broken);
    assert!(
        letter["last_error"].as_str().expect("error").contains("tags[blocked]"),
        "{letter}"
    );
}

#[test]
fn under_faults_every_record_is_delivered_once_or_dead_lettered_then_replayed() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 22, 40);
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    // Fast retries, few attempts: some rows will exhaust them and become dead letters.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replacen(
            "[state]",
            "[delivery]\nmax_attempts = 2\nbackoff_base_ms = 20\nmax_backoff_ms = 100\n\n[state]",
            1,
        ),
    )
    .expect("config");
    let source = contacts_of(&ghl, &a);
    let before_b = contacts_of(&ghl, &b).len();

    // About one call in four fails with a 5xx or a 429; some connections drop without an answer.
    let faults = tether_sandbox::FaultConfig {
        error_rate: 0.25,
        error_status: 503,
        rate_limit_rate: 0.05,
        drop_rate: 0.03,
        ..Default::default()
    };
    ghl.set_faults(faults).expect("faults");
    let (mut written, mut retried) = (0, 0);
    for _ in 0..40 {
        let (_, report, _) = sync(&config);
        written += report["written"].as_u64().unwrap_or(0);
        retried += report["retrying"].as_u64().unwrap_or(0);
        if report["retrying"] == 0 && report["read"] == 0 && written > 0 {
            let counts = Command::new(tether_bin())
                .args(["--config", &config.display().to_string(), "status", "--json"])
                .output()
                .expect("status");
            let status: Value = serde_json::from_slice(&counts.stdout).expect("json");
            if status["flows"][0]["queued"] == 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(120));
    }
    let listed = Command::new(tether_bin())
        .args(["--config", &config.display().to_string(), "dlq", "list", "--json"])
        .output()
        .expect("dlq");
    let dead: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let dead = dead["dead_letters"].as_array().expect("array").clone();
    for letter in &dead {
        assert!(
            !letter["last_error"].as_str().unwrap_or_default().is_empty(),
            "a dead letter without its reason: {letter}"
        );
    }
    assert_eq!(
        written as usize + dead.len(),
        source.len(),
        "every record delivered or dead-lettered, none lost ({} dead)",
        dead.len()
    );
    assert!(
        retried > 0,
        "the faults never made a delivery retry: the test proved nothing"
    );
    eprintln!(
        "faults: {retried} retries, {} dead letters, {written} written",
        dead.len()
    );

    // Faults stop; the dead letters are replayed and delivered; nothing is duplicated.
    ghl.set_faults(tether_sandbox::FaultConfig::default())
        .expect("faults off");
    let replay = Command::new(tether_bin())
        .args(["--config", &config.display().to_string(), "dlq", "replay", "--all"])
        .output()
        .expect("replay");
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let (code, report, stderr) = sync(&config);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["written"].as_u64().unwrap_or(0) as usize, dead.len(), "{report}");
    let copies = contacts_of(&ghl, &b).len() - before_b;
    assert_eq!(copies, source.len(), "each contact of A exists once in B");
}

#[test]
fn dry_run_maps_real_records_and_writes_nothing() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 23, 20);
    let b = ghl.credentials.other_location_id.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    let before_b = contacts_of(&ghl, &b).len();
    let output = Command::new(tether_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "dry-run",
            "copy-contacts",
            "--limit",
            "5",
            "--json",
        ])
        .output()
        .expect("dry-run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let planned: Value = serde_json::from_slice(&output.stdout).expect("json");
    let writes = planned["writes"].as_array().expect("writes");
    assert_eq!(writes.len(), 5);
    assert_eq!(writes[0]["action"], "contact.upsert");
    assert_eq!(writes[0]["input"]["tags"], json!(["copied"]), "{}", writes[0]);
    assert_eq!(contacts_of(&ghl, &b).len(), before_b, "a dry run wrote to the target");
    // Nothing queued and the cursor did not move: a real pass still reads everything.
    let (code, report, _) = sync(&config);
    assert_eq!(code, Some(0));
    assert_eq!(
        report["read"],
        contacts_of(&ghl, &ghl.credentials.location_id).len(),
        "{report}"
    );
}

#[test]
fn a_target_needing_reconnection_pauses_the_flow_and_loses_nothing() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 24, 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    // Location B through OAuth instead, whose refresh token GHL refused earlier.
    let text = std::fs::read_to_string(&config).expect("config");
    let pit_b = format!("private_token = \"{}\"", ghl.credentials.other_pit);
    let oauth_b = format!(
        "client_id = \"{}\"\nclient_secret = \"{}\"",
        ghl.credentials.client_id, ghl.credentials.client_secret
    );
    std::fs::write(&config, text.replace(&pit_b, &oauth_b)).expect("config");
    let store = runtime
        .block_on(tether_core::store::Store::open(&format!(
            "sqlite://{}",
            dir.path().join("state.sqlite").display()
        )))
        .expect("store");
    let key = tether_core::vault::SecretKey::load(None, &dir.path().join("tether.key")).expect("key");
    let vault = tether_core::vault::Vault::new(key, store);
    runtime
        .block_on(vault.put(
            "ghl_b",
            tether_ghl::auth::NEEDS_RECONNECT_SECRET,
            "invalid_grant: refresh token refused",
            1,
        ))
        .expect("marker");
    let before_b = contacts_of(&ghl, &ghl.credentials.other_location_id).len();

    let (code, report, stderr) = sync(&config);
    assert_eq!(code, Some(1), "{report} {stderr}");
    assert!(stderr.starts_with("error: flow `copy-contacts` is paused"), "{stderr}");
    assert!(stderr.contains("tether auth ghl --connector ghl_b"), "{stderr}");
    assert_eq!(
        report["dead"], 0,
        "nothing may be dead-lettered for a credentials problem: {report}"
    );
    assert_eq!(report["written"], 0);
    assert_eq!(contacts_of(&ghl, &ghl.credentials.other_location_id).len(), before_b);

    // Every record read is still queued, with its attempt given back, and status says why.
    let status = Command::new(tether_bin())
        .args(["--config", &config.display().to_string(), "status", "--json"])
        .output()
        .expect("status");
    assert_eq!(status.status.code(), Some(1));
    let status: Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["flows"][0]["queued"], report["read"], "{status}");
    let b = status["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .find(|c| c["connector"] == "ghl_b")
        .expect("ghl_b")
        .clone();
    assert_eq!(b["token"], "needs_reconnect", "{b}");
}

fn backfill(config: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let output = Command::new(tether_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "backfill",
            "copy-contacts",
            "--json",
        ])
        .args(args)
        .output()
        .expect("run tether backfill");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no JSON report; stderr: {stderr}"));
    (output.status.code(), report, stderr)
}

#[test]
fn backfill_runs_windows_in_order_resumes_and_rewrites_nothing_unchanged() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 25, 40);
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    let source = contacts_of(&ghl, &a);
    let before_b = contacts_of(&ghl, &b).len();

    // The seeded history spans 2025: five windows of 90 days, oldest first.
    let year = ["--since", "2025-01-01", "--until", "2026-01-01", "--window", "90d"];
    let (code, report, stderr) = backfill(&config, &year);
    assert_eq!(code, Some(0), "{report} {stderr}");
    let windows = report["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 5, "{report}");
    let starts: Vec<&str> = windows.iter().filter_map(|w| w["since"].as_str()).collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted, "windows in order");
    assert_eq!(starts[0], "2025-01-01T00:00:00.000Z");
    assert_eq!(report["total"]["read"], source.len(), "{report}");
    assert_eq!(report["total"]["written"], source.len(), "{report}");
    let read_per_window: u64 = windows.iter().filter_map(|w| w["read"].as_u64()).sum();
    assert_eq!(read_per_window as usize, source.len());
    assert_eq!(contacts_of(&ghl, &b).len(), before_b + source.len());

    // The same backfill again: every window completed before, nothing read.
    let (code, report, _) = backfill(&config, &year);
    assert_eq!(code, Some(0));
    assert!(
        report["windows"]
            .as_array()
            .expect("windows")
            .iter()
            .all(|w| w["resumed"] == true),
        "{report}"
    );
    assert_eq!(report["total"]["read"], 0);

    // Another range over the same history: read again, but nothing changed, so no writes.
    let (code, report, _) = backfill(
        &config,
        &["--since", "2025-01-01", "--until", "2025-12-31", "--window", "120d"],
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["total"]["written"], 0, "{report}");
    assert_eq!(report["total"]["unchanged"], report["total"]["read"], "{report}");
    assert_eq!(contacts_of(&ghl, &b).len(), before_b + source.len(), "no duplicates");
}

/// Write verification: GHL's upsert into an existing contact answers 200 but discards `gender`
/// (ISS#313). Each such write is stored as a warning event naming the flow, record and field,
/// and `tether sync` prints it.
#[test]
fn a_field_the_target_silently_dropped_becomes_a_stored_warning() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 29, 12);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    let (code, first, stderr) = sync(&config);
    assert_eq!(code, Some(0), "{first} {stderr}");
    let written = first["written"].as_u64().unwrap_or(0);
    assert!(written > 0, "{first}");
    assert!(!stderr.contains("did not keep"), "a create keeps every field: {stderr}");

    // The same contacts, now with a gender: upserts into existing contacts.
    let flow = dir.path().join("flows/copy-contacts.toml");
    let text = std::fs::read_to_string(&flow).expect("flow");
    std::fs::write(
        &flow,
        text.replace("[mapping.fields]\n", "[mapping.fields]\ngender = \"'female'\"\n"),
    )
    .expect("flow");
    // A backfill reads them all again; their mapped content changed, so each is written.
    let (code, report, stderr) = backfill(
        &config,
        &["--since", "2025-01-01", "--until", "2026-01-01", "--window", "400d"],
    );
    assert_eq!(code, Some(0), "{report} {stderr}");
    let second = &report["total"];
    assert_eq!(second["written"].as_u64(), Some(written), "{report}");
    assert_eq!(
        second["warnings"].as_array().map(Vec::len),
        Some(written as usize),
        "{second}"
    );
    assert!(stderr.contains("the target did not keep field `gender`"), "{stderr}");
    let warnings = runtime.block_on(async {
        let store = tether_core::store::Store::open(&format!("sqlite://{}", dir.path().join("state.sqlite").display()))
            .await
            .expect("store");
        store
            .events(Some("copy-contacts"), Some(tether_core::store::EventKind::Warning), 100)
            .await
            .expect("events")
    });
    assert_eq!(warnings.len(), written as usize);
    assert!(warnings
        .iter()
        .all(|w| w.detail.as_deref().is_some_and(|d| d.contains("`gender`")) && w.target_id.is_some()));
}
