//! The Moloni plugin as the host runs it: the real `.so` through the loader, a real host
//! (`support::host()`: HTTP, vault on SQLite) and the Moloni emulator on loopback. Then flows 1
//! and 2 end to end: `tether sync` and `tether backfill` of moloni-customers into the GHL emulator.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{json, Value};
use tether_abi::{Connector, ErrorKind, Fields, OpenRequest, Page, ReadPosition, ReadRequest, WriteRequest};
use tether_core::loader::{load_dir, PluginSet};
use tether_e2e::{plugin_dir, tether_bin, workspace_root};
use tether_sandbox::ghl::CustomFieldSpec;
use tether_sandbox::moloni::{self, MoloniConfig, RunningMoloni};
use tether_sandbox::{GhlConfig, RateLimitConfig, RunningGhl};

mod support;

struct Rig {
    host: support::TestHost,
    plugins: PluginSet,
    _dir: tempfile::TempDir,
    emu: RunningMoloni,
}

fn rig(config: MoloniConfig) -> Rig {
    let dir = plugin_dir(&["tether-moloni"]);
    let plugins = load_dir(dir.path()).expect("plugins dir");
    let host = support::host();
    let emu = host
        .runtime
        .block_on(moloni::start("127.0.0.1:0".parse().expect("addr"), config))
        .expect("emulator");
    Rig {
        host,
        plugins,
        _dir: dir,
        emu,
    }
}

