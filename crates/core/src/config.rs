//! `tether.toml`: where plugins live, the state store, and the connector instances.
//!
//! Parsing is pure: the caller reads the file. Every error carries file:line:col.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tether_abi::Fields;
use toml::Spanned;

/// A problem in a config or flow file, located.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Maps byte offsets of one source text to 1-based line and column (in characters).
pub struct SourceMap<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl SourceMap<'_> {
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let offset = span.map_or(0, |s| s.start).min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }
}

trait WithHint {
    fn hint(self, hint: impl Into<String>) -> Self;
}

impl WithHint for ConfigError {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    plugins_dir: Option<Spanned<String>>,
    flows_dir: Option<Spanned<String>>,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    delivery: crate::engine::RetryPolicy,
    #[serde(default)]
    connectors: BTreeMap<String, RawConnector>,
    alerts: Option<RawAlerts>,
    #[serde(default)]
    dashboard: RawDashboard,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    token: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook_url: Spanned<String>,
    dead_letters_over: Option<Spanned<i64>>,
    stall_after_secs: Option<Spanned<i64>>,
    check_every_secs: Option<Spanned<i64>>,
}

/// `[alerts]`: where incident messages go and when they are sent.
#[derive(Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Receives Slack-compatible `{"text": ...}` messages. `${ENV}` expanded; a secret (Slack
    /// puts its token in the path), so never logged and redacted from `Debug`.
    pub webhook_url: String,
    /// Alert when a flow has more dead letters than this.
    pub dead_letters_over: i64,
    /// A flow is stalled after this long without progress (at least 3 of its poll intervals).
    pub stall_after_secs: u64,
    pub check_every_secs: u64,
}

impl fmt::Debug for AlertsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertsConfig")
            .field("webhook_url", &"<redacted>")
            .field("dead_letters_over", &self.dead_letters_over)
            .field("stall_after_secs", &self.stall_after_secs)
            .field("check_every_secs", &self.check_every_secs)
            .finish()
    }
}

pub const DEFAULT_DEAD_LETTERS_OVER: i64 = 10;
pub const DEFAULT_STALL_AFTER_SECS: u64 = 900;
pub const DEFAULT_CHECK_EVERY_SECS: u64 = 30;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    url: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    plugin: Spanned<String>,
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    config: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// Host-wide HTTP behaviour for connector requests.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub timeout_ms: u64,
    /// Attempts per request, the first included, for transient failures of idempotent requests.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    /// A `Retry-After` or backoff longer than this ends the request with a typed error instead
    /// of blocking a worker; the engine schedules the retry.
    pub max_backoff_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout_ms: 30_000,
            max_attempts: 3,
            backoff_base_ms: 250,
            max_backoff_ms: 10_000,
        }
    }
}

/// Requests per period for one connector instance, enforced by the host.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: f64,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The config file, or `None` when running on defaults.
    pub file: Option<PathBuf>,
    pub plugins_dir: PathBuf,
    pub flows_dir: PathBuf,
    pub state_url: String,
    pub key_file: PathBuf,
    pub http: HttpSettings,
    pub delivery: crate::engine::RetryPolicy,
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// `[alerts]`, when present.
    pub alerts: Option<AlertsConfig>,
    pub dashboard: DashboardSettings,
}

/// The dashboard of `tether run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DashboardSettings {
    /// The bearer token the dashboard and `/metrics` require (`${ENV}` expanded). Required when
    /// `tether run` listens beyond loopback.
    pub token: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorConfig {
    pub name: String,
    pub plugin: String,
    pub rate_limit: Option<RateLimit>,
    /// `${ENV}` expanded.
    pub config: Fields,
    /// Where `plugin = ...` and each config key stand in the config file, for `tether check`.
    pub plugin_span: Range<usize>,
    pub key_spans: BTreeMap<String, Range<usize>>,
}

pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
pub const DEFAULT_FLOWS_DIR: &str = "flows";
pub const DEFAULT_STATE_URL: &str = "sqlite://tether.sqlite";
pub const DEFAULT_KEY_FILE: &str = "tether.key";

