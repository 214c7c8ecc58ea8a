//! Moloni objects as Tether records, and the cursor kept between reads.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tether_abi::{EventInfo, Fields, Record, RecordRef};

use crate::error::MoloniError;
use crate::time;

/// `status` of a draft document (NOTES.md §1.6).
pub const STATUS_DRAFT: u64 = 0;
/// `status` of a voided ("anulado") document. ⚠ The reference says documents can be voided
/// through the API since 2024-02 but not how a voided document reads; this is the one place
/// that assumes a third status value, and the emulator models the same.
pub const STATUS_VOIDED: u64 = 2;

/// A stream of the connector and the Moloni entity behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Customers,
    Invoices,
    Documents,
}

impl Stream {
    pub fn parse(name: &str) -> Result<Self, MoloniError> {
        match name {
            "customers" => Ok(Stream::Customers),
            "invoices" => Ok(Stream::Invoices),
            "documents" => Ok(Stream::Documents),
            other => Err(MoloniError::Input(format!(
                "unknown stream `{other}` (customers, invoices, documents)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Customers => "customers",
            Stream::Invoices => "invoices",
            Stream::Documents => "documents",
        }
    }

    /// Whether a listed row belongs to the stream: `invoices` are the issued ones, closed or
    /// voided later, never a draft (`status` 0), which is not an invoice yet and may still change
    /// or vanish. Filtered here, not with the API's `status` parameter, which takes one value.
    pub fn keeps(self, row: &Value) -> bool {
        self != Stream::Invoices || row.get("status").and_then(Value::as_u64) != Some(STATUS_DRAFT)
    }

    fn id_field(self) -> &'static str {
        match self {
            Stream::Customers => "customer_id",
            Stream::Invoices | Stream::Documents => "document_id",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Stream::Customers => "customer",
            Stream::Invoices => "invoice",
            Stream::Documents => "document",
        }
    }
}

/// Where a change-feed read continues: a `getModifiedSince` walk from `since_ms`, `offset` rows
/// in, and the `since` the walk after this one starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub since_ms: i64,
    #[serde(default)]
    pub offset: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_since_ms: Option<i64>,
}

impl Cursor {
    pub fn parse(text: Option<&str>) -> Result<Self, MoloniError> {
        match text {
            None => Ok(Cursor::default()),
            Some(t) => serde_json::from_str(t).map_err(|_| MoloniError::Input(format!("`{t}` is not a Moloni cursor"))),
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A short, stable digest of a record's content: customers carry no modification time, so a
/// change is told apart from a re-read by what it says.
pub fn content_hash(fields: &Fields) -> String {
    // serde_json's map is ordered by key, so the text is canonical.
    let digest = Sha256::digest(Value::Object(fields.clone()).to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// `1234.5` → `1,234.50`: the form the GHL notes show amounts in.
pub fn amount_text(value: f64) -> String {
    let cents = (value.abs() * 100.0).round() as u64;
    let units = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && cents > 0 { "-" } else { "" };
    format!("{sign}{grouped}.{:02}", cents % 100)
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// How an event came to be read: from the change feed, or from a full listing (backfill).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `getModifiedSince` from this `since`.
    Feed {
        since_ms: i64,
    },
    Listing,
}

/// One Moloni object as a record with its event (`eventType`, `eventId`, also in the fields so
/// mappings can read them).
pub fn record(stream: Stream, value: Value, origin: Origin, currency: &str) -> Result<Record, MoloniError> {
    let Value::Object(mut fields) = value else {
        return Err(MoloniError::Decode(format!(
            "a {} that is not an object",
            stream.kind()
        )));
    };
    let id = id_text(fields.get(stream.id_field()))
        .ok_or_else(|| MoloniError::Decode(format!("a {} without `{}`", stream.kind(), stream.id_field())))?;
    let (updated_at, parent, event_type, event_id) = match stream {
        Stream::Customers => {
            let hash = content_hash(&fields);
            let (kind, event_id) = match origin {
                // The walk's `since` keeps a change back to an earlier state from matching that
                // state's old event.
                Origin::Feed { since_ms } => ("modified", format!("customers:{id}:{since_ms}:{hash}")),
                Origin::Listing => ("listed", format!("customers:{id}:{hash}")),
            };
            (None, None, format!("customer.{kind}"), event_id)
        }
        Stream::Invoices | Stream::Documents => {
            let modified = fields.get("lastmodified").and_then(Value::as_str).map(str::to_owned);
            let updated_at = modified.as_deref().and_then(time::parse_ms).map(time::rfc3339);
            let customer = id_text(fields.get("customer_id")).filter(|c| c != "0");
            // `lastmodified` is to the second: two changes within one second (issued, then paid
            // or voided) differ by content.
            let hash = content_hash(&fields);
            let version = modified.map_or_else(|| hash.clone(), |m| format!("{m}:{hash}"));
            let kind = if matches!(origin, Origin::Listing) {
                "listed"
            } else {
                "modified"
            };
            annotate_document(&mut fields, currency);
            (
                updated_at,
                customer.map(|id| RecordRef {
                    stream: "customers".into(),
                    id,
                }),
                format!("{}.{kind}", stream.kind()),
                format!("{}:{id}:{version}", stream.name()),
            )
        }
    };
    fields.insert("eventType".into(), json!(event_type));
    fields.insert("eventId".into(), json!(event_id));
    Ok(Record {
        id,
        updated_at,
        deleted: false,
        parent,
        event: Some(EventInfo {
            id: event_id,
            kind: event_type,
        }),
        fields,
    })
}

/// Derived fields a note needs and the mapping language cannot build: `reference` ("FT 2026/123"),
/// `total_text` ("1,234.50"), `currency`, `document_type_code` ("FT"), the calendar days
/// `issue_date` and `due_date` (`YYYY-MM-DD`), and `cancelled` (voided in Moloni).
fn annotate_document(fields: &mut Fields, currency: &str) {
    let code = fields
        .get("document_type")
        .and_then(|t| t.get("saft_code"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let set = fields
        .get("document_set_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let number = id_text(fields.get("number")).unwrap_or_default();
    let reference = match (code.is_empty(), set.is_empty()) {
        (false, false) => format!("{code} {set}/{number}"),
        (true, false) => format!("{set}/{number}"),
        _ => number,
    };
    // Moloni's dates are local midnights with an offset; the calendar day is what a note or a due
    // date means.
    for (from, to) in [("date", "issue_date"), ("expiration_date", "due_date")] {
        let day = fields
            .get(from)
            .and_then(Value::as_str)
            .and_then(|d| d.get(0..10))
            .filter(|d| time::parse_ms(d).is_some())
            .map(str::to_owned);
        fields.insert(to.into(), day.map_or(Value::Null, Value::String));
    }
    let total = number_or_zero(fields.get("net_value"));
    fields.insert("reference".into(), json!(reference));
    fields.insert("total_text".into(), json!(amount_text(total)));
    fields.insert("currency".into(), json!(currency));
    fields.insert("document_type_code".into(), json!(code));
    let cancelled = fields.get("status").and_then(Value::as_u64) == Some(STATUS_VOIDED);
    fields.insert("cancelled".into(), json!(cancelled));
}

fn number_or_zero(value: Option<&Value>) -> f64 {
    number(value).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMERS: &str = include_str!("../tests/fixtures/customers-getAll.json");
    const INVOICES: &str = include_str!("../tests/fixtures/invoices-getAll.json");

    #[test]
    fn amounts_are_grouped_with_two_decimals() {
        assert_eq!(amount_text(1234.5), "1,234.50");
        assert_eq!(amount_text(65.93), "65.93");
        assert_eq!(amount_text(1_000_000.0), "1,000,000.00");
        assert_eq!(amount_text(-12.345), "-12.35");
    }

    #[test]
    fn recorded_customers_become_records_with_events() {
        let list: Vec<Value> = serde_json::from_str(CUSTOMERS).expect("fixture parses");
        let first = list.into_iter().next().expect("one customer");
        let record = record(Stream::Customers, first.clone(), Origin::Feed { since_ms: 5 }, "EUR").expect("record");
        assert_eq!(record.id, "89407140");
        let event = record.event.expect("event");
        assert_eq!(event.kind, "customer.modified");
        assert!(event.id.starts_with("customers:89407140:5:"), "{}", event.id);
        assert_eq!(record.fields.get("eventId"), Some(&json!(event.id)));
        assert_eq!(
            record.fields.get("country").and_then(|c| c.get("iso_3166_1")),
            Some(&json!("pt"))
        );
        // The same content read again is the same event; a change is a new one.
        let again =
            super::record(Stream::Customers, first.clone(), Origin::Feed { since_ms: 5 }, "EUR").expect("record");
        assert_eq!(again.event.map(|e| e.id), Some(event.id.clone()));
        let mut changed = first;
        changed["phone"] = json!("912 000 000");
        let changed = super::record(Stream::Customers, changed, Origin::Feed { since_ms: 5 }, "EUR").expect("record");
        assert_ne!(changed.event.map(|e| e.id), Some(event.id));
    }

    #[test]
    fn recorded_invoices_carry_their_customer_reference_and_total() {
        let list: Vec<Value> = serde_json::from_str(INVOICES).expect("fixture parses");
        let first = list.into_iter().next().expect("one invoice");
        let record = record(Stream::Invoices, first, Origin::Feed { since_ms: 0 }, "EUR").expect("record");
        assert_eq!(record.id, "878748865");
        assert_eq!(record.updated_at.as_deref(), Some("2025-09-12T14:29:55Z"));
        assert_eq!(
            record.parent,
            Some(RecordRef {
                stream: "customers".into(),
                id: "89406325".into()
            })
        );
        assert_eq!(record.fields.get("reference"), Some(&json!("FT 2025/3097")));
        assert_eq!(record.fields.get("total_text"), Some(&json!("65.93")));
        assert_eq!(record.fields.get("due_date"), Some(&json!("2025-10-12")));
        assert_eq!(record.fields.get("issue_date"), Some(&json!("2025-09-12")));
        assert_eq!(record.fields.get("cancelled"), Some(&json!(false)));
        let event = record.event.expect("event");
        assert_eq!(event.kind, "invoice.modified");
        assert!(
            event.id.starts_with("invoices:878748865:2025-09-12T15:29:55+0100:"),
            "{}",
            event.id
        );
        assert!(super::record(Stream::Invoices, json!({"number": 1}), Origin::Listing, "EUR").is_err());
        assert!(super::record(Stream::Customers, json!("x"), Origin::Listing, "EUR").is_err());
    }

    #[test]
    fn a_voided_invoice_is_read_as_cancelled_and_a_change_within_the_second_is_a_new_event() {
        let list: Vec<Value> = serde_json::from_str(INVOICES).expect("fixture parses");
        let issued = list.into_iter().next().expect("one invoice");
        let read = |row: Value| record(Stream::Invoices, row, Origin::Feed { since_ms: 0 }, "EUR").expect("record");
        let before = read(issued.clone());
        let mut paid = issued.clone();
        paid["reconciled_value"] = paid["net_value"].clone();
        let mut voided = issued.clone();
        voided["status"] = json!(STATUS_VOIDED);
        let (paid, voided) = (read(paid), read(voided));
        assert_eq!(voided.fields.get("cancelled"), Some(&json!(true)));
        assert_eq!(paid.fields.get("cancelled"), Some(&json!(false)));
        let id = |r: &Record| r.event.as_ref().map(|e| e.id.clone());
        // Same `lastmodified`, other content: each is an event of its own; the same row is not.
        assert_ne!(id(&before), id(&paid));
        assert_ne!(id(&before), id(&voided));
        assert_ne!(id(&paid), id(&voided));
        assert_eq!(id(&before), id(&read(issued.clone())));
        let mut draft = issued;
        draft["status"] = json!(STATUS_DRAFT);
        assert!(!Stream::Invoices.keeps(&draft));
        assert!(Stream::Documents.keeps(&draft));
        draft["status"] = json!(STATUS_VOIDED);
        assert!(Stream::Invoices.keeps(&draft));
    }
}
