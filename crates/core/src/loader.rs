//! Loads plugin libraries from a directory.
//!
//! Each file is opened on its own with `RawLibrary` + `init_root_module`: abi_stable's
//! `load_from_*` helpers cache one module per interface type per process, so a second plugin
//! would silently come back as the first. Libraries are never unloaded (abi_stable's model).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use abi_stable::library::{abi_header_from_raw_library, RawLibrary};
use tether_abi::ffi::{self, PluginModuleRef};
use tether_abi::{Connector, ConnectorError, Host, Manifest, OpenRequest, ABI_VERSION, ABI_VERSION_SYMBOL};

/// A plugin library that passed every check and described itself.
pub struct PluginLibrary {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub abi_version: u32,
    module: PluginModuleRef,
}

impl fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginLibrary")
            .field("path", &self.path)
            .field("name", &self.manifest.name)
            .finish_non_exhaustive()
    }
}

impl PluginLibrary {
    /// Opens a connector instance of this plugin.
    pub fn open(&self, host: Host, request: &OpenRequest) -> Result<Box<dyn Connector>, ConnectorError> {
        let connector = ffi::open_instance(self.module, host, request)?;
        Ok(Box::new(connector))
    }
}

/// A file in the plugins directory that was not loaded, and why.
#[derive(Debug)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: RefusalReason,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    #[error("not a tether plugin ({detail})")]
    NotAPlugin { detail: String },
    #[error("built for tether ABI version {found}, but this host speaks ABI version {expected}; rebuild the plugin against tether-abi {expected}")]
    AbiMismatch { found: u32, expected: u32 },
    #[error("a plugin named `{name}` is already loaded from {}", first.display())]
    DuplicateName { name: String, first: PathBuf },
    #[error("a connector named `{name}` is built into tether")]
    BuiltInName { name: String },
    #[error("{} is writable by other users (mode {mode:o}); run `chmod o-w {}`", path.display(), path.display())]
    WritableByOthers { path: PathBuf, mode: u32 },
    #[error("cannot be read: {0}")]
    Unreadable(std::io::Error),
    #[error("its layout does not match this host's ABI: {0}")]
    Incompatible(String),
    #[error("it failed to describe itself: {0}")]
    Manifest(ConnectorError),
}

/// Everything found in a plugins directory.
#[derive(Debug, Default)]
pub struct PluginSet {
    pub loaded: Vec<PluginLibrary>,
    pub refused: Vec<Refusal>,
}

impl PluginSet {
    pub fn get(&self, name: &str) -> Option<&PluginLibrary> {
        self.loaded.iter().find(|p| p.manifest.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadDirError {
    #[error("plugins directory {} cannot be read: {source}", dir.display())]
    Unreadable { dir: PathBuf, source: std::io::Error },
}

/// Whether a path names a shared library on this platform.
pub fn is_library(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext == std::env::consts::DLL_EXTENSION)
}

/// Loads every shared library in `dir`, in file-name order. Refused files are reported, never
/// fatal: the other plugins still load.
pub fn load_dir(dir: &Path) -> Result<PluginSet, LoadDirError> {
    let unreadable = |source| LoadDirError::Unreadable {
        dir: dir.to_owned(),
        source,
    };
    let dir_mode = std::fs::metadata(dir).map_err(unreadable)?.permissions().mode();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_library(path))
        .collect();
    paths.sort();

    let mut set = PluginSet::default();
    for path in paths {
        let loaded = if writable_by_others(dir_mode) {
            Err(RefusalReason::WritableByOthers {
                path: dir.to_owned(),
                mode: dir_mode & 0o7777,
            })
        } else {
            load_file(&path)
        };
        match loaded {
            Ok(plugin) => match set.get(&plugin.manifest.name) {
                Some(first) => set.refused.push(Refusal {
                    reason: RefusalReason::DuplicateName {
                        name: plugin.manifest.name.clone(),
                        first: first.path.clone(),
                    },
                    path,
                }),
                None => set.loaded.push(plugin),
            },
            Err(reason) => set.refused.push(Refusal { path, reason }),
        }
    }
    Ok(set)
}

fn writable_by_others(mode: u32) -> bool {
    mode & 0o002 != 0
}

/// Loads one library. The ABI version is read from a plain static before any plugin code runs;
/// only then does abi_stable check the layout and call the root module's constructor.
pub fn load_file(path: &Path) -> Result<PluginLibrary, RefusalReason> {
    let mode = std::fs::metadata(path)
        .map_err(RefusalReason::Unreadable)?
        .permissions()
        .mode();
    if writable_by_others(mode) {
        return Err(RefusalReason::WritableByOthers {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let library = RawLibrary::load_at(path).map_err(|e| RefusalReason::NotAPlugin {
        detail: format!("cannot be opened as a library: {e}"),
    })?;

    // SAFETY: the symbol is the address of a `u32` static in every library built with `export_plugin!`; a
    // library that exports the name with another type is not a tether plugin and is undefined
    // behaviour we cannot detect, the same trust any dlopen extends.
    let found = unsafe { library.get::<*const u32>(ABI_VERSION_SYMBOL) }
        .map(|address| unsafe { **address })
        .map_err(|e| RefusalReason::NotAPlugin {
            detail: format!("it exports no TETHER_ABI_VERSION; was it built with tether_abi::export_plugin!? ({e})"),
        })?;
    if found != ABI_VERSION {
        return Err(RefusalReason::AbiMismatch {
            found,
            expected: ABI_VERSION,
        });
    }

    // The library stays loaded for the life of the process: the module's statics point into it.
    let library: &'static RawLibrary = Box::leak(Box::new(library));
    // SAFETY: `library` is never dropped, so the header's 'static references stay valid.
    let header = unsafe { abi_header_from_raw_library(library) }.map_err(|e| RefusalReason::NotAPlugin {
        detail: format!("no tether root module: {e}"),
    })?;
    let module = header
        .upgrade()
        .and_then(|header| header.init_root_module::<PluginModuleRef>())
        .map_err(|e| RefusalReason::Incompatible(e.to_string()))?;
    let manifest = ffi::accept_manifest((module.manifest())()).map_err(RefusalReason::Manifest)?;
    Ok(PluginLibrary {
        path: path.to_owned(),
        manifest,
        abi_version: found,
        module,
    })
}
