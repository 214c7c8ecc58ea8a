//! The MLOFLO plugin as shipped (the real `.so` through the loader, a real host with its vault)
//! against the MLOFLO emulator over loopback, and `tether sync` of the MLOFLO flows into the GHL
//! emulator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{json, Value};
use tether_abi::{ErrorKind, Fields, OpenRequest, Page, ReadPosition, ReadRequest, WebhookRequest, WriteRequest};
use tether_core::loader::{load_dir, PluginLibrary};
use tether_e2e::{built, install, plugin_dir, tether_bin};
use tether_sandbox::ghl::CustomFieldSpec;
use tether_sandbox::mloflo::{self, DeliveryConfig, MlofloConfig, RunningMloflo};
use tether_sandbox::{GhlConfig, RateLimitConfig, RunningGhl};

mod support;

struct Rig {
    host: support::TestHost,
    mlo: RunningMloflo,
    plugin: PluginLibrary,
    _plugins: tempfile::TempDir,
}

fn rig_with(config: MlofloConfig) -> Rig {
    let host = support::host();
    let mlo = host
        .runtime
        .block_on(mloflo::start("127.0.0.1:0".parse().expect("addr"), config))
        .expect("emulator");
    let plugins = plugin_dir(&["tether-mloflo"]);
    let mut set = load_dir(plugins.path()).expect("plugins dir");
    assert!(set.refused.is_empty(), "{:?}", set.refused);
    let index = set
        .loaded
        .iter()
        .position(|p| p.manifest.name == "mloflo")
        .expect("mloflo loaded");
    let plugin = set.loaded.swap_remove(index);
    Rig {
        host,
        mlo,
        plugin,
        _plugins: plugins,
    }
}

fn rig(contacts: usize) -> Rig {
    rig_with(MlofloConfig {
        rate_limit: RateLimitConfig::disabled(),
        ..MlofloConfig::seeded(31, contacts)
    })
}

