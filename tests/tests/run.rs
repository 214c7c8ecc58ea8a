//! `tether run`, the long-running host: webhooks stored before they are acknowledged, tasks
//! delivered only once their contact is linked (whatever order the webhooks arrive in), pollers
//! on an interval, and two hosts sharing one PostgreSQL queue without writing a record twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::ghl_flow::{contacts_of, emulator};
use support::host_process::{eventually, RunningHost};
use tether_core::store::{EventKind, Store};
use tether_e2e::tether_bin;
use tether_sandbox::RunningGhl;

mod support;

/// Connectors `ghl_a` (verifying webhooks with the emulator's key) and `ghl_b`, fast retries.
fn write_config(dir: &Path, ghl: &RunningGhl, state_url: &str, flows: &[(&str, &str)]) -> PathBuf {
    let c = &ghl.credentials;
    let base = ghl.base_url();
    let config = dir.join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "plugins_dir = \"plugins\"\n[state]\nurl = \"{state_url}\"\n\n\
             [delivery]\nmax_attempts = 30\nbackoff_base_ms = 50\nmax_backoff_ms = 400\nlease_ms = 5000\n\n\
             [connectors.ghl_a]\nplugin = \"ghl\"\n[connectors.ghl_a.config]\nbase_url = \"{base}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\nwebhook_public_key = \"{}\"\n\n\
             [connectors.ghl_b]\nplugin = \"ghl\"\n[connectors.ghl_b.config]\nbase_url = \"{base}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n",
            c.location_id, c.pit, ghl.webhook_public_key.base64, c.other_location_id, c.other_pit
        ),
    )
    .expect("config");
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins dir");
    std::fs::create_dir_all(dir.join("flows")).expect("flows dir");
    for (name, text) in flows {
        std::fs::write(dir.join(format!("flows/{name}.toml")), text).expect("flow");
    }
    config
}

const LIVE_CONTACTS: &str = r#"
[source]
connector = "ghl_a"
stream = "contacts"
trigger = "webhook"
[target]
connector = "ghl_b"
action = "contact.upsert"
[match]
keys = ["email"]
[mapping.fields]
firstName = "firstName"
email = "email"
"#;

const LIVE_TASKS: &str = r#"
[source]
connector = "ghl_a"
stream = "tasks"
trigger = "webhook"
[target]
connector = "ghl_b"
action = "task.create"
[parent]
flow = "live-contacts"
field = "contactId"
[mapping.fields]
title = "title"
dueDate = "dueDate"
"#;

fn ghl_post(runtime: &tokio::runtime::Runtime, ghl: &RunningGhl, path: &str, body: Value) -> Value {
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", ghl.base_url()))
            .bearer_auth(&ghl.credentials.pit)
            .header("Version", "2021-07-28")
            .json(&body)
            .send()
            .await
            .expect("POST to the emulator");
        assert!(response.status().is_success(), "POST {path}: {}", response.status());
        response.json().await.expect("JSON")
    })
}

/// Posts `body` to the host as GHL would (signed with the location's key, or not at all).
fn deliver_webhook(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    body: &str,
    signature: Option<String>,
) -> (u16, String) {
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("x-ghl-signature", signature);
        }
        let response = request.send().await.expect("POST webhook");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

fn event_body(ghl: &RunningGhl, kind: &str) -> String {
    let event = ghl
        .emulator
        .webhook_events()
        .into_iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("the emulator emitted no {kind}"));
    serde_json::to_string(&event).expect("JSON")
}

fn events_of(runtime: &tokio::runtime::Runtime, url: &str, flow: &str, kind: EventKind) -> Vec<String> {
    runtime.block_on(async {
        let store = Store::open(url).await.expect("store");
        store
            .events(Some(flow), Some(kind), 1_000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.detail.unwrap_or_default())
            .collect()
    })
}

