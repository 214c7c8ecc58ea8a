//! The emulated company: customers, documents and the settings lists their ids point into, and
//! the validation Moloni applies to writes (NOTES §1.3, §1.5, §1.7).

use super::seed::valid_nif;
use super::time::lisbon;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const PORTUGAL: u64 = 1;
pub const SPAIN: u64 = 70;
/// (country_id, iso_3166_1, name)
pub const COUNTRIES: &[(u64, &str, &str)] = &[
    (1, "pt", "Portugal"),
    (70, "es", "Espanha"),
    (2, "gb", "Reino Unido"),
    (3, "fr", "França"),
];
/// (language_id, code, name)
pub const LANGUAGES: &[(u64, &str, &str)] = &[(1, "pt", "Português"), (2, "en", "English"), (3, "es", "Español")];
/// The standard VAT rate in mainland Portugal.
pub const VAT_RATE: f64 = 23.0;

/// A document's `status`: a draft (NOTES.md §1.6: 0 draft, 1 closed).
pub const STATUS_DRAFT: u64 = 0;
/// Closed: issued, final.
pub const STATUS_CLOSED: u64 = 1;
/// Voided ("anulado"). ⚠ NOTES.md §1.6 says documents can be voided through the API since 2024-02
/// but neither the call nor how a voided document reads; the emulator keeps the document and its
/// values, sets this third `status` and bumps `lastmodified`, so the change feed shows it.
pub const STATUS_VOIDED: u64 = 2;

/// Validation codes as Moloni numbers them: 1 required, 2 invalid value, 3 wrong type, 4 already
/// exists (NOTES §1.7; 4 inferred from the official plugin's retry on `"4 number"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub code: u32,
    pub field: String,
    pub description: String,
}

impl Invalid {
    fn new(code: u32, field: &str, description: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            description: description.into(),
        }
    }
    pub fn required(field: &str) -> Self {
        Self::new(1, field, format!("Field '{field}' is required"))
    }
    pub fn bad_value(field: &str, why: &str) -> Self {
        Self::new(2, field, format!("Field '{field}' {why}"))
    }
    pub fn integer(field: &str) -> Self {
        Self::new(3, field, format!("Field '{field}' must be integer, greater than 0"))
    }
    pub fn exists(field: &str) -> Self {
        Self::new(4, field, format!("Field '{field}' already exists"))
    }
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: u64,
    /// The writable fields, normalised (ids as numbers, `number` as text).
    pub fields: Map<String, Value>,
    /// Customers have no `lastmodified` of their own; getModifiedSince filters on this.
    pub modified_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub id: u64,
    pub customer_id: u64,
    pub document_type_id: u64,
    /// Everything but `lastmodified`.
    pub fields: Map<String, Value>,
    pub modified_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub company_id: u64,
    pub company_name: String,
    pub company_vat: String,
    pub customers: BTreeMap<u64, Customer>,
    pub documents: BTreeMap<u64, Document>,
    pub next_customer_id: u64,
    pub next_customer_number: u64,
    pub next_document_id: u64,
    pub next_invoice_number: u64,
    /// (salesman_id, number, name)
    pub salesmen: Vec<(u64, String, String)>,
    pub payment_methods: Vec<(u64, String)>,
    /// (maturity_date_id, name, days)
    pub maturity_dates: Vec<(u64, String, u64)>,
    pub delivery_methods: Vec<(u64, String)>,
    /// (document_set_id, name)
    pub document_set: (u64, String),
    pub vat_tax_id: u64,
}

pub fn id_of(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn float_of(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

const TEXT_FIELDS: &[&str] = &[
    "vat",
    "number",
    "name",
    "address",
    "zip_code",
    "city",
    "email",
    "website",
    "phone",
    "fax",
    "contact_name",
    "contact_email",
    "contact_phone",
    "notes",
    "field_notes",
];
const ID_FIELDS: &[&str] = &[
    "language_id",
    "country_id",
    "salesman_id",
    "price_class_id",
    "maturity_date_id",
    "payment_day",
    "payment_method_id",
    "delivery_method_id",
];
const REQUIRED: &[&str] = &[
    "vat",
    "number",
    "name",
    "language_id",
    "address",
    "city",
    "country_id",
    "maturity_date_id",
    "payment_method_id",
];

fn zip_ok(zip: &str) -> bool {
    let b = zip.as_bytes();
    b.len() == 8 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit())
}

fn email_ok(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !email.contains(' ')
        }
        None => false,
    }
}

