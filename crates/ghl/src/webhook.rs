//! Inbound webhooks (NOTES §6): signature verification (Ed25519 `x-ghl-signature`, legacy RSA
//! `x-wh-signature`), stale-timestamp and replay refusal, and parsing into [`WebhookEvent`]s.
//!
//! The replay set here is bounded and in memory: it stops a burst of replays cheaply. The
//! durable de-duplication on `webhookId` is the engine's job.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use ed25519_dalek::{Signature as EdSignature, Verifier as _, VerifyingKey};
use rsa::pkcs1v15;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use serde_json::Value;
use sha2::Sha256;
use tether_abi::{EventInfo, Fields, Record, RecordRef, WebhookEvent};

use crate::error::GhlError;

/// The RSA key GHL published for `x-wh-signature` (from its WebhookAuthentication doc).
pub const GHL_RSA_PUBLIC_KEY_PEM: &str = include_str!("webhook-rsa-public-key.pem");

/// Deliveries older (or further in the future) than this are refused (NOTES §6.1).
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// How many recent `webhookId`s are remembered.
pub const SEEN_CAPACITY: usize = 10_000;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

fn refused(why: impl Into<String>) -> GhlError {
    GhlError::Webhook(why.into())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

/// The base64 body of a PEM block, or the text itself when it is not PEM.
fn pem_body(text: &str) -> String {
    if text.contains("-----BEGIN") {
        text.lines()
            .filter(|l| !l.trim_start().starts_with("-----"))
            .map(str::trim)
            .collect()
    } else {
        text.split_whitespace().collect()
    }
}

/// Parses the Ed25519 verification key in any form GHL's SDK accepts: PEM, base64 or hex, of
/// either the raw 32 bytes or the SPKI DER (NOTES §6.3).
pub fn parse_ed25519_key(text: &str) -> Result<VerifyingKey, GhlError> {
    let text = text.trim();
    let body = pem_body(text);
    let bytes = if !text.contains("-----BEGIN") && (body.len() == 64 || body.len() == 88) {
        decode_hex(&body).or_else(|| STANDARD.decode(&body).ok())
    } else {
        STANDARD.decode(&body).or_else(|_| URL_SAFE.decode(&body)).ok()
    }
    .ok_or_else(|| GhlError::Config("webhook_public_key is not PEM, base64 or hex".into()))?;
    let raw: &[u8] = match bytes.len() {
        32 => &bytes,
        44 if bytes.starts_with(&ED25519_SPKI_PREFIX) => &bytes[12..],
        n => {
            return Err(GhlError::Config(format!(
                "webhook_public_key is {n} bytes; expected an Ed25519 key (32 raw or 44 SPKI)"
            )))
        }
    };
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| GhlError::Config("webhook_public_key has the wrong length".into()))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| GhlError::Config(format!("webhook_public_key: {e}")))
}

pub fn parse_rsa_key(pem: &str) -> Result<RsaPublicKey, GhlError> {
    RsaPublicKey::from_public_key_pem(pem.trim()).map_err(|e| GhlError::Config(format!("RSA webhook key: {e}")))
}

