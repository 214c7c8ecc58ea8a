//! Tasks and notes under a contact. GHL has no TaskUpdate event: a task update fires
//! TaskComplete only when it moves to completed.

use super::auth::{AuthCtx, SCOPE_READ, SCOPE_WRITE};
use super::contacts::contact_for;
use super::error::{created, ok, ApiError, ApiResult};
use super::model::{Note, Task};
use super::validate::{check_object, opt, parse_body, req, Ty, F};
use super::Inner;
use crate::timefmt::parse_iso;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Extension;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const TASK_CREATE: &[F] = &[
    req("title", Ty::Str),
    opt("body", Ty::Str),
    req("dueDate", Ty::IsoDate),
    req("completed", Ty::Bool),
    opt("assignedTo", Ty::Str),
];
const TASK_UPDATE: &[F] = &[
    opt("title", Ty::Str),
    opt("body", Ty::Str),
    opt("dueDate", Ty::IsoDate),
    opt("completed", Ty::Bool),
    opt("assignedTo", Ty::Str),
];
const TASK_COMPLETED: &[F] = &[req("completed", Ty::Bool)];
const NOTE_CREATE: &[F] = &[
    opt("userId", Ty::Str),
    req("body", Ty::Str),
    opt("title", Ty::Str),
    opt("color", Ty::Str),
    opt("pinned", Ty::Bool),
];
const NOTE_UPDATE: &[F] = &[
    opt("userId", Ty::Str),
    opt("body", Ty::Str),
    opt("title", Ty::Str),
    opt("color", Ty::Str),
    opt("pinned", Ty::Bool),
];

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

fn apply_task(t: &mut Task, m: &Map<String, Value>) {
    if let Some(v) = s(m, "title") {
        t.title = v;
    }
    if m.contains_key("body") {
        t.body = s(m, "body");
    }
    if m.contains_key("assignedTo") {
        t.assigned_to = s(m, "assignedTo");
    }
    if let Some(ms) = s(m, "dueDate").as_deref().and_then(parse_iso) {
        t.due_date = ms;
    }
    if let Some(b) = m.get("completed").and_then(Value::as_bool) {
        t.completed = b;
    }
}

fn apply_note(n: &mut Note, m: &Map<String, Value>) {
    if let Some(v) = s(m, "body") {
        n.body = v;
    }
    for (k, f) in [
        ("userId", &mut n.user_id),
        ("title", &mut n.title),
        ("color", &mut n.color),
    ] {
        if m.contains_key(k) {
            *f = s(m, k);
        }
    }
    if let Some(b) = m.get("pinned").and_then(Value::as_bool) {
        n.pinned = b;
    }
}

fn task_missing(emu: &Inner, id: &str) -> ApiError {
    ApiError::missing(emu.missing_status(), format!("Task with id {id} not found"))
}

fn note_missing(emu: &Inner, id: &str) -> ApiError {
    ApiError::missing(emu.missing_status(), format!("Note with id {id} not found"))
}

pub async fn list_tasks(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(cid): Path<String>,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let st = emu.store();
    contact_for(&emu, &st, &ctx, &cid)?;
    let mut tasks: Vec<&Task> = st.tasks.values().filter(|t| t.contact_id == cid).collect();
    tasks.sort_by_key(|t| (t.date_added, t.id.clone()));
    ok(json!({ "tasks": tasks.iter().map(|t| t.json()).collect::<Vec<_>>() }))
}

pub async fn create_task(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(cid): Path<String>,
    body: Bytes,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, TASK_CREATE)?;
    let mut st = emu.store();
    let loc = contact_for(&emu, &st, &ctx, &cid)?.location_id.clone();
    let mut t = Task {
        id: emu.ids.alnum(20),
        contact_id: cid,
        title: String::new(),
        body: None,
        assigned_to: None,
        due_date: 0,
        completed: false,
        date_added: emu.clock.now(),
    };
    apply_task(&mut t, &m);
    let out = t.json();
    let ev = t.webhook_json("TaskCreate", &loc);
    st.tasks.insert(t.id.clone(), t);
    drop(st);
    emu.emit(ev);
    created(json!({ "task": out }))
}

pub async fn get_task(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, tid)): Path<(String, String)>,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let st = emu.store();
    contact_for(&emu, &st, &ctx, &cid)?;
    let t = st
        .tasks
        .get(&tid)
        .filter(|t| t.contact_id == cid)
        .ok_or_else(|| task_missing(&emu, &tid))?;
    ok(json!({ "task": t.json() }))
}

