//! The contract's endpoints.

use super::error::{created, ok, ApiError, ApiResult};
use super::store::{self, ListQuery, Obj, Subscription, EVENTS};
use super::{Caller, Grant, Inner, ALL_SCOPES};
use crate::timefmt::iso_ms;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

type Emu = State<Arc<Inner>>;
type Params = Query<BTreeMap<String, String>>;

fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not JSON: {e}"),
        )),
    }
}

fn live<'a>(table: &'a mut BTreeMap<String, Obj>, what: &str, id: &str) -> Result<&'a mut Obj, ApiError> {
    table
        .get_mut(id)
        .filter(|o| !o.deleted())
        .ok_or_else(|| ApiError::not_found(what, id))
}

fn touch(obj: &mut Obj, now: i64) {
    obj.time_ms = now;
    obj.fields.insert("updated_at".into(), json!(iso_ms(now)));
}

fn value(obj: &Obj) -> Value {
    Value::Object(obj.fields.clone())
}

// --- contacts ---

pub async fn list_contacts(State(emu): Emu, Extension(caller): Extension<Caller>, Query(q): Params) -> ApiResult {
    caller.need("contacts:read")?;
    let q = ListQuery::parse(&q)?;
    if q.contact_id.is_some() {
        return Err(ApiError::field("contact_id", "unknown query parameter"));
    }
    ok(q.page(emu.store().contacts.values()))
}

