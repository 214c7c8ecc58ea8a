//! The Prometheus recorder behind `/metrics`.
//!
//! A process has one global `metrics` recorder, installed at most once: [`handle`] installs it
//! on first use and hands out the same handle after, so building the router many times in one
//! process (tests) is fine. If something else installed a recorder first, the handle renders an
//! empty registry rather than failing. Gauges read from the store (queue depth, dead letters) are
//! set at scrape time by [`render`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tether_core::store::{Store, StoreError};
use tether_core::telemetry::{DEAD_LETTERS, HTTP_DURATION, HTTP_DURATION_BUCKETS, QUEUE_DEPTH};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first call.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        // Buckets make the latency a Prometheus histogram rather than a summary.
        let builder =
            match builder.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), HTTP_DURATION_BUCKETS) {
                Ok(builder) => builder,
                Err(error) => {
                    tracing::warn!(%error, "latency buckets refused; latency renders as a summary");
                    PrometheusBuilder::new()
                }
            };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows nothing recorded");
        }
        handle
    })
}

/// The exposition text, with queue depth and dead letters per flow read from the store now.
pub async fn render(store: &Store) -> Result<String, StoreError> {
    let handle = handle();
    for counts in store.flow_counts().await? {
        metrics::gauge!(QUEUE_DEPTH, "flow" => counts.flow.clone()).set(counts.pending as f64);
        metrics::gauge!(DEAD_LETTERS, "flow" => counts.flow).set(counts.dead as f64);
    }
    Ok(handle.render())
}
