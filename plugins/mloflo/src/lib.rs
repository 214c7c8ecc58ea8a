//! The MLOFLO plugin: translation between MLOFLO's API and Tether records.
//!
//! MLOFLO publishes no API documentation; the contract implemented here is this project's own
//! (shared/reference/mloflo/CONTRACT.md), and every MLOFLO-specific name lives in [`api`].
//!
//! - contacts and tasks are global feeds ordered by `updated_at`, read with `updated_since` and
//!   `include_deleted=true` (soft deletes arrive as `deleted` records);
//! - notes and milestones are listed per contact only: with a parent id the plugin reads that
//!   contact's list, without one it sweeps the contacts (see [`feed::Sweep`]);
//! - `csv_contacts` reads MLOFLO's CSV export from `csv_path` ([`csv`]);
//! - webhooks are verified (HMAC-SHA256, five-minute window, each event id once) in [`webhook`].

pub mod api;
pub mod client;
pub mod csv;
pub mod error;
pub mod feed;
pub mod records;
pub mod webhook;

use serde_json::{Map, Value};
use tether_abi::{FieldKind as K, TriggerKind as T, *};

use crate::client::{Client, Credentials};
use crate::error::MlofloError;
use crate::records::{object_record, Kind};
use crate::webhook::WebhookVerifier;

pub struct Mloflo {
    client: Client,
    verifier: WebhookVerifier,
    csv_path: Option<String>,
}

fn contact_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("type", K::String),
        FieldDef::new("first_name", K::String),
        FieldDef::new("last_name", K::String),
        FieldDef::new("email", K::Email),
        FieldDef::new("phone", K::Phone),
        FieldDef::new("source", K::String),
        FieldDef::new("tags", K::Array),
        FieldDef::new("custom_fields", K::Object),
        FieldDef::new("pipeline_stage", K::String),
        FieldDef::new("loan_amount", K::Number),
        FieldDef::new("address", K::Object),
        FieldDef::new("dob", K::Date),
        FieldDef::new("assigned_user_id", K::String),
    ]
}

fn task_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("contact_id", K::String),
        FieldDef::new("title", K::String),
        FieldDef::new("description", K::String),
        FieldDef::new("due_at", K::DateTime),
        FieldDef::new("status", K::String),
        FieldDef::new("completed_at", K::DateTime),
        FieldDef::new("assigned_user_id", K::String),
    ]
}

fn note_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("contact_id", K::String),
        FieldDef::new("body", K::String),
        FieldDef::new("author_user_id", K::String),
        FieldDef::new("attachments", K::Array),
    ]
}

/// What every stored object carries besides its own fields.
fn stored(mut fields: Vec<FieldDef>) -> Vec<FieldDef> {
    fields.extend([
        FieldDef::new("id", K::String),
        FieldDef::new("created_at", K::DateTime),
        FieldDef::new("updated_at", K::DateTime),
        FieldDef::new("deleted_at", K::DateTime),
    ]);
    fields
}

fn required(mut fields: Vec<FieldDef>, names: &[&str]) -> Vec<FieldDef> {
    for field in &mut fields {
        if names.contains(&field.name.as_str()) {
            field.required = true;
        }
    }
    fields
}

