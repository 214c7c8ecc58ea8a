//! AroFlo's HMAC-SHA512 request signing (reference §2.2).
//!
//! The string to sign is `METHOD [+ HostIP] + "" + accept + Authorization + afdatetimeutc +
//! varString`, where varString is the exact query string (GET) or form body (POST) sent.

use hmac::{Hmac, Mac};
use sha2::Sha512;

/// The `Accept` value we send, signed as is.
pub const ACCEPT: &str = "text/json";

/// Credentials from AroFlo's Site Administration → AroFlo API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uencoded: String,
    pub pencoded: String,
    pub org_encoded: String,
    pub secret_key: String,
    /// Signed and sent only when set: AroFlo requires it in both places or neither.
    pub host_ip: Option<String>,
}

/// JavaScript's `encodeURIComponent` (everything but `A-Z a-z 0-9 - _ . ! ~ * ( )` escaped as
/// upper-case `%XX` of its UTF-8 bytes), except that `'` is escaped too: URL libraries re-escape
/// it in query strings (WHATWG), and AroFlo checks the signature over the string it receives,
/// so `O'Brien` must already be sent as `O%27Brien`.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || b"-_.!~*()".contains(&byte);
        if unreserved {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Credentials {
    /// The `Authorization` header, exact key case as AroFlo documents it.
    pub fn authorization(&self) -> String {
        format!(
            "uencoded={}&pencoded={}&orgEncoded={}",
            encode_component(&self.uencoded),
            encode_component(&self.pencoded),
            encode_component(&self.org_encoded)
        )
    }

    /// The string the signature covers.
    pub fn payload(&self, method: &str, timestamp: &str, var_string: &str) -> String {
        let authorization = self.authorization();
        let mut parts: Vec<&str> = vec![method];
        if let Some(ip) = &self.host_ip {
            parts.push(ip);
        }
        // urlPath is always empty, which yields `++` before the accept value.
        parts.extend(["", ACCEPT, &authorization, timestamp, var_string]);
        parts.join("+")
    }

    /// Lower-case hex HMAC-SHA512 of the payload, keyed with the secret.
    pub fn signature(&self, method: &str, timestamp: &str, var_string: &str) -> String {
        hmac_sha512_hex(&self.secret_key, &self.payload(method, timestamp, var_string))
    }

    /// Every header a request needs (POST adds its `Content-Type` separately).
    pub fn headers(&self, method: &str, timestamp: &str, var_string: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            (
                "Authentication".to_owned(),
                format!("HMAC {}", self.signature(method, timestamp, var_string)),
            ),
            ("Authorization".to_owned(), self.authorization()),
            ("Accept".to_owned(), ACCEPT.to_owned()),
            ("afdatetimeutc".to_owned(), timestamp.to_owned()),
        ];
        if let Some(ip) = &self.host_ip {
            headers.push(("HostIP".to_owned(), ip.clone()));
        }
        headers
    }
}

pub fn hmac_sha512_hex(key: &str, payload: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would only fail auth.
    match Hmac::<Sha512>::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_credentials(host_ip: Option<&str>) -> Credentials {
        Credentials {
            uencoded: "test-user".into(),
            pencoded: "test-pass".into(),
            org_encoded: "test-org".into(),
            secret_key: "top-secret".into(),
            host_ip: host_ip.map(str::to_owned),
        }
    }

    #[test]
    fn the_published_get_vector_with_host_ip_signs_as_documented() {
        let credentials = vector_credentials(Some("203.0.113.10"));
        assert_eq!(
            credentials.authorization(),
            "uencoded=test-user&pencoded=test-pass&orgEncoded=test-org"
        );
        let var_string = "zone=lastupdate&where=and%7Czonename%7C%3D%7Ctasks&order=lastupdateutc%7Casc&page=1";
        let timestamp = "2024-05-13T23:14:15.000Z";
        assert_eq!(
            credentials.payload("GET", timestamp, var_string),
            "GET+203.0.113.10++text/json+uencoded=test-user&pencoded=test-pass&orgEncoded=test-org\
             +2024-05-13T23:14:15.000Z+zone=lastupdate&where=and%7Czonename%7C%3D%7Ctasks&order=lastupdateutc%7Casc&page=1"
        );
        let signature = credentials.signature("GET", timestamp, var_string);
        assert!(signature.starts_with("92b116903c26"), "{signature}");
        assert_eq!(signature.len(), 128);
        let headers = credentials.headers("GET", timestamp, var_string);
        assert!(headers.contains(&("HostIP".into(), "203.0.113.10".into())));
        assert!(headers.contains(&("Authentication".into(), format!("HMAC {signature}"))));
    }

    #[test]
    fn without_host_ip_it_is_left_out_of_payload_and_headers() {
        let credentials = vector_credentials(None);
        let payload = credentials.payload("POST", "T", "zone=clients");
        assert!(payload.starts_with("POST++text/json+"), "{payload}");
        assert!(!credentials
            .headers("POST", "T", "zone=clients")
            .iter()
            .any(|(k, _)| k == "HostIP"));
        assert_ne!(
            credentials.signature("POST", "T", "zone=clients"),
            vector_credentials(Some("203.0.113.10")).signature("POST", "T", "zone=clients")
        );
    }

    #[test]
    fn components_are_encoded_like_encode_uri_component() {
        assert_eq!(encode_component("and|name|=|A/B c"), "and%7Cname%7C%3D%7CA%2FB%20c");
        assert_eq!(encode_component("a*b!()~-_."), "a*b!()~-_.");
        assert_eq!(encode_component("O'Brien"), "O%27Brien");
        assert_eq!(encode_component("JCdKUydRMCAgCg=="), "JCdKUydRMCAgCg%3D%3D");
        assert_eq!(encode_component("é+&"), "%C3%A9%2B%26");
    }
}
