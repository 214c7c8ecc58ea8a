//! Records per second through a 10-field flow mapping: the real mapping runtime
//! (`tether_core::mapping`), compiled once from a flow's `[mapping]` table like
//! `config/flows/moloni-customers.toml` (a name split, an E.164 phone, a lookup, a tag rule),
//! then applied to a batch of varied customer records. `cargo xtask bench` reports records/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use tether_abi::Record;
use tether_core::mapping::{Mapping, MappingOptions, MappingSpec};

/// Records mapped per benchmark iteration (`cargo xtask bench` divides by it).
const BATCH: usize = 100;

const SPEC: &str = r#"
[fields]
firstName = "name | first_name"
lastName = "name | last_name"
email = "(email | trim | lower) if email else none"
phone = "phone | e164 if phone else none"
address1 = "address"
city = "city"
postalCode = "zip_code"
country = "country_id | lookup('countries')"
source = "'moloni'"
"custom.NIF" = "vat"

[lookups.countries]
1 = "PT"
70 = "ES"

[[tags]]
tag = "pt"
when = "country_id == 1"
"#;

const NAMES: &[&str] = &[
    "Ana Sofia Conceição",
    "Rui Pedro Santos",
    "Maria Alves",
    "João",
    "Empresa 4 Lda",
];

fn records() -> Vec<Record> {
    (0..BATCH)
        .map(|i| {
            let fields = json!({
                "customer_id": 10_000 + i,
                "name": NAMES[i % NAMES.len()],
                "email": if i % 7 == 0 { String::new() } else { format!(" Cliente.{i}@Example.PT ") },
                "phone": if i % 2 == 0 { format!("91{:07}", i) } else { format!("+34 612 {:03} {:03}", i, i) },
                "address": format!("Rua de Exemplo {i}"),
                "city": "Lisboa",
                "zip_code": "1100-048",
                "country_id": if i % 2 == 0 { 1 } else { 70 },
                "vat": format!("{:09}", 500_000_000 + i),
                "notes": "",
            });
            let serde_json::Value::Object(fields) = fields else {
                unreachable!("a JSON object literal")
            };
            Record {
                id: (10_000 + i).to_string(),
                updated_at: Some("2026-03-04T12:00:00Z".into()),
                deleted: false,
                parent: None,
                event: None,
                fields,
            }
        })
        .collect()
}

fn mapping(c: &mut Criterion) {
    let spec: MappingSpec = toml::from_str(SPEC).expect("mapping table");
    let options = MappingOptions {
        default_region: Some("PT".into()),
        source_fields: None,
    };
    let mapping = Mapping::compile(&spec, &options).expect("the mapping compiles");
    let records = records();
    for record in &records {
        let fields = mapping
            .apply(record, "2026-05-01T09:30:00Z")
            .expect("every record maps");
        assert!(
            fields["phone"].as_str().is_some_and(|p| p.starts_with('+')),
            "{fields:?}"
        );
        assert!(
            fields.contains_key("firstName") && fields.contains_key("country"),
            "{fields:?}"
        );
    }

    let mut group = c.benchmark_group("mapping_10_fields");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("apply_batch", |b| {
        b.iter(|| {
            for record in &records {
                let _ = black_box(mapping.apply(black_box(record), "2026-05-01T09:30:00Z"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
