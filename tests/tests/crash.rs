//! Crash safety: `tether sync`, then `tether backfill`, killed with SIGKILL at pseudo-random
//! points of their progress, ten times each, while about 2,000 contacts move between two GHL emulator locations,
//! then run to the end. Every contact must arrive exactly once: nothing lost, nothing duplicated.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::ghl_flow::{config, contacts_of, emulator};
use tether_e2e::tether_bin;

mod support;

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    killed_ten_times_then_finished(31, &["sync", "copy-contacts"]);
}

/// The same over `tether backfill`: windows a killed run completed are not read again, the
/// window it was in is, and the rows it held are delivered once their claims lapse.
#[test]
fn sigkill_during_a_backfill_loses_nothing_and_duplicates_nothing() {
    killed_ten_times_then_finished(
        37,
        &[
            "backfill",
            "copy-contacts",
            "--since",
            "2025-01-01",
            "--until",
            "2026-01-01",
            "--window",
            "30d",
        ],
    );
}

fn killed_ten_times_then_finished(seed: u64, command: &[&str]) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ghl = emulator(&runtime, seed, 2_500);
    let (a, b) = (
        ghl.credentials.location_id.clone(),
        ghl.credentials.other_location_id.clone(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &ghl);
    // A short lease, so rows a killed process held are taken again within a second.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replacen("[state]", "[delivery]\nlease_ms = 1000\n\n[state]", 1),
    )
    .expect("config");
    let source = contacts_of(&ghl, &a);
    let before_b = contacts_of(&ghl, &b).len();
    assert!(source.len() >= 1_800, "seeded {} contacts in A", source.len());

    // xorshift: pseudo-random kill moments, the same on every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Kill moments follow progress, not the clock, so they land mid-run however fast delivery
    // is: the first while the source is still being read, each later one at a random count
    // within its own tenth of the run.
    let share = source.len() as u64 / 11;
    let mut delivered_before_kill = Vec::new();
    for kill in 0..10u64 {
        let mut child = Command::new(tether_bin())
            .args(["--config", &config.display().to_string()])
            .args(command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sync");
        if kill == 0 {
            std::thread::sleep(Duration::from_millis(50 + next() % 250));
        } else {
            let kill_at = (kill * share + next() % share) as usize;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while contacts_of(&ghl, &b).len() - before_b < kill_at
                && std::time::Instant::now() < deadline
                && child.try_wait().ok().flatten().is_none()
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        delivered_before_kill.push(contacts_of(&ghl, &b).len() - before_b);
    }
    assert!(
        delivered_before_kill.last().is_some_and(|n| *n < source.len()),
        "the kills must land mid-run to prove anything: {delivered_before_kill:?}"
    );

    // Run to the end: passes until nothing is left queued (held rows free after the lease).
    let mut drained = false;
    for _ in 0..30 {
        let output = Command::new(tether_bin())
            .args(["--config", &config.display().to_string()])
            .args(command)
            .arg("--json")
            .output()
            .expect("run to the end");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(2), "{stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("no report: {stderr}"));
        // A sync reports what it read; a backfill, its total.
        let read = report.get("total").unwrap_or(&report)["read"].clone();
        let status = Command::new(tether_bin())
            .args(["--config", &config.display().to_string(), "status", "--json"])
            .output()
            .expect("status");
        let status: Value = serde_json::from_slice(&status.stdout).expect("json");
        let done = read == 0 || command[0] == "backfill";
        if done && status["flows"][0]["queued"] == 0 {
            assert_eq!(status["flows"][0]["dead_letters"], 0, "{status}");
            drained = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1_100));
    }
    assert!(drained, "the queue never drained");

    let copies = contacts_of(&ghl, &b);
    assert_eq!(
        copies.len() - before_b,
        source.len(),
        "each contact of A exactly once in B"
    );
    let mut emails_a: Vec<&str> = source.iter().filter_map(|c| c["email"].as_str()).collect();
    let mut emails_b: Vec<&str> = copies
        .iter()
        .filter(|c| c["tags"].as_array().is_some_and(|t| t.iter().any(|x| x == "copied")))
        .filter_map(|c| c["email"].as_str())
        .collect();
    emails_a.sort();
    emails_b.sort();
    assert_eq!(emails_a, emails_b);
    eprintln!("copies in B after each kill: {delivered_before_kill:?}");
}
