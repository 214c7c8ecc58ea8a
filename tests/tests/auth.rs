//! `tether auth ghl` against the GHL emulator: the consent URL is followed as a browser would,
//! the redirect reaches the binary's loopback listener, and the tokens land in the vault.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tether_core::store::Store;
use tether_core::vault::{SecretKey, Vault};
use tether_e2e::tether_bin;
use tether_sandbox::GhlConfig;

#[test]
fn consent_redirect_and_exchange_store_the_tokens_encrypted() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = runtime
        .block_on(tether_sandbox::start(
            "127.0.0.1:0".parse().expect("addr"),
            GhlConfig::seeded(3, 0),
        ))
        .expect("emulator");
    let credentials = ghl.credentials.clone();
    let redirect_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\nurl = \"sqlite://state.sqlite\"\n\n[connectors.ghl]\nplugin = \"ghl\"\n[connectors.ghl.config]\n\
             base_url = \"{base}\"\nauthorize_url = \"{base}/oauth/chooselocation\"\nlocation_id = \"{location}\"\n\
             client_id = \"{client_id}\"\nclient_secret = \"${{GHL_CLIENT_SECRET}}\"\n\
             redirect_uri = \"http://127.0.0.1:{redirect_port}/oauth/callback\"\n",
            base = ghl.base_url(),
            location = credentials.location_id,
            client_id = credentials.client_id,
        ),
    )
    .expect("config");

    let mut child = Command::new(tether_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "auth",
            "ghl",
            "--timeout",
            "60",
        ])
        .env("GHL_CLIENT_SECRET", &credentials.client_secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tether auth ghl");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok);
    let consent = lines
        .by_ref()
        .find_map(|l| l.trim().starts_with("http").then(|| l.trim().to_owned()))
        .expect("consent URL printed");
    assert!(
        consent.contains(&format!("client_id={}", credentials.client_id)),
        "{consent}"
    );

    // The browser: the emulator grants at once and redirects to tether's listener.
    let page = runtime.block_on(async {
        reqwest::get(&consent)
            .await
            .expect("follow consent")
            .text()
            .await
            .expect("page")
    });
    assert!(page.contains("You can close this tab"), "{page}");
    let rest: Vec<String> = lines.collect();
    let status = child.wait().expect("exit");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with(&format!("connected `ghl` to location {}", credentials.location_id))),
        "{rest:?}"
    );

    // The tokens are in the vault, readable with the key file tether created, and not in the
    // database file in clear.
    let store = runtime
        .block_on(Store::open(&format!(
            "sqlite://{}",
            dir.path().join("state.sqlite").display()
        )))
        .expect("store");
    let key = SecretKey::load(None, &dir.path().join("tether.key")).expect("key file");
    let vault = Vault::new(key, store);
    let refresh = runtime
        .block_on(vault.get("ghl", tether_ghl::auth::REFRESH_TOKEN_SECRET))
        .expect("vault")
        .expect("refresh token stored");
    assert!(!refresh.is_empty());
    let database = std::fs::read(dir.path().join("state.sqlite")).expect("db");
    let wal = std::fs::read(dir.path().join("state.sqlite-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(
            !bytes.windows(refresh.len()).any(|w| w == refresh.as_bytes()),
            "refresh token stored in clear"
        );
    }
    assert!(
        !stderr.contains(&credentials.client_secret),
        "client secret in the output"
    );
}

#[test]
fn catalog_lists_the_built_in_ghl_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(tether_bin())
        .args(["catalog", "--json", "--plugins-dir", &dir.path().display().to_string()])
        .output()
        .expect("run tether");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let rows = report["entries"].as_array().expect("entries");
    let row = |kind: &str, name: &str| {
        rows.iter()
            .find(|r| r["connector"] == "ghl" && r["kind"] == kind && r["name"] == name)
    };
    for action in [
        "contact.create",
        "contact.update",
        "contact.upsert",
        "contact.delete",
        "contact.tags.add",
        "contact.tags.remove",
        "task.create",
        "task.update",
        "task.complete",
        "task.delete",
        "note.create",
        "note.update",
        "note.delete",
    ] {
        assert!(row("action", action).is_some(), "missing action {action}");
    }
    for stream in ["contacts", "tasks", "notes", "appointments", "business_contacts"] {
        assert!(row("trigger", stream).is_some(), "missing trigger {stream}");
    }
    let contacts = row("trigger", "contacts").expect("contacts");
    assert!(
        contacts["modes"].as_array().expect("modes").contains(&"webhook".into()),
        "{contacts}"
    );
}

#[test]
fn status_shows_the_token_state_of_each_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        "[state]\nurl = \"sqlite://state.sqlite\"\n\n\
         [connectors.ghl_pt]\nplugin = \"ghl\"\n[connectors.ghl_pt.config]\nlocation_id = \"L1\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\n\
         [connectors.ghl_au]\nplugin = \"ghl\"\n[connectors.ghl_au.config]\nlocation_id = \"L2\"\nprivate_token = \"pit-123\"\n\n\
         [connectors.ghl_us]\nplugin = \"ghl\"\n[connectors.ghl_us.config]\nlocation_id = \"L3\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    )
    .expect("config");
    let status = || {
        let output = Command::new(tether_bin())
            .args(["--config", &config.display().to_string(), "status", "--json"])
            .output()
            .expect("run tether");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        (output.status.code(), json)
    };
    let token = |json: &serde_json::Value, name: &str| {
        json["connectors"]
            .as_array()
            .expect("connectors")
            .iter()
            .find(|c| c["connector"] == name)
            .expect(name)["token"]
            .clone()
    };
    let (code, json) = status();
    assert_eq!(code, Some(0));
    assert_eq!(token(&json, "ghl_pt"), "not_connected");
    assert_eq!(token(&json, "ghl_au"), "config_credential");

    // What the connector leaves behind when GHL refuses the refresh token, and a good session.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = runtime
        .block_on(Store::open(&format!(
            "sqlite://{}",
            dir.path().join("state.sqlite").display()
        )))
        .expect("store");
    let vault = Vault::new(
        SecretKey::load(None, &dir.path().join("tether.key")).expect("key"),
        store,
    );
    runtime
        .block_on(vault.put(
            "ghl_pt",
            tether_ghl::auth::NEEDS_RECONNECT_SECRET,
            "GHL refused the refresh token (invalid_grant)",
            1,
        ))
        .expect("marker");
    runtime
        .block_on(vault.put("ghl_us", tether_ghl::auth::REFRESH_TOKEN_SECRET, "rt-1", 1))
        .expect("token");
    let (code, json) = status();
    assert_eq!(code, Some(1), "a connector needing the user fails the status check");
    assert_eq!(token(&json, "ghl_pt"), "needs_reconnect");
    assert_eq!(token(&json, "ghl_us"), "connected");
    let pt = json["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .find(|c| c["connector"] == "ghl_pt")
        .expect("pt")
        .clone();
    assert!(
        pt["hint"]
            .as_str()
            .expect("hint")
            .contains("tether auth ghl --connector ghl_pt"),
        "{pt}"
    );
}
