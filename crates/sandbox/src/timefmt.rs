//! Wall-clock helpers: ISO-8601 with milliseconds (the format every emulated API uses) without a
//! date-time dependency, plus a clock whose readings never repeat so `dateUpdated` orders writes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2021-07-02T05:18:26.704Z`
pub fn iso_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, (rem / 60_000) % 60, (rem / 1000) % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `2021-07-16 11:00:00`, the style GHL uses for appointment times.
pub fn space_datetime(ms: i64) -> String {
    let iso = iso_ms(ms);
    format!("{} {}", &iso[..10], &iso[11..19])
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DD` optionally followed by `THH:MM[:SS[.fff]]` and `Z` or `±HH:MM`.
/// Returns epoch milliseconds, or `None` for anything else.
pub fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let mut parts = date.split('-');
    let y = digits(parts.next()?)?;
    let m = digits(parts.next()?)? as u32;
    let d = digits(parts.next()?)? as u32;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    // Split off the zone designator.
    let (clock, offset_ms) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let mut zp = z[1..].split(':');
        let zh = digits(zp.next()?)?;
        let zm = zp.next().map(digits).unwrap_or(Some(0))?;
        (c, sign * (zh * 3_600_000 + zm * 60_000))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let mut hp = hms.split(':');
    let h = digits(hp.next()?)?;
    let mi = digits(hp.next()?)?;
    let sec = hp.next().map(digits).unwrap_or(Some(0))?;
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let milli = match frac {
        Some(f) => {
            let f3: String = f.chars().chain("000".chars()).take(3).collect();
            digits(&f3)?
        }
        None => 0,
    };
    ms += h * 3_600_000 + mi * 60_000 + sec * 1000 + milli;
    Some(ms - offset_ms)
}

/// A clock whose readings strictly increase, so two writes in the same millisecond still get
/// distinct, ordered `dateUpdated` values (sync clients page on them).
#[derive(Debug, Default)]
pub struct MonotonicClock {
    last: AtomicI64,
}

impl MonotonicClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn now(&self) -> i64 {
        let wall = now_ms();
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let next = wall.max(prev + 1);
            match self
                .last
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let ms = 1_625_203_106_704;
        assert_eq!(iso_ms(ms), "2021-07-02T05:18:26.704Z");
        assert_eq!(parse_iso("2021-07-02T05:18:26.704Z"), Some(ms));
        assert_eq!(
            parse_iso("2021-06-23T03:30:00+01:00"),
            parse_iso("2021-06-23T02:30:00Z")
        );
        assert_eq!(parse_iso("1990-09-25"), Some(654_220_800_000));
        assert_eq!(parse_iso("not a date"), None);
        assert_eq!(space_datetime(ms), "2021-07-02 05:18:26");
    }

    #[test]
    fn clock_is_strictly_increasing() {
        let c = MonotonicClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
    }
}
