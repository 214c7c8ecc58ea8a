//! The plugin loader against real libraries built from this workspace.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use tether_abi::{ErrorKind, OpenRequest, ReadPosition, ReadRequest, WriteRequest, ABI_VERSION};
use tether_core::loader::{load_dir, RefusalReason};
use tether_e2e::{library_file, plugin_dir};

mod support;

#[test]
fn three_plugins_load_side_by_side_and_each_answers_as_itself() {
    let dir = plugin_dir(&["tether-moloni", "tether-aroflo", "tether-mloflo"]);
    let set = load_dir(dir.path()).expect("plugins dir");
    assert!(set.refused.is_empty(), "{:?}", set.refused);
    let mut names: Vec<&str> = set.loaded.iter().map(|p| p.manifest.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["aroflo", "mloflo", "moloni"]);
    // Each manifest is its own, not the first library's served three times.
    assert!(set
        .get("moloni")
        .expect("moloni")
        .manifest
        .stream("customers")
        .is_some());
    assert!(set
        .get("aroflo")
        .expect("aroflo")
        .manifest
        .stream("clientnotes")
        .is_some());
    assert!(set
        .get("mloflo")
        .expect("mloflo")
        .manifest
        .stream("milestones")
        .is_some());
    assert!(set
        .get("moloni")
        .expect("moloni")
        .manifest
        .stream("milestones")
        .is_none());
    // And calls reach the right library.
    let host = support::host();
    for plugin in &set.loaded {
        // Without config a plugin refuses to open, or (a stub) to work: either way it names itself.
        let error = match plugin.open(host.host(&plugin.manifest.name), &OpenRequest::default()) {
            Ok(connector) => connector.check().expect_err("a connector without config cannot check"),
            Err(error) => error,
        };
        assert!(error.message.to_lowercase().contains(&plugin.manifest.name), "{error}");
    }
}

#[test]
fn a_plugin_for_another_abi_is_refused_naming_both_versions() {
    let dir = plugin_dir(&["tether-fixture-wrong-abi", "tether-moloni"]);
    let set = load_dir(dir.path()).expect("plugins dir");
    assert_eq!(set.loaded.len(), 1);
    assert_eq!(set.loaded[0].manifest.name, "moloni");
    assert_eq!(set.refused.len(), 1);
    let refusal = &set.refused[0];
    assert!(
        matches!(refusal.reason, RefusalReason::AbiMismatch { found, expected } if found == ABI_VERSION + 1 && expected == ABI_VERSION)
    );
    let message = refusal.to_string();
    assert!(message.contains(&library_file("tether-fixture-wrong-abi")), "{message}");
    assert!(
        message.contains(&format!("ABI version {}", ABI_VERSION + 1)),
        "{message}"
    );
    assert!(message.contains(&format!("ABI version {ABI_VERSION}")), "{message}");
    // That none of its code ran is checked through the CLI (cli.rs), where the fixture's marker
    // variable can be set for one process without racing other tests.
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused_and_the_others_load() {
    let dir = plugin_dir(&["tether-fixture-not-a-plugin", "tether-fixture-echo"]);
    fs::write(dir.path().join("garbage.so"), b"\x7fELF but not really").expect("write");
    let set = load_dir(dir.path()).expect("plugins dir");
    assert_eq!(set.loaded.len(), 1);
    assert_eq!(set.loaded[0].manifest.name, "echo");
    assert_eq!(set.refused.len(), 2, "{:?}", set.refused);
    for refusal in &set.refused {
        assert!(matches!(refusal.reason, RefusalReason::NotAPlugin { .. }), "{refusal}");
    }
    let not_a_plugin = set
        .refused
        .iter()
        .find(|r| r.path.ends_with(library_file("tether-fixture-not-a-plugin")))
        .expect("listed");
    assert!(
        not_a_plugin.to_string().contains("exports no TETHER_ABI_VERSION"),
        "{not_a_plugin}"
    );
}

#[test]
fn a_second_plugin_with_the_same_name_is_refused() {
    let dir = plugin_dir(&["tether-moloni"]);
    fs::copy(
        dir.path().join(library_file("tether-moloni")),
        dir.path().join("zz_moloni_copy.so"),
    )
    .expect("copy");
    let set = load_dir(dir.path()).expect("plugins dir");
    assert_eq!(set.loaded.len(), 1);
    assert_eq!(set.refused.len(), 1);
    assert!(set.refused[0].path.ends_with("zz_moloni_copy.so"));
    assert!(
        set.refused[0]
            .to_string()
            .contains("a plugin named `moloni` is already loaded from"),
        "{}",
        set.refused[0]
    );
}

#[test]
fn files_and_folders_writable_by_others_are_refused() {
    let dir = plugin_dir(&["tether-moloni", "tether-aroflo"]);
    let aroflo = dir.path().join(library_file("tether-aroflo"));
    fs::set_permissions(&aroflo, fs::Permissions::from_mode(0o757)).expect("chmod");
    let set = load_dir(dir.path()).expect("plugins dir");
    assert_eq!(set.loaded.len(), 1);
    assert!(matches!(
        set.refused[0].reason,
        RefusalReason::WritableByOthers { mode: 0o757, .. }
    ));
    assert!(set.refused[0].to_string().contains("chmod o-w"), "{}", set.refused[0]);

    fs::set_permissions(&aroflo, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod dir");
    let set = load_dir(dir.path()).expect("plugins dir");
    assert!(set.loaded.is_empty());
    assert_eq!(set.refused.len(), 2);
    assert!(set
        .refused
        .iter()
        .all(|r| matches!(&r.reason, RefusalReason::WritableByOthers { path, .. } if path == dir.path())));
}

#[test]
fn a_panic_inside_a_plugin_comes_back_as_an_error_and_the_next_call_works() {
    let dir = plugin_dir(&["tether-fixture-echo"]);
    let set = load_dir(dir.path()).expect("plugins dir");
    let echo = set.get("echo").expect("echo loaded");
    let host = support::host();
    let connector = echo.open(host.host("echo"), &OpenRequest::default()).expect("open");
    let read = |stream: &str| ReadRequest {
        stream: stream.into(),
        position: ReadPosition::Cursor { cursor: None },
        limit: None,
        parent_id: None,
    };
    for _ in 0..3 {
        let error = connector.read(read("panic")).expect_err("panics");
        assert_eq!(error.kind, ErrorKind::Fatal);
        assert!(
            error.message.contains("panicked in read: echo was asked to panic"),
            "{error}"
        );
        let mut input = tether_abi::Fields::new();
        input.insert("name".into(), "Ana".into());
        let written = connector
            .write(WriteRequest {
                priority: Default::default(),
                action: "echo".into(),
                target_id: None,
                parent_id: None,
                input: input.clone(),
            })
            .expect("next call works");
        assert_eq!(written.returned, input);
    }
}
