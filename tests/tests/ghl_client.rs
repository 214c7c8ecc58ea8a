//! The GHL connector against the GHL emulator over real HTTP on loopback, through a real host
//! (`HostServices` with its HTTP client and encrypted vault): endpoints, typed errors, OAuth
//! rotation and reconnect, webhook verification.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tether_abi::*;
use tether_ghl::auth::REFRESH_TOKEN_SECRET;
use tether_ghl::client::{ContactInput, NoteInput, TaskInput};
use tether_ghl::{Ghl, GhlError};
use tether_sandbox::{GhlConfig, GhlEmulator};

mod support;

/// Requests the emulator answered, by kind.
#[derive(Clone, Default)]
struct Counters {
    token: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
}

async fn count(State(c): State<Counters>, request: Request, next: Next) -> Response {
    let token = request.uri().path() == "/oauth/token";
    let response = next.run(request).await;
    if token {
        c.token.fetch_add(1, Ordering::SeqCst);
    }
    if response.status().as_u16() == 429 {
        c.throttled.fetch_add(1, Ordering::SeqCst);
    }
    response
}

struct Env {
    test: support::TestHost,
    emu: GhlEmulator,
    base: String,
    counters: Counters,
    /// A stand-in for `tether auth ghl`'s local redirect listener: echoes the query.
    callback: String,
}

/// An emulator served on loopback behind a counting layer, and a real host.
fn env(config: GhlConfig) -> Env {
    let test = support::host();
    let emu = GhlEmulator::new(config).expect("emulator");
    let counters = Counters::default();
    let app = emu
        .router()
        .layer(axum::middleware::from_fn_with_state(counters.clone(), count));
    let listener = test
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    test.runtime.spawn(async move { axum::serve(listener, app).await });
    let echo = Router::new().route(
        "/callback",
        get(|request: Request| async move { request.uri().query().unwrap_or_default().to_owned() }),
    );
    let listener = test
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let callback = format!("http://{}/callback", listener.local_addr().expect("addr"));
    test.runtime.spawn(async move { axum::serve(listener, echo).await });
    Env {
        test,
        emu,
        base,
        counters,
        callback,
    }
}

impl Env {
    fn open(&self, instance: &str, config: Value) -> Result<Ghl, ConnectorError> {
        let Value::Object(mut config) = config else {
            panic!("config must be an object")
        };
        config.entry("base_url").or_insert_with(|| self.base.clone().into());
        config
            .entry("location_id")
            .or_insert_with(|| self.emu.credentials().location_id.clone().into());
        tether_ghl::open(
            self.test.host(instance),
            OpenRequest {
                instance: instance.into(),
                config,
            },
        )
    }

    fn pit(&self) -> Ghl {
        self.open("ghl", json!({"private_token": self.emu.credentials().pit}))
            .expect("open")
    }

    fn oauth(&self, instance: &str) -> Ghl {
        let c = self.emu.credentials();
        self.open(
            instance,
            json!({
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "redirect_uri": self.callback,
                "authorize_url": format!("{}/oauth/chooselocation", self.base),
            }),
        )
        .expect("open oauth")
    }
}

fn fields(value: Value) -> Fields {
    match value {
        Value::Object(map) => map,
        _ => Fields::new(),
    }
}

fn write(
    ghl: &Ghl,
    action: &str,
    target: Option<&str>,
    parent: Option<&str>,
    input: Value,
) -> Result<WriteResult, ConnectorError> {
    ghl.write(WriteRequest {
        priority: Default::default(),
        action: action.into(),
        target_id: target.map(str::to_owned),
        parent_id: parent.map(str::to_owned),
        input: fields(input),
    })
}

fn read(ghl: &Ghl, stream: &str, position: ReadPosition, limit: Option<u32>, parent: Option<&str>) -> Page {
    ghl.read(ReadRequest {
        stream: stream.into(),
        position,
        limit,
        parent_id: parent.map(str::to_owned),
    })
    .unwrap_or_else(|e| panic!("read {stream}: {e}"))
}

