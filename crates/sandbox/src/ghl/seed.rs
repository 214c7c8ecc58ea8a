//! Deterministic starting data: two locations, their custom fields, and `seed_contacts`
//! realistic contacts with some tasks, notes and appointments.

use super::model::{Appointment, Contact, CustomFieldDef, Location, Note, Store, Task};
use super::GhlConfig;
use crate::fake;
use crate::ids::{alnum, hex, rng_for};
use crate::timefmt::days_from_civil;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;
use std::collections::HashSet;

pub struct Seeded {
    pub store: Store,
    pub location_id: String,
    pub company_id: String,
    pub user_id: String,
    pub other_location_id: String,
}

/// (name, key, dataType, options)
const FIELDS: &[(&str, &str, &str, &[&str])] = &[
    ("Customer Number", "customer_number", "TEXT", &[]),
    ("Account Notes", "account_notes", "LARGE_TEXT", &[]),
    (
        "Preferred Contact Method",
        "preferred_contact_method",
        "SINGLE_OPTIONS",
        &["Email", "Phone", "SMS"],
    ),
    (
        "Services Of Interest",
        "services_of_interest",
        "CHECKBOX",
        &["Installation", "Repair", "Maintenance"],
    ),
    ("Lifetime Value", "lifetime_value", "MONETORY", &[]),
];

const TASK_TITLES: &[&str] = &[
    "Call back about quote",
    "Send invoice",
    "Schedule site visit",
    "Follow up on proposal",
    "Confirm appointment",
];

const NOTE_BODIES: &[&str] = &[
    "Customer asked for a quote on a full replacement.",
    "Left a voicemail, will try again tomorrow.",
    "Prefers to be contacted in the morning.",
    "Referred by a neighbour.",
    "Paid the deposit by card.",
];

const DAY_MS: i64 = 86_400_000;

