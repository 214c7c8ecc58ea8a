//! The emulator's records and their wire shapes. Each `*_json` method renders exactly the keys
//! the spec (or, where the spec is silent, observed traffic per NOTES) shows, omitting unset ones.

use super::error::ApiError;
use super::validate::parse_birth_date;
use crate::timefmt::{days_from_civil, iso_ms, space_datetime};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Debug, Clone)]
pub struct Location {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Default)]
pub struct Contact {
    pub id: String,
    pub location_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company_name: Option<String>,
    pub timezone: Option<String>,
    pub source: Option<String>,
    pub assigned_to: Option<String>,
    pub address1: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub postal_code: Option<String>,
    pub website: Option<String>,
    pub gender: Option<String>,
    pub business_id: Option<String>,
    pub date_of_birth: Option<(i64, u32, u32)>,
    pub dnd: bool,
    pub dnd_settings: Option<Map<String, Value>>,
    pub inbound_dnd_settings: Option<Value>,
    pub contact_type: String,
    pub tags: Vec<String>,
    /// (custom field id, value) in insertion order.
    pub custom_fields: Vec<(String, Value)>,
    pub followers: Vec<String>,
    pub date_added: i64,
    pub date_updated: i64,
    pub last_activity: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub contact_id: String,
    pub title: String,
    pub body: Option<String>,
    pub assigned_to: Option<String>,
    pub due_date: i64,
    pub completed: bool,
    pub date_added: i64,
}

#[derive(Debug, Clone)]
pub struct Note {
    pub id: String,
    pub contact_id: String,
    pub body: String,
    pub user_id: Option<String>,
    pub title: Option<String>,
    pub color: Option<String>,
    pub pinned: bool,
    pub date_added: i64,
}

#[derive(Debug, Clone)]
pub struct Appointment {
    pub id: String,
    pub contact_id: String,
    pub location_id: String,
    pub calendar_id: String,
    pub title: String,
    pub assigned_user_id: String,
    pub notes: String,
    pub address: String,
    pub start: i64,
    pub end: i64,
    pub date_added: i64,
}

#[derive(Debug, Clone)]
pub struct CustomFieldDef {
    pub id: String,
    pub location_id: String,
    pub name: String,
    /// `contact.<key>`
    pub field_key: String,
    pub data_type: String,
    pub position: u32,
    pub picklist_options: Vec<String>,
}

/// A custom field to add to both locations (`GhlConfig::custom_fields`, `POST
/// /_sandbox/custom-fields`), e.g. the field an integration looks up by name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomFieldSpec {
    pub name: String,
    /// TEXT, LARGE_TEXT, NUMERICAL, MONETORY, SINGLE_OPTIONS, CHECKBOX, ...
    #[serde(default = "text")]
    pub data_type: String,
    #[serde(default)]
    pub options: Vec<String>,
}

fn text() -> String {
    "TEXT".into()
}

impl CustomFieldSpec {
    pub fn new(name: impl Into<String>, data_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            data_type: data_type.into(),
            options: Vec::new(),
        }
    }

    /// `Moloni Customer Id` → `contact.moloni_customer_id`, as GHL derives keys from names.
    pub fn field_key(&self) -> String {
        let mut key = String::new();
        for w in self
            .name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !key.is_empty() {
                key.push('_');
            }
            key.push_str(&w.to_lowercase());
        }
        format!("contact.{key}")
    }

    pub fn to_def(&self, id: String, location_id: &str, position: usize) -> CustomFieldDef {
        CustomFieldDef {
            id,
            location_id: location_id.to_string(),
            name: self.name.clone(),
            field_key: self.field_key(),
            data_type: self.data_type.clone(),
            position: position as u32 * 50,
            picklist_options: self.options.clone(),
        }
    }
}

/// Everything the emulator stores. Kept in `BTreeMap`s so dumps are in a stable order.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub locations: Vec<Location>,
    pub contacts: Contacts,
    pub tasks: BTreeMap<String, Task>,
    pub notes: BTreeMap<String, Note>,
    pub appointments: Vec<Appointment>,
    pub custom_fields: Vec<CustomFieldDef>,
}

