//! The GoHighLevel connector, linked into the host natively but built on the same
//! [`tether_abi::Connector`] trait as the plugins, and doing all of its HTTP through
//! [`tether_abi::Host::http`].
//!
//! * [`client`]: the typed Contacts API v2 client.
//! * [`auth`]: Private Integration Tokens and OAuth 2.0 (consent URL, code exchange, rotating
//!   refresh tokens stored through the host's secret store).
//! * [`governor`]: the per-(app, location) rate governor fed by GHL's `X-RateLimit-*` headers.
//! * [`webhook`]: signature verification and event parsing for inbound webhooks.
//! * [`connector`]: [`Ghl`], the connector itself: manifest, streams, actions.

pub mod auth;
pub mod client;
pub mod connector;
pub mod error;
pub mod governor;
pub mod webhook;

pub use connector::{manifest, open, Ghl, GhlConfig};
pub use error::GhlError;