impl Config {
    /// The configuration used when there is no config file: paths relative to `base`.
    pub fn defaults(base: &Path) -> Config {
        Config {
            file: None,
            plugins_dir: base.join(DEFAULT_PLUGINS_DIR),
            flows_dir: base.join(DEFAULT_FLOWS_DIR),
            state_url: sqlite_url_relative_to(DEFAULT_STATE_URL, base),
            key_file: base.join(DEFAULT_KEY_FILE),
            http: HttpSettings::default(),
            delivery: crate::engine::RetryPolicy::default(),
            connectors: BTreeMap::new(),
            dashboard: DashboardSettings::default(),
            alerts: None,
        }
    }

    /// Parses `text`, the content of `file`. Relative paths resolve against the file's folder;
    /// `env` answers `${VAR}` references.
    pub fn parse(file: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<ConfigError>> {
        let source = SourceMap { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| vec![source.error(e.span(), e.message().to_owned())])?;
        let base = file.parent().unwrap_or(Path::new(".")).to_owned();
        let mut errors = Vec::new();
        let mut expand = |value: &Spanned<String>| match expand_env(value.get_ref(), env) {
            Ok(expanded) => expanded,
            Err(var) => {
                errors.push(
                    source
                        .error(Some(value.span()), format!("environment variable `{var}` is not set"))
                        .hint(format!("export {var}=... before running tether")),
                );
                String::new()
            }
        };

        let plugins_dir = raw
            .plugins_dir
            .as_ref()
            .map_or(base.join(DEFAULT_PLUGINS_DIR), |d| base.join(expand(d)));
        let flows_dir = raw
            .flows_dir
            .as_ref()
            .map_or(base.join(DEFAULT_FLOWS_DIR), |d| base.join(expand(d)));
        let state_url = raw.state.url.as_ref().map_or(DEFAULT_STATE_URL.to_owned(), &mut expand);
        let state_url = sqlite_url_relative_to(&state_url, &base);
        let key_file = raw
            .state
            .key_file
            .as_ref()
            .map_or(base.join(DEFAULT_KEY_FILE), |k| base.join(expand(k)));

        let dashboard_token = raw.dashboard.token.as_ref().map(&mut expand);
        let alerts = match raw.alerts {
            None => None,
            Some(section) => {
                let webhook_url = expand(&section.webhook_url);
                let http = webhook_url.starts_with("http://") || webhook_url.starts_with("https://");
                if !webhook_url.is_empty() && !http {
                    errors.push(source.error(
                        Some(section.webhook_url.span()),
                        "alerts: webhook_url must be an http:// or https:// URL",
                    ));
                }
                let mut at_least = |value: Option<Spanned<i64>>, min: i64, name: &str, default: i64| match value {
                    Some(v) if *v.get_ref() < min => {
                        errors.push(source.error(Some(v.span()), format!("alerts: {name} must be at least {min}")));
                        default
                    }
                    Some(v) => v.into_inner(),
                    None => default,
                };
                let dead_letters_over = at_least(
                    section.dead_letters_over,
                    0,
                    "dead_letters_over",
                    DEFAULT_DEAD_LETTERS_OVER,
                );
                let stall_after_secs = at_least(
                    section.stall_after_secs,
                    1,
                    "stall_after_secs",
                    DEFAULT_STALL_AFTER_SECS as i64,
                );
                let check_every_secs = at_least(
                    section.check_every_secs,
                    1,
                    "check_every_secs",
                    DEFAULT_CHECK_EVERY_SECS as i64,
                );
                Some(AlertsConfig {
                    webhook_url,
                    dead_letters_over,
                    stall_after_secs: stall_after_secs.unsigned_abs(),
                    check_every_secs: check_every_secs.unsigned_abs(),
                })
            }
        };

        if let (Some(token), Some(raw_token)) = (&dashboard_token, &raw.dashboard.token) {
            if token.trim().len() < 16 {
                errors.push(
                    source
                        .error(
                            Some(raw_token.span()),
                            "the dashboard token is shorter than 16 characters",
                        )
                        .hint("use a long random value, e.g. `openssl rand -hex 32`"),
                );
            }
        }
        let mut connectors = BTreeMap::new();
        for (name, section) in raw.connectors {
            let mut config = Fields::new();
            let mut key_spans = BTreeMap::new();
            for (key, value) in section.config {
                key_spans.insert(key.get_ref().clone(), key.span());
                match toml_to_json(value.get_ref(), env) {
                    Ok(json) => {
                        config.insert(key.into_inner(), json);
                    }
                    Err(var) => errors.push(
                        source
                            .error(Some(value.span()), format!("environment variable `{var}` is not set"))
                            .hint(format!("export {var}=... before running tether")),
                    ),
                }
            }
            if let Some(limit) = section.rate_limit {
                if limit.requests == 0 || limit.per_seconds.is_nan() || limit.per_seconds <= 0.0 {
                    errors.push(source.error(
                        Some(section.plugin.span()),
                        format!("connector `{name}`: rate_limit needs requests > 0 and per_seconds > 0"),
                    ));
                }
            }
            connectors.insert(
                name.clone(),
                ConnectorConfig {
                    name,
                    plugin_span: section.plugin.span(),
                    plugin: section.plugin.into_inner(),
                    rate_limit: section.rate_limit,
                    config,
                    key_spans,
                },
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            file: Some(file.to_owned()),
            plugins_dir,
            flows_dir,
            state_url,
            key_file,
            http: raw.http,
            delivery: raw.delivery,
            connectors,
            dashboard: DashboardSettings { token: dashboard_token },
            alerts,
        })
    }
}

/// A relative `sqlite://` path means relative to the config file, not to the working directory.
fn sqlite_url_relative_to(url: &str, base: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.starts_with('/') && !path.starts_with(':') => {
            format!("sqlite://{}", base.join(path).display())
        }
        _ => url.to_owned(),
    }
}