#[test]
fn contacts_endpoint_by_endpoint() {
    let env = env(GhlConfig::seeded(7, 30));
    let ghl = env.pit();
    let client = ghl.client();
    let report = ghl.check().expect("check");
    assert!(report.notes.iter().any(|n| n.contains("contacts")), "{report:?}");

    // Create through the connector, with a custom field by name.
    let field_name = env.emu.state()["customFields"][0]["name"]
        .as_str()
        .expect("seeded custom field")
        .to_owned();
    let created = write(
        &ghl,
        "contact.create",
        None,
        None,
        json!({"firstName": "Ana", "lastName": "Silva", "email": "ana.silva@example.com",
               "phone": "+351912345678", "tags": ["vip"], "custom_fields": {field_name.clone(): "A-17"}}),
    )
    .expect("create");
    let id = created.target_id.clone().expect("id");
    assert_eq!(created.returned["email"], "ana.silva@example.com");
    assert_eq!(created.returned["customFields"][0]["value"], "A-17");

    // GET, typed.
    let got = client.get_contact(&id).expect("get");
    assert_eq!(
        (got.first_name.as_deref(), got.tags.clone()),
        (Some("Ana"), vec!["vip".to_owned()])
    );

    // PUT: the returned record is what GHL kept.
    let updated = write(
        &ghl,
        "contact.update",
        Some(&id),
        None,
        json!({"city": "Porto", "website": null}),
    )
    .expect("update");
    assert_eq!(updated.returned["city"], "Porto");

    // Upsert on the same email updates it.
    let up = client
        .upsert_contact(
            &ContactInput {
                email: Some(Some("ana.silva@example.com".into())),
                last_name: Some(Some("Costa".into())),
                ..ContactInput::default()
            },
            None,
        )
        .expect("upsert");
    assert_eq!((up.new, up.contact.id.as_str()), (false, id.as_str()));
    let up_new = write(
        &ghl,
        "contact.upsert",
        None,
        None,
        json!({"email": "new.one@example.com"}),
    )
    .expect("upsert");
    assert_eq!(up_new.returned["new"], true);

    // Search finds it; the deprecated list pages by (startAfter, startAfterId).
    let list = client.list_contacts(None, 10, None).expect("list");
    assert_eq!(list.contacts.len(), 10);
    let meta = list.meta.clone().expect("meta");
    let next = client
        .list_contacts(
            None,
            10,
            Some((
                meta.start_after.expect("startAfter"),
                meta.start_after_id.as_deref().expect("id"),
            )),
        )
        .expect("page 2");
    assert!(next.contacts.iter().all(|c| list.contacts.iter().all(|d| d.id != c.id)));

    // Duplicate create: a conflict that names the existing contact.
    let dup = write(
        &ghl,
        "contact.create",
        None,
        None,
        json!({"email": "ana.silva@example.com"}),
    )
    .expect_err("dup");
    assert_eq!(dup.kind, ErrorKind::Conflict);
    assert!(dup.message.contains(&format!("existing_contact_id={id}")), "{dup}");
    let typed = client
        .create_contact(&ContactInput {
            email: Some(Some("ana.silva@example.com".into())),
            ..ContactInput::default()
        })
        .expect_err("dup");
    assert_eq!(typed.existing_contact_id(), Some(id.as_str()));

    // 422: GHL's message array, joined.
    let invalid = write(&ghl, "contact.update", Some(&id), None, json!({"companyName": "Acme"})).expect_err("422");
    assert_eq!(invalid.kind, ErrorKind::Invalid);
    assert!(invalid.message.contains("companyName should not exist"), "{invalid}");
    let bad_email = client
        .create_contact(&ContactInput {
            email: Some(Some("not-an-email".into())),
            ..ContactInput::default()
        })
        .expect_err("422");
    assert!(
        matches!(bad_email, GhlError::Validation(ref m) if !m.is_empty()),
        "{bad_email:?}"
    );
    // Unknown input keys never reach GHL.
    let unknown = write(&ghl, "contact.create", None, None, json!({"nickname": "x"})).expect_err("unknown");
    assert_eq!(unknown.kind, ErrorKind::Invalid);
    let unknown_field = write(
        &ghl,
        "contact.create",
        None,
        None,
        json!({"custom_fields": {"No Such Field": 1}}),
    )
    .expect_err("cf");
    assert!(unknown_field.message.contains("No Such Field"), "{unknown_field}");

    // A field created after the id cache was loaded resolves after one reload.
    let added = env
        .test
        .host("admin")
        .http(
            HttpRequest::new(HttpMethod::Post, format!("{}/_sandbox/custom-fields", env.base))
                .header("Content-Type", "application/json")
                .body(json!({"name": "Loyalty Tier"}).to_string()),
        )
        .expect("admin");
    assert_eq!(added.status, 201, "{}", added.body);
    let tiered = write(
        &ghl,
        "contact.update",
        Some(&id),
        None,
        json!({"custom_fields": {"loyalty tier": "gold"}}),
    )
    .expect("new field by name");
    assert!(
        tiered.returned["customFields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|v| v["value"] == "gold")),
        "{tiered:?}"
    );

    // DELETE, then the id is gone (GHL: 400 "not found").
    write(&ghl, "contact.delete", Some(&id), None, json!({})).expect("delete");
    let gone = client.get_contact(&id).expect_err("gone");
    assert!(matches!(gone, GhlError::NotFound(_)), "{gone:?}");
    assert_eq!(ConnectorError::from(gone).kind, ErrorKind::NotFound);
    assert_eq!(env.counters.throttled.load(Ordering::SeqCst), 0);
}

#[test]
fn auth_errors_are_typed() {
    let env = env(GhlConfig::seeded(8, 3));
    let c = env.emu.credentials().clone();
    // 401: a read-only token writing.
    let readonly = env.open("ro", json!({"private_token": c.readonly_pit})).expect("open");
    let e = write(&readonly, "contact.create", None, None, json!({"firstName": "X"})).expect_err("scope");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("not authorized for this scope"), "{e}");
    // 403: another location's token.
    let other = env.open("other", json!({"private_token": c.other_pit})).expect("open");
    let e = other.check().expect_err("403");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("does not have access to this location"), "{e}");
    // 401: an unknown token.
    let bogus = env
        .open(
            "bogus",
            json!({"private_token": "pit-00000000-0000-0000-0000-000000000000"}),
        )
        .expect("open");
    let e = bogus.check().expect_err("401");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("Invalid Private Integration token"), "{e}");
}

