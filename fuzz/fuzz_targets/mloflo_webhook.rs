//! MLOFLO webhook deliveries (headers and body) through the plugin's `webhook`: refused or turned
//! into events, never a panic. A `x-fuzz-sign` header makes the harness sign `timestamp.body`
//! with the configured secret, so the checks behind the signature are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tether_abi::{Connector, OpenRequest, Plugin, WebhookRequest};
use tether_fuzz::{fields, message, ScriptedHost};
use tether_mloflo::{api, webhook, Mloflo};

const NOW_MS: i64 = 1_800_000_000_000;
const SECRET: &str = "whsec_fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((mut headers, body)) = message(data) else {
        return;
    };
    if let Some(at) = headers.iter().position(|(n, _)| n.eq_ignore_ascii_case("x-fuzz-sign")) {
        headers.remove(at);
        let timestamp = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(api::H_TIMESTAMP))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        headers.push((api::H_SIGNATURE.into(), webhook::sign(SECRET, &timestamp, &body)));
    }
    let host = ScriptedHost::new(Vec::new(), &[], NOW_MS);
    let config = fields(json!({
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "mlo_test_fuzz",
        "webhook_secret": SECRET,
    }));
    let mloflo = match Mloflo::open(
        host.host(),
        OpenRequest {
            instance: "mloflo".into(),
            config,
        },
    ) {
        Ok(mloflo) => mloflo,
        Err(e) => panic!("the fixed config opens: {e:?}"),
    };
    let request = WebhookRequest {
        headers,
        body,
        received_at_ms: NOW_MS,
    };
    if let Ok(events) = mloflo.webhook(request) {
        for event in events {
            assert!(!event.stream.is_empty(), "an event without a stream");
        }
    }
});
