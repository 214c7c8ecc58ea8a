//! `tether check` and `tether test` as a user runs them: the example flows pass; every file of
//! the broken-flow corpus (tests/corpus/broken-flows) gives exit 2, a located error naming the
//! problem, and no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tether_e2e::{plugin_dir, tether_bin, workspace_root};

fn run(args: &[&str]) -> Output {
    Command::new(tether_bin()).args(args).output().expect("run tether")
}

/// A config with the example's connectors, the built moloni plugin, and `flows_dir`.
fn config_for(dir: &Path, plugins: &Path, flows: &Path) -> PathBuf {
    let config = dir.join("tether.toml");
    let example = std::fs::read_to_string(workspace_root().join("config/tether.toml")).expect("example config");
    let connectors = &example[example.find("[connectors.").expect("connectors")..];
    std::fs::write(
        &config,
        format!(
            "plugins_dir = \"{}\"\nflows_dir = \"{}\"\n[state]\nurl = \"sqlite://state.sqlite\"\n\n{connectors}",
            plugins.display(),
            flows.display()
        ),
    )
    .expect("config");
    config
}

#[test]
fn the_example_flows_check_and_their_fixtures_pass() {
    let plugins = plugin_dir(tether_e2e::PLUGINS);
    let dir = tempfile::tempdir().expect("tempdir");
    let flows_dir = workspace_root().join("config/flows");
    let config = config_for(dir.path(), plugins.path(), &flows_dir);
    // What check must have seen: every connector of the example, every flow file, every fixture.
    let example = std::fs::read_to_string(workspace_root().join("config/tether.toml")).expect("example");
    let connectors = example
        .lines()
        .filter(|l| l.starts_with("[connectors.") && !l.ends_with(".config]"))
        .count();
    let (mut flows, mut fixtures, mut disabled) = (0, 0, Vec::new());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&flows_dir)
        .expect("flows")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    for path in paths {
        if path.extension().is_some_and(|e| e == "toml") {
            flows += 1;
            let text = std::fs::read_to_string(&path).expect("flow");
            fixtures += text.lines().filter(|l| l.trim() == "[[test]]").count();
            if text.lines().any(|l| l.trim() == "enabled = false") {
                disabled.push(path.file_stem().expect("stem").to_string_lossy().into_owned());
            }
        }
    }
    // The optional AroFlo note → task flow ships switched off; check still checks it.
    assert_eq!(disabled, ["aroflo-notes-tasks"]);
    assert!(flows >= 10 && fixtures >= flows, "{flows} flows, {fixtures} fixtures");
    let check = run(&["--config", &config.display().to_string(), "check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.starts_with(&format!(
            "ok: {connectors} connectors, {flows} flows (1 disabled: aroflo-notes-tasks), {fixtures} fixture tests"
        )),
        "{stdout}"
    );
    let test = run(&["--config", &config.display().to_string(), "test"]);
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert_eq!(test.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.trim_end().ends_with(&format!("{fixtures} passed, 0 failed")),
        "{stdout}"
    );
}

#[test]
fn a_failing_fixture_shows_a_diff_and_exits_1() {
    let plugins = plugin_dir(tether_e2e::PLUGINS);
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).expect("flows dir");
    let example = std::fs::read_to_string(workspace_root().join("config/flows/moloni-customers.toml")).expect("flow");
    std::fs::write(
        flows.join("moloni-customers.toml"),
        example.replace("firstName = \"Ana Sofia\"", "firstName = \"Ana\""),
    )
    .expect("flow");
    let config = config_for(dir.path(), plugins.path(), &flows);
    let test = run(&["--config", &config.display().to_string(), "test", "moloni-customers"]);
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert_eq!(test.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  moloni-customers :: a Portuguese customer with a salesman"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - firstName = \"Ana\"\n  + firstName = \"Ana Sofia\""),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("3 passed, 1 failed"), "{stdout}");
}

