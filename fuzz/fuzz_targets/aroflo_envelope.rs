//! AroFlo answers, JSON or XML or neither: the envelope parser and `postresults` reader directly,
//! then the connector reading or writing (the first line picks the operation, see `ops`) with
//! the rest of the input as its HTTP answers. A typed error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tether_abi::{OpenRequest, Plugin};
use tether_aroflo::{envelope, Aroflo};
use tether_fuzz::{fields, ops, responses, ScriptedHost};

const NOW_MS: i64 = 1_769_904_000_000; // 2026-02-01

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (op, rest) = text.split_once('\n').unwrap_or((text, ""));
    let answers = responses(rest);
    for answer in &answers {
        if let Ok(zone_response) = envelope::parse(answer) {
            for zone in ["clients", "tasks", "notes"] {
                let _ = envelope::post_results(zone, &zone_response);
            }
        }
    }
    let host = ScriptedHost::new(answers, &[], NOW_MS);
    let config = fields(json!({
        "base_url": "http://127.0.0.1:9/",
        "uencoded": "u", "pencoded": "p", "org_encoded": "o", "secret_key": "s",
        "default_org_id": "org", "default_task_type_id": "tt",
    }));
    let aroflo = match Aroflo::open(
        host.host(),
        OpenRequest {
            instance: "aroflo".into(),
            config,
        },
    ) {
        Ok(aroflo) => aroflo,
        Err(e) => panic!("the fixed config opens: {e:?}"),
    };
    let input = fields(json!({
        "clientname": "Ana & Filhos <Lda> ]]>", "firstname": "Ana", "surname": "Silva", "email": "a@b.pt",
        "phone": "+351912345678", "taskname": "Fix the gate", "description": "Gate code 4821",
        "content": "A note", "body": "A note", "status": "Completed",
    }));
    ops::run(&aroflo, op, &input);
});
