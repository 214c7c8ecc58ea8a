//! The record view's pure parts: what changed between two writes of a record, and which events
//! belong to a record of one system.

use serde::Serialize;
use serde_json::{Map, Value};
use tether_core::store::EventRow;

use super::FlowInfo;

/// One field that a write changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The fields whose value differs between the input written before (`None`: the first write)
/// and the one written now, in field order. Details that are not JSON objects compare as one
/// field named `(input)`.
pub fn changes(before: Option<&str>, after: &str) -> Vec<Change> {
    let object = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("(input)".to_owned(), other)]),
        Err(_) => Map::from_iter([("(input)".to_owned(), Value::String(text.to_owned()))]),
    };
    let before = before.map(object).unwrap_or_default();
    let after = object(after);
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|field| before.get(*field) != after.get(*field))
        .map(|field| Change {
            field: field.clone(),
            before: before.get(field).map(show),
            after: after.get(field).map(show),
        })
        .collect()
}

fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether `event` is about record `id` of `system`: the event's flow reads `system` and the
/// event's source is `id`, or writes it and its target is `id`. An event of a flow no longer
/// configured matches on the id alone.
pub fn concerns(event: &EventRow, flow: Option<&FlowInfo>, system: &str, id: &str) -> bool {
    let as_source = event.source_id == id;
    let as_target = event.target_id.as_deref() == Some(id);
    match flow {
        Some(flow) => (as_source && flow.source_system == system) || (as_target && flow.target_system == system),
        None => as_source || as_target,
    }
}

/// The connector part of a system name (`ghl` of `ghl/contact`).
pub fn connector_of(system: &str) -> &str {
    system.split('/').next().unwrap_or(system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_field_added_changed_or_removed() {
        // (field, before, after)
        type Expected<'a> = &'a [(&'a str, Option<&'a str>, Option<&'a str>)];
        let cases: &[(Option<&str>, &str, Expected)] = &[
            (
                None,
                r#"{"email":"a@b.c","tags":["vip"]}"#,
                &[("email", None, Some("a@b.c")), ("tags", None, Some(r#"["vip"]"#))],
            ),
            (
                Some(r#"{"email":"a@b.c","phone":"+351912345678","name":"Ana"}"#),
                r#"{"email":"a@b.c","phone":"+351912000000","city":"Porto"}"#,
                &[
                    ("city", None, Some("Porto")),
                    ("name", Some("Ana"), None),
                    ("phone", Some("+351912345678"), Some("+351912000000")),
                ],
            ),
            (Some(r#"{"a":1}"#), r#"{"a":1}"#, &[]),
            (
                Some("not json"),
                "still not json",
                &[("(input)", Some("not json"), Some("still not json"))],
            ),
        ];
        for (before, after, expected) in cases {
            let expected: Vec<Change> = expected
                .iter()
                .map(|(field, b, a)| Change {
                    field: (*field).into(),
                    before: b.map(Into::into),
                    after: a.map(Into::into),
                })
                .collect();
            assert_eq!(changes(*before, after), expected, "{before:?} -> {after}");
        }
    }

    #[test]
    fn an_event_concerns_a_record_only_on_the_side_its_flow_touches_that_system() {
        let flow = FlowInfo {
            name: "moloni-customers".into(),
            source_connector: "moloni".into(),
            target_connector: "ghl".into(),
            source_system: "moloni/customers".into(),
            target_system: "ghl/contact".into(),
            action: "contact.upsert".into(),
            trigger: "poll".into(),
            enabled: true,
        };
        let event = EventRow {
            id: 1,
            at: 0,
            flow: flow.name.clone(),
            source_id: "42".into(),
            target_id: Some("c1".into()),
            kind: "written".into(),
            detail: None,
        };
        assert!(concerns(&event, Some(&flow), "moloni/customers", "42"));
        assert!(concerns(&event, Some(&flow), "ghl/contact", "c1"));
        // Id 42 in GHL is another record.
        assert!(!concerns(&event, Some(&flow), "ghl/contact", "42"));
        assert!(concerns(&event, None, "anything", "42"));
        assert_eq!(connector_of("ghl/contact"), "ghl");
    }
}
