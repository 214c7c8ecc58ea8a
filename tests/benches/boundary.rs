//! The cost of one connector call carrying a 1 KB record: the echo connector linked in-process
//! (a typed Rust call) against the same connector loaded from its release `.so` (JSON both ways
//! across the abi_stable boundary). `cargo xtask bench` reports the difference.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tether_abi::*;
use tether_core::loader::load_dir;
use tether_e2e::{cargo_build, install, Profile};
use tether_fixture_echo::Echo;

/// The echo write touches no host service; any call here would be a bench bug.
struct NoServices;

impl HostServices for NoServices {
    fn http(&self, _: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        Err(ConnectorError::fatal("no http in this benchmark"))
    }
    fn log(&self, _: LogLevel, _: &str, _: &Fields) {}
    fn now_ms(&self) -> i64 {
        0
    }
    fn secret_get(&self, _: &str) -> Result<Option<String>, ConnectorError> {
        Ok(None)
    }
    fn secret_put(&self, _: &str, _: &str) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// A contact-like record of about 1 KB of JSON.
fn record_1kb() -> Fields {
    let mut fields = Fields::new();
    for i in 0..17 {
        fields.insert(
            format!("field_{i:02}"),
            format!("value {i:02} of a contact record, padded out").into(),
        );
    }
    fields.insert("tags".into(), serde_json::json!(["moloni", "vip", "pt"]));
    let size = serde_json::to_string(&fields).map_or(0, |s| s.len());
    assert!((900..=1_200).contains(&size), "record is {size} bytes");
    fields
}

fn boundary(c: &mut Criterion) {
    let built = cargo_build(Profile::Release, &["tether-fixture-echo"]).expect("build the echo plugin");
    let dir = tempfile::tempdir().expect("tempdir");
    install(&built, &["tether-fixture-echo"], dir.path()).expect("install");
    let set = load_dir(dir.path()).expect("plugins dir");
    let plugin = set.get("echo").expect("echo loaded");
    let host: Host = Arc::new(NoServices);
    let across = plugin.open(host.clone(), &OpenRequest::default()).expect("open across");
    let in_process: Box<dyn Connector> = Box::new(Echo::open(host, OpenRequest::default()).expect("open in-process"));
    let request = WriteRequest {
        priority: Default::default(),
        action: "echo".into(),
        target_id: None,
        parent_id: None,
        input: record_1kb(),
    };

    let mut group = c.benchmark_group("plugin_call_1kb");
    group.bench_function("in_process", |b| {
        b.iter(|| in_process.write(black_box(request.clone())))
    });
    group.bench_function("across_boundary", |b| {
        b.iter(|| across.write(black_box(request.clone())))
    });
    group.finish();
}

criterion_group!(benches, boundary);
criterion_main!(benches);
