//! Inbound webhooks: `X-Mloflo-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`,
//! a timestamp within five minutes of the host's clock, and each event id accepted once.
//!
//! The seen-id set is in memory and bounded: with the five-minute window, an id older than the
//! window is refused as stale anyway, so forgetting the oldest ids loses nothing once the set
//! holds more than five minutes of traffic.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tether_abi::{EventInfo, Record, WebhookEvent, WebhookRequest};

use crate::api;
use crate::error::MlofloError;
use crate::records::{object_record, Kind};

const SEEN_CAPACITY: usize = 50_000;

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// False if the id was already there.
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

pub struct WebhookVerifier {
    secret: Option<String>,
    seen: Mutex<Seen>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// `v1=<hex>` signature of `timestamp.body`; what the emulator and tests sign with.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let digest = mac(secret, timestamp, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{}{digest}", api::SIGNATURE_VERSION)
}

/// HMAC takes keys of any length, so this is `None` only in theory.
fn mac(secret: &str, timestamp: &str, body: &str) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Some(mac)
}

impl WebhookVerifier {
    pub fn new(secret: Option<String>) -> Self {
        WebhookVerifier {
            secret,
            seen: Mutex::new(Seen::default()),
        }
    }

    pub fn configured(&self) -> bool {
        self.secret.is_some()
    }

    /// Checks signature, age and novelty; returns the parsed body.
    pub fn verify(&self, request: &WebhookRequest) -> Result<Value, MlofloError> {
        let refused = |why: String| MlofloError::Webhook(why);
        let secret = self
            .secret
            .as_deref()
            .ok_or_else(|| refused("no `webhook_secret` is configured".into()))?;
        let headers = &request.headers;
        let timestamp = header(headers, api::H_TIMESTAMP).ok_or_else(|| refused(format!("no {}", api::H_TIMESTAMP)))?;
        let signatures =
            header(headers, api::H_SIGNATURE).ok_or_else(|| refused(format!("no {}", api::H_SIGNATURE)))?;
        let event_id = header(headers, api::H_EVENT_ID).ok_or_else(|| refused(format!("no {}", api::H_EVENT_ID)))?;
        // Several signatures may be sent while a secret rotates; one valid is enough.
        let valid = signatures
            .split(',')
            .filter_map(|s| s.trim().strip_prefix(api::SIGNATURE_VERSION))
            .filter_map(|h| hex::decode(h).ok())
            .any(|given| mac(secret, timestamp, &request.body).is_some_and(|m| m.verify_slice(&given).is_ok()));
        if !valid {
            return Err(refused("the signature does not match".into()));
        }
        let sent_secs: i64 = timestamp
            .parse()
            .map_err(|_| refused(format!("`{timestamp}` is not a timestamp in seconds")))?;
        let skew = (request.received_at_ms / 1000 - sent_secs).abs();
        if skew > api::WEBHOOK_TOLERANCE_SECS {
            return Err(refused(format!("stale: signed {skew} s away from now")));
        }
        let body: Value = serde_json::from_str(&request.body).map_err(|e| refused(format!("body is not JSON: {e}")))?;
        if body["id"].as_str() != Some(event_id) {
            return Err(refused("the event id in the body differs from the header's".into()));
        }
        if !self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(event_id) {
            return Err(refused(format!("replayed event {event_id}")));
        }
        Ok(body)
    }
}