pub async fn get_contact(State(emu): Emu, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult {
    caller.need("contacts:read")?;
    ok(value(emu.store().live_contact(&id)?))
}

fn duplicate_email(store: &store::Store, email: Option<&Value>, except: Option<&str>) -> Result<(), ApiError> {
    let Some(email) = email.and_then(Value::as_str) else {
        return Ok(());
    };
    let taken = store.contacts.values().find(|c| {
        !c.deleted()
            && Some(c.id()) != except
            && c.fields
                .get("email")
                .and_then(Value::as_str)
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
    });
    match taken {
        Some(c) => Err(ApiError::conflict(format!(
            "contact {} already has the email {email}",
            c.id()
        ))),
        None => Ok(()),
    }
}

pub async fn create_contact(State(emu): Emu, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult {
    caller.need("contacts:write")?;
    let input = object(&body)?;
    let contact = {
        let mut store = emu.store();
        store::validate_contact(&input, &store, true)?;
        duplicate_email(&store, input.get("email"), None)?;
        let now = emu.clock.now();
        let id = emu.ids.hex(24);
        let mut fields = Map::new();
        for (key, default) in [
            ("type", json!("borrower")),
            ("first_name", Value::Null),
            ("last_name", Value::Null),
            ("email", Value::Null),
            ("phone", Value::Null),
            ("source", Value::Null),
            ("tags", json!([])),
            ("custom_fields", json!({})),
            ("pipeline_stage", json!("new_lead")),
            ("loan_amount", Value::Null),
            (
                "address",
                json!({"street": null, "city": null, "state": null, "county": null, "zip": null}),
            ),
            ("dob", Value::Null),
            ("assigned_user_id", Value::Null),
        ] {
            fields.insert(key.into(), input.get(key).cloned().unwrap_or(default));
        }
        store::stamp_new(&mut fields, &id, now);
        let obj = Obj { fields, time_ms: now };
        let out = value(&obj);
        store.contacts.insert(id, obj);
        out
    };
    emu.emit("contact.created", contact.clone());
    created(contact)
}

pub async fn update_contact(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    caller.need("contacts:write")?;
    let input = object(&body)?;
    let (contact, milestone) = {
        let mut guard = emu.store();
        let store = &mut *guard;
        store::validate_contact(&input, store, false)?;
        store.live_contact(&id)?;
        duplicate_email(store, input.get("email"), Some(&id))?;
        let now = emu.clock.now();
        let contact = live(&mut store.contacts, "contact", &id)?;
        let before = contact.fields.get("pipeline_stage").cloned().unwrap_or(Value::Null);
        for (key, v) in input {
            contact.fields.insert(key, v);
        }
        touch(contact, now);
        let after = contact.fields.get("pipeline_stage").cloned().unwrap_or(Value::Null);
        let out = value(contact);
        let milestone = (before != after).then(|| {
            let mid = emu.ids.hex(24);
            let m = json!({"id": mid, "contact_id": id, "from_stage": before, "to_stage": after, "occurred_at": iso_ms(now)});
            let fields = m.as_object().cloned().unwrap_or_default();
            store.milestones.insert(mid, Obj { fields, time_ms: now });
            m
        });
        (out, milestone)
    };
    match milestone {
        Some(m) => {
            let mut data = contact.clone();
            data["milestone"] = m;
            emu.emit("contact.stage_changed", data);
        }
        None => emu.emit("contact.updated", contact.clone()),
    }
    ok(contact)
}

fn soft_delete(
    emu: &Inner,
    table: impl Fn(&mut store::Store) -> &mut BTreeMap<String, Obj>,
    what: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let mut store = emu.store();
    let now = emu.clock.now();
    let obj = live(table(&mut store), what, id)?;
    obj.fields.insert("deleted_at".into(), json!(iso_ms(now)));
    touch(obj, now);
    Ok(value(obj))
}

fn deleted() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete_contact(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    caller.need("contacts:write")?;
    let gone = soft_delete(&emu, |s| &mut s.contacts, "contact", &id)?;
    emu.emit("contact.deleted", gone);
    deleted()
}

pub async fn list_milestones(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    caller.need("contacts:read")?;
    let mut q = ListQuery::parse(&q)?;
    let store = emu.store();
    store.live_contact(&id)?;
    q.contact_id = Some(id);
    ok(q.page(store.milestones.values()))
}

// --- tasks ---

pub async fn list_tasks(State(emu): Emu, Extension(caller): Extension<Caller>, Query(q): Params) -> ApiResult {
    caller.need("tasks:read")?;
    let q = ListQuery::parse(&q)?;
    ok(q.page(emu.store().tasks.values()))
}

pub async fn get_task(State(emu): Emu, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult {
    caller.need("tasks:read")?;
    let mut store = emu.store();
    ok(value(live(&mut store.tasks, "task", &id)?))
}

pub async fn create_task(State(emu): Emu, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult {
    caller.need("tasks:write")?;
    let input = object(&body)?;
    let task = {
        let mut store = emu.store();
        store::validate_task(&input, &store, true)?;
        let now = emu.clock.now();
        let id = emu.ids.hex(24);
        let mut fields = Map::new();
        for key in ["contact_id", "title", "description", "due_at", "assigned_user_id"] {
            fields.insert(key.into(), input.get(key).cloned().unwrap_or(Value::Null));
        }
        let completed = input.get("status").and_then(Value::as_str) == Some("completed");
        fields.insert("status".into(), json!(if completed { "completed" } else { "open" }));
        fields.insert(
            "completed_at".into(),
            if completed { json!(iso_ms(now)) } else { Value::Null },
        );
        store::stamp_new(&mut fields, &id, now);
        let obj = Obj { fields, time_ms: now };
        let out = value(&obj);
        store.tasks.insert(id, obj);
        out
    };
    emu.emit("task.created", task.clone());
    created(task)
}

pub async fn update_task(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    caller.need("tasks:write")?;
    let input = object(&body)?;
    let (task, completed_now) = {
        let mut guard = emu.store();
        let store = &mut *guard;
        store::validate_task(&input, store, false)?;
        let now = emu.clock.now();
        let task = live(&mut store.tasks, "task", &id)?;
        let was = task.fields.get("status").and_then(Value::as_str) == Some("completed");
        for (key, v) in input {
            task.fields.insert(key, v);
        }
        let is = task.fields.get("status").and_then(Value::as_str) == Some("completed");
        match (was, is) {
            (false, true) => task.fields.insert("completed_at".into(), json!(iso_ms(now))),
            (true, false) => task.fields.insert("completed_at".into(), Value::Null),
            _ => None,
        };
        touch(task, now);
        (value(task), !was && is)
    };
    emu.emit(
        if completed_now {
            "task.completed"
        } else {
            "task.updated"
        },
        task.clone(),
    );
    ok(task)
}

pub async fn delete_task(State(emu): Emu, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult {
    caller.need("tasks:write")?;
    let gone = soft_delete(&emu, |s| &mut s.tasks, "task", &id)?;
    emu.emit("task.deleted", gone);
    deleted()
}

// --- notes ---

pub async fn list_notes(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Params,
) -> ApiResult {
    caller.need("notes:read")?;
    let mut q = ListQuery::parse(&q)?;
    let store = emu.store();
    store.live_contact(&id)?;
    q.contact_id = Some(id);
    ok(q.page(store.notes.values()))
}

pub async fn get_note(State(emu): Emu, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult {
    caller.need("notes:read")?;
    let mut store = emu.store();
    ok(value(live(&mut store.notes, "note", &id)?))
}

/// Attachments get ids, and defaults for what the uploader did not say.
fn attachments(emu: &Inner, given: Option<&Value>) -> Value {
    let items = given.and_then(Value::as_array).cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .map(|mut a| {
                if a.get("id").and_then(Value::as_str).is_none() {
                    a["id"] = json!(emu.ids.hex(24));
                }
                if a.get("content_type").is_none() {
                    a["content_type"] = json!("application/octet-stream");
                }
                if a.get("size").is_none() {
                    a["size"] = Value::Null;
                }
                a
            })
            .collect(),
    )
}

pub async fn create_note(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(contact): Path<String>,
    body: Bytes,
) -> ApiResult {
    caller.need("notes:write")?;
    let input = object(&body)?;
    let note = {
        let mut store = emu.store();
        store.live_contact(&contact)?;
        store::validate_note(&input, &store, true)?;
        let now = emu.clock.now();
        let id = emu.ids.hex(24);
        let mut fields = Map::new();
        fields.insert("contact_id".into(), json!(contact));
        fields.insert("body".into(), input.get("body").cloned().unwrap_or(Value::Null));
        fields.insert(
            "author_user_id".into(),
            input.get("author_user_id").cloned().unwrap_or(Value::Null),
        );
        fields.insert("attachments".into(), attachments(&emu, input.get("attachments")));
        store::stamp_new(&mut fields, &id, now);
        let obj = Obj { fields, time_ms: now };
        let out = value(&obj);
        store.notes.insert(id, obj);
        out
    };
    emu.emit("note.created", note.clone());
    created(note)
}

pub async fn update_note(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    caller.need("notes:write")?;
    let mut input = object(&body)?;
    let note = {
        let mut guard = emu.store();
        let store = &mut *guard;
        store::validate_note(&input, store, false)?;
        if let Some(given) = input.remove("attachments") {
            input.insert("attachments".into(), attachments(&emu, Some(&given)));
        }
        let now = emu.clock.now();
        let note = live(&mut store.notes, "note", &id)?;
        for (key, v) in input {
            note.fields.insert(key, v);
        }
        touch(note, now);
        value(note)
    };
    emu.emit("note.updated", note.clone());
    ok(note)
}

pub async fn delete_note(State(emu): Emu, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ApiResult {
    caller.need("notes:write")?;
    let gone = soft_delete(&emu, |s| &mut s.notes, "note", &id)?;
    emu.emit("note.deleted", gone);
    deleted()
}

// --- users, webhooks ---

pub async fn list_users(State(emu): Emu, Extension(caller): Extension<Caller>) -> ApiResult {
    caller.need("contacts:read")?;
    ok(json!({"data": emu.store().users, "next_cursor": null}))
}

pub async fn list_webhooks(State(emu): Emu, Extension(caller): Extension<Caller>) -> ApiResult {
    caller.need("webhooks:write")?;
    let subs: Vec<Value> = emu.store().subscriptions.iter().map(Subscription::public).collect();
    ok(json!({"data": subs, "next_cursor": null}))
}

pub async fn create_webhook(State(emu): Emu, Extension(caller): Extension<Caller>, body: Bytes) -> ApiResult {
    caller.need("webhooks:write")?;
    let input = object(&body)?;
    let mut problems = store::Problems::default();
    let url = input.get("url").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.add("url", "must be an http(s) URL");
    }
    let events: Vec<String> = match input.get("events") {
        Some(Value::Array(items)) if !items.is_empty() => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        _ => {
            problems.add("events", "a non-empty list of event types");
            Vec::new()
        }
    };
    if events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
        problems.add("events", "unknown event type");
    }
    problems.into_result()?;
    let sub = Subscription {
        id: emu.ids.hex(24),
        url,
        events,
        secret: format!("whsec_{}", emu.ids.alnum(32)),
    };
    let mut out = sub.public();
    // The secret is shown once, on create.
    out["secret"] = json!(sub.secret);
    emu.store().subscriptions.push(sub);
    created(out)
}

pub async fn delete_webhook(
    State(emu): Emu,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    caller.need("webhooks:write")?;
    let mut store = emu.store();
    let before = store.subscriptions.len();
    store.subscriptions.retain(|s| s.id != id);
    if store.subscriptions.len() == before {
        return Err(ApiError::not_found("webhook", &id));
    }
    deleted()
}

// --- OAuth ---

fn oauth_error(status: StatusCode, error: &str, description: &str) -> ApiResult {
    Ok((status, Json(json!({"error": error, "error_description": description}))).into_response())
}

pub async fn token(State(emu): Emu, body: Bytes) -> ApiResult {
    let form: BTreeMap<String, String> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be form-encoded",
            )
        }
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    let c = &emu.credentials;
    if form.get("client_id") != Some(&c.client_id) || form.get("client_secret") != Some(&c.client_secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let scopes: Vec<String> = match form.get("scope").map(|s| s.split_whitespace().collect::<Vec<_>>()) {
        Some(asked) if !asked.is_empty() => {
            if let Some(bad) = asked.iter().find(|s| !ALL_SCOPES.contains(s)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("unknown scope {bad}"),
                );
            }
            asked.iter().map(|s| s.to_string()).collect()
        }
        _ => ALL_SCOPES.iter().map(|s| s.to_string()).collect(),
    };
    let ttl = emu.config.access_token_ttl;
    let access_token = format!("mlo_at_{}", emu.ids.alnum(40));
    emu.grants().insert(
        access_token.clone(),
        Grant {
            key: c.client_id.clone(),
            scopes: scopes.clone(),
            expires_at_ms: Some(crate::timefmt::now_ms() + ttl.as_millis() as i64),
        },
    );
    ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scopes.join(" "),
    }))
}
