//! Request signing, checked as AroFlo does: over the raw query string or form body received
//! (never a re-encoding), the headers as sent, and a timestamp window (reference §2.2).

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha512;

/// What a client of the emulator signs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AroFloCredentials {
    pub uencoded: String,
    pub pencoded: String,
    pub org_encoded: String,
    pub secret_key: String,
}

/// A refusal: AroFlo's status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: i64,
    pub message: &'static str,
}

const MISSING: Refusal = Refusal {
    status: -99999,
    message: "Authentication Failed - Required headers are missing",
};
const MISMATCH: Refusal = Refusal {
    status: -99999,
    message: "Authentication Failed - Signatures do not match",
};
const EXPIRED: Refusal = Refusal {
    status: -99999,
    message: "Authentication Failed - Payload has expired",
};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Percent-decodes one Authorization value (`+` stays `+`: it is not a form body).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hmac_hex(key: &str, payload: &str) -> Option<String> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key.as_bytes()).ok()?;
    mac.update(payload.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// Checks one request. `raw` is the query string (GET) or body (POST) exactly as received.
pub fn verify(
    credentials: &AroFloCredentials,
    method: &str,
    headers: &HeaderMap,
    raw: &str,
    now_ms: i64,
    tolerance_ms: i64,
) -> Result<(), Refusal> {
    let (Some(authentication), Some(authorization), Some(timestamp), Some(accept)) = (
        header(headers, "authentication"),
        header(headers, "authorization"),
        header(headers, "afdatetimeutc"),
        header(headers, "accept"),
    ) else {
        return Err(MISSING);
    };
    let mut fields = std::collections::HashMap::new();
    for pair in authorization.split('&') {
        if let Some((key, value)) = pair.split_once('=') {
            fields.insert(key.to_owned(), decode(value));
        }
    }
    let (Some(u), Some(p), Some(org)) = (fields.get("uencoded"), fields.get("pencoded"), fields.get("orgEncoded"))
    else {
        return Err(Refusal {
            status: 1,
            message: "Login Failed - Invalid Request String",
        });
    };
    if u.is_empty() || p.is_empty() || org.is_empty() {
        return Err(Refusal {
            status: 2,
            message: "Login Failed - Invalid Username or Password",
        });
    }
    if u != &credentials.uencoded || p != &credentials.pencoded || org != &credentials.org_encoded {
        return Err(Refusal {
            status: 3,
            message: "Login Failed - Permission Denied",
        });
    }
    let Some(signature) = authentication.strip_prefix("HMAC ") else {
        return Err(MISMATCH);
    };
    let sent_at = crate::timefmt::parse_iso(timestamp).ok_or(EXPIRED)?;
    if (now_ms - sent_at).abs() > tolerance_ms {
        return Err(EXPIRED);
    }
    let mut parts = vec![method];
    if let Some(ip) = header(headers, "hostip") {
        parts.push(ip);
    }
    parts.extend(["", accept, authorization, timestamp, raw]);
    let expected = hmac_hex(&credentials.secret_key, &parts.join("+")).ok_or(MISMATCH)?;
    if !expected.eq_ignore_ascii_case(signature.trim()) {
        return Err(MISMATCH);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_published_vector_verifies_and_a_changed_byte_does_not() {
        let credentials = AroFloCredentials {
            uencoded: "test-user".into(),
            pencoded: "test-pass".into(),
            org_encoded: "test-org".into(),
            secret_key: "top-secret".into(),
        };
        let raw = "zone=lastupdate&where=and%7Czonename%7C%3D%7Ctasks&order=lastupdateutc%7Casc&page=1";
        let timestamp = "2024-05-13T23:14:15.000Z";
        let payload = format!(
            "GET+203.0.113.10++text/json+uencoded=test-user&pencoded=test-pass&orgEncoded=test-org+{timestamp}+{raw}"
        );
        let signature = hmac_hex("top-secret", &payload).expect("mac");
        assert!(signature.starts_with("92b116903c26"), "{signature}");
        let mut headers = HeaderMap::new();
        let mut set = |k: &'static str, v: &str| {
            headers.insert(k, HeaderValue::from_str(v).expect("header"));
        };
        set("authentication", &format!("HMAC {signature}"));
        set(
            "authorization",
            "uencoded=test-user&pencoded=test-pass&orgEncoded=test-org",
        );
        set("afdatetimeutc", timestamp);
        set("accept", "text/json");
        set("hostip", "203.0.113.10");
        let now = crate::timefmt::parse_iso(timestamp).expect("time");
        assert_eq!(verify(&credentials, "GET", &headers, raw, now, 300_000), Ok(()));
        assert_eq!(
            verify(
                &credentials,
                "GET",
                &headers,
                &raw.replace("page=1", "page=2"),
                now,
                300_000
            ),
            Err(MISMATCH)
        );
        assert_eq!(
            verify(&credentials, "GET", &headers, raw, now + 600_000, 300_000),
            Err(EXPIRED)
        );
        headers.remove("hostip");
        assert_eq!(verify(&credentials, "GET", &headers, raw, now, 300_000), Err(MISMATCH));
    }
}
