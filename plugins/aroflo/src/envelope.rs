//! AroFlo's response envelope: `status` + `statusmessage` + `zoneresponse` (reference §2.4–2.6).
//! Business errors arrive as HTTP 200; the status in the body decides, whatever the HTTP status.

use serde_json::{Map, Value};
use tether_abi::HttpResponse;

use crate::error::AroFloError;

/// The member `key` of an object, compared case-insensitively (echoes come back as `CLIENTID`).
pub fn member<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// A scalar as text: AroFlo mixes `"0"` and `0`, `"TRUE"` and `true`.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn text_of(value: &Value, key: &str) -> Option<String> {
    text(member(value, key)).filter(|s| !s.is_empty())
}

/// A list that may come back as an array, one object, a `{"<singular>": [...]}` wrapper, or
/// an empty string.
pub fn list(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(map)) if map.len() == 1 => match map.values().next() {
            Some(Value::Array(items)) => items.clone(),
            Some(inner @ Value::Object(_)) => vec![inner.clone()],
            _ => vec![Value::Object(map.clone())],
        },
        Some(object @ Value::Object(_)) => vec![object.clone()],
        _ => Vec::new(),
    }
}

fn status_code(body: &Value) -> Option<i64> {
    let raw = text(member(body, "status"))?;
    raw.trim().parse().ok()
}

fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let seconds: f64 = response.header("retry-after")?.trim().parse().ok()?;
    (seconds >= 0.0).then_some((seconds * 1000.0) as u64)
}

/// The `zoneresponse` of a successful call, or the typed error the status means.
pub fn parse(response: &HttpResponse) -> Result<Value, AroFloError> {
    let body: Option<Value> = serde_json::from_str(&response.body).ok();
    let Some((status, body)) = body.as_ref().and_then(|b| Some((status_code(b)?, b))) else {
        return Err(match response.status {
            429 => AroFloError::RateLimited {
                status: 429,
                message: "HTTP 429".into(),
                retry_after_ms: retry_after_ms(response),
            },
            200..=299 => AroFloError::Malformed(format!("no status in {}", snippet(&response.body))),
            status => AroFloError::Http {
                status,
                body: snippet(&response.body),
            },
        });
    };
    let message = text(member(body, "statusmessage")).unwrap_or_default();
    match status {
        0 => Ok(member(body, "zoneresponse")
            .cloned()
            .unwrap_or(Value::Object(Map::new()))),
        -99999 | 1 | 2 | 3 | 4 | 20 | 30 => Err(AroFloError::Auth { status, message }),
        5 => Err(AroFloError::Method { status, message }),
        // Status 6 is both "Exceeded Rate Limit" and "No Zone Specified".
        6 if message.to_ascii_lowercase().contains("zone") => Err(AroFloError::Refused { status, message }),
        6 | 7 | 429 => Err(AroFloError::RateLimited {
            status,
            message,
            retry_after_ms: retry_after_ms(response),
        }),
        888888 => Err(AroFloError::Timeout { status, message }),
        _ => Err(AroFloError::Refused { status, message }),
    }
}

fn snippet(body: &str) -> String {
    body.chars().take(300).collect()
}

