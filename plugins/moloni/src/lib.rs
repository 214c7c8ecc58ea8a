//! The Moloni plugin: translation between Moloni's API (shared/reference/moloni/NOTES.md) and
//! Tether records.
//!
//! This build describes the connector (config, streams, actions); its reads and writes are not
//! implemented yet and answer with a `fatal` error saying so.

use tether_abi::{FieldKind as K, TriggerKind as T, *};

pub struct Moloni;

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
    ]);
    fields
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
            ],
            streams: vec![
                StreamDef::new(
                    "customers",
                    "customers created or changed (getModifiedSince; getAll for backfill)",
                    &feed,
                )
                .fields(customer_fields()),
                StreamDef::new("invoices", "invoices created or changed", &feed).fields(document_fields()),
                StreamDef::new("documents", "documents of every type created or changed", &feed)
                    .fields(document_fields()),
            ],
            actions: vec![
                ActionDef::new("customer.insert", "create a customer").fields(customer_fields()),
                ActionDef::new("customer.update", "update a customer")
                    .fields(customer_fields())
                    .on_existing(),
            ],
        }
    }

    fn open(_host: Host, _request: OpenRequest) -> Result<Self, ConnectorError> {
        Ok(Moloni)
    }
}

impl Connector for Moloni {
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
        "the moloni plugin {} cannot {call} yet",
        env!("CARGO_PKG_VERSION")
    ))
}

export_plugin!(Moloni);
