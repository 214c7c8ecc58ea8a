//! `customer.insert` and `customer.update`: inputs shaped into the full customer Moloni requires.

use serde_json::{json, Value};
use tether_abi::{Fields, WriteRequest, WriteResult};

use crate::client::Client;
use crate::error::MoloniError;

/// The fields `customers/insert` and `customers/update` take besides the ids.
const WRITABLE: &[&str] = &[
    "vat",
    "number",
    "name",
    "language_id",
    "address",
    "zip_code",
    "city",
    "country_id",
    "email",
    "website",
    "phone",
    "fax",
    "contact_name",
    "contact_email",
    "contact_phone",
    "notes",
    "salesman_id",
    "price_class_id",
    "maturity_date_id",
    "payment_day",
    "discount",
    "credit_limit",
    "copies",
    "payment_method_id",
    "delivery_method_id",
    "field_notes",
];

/// The NIF Moloni and its official plugins use for a customer without a tax number.
pub const FINAL_CONSUMER_VAT: &str = "999999990";
const PORTUGAL: u64 = 1;

fn writable(fields: &Fields) -> Fields {
    let mut out: Fields = fields
        .iter()
        .filter(|(k, v)| WRITABLE.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A read record names its country as an object; take its id when no `country_id` is given.
    if !out.contains_key("country_id") {
        if let Some(id) = fields.get("country").and_then(|c| c.get("country_id")) {
            out.insert("country_id".into(), id.clone());
        }
    }
    out
}

fn blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn as_id(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The defaults Moloni's required fields get when a flow from GHL has nothing for them.
fn complete(client: &Client, mut fields: Fields) -> Result<Fields, MoloniError> {
    if blank(fields.get("name")) {
        return Err(MoloniError::Input("a Moloni customer needs a `name`".into()));
    }
    if blank(fields.get("vat")) {
        fields.insert("vat".into(), json!(FINAL_CONSUMER_VAT));
    }
    let country = as_id(fields.get("country_id")).unwrap_or(PORTUGAL);
    fields.insert("country_id".into(), json!(country));
    if blank(fields.get("language_id")) {
        fields.insert("language_id".into(), json!(if country == PORTUGAL { 1 } else { 2 }));
    }
    for key in ["address", "city", "zip_code"] {
        if blank(fields.get(key)) {
            fields.insert(key.into(), json!(""));
        }
    }
    let config = &client.config;
    if blank(fields.get("maturity_date_id")) {
        fields.insert("maturity_date_id".into(), json!(config.default_maturity_date_id));
    }
    if blank(fields.get("payment_method_id")) {
        fields.insert("payment_method_id".into(), json!(config.default_payment_method_id));
    }
    match fields.get("number") {
        Some(Value::Number(n)) => {
            let text = n.to_string();
            fields.insert("number".into(), json!(text));
        }
        value if blank(value) => {
            let next = client.call("customers/getNextNumber", json!({}), true)?;
            let number = match next.get("number") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(MoloniError::Decode(format!("getNextNumber answered {next}"))),
            };
            fields.insert("number".into(), json!(number));
        }
        _ => {}
    }
    Ok(fields)
}

fn written(response: Value, what: &str) -> Result<WriteResult, MoloniError> {
    let valid = response.get("valid").and_then(Value::as_i64);
    if valid != Some(1) {
        return Err(MoloniError::Refused(format!("{what} answered {response}")));
    }
    let id = match response.get("customer_id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(MoloniError::Decode(format!(
                "{what} answered no customer_id: {response}"
            )))
        }
    };
    // Moloni answers `{valid, customer_id}`, not the customer: nothing to verify the write by,
    // and an empty `returned` says so (the engine gives no verdict).
    Ok(WriteResult {
        target_id: Some(id),
        returned: Fields::new(),
    })
}

fn insert(client: &Client, input: &Fields) -> Result<WriteResult, MoloniError> {
    let fields = complete(client, writable(input))?;
    // Not repeatable: a second insert after a lost answer would be a second customer.
    let response = client.call("customers/insert", Value::Object(fields), false)?;
    written(response, "customers/insert")
}

fn update(client: &Client, target: &str, input: &Fields) -> Result<WriteResult, MoloniError> {
    let customer_id: u64 = target
        .parse()
        .map_err(|_| MoloniError::Input(format!("`{target}` is not a Moloni customer id")))?;
    // Moloni requires the whole customer on update: start from what it holds now.
    let current = client.call("customers/getOne", json!({"customer_id": customer_id}), true)?;
    if current.get("customer_id").is_none_or(Value::is_null) {
        return Err(MoloniError::NotFound(format!("customer {customer_id}")));
    }
    let mut fields = match current {
        Value::Object(o) => writable(&o),
        _ => Fields::new(),
    };
    for (key, value) in writable(input) {
        fields.insert(key, value);
    }
    let mut fields = complete(client, fields)?;
    fields.insert("customer_id".into(), json!(customer_id));
    let response = client.call("customers/update", Value::Object(fields), true)?;
    written(response, "customers/update")
}

pub fn write(client: &Client, request: WriteRequest) -> Result<WriteResult, MoloniError> {
    match request.action.as_str() {
        "customer.insert" => insert(client, &request.input),
        "customer.update" => {
            let target = request
                .target_id
                .as_deref()
                .ok_or_else(|| MoloniError::Input("customer.update needs the customer id as target id".into()))?;
            update(client, target, &request.input)
        }
        other => Err(MoloniError::Input(format!(
            "unknown action `{other}` (customer.insert, customer.update)"
        ))),
    }
}
