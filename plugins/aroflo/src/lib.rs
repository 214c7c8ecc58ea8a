//! The AroFlo plugin: translation between AroFlo's zone API (shared/reference/aroflo/NOTES.md)
//! and Tether records. Requests are signed with HMAC-SHA512 ([`sign`]), read with explicit WHERE
//! clauses ([`query`]: AroFlo silently applies a 30-day filter without one) and written as
//! `postxml` ([`xml`]); every answer goes through [`envelope`], which types AroFlo's status codes
//! and the `postresults` errors it reports under `status "0"`.

pub mod connector;
pub mod envelope;
pub mod error;
pub mod query;
pub mod records;
pub mod sign;
pub mod xml;

use tether_abi::{FieldKind as K, TriggerKind as T, *};

pub use connector::Aroflo;

fn named(names: &[&str], kind: K) -> Vec<FieldDef> {
    names.iter().map(|n| FieldDef::new(n, kind)).collect()
}

/// The connector's description: config, streams and actions.
pub fn manifest() -> Manifest {
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
            ConfigKey::required("org_encoded", "the orgEncoded value").secret(),
            ConfigKey::optional(
                "host_ip",
                "the public IP to sign with (HostIP), when AroFlo requires one",
            ),
            ConfigKey::optional("default_org_id", "business unit (orgid) for new tasks without one"),
            ConfigKey::optional("default_task_type_id", "task type for new tasks without one"),
            ConfigKey::optional("note_filter", "visibility of notes written").default_value("Internal Only"),
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
                .fields(named(
                    &["orgid", "tasktypeid", "contactname", "contactphone", "custon"],
                    K::String,
                ))
                .child_of("clients"),
            ActionDef::new("task.update", "update a job task")
                .fields(task())
                .on_existing(),
            ActionDef::new("task.complete", "complete a job task")
                .fields(task())
                .on_existing(),
            ActionDef::new("client.create", "create a client").fields(client()),
            ActionDef::new("client.update", "update a client")
                .fields(client())
                .on_existing(),
            ActionDef::new("note.create", "add a note to a client or task")
                .fields(note())
                .fields(named(&["filter"], K::String)),
        ],
    }
}

impl Plugin for Aroflo {
    fn manifest() -> Manifest {
        manifest()
    }

    fn open(host: Host, request: OpenRequest) -> Result<Self, ConnectorError> {
        Ok(Aroflo::new(host, &request.config))
    }
}

#[cfg(feature = "export")]
export_plugin!(Aroflo);
