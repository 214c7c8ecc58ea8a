//! The Moloni plugin: translation between Moloni's classic API (shared/reference/moloni/NOTES.md)
//! and Tether records. All I/O goes through the host: no HTTP client, retry loop or clock here.
//!
//! - `customers`: the change feed is `customers/getModifiedSince` (customers carry no modification
//!   time, so each walk re-reads from when the previous one began, minus `overlap_seconds`, and the
//!   event id tells a change from a re-read); a window read (backfill) lists every customer with
//!   `customers/getAll`, 50 at a time, whatever the window, since customers have no dates to
//!   window by: the queue's event ids absorb the repeats of later windows.
//! - `invoices`, `documents`: `<entity>/getModifiedSince`, continued from the newest
//!   `lastmodified` seen; windows keep the rows modified inside them. `invoices` leaves drafts out
//!   and keeps voided invoices, marked `cancelled`.
//! - `customer.insert`, `customer.update`: the full record, as Moloni requires on both.

pub mod client;
pub mod config;
pub mod error;
pub mod records;
pub mod time;
mod write;

use serde_json::{json, Value};
use tether_abi::{FieldKind as K, TriggerKind as T, *};

use client::Client;
use config::MoloniConfig;
use error::MoloniError;
use records::{Cursor, Origin, Stream};

/// Moloni's page cap: `qty` above 50 is answered with 50.
pub const MAX_PAGE: u32 = 50;

pub struct Moloni {
    client: Client,
}

fn customer_fields() -> Vec<FieldDef> {
    let text = [
        "number",
        "name",
        "vat",
        "address",
        "city",
        "zip_code",
        "website",
        "fax",
        "contact_name",
        "contact_phone",
        "notes",
    ];
    let mut fields: Vec<FieldDef> = text.iter().map(|n| FieldDef::new(n, K::String)).collect();
    fields.extend([
        FieldDef::new("customer_id", K::Number),
        FieldDef::new("email", K::Email),
        FieldDef::new("contact_email", K::Email),
        FieldDef::new("phone", K::Phone),
        FieldDef::new("country_id", K::Number),
        FieldDef::new("language_id", K::Number),
        FieldDef::new("salesman_id", K::Number),
        FieldDef::new("country", K::Object),
        FieldDef::new("salesman", K::Object),
        FieldDef::new("maturity_date_id", K::Number),
        FieldDef::new("payment_method_id", K::Number),
        FieldDef::new("delivery_method_id", K::Number),
        FieldDef::new("discount", K::Number),
        FieldDef::new("credit_limit", K::Number),
        FieldDef::new("field_notes", K::String),
    ]);
    fields
}

fn event_fields() -> [FieldDef; 2] {
    [
        FieldDef::new("eventType", K::String),
        FieldDef::new("eventId", K::String),
    ]
}

fn document_fields() -> Vec<FieldDef> {
    vec![
        FieldDef::new("document_id", K::Number),
        FieldDef::new("document_type_id", K::Number),
        FieldDef::new("customer_id", K::Number),
        FieldDef::new("document_set_name", K::String),
        FieldDef::new("number", K::Number),
        FieldDef::new("date", K::DateTime),
        FieldDef::new("expiration_date", K::DateTime),
        FieldDef::new("net_value", K::Number),
        FieldDef::new("reconciled_value", K::Number),
        FieldDef::new("status", K::Number),
        FieldDef::new("entity_name", K::String),
        FieldDef::new("entity_vat", K::String),
        FieldDef::new("lastmodified", K::DateTime),
        FieldDef::new("document_set_id", K::Number),
        FieldDef::new("gross_value", K::Number),
        FieldDef::new("taxes_value", K::Number),
        FieldDef::new("entity_number", K::String),
        FieldDef::new("document_type", K::Object),
        FieldDef::new("reference", K::String),
        FieldDef::new("total_text", K::String),
        FieldDef::new("currency", K::String),
        FieldDef::new("document_type_code", K::String),
        FieldDef::new("issue_date", K::Date),
        FieldDef::new("due_date", K::Date),
        FieldDef::new("cancelled", K::Bool),
    ]
}