#[test]
fn tasks_notes_tags_and_appointments() {
    let env = env(GhlConfig::seeded(9, 40));
    let ghl = env.pit();
    let client = ghl.client();
    let contact = write(
        &ghl,
        "contact.create",
        None,
        None,
        json!({"firstName": "Rui", "email": "rui@example.com"}),
    )
    .expect("contact")
    .target_id
    .expect("id");
    let c = Some(contact.as_str());

    // Tasks.
    let task = write(
        &ghl,
        "task.create",
        None,
        c,
        json!({"title": "Call back", "dueDate": "2030-01-02T10:00:00.000Z", "body": "about the quote"}),
    )
    .expect("task");
    let task_id = task.target_id.clone().expect("task id");
    assert_eq!(task.returned["completed"], false);
    let updated = write(
        &ghl,
        "task.update",
        Some(&task_id),
        c,
        json!({"title": "Call back today"}),
    )
    .expect("update");
    assert_eq!(updated.returned["title"], "Call back today");
    let done = write(&ghl, "task.complete", Some(&task_id), c, json!({})).expect("complete");
    assert_eq!(done.returned["completed"], true);
    assert!(client.get_task(&contact, &task_id).expect("get").completed);
    let page = read(&ghl, "tasks", ReadPosition::Cursor { cursor: None }, None, c);
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].parent.as_ref().map(|p| p.id.as_str()), c);
    let missing = write(&ghl, "task.create", None, c, json!({"body": "no title"})).expect_err("title");
    assert_eq!(missing.kind, ErrorKind::Invalid);
    let no_parent = write(
        &ghl,
        "task.create",
        None,
        None,
        json!({"title": "t", "dueDate": "2030-01-02T10:00:00.000Z"}),
    )
    .expect_err("parent");
    assert_eq!(no_parent.kind, ErrorKind::Invalid);
    write(&ghl, "task.delete", Some(&task_id), c, json!({})).expect("delete task");
    assert!(client.list_tasks(&contact).expect("tasks").is_empty());
    let e = client
        .update_task(&contact, &task_id, &TaskInput::default())
        .expect_err("deleted");
    assert!(matches!(e, GhlError::NotFound(_)), "{e:?}");

    // Notes.
    let note = write(&ghl, "note.create", None, c, json!({"body": "Prefers mornings"})).expect("note");
    let note_id = note.target_id.clone().expect("note id");
    write(
        &ghl,
        "note.update",
        Some(&note_id),
        c,
        json!({"body": "Prefers afternoons"}),
    )
    .expect("update");
    assert_eq!(
        client.get_note(&contact, &note_id).expect("get").body.as_deref(),
        Some("Prefers afternoons")
    );
    let page = read(&ghl, "notes", ReadPosition::Cursor { cursor: None }, None, c);
    assert_eq!(page.records[0].fields["body"], "Prefers afternoons");
    let e = client
        .create_note(&contact, &NoteInput::default())
        .expect_err("body required");
    assert!(matches!(e, GhlError::Input(_)));
    write(&ghl, "note.delete", Some(&note_id), c, json!({})).expect("delete note");
    assert!(client.list_notes(&contact).expect("notes").is_empty());

    // Tags.
    let added = write(
        &ghl,
        "contact.tags.add",
        Some(&contact),
        None,
        json!({"tags": ["a", "b"]}),
    )
    .expect("add");
    assert_eq!(added.returned["tags"], json!(["a", "b"]));
    let removed = write(
        &ghl,
        "contact.tags.remove",
        Some(&contact),
        None,
        json!({"tags": ["a"]}),
    )
    .expect("remove");
    assert_eq!(removed.returned["tags"], json!(["b"]));
    let e = write(&ghl, "contact.tags.add", Some(&contact), None, json!({"tags": []})).expect_err("empty");
    assert_eq!(e.kind, ErrorKind::Invalid);

    // Appointments of a seeded contact that has some.
    let state = env.emu.state();
    let location = env.emu.credentials().location_id.clone();
    let with_appointments = state["appointments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["locationId"] == location.as_str()))
        .and_then(|a| a["contactId"].as_str())
        .expect("a seeded appointment")
        .to_owned();
    let page = read(
        &ghl,
        "appointments",
        ReadPosition::Cursor { cursor: None },
        None,
        Some(&with_appointments),
    );
    assert!(!page.records.is_empty());
    assert!(page
        .records
        .iter()
        .all(|r| r.fields["contactId"] == with_appointments.as_str()));

    // Contacts of a business, paged by skip.
    let business = state["contacts"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .filter(|c| c["locationId"] == location.as_str())
                .find_map(|c| c["businessId"].as_str())
        })
        .expect("a seeded business")
        .to_owned();
    let expected = state["contacts"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["businessId"] == business.as_str() && c["locationId"] == location.as_str())
                .count()
        })
        .unwrap_or_default();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = read(
            &ghl,
            "business_contacts",
            ReadPosition::Cursor { cursor: cursor.clone() },
            Some(2),
            Some(&business),
        );
        seen.extend(page.records.into_iter().map(|r| r.id));
        cursor = page.next;
        if !page.has_more {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), expected);
}

