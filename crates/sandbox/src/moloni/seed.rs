//! A realistic Portuguese company: customers with accented names, valid NIFs, +351 phones in the
//! local formats people type, some without e-mail, a few Spanish customers, and FT invoices.

use super::model::{Customer, Store};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map, Value};

pub const FIRST_NAMES: &[&str] = &[
    "João",
    "Maria",
    "José",
    "Ana",
    "António",
    "Inês",
    "Francisco",
    "Beatriz",
    "Gonçalo",
    "Leonor",
    "Tomás",
    "Conceição",
    "Luís",
    "Mariana",
    "Sebastião",
    "Matilde",
    "Rui",
    "Joana",
    "Fábio",
    "Lúcia",
    "André",
    "Sónia",
    "Simão",
    "Patrícia",
    "Vítor",
    "Graça",
    "Nuno",
    "Teresa",
    "Hélder",
    "Célia",
];
pub const LAST_NAMES: &[&str] = &[
    "Silva",
    "Santos",
    "Ferreira",
    "Pereira",
    "Oliveira",
    "Costa",
    "Rodrigues",
    "Martins",
    "Jesus",
    "Sousa",
    "Fernandes",
    "Gonçalves",
    "Gomes",
    "Lopes",
    "Marques",
    "Alves",
    "Almeida",
    "Ribeiro",
    "Pinto",
    "Carvalho",
    "Teixeira",
    "Moreira",
    "Correia",
    "Mendes",
    "Nunes",
    "Soares",
    "Vieira",
    "Simões",
    "Conceição",
    "Brandão",
    "Magalhães",
    "Gusmão",
    "Araújo",
    "Lourenço",
    "Calçada",
];
const COMPANY_WORDS: &[&str] = &[
    "Construções",
    "Transportes",
    "Padaria",
    "Mármores",
    "Têxteis",
    "Cortiças",
    "Vinhos",
    "Serralharia",
    "Informática",
    "Pastelaria",
    "Metalúrgica",
    "Cerâmicas",
];
/// (city, postal code prefix, landline area code).
const PLACES: &[(&str, &str, &str)] = &[
    ("Lisboa", "1100", "21"),
    ("Porto", "4000", "22"),
    ("Braga", "4700", "253"),
    ("Coimbra", "3000", "239"),
    ("Guimarães", "4835", "253"),
    ("Évora", "7000", "266"),
    ("Faro", "8000", "289"),
    ("Setúbal", "2900", "265"),
    ("Viseu", "3500", "232"),
    ("Mirandela", "5370", "278"),
    ("Sabrosa", "5060", "259"),
    ("Funchal", "9000", "291"),
];
const STREETS: &[&str] = &[
    "Rua de Santa Catarina",
    "Avenida da Liberdade",
    "Rua Augusta",
    "Largo do Município",
    "Rua Dom João IV",
    "Travessa do Carmo",
    "Rua da Conceição",
    "Avenida dos Aliados",
    "Rua Cândido dos Reis",
    "Praça da República",
];
const SPANISH: &[(&str, &str, &str)] = &[
    ("Distribuciones Núñez S.L.", "Madrid", "28013"),
    ("Muñoz y Peña S.A.", "Sevilla", "41001"),
    ("Cervecería Ibáñez S.L.", "Vigo", "36201"),
];
pub const EMAIL_DOMAINS: &[&str] = &["example.pt", "example.com", "example.org"];

/// A Portuguese NIF with its mod-11 check digit; `first` is 1–3 (people) or 5 (companies).
pub fn nif<R: Rng>(r: &mut R, first: u32) -> String {
    let mut digits = vec![first];
    digits.extend((0..7).map(|_| r.gen_range(0..10)));
    let check = nif_check_digit(&digits);
    digits.push(check);
    digits.iter().map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect()
}

/// A valid NIF whose first eight digits are `body`'s (zero-padded), for test data made in bulk.
pub fn nif_from(body: u32) -> String {
    let digits: Vec<u32> = format!("{:08}", body % 100_000_000)
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    let check = nif_check_digit(&digits);
    digits
        .iter()
        .chain(std::iter::once(&check))
        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
        .collect()
}

pub fn nif_check_digit(first_eight: &[u32]) -> u32 {
    let sum: u32 = first_eight.iter().zip((2..=9).rev()).map(|(d, w)| d * w).sum();
    match sum % 11 {
        0 | 1 => 0,
        r => 11 - r,
    }
}

