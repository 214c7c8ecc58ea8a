//! GHL webhook deliveries (headers and body) through the connector's `webhook`, as `tether run`
//! calls it: refused or turned into events, never a panic. A `x-fuzz-sign` header makes the
//! harness sign the body with the configured key, so the fuzzer reaches the checks behind the
//! signature (timestamp, replay, payload shape) too. The key, timestamp and RSA parsers are fed
//! the body as well.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tether_abi::{Connector, OpenRequest, Plugin, WebhookRequest};
use tether_fuzz::{fields, message, ScriptedHost};
use tether_ghl::connector::Ghl;
use tether_ghl::webhook;

/// 2021-11-26T12:41:02.193Z, the time of the GHL examples in the seeds.
const NOW_MS: i64 = 1_637_930_462_193;

fuzz_target!(|data: &[u8]| {
    let Some((mut headers, body)) = message(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&[7u8; 32]);
    if let Some(at) = headers.iter().position(|(n, _)| n.eq_ignore_ascii_case("x-fuzz-sign")) {
        headers.remove(at);
        let signature = STANDARD.encode(key.sign(body.as_bytes()).to_bytes());
        headers.push(("x-ghl-signature".into(), signature));
    }
    let _ = webhook::parse_rfc3339_ms(&body);
    let _ = webhook::parse_ed25519_key(&body);
    let _ = webhook::parse_rsa_key(&body);
    let host = ScriptedHost::new(Vec::new(), &[], NOW_MS);
    let config = fields(json!({
        "location_id": "ve9EPM428h8vShlRW1KT",
        "private_token": "pit-fuzz",
        "webhook_public_key": STANDARD.encode(key.verifying_key().to_bytes()),
        "allow_legacy_rsa_webhooks": true,
    }));
    let ghl = match Ghl::open(
        host.host(),
        OpenRequest {
            instance: "ghl".into(),
            config,
        },
    ) {
        Ok(ghl) => ghl,
        Err(e) => panic!("the fixed config opens: {e:?}"),
    };
    let request = WebhookRequest {
        headers,
        body,
        received_at_ms: NOW_MS,
    };
    if let Ok(events) = ghl.webhook(request) {
        for event in events {
            assert!(!event.record.id.is_empty(), "an event without a record id");
            assert!(
                ["contacts", "tasks", "notes"].contains(&event.stream.as_str()),
                "an event for stream {}",
                event.stream
            );
        }
    }
});
