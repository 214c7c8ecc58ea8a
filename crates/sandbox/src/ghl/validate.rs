//! Strict request validation in the style of GHL's NestJS `ValidationPipe` with
//! `forbidNonWhitelisted`: unknown properties and type errors become one 422 whose `message` is
//! an array of every problem found.

use super::error::ApiError;
use crate::timefmt::parse_iso;
use serde_json::{Map, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    /// A string or `null` (null clears the field).
    NStr,
    Bool,
    Num,
    StrArray,
    /// Any array (contents checked by the handler).
    Array,
    /// A nullable string that must look like an email.
    Email,
    /// A string holding an ISO-8601 date.
    IsoDate,
    /// `null` or a date in one of the formats GHL lists for `dateOfBirth`.
    DateOfBirth,
    DndSettings,
    InboundDnd,
    CustomFields,
    /// Anything (checked by the handler).
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct F {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

pub const fn opt(name: &'static str, ty: Ty) -> F {
    F {
        name,
        ty,
        required: false,
    }
}

pub const fn req(name: &'static str, ty: Ty) -> F {
    F {
        name,
        ty,
        required: true,
    }
}

/// Parses a JSON body; an empty body is `{}` so missing-field errors come out as 422s.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "Unexpected token in JSON at position {}",
            e.column().saturating_sub(1)
        ))
    })
}

/// Checks `body` against `fields` and returns its object on success.
pub fn check_object(body: Value, fields: &[F]) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    };
    let mut errs = Vec::new();
    check_map(&map, fields, "", &mut errs);
    if errs.is_empty() {
        Ok(map)
    } else {
        Err(ApiError::unprocessable(errs))
    }
}

fn check_map(map: &Map<String, Value>, fields: &[F], prefix: &str, errs: &mut Vec<String>) {
    for k in map.keys() {
        if !fields.iter().any(|f| f.name == k) {
            errs.push(format!("{prefix}property {k} should not exist"));
        }
    }
    for f in fields {
        let name = format!("{prefix}{}", f.name);
        match map.get(f.name) {
            None => {
                if f.required {
                    errs.push(format!("{name} should not be empty"));
                    errs.push(type_message(&name, f.ty));
                }
            }
            Some(v) => check_value(&name, f, v, errs),
        }
    }
}

fn type_message(name: &str, ty: Ty) -> String {
    match ty {
        Ty::Str | Ty::NStr => format!("{name} must be a string"),
        Ty::Bool => format!("{name} must be a boolean value"),
        Ty::Num => format!("{name} must be a number conforming to the specified constraints"),
        Ty::StrArray | Ty::Array | Ty::CustomFields => format!("{name} must be an array"),
        Ty::Email => format!("{name} must be an email"),
        Ty::IsoDate => format!("{name} must be a valid ISO 8601 date string"),
        Ty::DateOfBirth => format!("{name} must be a valid date"),
        Ty::DndSettings | Ty::InboundDnd => format!("{name} must be an object"),
        Ty::Any => format!("{name} is invalid"),
    }
}

fn check_value(name: &str, f: &F, v: &Value, errs: &mut Vec<String>) {
    let bad = |errs: &mut Vec<String>| errs.push(type_message(name, f.ty));
    match f.ty {
        Ty::Str => match v {
            Value::String(s) if f.required && s.trim().is_empty() => errs.push(format!("{name} should not be empty")),
            Value::String(_) => {}
            _ => bad(errs),
        },
        Ty::NStr => {
            if !(v.is_string() || v.is_null()) {
                bad(errs)
            }
        }
        Ty::Bool => {
            if !v.is_boolean() {
                bad(errs)
            }
        }
        Ty::Num => {
            if !v.is_number() {
                bad(errs)
            }
        }
        Ty::StrArray => match v {
            Value::Array(items) => {
                if items.iter().any(|i| !i.is_string()) {
                    errs.push(format!("each value in {name} must be a string"));
                }
            }
            _ => bad(errs),
        },
        Ty::Any => {}
        Ty::Array => {
            if !v.is_array() {
                bad(errs)
            }
        }
        Ty::Email => match v {
            Value::Null => {}
            Value::String(s) if s.is_empty() || looks_like_email(s) => {}
            _ => bad(errs),
        },
        Ty::IsoDate => match v {
            Value::String(s) if parse_iso(s).is_some() => {}
            _ => bad(errs),
        },
        Ty::DateOfBirth => match v {
            Value::Null => {}
            Value::String(s) if s.is_empty() || parse_birth_date(s).is_some() => {}
            _ => bad(errs),
        },
        Ty::DndSettings => match v {
            Value::Object(m) => {
                const CH: &[F] = &[
                    opt("Call", Ty::InboundDnd),
                    opt("Email", Ty::InboundDnd),
                    opt("SMS", Ty::InboundDnd),
                    opt("WhatsApp", Ty::InboundDnd),
                    opt("GMB", Ty::InboundDnd),
                    opt("FB", Ty::InboundDnd),
                ];
                for k in m.keys() {
                    if !CH.iter().any(|c| c.name == k) {
                        errs.push(format!("{name}.property {k} should not exist"));
                    }
                }
                for c in CH {
                    if let Some(s) = m.get(c.name) {
                        check_channel(
                            &format!("{name}.{}", c.name),
                            s,
                            &["active", "inactive", "permanent"],
                            true,
                            errs,
                        );
                    }
                }
            }
            _ => bad(errs),
        },
        Ty::InboundDnd => match v {
            Value::Object(m) => {
                for k in m.keys() {
                    if k != "all" {
                        errs.push(format!("{name}.property {k} should not exist"));
                    }
                }
                if let Some(all) = m.get("all") {
                    check_channel(&format!("{name}.all"), all, &["active", "inactive"], false, errs);
                }
            }
            _ => bad(errs),
        },
        Ty::CustomFields => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{name}.{i}.");
                    match item {
                        Value::Object(m) => {
                            // `field_value` is typed per custom field (string, number,
                            // array or file object), so only its presence is checked here.
                            check_map(
                                m,
                                &[opt("id", Ty::Str), opt("key", Ty::Str), opt("field_value", Ty::Any)],
                                &p,
                                errs,
                            );
                            if !m.contains_key("id") && !m.contains_key("key") {
                                errs.push(format!("{p}id should not be empty"));
                            }
                        }
                        _ => errs.push(format!("{name} must be an array of objects")),
                    }
                }
            }
            _ => bad(errs),
        },
    }
}

