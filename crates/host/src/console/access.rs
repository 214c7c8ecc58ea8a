//! Who may use the console: the bearer token, and the CSRF token of state-changing forms.
//!
//! On loopback without a configured token the console is open to the local user; a token, once
//! configured, is always required, and listening beyond loopback without one is refused at start.
//! Browsers present the token as the `tether_token` cookie (set by the login form; HttpOnly,
//! SameSite=Strict), scripts and Prometheus as `Authorization: Bearer`.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "tether_token";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "tether run listens on {0}, beyond loopback, and the dashboard would be open to the network; \
     set [dashboard] token in tether.toml (e.g. token = \"${{TETHER_DASHBOARD_TOKEN}}\") or listen on 127.0.0.1"
)]
pub struct OpenToTheNetwork(pub SocketAddr);

#[derive(Clone)]
pub struct Access {
    token: Option<String>,
    csrf: String,
}

impl Access {
    pub fn new(listen: SocketAddr, token: Option<String>) -> Result<Access, OpenToTheNetwork> {
        if token.is_none() && !listen.ip().is_loopback() {
            return Err(OpenToTheNetwork(listen));
        }
        // Derived from the token, so every host behind one load balancer accepts the forms of
        // the others; without a token (loopback only) a random one per process.
        let csrf = match &token {
            Some(token) => hex::encode(Sha256::digest(format!("tether-csrf:{token}"))),
            None => hex::encode(rand::random::<[u8; 32]>()),
        };
        Ok(Access { token, csrf })
    }

    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether the request carries the token (always true when none is configured).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value);
        [bearer, cookie]
            .into_iter()
            .flatten()
            .any(|offered| same(offered.trim(), token))
    }

    pub fn token_matches(&self, offered: &str) -> bool {
        self.token.as_deref().is_some_and(|token| same(offered.trim(), token))
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn csrf_matches(&self, offered: Option<&str>) -> bool {
        offered.is_some_and(|offered| same(offered, &self.csrf))
    }
}

/// Compares in time independent of where the strings differ, so the token cannot be guessed a
/// byte at a time from response times.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), value.parse().expect("header"));
        }
        map
    }

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn beyond_loopback_a_token_is_required() {
        let open: SocketAddr = "0.0.0.0:7700".parse().expect("addr");
        assert_eq!(Access::new(open, None).err(), Some(OpenToTheNetwork(open)));
        assert!(Access::new(open, Some(TOKEN.into())).is_ok());
        let local: SocketAddr = "127.0.0.1:7700".parse().expect("addr");
        let access = Access::new(local, None).expect("loopback");
        assert!(access.admits(&HeaderMap::new()));
    }

    #[test]
    fn the_token_is_taken_from_the_bearer_header_or_the_cookie() {
        let local: SocketAddr = "127.0.0.1:7700".parse().expect("addr");
        let access = Access::new(local, Some(TOKEN.into())).expect("access");
        assert!(!access.admits(&HeaderMap::new()));
        assert!(access.admits(&headers(&[(header::AUTHORIZATION, &format!("Bearer {TOKEN}"))])));
        assert!(!access.admits(&headers(&[(header::AUTHORIZATION, "Bearer wrong")])));
        assert!(!access.admits(&headers(&[(header::AUTHORIZATION, TOKEN)])));
        assert!(access.admits(&headers(&[(header::COOKIE, &format!("theme=dark; {COOKIE}={TOKEN}"))])));
        assert!(!access.admits(&headers(&[(header::COOKIE, &format!("other={TOKEN}"))])));
    }

    #[test]
    fn csrf_tokens_agree_across_hosts_sharing_a_token_and_reject_anything_else() {
        let local: SocketAddr = "127.0.0.1:7700".parse().expect("addr");
        let a = Access::new(local, Some(TOKEN.into())).expect("a");
        let b = Access::new(local, Some(TOKEN.into())).expect("b");
        assert_eq!(a.csrf(), b.csrf());
        assert_ne!(a.csrf(), TOKEN);
        assert!(a.csrf_matches(Some(b.csrf())));
        assert!(!a.csrf_matches(None));
        assert!(!a.csrf_matches(Some("")));
        let open = Access::new(local, None).expect("open");
        let other = Access::new(local, None).expect("other");
        assert_ne!(open.csrf(), other.csrf(), "random per process without a token");
    }
}
