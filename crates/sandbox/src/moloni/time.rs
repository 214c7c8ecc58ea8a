//! Moloni's datetimes: Lisbon local time with its offset (`2025-09-12T15:29:55+0100`).

use crate::timefmt::{civil_from_days, days_from_civil};

const HOUR: i64 = 3_600_000;

/// The last Sunday of `month` (March or October) at 01:00 UTC, when the EU switches clocks.
fn switch_ms(year: i64, month: u32) -> i64 {
    let last_day = 31;
    let days = days_from_civil(year, month, last_day);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday is (days + 4) mod 7.
    let weekday = (days + 4).rem_euclid(7);
    (days - weekday) * 86_400_000 + HOUR
}

fn lisbon_offset_ms(ms: i64) -> i64 {
    let (year, _, _) = civil_from_days(ms.div_euclid(86_400_000));
    if ms >= switch_ms(year, 3) && ms < switch_ms(year, 10) {
        HOUR
    } else {
        0
    }
}

/// `ms` as Moloni prints it.
pub fn lisbon(ms: i64) -> String {
    let offset = lisbon_offset_ms(ms);
    let local = (ms + offset).div_euclid(1000);
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let t = local.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+{:02}00",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        offset / HOUR
    )
}

fn num(s: Option<&str>) -> Option<i64> {
    let s = s?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Accepts `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` (Lisbon time, as the web app shows it) and ISO 8601
/// with `Z`, `±HHMM` or `±HH:MM`.
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    let (y, m, d) = (num(text.get(0..4))?, num(text.get(5..7))?, num(text.get(8..10))?);
    if text.get(4..5) != Some("-") || text.get(7..8) != Some("-") || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    let rest = text.get(10..)?;
    if rest.is_empty() {
        let midnight = days * 86_400_000;
        return Some(midnight - lisbon_offset_ms(midnight));
    }
    let sep = rest.get(0..1)?;
    if sep != "T" && sep != " " {
        return None;
    }
    let (hh, mm, ss) = (num(rest.get(1..3))?, num(rest.get(4..6))?, num(rest.get(7..9))?);
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let local = (days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000;
    let zone = rest.get(9..)?;
    let offset = match zone {
        "" => lisbon_offset_ms(local),
        "Z" => 0,
        _ => {
            let sign = match zone.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 {
                return None;
            }
            sign * (num(digits.get(0..2))? * HOUR + num(digits.get(2..4))? * 60_000)
        }
    };
    Some(local - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lisbon_time_follows_summer_time() {
        let summer = parse("2025-09-12T14:29:55Z").unwrap_or_default();
        assert_eq!(lisbon(summer), "2025-09-12T15:29:55+0100");
        let winter = parse("2026-01-15T10:00:00Z").unwrap_or_default();
        assert_eq!(lisbon(winter), "2026-01-15T10:00:00+0000");
        assert_eq!(parse("2025-09-12T15:29:55+0100"), Some(summer));
        assert_eq!(parse("2025-09-12 15:29:55"), Some(summer));
        assert_eq!(
            parse("2026-03-29T00:59:59Z").map(lisbon).as_deref(),
            Some("2026-03-29T00:59:59+0000")
        );
        assert_eq!(
            parse("2026-03-29T01:00:00Z").map(lisbon).as_deref(),
            Some("2026-03-29T02:00:00+0100")
        );
        assert_eq!(parse("not a date"), None);
        assert_eq!(parse("2026-02-30T10:00:00+01"), None);
    }
}
