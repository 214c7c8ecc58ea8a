//! The GHL rate governor against the emulator's real limiter (sliding window per app per
//! location, the five `X-RateLimit-*` headers, 429s). Assertions are on the 429s the emulator
//! sent, counted at the server, never on timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use tether_abi::*;
use tether_ghl::Ghl;
use tether_sandbox::{GhlConfig, GhlEmulator, RateLimitConfig};

mod support;

#[derive(Clone, Default)]
struct Counters {
    requests: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
}

async fn count(State(c): State<Counters>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    c.requests.fetch_add(1, Ordering::SeqCst);
    if response.status().as_u16() == 429 {
        c.throttled.fetch_add(1, Ordering::SeqCst);
    }
    response
}

fn serve(test: &support::TestHost, emu: &GhlEmulator) -> (String, Counters) {
    let counters = Counters::default();
    let app = emu
        .router()
        .layer(axum::middleware::from_fn_with_state(counters.clone(), count));
    let listener = test
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    test.runtime.spawn(async move { axum::serve(listener, app).await });
    (base, counters)
}

fn open(test: &support::TestHost, instance: &str, base: &str, emu: &GhlEmulator) -> Ghl {
    let config = json!({
        "base_url": base,
        "location_id": emu.credentials().location_id,
        "private_token": emu.credentials().pit,
    });
    let Value::Object(config) = config else { unreachable!() };
    tether_ghl::open(
        test.host(instance),
        OpenRequest {
            instance: instance.into(),
            config,
        },
    )
    .expect("open")
}

fn page(ghl: &Ghl) -> Result<Page, ConnectorError> {
    ghl.read(ReadRequest {
        stream: "contacts".into(),
        position: ReadPosition::Cursor { cursor: None },
        limit: Some(5),
        parent_id: None,
    })
}

