//! The operator console of `tether run`: server-rendered pages (minijinja templates compiled
//! into the binary, no front-end build) over the state store.
//!
//! * Overview: each flow (state, last run, records today, failures, queue, dead letters) and each
//!   connector (token state with the reconnect hint, the rate budget its API last reported).
//! * Activity: the latest delivery events, filterable by flow, system and outcome.
//! * Record: one record across systems (its links, its tasks and notes, its write history with
//!   diffs and write-verification warnings).
//! * Webhook log, and dead letters with replay and drop.
//!
//! Invariants: pages only read the store; the two buttons that change state are POST forms that
//! carry the CSRF token; no secret is ever rendered (tokens stay in the vault, hints name commands).

pub mod access;
pub mod history;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{context, Environment};
use serde::{Deserialize, Serialize};
use tether_core::config::Config;
use tether_core::flow::{Flow, Trigger};
use tether_core::scheduler::Clock;
use tether_core::store::{EventKind, EventRow, LinkEdge, Store, StoreError};

use self::access::Access;
use self::history::Change;
use crate::report;
use crate::services::HostContext;

/// What the console needs to know of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowInfo {
    pub name: String,
    pub source_connector: String,
    pub target_connector: String,
    pub source_system: String,
    pub target_system: String,
    pub action: String,
    pub trigger: String,
    /// `enabled = false` in its file: listed with its history, never run.
    pub enabled: bool,
}

impl FlowInfo {
    pub fn of(flow: &Flow) -> FlowInfo {
        let trigger = match &flow.trigger {
            Trigger::Poll { every } => format!("poll every {}", humantime::format_duration(*every)),
            Trigger::Webhook { repair_every: None } => "webhook".into(),
            Trigger::Webhook {
                repair_every: Some(every),
            } => format!("webhook, repair poll every {}", humantime::format_duration(*every)),
            Trigger::Schedule { cron } => format!("cron {cron}"),
            Trigger::Backfill { window } => format!("backfill in {} windows", humantime::format_duration(*window)),
        };
        FlowInfo {
            name: flow.name.clone(),
            source_connector: flow.source_connector.clone(),
            target_connector: flow.target_connector.clone(),
            source_system: flow.source_system(),
            target_system: flow.target_system(),
            action: flow.action.clone(),
            trigger,
            enabled: flow.enabled,
        }
    }
}

pub struct Console {
    store: Store,
    config: Config,
    flows: Vec<FlowInfo>,
    context: Arc<HostContext>,
    access: Access,
    clock: Clock,
    templates: Environment<'static>,
}

/// Rows a page shows at most.
const PAGE_ROWS: i64 = 200;
/// Records the record view follows through links at most.
const MAX_LINKED: usize = 50;
const DAY_MS: i64 = 86_400_000;

impl Console {
    pub fn new(
        store: Store,
        config: Config,
        flows: Vec<FlowInfo>,
        context: Arc<HostContext>,
        access: Access,
        clock: Clock,
    ) -> Arc<Console> {
        Arc::new(Console {
            store,
            config,
            flows,
            context,
            access,
            clock,
            templates: templates(),
        })
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    fn flow(&self, name: &str) -> Option<&FlowInfo> {
        self.flows.iter().find(|f| f.name == name)
    }

    fn render(&self, name: &str, status: StatusCode, ctx: minijinja::Value) -> Response {
        let page = self
            .templates
            .get_template(name)
            .and_then(|template| template.render(context! { csrf => self.access.csrf(), ..ctx }));
        match page {
            Ok(html) => (status, Html(html)).into_response(),
            Err(error) => {
                tracing::error!(template = name, %error, "a console page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render; see the host's log",
                )
                    .into_response()
            }
        }
    }
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("activity.html", include_str!("templates/activity.html")),
        ("record.html", include_str!("templates/record.html")),
        ("webhooks.html", include_str!("templates/webhooks.html")),
        ("dead_letters.html", include_str!("templates/dead_letters.html")),
        ("login.html", include_str!("templates/login.html")),
    ] {
        // The templates are part of the binary: one that does not compile is a build defect, and
        // the console tests render every page.
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(template = name, %error, "a console template does not compile");
        }
    }
    env.add_filter("when", when);
    env.add_filter("clip", clip);
    env
}