pub fn manifest() -> Manifest {
    let feed = [T::Poll, T::Webhook, T::Backfill];
    Manifest {
        name: "mloflo".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description:
            "MLOFLO mortgage CRM (API per this project's contract): borrowers, partners, tasks, notes and milestones"
                .into(),
        config: vec![
            ConfigKey::optional("base_url", "API base URL").default_value(api::DEFAULT_BASE_URL),
            ConfigKey::optional("api_key", "API key (mlo_live_... or mlo_test_...)").secret(),
            ConfigKey::optional("client_id", "OAuth client-credentials client id"),
            ConfigKey::optional("client_secret", "OAuth client-credentials secret").secret(),
            ConfigKey::optional("scopes", "OAuth scopes to request").default_value(api::DEFAULT_SCOPES),
            ConfigKey::optional("webhook_secret", "secret that signs inbound webhooks").secret(),
            ConfigKey::optional("csv_path", "an MLOFLO CSV export, read as the `csv_contacts` stream"),
        ],
        streams: vec![
            StreamDef::new("contacts", "borrower and partner contacts, with soft deletes", &feed)
                .fields(stored(contact_fields())),
            StreamDef::new("tasks", "tasks of contacts, with soft deletes", &feed)
                .fields(stored(task_fields()))
                .child_of("contacts"),
            StreamDef::new("notes", "notes with attachment links, with soft deletes", &feed)
                .fields(stored(note_fields()))
                .child_of("contacts"),
            StreamDef::new("milestones", "pipeline stage changes", &feed)
                .fields([
                    FieldDef::new("id", K::String),
                    FieldDef::new("contact_id", K::String),
                    FieldDef::new("from_stage", K::String),
                    FieldDef::new("to_stage", K::String),
                    FieldDef::new("occurred_at", K::DateTime),
                ])
                .child_of("contacts"),
            StreamDef::new(
                "csv_contacts",
                "rows of an MLOFLO CSV export (the file at `csv_path`)",
                &[T::Poll],
            )
            .fields(
                api::CSV_COLUMNS
                    .iter()
                    .map(|c| {
                        let kind = match *c {
                            "email" => K::Email,
                            "phone" => K::Phone,
                            "dob" => K::Date,
                            "tags" => K::Array,
                            _ => K::String,
                        };
                        FieldDef::new(c, kind)
                    })
                    .chain([FieldDef::new("row", K::Number), FieldDef::new("problems", K::Array)]),
            ),
        ],
        actions: vec![
            ActionDef::new("contact.create", "create a contact").fields(contact_fields()),
            ActionDef::new("contact.update", "update a contact")
                .fields(contact_fields())
                .on_existing(),
            ActionDef::new("task.create", "create a task on a contact")
                .fields(required(task_fields(), &["title"]))
                .child_of("contacts"),
            ActionDef::new("task.update", "update a task (status completed completes it)")
                .fields(task_fields())
                .on_existing()
                .child_of("contacts"),
            ActionDef::new("note.create", "add a note to a contact")
                .fields(required(note_fields(), &["body"]))
                .child_of("contacts"),
            ActionDef::new("note.update", "update a note")
                .fields(note_fields())
                .on_existing()
                .child_of("contacts"),
        ],
    }
}

fn text(config: &Fields, key: &str) -> Result<Option<String>, MlofloError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(MlofloError::Config(format!("`{key}` must be a string, not {other}"))),
    }
}

/// Credentials from config: an API key, or a client id and secret, not both. None at all is
/// allowed at open (the instance can still describe itself); calls then fail as `auth`.
fn credentials(config: &Fields) -> Result<Option<Credentials>, MlofloError> {
    let key = text(config, "api_key")?;
    let id = text(config, "client_id")?;
    let secret = text(config, "client_secret")?;
    match (key, id, secret) {
        (None, None, None) => Ok(None),
        (Some(key), None, None) => {
            if !api::API_KEY_PREFIXES.iter().any(|p| key.starts_with(p)) {
                return Err(MlofloError::Config(format!(
                    "`api_key` must start with {}",
                    api::API_KEY_PREFIXES.join(" or ")
                )));
            }
            Ok(Some(Credentials::ApiKey(key)))
        }
        (None, Some(client_id), Some(client_secret)) => Ok(Some(Credentials::ClientCredentials {
            client_id,
            client_secret,
            scope: text(config, "scopes")?.unwrap_or_else(|| api::DEFAULT_SCOPES.to_owned()),
        })),
        (Some(_), _, _) => Err(MlofloError::Config(
            "set either `api_key` or `client_id`/`client_secret`, not both".into(),
        )),
        _ => Err(MlofloError::Config(
            "OAuth needs both `client_id` and `client_secret`".into(),
        )),
    }
}

