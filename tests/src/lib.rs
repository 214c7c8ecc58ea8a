//! Test kit shared by the end-to-end tests and `xtask`: builds the real plugin libraries and the
//! real `tether` binary with cargo, and lays out plugin directories.
//!
//! `cargo test --workspace` on a fresh clone needs no manual step: the first test that asks for
//! a library builds it (cargo holds no lock while tests run, and the artifacts are shared with
//! the outer build, so this is nearly free after it).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod host;
pub mod postgres;

/// The packages whose libraries are tether plugins, by crate name.
pub const PLUGINS: &[&str] = &["tether-moloni", "tether-aroflo", "tether-mloflo"];
/// Test fixtures built as shared libraries.
pub const FIXTURES: &[&str] = &[
    "tether-fixture-echo",
    "tether-fixture-wrong-abi",
    "tether-fixture-not-a-plugin",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A `cargo` command run in the workspace with the environment of the shell that started us.
///
/// Cargo sets `CARGO_MANIFEST_DIR`, `CARGO_PKG_*` and the like for the test, bench or xtask it
/// runs. A nested cargo would pass them on to build scripts, and `ring`'s build script reruns
/// when `CARGO_MANIFEST_DIR` changes: every nested build would then rebuild `ring`, `rustls`,
/// `reqwest` and all above them, and the next build from a shell would rebuild them back.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_the_running_crate = name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_for_the_running_crate {
            command.env_remove(name);
        }
    }
    command
}

/// Builds packages with cargo; returns the folder holding their artifacts.
pub fn cargo_build(profile: Profile, packages: &[&str]) -> Result<PathBuf, String> {
    let mut command = cargo();
    command.arg("build");
    if profile == Profile::Release {
        command.arg("--release");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let output = command.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target_dir().join(profile.dir()))
}

/// The file name of a crate's shared library on this platform.
pub fn library_file(package: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Copies built libraries into `dir` with mode 0755 (never writable by others).
pub fn install(from: &Path, packages: &[&str], dir: &Path) -> Result<Vec<PathBuf>, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    packages
        .iter()
        .map(|package| {
            let source = from.join(library_file(package));
            let target = dir.join(library_file(package));
            // Replace, never overwrite in place: a running host may have the old file mapped.
            let staging = dir.join(format!(".{}.tmp", library_file(package)));
            fs::copy(&source, &staging).map_err(|e| format!("cannot copy {}: {e}", source.display()))?;
            fs::set_permissions(&staging, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
            fs::rename(&staging, &target).map_err(|e| e.to_string())?;
            Ok(target)
        })
        .collect()
}

/// The debug build of the `tether` binary, every plugin and every fixture, built once per test
/// process. Panics with cargo's output if the build fails: tests cannot run without them.
pub fn built() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut packages = vec!["tether"];
        packages.extend(PLUGINS);
        packages.extend(FIXTURES);
        match cargo_build(Profile::Debug, &packages) {
            Ok(dir) => dir,
            Err(e) => panic!("{e}"),
        }
    })
}

pub fn tether_bin() -> PathBuf {
    built().join(format!("tether{}", std::env::consts::EXE_SUFFIX))
}

/// A fresh plugins directory holding the given packages' libraries.
pub fn plugin_dir(packages: &[&str]) -> tempfile::TempDir {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    };
    if let Err(e) = install(built(), packages, dir.path()) {
        panic!("{e}");
    }
    dir
}
