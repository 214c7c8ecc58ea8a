//! The real AroFlo plugin library, loaded by the real loader, with a real host, against the
//! AroFlo emulator on loopback; and `tether sync` of the shipped aroflo-clients flow into the
//! GHL emulator.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tether_abi::{
    Connector, ConnectorError, ErrorKind, Fields, Host, HostServices, HttpRequest, HttpResponse, LogLevel, OpenRequest,
    Page, ReadPosition, ReadRequest, WriteRequest,
};
use tether_core::loader::load_dir;

use tether_e2e::{install, library_file};
use tether_sandbox::aroflo::{AroFloConfig, AroFloLimits, RunningAroFlo};

mod support;

/// This checkout's root. Not `tether_e2e::workspace_root()`: that path is compiled into the
/// test kit, which a target directory shared between checkouts may have built from another one.
fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."))
}

/// The `tether` binary and the aroflo plugin built from this checkout, copied aside at once so
/// a concurrent build elsewhere cannot swap them.
fn built_here() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = BUILT.get_or_init(|| {
        let output = tether_e2e::cargo()
            .args(["build", "-p", "tether", "-p", "tether-aroflo"])
            .current_dir(checkout())
            .output()
            .expect("run cargo");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let from = tether_e2e::target_dir().join("debug");
        let keep = tempfile::tempdir().expect("dir");
        let dir = keep.path().to_path_buf();
        install(&from, &["tether-aroflo"], &dir).expect("copy plugin");
        std::fs::copy(from.join("tether"), dir.join("tether")).expect("copy tether");
        (keep, dir)
    });
    dir
}

fn tether_bin() -> PathBuf {
    built_here().join("tether")
}

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(
        built_here().join(library_file("tether-aroflo")),
        dir.path().join(library_file("tether-aroflo")),
    )
    .expect("copy");
    dir
}

struct Rig {
    aroflo: RunningAroFlo,
    host: support::TestHost,
    _plugins: tempfile::TempDir,
    library: tether_core::loader::PluginSet,
}

fn rig(clients: usize) -> Rig {
    let host = support::host();
    let mut config = AroFloConfig::seeded(61, clients);
    config.rate_limit = AroFloLimits::disabled();
    let aroflo = host
        .runtime
        .block_on(tether_sandbox::aroflo::start(
            "127.0.0.1:0".parse().expect("addr"),
            config,
        ))
        .expect("emulator");
    let plugins = plugin_dir();
    let library = load_dir(plugins.path()).expect("plugins dir");
    assert!(library.refused.is_empty(), "{:?}", library.refused);
    Rig {
        aroflo,
        host,
        _plugins: plugins,
        library,
    }
}

impl Rig {
    fn config(&self) -> Fields {
        let c = &self.aroflo.credentials;
        let (org, task_type) = self.aroflo.emulator.task_defaults();
        let value = json!({
            "base_url": self.aroflo.base_url(), "uencoded": c.uencoded, "pencoded": c.pencoded,
            "org_encoded": c.org_encoded, "secret_key": c.secret_key,
            "default_org_id": org, "default_task_type_id": task_type,
        });
        match value {
            Value::Object(map) => map,
            _ => Fields::new(),
        }
    }

    fn open_with(&self, host: Host) -> Box<dyn Connector> {
        let plugin = self.library.get("aroflo").expect("aroflo plugin");
        plugin
            .open(
                host,
                &OpenRequest {
                    instance: "aroflo".into(),
                    config: self.config(),
                },
            )
            .expect("open")
    }

    fn connector(&self) -> Box<dyn Connector> {
        self.open_with(self.host.host("aroflo"))
    }
}

/// A host that changes what the plugin signed, or when it thinks it is.
struct Meddling {
    inner: Host,
    clock_shift_ms: i64,
    rewrite: Option<(&'static str, &'static str)>,
}

impl HostServices for Meddling {
    fn http(&self, mut request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        if let Some((from, to)) = self.rewrite {
            request.url = request.url.replace(from, to);
        }
        self.inner.http(request)
    }
    fn log(&self, level: LogLevel, message: &str, fields: &Fields) {
        self.inner.log(level, message, fields)
    }
    fn now_ms(&self) -> i64 {
        self.inner.now_ms() + self.clock_shift_ms
    }
    fn secret_get(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        self.inner.secret_get(key)
    }
    fn secret_put(&self, key: &str, value: &str) -> Result<(), ConnectorError> {
        self.inner.secret_put(key, value)
    }
}

fn cursor_read(connector: &dyn Connector, stream: &str, cursor: Option<String>) -> Page {
    connector
        .read(ReadRequest {
            stream: stream.into(),
            position: ReadPosition::Cursor { cursor },
            limit: None,
            parent_id: None,
        })
        .expect("read")
}

