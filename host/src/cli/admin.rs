//! `rapidwasm plugins list|load|swap|unload`: the running server's admin API.

use anyhow::{Context, bail};
use rapidwasm::config::Config;
use rapidwasm::http::{LoadRequest, SwapRequest};
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

/// `plugin` as the server must read it: `builtin:NAME`, or the file's
/// absolute path.
fn absolute(plugin: String) -> anyhow::Result<String> {
    if plugin.starts_with("builtin:") {
        return Ok(plugin);
    }
    let path = std::path::Path::new(&plugin);
    if !path.is_file() {
        bail!("{plugin} is not a file");
    }
    Ok(std::fs::canonicalize(path)?.display().to_string())
}

/// Run a `plugins` command against the server at the configuration's
/// `listen`, for `tenant` (the default tenant when `None`).
pub async fn plugins(config: &Config, tenant: Option<&str>, action: Plugins) -> anyhow::Result<()> {
    let token = token(config)?;
    let listen = config.listen;
    let base = match tenant {
        Some(tenant) if tenant != rapidwasm::config::DEFAULT_TENANT => format!("/t/{tenant}/admin/v1/plugins"),
        _ => "/admin/v1/plugins".to_owned(),
    };
    match action {
        Plugins::List => {
            let list: Vec<PluginInfo> = remote::get_as(listen, &base, Some(&token)).await?;
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
        Plugins::Load { name, plugin, kind, settings, allowed_hosts, position } => {
            let request = LoadRequest {
                name,
                kind,
                plugin: absolute(plugin)?,
                settings: settings.into_iter().collect(),
                allowed_hosts,
                position,
            };
            let p: PluginInfo = remote::post_as(listen, &base, &request, Some(&token)).await?;
            println!("loaded {} {} ({})", p.kind, p.name, p.source);
        }
        Plugins::Unload { name } => {
            let p: PluginInfo = remote::delete_as(listen, &format!("{base}/{name}"), &token).await?;
            println!("unloaded {} {} (v{}, {})", p.kind, p.name, p.version, p.source);
        }
        Plugins::Swap { name, plugin, settings } => {
            let settings = (!settings.is_empty()).then(|| settings.into_iter().collect());
            let request = SwapRequest { plugin: absolute(plugin)?, settings };
            let path = format!("{base}/{name}/swap");
            let report: SwapReport = remote::post_as(listen, &path, &request, Some(&token)).await?;
            println!(
                "swapped {} to v{} ({}): loaded in {:.1} ms, exchanged in {:.1} µs, {} calls finishing on the old version",
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
