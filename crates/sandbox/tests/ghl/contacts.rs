use crate::common::{env, messages, Env};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn create_get_update_delete_round_trip() {
    let e = env(0).await;
    let r = e
        .post(
            "/contacts/",
            json!({
                "locationId": e.loc(), "firstName": "Rosan", "lastName": "Deo",
                "email": "Rosan@Deos.com", "phone": "+1 888-888-8888",
                "tags": ["VIP", " lead "], "dateOfBirth": "1990-09-25", "source": "public api",
                "companyName": "DGS VolMAX"
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let c = &r.body["contact"];
    let id = c["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 20);
    assert!(id.chars().all(|ch| ch.is_ascii_alphanumeric()));
    assert_eq!(c["phone"], "+18888888888");
    assert_eq!(c["emailLowerCase"], "rosan@deos.com");
    assert_eq!(c["tags"], json!(["vip", "lead"]));
    assert_eq!(c["dateOfBirth"], "1990-09-25T00:00:00.000Z");
    assert_eq!(c["birthMonth"], 8);
    assert_eq!(c["deleted"], false);
    assert_eq!(c["locationId"], e.loc().as_str());
    assert!(c.get("name").is_none(), "create response has no name");

    let g = e.get(&format!("/contacts/{id}")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["contact"]["name"], "Rosan Deo");
    assert_eq!(g.body["contact"]["companyName"], "DGS VolMAX");

    let u = e
        .put(
            &format!("/contacts/{id}"),
            json!({"tags": ["customer"], "city": "Dolomite", "website": null}),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    assert_eq!(u.body["succeded"], true);
    assert_eq!(u.body["contact"]["tags"], json!(["customer"]));
    assert_eq!(u.body["contact"]["city"], "Dolomite");
    let before = g.body["contact"]["dateUpdated"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(u.body["contact"]["dateUpdated"].as_str().unwrap_or_default() > before.as_str());

    let d = e.delete(&format!("/contacts/{id}"), None).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body, json!({"succeded": true}));
    let gone = e.get(&format!("/contacts/{id}")).await;
    assert_eq!(gone.status, StatusCode::BAD_REQUEST);
    assert_eq!(gone.body["message"], format!("Contact with id {id} not found"));
    assert!(e.state().await["contacts"].as_array().is_some_and(|a| a.is_empty()));
}

#[tokio::test]
async fn strict_validation_gives_422_arrays() {
    let e = env(3).await;
    let r = e
        .post("/contacts/", json!({"locationId": e.loc(), "foo": 1, "firstName": 5}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["statusCode"], 422);
    assert_eq!(r.body["error"], "Unprocessable Entity");
    let m = messages(&r.body);
    assert!(m.contains(&"property foo should not exist".to_string()), "{m:?}");
    assert!(m.contains(&"firstName must be a string".to_string()), "{m:?}");

    let r = e.post("/contacts/", json!({"firstName": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(messages(&r.body).contains(&"locationId should not be empty".to_string()));

    let id = e.my_contacts().await[0]["id"].as_str().unwrap_or_default().to_string();
    for (path, body) in [
        (format!("/contacts/{id}"), json!({"locationId": e.loc()})),
        (
            format!("/contacts/{id}/notes"),
            json!({"locationId": e.loc(), "body": "x"}),
        ),
        (
            format!("/contacts/{id}/tags"),
            json!({"locationId": e.loc(), "tags": ["a"]}),
        ),
        (
            format!("/contacts/{id}/tasks"),
            json!({"locationId": e.loc(), "title": "t", "dueDate": "2030-01-01T00:00:00Z", "completed": false}),
        ),
    ] {
        let method = if path.ends_with(&id) { Method::PUT } else { Method::POST };
        let r = e.call(method, &path, &e.pit(), Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(
            messages(&r.body),
            vec!["property locationId should not exist"],
            "{path}"
        );
    }
    // companyName is not in UpdateContactDto.
    let r = e.put(&format!("/contacts/{id}"), json!({"companyName": "X"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = e
        .post("/contacts/", json!({"locationId": e.loc(), "email": "not-an-email"}))
        .await;
    assert_eq!(messages(&r.body), vec!["email must be an email"]);

    let bad = Env::send(
        e.request(Method::POST, "/contacts/", &e.pit())
            .header("content-type", "application/json")
            .body("{\"locationId\": "),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let q = e.get(&format!("/contacts/?locationId={}&bogus=1", e.loc())).await;
    assert_eq!(q.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(messages(&q.body), vec!["property bogus should not exist"]);
}

#[tokio::test]
async fn version_token_scope_and_location_errors() {
    let e = env(10).await;
    let id = e.my_contacts().await[0]["id"].as_str().unwrap_or_default().to_string();
    let url = format!("{}/contacts/{id}", e.base);

    let r = Env::send(e.http.get(&url).bearer_auth(e.pit())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "version header was not found.");

    let r = Env::send(e.http.get(&url).bearer_auth(e.pit()).header("Version", "2020-01-01")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "version header is invalid");

    for v in ["2021-04-15", "2023-02-21", "v3"] {
        let r = Env::send(e.http.get(&url).bearer_auth(e.pit()).header("Version", v)).await;
        assert_eq!(r.status, StatusCode::OK, "version {v}");
    }

    let r = Env::send(e.http.get(&url).header("Version", "2021-07-28")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "Invalid JWT");

    let r = e
        .call(Method::GET, &format!("/contacts/{id}"), "eyJhbGciOi.bad.token", None)
        .await;
    assert_eq!(
        (r.status, r.body["message"].clone()),
        (StatusCode::UNAUTHORIZED, json!("Invalid JWT"))
    );
    let r = e
        .call(
            Method::GET,
            &format!("/contacts/{id}"),
            "pit-00000000-0000-4000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(r.body["message"], "Invalid Private Integration token");

    // Read-only token: reads pass, writes are 401 (not 403).
    let ro = e.ghl.credentials.readonly_pit.clone();
    assert_eq!(
        e.call(Method::GET, &format!("/contacts/{id}"), &ro, None).await.status,
        StatusCode::OK
    );
    let r = e
        .call(Method::PUT, &format!("/contacts/{id}"), &ro, Some(json!({"city": "X"})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["message"], "The token is not authorized for this scope.");
    let r = e
        .call(Method::GET, &format!("/locations/{}/customFields", e.loc()), &ro, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Other location's token: its own data is fine, ours is 403.
    let other = e.ghl.credentials.other_pit.clone();
    let r = e.call(Method::GET, &format!("/contacts/{id}"), &other, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["message"], "The token does not have access to this location");
    let r = e
        .call(
            Method::POST,
            "/contacts/",
            &other,
            Some(json!({"locationId": e.loc(), "firstName": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = e
        .call(Method::GET, &format!("/contacts/?locationId={}", e.loc()), &other, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let other_loc = e.ghl.credentials.other_location_id.clone();
    let r = e
        .call(Method::GET, &format!("/contacts/?locationId={other_loc}"), &other, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["count"], 2,
        "every fifth seeded contact is in the other location"
    );

    // A token minted through the admin route with a chosen scope set.
    let t = e
        .admin(
            Method::POST,
            "/_sandbox/tokens",
            Some(json!({"scopes": ["contacts.write"]})),
        )
        .await;
    let tok = t.body["token"].as_str().unwrap_or_default().to_string();
    assert!(tok.starts_with("pit-") && tok.len() == 40, "{tok}");
    let r = e.call(Method::GET, &format!("/contacts/{id}"), &tok, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "write does not imply read");

    let r = e.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "Cannot GET /nope");
}

#[tokio::test]
async fn duplicate_rule_on_create() {
    let e = env(0).await;
    let first = e
        .create_contact(
            json!({"firstName": "Ann", "lastName": "Lee", "email": "ann@example.com", "phone": "(512) 555-0101"}),
        )
        .await;
    let r = e
        .post("/contacts/", json!({"locationId": e.loc(), "email": "ANN@example.com"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"statusCode": 400, "message": "This location does not allow duplicated contacts.",
               "meta": {"contactId": first, "contactName": "Ann Lee", "matchingField": "email"}})
    );
    let r = e
        .post(
            "/contacts/",
            json!({"locationId": e.loc(), "email": "other@example.com", "phone": "+15125550101"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["meta"]["matchingField"], "phone");

    // A second contact may not take the first one's email on update either.
    let second = e.create_contact(json!({"email": "b@example.com"})).await;
    let r = e
        .put(&format!("/contacts/{second}"), json!({"email": "ann@example.com"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["meta"]["contactId"], first.as_str());

    let s = e
        .admin(
            Method::PUT,
            "/_sandbox/settings",
            Some(json!({"allowDuplicateContact": true})),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK);
    let loc = e.get(&format!("/locations/{}", e.loc())).await;
    assert_eq!(loc.body["location"]["settings"]["allowDuplicateContact"], true);
    let r = e
        .post("/contacts/", json!({"locationId": e.loc(), "email": "ann@example.com"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let later = r.body["contact"]["id"].as_str().unwrap_or_default().to_string();

    // With duplicates refused again, an upsert finds the oldest holder of the email; once
    // that one is deleted, the next oldest; once both are, none.
    e.admin(
        Method::PUT,
        "/_sandbox/settings",
        Some(json!({"allowDuplicateContact": false})),
    )
    .await;
    let upsert = json!({"locationId": e.loc(), "email": "Ann@Example.com"});
    let r = e.post("/contacts/upsert", upsert.clone()).await;
    assert_eq!(
        (r.body["new"].clone(), r.body["contact"]["id"].clone()),
        (json!(false), json!(first))
    );
    assert_eq!(
        e.delete(&format!("/contacts/{first}"), None).await.status,
        StatusCode::OK
    );
    let r = e.post("/contacts/upsert", upsert.clone()).await;
    assert_eq!(
        (r.body["new"].clone(), r.body["contact"]["id"].clone()),
        (json!(false), json!(later))
    );
    // A contact that changes its email no longer holds the old one.
    assert_eq!(
        e.put(&format!("/contacts/{later}"), json!({"email": "ann.lee@example.com"}))
            .await
            .status,
        StatusCode::OK
    );
    let r = e.post("/contacts/upsert", upsert).await;
    assert_eq!(r.body["new"], true, "{}", r.body);
}

#[tokio::test]
async fn upsert_creates_then_updates() {
    let e = env(0).await;
    let r = e
        .post(
            "/contacts/upsert",
            json!({"locationId": e.loc(), "email": "up@example.com", "firstName": "Up", "tags": ["a"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "upsert is 200 even when it creates");
    assert_eq!(r.body["new"], true);
    assert!(r.body["traceId"].as_str().is_some_and(|t| !t.is_empty()));
    let id = r.body["contact"]["id"].as_str().unwrap_or_default().to_string();

    let r = e
        .post(
            "/contacts/upsert",
            json!({"locationId": e.loc(), "email": "UP@example.com", "lastName": "Date", "tags": ["b"]}),
        )
        .await;
    assert_eq!(r.body["new"], false);
    assert_eq!(r.body["contact"]["id"], id.as_str());
    assert_eq!(r.body["contact"]["name"], "Up Date");
    assert_eq!(r.body["contact"]["tags"], json!(["b"]), "tags replace");

    // Matches on phone when email is absent.
    e.put(&format!("/contacts/{id}"), json!({"phone": "+15125550199"}))
        .await;
    let r = e
        .post(
            "/contacts/upsert",
            json!({"locationId": e.loc(), "phone": "512-555-0199", "city": "Austin"}),
        )
        .await;
    assert_eq!(
        (r.body["new"].clone(), r.body["contact"]["id"].clone()),
        (json!(false), json!(id))
    );

    // createNewIfDuplicateAllowed only forces a new contact when the location allows duplicates.
    let body = json!({"locationId": e.loc(), "email": "up@example.com", "createNewIfDuplicateAllowed": true});
    assert_eq!(e.post("/contacts/upsert", body.clone()).await.body["new"], false);
    e.admin(
        Method::PUT,
        "/_sandbox/settings",
        Some(json!({"allowDuplicateContact": true})),
    )
    .await;
    let r = e.post("/contacts/upsert", body).await;
    assert_eq!(r.body["new"], true);
    assert_ne!(r.body["contact"]["id"], id.as_str());
    assert_eq!(e.my_contacts().await.len(), 2);
}

#[tokio::test]
async fn deprecated_list_pages_with_meta() {
    let e = env(40).await;
    let mine = e.my_contacts().await;
    assert_eq!(mine.len(), 32);
    let mut seen = Vec::new();
    let mut url = format!("/contacts/?locationId={}&limit=10", e.loc());
    let mut pages = 0;
    loop {
        let r = e.get(&url).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["count"], 32);
        assert_eq!(r.body["meta"]["total"], 32);
        pages += 1;
        assert_eq!(r.body["meta"]["currentPage"], pages);
        for c in r.body["contacts"].as_array().expect("contacts") {
            assert!(c["firstName"].is_string() && c["email"].is_string());
            seen.push(c["id"].as_str().unwrap_or_default().to_string());
        }
        match r.body["meta"]["nextPageUrl"].as_str() {
            Some(next) => {
                assert_eq!(r.body["meta"]["nextPage"], pages + 1);
                url = next.trim_start_matches(&e.base).to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 4);
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 32, "no contact repeated or skipped");
    // Newest first.
    let first_page = e.get(&format!("/contacts/?locationId={}&limit=100", e.loc())).await;
    let dates: Vec<String> = first_page.body["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| c["dateAdded"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]));

    let r = e.get(&format!("/contacts/?locationId={}&limit=101", e.loc())).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = e.get("/contacts/").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn duplicate_lookup_business_tags_appointments() {
    let e = env(60).await;
    let mine = e.my_contacts().await;
    let c = &mine[3];
    let email = c["email"].as_str().unwrap_or_default().to_uppercase();
    let r = e
        .get(&format!(
            "/contacts/search/duplicate?locationId={}&email={}",
            e.loc(),
            email
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["contact"]["id"], c["id"]);
    let phone = c["phone"].as_str().unwrap_or_default().replace('+', "%2B");
    let r = e
        .get(&format!(
            "/contacts/search/duplicate?locationId={}&number={phone}",
            e.loc()
        ))
        .await;
    assert_eq!(r.body["contact"]["id"], c["id"]);
    let r = e
        .get(&format!(
            "/contacts/search/duplicate?locationId={}&email=nobody@example.com",
            e.loc()
        ))
        .await;
    assert_eq!(r.body, json!({"contact": null}));

    let with_biz: Vec<&serde_json::Value> = mine.iter().filter(|c| c["businessId"].is_string()).collect();
    let biz = with_biz[0]["businessId"].as_str().unwrap_or_default();
    let expected = with_biz.iter().filter(|c| c["businessId"] == biz).count();
    let r = e.get(&format!("/contacts/business/{biz}?locationId={}", e.loc())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["count"], expected);
    assert!(r.body["contacts"]
        .as_array()
        .is_some_and(|a| a.iter().all(|x| x["businessId"] == biz)));

    let id = c["id"].as_str().unwrap_or_default();
    let r = e
        .post(&format!("/contacts/{id}/tags"), json!({"tags": ["Alpha", "beta"]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let tags = r.body["tags"].as_array().cloned().unwrap_or_default();
    assert!(tags.contains(&json!("alpha")) && tags.contains(&json!("beta")));
    let r = e
        .delete(&format!("/contacts/{id}/tags"), Some(json!({"tags": ["alpha"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body["tags"].as_array().is_some_and(|a| a.contains(&json!("alpha"))));
    assert!(r.body["tags"].as_array().is_some_and(|a| a.contains(&json!("beta"))));
    let r = e.post(&format!("/contacts/{id}/tags"), json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let state = e.state().await;
    let appt = state["appointments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["locationId"] == e.loc().as_str()))
        .cloned()
        .expect("some seeded appointment");
    let cid = appt["contactId"].as_str().unwrap_or_default();
    let r = e.get(&format!("/contacts/{cid}/appointments")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["events"][0]["id"], appt["id"]);
    assert!(r.body["events"][0]["startTime"]
        .as_str()
        .is_some_and(|s| s.len() == 19 && s.as_bytes()[10] == b' '));
}

#[tokio::test]
async fn custom_fields_resolve_by_name_and_key() {
    let e = env(0).await;
    let r = e
        .get(&format!("/locations/{}/customFields?model=contact", e.loc()))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let fields = r.body["customFields"].as_array().cloned().unwrap_or_default();
    assert_eq!(fields.len(), 5);
    let by_name = |n: &str| {
        fields
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("field {n}"))
    };
    let num = by_name("Customer Number");
    assert_eq!(num["fieldKey"], "contact.customer_number");
    assert_eq!(num["dataType"], "TEXT");
    let method = by_name("Preferred Contact Method");
    let id = e
        .create_contact(json!({"firstName": "Cf", "customFields": [
            {"id": num["id"], "field_value": "C-1"},
            {"key": "preferred_contact_method", "field_value": "SMS"},
            {"id": "doesNotExist0000000", "field_value": "ignored"}
        ]}))
        .await;
    let g = e.get(&format!("/contacts/{id}")).await;
    assert_eq!(
        g.body["contact"]["customFields"],
        json!([{"id": num["id"], "value": "C-1"}, {"id": method["id"], "value": "SMS"}])
    );
    let u = e
        .put(
            &format!("/contacts/{id}"),
            json!({"customFields": [{"key": "contact.customer_number", "field_value": ""}]}),
        )
        .await;
    assert_eq!(
        u.body["contact"]["customFields"],
        json!([{"id": method["id"], "value": "SMS"}])
    );
}

#[tokio::test]
async fn seeding_is_deterministic_and_reset_restores_it() {
    let a = env(20).await;
    let b = env(20).await;
    let sa = a.state().await;
    assert_eq!(sa, b.state().await);
    assert_eq!(a.ghl.credentials, b.ghl.credentials);
    assert_eq!(a.ghl.webhook_public_key, b.ghl.webhook_public_key);
    let contacts = sa["contacts"].as_array().cloned().unwrap_or_default();
    assert_eq!(contacts.len(), 20);
    for c in &contacts {
        let phone = c["phone"].as_str().unwrap_or_default();
        assert!(phone.starts_with("+1") && phone.len() == 12, "{phone}");
        assert!(c["email"].as_str().is_some_and(|m| m.contains('@')));
    }
    assert!(!sa["tasks"].as_array().is_some_and(|t| t.is_empty()));
    assert!(!sa["notes"].as_array().is_some_and(|n| n.is_empty()));

    let id = a.create_contact(json!({"firstName": "New"})).await;
    assert_ne!(a.state().await, sa);
    let r = a.admin(Method::POST, "/_sandbox/reset", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(a.state().await, sa);
    assert_eq!(a.get(&format!("/contacts/{id}")).await.status, StatusCode::BAD_REQUEST);

    let c = tether_sandbox::GhlConfig::seeded(43, 20);
    let other = tether_sandbox::start(crate::common::loopback(), c)
        .await
        .expect("start");
    assert_ne!(other.emulator.state(), sa, "a different seed gives different data");
    other.shutdown().await;
}