/// Every record of a stream, following `has_more`.
fn read_all(connector: &dyn Connector, stream: &str) -> (Vec<tether_abi::Record>, usize) {
    let mut cursor = None;
    let mut records = Vec::new();
    let mut pages = 0;
    loop {
        let page = cursor_read(connector, stream, cursor.clone());
        pages += 1;
        records.extend(page.records);
        assert!(page.next.is_some(), "a cursor read always returns a cursor");
        cursor = page.next;
        if !page.has_more || pages > 20 {
            break;
        }
    }
    (records, pages)
}

fn write(
    connector: &dyn Connector,
    action: &str,
    target: Option<&str>,
    parent: Option<&str>,
    input: Value,
) -> Result<tether_abi::WriteResult, ConnectorError> {
    let input = match input {
        Value::Object(map) => map,
        _ => Fields::new(),
    };
    connector.write(WriteRequest {
        action: action.into(),
        priority: Default::default(),
        target_id: target.map(str::to_owned),
        parent_id: parent.map(str::to_owned),
        input,
    })
}

#[test]
fn signed_requests_are_accepted_and_tampered_or_stale_ones_refused_as_auth() {
    let rig = rig(3);
    let report = rig.connector().check().expect("check");
    assert!(
        report
            .account
            .as_deref()
            .is_some_and(|a| a.starts_with("AroFlo org Tether Trades")),
        "{report:?}"
    );

    let tampered = rig.open_with(Arc::new(Meddling {
        inner: rig.host.host("aroflo"),
        clock_shift_ms: 0,
        rewrite: Some(("page=1", "page=2")),
    }));
    let error = tampered
        .read(ReadRequest {
            stream: "clients".into(),
            position: ReadPosition::Cursor { cursor: None },
            limit: None,
            parent_id: None,
        })
        .expect_err("tampered");
    assert_eq!(error.kind, ErrorKind::Auth, "{error}");
    assert!(error.message.contains("Signatures do not match"), "{error}");

    let stale = rig.open_with(Arc::new(Meddling {
        inner: rig.host.host("aroflo"),
        clock_shift_ms: -15 * 60_000,
        rewrite: None,
    }));
    let error = stale.check().expect_err("stale");
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(error.message.contains("Payload has expired"), "{error}");
}

#[test]
fn reads_page_by_500_with_explicit_wheres_and_miss_nothing_older_than_30_days() {
    let rig = rig(620);
    let connector = rig.connector();
    let first = cursor_read(connector.as_ref(), "clients", None);
    assert_eq!(first.records.len(), 500);
    assert!(first.has_more);
    let (clients, pages) = read_all(connector.as_ref(), "clients");
    assert!(pages >= 2);
    let ids: HashSet<&str> = clients.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 620, "every seeded client, old ones included");
    let month_ago = tether_sandbox::timefmt::iso_ms(tether_sandbox::timefmt::now_ms() - 31 * 86_400_000);
    assert!(clients
        .iter()
        .any(|r| r.updated_at.as_deref().is_some_and(|u| u < month_ago.as_str())));
    // AroFlo's own default would have hidden most of them.
    let state = rig.aroflo.emulator.state();
    assert_eq!(state["clients"].as_array().map(Vec::len), Some(620));

    // Nothing changed: the next poll brings back at most the last second again.
    let again = cursor_read(connector.as_ref(), "clients", first.next.clone());
    assert!(again.records.len() <= 500);

    let (contacts, _) = read_all(connector.as_ref(), "contacts");
    let seeded_contacts: usize = state["clients"]
        .as_array()
        .map(|c| c.iter().map(|c| c["contacts"].as_array().map_or(0, Vec::len)).sum())
        .unwrap_or(0);
    let contact_ids: HashSet<&str> = contacts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(contact_ids.len(), seeded_contacts);
    assert!(contacts
        .iter()
        .all(|c| c.parent.as_ref().is_some_and(|p| p.stream == "clients")));

    let (task_notes, _) = read_all(connector.as_ref(), "tasknotes");
    let seeded_notes: usize = state["tasks"]
        .as_array()
        .map(|t| t.iter().map(|t| t["notes"].as_array().map_or(0, Vec::len)).sum())
        .unwrap_or(0);
    assert_eq!(
        task_notes.iter().map(|r| r.id.as_str()).collect::<HashSet<_>>().len(),
        seeded_notes
    );
    assert!(task_notes
        .iter()
        .all(|n| n.fields["clientid"].is_string() && n.fields["content"].is_string()));

    let (client_notes, _) = read_all(connector.as_ref(), "clientnotes");
    assert_eq!(client_notes.len(), state["clientnotes"].as_array().map_or(0, Vec::len));

    // A window: clients changed in the last 10 days only, by their own date field.
    let now = tether_sandbox::timefmt::now_ms();
    let window = connector
        .read(ReadRequest {
            stream: "clients".into(),
            position: ReadPosition::Window {
                since: tether_sandbox::timefmt::iso_ms(now - 10 * 86_400_000),
                until: tether_sandbox::timefmt::iso_ms(now + 60_000),
                page: None,
            },
            limit: None,
            parent_id: None,
        })
        .expect("window");
    let since = tether_sandbox::timefmt::iso_ms(now - 10 * 86_400_000 - 1000);
    assert!(!window.records.is_empty() && window.records.len() < 620);
    assert!(window
        .records
        .iter()
        .all(|r| r.updated_at.as_deref().is_some_and(|u| u >= since.as_str())));
}

