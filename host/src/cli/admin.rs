//! `rapidwasm plugins list|swap`: the running server's admin API.

use anyhow::{Context, bail};
use rapidwasm::config::Config;
use rapidwasm::http::SwapRequest;
use rapidwasm::plugins::{PluginInfo, SwapReport};

use super::{Plugins, remote};

/// The admin token: `RAPIDWASM_ADMIN_TOKEN`, else the configuration's.
fn token(config: &Config) -> anyhow::Result<String> {
    match std::env::var("RAPIDWASM_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => Ok(token),
        _ => config.admin_token.clone().context(
            "the admin API needs a token: set `admin_token` in the configuration (the server's) or RAPIDWASM_ADMIN_TOKEN",
        ),
    }
}

/// Run a `plugins` command against the server at the configuration's `listen`.
pub async fn plugins(config: &Config, action: Plugins) -> anyhow::Result<()> {
    let token = token(config)?;
    let listen = config.listen;
    match action {
        Plugins::List => {
            let list: Vec<PluginInfo> = remote::get_as(listen, "/admin/v1/plugins", Some(&token)).await?;
            for p in list {
                println!(
                    "{}\t{}\tv{}\t{}\t{}",
                    p.name,
                    p.kind,
                    p.version,
                    p.source,
                    &p.sha256[..p.sha256.len().min(12)]
                );
            }
        }
        Plugins::Swap { name, plugin, settings } => {
            // The server reads the file: give it an absolute path.
            let plugin = if plugin.starts_with("builtin:") {
                plugin
            } else {
                let path = std::path::Path::new(&plugin);
                if !path.is_file() {
                    bail!("{plugin} is not a file");
                }
                std::fs::canonicalize(path)?.display().to_string()
            };
            let settings = (!settings.is_empty()).then(|| settings.into_iter().collect());
            let request = SwapRequest { plugin, settings };
            let path = format!("/admin/v1/plugins/{name}/swap");
            let report: SwapReport = remote::post_as(listen, &path, &request, Some(&token)).await?;
            println!(
                "swapped {} to v{} ({}): loaded in {:.1} ms, calls held off {:.1} µs, {} calls finishing on the old version",
                report.plugin.name,
                report.plugin.version,
                report.plugin.source,
                report.load_us as f64 / 1000.0,
                report.stall_ns as f64 / 1000.0,
                report.draining_calls
            );
        }
    }
    Ok(())
}
