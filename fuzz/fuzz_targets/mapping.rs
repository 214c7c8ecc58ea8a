//! Arbitrary mapping expressions and jq filters, compiled as a flow's `[mapping]` would be and,
//! when they compile, applied to a fixed record: compile errors carry spans inside the text they
//! were given, `apply` returns a value or an `ApplyError`, never panics, and gives the same answer
//! twice (mapping is deterministic: fixture tests and the unchanged-write check rely on it).
//!
//! Input lines: `jq:<filter>`, `tags:<expression>` (tags_from), `when:<expression>` (a tag
//! rule), `region:<code>` (default_region), `declare` (the record's fields are the declared
//! source fields), anything else `<target> <expression>` or just `<expression>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tether_abi::Record;
use tether_core::mapping::{Mapping, MappingOptions, MappingSpec};

/// Recursion in a jq filter (user or library definitions, `reduce`/`foreach` steps) is bounded
/// by the mapping itself (a step budget and a stack limit, see `mapping/jq.rs`), so such filters
/// run here. What one builtin call does is not bounded (`[range(1e18)]`, `"x" * 1e12`, huge
/// powers or combinations): filters using those are compiled but not run.
const UNBOUNDED_JQ: &[&str] = &[
    "range",
    "*",
    "combinations",
    "splits",
    "pow",
    "exp",
    "implode",
    "tojson",
    "ltrimstr",
    "getpath",
    "@",
    "env",
    "input",
];

fn record() -> Record {
    let fields = json!({
        "name": "  Ana Sofia   Conceição ", "phone": "912 345 678", "intl": "+61 412 345 678",
        "email": " Ana@Example.PT ", "vat": 123456789, "price": 12.5, "active": true, "blank": "",
        "nothing": null, "tags": ["a", "b", " c "], "address": {"city": "Lisboa", "zip": "1000-001"},
        "created": "2026-03-04T13:05:00+01:00", "day": "2026-03-04", "first name": "Zoë",
    });
    Record {
        id: "r1".into(),
        updated_at: Some("2026-03-04T12:00:00Z".into()),
        deleted: false,
        parent: None,
        event: None,
        fields: tether_fuzz::fields(fields),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 4096 {
        return;
    }
    let record = record();
    let mut spec = toml::Table::new();
    let mut fields = toml::Table::new();
    let mut tags = Vec::new();
    let mut options = MappingOptions::default();
    let mut runnable = true;
    for (i, line) in text.lines().enumerate() {
        if let Some(filter) = line.strip_prefix("jq:") {
            runnable &= !UNBOUNDED_JQ.iter().any(|word| filter.contains(word));
            spec.insert("jq".into(), filter.into());
        } else if let Some(expr) = line.strip_prefix("tags:") {
            spec.insert("tags_from".into(), expr.into());
        } else if let Some(expr) = line.strip_prefix("when:") {
            let mut rule = toml::Table::new();
            rule.insert("tag".into(), format!("t{i}").into());
            rule.insert("when".into(), expr.into());
            tags.push(toml::Value::Table(rule));
        } else if let Some(region) = line.strip_prefix("region:") {
            options.default_region = Some(region.to_owned());
        } else if line == "declare" {
            options.source_fields = Some(record.fields.keys().cloned().collect());
        } else {
            let (target, expr) = match line.split_once(' ') {
                Some((target, expr)) if !target.is_empty() && !target.contains(['{', '(', '|', '"', '\'']) => {
                    (target.to_owned(), expr)
                }
                _ => (format!("f{i}"), line),
            };
            fields.insert(target, expr.into());
        }
    }
    spec.insert("fields".into(), fields.into());
    if !tags.is_empty() {
        spec.insert("tags".into(), tags.into());
    }
    let Ok(toml_text) = toml::to_string(&spec) else {
        return;
    };
    let spec: MappingSpec = match toml::from_str(&toml_text) {
        Ok(spec) => spec,
        // Keys TOML cannot round-trip are the TOML layer's business, not the mapping's.
        Err(_) => return,
    };
    match Mapping::compile(&spec, &options) {
        Ok(mapping) if runnable => {
            let first = mapping.apply(&record, "2026-01-01T00:00:00Z");
            let second = mapping.apply(&record, "2026-01-01T00:00:00Z");
            assert_eq!(first, second, "the same record mapped twice differs");
        }
        Ok(_) => {}
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused mapping names no problem");
            for error in &errors {
                if let Some(span) = &error.span {
                    assert!(
                        span.start <= span.end && span.end <= toml_text.len(),
                        "span {span:?} outside the {} bytes of the mapping text: {error}",
                        toml_text.len()
                    );
                }
            }
        }
    }
});