#[test]
fn the_contacts_stream_pages_by_cursor_and_window() {
    let env = env(GhlConfig::seeded(11, 25));
    let ghl = env.pit();
    let mut ids = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = read(
            &ghl,
            "contacts",
            ReadPosition::Cursor { cursor: cursor.clone() },
            Some(10),
            None,
        );
        pages += 1;
        ids.extend(page.records.iter().map(|r| r.id.clone()));
        assert!(page
            .records
            .iter()
            .all(|r| r.updated_at.is_some() && !r.fields.contains_key("searchAfter")));
        cursor = page.next.clone();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(pages, 3);
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no record twice");
    let location = env.emu.credentials().location_id.clone();
    let in_location = env.emu.state()["contacts"]
        .as_array()
        .map(|cs| cs.iter().filter(|c| c["locationId"] == location.as_str()).count())
        .unwrap_or_default();
    assert_eq!(total, in_location);

    // Caught up: nothing new from the stored cursor, and the cursor stays.
    let idle = read(
        &ghl,
        "contacts",
        ReadPosition::Cursor { cursor: cursor.clone() },
        Some(10),
        None,
    );
    assert!(idle.records.is_empty());
    assert_eq!(idle.next, cursor);
    // A change shows up after it.
    let changed = ids[3].clone();
    write(&ghl, "contact.update", Some(&changed), None, json!({"city": "Braga"})).expect("update");
    let after = read(
        &ghl,
        "contacts",
        ReadPosition::Cursor { cursor: cursor.clone() },
        Some(10),
        None,
    );
    assert_eq!(
        after.records.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![changed]
    );

    // A window covering everything pages with tokens; an empty window has nothing.
    let mut window_ids = Vec::new();
    let mut page_token = None;
    loop {
        let page = read(
            &ghl,
            "contacts",
            ReadPosition::Window {
                since: "2000-01-01T00:00:00Z".into(),
                until: "2100-01-01T00:00:00Z".into(),
                page: page_token.clone(),
            },
            Some(7),
            None,
        );
        window_ids.extend(page.records.into_iter().map(|r| r.id));
        page_token = page.next;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(window_ids.len(), in_location);
    let empty = read(
        &ghl,
        "contacts",
        ReadPosition::Window {
            since: "2000-01-01T00:00:00Z".into(),
            until: "2000-01-02T00:00:00Z".into(),
            page: None,
        },
        None,
        None,
    );
    assert!(empty.records.is_empty() && empty.next.is_none() && !empty.has_more);
}

/// Runs the consent flow against the emulator: consent URL, redirect with a code, exchange.
fn connect(env: &Env, ghl: &Ghl) {
    let url = ghl.consent_url("st-42").expect("consent url");
    assert!(
        url.contains("state=st-42") && url.contains("response_type=code"),
        "{url}"
    );
    // The host's client follows the redirect to /callback, which echoes the query.
    let response = env
        .test
        .host("browser")
        .http(HttpRequest::new(HttpMethod::Get, url))
        .expect("consent");
    let code = response
        .body
        .split('&')
        .find_map(|kv| kv.strip_prefix("code="))
        .expect("code in the redirect")
        .to_owned();
    assert!(response.body.contains("state=st-42"), "{}", response.body);
    let grant = ghl.exchange_code(&code).expect("exchange");
    assert_eq!(
        grant.location_id.as_deref(),
        Some(env.emu.credentials().location_id.as_str())
    );
}

#[test]
fn a_refresh_under_eight_concurrent_callers_rotates_once() {
    let env = env(GhlConfig::seeded(12, 5));
    let first = env.oauth("ghl-a");
    connect(&env, &first);
    assert_eq!(env.counters.token.load(Ordering::SeqCst), 1, "the code exchange");
    first.check().expect("the stored access token works");

    // A second instance holding only the refresh token: its first calls must refresh.
    let refresh = env
        .test
        .host("ghl-a")
        .secret_get(REFRESH_TOKEN_SECRET)
        .expect("vault")
        .expect("refresh token stored");
    env.test
        .host("ghl-b")
        .secret_put(REFRESH_TOKEN_SECRET, &refresh)
        .expect("vault");
    let second = env.oauth("ghl-b");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| second.check())).collect();
        for h in handles {
            h.join().expect("thread").expect("check after refresh");
        }
    });
    assert_eq!(env.counters.token.load(Ordering::SeqCst), 2, "exactly one refresh");
    // The rotated refresh token was stored before use.
    let rotated = env
        .test
        .host("ghl-b")
        .secret_get(REFRESH_TOKEN_SECRET)
        .expect("vault")
        .expect("stored");
    assert_ne!(rotated, refresh);
}

