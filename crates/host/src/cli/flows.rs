//! `tether check` and `tether test [FLOW]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tether_abi::{Fields, Record};
use tether_core::config::{Config, ConfigError, SourceMap};
use tether_core::flow::{self, Flow, Instances};

use super::{listing, CliError, Exit};
use crate::registry::Registry;

/// Everything `check` found: loaded flows, and every problem with its place.
pub(super) struct Checked {
    pub registry: Registry,
    pub flows: Vec<Flow>,
    pub problems: Vec<String>,
    pub connectors: usize,
}

pub(super) fn check_all(config: &Config) -> Result<Checked, CliError> {
    let registry = listing::load_for_run(config)?;
    let mut problems: Vec<String> = registry
        .plugins()
        .refused
        .iter()
        .map(|r| format!("plugin {r}"))
        .collect();
    let config_text = config
        .file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .unwrap_or_default();
    let config_file = config.file.clone().unwrap_or_else(|| PathBuf::from("tether.toml"));
    let config_source = SourceMap {
        file: &config_file,
        text: &config_text,
    };

    let mut instances: Instances<'_> = BTreeMap::new();
    for connector in config.connectors.values() {
        let Some(manifest) = registry.manifest(&connector.plugin) else {
            let kinds: Vec<&str> = registry.manifests().map(|(m, _)| m.name.as_str()).collect();
            let mut error = config_source.error(
                Some(connector.plugin_span.clone()),
                format!(
                    "connector `{}` uses `{}`, which is neither built in nor a loaded plugin",
                    connector.name, connector.plugin
                ),
            );
            let mut hint = format!("available: {}", kinds.join(", "));
            if !config.plugins_dir.exists() {
                hint.push_str(&format!(
                    "; the plugins folder {} does not exist",
                    config.plugins_dir.display()
                ));
            }
            error.hint = Some(hint);
            problems.push(error.to_string());
            continue;
        };
        for (key, span) in &connector.key_spans {
            if !manifest.config.iter().any(|k| &k.name == key) {
                let mut error = config_source.error(
                    Some(span.clone()),
                    format!("`{}` takes no config key `{key}`", manifest.name),
                );
                let keys: Vec<&str> = manifest.config.iter().map(|k| k.name.as_str()).collect();
                error.hint = Some(format!("its keys: {}", keys.join(", ")));
                problems.push(error.to_string());
            }
        }
        for required in manifest.config.iter().filter(|k| k.required) {
            if !connector.config.contains_key(&required.name) {
                let error = config_source.error(
                    Some(connector.plugin_span.clone()),
                    format!(
                        "connector `{}` needs `{}` ({})",
                        connector.name, required.name, required.description
                    ),
                );
                problems.push(error.to_string());
            }
        }
        instances.insert(connector.name.as_str(), manifest);
    }

    let mut flows = Vec::new();
    for FlowText { name, path, text } in flow_texts(&config.flows_dir)? {
        match Flow::load(&name, &path, &text, &instances) {
            Ok(flow) => flows.push(flow),
            Err(errors) => problems.extend(errors.iter().map(ConfigError::to_string)),
        }
    }
    problems.extend(flow::check_set(&flows).iter().map(ConfigError::to_string));
    let connectors = instances.len();
    drop(instances);
    Ok(Checked {
        registry,
        flows,
        problems,
        connectors,
    })
}

/// A flow file as read: the flow's name is the file's stem.
pub(super) struct FlowText {
    pub name: String,
    pub path: PathBuf,
    pub text: String,
}

/// Every flow file's name, path and text, in name order.
pub(super) fn flow_texts(dir: &Path) -> Result<Vec<FlowText>, CliError> {
    flow_files(dir)?
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CliError::new(Exit::Usage, format!("cannot read flow file {}: {e}", path.display())))?;
            Ok(FlowText { name, path, text })
        })
        .collect()
}