/// At most `chars` characters, with an ellipsis when cut.
fn clip(text: String, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn ser<T: Serialize>(value: &T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

/// Milliseconds since the epoch as `2026-11-23 16:04:05`, UTC.
fn when(ms: Option<i64>) -> String {
    let Some(secs) = ms.and_then(|ms| u64::try_from(ms / 1000).ok()) else {
        return "-".into();
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    stamp.to_string().replace('T', " ").trim_end_matches('Z').to_owned()
}

/// The console's routes, behind the access check (the login page excepted).
pub fn router(console: Arc<Console>) -> Router {
    let guarded = Router::new()
        .route("/", get(overview))
        .route("/activity", get(activity))
        .route("/record", get(record))
        .route("/webhook-log", get(webhook_log))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{id}/replay", post(replay))
        .route("/dead-letters/{id}/drop", post(drop_dead))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&console), guard));
    Router::new()
        .route("/login", get(login_page).post(login))
        .merge(guarded)
        .with_state(console)
}

/// Admits requests with the token; others get the login page (browsers) or a bare 401.
pub async fn guard(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    if console.access.admits(request.headers()) {
        return next.run(request).await;
    }
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let mut response = if wants_html {
        console.render("login.html", StatusCode::UNAUTHORIZED, context! {})
    } else {
        (StatusCode::UNAUTHORIZED, "the dashboard token is required\n").into_response()
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn store_failure(error: StoreError) -> Response {
    tracing::error!(%error, "the console could not read the state store");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the state store did not answer: {error}"),
    )
        .into_response()
}

#[derive(Serialize)]
struct FlowRow {
    info: FlowInfo,
    state: &'static str,
    last_run_at: Option<i64>,
    last_error: Option<String>,
    written_today: i64,
    failed_today: i64,
    queued: i64,
    dead_letters: i64,
}

#[derive(Serialize)]
struct ConnectorRow {
    status: report::ConnectorStatus,
    token: &'static str,
    rate: Option<crate::services::RateSeen>,
}

async fn overview(State(console): State<Arc<Console>>) -> Response {
    let now = (console.clock)();
    let (statuses, counts) = match tokio::try_join!(
        report::flows(&console.store),
        console.store.event_counts_since(now - now.rem_euclid(DAY_MS))
    ) {
        Ok(read) => read,
        Err(error) => return store_failure(error),
    };
    let statuses: BTreeMap<&str, &report::FlowStatus> = statuses.iter().map(|s| (s.flow.as_str(), s)).collect();
    let today = |flow: &str, kinds: &[EventKind]| -> i64 {
        counts
            .iter()
            .filter(|c| c.flow == flow && kinds.iter().any(|k| k.as_str() == c.kind))
            .map(|c| c.count)
            .sum()
    };
    let flows: Vec<FlowRow> = console
        .flows
        .iter()
        .map(|info| {
            let status = statuses.get(info.name.as_str());
            let error = status.and_then(|s| s.current_error()).map(str::to_owned);
            let queued = status.map_or(0, |s| s.queued);
            let dead_letters = status.map_or(0, |s| s.dead_letters);
            FlowRow {
                state: match (&error, queued, dead_letters) {
                    _ if !info.enabled => "disabled",
                    (Some(_), _, _) => "failing",
                    (None, 0, 0) => "ok",
                    (None, 0, _) => "dead letters",
                    (None, _, _) => "delivering",
                },
                info: info.clone(),
                last_run_at: status.and_then(|s| s.last_run_at),
                last_error: error,
                written_today: today(&info.name, &[EventKind::Written]),
                failed_today: today(&info.name, &[EventKind::Retry, EventKind::Dead]),
                queued,
                dead_letters,
            }
        })
        .collect();
    let connectors = match report::connectors(&console.config, Some(console.context.vault())).await {
        Ok(connectors) => connectors,
        Err(report::ReportError::Store(error)) => return store_failure(error),
        Err(error) => {
            tracing::error!(%error, "the console could not read token states");
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
        }
    };
    let connectors: Vec<ConnectorRow> = connectors
        .into_iter()
        .map(|status| ConnectorRow {
            token: status.token.as_str(),
            rate: console.context.rates().get(&status.connector),
            status,
        })
        .collect();
    console.render(
        "overview.html",
        StatusCode::OK,
        context! { page => "overview", flows => ser(&flows), connectors => ser(&connectors), now },
    )
}

#[derive(Deserialize, Default)]
struct ActivityQuery {
    #[serde(default)]
    flow: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    outcome: String,
}

const OUTCOMES: [EventKind; 7] = [
    EventKind::Written,
    EventKind::Warning,
    EventKind::Echo,
    EventKind::Conflict,
    EventKind::Skipped,
    EventKind::Retry,
    EventKind::Dead,
];

#[derive(Serialize)]
struct EventView {
    event: EventRow,
    source_system: Option<String>,
    target_system: Option<String>,
    action: Option<String>,
    changes: Vec<Change>,
}

impl Console {
    fn event_view(&self, event: EventRow, changes: Vec<Change>) -> EventView {
        let flow = self.flow(&event.flow);
        EventView {
            source_system: flow.map(|f| f.source_system.clone()),
            target_system: flow.map(|f| f.target_system.clone()),
            action: flow.map(|f| f.action.clone()),
            changes,
            event,
        }
    }
}

async fn activity(State(console): State<Arc<Console>>, Query(query): Query<ActivityQuery>) -> Response {
    let kind = OUTCOMES.into_iter().find(|k| k.as_str() == query.outcome);
    // A flow, else every flow touching the system, else all.
    let flows: Option<Vec<&str>> = if !query.flow.is_empty() {
        Some(vec![query.flow.as_str()])
    } else if !query.system.is_empty() {
        Some(
            console
                .flows
                .iter()
                .filter(|f| f.source_connector == query.system || f.target_connector == query.system)
                .map(|f| f.name.as_str())
                .collect(),
        )
    } else {
        None
    };
    let mut events = Vec::new();
    match flows {
        None => match console.store.events(None, kind, PAGE_ROWS).await {
            Ok(found) => events = found,
            Err(error) => return store_failure(error),
        },
        Some(flows) => {
            for flow in flows {
                match console.store.events(Some(flow), kind, PAGE_ROWS).await {
                    Ok(found) => events.extend(found),
                    Err(error) => return store_failure(error),
                }
            }
            events.sort_by_key(|e| std::cmp::Reverse(e.id));
            events.truncate(PAGE_ROWS as usize);
        }
    }
    let events: Vec<EventView> = events.into_iter().map(|e| console.event_view(e, Vec::new())).collect();
    let systems: BTreeSet<String> = console
        .flows
        .iter()
        .flat_map(|f| [f.source_connector.clone(), f.target_connector.clone()])
        .collect();
    console.render(
        "activity.html",
        StatusCode::OK,
        context! {
            page => "activity",
            events => ser(&events),
            flows => console.flows.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            systems => ser(&systems),
            outcomes => OUTCOMES.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            selected => context! { flow => query.flow, system => query.system, outcome => query.outcome },
        },
    )
}

#[derive(Deserialize)]
struct RecordQuery {
    #[serde(default)]
    system: String,
    id: String,
}

#[derive(Serialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Node {
    system: String,
    id: String,
}