/// Contacts by id, with the duplicate check's lookups kept beside them. GHL checks every new
/// contact against the location's others; scanning for that made a backfill into the emulator
/// quadratic (at 20,000 contacts, two thirds of the emulator's time went to comparing emails).
#[derive(Debug, Clone, Default)]
pub struct Contacts {
    by_id: BTreeMap<String, Contact>,
    by_email: DuplicateIndex,
    by_phone: DuplicateIndex,
}

#[derive(Clone, Copy)]
enum DuplicateBy {
    Email,
    Phone,
}

type DuplicateIndex = HashMap<(String, String), BTreeSet<(i64, String)>>;

/// The keys GHL finds `c`'s duplicates by: `(location, lower-case email)`, `(location, phone)`.
fn duplicate_keys(c: &Contact) -> impl Iterator<Item = (DuplicateBy, (String, String))> + '_ {
    let email = c.email.as_deref().map(|e| (DuplicateBy::Email, e.to_lowercase()));
    let phone = c.phone.as_deref().map(|p| (DuplicateBy::Phone, p.to_owned()));
    [email, phone]
        .into_iter()
        .flatten()
        .filter(|(_, value)| !value.is_empty())
        .map(|(by, value)| (by, (c.location_id.clone(), value)))
}

impl Contacts {
    pub fn get(&self, id: &str) -> Option<&Contact> {
        self.by_id.get(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Contact> {
        self.by_id.values()
    }

    /// Stores `contact` under its id, replacing (and unindexing) any earlier version.
    pub fn insert(&mut self, contact: Contact) -> Option<Contact> {
        let earlier = self.remove(&contact.id);
        for (by, key) in duplicate_keys(&contact) {
            self.index(by)
                .entry(key)
                .or_default()
                .insert((contact.date_added, contact.id.clone()));
        }
        self.by_id.insert(contact.id.clone(), contact);
        earlier
    }

    pub fn remove(&mut self, id: &str) -> Option<Contact> {
        let contact = self.by_id.remove(id)?;
        for (by, key) in duplicate_keys(&contact) {
            let index = self.index(by);
            if let Some(ids) = index.get_mut(&key) {
                ids.remove(&(contact.date_added, contact.id.clone()));
                if ids.is_empty() {
                    index.remove(&key);
                }
            }
        }
        Some(contact)
    }

    fn index(&mut self, by: DuplicateBy) -> &mut DuplicateIndex {
        match by {
            DuplicateBy::Email => &mut self.by_email,
            DuplicateBy::Phone => &mut self.by_phone,
        }
    }

    /// The oldest contact of `location` other than `exclude` whose email (lower-cased) or
    /// phone is `value`.
    fn oldest_with(&self, by: DuplicateBy, location: &str, value: String, exclude: Option<&str>) -> Option<&Contact> {
        let index = match by {
            DuplicateBy::Email => &self.by_email,
            DuplicateBy::Phone => &self.by_phone,
        };
        index
            .get(&(location.to_owned(), value))?
            .iter()
            .find(|(_, id)| Some(id.as_str()) != exclude)
            .and_then(|(_, id)| self.by_id.get(id))
    }
}

fn put(m: &mut Map<String, Value>, k: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(k.to_string(), Value::String(v.clone()));
    }
}

fn lower(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|s| s.to_lowercase())
}

/// GHL keeps tags trimmed and lower-case, without duplicates.
pub fn normalize_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_lowercase();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// E.164 normalisation as GHL does for US-default locations: `+1 888-888-8888` → `+18888888888`.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.chars().any(|c| !(c.is_ascii_digit() || " +-().".contains(c))) {
        return None;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 || digits.len() > 15 {
        return None;
    }
    if raw.starts_with('+') {
        Some(format!("+{digits}"))
    } else if digits.len() == 10 {
        Some(format!("+1{digits}"))
    } else {
        Some(format!("+{digits}"))
    }
}

/// What an input changed, to decide which webhooks fire.
#[derive(Debug, Default, Clone, Copy)]
pub struct Changes {
    pub tags: bool,
    pub dnd: bool,
}

impl Contact {
    pub fn name(&self) -> Option<String> {
        let n = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let n = n.trim().to_string();
        (!n.is_empty()).then_some(n)
    }