impl Rig {
    fn config(&self, overrides: Value) -> Fields {
        let c = &self.emu.credentials;
        let mut config = json!({
            "base_url": format!("{}/v1", self.emu.base_url()),
            "client_id": c.client_id, "client_secret": c.client_secret,
            "username": c.username, "password": c.password,
            "company_id": c.company_id, "default_payment_method_id": c.payment_method_id,
            "overlap_seconds": 0,
        });
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), overrides) {
            config.extend(extra);
        }
        match config {
            Value::Object(m) => m,
            _ => Fields::new(),
        }
    }

    fn open(&self, instance: &str, overrides: Value) -> Box<dyn Connector> {
        self.plugins
            .get("moloni")
            .expect("moloni loaded")
            .open(
                self.host.host(instance),
                &OpenRequest {
                    instance: instance.into(),
                    config: self.config(overrides),
                },
            )
            .expect("open")
    }

    fn logins(&self) -> Vec<(String, u64)> {
        self.emu
            .emulator
            .logins()
            .iter()
            .map(|l| {
                (
                    l["grant_type"].as_str().unwrap_or("").to_owned(),
                    l["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn secret(&self, instance: &str, key: &str) -> Option<String> {
        self.host.host(instance).secret_get(key).expect("vault")
    }
}

fn feed(connector: &dyn Connector, stream: &str, cursor: Option<String>) -> Result<Page, tether_abi::ConnectorError> {
    connector.read(ReadRequest {
        stream: stream.into(),
        position: ReadPosition::Cursor { cursor },
        limit: Some(100),
        parent_id: None,
    })
}

/// Reads the feed until it has nothing more; the records and the cursor after them.
fn drain(
    connector: &dyn Connector,
    stream: &str,
    mut cursor: Option<String>,
) -> (Vec<tether_abi::Record>, Option<String>) {
    let mut records = Vec::new();
    loop {
        let page = feed(connector, stream, cursor.clone()).expect("read");
        records.extend(page.records);
        cursor = page.next;
        if !page.has_more {
            return (records, cursor);
        }
    }
}

fn ids(records: &[tether_abi::Record]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

#[test]
fn logins_refresh_before_expiry_and_the_rotated_refresh_token_is_persisted() {
    let mut config = MoloniConfig::seeded(31, 5);
    // 600 s is inside the plugin's refresh margin: every call after the first login refreshes.
    config.access_token_ttl = std::time::Duration::from_secs(600);
    let rig = rig(config);
    let connector = rig.open("moloni_pt", json!({}));
    let (first, _) = drain(connector.as_ref(), "customers", None);
    assert_eq!(first.len(), 5);
    assert_eq!(rig.logins(), vec![("password".to_owned(), 200)]);
    let refresh_1 = rig.secret("moloni_pt", "refresh_token").expect("refresh token stored");
    drain(connector.as_ref(), "customers", None);
    assert_eq!(rig.logins().last(), Some(&("refresh_token".to_owned(), 200)));
    let refresh_2 = rig.secret("moloni_pt", "refresh_token").expect("refresh token stored");
    assert_ne!(refresh_1, refresh_2, "the rotated refresh token replaced the used one");
    // A new instance of the connector (a restart) continues from the stored refresh token: even a
    // wrong password is never sent.
    let restarted = rig.open("moloni_pt", json!({"password": "not-the-password"}));
    let before = rig.logins().len();
    drain(restarted.as_ref(), "customers", None);
    let after = rig.logins();
    assert_eq!(after[before..], [("refresh_token".to_owned(), 200)]);
}

#[test]
fn a_refused_access_token_is_replaced_once_and_the_call_goes_through() {
    let rig = rig(MoloniConfig::seeded(32, 3));
    let connector = rig.open("moloni_pt", json!({}));
    drain(connector.as_ref(), "customers", None);
    rig.emu.emulator.expire_access_tokens();
    let (records, _) = drain(connector.as_ref(), "customers", None);
    assert_eq!(records.len(), 3);
    assert_eq!(
        rig.logins(),
        vec![("password".to_owned(), 200), ("refresh_token".to_owned(), 200)]
    );
}

#[test]
fn the_feed_pages_by_fifty_and_its_cursor_returns_only_changes() {
    let rig = rig(MoloniConfig::seeded(33, 130));
    let connector = rig.open("moloni_pt", json!({}));
    let (all, cursor) = drain(connector.as_ref(), "customers", None);
    assert_eq!(all.len(), 130);
    assert_eq!(ids(&all).len(), 130);
    let requests = rig.emu.emulator.requests();
    assert!(requests.len() >= 3);
    for r in &requests {
        let qty = r["params"]["qty"].as_u64().unwrap_or(u64::MAX);
        assert!(qty <= 50, "asked for {qty}: {r}");
        assert!(r["params"]["company_id"].is_number(), "{r}");
    }
    let event = all[0].event.clone().expect("event");
    assert_eq!(event.kind, "customer.modified");
    assert_eq!(all[0].fields.get("eventId"), Some(&json!(event.id)));

    // Nothing changed: the next walk is empty.
    let (none, cursor) = drain(connector.as_ref(), "customers", cursor);
    assert_eq!(none.len(), 0);
    // One customer edited in Moloni: the walk brings exactly that one, as a new event.
    let edited: u64 = all[7].id.parse().expect("numeric id");
    rig.emu
        .emulator
        .edit_customer(edited, json!({"phone": "+351 912 000 111"}))
        .expect("edit");
    let (changed, _) = drain(connector.as_ref(), "customers", cursor);
    assert_eq!(ids(&changed), BTreeSet::from([edited.to_string()]));
    assert_eq!(changed[0].fields.get("phone"), Some(&json!("+351 912 000 111")));
    assert_ne!(changed[0].event.as_ref().map(|e| &e.id), Some(&event.id));
}

#[test]
fn invoices_follow_lastmodified_and_name_their_customer() {
    let rig = rig(MoloniConfig::seeded(34, 20));
    let connector = rig.open("moloni_pt", json!({}));
    let (seeded, cursor) = drain(connector.as_ref(), "invoices", None);
    assert_eq!(seeded.len(), 10);
    let customer: u64 = drain(connector.as_ref(), "customers", None).0[3]
        .id
        .parse()
        .expect("id");
    let id = rig
        .emu
        .emulator
        .add_invoice(
            customer,
            "2026-01-15",
            "2026-02-14",
            vec![json!({"name": "Consultoria", "qty": 1, "price": 1003.66, "tax_id": 1})],
        )
        .expect("invoice");
    let (new, _) = drain(connector.as_ref(), "invoices", cursor);
    // The newest `lastmodified` is read again (the bound is inclusive); the queue drops the repeat by event id.
    assert!(new.iter().any(|r| r.id == id.to_string()), "{new:?}");
    let invoice = new.iter().find(|r| r.id == id.to_string()).expect("the new invoice");
    assert_eq!(
        invoice.parent.as_ref().map(|p| p.id.clone()),
        Some(customer.to_string())
    );
    assert_eq!(invoice.fields.get("total_text"), Some(&json!("1,234.50")));
    assert_eq!(invoice.fields.get("due_date"), Some(&json!("2026-02-14")));
    assert!(invoice.fields["reference"]
        .as_str()
        .is_some_and(|r| r.starts_with("FT 2026/")));
    assert_eq!(
        invoice.event.as_ref().map(|e| e.kind.as_str()),
        Some("invoice.modified")
    );

    // A draft is a document but not yet an issued invoice.
    let (_, invoices_cursor) = drain(connector.as_ref(), "invoices", None);
    let (_, documents_cursor) = drain(connector.as_ref(), "documents", None);
    let draft = rig
        .emu
        .emulator
        .add_invoice_with_status(
            customer,
            "2026-01-16",
            "2026-02-15",
            vec![json!({"name": "Orçamento", "qty": 1, "price": 10})],
            0,
        )
        .expect("draft");
    let (invoices, _) = drain(connector.as_ref(), "invoices", invoices_cursor);
    assert!(invoices.iter().all(|r| r.id != draft.to_string()), "{invoices:?}");
    let (documents, _) = drain(connector.as_ref(), "documents", documents_cursor);
    assert!(documents.iter().any(|r| r.id == draft.to_string()), "{documents:?}");
    assert!(documents
        .iter()
        .all(|r| r.event.as_ref().is_some_and(|e| e.kind == "document.modified")));
}

#[test]
fn backfill_windows_list_every_customer_and_the_invoices_inside_them() {
    let rig = rig(MoloniConfig::seeded(35, 75));
    let connector = rig.open("moloni_pt", json!({}));
    let window = |stream: &str, since: &str, until: &str| {
        let mut page = None;
        let mut records = Vec::new();
        loop {
            let p = connector
                .read(ReadRequest {
                    stream: stream.into(),
                    position: ReadPosition::Window {
                        since: since.into(),
                        until: until.into(),
                        page: page.clone(),
                    },
                    limit: Some(100),
                    parent_id: None,
                })
                .expect("window read");
            records.extend(p.records);
            if !p.has_more {
                return records;
            }
            page = p.next;
        }
    };
    let customers = window("customers", "2020-01-01T00:00:00Z", "2020-02-01T00:00:00Z");
    assert_eq!(
        ids(&customers).len(),
        75,
        "customers have no dates: every window lists them all"
    );
    assert!(customers
        .iter()
        .all(|c| c.event.as_ref().is_some_and(|e| e.kind == "customer.listed")));
    let all_invoices = window("invoices", "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z");
    assert_eq!(all_invoices.len(), 37);
    // Split at the median modification time: the halves partition the whole.
    let mut times: Vec<String> = all_invoices.iter().filter_map(|r| r.updated_at.clone()).collect();
    times.sort();
    let middle = times[times.len() / 2].clone();
    let older = window("invoices", "2000-01-01T00:00:00Z", &middle);
    let newer = window("invoices", &middle, "2100-01-01T00:00:00Z");
    assert_eq!(older.len() + newer.len(), all_invoices.len());
    assert!(older.iter().all(|r| r.updated_at.as_deref() < Some(middle.as_str())));
    assert!(rig
        .emu
        .emulator
        .requests()
        .iter()
        .all(|r| r["params"]["qty"].as_u64() <= Some(50)));
}

#[test]
fn customers_are_inserted_with_moloni_defaults_and_updated_whole() {
    let rig = rig(MoloniConfig::seeded(36, 2));
    let connector = rig.open("moloni_pt", json!({}));
    let insert = |input: Value| {
        connector.write(WriteRequest {
            action: "customer.insert".into(),
            priority: Default::default(),
            target_id: None,
            parent_id: None,
            input: match input {
                Value::Object(m) => m,
                _ => Fields::new(),
            },
        })
    };
    let written =
        insert(json!({"name": "Inês Simões", "email": "ines@example.pt", "phone": "+351912345678"})).expect("insert");
    let id: u64 = written
        .target_id
        .as_deref()
        .and_then(|t| t.parse().ok())
        .expect("customer id");
    let stored = rig.emu.emulator.customer(id).expect("stored");
    assert_eq!(stored["vat"], "999999990", "no tax number: the final-consumer NIF");
    assert_eq!(stored["country_id"], 1);
    assert!(stored["number"].as_str().is_some_and(|n| !n.is_empty()));

    let updated = connector
        .write(WriteRequest {
            action: "customer.update".into(),
            priority: Default::default(),
            target_id: Some(id.to_string()),
            parent_id: None,
            input: match json!({"phone": "22 123 4567", "city": "Porto"}) {
                Value::Object(m) => m,
                _ => Fields::new(),
            },
        })
        .expect("update");
    assert_eq!(updated.target_id, Some(id.to_string()));
    let stored = rig.emu.emulator.customer(id).expect("stored");
    assert_eq!(
        (stored["phone"].clone(), stored["city"].clone()),
        (json!("22 123 4567"), json!("Porto"))
    );
    assert_eq!(stored["email"], "ines@example.pt", "fields not in the update are kept");

    // Validation errors are typed: a bad NIF is invalid, a taken number a conflict.
    let bad = insert(json!({"name": "Rui", "vat": "123456788"})).expect_err("bad NIF");
    assert_eq!(bad.kind, ErrorKind::Invalid);
    assert!(bad.message.contains("vat"), "{bad}");
    let taken = insert(json!({"name": "Outro", "number": stored["number"].clone()})).expect_err("taken number");
    assert_eq!(taken.kind, ErrorKind::Conflict, "{taken}");
    let missing = connector
        .write(WriteRequest {
            action: "customer.update".into(),
            priority: Default::default(),
            target_id: Some("1".into()),
            parent_id: None,
            input: Fields::new(),
        })
        .expect_err("no such customer");
    assert_eq!(missing.kind, ErrorKind::NotFound);
}

#[test]
fn a_refused_password_and_the_login_lockout_are_not_hammered() {
    let rig = rig(MoloniConfig::seeded(37, 2));
    let wrong = rig.open("wrong", json!({"password": "guess"}));
    let error = feed(wrong.as_ref(), "customers", None).expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Auth, "{error}");
    let again = feed(wrong.as_ref(), "customers", None).expect_err("still refused");
    assert_eq!(again.kind, ErrorKind::Auth);
    assert_eq!(rig.logins().len(), 1, "the same refused password is not sent twice");

    // Two more failures elsewhere lock the account; the right password then meets the lockout.
    for instance in ["wrong-2", "wrong-3"] {
        let c = rig.open(instance, json!({"password": format!("guess-{instance}")}));
        assert_eq!(
            feed(c.as_ref(), "customers", None).map(|_| ()).map_err(|e| e.kind),
            Err(ErrorKind::Auth)
        );
    }
    let right = rig.open("right", json!({}));
    let locked = feed(right.as_ref(), "customers", None).expect_err("locked");
    let ErrorKind::RateLimited { retry_after_ms } = locked.kind else {
        panic!("expected rate_limited, got {locked}");
    };
    assert!(
        retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 300_000),
        "{retry_after_ms:?}"
    );
    let logins = rig.logins().len();
    let still = feed(right.as_ref(), "customers", None).expect_err("still locked");
    assert!(matches!(still.kind, ErrorKind::RateLimited { .. }));
    assert_eq!(rig.logins().len(), logins, "no login is attempted during the cooldown");
}

#[test]
fn check_names_the_company() {
    let rig = rig(MoloniConfig::seeded(38, 4));
    let report = rig.open("moloni_pt", json!({})).check().expect("check");
    assert!(report
        .account
        .is_some_and(|a| a.contains(&rig.emu.credentials.company_id.to_string())));
    assert_eq!(report.notes, vec!["4 customers".to_owned()]);
}

#[test]
fn the_example_config_names_the_sandbox_credentials() {
    let example = std::fs::read_to_string(workspace_root().join("config/tether.toml")).expect("config");
    let sandbox = moloni::MoloniEmulator::new(MoloniConfig::seeded(7701, 0)).expect("emulator");
    let c = sandbox.credentials();
    for expected in [
        format!("client_id = \"{}\"", c.client_id),
        format!("client_secret = \"{}\"", c.client_secret),
        format!("password = \"{}\"", c.password),
        format!("company_id = {}", c.company_id),
        format!("default_payment_method_id = {}", c.payment_method_id),
    ] {
        assert!(example.contains(&expected), "config/tether.toml lacks `{expected}`");
    }
}

// ---- flows 1 and 2 end to end: `tether sync` / `tether backfill` into the GHL emulator ----

struct Flow {
    runtime: tokio::runtime::Runtime,
    moloni: RunningMoloni,
    ghl: RunningGhl,
    dir: tempfile::TempDir,
    _plugins: tempfile::TempDir,
}

fn flow(seed: u64, customers: usize) -> Flow {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut ghl_config = GhlConfig::seeded(seed, 0);
    ghl_config.rate_limit = RateLimitConfig::disabled();
    ghl_config.custom_fields = vec![
        CustomFieldSpec {
            name: "NIF".into(),
            data_type: "TEXT".into(),
            options: vec![],
        },
        CustomFieldSpec {
            name: "Moloni Import Date".into(),
            data_type: "TEXT".into(),
            options: vec![],
        },
    ];
    let addr = "127.0.0.1:0".parse().expect("addr");
    let ghl = runtime.block_on(tether_sandbox::start(addr, ghl_config)).expect("ghl");
    let mut moloni_config = MoloniConfig::seeded(seed, customers);
    moloni_config.rate_limit = RateLimitConfig::disabled();
    let moloni = runtime.block_on(moloni::start(addr, moloni_config)).expect("moloni");
    let plugins = plugin_dir(&["tether-moloni"]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("tether.toml"),
        format!(
            "plugins_dir = \"{}\"\nflows_dir = \"flows\"\n[state]\nurl = \"sqlite://state.sqlite\"\n\n{}\n{}overlap_seconds = 0\n",
            plugins.path().display(),
            ghl.connector_toml("ghl"),
            moloni.connector_toml("moloni_pt"),
        ),
    )
    .expect("config");
    std::fs::create_dir(dir.path().join("flows")).expect("flows");
    std::fs::copy(
        workspace_root().join("config/flows/moloni-customers.toml"),
        dir.path().join("flows/moloni-customers.toml"),
    )
    .expect("flow");
    Flow {
        runtime,
        moloni,
        ghl,
        dir,
        _plugins: plugins,
    }
}

impl Flow {
    fn tether(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let config = self.dir.path().join("tether.toml");
        let output = Command::new(tether_bin())
            .args(["--config", &config.display().to_string()])
            .args(args)
            .arg("--json")
            .output()
            .expect("run tether");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let report =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no JSON report; stderr: {stderr}"));
        (output.status.code(), report, stderr)
    }

    fn contacts(&self) -> Vec<Value> {
        let location = &self.ghl.credentials.location_id;
        self.ghl.emulator.state()["contacts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| &c["locationId"] == location)
            .cloned()
            .collect()
    }

    fn contact_with_email(&self, email: &str) -> Option<Value> {
        self.contacts().into_iter().find(|c| c["email"] == email)
    }
}

fn custom_value(ghl: &RunningGhl, contact: &Value, name: &str) -> Option<Value> {
    let state = ghl.emulator.state();
    let field = state["customFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == name && f["locationId"] == contact["locationId"])?;
    contact["customFields"]
        .as_array()?
        .iter()
        .find(|v| v["id"] == field["id"])
        .map(|v| v["value"].clone())
}

#[test]
fn sync_upserts_moloni_customers_into_ghl_once_and_follows_changes() {
    let f = flow(41, 30);
    let customers = f.moloni.emulator.customers();
    let (code, report, stderr) = f.tether(&["sync", "moloni-customers"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["read"], 30, "{report}");
    assert_eq!(
        report["written"].as_u64().unwrap_or(0) + report["dead"].as_u64().unwrap_or(0),
        30,
        "{report}"
    );
    let with_email: Vec<&Value> = customers.iter().filter(|c| c["email"] != "").collect();
    assert!(
        !with_email.is_empty() && with_email.len() < 30,
        "the seed has customers without e-mail"
    );
    for c in &with_email {
        let email = c["email"].as_str().unwrap_or_default();
        let contact = f
            .contact_with_email(email)
            .unwrap_or_else(|| panic!("no contact for {email}"));
        assert_eq!(contact["source"], "moloni");
        assert!(contact["tags"].as_array().is_some_and(|t| t.contains(&json!("moloni"))));
        assert_eq!(custom_value(&f.ghl, &contact, "NIF"), Some(c["vat"].clone()));
        assert_eq!(
            custom_value(&f.ghl, &contact, "Moloni Import Date"),
            None,
            "a poll is not an import"
        );
    }
    // Customers without e-mail arrive by phone.
    let by_phone = f
        .contacts()
        .iter()
        .filter(|c| c["email"].is_null() && c["phone"].is_string())
        .count();
    assert!(by_phone > 0, "customers without e-mail arrive by phone");

    // A second pass reads nothing; an edit in Moloni reaches the contact.
    let (code, report, stderr) = f.tether(&["sync", "moloni-customers"]);
    assert_eq!(
        (code, report["written"].clone()),
        (Some(0), json!(0)),
        "{report} {stderr}"
    );
    let edited = with_email[0];
    let id = edited["customer_id"].as_u64().expect("id");
    f.moloni
        .emulator
        .edit_customer(id, json!({"city": "Viana do Castelo", "zip_code": "4900-001"}))
        .expect("edit");
    let (code, report, stderr) = f.tether(&["sync", "moloni-customers"]);
    assert_eq!(
        (code, report["written"].clone()),
        (Some(0), json!(1)),
        "{report} {stderr}"
    );
    let contact = f
        .contact_with_email(edited["email"].as_str().unwrap_or_default())
        .expect("contact");
    assert_eq!(contact["city"], "Viana do Castelo");
    let _ = &f.runtime;
}

#[test]
fn backfill_imports_every_customer_with_the_import_date_deduplicated_by_email() {
    let f = flow(42, 60);
    let customers = f.moloni.emulator.customers();
    // A contact that already exists in GHL with a customer's e-mail is updated, not duplicated.
    let known = customers
        .iter()
        .find(|c| c["email"] != "")
        .expect("a customer with e-mail");
    let email = known["email"].as_str().unwrap_or_default().to_owned();
    f.runtime.block_on(async {
        let status = reqwest::Client::new()
            .post(format!("{}/contacts/", f.ghl.base_url()))
            .bearer_auth(&f.ghl.credentials.pit)
            .header("Version", "2021-07-28")
            .json(&json!({"locationId": f.ghl.credentials.location_id, "email": email, "firstName": "Antigo"}))
            .send()
            .await
            .expect("create contact")
            .status();
        assert!(status.is_success(), "{status}");
    });
    let before = f.contacts().len();
    let (code, report, stderr) = f.tether(&[
        "backfill",
        "moloni-customers",
        "--since",
        "2025-01-01",
        "--until",
        "2025-04-01",
        "--window",
        "30d",
    ]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    let windows = report["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 3, "{report}");
    // Every window lists every customer; the queue keeps each once.
    assert_eq!(windows[0]["read"], 60, "{report}");
    let written = report["total"]["written"].as_u64().unwrap_or(0);
    let dead = report["total"]["dead"].as_u64().unwrap_or(0);
    assert_eq!(written + dead, 60, "{report}");
    let contacts = f.contacts();
    assert_eq!(
        contacts.len(),
        before + written as usize - 1,
        "the existing contact was updated, not duplicated"
    );
    let updated = f.contact_with_email(&email).expect("contact");
    assert_eq!(updated["source"], "moloni");
    // The import date is the day of the run (today, or yesterday if the run crossed midnight).
    let day = |ms: i64| tether_sandbox::timefmt::iso_ms(ms)[..10].to_owned();
    let now = tether_sandbox::timefmt::now_ms();
    let import_date = custom_value(&f.ghl, &updated, "Moloni Import Date");
    assert!(
        import_date
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|d| d == day(now) || d == day(now - 86_400_000)),
        "{import_date:?}"
    );
    assert_eq!(contacts.iter().filter(|c| c["email"] == email).count(), 1);
}

#[test]
fn an_authorization_code_is_exchanged_once_then_the_refresh_token_carries_on() {
    let rig = rig(MoloniConfig::seeded(39, 3));
    let redirect = "http://127.0.0.1:9/callback";
    let code = rig.emu.emulator.authorization_code(redirect);
    let config = json!({"username": null, "password": null, "authorization_code": code, "redirect_uri": redirect});
    let connector = rig.open("moloni_code", config.clone());
    assert_eq!(drain(connector.as_ref(), "customers", None).0.len(), 3);
    assert_eq!(rig.logins(), vec![("authorization_code".to_owned(), 200)]);
    // A restart with the same (now used) code in the config goes on with the stored tokens.
    rig.emu.emulator.expire_access_tokens();
    let restarted = rig.open("moloni_code", config);
    assert_eq!(drain(restarted.as_ref(), "customers", None).0.len(), 3);
    assert_eq!(rig.logins().last(), Some(&("refresh_token".to_owned(), 200)));
    assert_eq!(rig.logins().len(), 2, "the code is never sent twice");
}

#[test]
fn throttling_and_server_errors_come_back_typed_for_the_engine_to_schedule() {
    let rig = rig(MoloniConfig::seeded(40, 2));
    let connector = rig.open("moloni_pt", json!({}));
    drain(connector.as_ref(), "customers", None);
    let insert = || {
        connector.write(WriteRequest {
            action: "customer.insert".into(),
            priority: Default::default(),
            target_id: None,
            parent_id: None,
            input: match json!({"name": "Tomás Araújo", "number": "T-1"}) {
                Value::Object(m) => m,
                _ => Fields::new(),
            },
        })
    };
    // An insert is not repeatable, so neither the host nor the plugin retries it.
    rig.emu
        .set_faults(tether_sandbox::FaultConfig {
            rate_limit_next: 1,
            ..Default::default()
        })
        .expect("faults");
    let limited = insert().expect_err("429");
    assert!(matches!(limited.kind, ErrorKind::RateLimited { .. }), "{limited}");
    rig.emu
        .set_faults(tether_sandbox::FaultConfig {
            error_next: 1,
            error_status: 502,
            ..Default::default()
        })
        .expect("faults");
    assert_eq!(insert().expect_err("502").kind, ErrorKind::Transient);
    assert!(insert().is_ok(), "nothing was created by the refused attempts");
    assert_eq!(rig.emu.emulator.customers().len(), 3);
}

// ---- flow 3 end to end: invoices → a note and a follow-up task on the customer's contact ----

#[test]
fn invoices_become_a_note_and_a_task_on_the_linked_contact_after_their_customer() {
    let f = flow(43, 12);
    for name in ["moloni-invoice-note", "moloni-invoice-task"] {
        std::fs::copy(
            workspace_root().join(format!("config/flows/{name}.toml")),
            f.dir.path().join(format!("flows/{name}.toml")),
        )
        .expect("flow");
    }
    let customer = f
        .moloni
        .emulator
        .customers()
        .into_iter()
        .find(|c| c["email"] != "")
        .expect("a customer with e-mail");
    let customer_id = customer["customer_id"].as_u64().expect("id");
    let lines = vec![json!({"name": "Consultoria", "qty": 2, "price": 617.25})];
    f.moloni
        .emulator
        .add_invoice(customer_id, "2026-03-02", "2026-04-01", lines)
        .expect("invoice");

    // The invoice comes first: its note waits for the customer's contact and creates nothing.
    let (code, report, stderr) = f.tether(&["sync", "moloni-invoice-note"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["written"], 0, "{report}");
    assert!(report["retrying"].as_u64().unwrap_or(0) >= 1, "{report}");
    assert!(f.contacts().is_empty(), "a waiting note creates no contact");

    let (code, report, stderr) = f.tether(&["sync", "moloni-customers"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    let contact = f
        .contact_with_email(customer["email"].as_str().unwrap_or_default())
        .expect("the customer's contact");

    // The retry comes due within the backoff; then both flows write under the contact.
    let notes_of = |contact: &Value| -> Vec<Value> {
        f.ghl.emulator.state()["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["contactId"] == contact["id"])
            // The seed's own invoices (the last 90 days) have other due dates.
            .filter(|n| n["body"].as_str().is_some_and(|b| b.contains("due 2026-04-01")))
            .cloned()
            .collect()
    };
    let mut notes = Vec::new();
    for _ in 0..40 {
        let (code, report, stderr) = f.tether(&["sync", "moloni-invoice-note"]);
        assert_eq!(code, Some(0), "{report} {stderr}");
        notes = notes_of(&contact);
        if !notes.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(notes.len(), 1, "{notes:?}");
    let body = notes[0]["body"].as_str().unwrap_or_default();
    assert!(
        body.starts_with("Invoice FT ") && body.contains(" EUR, due 2026-04-01"),
        "{body}"
    );
    let (code, report, stderr) = f.tether(&["sync", "moloni-invoice-task"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    let tasks: Vec<Value> = f.ghl.emulator.state()["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["contactId"] == contact["id"])
        .filter(|t| {
            t["dueDate"]
                .as_str()
                .is_some_and(|d| d.starts_with("2026-04-01T09:00:00"))
        })
        .cloned()
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");

    // The seed's invoices that waited for their customers come due over the next passes; each
    // invoice gets one note at most, and ours still has exactly one.
    for _ in 0..20 {
        let (code, report, stderr) = f.tether(&["sync", "moloni-invoice-note"]);
        assert_eq!(code, Some(0), "{report} {stderr}");
        if report["written"] == 0 && report["retrying"] == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(notes_of(&contact).len(), 1);
    let invoices = f.moloni.emulator.state()["documents"]
        .as_array()
        .map_or(0, |d| d.iter().filter(|i| i["status"] == 1).count());
    let all_notes = f.ghl.emulator.state()["notes"].as_array().map_or(0, Vec::len);
    assert!(invoices > 1, "the seed's invoices and ours");
    assert!(
        all_notes <= invoices,
        "{all_notes} notes for {invoices} invoices: none twice"
    );
}

// ---- issue 5 end to end: the follow-up task follows its invoice: created, paid, cancelled ----

#[test]
fn an_invoice_task_is_created_once_then_completed_when_paid_and_marked_when_cancelled() {
    let f = flow(47, 6);
    std::fs::copy(
        workspace_root().join("config/flows/moloni-invoice-task.toml"),
        f.dir.path().join("flows/moloni-invoice-task.toml"),
    )
    .expect("flow");
    let customer = f
        .moloni
        .emulator
        .customers()
        .into_iter()
        .find(|c| c["email"] != "")
        .expect("a customer with e-mail");
    let customer_id = customer["customer_id"].as_u64().expect("id");
    let (code, report, stderr) = f.tether(&["sync", "moloni-customers"]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    let contact = f
        .contact_with_email(customer["email"].as_str().unwrap_or_default())
        .expect("the customer's contact");

    let line = |price: f64| vec![json!({"name": "Consultoria", "qty": 1, "price": price})];
    let paid = f
        .moloni
        .emulator
        .add_invoice(customer_id, "2026-05-04", "2026-06-03", line(100.0))
        .expect("invoice");
    let cancelled = f
        .moloni
        .emulator
        .add_invoice(customer_id, "2026-05-05", "2026-06-10", line(40.0))
        .expect("invoice");
    let all_tasks = || -> Vec<Value> { f.ghl.emulator.state()["tasks"].as_array().cloned().unwrap_or_default() };
    // The seed's invoices have other due dates; ours are told apart by theirs.
    let task_due = |day: &str| -> Vec<Value> {
        all_tasks()
            .into_iter()
            .filter(|t| t["contactId"] == contact["id"])
            .filter(|t| t["dueDate"].as_str().is_some_and(|d| d.starts_with(day)))
            .collect()
    };
    let sync = || {
        let (code, report, stderr) = f.tether(&["sync", "moloni-invoice-task"]);
        assert_eq!(code, Some(0), "{report} {stderr}");
        assert_eq!(report["dead"], 0, "{report}");
        report
    };

    // Issued: one open task each, on the due date.
    sync();
    let first = task_due("2026-06-03");
    let second = task_due("2026-06-10");
    assert_eq!((first.len(), second.len()), (1, 1), "{:?}", all_tasks());
    assert_eq!(first[0]["completed"], false, "{first:?}");
    assert_eq!(second[0]["completed"], false, "{second:?}");
    assert!(
        first[0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Follow up invoice FT ")),
        "{first:?}"
    );
    let tasks_before = all_tasks().len();

    // Paid in full (a receipt reconciled against it): the same task is completed, no new one.
    f.moloni.emulator.pay_invoice(paid).expect("pay");
    let report = sync();
    assert_eq!(report["written"], 1, "only the paid invoice's task changes: {report}");
    let after = task_due("2026-06-03");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], first[0]["id"], "updated, not created again");
    assert_eq!(after[0]["completed"], true, "{after:?}");
    assert_eq!(
        after[0]["title"], first[0]["title"],
        "a paid invoice's task keeps its title"
    );

    // Voided in Moloni: its task is completed and says it was cancelled.
    f.moloni.emulator.cancel_invoice(cancelled).expect("cancel");
    let state = f.moloni.emulator.state();
    let voided = state["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["document_id"] == cancelled)
        .expect("the voided invoice stays in Moloni");
    assert_eq!(voided["status"], moloni::STATUS_VOIDED, "{voided}");
    let report = sync();
    assert_eq!(
        report["written"], 1,
        "only the cancelled invoice's task changes: {report}"
    );
    let after = task_due("2026-06-10");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], second[0]["id"], "updated, not created again");
    assert_eq!(after[0]["completed"], true, "{after:?}");
    let title = after[0]["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("Cancelled: Follow up invoice FT "), "{title}");
    let body = after[0]["body"].as_str().unwrap_or_default();
    assert!(body.contains("cancelled in Moloni"), "{body}");
    assert_eq!(all_tasks().len(), tasks_before, "no task was created twice");

    // Nothing changed since: a further pass writes nothing.
    let report = sync();
    assert_eq!(report["written"], 0, "{report}");
    // The invoice paid earlier is still completed, untouched by the cancellation.
    assert_eq!(task_due("2026-06-03")[0]["completed"], true);
}
