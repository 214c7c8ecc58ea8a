use crate::common::{env, Env};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use tether_sandbox::FaultConfig;

#[tokio::test]
async fn injected_errors_429s_latency_and_drops() {
    let e = env(3).await;
    let path = format!("/contacts/?locationId={}", e.loc());

    let r = e
        .admin(
            Method::PUT,
            "/_sandbox/faults",
            Some(json!({"errorNext": 2, "errorStatus": 503})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["errorNext"], 2);
    for _ in 0..2 {
        let r = e.get(&path).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.body["statusCode"], 503);
    }
    assert_eq!(e.get(&path).await.status, StatusCode::OK);
    // Admin routes are never faulted.
    e.ghl
        .set_faults(FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        })
        .expect("valid");
    assert_eq!(e.get(&path).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        e.admin(Method::GET, "/_sandbox/faults", None).await.body["errorRate"],
        1.0
    );

    e.ghl
        .set_faults(FaultConfig {
            rate_limit_next: 1,
            ..FaultConfig::default()
        })
        .expect("valid");
    let r = e.get(&path).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body, json!({"statusCode": 429, "message": "Too Many Requests"}));
    assert_eq!(r.header_u64("x-ratelimit-remaining"), 0);

    e.ghl
        .set_faults(FaultConfig {
            latency_ms: 300,
            ..FaultConfig::default()
        })
        .expect("valid");
    let t = Instant::now();
    assert_eq!(e.get(&path).await.status, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(300));

    e.ghl
        .set_faults(FaultConfig {
            drop_next: 1,
            ..FaultConfig::default()
        })
        .expect("valid");
    let fresh = reqwest::Client::new();
    let err = fresh
        .get(format!("{}{}", e.base, path))
        .header("Version", "2021-07-28")
        .bearer_auth(e.pit())
        .send()
        .await;
    assert!(err.is_err(), "connection closed without a response: {err:?}");
    assert_eq!(e.get(&path).await.status, StatusCode::OK, "only one request dropped");

    let r = e
        .admin(Method::PUT, "/_sandbox/faults", Some(json!({"errorRate": 2.0})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = e
        .admin(Method::PUT, "/_sandbox/faults", Some(json!({"bogus": 1})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e
        .ghl
        .set_faults(FaultConfig {
            error_status: 404,
            ..FaultConfig::default()
        })
        .is_err());
}

#[tokio::test]
async fn error_rate_is_probabilistic_and_seeded() {
    let e = env(1).await;
    e.ghl
        .set_faults(FaultConfig {
            error_rate: 0.5,
            ..FaultConfig::default()
        })
        .expect("valid");
    let path = format!("/contacts/?locationId={}", e.loc());
    let mut failures = 0;
    for _ in 0..200 {
        if Env::send(e.request(Method::GET, &path, &e.pit()))
            .await
            .status
            .is_server_error()
        {
            failures += 1;
        }
    }
    assert!((60..=140).contains(&failures), "about half fail: {failures}");
    // Faults also hit the OAuth token endpoint, so refresh failure paths can be tested.
    e.ghl
        .set_faults(FaultConfig {
            error_next: 1,
            ..FaultConfig::default()
        })
        .expect("valid");
    let r = e
        .http
        .post(format!("{}/oauth/token", e.base))
        .form(&[("a", "b")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
