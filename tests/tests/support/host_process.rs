//! `tether run` as a child process: see `tether_e2e::host`.

#![allow(unused_imports)] // each test file uses a different part

pub use tether_e2e::host::{eventually, RunningHost};
