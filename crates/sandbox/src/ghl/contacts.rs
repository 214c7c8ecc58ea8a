//! Contact handlers: CRUD, upsert, the deprecated list, search, duplicate lookup, business
//! listing, tags, appointments, and the location reads (settings, custom fields).

use super::auth::{AuthCtx, SCOPE_CUSTOM_FIELDS_READ, SCOPE_LOCATIONS_READ, SCOPE_READ, SCOPE_WRITE};
use super::error::{created, ok, ApiError, ApiResult};
use super::model::{normalize_tags, Contact, Store};
use super::search;
use super::validate::{check_object, check_query, opt, parse_body, req, Ty, F};
use super::Inner;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub type Q = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub fn query_pairs(q: Q) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|_| ApiError::bad_request("Malformed query string"))
}

const CONTACT_FIELDS: &[F] = &[
    opt("firstName", Ty::NStr),
    opt("lastName", Ty::NStr),
    opt("name", Ty::NStr),
    opt("email", Ty::Email),
    opt("phone", Ty::NStr),
    opt("address1", Ty::NStr),
    opt("city", Ty::NStr),
    opt("state", Ty::NStr),
    opt("postalCode", Ty::Str),
    opt("website", Ty::NStr),
    opt("timezone", Ty::NStr),
    opt("dnd", Ty::Bool),
    opt("dndSettings", Ty::DndSettings),
    opt("inboundDndSettings", Ty::InboundDnd),
    opt("tags", Ty::StrArray),
    opt("customFields", Ty::CustomFields),
    opt("dateOfBirth", Ty::DateOfBirth),
    opt("country", Ty::Str),
];

fn fields(extra: &[F]) -> Vec<F> {
    CONTACT_FIELDS.iter().chain(extra).copied().collect()
}

/// `CreateContactDto`
fn create_fields() -> Vec<F> {
    fields(&[
        req("locationId", Ty::Str),
        opt("gender", Ty::Str),
        opt("companyName", Ty::NStr),
        opt("source", Ty::Str),
        opt("assignedTo", Ty::Str),
    ])
}

/// `UpdateContactDto`: no `locationId`, and no `companyName` or `gender` (absent in the spec, so
/// refused: a client that relies on them would break on the real API).
fn update_fields() -> Vec<F> {
    fields(&[opt("source", Ty::NStr), opt("assignedTo", Ty::NStr)])
}

/// `UpsertContactDto`
fn upsert_fields() -> Vec<F> {
    let mut f = create_fields();
    f.push(opt("createNewIfDuplicateAllowed", Ty::Bool));
    f
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The contact `id`, if it exists and belongs to the caller's location.
pub fn contact_for<'a>(emu: &Inner, st: &'a Store, ctx: &AuthCtx, id: &str) -> Result<&'a Contact, ApiError> {
    let c = st
        .contacts
        .get(id)
        .ok_or_else(|| ApiError::missing(emu.missing_status(), format!("Contact with id {id} not found")))?;
    ctx.location(&c.location_id)?;
    Ok(c)
}

fn duplicate_error(c: &Contact, field: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        json!({
            "statusCode": 400,
            "message": "This location does not allow duplicated contacts.",
            "meta": {
                "contactId": c.id,
                "contactName": c.name().unwrap_or_default(),
                "matchingField": field,
            }
        }),
    )
}

/// Events for an updated contact: always ContactUpdate, plus tag and DND events on change.
fn update_events(c: &Contact, ch: super::model::Changes) -> Vec<Value> {
    let mut ev = vec![c.webhook_json("ContactUpdate")];
    if ch.tags {
        ev.push(c.webhook_json("ContactTagUpdate"));
    }
    if ch.dnd {
        ev.push(c.webhook_json("ContactDndUpdate"));
    }
    ev
}

impl Inner {
    fn emit_all(&self, events: Vec<Value>) {
        for e in events {
            self.emit(e);
        }
    }

    fn new_contact(&self, location_id: &str) -> Contact {
        let now = self.clock.now();
        Contact {
            id: self.ids.alnum(20),
            location_id: location_id.to_string(),
            contact_type: "lead".into(),
            date_added: now,
            date_updated: now,
            ..Contact::default()
        }
    }
}

