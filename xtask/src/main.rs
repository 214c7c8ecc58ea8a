//! Developer entry points: `cargo xtask plugins | demo | bench`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use tether_e2e::{cargo_build, install, target_dir, workspace_root, Profile, PLUGINS};

mod bench;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => plugins().map(|_| ()),
        Some("demo") => demo(),
        Some("bench") => bench::run(args.iter().any(|a| a == "--json")),
        _ => Err("usage: cargo xtask plugins | demo | bench [--json]".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the plugins (release) and installs them into target/plugins/.
fn plugins() -> Result<std::path::PathBuf, String> {
    let built = cargo_build(Profile::Release, PLUGINS)?;
    let dir = target_dir().join("plugins");
    for installed in install(&built, PLUGINS, &dir)? {
        println!("installed {}", installed.display());
    }
    Ok(dir)
}

/// Builds everything, starts the sandbox, and shows what the host sees.
fn demo() -> Result<(), String> {
    let dir = plugins()?;
    let built = cargo_build(Profile::Release, &["tether"])?;
    let tether = built.join("tether");
    let plugins_dir = dir.display().to_string();
    for listing in ["plugins", "catalog"] {
        println!("\n$ tether {listing} --plugins-dir {plugins_dir}");
        run(&tether, &[listing, "--plugins-dir", &plugins_dir])?;
    }

    // The example flow, checked against the plugins' manifests and its fixture tests run.
    for command in ["check", "test"] {
        println!("\n$ tether --config config/tether.toml {command}");
        run(&tether, &["--config", "config/tether.toml", command])?;
    }

    println!("\n$ tether sandbox --seed 25 --ghl 127.0.0.1:0");
    let mut sandbox = Command::new(&tether)
        .args(["sandbox", "--seed", "25", "--ghl", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let banner = sandbox.stdout.take().map(|out| {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .take_while(|line| !line.starts_with("Moloni"))
            .collect::<Vec<_>>()
    });
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    let banner = banner.unwrap_or_default();
    if !banner.iter().any(|line| line.starts_with("GoHighLevel")) {
        return Err("the sandbox did not come up".to_owned());
    }
    for line in banner {
        println!("{line}");
    }
    println!(
        "\nThe sandbox answered and was stopped. Keep it up with `{} sandbox`; `tether sync FLOW` runs a flow \
         once (the Moloni, AroFlo and MLOFLO plugins cannot read yet, so their flows only check and test).",
        tether.display()
    );
    Ok(())
}

fn run(program: &Path, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} {} exited with {status}", program.display(), args.join(" ")))
    }
}