fn fields(value: Value) -> Fields {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

impl Rig {
    fn config(&self, auth: &str) -> Fields {
        let c = &self.mlo.credentials;
        let mut config = json!({"base_url": self.mlo.base_url(), "webhook_secret": c.webhook_secret});
        match auth {
            "key" => config["api_key"] = json!(c.api_key),
            "readonly" => config["api_key"] = json!(c.readonly_api_key),
            _ => {
                config["client_id"] = json!(c.client_id);
                config["client_secret"] = json!(c.client_secret);
            }
        }
        fields(config)
    }

    fn open(&self, instance: &str, config: Fields) -> Box<dyn tether_abi::Connector> {
        self.plugin
            .open(
                self.host.host(instance),
                &OpenRequest {
                    instance: instance.to_owned(),
                    config,
                },
            )
            .expect("open")
    }

    /// A contact changed through the API, as a user in MLOFLO would.
    fn patch_contact(&self, id: &str, body: Value) -> Value {
        let url = format!("{}/contacts/{id}", self.mlo.base_url());
        let key = self.mlo.credentials.api_key.clone();
        self.host.runtime.block_on(async {
            let r = reqwest::Client::new()
                .patch(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("PATCH");
            assert!(r.status().is_success(), "PATCH {}", r.status());
            r.json::<Value>().await.expect("JSON")
        })
    }
}

fn read(connector: &dyn tether_abi::Connector, stream: &str, cursor: Option<String>, limit: u32) -> Page {
    connector
        .read(ReadRequest {
            stream: stream.into(),
            position: ReadPosition::Cursor { cursor },
            limit: Some(limit),
            parent_id: None,
        })
        .unwrap_or_else(|e| panic!("read {stream}: {e}"))
}

/// Reads a stream to its end from `cursor`; returns every record id and the final cursor.
fn drain(
    connector: &dyn tether_abi::Connector,
    stream: &str,
    mut cursor: Option<String>,
    limit: u32,
) -> (Vec<String>, Option<String>) {
    let mut ids = Vec::new();
    for _ in 0..100 {
        let page = read(connector, stream, cursor.clone(), limit);
        ids.extend(page.records.iter().map(|r| r.id.clone()));
        cursor = page.next.clone();
        if !page.has_more {
            return (ids, cursor);
        }
    }
    panic!("{stream} never ended");
}

#[test]
fn both_auth_modes_read_and_the_oauth_token_is_kept_and_renewed() {
    let rig = rig(12);
    let by_key = rig.open("mlo_key", rig.config("key"));
    let report = by_key.check().expect("check with the API key");
    assert!(report.notes.iter().any(|n| n.contains("API key")), "{report:?}");
    let (with_key, _) = drain(by_key.as_ref(), "contacts", None, 5);
    assert_eq!(with_key.len(), 12);

    let by_oauth = rig.open("mlo_oauth", rig.config("oauth"));
    let (with_oauth, _) = drain(by_oauth.as_ref(), "contacts", None, 50);
    assert_eq!(with_oauth, with_key);
    let vault = rig.host.host("mlo_oauth");
    let first = vault.secret_get("oauth_token").expect("vault").expect("token stored");

    // A token the API stops honouring is replaced on the next call, not reported as an error.
    rig.mlo.emulator.expire_tokens();
    read(by_oauth.as_ref(), "contacts", None, 1);
    let second = vault.secret_get("oauth_token").expect("vault").expect("token stored");
    assert_ne!(first, second, "a new token was granted and stored");

    // Wrong credentials are an auth error, for either mode.
    let mut bad = rig.config("oauth");
    bad.insert("client_secret".into(), json!("wrong"));
    let err = rig.open("mlo_bad", bad).check().expect_err("bad secret");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    let mut bad_key = rig.config("key");
    bad_key.insert("api_key".into(), json!("mlo_test_00000000000000000000000000000000"));
    let err = rig.open("mlo_bad_key", bad_key).check().expect_err("bad key");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    // A key without the scope for a write is refused as auth, not retried.
    let readonly = rig.open("mlo_ro", rig.config("readonly"));
    let err = readonly
        .write(WriteRequest {
            action: "contact.create".into(),
            priority: Default::default(),
            target_id: None,
            parent_id: None,
            input: fields(json!({"first_name": "Ann"})),
        })
        .expect_err("readonly key");
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
}

#[test]
fn cursors_resume_after_the_last_change_and_deletes_arrive_as_deleted_records() {
    let rig = rig(9);
    let connector = rig.open("mlo", rig.config("key"));
    let (all, cursor) = drain(connector.as_ref(), "contacts", None, 4);
    assert_eq!(all.len(), 9);
    let (again, cursor) = drain(connector.as_ref(), "contacts", cursor, 4);
    assert!(again.is_empty(), "nothing changed: {again:?}");

    rig.patch_contact(&all[3], json!({"source": "referral"}));
    let page = read(connector.as_ref(), "contacts", cursor.clone(), 50);
    assert_eq!(
        page.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [all[3].as_str()]
    );
    assert_eq!(page.records[0].fields["source"], "referral");
    let cursor = page.next;

    let url = format!("{}/contacts/{}", rig.mlo.base_url(), all[5]);
    let key = rig.mlo.credentials.api_key.clone();
    let status = rig.host.runtime.block_on(async {
        reqwest::Client::new()
            .delete(url)
            .bearer_auth(key)
            .send()
            .await
            .expect("DELETE")
            .status()
    });
    assert_eq!(status.as_u16(), 204);
    let page = read(connector.as_ref(), "contacts", cursor, 50);
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].id, all[5]);
    assert!(page.records[0].deleted, "a soft delete is a deleted record");

    // Children: the tasks feed is global; notes and milestones are swept per contact.
    let (tasks, _) = drain(connector.as_ref(), "tasks", None, 3);
    let state = rig.mlo.emulator.state();
    assert_eq!(tasks.len(), state["tasks"].as_array().map_or(0, Vec::len));
    let (milestones, sweep) = drain(connector.as_ref(), "milestones", None, 4);
    let live_milestones = state["milestones"]
        .as_array()
        .map_or(0, |ms| ms.iter().filter(|m| m["contact_id"] != all[5].as_str()).count());
    assert_eq!(milestones.len(), live_milestones);
    let moved = rig.patch_contact(&all[0], json!({"pipeline_stage": "lost"}));
    assert_eq!(moved["pipeline_stage"], "lost");
    let (new_milestones, _) = drain(connector.as_ref(), "milestones", sweep, 4);
    assert_eq!(new_milestones.len(), 1, "only the new stage change: {new_milestones:?}");
}

