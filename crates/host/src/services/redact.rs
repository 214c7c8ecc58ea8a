//! Keeps secrets out of every line the host writes.
//!
//! Two rules: values under a sensitive name (an `Authorization` header, a `token` field, an
//! `access_token` query parameter) are replaced whatever they are, and every value the host has
//! learnt is secret (config keys marked secret, stored secrets, bearer tokens it sent) is
//! replaced wherever it appears in free text.

use std::sync::RwLock;

use serde_json::Value;
use tether_abi::Fields;

pub const REDACTED: &str = "[redacted]";

/// Shorter values are not tracked: replacing "1" or "abc" everywhere would garble logs and
/// protect nothing.
const MIN_SECRET_LEN: usize = 6;

const SENSITIVE_NAME_PARTS: &[&str] = &[
    "authorization",
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api_key",
    "api-key",
    "signature",
    "cookie",
    "encoded",
    "credential",
];

/// Whether a header, field or parameter name holds a secret by its name alone.
pub fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_NAME_PARTS.iter().any(|part| name.contains(part))
}

#[derive(Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    known: RwLock<Vec<String>>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers a secret value, and the token part of a `Bearer`/`Basic` credential.
    pub fn learn(&self, value: &str) {
        let value = value.trim();
        let token = value.split_once(' ').map(|(_, t)| t.trim()).filter(|t| !t.is_empty());
        for candidate in std::iter::once(value).chain(token) {
            if candidate.len() < MIN_SECRET_LEN {
                continue;
            }
            let Ok(mut known) = self.known.write() else { return };
            if !known.iter().any(|k| k == candidate) {
                known.push(candidate.to_owned());
                known.sort_by_key(|k| std::cmp::Reverse(k.len()));
            }
        }
    }

    /// Learns every secret in a connector's config: keys the manifest marks secret and keys
    /// whose names are sensitive.
    pub fn learn_config(&self, config: &Fields, secret_keys: &[String]) {
        for (key, value) in config {
            if secret_keys.iter().any(|k| k == key) || is_sensitive_name(key) {
                if let Some(text) = value.as_str() {
                    self.learn(text);
                }
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let Ok(known) = self.known.read() else {
            return REDACTED.to_owned();
        };
        let mut out = text.to_owned();
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// A URL with sensitive query values and any password replaced.
    pub fn redact_url(&self, url: &str) -> String {
        let Ok(mut parsed) = reqwest::Url::parse(url) else {
            return self.redact(url);
        };
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some(REDACTED));
        }
        if parsed.query().is_some() {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if is_sensitive_name(&k) {
                        REDACTED.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.redact(parsed.as_str())
    }

    pub fn redact_fields(&self, fields: &Fields) -> Fields {
        fields
            .iter()
            .map(|(k, v)| (k.clone(), self.redact_value(k, v)))
            .collect()
    }

    fn redact_value(&self, name: &str, value: &Value) -> Value {
        if is_sensitive_name(name) && !value.is_null() {
            return Value::String(REDACTED.to_owned());
        }
        match value {
            Value::String(text) => Value::String(self.redact(text)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact_value(name, v)).collect()),
            Value::Object(map) => Value::Object(self.redact_fields(map)),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learnt_values_and_sensitive_names_are_replaced() {
        let redactor = Redactor::new();
        redactor.learn("Bearer eyJhbGciOi.payload.sig");
        redactor.learn("abc"); // too short to track
        assert_eq!(
            redactor.redact("sent eyJhbGciOi.payload.sig to abc"),
            "sent [redacted] to abc"
        );
        assert_eq!(
            redactor.redact_url("https://u:pw@api.example.com/v1/x?access_token=zz&company_id=5"),
            "https://u:%5Bredacted%5D@api.example.com/v1/x?access_token=%5Bredacted%5D&company_id=5"
        );
        let fields: Fields = serde_json::from_str(
            r#"{"refresh_token":"r1","note":"has eyJhbGciOi.payload.sig","n":3,"nested":{"password":"p"}}"#,
        )
        .expect("json");
        let redacted = Value::Object(redactor.redact_fields(&fields));
        assert_eq!(
            redacted,
            serde_json::json!({"refresh_token":"[redacted]","note":"has [redacted]","n":3,"nested":{"password":"[redacted]"}})
        );
    }
}
