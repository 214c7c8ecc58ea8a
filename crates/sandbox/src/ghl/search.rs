//! `POST /contacts/search`: filters (`{field, operator, value}` and AND/OR groups), sort, and
//! both page- and `searchAfter`-based paging (NOTES §2.7).

use super::error::ApiError;
use super::model::{normalize_phone, Contact, Store};
use super::validate::looks_like_email;
use crate::timefmt::parse_iso;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

/// Fields that may be filtered on, by kind.
const STRING_FIELDS: &[&str] = &[
    "id",
    "firstName",
    "lastName",
    "firstNameLowerCase",
    "lastNameLowerCase",
    "fullNameLowerCase",
    "companyName",
    "email",
    "phone",
    "type",
    "source",
    "assignedTo",
    "businessId",
    "address1",
    "city",
    "state",
    "country",
    "postalCode",
    "website",
    "timezone",
];
const DATE_FIELDS: &[&str] = &["dateAdded", "dateUpdated", "lastActivity", "dateOfBirth"];
const BOOL_FIELDS: &[&str] = &["dnd", "validEmail"];
const SORT_FIELDS: &[&str] = &[
    "dateAdded",
    "dateUpdated",
    "firstNameLowerCase",
    "lastNameLowerCase",
    "email",
];
/// Page-based paging stops here; beyond it only `searchAfter` works.
const PAGE_WINDOW: i64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Num(i64),
    Str(String),
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Num(n) => json!(n),
            Val::Str(s) => json!(s),
        }
    }

    fn from_json(v: &Value) -> Val {
        match v {
            Value::Number(n) => n.as_i64().map(Val::Num).unwrap_or(Val::Null),
            Value::String(s) => Val::Str(s.clone()),
            _ => Val::Null,
        }
    }
}

fn bad(trace: &str, msg: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        json!({"message": msg, "error": "Bad Request", "statusCode": 400, "traceId": trace}),
    )
}

fn string_field(c: &Contact, f: &str) -> Option<String> {
    match f {
        "id" => Some(c.id.clone()),
        "firstName" => c.first_name.clone(),
        "lastName" => c.last_name.clone(),
        "firstNameLowerCase" => c.first_name.as_ref().map(|s| s.to_lowercase()),
        "lastNameLowerCase" => c.last_name.as_ref().map(|s| s.to_lowercase()),
        "fullNameLowerCase" => c.name().map(|s| s.to_lowercase()),
        "companyName" => c.company_name.clone(),
        "email" => c.email.as_ref().map(|s| s.to_lowercase()),
        "phone" => c.phone.clone(),
        "type" => Some(c.contact_type.clone()),
        "source" => c.source.clone(),
        "assignedTo" => c.assigned_to.clone(),
        "businessId" => c.business_id.clone(),
        "address1" => c.address1.clone(),
        "city" => c.city.clone(),
        "state" => c.state.clone(),
        "country" => c.country.clone(),
        "postalCode" => c.postal_code.clone(),
        "website" => c.website.clone(),
        "timezone" => c.timezone.clone(),
        _ => None,
    }
}

fn date_field(c: &Contact, f: &str) -> Option<i64> {
    match f {
        "dateAdded" => Some(c.date_added),
        "dateUpdated" => Some(c.date_updated),
        "lastActivity" => c.last_activity,
        "dateOfBirth" => c
            .date_of_birth
            .map(|(y, m, d)| crate::timefmt::days_from_civil(y, m, d) * 86_400_000),
        _ => None,
    }
}

fn sort_value(c: &Contact, f: &str) -> Val {
    if DATE_FIELDS.contains(&f) {
        date_field(c, f).map(Val::Num).unwrap_or(Val::Null)
    } else {
        string_field(c, f).map(Val::Str).unwrap_or(Val::Null)
    }
}

/// A date filter value: ISO string or epoch milliseconds.
fn as_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_iso(s).or_else(|| s.parse().ok()),
        _ => None,
    }
}

