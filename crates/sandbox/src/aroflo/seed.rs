//! Seeded Australian data: trades clients with valid ABNs, +61 phones (ACMA's fictional
//! ranges), contacts, job tasks with notes, client notes, staff. Dates spread over two years,
//! so the 30-day default filter visibly hides most of it.

use super::model::{Address, Client, ClientNote, Contact, Named, Store, Task, TaskNote, User};
use super::post::new_id;
use crate::fake::{pick, FIRST_NAMES, LAST_NAMES};
use crate::ids::IdGen;
use rand::rngs::StdRng;
use rand::Rng;

const TRADES: &[&str] = &[
    "Plumbing",
    "Electrical",
    "Air Conditioning",
    "Roofing",
    "Building",
    "Landscaping",
    "Pest Control",
    "Solar",
];
const SUFFIXES: &[&str] = &["Pty Ltd", "Services", "Group", "& Sons", "Co"];
const PLACES: &[(&str, &str, &str)] = &[
    ("Sydney", "NSW", "2000"),
    ("Parramatta", "NSW", "2150"),
    ("Newcastle", "NSW", "2300"),
    ("Melbourne", "VIC", "3000"),
    ("Geelong", "VIC", "3220"),
    ("Brisbane", "QLD", "4000"),
    ("Gold Coast", "QLD", "4217"),
    ("Perth", "WA", "6000"),
    ("Adelaide", "SA", "5000"),
    ("Hobart", "TAS", "7000"),
    ("Canberra", "ACT", "2600"),
    ("Darwin", "NT", "0800"),
];
const STREETS: &[&str] = &[
    "George St",
    "Pitt St",
    "Collins St",
    "Queen St",
    "Hay St",
    "King William St",
    "Flinders St",
    "Smith St",
];
const JOBS: &[&str] = &[
    "Blocked drain",
    "Hot water system replacement",
    "Install split system",
    "Switchboard upgrade",
    "Leaking roof",
    "Annual backflow test",
    "Smoke alarm compliance",
    "Tap washer replacement",
    "Gutter clean",
    "Solar inverter fault",
];
const NOTES: &[&str] = &[
    "Customer called to confirm the booking.",
    "Gate code 4821, dog in the backyard.",
    "Quoted over the phone; waiting on approval.",
    "Parts ordered from Reece, ETA two days.",
    "Tech on site, job under way.",
    "Invoice sent, payment terms 14 days.",
];

/// An 11-digit ABN that passes the ATO checksum, formatted `51 824 753 556`.
pub fn abn(rng: &mut StdRng) -> String {
    const WEIGHTS: [u32; 11] = [10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19];
    let tail: Vec<u32> = (0..9).map(|_| rng.gen_range(0..10)).collect();
    let tail_sum: u32 = tail.iter().zip(&WEIGHTS[2..]).map(|(d, w)| d * w).sum();
    for prefix in 10..100u32 {
        let (a, b) = (prefix / 10, prefix % 10);
        if (((a - 1) * WEIGHTS[0]) + b * WEIGHTS[1] + tail_sum).is_multiple_of(89) {
            let digits: String = [a, b]
                .iter()
                .chain(&tail)
                .map(|d| char::from(b'0' + *d as u8))
                .collect();
            return format!("{} {} {} {}", &digits[..2], &digits[2..5], &digits[5..8], &digits[8..]);
        }
    }
    // 90 consecutive prefixes always contain one that works (the modulus is 89).
    String::from("51 824 753 556")
}

pub fn abn_is_valid(abn: &str) -> bool {
    const WEIGHTS: [u32; 11] = [10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19];
    let digits: Vec<u32> = abn.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 11 || digits[0] == 0 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| if i == 0 { d - 1 } else { *d } * WEIGHTS[i])
        .sum();
    sum.is_multiple_of(89)
}

/// ACMA's fictional mobile ranges (0491 570 006–159, 0491 571 266–491, 0491 572 549–665), in
/// the styles people type: `+61 491 571 300` or `0491 571 300`.
fn mobile(rng: &mut StdRng) -> String {
    const RANGES: [(u32, u32, u32); 3] = [(570, 6, 159), (571, 266, 491), (572, 549, 665)];
    let (block, low, high) = RANGES[rng.gen_range(0..RANGES.len())];
    let n = rng.gen_range(low..=high);
    if rng.gen_bool(0.5) {
        format!("+61 491 {block} {n:03}")
    } else {
        format!("0491 {block} {n:03}")
    }
}

/// ACMA's fictional Sydney landline range `(02) 5550 xxxx`.
fn landline(rng: &mut StdRng) -> String {
    format!("(02) 5550 {:04}", rng.gen_range(0..10_000))
}

fn email(rng: &mut StdRng, first: &str, last: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_lowercase()
    };
    format!("{}.{}{}@example.com", clean(first), clean(last), rng.gen_range(1..100))
}

const DAY: i64 = 86_400_000;

