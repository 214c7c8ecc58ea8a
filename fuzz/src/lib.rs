//! Shared pieces of the fuzz targets: inputs read as small HTTP-like messages, and a host whose
//! HTTP answers come from the fuzzer.
//!
//! A message is `name: value` header lines, an empty line, then the body (everything after the
//! first `\n\n`). Seeds stay readable and the fuzzer mutates headers and body alike.

pub mod ops;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tether_abi::{ConnectorError, Fields, Host, HostServices, HttpRequest, HttpResponse, LogLevel};

/// Headers and body of a message; `None` when the bytes are not UTF-8 (the host's server refuses
/// such a body before any connector sees it).
pub fn message(data: &[u8]) -> Option<(Vec<(String, String)>, String)> {
    let text = std::str::from_utf8(data).ok()?;
    let (head, body) = text.split_once("\n\n").unwrap_or(("", text));
    let headers = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Some((headers, body.to_owned()))
}

/// Several HTTP responses in one input, separated by lines of `=====`: each is a status line
/// (`200`), headers, an empty line and the body.
pub fn responses(text: &str) -> Vec<HttpResponse> {
    text.split("\n=====\n")
        .map(|part| {
            let (status, rest) = part.split_once('\n').unwrap_or((part, ""));
            let (head, body) = rest.split_once("\n\n").unwrap_or(("", rest));
            HttpResponse {
                status: status.trim().parse().unwrap_or(200),
                headers: head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect(),
                body: body.to_owned(),
            }
        })
        .collect()
}

/// A host that answers HTTP from a queue (then fails transiently, so no read loops forever),
/// keeps secrets in memory and has a fixed clock.
pub struct ScriptedHost {
    answers: Mutex<VecDeque<HttpResponse>>,
    secrets: Mutex<BTreeMap<String, String>>,
    now_ms: i64,
}

impl ScriptedHost {
    pub fn new(answers: Vec<HttpResponse>, secrets: &[(&str, &str)], now_ms: i64) -> Arc<ScriptedHost> {
        Arc::new(ScriptedHost {
            answers: Mutex::new(answers.into()),
            secrets: Mutex::new(secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            now_ms,
        })
    }

    pub fn host(self: &Arc<Self>) -> Host {
        self.clone()
    }
}

impl HostServices for ScriptedHost {
    fn http(&self, _request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        answers
            .pop_front()
            .ok_or_else(|| ConnectorError::transient("the script has no more answers"))
    }

    fn log(&self, _level: LogLevel, _message: &str, _fields: &Fields) {}

    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn secret_get(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        Ok(self.secrets.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned())
    }

    fn secret_put(&self, key: &str, value: &str) -> Result<(), ConnectorError> {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }
}

/// A config table from JSON text.
pub fn fields(json: serde_json::Value) -> Fields {
    match json {
        serde_json::Value::Object(map) => map,
        _ => Fields::new(),
    }
}

/// Panics unless `line:column` (1-based, column in characters) points inside `text` or just after
/// the end of one of its lines: where an editor can put the cursor.
pub fn assert_inside(text: &str, line: usize, column: usize, what: &dyn std::fmt::Display) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        line >= 1 && line <= lines.len(),
        "line {line} outside {} lines: {what}",
        lines.len()
    );
    let width = lines[line - 1].chars().count();
    assert!(
        column >= 1 && column <= width + 1,
        "column {column} outside line {line} ({width} chars): {what}"
    );
}

/// The instances of the example `config/tether.toml`, with their connector types' manifests.
pub fn manifests() -> Vec<(&'static str, tether_abi::Manifest)> {
    use tether_abi::Plugin;
    vec![
        ("ghl", tether_ghl::connector::manifest()),
        ("moloni_pt", tether_moloni::Moloni::manifest()),
        ("aroflo", tether_aroflo::Aroflo::manifest()),
        ("mloflo", tether_mloflo::Mloflo::manifest()),
        ("mloflo_csv", tether_mloflo::Mloflo::manifest()),
    ]
}
