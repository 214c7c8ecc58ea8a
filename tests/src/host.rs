//! `tether run` as a child process: started, its address read from its banner, stopped with
//! SIGTERM or killed. Shared by the end-to-end tests and the load processes (benches, soak).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tether_bin;

pub struct RunningHost {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The first line `tether run` prints: its flows, disabled ones, and where it listens.
    pub banner: String,
}

impl RunningHost {
    /// Starts the debug `tether run` with `args` after the config; waits for its banner line.
    /// Panics when it cannot start: tests cannot go on without it.
    pub fn start(config: &Path, args: &[&str]) -> RunningHost {
        RunningHost::start_on(config, "127.0.0.1:0", args)
    }

    /// Starts `tether run --listen LISTEN`; the base URL is on loopback whatever LISTEN is.
    pub fn start_on(config: &Path, listen: &str, args: &[&str]) -> RunningHost {
        let mut command = run_command(&tether_bin(), config, listen);
        command.args(args).stderr(Stdio::inherit());
        RunningHost::spawn(command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Spawns `command` (a `tether run`, see [`run_command`]) and waits for its banner.
    pub fn spawn(mut command: Command) -> Result<RunningHost, String> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start tether run: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            return Err("tether run has no stdout".into());
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("tether run's banner: {e}"))?;
        let Some(base) = banner_address(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no address in tether run's banner: {line:?}"));
        };
        Ok(RunningHost {
            child,
            base,
            banner: line,
        })
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

/// `TETHER --config CONFIG run --listen LISTEN`, to add arguments and environment to.
pub fn run_command(tether: &Path, config: &Path, listen: &str) -> Command {
    let mut command = Command::new(tether);
    command.args(["--config", &config.display().to_string(), "run", "--listen", listen]);
    command
}

/// The base URL in `tether run`'s banner ("... webhooks at http://ADDR/webhooks/CONNECTOR; ..."),
/// on loopback when the host listens on every address.
pub fn banner_address(line: &str) -> Option<String> {
    let address = line.split("webhooks at ").nth(1)?.split("/webhooks/").next()?;
    Some(address.replace("0.0.0.0", "127.0.0.1"))
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_banner_names_the_address() {
        let line = "tether run: 3 flows; webhooks at http://0.0.0.0:8080/webhooks/CONNECTOR; dashboard at http://0.0.0.0:8080/\n";
        assert_eq!(super::banner_address(line).as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(super::banner_address("tether run: starting"), None);
    }
}