pub async fn get_one(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let st = emu.store();
    let c = contact_for(&emu, &st, &ctx, &id)?;
    ok(json!({ "contact": c.json() }))
}

pub async fn create(State(emu): State<Arc<Inner>>, Extension(ctx): Extension<AuthCtx>, body: Bytes) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, &create_fields())?;
    let loc = str_of(&m, "locationId");
    ctx.location(loc)?;
    let mut st = emu.store();
    let mut c = emu.new_contact(loc);
    c.apply(&m, st.defs())?;
    if !emu.allow_duplicates() {
        if let Some((dup, field)) = st.find_duplicate(loc, c.email.as_deref(), c.phone.as_deref(), None) {
            return Err(duplicate_error(dup, field));
        }
    }
    let out = c.created_json();
    let ev = c.webhook_json("ContactCreate");
    st.contacts.insert(c);
    drop(st);
    emu.emit(ev);
    created(json!({ "contact": out }))
}

pub async fn update(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, &update_fields())?;
    let mut st = emu.store();
    let mut c = contact_for(&emu, &st, &ctx, &id)?.clone();
    let ch = c.apply(&m, st.defs())?;
    if !emu.allow_duplicates() && (m.contains_key("email") || m.contains_key("phone")) {
        let email = m.contains_key("email").then_some(c.email.as_deref()).flatten();
        let phone = m.contains_key("phone").then_some(c.phone.as_deref()).flatten();
        if let Some((dup, field)) = st.find_duplicate(&c.location_id, email, phone, Some(&c.id)) {
            return Err(duplicate_error(dup, field));
        }
    }
    c.date_updated = emu.clock.now();
    let out = c.json();
    let events = update_events(&c, ch);
    st.contacts.insert(c);
    drop(st);
    emu.emit_all(events);
    ok(json!({ "succeded": true, "contact": out }))
}

pub async fn delete(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let mut st = emu.store();
    let ev = contact_for(&emu, &st, &ctx, &id)?.webhook_json("ContactDelete");
    st.contacts.remove(&id);
    st.tasks.retain(|_, t| t.contact_id != id);
    st.notes.retain(|_, n| n.contact_id != id);
    st.appointments.retain(|a| a.contact_id != id);
    drop(st);
    emu.emit(ev);
    ok(json!({ "succeded": true }))
}

pub async fn upsert(State(emu): State<Arc<Inner>>, Extension(ctx): Extension<AuthCtx>, body: Bytes) -> ApiResult {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, &upsert_fields())?;
    let loc = str_of(&m, "locationId");
    ctx.location(loc)?;
    let mut st = emu.store();
    // Normalise email/phone as a new contact would, to match on the stored forms.
    let mut probe = emu.new_contact(loc);
    probe.apply(&m, st.defs())?;
    let force_new = emu.allow_duplicates() && m.get("createNewIfDuplicateAllowed") == Some(&Value::Bool(true));
    let existing = if force_new {
        None
    } else {
        st.find_duplicate(loc, probe.email.as_deref(), probe.phone.as_deref(), None)
            .map(|(c, _)| c.clone())
    };
    let (is_new, out, events) = match existing {
        Some(mut c) => {
            // Upsert into an existing contact answers 200 but silently discards `gender`
            // (NOTES §2.3, ISS#313): a client sees it only by comparing what came back.
            let mut m = m.clone();
            m.remove("gender");
            let ch = c.apply(&m, st.defs())?;
            c.date_updated = emu.clock.now();
            let out = c.json();
            let ev = update_events(&c, ch);
            st.contacts.insert(c);
            (false, out, ev)
        }
        None => {
            let out = probe.json();
            let ev = vec![probe.webhook_json("ContactCreate")];
            st.contacts.insert(probe);
            (true, out, ev)
        }
    };
    drop(st);
    emu.emit_all(events);
    ok(json!({ "new": is_new, "contact": out, "traceId": emu.ids.uuid() }))
}

fn parse_num(q: &HashMap<String, String>, k: &str, default: i64) -> Result<i64, ApiError> {
    match q.get(k) {
        None => Ok(default),
        Some(v) => v.trim().parse::<i64>().map_err(|_| {
            ApiError::unprocessable(vec![format!(
                "{k} must be a number conforming to the specified constraints"
            )])
        }),
    }
}

