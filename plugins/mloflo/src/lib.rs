//! The MLOFLO plugin: translation between MLOFLO's API (as this project's contract defines it,
//! see shared/reference/mloflo/CONTRACT.md) and Tether records.
//!
//! This build describes the connector (config, streams, actions); its reads and writes are not
//! implemented yet and answer with a `fatal` error saying so.

use tether_abi::{FieldKind as K, TriggerKind as T, *};

pub struct Mloflo;

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
        FieldDef::new("title", K::String).required(),
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
        FieldDef::new("body", K::String).required(),
        FieldDef::new("author_user_id", K::String),
        FieldDef::new("attachments", K::Array),
    ]
}

impl Plugin for Mloflo {
    fn manifest() -> Manifest {
        let feed = [T::Poll, T::Webhook, T::Backfill];
        Manifest {
            name: "mloflo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "MLOFLO mortgage CRM: borrowers, partners, tasks, notes and milestones".into(),
            config: vec![
                ConfigKey::optional("base_url", "API base URL").default_value("https://api.mloflo.com/v1"),
                ConfigKey::optional("api_key", "API key (mlo_live_... or mlo_test_...)").secret(),
                ConfigKey::optional("client_id", "OAuth client-credentials client id"),
                ConfigKey::optional("client_secret", "OAuth client-credentials secret").secret(),
                ConfigKey::optional("webhook_secret", "secret that signs inbound webhooks").secret(),
                ConfigKey::optional("csv_path", "a CSV export to read as the `csv_contacts` stream"),
            ],
            streams: vec![
                StreamDef::new("contacts", "borrower and partner contacts, with soft deletes", &feed)
                    .fields(contact_fields()),
                StreamDef::new("tasks", "tasks of contacts", &feed)
                    .fields(task_fields())
                    .child_of("contacts"),
                StreamDef::new("notes", "notes with attachment links", &feed)
                    .fields(note_fields())
                    .child_of("contacts"),
                StreamDef::new("milestones", "pipeline stage changes", &[T::Poll, T::Webhook])
                    .fields([
                        FieldDef::new("contact_id", K::String),
                        FieldDef::new("from_stage", K::String),
                        FieldDef::new("to_stage", K::String),
                        FieldDef::new("occurred_at", K::DateTime),
                    ])
                    .child_of("contacts"),
                StreamDef::new(
                    "csv_contacts",
                    "contacts from MLOFLO's CSV export columns",
                    &[T::Backfill],
                )
                .fields([
                    FieldDef::new("first", K::String),
                    FieldDef::new("last", K::String),
                    FieldDef::new("email", K::Email),
                    FieldDef::new("phone", K::Phone),
                    FieldDef::new("street", K::String),
                    FieldDef::new("city", K::String),
                    FieldDef::new("state", K::String),
                    FieldDef::new("county", K::String),
                    FieldDef::new("zip", K::String),
                    FieldDef::new("dob", K::Date),
                    FieldDef::new("source", K::String),
                    FieldDef::new("tags", K::String),
                ]),
            ],
            actions: vec![
                ActionDef::new("contact.create", "create a contact").fields(contact_fields()),
                ActionDef::new("contact.update", "update a contact")
                    .fields(contact_fields())
                    .on_existing(),
                ActionDef::new("task.create", "create a task on a contact")
                    .fields(task_fields())
                    .child_of("contacts"),
                ActionDef::new("task.update", "update a task")
                    .fields(task_fields())
                    .on_existing(),
                ActionDef::new("note.create", "add a note to a contact")
                    .fields(note_fields())
                    .child_of("contacts"),
                ActionDef::new("note.update", "update a note")
                    .fields(note_fields())
                    .on_existing(),
            ],
        }
    }

    fn open(_host: Host, _request: OpenRequest) -> Result<Self, ConnectorError> {
        Ok(Mloflo)
    }
}

impl Connector for Mloflo {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        Err(not_implemented("check"))
    }
    fn read(&self, _: ReadRequest) -> Result<Page, ConnectorError> {
        Err(not_implemented("read"))
    }
    fn write(&self, _: WriteRequest) -> Result<WriteResult, ConnectorError> {
        Err(not_implemented("write"))
    }
}

fn not_implemented(call: &str) -> ConnectorError {
    ConnectorError::fatal(format!(
        "the mloflo plugin {} cannot {call} yet",
        env!("CARGO_PKG_VERSION")
    ))
}

export_plugin!(Mloflo);
