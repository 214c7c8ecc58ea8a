//! Hostile input to the pure parsers (the fuzz targets' invariants, kept in `cargo test`):
//! flow files and `tether.toml` return a value or located errors whose line:col lies inside the
//! text, and mapping filters keep their round-trip laws.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::json;
use tether_abi::{ActionDef, FieldDef, FieldKind, Manifest, Record, StreamDef, TriggerKind};
use tether_core::config::{Config, ConfigError};
use tether_core::flow::{Flow, Instances};
use tether_core::mapping::{Mapping, MappingOptions, MappingSpec};

const VALID_FLOW: &str = r#"description = "contacts → CRM"

[source]
connector = "src"
stream = "contacts"
trigger = "poll"
every = "5m"

[target]
connector = "crm"
action = "contact.upsert"

[match]
keys = ["email"]

[mapping.fields]
email = "email | trim | lower"
firstName = """name | first_name"""
phone = 'phone | e164("PT")'

[[test]]
name = "one"
record = { name = "Ana Silva", email = " A@B.PT ", phone = "912 345 678" }
expect = { email = "a@b.pt", firstName = "Ana", phone = "+351912345678" }
"#;

fn manifest() -> Manifest {
    Manifest {
        name: "crm".into(),
        version: "1".into(),
        description: "a CRM".into(),
        config: Vec::new(),
        streams: vec![
            StreamDef::new("contacts", "contacts", &[TriggerKind::Poll, TriggerKind::Webhook])
                .fields(["name", "email", "phone"].map(|n| FieldDef::new(n, FieldKind::String))),
        ],
        actions: vec![ActionDef::new("contact.upsert", "upsert")
            .fields(["email", "firstName", "phone"].map(|n| FieldDef::new(n, FieldKind::String)))],
    }
}

/// Whether an editor could put its cursor at `line:column` (1-based, column in characters).
fn inside(text: &str, error: &ConfigError) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    error.line >= 1
        && error.line <= lines.len()
        && error.column >= 1
        && error.column <= lines[error.line - 1].chars().count() + 1
}

fn check_located(text: &str) -> Result<(), TestCaseError> {
    let manifest = manifest();
    let instances: Instances<'_> = BTreeMap::from([("src", &manifest), ("crm", &manifest)]);
    if let Err(errors) = Flow::load("f", Path::new("flows/f.toml"), text, &instances) {
        prop_assert!(!errors.is_empty(), "a refused flow names no problem");
        for error in &errors {
            prop_assert!(inside(text, error), "{error} is outside the text");
        }
    }
    let env = |name: &str| (name == "SET").then(|| "x".to_owned());
    if let Err(errors) = Config::parse(Path::new("tether.toml"), text, &env) {
        prop_assert!(!errors.is_empty(), "a refused config names no problem");
        for error in &errors {
            prop_assert!(inside(text, error), "{error} is outside the text");
        }
    }
    Ok(())
}

/// The valid flow with one edit: a character (often a multi-byte one, a quote, a newline or a
/// bracket) inserted, or a character removed, at any place.
fn edited_flow() -> impl Strategy<Value = String> {
    let chars: Vec<char> = VALID_FLOW.chars().collect();
    let len = chars.len();
    (
        0..=len,
        prop::bool::ANY,
        prop::sample::select(vec![
            '"', '\'', '\n', '[', ']', '{', '=', '|', '(', 'é', '💥', '\\', '#', ' ', '\r',
        ]),
    )
        .prop_map(move |(at, insert, c)| {
            let mut edited = chars.clone();
            if insert {
                edited.insert(at, c);
            } else if at < len {
                edited.remove(at);
            }
            edited.into_iter().collect()
        })
}

#[test]
fn the_base_flow_loads() {
    let manifest = manifest();
    let instances: Instances<'_> = BTreeMap::from([("src", &manifest), ("crm", &manifest)]);
    let flow = Flow::load("f", Path::new("flows/f.toml"), VALID_FLOW, &instances)
        .unwrap_or_else(|e| panic!("{}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")));
    assert_eq!(flow.fixtures.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn edited_flow_files_fail_located(text in edited_flow()) {
        check_located(&text)?;
    }

    #[test]
    fn arbitrary_text_fails_located(text in "(\\PC|\n|\r|\t){0,200}") {
        check_located(&text)?;
    }

    #[test]
    fn toml_looking_text_fails_located(text in "([a-z_.]{1,8} ?= ?(\"[^\"\n]{0,12}\"|[0-9]{1,3}|\\[|\\{|'''|\"\"\")\n?|\\[[a-z.]{0,12}\\]\n|\n){0,12}") {
        check_located(&text)?;
    }
}

// Mapping filters, through the public mapping API so the filters are the registered ones.

fn mapping(fields: &[(&str, &str)]) -> Mapping {
    let mut table = toml::Table::new();
    let exprs: toml::Table = fields
        .iter()
        .map(|(k, v)| (k.to_string(), toml::Value::from(*v)))
        .collect();
    table.insert("fields".into(), exprs.into());
    let spec: MappingSpec = toml::from_str(&toml::to_string(&table).expect("toml")).expect("spec");
    Mapping::compile(&spec, &MappingOptions::default()).expect("compiles")
}

fn apply(mapping: &Mapping, value: &str) -> serde_json::Map<String, serde_json::Value> {
    let record = Record {
        id: "r".into(),
        updated_at: None,
        deleted: false,
        parent: None,
        event: None,
        fields: tether_abi::Fields::from_iter([("v".to_owned(), json!(value))]),
    };
    mapping.apply(&record, "2026-01-01T00:00:00Z").expect("maps")
}

fn out<'a>(fields: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> Option<&'a str> {
    fields.get(key).and_then(|v| v.as_str())
}

/// Names with the whitespace and letters sources send: accents, tabs, runs of spaces.
fn names() -> impl Strategy<Value = String> {
    "[ \t]{0,2}([A-Za-zÀ-ÿ'-]{1,8}[ \t]{1,3}){0,4}[A-Za-zÀ-ÿ'-]{0,8}[ \t\n]{0,2}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn trim_and_lower_are_idempotent(text in "(\\PC|\t|\n){0,24}") {
        let m = mapping(&[("t", "v | trim"), ("l", "v | lower"), ("tl", "v | trim | lower")]);
        let once = apply(&m, &text);
        for key in ["t", "l", "tl"] {
            let first = out(&once, key).expect("a string in, a string out").to_owned();
            let twice = apply(&m, &first);
            prop_assert_eq!(out(&twice, key), Some(first.as_str()), "{} is not idempotent on {:?}", key, text);
        }
        let expected = text.trim().to_lowercase();
        prop_assert_eq!(out(&once, "tl"), Some(expected.as_str()));
    }

    #[test]
    fn splitting_a_name_then_joining_gives_the_normalized_name(name in names()) {
        let m = mapping(&[
            ("first", "v | first_name"),
            ("last", "v | last_name"),
            ("joined", "v | first_name | join_name(v | last_name)"),
        ]);
        let mapped = apply(&m, &name);
        let normalized = name.split_whitespace().collect::<Vec<_>>().join(" ");
        if normalized.is_empty() {
            prop_assert!(mapped.is_empty(), "a blank name maps to nothing, got {:?}", mapped);
        } else {
            prop_assert_eq!(out(&mapped, "joined"), Some(normalized.as_str()));
            // The last name is one word; the first name is never blank.
            prop_assert!(out(&mapped, "last").is_none_or(|l| !l.contains(' ')));
            prop_assert!(out(&mapped, "first").is_some_and(|f| !f.trim().is_empty()));
        }
    }
}
