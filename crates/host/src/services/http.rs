//! Outbound HTTP for every connector: one reqwest client, timeouts, retries of transient
//! failures, per-connector rate limits, a tracing span per call, and per-connector metrics
//! (requests, 429s, retries, latency: `tether_core::telemetry`).
//!
//! Retry rules: a failure before the request left (connect error) is retried for any method; a
//! 429, 408 or 5xx, or a timeout, is retried only for idempotent requests, because the server
//! may already have acted on a POST. When the budget is spent, or the wait asked for is longer
//! than `max_backoff_ms`, the call ends with a typed error and the engine schedules the retry.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tether_abi::{ConnectorError, HttpMethod, HttpRequest, HttpResponse};
use tether_core::config::{HttpSettings, RateLimit};
use tether_core::telemetry;
use tracing::Instrument;

use super::redact::{is_sensitive_name, Redactor};

/// Requests per period for one connector instance.
pub type Limiter = DefaultDirectRateLimiter;

pub fn limiter(limit: RateLimit) -> Option<Arc<Limiter>> {
    let requests = NonZeroU32::new(limit.requests)?;
    let period = Duration::try_from_secs_f64(limit.per_seconds / f64::from(limit.requests)).ok()?;
    let quota = Quota::with_period(period)?.allow_burst(requests);
    Some(Arc::new(RateLimiter::direct(quota)))
}

#[derive(Clone, Debug)]
pub struct HttpService {
    client: reqwest::Client,
    settings: HttpSettings,
}

/// Why an attempt may be repeated.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Never reached the server: safe to repeat for any method.
    NotSent(String),
    /// The server may have seen it.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    MaybeSent(String),
}

impl HttpService {
    pub fn new(settings: HttpSettings) -> Result<HttpService, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(10_000)))
            .build()?;
        Ok(HttpService { client, settings })
    }

    pub async fn send(
        &self,
        instance: &str,
        limiter: Option<&Limiter>,
        redactor: &Redactor,
        request: HttpRequest,
    ) -> Result<HttpResponse, ConnectorError> {
        for (name, value) in &request.headers {
            if is_sensitive_name(name) {
                redactor.learn(value);
            }
        }
        for secret in &request.secrets {
            redactor.learn(secret);
        }
        let span = tracing::info_span!(
            "http",
            connector = %instance,
            method = request.method.as_str(),
            url = %redactor.redact_url(&request.url),
        );
        self.send_with_retries(instance, limiter, redactor, &request)
            .instrument(span)
            .await
    }

    async fn send_with_retries(
        &self,
        instance: &str,
        limiter: Option<&Limiter>,
        redactor: &Redactor,
        request: &HttpRequest,
    ) -> Result<HttpResponse, ConnectorError> {
        let repeatable = request.idempotent || request.method.is_idempotent();
        let attempts = self.settings.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            let started = Instant::now();
            let result = self.attempt(request).await;
            record_attempt(instance, &result, started.elapsed());
            let failure = match result {
                Ok(response) => match retryable_status(&response) {
                    None => {
                        tracing::debug!(
                            status = response.status,
                            attempt,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "response"
                        );
                        return Ok(response);
                    }
                    Some(failure) => failure,
                },
                Err(failure) => failure,
            };
            let may_repeat = matches!(failure, Failure::NotSent(_)) || repeatable;
            let wait = match &failure {
                Failure::Status {
                    retry_after: Some(wait),
                    ..
                } => *wait,
                _ => self.backoff(attempt),
            };
            let give_up =
                !may_repeat || attempt >= attempts || wait > Duration::from_millis(self.settings.max_backoff_ms);
            let error = typed_error(&failure, redactor, attempt);
            if give_up {
                tracing::warn!(attempt, error = %error, "giving up");
                return Err(error);
            }
            tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
            metrics::counter!(telemetry::HTTP_RETRIES, "connector" => instance.to_owned()).increment(1);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, request: &HttpRequest) -> Result<HttpResponse, Failure> {
        let method = match request.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(self.settings.timeout_ms));
        let mut builder = self.client.request(method, &request.url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.map_err(|e| {
            if e.is_connect() || e.is_builder() {
                Failure::NotSent(e.to_string())
            } else {
                Failure::MaybeSent(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .text()
            .await
            .map_err(|e| Failure::MaybeSent(format!("reading the body: {e}")))?;
        Ok(HttpResponse { status, headers, body })
    }

    /// Exponential backoff with jitter: a random wait in [d/2, d], d = base * 2^(attempt-1).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .settings
            .backoff_base_ms
            .saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.settings.max_backoff_ms).max(1);
        Duration::from_millis(rand::thread_rng().gen_range(capped / 2..=capped))
    }
}

/// Counts one attempt that reached the point of sending, its latency, and a 429 answer.
fn record_attempt(instance: &str, result: &Result<HttpResponse, Failure>, elapsed: Duration) {
    if matches!(result, Err(Failure::NotSent(_))) {
        return;
    }
    metrics::counter!(telemetry::HTTP_REQUESTS, "connector" => instance.to_owned()).increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, "connector" => instance.to_owned()).record(elapsed.as_secs_f64());
    if matches!(result, Ok(response) if response.status == 429) {
        metrics::counter!(telemetry::HTTP_RATE_LIMITED, "connector" => instance.to_owned()).increment(1);
    }
}

fn retryable_status(response: &HttpResponse) -> Option<Failure> {
    matches!(response.status, 408 | 429 | 500 | 502 | 503 | 504).then(|| Failure::Status {
        status: response.status,
        retry_after: response.header("retry-after").and_then(parse_retry_after),
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and treated as absent).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn typed_error(failure: &Failure, redactor: &Redactor, attempts: u32) -> ConnectorError {
    let tried = if attempts == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{attempts} attempts")
    };
    match failure {
        Failure::Status {
            status: 429,
            retry_after,
        } => ConnectorError::rate_limited(
            retry_after.map(|d| d.as_millis() as u64),
            format!("HTTP 429 after {tried}"),
        ),
        Failure::Status { status, .. } => ConnectorError::transient(format!("HTTP {status} after {tried}")),
        Failure::NotSent(e) | Failure::MaybeSent(e) => {
            ConnectorError::transient(format!("{} after {tried}", redactor.redact(e)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_that_retry() {
        let response = |status, headers: Vec<(String, String)>| HttpResponse {
            status,
            headers,
            body: String::new(),
        };
        assert_eq!(retryable_status(&response(200, vec![])), None);
        assert_eq!(retryable_status(&response(400, vec![])), None);
        assert_eq!(
            retryable_status(&response(429, vec![("Retry-After".into(), "2".into())])),
            Some(Failure::Status {
                status: 429,
                retry_after: Some(Duration::from_secs(2))
            })
        );
        assert_eq!(
            retryable_status(&response(503, vec![])),
            Some(Failure::Status {
                status: 503,
                retry_after: None
            })
        );
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        let service = HttpService::new(HttpSettings {
            backoff_base_ms: 100,
            max_backoff_ms: 1_000,
            ..HttpSettings::default()
        })
        .expect("client");
        for _ in 0..50 {
            let first = service.backoff(1).as_millis();
            let third = service.backoff(3).as_millis();
            let tenth = service.backoff(10).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            assert!((200..=400).contains(&third), "{third}");
            assert!((500..=1_000).contains(&tenth), "{tenth}");
        }
    }
}
