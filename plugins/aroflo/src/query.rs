//! GET query strings in AroFlo's language (reference §2.3) and the date formats it accepts.

use crate::sign::encode_component;

/// AroFlo's maximum (and default) page size.
pub const MAX_PAGE: u32 = 500;

/// One GET query, its pairs in the order they are sent (and signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(&'static str, String)>,
}

impl Query {
    pub fn zone(zone: &str) -> Self {
        Query {
            pairs: vec![("zone", zone.to_owned())],
        }
    }

    /// `and|field|op|value`; the leading `and` is mandatory even on the first clause.
    pub fn and_where(mut self, field: &str, op: &str, value: &str) -> Self {
        self.pairs.push(("where", format!("and|{field}|{op}|{value}")));
        self
    }

    /// `IN` with values separated by `*`.
    pub fn and_in(self, field: &str, values: &[String]) -> Self {
        let joined = values.join("*");
        self.and_where(field, "IN", &joined)
    }

    pub fn order(mut self, field: &str, ascending: bool) -> Self {
        let direction = if ascending { "asc" } else { "desc" };
        self.pairs.push(("order", format!("{field}|{direction}")));
        self
    }

    pub fn join(mut self, areas: &str) -> Self {
        self.pairs.push(("join", areas.to_owned()));
        self
    }

    pub fn page(mut self, page: u32, page_size: u32) -> Self {
        self.pairs.push(("page", page.max(1).to_string()));
        self.pairs.push(("pageSize", page_size.clamp(1, MAX_PAGE).to_string()));
        self
    }

    /// The exact query string sent and signed, without the leading `?`.
    pub fn encode(&self) -> String {
        self.pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", encode_component(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    milli: i64,
}

fn parts(ms: i64) -> Parts {
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    let rem = ms.rem_euclid(86_400_000);
    Parts {
        year,
        month,
        day,
        hour: rem / 3_600_000,
        minute: (rem / 60_000) % 60,
        second: (rem / 1000) % 60,
        milli: rem % 1000,
    }
}

/// `afdatetimeutc`: `2024-05-13T23:14:15.000Z`, as JavaScript's `toISOString()`.
pub fn header_timestamp(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.milli
    )
}

/// A WHERE value: `YYYY/MM/DD HH:mm:ss` in UTC (slashes, as the examples use).
pub fn where_datetime(ms: i64) -> String {
    let p = parts(ms);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    )
}

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses the date-times AroFlo returns and RFC 3339: `2018/06/25 10:55:18`,
/// `2018-06-21 10:59:01.8`, `2018-06-21T10:59:01Z`, or a bare date. Epoch milliseconds, UTC.
pub fn parse_datetime(value: &str) -> Option<i64> {
    let value = value.trim();
    let (date, rest) = match value.find([' ', 'T']) {
        Some(at) => (&value[..at], &value[at + 1..]),
        None => (value, ""),
    };
    let mut fields = date.split(['/', '-']);
    let year = number(fields.next()?)?;
    let month = number(fields.next()?)?;
    let day = number(fields.next()?)?;
    // Checked before any arithmetic: a year of 19 digits overflowed the day count (found by the
    // aroflo_envelope fuzz target).
    if fields.next().is_some() || !(1..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day)
    {
        return None;
    }
    let mut ms = days_from_civil(year, month as u32, day as u32) * 86_400_000;
    let clock = rest.trim_end_matches('Z');
    if !clock.is_empty() {
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut hms = hms.split(':');
        let hour = number(hms.next()?)?;
        let minute = number(hms.next()?)?;
        let second = hms.next().map_or(Some(0), number)?;
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let milli = if fraction.is_empty() {
            0
        } else {
            number(&fraction.chars().chain("000".chars()).take(3).collect::<String>())?
        };
        ms += hour * 3_600_000 + minute * 60_000 + second * 1000 + milli;
    }
    Some(ms)
}

/// RFC 3339 for `Record::updated_at`.
pub fn rfc3339(ms: i64) -> String {
    header_timestamp(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_out_of_range_are_refused_not_overflowed() {
        // The aroflo_envelope fuzz target's crash: a `lastupdateutc` with a 19-digit year.
        assert_eq!(
            parse_datetime("0000000000000000000002914329358867307369/01/10 0::02:03"),
            None
        );
        assert_eq!(parse_datetime("2914329358867307369/01/10"), None);
        assert_eq!(parse_datetime("0/01/10"), None);
        assert_eq!(parse_datetime("2026/4294967297/10"), None, "a month that wraps in u32");
        assert_eq!(parse_datetime("9999/12/31"), Some(253_402_214_400_000));
    }

    #[test]
    fn queries_encode_in_order_with_repeated_wheres() {
        let q = Query::zone("lastupdate")
            .and_where("zonename", "=", "tasks")
            .and_where("lastupdateutc", ">", "2020/11/01 00:00:00")
            .order("lastupdateutc", true)
            .page(2, 900);
        assert_eq!(
            q.encode(),
            "zone=lastupdate&where=and%7Czonename%7C%3D%7Ctasks\
             &where=and%7Clastupdateutc%7C%3E%7C2020%2F11%2F01%2000%3A00%3A00\
             &order=lastupdateutc%7Casc&page=2&pageSize=500"
        );
        let ids = ["a==".to_owned(), "b".to_owned()];
        assert_eq!(
            Query::zone("clients").and_in("clientid", &ids).encode(),
            "zone=clients&where=and%7Cclientid%7CIN%7Ca%3D%3D*b"
        );
    }

    #[test]
    fn dates_format_and_parse_in_every_shape_aroflo_uses() {
        let ms = 1_715_642_055_000;
        assert_eq!(header_timestamp(ms), "2024-05-13T23:14:15.000Z");
        assert_eq!(where_datetime(ms), "2024/05/13 23:14:15");
        assert_eq!(parse_datetime("2024/05/13 23:14:15"), Some(ms));
        assert_eq!(parse_datetime("2024-05-13 23:14:15.8"), Some(ms + 800));
        assert_eq!(parse_datetime("2024-05-13T23:14:15.000Z"), Some(ms));
        assert_eq!(parse_datetime("2024/05/13"), Some(ms - 83_655_000));
        assert_eq!(parse_datetime("Nov 14, 2018 2:56:20 PM"), None);
        assert_eq!(parse_datetime("2024/13/01"), None);
    }
}
