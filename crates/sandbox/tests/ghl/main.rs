//! End-to-end tests of the GHL emulator over real HTTP on 127.0.0.1.

mod common;
mod contacts;
mod faults;
mod oauth;
mod rate_limit;
mod schema;
mod search;
mod tasks_notes;
mod webhooks;