/// `postresults`, with its `errors` and any per-record `error` turned into a typed error.
pub fn post_results(zone: &str, zone_response: &Value) -> Result<Value, AroFloError> {
    let results = member(zone_response, "postresults")
        .cloned()
        .ok_or_else(|| AroFloError::Malformed("a POST answer without postresults".into()))?;
    if let Some(first) = list(member(&results, "errors")).first() {
        let code = text_of(first, "code");
        let detail = text_of(first, "detail");
        let message = match (text_of(first, "message"), detail) {
            (Some(m), Some(d)) => format!("{m}: {d}"),
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => first.to_string(),
        };
        let duplicate = code.as_deref() == Some("209") || message.to_ascii_lowercase().contains("already exists");
        return Err(AroFloError::Rejected {
            zone: zone.to_owned(),
            code,
            message,
            duplicate,
        });
    }
    for section in ["inserts", "updates"] {
        for record in list(member(&results, section).and_then(|s| member(s, zone))) {
            if let Some(error) = text_of(&record, "error") {
                let duplicate = error.to_ascii_lowercase().contains("already exists");
                return Err(AroFloError::Rejected {
                    zone: zone.to_owned(),
                    code: None,
                    message: error,
                    duplicate,
                });
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tether_abi::ConnectorError;
    use tether_abi::ErrorKind;

    fn response(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("Retry-After".into(), "2".into())],
            body: body.to_string(),
        }
    }

    fn kind(error: AroFloError) -> ErrorKind {
        ConnectorError::from(error).kind
    }

    #[test]
    fn statuses_map_to_kinds_whatever_the_http_status() {
        let auth = parse(&response(
            200,
            json!({"status": "-99999", "statusmessage": "Authentication Failed - Payload has expired"}),
        ));
        assert_eq!(kind(auth.expect_err("auth")), ErrorKind::Auth);
        let minute = parse(&response(
            200,
            json!({"status": 6, "statusmessage": "Exceeded Rate Limit - Requests per Minute"}),
        ));
        assert_eq!(
            kind(minute.expect_err("6")),
            ErrorKind::RateLimited {
                retry_after_ms: Some(2000)
            }
        );
        let zone = parse(&response(
            200,
            json!({"status": "6", "statusmessage": "No Zone Specified"}),
        ));
        assert_eq!(kind(zone.expect_err("zone")), ErrorKind::Invalid);
        let clause = parse(&response(
            200,
            json!({"status": "1001", "statusmessage": "Invalid WHERE Clause"}),
        ));
        assert_eq!(kind(clause.expect_err("where")), ErrorKind::Invalid);
        let timeout = parse(&response(
            200,
            json!({"status": "888888", "statusmessage": "timed out"}),
        ));
        assert_eq!(kind(timeout.expect_err("timeout")), ErrorKind::Transient);
        let ok = parse(&response(200, json!({"status": "0", "zoneresponse": {"clients": []}}))).expect("ok");
        assert_eq!(ok, json!({"clients": []}));
        let html = HttpResponse {
            status: 502,
            headers: vec![],
            body: "<html>".into(),
        };
        assert_eq!(kind(parse(&html).expect_err("502")), ErrorKind::Transient);
    }

    #[test]
    fn post_errors_under_status_zero_are_typed() {
        let duplicate = json!({"postresults": {"inserttotal": 0, "inserts": {"clients": []},
            "errors": [{"message": "Unable to make changes to Database", "code": "209", "detail": "Client already exists", "type": "Database"}]}});
        let error = post_results("clients", &duplicate).expect_err("duplicate");
        assert!(error.to_string().contains("Client already exists"), "{error}");
        assert_eq!(kind(error), ErrorKind::Conflict);
        let per_record = json!({"postresults": {"updates": {"tasks": [{"taskid": "x", "error": "taskname is too long"}]}, "errors": []}});
        assert_eq!(
            kind(post_results("tasks", &per_record).expect_err("record")),
            ErrorKind::Invalid
        );
        let fine = json!({"postresults": {"inserts": {"clients": [{"CLIENTID": "abc"}]}, "errors": []}});
        let results = post_results("clients", &fine).expect("fine");
        let first = &list(member(member(&results, "inserts").expect("inserts"), "clients"))[0];
        assert_eq!(text_of(first, "clientid").as_deref(), Some("abc"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        "(status|statusmessage|zoneresponse|postresults|errors|inserts|clients|error|\\PC{0,6})",
                        inner,
                        0..4
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(192))]

            #[test]
            fn arbitrary_bytes_are_an_answer_or_a_typed_error(
                status in prop::sample::select(vec![200u16, 204, 400, 429, 500, 502]),
                bytes in prop::collection::vec(any::<u8>(), 0..200),
                retry_after in "(\\PC|[0-9.e-]){0,8}",
            ) {
                let response = HttpResponse {
                    status,
                    headers: vec![("Retry-After".into(), retry_after)],
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                };
                if let Ok(zone) = parse(&response) {
                    let _ = post_results("clients", &zone);
                }
            }

            /// Whatever the HTTP status and the rest of the body, `status` 0 (number or text)
            /// means the zoneresponse and any other status is an error.
            #[test]
            fn the_status_in_the_body_decides(
                http in prop::sample::select(vec![200u16, 400, 500]),
                code in prop::sample::select(vec!["0", " 0", "1", "6", "-99999", "888888", "1001", "x"]),
                as_number in any::<bool>(),
                zone in json(),
                message in "\\PC{0,20}",
            ) {
                let status = match code.trim().parse::<i64>() {
                    Ok(n) if as_number => Value::from(n),
                    _ => Value::from(code),
                };
                let body = json!({"status": status, "statusmessage": message, "zoneresponse": zone.clone()});
                let response = HttpResponse { status: http, headers: vec![], body: body.to_string() };
                match (code.trim(), parse(&response)) {
                    ("0", Ok(answer)) => prop_assert_eq!(answer, zone.clone()),
                    ("0", Err(e)) => prop_assert!(false, "status 0 refused: {e}"),
                    ("x", Err(AroFloError::Malformed(_) | AroFloError::Http { .. })) => {}
                    ("x", other) => prop_assert!(false, "an unreadable status gave {other:?}"),
                    (_, Ok(answer)) => prop_assert!(false, "status {code} accepted: {answer}"),
                    (_, Err(_)) => {}
                }
                // Results of arbitrary shape are read or refused, never a panic.
                let _ = post_results("clients", &json!({ "postresults": zone }));
            }
        }
    }
}
