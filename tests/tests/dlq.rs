//! `tether dlq` against a real state store: dead letters put there by the store's own delivery
//! path, then listed, replayed and dropped through the binary.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tether_abi::{Fields, Record};
use tether_core::store::{Outcome, Store};
use tether_e2e::tether_bin;

fn tether(config: &Path, args: &[&str]) -> Output {
    Command::new(tether_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run tether")
}

fn record(id: &str) -> Record {
    let mut fields = Fields::new();
    fields.insert("email".into(), format!("{id}@example.pt").into());
    Record {
        id: id.into(),
        updated_at: None,
        deleted: false,
        parent: None,
        event: None,
        fields,
    }
}

#[test]
fn dead_letters_are_listed_replayed_and_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        "plugins_dir = \"plugins\"\n[state]\nurl = \"sqlite://state.sqlite\"\n",
    )
    .expect("config");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = runtime
        .block_on(Store::open(&format!(
            "sqlite://{}",
            dir.path().join("state.sqlite").display()
        )))
        .expect("store");
    runtime.block_on(async {
        store
            .enqueue("moloni-customers", &[record("1"), record("2")], None, 0)
            .await
            .expect("enqueue");
        for row in store
            .claim("moloni-customers", "w", 10, 60_000, 1)
            .await
            .expect("claim")
        {
            let error = format!("invalid: phone of {} is not a number", row.source_id);
            store
                .finish(row.id, "w", &Outcome::Dead { error }, 2)
                .await
                .expect("dead");
        }
    });

    let listed = tether(&config, &["dlq", "list", "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    let letters = listed["dead_letters"].as_array().expect("array");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["last_error"], "invalid: phone of 1 is not a number");
    assert_eq!(letters[0]["record"]["fields"]["email"], "1@example.pt");
    let (first, second) = (letters[0]["id"].to_string(), letters[1]["id"].to_string());

    let replay = tether(&config, &["dlq", "replay", &first]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert_eq!(String::from_utf8_lossy(&replay.stdout).trim(), "replayed 1 dead letter");
    let drop = tether(&config, &["dlq", "drop", &second]);
    assert!(drop.status.success(), "{}", String::from_utf8_lossy(&drop.stderr));
    let missing = tether(&config, &["dlq", "drop", &second]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with(&format!("error: there is no dead letter {second}")));

    let text = tether(&config, &["dlq", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("(no dead letters)"));
    // The replayed row is queued again, due now, with a fresh attempt budget.
    let again = runtime
        .block_on(store.claim("moloni-customers", "w", 10, 60_000, i64::MAX / 2))
        .expect("claim");
    assert_eq!(
        (again.len(), again[0].source_id.as_str(), again[0].attempts),
        (1, "1", 1)
    );
}

#[test]
fn an_unreachable_database_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tether.toml");
    // Nothing listens on port 1.
    std::fs::write(&config, "[state]\nurl = \"postgres://tether@127.0.0.1:1/none\"\n").expect("config");
    let output = tether(&config, &["dlq", "list"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: cannot open the state store"));
}
