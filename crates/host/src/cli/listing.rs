//! `tether plugins` and `tether catalog`.

use crate::registry::Registry;
use serde::Serialize;
use tether_abi::{Manifest, ABI_VERSION};
use tether_core::config::Config;

use super::{print_json, table, CliError, Exit};

/// The registry for commands that run connectors: a missing plugins folder leaves the built-in
/// connectors (a flow naming a plugin then fails `check` with the reason).
pub(super) fn load_for_run(config: &Config) -> Result<Registry, CliError> {
    if !config.plugins_dir.exists() {
        return Ok(Registry::built_in_only());
    }
    load(config)
}

pub(super) fn load(config: &Config) -> Result<Registry, CliError> {
    Registry::load(&config.plugins_dir).map_err(|e| {
        let mut error = CliError::new(Exit::Usage, e.to_string());
        error.details.push("set `plugins_dir` in tether.toml or pass --plugins-dir; `cargo xtask plugins` builds them into target/plugins".into());
        error
    })
}

#[derive(Serialize)]
struct PluginsReport<'a> {
    plugins_dir: String,
    host_abi_version: u32,
    plugins: Vec<PluginRow<'a>>,
    refused: Vec<RefusedRow>,
}

#[derive(Serialize)]
struct PluginRow<'a> {
    name: &'a str,
    version: &'a str,
    abi_version: u32,
    file: String,
    description: &'a str,
    streams: Vec<&'a str>,
    actions: Vec<&'a str>,
}

#[derive(Serialize)]
struct RefusedRow {
    file: String,
    reason: String,
}

pub fn plugins(config: &Config, json: bool) -> Result<Exit, CliError> {
    let registry = load(config)?;
    let set = registry.plugins();
    let report = PluginsReport {
        plugins_dir: config.plugins_dir.display().to_string(),
        host_abi_version: ABI_VERSION,
        plugins: set
            .loaded
            .iter()
            .map(|p| PluginRow {
                name: &p.manifest.name,
                version: &p.manifest.version,
                abi_version: p.abi_version,
                file: p.path.display().to_string(),
                description: &p.manifest.description,
                streams: p.manifest.streams.iter().map(|s| s.name.as_str()).collect(),
                actions: p.manifest.actions.iter().map(|a| a.name.as_str()).collect(),
            })
            .collect(),
        refused: set
            .refused
            .iter()
            .map(|r| RefusedRow {
                file: r.path.display().to_string(),
                reason: r.reason.to_string(),
            })
            .collect(),
    };
    if json {
        print_json(&report)?;
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = report
        .plugins
        .iter()
        .map(|p| {
            vec![
                p.name.into(),
                p.version.into(),
                p.abi_version.to_string(),
                p.file.clone(),
                p.streams.join(","),
                p.actions.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["NAME", "VERSION", "ABI", "FILE", "STREAMS", "ACTIONS"], &rows)
    );
    if rows.is_empty() {
        println!("(no plugins in {})", report.plugins_dir);
    }
    for refused in &report.refused {
        println!("refused  {}: {}", refused.file, refused.reason);
    }
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct CatalogRow<'a> {
    connector: &'a str,
    kind: &'static str,
    name: &'a str,
    /// Trigger modes for triggers; `create`/`update` for actions.
    modes: Vec<&'static str>,
    description: &'a str,
}

fn catalog_rows(manifest: &Manifest) -> Vec<CatalogRow<'_>> {
    let triggers = manifest.streams.iter().map(|s| CatalogRow {
        connector: &manifest.name,
        kind: "trigger",
        name: &s.name,
        modes: s.triggers.iter().map(|t| t.as_str()).collect(),
        description: &s.description,
    });
    let actions = manifest.actions.iter().map(|a| CatalogRow {
        connector: &manifest.name,
        kind: "action",
        name: &a.name,
        modes: vec![if a.needs_target_id { "existing" } else { "new" }],
        description: &a.description,
    });
    triggers.chain(actions).collect()
}

pub fn catalog(config: &Config, json: bool) -> Result<Exit, CliError> {
    let registry = load(config)?;
    let rows: Vec<CatalogRow> = registry.manifests().flat_map(|(m, _)| catalog_rows(m)).collect();
    if json {
        print_json(&serde_json::json!({ "entries": rows }))?;
    } else {
        let text: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.connector.into(),
                    r.kind.into(),
                    r.name.into(),
                    r.modes.join(","),
                    r.description.into(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["CONNECTOR", "KIND", "NAME", "MODES", "DESCRIPTION"], &text)
        );
    }
    for refused in &registry.plugins().refused {
        eprintln!("warning: refused {refused}");
    }
    Ok(Exit::Ok)
}