#[test]
fn a_spent_refresh_token_ends_in_needs_reconnect() {
    let env = env(GhlConfig::seeded(13, 5));
    let first = env.oauth("ghl-a");
    connect(&env, &first);
    let spent = env
        .test
        .host("ghl-a")
        .secret_get(REFRESH_TOKEN_SECRET)
        .expect("vault")
        .expect("stored");
    // Instance b uses the refresh token once (rotating it)...
    env.test
        .host("ghl-b")
        .secret_put(REFRESH_TOKEN_SECRET, &spent)
        .expect("vault");
    env.oauth("ghl-b").check().expect("refreshes");
    // ...so instance c, holding the same (now spent) token, is refused.
    env.test
        .host("ghl-c")
        .secret_put(REFRESH_TOKEN_SECRET, &spent)
        .expect("vault");
    let third = env.oauth("ghl-c");
    let hits = env.counters.token.load(Ordering::SeqCst);
    let e = third.check().expect_err("invalid_grant");
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(e.message.contains("tether auth ghl"), "{e}");
    assert_eq!(env.counters.token.load(Ordering::SeqCst), hits + 1);
    // Every later call fails fast without asking the token endpoint, even after a restart.
    let e = write(&third, "contact.create", None, None, json!({"firstName": "X"})).expect_err("fast");
    assert!(e.message.contains("tether auth ghl"), "{e}");
    let reopened = env.oauth("ghl-c");
    assert_eq!(reopened.check().expect_err("still").kind, ErrorKind::Auth);
    assert!(reopened
        .tokens()
        .expect("oauth")
        .needs_reconnect()
        .expect("vault")
        .is_some());
    assert_eq!(
        env.counters.token.load(Ordering::SeqCst),
        hits + 1,
        "no further token calls"
    );

    // A new consent clears the state.
    connect(&env, &reopened);
    reopened.check().expect("reconnected");
}