/// Replaces every `${VAR}`; `$${` stays a literal `${`. Returns the first unset variable.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &rest[start + 2..start + 2 + len];
        out.push_str(&env(var).ok_or_else(|| var.to_owned())?);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn toml_to_json(value: &toml::Value, env: &dyn Fn(&str) -> Option<String>) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        toml::Value::String(s) => J::String(expand_env(s, env)?),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(|v| toml_to_json(v, env)).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => J::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v, env)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "TOKEN").then(|| "t0k3n".to_owned())
    }

    fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse(Path::new("/etc/tether/tether.toml"), text, &env)
    }

    #[test]
    fn resolves_paths_and_expands_env() {
        let config = parse(
            "plugins_dir = \"plugins\"\n[state]\nurl = \"sqlite://state.db\"\n\n[connectors.pt]\nplugin = \"moloni\"\nrate_limit = { requests = 5, per_seconds = 1.0 }\n[connectors.pt.config]\ntoken = \"Bearer ${TOKEN}\"\ncompany_id = 5\n",
        )
        .expect("valid config");
        assert_eq!(config.plugins_dir, PathBuf::from("/etc/tether/plugins"));
        assert_eq!(config.state_url, "sqlite:///etc/tether/state.db");
        let pt = &config.connectors["pt"];
        assert_eq!(pt.plugin, "moloni");
        assert_eq!(pt.config["token"], "Bearer t0k3n");
        assert_eq!(pt.config["company_id"], 5);
        assert_eq!(
            pt.rate_limit,
            Some(RateLimit {
                requests: 5,
                per_seconds: 1.0
            })
        );
    }

    #[test]
    fn the_dashboard_token_is_expanded_and_a_short_one_is_located() {
        let config = parse("[dashboard]\ntoken = \"${TOKEN}-and-more-characters\"\n").expect("valid");
        assert_eq!(config.dashboard.token.as_deref(), Some("t0k3n-and-more-characters"));
        assert_eq!(parse("").expect("valid").dashboard.token, None);
        let errors = parse("\n[dashboard]\ntoken = \"${TOKEN}\"\n").expect_err("too short");
        assert_eq!((errors[0].line, errors[0].column), (3, 9), "{}", errors[0]);
        assert!(errors[0].message.contains("shorter than 16"), "{}", errors[0]);
        let errors = parse("[dashboard]\ntokn = \"x\"\n").expect_err("unknown key");
        assert!(errors[0].message.contains("unknown field `tokn`"), "{}", errors[0]);
    }

    #[test]
    fn unknown_key_is_located() {
        let errors = parse("plugins_dir = \"p\"\n[state]\n  ulr = \"x\"\n").expect_err("unknown key");
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].column), (3, 3), "{}", errors[0]);
        assert!(errors[0].message.contains("unknown field `ulr`"), "{}", errors[0]);
    }

    #[test]
    fn every_unset_variable_is_reported_with_its_place() {
        let errors =
            parse("[connectors.a]\nplugin = \"x\"\n[connectors.a.config]\nk = \"${NOPE}\"\nj = \"${ALSO_NOPE}\"\n")
                .expect_err("unset vars");
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(rendered.len(), 2, "{rendered:?}");
        assert!(
            rendered[0].starts_with("/etc/tether/tether.toml:5:5: environment variable `ALSO_NOPE`"),
            "{rendered:?}"
        );
        assert!(
            rendered[1].starts_with("/etc/tether/tether.toml:4:5: environment variable `NOPE`"),
            "{rendered:?}"
        );
    }

    #[test]
    fn alerts_take_defaults_and_expand_env() {
        let config = parse("[alerts]\nwebhook_url = \"https://hooks.example/${TOKEN}\"\n").expect("valid");
        let alerts = config.alerts.expect("alerts");
        assert_eq!(alerts.webhook_url, "https://hooks.example/t0k3n");
        assert_eq!(
            (
                alerts.dead_letters_over,
                alerts.stall_after_secs,
                alerts.check_every_secs
            ),
            (10, 900, 30)
        );
        assert!(!format!("{alerts:?}").contains("t0k3n"), "the URL is a secret");
        let config = parse(
            "[alerts]\nwebhook_url = \"http://127.0.0.1:9/x\"\ndead_letters_over = 0\nstall_after_secs = 60\ncheck_every_secs = 1\n",
        )
        .expect("valid");
        let alerts = config.alerts.expect("alerts");
        assert_eq!(
            (
                alerts.dead_letters_over,
                alerts.stall_after_secs,
                alerts.check_every_secs
            ),
            (0, 60, 1)
        );
        assert_eq!(parse("plugins_dir = \"p\"\n").expect("valid").alerts, None);
    }

    #[test]
    fn alerts_mistakes_are_located() {
        let cases = [
            (
                "[alerts]\nwebhook_url = \"https://x\"\n  dead_letter_over = 3\n",
                (3, 3),
                "unknown field `dead_letter_over`",
            ),
            (
                "[alerts]\ndead_letters_over = 3\n",
                (1, 1),
                "missing field `webhook_url`",
            ),
            (
                "[alerts]\nwebhook_url = \"https://x\"\ncheck_every_secs = 0\n",
                (3, 20),
                "check_every_secs must be at least 1",
            ),
            ("[alerts]\nwebhook_url = \"ftp://x\"\n", (2, 15), "http:// or https://"),
            (
                "[alerts]\nwebhook_url = \"https://x\"\nstall_after_secs = \"15m\"\n",
                (3, 20),
                "invalid type",
            ),
        ];
        for (text, (line, column), message) in cases {
            let errors = parse(text).expect_err(text);
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert_eq!(
                (errors[0].line, errors[0].column),
                (line, column),
                "{text}: {}",
                errors[0]
            );
            assert!(errors[0].message.contains(message), "{text}: {}", errors[0]);
        }
    }

    #[test]
    fn env_expansion_edge_cases() {
        assert_eq!(expand_env("a${TOKEN}b${TOKEN}", &env).as_deref(), Ok("at0k3nbt0k3n"));
        assert_eq!(expand_env("literal $${TOKEN}", &env).as_deref(), Ok("literal ${TOKEN}"));
        assert_eq!(expand_env("unclosed ${TOKEN", &env).as_deref(), Ok("unclosed ${TOKEN"));
        assert_eq!(expand_env("${MISSING}", &env), Err("MISSING".to_owned()));
    }
}
