use crate::common::{env_with, Env};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tether_sandbox::{GhlConfig, RateLimitConfig};

#[tokio::test]
async fn the_101st_request_in_the_window_is_429() {
    let e = env_with(GhlConfig::seeded(9, 10)).await;
    let path = format!("/contacts/?locationId={}&limit=1", e.loc());
    let mut last_remaining = 100;
    for i in 1..=100u64 {
        let r = e.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(r.header_u64("x-ratelimit-max"), 100);
        assert_eq!(r.header_u64("x-ratelimit-interval-milliseconds"), 10_000);
        assert_eq!(r.header_u64("x-ratelimit-limit-daily"), 200_000);
        let rem = r.header_u64("x-ratelimit-remaining");
        assert_eq!(rem, 100 - i);
        assert!(rem < last_remaining);
        last_remaining = rem;
        assert_eq!(r.header_u64("x-ratelimit-daily-remaining"), 200_000 - i);
    }
    let r = e.get(&path).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body, json!({"statusCode": 429, "message": "Too Many Requests"}));
    assert_eq!(r.header_u64("x-ratelimit-remaining"), 0);
    assert_eq!(r.header_u64("x-ratelimit-daily-remaining"), 199_900);
    assert!(r.header("retry-after").is_none(), "Retry-After is off by default");

    // Buckets are per (client, location): the other location's token is unaffected.
    let other = e.ghl.credentials.other_pit.clone();
    let loc2 = e.ghl.credentials.other_location_id.clone();
    let r = e
        .call(Method::GET, &format!("/contacts/?locationId={loc2}"), &other, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header_u64("x-ratelimit-remaining"), 99);
}

#[tokio::test]
async fn daily_budget_and_retry_after() {
    let e = env_with(GhlConfig {
        rate_limit: RateLimitConfig {
            enabled: true,
            burst_max: 3,
            window_ms: 60_000,
            daily_limit: 1000,
        },
        send_retry_after: true,
        ..GhlConfig::seeded(9, 2)
    })
    .await;
    let path = format!("/contacts/?locationId={}", e.loc());
    for _ in 0..3 {
        assert_eq!(e.get(&path).await.status, StatusCode::OK);
    }
    let r = e.get(&path).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let ra = r.header_u64("retry-after");
    assert!((1..=60).contains(&ra), "{ra}");

    // Limits can be changed at run time; a daily budget of 2 is exhausted at once.
    let s = e
        .admin(
            Method::PUT,
            "/_sandbox/rate-limit",
            Some(json!({"burstMax": 100, "windowMs": 10000, "dailyLimit": 2})),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(e.get(&path).await.status, StatusCode::OK);
    let r = e.get(&path).await;
    assert_eq!(r.header_u64("x-ratelimit-daily-remaining"), 0);
    let r = Env::send(e.request(Method::GET, &path, &e.pit())).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header_u64("x-ratelimit-limit-daily"), 2);
}
