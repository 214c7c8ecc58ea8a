//! Validates emulator responses against the response schemas of the official contacts.json.
//! Objects are made closed (`additionalProperties: false`) so extra keys fail too, except the
//! list item/wrapper schemas where the emulator deliberately adds the fields real lists carry,
//! and the common error DTOs, which real error bodies extend (`error`, `traceId`, `meta`).

use crate::common::{env, Env};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

const LOOSE: &[&str] = &[
    "ContactsSearchSchema",
    "ContactsSearchSuccessfulResponseDto",
    "BadRequestDTO",
    "UnauthorizedDTO",
    "UnprocessableDTO",
];

fn spec() -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spec");
    let read = |f: &str| -> Value {
        let text = std::fs::read_to_string(format!("{dir}/{f}")).expect("spec file");
        serde_json::from_str(&text).expect("spec json")
    };
    let mut contacts = read("contacts.json");
    let common = read("common-schemas.json");
    // Put the common schemas beside the contacts ones and point the refs there.
    let merged = {
        let mut m = contacts["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (k, v) in common["components"]["schemas"].as_object().cloned().unwrap_or_default() {
            m.insert(k, v);
        }
        m
    };
    contacts["components"]["schemas"] = Value::Object(merged);
    let mut text = contacts.to_string();
    for prefix in ["../common/common-schemas.json#", "common-schemas.json#"] {
        text = text.replace(&format!("\"{prefix}"), "\"#");
    }
    let mut v: Value = serde_json::from_str(&text).expect("rewritten spec");
    let names: Vec<String> = v["components"]["schemas"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for n in names {
        let strict = !LOOSE.contains(&n.as_str());
        openapi_to_jsonschema(&mut v["components"]["schemas"][&n], strict);
    }
    v
}

/// OpenAPI 3.0 → JSON Schema: `nullable` becomes a null type; objects get closed.
fn openapi_to_jsonschema(s: &mut Value, strict: bool) {
    if let Value::Object(m) = s {
        if m.remove("nullable") == Some(Value::Bool(true)) {
            if let Some(Value::String(t)) = m.get("type").cloned() {
                m.insert("type".into(), json!([t, "null"]));
            }
        }
        m.remove("example");
        if strict && m.get("type") == Some(&json!("object")) && m.contains_key("properties") {
            m.insert("additionalProperties".into(), Value::Bool(false));
        }
        for (_, child) in m.iter_mut() {
            openapi_to_jsonschema(child, strict);
        }
    } else if let Value::Array(a) = s {
        for child in a {
            openapi_to_jsonschema(child, strict);
        }
    }
}

struct Checker {
    spec: Value,
    checked: usize,
}

