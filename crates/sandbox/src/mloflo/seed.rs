//! Seeded data: loan officers as users, borrowers and partners spread over every pipeline stage
//! with the milestones that got them there, US phone numbers and addresses, tasks, and notes
//! with attachment links.

use super::store::{Obj, Store, STAGES};
use crate::fake;
use crate::ids::hex;
use crate::timefmt::{iso_ms, now_ms};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};

/// County of each of `fake::PLACES`, in order.
const COUNTIES: &[&str] = &[
    "Travis",
    "Denver",
    "Multnomah",
    "Franklin",
    "Wake",
    "Hillsborough",
    "Maricopa",
    "Dane",
    "Ada",
    "Richmond City",
];
const SOURCES: &[&str] = &["website", "referral", "zillow", "open house", "past client", "facebook"];
const PARTNER_TAGS: &[&str] = &["realtor", "builder", "financial planner"];
const BORROWER_TAGS: &[&str] = &["first-time buyer", "refinance", "va loan", "fha", "jumbo", "investor"];
const TASK_TITLES: &[&str] = &[
    "Collect pay stubs",
    "Order appraisal",
    "Send pre-approval letter",
    "Verify employment",
    "Schedule closing",
    "Follow up on rate lock",
];
const NOTE_BODIES: &[&str] = &[
    "Called borrower; documents on the way.",
    "Partner referred two more clients.",
    "Credit report reviewed, score 742.",
    "Appraisal came in at value.",
];
const MINUTE: i64 = 60_000;

fn obj(fields: Value, time_ms: i64) -> Obj {
    let fields: Map<String, Value> = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Obj { fields, time_ms }
}

pub fn users(r: &mut StdRng) -> Vec<Value> {
    [
        ("Dana Whitfield", "loan_officer"),
        ("Marcus Lee", "loa"),
        ("Priya Shah", "processor"),
        ("Tom Alvarez", "branch_admin"),
    ]
    .iter()
    .map(|(name, role)| {
        let email = format!("{}@mloflo.test", name.to_lowercase().replace(' ', "."));
        json!({"id": hex(r, 24), "name": name, "email": email, "role": role})
    })
    .collect()
}

pub fn build(r: &mut StdRng, contacts: usize) -> Store {
    let mut store = Store {
        users: users(r),
        ..Store::default()
    };
    let user_ids: Vec<String> = store
        .users
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .collect();
    // Seeded history lies in the past, minutes apart, so live writes always sort after it.
    let start = now_ms() - (contacts as i64 + 10) * 30 * MINUTE;
    for i in 0..contacts {
        let base = start + i as i64 * 30 * MINUTE;
        let partner = i % 4 == 3;
        let stage_index = i % STAGES.len();
        let stage = STAGES[stage_index];
        let first = fake::pick(r, fake::FIRST_NAMES).to_owned();
        let last = fake::pick(r, fake::LAST_NAMES).to_owned();
        let place = r.gen_range(0..fake::PLACES.len());
        let (city, state, zip, area) = fake::PLACES[place];
        let id = hex(r, 24);
        let tag_pool = if partner { PARTNER_TAGS } else { BORROWER_TAGS };
        let tags = vec![fake::pick(r, tag_pool).to_owned()];
        let owner = user_ids.get(i % user_ids.len().max(1)).cloned();
        let loan: Option<i64> = (!partner).then(|| r.gen_range(80..1200) * 1000);
        let updated = base + 20 * MINUTE;
        let contact = json!({
            "id": id,
            "type": if partner { "partner" } else { "borrower" },
            "first_name": first, "last_name": last,
            "email": fake::email(r, &first, &last),
            "phone": fake::phone(r, area),
            "source": fake::pick(r, SOURCES),
            "tags": tags,
            "custom_fields": if partner { json!({"brokerage": fake::pick(r, fake::COMPANIES)}) } else { json!({"credit_score": r.gen_range(580..820)}) },
            "pipeline_stage": stage,
            "loan_amount": loan,
            "address": {"street": fake::street_address(r), "city": city, "state": state,
                        "county": COUNTIES.get(place).copied().unwrap_or(""), "zip": zip},
            "dob": format!("{}-{:02}-{:02}", r.gen_range(1955..2002), r.gen_range(1..=12), r.gen_range(1..=28)),
            "assigned_user_id": owner,
            "created_at": iso_ms(base), "updated_at": iso_ms(updated), "deleted_at": null,
        });
        store.contacts.insert(id.clone(), obj(contact, updated));
        // The path to the current stage: lost leads drop out after application.
        let path: Vec<&str> = if stage == "lost" {
            vec!["new_lead", "pre_approval", "application", "lost"]
        } else {
            STAGES[..=stage_index].to_vec()
        };
        for (step, pair) in path.windows(2).enumerate() {
            let at = base + (step as i64 + 1) * 2 * MINUTE;
            let mid = hex(r, 24);
            store.milestones.insert(
                mid.clone(),
                obj(
                    json!({"id": mid, "contact_id": id, "from_stage": pair[0], "to_stage": pair[1], "occurred_at": iso_ms(at)}),
                    at,
                ),
            );
        }
        if i % 2 == 0 {
            let at = base + 15 * MINUTE;
            let tid = hex(r, 24);
            let done = i % 6 == 0;
            store.tasks.insert(
                tid.clone(),
                obj(
                    json!({"id": tid, "contact_id": id, "title": fake::pick(r, TASK_TITLES), "description": null,
                           "due_at": iso_ms(base + 3 * 24 * 60 * MINUTE), "status": if done { "completed" } else { "open" },
                           "completed_at": if done { json!(iso_ms(at)) } else { Value::Null },
                           "assigned_user_id": owner, "created_at": iso_ms(base), "updated_at": iso_ms(at), "deleted_at": null}),
                    at,
                ),
            );
        }
        if i % 3 == 0 {
            let at = base + 16 * MINUTE;
            let nid = hex(r, 24);
            let attachment = hex(r, 24);
            store.notes.insert(
                nid.clone(),
                obj(
                    json!({"id": nid, "contact_id": id, "body": fake::pick(r, NOTE_BODIES), "author_user_id": owner,
                           "attachments": [{"id": attachment, "file_name": "pay-stub.pdf", "content_type": "application/pdf",
                                            "size": r.gen_range(20_000..900_000),
                                            "url": format!("https://files.mloflo.test/{attachment}/pay-stub.pdf")}],
                           "created_at": iso_ms(at), "updated_at": iso_ms(at), "deleted_at": null}),
                    at,
                ),
            );
        }
    }
    store
}