async fn record(State(console): State<Arc<Console>>, Query(query): Query<RecordQuery>) -> Response {
    match record_view(&console, &query).await {
        Ok(ctx) => console.render("record.html", StatusCode::OK, ctx),
        Err(error) => store_failure(error),
    }
}

async fn record_view(console: &Console, query: &RecordQuery) -> Result<minijinja::Value, StoreError> {
    let store = &console.store;
    let starts: Vec<String> = if query.system.is_empty() {
        store.systems_of_id(&query.id).await?
    } else {
        vec![query.system.clone()]
    };
    // Every record linked to this one, directly or through others (a Moloni customer, the GHL
    // contact it became, the AroFlo client written from that contact).
    let mut nodes: BTreeSet<Node> = BTreeSet::new();
    let mut links: Vec<LinkEdge> = Vec::new();
    let mut queue: VecDeque<Node> = starts
        .into_iter()
        .map(|system| Node {
            system,
            id: query.id.clone(),
        })
        .collect();
    while let Some(node) = queue.pop_front() {
        if nodes.len() >= MAX_LINKED || !nodes.insert(node.clone()) {
            continue;
        }
        for edge in store.links_touching(&node.system, &node.id).await? {
            for next in [
                Node {
                    system: edge.source.clone(),
                    id: edge.source_id.clone(),
                },
                Node {
                    system: edge.target.clone(),
                    id: edge.target_id.clone(),
                },
            ] {
                if !nodes.contains(&next) {
                    queue.push_back(next);
                }
            }
            if !links.contains(&edge) {
                links.push(edge);
            }
        }
    }
    // Its tasks and notes: links written under one of its ids, in that id's connector.
    let mut children: Vec<LinkEdge> = Vec::new();
    for node in &nodes {
        for child in store.links_under(&node.id, PAGE_ROWS).await? {
            if history::connector_of(&child.target) == history::connector_of(&node.system) && !children.contains(&child)
            {
                children.push(child);
            }
        }
    }
    // Its history, oldest first so each write is compared with the one before it.
    let mut events: BTreeMap<i64, EventRow> = BTreeMap::new();
    for node in &nodes {
        for event in store.events_of_record(&node.id, PAGE_ROWS).await? {
            if history::concerns(&event, console.flow(&event.flow), &node.system, &node.id) {
                events.insert(event.id, event);
            }
        }
    }
    let mut last_written: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut entries: Vec<EventView> = Vec::with_capacity(events.len());
    for event in events.into_values() {
        let changes = match (&event.detail, event.kind == EventKind::Written.as_str()) {
            (Some(sent), true) => {
                let key = (event.flow.clone(), event.source_id.clone());
                let changes = history::changes(last_written.get(&key).map(String::as_str), sent);
                last_written.insert(key, sent.clone());
                changes
            }
            _ => Vec::new(),
        };
        entries.push(console.event_view(event, changes));
    }
    entries.reverse();
    let warnings = entries
        .iter()
        .filter(|e| e.event.kind == EventKind::Warning.as_str())
        .count();
    Ok(context! {
        page => "record",
        id => query.id.clone(),
        system => query.system.clone(),
        nodes => ser(&nodes),
        links => ser(&links),
        children => ser(&children),
        history => ser(&entries),
        warnings,
    })
}

