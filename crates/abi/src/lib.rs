//! The connector ABI shared by the Tether host and every connector.
//!
//! Three layers, from what a plugin author sees to what crosses the `.so` boundary:
//!
//! * [`wire`]: serde types (manifest, records, pages, HTTP messages, typed errors). Everything that
//!   crosses the boundary is JSON text of these types.
//! * [`Connector`], [`Plugin`] and [`HostServices`]: plain Rust traits. A plugin implements the
//!   first two; the host implements the third. Native connectors (GHL) use the same traits.
//! * [`ffi`]: the `abi_stable` root module and trait objects, plus adapters between them and the
//!   plain traits. [`export_plugin!`] turns a [`Plugin`] into a loadable library.
//!
//! This crate does no I/O and depends on nothing that carries a runtime (tokio, tracing, ...).

pub mod ffi;
pub mod wire;

mod traits;

pub use traits::{Connector, Host, HostServices, Plugin};
pub use wire::*;

/// The version of the connector ABI. The loader refuses a plugin built against any other value
/// before running any of its code. Bump it on every change to [`ffi`] or to the meaning of a
/// [`wire`] type.
pub const ABI_VERSION: u32 = 1;

/// The name of the `u32` static every plugin exports holding the [`ABI_VERSION`] it was built with.
pub const ABI_VERSION_SYMBOL: &[u8] = b"TETHER_ABI_VERSION\0";

/// Exports a [`Plugin`] implementation as a Tether plugin library.
///
/// ```ignore
/// struct Moloni { /* ... */ }
/// impl tether_abi::Connector for Moloni { /* ... */ }
/// impl tether_abi::Plugin for Moloni { /* ... */ }
/// tether_abi::export_plugin!(Moloni);
/// ```
///
/// Every exported call is wrapped in `catch_unwind`: a panic comes back to the host as a
/// `fatal` error instead of unwinding across the boundary.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// Read by the loader before any code of this library runs.
        #[no_mangle]
        pub static TETHER_ABI_VERSION: u32 = $crate::ABI_VERSION;

        #[$crate::ffi::abi_stable::export_root_module]
        pub fn tether_plugin_root_module() -> $crate::ffi::PluginModuleRef {
            $crate::ffi::plugin_module::<$plugin>()
        }
    };
}