#[test]
fn a_new_change_is_picked_up_by_the_next_poll() {
    let rig = rig(5);
    let connector = rig.connector();
    let (_, _) = read_all(connector.as_ref(), "clients");
    let last = cursor_read(connector.as_ref(), "clients", None).next;
    let client = rig.aroflo.emulator.state()["clients"][0]["clientid"]
        .as_str()
        .expect("id")
        .to_owned();
    rig.aroflo
        .emulator
        .ui_post(
            "clients",
            &format!("<clients><client><clientid>{client}</clientid><email>new@example.com</email></client></clients>"),
        )
        .expect("ui edit");
    let page = cursor_read(connector.as_ref(), "clients", last);
    let changed = page
        .records
        .iter()
        .find(|r| r.id == client)
        .expect("the edited client comes back");
    assert_eq!(changed.fields["email"], "new@example.com");
}

#[test]
fn postxml_writes_insert_update_complete_and_type_envelope_errors() {
    let rig = rig(2);
    let connector = rig.connector();
    let c = connector.as_ref();
    let created = write(c, "client.create", None, None, json!({"clientname": "Coogee Electrical", "firstname": "Ava", "surname": "Smith", "mobile": "+61 491 570 120", "abn": "51 824 753 556"}))
        .expect("client.create");
    let client_id = created.target_id.expect("client id");
    let duplicate = write(
        c,
        "client.create",
        None,
        None,
        json!({"clientname": "Coogee Electrical", "firstname": "B", "surname": "C"}),
    )
    .expect_err("duplicate");
    assert_eq!(duplicate.kind, ErrorKind::Conflict, "{duplicate}");
    assert!(duplicate.message.contains("already exists"), "{duplicate}");
    let incomplete = write(c, "client.create", None, None, json!({"clientname": "Nameless"})).expect_err("incomplete");
    assert_eq!(incomplete.kind, ErrorKind::Invalid);

    // A linked create updates instead of inserting twice.
    let relinked = write(
        c,
        "client.create",
        Some(&client_id),
        None,
        json!({"email": "ava@example.com"}),
    )
    .expect("linked create");
    assert_eq!(relinked.target_id.as_deref(), Some(client_id.as_str()));
    let state = rig.aroflo.emulator.state();
    let clients: Vec<&Value> = state["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter(|c| c["clientname"] == "Coogee Electrical")
        .collect();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["email"], "ava@example.com");

    let task = write(
        c,
        "task.create",
        None,
        Some(&client_id),
        json!({"taskname": "Switchboard upgrade", "description": "Old fuses", "duedate": "2026-12-01T00:00:00Z"}),
    )
    .expect("task.create");
    let task_id = task.target_id.expect("task id");
    write(
        c,
        "task.update",
        Some(&task_id),
        None,
        json!({"taskname": "Switchboard upgrade (3 phase)", "status": "inprogress"}),
    )
    .expect("task.update");
    let find_task = || {
        rig.aroflo.emulator.state()["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["taskid"] == task_id.as_str()).cloned())
            .expect("task")
    };
    assert_eq!(find_task()["status"], "inprogress");
    assert_eq!(find_task()["taskname"], "Switchboard upgrade (3 phase)");
    assert_eq!(find_task()["client_id"], client_id.as_str());
    write(c, "task.complete", Some(&task_id), None, json!({})).expect("task.complete");
    assert_eq!(find_task()["status"], "completed");
    assert!(find_task()["completed_ms"].is_number());

    let completed_at_once = write(
        c,
        "task.create",
        None,
        Some(&client_id),
        json!({"taskname": "Already done", "completed": true}),
    )
    .expect("create completed");
    assert_eq!(completed_at_once.returned.get("status"), Some(&json!("Completed")));

    let task_note = write(
        c,
        "note.create",
        None,
        None,
        json!({"taskid": task_id, "content": "Isolated the circuit."}),
    )
    .expect("task note");
    assert!(task_note.target_id.is_some());
    let client_note = write(
        c,
        "note.create",
        None,
        None,
        json!({"clientid": client_id, "content": "Prefers SMS."}),
    )
    .expect("client note");
    assert!(client_note.target_id.is_some());
    let too_long = write(
        c,
        "note.create",
        None,
        None,
        json!({"clientid": client_id, "content": "x".repeat(1001)}),
    )
    .expect_err("too long");
    assert_eq!(too_long.kind, ErrorKind::Invalid);
    assert!(too_long.message.contains("1000"), "{too_long}");
    let missing = write(
        c,
        "task.update",
        Some("bm90LWEtdGFzaw=="),
        None,
        json!({"status": "pending"}),
    )
    .expect_err("missing task");
    assert_eq!(missing.kind, ErrorKind::Invalid, "{missing}");
    let (task_notes, _) = read_all(c, "tasknotes");
    assert!(task_notes
        .iter()
        .any(|n| n.fields["content"] == "Isolated the circuit."));
}

#[test]
fn aroflo_limits_come_back_as_rate_limited() {
    let rig = rig(1);
    let connector = rig.connector();
    rig.aroflo.emulator.set_rate_limit(AroFloLimits {
        per_second: 100,
        per_minute: 1,
        ..AroFloLimits::default()
    });
    connector.check().expect("first call");
    let error = connector.check().expect_err("over the minute budget");
    assert!(matches!(error.kind, ErrorKind::RateLimited { .. }), "{error}");
    assert!(error.message.contains("Requests per Minute"), "{error}");
}

/// A tether config with the GHL emulator (`ghl`) and this rig's AroFlo (`aroflo`), the given
/// shipped flows, and this checkout's plugin.
struct SyncRig {
    ghl: tether_sandbox::RunningGhl,
    dir: tempfile::TempDir,
}

impl SyncRig {
    fn new(rig: &Rig, flows: &[&str]) -> SyncRig {
        let ghl = support::ghl_flow::emulator(&rig.host.runtime, 5, 0);
        let dir = tempfile::tempdir().expect("dir");
        install(built_here(), &["tether-aroflo"], &dir.path().join("plugins")).expect("install");
        std::fs::create_dir_all(dir.path().join("flows")).expect("flows");
        for flow in flows {
            std::fs::copy(
                checkout().join(format!("config/flows/{flow}.toml")),
                dir.path().join(format!("flows/{flow}.toml")),
            )
            .expect("flow");
        }
        let c = &rig.aroflo.credentials;
        std::fs::write(
            dir.path().join("tether.toml"),
            format!(
                "plugins_dir = \"plugins\"\n[state]\nurl = \"sqlite://state.sqlite\"\n\n\
                 [connectors.ghl]\nplugin = \"ghl\"\n[connectors.ghl.config]\nbase_url = \"{}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n\n\
                 [connectors.aroflo]\nplugin = \"aroflo\"\n[connectors.aroflo.config]\nbase_url = \"{}\"\nuencoded = \"{}\"\npencoded = \"{}\"\norg_encoded = \"{}\"\nsecret_key = \"{}\"\n",
                ghl.base_url(),
                ghl.credentials.location_id,
                ghl.credentials.pit,
                rig.aroflo.base_url(),
                c.uencoded,
                c.pencoded,
                c.org_encoded,
                c.secret_key
            ),
        )
        .expect("config");
        SyncRig { ghl, dir }
    }

    /// Sets what GHL-task flows need (AroFlo's task defaults, GHL's webhook key); returns the
    /// config's path.
    fn for_ghl_tasks(&self, rig: &Rig) -> PathBuf {
        let config = self.dir.path().join("tether.toml");
        let (org, task_type) = rig.aroflo.emulator.task_defaults();
        let text = std::fs::read_to_string(&config).expect("config").replace(
            "[connectors.aroflo.config]\n",
            &format!(
                "[connectors.aroflo.config]\ndefault_org_id = \"{org}\"\ndefault_task_type_id = \"{task_type}\"\n"
            ),
        );
        let text = text.replace(
            "[connectors.ghl.config]\n",
            &format!(
                "[connectors.ghl.config]\nwebhook_public_key = \"{}\"\n",
                self.ghl.webhook_public_key.base64
            ),
        );
        std::fs::write(&config, text).expect("config");
        config
    }

    /// Syncs aroflo-clients, then names a GHL contact it wrote and the AroFlo client it came
    /// from: (contact id, client id).
    fn linked_client(&self, rig: &Rig) -> (String, String) {
        let (code, report, stderr) = self.run("aroflo-clients");
        assert_eq!(code, Some(0), "{report}\n{stderr}");
        let contact = self
            .contacts()
            .into_iter()
            .find(|c| c["email"].is_string())
            .expect("a synced contact");
        let email = contact["email"].as_str().unwrap_or_default().to_lowercase();
        let client_id = rig.aroflo.emulator.state()["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["email"].as_str().is_some_and(|e| e.to_lowercase() == email))
            .and_then(|c| c["clientid"].as_str().map(str::to_owned))
            .expect("the contact's client");
        (contact["id"].as_str().expect("id").to_owned(), client_id)
    }

    /// A call to the GHL emulator's API as a user's app would make it; its JSON answer.
    fn ghl_call(&self, rig: &Rig, method: reqwest::Method, path: &str, body: Value) -> Value {
        support::ghl_flow::api_call(&rig.host.runtime, &self.ghl, method, path, body)
    }

    /// The state store the rig's `tether` runs keep.
    async fn store(&self) -> tether_core::store::Store {
        let url = format!("sqlite://{}", self.dir.path().join("state.sqlite").display());
        tether_core::store::Store::open(&url).await.expect("store")
    }

    /// `tether sync FLOW --json`: exit code, report, stderr.
    fn run(&self, flow: &str) -> (Option<i32>, Value, String) {
        let config = self.dir.path().join("tether.toml");
        let output = Command::new(tether_bin())
            .args(["--config", &config.display().to_string(), "sync", flow, "--json"])
            .output()
            .expect("run tether sync");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let report: Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no JSON report; stderr: {stderr}"));
        (output.status.code(), report, stderr)
    }

    fn contacts(&self) -> Vec<Value> {
        support::ghl_flow::contacts_of(&self.ghl, &self.ghl.credentials.location_id)
    }
}

#[test]
fn tether_sync_brings_aroflo_clients_and_their_contacts_into_ghl() {
    let rig = rig(8);
    let sync = SyncRig::new(&rig, &["aroflo-clients", "aroflo-contacts"]);
    let run = |flow: &str| sync.run(flow);
    let ghl = &sync.ghl;
    let (code, report, stderr) = run("aroflo-clients");
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let contacts = support::ghl_flow::contacts_of(ghl, &ghl.credentials.location_id);
    let aroflo_clients = rig.aroflo.emulator.state()["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(contacts.len(), aroflo_clients.len(), "{report}");
    for client in &aroflo_clients {
        let email = client["email"].as_str().unwrap_or_default().to_lowercase();
        let contact = contacts
            .iter()
            .find(|c| c["email"] == email.as_str())
            .unwrap_or_else(|| panic!("{email} not in GHL"));
        assert_eq!(contact["companyName"], client["clientname"]);
        assert_eq!(contact["firstName"], client["firstname"]);
        assert!(
            contact["phone"].as_str().is_some_and(|p| p.starts_with("+61")),
            "{contact}"
        );
        assert!(contact["tags"].as_array().is_some_and(|t| t.contains(&json!("aroflo"))));
    }
    // A second run writes nothing new: no duplicates.
    let (code, _, stderr) = run("aroflo-clients");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        support::ghl_flow::contacts_of(ghl, &ghl.credentials.location_id).len(),
        aroflo_clients.len()
    );

    // Each client's own contacts follow as GHL contacts of their own.
    let (code, report, stderr) = run("aroflo-contacts");
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let contacts = support::ghl_flow::contacts_of(ghl, &ghl.credentials.location_id);
    let people: Vec<&Value> = aroflo_clients
        .iter()
        .flat_map(|c| c["contacts"].as_array().into_iter().flatten())
        .collect();
    assert!(!people.is_empty());
    for person in people {
        let email = person["email"].as_str().unwrap_or_default().to_lowercase();
        let contact = contacts
            .iter()
            .find(|c| c["email"] == email.as_str())
            .unwrap_or_else(|| panic!("{email} not in GHL"));
        assert_eq!(contact["firstName"], person["givennames"]);
        assert!(
            contact["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("aroflo-contact"))),
            "{contact}"
        );
    }
}

#[test]
fn tether_sync_puts_aroflo_client_notes_on_the_linked_ghl_contact() {
    let rig = rig(8);
    let sync = SyncRig::new(&rig, &["aroflo-clients", "aroflo-clientnotes", "aroflo-tasknotes"]);
    assert_eq!(sync.run("aroflo-clients").0, Some(0));
    let (code, report, stderr) = sync.run("aroflo-clientnotes");
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let state = rig.aroflo.emulator.state();
    let ghl_state = sync.ghl.emulator.state();
    let ghl_notes = ghl_state["notes"].as_array().cloned().unwrap_or_default();
    let notes = state["clientnotes"].as_array().cloned().unwrap_or_default();
    assert!(!notes.is_empty());
    for note in &notes {
        let client = state["clients"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["clientid"] == note["clientid"]))
            .expect("client of the note");
        let email = client["email"].as_str().unwrap_or_default().to_lowercase();
        let contact = sync
            .contacts()
            .into_iter()
            .find(|c| c["email"] == email.as_str())
            .expect("linked contact");
        let body = format!("[AroFlo] {}", note["content"].as_str().unwrap_or_default());
        assert!(
            ghl_notes
                .iter()
                .any(|n| n["contactId"] == contact["id"] && n["body"] == body.as_str()),
            "{body} not on {}",
            contact["id"]
        );
    }
    let (code, report, stderr) = sync.run("aroflo-tasknotes");
    assert_eq!(code, Some(0), "{report}\n{stderr}");
}

/// Flow 2: a GHL task (by webhook, through `tether run`) becomes an AroFlo task on the client the
/// task's contact was linked from; its completion updates that task, never a second one.
#[test]
fn ghl_tasks_by_webhook_become_aroflo_tasks_on_the_linked_client() {
    use support::host_process::{eventually, RunningHost};
    let rig = rig(4);
    let sync = SyncRig::new(&rig, &["aroflo-clients", "aroflo-tasks"]);
    let config = sync.for_ghl_tasks(&rig);
    let (contact_id, client_id) = sync.linked_client(&rig);

    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    sync.ghl.emulator.register_webhook(host.webhook_url("ghl"));
    let created = sync.ghl_call(
        &rig,
        reqwest::Method::POST,
        &format!("/contacts/{contact_id}/tasks"),
        json!({"title": "Quote hot water system", "dueDate": "2026-12-01T00:00:00Z", "completed": false}),
    );
    let task_id = created["task"]["id"].as_str().expect("task id").to_owned();
    let tasks_named = |name: &str| aroflo_tasks_named(&rig, name);
    assert!(
        eventually(std::time::Duration::from_secs(20), || tasks_named(
            "Quote hot water system"
        )
        .len()
            == 1),
        "the GHL task reaches AroFlo"
    );
    assert_eq!(
        tasks_named("Quote hot water system")[0]["client_id"],
        client_id.as_str()
    );

    sync.ghl_call(
        &rig,
        reqwest::Method::PUT,
        &format!("/contacts/{contact_id}/tasks/{task_id}/completed"),
        json!({"completed": true}),
    );
    assert!(
        eventually(std::time::Duration::from_secs(20), || tasks_named(
            "Quote hot water system"
        )
        .first()
        .is_some_and(|t| t["status"] == "completed")),
        "completing it in GHL completes it in AroFlo: {:?}",
        tasks_named("Quote hot water system")
    );
    assert_eq!(host.stop(), Some(0));
    assert_eq!(
        tasks_named("Quote hot water system").len(),
        1,
        "updated, never duplicated"
    );
}

/// The events of `flow` of one kind, newest first, from the rig's store.
fn runtime_events(
    rig: &Rig,
    sync: &SyncRig,
    flow: &str,
    kind: tether_core::store::EventKind,
) -> Vec<tether_core::store::EventRow> {
    rig.host.runtime.block_on(async {
        sync.store()
            .await
            .events(Some(flow), Some(kind), 1_000)
            .await
            .expect("events")
    })
}

/// AroFlo's job tasks called `name`.
fn aroflo_tasks_named(rig: &Rig, name: &str) -> Vec<Value> {
    rig.aroflo.emulator.state()["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["taskname"] == name)
        .cloned()
        .collect()
}

/// Flow 2's repair poll: GHL's webhooks never reach the host (lost), yet a task made and then
/// completed in GHL reaches AroFlo, by the poll sweeping the tasks of each linked contact. The
/// sweeps queue only what changed, and a later webhook for a change the sweep also sees writes
/// the task once.
#[test]
fn a_ghl_task_whose_webhook_was_lost_reaches_aroflo_by_the_repair_poll() {
    use support::host_process::{eventually, RunningHost};
    let rig = rig(4);
    let sync = SyncRig::new(&rig, &["aroflo-clients", "aroflo-tasks"]);
    let config = sync.for_ghl_tasks(&rig);
    let flow = sync.dir.path().join("flows/aroflo-tasks.toml");
    let text = std::fs::read_to_string(&flow).expect("flow");
    assert!(text.contains("\nevery = \"15m\"\n"), "shipped with a repair poll");
    std::fs::write(&flow, text.replace("\nevery = \"15m\"\n", "\nevery = \"1s\"\n")).expect("flow");
    let (contact_id, client_id) = sync.linked_client(&rig);

    // No webhook is registered: every GHL webhook is lost.
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    let title = "Replace relief valve";
    let created = sync.ghl_call(
        &rig,
        reqwest::Method::POST,
        &format!("/contacts/{contact_id}/tasks"),
        json!({"title": title, "dueDate": "2026-12-03T00:00:00Z", "completed": false}),
    );
    let task_id = created["task"]["id"].as_str().expect("task id").to_owned();
    assert!(
        eventually(std::time::Duration::from_secs(20), || aroflo_tasks_named(&rig, title)
            .len()
            == 1),
        "the repair poll brings the task to AroFlo: {:?}",
        aroflo_tasks_named(&rig, title)
    );
    assert_eq!(aroflo_tasks_named(&rig, title)[0]["client_id"], client_id.as_str());
    sync.ghl_call(
        &rig,
        reqwest::Method::PUT,
        &format!("/contacts/{contact_id}/tasks/{task_id}/completed"),
        json!({"completed": true}),
    );
    assert!(
        eventually(std::time::Duration::from_secs(20), || aroflo_tasks_named(&rig, title)
            .first()
            .is_some_and(|t| t["status"] == "completed")),
        "its completion follows by the poll too: {:?}",
        aroflo_tasks_named(&rig, title)
    );
    // Sweeps go on every second; with nothing changed they queue nothing.
    let rows = || -> i64 {
        rig.host.runtime.block_on(async {
            let store = sync.store().await;
            store
                .flow_counts()
                .await
                .expect("counts")
                .into_iter()
                .find(|c| c.flow == "aroflo-tasks")
                .map_or(0, |c| c.pending + c.done + c.dead)
        })
    };
    let settled = rows();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(rows(), settled, "sweeps of unchanged tasks queue no rows");

    // GHL sends no webhook for a task's edit: only the poll sees it. AroFlo keeps 50 characters
    // of a task name, and write verification says so.
    let long_title = "Replace relief valve, then test the tempering valve at the unit";
    let retitled = &long_title[..50];
    sync.ghl_call(
        &rig,
        reqwest::Method::PUT,
        &format!("/contacts/{contact_id}/tasks/{task_id}"),
        json!({"title": long_title}),
    );
    assert!(
        eventually(std::time::Duration::from_secs(20), || aroflo_tasks_named(
            &rig, retitled
        )
        .len()
            == 1),
        "the retitled task reaches AroFlo: {:?}",
        rig.aroflo.emulator.state()["tasks"]
    );
    assert!(aroflo_tasks_named(&rig, title).is_empty(), "the same task, retitled");
    // The write reaches AroFlo before the host records its outcome (the warning with it).
    let warnings = || runtime_events(&rig, &sync, "aroflo-tasks", tether_core::store::EventKind::Warning);
    eventually(std::time::Duration::from_secs(10), || !warnings().is_empty());
    let warnings = warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.detail.as_deref().is_some_and(|d| d.contains(&format!(
                "kept field `taskname` as \"{retitled}\", not the \"{long_title}\" sent"
            )))),
        "{warnings:?}"
    );
    assert_eq!(warnings.len(), 1, "no other field is judged lost: {warnings:?}");

    // Webhooks come back: a new task arrives by its webhook and by the sweep, written once.
    sync.ghl.emulator.register_webhook(host.webhook_url("ghl"));
    let second = "Inspect hot water unit";
    sync.ghl_call(
        &rig,
        reqwest::Method::POST,
        &format!("/contacts/{contact_id}/tasks"),
        json!({"title": second, "dueDate": "2026-12-04T00:00:00Z", "completed": false}),
    );
    assert!(
        eventually(std::time::Duration::from_secs(20), || aroflo_tasks_named(&rig, second)
            .len()
            == 1),
        "the second task reaches AroFlo"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(host.stop(), Some(0));
    assert!(
        sync.ghl
            .emulator
            .webhook_events()
            .iter()
            .any(|e| e["type"] == "TaskCreate" && e["title"] == second),
        "the second task was announced by webhook"
    );
    assert_eq!(aroflo_tasks_named(&rig, retitled).len(), 1, "never duplicated");
    assert_eq!(
        aroflo_tasks_named(&rig, second).len(),
        1,
        "webhook and sweep write it once"
    );
    let (code, status, stderr) = {
        let output = Command::new(tether_bin())
            .args(["--config", &config.display().to_string(), "status", "--json"])
            .output()
            .expect("tether status");
        (
            output.status.code(),
            serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{stderr}");
    let flow = status["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["flow"] == "aroflo-tasks")
        .cloned()
        .expect("aroflo-tasks in status");
    assert_eq!(flow["dead_letters"], 0, "{flow}");
    assert_eq!(flow["queued"], 0, "{flow}");
    // A dry run sweeps the same way: both tasks, linked, with nothing to write.
    let output = Command::new(tether_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "dry-run",
            "aroflo-tasks",
            "--json",
        ])
        .output()
        .expect("tether dry-run");
    let planned: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("dry-run JSON; stderr: {}", String::from_utf8_lossy(&output.stderr)));
    let writes = planned["writes"].as_array().cloned().unwrap_or_default();
    assert_eq!(writes.len(), 2, "{planned}");
    assert!(
        writes
            .iter()
            .all(|w| w["unchanged"] == true && w["target_id"].is_string() && w["action"] == "task.update"),
        "{planned}"
    );
}

/// Issue 6: the AroFlo → GHL task path and its echo. The optional aroflo-notes-tasks ships
/// disabled, and `tether run` leaves it out; switched on, it writes a follow-up task into GHL for
/// each AroFlo client note. GHL then sends a signed TaskCreate webhook for each of those tasks to
/// aroflo-tasks (GHL tasks → AroFlo), which must know them as our own writes: echoes, never a
/// task written back into AroFlo.
#[test]
fn aroflo_notes_written_into_ghl_as_tasks_do_not_come_back_into_aroflo() {
    use support::host_process::{eventually, RunningHost};
    use tether_core::store::{EventKind, Store};
    let rig = rig(6);
    let sync = SyncRig::new(&rig, &["aroflo-clients", "aroflo-notes-tasks", "aroflo-tasks"]);
    let config = sync.for_ghl_tasks(&rig);
    let (code, report, stderr) = sync.run("aroflo-clients");
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let state = format!("sqlite://{}", sync.dir.path().join("state.sqlite").display());
    let events = |flow: &str, kind: EventKind| -> usize {
        rig.host.runtime.block_on(async {
            let store = Store::open(&state).await.expect("store");
            store
                .events(Some(flow), Some(kind), 10_000)
                .await
                .expect("events")
                .len()
        })
    };
    let aroflo_tasks = || {
        rig.aroflo.emulator.state()["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let follow_ups = || -> Vec<Value> {
        sync.ghl.emulator.state()["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["title"] == "Follow up AroFlo note")
            .cloned()
            .collect()
    };
    let tasks_before = aroflo_tasks();

    // As shipped: `tether run` names the flow disabled and does not run it.
    let host = RunningHost::start(&config, &["--idle-ms", "50"]);
    assert!(
        host.banner
            .contains("2 flow(s) [aroflo-clients, aroflo-tasks], disabled [aroflo-notes-tasks];"),
        "{}",
        host.banner
    );
    assert_eq!(host.stop(), Some(0));
    assert!(follow_ups().is_empty(), "a disabled flow writes nothing");

    // Switched on. GHL's webhooks go to the host from its first poll on: the port is chosen first.
    let flow = sync.dir.path().join("flows/aroflo-notes-tasks.toml");
    let text = std::fs::read_to_string(&flow).expect("flow");
    assert!(text.contains("\nenabled = false\n"), "shipped disabled");
    std::fs::write(&flow, text.replace("\nenabled = false\n", "\nenabled = true\n")).expect("flow");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    sync.ghl
        .emulator
        .register_webhook(format!("http://{listen}/webhooks/ghl"));
    let host = RunningHost::start_on(&config, &listen, &["--idle-ms", "50"]);
    assert!(host.banner.contains("3 flow(s)"), "{}", host.banner);
    let notes = rig.aroflo.emulator.state()["clientnotes"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(notes > 0, "the seed has client notes");
    assert!(
        eventually(std::time::Duration::from_secs(30), || follow_ups().len() == notes),
        "a GHL task per AroFlo client note: {} of {notes}",
        follow_ups().len()
    );
    // Each of those tasks comes back as GHL's TaskCreate webhook, and is known as our own.
    assert!(
        eventually(std::time::Duration::from_secs(30), || events(
            "aroflo-tasks",
            EventKind::Echo
        ) == notes),
        "{} echoes for {notes} tasks; written back: {}, retrying: {}, dead: {}",
        events("aroflo-tasks", EventKind::Echo),
        events("aroflo-tasks", EventKind::Written),
        events("aroflo-tasks", EventKind::Retry),
        events("aroflo-tasks", EventKind::Dead)
    );
    assert_eq!(host.stop(), Some(0));
    let delivered = sync
        .ghl
        .emulator
        .webhook_events()
        .iter()
        .filter(|e| e["type"] == "TaskCreate" && e["title"] == "Follow up AroFlo note")
        .count();
    assert_eq!(delivered, notes, "GHL announced each task");
    assert_eq!(
        events("aroflo-tasks", EventKind::Written),
        0,
        "nothing written back into AroFlo"
    );
    assert_eq!(events("aroflo-tasks", EventKind::Dead), 0);
    let after = aroflo_tasks();
    assert_eq!(after.len(), tasks_before.len(), "no AroFlo task was created: {after:?}");
    assert!(after.iter().all(|t| t["taskname"] != "Follow up AroFlo note"));
    assert_eq!(follow_ups().len(), notes, "and no GHL task twice");
}