/// Receives the emulator's webhook deliveries as they were sent.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Delivery>>>);

/// Headers and raw body of one delivery.
type Delivery = (Vec<(String, String)>, String);

fn inbox(env: &Env) -> Inbox {
    let inbox = Inbox::default();
    let app = Router::new()
        .route(
            "/hooks",
            post(|State(inbox): State<Inbox>, request: Request| async move {
                let headers = request
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                inbox
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
                "ok"
            }),
        )
        .with_state(inbox.clone());
    let listener = env
        .test
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    env.test.runtime.spawn(async move { axum::serve(listener, app).await });
    env.emu.register_webhook(format!("http://{addr}/hooks"));
    inbox
}

fn wait_for(inbox: &Inbox, n: usize) -> Vec<Delivery> {
    for _ in 0..200 {
        let got = inbox.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if got.len() >= n {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the emulator delivered fewer than {n} webhooks");
}

#[test]
fn webhooks_genuine_forged_stale_and_replayed() {
    let env = env(GhlConfig::seeded(14, 0));
    let inbox = inbox(&env);
    let key = env.emu.webhook_public_key().pem.clone();
    let ghl = env
        .open(
            "ghl",
            json!({"private_token": env.emu.credentials().pit, "webhook_public_key": key}),
        )
        .expect("open");
    let contact = write(
        &ghl,
        "contact.create",
        None,
        None,
        json!({"firstName": "Eva", "email": "eva@example.com"}),
    )
    .expect("create")
    .target_id
    .expect("id");
    write(&ghl, "note.create", None, Some(&contact), json!({"body": "hello"})).expect("note");
    let deliveries = wait_for(&inbox, 2);
    let now = env.test.host("ghl").now_ms();
    let request = |(headers, body): &Delivery, at: i64| WebhookRequest {
        headers: headers.clone(),
        body: body.clone(),
        received_at_ms: at,
    };

    // Genuine: accepted and parsed.
    let events = ghl.webhook(request(&deliveries[0], now)).expect("genuine");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].stream.as_str(), events[0].record.id.as_str()),
        ("contacts", contact.as_str())
    );
    let event = events[0].record.event.clone().expect("event");
    assert_eq!(event.kind, "ContactCreate");
    let note = ghl.webhook(request(&deliveries[1], now)).expect("note event");
    assert_eq!(note[0].stream, "notes");
    assert_eq!(
        note[0].record.parent.as_ref().map(|p| p.id.as_str()),
        Some(contact.as_str())
    );

    // Replayed.
    let e = ghl.webhook(request(&deliveries[0], now)).expect_err("replay");
    // Not an attack to alarm about: a genuine delivery seen before, acknowledged as a duplicate.
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("replayed"), "{e}");

    // Forged: the body changed after signing.
    let (headers, body) = &deliveries[1];
    let forged = body.replace("hello", "HELLO");
    let e = ghl
        .webhook(WebhookRequest {
            headers: headers.clone(),
            body: forged,
            received_at_ms: now,
        })
        .expect_err("forged");
    assert!(e.message.contains("does not match"), "{e}");
    // Unsigned.
    let e = ghl
        .webhook(WebhookRequest {
            headers: vec![],
            body: body.clone(),
            received_at_ms: now,
        })
        .expect_err("unsigned");
    assert_eq!(e.kind, ErrorKind::Auth);

    // Stale: the same genuine delivery, received ten minutes later.
    write(&ghl, "contact.tags.add", Some(&contact), None, json!({"tags": ["x"]})).expect("tags");
    let deliveries = wait_for(&inbox, 3);
    let e = ghl
        .webhook(request(&deliveries[2], now + 10 * 60 * 1000))
        .expect_err("stale");
    assert!(e.message.contains("stale"), "{e}");

    // A verifier configured with another key refuses genuine deliveries.
    let other = env
        .open(
            "other",
            json!({"private_token": env.emu.credentials().pit,
                   "webhook_public_key": "MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="}),
        )
        .expect("open");
    assert_eq!(
        other.webhook(request(&deliveries[2], now)).expect_err("wrong key").kind,
        ErrorKind::Auth
    );
}