/// The records an event carries: its object, and for a stage change the milestone as well.
pub fn parse_event(body: &Value) -> Result<Vec<WebhookEvent>, MlofloError> {
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let kind = body["type"]
        .as_str()
        .ok_or_else(|| MlofloError::Input("webhook without `type`".into()))?
        .to_owned();
    let Some((stream, deleted)) = api::event_stream(&kind) else {
        // An event type this plugin does not know yet is not an error of the sender.
        return Ok(Vec::new());
    };
    let mut data = match &body["data"] {
        Value::Object(data) => data.clone(),
        _ => return Err(MlofloError::Input(format!("{kind} event without a `data` object"))),
    };
    let milestone = data.remove(api::F_MILESTONE);
    let event = EventInfo { id, kind: kind.clone() };
    let mut events = Vec::new();
    let mut record: Record = object_record(Kind::of_stream(stream), data)?;
    record.deleted |= deleted;
    record.event = Some(event.clone());
    events.push(WebhookEvent {
        stream: stream.to_owned(),
        record,
    });
    if kind == api::STAGE_CHANGED {
        if let Some(Value::Object(milestone)) = milestone {
            let mut record = object_record(Kind::Milestone, milestone)?;
            record.event = Some(event);
            events.push(WebhookEvent {
                stream: "milestones".into(),
                record,
            });
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn request(secret: &str, timestamp: i64, event_id: &str, body: &Value) -> WebhookRequest {
        let body = body.to_string();
        let ts = timestamp.to_string();
        WebhookRequest {
            headers: vec![
                ("x-mloflo-event-id".into(), event_id.into()),
                ("X-Mloflo-Timestamp".into(), ts.clone()),
                (
                    "X-Mloflo-Signature".into(),
                    format!("v1=00ff, {}", sign(secret, &ts, &body)),
                ),
            ],
            body,
            received_at_ms: NOW_MS,
        }
    }

    fn event(id: &str, kind: &str) -> Value {
        json!({"id": id, "type": kind, "occurred_at": "2027-01-15T08:00:00Z",
               "data": {"id": "t1", "contact_id": "c1", "updated_at": "2027-01-15T08:00:00Z", "deleted_at": "2027-01-15T08:00:00Z"}})
    }

    #[test]
    fn signed_fresh_new_events_pass_and_nothing_else_does() {
        let verifier = WebhookVerifier::new(Some("s3cret".into()));
        let now = NOW_MS / 1000;
        let body = event("evt_1", "task.deleted");
        let parsed = verifier
            .verify(&request("s3cret", now - 30, "evt_1", &body))
            .expect("genuine");
        let events = parse_event(&parsed).expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].stream, "tasks");
        assert!(events[0].record.deleted);
        assert_eq!(events[0].record.parent.as_ref().map(|p| p.id.as_str()), Some("c1"));
        let refusal = |r: WebhookRequest| verifier.verify(&r).expect_err("refused").to_string();
        assert!(refusal(request("s3cret", now - 30, "evt_1", &body)).contains("replayed"));
        assert!(refusal(request("other", now, "evt_2", &event("evt_2", "task.updated"))).contains("signature"));
        assert!(refusal(request("s3cret", now + 301, "evt_3", &event("evt_3", "task.updated"))).contains("stale"));
        assert!(refusal(request("s3cret", now, "evt_4", &event("evt_5", "task.updated"))).contains("differs"));
        // A stale or forged delivery is not recorded, so the genuine one still passes later.
        assert!(verifier
            .verify(&request("s3cret", now, "evt_3", &event("evt_3", "task.updated")))
            .is_ok());
        let unconfigured = WebhookVerifier::new(None);
        assert!(unconfigured
            .verify(&request("s3cret", now, "evt_9", &event("evt_9", "task.updated")))
            .is_err());
        assert!(parse_event(&event("evt_6", "deal.won"))
            .expect("unknown type")
            .is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// A validly signed delivery verifies; the same signature over a body with one
            /// character replaced, inserted or removed, or under another timestamp, never does.
            #[test]
            fn any_change_to_a_signed_delivery_is_refused(
                note in "\\PC{0,40}",
                at in any::<prop::sample::Index>(),
                how in 0u8..4,
                c in any::<char>(),
            ) {
                let now = NOW_MS / 1000;
                let mut body = event("evt_p", "note.updated");
                body["data"]["body"] = Value::String(note);
                let genuine = request("s3cret", now, "evt_p", &body);
                let mut changed = genuine.clone();
                let mut chars: Vec<char> = changed.body.chars().collect();
                let i = at.index(chars.len());
                match how {
                    0 => chars[i] = if chars[i] == c { if c == 'y' { 'z' } else { 'y' } } else { c },
                    1 => chars.insert(i, c),
                    2 => {
                        chars.remove(i);
                    }
                    _ => {
                        for (name, value) in &mut changed.headers {
                            if name.eq_ignore_ascii_case(api::H_TIMESTAMP) {
                                *value = (now - 1 - (i as i64 % 200)).to_string();
                            }
                        }
                    }
                }
                changed.body = chars.into_iter().collect();
                let refused = WebhookVerifier::new(Some("s3cret".into())).verify(&changed);
                prop_assert!(
                    matches!(&refused, Err(MlofloError::Webhook(why)) if why.contains("signature")),
                    "{refused:?}"
                );
                prop_assert!(WebhookVerifier::new(Some("s3cret".into())).verify(&genuine).is_ok());
            }
        }
    }
}