/// `GET /contacts/` (deprecated): newest first, cursor `(startAfter = dateAdded ms,
/// startAfterId)`, answered with the spec's `count` and the observed `meta`.
pub async fn list(State(emu): State<Arc<Inner>>, Extension(ctx): Extension<AuthCtx>, q: Q) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let q = check_query(
        &query_pairs(q)?,
        &["locationId", "query", "limit", "startAfterId", "startAfter"],
        &["locationId"],
    )?;
    let loc = q.get("locationId").cloned().unwrap_or_default();
    ctx.location(&loc)?;
    let limit = parse_num(&q, "limit", 20)?;
    if !(1..=100).contains(&limit) {
        return Err(ApiError::unprocessable(vec![
            "limit must not be greater than 100".into()
        ]));
    }
    let limit = limit as usize;
    let st = emu.store();
    let mut all: Vec<&Contact> = st
        .contacts
        .values()
        .filter(|c| c.location_id == loc)
        .filter(|c| q.get("query").is_none_or(|t| c.matches_query(t)))
        .collect();
    all.sort_by(|a, b| (b.date_added, &b.id).cmp(&(a.date_added, &a.id)));
    let after_id = q.get("startAfterId").filter(|s| !s.is_empty());
    let after_ms = match q.get("startAfter") {
        Some(_) => Some(parse_num(&q, "startAfter", 0)?),
        None => after_id.and_then(|id| st.contacts.get(id)).map(|c| c.date_added),
    };
    let skip = match after_ms {
        None => 0,
        Some(ms) => all
            .iter()
            .position(|c| match after_id {
                Some(id) => (c.date_added, &c.id) < (ms, id),
                None => c.date_added < ms,
            })
            .unwrap_or(all.len()),
    };
    let page: Vec<&Contact> = all.iter().skip(skip).take(limit).copied().collect();
    let current = skip / limit + 1;
    let has_next = skip + page.len() < all.len();
    let last = page.last();
    let base = emu.base_url.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let next_url = match (has_next, last) {
        (true, Some(l)) => {
            let mut params = vec![
                ("locationId", loc.clone()),
                ("startAfter", l.date_added.to_string()),
                ("startAfterId", l.id.clone()),
                ("limit", limit.to_string()),
            ];
            if let Some(t) = q.get("query") {
                params.push(("query", t.clone()));
            }
            json!(format!(
                "{base}/contacts/?{}",
                serde_urlencoded::to_string(&params).unwrap_or_default()
            ))
        }
        _ => Value::Null,
    };
    let meta = json!({
        "total": all.len(),
        "nextPageUrl": next_url,
        "startAfterId": if has_next { json!(last.map(|c| c.id.clone())) } else { Value::Null },
        "startAfter": if has_next { json!(last.map(|c| c.date_added)) } else { Value::Null },
        "currentPage": current,
        "nextPage": if has_next { json!(current + 1) } else { Value::Null },
        "prevPage": if current > 1 { json!(current - 1) } else { Value::Null },
    });
    ok(json!({
        "contacts": page.iter().map(|c| c.search_json()).collect::<Vec<_>>(),
        "count": all.len(),
        "meta": meta,
    }))
}

pub async fn search(State(emu): State<Arc<Inner>>, Extension(ctx): Extension<AuthCtx>, body: Bytes) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let m = check_object(
        parse_body(&body)?,
        &[
            req("locationId", Ty::Str),
            req("pageLimit", Ty::Num),
            opt("page", Ty::Num),
            opt("searchAfter", Ty::Array),
            opt("query", Ty::Str),
            opt("filters", Ty::Array),
            opt("sort", Ty::Array),
        ],
    )?;
    ctx.location(str_of(&m, "locationId"))?;
    let trace = emu.ids.uuid();
    let st = emu.store();
    ok(search::run(&st, &m, &trace)?)
}

pub async fn duplicate(State(emu): State<Arc<Inner>>, Extension(ctx): Extension<AuthCtx>, q: Q) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let q = check_query(&query_pairs(q)?, &["locationId", "email", "number"], &["locationId"])?;
    let loc = q.get("locationId").cloned().unwrap_or_default();
    ctx.location(&loc)?;
    let st = emu.store();
    let found = st
        .find_duplicate(
            &loc,
            q.get("email").map(String::as_str),
            q.get("number").map(String::as_str),
            None,
        )
        .map(|(c, _)| c.json());
    ok(json!({ "contact": found }))
}

