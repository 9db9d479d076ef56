//! The example plugins of `plugins/`, compiled to WebAssembly components by
//! this crate's build script and embedded as bytes.
//!
//! The host uses them for its built-in configuration (`plugin =
//! "builtin:echo"`); tests load them as real components.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The built-in plugin called `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}