#[test]
fn a_401_on_an_oauth_token_refreshes_once_and_retries() {
    let env = env(GhlConfig::seeded(15, 3));
    let ghl = env.oauth("ghl-a");
    connect(&env, &ghl);
    // The stored access token looks valid for a day but GHL no longer knows it (revoked).
    let stale = json!({"token": "revoked-token", "expires_at_ms": i64::MAX / 2, "issued_at_ms": 0}).to_string();
    env.test
        .host("ghl-b")
        .secret_put(tether_ghl::auth::ACCESS_TOKEN_SECRET, &stale)
        .expect("vault");
    let refresh = env
        .test
        .host("ghl-a")
        .secret_get(REFRESH_TOKEN_SECRET)
        .expect("vault")
        .expect("stored");
    env.test
        .host("ghl-b")
        .secret_put(REFRESH_TOKEN_SECRET, &refresh)
        .expect("vault");
    let second = env.oauth("ghl-b");
    let before = env.counters.token.load(Ordering::SeqCst);
    second.check().expect("refreshed after the 401 and retried");
    assert_eq!(env.counters.token.load(Ordering::SeqCst), before + 1);
    // A missing scope is also a 401, but refreshing cannot fix it: no token call.
    let readonly = env
        .emu
        .mint_pit(&env.emu.credentials().location_id, &["contacts.readonly"]);
    let pit = env.open("ro", json!({"private_token": readonly})).expect("open");
    assert_eq!(
        write(&pit, "contact.create", None, None, json!({"firstName": "X"}))
            .expect_err("scope")
            .kind,
        ErrorKind::Auth
    );
    assert_eq!(env.counters.token.load(Ordering::SeqCst), before + 1);
}