fn check_channel(name: &str, v: &Value, allowed: &[&str], with_code: bool, errs: &mut Vec<String>) {
    let Value::Object(m) = v else {
        errs.push(format!("{name} must be an object"));
        return;
    };
    for k in m.keys() {
        let known = k == "status" || k == "message" || (with_code && k == "code");
        if !known {
            errs.push(format!("{name}.property {k} should not exist"));
        }
    }
    match m.get("status").and_then(Value::as_str) {
        Some(s) if allowed.contains(&s) => {}
        _ => errs.push(format!(
            "{name}.status must be one of the following values: {}",
            allowed.join(", ")
        )),
    }
    for k in ["message", "code"] {
        if let Some(x) = m.get(k) {
            if !x.is_string() {
                errs.push(format!("{name}.{k} must be a string"));
            }
        }
    }
}

pub fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.starts_with('.')
                && domain.contains('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Accepts the formats listed for `dateOfBirth`: `YYYY/MM/DD`, `MM/DD/YYYY`, `YYYY-MM-DD`,
/// `MM-DD-YYYY`, `YYYY.MM.DD`, `MM.DD.YYYY`, `YYYY_MM_DD`, `MM_DD_YYYY`, plus a full ISO
/// timestamp (what GHL itself returns). Yields (year, month, day).
pub fn parse_birth_date(s: &str) -> Option<(i64, u32, u32)> {
    let s = s.trim();
    if s.len() > 10 {
        let ms = parse_iso(s)?;
        let (y, m, d) = crate::timefmt::civil_from_days(ms.div_euclid(86_400_000));
        return Some((y, m, d));
    }
    let sep = s.chars().find(|c| matches!(c, '/' | '-' | '.' | '_'))?;
    let parts: Vec<&str> = s.split(sep).collect();
    if parts.len() != 3 || !parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())) {
        return None;
    }
    let n = |p: &str| p.parse::<i64>().ok();
    let (y, m, d) = if parts[0].len() == 4 {
        (n(parts[0])?, n(parts[1])?, n(parts[2])?)
    } else if parts[2].len() == 4 {
        (n(parts[2])?, n(parts[0])?, n(parts[1])?)
    } else {
        return None;
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((y, m as u32, d as u32))
}

/// Checks query parameters against the allowed names; returns them as a map.
pub fn check_query(
    pairs: &[(String, String)],
    allowed: &[&str],
    required: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut errs = Vec::new();
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if allowed.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        } else {
            errs.push(format!("property {k} should not exist"));
        }
    }
    for r in required {
        if out.get(*r).is_none_or(|v| v.is_empty()) {
            errs.push(format!("{r} should not be empty"));
            errs.push(format!("{r} must be a string"));
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::unprocessable(errs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_and_missing_properties_are_listed() {
        let e = check_object(
            json!({"locationId": "x", "title": 5}),
            &[req("body", Ty::Str), opt("title", Ty::Str)],
        )
        .err()
        .map(|e| e.body["message"].clone());
        assert_eq!(
            e,
            Some(json!([
                "property locationId should not exist",
                "body should not be empty",
                "body must be a string",
                "title must be a string"
            ]))
        );
    }

    #[test]
    fn nested_dnd_and_custom_fields() {
        let fields = [
            opt("dndSettings", Ty::DndSettings),
            opt("customFields", Ty::CustomFields),
        ];
        assert!(check_object(
            json!({"dndSettings": {"SMS": {"status": "active", "code": "1"}},
                   "customFields": [{"id": "a", "field_value": 3}, {"key": "k", "field_value": ["x"]}]}),
            &fields
        )
        .is_ok());
        let e = check_object(
            json!({"dndSettings": {"Fax": {}, "SMS": {"status": "on"}},
                   "customFields": [{"value": "x"}]}),
            &fields,
        )
        .err()
        .map(|e| e.body["message"].clone());
        assert_eq!(
            e,
            Some(json!([
                "dndSettings.property Fax should not exist",
                "dndSettings.SMS.status must be one of the following values: active, inactive, permanent",
                "customFields.0.property value should not exist",
                "customFields.0.id should not be empty"
            ]))
        );
    }

    #[test]
    fn birth_dates() {
        assert_eq!(parse_birth_date("1990/09/25"), Some((1990, 9, 25)));
        assert_eq!(parse_birth_date("09-25-1990"), Some((1990, 9, 25)));
        assert_eq!(parse_birth_date("1990_09_25"), Some((1990, 9, 25)));
        assert_eq!(parse_birth_date("1990-09-25T00:00:00.000Z"), Some((1990, 9, 25)));
        assert_eq!(parse_birth_date("25/09/90"), None);
    }
}