/// 500 calls from 4 threads over 2 connector instances on one location, against GHL's real
/// 100-per-10-s window: the shared governor keeps every one of them under the limit.
/// Takes about 40 s by construction.
#[test]
fn five_hundred_calls_under_the_real_limit_see_no_429() {
    let test = support::host();
    let emu = GhlEmulator::new(GhlConfig::seeded(21, 20)).expect("emulator");
    let (base, counters) = serve(&test, &emu);
    let a = open(&test, "ghl-a", &base, &emu);
    let b = open(&test, "ghl-b", &base, &emu);
    let contact = emu.state()["contacts"][0]["id"].as_str().expect("contact").to_owned();
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let ghl = if t % 2 == 0 { &a } else { &b };
            let (done, contact) = (&done, &contact);
            s.spawn(move || {
                for i in 0..125 {
                    if i % 2 == 0 {
                        page(ghl).expect("search");
                    } else {
                        ghl.client().get_contact(contact).expect("get");
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(done.load(Ordering::SeqCst), 500);
    assert_eq!(counters.requests.load(Ordering::SeqCst), 500);
    assert_eq!(
        counters.throttled.load(Ordering::SeqCst),
        0,
        "the governor let a 429 happen"
    );
}

/// Someone else spends the window (a client that bypasses this governor): the 429 that comes
/// back is waited out (Retry-After) and the call succeeds.
#[test]
fn a_429_from_foreign_usage_is_waited_out() {
    let test = support::host();
    let emu = GhlEmulator::new(GhlConfig {
        rate_limit: RateLimitConfig {
            burst_max: 5,
            window_ms: 1_000,
            ..RateLimitConfig::default()
        },
        send_retry_after: true,
        ..GhlConfig::seeded(22, 5)
    })
    .expect("emulator");
    let (base, counters) = serve(&test, &emu);
    let ghl = open(&test, "ghl", &base, &emu);
    // Learn the limits from the headers.
    page(&ghl).expect("first");
    // Another client with the same token spends the whole window. POSTs, because the host
    // never repeats a POST: the first rate-limited answer shows the window is full.
    let host = test.host("foreign");
    let body = json!({"locationId": emu.credentials().location_id, "pageLimit": 1}).to_string();
    let mut spent = false;
    for _ in 0..20 {
        let request = HttpRequest::new(HttpMethod::Post, format!("{base}/contacts/search"))
            .header("Authorization", format!("Bearer {}", emu.credentials().pit))
            .header("Version", "2021-07-28")
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Err(e) = host.http(request) {
            assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{e}");
            spent = true;
            break;
        }
    }
    assert!(spent, "the foreign client never filled the window");
    let throttled_before = counters.throttled.load(Ordering::SeqCst);
    let records = page(&ghl).expect("succeeds after waiting");
    assert!(!records.records.is_empty());
    assert!(
        counters.throttled.load(Ordering::SeqCst) > throttled_before,
        "the foreign burst should have made this call meet a 429"
    );
    // Once throttled, the governor holds back instead of hammering: a few more calls, each
    // at most the window's worth, and no new 429 storm.
    let before = counters.throttled.load(Ordering::SeqCst);
    for _ in 0..12 {
        page(&ghl).expect("steady");
    }
    assert_eq!(
        counters.throttled.load(Ordering::SeqCst),
        before,
        "steady state must not meet 429s"
    );
}

/// Injected faults: 429s on a create are waited out (the interval header, no Retry-After) and
/// the contact is created once; a 5xx on a create is a transient error (never resent); on a
/// search (a read) the host's own retry absorbs it.
#[test]
fn injected_429s_and_5xx_map_to_waits_and_retryable_kinds() {
    let test = support::host();
    let emu = GhlEmulator::new(GhlConfig {
        rate_limit: RateLimitConfig {
            window_ms: 300,
            ..RateLimitConfig::default()
        },
        ..GhlConfig::seeded(23, 3)
    })
    .expect("emulator");
    let (base, counters) = serve(&test, &emu);
    let ghl = open(&test, "ghl", &base, &emu);
    page(&ghl).expect("learn the headers");

    emu.set_faults(tether_sandbox::FaultConfig {
        rate_limit_next: 2,
        ..tether_sandbox::FaultConfig::default()
    })
    .expect("faults");
    let input = json!({"firstName": "Lia", "email": "lia@example.com"});
    let Value::Object(input) = input else { unreachable!() };
    let created = ghl
        .write(WriteRequest {
            priority: Default::default(),
            action: "contact.create".into(),
            target_id: None,
            parent_id: None,
            input: input.clone(),
        })
        .expect("created after two 429s");
    assert!(created.target_id.is_some());
    assert_eq!(counters.throttled.load(Ordering::SeqCst), 2);
    let named_lia = |state: &Value| {
        state["contacts"]
            .as_array()
            .map(|cs| cs.iter().filter(|c| c["email"] == "lia@example.com").count())
            .unwrap_or_default()
    };
    assert_eq!(named_lia(&emu.state()), 1);

    emu.set_faults(tether_sandbox::FaultConfig {
        error_next: 1,
        error_status: 503,
        ..tether_sandbox::FaultConfig::default()
    })
    .expect("faults");
    let mut other = input;
    other.insert("email".into(), "lia2@example.com".into());
    let e = ghl
        .write(WriteRequest {
            priority: Default::default(),
            action: "contact.create".into(),
            target_id: None,
            parent_id: None,
            input: other,
        })
        .expect_err("503 on a POST");
    assert_eq!(e.kind, ErrorKind::Transient);

    emu.set_faults(tether_sandbox::FaultConfig {
        error_next: 1,
        error_status: 502,
        ..tether_sandbox::FaultConfig::default()
    })
    .expect("faults");
    // A search only reads, so the host repeats it like a GET.
    page(&ghl).expect("the host retried the search");
    assert_eq!(counters.throttled.load(Ordering::SeqCst), 2);
}
