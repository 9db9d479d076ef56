//! `watch_plugins = true`: swap a plugin when its `.wasm` file changes.
//!
//! Every [`INTERVAL`] the watcher looks at the file of each plugin that was
//! loaded from one (built-in plugins have none), in every tenant. When a
//! file's modification time or size changes and its contents differ from
//! the running version's, the plugin is swapped exactly as
//! `rapidwasm plugins swap` would: checked first, calls in flight finish on
//! the old version. A file that does not load (half written, wrong world)
//! is logged and the running version keeps serving; the next change is
//! tried again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::plugins::sha256_hex;
use crate::tenant::Tenant;

/// How often plugin files are looked at.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// What a file looked like last time.
type Seen = (Option<SystemTime>, u64);

/// Watch the plugin files of `tenants` until the task is aborted.
pub async fn watch(tenants: Vec<Arc<Tenant>>) {
    let mut seen: HashMap<(String, String), Seen> = HashMap::new();
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for tenant in &tenants {
            for plugin in tenant.registry().list() {
                if plugin.source.starts_with("builtin:") {
                    continue;
                }
                let path = PathBuf::from(&plugin.source);
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                let now = (meta.modified().ok(), meta.len());
                let key = (tenant.name().to_owned(), plugin.name.clone());
                match seen.insert(key, now) {
                    Some(before) if before != now => {}
                    _ => continue,
                }
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        tracing::warn!(tenant = tenant.name(), plugin = plugin.name, %err, "cannot read the changed plugin file");
                        continue;
                    }
                };
                if sha256_hex(&bytes) == plugin.sha256 {
                    continue;
                }
                match tenant.registry().swap(&plugin.name, &bytes, &plugin.source, None).await {
                    Ok(report) => tracing::info!(
                        tenant = tenant.name(),
                        plugin = plugin.name,
                        version = report.plugin.version,
                        "swapped: its file changed"
                    ),
                    Err(err) => tracing::warn!(
                        tenant = tenant.name(),
                        plugin = plugin.name,
                        %err,
                        "its file changed but does not load"
                    ),
                }
            }
        }
    }
}
