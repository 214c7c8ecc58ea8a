//! `[connectors.NAME.config]` of a Moloni instance.

use serde_json::Value;
use tether_abi::Fields;

use crate::error::MoloniError;

pub const DEFAULT_BASE_URL: &str = "https://api.moloni.pt/v1";

#[derive(Debug, Clone, PartialEq)]
pub struct MoloniConfig {
    /// Without a trailing slash.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub authorization_code: Option<String>,
    pub redirect_uri: Option<String>,
    pub company_id: u64,
    /// Used on `customer.insert` when the input has none (both are required by Moloni).
    pub default_payment_method_id: u64,
    pub default_maturity_date_id: u64,
    /// Moloni documents carry no currency of their own unless exchanged; this is the company's.
    pub currency: String,
    /// How far back each customers poll re-reads, for the clock difference between us and Moloni.
    pub overlap_ms: i64,
}

fn text(config: &Fields, key: &str) -> Result<Option<String>, MoloniError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(MoloniError::Config(format!("`{key}` must be a string, not {other}"))),
    }
}

fn id(config: &Fields, key: &str, default: Option<u64>) -> Result<u64, MoloniError> {
    let bad = || MoloniError::Config(format!("`{key}` must be a whole number"));
    match config.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| MoloniError::Config(format!("`{key}` is required"))),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

impl MoloniConfig {
    pub fn from_fields(config: &Fields) -> Result<Self, MoloniError> {
        let required =
            |key: &str| text(config, key)?.ok_or_else(|| MoloniError::Config(format!("`{key}` is required")));
        let username = text(config, "username")?;
        let password = text(config, "password")?;
        if username.is_some() != password.is_some() {
            return Err(MoloniError::Config(
                "set both `username` and `password`, or neither".into(),
            ));
        }
        let authorization_code = text(config, "authorization_code")?;
        let redirect_uri = text(config, "redirect_uri")?;
        if authorization_code.is_some() && redirect_uri.is_none() {
            return Err(MoloniError::Config(
                "`authorization_code` needs the `redirect_uri` it was issued for".into(),
            ));
        }
        let base_url = text(config, "base_url")?.unwrap_or_else(|| DEFAULT_BASE_URL.into());
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(MoloniError::Config(format!(
                "`base_url` must be an http(s) URL, not `{base_url}`"
            )));
        }
        Ok(MoloniConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: required("client_id")?,
            client_secret: required("client_secret")?,
            username,
            password,
            authorization_code,
            redirect_uri,
            company_id: id(config, "company_id", None)?,
            default_payment_method_id: id(config, "default_payment_method_id", Some(0))?,
            default_maturity_date_id: id(config, "default_maturity_date_id", Some(0))?,
            currency: text(config, "currency")?.unwrap_or_else(|| "EUR".into()),
            overlap_ms: i64::try_from(id(config, "overlap_seconds", Some(60))?)
                .map_err(|_| MoloniError::Config("`overlap_seconds` is too large".into()))?
                .saturating_mul(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(m) => m,
            _ => Fields::new(),
        }
    }

    #[test]
    fn company_id_is_required_and_numeric() {
        let base = json!({"client_id": "a", "client_secret": "b", "username": "u", "password": "p"});
        let mut ok = fields(base.clone());
        ok.insert("company_id".into(), json!("5"));
        let config = MoloniConfig::from_fields(&ok).map_err(|e| e.to_string());
        assert_eq!(config.as_ref().map(|c| c.company_id), Ok(5));
        assert_eq!(config.map(|c| c.base_url), Ok(DEFAULT_BASE_URL.to_owned()));
        assert!(MoloniConfig::from_fields(&fields(base.clone())).is_err());
        let mut bad = fields(base);
        bad.insert("company_id".into(), json!("five"));
        assert!(MoloniConfig::from_fields(&bad).is_err());
        let half = fields(json!({"client_id": "a", "client_secret": "b", "username": "u", "company_id": 1}));
        assert!(MoloniConfig::from_fields(&half).is_err());
    }
}