    fn dob_iso(&self) -> Option<String> {
        self.date_of_birth
            .map(|(y, m, d)| iso_ms(days_from_civil(y, m, d) * 86_400_000))
    }

    fn custom_fields_json(&self) -> Value {
        Value::Array(
            self.custom_fields
                .iter()
                .map(|(id, v)| json!({"id": id, "value": v}))
                .collect(),
        )
    }

    fn common(&self, m: &mut Map<String, Value>) {
        m.insert("id".into(), json!(self.id));
        m.insert("locationId".into(), json!(self.location_id));
        put(m, "firstName", &self.first_name);
        put(m, "lastName", &self.last_name);
        put(m, "email", &self.email);
        put(m, "phone", &self.phone);
        put(m, "companyName", &self.company_name);
        m.insert("dnd".into(), json!(self.dnd));
        m.insert("type".into(), json!(self.contact_type));
        put(m, "source", &self.source);
        put(m, "assignedTo", &self.assigned_to);
        put(m, "address1", &self.address1);
        put(m, "city", &self.city);
        put(m, "state", &self.state);
        put(m, "country", &self.country);
        put(m, "postalCode", &self.postal_code);
        put(m, "website", &self.website);
        m.insert("tags".into(), json!(self.tags));
        put(m, "dateOfBirth", &self.dob_iso());
        m.insert("dateAdded".into(), json!(iso_ms(self.date_added)));
        m.insert("dateUpdated".into(), json!(iso_ms(self.date_updated)));
        m.insert("customFields".into(), self.custom_fields_json());
        put(m, "businessId", &self.business_id);
    }