/// The flow files, in name order. A missing flows folder holds no flows.
fn flow_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CliError::new(
                Exit::Usage,
                format!("cannot read flows directory {}: {e}", dir.display()),
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

pub(super) fn problems_error(problems: Vec<String>) -> CliError {
    let count = problems.len();
    CliError {
        exit: Exit::Usage,
        message: format!("found {count} problem{}", if count == 1 { "" } else { "s" }),
        details: problems,
    }
}

pub fn check(config: &Config) -> Result<Exit, CliError> {
    let checked = check_all(config)?;
    if !checked.problems.is_empty() {
        return Err(problems_error(checked.problems));
    }
    let fixtures: usize = checked.flows.iter().map(|f| f.fixtures.len()).sum();
    let disabled: Vec<&str> = checked
        .flows
        .iter()
        .filter(|f| !f.enabled)
        .map(|f| f.name.as_str())
        .collect();
    let disabled = if disabled.is_empty() {
        String::new()
    } else {
        format!(" ({} disabled: {})", disabled.len(), disabled.join(", "))
    };
    println!(
        "ok: {} connector{}, {} flow{}{disabled}, {fixtures} fixture test{}",
        checked.connectors,
        plural(checked.connectors),
        checked.flows.len(),
        plural(checked.flows.len()),
        plural(fixtures)
    );
    Ok(Exit::Ok)
}

pub fn test(config: &Config, only: Option<&str>) -> Result<Exit, CliError> {
    let checked = check_all(config)?;
    if !checked.problems.is_empty() {
        return Err(problems_error(checked.problems));
    }
    if let Some(name) = only {
        if !checked.flows.iter().any(|f| f.name == name) {
            return Err(CliError::new(Exit::Usage, format!("there is no flow `{name}`")));
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for flow in checked.flows.iter().filter(|f| only.is_none_or(|n| n == f.name)) {
        for fixture in &flow.fixtures {
            let record = Record {
                id: fixture.id.clone(),
                updated_at: None,
                deleted: false,
                parent: None,
                event: None,
                fields: fixture.record.clone(),
            };
            let outcome = flow.mapping.apply(&record, &fixture.now);
            let failure = match (&fixture.expect, outcome) {
                (Ok(expected), Ok(actual)) if *expected == actual => None,
                (Ok(expected), Ok(actual)) => Some(diff(expected, &actual)),
                (Ok(_), Err(error)) => Some(format!("  mapping failed: {error}")),
                (Err(wanted), Err(error)) if error.to_string().contains(wanted.as_str()) => None,
                (Err(wanted), Err(error)) => Some(format!("  expected an error containing `{wanted}`, got: {error}")),
                (Err(wanted), Ok(actual)) => Some(format!(
                    "  expected an error containing `{wanted}`, but it mapped to {}",
                    Value::Object(actual)
                )),
            };
            match failure {
                None => {
                    passed += 1;
                    println!("pass  {} :: {}", flow.name, fixture.name);
                }
                Some(why) => {
                    failed += 1;
                    println!("FAIL  {} :: {}\n{why}", flow.name, fixture.name);
                }
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 { Exit::Ok } else { Exit::Failed })
}

/// Field by field: `-` what the test expects, `+` what the mapping produced.
fn diff(expected: &Fields, actual: &Fields) -> String {
    let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    for key in keys {
        match (expected.get(key), actual.get(key)) {
            (Some(e), Some(a)) if e == a => {}
            (e, a) => {
                if let Some(e) = e {
                    out.push_str(&format!("  - {key} = {e}\n"));
                }
                if let Some(a) = a {
                    out.push_str(&format!("  + {key} = {a}\n"));
                }
            }
        }
    }
    out.trim_end().to_owned()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A checked configuration ready to run one flow: the runtime, the store, the host services,
/// and a way to open the flow's connectors.
pub(super) struct Prepared {
    pub checked: Checked,
    index: usize,
    pub runtime: tokio::runtime::Runtime,
    pub store: tether_core::store::Store,
    context: std::sync::Arc<crate::services::HostContext>,
}

impl Prepared {
    pub fn new(config: &Config, name: &str) -> Result<Prepared, CliError> {
        let mut prepared = Prepared::all(config)?;
        prepared.index = prepared
            .checked
            .flows
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| CliError::new(Exit::Usage, format!("there is no flow `{name}`")))?;
        Ok(prepared)
    }

    /// Every flow of the configuration; [`Prepared::flow`] is the first.
    pub fn all(config: &Config) -> Result<Prepared, CliError> {
        let checked = check_all(config)?;
        if !checked.problems.is_empty() {
            return Err(problems_error(checked.problems));
        }
        let index = 0;
        let runtime = tokio::runtime::Runtime::new()
            .map_err(|e| CliError::new(Exit::Failed, format!("cannot start the async runtime: {e}")))?;
        let store = runtime.block_on(super::open_store(config))?;
        let context = super::host_context(config, &checked.registry, &runtime, store.clone())?;
        Ok(Prepared {
            checked,
            index,
            runtime,
            store,
            context,
        })
    }

    /// Refuses a flow switched off with `enabled = false`: `sync` and `backfill` run only
    /// enabled flows (`dry-run`, which writes nothing, reads a disabled one too).
    pub fn refuse_disabled(&self) -> Result<(), CliError> {
        let flow = self.flow();
        if flow.enabled {
            return Ok(());
        }
        let mut error = CliError::new(Exit::Usage, format!("flow `{}` is disabled", flow.name));
        error.details = vec![format!(
            "its file sets `enabled = false`; remove that line or set `enabled = true` to run it"
        )];
        Err(error)
    }

    pub fn context(&self) -> &std::sync::Arc<crate::services::HostContext> {
        &self.context
    }

    pub fn flow(&self) -> &Flow {
        &self.checked.flows[self.index]
    }

    pub fn relations(&self) -> flow::Relations {
        flow::relations(&self.checked.flows, self.flow())
    }

    /// Opens a configured connector instance. Opening may read stored tokens, which blocks: call
    /// it from this thread, never from a runtime worker.
    pub fn open(&self, config: &Config, instance: &str) -> Result<std::sync::Arc<dyn tether_abi::Connector>, CliError> {
        let connector = config.connectors.get(instance).ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!("connector `{instance}` is not in the configuration"),
            )
        })?;
        let host = self.context.for_instance(instance, connector.rate_limit);
        self.checked
            .registry
            .open(host, connector)
            .map(std::sync::Arc::from)
            .map_err(|e| CliError::new(Exit::Failed, format!("connector `{instance}` cannot be opened: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_shows_only_what_differs() {
        let expected = serde_json::json!({"a": 1, "b": "x", "c": true});
        let actual = serde_json::json!({"a": 1, "b": "y", "d": null});
        let (serde_json::Value::Object(e), serde_json::Value::Object(a)) = (expected, actual) else {
            unreachable!()
        };
        assert_eq!(
            super::diff(&e, &a),
            "  - b = \"x\"\n  + b = \"y\"\n  - c = true\n  + d = null"
        );
    }
}
