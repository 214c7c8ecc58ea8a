//! The project filters registered on every mapping's environment.
//!
//! Convention: `none` passes through every filter here (an absent optional field stays absent and
//! the target field is omitted or defaulted), an undefined value is an error (strict mode: a typo
//! must not become an empty string), and the filters that interpret text (phones, names, dates,
//! digits) treat a blank string as `none`, since sources send `""` for "not set".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use minijinja::value::{Rest, Serde, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// Lookup tables by name, values already JSON.
pub(super) type Tables = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

pub(super) const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d";

fn fail(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// The value as text, `None` for `none`; undefined, maps and lists are errors.
fn text(value: &Value, filter: &str) -> Result<Option<String>, Error> {
    match value.kind() {
        ValueKind::Undefined => Err(Error::new(
            ErrorKind::UndefinedError,
            format!("`{filter}` was given an undefined value"),
        )),
        ValueKind::None => Ok(None),
        ValueKind::String => Ok(value.as_str().map(str::to_owned)),
        ValueKind::Number | ValueKind::Bool => Ok(Some(value.to_string())),
        kind => Err(fail(format!("`{filter}` expects text, got a {kind}"))),
    }
}

/// Like [`text`], with blank strings read as `none`.
fn non_blank(value: &Value, filter: &str) -> Result<Option<String>, Error> {
    Ok(text(value, filter)?.filter(|s| !s.trim().is_empty()))
}

fn opt(value: Option<String>) -> Value {
    value.map_or(Value::from(()), Value::from)
}

pub(super) fn parse_region(region: &str) -> Result<phonenumber::country::Id, String> {
    region
        .trim()
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| format!("`{region}` is not a region code (ISO 3166 two letters, like \"PT\", \"AU\" or \"US\")"))
}

/// A phone number in E.164 (`+351912345678`). Local formats need a region; a number written
/// with `+` or an international prefix carries its own.
pub(super) fn e164(number: &str, region: Option<phonenumber::country::Id>) -> Result<String, String> {
    let trimmed = number.trim();
    if region.is_none() && !trimmed.starts_with('+') {
        return Err(format!(
            "`{trimmed}` has no country code and no region was given: use e164(\"PT\") or set default_region"
        ));
    }
    let parsed = phonenumber::parse(region, trimmed).map_err(|e| format!("`{trimmed}` is not a phone number: {e}"))?;
    if !phonenumber::is_valid(&parsed) {
        let region = region.map_or(String::new(), |r| format!(" for region {}", r.as_ref()));
        return Err(format!("`{trimmed}` is not a valid phone number{region}"));
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// Splits a full name: the last word is the last name, the words before it the first name.
/// One word is a first name only. Whitespace runs collapse; accents are kept as written.
pub(super) fn split_name(full: &str) -> (Option<String>, Option<String>) {
    let words: Vec<&str> = full.split_whitespace().collect();
    match words.split_last() {
        None => (None, None),
        Some((only, [])) => (Some((*only).to_owned()), None),
        Some((last, rest)) => (Some(rest.join(" ")), Some((*last).to_owned())),
    }
}

enum Moment {
    Zoned(DateTime<chrono::FixedOffset>),
    Naive(NaiveDateTime),
}

fn parse_moment(s: &str) -> Option<Moment> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(Moment::Zoned(dt));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, format) {
            return Some(Moment::Naive(dt));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| Moment::Naive(d.and_time(chrono::NaiveTime::MIN)))
}

/// Whether a strftime format is well formed (checked at compile time for literal formats).
pub(super) fn valid_date_format(format: &str) -> bool {
    !StrftimeItems::new(format).any(|item| matches!(item, Item::Error))
}

pub(super) fn format_date(value: &str, format: &str) -> Result<String, String> {
    let moment = parse_moment(value)
        .ok_or_else(|| format!("`{value}` is not a date (expected RFC 3339, YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"))?;
    let mut out = String::new();
    // chrono reports a bad specifier, or an offset asked of a time without one, as a fmt::Error
    // (to_string() would panic on it).
    let written = match &moment {
        Moment::Zoned(dt) => write!(out, "{}", dt.format(format)),
        Moment::Naive(dt) => write!(out, "{}", dt.format(format)),
    };
    written.map_err(|_| match moment {
        Moment::Naive(_) => format!("cannot format `{value}` with `{format}` (a time without offset has no zone)"),
        Moment::Zoned(_) => format!("cannot format `{value}` with `{format}`"),
    })?;
    Ok(out)
}

