//! `tether plugins` and `tether catalog`, run as a user runs them.

use std::process::{Command, Output};

use serde_json::Value;
use tether_abi::ABI_VERSION;
use tether_e2e::{library_file, plugin_dir, tether_bin};

fn tether(args: &[&str]) -> Output {
    Command::new(tether_bin())
        .args(args)
        .env_remove("TETHER_CONFIG")
        .env_remove("TETHER_PLUGINS_DIR")
        .output()
        .expect("run tether")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

#[test]
fn plugins_lists_loaded_and_refused_files() {
    let dir = plugin_dir(&[
        "tether-moloni",
        "tether-aroflo",
        "tether-mloflo",
        "tether-fixture-wrong-abi",
    ]);
    let marker = dir.path().join("marker");
    let output = Command::new(tether_bin())
        .args(["plugins", "--json", "--plugins-dir"])
        .arg(dir.path())
        .env("TETHER_FIXTURE_MARKER", &marker)
        .output()
        .expect("run tether");
    let report = json(&output);
    let names: Vec<&str> = report["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["aroflo", "mloflo", "moloni"]);
    assert_eq!(report["plugins"][2]["abi_version"], ABI_VERSION);
    assert!(report["plugins"][2]["streams"]
        .as_array()
        .expect("streams")
        .contains(&"customers".into()));
    let refused = &report["refused"][0];
    assert!(refused["file"]
        .as_str()
        .expect("file")
        .ends_with(&library_file("tether-fixture-wrong-abi")));
    let reason = refused["reason"].as_str().expect("reason");
    assert!(
        reason.contains(&format!("ABI version {}", ABI_VERSION + 1))
            && reason.contains(&format!("ABI version {ABI_VERSION}")),
        "{reason}"
    );
    assert!(!marker.exists(), "the refused plugin's code ran");

    let text = tether(&["plugins", "--plugins-dir", &dir.path().display().to_string()]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(stdout.contains("moloni") && stdout.contains("refused"), "{stdout}");
}

#[test]
fn catalog_has_one_row_per_trigger_and_action() {
    let dir = plugin_dir(&["tether-moloni", "tether-mloflo"]);
    let report = json(&tether(&[
        "catalog",
        "--json",
        "--plugins-dir",
        &dir.path().display().to_string(),
    ]));
    let rows = report["entries"].as_array().expect("entries");
    let has = |connector: &str, kind: &str, name: &str| {
        rows.iter()
            .any(|r| r["connector"] == connector && r["kind"] == kind && r["name"] == name)
    };
    assert!(has("moloni", "trigger", "customers"));
    assert!(has("moloni", "action", "customer.insert"));
    assert!(has("mloflo", "trigger", "milestones"));
    assert!(has("mloflo", "action", "task.update"));
    assert!(!has("moloni", "trigger", "milestones"));
    let moloni_rows = rows.iter().filter(|r| r["connector"] == "moloni").count();
    assert_eq!(moloni_rows, 3 + 2, "3 streams and 2 actions");
}

#[test]
fn a_missing_plugins_dir_is_a_usage_error() {
    let output = tether(&["plugins", "--plugins-dir", "/nonexistent/tether-plugins"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: plugins directory /nonexistent/tether-plugins cannot be read"),
        "{stderr}"
    );
}

#[test]
fn a_config_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        "plugins_dir = \"p\"\n\n[connectors.pt]\nplugin = \"moloni\"\nplguin_version = 2\n",
    )
    .expect("write");
    let output = tether(&["plugins", "--config", &config.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:5:1: unknown field `plguin_version`", config.display())),
        "{stderr}"
    );
}

#[test]
fn sandbox_serves_the_ghl_emulator_with_the_printed_credentials() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(tether_bin())
        .args(["sandbox", "--seed", "5", "--ghl", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start sandbox");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut field = |prefix: &str| -> String {
        lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.trim_start()
                    .strip_prefix(prefix)
                    .map(|rest| rest.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no `{prefix}` line"))
    };
    let base_url = field("GoHighLevel");
    let location = field("location_id");
    let token = field("private_token");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!("{base_url}/contacts/?locationId={location}&limit=100");
    let (status, body) = runtime.block_on(get_with_token(&url, &token));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}");
    // Seeded contacts are spread over two locations; ours holds most of them.
    let contacts = body["contacts"].as_array().expect("contacts").len();
    assert!((1..=5).contains(&contacts), "{body}");
}

async fn get_with_token(url: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .header("Version", "2021-07-28")
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// `tether --help` lists every command of the contract (shared/design/CLI.md), each with its own
/// one-line summary: a doc comment on the wrong variant would describe one command as another.
#[test]
fn help_summarises_each_command_as_itself() {
    let output = tether(&["--help"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let help = String::from_utf8_lossy(&output.stdout);
    let summary = |command: &str| -> String {
        help.lines()
            .map(str::trim_start)
            .find_map(|line| line.strip_prefix(command).filter(|rest| rest.starts_with(' ')))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("`{command}` is not in `tether --help`:\n{help}"))
    };
    for (command, says) in [
        ("plugins", "plugin library"),
        ("catalog", "trigger and action"),
        ("check", "file:line:col"),
        ("test", "fixture tests"),
        ("run", "long-running host"),
        ("sync", "One pass of a flow"),
        ("backfill", "date windows"),
        ("dry-run", ""),
        ("status", ""),
        ("dlq", ""),
        ("auth", ""),
        ("sandbox", ""),
    ] {
        let line = summary(command);
        assert!(!line.is_empty(), "`{command}` has no summary in `tether --help`");
        assert!(
            line.contains(says),
            "`{command}`'s summary is `{line}`, which does not say `{says}`"
        );
    }
}