/// The check Moloni applies to `vat` for Portuguese customers.
pub fn valid_nif(vat: &str) -> bool {
    let digits: Vec<u32> = vat.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 9 || vat.chars().count() != 9 || !matches!(digits[0], 1..=3 | 5..=9) {
        return false;
    }
    nif_check_digit(&digits[..8]) == digits[8]
}

/// A phone as Portuguese customers' records hold them: mobiles and landlines, with and without
/// spaces or the +351 prefix.
pub fn phone<R: Rng>(r: &mut R, area: &str) -> String {
    let mobile = format!(
        "9{}{:07}",
        ['1', '2', '3', '6'][r.gen_range(0..4)],
        r.gen_range(0..10_000_000)
    );
    let rest_len = 9 - area.len();
    let landline = format!(
        "{area}{:0width$}",
        r.gen_range(0..10u64.pow(rest_len as u32)),
        width = rest_len
    );
    let spaced = |n: &str| format!("{} {} {}", &n[0..3], &n[3..6], &n[6..9]);
    match r.gen_range(0..6) {
        0 => mobile,
        1 => spaced(&mobile),
        2 => format!("+351 {}", spaced(&mobile)),
        3 => format!("+351{mobile}"),
        4 => format!("{} {}", &landline[..area.len()], &landline[area.len()..]),
        _ => landline,
    }
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'Á' | 'Â' | 'Ã' => 'a',
            'é' | 'ê' | 'É' => 'e',
            'í' | 'Í' => 'i',
            'ó' | 'ô' | 'õ' | 'Ó' => 'o',
            'ú' | 'Ú' => 'u',
            'ç' | 'Ç' => 'c',
            'ñ' => 'n',
            c => c.to_ascii_lowercase(),
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect()
}

pub fn pick<'a, R: Rng>(r: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(r).copied().unwrap_or("")
}

fn new_customer<R: Rng>(r: &mut R, store: &Store, i: usize) -> Map<String, Value> {
    let spanish = i % 17 == 16;
    let company = !spanish && r.gen_bool(0.3);
    let (name, vat, city, zip, area, country_id) = if spanish {
        let (name, city, zip) = SPANISH[r.gen_range(0..SPANISH.len())];
        let vat = format!("B{:08}", r.gen_range(0..100_000_000u32));
        (name.to_owned(), vat, city.to_owned(), zip.to_owned(), "", 70)
    } else {
        let (city, prefix, area) = PLACES[r.gen_range(0..PLACES.len())];
        let name = if company {
            format!("{} {}, Lda.", pick(r, COMPANY_WORDS), pick(r, LAST_NAMES))
        } else {
            format!(
                "{} {} {}",
                pick(r, FIRST_NAMES),
                pick(r, LAST_NAMES),
                pick(r, LAST_NAMES)
            )
        };
        let first = if company { 5 } else { r.gen_range(1..=2) };
        let vat = nif(r, first);
        let zip = format!("{prefix}-{:03}", r.gen_range(0..1000));
        (name, vat, city.to_owned(), zip, area, 1)
    };
    let phone = if spanish {
        format!(
            "+34 6{:02} {:02} {:02} {:02}",
            r.gen_range(0..100),
            r.gen_range(0..100),
            r.gen_range(0..100),
            r.gen_range(0..100)
        )
    } else {
        phone(r, area)
    };
    // About one customer in five has no e-mail: walk-in customers rarely give one.
    let email = if r.gen_bool(0.2) {
        String::new()
    } else {
        let mut words = name.split_whitespace().filter(|w| w.chars().count() > 2);
        let local = match (words.next(), words.next_back()) {
            (Some(a), Some(b)) => format!("{}.{}", ascii_lower(a), ascii_lower(b)),
            (Some(a), None) => ascii_lower(a),
            _ => format!("cliente{i}"),
        };
        format!(
            "{local}{}@{}",
            if r.gen_bool(0.3) {
                format!("{}", r.gen_range(1..99))
            } else {
                String::new()
            },
            pick(r, EMAIL_DOMAINS)
        )
    };
    let street = format!("{} {}", pick(r, STREETS), r.gen_range(1..250));
    let salesman = if r.gen_bool(0.5) {
        store.salesmen.choose(r).cloned()
    } else {
        None
    };
    let mut fields = Map::new();
    fields.insert(
        "number".into(),
        json!(format!("{:05}", store.next_customer_number + i as u64)),
    );
    fields.insert("name".into(), json!(name));
    fields.insert("vat".into(), json!(vat));
    fields.insert("address".into(), json!(street));
    fields.insert("city".into(), json!(city));
    fields.insert("zip_code".into(), json!(zip));
    fields.insert("country_id".into(), json!(country_id));
    fields.insert("email".into(), json!(email));
    fields.insert("phone".into(), json!(phone));
    fields.insert("language_id".into(), json!(if country_id == 1 { 1 } else { 2 }));
    fields.insert(
        "maturity_date_id".into(),
        json!(if r.gen_bool(0.5) { store.maturity_dates[0].0 } else { 0 }),
    );
    fields.insert(
        "payment_method_id".into(),
        json!(store.payment_methods[r.gen_range(0..store.payment_methods.len())].0),
    );
    fields.insert("salesman_id".into(), json!(salesman.map_or(0, |s| s.0)));
    if r.gen_bool(0.1) {
        fields.insert(
            "notes".into(),
            json!("Cliente habitual; prefere contacto por telefone."),
        );
    }
    fields
}

