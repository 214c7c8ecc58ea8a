use crate::common::{env, messages};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn tasks_lifecycle() {
    let e = env(0).await;
    let cid = e.create_contact(json!({"firstName": "Task"})).await;
    let base = format!("/contacts/{cid}/tasks");
    let r = e
        .post(
            &base,
            json!({"title": "Call", "dueDate": "2030-01-02T10:00:00Z", "completed": false, "body": "b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let t = &r.body["task"];
    assert_eq!(t["title"], "Call");
    assert_eq!(t["dueDate"], "2030-01-02T10:00:00.000Z");
    assert_eq!(t["contactId"], cid.as_str());
    let tid = t["id"].as_str().unwrap_or_default().to_string();

    let r = e.post(&base, json!({"body": "no title"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let m = messages(&r.body);
    for needed in [
        "title should not be empty",
        "dueDate should not be empty",
        "completed should not be empty",
    ] {
        assert!(m.contains(&needed.to_string()), "{m:?}");
    }
    let r = e
        .post(&base, json!({"title": "x", "dueDate": "tomorrow", "completed": false}))
        .await;
    assert_eq!(messages(&r.body), vec!["dueDate must be a valid ISO 8601 date string"]);

    let r = e.get(&base).await;
    assert_eq!(r.body["tasks"].as_array().map(Vec::len), Some(1));
    let r = e.get(&format!("{base}/{tid}")).await;
    assert_eq!(r.body["task"]["id"], tid.as_str());
    let r = e.put(&format!("{base}/{tid}"), json!({"title": "Call back"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["task"]["title"], "Call back");
    assert_eq!(r.body["task"]["completed"], false);
    let r = e.put(&format!("{base}/{tid}/completed"), json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = e
        .put(&format!("{base}/{tid}/completed"), json!({"completed": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["task"]["completed"], true);
    let r = e.delete(&format!("{base}/{tid}"), None).await;
    assert_eq!(r.body, json!({"succeded": true}));
    let r = e.get(&format!("{base}/{tid}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["message"], format!("Task with id {tid} not found"));
    let r = e.get("/contacts/nosuchcontact0000000/tasks").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn notes_lifecycle() {
    let e = env(0).await;
    let cid = e.create_contact(json!({"firstName": "Note"})).await;
    let base = format!("/contacts/{cid}/notes");
    let r = e
        .post(
            &base,
            json!({"body": "first", "title": "T", "color": "#FFAA00", "pinned": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let nid = r.body["note"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(r.body["note"]["pinned"], true);
    assert_eq!(r.body["note"]["contactId"], cid.as_str());
    e.post(&base, json!({"body": "second"})).await;
    let r = e.get(&base).await;
    let notes = r.body["notes"].as_array().cloned().unwrap_or_default();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0]["body"], "second", "newest first");
    let r = e.post(&base, json!({"title": "no body"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = e.put(&format!("{base}/{nid}"), json!({"body": "edited"})).await;
    assert_eq!(r.body["note"]["body"], "edited");
    assert_eq!(r.body["note"]["title"], "T");
    let r = e.get(&format!("{base}/{nid}")).await;
    assert_eq!(r.body["note"]["body"], "edited");
    let r = e.delete(&format!("{base}/{nid}"), None).await;
    assert_eq!(r.body, json!({"succeded": true}));
    let r = e.delete(&format!("{base}/{nid}"), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(e.state().await["notes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn missing_ids_can_be_404() {
    let e = crate::common::env_with(tether_sandbox::GhlConfig {
        missing_record_status: 404,
        ..tether_sandbox::GhlConfig::seeded(1, 0)
    })
    .await;
    let r = e.get("/contacts/abcdefghij0123456789").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "Contact with id abcdefghij0123456789 not found");
}
