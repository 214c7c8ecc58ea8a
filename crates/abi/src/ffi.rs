#![allow(non_local_definitions)] // emitted by #[sabi_trait]; not ours to move
//! What crosses the `.so` boundary: the `abi_stable` root module, two trait objects, and the
//! adapters that turn them into the plain traits of this crate and back.
//!
//! Every call carries JSON text of [`crate::wire`] types. Every adapter entry point catches
//! panics, on both sides: unwinding across `extern "C"` aborts the process.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

pub use abi_stable;
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_trait,
    sabi_trait::TD_Opaque,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString},
    StableAbi,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::traits::{Connector, Host, HostServices, Plugin};
use crate::wire::*;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// JSON [`Manifest`], or JSON [`ConnectorError`].
    pub manifest: extern "C" fn() -> RResult<RString, RString>,
    /// Opens an instance from a JSON [`OpenRequest`].
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(FfiHostBox, RStr<'_>) -> RResult<FfiConnectorBox, RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "tether_plugin";
    const NAME: &'static str = "tether_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A connector instance across the boundary. Requests and replies are JSON; errors are JSON
/// [`ConnectorError`]s.
#[sabi_trait]
pub trait FfiConnector: Send + Sync {
    fn check(&self) -> RResult<RString, RString>;
    fn read(&self, request: RStr<'_>) -> RResult<RString, RString>;
    fn write(&self, request: RStr<'_>) -> RResult<RString, RString>;
    #[sabi(last_prefix_field)]
    fn webhook(&self, request: RStr<'_>) -> RResult<RString, RString>;
}

pub type FfiConnectorBox = FfiConnector_TO<'static, RBox<()>>;

/// [`HostServices`] across the boundary.
#[sabi_trait]
pub trait FfiHost: Send + Sync {
    fn http(&self, request: RStr<'_>) -> RResult<RString, RString>;
    fn log(&self, level: u8, message: RStr<'_>, fields: RStr<'_>);
    fn now_ms(&self) -> i64;
    fn secret_get(&self, key: RStr<'_>) -> RResult<ROption<RString>, RString>;
    #[sabi(last_prefix_field)]
    fn secret_put(&self, key: RStr<'_>, value: RStr<'_>) -> RResult<(), RString>;
}

pub type FfiHostBox = FfiHost_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// Plugin side: the root module of a `Plugin`, and a `HostServices` that calls through `FfiHost`.

/// The root module for `P`; called by the code [`crate::export_plugin!`] generates.
pub fn plugin_module<P: Plugin>() -> PluginModuleRef {
    PluginModule {
        manifest: manifest_of::<P>,
        open: open_plugin::<P>,
    }
    .leak_into_prefix()
}

extern "C" fn manifest_of<P: Plugin>() -> RResult<RString, RString> {
    reply("manifest", || Ok(P::manifest()))
}

extern "C" fn open_plugin<P: Plugin>(host: FfiHostBox, request: RStr<'_>) -> RResult<FfiConnectorBox, RString> {
    let opened = guarded("open", || {
        let request: OpenRequest = decode(request.as_str(), "open request")?;
        let host: Host = Arc::new(FfiHostClient(host));
        P::open(host, request)
    });
    match opened {
        Ok(connector) => RResult::ROk(FfiConnector_TO::from_value(ExportedConnector(connector), TD_Opaque)),
        Err(error) => RResult::RErr(encode_error(&error)),
    }
}

struct ExportedConnector<C>(C);

impl<C: Connector> FfiConnector for ExportedConnector<C> {
    fn check(&self) -> RResult<RString, RString> {
        reply("check", || self.0.check())
    }

    fn read(&self, request: RStr<'_>) -> RResult<RString, RString> {
        reply("read", || self.0.read(decode(request.as_str(), "read request")?))
    }

    fn write(&self, request: RStr<'_>) -> RResult<RString, RString> {
        reply("write", || self.0.write(decode(request.as_str(), "write request")?))
    }

    fn webhook(&self, request: RStr<'_>) -> RResult<RString, RString> {
        reply("webhook", || {
            self.0.webhook(decode(request.as_str(), "webhook request")?)
        })
    }
}

struct FfiHostClient(FfiHostBox);

impl HostServices for FfiHostClient {
    fn http(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let request = encode(&request)?;
        accept(self.0.http(request.as_rstr()), "http response")
    }

    fn log(&self, level: LogLevel, message: &str, fields: &Fields) {
        let fields = serde_json::to_string(fields).unwrap_or_else(|_| "{}".to_owned());
        self.0.log(level_to_u8(level), message.into(), fields.as_str().into());
    }

    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }

    fn secret_get(&self, key: &str) -> Result<Option<String>, ConnectorError> {
        match self.0.secret_get(key.into()) {
            RResult::ROk(value) => Ok(value.into_option().map(RString::into_string)),
            RResult::RErr(error) => Err(decode_error(&error)),
        }
    }

    fn secret_put(&self, key: &str, value: &str) -> Result<(), ConnectorError> {
        match self.0.secret_put(key.into(), value.into()) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(error) => Err(decode_error(&error)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host side: `HostServices` offered as an `FfiHost`, and a loaded `FfiConnector` as a `Connector`.

/// Wraps the host's services for a plugin.
pub fn host_for_plugin(host: Host) -> FfiHostBox {
    FfiHost_TO::from_value(ExportedHost(host), TD_Opaque)
}

struct ExportedHost(Host);

impl FfiHost for ExportedHost {
    fn http(&self, request: RStr<'_>) -> RResult<RString, RString> {
        reply("host http", || self.0.http(decode(request.as_str(), "http request")?))
    }

    fn log(&self, level: u8, message: RStr<'_>, fields: RStr<'_>) {
        // A log line that cannot be decoded is still logged, with its fields as text.
        let _ = guarded("host log", || {
            let fields: Fields = serde_json::from_str(fields.as_str()).unwrap_or_else(|_| {
                let mut map = Fields::new();
                map.insert("fields".into(), fields.as_str().into());
                map
            });
            self.0.log(level_from_u8(level), message.as_str(), &fields);
            Ok(())
        });
    }

    fn now_ms(&self) -> i64 {
        guarded("host now", || Ok(self.0.now_ms())).unwrap_or(0)
    }

    fn secret_get(&self, key: RStr<'_>) -> RResult<ROption<RString>, RString> {
        match guarded("host secret_get", || self.0.secret_get(key.as_str())) {
            Ok(value) => RResult::ROk(value.map(RString::from).into()),
            Err(error) => RResult::RErr(encode_error(&error)),
        }
    }

    fn secret_put(&self, key: RStr<'_>, value: RStr<'_>) -> RResult<(), RString> {
        match guarded("host secret_put", || self.0.secret_put(key.as_str(), value.as_str())) {
            Ok(()) => RResult::ROk(()),
            Err(error) => RResult::RErr(encode_error(&error)),
        }
    }
}

/// A connector instance opened from a plugin library, seen as a plain [`Connector`].
pub struct LoadedConnector(FfiConnectorBox);

impl LoadedConnector {
    pub fn new(inner: FfiConnectorBox) -> Self {
        LoadedConnector(inner)
    }
}

impl Connector for LoadedConnector {
    fn check(&self) -> Result<CheckReport, ConnectorError> {
        accept(self.0.check(), "check reply")
    }

    fn read(&self, request: ReadRequest) -> Result<Page, ConnectorError> {
        let request = encode(&request)?;
        accept(self.0.read(request.as_rstr()), "read reply")
    }

    fn write(&self, request: WriteRequest) -> Result<WriteResult, ConnectorError> {
        let request = encode(&request)?;
        accept(self.0.write(request.as_rstr()), "write reply")
    }

    fn webhook(&self, request: WebhookRequest) -> Result<Vec<WebhookEvent>, ConnectorError> {
        let request = encode(&request)?;
        accept(self.0.webhook(request.as_rstr()), "webhook reply")
    }
}

/// Decodes the reply of a plugin's `manifest` entry point.
pub fn accept_manifest(reply: RResult<RString, RString>) -> Result<Manifest, ConnectorError> {
    accept(reply, "manifest")
}

/// Opens an instance through a plugin's root module.
pub fn open_instance(
    module: PluginModuleRef,
    host: Host,
    request: &OpenRequest,
) -> Result<LoadedConnector, ConnectorError> {
    let request = encode(request)?;
    match (module.open())(host_for_plugin(host), request.as_rstr()) {
        RResult::ROk(connector) => Ok(LoadedConnector(connector)),
        RResult::RErr(error) => Err(decode_error(&error)),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers shared by both sides.

/// Runs `f`, turning a panic into a `fatal` error that names the call.
fn guarded<T>(call: &str, f: impl FnOnce() -> Result<T, ConnectorError>) -> Result<T, ConnectorError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(ConnectorError::fatal(format!(
            "panicked in {call}: {}",
            panic_message(payload.as_ref())
        ))),
    }
}

fn reply<T: Serialize>(call: &str, f: impl FnOnce() -> Result<T, ConnectorError>) -> RResult<RString, RString> {
    match guarded(call, f).and_then(|value| encode(&value)) {
        Ok(json) => RResult::ROk(json),
        Err(error) => RResult::RErr(encode_error(&error)),
    }
}

fn accept<T: DeserializeOwned>(reply: RResult<RString, RString>, what: &str) -> Result<T, ConnectorError> {
    match reply {
        RResult::ROk(json) => decode(json.as_str(), what),
        RResult::RErr(error) => Err(decode_error(&error)),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<RString, ConnectorError> {
    serde_json::to_string(value)
        .map(RString::from)
        .map_err(|e| ConnectorError::fatal(format!("cannot encode: {e}")))
}

fn decode<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, ConnectorError> {
    serde_json::from_str(json).map_err(|e| ConnectorError::fatal(format!("malformed {what}: {e}")))
}

fn encode_error(error: &ConnectorError) -> RString {
    // A ConnectorError is plain strings and enums: serialising it cannot fail.
    serde_json::to_string(error)
        .unwrap_or_else(|_| String::from(r#"{"kind":{"kind":"fatal"},"message":"unencodable error"}"#))
        .into()
}

fn decode_error(json: &RString) -> ConnectorError {
    serde_json::from_str(json.as_str())
        .unwrap_or_else(|e| ConnectorError::fatal(format!("malformed error across the boundary ({e}): {json}")))
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    }
}

fn level_to_u8(level: LogLevel) -> u8 {
    match level {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
        LogLevel::Trace => 4,
    }
}

fn level_from_u8(level: u8) -> LogLevel {
    match level {
        0 => LogLevel::Error,
        1 => LogLevel::Warn,
        2 => LogLevel::Info,
        3 => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}