    /// `GetContectByIdSchema`: GET, PUT, upsert.
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        self.common(&mut m);
        put(&mut m, "name", &self.name());
        put(&mut m, "emailLowerCase", &lower(&self.email));
        put(&mut m, "timezone", &self.timezone);
        if let Some(d) = &self.dnd_settings {
            m.insert("dndSettings".into(), Value::Object(d.clone()));
        }
        put(&mut m, "firstNameLowerCase", &lower(&self.first_name));
        put(&mut m, "lastNameLowerCase", &lower(&self.last_name));
        put(&mut m, "fullNameLowerCase", &lower(&self.name()));
        put(&mut m, "lastActivity", &self.last_activity.map(iso_ms));
        Value::Object(m)
    }

    /// `CreateContactSchema`: the POST /contacts/ response.
    pub fn created_json(&self) -> Value {
        let mut m = Map::new();
        self.common(&mut m);
        m.insert("deleted".into(), json!(false));
        put(&mut m, "emailLowerCase", &lower(&self.email));
        put(&mut m, "firstNameLowerCase", &lower(&self.first_name));
        put(&mut m, "lastNameLowerCase", &lower(&self.last_name));
        put(&mut m, "fullNameLowerCase", &lower(&self.name()));
        m.insert("bounceEmail".into(), json!(false));
        m.insert("unsubscribeEmail".into(), json!(false));
        if let Some(d) = &self.dnd_settings {
            m.insert("dndSettings".into(), Value::Object(d.clone()));
        }
        if let Some((_, mo, d)) = self.date_of_birth {
            // GHL's birthMonth is zero-based (the spec example: 1990-09-25 → 8).
            m.insert("birthMonth".into(), json!(mo - 1));
            m.insert("birthDay".into(), json!(d));
        }
        m.insert("offers".into(), json!([]));
        m.insert("products".into(), json!([]));
        Value::Object(m)
    }

    /// A list/search item: `ContactsSearchSchema` plus the fields real list responses carry
    /// (NOTES §2.6), without `dndSettings` (ISS#43).
    pub fn search_json(&self) -> Value {
        let mut m = Map::new();
        self.common(&mut m);
        put(&mut m, "contactName", &lower(&self.name()));
        put(&mut m, "timezone", &self.timezone);
        put(&mut m, "lastActivity", &self.last_activity.map(iso_ms));
        m.insert("attributions".into(), json!([]));
        m.insert("followers".into(), json!(self.followers));
        Value::Object(m)
    }

    /// The flat contact of Contact* webhooks (NOTES §6.2).
    pub fn webhook_json(&self, ty: &str) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("locationId".into(), json!(self.location_id));
        m.insert("id".into(), json!(self.id));
        put(&mut m, "address1", &self.address1);
        put(&mut m, "city", &self.city);
        put(&mut m, "state", &self.state);
        put(&mut m, "companyName", &self.company_name);
        put(&mut m, "country", &self.country);
        put(&mut m, "source", &self.source);
        m.insert("dateAdded".into(), json!(iso_ms(self.date_added)));
        put(&mut m, "dateOfBirth", &self.dob_iso());
        m.insert("dnd".into(), json!(self.dnd));
        if ty == "ContactDndUpdate" {
            m.insert(
                "dndSettings".into(),
                Value::Object(self.dnd_settings.clone().unwrap_or_default()),
            );
        }
        put(&mut m, "email", &self.email);
        put(&mut m, "name", &self.name());
        put(&mut m, "firstName", &self.first_name);
        put(&mut m, "lastName", &self.last_name);
        put(&mut m, "phone", &self.phone);
        put(&mut m, "postalCode", &self.postal_code);
        m.insert("tags".into(), json!(self.tags));
        put(&mut m, "website", &self.website);
        m.insert("attachments".into(), json!([]));
        put(&mut m, "assignedTo", &self.assigned_to);
        m.insert("customFields".into(), self.custom_fields_json());
        Value::Object(m)
    }

    /// Applies a validated create/update/upsert body. Absent keys are left alone, `null` or ""
    /// clears, `tags` replaces the whole list, custom fields are set one by one.
    pub fn apply(&mut self, body: &Map<String, Value>, defs: &[CustomFieldDef]) -> Result<Changes, ApiError> {
        let mut ch = Changes::default();
        let s = |k: &str| -> Option<Option<String>> {
            body.get(k).map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                _ => None,
            })
        };
        macro_rules! set {
            ($key:literal, $field:ident) => {
                if let Some(v) = s($key) {
                    self.$field = v;
                }
            };
        }
        set!("firstName", first_name);
        set!("lastName", last_name);
        set!("email", email);
        set!("companyName", company_name);
        set!("timezone", timezone);
        set!("source", source);
        set!("assignedTo", assigned_to);
        set!("address1", address1);
        set!("city", city);
        set!("state", state);
        set!("country", country);
        set!("postalCode", postal_code);
        set!("website", website);
        set!("gender", gender);
        if let Some(name) = s("name") {
            // A bare `name` is split into first and last, as GHL does.
            if !body.contains_key("firstName") && !body.contains_key("lastName") {
                match name.as_deref().map(|n| n.split_once(' ')) {
                    Some(Some((f, l))) => {
                        self.first_name = Some(f.to_string());
                        self.last_name = Some(l.trim().to_string());
                    }
                    Some(None) => {
                        self.first_name = name;
                        self.last_name = None;
                    }
                    None => {
                        self.first_name = None;
                        self.last_name = None;
                    }
                }
            }
        }
        if let Some(p) = s("phone") {
            self.phone = match p {
                Some(raw) => Some(
                    normalize_phone(&raw)
                        .ok_or_else(|| ApiError::unprocessable(vec!["phone must be a valid phone number".into()]))?,
                ),
                None => None,
            };
        }
        if let Some(v) = body.get("dateOfBirth") {
            self.date_of_birth = v.as_str().and_then(parse_birth_date);
        }
        if let Some(Value::Bool(b)) = body.get("dnd") {
            ch.dnd |= self.dnd != *b;
            self.dnd = *b;
        }
        if let Some(Value::Object(d)) = body.get("dndSettings") {
            // Channels merge: a body naming only SMS leaves the other channels as they were.
            let cur = self.dnd_settings.get_or_insert_with(Map::new);
            for (k, v) in d {
                if cur.get(k) != Some(v) {
                    ch.dnd = true;
                    cur.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(v) = body.get("inboundDndSettings") {
            self.inbound_dnd_settings = Some(v.clone());
        }
        if let Some(Value::Array(tags)) = body.get("tags") {
            let new = normalize_tags(tags.iter().filter_map(Value::as_str));
            ch.tags |= new != self.tags;
            self.tags = new;
        }
        if let Some(Value::Array(items)) = body.get("customFields") {
            for item in items {
                let def = defs.iter().find(|d| {
                    d.location_id == self.location_id
                        && (item.get("id").and_then(Value::as_str) == Some(d.id.as_str())
                            || item
                                .get("key")
                                .and_then(Value::as_str)
                                .is_some_and(|k| k == d.field_key || format!("contact.{k}") == d.field_key))
                });
                // Unknown fields are ignored, as GHL silently drops what it cannot map.
                let Some(def) = def else { continue };
                let value = item.get("field_value").cloned().unwrap_or(Value::Null);
                self.custom_fields.retain(|(id, _)| id != &def.id);
                let empty = value.is_null() || value.as_str() == Some("");
                if !empty {
                    self.custom_fields.push((def.id.clone(), value));
                }
            }
        }
        Ok(ch)
    }

    /// Free-text match used by `query` parameters: name, email, phone, company.
    pub fn matches_query(&self, q: &str) -> bool {
        let q = q.trim().to_lowercase();
        if q.is_empty() {
            return true;
        }
        let hay = [
            self.name(),
            self.email.clone(),
            self.phone.clone(),
            self.company_name.clone(),
        ];
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        hay.iter().flatten().any(|h| h.to_lowercase().contains(&q))
            || (digits.len() >= 4 && self.phone.as_deref().is_some_and(|p| p.contains(digits.as_str())))
    }
}

impl Task {
    /// `TaskSchema`
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("title".into(), json!(self.title));
        put(&mut m, "body", &self.body);
        put(&mut m, "assignedTo", &self.assigned_to);
        m.insert("dueDate".into(), json!(iso_ms(self.due_date)));
        m.insert("completed".into(), json!(self.completed));
        m.insert("contactId".into(), json!(self.contact_id));
        Value::Object(m)
    }

    pub fn webhook_json(&self, ty: &str, location_id: &str) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("locationId".into(), json!(location_id));
        m.insert("id".into(), json!(self.id));
        put(&mut m, "assignedTo", &self.assigned_to);
        put(&mut m, "body", &self.body);
        m.insert("contactId".into(), json!(self.contact_id));
        m.insert("title".into(), json!(self.title));
        m.insert("dateAdded".into(), json!(iso_ms(self.date_added)));
        m.insert("dueDate".into(), json!(iso_ms(self.due_date)));
        Value::Object(m)
    }
}

