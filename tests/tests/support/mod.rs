//! A real host context (runtime, vault on SQLite in a temp dir, redactor) for tests that call
//! connectors in-process.

#![allow(dead_code)] // each test file uses a different part

pub mod ghl_flow;
pub mod host_process;
pub mod webdriver;

use std::sync::Arc;

use tether_abi::Host;
use tether_core::config::{HttpSettings, RateLimit};
use tether_core::store::Store;
use tether_core::vault::{SecretKey, Vault};
use tether_host::services::{HostContext, Redactor};

pub struct TestHost {
    pub runtime: tokio::runtime::Runtime,
    pub context: Arc<HostContext>,
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub fn host() -> TestHost {
    host_with(HttpSettings {
        backoff_base_ms: 10,
        max_backoff_ms: 2_000,
        ..HttpSettings::default()
    })
}

pub fn host_with(settings: HttpSettings) -> TestHost {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let store = runtime.block_on(Store::open(&url)).expect("store");
    let key = SecretKey::load(None, &dir.path().join("tether.key")).expect("key");
    let vault = Arc::new(Vault::new(key, store.clone()));
    let context =
        HostContext::new(runtime.handle().clone(), settings, vault, Arc::new(Redactor::new())).expect("context");
    TestHost {
        runtime,
        context,
        store,
        _dir: dir,
    }
}

impl TestHost {
    pub fn host(&self, instance: &str) -> Host {
        self.context.for_instance(instance, None)
    }

    pub fn limited_host(&self, instance: &str, limit: RateLimit) -> Host {
        self.context.for_instance(instance, Some(limit))
    }
}
