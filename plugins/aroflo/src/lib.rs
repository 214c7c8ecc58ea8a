//! The AroFlo plugin: translation between AroFlo's API (shared/reference/aroflo/NOTES.md) and
//! Tether records.
//!
//! This build describes the connector (config, streams, actions); its reads and writes are not
//! implemented yet and answer with a `fatal` error saying so.

use tether_abi::{FieldKind as K, TriggerKind as T, *};

pub struct Aroflo;

fn named(names: &[&str], kind: K) -> Vec<FieldDef> {
    names.iter().map(|n| FieldDef::new(n, kind)).collect()
}

impl Plugin for Aroflo {
    fn manifest() -> Manifest {
        let feed = [T::Poll, T::Backfill];
        let client = || {
            let mut f = named(
                &[
                    "clientid",
                    "clientname",
                    "firstname",
                    "surname",
                    "abn",
                    "status",
                    "address",
                ],
                K::String,
            );
            f.extend([
                FieldDef::new("email", K::Email),
                FieldDef::new("phone", K::Phone),
                FieldDef::new("mobile", K::Phone),
            ]);
            f
        };
        let contact = || {
            let mut f = named(&["contactid", "clientid", "givennames", "surname", "status"], K::String);
            f.extend([
                FieldDef::new("email", K::Email),
                FieldDef::new("phone", K::Phone),
                FieldDef::new("mobile", K::Phone),
            ]);
            f
        };
        let task = || {
            let mut f = named(
                &["taskid", "clientid", "taskname", "description", "status", "substatus"],
                K::String,
            );
            f.extend([FieldDef::new("duedate", K::Date), FieldDef::new("notes", K::Array)]);
            f
        };
        let note = || {
            let mut f = named(&["noteid", "clientid", "taskid", "content"], K::String);
            f.push(FieldDef::new("dateposted", K::DateTime));
            f
        };
        Manifest {
            name: "aroflo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "AroFlo field service (Australia): clients, contacts, job tasks and notes".into(),
            config: vec![
                ConfigKey::optional("base_url", "API base URL").default_value("https://api.aroflo.com/"),
                ConfigKey::required("uencoded", "the org's uEncoded value").secret(),
                ConfigKey::required("pencoded", "the user's pEncoded value").secret(),
                ConfigKey::required("secret_key", "the API secret used for HMAC-SHA512 signing").secret(),
                ConfigKey::optional("org_encoded", "orgEncoded, for multi-org accounts"),
                ConfigKey::optional("host_ip", "the HostIP to sign with, when AroFlo requires one"),
            ],
            streams: vec![
                StreamDef::new("clients", "clients created or updated", &feed).fields(client()),
                StreamDef::new("contacts", "client contacts created or updated", &feed)
                    .fields(contact())
                    .child_of("clients"),
                StreamDef::new("tasks", "job tasks with their notes", &feed)
                    .fields(task())
                    .child_of("clients"),
                StreamDef::new("clientnotes", "notes on clients", &feed)
                    .fields(note())
                    .child_of("clients"),
                StreamDef::new("tasknotes", "notes on tasks", &feed)
                    .fields(note())
                    .child_of("tasks"),
            ],
            actions: vec![
                ActionDef::new("task.create", "create a job task on a client")
                    .fields(task())
                    .child_of("clients"),
                ActionDef::new("task.update", "update a job task")
                    .fields(task())
                    .on_existing(),
                ActionDef::new("task.complete", "complete a job task").on_existing(),
                ActionDef::new("client.create", "create a client").fields(client()),
                ActionDef::new("client.update", "update a client")
                    .fields(client())
                    .on_existing(),
                ActionDef::new("note.create", "add a note to a client or task").fields(note()),
            ],
        }
    }

    fn open(_host: Host, _request: OpenRequest) -> Result<Self, ConnectorError> {
        Ok(Aroflo)
    }
}

impl Connector for Aroflo {
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
        "the aroflo plugin {} cannot {call} yet",
        env!("CARGO_PKG_VERSION")
    ))
}

export_plugin!(Aroflo);