impl Plugin for Moloni {
    fn manifest() -> Manifest {
        let feed = [T::Poll, T::Backfill];
        Manifest {
            name: "moloni".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Moloni invoicing (Portugal, Spain): customers, invoices and documents".into(),
            config: vec![
                ConfigKey::optional("base_url", "API base URL").default_value("https://api.moloni.pt/v1"),
                ConfigKey::required("client_id", "developer id"),
                ConfigKey::required("client_secret", "developer client secret").secret(),
                ConfigKey::optional("username", "account e-mail, for the password grant"),
                ConfigKey::optional("password", "account password, for the password grant").secret(),
                ConfigKey::required("company_id", "the company every call addresses"),
                ConfigKey::optional("authorization_code", "a code from the authorize step, exchanged once").secret(),
                ConfigKey::optional("redirect_uri", "the redirect URI the authorization code was issued for"),
                ConfigKey::optional(
                    "default_payment_method_id",
                    "payment_method_id for new customers without one",
                )
                .default_value(0),
                ConfigKey::optional(
                    "default_maturity_date_id",
                    "maturity_date_id for new customers without one",
                )
                .default_value(0),
                ConfigKey::optional("currency", "the company currency, shown with document totals")
                    .default_value("EUR"),
                ConfigKey::optional("overlap_seconds", "how far back each customers poll re-reads").default_value(60),
            ],
            streams: vec![
                StreamDef::new(
                    "customers",
                    "customers created or changed (getModifiedSince; getAll for backfill)",
                    &feed,
                )
                .fields(customer_fields())
                .fields(event_fields()),
                StreamDef::new(
                    "invoices",
                    "issued invoices created or changed, voided ones included (`cancelled`); drafts are not read",
                    &feed,
                )
                .fields(document_fields())
                .fields(event_fields()),
                StreamDef::new("documents", "documents of every type created or changed", &feed)
                    .fields(document_fields())
                    .fields(event_fields()),
            ],
            actions: vec![
                ActionDef::new("customer.insert", "create a customer").fields(customer_fields()),
                ActionDef::new("customer.update", "update a customer")
                    .fields(customer_fields())
                    .on_existing(),
            ],
        }
    }

    fn open(host: Host, request: OpenRequest) -> Result<Self, ConnectorError> {
        let config = MoloniConfig::from_fields(&request.config)?;
        Ok(Moloni {
            client: Client::new(host, config),
        })
    }
}

fn page_size(limit: Option<u32>) -> u32 {
    limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE)
}

fn rows(value: Value, what: &str) -> Result<Vec<Value>, MoloniError> {
    match value {
        Value::Array(rows) => Ok(rows),
        other => Err(MoloniError::Decode(format!(
            "{what} answered {other} instead of a list"
        ))),
    }
}

fn window_bound(text: &str, name: &str) -> Result<i64, MoloniError> {
    time::parse_ms(text).ok_or_else(|| MoloniError::Input(format!("window {name} `{text}` is not a date")))
}

impl Moloni {
    fn currency(&self) -> &str {
        &self.client.config.currency
    }

    /// One page of a `getModifiedSince` walk.
    fn read_feed(&self, stream: Stream, cursor: Option<&str>, limit: Option<u32>) -> Result<Page, MoloniError> {
        let mut cursor = Cursor::parse(cursor)?;
        if cursor.offset == 0 && stream == Stream::Customers {
            // Nothing in a customer says when it changed: the next walk starts where this one began.
            cursor.next_since_ms = Some(self.client.now_ms() - self.client.config.overlap_ms);
        }
        let qty = page_size(limit);
        let body = json!({"lastmodified": time::moloni(cursor.since_ms), "qty": qty, "offset": cursor.offset});
        let path = format!("{}/getModifiedSince", stream.name());
        let found = rows(self.client.call(&path, body, true)?, &path)?;
        let read = found.len() as u32;
        let full = read >= qty;
        let mut records = Vec::with_capacity(found.len());
        for row in found {
            if stream != Stream::Customers {
                let modified = row.get("lastmodified").and_then(Value::as_str).and_then(time::parse_ms);
                if let Some(modified) = modified {
                    cursor.next_since_ms = Some(cursor.next_since_ms.map_or(modified, |m| m.max(modified)));
                }
            }
            if !stream.keeps(&row) {
                continue;
            }
            records.push(records::record(
                stream,
                row,
                Origin::Feed {
                    since_ms: cursor.since_ms,
                },
                self.currency(),
            )?);
        }
        let next = if full {
            Cursor {
                offset: cursor.offset + read,
                ..cursor.clone()
            }
        } else {
            Cursor {
                since_ms: cursor.next_since_ms.unwrap_or(cursor.since_ms),
                offset: 0,
                next_since_ms: None,
            }
        };
        Ok(Page {
            records,
            next: Some(next.encode()),
            has_more: full,
        })
    }