fn values_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_lowercase)).collect(),
        Value::String(s) => vec![s.to_lowercase()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

/// Evaluates one filter (or group) against a contact.
fn matches(c: &Contact, filter: &Value, trace: &str) -> Result<bool, ApiError> {
    let Value::Object(f) = filter else {
        return Err(bad(trace, "Each filter must be an object".into()));
    };
    if let Some(group) = f.get("group") {
        let subs = f
            .get("filters")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(trace, "A filter group needs a filters array".into()))?;
        let mut results = Vec::with_capacity(subs.len());
        for s in subs {
            results.push(matches(c, s, trace)?);
        }
        return match group.as_str() {
            Some("AND") => Ok(results.iter().all(|r| *r)),
            Some("OR") => Ok(results.iter().any(|r| *r)),
            _ => Err(bad(trace, "group must be AND or OR".into())),
        };
    }
    let field = f.get("field").and_then(Value::as_str).unwrap_or_default();
    let op = f.get("operator").and_then(Value::as_str).unwrap_or_default();
    let value = f.get("value").cloned().unwrap_or(Value::Null);
    let needs_value = !matches!(op, "exists" | "not_exists");
    if needs_value && value.is_null() {
        return Err(bad(trace, format!("value is required for operator {op}")));
    }
    let negate = matches!(op, "not_eq" | "not_contains" | "not_exists");
    let base_op = match op {
        "eq" | "not_eq" => "eq",
        "contains" | "not_contains" => "contains",
        "exists" | "not_exists" => "exists",
        "range" => "range",
        _ => return Err(bad(trace, format!("Invalid operator {op}"))),
    };
    let result = if field == "tags" {
        let wanted = values_of(&value);
        match base_op {
            "eq" => wanted.iter().any(|w| c.tags.contains(w)),
            "contains" => wanted.iter().any(|w| c.tags.iter().any(|t| t.contains(w.as_str()))),
            "exists" => !c.tags.is_empty(),
            _ => return Err(bad(trace, format!("Operator {op} is not supported for tags"))),
        }
    } else if let Some(id) = field.strip_prefix("customFields.") {
        let cur = c.custom_fields.iter().find(|(i, _)| i == id).map(|(_, v)| v);
        match base_op {
            "exists" => cur.is_some(),
            "eq" => cur.is_some_and(|v| {
                let have = values_of(v);
                values_of(&value).iter().any(|w| have.contains(w))
            }),
            "contains" => cur.is_some_and(|v| {
                let have = values_of(v);
                values_of(&value)
                    .iter()
                    .any(|w| have.iter().any(|h| h.contains(w.as_str())))
            }),
            _ => match (cur.and_then(Value::as_f64), value.as_object()) {
                (Some(n), Some(r)) => in_range(n, r),
                _ => false,
            },
        }
    } else if DATE_FIELDS.contains(&field) {
        let cur = date_field(c, field);
        match base_op {
            "exists" => cur.is_some(),
            "eq" => cur.is_some() && cur == as_ms(&value),
            "range" => {
                let Some(r) = value.as_object() else {
                    return Err(bad(trace, "range needs an object value".into()));
                };
                let mut bounds = Map::new();
                for (k, v) in r {
                    let ms = as_ms(v).ok_or_else(|| bad(trace, format!("Invalid date {v}")))?;
                    bounds.insert(k.clone(), json!(ms));
                }
                cur.is_some_and(|ms| in_range(ms as f64, &bounds))
            }
            _ => return Err(bad(trace, format!("Operator {op} is not supported for {field}"))),
        }
    } else if BOOL_FIELDS.contains(&field) {
        let cur = match field {
            "dnd" => c.dnd,
            _ => c.email.as_deref().is_some_and(looks_like_email),
        };
        match base_op {
            "eq" => value.as_bool() == Some(cur),
            "exists" => true,
            _ => return Err(bad(trace, format!("Operator {op} is not supported for {field}"))),
        }
    } else if STRING_FIELDS.contains(&field) {
        let cur = string_field(c, field).map(|s| s.to_lowercase());
        let wanted: Vec<String> = values_of(&value)
            .into_iter()
            .map(|w| {
                if field == "phone" {
                    normalize_phone(&w).unwrap_or(w)
                } else {
                    w
                }
            })
            .collect();
        match base_op {
            "eq" => cur.as_ref().is_some_and(|s| wanted.contains(s)),
            "contains" => cur
                .as_ref()
                .is_some_and(|s| wanted.iter().any(|w| s.contains(w.as_str()))),
            "exists" => cur.is_some_and(|s| !s.is_empty()),
            _ => return Err(bad(trace, format!("Operator {op} is not supported for {field}"))),
        }
    } else {
        return Err(bad(trace, format!("Invalid field {field}")));
    };
    Ok(result != negate)
}

fn in_range(n: f64, r: &Map<String, Value>) -> bool {
    r.iter().all(|(k, v)| {
        let b = v.as_f64().unwrap_or(f64::NAN);
        match k.as_str() {
            "gte" => n >= b,
            "gt" => n > b,
            "lte" => n <= b,
            "lt" => n < b,
            _ => false,
        }
    })
}