async fn webhook_log(State(console): State<Arc<Console>>) -> Response {
    match console.store.webhook_log(PAGE_ROWS).await {
        Ok(entries) => console.render(
            "webhooks.html",
            StatusCode::OK,
            context! { page => "webhooks", entries => ser(&entries) },
        ),
        Err(error) => store_failure(error),
    }
}

#[derive(Serialize)]
struct DeadView {
    id: i64,
    flow: String,
    source_id: String,
    source_system: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    updated_at: i64,
    payload: String,
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    #[serde(default)]
    done: String,
}

async fn dead_letters(State(console): State<Arc<Console>>, Query(query): Query<DoneQuery>) -> Response {
    let letters = match console.store.dead_letters(None, PAGE_ROWS).await {
        Ok(letters) => letters,
        Err(error) => return store_failure(error),
    };
    let letters: Vec<DeadView> = letters
        .into_iter()
        .map(|letter| DeadView {
            source_system: console.flow(&letter.flow).map(|f| f.source_system.clone()),
            payload: serde_json::from_str::<serde_json::Value>(&letter.record)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or(letter.record),
            id: letter.id,
            flow: letter.flow,
            source_id: letter.source_id,
            attempts: letter.attempts,
            last_error: letter.last_error,
            updated_at: letter.updated_at,
        })
        .collect();
    console.render(
        "dead_letters.html",
        StatusCode::OK,
        context! { page => "dead-letters", letters => ser(&letters), done => query.done },
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "refused: the form's CSRF token is missing or wrong; reload the page and try again\n",
    )
        .into_response()
}

async fn replay(State(console): State<Arc<Console>>, Path(id): Path<i64>, Form(form): Form<CsrfForm>) -> Response {
    if !console.access.csrf_matches(form.csrf.as_deref()) {
        return csrf_refused();
    }
    match console.store.replay(Some(id), None, (console.clock)()).await {
        Ok(0) => Redirect::to(&format!("/dead-letters?done=no+dead+letter+{id}")).into_response(),
        Ok(_) => {
            tracing::info!(id, "dead letter replayed from the console");
            Redirect::to(&format!("/dead-letters?done=replayed+{id}")).into_response()
        }
        Err(error) => store_failure(error),
    }
}

async fn drop_dead(State(console): State<Arc<Console>>, Path(id): Path<i64>, Form(form): Form<CsrfForm>) -> Response {
    if !console.access.csrf_matches(form.csrf.as_deref()) {
        return csrf_refused();
    }
    match console.store.drop_dead(id).await {
        Ok(false) => Redirect::to(&format!("/dead-letters?done=no+dead+letter+{id}")).into_response(),
        Ok(true) => {
            tracing::info!(id, "dead letter dropped from the console");
            Redirect::to(&format!("/dead-letters?done=dropped+{id}")).into_response()
        }
        Err(error) => store_failure(error),
    }
}

async fn login_page(State(console): State<Arc<Console>>) -> Response {
    console.render("login.html", StatusCode::OK, context! {})
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(console): State<Arc<Console>>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if !console.access.requires_token() {
        return Redirect::to("/").into_response();
    }
    if !console.access.token_matches(&form.token) {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        tracing::warn!(forwarded, "console login with a wrong token");
        return console.render(
            "login.html",
            StatusCode::UNAUTHORIZED,
            context! { error => "That is not the dashboard token." },
        );
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        access::COOKIE,
        form.token.trim()
    );
    let mut response = Redirect::to("/").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(_) => (StatusCode::BAD_REQUEST, "the token cannot be stored in a cookie").into_response(),
    }
}