#[test]
fn backfill_windows_hold_only_their_changes() {
    let rig = rig(6);
    let connector = rig.open("mlo", rig.config("key"));
    let state = rig.mlo.emulator.state();
    let mut times: Vec<String> = state["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter_map(|c| c["updated_at"].as_str().map(str::to_owned))
        .collect();
    times.sort();
    let page = connector
        .read(ReadRequest {
            stream: "contacts".into(),
            position: ReadPosition::Window {
                since: times[1].clone(),
                until: times[4].clone(),
                page: None,
            },
            limit: Some(100),
            parent_id: None,
        })
        .expect("window");
    assert_eq!(page.records.len(), 3, "[since, until) holds three changes");
    assert!(!page.has_more);
}

#[test]
fn over_the_rate_limit_the_plugin_reports_rate_limited_with_the_wait() {
    let rig = rig_with(MlofloConfig {
        rate_limit: RateLimitConfig {
            enabled: true,
            burst_max: 2,
            window_ms: 60_000,
            daily_limit: u64::MAX,
        },
        ..MlofloConfig::seeded(31, 3)
    });
    let connector = rig.open("mlo", rig.config("key"));
    read(connector.as_ref(), "contacts", None, 1);
    read(connector.as_ref(), "contacts", None, 1);
    let err = connector
        .read(ReadRequest {
            stream: "contacts".into(),
            position: ReadPosition::Cursor { cursor: None },
            limit: Some(1),
            parent_id: None,
        })
        .expect_err("third call in the minute");
    match &err.kind {
        ErrorKind::RateLimited {
            retry_after_ms: Some(ms),
        } => assert!((1_000..=60_000).contains(ms), "{ms}"),
        other => panic!("expected rate_limited with a wait, got {other}: {err}"),
    }
}

#[test]
fn writes_create_and_update_contacts_tasks_and_notes() {
    let rig = rig(1);
    let connector = rig.open("mlo", rig.config("oauth"));
    let write = |action: &str, target: Option<&str>, parent: Option<&str>, input: Value| {
        connector.write(WriteRequest {
            action: action.into(),
            priority: Default::default(),
            target_id: target.map(str::to_owned),
            parent_id: parent.map(str::to_owned),
            input: fields(input),
        })
    };
    let contact = write(
        "contact.create",
        None,
        None,
        json!({"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com", "phone": "+15125550111", "type": "borrower"}),
    )
    .expect("create contact");
    let contact_id = contact.target_id.clone().expect("id");
    assert_eq!(contact.returned["pipeline_stage"], "new_lead");
    let updated = write(
        "contact.update",
        Some(&contact_id),
        None,
        json!({"pipeline_stage": "application", "id": "ignored"}),
    )
    .expect("update contact");
    assert_eq!(updated.returned["pipeline_stage"], "application");

    let task = write(
        "task.create",
        None,
        Some(&contact_id),
        json!({"title": "Send disclosures"}),
    )
    .expect("task");
    let task_id = task.target_id.clone().expect("task id");
    assert_eq!(task.returned["contact_id"], contact_id.as_str());
    let done = write(
        "task.update",
        Some(&task_id),
        Some(&contact_id),
        json!({"status": "completed"}),
    )
    .expect("complete");
    assert!(done.returned["completed_at"].is_string());

    let note = write(
        "note.create",
        None,
        Some(&contact_id),
        json!({"body": "Docs in", "attachments": [{"file_name": "id.pdf", "url": "https://files.example/id.pdf"}]}),
    )
    .expect("note");
    let note_id = note.target_id.clone().expect("note id");
    write(
        "note.update",
        Some(&note_id),
        None,
        json!({"body": "Docs in, verified"}),
    )
    .expect("note update");

    let state = rig.mlo.emulator.state();
    let stored_note = state["notes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["id"] == note_id.as_str()))
        .expect("stored note");
    assert_eq!(stored_note["body"], "Docs in, verified");
    assert_eq!(stored_note["contact_id"], contact_id.as_str());

    let invalid = write(
        "contact.create",
        None,
        None,
        json!({"first_name": "X", "email": "nope"}),
    )
    .expect_err("invalid");
    assert_eq!(invalid.kind, ErrorKind::Invalid, "{invalid}");
    assert!(invalid.message.contains("email"), "the field is named: {invalid}");
    let duplicate = write(
        "contact.create",
        None,
        None,
        json!({"first_name": "G", "email": "GRACE@example.com"}),
    )
    .expect_err("dup");
    assert_eq!(duplicate.kind, ErrorKind::Conflict, "{duplicate}");
    let missing = write(
        "task.update",
        Some("0123456789abcdef01234567"),
        None,
        json!({"status": "open"}),
    )
    .expect_err("missing");
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
    let no_parent = write("task.create", None, None, json!({"title": "x"})).expect_err("no contact");
    assert_eq!(no_parent.kind, ErrorKind::Invalid, "{no_parent}");
}

type Captured = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A receiver that keeps what the emulator delivers.
fn receiver(rig: &Rig) -> (String, Captured) {
    let got: Captured = Arc::default();
    let kept = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let kept = kept.clone();
            async move {
                let headers = headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                kept.lock()
                    .expect("lock")
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let server = rig.host.runtime.block_on(async {
        let listener = tether_sandbox::serve::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        tether_sandbox::serve::spawn(listener, app).expect("serve")
    });
    let url = format!("http://{}/hook", server.addr);
    std::mem::forget(server);
    (url, got)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn webhooks_verify_good_and_refuse_bad_stale_and_replayed() {
    let rig = rig_with(MlofloConfig {
        rate_limit: RateLimitConfig::disabled(),
        webhook_delivery: DeliveryConfig::fast(Duration::from_millis(20)),
        ..MlofloConfig::seeded(31, 2)
    });
    let (url, got) = receiver(&rig);
    rig.mlo.emulator.register_webhook(url);
    let contacts = rig.mlo.emulator.state()["contacts"].clone();
    let id = contacts[0]["id"].as_str().expect("id").to_owned();
    let stage = contacts[0]["pipeline_stage"].as_str().expect("stage").to_owned();
    let next = if stage == "closed" { "lost" } else { "closed" };
    rig.patch_contact(&id, json!({"pipeline_stage": next}));
    for _ in 0..200 {
        if !got.lock().expect("lock").is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (headers, body) = got.lock().expect("lock").first().cloned().expect("a delivery");
    let connector = rig.open("mlo", rig.config("key"));
    let delivered = WebhookRequest {
        headers: headers.clone(),
        body: body.clone(),
        received_at_ms: now_ms(),
    };

    // Genuine: the contact, and the milestone the stage change carries.
    let events = connector.webhook(delivered.clone()).expect("genuine delivery");
    let streams: Vec<&str> = events.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["contacts", "milestones"]);
    assert_eq!(events[0].record.id, id);
    assert!(events[0].record.fields.get("milestone").is_none());
    assert_eq!(events[1].record.fields["to_stage"], next);
    assert_eq!(
        events[1].record.parent.as_ref().map(|p| p.id.as_str()),
        Some(id.as_str())
    );
    assert_eq!(
        events[0].record.event.as_ref().map(|e| e.kind.as_str()),
        Some("contact.stage_changed")
    );

    // Replayed: the same event id again.
    let err = connector.webhook(delivered.clone()).expect_err("replay");
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("replayed"), "{err}");

    // Tampered: one byte of the body changed.
    let tampered = WebhookRequest {
        body: body.replacen(&id, &format!("{}0", &id[..23]), 1),
        ..delivered.clone()
    };
    let err = connector.webhook(tampered).expect_err("tampered");
    assert!(err.message.contains("signature"), "{err}");

    // Signed with another secret.
    let secret = rig.mlo.credentials.webhook_secret.clone();
    let resign = |secret: &str, ts: i64, event_id: &str| {
        let body = body.replace(
            &format!(
                "\"id\":\"{}\"",
                headers
                    .iter()
                    .find(|(n, _)| n == "x-mloflo-event-id")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("")
            ),
            &format!("\"id\":\"{event_id}\""),
        );
        let ts = ts.to_string();
        WebhookRequest {
            headers: vec![
                ("X-Mloflo-Event-Id".into(), event_id.into()),
                ("X-Mloflo-Timestamp".into(), ts.clone()),
                ("X-Mloflo-Signature".into(), mloflo::sign(secret, &ts, &body)),
            ],
            body,
            received_at_ms: now_ms(),
        }
    };
    let now_s = now_ms() / 1000;
    let err = connector
        .webhook(resign("whsec_other", now_s, "evt_a"))
        .expect_err("wrong secret");
    assert!(err.message.contains("signature"), "{err}");
    // Stale: signed six minutes ago.
    let err = connector
        .webhook(resign(&secret, now_s - 360, "evt_b"))
        .expect_err("stale");
    assert!(err.message.contains("stale"), "{err}");
    // A fresh event with the right secret passes (the check is not refusing everything).
    let fresh = connector
        .webhook(resign(&secret, now_s - 10, "evt_c"))
        .expect("fresh and signed");
    assert_eq!(fresh[0].record.event.as_ref().map(|e| e.id.as_str()), Some("evt_c"));
}

// --- `tether sync` into the GHL emulator ---

fn ghl_emulator(runtime: &tokio::runtime::Runtime) -> RunningGhl {
    let mut config = GhlConfig::seeded(32, 0);
    config.rate_limit = RateLimitConfig::disabled();
    config.custom_fields = ["MLOFLO ID", "Pipeline Stage", "Loan Amount", "Credit Score"]
        .iter()
        .map(|name| CustomFieldSpec {
            name: (*name).to_owned(),
            data_type: "TEXT".into(),
            options: Vec::new(),
        })
        .collect();
    runtime
        .block_on(tether_sandbox::start("127.0.0.1:0".parse().expect("addr"), config))
        .expect("GHL emulator")
}

fn flows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/flows")
}

/// A tether.toml for the two emulators, with `flows` copied from config/flows.
fn sync_config(dir: &Path, ghl: &RunningGhl, mlo: &RunningMloflo, csv: &Path, flows: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins dir");
    install(built(), &["tether-mloflo"], &dir.join("plugins")).expect("install plugin");
    std::fs::create_dir_all(dir.join("flows")).expect("flows dir");
    for flow in flows {
        std::fs::copy(
            flows_dir().join(format!("{flow}.toml")),
            dir.join(format!("flows/{flow}.toml")),
        )
        .expect("copy flow");
    }
    let config = dir.join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "plugins_dir = \"plugins\"\n[state]\nurl = \"sqlite://state.sqlite\"\n\n\
             [connectors.ghl]\nplugin = \"ghl\"\n[connectors.ghl.config]\nbase_url = \"{}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n\n\
             [connectors.mloflo]\nplugin = \"mloflo\"\n[connectors.mloflo.config]\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\n\
             [connectors.mloflo_csv]\nplugin = \"mloflo\"\n[connectors.mloflo_csv.config]\ncsv_path = \"{}\"\n",
            ghl.base_url(),
            ghl.credentials.location_id,
            ghl.credentials.pit,
            mlo.base_url(),
            mlo.credentials.client_id,
            mlo.credentials.client_secret,
            csv.display()
        ),
    )
    .expect("config");
    config
}

