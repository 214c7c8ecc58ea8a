//! Plugins are translation logic only: HTTP, retries, logging and storage live in the host. A
//! runtime crate inside a plugin would also not cross the boundary (each .so gets its own copy).

use cargo_metadata::{DependencyKind, MetadataCommand, PackageId};
use std::collections::{HashMap, HashSet};

const FORBIDDEN: &[&str] = &["tokio", "reqwest", "tracing", "sqlx"];

#[test]
fn no_plugin_depends_on_a_runtime_crate() {
    let metadata = MetadataCommand::new()
        .manifest_path(tether_e2e::workspace_root().join("Cargo.toml"))
        .exec()
        .expect("cargo metadata");
    let resolve = metadata.resolve.as_ref().expect("resolve graph");
    let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let plugins_dir = tether_e2e::workspace_root().join("plugins");
    let plugins: Vec<_> = metadata
        .workspace_packages()
        .into_iter()
        .filter(|p| p.manifest_path.starts_with(&plugins_dir))
        .collect();
    assert_eq!(
        plugins.len(),
        tether_e2e::PLUGINS.len(),
        "every crate under plugins/ is checked"
    );

    for plugin in plugins {
        // Walk normal (non-dev, non-build) dependencies transitively.
        let mut seen = HashSet::new();
        let mut stack = vec![(&plugin.id, vec![plugin.name.to_string()])];
        while let Some((id, path)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(node) = nodes.get(id) else { continue };
            for dep in &node.deps {
                if !dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal) {
                    continue;
                }
                let name = metadata[&dep.pkg].name.to_string();
                let mut via = path.clone();
                via.push(name.clone());
                assert!(
                    !FORBIDDEN.contains(&name.as_str()),
                    "plugin {} depends on {name}: {}",
                    plugin.name,
                    via.join(" -> ")
                );
                stack.push((&dep.pkg, via));
            }
        }
    }
}
