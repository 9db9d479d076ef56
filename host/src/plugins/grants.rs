//! Capabilities an operator grants one plugin beyond the deny-all default.
//!
//! Without grants a plugin's WASI has no files, no environment, no
//! arguments, no sockets and no name lookups (backends still get
//! `wasi:http`, limited to their `allowed_hosts`). Grants add exactly what
//! the configuration names: environment variables with given values,
//! directories (read-only unless `writable`), and TCP connections to given
//! addresses. Nothing is inherited from the host process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// What one plugin is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Environment variables and their values, as the plugin sees them.
    pub env: Vec<(String, String)>,
    /// Directories of the host made visible to the plugin.
    pub dirs: Vec<DirGrant>,
    /// Addresses the plugin may open TCP connections to.
    pub tcp_connect: Vec<SocketAddr>,
}

/// One directory of the host, visible to a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the plugin sees it (an absolute path such as `/data`).
    pub guest: String,
    /// Whether the plugin may create, change and delete files in it.
    pub writable: bool,
}

impl Grants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.dirs.is_empty() && self.tcp_connect.is_empty()
    }

    /// A WASI context with these grants and nothing else.
    pub(super) fn wasi(&self) -> Result<WasiCtx, String> {
        let mut builder = WasiCtxBuilder::new();
        for (key, value) in &self.env {
            builder.env(key, value);
        }
        for dir in &self.dirs {
            let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| format!("cannot open granted directory {}: {e:#}", dir.host.display()))?;
        }
        if !self.tcp_connect.is_empty() {
            let allowed: Arc<[SocketAddr]> = self.tcp_connect.clone().into();
            builder.allow_tcp(true).socket_addr_check(move |addr, usage| {
                let ok = match usage {
                    SocketAddrUse::TcpConnect => allowed.contains(&addr),
                    // `connect` binds implicitly to a wildcard address first.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    _ => false,
                };
                Box::pin(async move { ok })
            });
        }
        Ok(builder.build())
    }
}
