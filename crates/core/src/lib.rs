//! The Tether engine.
//!
//! * [`loader`]: finds and loads plugin libraries, one file at a time, refusing unsafe or
//!   incompatible ones with a reason.
//! * [`config`]: `tether.toml`, parsed with every error located at file:line:col.
//! * [`mapping`]: flow mappings (minijinja expressions, project filters, optional jq) compiled
//!   once, applied per record.
//! * [`engine`]: one pass of a flow (poll, deliver, backfill, dry run); [`scheduler`]: the
//!   long-running pollers, delivery workers and webhook intake of `tether run`.
//! * [`store`]: the SQL state store (SQLite by default, PostgreSQL), per-dialect migrations.
//! * [`vault`]: connector secrets encrypted at rest in the store.
//! * [`alerts`]: which alert incidents open and resolve, decided from a snapshot (pure).
//! * [`telemetry`]: metric names and the engine's counters (the `metrics` facade; no I/O).

pub mod alerts;
pub mod config;
pub mod engine;
pub mod flow;
pub mod loader;
pub mod mapping;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod vault;
