//! Alert decisions: from what the host sees now and the incidents already open, which incidents
//! open and which resolve. Pure: the host gathers the [`Snapshot`], sends the messages, and
//! records an incident in the store (`alerts` table) only once the receiver accepted it.
//!
//! Incidents, one key each:
//! * `reconnect:<connector>`: the connector's credentials were refused. Either its token state
//!   says so (GHL's needs-reconnect marker, as `tether status` shows it), or a flow writing to it
//!   is paused since its last delivery (the scheduler's `paused:` run error).
//! * `dead_letters:<flow>`: more dead letters than the threshold.
//! * `stalled:<flow>`: a polling or scheduled flow whose last successful run is older than
//!   max(stall_after, 3 × its interval), or rows due for longer than stall_after with no
//!   delivery finished meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::flow::{Flow, Trigger};
use crate::scheduler::PAUSED_PREFIX;

/// A connector whose token state the host can see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorHealth {
    pub name: String,
    /// Why it needs reconnecting and what to do, when it does.
    pub needs_reconnect: Option<String>,
}

/// One flow as the store and its definition show it now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowHealth {
    pub name: String,
    pub target_connector: String,
    /// How often its trigger runs (poll interval, cron period); None for webhook- or
    /// backfill-driven flows, which have no run to miss.
    pub interval_ms: Option<i64>,
    /// When its trigger last ran without error.
    pub last_ok_at: Option<i64>,
    /// The delivery pause (target refused its credentials) still in force, with its reason.
    pub paused: Option<String>,
    pub dead: i64,
    /// Rows whose time has come and that are not delivered yet.
    pub due: i64,
    /// The earliest due time among those rows.
    pub oldest_due_at: Option<i64>,
    /// When a row of the flow was last finished (delivered or dead).
    pub last_finished_at: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub now_ms: i64,
    /// When this host began checking: a flow that never ran is measured from here.
    pub since_ms: i64,
    pub connectors: Vec<ConnectorHealth>,
    pub flows: Vec<FlowHealth>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub dead_letters_over: i64,
    pub stall_after_ms: i64,
}

/// An incident recorded as open (its message was accepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenIncident {
    pub key: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Open { key: String, text: String },
    Resolve { key: String, text: String },
}

impl Transition {
    pub fn key(&self) -> &str {
        match self {
            Transition::Open { key, .. } | Transition::Resolve { key, .. } => key,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Transition::Open { text, .. } | Transition::Resolve { text, .. } => text,
        }
    }
}

/// The incidents that hold in `snapshot`, by key, with their message.
pub fn incidents(snapshot: &Snapshot, thresholds: Thresholds) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let now = snapshot.now_ms;
    for connector in &snapshot.connectors {
        if let Some(why) = &connector.needs_reconnect {
            out.insert(
                format!("reconnect:{}", connector.name),
                format!("Tether: connector `{}` needs reconnecting: {why}", connector.name),
            );
        }
    }
    // Flows paused by the same connector are one incident: the connector's.
    let mut paused: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for flow in &snapshot.flows {
        if let Some(why) = &flow.paused {
            paused
                .entry(&flow.target_connector)
                .or_default()
                .push((&flow.name, why));
        }
    }
    for (connector, flows) in paused {
        let key = format!("reconnect:{connector}");
        if out.contains_key(&key) {
            continue;
        }
        let names: Vec<String> = flows.iter().map(|(f, _)| format!("`{f}`")).collect();
        out.insert(
            key,
            format!(
                "Tether: connector `{connector}` refused its credentials and needs reconnecting; paused flow(s) {}: {}",
                names.join(", "),
                flows[0].1
            ),
        );
    }
    for flow in &snapshot.flows {
        if flow.dead > thresholds.dead_letters_over {
            out.insert(
                format!("dead_letters:{}", flow.name),
                format!(
                    "Tether: flow `{}` has {} dead letters (more than {}); see `tether dlq list --flow {}`",
                    flow.name, flow.dead, thresholds.dead_letters_over, flow.name
                ),
            );
        }
        if let Some(why) = stalled(flow, snapshot, thresholds.stall_after_ms, now) {
            out.insert(
                format!("stalled:{}", flow.name),
                format!("Tether: flow `{}` is stalled: {why}", flow.name),
            );
        }
    }
    out
}