impl Store {
    pub fn empty(company_id: u64, ids_from: u64) -> Self {
        Store {
            company_id,
            company_name: "Tether Demonstração, Lda.".into(),
            company_vat: "509999994".into(),
            customers: BTreeMap::new(),
            documents: BTreeMap::new(),
            next_customer_id: ids_from,
            next_customer_number: 1,
            next_document_id: ids_from * 10,
            next_invoice_number: 1,
            salesmen: vec![
                (ids_from / 600 + 1, "1".into(), "Rui Gonçalves".into()),
                (ids_from / 600 + 2, "2".into(), "Sílvia Araújo".into()),
            ],
            payment_methods: vec![
                (ids_from / 50 + 1, "Transferência bancária".into()),
                (ids_from / 50 + 2, "Numerário".into()),
                (ids_from / 50 + 3, "MB Way".into()),
            ],
            maturity_dates: vec![
                (ids_from / 60 + 1, "30 Dias".into(), 30),
                (ids_from / 60 + 2, "Pronto pagamento".into(), 0),
            ],
            delivery_methods: vec![(ids_from / 55 + 1, "CTT".into())],
            document_set: (ids_from / 110 + 1, "2026".into()),
            vat_tax_id: ids_from / 700 + 1,
        }
    }

    /// Normalises and checks a customer write. `existing` is the customer an update addresses.
    pub fn check_customer(
        &self,
        input: &Map<String, Value>,
        existing: Option<&Customer>,
    ) -> Result<Map<String, Value>, Vec<Invalid>> {
        let mut out = Map::new();
        let mut errors = Vec::new();
        for key in TEXT_FIELDS {
            if let Some(v) = input.get(*key).filter(|v| !v.is_null()) {
                match text_of(Some(v)) {
                    Some(t) => {
                        out.insert((*key).into(), json!(t.trim()));
                    }
                    None => errors.push(Invalid::bad_value(key, "must be text")),
                }
            }
        }
        for key in ID_FIELDS.iter().chain(["discount", "credit_limit"].iter()) {
            if let Some(v) = input.get(*key).filter(|v| !v.is_null()) {
                if *key == "discount" || *key == "credit_limit" {
                    match float_of(Some(v)) {
                        Some(f) => {
                            out.insert((*key).into(), json!(f));
                        }
                        None => errors.push(Invalid::bad_value(key, "must be numeric")),
                    }
                    continue;
                }
                match id_of(Some(v)) {
                    Some(n) => {
                        out.insert((*key).into(), json!(n));
                    }
                    None if v.as_str().is_some_and(|s| s.trim().is_empty()) => {
                        out.insert((*key).into(), json!(0));
                    }
                    None => errors.push(Invalid::integer(key)),
                }
            }
        }
        for key in REQUIRED {
            let missing = match out.get(*key) {
                None => true,
                Some(Value::String(s)) => s.is_empty() && matches!(*key, "vat" | "number" | "name"),
                _ => false,
            };
            if missing && !errors.iter().any(|e| e.field == *key) {
                errors.push(Invalid::required(key));
            }
        }
        let text = |k: &str| out.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let id = |k: &str| out.get(k).and_then(Value::as_u64).unwrap_or(0);
        let country = id("country_id");
        if out.contains_key("country_id") && !COUNTRIES.iter().any(|c| c.0 == country) {
            errors.push(Invalid::bad_value("country_id", "must be valid"));
        }
        if out.contains_key("language_id") && !LANGUAGES.iter().any(|l| l.0 == id("language_id")) {
            errors.push(Invalid::bad_value("language_id", "must be valid"));
        }
        if country == PORTUGAL {
            let vat = text("vat");
            if !vat.is_empty() && !valid_nif(&vat) {
                errors.push(Invalid::bad_value("vat", "must be a valid Portuguese NIF"));
            }
            let zip = text("zip_code");
            if !zip.is_empty() && !zip_ok(&zip) {
                errors.push(Invalid::bad_value("zip_code", "must have the format NNNN-NNN"));
            }
        }
        for key in ["email", "contact_email"] {
            let email = text(key);
            if !email.is_empty() && !email_ok(&email) {
                errors.push(Invalid::bad_value(key, "must be a valid e-mail address"));
            }
        }
        if text("number").chars().count() > 20 {
            errors.push(Invalid::bad_value("number", "must have at most 20 characters"));
        }
        let number = text("number");
        if !number.is_empty()
            && self.customers.values().any(|c| {
                Some(c.id) != existing.map(|e| e.id)
                    && c.fields.get("number").and_then(Value::as_str) == Some(number.as_str())
            })
        {
            errors.push(Invalid::exists("number"));
        }
        if out.contains_key("payment_method_id") && !self.payment_methods.iter().any(|p| p.0 == id("payment_method_id"))
        {
            errors.push(Invalid::bad_value("payment_method_id", "must be valid"));
        }
        let maturity = id("maturity_date_id");
        if maturity != 0 && !self.maturity_dates.iter().any(|m| m.0 == maturity) {
            errors.push(Invalid::bad_value("maturity_date_id", "must be valid"));
        }
        let salesman = id("salesman_id");
        if salesman != 0 && !self.salesmen.iter().any(|s| s.0 == salesman) {
            errors.push(Invalid::bad_value("salesman_id", "must be valid"));
        }
        let delivery = id("delivery_method_id");
        if delivery != 0 && !self.delivery_methods.iter().any(|d| d.0 == delivery) {
            errors.push(Invalid::bad_value("delivery_method_id", "must be valid"));
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    pub fn referenced(&self, customer_id: u64) -> bool {
        self.documents.values().any(|d| d.customer_id == customer_id)
    }

    /// The customer as the API returns it (the recorded shape, NOTES §1.5).
    pub fn render_customer(&self, c: &Customer) -> Value {
        let f = &c.fields;
        let s = |k: &str| f.get(k).cloned().unwrap_or_else(|| json!(""));
        let n = |k: &str| f.get(k).cloned().unwrap_or_else(|| json!(0));
        let id = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        let country = COUNTRIES.iter().find(|x| x.0 == id("country_id"));
        let language = LANGUAGES.iter().find(|x| x.0 == id("language_id"));
        let payment = self.payment_methods.iter().find(|x| x.0 == id("payment_method_id"));
        let delivery = self.delivery_methods.iter().find(|x| x.0 == id("delivery_method_id"));
        let maturity = self.maturity_dates.iter().find(|x| x.0 == id("maturity_date_id"));
        let salesman = self.salesmen.iter().find(|x| x.0 == id("salesman_id"));
        let mut out = Map::new();
        for key in ["email", "website", "fax"] {
            out.insert(key.into(), s(key));
        }
        out.insert("customer_id".into(), json!(c.id));
        out.insert("visibility_id".into(), json!(1));
        out.insert("salesman_id".into(), n("salesman_id"));
        for key in ["number", "name", "vat", "address", "city", "zip_code"] {
            out.insert(key.into(), s(key));
        }
        out.insert("country_id".into(), n("country_id"));
        for key in ["phone", "contact_name", "contact_email", "contact_phone", "notes"] {
            out.insert(key.into(), s(key));
        }
        for key in ["discount", "credit_limit"] {
            out.insert(key.into(), n(key));
        }
        out.insert("qty_copies_document".into(), Value::Null);
        out.insert("maturity_date_id".into(), n("maturity_date_id"));
        out.insert("payment_day".into(), n("payment_day"));
        out.insert("field_notes".into(), s("field_notes"));
        for key in [
            "language_id",
            "payment_method_id",
            "delivery_method_id",
            "price_class_id",
        ] {
            out.insert(key.into(), n(key));
        }
        for key in ["document_set_id", "geographic_zone_id", "print_document_notes"] {
            out.insert(key.into(), json!(0));
        }
        out.insert("exemption_reason".into(), json!(""));
        let nested = [
            ("country", country.map(|(id, iso, name)| json!({"iso_3166_1": iso, "country_id": id, "name": name}))),
            ("language", language.map(|(id, code, name)| json!({"language_id": id, "code": code, "name": name}))),
            (
                "maturity_date",
                maturity.map(|(id, name, days)| json!({"maturity_date_id": id, "name": name, "days": days, "associated_discount": 0})),
            ),
            ("payment_method", payment.map(|(id, name)| json!({"payment_method_id": id, "name": name}))),
            ("delivery_method", delivery.map(|(id, name)| json!({"delivery_method_id": id, "name": name}))),
            (
                "salesman",
                salesman.map(|(id, number, name)| json!({"salesman_id": id, "number": number, "name": name, "base_commission": 0})),
            ),
        ];
        for (key, value) in nested {
            out.insert(key.into(), value.unwrap_or(Value::Null));
        }
        out.insert("alternate_addresses".into(), json!([]));
        out.insert("associated_taxes".into(), json!([]));
        Value::Object(out)
    }

    pub fn render_document(&self, d: &Document) -> Value {
        let mut fields = d.fields.clone();
        fields.insert("lastmodified".into(), json!(lisbon(d.modified_ms)));
        Value::Object(fields)
    }

    /// An FT invoice from `lines` (`{name, qty, price, tax_id?}`), numbered in the series.
    pub fn new_invoice(
        &mut self,
        customer_id: u64,
        date_ms: i64,
        expiration_ms: i64,
        lines: &[Value],
        status: u64,
        now_ms: i64,
    ) -> Result<Document, Vec<Invalid>> {
        let Some(customer) = self.customers.get(&customer_id) else {
            return Err(vec![Invalid::bad_value("customer_id", "must be valid")]);
        };
        if lines.is_empty() {
            return Err(vec![Invalid::required("products")]);
        }
        let (mut gross, mut taxes) = (0.0, 0.0);
        for (i, line) in lines.iter().enumerate() {
            let qty = float_of(line.get("qty")).filter(|q| *q > 0.0);
            let price = float_of(line.get("price")).filter(|p| *p >= 0.0);
            let (Some(qty), Some(price)) = (qty, price) else {
                return Err(vec![Invalid::bad_value(
                    &format!("products[{i}]"),
                    "must have a positive qty and a price",
                )]);
            };
            let taxed = line
                .get("taxes")
                .and_then(Value::as_array)
                .map(|t| !t.is_empty())
                .unwrap_or_else(|| id_of(line.get("tax_id")).is_some());
            gross += qty * price;
            if taxed {
                taxes += qty * price * VAT_RATE / 100.0;
            }
        }
        let (gross, taxes) = (round2(gross), round2(taxes));
        let id = self.next_document_id;
        self.next_document_id += 7;
        let number = self.next_invoice_number;
        self.next_invoice_number += 1;
        let c = &customer.fields;
        let s = |k: &str| c.get(k).cloned().unwrap_or_else(|| json!(""));
        let country_id = c.get("country_id").and_then(Value::as_u64).unwrap_or(PORTUGAL);
        let country_name = COUNTRIES.iter().find(|x| x.0 == country_id).map_or("", |x| x.2);
        let (set_id, set_name) = self.document_set.clone();
        let head = json!({
            "terminal_id": 0, "lastmodifiedby": "Tether Sandbox", "document_id": id, "company_id": self.company_id,
            "document_type_id": 1, "customer_id": customer_id, "supplier_id": 0,
            "salesman_id": c.get("salesman_id").cloned().unwrap_or(json!(0)), "document_set_id": set_id,
            "document_set_name": set_name, "number": number, "date": lisbon(date_ms),
            "expiration_date": lisbon(expiration_ms), "maturity_date_days": null, "maturity_date_id": 0,
            "maturity_date_name": "", "your_reference": "", "our_reference": "", "entity_number": s("number"),
        });
        let entity = json!({
            "entity_name": s("name"), "entity_vat": s("vat"), "entity_address": s("address"), "entity_city": s("city"),
            "entity_zip_code": s("zip_code"), "entity_country": country_name, "entity_country_id": country_id,
            "financial_discount": 0, "gross_value": gross, "comercial_discount_value": 0, "financial_discount_value": 0,
            "taxes_value": taxes, "deduction_value": 0, "net_value": round2(gross + taxes), "reconciled_value": 0,
        });
        let tail = json!({
            "status": status, "transport_code": "", "transport_code_set_by": 0, "global_guide": 0,
            "exchange_currency_id": 0, "exchange_total_value": 0, "exchange_rate": 0,
            "document_type": {"document_type_id": 1, "saft_code": "FT"},
            "document_set": {"document_set_id": set_id, "name": set_name},
            "associated_documents": [], "reverse_associated_documents": [],
            "document_calc_method": {"document_id": id, "calc_method_id": 2},
        });
        let mut fields = Map::new();
        for part in [head, entity, tail] {
            if let Value::Object(m) = part {
                fields.extend(m);
            }
        }
        Ok(Document {
            id,
            customer_id,
            document_type_id: 1,
            fields,
            modified_ms: now_ms,
        })
    }

    /// Paid in full, as when a receipt is reconciled against the invoice: `reconciled_value`
    /// becomes `net_value`. Only a closed document can be paid.
    pub fn pay_document(&mut self, document_id: u64, now_ms: i64) -> Result<(), Vec<Invalid>> {
        let doc = self.closed_document(document_id)?;
        let net = doc.fields.get("net_value").cloned().unwrap_or(json!(0));
        doc.fields.insert("reconciled_value".into(), net);
        doc.modified_ms = now_ms;
        Ok(())
    }

    /// Voided ([`STATUS_VOIDED`]): the document stays, with its number and values. Only a closed
    /// document can be voided (a draft is deleted instead).
    pub fn void_document(&mut self, document_id: u64, now_ms: i64) -> Result<(), Vec<Invalid>> {
        let doc = self.closed_document(document_id)?;
        doc.fields.insert("status".into(), json!(STATUS_VOIDED));
        doc.modified_ms = now_ms;
        Ok(())
    }

    fn closed_document(&mut self, document_id: u64) -> Result<&mut Document, Vec<Invalid>> {
        let doc = self
            .documents
            .get_mut(&document_id)
            .ok_or_else(|| vec![Invalid::bad_value("document_id", "must be valid")])?;
        if doc.fields.get("status").and_then(Value::as_u64) != Some(STATUS_CLOSED) {
            return Err(vec![Invalid::bad_value("status", "must be closed")]);
        }
        Ok(doc)
    }

    pub fn dump(&self) -> Value {
        json!({
            "company": {"company_id": self.company_id, "name": self.company_name, "vat": self.company_vat},
            "customers": self.customers.values().map(|c| {
                let mut v = self.render_customer(c);
                v["_modified"] = json!(lisbon(c.modified_ms));
                v
            }).collect::<Vec<_>>(),
            "documents": self.documents.values().map(|d| self.render_document(d)).collect::<Vec<_>>(),
            "payment_methods": self.payment_methods.iter().map(|(id, name)| json!({"payment_method_id": id, "name": name})).collect::<Vec<_>>(),
            "maturity_dates": self.maturity_dates.iter().map(|(id, name, days)| json!({"maturity_date_id": id, "name": name, "days": days})).collect::<Vec<_>>(),
            "salesmen": self.salesmen.iter().map(|(id, number, name)| json!({"salesman_id": id, "number": number, "name": name})).collect::<Vec<_>>(),
            "document_set": {"document_set_id": self.document_set.0, "name": self.document_set.1},
            "tax_id": self.vat_tax_id,
        })
    }
}