async fn write_task(emu: Arc<Inner>, ctx: AuthCtx, cid: String, tid: String, body: Bytes, fields: &[F]) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, fields)?;
    let mut st = emu.store();
    let loc = contact_for(&emu, &st, &ctx, &cid)?.location_id.clone();
    let t = st
        .tasks
        .get_mut(&tid)
        .filter(|t| t.contact_id == cid)
        .ok_or_else(|| task_missing(&emu, &tid))?;
    let was_done = t.completed;
    apply_task(t, &m);
    let out = t.json();
    let ev = (!was_done && t.completed).then(|| t.webhook_json("TaskComplete", &loc));
    drop(st);
    if let Some(ev) = ev {
        emu.emit(ev);
    }
    ok(json!({ "task": out }))
}

pub async fn update_task(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, tid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    write_task(emu, ctx, cid, tid, body, TASK_UPDATE).await
}

pub async fn complete_task(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, tid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    write_task(emu, ctx, cid, tid, body, TASK_COMPLETED).await
}

pub async fn delete_task(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, tid)): Path<(String, String)>,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let mut st = emu.store();
    let loc = contact_for(&emu, &st, &ctx, &cid)?.location_id.clone();
    if st.tasks.get(&tid).is_none_or(|t| t.contact_id != cid) {
        return Err(task_missing(&emu, &tid));
    }
    let ev = st.tasks.remove(&tid).map(|t| t.webhook_json("TaskDelete", &loc));
    drop(st);
    if let Some(ev) = ev {
        emu.emit(ev);
    }
    ok(json!({ "succeded": true }))
}

pub async fn list_notes(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(cid): Path<String>,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let st = emu.store();
    contact_for(&emu, &st, &ctx, &cid)?;
    let mut notes: Vec<&Note> = st.notes.values().filter(|n| n.contact_id == cid).collect();
    // Newest first, as the GHL UI and API list them.
    notes.sort_by(|a, b| (b.date_added, &b.id).cmp(&(a.date_added, &a.id)));
    ok(json!({ "notes": notes.iter().map(|n| n.json()).collect::<Vec<_>>() }))
}

pub async fn create_note(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(cid): Path<String>,
    body: Bytes,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, NOTE_CREATE)?;
    let mut st = emu.store();
    let loc = contact_for(&emu, &st, &ctx, &cid)?.location_id.clone();
    let mut n = Note {
        id: emu.ids.alnum(20),
        contact_id: cid,
        body: String::new(),
        user_id: None,
        title: None,
        color: None,
        pinned: false,
        date_added: emu.clock.now(),
    };
    apply_note(&mut n, &m);
    let out = n.json();
    let ev = n.webhook_json("NoteCreate", &loc);
    st.notes.insert(n.id.clone(), n);
    drop(st);
    emu.emit(ev);
    created(json!({ "note": out }))
}

pub async fn get_note(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, nid)): Path<(String, String)>,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let st = emu.store();
    contact_for(&emu, &st, &ctx, &cid)?;
    let n = st
        .notes
        .get(&nid)
        .filter(|n| n.contact_id == cid)
        .ok_or_else(|| note_missing(&emu, &nid))?;
    ok(json!({ "note": n.json() }))
}

pub async fn update_note(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, nid)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, NOTE_UPDATE)?;
    let mut st = emu.store();
    let loc = contact_for(&emu, &st, &ctx, &cid)?.location_id.clone();
    let n = st
        .notes
        .get_mut(&nid)
        .filter(|n| n.contact_id == cid)
        .ok_or_else(|| note_missing(&emu, &nid))?;
    apply_note(n, &m);
    let out = n.json();
    let ev = n.webhook_json("NoteUpdate", &loc);
    drop(st);
    emu.emit(ev);
    ok(json!({ "note": out }))
}

pub async fn delete_note(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path((cid, nid)): Path<(String, String)>,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let mut st = emu.store();
    let loc = contact_for(&emu, &st, &ctx, &cid)?.location_id.clone();
    if st.notes.get(&nid).is_none_or(|n| n.contact_id != cid) {
        return Err(note_missing(&emu, &nid));
    }
    let ev = st.notes.remove(&nid).map(|n| n.webhook_json("NoteDelete", &loc));
    drop(st);
    if let Some(ev) = ev {
        emu.emit(ev);
    }
    ok(json!({ "succeded": true }))
}
