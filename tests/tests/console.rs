//! The operator console of `tether run`, with the example moloni-customers flow against the
//! Moloni and GHL emulators: in real headless Chromium (Debian's, driven over WebDriver) the
//! synced contacts appear, a record shows its links and its write history, and a dead letter is
//! replayed with its button; over plain HTTP, the token and CSRF rules.
//!
//! Screenshots of each page are saved under `target/test-artifacts/console/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::host_process::{eventually, RunningHost};
use support::webdriver::{self, Browser};
use tether_e2e::{plugin_dir, target_dir, tether_bin, workspace_root};
use tether_sandbox::ghl::CustomFieldSpec;
use tether_sandbox::moloni::{self, MoloniConfig, RunningMoloni};
use tether_sandbox::{FaultConfig, GhlConfig, RateLimitConfig, RunningGhl};

mod support;

const TOKEN: &str = "console-test-token-0123456789";

struct Rig {
    _runtime: tokio::runtime::Runtime,
    ghl: RunningGhl,
    moloni: RunningMoloni,
    dir: tempfile::TempDir,
    _plugins: tempfile::TempDir,
}

/// The emulators, the Moloni plugin, and a config running the example flow every second;
/// `extra` is appended to tether.toml.
fn rig(seed: u64, customers: usize, extra: &str) -> Rig {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut ghl_config = GhlConfig::seeded(seed, 0);
    ghl_config.rate_limit = RateLimitConfig::disabled();
    ghl_config.custom_fields = ["NIF", "Moloni Import Date"]
        .into_iter()
        .map(|name| CustomFieldSpec {
            name: name.into(),
            data_type: "TEXT".into(),
            options: vec![],
        })
        .collect();
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
            "plugins_dir = \"{}\"\nflows_dir = \"flows\"\n[state]\nurl = \"sqlite://state.sqlite\"\n\n\
             [delivery]\nmax_attempts = 2\nbackoff_base_ms = 50\nmax_backoff_ms = 200\n\n{}\n{}overlap_seconds = 0\n\n{extra}\n",
            plugins.path().display(),
            ghl.connector_toml("ghl"),
            moloni.connector_toml("moloni_pt"),
        ),
    )
    .expect("config");
    std::fs::create_dir(dir.path().join("flows")).expect("flows");
    let example =
        std::fs::read_to_string(workspace_root().join("config/flows/moloni-customers.toml")).expect("example flow");
    assert!(
        example.contains("every = \"5m\""),
        "the example flow's poll interval moved"
    );
    std::fs::write(
        dir.path().join("flows/moloni-customers.toml"),
        example.replace("every = \"5m\"", "every = \"1s\""),
    )
    .expect("flow");
    Rig {
        _runtime: runtime,
        ghl,
        moloni,
        dir,
        _plugins: plugins,
    }
}

