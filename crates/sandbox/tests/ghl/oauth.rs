use crate::common::{env, env_with, Env};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

async fn authorize(e: &Env, extra: &str) -> HashMap<String, String> {
    let c = &e.ghl.credentials;
    let url = format!(
        "{}/oauth/chooselocation?response_type=code&client_id={}&redirect_uri={}&scope={}&state=xyz%20123{extra}",
        e.base, c.client_id, "https%3A%2F%2Fapp.example%2Fcb%3Fa%3D1", "contacts.readonly%20contacts.write"
    );
    let r = e.http.get(url).send().await.expect("authorize");
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(loc.starts_with("https://app.example/cb?a=1&"), "{loc}");
    let q = loc.split_once('?').map(|x| x.1).unwrap_or_default();
    serde_urlencoded::from_str(q).expect("query")
}

async fn token(e: &Env, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let r = e
        .http
        .post(format!("{}/oauth/token", e.base))
        .form(form)
        .send()
        .await
        .expect("token");
    let s = r.status();
    (s, r.json().await.expect("json"))
}

#[tokio::test]
async fn code_flow_and_refresh_rotation() {
    let e = env(5).await;
    let c = e.ghl.credentials.clone();
    let q = authorize(&e, "").await;
    assert_eq!(q.get("state").map(String::as_str), Some("xyz 123"));
    let code = q.get("code").cloned().unwrap_or_default();
    assert_eq!(code.len(), 40);

    let (s, t) = token(
        &e,
        &[
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("user_type", "Location"),
            ("redirect_uri", "https://app.example/cb?a=1"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 86399);
    assert_eq!(t["scope"], "contacts.readonly contacts.write");
    assert_eq!(t["userType"], "Location");
    assert_eq!(t["locationId"], c.location_id.as_str());
    assert_eq!(t["companyId"], c.company_id.as_str());
    assert!(t["userId"].is_string() && t["refreshTokenId"].as_str().is_some_and(|x| x.len() == 24));
    let access = t["access_token"].as_str().unwrap_or_default().to_string();
    assert_eq!(access.split('.').count(), 3, "JWT-shaped");
    let refresh1 = t["refresh_token"].as_str().unwrap_or_default().to_string();

    let r = e
        .call(
            Method::GET,
            &format!("/contacts/?locationId={}", c.location_id),
            &access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Scope granted was contacts only: custom fields need another scope.
    let r = e
        .call(
            Method::GET,
            &format!("/locations/{}/customFields", c.location_id),
            &access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The code is single-use.
    let (s, t) = token(
        &e,
        &[
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("grant_type", "authorization_code"),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );

    let refresh = |rt: String| {
        let e = &e;
        let c = c.clone();
        async move {
            token(
                e,
                &[
                    ("client_id", &c.client_id),
                    ("client_secret", &c.client_secret),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("user_type", "Location"),
                ],
            )
            .await
        }
    };
    let (s, t2) = refresh(refresh1.clone()).await;
    assert_eq!(s, StatusCode::OK, "{t2}");
    let refresh2 = t2["refresh_token"].as_str().unwrap_or_default().to_string();
    let access2 = t2["access_token"].as_str().unwrap_or_default().to_string();
    assert_ne!(refresh2, refresh1);
    assert_ne!(access2, access);
    let r = e
        .call(
            Method::GET,
            &format!("/contacts/?locationId={}", c.location_id),
            &access2,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // The used refresh token is refused; the new one works once.
    let (s, t) = refresh(refresh1).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(t["error"], "invalid_grant");
    let (s, _) = refresh(refresh2.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = refresh(refresh2).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, t) = token(
        &e,
        &[
            ("client_id", &c.client_id),
            ("client_secret", "wrong"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
        ],
    )
    .await;
    assert_eq!(
        (s, t["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("invalid_client"))
    );
    let (s, t) = token(&e, &[("client_id", &c.client_id)]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(t["message"].is_array());
}

#[tokio::test]
async fn access_tokens_expire_and_bind_to_their_location() {
    let e = env_with(tether_sandbox::GhlConfig {
        access_token_ttl: Duration::from_secs(1),
        rate_limit: tether_sandbox::RateLimitConfig::disabled(),
        ..tether_sandbox::GhlConfig::seeded(3, 5)
    })
    .await;
    let c = e.ghl.credentials.clone();
    let other = c.other_location_id.clone();
    let q = authorize(&e, &format!("&locationId={other}")).await;
    let (s, t) = token(
        &e,
        &[
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("grant_type", "authorization_code"),
            ("code", q.get("code").map(String::as_str).unwrap_or_default()),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["locationId"], other.as_str());
    let access = t["access_token"].as_str().unwrap_or_default().to_string();
    let r = e
        .call(
            Method::GET,
            &format!("/contacts/?locationId={}", c.location_id),
            &access,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = e
        .call(Method::GET, &format!("/contacts/?locationId={other}"), &access, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = e
        .call(Method::GET, &format!("/contacts/?locationId={other}"), &access, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "Invalid JWT");
}