impl Checker {
    /// The response schema the spec declares for `method path status`.
    fn schema_for(&self, method: &str, path: &str, status: u16) -> Value {
        let s =
            &self.spec["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(s.is_object(), "spec has a schema for {method} {path} {status}");
        s.clone()
    }

    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut root = Map::new();
        for (k, v) in schema.as_object().cloned().unwrap_or_default() {
            root.insert(k, v);
        }
        root.insert("components".into(), self.spec["components"].clone());
        let validator = jsonschema::validator_for(&Value::Object(root)).expect("schema compiles");
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    fn check(&mut self, method: &str, path: &str, r: &crate::common::Resp) {
        let schema = self.schema_for(method, path, r.status.as_u16());
        let errs = self.errors(&schema, &r.body);
        assert!(errs.is_empty(), "{method} {path} {}: {errs:?}\n{}", r.status, r.body);
        self.checked += 1;
    }
}

#[tokio::test]
async fn success_responses_match_the_official_spec() {
    let e: Env = env(40).await;
    let mut c = Checker {
        spec: spec(),
        checked: 0,
    };

    // The checker itself must be able to fail.
    let contact_schema = c.schema_for("get", "/contacts/{contactId}", 200);
    assert!(!c
        .errors(&contact_schema, &json!({"contact": {"dnd": "yes"}}))
        .is_empty());
    assert!(!c
        .errors(&contact_schema, &json!({"contact": {"id": "x", "surprise": 1}}))
        .is_empty());
    assert!(c
        .errors(&contact_schema, &json!({"contact": {"id": "x", "dnd": true}}))
        .is_empty());

    let loc = e.loc();
    let cf = e.get(&format!("/locations/{loc}/customFields")).await;
    let field_id = cf.body["customFields"][0]["id"].clone();
    let r = e
        .post(
            "/contacts/",
            json!({"locationId": loc, "firstName": "Schema", "lastName": "Check", "email": "s@example.com",
                   "phone": "+15125550000", "dateOfBirth": "1990-09-25", "tags": ["x"], "companyName": "Co",
                   "dndSettings": {"SMS": {"status": "active", "message": "m", "code": "1"}},
                   "customFields": [{"id": field_id, "field_value": "C-9"}], "source": "public api",
                   "address1": "1 Main St", "city": "Austin", "state": "TX", "postalCode": "78701",
                   "country": "US", "website": "https://example.com", "timezone": "America/Chicago"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    c.check("post", "/contacts/", &r);
    let id = r.body["contact"]["id"].as_str().unwrap_or_default().to_string();

    c.check("get", "/contacts/{contactId}", &e.get(&format!("/contacts/{id}")).await);
    c.check(
        "put",
        "/contacts/{contactId}",
        &e.put(&format!("/contacts/{id}"), json!({"city": "Dallas"})).await,
    );
    c.check(
        "post",
        "/contacts/upsert",
        &e.post(
            "/contacts/upsert",
            json!({"locationId": loc, "email": "s@example.com", "firstName": "S"}),
        )
        .await,
    );
    c.check(
        "post",
        "/contacts/upsert",
        &e.post(
            "/contacts/upsert",
            json!({"locationId": loc, "email": "brand-new@example.com"}),
        )
        .await,
    );
    c.check(
        "get",
        "/contacts/",
        &e.get(&format!("/contacts/?locationId={loc}&limit=50")).await,
    );

    let mine = e.my_contacts().await;
    let biz = mine
        .iter()
        .find_map(|x| x["businessId"].as_str().map(str::to_string))
        .expect("a seeded business");
    c.check(
        "get",
        "/contacts/business/{businessId}",
        &e.get(&format!("/contacts/business/{biz}?locationId={loc}")).await,
    );

    let tasks = format!("/contacts/{id}/tasks");
    let t = e.post(&tasks, json!({"title": "T", "body": "B", "dueDate": "2030-01-01T00:00:00Z", "completed": false, "assignedTo": "u1"})).await;
    c.check("post", "/contacts/{contactId}/tasks", &t);
    let tid = t.body["task"]["id"].as_str().unwrap_or_default().to_string();
    c.check("get", "/contacts/{contactId}/tasks", &e.get(&tasks).await);
    c.check(
        "get",
        "/contacts/{contactId}/tasks/{taskId}",
        &e.get(&format!("{tasks}/{tid}")).await,
    );
    c.check(
        "put",
        "/contacts/{contactId}/tasks/{taskId}",
        &e.put(&format!("{tasks}/{tid}"), json!({"title": "T2"})).await,
    );
    c.check(
        "put",
        "/contacts/{contactId}/tasks/{taskId}/completed",
        &e.put(&format!("{tasks}/{tid}/completed"), json!({"completed": true}))
            .await,
    );
    c.check(
        "delete",
        "/contacts/{contactId}/tasks/{taskId}",
        &e.delete(&format!("{tasks}/{tid}"), None).await,
    );

    let notes = format!("/contacts/{id}/notes");
    let n = e
        .post(
            &notes,
            json!({"body": "N", "userId": "u1", "title": "t", "color": "#FFAA00", "pinned": true}),
        )
        .await;
    c.check("post", "/contacts/{contactId}/notes", &n);
    let nid = n.body["note"]["id"].as_str().unwrap_or_default().to_string();
    c.check("get", "/contacts/{contactId}/notes", &e.get(&notes).await);
    c.check(
        "get",
        "/contacts/{contactId}/notes/{id}",
        &e.get(&format!("{notes}/{nid}")).await,
    );
    c.check(
        "put",
        "/contacts/{contactId}/notes/{id}",
        &e.put(&format!("{notes}/{nid}"), json!({"body": "N2"})).await,
    );
    c.check(
        "delete",
        "/contacts/{contactId}/notes/{id}",
        &e.delete(&format!("{notes}/{nid}"), None).await,
    );

    c.check(
        "post",
        "/contacts/{contactId}/tags",
        &e.post(&format!("/contacts/{id}/tags"), json!({"tags": ["y"]})).await,
    );
    c.check(
        "delete",
        "/contacts/{contactId}/tags",
        &e.delete(&format!("/contacts/{id}/tags"), Some(json!({"tags": ["y"]})))
            .await,
    );

    let state = e.state().await;
    let appt_contact = state["appointments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["locationId"] == loc.as_str()))
        .map(|a| a["contactId"].as_str().unwrap_or_default().to_string())
        .expect("seeded appointment");
    c.check(
        "get",
        "/contacts/{contactId}/appointments",
        &e.get(&format!("/contacts/{appt_contact}/appointments")).await,
    );
    // Seeded contacts (with their seeded custom fields and dates) validate too.
    for x in mine.iter().take(10) {
        let cid = x["id"].as_str().unwrap_or_default();
        c.check(
            "get",
            "/contacts/{contactId}",
            &e.get(&format!("/contacts/{cid}")).await,
        );
    }
    // Error bodies against the common DTOs.
    c.check("post", "/contacts/", &e.post("/contacts/", json!({"bogus": 1})).await);
    c.check(
        "get",
        "/contacts/{contactId}",
        &e.get("/contacts/unknownunknown000000").await,
    );
    let unauth = e.call(Method::GET, &format!("/contacts/{id}"), "nope", None).await;
    c.check("get", "/contacts/{contactId}", &unauth);

    // Search has no response schema in the spec; its items must still be ContactsSearchSchema.
    let s = e
        .post("/contacts/search", json!({"locationId": loc, "pageLimit": 20}))
        .await;
    let item_schema = json!({"$ref": "#/components/schemas/ContactsSearchSchema"});
    for item in s.body["contacts"].as_array().cloned().unwrap_or_default() {
        let errs = c.errors(&item_schema, &item);
        assert!(errs.is_empty(), "{errs:?}");
    }
    c.check(
        "delete",
        "/contacts/{contactId}",
        &e.delete(&format!("/contacts/{id}"), None).await,
    );
    assert_eq!(c.checked, 35);
}