fn need<'a>(value: &'a Option<String>, what: &str) -> Result<&'a str, MlofloError> {
    let id = value
        .as_deref()
        .ok_or_else(|| MlofloError::Input(format!("this action needs {what}")))?;
    if !api::is_id(id) {
        return Err(MlofloError::Input(format!("`{id}` is not an MLOFLO id")));
    }
    Ok(id)
}

/// Fields the API sets itself; sending them back is refused as a validation error.
const READ_ONLY: &[&str] = &["id", "created_at", "updated_at", "deleted_at", "completed_at"];

fn body(mut input: Fields, drop: &[&str]) -> Value {
    for key in READ_ONLY.iter().chain(drop) {
        input.remove(*key);
    }
    Value::Object(input)
}

fn written(answer: Value) -> Result<WriteResult, MlofloError> {
    let fields: Map<String, Value> = match answer {
        Value::Object(fields) => fields,
        other => {
            return Err(MlofloError::Decode {
                status: 200,
                detail: format!("a write answered {other}, not the object"),
            })
        }
    };
    let id = fields.get(api::F_ID).and_then(Value::as_str).map(str::to_owned);
    if id.is_none() {
        return Err(MlofloError::Decode {
            status: 200,
            detail: "a written object without an id".into(),
        });
    }
    Ok(WriteResult {
        target_id: id,
        returned: fields,
    })
}

