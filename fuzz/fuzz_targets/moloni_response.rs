//! Moloni answers through the plugin: the first line picks the operation (`read customers`,
//! `window invoices`, `check`, `write customer.insert`, see `ops`), the rest of the input is the
//! HTTP answers it gets, login answers included. A typed error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tether_abi::{OpenRequest, Plugin};
use tether_fuzz::{fields, ops, responses, ScriptedHost};
use tether_moloni::client::{validation_errors, SECRET_ACCESS, SECRET_EXPIRES};
use tether_moloni::Moloni;

const NOW_MS: i64 = 1_769_904_000_000; // 2026-02-01

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (op, rest) = text.split_once('\n').unwrap_or((text, ""));
    let answers = responses(rest);
    for answer in &answers {
        if let Ok(value) = serde_json::from_str(&answer.body) {
            let _ = validation_errors(&value);
        }
    }
    // `login` in the operation starts without a stored token, so the grant answer is parsed too.
    let expires = (NOW_MS + 3_600_000).to_string();
    let secrets: &[(&str, &str)] = if op.contains("login") {
        &[]
    } else {
        &[(SECRET_ACCESS, "token"), (SECRET_EXPIRES, &expires)]
    };
    let host = ScriptedHost::new(answers, secrets, NOW_MS);
    let config = fields(json!({
        "base_url": "http://127.0.0.1:9/v1",
        "client_id": "c", "client_secret": "s", "username": "u@x.pt", "password": "p",
        "company_id": 5, "default_payment_method_id": 1,
    }));
    let moloni = match Moloni::open(
        host.host(),
        OpenRequest {
            instance: "moloni_pt".into(),
            config,
        },
    ) {
        Ok(moloni) => moloni,
        Err(e) => panic!("the fixed config opens: {e:?}"),
    };
    let input = fields(json!({
        "name": "Ana Conceição", "vat": "123456789", "email": "a@b.pt", "phone": "912345678",
        "country_id": 1, "address": "Rua A", "zip_code": "1000-001", "city": "Lisboa",
    }));
    let op = op.replace(" login", "");
    ops::run(&moloni, &op, &input);
});
