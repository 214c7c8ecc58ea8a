//! `HostServices` against a real HTTP server on loopback: retries, the POST rule, the retry
//! budget, rate limits, and redaction of secrets from every log line. Calls go through the echo
//! plugin where the boundary matters.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use tether_abi::{ErrorKind, Fields, HttpMethod, HttpRequest, OpenRequest, ReadPosition, ReadRequest};
use tether_core::config::RateLimit;
use tether_core::loader::load_dir;
use tether_e2e::plugin_dir;

mod support;

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

impl Hits {
    fn take(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Serves `/flaky` (503 once, then 200), `/down` (always 503), `/busy` (429, Retry-After 100 s),
/// `/ok`; every hit counted.
fn serve(test: &support::TestHost) -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route(
            "/flaky",
            any(|State(h): State<Hits>| async move {
                if h.take() == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
                } else {
                    "ok".into_response()
                }
            }),
        )
        .route(
            "/down",
            any(|State(h): State<Hits>| async move {
                h.take();
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .route(
            "/busy",
            get(|State(h): State<Hits>| async move {
                h.take();
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "100")], "slow down")
            }),
        )
        .route(
            "/ok",
            get(|State(h): State<Hits>| async move {
                h.take();
                "ok"
            }),
        )
        .with_state(hits.clone());
    let listener = test
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    test.runtime.spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

#[test]
fn retries_a_503_then_succeeds() {
    let test = support::host();
    let (addr, hits) = serve(&test);
    let response = test
        .host("t")
        .http(HttpRequest::new(HttpMethod::Get, format!("http://{addr}/flaky")))
        .expect("second attempt succeeds");
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    assert_eq!(hits.count(), 2);
}

#[test]
fn never_retries_a_post_the_server_received() {
    let test = support::host();
    let (addr, hits) = serve(&test);
    let error = test
        .host("t")
        .http(HttpRequest::new(HttpMethod::Post, format!("http://{addr}/flaky")).body("{}"))
        .expect_err("not retried");
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(hits.count(), 1, "a POST the server saw must not be sent again");

    // Marked idempotent (it carries an idempotency key), the same POST is retried.
    let (addr, hits) = serve(&test);
    let mut request = HttpRequest::new(HttpMethod::Post, format!("http://{addr}/flaky")).body("{}");
    request.idempotent = true;
    assert_eq!(test.host("t").http(request).expect("retried").status, 200);
    assert_eq!(hits.count(), 2);
}

#[test]
fn a_post_that_never_left_is_retried_then_gives_up() {
    let test = support::host();
    // A port with nothing listening: every attempt fails to connect, so nothing was received.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let error = test
        .host("t")
        .http(HttpRequest::new(HttpMethod::Post, format!("http://{addr}/x")).body("{}"))
        .expect_err("refused");
    assert_eq!(error.kind, ErrorKind::Transient);
    assert!(error.message.ends_with("after 3 attempts"), "{error}");
}

#[test]
fn gives_up_with_a_typed_error_after_its_budget() {
    let test = support::host();
    let (addr, hits) = serve(&test);
    let error = test
        .host("t")
        .http(HttpRequest::new(HttpMethod::Get, format!("http://{addr}/down")))
        .expect_err("budget spent");
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(error.message, "HTTP 503 after 3 attempts");
    assert_eq!(hits.count(), 3);

    // A Retry-After beyond what a worker may wait ends the call at once, with the delay.
    let (addr, hits) = serve(&test);
    let error = test
        .host("t")
        .http(HttpRequest::new(HttpMethod::Get, format!("http://{addr}/busy")))
        .expect_err("rate limited");
    assert_eq!(
        error.kind,
        ErrorKind::RateLimited {
            retry_after_ms: Some(100_000)
        }
    );
    assert_eq!(hits.count(), 1);
}

#[test]
fn the_rate_limit_spaces_requests() {
    let test = support::host();
    let (addr, hits) = serve(&test);
    // Burst of 5, then one per 100 ms: the 8th request cannot start before 300 ms.
    let host = test.limited_host(
        "t",
        RateLimit {
            requests: 5,
            per_seconds: 0.5,
        },
    );
    let started = Instant::now();
    for _ in 0..8 {
        host.http(HttpRequest::new(HttpMethod::Get, format!("http://{addr}/ok")))
            .expect("ok");
    }
    assert_eq!(hits.count(), 8);
    // A lower bound only: the limiter must have held requests back (this is behaviour, not speed).
    assert!(started.elapsed().as_millis() >= 280, "{:?}", started.elapsed());
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_reaches_the_logs() {
    const TOKEN: &str = "pit-3f0c9a7e-secret-token";
    const QUERY_SECRET: &str = "q-access-0123456789";
    const STORED: &str = "refresh-rotated-abcdef";
    let test = support::host();
    let (addr, _) = serve(&test);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();

    let dir = plugin_dir(&["tether-fixture-echo"]);
    let set = load_dir(dir.path()).expect("plugins dir");
    let echo = set.get("echo").expect("echo");
    let mut config = Fields::new();
    config.insert("token".into(), STORED.into());
    config.insert(
        "url".into(),
        format!("http://{addr}/down?access_token={QUERY_SECRET}&page=2").into(),
    );
    test.context.redactor().learn_config(&config, &["token".to_owned()]);
    let connector = echo
        .open(
            test.host("echo"),
            &OpenRequest {
                instance: "echo".into(),
                config,
            },
        )
        .expect("open");
    let read = |stream: &str| ReadRequest {
        stream: stream.into(),
        position: ReadPosition::Cursor { cursor: None },
        limit: None,
        parent_id: None,
    };

    tracing::subscriber::with_default(subscriber, || {
        // The plugin logs its secret config value, in the message and in a field.
        connector.read(read("log")).expect("log");
        // A request whose URL carries a token, retried (so its URL is logged several times).
        connector.read(read("fetch")).expect_err("down");
        // A request with a bearer token, straight through the host services.
        let request = HttpRequest::new(HttpMethod::Get, format!("http://{addr}/down"))
            .header("Authorization", format!("Bearer {TOKEN}"));
        test.host("ghl").http(request).expect_err("down");
        // A secret stored and read back by the plugin.
        assert_eq!(
            connector.read(read("secret")).expect("secret").records[0].fields["body"],
            STORED
        );
        test.host("ghl").log(
            tether_abi::LogLevel::Error,
            &format!("token was {TOKEN}"),
            &Fields::new(),
        );
    });

    let logs = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
    assert!(logs.contains("retrying"), "the retries were not logged:\n{logs}");
    assert!(logs.contains("logging in with [redacted]"), "{logs}");
    assert!(logs.contains("access_token=%5Bredacted%5D&page=2"), "{logs}");
    assert!(logs.contains("token was [redacted]"), "{logs}");
    for secret in [TOKEN, QUERY_SECRET, STORED] {
        assert!(!logs.contains(secret), "secret {secret} leaked:\n{logs}");
    }
}

/// The value of `series` (name and labels exactly as rendered) in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn requests_429s_retries_latency_and_token_refreshes_are_counted_per_connector() {
    let handle = tether_host::telemetry::handle();
    let test = support::host();
    let (addr, _) = serve(&test);
    let host = test.host("metered");
    host.http(HttpRequest::new(HttpMethod::Get, format!("http://{addr}/flaky")))
        .expect("second attempt succeeds");
    host.http(HttpRequest::new(HttpMethod::Get, format!("http://{addr}/busy")))
        .expect_err("rate limited");
    host.secret_put("access_token", "fresh-token").expect("stored");
    host.secret_put("access_token", "").expect("cleared");
    host.secret_put("refresh_token", "rotated").expect("stored");
    let text = handle.render();
    let of = |name: &str| sample(&text, &format!("{name}{{connector=\"metered\"}}"));
    assert_eq!(of("tether_http_requests_total"), Some(3.0), "{text}");
    assert_eq!(of("tether_http_retries_total"), Some(1.0), "{text}");
    assert_eq!(of("tether_http_rate_limited_total"), Some(1.0), "{text}");
    assert_eq!(of("tether_http_request_duration_seconds_count"), Some(3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "tether_http_request_duration_seconds_bucket{connector=\"metered\",le=\"+Inf\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(of("tether_token_refreshes_total"), Some(1.0), "{text}");
}