fn stalled(flow: &FlowHealth, snapshot: &Snapshot, stall_after_ms: i64, now: i64) -> Option<String> {
    if let Some(interval) = flow.interval_ms {
        let limit = stall_after_ms.max(interval.saturating_mul(3));
        let since = flow.last_ok_at.unwrap_or(snapshot.since_ms);
        if now - since > limit {
            return Some(match flow.last_ok_at {
                Some(_) => format!(
                    "no successful run for {} (expected every {})",
                    human(now - since),
                    human(interval)
                ),
                None => format!(
                    "no successful run in {} since checks began (expected every {})",
                    human(now - since),
                    human(interval)
                ),
            });
        }
    }
    let oldest = flow.oldest_due_at.filter(|_| flow.due > 0)?;
    let waiting = now - oldest;
    let quiet = flow.last_finished_at.is_none_or(|at| now - at > stall_after_ms);
    // A paused flow is the connector's incident, not a stall.
    (flow.paused.is_none() && waiting > stall_after_ms && quiet).then(|| {
        format!(
            "{} row(s) due, the oldest for {}, and no delivery finished in that time",
            flow.due,
            human(waiting)
        )
    })
}

/// The delivery pause still in force for a flow, from its last run error: the scheduler records
/// a pause as a run error starting with [`PAUSED_PREFIX`]; it holds until a row of the flow
/// finishes after it (the target took a write again, or the user acted on the rows).
pub fn pause_in_force(
    last_error: Option<&str>,
    last_error_at: Option<i64>,
    last_finished_at: Option<i64>,
) -> Option<String> {
    let reason = last_error?.strip_prefix(PAUSED_PREFIX)?;
    (last_error_at? > last_finished_at.unwrap_or(i64::MIN)).then(|| reason.to_owned())
}

/// What to send: incidents that hold and are not open yet, and open ones that no longer hold.
pub fn decide(snapshot: &Snapshot, thresholds: Thresholds, open: &[OpenIncident]) -> Vec<Transition> {
    let now = incidents(snapshot, thresholds);
    let mut out = Vec::new();
    for incident in open {
        if !now.contains_key(&incident.key) {
            out.push(Transition::Resolve {
                key: incident.key.clone(),
                text: resolved_text(&incident.key),
            });
        }
    }
    for (key, text) in now {
        if !open.iter().any(|o| o.key == key) {
            out.push(Transition::Open { key, text });
        }
    }
    out
}

fn resolved_text(key: &str) -> String {
    match key.split_once(':') {
        Some(("reconnect", connector)) => format!("Resolved: connector `{connector}` works again"),
        Some(("dead_letters", flow)) => format!("Resolved: flow `{flow}` is back within its dead-letter threshold"),
        Some(("stalled", flow)) => format!("Resolved: flow `{flow}` is making progress again"),
        _ => format!("Resolved: {key}"),
    }
}

/// How often a flow's trigger runs: its poll interval, or the gap between its next two cron
/// times after `now_ms`. None when it has no runs to miss.
pub fn trigger_interval_ms(flow: &Flow, now_ms: i64) -> Option<i64> {
    if let Some(every) = flow.poll_every() {
        return i64::try_from(every.as_millis()).ok();
    }
    let Trigger::Schedule { cron } = &flow.trigger else {
        return None;
    };
    let cron: croner::Cron = cron.parse().ok()?;
    let now = chrono::DateTime::from_timestamp_millis(now_ms)?;
    let first = cron.find_next_occurrence(&now, false).ok()?;
    let second = cron.find_next_occurrence(&first, false).ok()?;
    Some((second - first).num_milliseconds())
}