fn lookup(tables: &Tables, value: &Value, table: &str, default: &[Value]) -> Result<Value, Error> {
    if default.len() > 1 {
        return Err(fail("`lookup` takes a table name and at most one default"));
    }
    let rows = tables
        .get(table)
        .ok_or_else(|| fail(format!("there is no lookup table `{table}`")))?;
    let Some(key) = text(value, "lookup")? else {
        return Ok(default.first().cloned().unwrap_or(Value::from(())));
    };
    match rows.get(&key) {
        Some(found) => Ok(Value::from(Serde(found))),
        None => match default.first() {
            Some(fallback) => Ok(fallback.clone()),
            None => {
                let mut keys: Vec<&str> = rows.keys().map(String::as_str).take(10).collect();
                if rows.len() > keys.len() {
                    keys.push("…");
                }
                Err(fail(format!(
                    "`{key}` is not a key of lookup table `{table}` (keys: {}); add it or give a default: lookup(\"{table}\", \"...\")",
                    keys.join(", ")
                )))
            }
        },
    }
}

/// Registers the project filters. `none` in, `none` out (see the module comment).
pub(super) fn register(
    env: &mut Environment<'static>,
    tables: Arc<Tables>,
    default_region: Option<phonenumber::country::Id>,
) {
    env.add_filter(
        "e164",
        move |value: Value, region: Option<String>| -> Result<Value, Error> {
            let Some(number) = non_blank(&value, "e164")? else {
                return Ok(Value::from(()));
            };
            let region = match region {
                Some(r) => Some(parse_region(&r).map_err(fail)?),
                None => default_region,
            };
            e164(&number, region).map(Value::from).map_err(fail)
        },
    );
    env.add_filter("first_name", |value: Value| -> Result<Value, Error> {
        Ok(opt(non_blank(&value, "first_name")?.and_then(|n| split_name(&n).0)))
    });
    env.add_filter("last_name", |value: Value| -> Result<Value, Error> {
        Ok(opt(non_blank(&value, "last_name")?.and_then(|n| split_name(&n).1)))
    });
    env.add_filter("join_name", |value: Value, other: Value| -> Result<Value, Error> {
        let parts = [non_blank(&value, "join_name")?, non_blank(&other, "join_name")?];
        let words: Vec<&str> = parts.iter().flatten().flat_map(|p| p.split_whitespace()).collect();
        Ok(opt((!words.is_empty()).then(|| words.join(" "))))
    });
    env.add_filter("date", |value: Value, format: Option<String>| -> Result<Value, Error> {
        let Some(date) = non_blank(&value, "date")? else {
            return Ok(Value::from(()));
        };
        format_date(&date, format.as_deref().unwrap_or(DEFAULT_DATE_FORMAT))
            .map(Value::from)
            .map_err(fail)
    });
    env.add_filter("digits", |value: Value| -> Result<Value, Error> {
        let digits = non_blank(&value, "digits")?.map(|s| s.chars().filter(char::is_ascii_digit).collect::<String>());
        Ok(opt(digits.filter(|d| !d.is_empty())))
    });
    env.add_filter(
        "lookup",
        move |value: Value, table: String, default: Rest<Value>| -> Result<Value, Error> {
            lookup(&tables, &value, &table, &default)
        },
    );
    // The builtins would print `none` as "none"; these keep it absent.
    env.add_filter("trim", |value: Value, chars: Option<String>| -> Result<Value, Error> {
        Ok(opt(text(&value, "trim")?.map(|s| match &chars {
            Some(chars) => s.trim_matches(|c| chars.contains(c)).to_owned(),
            None => s.trim().to_owned(),
        })))
    });
    env.add_filter("lower", |value: Value| -> Result<Value, Error> {
        Ok(opt(text(&value, "lower")?.map(|s| s.to_lowercase())))
    });
    env.add_filter("upper", |value: Value| -> Result<Value, Error> {
        Ok(opt(text(&value, "upper")?.map(|s| s.to_uppercase())))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: &str) -> Option<phonenumber::country::Id> {
        Some(parse_region(r).expect("region"))
    }

    #[test]
    fn names_split_on_the_last_word() {
        assert_eq!(
            split_name("  João   Maria da  Silva "),
            (Some("João Maria da".into()), Some("Silva".into()))
        );
        assert_eq!(split_name("Zoë"), (Some("Zoë".into()), None));
        assert_eq!(
            split_name("Ana Conceição"),
            (Some("Ana".into()), Some("Conceição".into()))
        );
        assert_eq!(split_name(" \t "), (None, None));
        assert_eq!(split_name(""), (None, None));
    }

    #[test]
    fn phones_in_local_and_international_formats() {
        assert_eq!(e164("912 345 678", region("PT")).as_deref(), Ok("+351912345678"));
        assert_eq!(e164("00351 912 345 678", region("PT")).as_deref(), Ok("+351912345678"));
        assert_eq!(e164("0412 345 678", region("au")).as_deref(), Ok("+61412345678"));
        assert_eq!(e164("(02) 9876 5432", region("AU")).as_deref(), Ok("+61298765432"));
        assert_eq!(e164("(415) 555-2671", region("US")).as_deref(), Ok("+14155552671"));
        // A number with its own country code wins over the region.
        assert_eq!(e164("+61 412 345 678", region("PT")).as_deref(), Ok("+61412345678"));
        assert_eq!(e164("+351912345678", None).as_deref(), Ok("+351912345678"));
    }

    #[test]
    fn phone_errors_say_why() {
        let err = e164("12", region("PT")).unwrap_err();
        assert!(err.contains("`12`"), "{err}");
        let err = e164("912 345 678", None).unwrap_err();
        assert!(err.contains("no region"), "{err}");
        // Right length, impossible prefix in Portugal.
        let err = e164("512 345 678", region("PT")).unwrap_err();
        assert!(err.contains("not a valid phone number for region PT"), "{err}");
        assert!(parse_region("XX").is_err());
        assert!(parse_region("Portugal").is_err());
    }

    #[test]
    fn dates_parse_three_shapes() {
        assert_eq!(format_date("2026-03-04", "%d/%m/%Y").as_deref(), Ok("04/03/2026"));
        assert_eq!(
            format_date("2026-03-04 13:05:00", "%Y-%m-%dT%H:%M").as_deref(),
            Ok("2026-03-04T13:05")
        );
        assert_eq!(
            format_date("2026-03-04T13:05:00+01:00", "%H:%M %:z").as_deref(),
            Ok("13:05 +01:00")
        );
        assert!(format_date("2026-03-04", "%z").is_err());
        assert!(format_date("04/03/2026", "%Y").is_err());
        assert!(valid_date_format("%Y-%m-%d"));
        assert!(!valid_date_format("%Y-%Q"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Numbers valid in their region by construction (PT mobiles, AU mobiles, US numbers
        /// outside the reserved N11 and 555 blocks), written the ways sources write them.
        fn local_numbers() -> impl Strategy<Value = (&'static str, String)> {
            let pt = "9[1236][0-9]{7}".prop_map(|n| ("PT", n));
            let au = "04[0-3][0-9]{7}".prop_map(|n| ("AU", n));
            let us = "[2-9][02-9][0-9][2-9][02-9][0-9]{5}".prop_map(|n| ("US", n));
            (
                prop_oneof![pt, au, us],
                prop::sample::select(vec!["", " ", "-", ".", "  "]),
            )
                .prop_map(|((region, digits), sep)| {
                    let (a, b) = digits.split_at(3);
                    (region, format!("{a}{sep}{b}"))
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn e164_is_idempotent((code, number) in local_numbers()) {
                let formatted = e164(&number, region(code));
                // US numbers can still land on unassigned area codes; those are refused, not mangled.
                prop_assume!(code != "US" || formatted.is_ok());
                let formatted = formatted.map_err(TestCaseError::fail)?;
                prop_assert!(formatted.starts_with('+') && formatted[1..].bytes().all(|b| b.is_ascii_digit()), "{}", formatted);
                prop_assert_eq!(e164(&formatted, region(code)), Ok(formatted.clone()));
                prop_assert_eq!(e164(&formatted, None), Ok(formatted.clone()));
                // Any region: the number's own country code wins.
                prop_assert_eq!(e164(&formatted, region("PT")), Ok(formatted.clone()));
            }

            #[test]
            fn e164_never_panics(number in "(\\PC|[0-9+() -]){0,24}", code in prop::sample::select(vec!["PT", "AU", "US", "GB"])) {
                if let Ok(formatted) = e164(&number, region(code)) {
                    prop_assert_eq!(e164(&formatted, None), Ok(formatted.clone()));
                }
            }

            #[test]
            fn dates_never_panic(value in "(\\PC|[0-9:T+ -]){0,32}", format in "(%[a-zA-Z:.#0-9-]|\\PC){0,8}") {
                let _ = format_date(&value, &format);
            }

            #[test]
            fn a_day_formatted_as_a_day_is_itself(day in "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])") {
                prop_assert_eq!(format_date(&day, DEFAULT_DATE_FORMAT), Ok(day.clone()));
                prop_assert_eq!(format_date(&format!("{day}T10:00:00+01:00"), DEFAULT_DATE_FORMAT), Ok(day));
            }
        }
    }
}