pub fn build(rng: &mut StdRng, ids: &IdGen, now_ms: i64, clients: usize) -> Store {
    let mut store = Store {
        orgs: vec![Named {
            id: new_id(ids),
            name: "Tether Trades Sydney".into(),
        }],
        task_types: ["Service", "Installation", "Quote"]
            .iter()
            .map(|name| Named {
                id: new_id(ids),
                name: name.to_string(),
            })
            .collect(),
        substatuses: ["Awaiting parts", "Booked"]
            .iter()
            .map(|name| Named {
                id: new_id(ids),
                name: name.to_string(),
            })
            .collect(),
        next_jobnumber: 1000,
        ..Store::default()
    };
    store.orgs.push(Named {
        id: new_id(ids),
        name: "Tether Trades Melbourne".into(),
    });
    for position in ["Administrator", "Technician", "Technician"] {
        let (first, last) = (pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES));
        let created = now_ms - rng.gen_range(400..800) * DAY;
        store.users.push(User {
            userid: new_id(ids),
            givennames: first.into(),
            surname: last.into(),
            username: format!("{}.{}", first.to_lowercase(), last.to_lowercase()),
            email: email(rng, first, last),
            phone: landline(rng),
            position: position.into(),
            archived: false,
            created_ms: created,
            updated_ms: created,
        });
    }
    let staff: Vec<String> = store.users.iter().map(|u| u.userid.clone()).collect();
    for i in 0..clients {
        let (first, last) = (pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES));
        let (suburb, state, postcode) = PLACES[rng.gen_range(0..PLACES.len())];
        // Most are old; about one in six is recent enough to pass the 30-day default filter.
        let created = if i % 6 == 0 {
            now_ms - rng.gen_range(1..25) * DAY
        } else {
            now_ms - rng.gen_range(40..700) * DAY
        };
        let updated = (created + rng.gen_range(0..20) * DAY).min(now_ms - 60_000);
        let name = format!("{last} {} {} {}", pick(rng, TRADES), pick(rng, SUFFIXES), i + 1);
        let contacts = (0..rng.gen_range(1..3))
            .map(|_| {
                let (cf, cl) = (pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES));
                Contact {
                    userid: new_id(ids),
                    givennames: cf.into(),
                    surname: cl.into(),
                    phone: landline(rng),
                    mobile: mobile(rng),
                    email: email(rng, cf, cl),
                    archived: false,
                    created_ms: created,
                }
            })
            .collect();
        let client = Client {
            clientid: new_id(ids),
            clientname: name.chars().take(50).collect(),
            firstname: first.into(),
            surname: last.into(),
            shortname: last.chars().take(6).collect::<String>().to_uppercase(),
            abn: abn(rng),
            phone: landline(rng),
            mobile: mobile(rng),
            email: email(rng, first, last),
            website: String::new(),
            address: Address {
                addressline1: format!("{} {}", rng.gen_range(1..400), STREETS[rng.gen_range(0..STREETS.len())]),
                addressline2: String::new(),
                suburb: suburb.into(),
                state: state.into(),
                postcode: postcode.into(),
                country: "Australia".into(),
            },
            archived: rng.gen_bool(0.05),
            postable: rng.gen_bool(0.3),
            externalid: String::new(),
            org_id: store.orgs[rng.gen_range(0..store.orgs.len())].id.clone(),
            created_ms: created,
            updated_ms: updated,
            contacts,
        };
        store.lastupdate.push(super::model::LastUpdate {
            zonename: "clients".into(),
            zoneid: client.clientid.clone(),
            updated_ms: updated,
        });
        if rng.gen_bool(0.5) {
            store.clientnotes.push(ClientNote {
                noteid: new_id(ids),
                clientid: client.clientid.clone(),
                content: NOTES[rng.gen_range(0..NOTES.len())].into(),
                filter: "Internal Only".into(),
                sticky: false,
                user_id: staff[0].clone(),
                created_ms: updated,
            });
        }
        for _ in 0..rng.gen_range(0..3) {
            let requested = created + rng.gen_range(0..30) * DAY;
            let requested = requested.min(now_ms - 120_000);
            let notes = (0..rng.gen_range(0..3))
                .map(|k| TaskNote {
                    noteid: new_id(ids),
                    content: NOTES[rng.gen_range(0..NOTES.len())].into(),
                    filter: "Internal Only".into(),
                    sticky: false,
                    user_id: staff[rng.gen_range(0..staff.len())].clone(),
                    posted_ms: requested + (k + 1) * 3_600_000,
                })
                .collect::<Vec<_>>();
            let status = ["notstarted", "inprogress", "pending", "completed"][rng.gen_range(0..4)];
            let updated = notes.last().map_or(requested, |n| n.posted_ms).min(now_ms - 60_000);
            store.next_jobnumber += 1;
            let task = Task {
                taskid: new_id(ids),
                jobnumber: store.next_jobnumber,
                client_id: client.clientid.clone(),
                taskname: JOBS[rng.gen_range(0..JOBS.len())].into(),
                description: format!("Job at {}, {suburb} {state}", client.address.addressline1),
                status: status.into(),
                substatus_id: String::new(),
                org_id: client.org_id.clone(),
                tasktype_id: store.task_types[rng.gen_range(0..store.task_types.len())].id.clone(),
                contactname: format!("{first} {last}"),
                contactphone: client.mobile.clone(),
                custon: String::new(),
                linkprocessed: rng.gen_bool(0.5),
                duedate_ms: requested + 7 * DAY,
                requested_ms: requested,
                completed_ms: (status == "completed").then_some(updated),
                created_ms: requested,
                updated_ms: updated,
                notes,
            };
            store.lastupdate.push(super::model::LastUpdate {
                zonename: "tasks".into(),
                zoneid: task.taskid.clone(),
                updated_ms: updated,
            });
            store.tasks.push(task);
        }
        store.clients.push(client);
    }
    store.lastupdate.sort_by_key(|r| r.updated_ms);
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::rng_for;

    #[test]
    fn abns_pass_the_ato_checksum() {
        let mut rng = rng_for(Some(3), 1);
        for _ in 0..50 {
            let abn = abn(&mut rng);
            assert!(abn_is_valid(&abn), "{abn}");
        }
        assert!(abn_is_valid("51 824 753 556"));
        assert!(!abn_is_valid("51 824 753 557"));
    }
}