/// Compares two sort keys; `desc[i]` flips field i. Missing values sort last either way.
fn cmp_keys(a: &[Val], b: &[Val], desc: &[bool]) -> Ordering {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = desc.get(i).copied().unwrap_or(false);
        let o = match (x, y) {
            (Val::Null, Val::Null) => Ordering::Equal,
            (Val::Null, _) => return Ordering::Greater,
            (_, Val::Null) => return Ordering::Less,
            (Val::Num(p), Val::Num(q)) => p.cmp(q),
            (Val::Str(p), Val::Str(q)) => p.cmp(q),
            (Val::Num(_), Val::Str(_)) => Ordering::Less,
            (Val::Str(_), Val::Num(_)) => Ordering::Greater,
        };
        let o = if d { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

pub fn run(st: &Store, m: &Map<String, Value>, trace: &str) -> Result<Value, ApiError> {
    let loc = m.get("locationId").and_then(Value::as_str).unwrap_or_default();
    let page_limit = m.get("pageLimit").and_then(Value::as_i64).unwrap_or(0);
    if !(1..=500).contains(&page_limit) {
        return Err(ApiError::unprocessable(vec![
            "pageLimit must not be greater than 500".into(),
            "pageLimit must not be less than 1".into(),
        ]));
    }
    if m.contains_key("page") && m.contains_key("searchAfter") {
        return Err(bad(trace, "page and searchAfter cannot be used together".into()));
    }
    if let Some(q) = m.get("query").and_then(Value::as_str) {
        if q.chars().count() > 75 {
            return Err(ApiError::unprocessable(vec![
                "query must be shorter than or equal to 75 characters".into(),
            ]));
        }
    }
    // Sort spec, then `id` ascending as the tie-breaker that makes cursors total.
    let mut fields: Vec<String> = Vec::new();
    let mut desc: Vec<bool> = Vec::new();
    for s in m.get("sort").and_then(Value::as_array).into_iter().flatten() {
        let f = s.get("field").and_then(Value::as_str).unwrap_or_default();
        if !SORT_FIELDS.contains(&f) {
            return Err(bad(trace, format!("Invalid sort field {f}")));
        }
        let d = match s.get("direction").and_then(Value::as_str) {
            Some("asc") | None => false,
            Some("desc") => true,
            Some(x) => return Err(bad(trace, format!("Invalid sort direction {x}"))),
        };
        fields.push(f.to_string());
        desc.push(d);
    }
    if fields.is_empty() {
        fields.push("dateAdded".into());
        desc.push(true);
    }
    let key = |c: &Contact| -> Vec<Val> {
        let mut k: Vec<Val> = fields.iter().map(|f| sort_value(c, f)).collect();
        k.push(Val::Str(c.id.clone()));
        k
    };
    let filters: Vec<Value> = m.get("filters").and_then(Value::as_array).cloned().unwrap_or_default();
    let query = m.get("query").and_then(Value::as_str).unwrap_or_default();
    let mut hits: Vec<(Vec<Val>, &Contact)> = Vec::new();
    for c in st.contacts.values().filter(|c| c.location_id == loc) {
        if !c.matches_query(query) {
            continue;
        }
        let mut ok = true;
        for f in &filters {
            if !matches(c, f, trace)? {
                ok = false;
                break;
            }
        }
        if ok {
            hits.push((key(c), c));
        }
    }
    hits.sort_by(|a, b| cmp_keys(&a.0, &b.0, &desc));
    let total = hits.len();
    let start = if let Some(after) = m.get("searchAfter").and_then(Value::as_array) {
        if after.len() != fields.len() + 1 {
            return Err(bad(trace, format!("searchAfter must have {} values", fields.len() + 1)));
        }
        let cursor: Vec<Val> = after.iter().map(Val::from_json).collect();
        hits.iter()
            .position(|(k, _)| cmp_keys(k, &cursor, &desc) == Ordering::Greater)
            .unwrap_or(total)
    } else {
        let page = m.get("page").and_then(Value::as_i64).unwrap_or(1).max(1);
        if page * page_limit > PAGE_WINDOW {
            return Err(bad(
                trace,
                "page-based pagination is limited to the first 10000 records; use searchAfter".into(),
            ));
        }
        ((page - 1) * page_limit) as usize
    };
    let contacts: Vec<Value> = hits
        .iter()
        .skip(start)
        .take(page_limit as usize)
        .map(|(k, c)| {
            let mut v = c.search_json();
            v["searchAfter"] = Value::Array(k.iter().map(Val::json).collect());
            v
        })
        .collect();
    Ok(json!({ "contacts": contacts, "total": total }))
}