impl Mloflo {
    pub fn open_with(host: Host, config: &Fields) -> Result<Mloflo, MlofloError> {
        let base_url = text(config, "base_url")?.unwrap_or_else(|| api::DEFAULT_BASE_URL.to_owned());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(MlofloError::Config(format!(
                "`base_url` {base_url} is not an http(s) URL"
            )));
        }
        Ok(Mloflo {
            client: Client::new(host, &base_url, credentials(config)?),
            verifier: WebhookVerifier::new(text(config, "webhook_secret")?),
            csv_path: text(config, "csv_path")?,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn read_csv(&self, request: &ReadRequest) -> Result<Page, MlofloError> {
        let path = self
            .csv_path
            .as_deref()
            .ok_or_else(|| MlofloError::Config("`csv_contacts` needs `csv_path` in the connector config".into()))?;
        // Plugins have no file service; reading the configured file is the one local read.
        let text = std::fs::read_to_string(path).map_err(|e| MlofloError::Csv(format!("cannot read {path}: {e}")))?;
        let cursor = match &request.position {
            ReadPosition::Cursor { cursor } => cursor.as_deref(),
            ReadPosition::Window { page, .. } => page.as_deref(),
        };
        let limit = request.limit.unwrap_or(api::DEFAULT_PAGE).clamp(1, 1000) as usize;
        csv::read_page(&text, cursor, limit)
    }

    fn read_inner(&self, request: ReadRequest) -> Result<Page, MlofloError> {
        let parent = match &request.parent_id {
            Some(_) => Some(need(&request.parent_id, "a contact id")?.to_owned()),
            None => None,
        };
        match (request.stream.as_str(), parent) {
            ("contacts", _) => feed::read(&self.client, Kind::Contact, &api::contacts(), &[], &request),
            ("tasks", parent) => {
                let extra: Vec<(&str, String)> = parent.into_iter().map(|p| (api::F_CONTACT_ID, p)).collect();
                feed::read(&self.client, Kind::Task, &api::tasks(), &extra, &request)
            }
            ("notes", Some(contact)) => feed::read(&self.client, Kind::Note, &api::notes_of(&contact), &[], &request),
            ("milestones", Some(contact)) => feed::read(
                &self.client,
                Kind::Milestone,
                &api::milestones_of(&contact),
                &[],
                &request,
            ),
            ("notes", None) => feed::sweep(&self.client, Kind::Note, &request),
            ("milestones", None) => feed::sweep(&self.client, Kind::Milestone, &request),
            ("csv_contacts", _) => self.read_csv(&request),
            (other, _) => Err(MlofloError::Input(format!("unknown stream `{other}`"))),
        }
    }

    fn write_inner(&self, request: WriteRequest) -> Result<WriteResult, MlofloError> {
        let input = request.input;
        let target = || need(&request.target_id, "the target id");
        let send = |method, path: String, body: Value| self.client.send(method, &path, Some(&body)).and_then(written);
        match request.action.as_str() {
            "contact.create" => send(HttpMethod::Post, api::contacts(), body(input, &[])),
            "contact.update" => send(HttpMethod::Patch, api::contact(target()?), body(input, &[])),
            "task.create" => {
                let mut input = input;
                if !input.get(api::F_CONTACT_ID).is_some_and(Value::is_string) {
                    let contact = need(&request.parent_id, "the contact id (parent id)")?;
                    input.insert(api::F_CONTACT_ID.into(), Value::String(contact.to_owned()));
                }
                send(HttpMethod::Post, api::tasks(), body(input, &[]))
            }
            "task.update" => send(
                HttpMethod::Patch,
                api::task(target()?),
                body(input, &[api::F_CONTACT_ID]),
            ),
            "note.create" => {
                let contact = match input.get(api::F_CONTACT_ID).and_then(Value::as_str) {
                    Some(c) if request.parent_id.is_none() => need(&Some(c.to_owned()), "the contact id")?.to_owned(),
                    _ => need(&request.parent_id, "the contact id (parent id)")?.to_owned(),
                };
                send(
                    HttpMethod::Post,
                    api::notes_of(&contact),
                    body(input, &[api::F_CONTACT_ID]),
                )
            }
            "note.update" => send(
                HttpMethod::Patch,
                api::note(target()?),
                body(input, &[api::F_CONTACT_ID]),
            ),
            other => Err(MlofloError::Input(format!("unknown action `{other}`"))),
        }
    }

    fn check_inner(&self) -> Result<CheckReport, MlofloError> {
        let mut notes = vec![match self.client.credentials() {
            Some(Credentials::ApiKey(_)) => "auth: API key".to_owned(),
            Some(Credentials::ClientCredentials { .. }) => "auth: OAuth client credentials".to_owned(),
            None => {
                return Err(MlofloError::Api {
                    status: 401,
                    code: "unauthorized".into(),
                    message: "the mloflo plugin has no credentials: set `api_key`, or `client_id` and `client_secret`"
                        .into(),
                    retry_after_ms: None,
                })
            }
        }];
        let (contacts, _) = self.client.list(&api::contacts(), &[(api::Q_LIMIT, "1".into())])?;
        notes.push(format!("contacts readable ({} on the first page of 1)", contacts.len()));
        if !self.verifier.configured() {
            notes.push("no webhook_secret: webhooks will be refused".into());
        }
        if let Some(path) = &self.csv_path {
            if std::fs::metadata(path).is_err() {
                notes.push(format!("csv_path {path} is not readable"));
            }
        }
        Ok(CheckReport {
            account: Some(format!("MLOFLO at {}", self.client.base_url())),
            notes,
        })
    }
}

impl Plugin for Mloflo {
    fn manifest() -> Manifest {
        manifest()
    }

    fn open(host: Host, request: OpenRequest) -> Result<Self, ConnectorError> {
        Mloflo::open_with(host, &request.config).map_err(ConnectorError::from)
    }
}

impl Connector for Mloflo {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        self.check_inner().map_err(ConnectorError::from)
    }

    fn read(&self, request: ReadRequest) -> Result<Page, ConnectorError> {
        self.read_inner(request).map_err(ConnectorError::from)
    }

    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError> {
        self.write_inner(request).map_err(ConnectorError::from)
    }

    fn webhook(&self, request: WebhookRequest) -> Result<Vec<WebhookEvent>, ConnectorError> {
        let body = self.verifier.verify(&request)?;
        Ok(webhook::parse_event(&body)?)
    }
}

/// Parses a listed object into a record; exposed for the feed module.
pub(crate) fn to_record(kind: Kind, value: Value) -> Result<Record, MlofloError> {
    match value {
        Value::Object(fields) => object_record(kind, fields),
        other => Err(MlofloError::Decode {
            status: 200,
            detail: format!("a list item that is not an object: {other}"),
        }),
    }
}

#[cfg(feature = "export")]
export_plugin!(Mloflo);