impl Note {
    /// `GetNoteSchema`
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("body".into(), json!(self.body));
        put(&mut m, "userId", &self.user_id);
        m.insert("dateAdded".into(), json!(iso_ms(self.date_added)));
        m.insert("contactId".into(), json!(self.contact_id));
        put(&mut m, "title", &self.title);
        put(&mut m, "color", &self.color);
        m.insert("pinned".into(), json!(self.pinned));
        Value::Object(m)
    }

    pub fn webhook_json(&self, ty: &str, location_id: &str) -> Value {
        json!({
            "type": ty,
            "locationId": location_id,
            "id": self.id,
            "body": self.body,
            "contactId": self.contact_id,
            "dateAdded": iso_ms(self.date_added),
        })
    }
}

impl Appointment {
    /// `GetEventSchema`; times in GHL's `YYYY-MM-DD HH:mm:ss` style.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "calendarId": self.calendar_id,
            "status": "booked",
            "title": self.title,
            "assignedUserId": self.assigned_user_id,
            "notes": self.notes,
            "startTime": space_datetime(self.start),
            "endTime": space_datetime(self.end),
            "address": self.address,
            "locationId": self.location_id,
            "contactId": self.contact_id,
            "groupId": self.calendar_id,
            "appointmentStatus": "confirmed",
            "users": [self.assigned_user_id],
            "dateAdded": space_datetime(self.date_added),
            "dateUpdated": space_datetime(self.date_added),
            "assignedResources": [],
        })
    }
}

