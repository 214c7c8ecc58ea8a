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
}
