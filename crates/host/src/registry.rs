//! Every connector type the host can open: the built-in ones (GHL) and the plugin libraries
//! found in the plugins directory, behind one `open`.

use std::path::PathBuf;

use tether_abi::{Connector, ConnectorError, Host, Manifest, OpenRequest, Plugin};
use tether_core::config::ConnectorConfig;
use tether_core::loader::{self, LoadDirError, PluginSet, Refusal, RefusalReason};

/// Where a connector type comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    Plugin(PathBuf),
}

pub struct Registry {
    built_in: Vec<Manifest>,
    plugins: PluginSet,
}

impl Registry {
    /// The built-in connectors and the plugins of `plugins_dir`. A plugin that takes a built-in
    /// connector's name is refused.
    pub fn load(plugins_dir: &std::path::Path) -> Result<Registry, LoadDirError> {
        let built_in = vec![tether_ghl::manifest()];
        let mut plugins = loader::load_dir(plugins_dir)?;
        let (shadowing, kept): (Vec<_>, Vec<_>) = plugins
            .loaded
            .drain(..)
            .partition(|p| built_in.iter().any(|b| b.name == p.manifest.name));
        plugins.loaded = kept;
        for plugin in shadowing {
            let name = plugin.manifest.name.clone();
            plugins.refused.push(Refusal {
                path: plugin.path,
                reason: RefusalReason::BuiltInName { name },
            });
        }
        Ok(Registry { built_in, plugins })
    }

    /// Only the built-in connectors: for a configuration that uses no plugin, a plugins folder
    /// that does not exist is not an error.
    pub fn built_in_only() -> Registry {
        Registry {
            built_in: vec![tether_ghl::manifest()],
            plugins: PluginSet::default(),
        }
    }

    pub fn plugins(&self) -> &PluginSet {
        &self.plugins
    }

    /// Every connector type: built-in first, then plugins in file order.
    pub fn manifests(&self) -> impl Iterator<Item = (&Manifest, Origin)> {
        let built_in = self.built_in.iter().map(|m| (m, Origin::BuiltIn));
        let plugins = self
            .plugins
            .loaded
            .iter()
            .map(|p| (&p.manifest, Origin::Plugin(p.path.clone())));
        built_in.chain(plugins)
    }

    pub fn manifest(&self, kind: &str) -> Option<&Manifest> {
        self.manifests().map(|(m, _)| m).find(|m| m.name == kind)
    }

    /// Opens the configured instance with the host services it gets.
    pub fn open(&self, host: Host, instance: &ConnectorConfig) -> Result<Box<dyn Connector>, ConnectorError> {
        let request = OpenRequest {
            instance: instance.name.clone(),
            config: instance.config.clone(),
        };
        if instance.plugin == tether_ghl::manifest().name {
            return Ok(Box::new(tether_ghl::Ghl::open(host, request)?));
        }
        match self.plugins.get(&instance.plugin) {
            Some(plugin) => plugin.open(host, &request),
            None => Err(ConnectorError::invalid(format!(
                "connector `{}` uses `{}`, which is neither built in nor a loaded plugin",
                instance.name, instance.plugin
            ))),
        }
    }
}
