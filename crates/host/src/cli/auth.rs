//! `tether auth ghl`: the OAuth consent, once. Prints the consent URL, receives the redirect on
//! a loopback listener, checks `state`, exchanges the code and stores the tokens encrypted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use rand::RngCore;
use tether_abi::OpenRequest;
use tether_core::config::{Config, ConnectorConfig};
use tokio::sync::mpsc;

use super::{CliError, Exit};

pub struct AuthArgs {
    pub connector: Option<String>,
    pub timeout: Duration,
}

pub fn ghl(config: &Config, args: &AuthArgs) -> Result<Exit, CliError> {
    let instance = pick_instance(config, args.connector.as_deref())?;
    let redirect = redirect_address(instance)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot start the async runtime: {e}")))?;
    let store = runtime.block_on(super::open_store(config))?;
    let registry = super::listing::load_for_run(config)?;
    let context = super::host_context(config, &registry, &runtime, store)?;
    let host = context.for_instance(&instance.name, instance.rate_limit);
    let request = OpenRequest {
        instance: instance.name.clone(),
        config: instance.config.clone(),
    };
    // Connector calls block on the runtime: this thread is not one of its workers, so they may.
    let ghl = <tether_ghl::Ghl as tether_abi::Plugin>::open(host, request).map_err(|e| {
        CliError::new(
            Exit::Usage,
            format!("connector `{}` cannot be opened: {}", instance.name, e.message),
        )
    })?;

    let mut state = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut state);
    let state: String = state.iter().map(|b| format!("{b:02x}")).collect();
    let consent = ghl
        .consent_url(&state)
        .map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(redirect.address))
        .map_err(|e| {
            CliError::new(
                Exit::Failed,
                format!("cannot listen on {} for the redirect: {e}", redirect.address),
            )
        })?;
    println!(
        "Open this page in a browser and choose the location to connect `{}`:\n",
        instance.name
    );
    println!("  {consent}\n");
    println!(
        "Waiting up to {} s for the redirect to {} ...",
        args.timeout.as_secs(),
        redirect.uri
    );
    let code = runtime.block_on(wait_for_code(listener, redirect.path, state, args.timeout))?;
    let grant = ghl
        .exchange_code(&code)
        .map_err(|e| CliError::new(Exit::Failed, format!("the code exchange failed: {e}")))?;
    println!(
        "connected `{}` to location {}; tokens stored encrypted (access token valid until {} ms since epoch)",
        instance.name,
        grant.location_id.as_deref().unwrap_or("?"),
        grant.expires_at_ms
    );
    Ok(Exit::Ok)
}

fn pick_instance<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a ConnectorConfig, CliError> {
    let ghl: Vec<&ConnectorConfig> = config.connectors.values().filter(|c| c.plugin == "ghl").collect();
    match (name, ghl.as_slice()) {
        (Some(name), _) => ghl.iter().find(|c| c.name == name).copied().ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!("there is no GHL connector named `{name}` in the configuration"),
            )
        }),
        (None, [only]) => Ok(only),
        (None, []) => Err(CliError::new(
            Exit::Usage,
            "the configuration has no connector with plugin = \"ghl\"",
        )),
        (None, _) => Err(CliError::new(
            Exit::Usage,
            "the configuration has several GHL connectors; pick one with --connector",
        )),
    }
}

struct Redirect {
    uri: String,
    address: SocketAddr,
    path: String,
}

/// The redirect must come back to this machine: a loopback `http://` URI with a port.
fn redirect_address(instance: &ConnectorConfig) -> Result<Redirect, CliError> {
    let uri = instance
        .config
        .get("redirect_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!("connector `{}` needs `redirect_uri` for OAuth", instance.name),
            )
        })?;
    let bad = |why: &str| CliError::new(Exit::Usage, format!("redirect_uri `{uri}` {why}"));
    let parsed = reqwest::Url::parse(uri).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(bad("must be http:// on loopback (the listener is local)"));
    }
    let host = match parsed.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => std::net::IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => std::net::IpAddr::V6(ip),
        Some(url::Host::Domain("localhost")) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        _ => return Err(bad("must point at 127.0.0.1, ::1 or localhost")),
    };
    let port = parsed.port().ok_or_else(|| bad("needs an explicit port"))?;
    Ok(Redirect {
        uri: uri.to_owned(),
        address: SocketAddr::new(host, port),
        path: parsed.path().to_owned(),
    })
}

type Callback = mpsc::Sender<Result<String, String>>;

async fn wait_for_code(
    listener: tokio::net::TcpListener,
    path: String,
    state: String,
    timeout: Duration,
) -> Result<String, CliError> {
    let (sender, mut receiver) = mpsc::channel::<Result<String, String>>(1);
    let app = Router::new()
        .route(&path, get(callback))
        .with_state((sender, Arc::new(state)));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let outcome = tokio::time::timeout(timeout, receiver.recv()).await;
    server.abort();
    match outcome {
        Ok(Some(Ok(code))) => Ok(code),
        Ok(Some(Err(refused))) => Err(CliError::new(
            Exit::Failed,
            format!("the consent was refused: {refused}"),
        )),
        Ok(None) => Err(CliError::new(
            Exit::Failed,
            "the redirect listener stopped unexpectedly",
        )),
        Err(_) => Err(CliError::new(
            Exit::Failed,
            format!("no redirect arrived within {} s", timeout.as_secs()),
        )),
    }
}

async fn callback(
    State((sender, state)): State<(Callback, Arc<String>)>,
    Query(params): Query<HashMap<String, String>>,
) -> (axum::http::StatusCode, Html<&'static str>) {
    use axum::http::StatusCode;
    // A redirect without our state is not the answer to our consent request: ignore it.
    if params.get("state") != Some(&*state) {
        return (
            StatusCode::BAD_REQUEST,
            Html("<p>This redirect does not match the pending consent.</p>"),
        );
    }
    let outcome = match (params.get("code"), params.get("error")) {
        (Some(code), _) => Ok(code.clone()),
        (None, Some(error)) => Err(error.clone()),
        (None, None) => Err("the redirect carried neither a code nor an error".to_owned()),
    };
    let page = if outcome.is_ok() {
        "<p>Tether received the consent. You can close this tab.</p>"
    } else {
        "<p>The consent was refused. See the terminal.</p>"
    };
    let _ = sender.send(outcome).await;
    (StatusCode::OK, Html(page))
}
