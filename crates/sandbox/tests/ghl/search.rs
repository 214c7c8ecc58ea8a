use crate::common::env;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn ids(v: &Value) -> Vec<String> {
    v["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn search_filters_sort_and_search_after() {
    let e = env(80).await;
    let mine = e.my_contacts().await;
    assert_eq!(mine.len(), 64);

    // dateUpdated range: compare with the state dump.
    let mut updated: Vec<String> = mine
        .iter()
        .map(|c| c["dateUpdated"].as_str().unwrap_or_default().to_string())
        .collect();
    updated.sort();
    let (lo, hi) = (updated[10].clone(), updated[40].clone());
    let expected = updated.iter().filter(|d| **d >= lo && **d < hi).count();
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 100,
                   "filters": [{"field": "dateUpdated", "operator": "range", "value": {"gte": lo, "lt": hi}}],
                   "sort": [{"field": "dateUpdated", "direction": "asc"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["total"], expected);
    let got: Vec<String> = r.body["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| c["dateUpdated"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(got.len(), expected);
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "ascending");
    assert!(got.iter().all(|d| *d >= lo && *d < hi));

    // Page through everything 7 at a time with searchAfter.
    let mut all = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let mut body = json!({"locationId": e.loc(), "pageLimit": 7,
                              "sort": [{"field": "dateUpdated", "direction": "desc"}]});
        if let Some(a) = &after {
            body["searchAfter"] = a.clone();
        }
        let r = e.post("/contacts/search", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["total"], 64);
        let page = r.body["contacts"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        let last = &page[page.len() - 1];
        let sa = last["searchAfter"].clone();
        assert_eq!(sa[1], last["id"]);
        assert!(sa[0].is_i64(), "dates sort as epoch ms");
        after = Some(sa);
        all.extend(ids(&r.body));
    }
    assert_eq!(all.len(), 64);
    let mut uniq = all.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 64);

    // email and phone equality (case and format insensitive), OR groups.
    let (a, b) = (&mine[5], &mine[9]);
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 10, "filters": [{"group": "OR", "filters": [
                {"field": "email", "operator": "eq", "value": a["email"].as_str().unwrap_or_default().to_uppercase()},
                {"field": "phone", "operator": "eq", "value": b["phone"]}
            ]}]}),
        )
        .await;
    let mut got = ids(&r.body);
    got.sort();
    let mut want = vec![
        a["id"].as_str().unwrap_or_default().to_string(),
        b["id"].as_str().unwrap_or_default().to_string(),
    ];
    want.sort();
    assert_eq!(got, want);

    // Tags and free-text query.
    let tagged = mine
        .iter()
        .filter(|c| c["tags"].as_array().is_some_and(|t| t.contains(&json!("vip"))))
        .count();
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 100,
              "filters": [{"field": "tags", "operator": "eq", "value": "vip"}]}),
        )
        .await;
    assert_eq!(r.body["total"], tagged);
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 5, "page": 2}),
        )
        .await;
    assert_eq!(r.body["contacts"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn search_errors() {
    let e = env(5).await;
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 10,
              "filters": [{"field": "contact_name", "operator": "eq", "value": "x"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["message"], "Invalid field contact_name");
    assert!(r.body["traceId"].is_string());
    let r = e.post("/contacts/search", json!({"locationId": e.loc()})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = e
        .post("/contacts/search", json!({"locationId": e.loc(), "pageLimit": 501}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 10, "page": 1, "searchAfter": [1, "a"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = e
        .post(
            "/contacts/search",
            json!({"locationId": e.loc(), "pageLimit": 100, "page": 101}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "page paging stops at 10,000 records");
}