fn tether(config: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let output = Command::new(tether_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run tether");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON; stdout {} stderr {stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    (output.status.code(), report, stderr)
}

fn ghl_contacts(ghl: &RunningGhl) -> Vec<Value> {
    ghl.emulator.state()["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter(|c| c["locationId"] == ghl.credentials.location_id.as_str())
        .cloned()
        .collect()
}

#[test]
fn contacts_sync_into_ghl_tagged_by_type_and_stage_then_only_changes() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = ghl_emulator(&runtime);
    let mlo = runtime
        .block_on(mloflo::start(
            "127.0.0.1:0".parse().expect("addr"),
            MlofloConfig {
                rate_limit: RateLimitConfig::disabled(),
                ..MlofloConfig::seeded(33, 14)
            },
        ))
        .expect("MLOFLO emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = sync_config(
        dir.path(),
        &ghl,
        &mlo,
        &dir.path().join("none.csv"),
        &["mloflo-contacts"],
    );
    let (code, report, stderr) = tether(&config, &["sync", "mloflo-contacts", "--json"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["read"], 14, "{report}");
    assert_eq!(report["written"], 14, "{report}");

    let source = mlo.emulator.state()["contacts"].clone();
    let synced = ghl_contacts(&ghl);
    assert_eq!(synced.len(), 14);
    for contact in source.as_array().expect("contacts") {
        let email = contact["email"].as_str().expect("email");
        let copy = synced
            .iter()
            .find(|c| c["email"] == email)
            .unwrap_or_else(|| panic!("{email} not in GHL"));
        let tags: Vec<&str> = copy["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let kind = contact["type"].as_str().expect("type");
        let stage = format!(
            "stage: {}",
            contact["pipeline_stage"].as_str().expect("stage").replace('_', " ")
        );
        for wanted in ["mloflo", kind, stage.as_str()] {
            assert!(tags.contains(&wanted), "{email}: {tags:?} lacks {wanted}");
        }
        assert_eq!(copy["phone"], contact["phone"]);
        assert_eq!(copy["firstName"], contact["first_name"]);
        assert_eq!(copy["postalCode"], contact["address"]["zip"]);
        let custom = copy["customFields"].as_array().expect("custom fields");
        assert!(
            custom.iter().any(|f| f["value"] == contact["id"]),
            "the MLOFLO id is kept in a custom field: {custom:?}"
        );
    }

    // Only what changed since is read and written again.
    let first = source[0]["id"].as_str().expect("id").to_owned();
    let url = format!("{}/contacts/{first}", mlo.base_url());
    let key = mlo.credentials.api_key.clone();
    runtime.block_on(async {
        let r = reqwest::Client::new()
            .patch(url)
            .bearer_auth(key)
            .json(&json!({"pipeline_stage": "closed", "first_name": "Renamed"}))
            .send()
            .await
            .expect("PATCH");
        assert!(r.status().is_success());
    });
    let (code, report, stderr) = tether(&config, &["sync", "mloflo-contacts", "--json"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(
        (report["read"].clone(), report["written"].clone()),
        (json!(1), json!(1)),
        "{report}"
    );
    let email = source[0]["email"].as_str().expect("email");
    let copy = ghl_contacts(&ghl)
        .into_iter()
        .find(|c| c["email"] == email)
        .expect("copy");
    assert_eq!(copy["firstName"], "Renamed");
    assert!(
        copy["tags"].as_array().expect("tags").contains(&json!("stage: closed")),
        "{copy}"
    );
    assert_eq!(ghl_contacts(&ghl).len(), 14, "an update, not a new contact");
}

#[test]
fn a_csv_export_becomes_ghl_contacts_and_each_bad_row_says_why() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = ghl_emulator(&runtime);
    let mlo = runtime
        .block_on(mloflo::start(
            "127.0.0.1:0".parse().expect("addr"),
            MlofloConfig::seeded(34, 0),
        ))
        .expect("MLOFLO emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("export.csv");
    std::fs::write(
        &csv,
        "First,Last,Email,Phone,Street,City,State,County,Zip,DOB,Source,Tags\n\
         Maria,Lopez,maria@example.com,(512) 555-0147,1200 Oak Ave,Austin,TX,Travis,78701,04/12/1988,open house,\"fha; first-time buyer\"\n\
         James,Carter,james@example.net,303-555-0199,45 Pine St,Denver,CO,Denver,80202,1979-11-02,referral,\n\
         Ana,Reyes,ana@example.org,12345,9 Elm St,Tampa,FL,Hillsborough,33602,,website,\n\
         Tom,Nguyen,,,,Boise,ID,Ada,83702,,zillow,investor\n",
    )
    .expect("csv");
    let config = sync_config(
        dir.path(),
        &ghl,
        &mlo,
        &csv,
        &["mloflo-contacts", "mloflo-csv-contacts"],
    );
    let (code, report, stderr) = tether(&config, &["sync", "mloflo-csv-contacts", "--json"]);
    assert_eq!(code, Some(1), "two rows fail: {report} {stderr}");
    assert_eq!(report["read"], 4, "{report}");
    assert_eq!(report["written"], 2, "{report}");
    assert_eq!(report["dead"], 2, "{report}");

    let synced = ghl_contacts(&ghl);
    let maria = synced
        .iter()
        .find(|c| c["email"] == "maria@example.com")
        .expect("Maria");
    assert_eq!(maria["phone"], "+15125550147");
    assert_eq!(
        maria["dateOfBirth"].as_str().map(|d| &d[..10]),
        Some("1988-04-12"),
        "{maria}"
    );
    let tags = maria["tags"].as_array().expect("tags");
    for wanted in ["mloflo", "csv import", "fha", "first-time buyer"] {
        assert!(tags.contains(&json!(wanted)), "{tags:?} lacks {wanted}");
    }
    assert!(synced.iter().any(|c| c["email"] == "james@example.net"));

    let (_, listed, _) = tether(&config, &["dlq", "list", "--json"]);
    let letters = listed["dead_letters"].as_array().expect("dead letters");
    let reason = |line: &str| -> String {
        letters
            .iter()
            .find(|l| {
                l["source_id"]
                    .as_str()
                    .is_some_and(|id| id.ends_with(&format!(":{line}")))
            })
            .and_then(|l| l["last_error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no dead letter for line {line}: {letters:?}"))
    };
    assert!(reason("4").contains("not a valid phone number"), "{}", reason("4"));
    assert!(
        reason("5").contains("line 5 has neither an email nor a phone"),
        "{}",
        reason("5")
    );

    // The same file again: nothing new is read.
    let (_, again, _) = tether(&config, &["sync", "mloflo-csv-contacts", "--json"]);
    assert_eq!(again["read"], 0, "{again}");
}

/// Flows 2–4: notes, milestones and tasks follow their contact (parents first) and land on the
/// contact it became in GHL; a task completed in MLOFLO completes the same GHL task.
#[test]
fn notes_milestones_and_tasks_land_on_their_contact_and_tasks_stay_in_step() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = ghl_emulator(&runtime);
    let mlo = runtime
        .block_on(mloflo::start(
            "127.0.0.1:0".parse().expect("addr"),
            MlofloConfig {
                rate_limit: RateLimitConfig::disabled(),
                ..MlofloConfig::seeded(35, 6)
            },
        ))
        .expect("MLOFLO emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = ["mloflo-contacts", "mloflo-notes", "mloflo-milestones", "mloflo-tasks"];
    let config = sync_config(dir.path(), &ghl, &mlo, &dir.path().join("none.csv"), &flows);
    for flow in flows {
        let (code, report, stderr) = tether(&config, &["sync", flow, "--json"]);
        assert_eq!(code, Some(0), "{flow}: {report} {stderr}");
        assert_eq!(report["dead"], 0, "{flow}: {report}");
        assert_eq!(report["retrying"], 0, "{flow}: parents were linked first: {report}");
    }
    let state = mlo.emulator.state();
    let ghl_state = ghl.emulator.state();
    // The GHL contact each MLOFLO contact became, by e-mail.
    let contact_in_ghl = |mlo_contact: &Value| -> String {
        let email = state["contacts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == *mlo_contact)
            .and_then(|c| c["email"].as_str())
            .expect("MLOFLO contact");
        ghl_contacts(&ghl)
            .into_iter()
            .find(|c| c["email"] == email)
            .and_then(|c| c["id"].as_str().map(str::to_owned))
            .expect("its GHL contact")
    };
    let on = |kind: &str, contact: &str| -> Vec<Value> {
        ghl_state[kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["contactId"] == contact)
            .cloned()
            .collect()
    };
    let notes = state["notes"].as_array().cloned().unwrap_or_default();
    assert!(!notes.is_empty(), "the seed has notes");
    for note in &notes {
        let contact = contact_in_ghl(&note["contact_id"]);
        let body = note["body"].as_str().unwrap_or_default();
        assert!(
            on("notes", &contact)
                .iter()
                .any(|n| n["body"].as_str().is_some_and(|b| b.starts_with(body))),
            "note {} not on {contact}",
            note["id"]
        );
    }
    let tasks = state["tasks"].as_array().cloned().unwrap_or_default();
    let open = tasks
        .iter()
        .find(|t| t["status"] != "completed" && t["deleted_at"].is_null())
        .expect("an open task");
    let contact = contact_in_ghl(&open["contact_id"]);
    let title = open["title"].as_str().expect("title").to_owned();
    let copies = |ghl_state: &Value| -> Vec<Value> {
        ghl_state["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["contactId"] == contact.as_str() && t["title"] == title.as_str())
            .cloned()
            .collect()
    };
    assert_eq!(copies(&ghl_state).len(), 1, "the task is on its contact");
    assert_eq!(copies(&ghl_state)[0]["completed"], false);
    let milestones = state["milestones"].as_array().map_or(0, Vec::len);
    let follow_ups = ghl_state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["title"].as_str().is_some_and(|t| t.starts_with("Follow up: ")))
        .count();
    assert_eq!(follow_ups, milestones, "a follow-up task per milestone");

    // Completed in MLOFLO → the same GHL task completed, not a second one.
    let url = format!("{}/tasks/{}", mlo.base_url(), open["id"].as_str().expect("id"));
    let key = mlo.credentials.api_key.clone();
    runtime.block_on(async {
        let r = reqwest::Client::new()
            .patch(url)
            .bearer_auth(key)
            .json(&json!({"status": "completed"}))
            .send()
            .await
            .expect("PATCH");
        assert!(r.status().is_success(), "{}", r.status());
    });
    let (code, report, stderr) = tether(&config, &["sync", "mloflo-tasks", "--json"]);
    assert_eq!(
        (code, report["written"].clone()),
        (Some(0), json!(1)),
        "{report} {stderr}"
    );
    let after = copies(&ghl.emulator.state());
    assert_eq!(after.len(), 1, "updated, not duplicated: {after:?}");
    assert_eq!(after[0]["completed"], true);
}

/// Issue 7, mloflo-tasks-back end to end: a task synced MLOFLO → GHL is completed in GHL; GHL's
/// signed TaskComplete webhook reaches `tether run`, which completes the same MLOFLO task. The
/// change that write makes in MLOFLO is then read by mloflo-tasks as our own echo: nothing is
/// written back to GHL.
#[test]
fn a_task_completed_in_ghl_completes_its_mloflo_task_and_the_echo_is_not_written_back() {
    use support::host_process::{eventually, RunningHost};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = ghl_emulator(&runtime);
    let mlo = runtime
        .block_on(mloflo::start(
            "127.0.0.1:0".parse().expect("addr"),
            MlofloConfig {
                rate_limit: RateLimitConfig::disabled(),
                ..MlofloConfig::seeded(36, 5)
            },
        ))
        .expect("MLOFLO emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = ["mloflo-contacts", "mloflo-tasks", "mloflo-tasks-back"];
    let config = sync_config(dir.path(), &ghl, &mlo, &dir.path().join("none.csv"), &flows);
    // GHL webhooks are verified with the location's key.
    let text = std::fs::read_to_string(&config).expect("config").replace(
        "[connectors.ghl.config]\n",
        &format!(
            "[connectors.ghl.config]\nwebhook_public_key = \"{}\"\n",
            ghl.webhook_public_key.base64
        ),
    );
    std::fs::write(&config, text).expect("config");
    for flow in ["mloflo-contacts", "mloflo-tasks"] {
        let (code, report, stderr) = tether(&config, &["sync", flow, "--json"]);
        assert_eq!(code, Some(0), "{flow}: {report} {stderr}");
        assert_eq!(report["dead"], 0, "{flow}: {report}");
    }

    let mlo_task = |id: &str| -> Value {
        mlo.emulator.state()["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["id"] == id)
            .cloned()
            .expect("the MLOFLO task")
    };
    let open = mlo.emulator.state()["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["status"] != "completed" && t["deleted_at"].is_null())
        .cloned()
        .expect("an open MLOFLO task");
    let open_id = open["id"].as_str().expect("id").to_owned();
    let title = open["title"].as_str().expect("title").to_owned();
    let email = mlo.emulator.state()["contacts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == open["contact_id"])
        .and_then(|c| c["email"].as_str().map(str::to_owned))
        .expect("the task's contact");
    let contact = ghl_contacts(&ghl)
        .into_iter()
        .find(|c| c["email"] == email.as_str())
        .and_then(|c| c["id"].as_str().map(str::to_owned))
        .expect("its GHL contact");
    let copies = || -> Vec<Value> {
        ghl.emulator.state()["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["contactId"] == contact.as_str() && t["title"] == title.as_str())
            .cloned()
            .collect()
    };
    let copy = copies();
    assert_eq!(copy.len(), 1, "the task reached GHL once: {copy:?}");
    assert_eq!(copy[0]["completed"], false);
    let ghl_task = copy[0]["id"].as_str().expect("GHL task id").to_owned();
    let tasks_in_ghl = ghl.emulator.state()["tasks"].as_array().map_or(0, Vec::len);

    // Completed in GHL: the emulator sends its signed TaskComplete webhook to `tether run`.
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    ghl.emulator.register_webhook(host.webhook_url("ghl"));
    let mlo_tasks = mlo.emulator.state()["tasks"].as_array().map_or(0, Vec::len);
    let ghl_call = |method: reqwest::Method, path: String, body: Value| -> Value {
        support::ghl_flow::api_call(&runtime, &ghl, method, &path, body)
    };
    // A task the user makes in GHL, and completes: it never came from MLOFLO, so
    // mloflo-tasks-back has nothing to update and skips it (no dead letter).
    let own = ghl_call(
        reqwest::Method::POST,
        format!("/contacts/{contact}/tasks"),
        json!({"title": "Call about rate lock", "dueDate": "2030-01-01T00:00:00Z", "completed": false}),
    );
    let own_id = own["task"]["id"].as_str().expect("new GHL task id").to_owned();
    ghl_call(
        reqwest::Method::PUT,
        format!("/contacts/{contact}/tasks/{own_id}/completed"),
        json!({"completed": true}),
    );
    ghl_call(
        reqwest::Method::PUT,
        format!("/contacts/{contact}/tasks/{ghl_task}/completed"),
        json!({"completed": true}),
    );
    let completed = eventually(Duration::from_secs(20), || mlo_task(&open_id)["status"] == "completed");
    if !completed {
        host.stop();
        let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
        let events = runtime.block_on(async {
            let store = tether_core::store::Store::open(&state).await.expect("store");
            store
                .events(Some("mloflo-tasks-back"), None, 100)
                .await
                .expect("events")
        });
        panic!(
            "completing it in GHL did not complete it in MLOFLO: {}\nmloflo-tasks-back events: {events:?}\nwebhooks: {:?}",
            mlo_task(&open_id),
            ghl.emulator.webhook_events()
        );
    }
    let delivered = ghl.emulator.webhook_events();
    assert!(
        delivered
            .iter()
            .any(|e| e["type"] == "TaskComplete" && e["id"] == ghl_task.as_str()),
        "the change arrived as GHL's TaskComplete webhook: {delivered:?}"
    );
    let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let skipped_own = || {
        runtime.block_on(async {
            let store = tether_core::store::Store::open(&state).await.expect("store");
            store
                .events(
                    Some("mloflo-tasks-back"),
                    Some(tether_core::store::EventKind::Skipped),
                    100,
                )
                .await
                .expect("events")
                .into_iter()
                .filter(|e| e.source_id == own_id)
                .collect::<Vec<_>>()
        })
    };
    // Its TaskCreate and its TaskComplete.
    assert!(
        eventually(Duration::from_secs(20), || skipped_own().len() == 2),
        "the user's own GHL task is skipped twice: {:?}",
        skipped_own()
    );
    assert!(
        skipped_own()[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("linked to none")),
        "the skip says why: {:?}",
        skipped_own()
    );
    assert_eq!(host.stop(), Some(0));
    let (code, status, stderr) = tether(&config, &["status", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let back = status["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["flow"] == "mloflo-tasks-back")
        .cloned()
        .expect("mloflo-tasks-back in status");
    assert_eq!(
        back["dead_letters"], 0,
        "nothing to update is not a dead letter: {back}"
    );
    assert_eq!(
        mlo.emulator.state()["tasks"].as_array().map_or(0, Vec::len),
        mlo_tasks,
        "no MLOFLO task was created"
    );
    assert_eq!(mlo_task(&open_id)["title"], title.as_str(), "the title is kept");

    // MLOFLO now reports the task changed; mloflo-tasks reads it and knows its own write.
    let (code, report, stderr) = tether(&config, &["sync", "mloflo-tasks", "--json"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert!(
        report["read"].as_u64().is_some_and(|n| n >= 1),
        "the completed task is read back from MLOFLO: {report}"
    );
    assert_eq!(
        (report["echoes"].clone(), report["written"].clone()),
        (json!(1), json!(0)),
        "our own write coming back is not written to GHL: {report}"
    );
    let copy = copies();
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert_eq!(copy[0]["completed"], true);
    assert_eq!(
        ghl.emulator.state()["tasks"].as_array().map_or(0, Vec::len),
        tasks_in_ghl + 1,
        "no task was created in GHL but the user's own"
    );
}