/// Builds the seeded store: `customers` customers created over the last two years, and about
/// `invoices` invoices on them over the last 90 days.
pub fn build<R: Rng>(mut store: Store, r: &mut R, customers: usize, invoices: usize, now_ms: i64) -> Store {
    const DAY: i64 = 86_400_000;
    let mut created: Vec<i64> = (0..customers).map(|_| now_ms - r.gen_range(DAY..730 * DAY)).collect();
    created.sort_unstable();
    let mut emails = std::collections::HashSet::new();
    let mut phones = std::collections::HashSet::new();
    for (i, at) in created.into_iter().enumerate() {
        let mut fields = new_customer(r, &store, i);
        // People do not share e-mail addresses or phones; two namesakes get distinct ones.
        let email = fields.get("email").and_then(Value::as_str).unwrap_or("").to_owned();
        if !email.is_empty() && !emails.insert(email.clone()) {
            let unique = email.replacen('@', &format!(".{i}@"), 1);
            emails.insert(unique.clone());
            fields.insert("email".into(), json!(unique));
        }
        let digits: String = fields
            .get("phone")
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let local = digits.trim_start_matches("351").to_owned();
        if !phones.insert(local) {
            fields.insert("phone".into(), json!(format!("96{:07}", i)));
        }
        let id = store.next_customer_id;
        store.next_customer_id += r.gen_range(1..40);
        store.customers.insert(
            id,
            Customer {
                id,
                fields,
                modified_ms: at / 1000 * 1000,
            },
        );
    }
    store.next_customer_number += customers as u64;
    let ids: Vec<u64> = store.customers.keys().copied().collect();
    let mut issued: Vec<i64> = (0..invoices).map(|_| now_ms - r.gen_range(0..90 * DAY)).collect();
    issued.sort_unstable();
    for at in issued {
        let Some(customer) = ids.choose(r).copied() else { break };
        let lines = (0..r.gen_range(1..4))
            .map(|_| json!({"name": pick(r, &["Serviço de manutenção", "Caixa de vinho", "Cortiça natural", "Consultoria"]), "qty": r.gen_range(1..5), "price": (r.gen_range(500..50_000) as f64) / 100.0, "tax_id": store.vat_tax_id}))
            .collect::<Vec<_>>();
        let day = at / DAY * DAY;
        let doc = store.new_invoice(customer, day, day + 30 * DAY, &lines, 1, at / 1000 * 1000);
        if let Ok(doc) = doc {
            store.documents.insert(doc.id, doc);
        }
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_nifs_pass_the_check_and_typos_fail_it() {
        assert_eq!(nif_from(12_345_678), "123456789");
        assert!(valid_nif(&nif_from(50_000_001)));
        let mut r = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let n = nif(&mut r, 2);
            assert!(valid_nif(&n), "{n}");
        }
        assert!(valid_nif("999999990"));
        assert!(valid_nif("123456789"));
        assert!(!valid_nif("123456788"));
        assert!(!valid_nif("12345678"));
        assert!(!valid_nif("B12345678"));
    }

    #[test]
    fn phones_use_local_formats() {
        let mut r = rand::rngs::StdRng::seed_from_u64(4);
        let phones: Vec<String> = (0..60).map(|_| phone(&mut r, "22")).collect();
        assert!(phones.iter().any(|p| p.starts_with("+351")));
        assert!(phones.iter().any(|p| p.contains(' ') && !p.starts_with('+')));
        for p in &phones {
            let digits: String = p.chars().filter(char::is_ascii_digit).collect();
            assert!(
                digits.len() == 9 || (digits.len() == 12 && digits.starts_with("351")),
                "{p}"
            );
        }
    }
}
