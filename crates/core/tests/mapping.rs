//! Data-driven mapping tests: every `tests/mapping/*.toml` is one case.
//!
//! A case has `[spec]` (the `[mapping]` table of a flow), `[record]` (the source fields; `id`,
//! `updated_at` and `deleted` there become the record's own), optional `[options]`
//! (`default_region`, `source_fields`) and `now`, and one expectation:
//! - `[expected]`: the exact output fields;
//! - `expected_error = "..."`: compile or apply fails with an error containing this;
//! - `expected_errors = [...]`: compile fails with exactly these errors, in file order;
//! - `error_at = [...]`: the text each compile error's span starts at (checks the location);
//! - `expected_hint = "..."`: some error carries a hint containing this.
//!
//! All cases run; the failures are reported together.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;
use tether_abi::{Fields, Record};
use tether_core::mapping::{Mapping, MappingError, MappingOptions, MappingSpec};

const DEFAULT_NOW: &str = "2026-05-01T09:30:00Z";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    options: CaseOptions,
    spec: MappingSpec,
    #[serde(default)]
    record: toml::Table,
    now: Option<String>,
    expected: Option<toml::Table>,
    expected_error: Option<String>,
    #[serde(default)]
    expected_errors: Vec<String>,
    #[serde(default)]
    error_at: Vec<String>,
    expected_hint: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseOptions {
    default_region: Option<String>,
    source_fields: Option<Vec<String>>,
}

fn to_json(value: &toml::Value) -> Json {
    match value {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items.iter().map(to_json).collect(),
        toml::Value::Table(t) => Json::Object(table_to_fields(t)),
    }
}

fn table_to_fields(table: &toml::Table) -> Fields {
    table.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

fn record_of(table: &toml::Table) -> Record {
    let mut fields = table_to_fields(table);
    let text = |v: Option<Json>| v.and_then(|v| v.as_str().map(str::to_owned));
    Record {
        id: text(fields.remove("id")).unwrap_or_else(|| "rec-1".into()),
        updated_at: text(fields.remove("updated_at")),
        deleted: fields.remove("deleted").and_then(|v| v.as_bool()).unwrap_or(false),
        parent: None,
        event: None,
        fields,
    }
}

/// A line per differing key: `-` expected, `+` actual.
fn diff(expected: &Fields, actual: &Fields) -> String {
    let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let mut out = String::new();
    for key in keys {
        match (expected.get(key), actual.get(key)) {
            (Some(e), Some(a)) if e == a => out.push_str(&format!("    {key}: {a}\n")),
            (e, a) => {
                if let Some(e) = e {
                    out.push_str(&format!("  - {key}: {e}\n"));
                }
                if let Some(a) = a {
                    out.push_str(&format!("  + {key}: {a}\n"));
                }
            }
        }
    }
    out
}

fn describe(errors: &[MappingError], text: &str) -> String {
    errors
        .iter()
        .map(|e| {
            let at = e.span.as_ref().map_or("<no span>".to_owned(), |s| {
                format!("{:?}", text.get(s.start..).unwrap_or("").lines().next().unwrap_or(""))
            });
            format!("  {e} @ {at}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_compile_errors(case: &Case, errors: &[MappingError], text: &str) -> Result<(), String> {
    let all = describe(errors, text);
    if let Some(want) = &case.expected_error {
        if !errors.iter().any(|e| e.to_string().contains(want.as_str())) {
            return Err(format!("no compile error contains {want:?}; got:\n{all}"));
        }
    }
    if !case.expected_errors.is_empty() {
        if errors.len() != case.expected_errors.len() {
            return Err(format!(
                "expected {} errors, got {}:\n{all}",
                case.expected_errors.len(),
                errors.len()
            ));
        }
        for (want, got) in case.expected_errors.iter().zip(errors) {
            if !got.to_string().contains(want.as_str()) {
                return Err(format!("error {got:?} does not contain {want:?}; all:\n{all}"));
            }
        }
    }
    for (i, want) in case.error_at.iter().enumerate() {
        let Some(error) = errors.get(i) else {
            return Err(format!("no error #{i} to be at {want:?}; got:\n{all}"));
        };
        let at = error.span.as_ref().and_then(|s| text.get(s.start..)).unwrap_or("");
        if !at.starts_with(want.as_str()) {
            return Err(format!(
                "error #{i} should be at {want:?}, is at {:?}; all:\n{all}",
                at.lines().next()
            ));
        }
    }
    if let Some(want) = &case.expected_hint {
        if !errors
            .iter()
            .any(|e| e.hint.as_deref().is_some_and(|h| h.contains(want.as_str())))
        {
            return Err(format!("no hint contains {want:?}; got:\n{all}"));
        }
    }
    Ok(())
}

fn run(path: &Path) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let case: Case = match toml::from_str(&text) {
        Ok(case) => case,
        Err(e) => {
            // A spec the deserializer refuses (unknown keys) is a valid expectation too.
            let raw: toml::Table = toml::from_str(&text).map_err(|e| format!("not TOML: {e}"))?;
            return match raw.get("expected_error").and_then(|v| v.as_str()) {
                Some(want) if e.to_string().contains(want) => Ok(()),
                _ => Err(format!("case does not parse: {e}")),
            };
        }
    };
    let expects_compile_error = !case.expected_errors.is_empty() || !case.error_at.is_empty();
    if case.expected.is_none() && case.expected_error.is_none() && !expects_compile_error {
        return Err("the case expects nothing: add [expected] or expected_error".into());
    }
    let options = MappingOptions {
        default_region: case.options.default_region.clone(),
        source_fields: case.options.source_fields.clone(),
    };
    let mapping = match Mapping::compile(&case.spec, &options) {
        Ok(mapping) => mapping,
        Err(errors) => {
            if case.expected.is_some() {
                return Err(format!("compile failed:\n{}", describe(&errors, &text)));
            }
            return check_compile_errors(&case, &errors, &text);
        }
    };
    if expects_compile_error {
        return Err("compiled, but compile errors were expected".into());
    }
    let record = record_of(&case.record);
    let result = mapping.apply(&record, case.now.as_deref().unwrap_or(DEFAULT_NOW));
    match (result, &case.expected, &case.expected_error) {
        (Ok(actual), Some(expected), _) => {
            let expected = table_to_fields(expected);
            if actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "output differs (- expected, + actual):\n{}",
                    diff(&expected, &actual)
                ))
            }
        }
        (Ok(actual), None, Some(want)) => Err(format!(
            "applied, but an error containing {want:?} was expected; output:\n{}",
            diff(&Fields::new(), &actual)
        )),
        (Err(error), _, Some(want)) if error.to_string().contains(want.as_str()) => Ok(()),
        (Err(error), _, _) => Err(format!("apply failed: {error}")),
        (Ok(_), None, None) => unreachable!("checked above"),
    }
}

#[test]
fn mapping_cases() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mapping");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/mapping exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 25, "only {} cases in {}", paths.len(), dir.display());

    let failures: Vec<String> = paths
        .iter()
        .filter_map(|path| {
            let name = path
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            run(path).err().map(|why| format!("--- {name}\n{why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} mapping cases failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
