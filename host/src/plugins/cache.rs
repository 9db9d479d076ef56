//! Compiled components on disk, so a restart (or a swap back to a known
//! version) skips compilation.
//!
//! Files are named by the SHA-256 of the component's bytes and a hash of
//! the engine's compatibility settings (`Engine::precompile_compatibility_hash`,
//! which covers the wasmtime version and every code-generation option), so a
//! changed engine never picks up an old file. Only the host writes this
//! directory: deserializing is unsafe on bytes from anyone else. A file is
//! written to a temporary name and renamed into place, never overwritten in
//! place (loaded files are memory-mapped).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The SHA-256 of a component's bytes, in lowercase hex: its identity in
/// the cache and in the plugin list.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache file for `bytes` compiled by `engine` in `dir`.
pub(super) fn path_for(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let hex = sha256_hex(bytes);
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{hex}-{:016x}.cwasm", hasher.finish()))
}

/// The component cached at `path`, if it is there and this engine accepts it.
pub(super) fn load(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: only this host writes the cache directory, and every file in it
    // was produced by `Component::serialize` of an engine with the same
    // compatibility hash (it is in the file name); wasmtime also checks the
    // file's header and refuses one from a different configuration.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(path = %path.display(), err = %format!("{err:#}"), "ignoring an unusable compiled component");
            None
        }
    }
}

/// Keep `component` at `path`: written aside, then renamed into place.
pub(super) fn store(component: &Component, path: &Path) {
    let written = (|| -> anyhow::Result<()> {
        let dir = path.parent().ok_or_else(|| anyhow::anyhow!("no parent directory"))?;
        std::fs::create_dir_all(dir)?;
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let temp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&temp, bytes)?;
        std::fs::rename(&temp, path)?;
        Ok(())
    })();
    if let Err(err) = written {
        tracing::warn!(path = %path.display(), %err, "cannot keep a compiled component; it will be compiled again");
    }
}
