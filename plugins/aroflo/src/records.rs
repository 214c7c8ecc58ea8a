//! AroFlo JSON records → Tether records with the fields the manifest declares.

use serde_json::{json, Value};
use tether_abi::{Fields, Record, RecordRef};

use crate::envelope::{member, text_of};
use crate::query::{parse_datetime, rfc3339};

fn string(value: &Value, key: &str) -> Value {
    text_of(value, key).map_or(Value::Null, Value::String)
}

fn truthy(value: &Value, key: &str) -> bool {
    text_of(value, key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

fn status(value: &Value) -> Value {
    Value::String(
        if truthy(value, "archived") {
            "archived"
        } else {
            "active"
        }
        .into(),
    )
}

fn record(id: String, updated_ms: Option<i64>, parent: Option<(&str, String)>, fields: Value) -> Record {
    let fields: Fields = match fields {
        Value::Object(map) => map,
        _ => Fields::new(),
    };
    Record {
        id,
        updated_at: updated_ms.map(rfc3339),
        deleted: false,
        parent: parent.map(|(stream, id)| RecordRef {
            stream: stream.to_owned(),
            id,
        }),
        event: None,
        fields,
    }
}

fn address(value: Option<&Value>) -> Value {
    let Some(address) = value else { return Value::Null };
    let parts: Vec<String> = ["addressline1", "addressline2", "suburb", "state", "postcode"]
        .iter()
        .filter_map(|k| text_of(address, k))
        .collect();
    if parts.is_empty() {
        Value::Null
    } else {
        Value::String(parts.join(", "))
    }
}

pub fn client(value: &Value, updated_ms: Option<i64>) -> Option<Record> {
    let id = text_of(value, "clientid")?;
    let updated = updated_ms.or_else(|| text_of(value, "lastupdatedatetimeutc").and_then(|t| parse_datetime(&t)));
    let fields = json!({
        "clientid": id,
        "clientname": string(value, "clientname"),
        "firstname": string(value, "firstname"),
        "surname": string(value, "surname"),
        "abn": string(value, "abn"),
        "email": string(value, "email"),
        "phone": string(value, "phone"),
        "mobile": string(value, "mobile"),
        "status": status(value),
        "address": address(member(value, "address")),
    });
    Some(record(id, updated, None, fields))
}

pub fn contact(value: &Value, client_id: Option<String>, updated_ms: Option<i64>) -> Option<Record> {
    let id = text_of(value, "userid")?;
    let client_id = client_id.or_else(|| member(value, "org").and_then(|o| text_of(o, "orgid")));
    let fields = json!({
        "contactid": id,
        "clientid": client_id,
        "givennames": string(value, "givennames"),
        "surname": string(value, "surname"),
        "email": string(value, "email"),
        "phone": string(value, "phone"),
        "mobile": string(value, "mobile"),
        "status": status(value),
    });
    Some(record(id, updated_ms, client_id.map(|c| ("clients", c)), fields))
}

/// `Nov 14, 2018 2:56:20 PM` (task notes' `timeposted`) → seconds after midnight.
fn clock_seconds(timeposted: &str) -> Option<i64> {
    let mut words = timeposted.split_whitespace().rev();
    let meridiem = words.next()?;
    let clock = words.next()?;
    let mut hms = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next().flatten().unwrap_or(0));
    let hour = match (meridiem.to_ascii_uppercase().as_str(), hour) {
        ("AM", 12) => 0,
        ("AM", h) => h,
        ("PM", 12) => 12,
        ("PM", h) => h + 12,
        _ => return None,
    };
    Some(hour * 3600 + minute * 60 + second)
}

fn note_time(note: &Value) -> Option<i64> {
    for key in ["datetimeposted", "created_utc", "createdutc"] {
        if let Some(ms) = text_of(note, key).and_then(|t| parse_datetime(&t)) {
            return Some(ms);
        }
    }
    let date = parse_datetime(&text_of(note, "dateposted")?)?;
    let clock = text_of(note, "timeposted").and_then(|t| clock_seconds(&t)).unwrap_or(0);
    Some(date + clock * 1000)
}

fn note_fields(note: &Value, client_id: Option<String>, task_id: Option<String>, id: &str, at: Option<i64>) -> Value {
    let content = text_of(note, "content").or_else(|| text_of(note, "note"));
    json!({
        "noteid": id,
        "clientid": client_id,
        "taskid": task_id,
        "content": content,
        "dateposted": at.map(rfc3339),
    })
}

pub fn client_note(value: &Value) -> Option<Record> {
    let id = text_of(value, "noteid")?;
    let client_id = text_of(value, "clientid");
    let at = note_time(value);
    let fields = note_fields(value, client_id.clone(), None, &id, at);
    Some(record(id, at, client_id.map(|c| ("clients", c)), fields))
}

fn task_client_id(task: &Value) -> Option<String> {
    member(task, "client").and_then(|c| text_of(c, "clientid"))
}

fn task_notes(task: &Value) -> Vec<Value> {
    let notes = member(task, "notes").or_else(|| member(task, "tasknotes"));
    crate::envelope::list(notes)
}

pub fn task(value: &Value, updated_ms: Option<i64>) -> Option<Record> {
    let id = text_of(value, "taskid")?;
    let client_id = task_client_id(value);
    let updated = updated_ms.or_else(|| text_of(value, "lastupdateddatetimeutc").and_then(|t| parse_datetime(&t)));
    let notes: Vec<Value> = task_notes(value)
        .iter()
        .map(|n| json!({"noteid": string(n, "noteid"), "content": string(n, "content"), "dateposted": note_time(n).map(rfc3339)}))
        .collect();
    let substatus = member(value, "substatus").map_or(Value::Null, |s| string(s, "substatus"));
    let fields = json!({
        "taskid": id,
        "clientid": client_id,
        "taskname": string(value, "taskname"),
        "description": string(value, "description"),
        "status": string(value, "status"),
        "substatus": substatus,
        "duedate": string(value, "duedate"),
        "notes": notes,
    });
    Some(record(id, updated, client_id.map(|c| ("clients", c)), fields))
}

/// Each note of a task, as a `tasknotes` record whose parent is the task.
pub fn notes_of_task(task: &Value) -> Vec<Record> {
    let Some(task_id) = text_of(task, "taskid") else {
        return Vec::new();
    };
    let client_id = task_client_id(task);
    task_notes(task)
        .iter()
        .filter_map(|note| {
            let id = text_of(note, "noteid")?;
            let at = note_time(note);
            let fields = note_fields(note, client_id.clone(), Some(task_id.clone()), &id, at);
            Some(record(id, at, Some(("tasks", task_id.clone())), fields))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_notes_carry_their_task_client_and_posted_time() {
        let task = json!({"taskid": "T1", "client": {"clientid": "C1"}, "taskname": "Fix tap", "status": "notstarted",
            "substatus": {"substatusid": "", "substatus": ""},
            "notes": {"note": [{"noteid": "N1", "content": "Gate code 1234", "dateposted": "2024/05/13", "timeposted": "May 13, 2024 2:56:20 PM"}]}});
        let notes = notes_of_task(&task);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].fields["taskid"], "T1");
        assert_eq!(notes[0].fields["clientid"], "C1");
        assert_eq!(notes[0].updated_at.as_deref(), Some("2024-05-13T14:56:20.000Z"));
        assert_eq!(notes[0].parent.as_ref().map(|p| p.stream.as_str()), Some("tasks"));
        let record = super::task(&task, None).expect("task");
        assert_eq!(record.fields["notes"][0]["content"], "Gate code 1234");
        assert_eq!(record.fields["substatus"], Value::Null);
    }

    #[test]
    fn archived_clients_are_flagged_and_addresses_joined() {
        let client = json!({"clientid": "C1", "clientname": "Acme", "archived": "TRUE",
            "address": {"addressline1": "1 George St", "suburb": "Sydney", "state": "NSW", "postcode": "2000"}});
        let record = super::client(&client, Some(0)).expect("client");
        assert_eq!(record.fields["status"], "archived");
        assert_eq!(record.fields["address"], "1 George St, Sydney, NSW, 2000");
        assert!(super::client(&json!({"clientname": "no id"}), None).is_none());
    }
}
