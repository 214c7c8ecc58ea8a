//! MLOFLO objects as Tether records: id, change time, soft delete, and the contact they hang off.

use serde_json::{Map, Value};
use tether_abi::{Record, RecordRef};

use crate::api;
use crate::error::MlofloError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Contact,
    Task,
    Note,
    Milestone,
}

impl Kind {
    pub fn of_stream(stream: &str) -> Kind {
        match stream {
            "tasks" => Kind::Task,
            "notes" => Kind::Note,
            "milestones" => Kind::Milestone,
            _ => Kind::Contact,
        }
    }

    /// The field a feed orders by: milestones are never edited, only reached.
    pub fn time_field(self) -> &'static str {
        match self {
            Kind::Milestone => api::F_OCCURRED_AT,
            _ => api::F_UPDATED_AT,
        }
    }
}

pub fn object_record(kind: Kind, fields: Map<String, Value>) -> Result<Record, MlofloError> {
    let id = match fields.get(api::F_ID) {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(MlofloError::Input(format!("a {kind:?} without an id")).into_decode()),
    };
    let updated_at = fields.get(kind.time_field()).and_then(Value::as_str).map(str::to_owned);
    let deleted = !matches!(fields.get(api::F_DELETED_AT), None | Some(Value::Null));
    let parent = match kind {
        Kind::Contact => None,
        _ => fields
            .get(api::F_CONTACT_ID)
            .and_then(Value::as_str)
            .map(|contact| RecordRef {
                stream: "contacts".into(),
                id: contact.to_owned(),
            }),
    };
    Ok(Record {
        id,
        updated_at,
        deleted,
        parent,
        event: None,
        fields,
    })
}

impl MlofloError {
    /// An object the API sent that breaks the contract is a decode problem, not bad input.
    fn into_decode(self) -> MlofloError {
        MlofloError::Decode {
            status: 200,
            detail: self.to_string(),
        }
    }
}
