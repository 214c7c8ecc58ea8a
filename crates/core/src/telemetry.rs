//! Metric names and the engine's counters, through the `metrics` facade.
//!
//! Incrementing a counter is not I/O: without an installed recorder (tests, `tether sync`) every
//! call is a no-op. The host installs a Prometheus recorder and renders it at `/metrics`. Every
//! name is here, so the exposition format has one source of truth.

use crate::store::Outcome;

/// Records read from a source and queued (label `flow`).
pub const RECORDS_READ: &str = "tether_records_read_total";
/// Records written to the target (label `flow`).
pub const RECORDS_WRITTEN: &str = "tether_records_written_total";
/// Records that mapped to exactly what was last written: no call (label `flow`).
pub const RECORDS_UNCHANGED: &str = "tether_records_unchanged_total";
/// Delivery attempts that failed and will be tried again (label `flow`).
pub const RECORDS_FAILED: &str = "tether_records_failed_total";
/// Records that became dead letters (label `flow`).
pub const RECORDS_DEAD: &str = "tether_records_dead_total";
/// Rows queued and not yet delivered, read from the store at scrape time (label `flow`).
pub const QUEUE_DEPTH: &str = "tether_queue_depth";
/// Dead letters, read from the store at scrape time (label `flow`).
pub const DEAD_LETTERS: &str = "tether_dead_letters";
/// HTTP requests sent by a connector, each attempt counted (label `connector`).
pub const HTTP_REQUESTS: &str = "tether_http_requests_total";
/// HTTP 429 answers received by a connector (label `connector`).
pub const HTTP_RATE_LIMITED: &str = "tether_http_rate_limited_total";
/// HTTP attempts repeated by the host's retry rules (label `connector`).
pub const HTTP_RETRIES: &str = "tether_http_retries_total";
/// Seconds from sending a request to having its whole answer (label `connector`).
pub const HTTP_DURATION: &str = "tether_http_request_duration_seconds";
/// New access tokens a connector obtained and stored (label `connector`).
pub const TOKEN_REFRESHES: &str = "tether_token_refreshes_total";
/// Alert checks completed by this host (it held the `alerts` lease).
pub const ALERT_CHECKS: &str = "tether_alert_checks_total";
/// Alert messages the receiver accepted (label `state`: `open` or `resolved`).
pub const ALERTS_SENT: &str = "tether_alerts_sent_total";

/// Latency buckets for [`HTTP_DURATION`], in seconds.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// `count` records of `flow` read and queued.
pub fn records_read(flow: &str, count: usize) {
    if count > 0 {
        metrics::counter!(RECORDS_READ, "flow" => flow.to_owned()).increment(count as u64);
    }
}

/// One row's delivery outcome, once recorded in the store. `written` and `unchanged` tell what a
/// delivered row was (a delivered row may also be an echo, a conflict or a skip: neither).
pub fn row_finished(flow: &str, outcome: &Outcome, written: usize, unchanged: usize) {
    let flow = flow.to_owned();
    match outcome {
        Outcome::Delivered { .. } => {
            if written > 0 {
                metrics::counter!(RECORDS_WRITTEN, "flow" => flow.clone()).increment(written as u64);
            }
            if unchanged > 0 {
                metrics::counter!(RECORDS_UNCHANGED, "flow" => flow).increment(unchanged as u64);
            }
        }
        Outcome::Retry { .. } | Outcome::Throttled { .. } => {
            metrics::counter!(RECORDS_FAILED, "flow" => flow).increment(1)
        }
        Outcome::Dead { .. } => metrics::counter!(RECORDS_DEAD, "flow" => flow).increment(1),
        Outcome::Paused { .. } => {}
    }
}