    /// One page of history: every customer (`getAll`), or the documents modified in the window.
    fn read_window(
        &self,
        stream: Stream,
        (since, until, page): (&str, &str, Option<&str>),
        limit: Option<u32>,
    ) -> Result<Page, MoloniError> {
        let since_ms = window_bound(since, "start")?;
        let until_ms = window_bound(until, "end")?;
        let mut offset: u32 = match page {
            None => 0,
            Some(p) => p
                .parse()
                .map_err(|_| MoloniError::Input(format!("`{p}` is not a Moloni page token")))?,
        };
        let qty = page_size(limit);
        loop {
            let (path, body) = match stream {
                Stream::Customers => ("customers/getAll".to_owned(), json!({"qty": qty, "offset": offset})),
                _ => (
                    format!("{}/getModifiedSince", stream.name()),
                    json!({"lastmodified": time::moloni(since_ms), "qty": qty, "offset": offset}),
                ),
            };
            let found = rows(self.client.call(&path, body, true)?, &path)?;
            let full = found.len() as u32 >= qty;
            offset += found.len() as u32;
            let mut records = Vec::new();
            for row in found {
                if !stream.keeps(&row) {
                    continue;
                }
                if stream != Stream::Customers {
                    // getModifiedSince has no upper bound: rows changed after the window belong to a later one.
                    let modified = row.get("lastmodified").and_then(Value::as_str).and_then(time::parse_ms);
                    if !modified.is_some_and(|m| m >= since_ms && m < until_ms) {
                        continue;
                    }
                }
                records.push(records::record(stream, row, Origin::Listing, self.currency())?);
            }
            // A page whose rows all fall outside the window would read as the end; go on to the next.
            if !records.is_empty() || !full {
                return Ok(Page {
                    records,
                    next: full.then(|| offset.to_string()),
                    has_more: full,
                });
            }
        }
    }

    fn read_inner(&self, request: ReadRequest) -> Result<Page, MoloniError> {
        let stream = Stream::parse(&request.stream)?;
        match &request.position {
            ReadPosition::Cursor { cursor } => self.read_feed(stream, cursor.as_deref(), request.limit),
            ReadPosition::Window { since, until, page } => {
                self.read_window(stream, (since, until, page.as_deref()), request.limit)
            }
        }
    }

    fn check_inner(&self) -> Result<CheckReport, MoloniError> {
        let company = self.client.call("companies/getOne", json!({}), true)?;
        let name = company.get("name").and_then(Value::as_str).unwrap_or("?");
        let customers = self.client.call("customers/count", json!({}), true)?;
        let count = match customers.get("count") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => "?".into(),
        };
        Ok(CheckReport {
            account: Some(format!("{name} (company {})", self.client.config.company_id)),
            notes: vec![format!("{count} customers")],
        })
    }
}

impl Connector for Moloni {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        Ok(self.check_inner()?)
    }

    fn read(&self, request: ReadRequest) -> Result<Page, ConnectorError> {
        Ok(self.read_inner(request)?)
    }

    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError> {
        Ok(write::write(&self.client, request)?)
    }
}

#[cfg(feature = "export")]
export_plugin!(Moloni);