pub fn build(config: &GhlConfig, rng: &mut StdRng) -> Seeded {
    let company_id = alnum(rng, 20);
    let user_id = alnum(rng, 20);
    let location_id = config.location_id.clone().unwrap_or_else(|| alnum(rng, 20));
    let other_location_id = alnum(rng, 20);
    let mut store = Store {
        locations: vec![
            Location {
                id: location_id.clone(),
                company_id: company_id.clone(),
                name: "Sandbox Plumbing Co".into(),
                timezone: "America/Chicago".into(),
            },
            Location {
                id: other_location_id.clone(),
                company_id: company_id.clone(),
                name: "Other Sandbox Location".into(),
                timezone: "America/New_York".into(),
            },
        ],
        ..Store::default()
    };
    for loc in [&location_id, &other_location_id] {
        for (pos, (name, key, ty, opts)) in FIELDS.iter().enumerate() {
            store.custom_fields.push(CustomFieldDef {
                id: alnum(rng, 20),
                location_id: loc.clone(),
                name: name.to_string(),
                field_key: format!("contact.{key}"),
                data_type: ty.to_string(),
                position: pos as u32 * 50,
                picklist_options: opts.iter().map(|s| s.to_string()).collect(),
            });
        }
    }
    // Extra fields draw ids from their own stream so they do not shift the seeded data.
    let mut extra_rng = rng_for(config.seed, 5);
    for loc in [&location_id, &other_location_id] {
        for spec in &config.custom_fields {
            let def = spec.to_def(alnum(&mut extra_rng, 20), loc, store.custom_fields.len());
            store.custom_fields.push(def);
        }
    }
    let businesses: Vec<String> = (0..3).map(|_| hex(rng, 24)).collect();
    let users: Vec<String> = (0..3).map(|_| alnum(rng, 20)).collect();
    let calendar = alnum(rng, 20);
    // Fixed base so seeded dates do not depend on when the emulator starts.
    let base = days_from_civil(2025, 1, 1) * DAY_MS;
    let mut emails = HashSet::new();
    let mut phones = HashSet::new();
    for i in 0..config.seed_contacts {
        let loc = if i % 5 == 4 { &other_location_id } else { &location_id };
        let first = fake::pick(rng, fake::FIRST_NAMES).to_string();
        let last = fake::pick(rng, fake::LAST_NAMES).to_string();
        let (city, state, zip, area) = fake::PLACES[rng.gen_range(0..fake::PLACES.len())];
        let email = loop {
            let e = fake::email(rng, &first, &last);
            if emails.insert(e.clone()) {
                break e;
            }
        };
        let phone = loop {
            let p = fake::phone(rng, area);
            if phones.insert(p.clone()) {
                break p;
            }
        };
        let added = base + rng.gen_range(0..300 * DAY_MS);
        let updated = added + rng.gen_range(0..30 * DAY_MS);
        let defs: Vec<&CustomFieldDef> = store.custom_fields.iter().filter(|d| &d.location_id == loc).collect();
        let mut custom_fields = Vec::new();
        if rng.gen_bool(0.6) {
            if let Some(d) = defs.first() {
                custom_fields.push((d.id.clone(), json!(format!("C-{}", 10_000 + i))));
            }
        }
        if rng.gen_bool(0.4) {
            if let Some(d) = defs.get(2) {
                let opt = fake::pick(rng, &["Email", "Phone", "SMS"]).to_string();
                custom_fields.push((d.id.clone(), json!(opt)));
            }
        }
        let contact = Contact {
            id: alnum(rng, 20),
            location_id: loc.clone(),
            first_name: Some(first),
            last_name: Some(last),
            email: Some(email),
            phone: Some(phone),
            company_name: rng.gen_bool(0.4).then(|| fake::pick(rng, fake::COMPANIES).to_string()),
            timezone: Some(fake::pick(rng, fake::TIMEZONES).to_string()),
            source: Some(fake::pick(rng, &["public api", "website form", "facebook", "referral"]).to_string()),
            assigned_to: rng.gen_bool(0.5).then(|| users[rng.gen_range(0..users.len())].clone()),
            address1: Some(fake::street_address(rng)),
            city: Some(city.into()),
            state: Some(state.into()),
            country: Some("US".into()),
            postal_code: Some(zip.into()),
            website: rng.gen_bool(0.2).then(|| "https://www.example.com".to_string()),
            gender: None,
            business_id: rng
                .gen_bool(0.15)
                .then(|| businesses[rng.gen_range(0..businesses.len())].clone()),
            date_of_birth: rng
                .gen_bool(0.3)
                .then(|| (rng.gen_range(1950..2004), rng.gen_range(1..=12), rng.gen_range(1..=28))),
            dnd: rng.gen_bool(0.1),
            dnd_settings: None,
            inbound_dnd_settings: None,
            contact_type: if rng.gen_bool(0.5) { "lead" } else { "customer" }.into(),
            tags: fake::tags(rng, 3),
            custom_fields,
            followers: Vec::new(),
            date_added: added,
            date_updated: updated,
            last_activity: rng.gen_bool(0.5).then_some(updated),
        };
        if rng.gen_bool(0.3) {
            for _ in 0..rng.gen_range(1..=2) {
                let t = Task {
                    id: alnum(rng, 20),
                    contact_id: contact.id.clone(),
                    title: fake::pick(rng, TASK_TITLES).into(),
                    body: Some("Seeded task".into()),
                    assigned_to: contact.assigned_to.clone(),
                    due_date: updated + rng.gen_range(1..20) * DAY_MS,
                    completed: rng.gen_bool(0.3),
                    date_added: updated,
                };
                store.tasks.insert(t.id.clone(), t);
            }
        }
        if rng.gen_bool(0.4) {
            for _ in 0..rng.gen_range(1..=2) {
                let n = Note {
                    id: alnum(rng, 20),
                    contact_id: contact.id.clone(),
                    body: fake::pick(rng, NOTE_BODIES).into(),
                    user_id: Some(user_id.clone()),
                    title: None,
                    color: None,
                    pinned: false,
                    date_added: added + rng.gen_range(0..DAY_MS),
                };
                store.notes.insert(n.id.clone(), n);
            }
        }
        if rng.gen_bool(0.2) {
            let start = updated + rng.gen_range(1..30) * DAY_MS;
            store.appointments.push(Appointment {
                id: alnum(rng, 20),
                contact_id: contact.id.clone(),
                location_id: loc.clone(),
                calendar_id: calendar.clone(),
                title: "Site visit".into(),
                assigned_user_id: users[0].clone(),
                notes: "Seeded appointment".into(),
                address: contact.address1.clone().unwrap_or_default(),
                start,
                end: start + 3_600_000,
                date_added: updated,
            });
        }
        store.contacts.insert(contact);
    }
    Seeded {
        store,
        location_id,
        company_id,
        user_id,
        other_location_id,
    }
}