pub async fn business(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(business_id): Path<String>,
    q: Q,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let q = check_query(
        &query_pairs(q)?,
        &["locationId", "limit", "skip", "query"],
        &["locationId"],
    )?;
    let loc = q.get("locationId").cloned().unwrap_or_default();
    ctx.location(&loc)?;
    let limit = parse_num(&q, "limit", 25)?.clamp(0, 1000) as usize;
    let skip = parse_num(&q, "skip", 0)?.max(0) as usize;
    let st = emu.store();
    let mut all: Vec<&Contact> = st
        .contacts
        .values()
        .filter(|c| c.location_id == loc && c.business_id.as_deref() == Some(&business_id))
        .filter(|c| q.get("query").is_none_or(|t| c.matches_query(t)))
        .collect();
    all.sort_by(|a, b| (b.date_added, &b.id).cmp(&(a.date_added, &a.id)));
    ok(json!({
        "contacts": all.iter().skip(skip).take(limit).map(|c| c.search_json()).collect::<Vec<_>>(),
        "count": all.len(),
    }))
}

async fn change_tags(
    emu: Arc<Inner>,
    ctx: AuthCtx,
    id: String,
    body: Bytes,
    add: bool,
) -> Result<Vec<String>, ApiError> {
    ctx.require(SCOPE_WRITE)?;
    let m = check_object(parse_body(&body)?, &[req("tags", Ty::StrArray)])?;
    let given = normalize_tags(
        m.get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    let mut st = emu.store();
    let mut c = contact_for(&emu, &st, &ctx, &id)?.clone();
    let before = c.tags.clone();
    if add {
        for t in given {
            if !c.tags.contains(&t) {
                c.tags.push(t);
            }
        }
    } else {
        c.tags.retain(|t| !given.contains(t));
    }
    let tags = c.tags.clone();
    let ev = (before != tags).then(|| {
        c.date_updated = emu.clock.now();
        c.webhook_json("ContactTagUpdate")
    });
    st.contacts.insert(c);
    drop(st);
    if let Some(ev) = ev {
        emu.emit(ev);
    }
    Ok(tags)
}

pub async fn add_tags(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let tags = change_tags(emu, ctx, id, body, true).await?;
    created(json!({ "tags": tags }))
}

pub async fn remove_tags(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let tags = change_tags(emu, ctx, id, body, false).await?;
    ok(json!({ "tags": tags }))
}

pub async fn appointments(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult {
    ctx.require(SCOPE_READ)?;
    let st = emu.store();
    contact_for(&emu, &st, &ctx, &id)?;
    let events: Vec<Value> = st
        .appointments
        .iter()
        .filter(|a| a.contact_id == id)
        .map(|a| a.json())
        .collect();
    ok(json!({ "events": events }))
}

pub async fn location(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> ApiResult {
    ctx.require(SCOPE_LOCATIONS_READ)?;
    ctx.location(&id)?;
    let allow = emu.allow_duplicates();
    let st = emu.store();
    let l = st.location(&id).ok_or_else(ApiError::wrong_location)?;
    ok(json!({ "location": {
        "id": l.id,
        "companyId": l.company_id,
        "name": l.name,
        "timezone": l.timezone,
        "settings": {
            "allowDuplicateContact": allow,
            "allowDuplicateOpportunity": false,
            "allowFacebookNameMerge": false,
            "disableContactTimezone": false,
        },
    }}))
}

pub async fn custom_fields(
    State(emu): State<Arc<Inner>>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    q: Q,
) -> ApiResult {
    ctx.require(SCOPE_CUSTOM_FIELDS_READ)?;
    let q = check_query(&query_pairs(q)?, &["model"], &[])?;
    ctx.location(&id)?;
    let model = q.get("model").map(String::as_str).unwrap_or("all");
    if !["contact", "opportunity", "all"].contains(&model) {
        return Err(ApiError::unprocessable(vec![
            "model must be one of the following values: contact, opportunity, all".into(),
        ]));
    }
    let st = emu.store();
    let list: Vec<Value> = st
        .custom_fields
        .iter()
        .filter(|d| d.location_id == id && model != "opportunity")
        .map(|d| d.json())
        .collect();
    ok(json!({ "customFields": list }))
}