/// Milliseconds since the epoch of an RFC 3339 / ISO-8601 UTC time
/// (`2021-11-26T12:41:02.193Z`, offsets allowed).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if s.get(4..5)? != "-" || s.get(7..8)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (h, m) = (
                rest.get(1..3)?.parse::<i64>().ok()?,
                rest.get(4..6)?.parse::<i64>().ok()?,
            );
            if rest.len() != 6 || rest.get(3..4)? != ":" {
                return None;
            }
            sign * (h * 60 + m)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Some(seconds * 1000 + millis)
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Records `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// Verifies deliveries for one connector instance.
#[derive(Debug)]
pub struct WebhookVerifier {
    ed25519: Option<VerifyingKey>,
    /// Set only when legacy RSA deliveries are allowed.
    rsa: Option<RsaPublicKey>,
    seen: Mutex<Seen>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

impl WebhookVerifier {
    pub fn new(ed25519: Option<VerifyingKey>, rsa: Option<RsaPublicKey>) -> WebhookVerifier {
        WebhookVerifier {
            ed25519,
            rsa,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// From config text: the Ed25519 key (any accepted form) and whether the legacy RSA
    /// signature is accepted (against GHL's published key).
    pub fn from_config(ed25519: Option<&str>, allow_legacy_rsa: bool) -> Result<WebhookVerifier, GhlError> {
        let ed = ed25519
            .filter(|t| !t.trim().is_empty())
            .map(parse_ed25519_key)
            .transpose()?;
        let rsa = if allow_legacy_rsa {
            Some(parse_rsa_key(GHL_RSA_PUBLIC_KEY_PEM)?)
        } else {
            None
        };
        Ok(WebhookVerifier::new(ed, rsa))
    }

    /// Checks the signature over the exact body bytes; the Ed25519 header wins when both are
    /// present.
    pub fn verify_signature(&self, headers: &[(String, String)], body: &[u8]) -> Result<(), GhlError> {
        if let Some(signature) = header(headers, "x-ghl-signature") {
            let key = self
                .ed25519
                .as_ref()
                .ok_or_else(|| refused("x-ghl-signature received but no webhook_public_key is configured"))?;
            let bytes = STANDARD
                .decode(signature)
                .map_err(|_| refused("x-ghl-signature is not base64"))?;
            let signature = EdSignature::from_slice(&bytes).map_err(|_| refused("x-ghl-signature is not 64 bytes"))?;
            return key
                .verify(body, &signature)
                .map_err(|_| refused("x-ghl-signature does not match the body"));
        }
        if let Some(signature) = header(headers, "x-wh-signature") {
            let key = self
                .rsa
                .as_ref()
                .ok_or_else(|| refused("legacy x-wh-signature is not accepted (allow_legacy_rsa_webhooks)"))?;
            let bytes = STANDARD
                .decode(signature)
                .map_err(|_| refused("x-wh-signature is not base64"))?;
            let signature =
                pkcs1v15::Signature::try_from(bytes.as_slice()).map_err(|_| refused("x-wh-signature is malformed"))?;
            return pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
                .verify(body, &signature)
                .map_err(|_| refused("x-wh-signature does not match the body"));
        }
        Err(refused("unsigned delivery (no x-ghl-signature or x-wh-signature)"))
    }

    /// Verifies one delivery and returns its JSON: signature, then freshness of `timestamp`,
    /// then uniqueness of `webhookId` (recorded only once everything else passed).
    pub fn verify(&self, headers: &[(String, String)], body: &str, now_ms: i64) -> Result<Value, GhlError> {
        self.verify_signature(headers, body.as_bytes())?;
        let payload: Value = serde_json::from_str(body).map_err(|e| refused(format!("body is not JSON: {e}")))?;
        let timestamp = payload
            .get("timestamp")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("no timestamp"))?;
        let sent = parse_rfc3339_ms(timestamp).ok_or_else(|| refused(format!("unreadable timestamp {timestamp}")))?;
        if (now_ms - sent).abs() > MAX_AGE_MS {
            return Err(refused(format!("stale timestamp {timestamp}")));
        }
        let id = payload
            .get("webhookId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| refused("no webhookId"))?;
        if !self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            return Err(GhlError::WebhookReplay(format!("replayed webhookId {id}")));
        }
        Ok(payload)
    }
}

/// The stream an event type feeds, and whether it deletes the record.
pub fn event_stream(kind: &str) -> Option<(&'static str, bool)> {
    Some(match kind {
        "ContactCreate" | "ContactUpdate" | "ContactTagUpdate" | "ContactDndUpdate" => ("contacts", false),
        "ContactDelete" => ("contacts", true),
        "TaskCreate" | "TaskComplete" => ("tasks", false),
        "TaskDelete" => ("tasks", true),
        "NoteCreate" | "NoteUpdate" => ("notes", false),
        "NoteDelete" => ("notes", true),
        _ => return None,
    })
}

/// The events of a verified payload for `location_id`. Other locations' events (one app URL
/// receives every installed location's) and types without a stream (INSTALL, …) yield none.
pub fn parse_events(payload: &Value, location_id: &str) -> Result<Vec<WebhookEvent>, GhlError> {
    let Value::Object(map) = payload else {
        return Err(refused("body is not a JSON object"));
    };
    let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some((stream, deleted)) = event_stream(kind) else {
        return Ok(Vec::new());
    };
    if map.get("locationId").and_then(Value::as_str) != Some(location_id) {
        return Ok(Vec::new());
    }
    let id = map
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| GhlError::Decode(format!("{kind} without an id")))?;
    let webhook_id = map.get("webhookId").and_then(Value::as_str).unwrap_or_default();
    let timestamp = map.get("timestamp").and_then(Value::as_str).map(str::to_owned);
    let parent = if stream == "contacts" {
        None
    } else {
        // ISS#332: some TaskCreate payloads lack contactId; the record still syncs, unparented.
        map.get("contactId").and_then(Value::as_str).map(|contact| RecordRef {
            stream: "contacts".into(),
            id: contact.to_owned(),
        })
    };
    let mut fields: Fields = map.clone();
    for envelope in ["type", "timestamp", "webhookId"] {
        fields.remove(envelope);
    }
    // Task payloads carry no state: the event is the state. TaskComplete is a completed task;
    // TaskCreate a new, open one (GHL reports completion with its own TaskComplete). Without
    // this, a task we created in GHL would not match what we wrote (`completed = false`) and
    // its TaskCreate would not be known as our own echo.
    match kind {
        "TaskComplete" => {
            fields.entry("completed").or_insert(Value::Bool(true));
        }
        "TaskCreate" => {
            fields.entry("completed").or_insert(Value::Bool(false));
        }
        _ => {}
    }
    Ok(vec![WebhookEvent {
        stream: stream.into(),
        record: Record {
            id: id.to_owned(),
            updated_at: timestamp,
            deleted,
            parent,
            event: Some(EventInfo {
                id: format!("{webhook_id}:{kind}"),
                kind: kind.to_owned(),
            }),
            fields,
        },
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn signing_key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn signed(body: &str) -> Vec<(String, String)> {
        let signature = STANDARD.encode(signing_key().sign(body.as_bytes()).to_bytes());
        vec![("X-GHL-Signature".into(), signature)]
    }

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(Some(signing_key().verifying_key()), None)
    }

    const NOW: i64 = 1_637_930_462_193; // 2021-11-26T12:41:02.193Z

    fn body(id: &str, timestamp: &str) -> String {
        json!({"type": "NoteCreate", "locationId": "L", "id": "n1", "body": "hi", "contactId": "c1",
               "timestamp": timestamp, "webhookId": id})
        .to_string()
    }

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_rfc3339_ms("2021-11-26T12:41:02.193Z"), Some(NOW));
        assert_eq!(parse_rfc3339_ms("2021-11-26T13:41:02.193+01:00"), Some(NOW));
        assert_eq!(parse_rfc3339_ms("2021-11-26T12:41:02Z"), Some(NOW - 193));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.5Z"), Some(500));
        for bad in [
            "",
            "2021-11-26",
            "2021-13-01T00:00:00Z",
            "2021-11-26T12:41:02",
            "x021-11-26T12:41:02Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_forms_all_parse_to_the_same_key() {
        let raw = signing_key().verifying_key().to_bytes();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let spki = STANDARD.encode(&der);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{spki}\n-----END PUBLIC KEY-----\n");
        for form in [STANDARD.encode(raw), spki, hex, pem] {
            assert_eq!(parse_ed25519_key(&form).expect(&form).to_bytes(), raw);
        }
        // The SPKI published in third-party code parses too.
        assert!(parse_ed25519_key("MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=").is_ok());
        assert!(parse_ed25519_key("not a key").is_err());
        assert!(parse_ed25519_key(&STANDARD.encode([1u8; 31])).is_err());
    }

    #[test]
    fn the_published_rsa_key_parses() {
        assert!(parse_rsa_key(GHL_RSA_PUBLIC_KEY_PEM).is_ok());
    }

    #[test]
    fn genuine_forged_stale_and_replayed() {
        let v = verifier();
        let good = body("w1", "2021-11-26T12:41:02.193Z");
        assert!(v.verify(&signed(&good), &good, NOW + 1_000).is_ok());
        // The same delivery again is a replay.
        let err = v.verify(&signed(&good), &good, NOW + 2_000).expect_err("replay");
        assert!(err.to_string().contains("replayed"), "{err}");
        // A body changed after signing.
        let tampered = good.replace("hi", "HI");
        let err = v.verify(&signed(&good), &tampered, NOW).expect_err("forged");
        assert!(err.to_string().contains("does not match"), "{err}");
        // Signed by another key.
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let fresh = body("w2", "2021-11-26T12:41:02.193Z");
        let forged = vec![(
            "x-ghl-signature".into(),
            STANDARD.encode(other.sign(fresh.as_bytes()).to_bytes()),
        )];
        assert!(v.verify(&forged, &fresh, NOW).is_err());
        // Stale: more than five minutes old. Not recorded, so it is not a "replay" either.
        let stale = body("w3", "2021-11-26T12:30:00.000Z");
        let err = v.verify(&signed(&stale), &stale, NOW).expect_err("stale");
        assert!(err.to_string().contains("stale"), "{err}");
        // Unsigned, and legacy RSA when not allowed.
        assert!(v.verify(&[], &fresh, NOW).is_err());
        let rsa_only = vec![("x-wh-signature".to_owned(), "AAAA".to_owned())];
        assert!(v
            .verify(&rsa_only, &fresh, NOW)
            .unwrap_err()
            .to_string()
            .contains("legacy"));
        // The failed attempts did not burn w2.
        assert!(v.verify(&signed(&fresh), &fresh, NOW).is_ok());
    }

    #[test]
    fn legacy_rsa_verifies_pkcs1_sha256() {
        use rsa::signature::{SignatureEncoding, Signer as _};
        // A small key keeps the test quick; verification does not depend on the size.
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).expect("key");
        let v = WebhookVerifier::new(None, Some(private.to_public_key()));
        let b = body("w8", "2021-11-26T12:41:02.193Z");
        let signature = pkcs1v15::SigningKey::<Sha256>::new(private).sign(b.as_bytes());
        let headers = vec![("x-wh-signature".to_owned(), STANDARD.encode(signature.to_bytes()))];
        assert!(v.verify(&headers, &b, NOW).is_ok());
        let tampered = b.replace("hi", "ho");
        assert!(v.verify(&headers, &tampered, NOW).is_err());
    }

    #[test]
    fn legacy_rsa_rejects_a_bad_signature() {
        let v = WebhookVerifier::from_config(None, true).expect("verifier");
        let b = body("w9", "2021-11-26T12:41:02.193Z");
        let headers = vec![("x-wh-signature".to_owned(), STANDARD.encode([0u8; 512]))];
        let err = v.verify(&headers, &b, NOW).expect_err("bad rsa");
        assert!(err.to_string().contains("x-wh-signature does not match"), "{err}");
    }

    #[test]
    fn the_seen_set_is_bounded() {
        let mut seen = Seen::default();
        for i in 0..SEEN_CAPACITY + 10 {
            assert!(seen.insert(&i.to_string()));
        }
        assert_eq!(seen.ids.len(), SEEN_CAPACITY);
        assert!(seen.insert("0"), "the oldest ids are forgotten first");
        assert!(!seen.insert(&(SEEN_CAPACITY + 9).to_string()));
    }

    #[test]
    fn example_payloads_become_records() {
        let examples = [
            (
                include_str!("../testdata/webhook-examples/ContactCreate.json"),
                "contacts",
                false,
            ),
            (
                include_str!("../testdata/webhook-examples/ContactDelete.json"),
                "contacts",
                true,
            ),
            (
                include_str!("../testdata/webhook-examples/TaskComplete.json"),
                "tasks",
                false,
            ),
            (
                include_str!("../testdata/webhook-examples/TaskCreate.json"),
                "tasks",
                false,
            ),
            (
                include_str!("../testdata/webhook-examples/NoteDelete.json"),
                "notes",
                true,
            ),
        ];
        for (text, stream, deleted) in examples {
            let mut payload: Value = serde_json::from_str(text).expect("example");
            payload["webhookId"] = json!("wh-1");
            let events = parse_events(&payload, "ve9EPM428h8vShlRW1KT").expect("events");
            assert_eq!(events.len(), 1, "{text}");
            let record = &events[0].record;
            assert_eq!((events[0].stream.as_str(), record.deleted), (stream, deleted));
            assert_eq!(record.id, payload["id"].as_str().expect("id"));
            let kind = payload["type"].as_str().expect("type");
            assert_eq!(
                record.event.as_ref().map(|e| e.id.clone()),
                Some(format!("wh-1:{kind}"))
            );
            assert!(!record.fields.contains_key("type"));
            if stream != "contacts" {
                assert_eq!(record.parent.as_ref().map(|p| p.stream.as_str()), Some("contacts"));
            }
            // A completed task says so, and a new one that it is open, though GHL's payloads do not.
            let state = match kind {
                "TaskComplete" => Some(true),
                "TaskCreate" => Some(false),
                _ => None,
            };
            assert_eq!(record.fields.get("completed").and_then(Value::as_bool), state);
            // Another location's event is not this instance's.
            assert!(parse_events(&payload, "other").expect("events").is_empty());
        }
        let install = json!({"type": "INSTALL", "locationId": "L", "appId": "a"});
        assert!(parse_events(&install, "L").expect("events").is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A body and one change to it: a byte replaced, inserted or removed (kept UTF-8, as the
        /// server refuses other bodies before verification).
        fn mutated() -> impl Strategy<Value = (String, String)> {
            ("\\PC{0,40}", any::<prop::sample::Index>(), 0u8..3, "\\PC").prop_map(|(note, at, how, c)| {
                let original = body("w-prop", "2021-11-26T12:41:02.193Z").replace("hi", &note);
                let mut chars: Vec<char> = original.chars().collect();
                let i = at.index(chars.len());
                let c = c.chars().next().unwrap_or('x');
                match how {
                    0 if chars[i] != c => chars[i] = c,
                    0 => chars[i] = if c == 'y' { 'z' } else { 'y' },
                    1 => chars.insert(i, c),
                    _ => {
                        chars.remove(i);
                    }
                }
                (original, chars.into_iter().collect())
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn any_change_to_a_signed_body_is_refused((original, changed) in mutated()) {
                let v = verifier();
                let headers = signed(&original);
                prop_assert!(v.verify_signature(&headers, original.as_bytes()).is_ok());
                let err = v.verify_signature(&headers, changed.as_bytes());
                prop_assert!(err.is_err(), "a changed body verified: {:?}", changed);
            }

            #[test]
            fn arbitrary_deliveries_are_refused_not_panics(
                headers in prop::collection::vec(("(x-ghl-signature|x-wh-signature|X-GHL-Signature|\\PC{0,8})", "\\PC{0,90}"), 0..3),
                body in "\\PC{0,200}",
            ) {
                let v = WebhookVerifier::new(Some(signing_key().verifying_key()), None);
                let headers: Vec<(String, String)> = headers;
                // Nobody but the key's holder can sign: a made-up signature never verifies.
                prop_assert!(v.verify(&headers, &body, NOW).is_err());
            }

            #[test]
            fn timestamps_parse_or_not_without_panics(text in "(\\PC|[0-9TZ:.+-]){0,32}") {
                if let Some(ms) = parse_rfc3339_ms(&text) {
                    prop_assert!(text.trim().len() >= 20, "{text:?} parsed to {ms}");
                }
            }
        }
    }
}