#[test]
fn webhooks_are_stored_before_the_answer_and_a_task_waits_for_its_contact() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 41, 0);
    let b = ghl.credentials.other_location_id.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let config = write_config(
        dir.path(),
        &ghl,
        &state,
        &[("live-contacts", LIVE_CONTACTS), ("live-tasks", LIVE_TASKS)],
    );

    // A contact and a task on it in location A; the emulator records the webhooks it emits.
    let contact = ghl_post(
        &runtime,
        &ghl,
        "/contacts/",
        json!({"locationId": ghl.credentials.location_id, "firstName": "Wanda", "email": "wanda@example.com"}),
    );
    let contact_id = contact["contact"]["id"].as_str().expect("contact id").to_owned();
    ghl_post(
        &runtime,
        &ghl,
        &format!("/contacts/{contact_id}/tasks"),
        json!({"title": "Call Wanda back", "dueDate": "2026-12-01T10:00:00Z", "completed": false}),
    );
    let task_created = event_body(&ghl, "TaskCreate");
    let contact_created = event_body(&ghl, "ContactCreate");

    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    let url = host.webhook_url("ghl_a");

    // The task's webhook arrives first: it is stored and acknowledged, then waits.
    let (status, answer) = deliver_webhook(
        &runtime,
        &url,
        &task_created,
        Some(ghl.emulator.sign_webhook(task_created.as_bytes())),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(serde_json::from_str::<Value>(&answer).expect("JSON")["queued"], 1);
    assert!(
        eventually(Duration::from_secs(20), || events_of(
            &runtime,
            &state,
            "live-tasks",
            EventKind::Retry
        )
        .iter()
        .any(|e| e.contains("waiting for its parent"))),
        "the task must wait for its contact"
    );
    assert!(contacts_of(&ghl, &b).is_empty(), "a waiting task creates no contact");

    // Its contact arrives: the contact is written, then the task under it.
    let (status, answer) = deliver_webhook(
        &runtime,
        &url,
        &contact_created,
        Some(ghl.emulator.sign_webhook(contact_created.as_bytes())),
    );
    assert_eq!(status, 200, "{answer}");
    let tasks_in_b = || -> Vec<Value> {
        let state = ghl.emulator.state();
        state["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter(|t| t["locationId"] == b.as_str())
            .cloned()
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(20), || tasks_in_b().len() == 1),
        "the task must be delivered once its contact is linked"
    );
    let in_b = contacts_of(&ghl, &b);
    assert_eq!(in_b.len(), 1, "exactly one contact: {in_b:?}");
    assert_eq!(
        tasks_in_b()[0]["contactId"],
        in_b[0]["id"],
        "the task hangs under the linked contact"
    );
    assert_eq!(tasks_in_b()[0]["title"], "Call Wanda back");

    // GHL retrying a webhook we already acknowledged queues nothing new.
    let (status, answer) = deliver_webhook(
        &runtime,
        &url,
        &task_created,
        Some(ghl.emulator.sign_webhook(task_created.as_bytes())),
    );
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        (answer["queued"].clone(), answer["duplicates"].clone()),
        (json!(0), json!(1))
    );

    // A forged or unsigned webhook is refused, and logged as such.
    let forged = task_created.replace("Call Wanda back", "Wire money");
    let (status, _) = deliver_webhook(
        &runtime,
        &url,
        &forged,
        Some(ghl.emulator.sign_webhook(task_created.as_bytes())),
    );
    assert_eq!(status, 401);
    let (status, _) = deliver_webhook(&runtime, &url, &forged, None);
    assert_eq!(status, 401);
    let (status, _) = deliver_webhook(&runtime, &host.webhook_url("nobody"), &forged, None);
    assert_eq!(status, 404, "a connector no flow reads webhooks from");

    // The dashboard's webhook log shows each delivery with its signature verdict, newest first.
    let page = runtime.block_on(async {
        reqwest::get(format!("{}/webhook-log", host.base))
            .await
            .expect("GET /webhook-log")
            .text()
            .await
            .expect("page")
    });
    let verdict_cells: Vec<&str> = ["verified", "duplicate", "refused"]
        .into_iter()
        .filter(|verdict| page.contains(&format!(">{verdict}</td>")))
        .collect();
    assert_eq!(verdict_cells, ["verified", "duplicate", "refused"], "{page}");
    assert!(page.contains("TaskCreate"), "{page}");

    assert_eq!(host.stop(), Some(0), "SIGTERM stops the host cleanly");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tasks_in_b().len(), 1, "the replayed webhook wrote nothing");
    runtime.block_on(async {
        let store = Store::open(&state).await.expect("store");
        let log = store.webhook_log(10).await.expect("log");
        let verdicts: Vec<&str> = log.iter().rev().map(|w| w.verdict.as_str()).collect();
        assert_eq!(verdicts, ["verified", "verified", "duplicate", "refused", "refused"]);
        assert_eq!(log.last().map(|w| w.event_types.as_str()), Some("TaskCreate"));
        let written = store.events(None, Some(EventKind::Written), 10).await.expect("events");
        assert_eq!(written.len(), 2, "one contact and one task written: {written:?}");
    });
}

