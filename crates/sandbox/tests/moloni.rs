//! The Moloni emulator over real HTTP: grants and the login lockout, paging, validation arrays,
//! change feeds, the delete refusal, seeding and faults.

use serde_json::{json, Value};
use std::net::SocketAddr;
use tether_sandbox::moloni::{self, valid_nif, MoloniConfig, RunningMoloni};
use tether_sandbox::FaultConfig;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Api {
    emu: RunningMoloni,
    http: reqwest::Client,
    token: String,
}

async fn grant(emu: &RunningMoloni, http: &reqwest::Client, params: &[(&str, &str)]) -> reqwest::Response {
    let c = &emu.credentials;
    let mut query = vec![
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
    ];
    query.extend_from_slice(params);
    http.get(format!("{}/v1/grant/", emu.base_url()))
        .query(&query)
        .send()
        .await
        .expect("grant answered")
}

async fn login(emu: &RunningMoloni, http: &reqwest::Client) -> Value {
    let c = emu.credentials.clone();
    let r = grant(
        emu,
        http,
        &[
            ("grant_type", "password"),
            ("username", &c.username),
            ("password", &c.password),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("token json")
}

async fn api(config: MoloniConfig) -> Api {
    let emu = moloni::start(loopback(), config).await.expect("emulator starts");
    let http = reqwest::Client::new();
    let token = login(&emu, &http).await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Api { emu, http, token }
}

impl Api {
    async fn raw(&self, path: &str, mut body: Value, human: bool) -> (u16, Value) {
        body["company_id"] = json!(self.emu.credentials.company_id);
        let r = self
            .http
            .post(format!("{}/v1/{path}/", self.emu.base_url()))
            .query(&[
                ("access_token", self.token.as_str()),
                ("json", "true"),
                ("human_errors", if human { "true" } else { "false" }),
            ])
            .json(&body)
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.raw(path, body, true).await;
        assert_eq!(status, 200, "{path}: {value}");
        value
    }
}

fn new_customer(api: &Api, name: &str, vat: &str) -> Value {
    json!({
        "name": name, "vat": vat, "number": format!("T{}", &vat[..6]), "language_id": 1, "address": "Rua Augusta 1",
        "city": "Lisboa", "zip_code": "1100-048", "country_id": 1, "maturity_date_id": 0,
        "payment_method_id": api.emu.credentials.payment_method_id, "email": "cliente@example.pt", "phone": "912 345 678"
    })
}

#[tokio::test]
async fn password_grant_tokens_rotate_on_refresh() {
    let emu = moloni::start(loopback(), MoloniConfig::seeded(1, 3))
        .await
        .expect("starts");
    let http = reqwest::Client::new();
    let first = login(&emu, &http).await;
    assert_eq!(first["expires_in"], 3600);
    assert_eq!(first["token_type"], "bearer");
    let refresh = first["refresh_token"].as_str().unwrap_or_default().to_owned();
    let r = grant(
        &emu,
        &http,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.expect("json");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // The used refresh token is gone.
    let again = grant(
        &emu,
        &http,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(again.status(), 400);
    let body: Value = again.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
    let bad_client = http
        .get(format!("{}/grant/", emu.base_url()))
        .query(&[
            ("grant_type", "password"),
            ("client_id", "nobody"),
            ("client_secret", "x"),
        ])
        .send()
        .await
        .expect("answered");
    assert_eq!(bad_client.status(), 400);
    assert_eq!(
        bad_client.json::<Value>().await.expect("json")["error"],
        "invalid_client"
    );
}

#[tokio::test]
async fn three_failed_logins_lock_the_account_with_a_cooldown() {
    let emu = moloni::start(loopback(), MoloniConfig::seeded(2, 0))
        .await
        .expect("starts");
    let http = reqwest::Client::new();
    let user = emu.credentials.username.clone();
    for _ in 0..3 {
        let r = grant(
            &emu,
            &http,
            &[("grant_type", "password"), ("username", &user), ("password", "wrong")],
        )
        .await;
        assert_eq!(r.status(), 400);
    }
    let password = emu.credentials.password.clone();
    let locked = grant(
        &emu,
        &http,
        &[("grant_type", "password"), ("username", &user), ("password", &password)],
    )
    .await;
    assert_eq!(locked.status(), 403);
    let cooldown: u64 = locked
        .headers()
        .get("moloni-login-cooldown-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("cooldown header");
    assert!(cooldown > 0 && cooldown <= 300, "{cooldown}");
    assert_eq!(
        locked
            .headers()
            .get("moloni-login-attempts")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let body: Value = locked.json().await.expect("json");
    assert_eq!(body["error_description"], "Too many failed login attempts");
}

#[tokio::test]
async fn data_calls_need_a_live_token_and_the_company() {
    let api = api(MoloniConfig::seeded(3, 5)).await;
    let r = api
        .http
        .post(format!("{}/customers/count/", api.emu.base_url()))
        .query(&[("access_token", "nope"), ("json", "true")])
        .json(&json!({"company_id": api.emu.credentials.company_id}))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "invalid_token");
    assert_eq!(api.call("customers/count", json!({})).await["count"], 5);
    // A form body (no `json=true`) with a company the user cannot reach.
    let form = api
        .http
        .post(format!("{}/customers/count/", api.emu.base_url()))
        .query(&[("access_token", api.token.as_str())])
        .form(&[("company_id", "1")])
        .send()
        .await
        .expect("answered");
    assert_eq!(form.json::<Value>().await.expect("json"), json!(["2 company_id"]));
    api.emu.emulator.expire_access_tokens();
    let (status, _) = api.raw("customers/count", json!({}), true).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn lists_are_capped_at_fifty_and_paged_by_offset() {
    let api = api(MoloniConfig::seeded(4, 120)).await;
    let page = api.call("customers/getAll", json!({"qty": 500})).await;
    assert_eq!(page.as_array().map(Vec::len), Some(50));
    let default = api.call("customers/getAll", json!({})).await;
    assert_eq!(default.as_array().map(Vec::len), Some(50));
    let last = api.call("customers/getAll", json!({"qty": 50, "offset": 100})).await;
    assert_eq!(last.as_array().map(Vec::len), Some(20));
    let mut ids = std::collections::BTreeSet::new();
    for offset in [0, 50, 100] {
        for c in api
            .call("customers/getAll", json!({"qty": 50, "offset": offset}))
            .await
            .as_array()
            .into_iter()
            .flatten()
        {
            ids.insert(c["customer_id"].as_u64().unwrap_or_default());
        }
    }
    assert_eq!(ids.len(), 120);
}

#[tokio::test]
async fn seeded_customers_look_portuguese() {
    let api = api(MoloniConfig::seeded(5, 80)).await;
    let customers = api.emu.emulator.customers();
    assert_eq!(customers.len(), 80);
    let portuguese: Vec<&Value> = customers.iter().filter(|c| c["country_id"] == 1).collect();
    assert!(portuguese.len() > 60);
    for c in &portuguese {
        let vat = c["vat"].as_str().unwrap_or_default();
        assert!(valid_nif(vat), "{vat}");
        assert_eq!(c["country"]["iso_3166_1"], "pt");
    }
    assert!(
        customers.iter().any(|c| c["email"] == ""),
        "some customers have no e-mail"
    );
    assert!(
        customers
            .iter()
            .any(|c| c["name"].as_str().is_some_and(|n| !n.is_ascii())),
        "accented names"
    );
    assert!(customers
        .iter()
        .any(|c| c["phone"].as_str().is_some_and(|p| p.starts_with("+351"))));
    assert!(customers.iter().any(|c| c["phone"]
        .as_str()
        .is_some_and(|p| p.starts_with('9') && p.contains(' '))));
    let invoices = api.call("invoices/getAll", json!({})).await;
    let first = invoices.get(0).cloned().unwrap_or(Value::Null);
    assert_eq!(first["document_type"]["saft_code"], "FT");
    assert!(first["lastmodified"]
        .as_str()
        .is_some_and(|t| t.len() == 24 && (t.ends_with("+0000") || t.ends_with("+0100"))));
    // The same seed gives the same company.
    let twin = moloni::start(loopback(), MoloniConfig::seeded(5, 80))
        .await
        .expect("starts");
    assert_eq!(twin.credentials, api.emu.credentials);
    assert_eq!(twin.emulator.customers(), customers);
}

#[tokio::test]
async fn validation_errors_come_as_an_array_in_both_forms() {
    let api = api(MoloniConfig::seeded(6, 2)).await;
    let mut bad = new_customer(&api, "Ana Conceição", "123456788");
    bad.as_object_mut().map(|m| m.remove("city"));
    let human = api.call("customers/insert", bad.clone()).await;
    let codes: Vec<&str> = human
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(codes.contains(&"1 city"), "{human}");
    assert!(codes.contains(&"2 vat"), "{human}");
    assert!(human[0]["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("Field '")));
    let (_, plain) = api.raw("customers/insert", bad, false).await;
    assert!(
        plain
            .as_array()
            .is_some_and(|a| a.contains(&json!("1 city")) && a.contains(&json!("2 vat"))),
        "{plain}"
    );
    let ok = api
        .call("customers/insert", new_customer(&api, "Ana Conceição", "123456789"))
        .await;
    assert_eq!(ok["valid"], 1);
    let duplicate = api
        .call("customers/insert", new_customer(&api, "Outra Ana", "123456789"))
        .await;
    assert_eq!(duplicate[0]["code"], "4 number");
}

#[tokio::test]
async fn modified_since_sees_inserts_and_updates() {
    let api = api(MoloniConfig::seeded(7, 30)).await;
    let now = moloni::lisbon(tether_sandbox::timefmt::now_ms() - 1000);
    let before = api
        .call("customers/getModifiedSince", json!({"lastmodified": now}))
        .await;
    assert_eq!(before, json!([]));
    let created = api
        .call("customers/insert", new_customer(&api, "Gonçalo Brandão", "123456789"))
        .await;
    let id = created["customer_id"].as_u64().unwrap_or_default();
    let changed = api
        .call("customers/getModifiedSince", json!({"lastmodified": now}))
        .await;
    assert_eq!(changed.as_array().map(Vec::len), Some(1));
    assert_eq!(changed[0]["customer_id"], id);
    assert_eq!(
        api.call("customers/countModifiedSince", json!({"lastmodified": now}))
            .await["count"],
        1
    );
    let (_, missing) = api.raw("customers/getModifiedSince", json!({}), false).await;
    assert_eq!(missing, json!(["1 lastmodified"]));
    let old = api.emu.emulator.customers()[0]["customer_id"]
        .as_u64()
        .unwrap_or_default();
    let mut update = api.emu.emulator.customer(old).unwrap_or(Value::Null);
    update["phone"] = json!("22 123 4567");
    let updated = api.call("customers/update", update).await;
    assert_eq!(updated["valid"], 1);
    let both = api
        .call("customers/getModifiedSince", json!({"lastmodified": now}))
        .await;
    let ids: Vec<u64> = both
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["customer_id"].as_u64())
        .collect();
    assert_eq!(ids, vec![id, old]);
    assert_eq!(
        api.call("customers/getOne", json!({"customer_id": old})).await["phone"],
        "22 123 4567"
    );
    assert_eq!(api.call("customers/getOne", json!({"customer_id": 1})).await, json!([]));
}

#[tokio::test]
async fn searches_find_by_vat_email_and_text() {
    let api = api(MoloniConfig::seeded(8, 10)).await;
    api.call("customers/insert", new_customer(&api, "Leonor Magalhães", "123456789"))
        .await;
    let by_vat = api
        .call("customers/getByVat", json!({"vat": "123456789", "exact": 1}))
        .await;
    assert_eq!(by_vat[0]["name"], "Leonor Magalhães");
    let by_email = api
        .call(
            "customers/getByEmail",
            json!({"email": "CLIENTE@example.pt", "exact": 1}),
        )
        .await;
    assert_eq!(by_email.as_array().map(Vec::len), Some(1));
    let by_text = api.call("customers/getBySearch", json!({"search": "magalhães"})).await;
    assert!(by_text
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["vat"] == "123456789")));
    assert_eq!(
        api.call("customers/countByVat", json!({"vat": "123456789"})).await["count"],
        1
    );
}

#[tokio::test]
async fn a_customer_on_an_invoice_cannot_be_deleted() {
    let api = api(MoloniConfig::seeded(9, 4)).await;
    let id = api
        .call("customers/insert", new_customer(&api, "Rui Gusmão", "123456789"))
        .await["customer_id"]
        .as_u64()
        .unwrap_or_default();
    let lonely = api
        .call("customers/insert", new_customer(&api, "Sem Faturas", "999999990"))
        .await["customer_id"]
        .as_u64()
        .unwrap_or_default();
    let c = api.emu.credentials.clone();
    let invoice = api
        .call(
            "invoices/insert",
            json!({"date": "2026-01-15", "expiration_date": "2026-02-14", "document_set_id": c.document_set_id, "customer_id": id, "status": 1,
                   "products": [{"name": "Consultoria", "qty": 2, "price": 500.0, "taxes": [{"tax_id": c.tax_id}]}]}),
        )
        .await;
    assert_eq!(invoice["valid"], 1);
    let document_id = invoice["document_id"].as_u64().unwrap_or_default();
    let one = api.call("invoices/getOne", json!({"document_id": document_id})).await;
    assert_eq!(one["net_value"], 1230.0);
    assert_eq!(one["customer_id"], id);
    assert_eq!(
        api.call("customers/delete", json!({"customer_id": id})).await,
        json!({"valid": 0})
    );
    assert_eq!(
        api.call("customers/delete", json!({"customer_id": lonely})).await,
        json!({"valid": 1})
    );
    // documents/count answers a string, as recorded.
    assert!(api.call("documents/count", json!({})).await["count"].is_string());
    let incomplete = api.call("invoices/insert", json!({"customer_id": id})).await;
    assert!(incomplete
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["code"] == "1 products")));
}

#[tokio::test]
async fn faults_and_the_admin_routes() {
    let api = api(MoloniConfig::seeded(10, 3)).await;
    api.emu
        .set_faults(FaultConfig {
            error_next: 1,
            error_status: 503,
            rate_limit_next: 1,
            ..FaultConfig::default()
        })
        .expect("faults");
    assert_eq!(api.raw("customers/count", json!({}), true).await.0, 429);
    assert_eq!(api.raw("customers/count", json!({}), true).await.0, 503);
    assert_eq!(api.raw("customers/count", json!({}), true).await.0, 200);
    let base = api.emu.base_url();
    let creds: Value = api
        .http
        .get(format!("{base}/_sandbox/credentials"))
        .send()
        .await
        .expect("ok")
        .json()
        .await
        .expect("json");
    assert_eq!(creds["company_id"], api.emu.credentials.company_id);
    let requests: Value = api
        .http
        .get(format!("{base}/_sandbox/requests"))
        .send()
        .await
        .expect("ok")
        .json()
        .await
        .expect("json");
    assert!(requests
        .as_array()
        .is_some_and(|r| r.iter().all(|e| e["params"].get("access_token").is_none()) && !r.is_empty()));
    let state: Value = api
        .http
        .get(format!("{base}/_sandbox/state"))
        .send()
        .await
        .expect("ok")
        .json()
        .await
        .expect("json");
    assert_eq!(state["customers"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn form_bodies_with_php_brackets_are_read_like_json() {
    let api = api(MoloniConfig::seeded(11, 3)).await;
    let c = api.emu.credentials.clone();
    let customer = api.emu.emulator.customers()[0]["customer_id"].to_string();
    let (company, set, tax) = (
        c.company_id.to_string(),
        c.document_set_id.to_string(),
        c.tax_id.to_string(),
    );
    let form = [
        ("company_id", company.as_str()),
        ("date", "2026-01-15"),
        ("expiration_date", "2026-02-14"),
        ("document_set_id", set.as_str()),
        ("customer_id", customer.as_str()),
        ("products[0][name]", "Caixa de vinho"),
        ("products[0][qty]", "3"),
        ("products[0][price]", "10.5"),
        ("products[0][taxes][0][tax_id]", tax.as_str()),
        ("products[1][name]", "Portes"),
        ("products[1][qty]", "1"),
        ("products[1][price]", "5"),
    ];
    let r = api
        .http
        .post(format!("{}/invoices/insert/", api.emu.base_url()))
        .query(&[("access_token", api.token.as_str())])
        .form(&form)
        .send()
        .await
        .expect("answered");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["valid"], 1, "{body}");
    let one = api
        .call("invoices/getOne", json!({"document_id": body["document_id"]}))
        .await;
    // 31.50 taxed at 23% plus 5.00 untaxed.
    assert_eq!(one["gross_value"], 36.5);
    assert_eq!(one["taxes_value"], 7.25);
    assert_eq!(one["net_value"], 43.75);
    // The grant also takes a POST form body.
    let token = api
        .http
        .post(format!("{}/grant/", api.emu.base_url()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ])
        .send()
        .await
        .expect("answered");
    assert_eq!(token.status(), 200);
}

#[tokio::test]
async fn the_authorization_code_grant_needs_the_same_redirect_uri_and_works_once() {
    let emu = moloni::start(loopback(), MoloniConfig::seeded(12, 1))
        .await
        .expect("starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let redirect = "http://127.0.0.1:9/callback";
    let r = http
        .get(format!("{}/v1/authorize/", emu.base_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", emu.credentials.client_id.as_str()),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 302);
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let code = location
        .strip_prefix(&format!("{redirect}?code="))
        .expect("code in the redirect")
        .to_owned();
    let elsewhere = grant(
        &emu,
        &http,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://x/"),
        ],
    )
    .await;
    assert_eq!(
        elsewhere.json::<Value>().await.expect("json")["error"],
        "redirect_uri_mismatch"
    );
    let exchanged = grant(
        &emu,
        &http,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(exchanged.status(), 200);
    let twice = grant(
        &emu,
        &http,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(twice.json::<Value>().await.expect("json")["error"], "invalid_grant");
}
