//! Realistic-looking fake people for seeding, drawn from a caller's (seeded) RNG. Emails use the
//! reserved example domains and phones the fictional 555-01xx style ranges, so nothing real leaks.

use rand::seq::SliceRandom;
use rand::Rng;

pub const FIRST_NAMES: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Amelia",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Alexander",
    "Emily",
    "Daniel",
    "Ella",
    "Matthew",
    "Chloe",
    "Jack",
    "Grace",
    "Samuel",
    "Zoe",
    "David",
    "Nora",
    "Joseph",
    "Lily",
    "Carter",
    "Hannah",
    "Owen",
    "Aria",
    "Wyatt",
    "Layla",
    "John",
    "Mateo",
    "Sofia",
    "Joao",
    "Ines",
    "Tiago",
    "Beatriz",
    "Rui",
    "Marta",
];

pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Silva",
    "Santos",
    "Ferreira",
    "Pereira",
    "Costa",
    "O'Brien",
    "Murphy",
    "Kelly",
];

pub const COMPANIES: &[&str] = &[
    "Acme Plumbing",
    "Bright Spark Electrical",
    "Northwind Traders",
    "Blue Harbor Roofing",
    "Summit Landscaping",
    "Evergreen HVAC",
    "Redwood Builders",
    "Cedar Lane Dental",
    "Lakeside Auto Repair",
    "Pioneer Solar",
    "Silver Birch Cleaning",
    "Oakridge Pest Control",
];

/// (city, state, postal code, phone area code)
pub const PLACES: &[(&str, &str, &str, &str)] = &[
    ("Austin", "TX", "78701", "512"),
    ("Denver", "CO", "80202", "303"),
    ("Portland", "OR", "97205", "503"),
    ("Columbus", "OH", "43215", "614"),
    ("Raleigh", "NC", "27601", "919"),
    ("Tampa", "FL", "33602", "813"),
    ("Phoenix", "AZ", "85004", "602"),
    ("Madison", "WI", "53703", "608"),
    ("Boise", "ID", "83702", "208"),
    ("Richmond", "VA", "23219", "804"),
];

pub const STREETS: &[&str] = &[
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Pine St",
    "Elm St",
    "Washington Ave",
    "Lake Rd",
    "Hillcrest Dr",
    "Park Blvd",
];

pub const TAGS: &[&str] = &[
    "lead",
    "customer",
    "vip",
    "newsletter",
    "referral",
    "website",
    "facebook ad",
    "follow up",
    "quote sent",
    "maintenance plan",
];

pub const TIMEZONES: &[&str] = &[
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/New_York",
    "America/Phoenix",
];

pub const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

pub fn pick<'a, R: Rng>(r: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(r).copied().unwrap_or("")
}

/// An E.164 US number in the 555 exchange, e.g. `+15125550147`.
pub fn phone<R: Rng>(r: &mut R, area: &str) -> String {
    format!("+1{area}555{:04}", r.gen_range(0..10_000))
}

/// `first.last42@example.com`, lower case, ASCII only.
pub fn email<R: Rng>(r: &mut R, first: &str, last: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase()
    };
    format!(
        "{}.{}{}@{}",
        clean(first),
        clean(last),
        r.gen_range(1..1000),
        pick(r, EMAIL_DOMAINS)
    )
}

/// `1234 Oak Ave`
pub fn street_address<R: Rng>(r: &mut R) -> String {
    format!("{} {}", r.gen_range(10..9999), pick(r, STREETS))
}

/// Up to `max` distinct tags.
pub fn tags<R: Rng>(r: &mut R, max: usize) -> Vec<String> {
    let n = r.gen_range(0..=max);
    TAGS.choose_multiple(r, n).map(|s| s.to_string()).collect()
}