#[test]
fn pollers_run_on_their_interval_and_status_shows_the_last_run() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 43, 40);
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let poll = LIVE_CONTACTS.replace("trigger = \"webhook\"", "trigger = \"poll\"\nevery = \"1s\"");
    let config = write_config(dir.path(), &ghl, &state, &[("poll-contacts", &poll)]);
    let with_email = |location: &str| {
        contacts_of(&ghl, location)
            .into_iter()
            .filter(|c| c["email"].is_string())
            .count()
    };
    let wanted = with_email(&a) + with_email(&b);
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    assert!(
        eventually(Duration::from_secs(30), || with_email(&b) >= wanted),
        "every contact of A with an email reaches B"
    );
    // A change made while the host runs is picked up by a later poll.
    let first = contacts_of(&ghl, &a)
        .into_iter()
        .find(|c| c["email"].is_string())
        .expect("a contact with email");
    let id = first["id"].as_str().expect("id");
    runtime.block_on(async {
        let status = reqwest::Client::new()
            .put(format!("{}/contacts/{id}", ghl.base_url()))
            .bearer_auth(&ghl.credentials.pit)
            .header("Version", "2021-07-28")
            .json(&json!({"firstName": "Renamed"}))
            .send()
            .await
            .expect("PUT")
            .status();
        assert!(status.is_success());
    });
    let email = first["email"].clone();
    assert!(
        eventually(Duration::from_secs(30), || contacts_of(&ghl, &b)
            .iter()
            .any(|c| c["email"] == email && c["firstName"] == "Renamed")),
        "the change reaches B"
    );
    assert_eq!(host.stop(), Some(0));
    let output = Command::new(tether_bin())
        .args(["--config", &config.display().to_string(), "status", "--json"])
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    let flow = &status["flows"][0];
    assert_eq!(flow["flow"], "poll-contacts");
    assert!(flow["last_run_at"].as_i64().is_some_and(|t| t > 0), "{flow}");
    assert!(flow["last_error"].is_null(), "{flow}");
    assert_eq!(flow["queued"], 0, "{flow}");
}

#[test]
fn two_way_flows_do_not_sync_their_own_echo_back() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, 47, 0);
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let b_to_a = LIVE_CONTACTS
        .replace("\"ghl_a\"", "\"SOURCE\"")
        .replace("\"ghl_b\"", "\"ghl_a\"")
        .replace("\"SOURCE\"", "\"ghl_b\"");
    let config = write_config(
        dir.path(),
        &ghl,
        &state,
        &[("a-to-b", LIVE_CONTACTS), ("b-to-a", &b_to_a)],
    );
    // Location B's webhooks are verified by the same key.
    let text = std::fs::read_to_string(&config).expect("config");
    let key_line = format!("webhook_public_key = \"{}\"\n", ghl.webhook_public_key.base64);
    std::fs::write(&config, format!("{text}{key_line}")).expect("config");
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    // GHL sends every location's events to every registered URL; each connector keeps its own.
    ghl.emulator.register_webhook(host.webhook_url("ghl_a"));
    ghl.emulator.register_webhook(host.webhook_url("ghl_b"));

    let created = ghl_post(
        &runtime,
        &ghl,
        "/contacts/",
        json!({"locationId": a, "firstName": "Echo", "email": "echo@example.com"}),
    );
    let in_a = created["contact"]["id"].as_str().expect("id").to_owned();
    assert!(
        eventually(Duration::from_secs(20), || !events_of(
            &runtime,
            &state,
            "b-to-a",
            EventKind::Echo
        )
        .is_empty()),
        "B's webhook about our own write comes back and is recognised as an echo"
    );
    assert!(
        events_of(&runtime, &state, "b-to-a", EventKind::Written).is_empty(),
        "nothing synced back"
    );
    let copy = contacts_of(&ghl, &b);
    assert_eq!(copy.len(), 1);
    assert_eq!(copy[0]["firstName"], "Echo");

    // A real change in B does flow back to A, and its own echo from A stops there.
    let in_b = copy[0]["id"].as_str().expect("id").to_owned();
    runtime.block_on(async {
        let status = reqwest::Client::new()
            .put(format!("{}/contacts/{in_b}", ghl.base_url()))
            .bearer_auth(&ghl.credentials.other_pit)
            .header("Version", "2021-07-28")
            .json(&json!({"firstName": "Changed in B"}))
            .send()
            .await
            .expect("PUT")
            .status();
        assert!(status.is_success(), "{status}");
    });
    let first_name_in_a = || {
        contacts_of(&ghl, &a)
            .iter()
            .find(|c| c["id"] == in_a.as_str())
            .map(|c| c["firstName"].clone())
    };
    assert!(
        eventually(Duration::from_secs(20), || first_name_in_a()
            == Some(json!("Changed in B"))),
        "B's change reaches A"
    );
    assert!(
        eventually(Duration::from_secs(20), || !events_of(
            &runtime,
            &state,
            "a-to-b",
            EventKind::Echo
        )
        .is_empty()),
        "A's webhook about that write is an echo too"
    );
    assert_eq!(host.stop(), Some(0));
    assert_eq!(
        events_of(&runtime, &state, "a-to-b", EventKind::Written).len(),
        1,
        "A → B wrote once"
    );
    assert_eq!(
        events_of(&runtime, &state, "b-to-a", EventKind::Written).len(),
        1,
        "B → A wrote once"
    );
    assert_eq!(contacts_of(&ghl, &a).len(), 1);
    assert_eq!(contacts_of(&ghl, &b).len(), 1);
}