#[test]
fn every_broken_flow_file_is_refused_with_its_place() {
    let corpus = workspace_root().join("tests/corpus/broken-flows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus holds {} files", files.len());
    let plugins = plugin_dir(tether_e2e::PLUGINS);
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("first line `# expect: ...`");
        let dir = tempfile::tempdir().expect("tempdir");
        let flows = dir.path().join("flows");
        std::fs::create_dir(&flows).expect("flows dir");
        let flow = flows.join(file.file_name().expect("name"));
        std::fs::write(&flow, &text).expect("copy");
        let config = config_for(dir.path(), plugins.path(), &flows);
        let output = run(&["--config", &config.display().to_string(), "check"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if output.status.code() != Some(2) || stderr.contains("panicked") {
            failures.push(format!("{name}: exit {:?}\n{stderr}", output.status.code()));
            continue;
        }
        // The line naming the problem starts with the flow file's path and a real line:column.
        let prefix = format!("{}:", flow.display());
        let located = stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&prefix) && l.contains(expect));
        let Some(line) = located else {
            failures.push(format!("{name}: no located error containing `{expect}`:\n{stderr}"));
            continue;
        };
        let mut place = line[prefix.len()..].splitn(3, ':');
        let (row, col) = (
            place.next().and_then(|r| r.parse::<usize>().ok()),
            place.next().and_then(|c| c.parse::<usize>().ok()),
        );
        let fits = match (row, col) {
            (Some(row), Some(col)) => text
                .lines()
                .nth(row - 1)
                .is_some_and(|l| col >= 1 && col <= l.chars().count() + 1),
            _ => false,
        };
        if !fits {
            failures.push(format!("{name}: `{line}` does not point into the file"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// `enabled = false`: the flow is still checked (a disabled parent of an enabled flow is an error
/// at the line naming it), `sync` and `backfill` refuse it, and `tether status` shows it switched off.
#[test]
fn a_disabled_flow_is_checked_but_not_run_and_status_says_so() {
    let plugins = plugin_dir(tether_e2e::PLUGINS);
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).expect("flows dir");
    let customers = std::fs::read_to_string(workspace_root().join("config/flows/moloni-customers.toml")).expect("flow");
    let off = customers.replacen("[source]", "enabled = false\n\n[source]", 1);
    std::fs::write(flows.join("moloni-off.toml"), &off).expect("flow");
    let child = "[source]\nconnector = \"moloni_pt\"\nstream = \"invoices\"\ntrigger = \"poll\"\n\n\
                 [target]\nconnector = \"ghl\"\naction = \"note.create\"\n\n\
                 [parent]\nflow = \"moloni-off\"\nfield = \"customer_id\"\n\n\
                 [mapping.fields]\nbody = \"reference\"\n";
    std::fs::write(flows.join("notes.toml"), child).expect("flow");
    let config = config_for(dir.path(), plugins.path(), &flows);
    let config = config.display().to_string();

    let check = run(&["--config", &config, "check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    let at = format!("{}:11:8", flows.join("notes.toml").display());
    assert!(
        stderr
            .lines()
            .any(|l| l.trim().starts_with(&at) && l.contains("parent flow `moloni-off` is disabled")),
        "{stderr}"
    );

    // Switched off together with its child, the set checks; fixtures of a disabled flow still run.
    std::fs::write(flows.join("notes.toml"), format!("enabled = false\n{child}")).expect("flow");
    let check = run(&["--config", &config, "check"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("2 flows (2 disabled: moloni-off, notes), 4 fixture tests"),
        "{stdout}"
    );
    let test = run(&["--config", &config, "test", "moloni-off"]);
    assert_eq!(test.status.code(), Some(0), "{}", String::from_utf8_lossy(&test.stdout));

    for args in [
        vec!["sync", "moloni-off"],
        vec![
            "backfill",
            "moloni-off",
            "--since",
            "2026-01-01T00:00:00Z",
            "--until",
            "2026-01-02T00:00:00Z",
        ],
    ] {
        let output = run(&[&["--config", config.as_str()][..], &args[..]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("flow `moloni-off` is disabled"), "{args:?}: {stderr}");
        assert!(stderr.contains("enabled = true"), "{args:?}: {stderr}");
    }

    let status = run(&["--config", &config, "status"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(stdout.contains("moloni-off (disabled)"), "{stdout}");
    let status = run(&["--config", &config, "status", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let off = report["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["flow"] == "moloni-off")
        .cloned()
        .expect("the disabled flow is listed");
    assert_eq!(off["enabled"], false, "{report}");
}
