//! Arbitrary text as a flow file and as `tether.toml`: each returns a value or located errors
//! (line:col inside the text), never a panic. A flow that loads also runs its fixture tests,
//! as `tether test` does.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tether_core::config::Config;
use tether_core::flow::{check_set, Flow, Instances};
use tether_fuzz::{assert_inside, manifests};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let manifests = manifests();
    let instances: Instances<'_> = manifests.iter().map(|(name, m)| (*name, m)).collect::<BTreeMap<_, _>>();
    match Flow::load("fuzzed", Path::new("flows/fuzzed.toml"), text, &instances) {
        Ok(flow) => {
            for error in check_set(std::slice::from_ref(&flow)) {
                assert_inside(text, error.line, error.column, &error);
            }
            // A jq filter may loop by design (see the mapping target); such flows are only loaded.
            let fixtures = if text.contains("jq") {
                &[][..]
            } else {
                &flow.fixtures[..]
            };
            for fixture in fixtures {
                let record = tether_abi::Record {
                    id: fixture.id.clone(),
                    updated_at: None,
                    deleted: false,
                    parent: None,
                    event: None,
                    fields: fixture.record.clone(),
                };
                let _ = flow.mapping.apply(&record, &fixture.now);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused flow names no problem");
            for error in &errors {
                assert_inside(text, error.line, error.column, error);
            }
        }
    }
    let env = |name: &str| (name == "TOKEN").then(|| "t0k3n".to_owned());
    match Config::parse(Path::new("/etc/tether/tether.toml"), text, &env) {
        Ok(_) => {}
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused config names no problem");
            for error in &errors {
                assert_inside(text, error.line, error.column, error);
            }
        }
    }
});
