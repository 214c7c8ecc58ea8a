//! Developer entry points: `cargo xtask plugins | demo | bench | soak`.

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
        Some("soak") => soak(&args[1..]),
        _ => Err("usage: cargo xtask plugins | demo | bench [--json] | soak [--minutes N]".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The reliability suite (`tests/benches/soak.rs`): N minutes (default 10) of faults and kills,
/// then the accounting of every record. Fails when a record is lost or duplicated.
fn soak(args: &[String]) -> Result<(), String> {
    let minutes = match args {
        [] => "10".to_owned(),
        [flag, n] if flag == "--minutes" && n.parse::<f64>().is_ok_and(|m| m > 0.0) => n.clone(),
        _ => return Err("usage: cargo xtask soak [--minutes N] (N > 0, default 10)".to_owned()),
    };
    bench::cargo_bench(&["--bench", "soak", "--", "--soak", "--minutes", &minutes], false)
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

/// The example flows the demo runs once each, parents before their children. Webhook-driven flows
/// (GHL tasks into AroFlo, MLOFLO's task echo) need `tether run`; the demo leaves them to it.
const DEMO_FLOWS: &[&str] = &[
    "moloni-customers",
    "moloni-invoice-note",
    "moloni-invoice-task",
    "aroflo-clients",
    "aroflo-contacts",
    "aroflo-clientnotes",
    "mloflo-contacts",
    "mloflo-notes",
    "mloflo-milestones",
    "mloflo-csv-contacts",
];

/// Builds everything, starts the sandbox on its fixed ports, runs the example flows against it
/// once, and prints what they did and the host's status.
fn demo() -> Result<(), String> {
    let dir = plugins()?;
    let built = cargo_build(Profile::Release, &["tether"])?;
    let tether = built.join("tether");
    let plugins_dir = dir.display().to_string();
    for listing in ["plugins", "catalog"] {
        println!("\n$ tether {listing} --plugins-dir {plugins_dir}");
        run(&tether, &[listing, "--plugins-dir", &plugins_dir])?;
    }

    // The example flows, checked against the plugins' manifests and their fixture tests run.
    for command in ["check", "test"] {
        println!("\n$ tether --config config/tether.toml {command}");
        run(&tether, &["--config", "config/tether.toml", command])?;
    }

    // The sandbox starts from its seed every time, so the demo's state must too: links from an
    // earlier run would name records this sandbox never had.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(target_dir().join(format!("tether-demo.sqlite{suffix}")));
    }
    // config/tether.toml points at the sandbox's default ports, with credentials from its seed.
    println!("\n$ tether sandbox --seed 25");
    let mut sandbox = Command::new(&tether)
        .args(["sandbox", "--seed", "25"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let mut lines = sandbox
        .stdout
        .take()
        .map(|out| BufReader::new(out).lines().map_while(Result::ok));
    let mut banner = Vec::new();
    if let Some(lines) = lines.as_mut() {
        for line in lines.by_ref() {
            let last = line.starts_with("  seeded") && banner.iter().any(|l: &String| l.starts_with("MLOFLO"));
            banner.push(line);
            if last {
                break;
            }
        }
    }
    if !banner.iter().any(|line| line.starts_with("MLOFLO")) {
        let _ = sandbox.kill();
        let _ = sandbox.wait();
        return Err("the sandbox did not come up (are ports 7701-7704 free?)".to_owned());
    }
    for line in &banner {
        println!("{line}");
    }
    let mut failed = Vec::new();
    for flow in DEMO_FLOWS {
        println!("\n$ tether --config config/tether.toml sync {flow}");
        // Exit 1 is the work reporting records it could not deliver (the sample CSV has bad rows
        // on purpose): they are in the dead-letter list, which the demo shows. Anything else failed.
        match Command::new(&tether)
            .args(["--config", "config/tether.toml", "sync", flow])
            .current_dir(workspace_root())
            .status()
        {
            Ok(status) if status.success() || status.code() == Some(1) => {}
            Ok(status) => failed.push(format!("{flow}: exited with {status}")),
            Err(e) => failed.push(format!("{flow}: cannot run tether: {e}")),
        }
    }
    println!("\n$ tether --config config/tether.toml dlq list");
    let _ = run(&tether, &["--config", "config/tether.toml", "dlq", "list"]);
    println!("\n$ tether --config config/tether.toml status");
    let status = run(&tether, &["--config", "config/tether.toml", "status"]);
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    status?;
    println!(
        "\nThe sandbox was stopped. Keep it up with `{0} sandbox`, then `{0} --config config/tether.toml run` \
         runs every flow continuously (pollers, webhooks at http://127.0.0.1:7700/webhooks/CONNECTOR) \
         with its dashboard at http://127.0.0.1:7700/ (overview, activity, records, webhook log, dead letters).",
        tether.display()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("some example flows failed:\n  {}", failed.join("\n  ")))
    }
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
