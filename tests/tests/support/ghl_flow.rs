//! A GHL emulator with two seeded locations, and a configuration whose flow `copy-contacts`
//! upserts the contacts of location A into location B through the real GHL connector.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tether_e2e::tether_bin;
use tether_sandbox::{GhlConfig, RateLimitConfig, RunningGhl};

/// The GHL emulator with `contacts` seeded over its two locations, rate limits off.
pub fn emulator(runtime: &tokio::runtime::Runtime, seed: u64, contacts: usize) -> RunningGhl {
    let mut config = GhlConfig::seeded(seed, contacts);
    config.rate_limit = RateLimitConfig::disabled();
    runtime
        .block_on(tether_sandbox::start("127.0.0.1:0".parse().expect("addr"), config))
        .expect("emulator")
}

pub fn config(dir: &Path, ghl: &RunningGhl) -> std::path::PathBuf {
    let c = &ghl.credentials;
    let base = ghl.base_url();
    let config = dir.join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "plugins_dir = \"plugins\"\n[state]\nurl = \"sqlite://state.sqlite\"\n\n\
             [connectors.ghl_a]\nplugin = \"ghl\"\n[connectors.ghl_a.config]\nbase_url = \"{base}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n\n\
             [connectors.ghl_b]\nplugin = \"ghl\"\n[connectors.ghl_b.config]\nbase_url = \"{base}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n",
            c.location_id, c.pit, c.other_location_id, c.other_pit
        ),
    )
    .expect("config");
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins dir");
    std::fs::create_dir_all(dir.join("flows")).expect("flows dir");
    std::fs::write(
        dir.join("flows/copy-contacts.toml"),
        r#"description = "contacts of location A into location B"
[source]
connector = "ghl_a"
stream = "contacts"
trigger = "poll"
[target]
connector = "ghl_b"
action = "contact.upsert"
[match]
keys = ["email"]
[mapping.fields]
firstName = "firstName"
lastName = "lastName"
email = "email"
phone = "phone"
[[mapping.tags]]
tag = "copied"
[[mapping.tags]]
tag = "blocked"
when = "lastName == 'Unmappable' and (1 / 0)"
"#,
    )
    .expect("flow");
    config
}

pub fn sync(config: &Path) -> (Option<i32>, Value, String) {
    let output = Command::new(tether_bin())
        .args([
            "--config",
            &config.display().to_string(),
            "sync",
            "copy-contacts",
            "--json",
        ])
        .output()
        .expect("run tether sync");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no JSON report; stderr: {stderr}"));
    (output.status.code(), report, stderr)
}

pub fn contacts_of(ghl: &RunningGhl, location: &str) -> Vec<Value> {
    let state = ghl.emulator.state();
    state["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter(|c| c["locationId"] == location)
        .cloned()
        .collect()
}

/// A call to the GHL emulator's API as a user's own app would make it (private integration
/// token, API version header); its JSON answer. Panics on a non-2xx status.
pub fn api_call(
    runtime: &tokio::runtime::Runtime,
    ghl: &RunningGhl,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", ghl.base_url()))
            .bearer_auth(&ghl.credentials.pit)
            .header("Version", "2021-07-28")
            .json(&body)
            .send()
            .await
            .expect("GHL call");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("GHL's JSON")
    })
}
