//! Change feeds over the contract's lists.
//!
//! [`read`]: a list ordered by `updated_at` then `id`, read with `updated_since` (inclusive) and
//! the API's page cursor. The stored cursor is the high-water mark (the last time delivered and
//! the ids delivered at that time, skipped when read again) plus the API cursor mid-listing.
//!
//! [`sweep`]: notes and milestones without a parent id. The contract lists them per contact only,
//! so a sweep walks the contacts a page per read and lists each one's changes since the last
//! sweep's start (less a margin for clock skew); what a sweep delivered inside that margin is
//! remembered so the next one does not deliver it again.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_abi::{Page, ReadPosition, ReadRequest, Record};

use crate::api;
use crate::client::Client;
use crate::error::MlofloError;
use crate::records::Kind;
use crate::to_record;

/// A sweep reads changes from this long before the previous sweep began.
const SWEEP_MARGIN_MS: i64 = 5 * 60_000;
/// Contacts per sweep page: each costs one list call of its own.
const SWEEP_CONTACTS: u32 = 20;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct FeedCursor {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    seen: Vec<String>,
    #[serde(default)]
    page: Option<String>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct SweepCursor {
    #[serde(default)]
    since_ms: Option<i64>,
    /// `(id, time)` delivered at or after `since_ms` by the previous sweep.
    #[serde(default)]
    seen: Vec<(String, i64)>,
    #[serde(default)]
    started_ms: Option<i64>,
    #[serde(default)]
    delivered: Vec<(String, i64)>,
    #[serde(default)]
    contacts_page: Option<String>,
}

fn parse_cursor<T: serde::de::DeserializeOwned + Default>(cursor: Option<&str>) -> Result<T, MlofloError> {
    match cursor {
        None => Ok(T::default()),
        Some(text) => {
            serde_json::from_str(text).map_err(|_| MlofloError::Input(format!("`{text}` is not an mloflo cursor")))
        }
    }
}

fn to_text<T: Serialize>(cursor: &T) -> Result<String, MlofloError> {
    serde_json::to_string(cursor).map_err(|e| MlofloError::Input(e.to_string()))
}

/// Epoch milliseconds of an RFC 3339 time (`Z` or an offset, optional fraction).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0, 4)?,
        num(5, 2)?,
        num(8, 2)?,
        num(11, 2)?,
        num(14, 2)?,
        num(17, 2)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        millis = format!("{:0<3}", &frac[..frac.len().min(3)]).parse::<i64>().ok()?;
    }
    let offset_min = match s.get(i..)? {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && matches!(&zone[..1], "+" | "-") && &zone[3..4] == ":" => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1, 2)? * 60 + num(i + 4, 2)?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + millis)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-01-02T03:04:05.678Z`.
pub fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

fn time_of(record: &Record) -> Result<i64, MlofloError> {
    record
        .updated_at
        .as_deref()
        .and_then(parse_time)
        .ok_or_else(|| MlofloError::Decode {
            status: 200,
            detail: format!("record {} has no valid change time", record.id),
        })
}

fn limit_of(request: &ReadRequest) -> u32 {
    request.limit.unwrap_or(api::DEFAULT_PAGE).clamp(1, api::MAX_PAGE)
}

fn list_records(
    client: &Client,
    kind: Kind,
    path: &str,
    pairs: &[(&str, String)],
) -> Result<(Vec<Record>, Option<String>), MlofloError> {
    let (items, next) = client.list(path, pairs)?;
    let records = items
        .into_iter()
        .map(|item| to_record(kind, item))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((records, next))
}

/// One page of a feed, from a cursor or in a window.
pub fn read(
    client: &Client,
    kind: Kind,
    path: &str,
    extra: &[(&str, String)],
    request: &ReadRequest,
) -> Result<Page, MlofloError> {
    let mut pairs = vec![
        (api::Q_LIMIT, limit_of(request).to_string()),
        (api::Q_INCLUDE_DELETED, "true".to_owned()),
    ];
    pairs.extend(extra.iter().cloned());
    match &request.position {
        ReadPosition::Cursor { cursor } => {
            let mut at: FeedCursor = parse_cursor(cursor.as_deref())?;
            let since_ms = match &at.since {
                Some(since) => {
                    pairs.push((api::Q_UPDATED_SINCE, since.clone()));
                    Some(parse_time(since).ok_or_else(|| MlofloError::Input(format!("bad cursor time {since}")))?)
                }
                None => None,
            };
            if let Some(page) = &at.page {
                pairs.push((api::Q_CURSOR, page.clone()));
            }
            let (listed, next) = list_records(client, kind, path, &pairs)?;
            let mut mark = since_ms;
            let mut records = Vec::with_capacity(listed.len());
            for record in listed {
                let time = time_of(&record)?;
                if since_ms == Some(time) && at.seen.contains(&record.id) {
                    continue;
                }
                match mark {
                    Some(m) if time < m => {}
                    Some(m) if time == m => at.seen.push(record.id.clone()),
                    _ => {
                        mark = Some(time);
                        at.since = record.updated_at.clone();
                        at.seen = vec![record.id.clone()];
                    }
                }
                records.push(record);
            }
            at.page = next;
            Ok(Page {
                records,
                has_more: at.page.is_some(),
                next: Some(to_text(&at)?),
            })
        }
        ReadPosition::Window { since, until, page } => {
            let until_ms = parse_time(until).ok_or_else(|| MlofloError::Input(format!("bad window end {until}")))?;
            pairs.push((api::Q_UPDATED_SINCE, since.clone()));
            if let Some(page) = page {
                pairs.push((api::Q_CURSOR, page.clone()));
            }
            let (listed, next) = list_records(client, kind, path, &pairs)?;
            let mut records = Vec::with_capacity(listed.len());
            let mut past_window = false;
            for record in listed {
                if time_of(&record)? >= until_ms {
                    past_window = true;
                    break;
                }
                records.push(record);
            }
            let next = if past_window { None } else { next };
            Ok(Page {
                records,
                has_more: next.is_some(),
                next,
            })
        }
    }
}

/// One page of a sweep over the contacts for their notes or milestones.
pub fn sweep(client: &Client, kind: Kind, request: &ReadRequest) -> Result<Page, MlofloError> {
    let (mut at, window) = match &request.position {
        ReadPosition::Cursor { cursor } => (parse_cursor::<SweepCursor>(cursor.as_deref())?, None),
        ReadPosition::Window { since, until, page } => {
            let bounds = (
                parse_time(since).ok_or_else(|| MlofloError::Input(format!("bad window start {since}")))?,
                parse_time(until).ok_or_else(|| MlofloError::Input(format!("bad window end {until}")))?,
            );
            let at = SweepCursor {
                since_ms: Some(bounds.0),
                contacts_page: page.clone(),
                ..SweepCursor::default()
            };
            (at, Some(bounds))
        }
    };
    let started = *at.started_ms.get_or_insert_with(|| client.now_ms());
    let mut contact_pairs = vec![(api::Q_LIMIT, SWEEP_CONTACTS.min(limit_of(request)).to_string())];
    if let Some(page) = &at.contacts_page {
        contact_pairs.push((api::Q_CURSOR, page.clone()));
    }
    let (contacts, next_contacts) = client.list(&api::contacts(), &contact_pairs)?;
    let mut records = Vec::new();
    for contact in contacts {
        let Some(contact_id) = contact
            .get(api::F_ID)
            .and_then(Value::as_str)
            .filter(|id| api::is_id(id))
        else {
            continue;
        };
        let path = match kind {
            Kind::Milestone => api::milestones_of(contact_id),
            _ => api::notes_of(contact_id),
        };
        let mut page: Option<String> = None;
        loop {
            // Paging through one contact's list, not retrying: each call asks for new items.
            let mut pairs = vec![
                (api::Q_LIMIT, api::MAX_PAGE.to_string()),
                (api::Q_INCLUDE_DELETED, "true".to_owned()),
            ];
            if let Some(since) = at.since_ms {
                pairs.push((api::Q_UPDATED_SINCE, format_time(since)));
            }
            if let Some(cursor) = &page {
                pairs.push((api::Q_CURSOR, cursor.clone()));
            }
            let (listed, next) = list_records(client, kind, &path, &pairs)?;
            for record in listed {
                let time = time_of(&record)?;
                let in_range = match window {
                    Some((from, until)) => time >= from && time < until,
                    None => at.since_ms.is_none_or(|s| time >= s),
                };
                let key = (record.id.clone(), time);
                if !in_range || at.seen.contains(&key) {
                    continue;
                }
                if time >= started - SWEEP_MARGIN_MS {
                    at.delivered.push(key);
                }
                records.push(record);
            }
            match next {
                Some(n) if page.as_ref() != Some(&n) => page = Some(n),
                _ => break,
            }
        }
    }
    match next_contacts {
        Some(next) => {
            at.contacts_page = Some(next.clone());
            let next = if window.is_some() { next } else { to_text(&at)? };
            Ok(Page {
                records,
                next: Some(next),
                has_more: true,
            })
        }
        None if window.is_some() => Ok(Page {
            records,
            next: None,
            has_more: false,
        }),
        None => {
            let since = started - SWEEP_MARGIN_MS;
            let done = SweepCursor {
                since_ms: Some(since),
                seen: std::mem::take(&mut at.delivered)
                    .into_iter()
                    .filter(|(_, t)| *t >= since)
                    .collect(),
                ..SweepCursor::default()
            };
            Ok(Page {
                records,
                next: Some(to_text(&done)?),
                has_more: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_format_round_trip() {
        let ms = parse_time("2026-03-04T05:06:07.891Z").expect("time");
        assert_eq!(format_time(ms), "2026-03-04T05:06:07.891Z");
        assert_eq!(parse_time("2026-03-04T05:06:07Z"), Some(ms - 891));
        assert_eq!(parse_time("2026-03-04T07:06:07+02:00"), Some(ms - 891));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "yesterday",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursors_refuse_what_they_did_not_write() {
        assert!(parse_cursor::<FeedCursor>(Some("nope")).is_err());
        assert_eq!(parse_cursor::<FeedCursor>(None).expect("empty"), FeedCursor::default());
    }
}