impl Rig {
    fn config(&self) -> PathBuf {
        self.dir.path().join("tether.toml")
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

    fn fail_every_ghl_call(&self, on: bool) {
        let faults = if on {
            FaultConfig {
                error_rate: 1.0,
                error_status: 500,
                ..FaultConfig::default()
            }
        } else {
            FaultConfig::default()
        };
        self.ghl.set_faults(faults).expect("faults");
    }

    fn add_customer(&self, name: &str, email: &str) -> u64 {
        self.moloni
            .emulator
            .add_customer(json!({
                "name": name, "vat": "123456789", "number": "C-9001", "language_id": 1,
                "address": "Rua Augusta 1", "city": "Lisboa", "zip_code": "1100-048", "country_id": 1,
                "maturity_date_id": 0, "payment_method_id": self.moloni.credentials.payment_method_id,
                "email": email, "phone": "912 345 670"
            }))
            .unwrap_or_else(|e| panic!("customer refused: {e:?}"))
    }
}

fn artifact(name: &str) -> PathBuf {
    target_dir().join("test-artifacts/console").join(name)
}

/// Chromium and chromedriver, or a printed skip (a failure when `TETHER_REQUIRE_BROWSER` is set,
/// as `.ci/run` does after installing them).
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = webdriver::installed();
    if found.is_none() {
        assert!(
            std::env::var_os("TETHER_REQUIRE_BROWSER").is_none(),
            "TETHER_REQUIRE_BROWSER is set but chromium or chromedriver is missing"
        );
        let notice = "notice: chromium or chromedriver is not installed; the browser test of the console was skipped \
                      (apt-get install chromium chromium-driver)\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    }
    found
}

#[test]
fn in_chromium_the_dashboard_shows_synced_contacts_a_record_history_and_replays_a_dead_letter() {
    let Some((chromedriver, chromium)) = browser_or_skip() else {
        return;
    };
    let rig = rig(61, 3, "");
    let host = RunningHost::start(&rig.config(), &["--idle-ms", "200"]);
    assert!(
        eventually(Duration::from_secs(60), || rig.contacts().len() == 3),
        "the three customers did not reach GHL"
    );
    let browser = Browser::start(&chromedriver, &chromium);

    // Overview: the flow's writes of today, counted from the store.
    browser.open(&format!("{}/", host.base));
    let written_today = |browser: &Browser| browser.texts(r#"tr[data-flow="moloni-customers"] td.written-today"#);
    assert!(
        eventually(Duration::from_secs(20), || {
            browser.refresh();
            written_today(&browser) == ["3"]
        }),
        "the overview did not count 3 writes: {:?}\n{}",
        written_today(&browser),
        browser.source()
    );
    assert!(browser.texts("#connectors td").iter().any(|t| t == "moloni_pt"));
    assert!(browser.screenshot(&artifact("overview.png")) > 1_000);

    // A change in Moloni is synced again: the record's history shows what changed.
    let customer = rig.moloni.emulator.customers()[0]["customer_id"]
        .as_u64()
        .expect("customer id");
    rig.moloni
        .emulator
        .edit_customer(customer, json!({"city": "Viana do Castelo"}))
        .expect("edit");
    assert!(
        eventually(Duration::from_secs(30), || rig
            .contacts()
            .iter()
            .any(|c| c["city"] == "Viana do Castelo")),
        "the edit did not reach GHL"
    );

    // Activity: the writes, each linking to its record.
    browser.open(&format!("{}/activity?flow=moloni-customers&outcome=written", host.base));
    assert!(
        eventually(Duration::from_secs(10), || {
            browser.refresh();
            browser.all("tr.event").len() == 4
        }),
        "activity shows {} writes, not 4",
        browser.all("tr.event").len()
    );
    assert!(browser.screenshot(&artifact("activity.png")) > 1_000);
    let link = browser
        .all("a.record")
        .into_iter()
        .find(|a| browser.text(a).ends_with(&format!(" {customer}")))
        .unwrap_or_else(|| panic!("no activity row links customer {customer}"));
    browser.click(&link);
    assert!(browser.url().contains("/record?"), "{}", browser.url());
    let linked = browser.texts("#linked td");
    assert!(linked.iter().any(|t| t == "ghl/contact"), "{linked:?}");
    assert!(linked.iter().any(|t| t == &customer.to_string()), "{linked:?}");
    let history = browser.texts("#history tr[data-kind=written]");
    assert_eq!(history.len(), 2, "{history:?}");
    // Newest first: the edit, then the first write.
    assert!(
        history[0].contains("city") && history[0].contains("Viana do Castelo"),
        "{history:?}"
    );
    assert!(browser.screenshot(&artifact("record.png")) > 1_000);

    // A customer added while GHL fails every call becomes a dead letter.
    rig.fail_every_ghl_call(true);
    rig.add_customer("Beatriz Fonseca", "beatriz.fonseca@example.pt");
    browser.open(&format!("{}/dead-letters", host.base));
    assert!(
        eventually(Duration::from_secs(60), || {
            browser.refresh();
            browser.all("#dead-letters tr[data-id]").len() == 1
        }),
        "no dead letter appeared"
    );
    let reason = browser.texts("#dead-letters td.bad").join(" ");
    assert!(reason.contains("500"), "{reason}");
    assert!(browser.screenshot(&artifact("dead-letters.png")) > 1_000);

    // Once GHL answers again, the Replay button delivers it.
    rig.fail_every_ghl_call(false);
    let replay = browser.all("button.replay");
    assert_eq!(replay.len(), 1);
    browser.click(&replay[0]);
    // The form's POST answers with a redirect; the click may return before that page has loaded.
    assert!(
        eventually(Duration::from_secs(10), || browser
            .texts("#done")
            .iter()
            .any(|t| t.starts_with("Replayed"))),
        "the replay was not confirmed: {:?}",
        browser.texts("#done")
    );
    assert!(
        eventually(Duration::from_secs(30), || rig
            .contacts()
            .iter()
            .any(|c| c["email"] == "beatriz.fonseca@example.pt")),
        "the replayed customer did not reach GHL"
    );
    browser.refresh();
    assert!(browser.all("#dead-letters tr[data-id]").is_empty());
    assert_eq!(rig.contacts().len(), 4, "no duplicate from the replay");

    browser.open(&format!("{}/webhook-log", host.base));
    assert!(!browser.all("#webhooks").is_empty());
    assert!(browser.screenshot(&artifact("webhook-log.png")) > 1_000);
    drop(browser);
    assert_eq!(host.stop(), Some(0));
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value of the first `name="csrf"` input of a page.
fn csrf_of(page: &str) -> String {
    page.split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF field in the page"))
        .to_owned()
}

fn dead_ids(page: &str) -> Vec<String> {
    page.split(r#"<tr data-id=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn beyond_loopback_the_console_needs_the_token_and_its_buttons_the_csrf_token() {
    let rig = rig(62, 2, &format!("[dashboard]\ntoken = \"{TOKEN}\"\n"));
    // A switched-off copy of the flow: never run, still listed on the overview.
    let flows = rig.dir.path().join("flows");
    let example = std::fs::read_to_string(flows.join("moloni-customers.toml")).expect("flow");
    std::fs::write(
        flows.join("moloni-customers-off.toml"),
        format!("enabled = false\n{example}"),
    )
    .expect("disabled flow");
    // Every write fails: both customers end as dead letters.
    rig.fail_every_ghl_call(true);
    let host = RunningHost::start_on(&rig.config(), "0.0.0.0:0", &["--idle-ms", "200"]);
    let http = http();
    let get = |path: &str, auth: Option<&str>| {
        let mut request = http.get(format!("{}{path}", host.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send().expect("GET")
    };
    let bearer = format!("Bearer {TOKEN}");

    // Without the token: 401, a bearer challenge, and the sign-in form for browsers.
    for path in ["/", "/activity", "/record?id=1", "/webhook-log", "/dead-letters"] {
        let response = get(path, None);
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(get(path, Some("Bearer not-the-token")).status(), 401, "{path}");
        assert_eq!(get(path, Some(&bearer)).status(), 200, "{path}");
    }
    let page = http
        .get(format!("{}/", host.base))
        .header("accept", "text/html")
        .send()
        .expect("GET");
    assert_eq!(page.status(), 401);
    assert!(page.text().expect("body").contains("Sign in"));
    let overview = get("/", Some(&bearer)).text().expect("overview");
    let state_of = |flow: &str| {
        let row = overview
            .split("<tr data-flow=")
            .find(|row| row.starts_with(&format!("\"{flow}\"")))
            .unwrap_or_else(|| panic!("no row for {flow} in {overview}"));
        row.contains(">disabled</td>")
    };
    assert!(state_of("moloni-customers-off"), "{overview}");
    assert!(!state_of("moloni-customers"), "{overview}");
    // Health stays open for load balancers.
    assert_eq!(get("/healthz", None).status(), 200);

    assert!(
        eventually(Duration::from_secs(60), || dead_ids(
            &get("/dead-letters", Some(&bearer)).text().unwrap_or_default()
        )
        .len()
            == 2),
        "the two failing writes did not become dead letters"
    );
    rig.fail_every_ghl_call(false);
    let page = get("/dead-letters", Some(&bearer)).text().expect("page");
    let csrf = csrf_of(&page);
    let id = dead_ids(&page)[0].clone();
    let post = |path: &str, form: &[(&str, &str)], auth: Option<&str>| {
        let mut request = http.post(format!("{}{path}", host.base)).form(form);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send().expect("POST")
    };

    // A replay without the token, or with the token but without the right CSRF token, is refused
    // and changes nothing.
    let replay = format!("/dead-letters/{id}/replay");
    assert_eq!(post(&replay, &[("csrf", &csrf)], None).status(), 401);
    assert_eq!(post(&replay, &[], Some(&bearer)).status(), 403);
    assert_eq!(post(&replay, &[("csrf", "forged")], Some(&bearer)).status(), 403);
    assert_eq!(
        post(&format!("/dead-letters/{id}/drop"), &[], Some(&bearer)).status(),
        403
    );
    assert_eq!(
        dead_ids(&get("/dead-letters", Some(&bearer)).text().expect("page")).len(),
        2
    );
    assert!(rig.contacts().is_empty());

    // With both it goes through: one contact reaches GHL, the other letter stays.
    let response = post(&replay, &[("csrf", &csrf)], Some(&bearer));
    assert_eq!(response.status(), 303);
    assert!(
        eventually(Duration::from_secs(30), || rig.contacts().len() == 1),
        "the replayed letter was not delivered"
    );
    assert_eq!(
        dead_ids(&get("/dead-letters", Some(&bearer)).text().expect("page")).len(),
        1
    );

    // Signing in sets the token as an HttpOnly, SameSite=Strict cookie that admits the browser.
    assert_eq!(post("/login", &[("token", "wrong")], None).status(), 401);
    let signed_in = post("/login", &[("token", TOKEN)], None);
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair");
    let response = http
        .get(format!("{}/", host.base))
        .header("cookie", pair)
        .send()
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(host.stop(), Some(0));
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused_at_start() {
    let rig = rig(63, 0, "");
    let output = Command::new(tether_bin())
        .args(["--config", &rig.config().display().to_string()])
        .args(["run", "--listen", "0.0.0.0:0"])
        .output()
        .expect("run tether");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[dashboard] token"), "{stderr}");
}