/// `1h 5m`, `40s`: a duration for a message.
fn human(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const T: Thresholds = Thresholds {
        dead_letters_over: 10,
        stall_after_ms: 15 * MIN,
    };
    const NOW: i64 = 1_000 * MIN;

    fn flow(name: &str) -> FlowHealth {
        FlowHealth {
            name: name.into(),
            target_connector: "ghl".into(),
            ..FlowHealth::default()
        }
    }

    fn snapshot(flows: Vec<FlowHealth>, connectors: Vec<ConnectorHealth>) -> Snapshot {
        Snapshot {
            now_ms: NOW,
            since_ms: NOW - 60 * MIN,
            connectors,
            flows,
        }
    }

    fn open(keys: &[&str]) -> Vec<OpenIncident> {
        keys.iter()
            .map(|k| OpenIncident {
                key: (*k).into(),
                text: String::new(),
            })
            .collect()
    }

    /// (case, snapshot, open before, expected transitions as "+key" / "-key")
    fn cases() -> Vec<(&'static str, Snapshot, Vec<OpenIncident>, Vec<&'static str>)> {
        let reconnect = ConnectorHealth {
            name: "ghl".into(),
            needs_reconnect: Some("refresh token refused".into()),
        };
        let fine = ConnectorHealth {
            name: "ghl".into(),
            needs_reconnect: None,
        };
        vec![
            (
                "nothing wrong",
                snapshot(vec![flow("a")], vec![fine.clone()]),
                open(&[]),
                vec![],
            ),
            (
                "dead letters at the threshold do not alert",
                snapshot(vec![FlowHealth { dead: 10, ..flow("a") }], vec![]),
                open(&[]),
                vec![],
            ),
            (
                "dead letters past the threshold open one incident",
                snapshot(vec![FlowHealth { dead: 11, ..flow("a") }], vec![]),
                open(&[]),
                vec!["+dead_letters:a"],
            ),
            (
                "an open incident is not sent again",
                snapshot(vec![FlowHealth { dead: 50, ..flow("a") }], vec![]),
                open(&["dead_letters:a"]),
                vec![],
            ),
            (
                "dead letters back within the threshold resolve",
                snapshot(vec![FlowHealth { dead: 3, ..flow("a") }], vec![]),
                open(&["dead_letters:a"]),
                vec!["-dead_letters:a"],
            ),
            (
                "a connector needing reconnect",
                snapshot(vec![flow("a")], vec![reconnect.clone()]),
                open(&[]),
                vec!["+reconnect:ghl"],
            ),
            (
                "reconnected",
                snapshot(vec![flow("a")], vec![fine.clone()]),
                open(&["reconnect:ghl"]),
                vec!["-reconnect:ghl"],
            ),
            (
                "flows paused by one connector are one incident, no stall",
                snapshot(
                    vec![
                        FlowHealth {
                            target_connector: "moloni".into(),
                            paused: Some("refused".into()),
                            due: 4,
                            oldest_due_at: Some(NOW - 100 * MIN),
                            ..flow("a")
                        },
                        FlowHealth {
                            target_connector: "moloni".into(),
                            paused: Some("refused".into()),
                            ..flow("b")
                        },
                    ],
                    vec![],
                ),
                open(&[]),
                vec!["+reconnect:moloni"],
            ),
            (
                "token state and a pause of the same connector are one incident",
                snapshot(
                    vec![FlowHealth {
                        paused: Some("refused".into()),
                        ..flow("a")
                    }],
                    vec![reconnect],
                ),
                open(&[]),
                vec!["+reconnect:ghl"],
            ),
            (
                "a poller within max(stall_after, 3 intervals)",
                snapshot(
                    vec![FlowHealth {
                        interval_ms: Some(10 * MIN),
                        last_ok_at: Some(NOW - 29 * MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec![],
            ),
            (
                "a poller past 3 intervals",
                snapshot(
                    vec![FlowHealth {
                        interval_ms: Some(10 * MIN),
                        last_ok_at: Some(NOW - 31 * MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec!["+stalled:a"],
            ),
            (
                "a fast poller is measured against stall_after",
                snapshot(
                    vec![FlowHealth {
                        interval_ms: Some(MIN),
                        last_ok_at: Some(NOW - 14 * MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec![],
            ),
            (
                "a poller that never succeeded, measured from the start of checks",
                snapshot(
                    vec![FlowHealth {
                        interval_ms: Some(MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec!["+stalled:a"],
            ),
            (
                "a webhook flow without rows never stalls",
                snapshot(vec![flow("a")], vec![]),
                open(&["stalled:a"]),
                vec!["-stalled:a"],
            ),
            (
                "rows due long ago with no delivery since",
                snapshot(
                    vec![FlowHealth {
                        due: 3,
                        oldest_due_at: Some(NOW - 20 * MIN),
                        last_finished_at: Some(NOW - 16 * MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec!["+stalled:a"],
            ),
            (
                "rows due long ago but deliveries finishing",
                snapshot(
                    vec![FlowHealth {
                        due: 3,
                        oldest_due_at: Some(NOW - 20 * MIN),
                        last_finished_at: Some(NOW - MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec![],
            ),
            (
                "a row due just now after a quiet day",
                snapshot(
                    vec![FlowHealth {
                        due: 1,
                        oldest_due_at: Some(NOW - MIN),
                        last_finished_at: Some(NOW - 600 * MIN),
                        ..flow("a")
                    }],
                    vec![],
                ),
                open(&[]),
                vec![],
            ),
            (
                "several at once, resolves first",
                snapshot(
                    vec![
                        FlowHealth { dead: 11, ..flow("a") },
                        FlowHealth {
                            dead: 12,
                            interval_ms: Some(MIN),
                            last_ok_at: Some(NOW - 16 * MIN),
                            ..flow("b")
                        },
                    ],
                    vec![fine],
                ),
                open(&["dead_letters:a", "reconnect:ghl"]),
                vec!["-reconnect:ghl", "+dead_letters:b", "+stalled:b"],
            ),
        ]
    }

    #[test]
    fn decisions() {
        for (case, snapshot, open, expected) in cases() {
            let got: Vec<String> = decide(&snapshot, T, &open)
                .iter()
                .map(|t| match t {
                    Transition::Open { key, .. } => format!("+{key}"),
                    Transition::Resolve { key, .. } => format!("-{key}"),
                })
                .collect();
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn a_pause_holds_until_a_row_finishes_after_it() {
        let paused = Some("paused: connector `m` refused its credentials: 401");
        let cases = [
            (
                paused,
                Some(100),
                None,
                Some("connector `m` refused its credentials: 401"),
            ),
            (
                paused,
                Some(100),
                Some(99),
                Some("connector `m` refused its credentials: 401"),
            ),
            (paused, Some(100), Some(100), None),
            (paused, Some(100), Some(150), None),
            (Some("HTTP 503 reading the source"), Some(100), None, None),
            (None, None, None, None),
        ];
        for (error, at, finished, expected) in cases {
            assert_eq!(
                pause_in_force(error, at, finished).as_deref(),
                expected,
                "{error:?} at {at:?}, last finished {finished:?}"
            );
        }
    }

    #[test]
    fn messages_name_what_to_look_at() {
        let s = snapshot(
            vec![FlowHealth {
                dead: 12,
                interval_ms: Some(10 * MIN),
                last_ok_at: Some(NOW - 65 * MIN),
                ..flow("pt-customers")
            }],
            vec![],
        );
        let texts: BTreeMap<String, String> = decide(&s, T, &[])
            .into_iter()
            .map(|t| (t.key().to_owned(), t.text().to_owned()))
            .collect();
        assert_eq!(
            texts["dead_letters:pt-customers"],
            "Tether: flow `pt-customers` has 12 dead letters (more than 10); see `tether dlq list --flow pt-customers`"
        );
        assert_eq!(
            texts["stalled:pt-customers"],
            "Tether: flow `pt-customers` is stalled: no successful run for 1h 5m (expected every 10m)"
        );
        let resolved = decide(&snapshot(vec![], vec![]), T, &open(&["stalled:pt-customers"]));
        assert_eq!(
            resolved[0].text(),
            "Resolved: flow `pt-customers` is making progress again"
        );
    }
}
