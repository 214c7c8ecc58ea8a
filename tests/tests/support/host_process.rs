//! `tether run` as a child process: started on a free port, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tether_e2e::tether_bin;

pub struct RunningHost {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The first line `tether run` prints: its flows, disabled ones, and where it listens.
    #[allow(dead_code)]
    pub banner: String,
}

impl RunningHost {
    /// Starts `tether run` with `args` after the config; waits for its banner line.
    pub fn start(config: &Path, args: &[&str]) -> RunningHost {
        RunningHost::start_on(config, "127.0.0.1:0", args)
    }

    /// Starts `tether run --listen LISTEN`; the base URL is on loopback whatever LISTEN is.
    pub fn start_on(config: &Path, listen: &str, args: &[&str]) -> RunningHost {
        let mut child = Command::new(tether_bin())
            .args(["--config", &config.display().to_string(), "run", "--listen", listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tether run");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("banner");
        let base = line
            .split("webhooks at ")
            .nth(1)
            .and_then(|rest| rest.split("/webhooks/").next())
            .unwrap_or_else(|| panic!("no address in the banner: {line:?}"))
            .replace("0.0.0.0", "127.0.0.1");
        RunningHost {
            child,
            base,
            banner: line,
        }
    }

    pub fn webhook_url(&self, connector: &str) -> String {
        format!("{}/webhooks/{connector}", self.base)
    }

    /// SIGTERM, then the exit code (None: killed by a signal or still running after 30 s).
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 50 ms for up to `limit`; true once it holds.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}