impl CustomFieldDef {
    /// An item of `GET /locations/:id/customFields`.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "fieldKey": self.field_key,
            "placeholder": "",
            "dataType": self.data_type,
            "position": self.position,
            "documentType": "field",
            "parentId": Value::Null,
            "locationId": self.location_id,
            "model": "contact",
            "dateAdded": "2025-01-01T00:00:00.000Z",
        });
        if !self.picklist_options.is_empty() {
            v["picklistOptions"] = json!(self.picklist_options);
        }
        v
    }
}

impl Store {
    pub fn location(&self, id: &str) -> Option<&Location> {
        self.locations.iter().find(|l| l.id == id)
    }

    pub fn defs(&self) -> &[CustomFieldDef] {
        &self.custom_fields
    }

    /// The first contact in `location` whose email or phone matches, email first (the default
    /// priority of the location's duplicate setting). Returns the match and `matchingField`.
    pub fn find_duplicate(
        &self,
        location: &str,
        email: Option<&str>,
        phone: Option<&str>,
        exclude: Option<&str>,
    ) -> Option<(&Contact, &'static str)> {
        // Oldest first, so the surviving original wins over later duplicates.
        if let Some(e) = email.map(str::to_lowercase).filter(|e| !e.is_empty()) {
            if let Some(c) = self.contacts.oldest_with(DuplicateBy::Email, location, e, exclude) {
                return Some((c, "email"));
            }
        }
        if let Some(p) = phone.and_then(normalize_phone) {
            if let Some(c) = self.contacts.oldest_with(DuplicateBy::Phone, location, p, exclude) {
                return Some((c, "phone"));
            }
        }
        None
    }

    /// Full state for `GET /_sandbox/state`.
    pub fn dump(&self) -> Value {
        let loc_of = |contact_id: &str| {
            self.contacts
                .get(contact_id)
                .map(|c| c.location_id.clone())
                .unwrap_or_default()
        };
        json!({
            "locations": self.locations.iter().map(|l| json!({
                "id": l.id, "companyId": l.company_id, "name": l.name, "timezone": l.timezone,
            })).collect::<Vec<_>>(),
            "contacts": self.contacts.values().map(Contact::json).collect::<Vec<_>>(),
            "tasks": self.tasks.values().map(|t| {
                let mut v = t.json();
                v["dateAdded"] = json!(iso_ms(t.date_added));
                v["locationId"] = json!(loc_of(&t.contact_id));
                v
            }).collect::<Vec<_>>(),
            "notes": self.notes.values().map(|n| {
                let mut v = n.json();
                v["locationId"] = json!(loc_of(&n.contact_id));
                v
            }).collect::<Vec<_>>(),
            "appointments": self.appointments.iter().map(Appointment::json).collect::<Vec<_>>(),
            "customFields": self.custom_fields.iter().map(CustomFieldDef::json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_tags_normalise() {
        assert_eq!(normalize_phone("+1 888-888-8888").as_deref(), Some("+18888888888"));
        assert_eq!(normalize_phone("(512) 555-0147").as_deref(), Some("+15125550147"));
        assert_eq!(normalize_phone("+351 912 345 678").as_deref(), Some("+351912345678"));
        assert_eq!(normalize_phone("call me"), None);
        assert_eq!(normalize_phone("12"), None);
        assert_eq!(normalize_tags([" VIP", "vip", "Lead "]), vec!["vip", "lead"]);
    }

    #[test]
    fn name_splits_and_birth_month_is_zero_based() {
        let mut c = Contact {
            id: "c1".into(),
            location_id: "l1".into(),
            contact_type: "lead".into(),
            ..Contact::default()
        };
        let body = json!({"name": "Rosan Deo", "dateOfBirth": "1990-09-25"});
        let body = body.as_object().cloned().unwrap_or_default();
        assert!(c.apply(&body, &[]).is_ok());
        assert_eq!(c.first_name.as_deref(), Some("Rosan"));
        assert_eq!(c.last_name.as_deref(), Some("Deo"));
        let created = c.created_json();
        assert_eq!(created["birthMonth"], json!(8));
        assert_eq!(created["dateOfBirth"], json!("1990-09-25T00:00:00.000Z"));
        assert_eq!(c.json()["fullNameLowerCase"], json!("rosan deo"));
    }
}
