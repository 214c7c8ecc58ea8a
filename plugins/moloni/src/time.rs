//! Moloni's datetime format (`2025-09-12T15:29:55+0100`) to and from epoch milliseconds.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

fn number(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DDTHH:MM:SS` followed by `Z`, `±HHMM`, `±HH:MM` or nothing (UTC), and the
/// `YYYY-MM-DD HH:MM:SS` and bare `YYYY-MM-DD` forms. Fractions of a second are ignored.
pub fn parse_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let date = text.get(0..10)?;
    let (y, m, d) = (
        number(date.get(0..4)?)?,
        number(date.get(5..7)?)?,
        number(date.get(8..10)?)?,
    );
    if date.as_bytes().get(4) != Some(&b'-')
        || date.as_bytes().get(7) != Some(&b'-')
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(days * 86_400_000);
    }
    if !(rest.starts_with('T') || rest.starts_with(' ')) {
        return None;
    }
    let clock = rest.get(1..9)?;
    let (hh, mm, ss) = (
        number(clock.get(0..2)?)?,
        number(clock.get(3..5)?)?,
        number(clock.get(6..8)?)?,
    );
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut zone = &rest[9..];
    if let Some(after) = zone.strip_prefix('.') {
        zone = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset_s = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 {
                return None;
            }
            sign * (number(&digits[0..2])? * 3600 + number(&digits[2..4])? * 60)
        }
    };
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss - offset_s) * 1000)
}

fn parts(ms: i64) -> (i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    (y, m, d, t / 3600, t % 3600 / 60, t % 60)
}

/// The form Moloni's `lastmodified` parameter takes: `2026-01-01T00:00:00+0000`.
pub fn moloni(ms: i64) -> String {
    let (y, m, d, hh, mm, ss) = parts(ms);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+0000")
}

/// RFC 3339 in UTC, for `Record::updated_at`.
pub fn rfc3339(ms: i64) -> String {
    let (y, m, d, hh, mm, ss) = parts(ms);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moloni_offsets_are_applied() {
        let lisbon_summer = parse_ms("2025-09-12T15:29:55+0100");
        assert_eq!(lisbon_summer, parse_ms("2025-09-12T14:29:55Z"));
        assert_eq!(lisbon_summer.map(rfc3339).as_deref(), Some("2025-09-12T14:29:55Z"));
        assert_eq!(parse_ms("2026-01-01 00:00:00"), parse_ms("2026-01-01T00:00:00+00:00"));
        assert_eq!(
            parse_ms("2026-01-01").map(moloni).as_deref(),
            Some("2026-01-01T00:00:00+0000")
        );
        assert_eq!(parse_ms("1970-01-01T00:00:00+0000"), Some(0));
        for bad in [
            "",
            "2026-13-01",
            "yesterday",
            "2026-01-01T25:00:00Z",
            "2026-01-01T10:00:00+01",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }
}
