//! Configuration: a TOML file, validated before anything starts.
//!
//! ```toml
//! data_dir = "rapidwasm-data"          # sled store; relative to this file
//! compile_cache = "rapidwasm-data/compiled"  # compiled components, reused on restart
//! listen = "127.0.0.1:8080"            # the HTTP server of `rapidwasm serve`
//! admin_token = "a long random secret" # turns on the admin API (plugin list and swap)
//! watch_plugins = false                # swap a plugin when its .wasm file changes
//! project_name = "RapidSMS"            # fills %(project_name)s
//! default_response = "Sorry, %(project_name)s could not understand your message."
//!
//! [router]                           # like RAPIDSMS_ROUTER
//! kind = "durable"                     # or "blocking" (the default: in process, nothing stored)
//! workers = 16                         # durable: routing workers (one per connection at a time)
//! send_concurrency = 16                # durable: sends in flight per backend
//! max_attempts = 8                     # durable: tries per transmission before it is a dead letter
//! retry_initial_ms = 1000              # durable: first retry's wait; doubles each time, with jitter
//! retry_max_ms = 300000                # durable: longest wait between tries
//!
//! [limits]
//! call_timeout_ms = 1000               # longest one app call may run
//! backend_call_timeout_ms = 30000      # longest one backend call may run (network included)
//! memory_mib = 64                      # most memory one plugin instance may use
//! max_instances = 32                   # most calls one plugin runs at once (more wait, up to the call timeout)
//! max_depth = 8                        # nesting of receive/send called by plugins
//!
//! [[apps]]                             # in phase order, like INSTALLED_APPS
//! name = "echo"
//! plugin = "builtin:echo"              # or a path to a .wasm component
//! memory_mib = 128                     # this plugin's own limits (optional)
//! call_timeout_ms = 5000
//!
//! [backends.console]                   # like INSTALLED_BACKENDS
//! plugin = "builtin:console"
//! settings = { fail_identities = "" }  # handed to the plugin's `configure`
//!
//! [backends.kannel]
//! plugin = "builtin:kannel"
//! allowed_hosts = ["127.0.0.1:13013"]  # where it may send HTTP; nowhere if absent
//! settings = { sendsms_url = "http://127.0.0.1:13013/cgi-bin/sendsms" }
//! ```
//!
//! Every error names the file, the key and the problem.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::messages::Fields;
use crate::plugins::{AllowedHosts, DirGrant, Grants, Limits, PluginKind};
use crate::router::{DurableOptions, RetryPolicy};

/// The configuration used when none is given: the example plugins, the
/// console backend and a store in `./rapidwasm-data`.
pub const DEFAULT_CONFIG: &str = r#"# rapidwasm's built-in configuration.
data_dir = "rapidwasm-data"
listen = "127.0.0.1:8080"
project_name = "RapidSMS"
default_response = "Sorry, %(project_name)s could not understand your message."

[router]
kind = "durable"

[[apps]]
name = "messagelog"
plugin = "builtin:messagelog"

[[apps]]
name = "echo"
plugin = "builtin:echo"

[[apps]]
name = "ping"
plugin = "builtin:ping"

[[apps]]
name = "default"
plugin = "builtin:default"

[backends.console]
plugin = "builtin:console"

[backends.message_tester]
plugin = "builtin:tester"

[backends.http]
plugin = "builtin:http"
"#;

/// The text RapidSMS's default app sends when nothing handled a message.
pub const DEFAULT_RESPONSE: &str = "Sorry, %(project_name)s could not understand your message.";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from; `None` for the built-in configuration.
    pub source: Option<PathBuf>,
    /// The sled store's directory.
    pub data_dir: PathBuf,
    /// Where `rapidwasm serve` listens.
    pub listen: SocketAddr,
    /// Fills `%(project_name)s` in the default response.
    pub project_name: String,
    /// What the default app answers; empty sends nothing.
    pub default_response: String,
    /// Where compiled components are kept between runs.
    pub compile_cache: std::path::PathBuf,
    /// How deeply plugins may nest `receive`/`send`.
    pub max_depth: u32,
    /// The durable router's settings; `None` for the blocking router.
    pub durable: Option<DurableOptions>,
    /// The bearer token of the admin API; `None` turns the API off.
    pub admin_token: Option<String>,
    /// Swap a plugin when its `.wasm` file changes.
    pub watch_plugins: bool,
    /// The tenants. The first is always [`DEFAULT_TENANT`], made of the
    /// top-level `apps`, `backends`, `limits` and `api_keys`; the others come
    /// from `[tenants.NAME]`, in name order.
    pub tenants: Vec<TenantConfig>,
}

/// The name of the tenant the top-level keys configure; its URLs have no
/// `/t/NAME` prefix.
pub const DEFAULT_TENANT: &str = "default";

/// One tenant: a namespace with its own apps, backends, data, limits and
/// API keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Its name, as in `/t/NAME/...` URLs.
    pub name: String,
    /// Keys that open its `/api/v1` (as `Authorization: Bearer KEY`); empty
    /// leaves the API open (the default tenant only).
    pub api_keys: Vec<String>,
    /// Its limits.
    pub limits: TenantLimits,
    /// Apps, in phase order.
    pub apps: Vec<PluginConfig>,
    /// Backends, by name.
    pub backends: Vec<PluginConfig>,
}

/// What one tenant may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Limits of every app call.
    pub app: Limits,
    /// Limits of every backend call: like `app`, with a longer timeout that
    /// covers the backend's network requests.
    pub backend: Limits,
    /// Longest message text accepted or produced, in bytes.
    pub max_message_bytes: usize,
    /// Requests per second its API and inbound URLs accept (the rest get
    /// 429); `None` for no limit.
    pub calls_per_second: Option<u32>,
}

impl Config {
    /// The tenant the top-level keys configure.
    pub fn default_tenant(&self) -> &TenantConfig {
        &self.tenants[0]
    }

    /// The tenant called `name`.
    pub fn tenant(&self, name: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.name == name)
    }
}

/// One configured app or backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Its name: the app's name in logs and events, the backend's name in
    /// connections; also its storage namespace.
    pub name: String,
    /// Where its component comes from.
    pub source: PluginSource,
    /// Settings for its `configure` (keys lower-cased, tables flattened).
    pub settings: Fields,
    /// Where it may send HTTP requests (backends only).
    pub allowed_hosts: AllowedHosts,
    /// Its call limits: the `[limits]` for its kind, with its own
    /// `memory_mib` and `call_timeout_ms` if it sets them.
    pub limits: Limits,
    /// What the operator grants it beyond the deny-all default.
    pub grants: Grants,
}

impl Config {
    /// The default tenant's first backend running the built-in message
    /// tester, which the `/tester` page talks to.
    pub fn tester_backend(&self) -> Option<&str> {
        self.default_tenant()
            .backends
            .iter()
            .find(|b| b.source == PluginSource::Builtin("tester".into()))
            .map(|b| b.name.as_str())
    }
}

impl std::fmt::Display for PluginSource {
    /// `builtin:NAME` or the file's path, as a configuration spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "builtin:{name}"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// One of the plugins built into the binary (`builtin:NAME`).
    Builtin(String),
    /// A `.wasm` component file.
    File(PathBuf),
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has keys of the wrong type or name.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{file}: `{key}`: {problem}")]
    Invalid {
        /// The file.
        file: String,
        /// The key, as a path (`apps[1].plugin`).
        key: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    compile_cache: Option<PathBuf>,
    admin_token: Option<String>,
    #[serde(default)]
    watch_plugins: bool,
    listen: Option<String>,
    project_name: Option<String>,
    default_response: Option<String>,
    #[serde(default)]
    router: RawRouter,
    #[serde(default)]
    api_keys: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
}

/// What a tenant's table holds; the top level holds the same for the
/// default tenant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    api_keys: Vec<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    apps: Vec<RawApp>,
    #[serde(default)]
    backends: BTreeMap<String, RawBackend>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    kind: Option<String>,
    workers: Option<u64>,
    send_concurrency: Option<u64>,
    max_attempts: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    call_timeout_ms: Option<u64>,
    backend_call_timeout_ms: Option<u64>,
    memory_mib: Option<u64>,
    max_instances: Option<u64>,
    max_depth: Option<u32>,
    fuel: Option<u64>,
    max_message_bytes: Option<u64>,
    calls_per_second: Option<u64>,
}

impl RawLimits {
    /// A tenant's limits: its own keys, and the top level's for the rest.
    fn over(&self, base: &RawLimits) -> RawLimits {
        RawLimits {
            call_timeout_ms: self.call_timeout_ms.or(base.call_timeout_ms),
            backend_call_timeout_ms: self.backend_call_timeout_ms.or(base.backend_call_timeout_ms),
            memory_mib: self.memory_mib.or(base.memory_mib),
            max_instances: self.max_instances.or(base.max_instances),
            max_depth: self.max_depth.or(base.max_depth),
            fuel: self.fuel.or(base.fuel),
            max_message_bytes: self.max_message_bytes.or(base.max_message_bytes),
            calls_per_second: self.calls_per_second.or(base.calls_per_second),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: String,
    plugin: String,
    memory_mib: Option<u64>,
    call_timeout_ms: Option<u64>,
    max_instances: Option<u64>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    settings: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    plugin: String,
    memory_mib: Option<u64>,
    call_timeout_ms: Option<u64>,
    max_instances: Option<u64>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    settings: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dirs: Vec<RawDir>,
    #[serde(default)]
    tcp_connect: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    writable: bool,
}

/// The names of the plugins built into the binary.
pub fn builtin_names() -> Vec<&'static str> {
    rapidwasm_builtin_plugins::ALL.iter().map(|(name, _)| *name).collect()
}

/// What checking one tenant needs from the file around it.
struct Checker<'a> {
    file: &'a str,
    base: &'a Path,
    project_name: &'a str,
    default_response: &'a str,
}

impl Checker<'_> {
    fn invalid(&self, key: &str, problem: String) -> ConfigError {
        ConfigError::Invalid { file: self.file.to_owned(), key: key.to_owned(), problem }
    }

    fn in_range(&self, key: &str, value: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, ConfigError> {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("{value} is outside {}..={}", range.start(), range.end())))
        }
    }

    /// A tenant's limits from its merged `[limits]`; `prefix` is where its
    /// keys live (`limits.` or `tenants.NAME.limits.`).
    fn limits(&self, prefix: &str, raw: &RawLimits) -> Result<TenantLimits, ConfigError> {
        let key = |name: &str| format!("{prefix}{name}");
        let call_timeout_ms =
            self.in_range(&key("call_timeout_ms"), raw.call_timeout_ms.unwrap_or(1000), TIMEOUT_MS)?;
        let backend_call_timeout_ms = self.in_range(
            &key("backend_call_timeout_ms"),
            raw.backend_call_timeout_ms.unwrap_or(30_000),
            BACKEND_TIMEOUT_MS,
        )?;
        let memory_mib = self.in_range(&key("memory_mib"), raw.memory_mib.unwrap_or(64), MEMORY_MIB)?;
        let max_instances = self.in_range(&key("max_instances"), raw.max_instances.unwrap_or(32), INSTANCES)? as usize;
        let fuel = match raw.fuel {
            Some(fuel) => Some(self.in_range(&key("fuel"), fuel, FUEL)?),
            None => None,
        };
        let max_message_bytes = self.in_range(
            &key("max_message_bytes"),
            raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES as u64),
            MESSAGE_BYTES,
        )? as usize;
        let calls_per_second = match raw.calls_per_second {
            Some(rate) => Some(self.in_range(&key("calls_per_second"), rate, 1..=1_000_000)? as u32),
            None => None,
        };
        Ok(TenantLimits {
            app: make_limits(call_timeout_ms, memory_mib, max_instances, fuel),
            backend: make_limits(backend_call_timeout_ms, memory_mib, max_instances, fuel),
            max_message_bytes,
            calls_per_second,
        })
    }

    /// A plugin's own limits over its kind's: `own` is its
    /// `[call_timeout_ms, memory_mib, max_instances]`.
    fn own_limits(
        &self,
        key: &dyn Fn(&str) -> String,
        base: Limits,
        own: [Option<u64>; 3],
    ) -> Result<Limits, ConfigError> {
        let [timeout, memory, instances] = own;
        let timeout = match timeout {
            Some(ms) => self.in_range(&key("call_timeout_ms"), ms, BACKEND_TIMEOUT_MS)?,
            None => base.call_timeout.as_millis() as u64,
        };
        let memory = match memory {
            Some(mib) => self.in_range(&key("memory_mib"), mib, MEMORY_MIB)?,
            None => (base.memory_bytes >> 20) as u64,
        };
        let instances = match instances {
            Some(n) => self.in_range(&key("max_instances"), n, INSTANCES)? as usize,
            None => base.max_instances,
        };
        Ok(make_limits(timeout, memory, instances, base.fuel))
    }

    fn grants(&self, key: &str, raw: RawGrants) -> Result<Grants, ConfigError> {
        for name in raw.env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(
                    self.invalid(&format!("{key}.env"), format!("{name:?} is not an environment variable name"))
                );
            }
        }
        let mut dirs = Vec::new();
        for (i, dir) in raw.dirs.into_iter().enumerate() {
            let host = self.base.join(&dir.host);
            if !host.is_dir() {
                return Err(
                    self.invalid(&format!("{key}.dirs[{i}].host"), format!("{} is not a directory", host.display()))
                );
            }
            if !dir.guest.starts_with('/') || dir.guest.contains('\0') {
                return Err(self.invalid(
                    &format!("{key}.dirs[{i}].guest"),
                    format!("{:?} must be an absolute path such as \"/data\"", dir.guest),
                ));
            }
            dirs.push(DirGrant { host, guest: dir.guest, writable: dir.writable });
        }
        let mut tcp_connect = Vec::new();
        for entry in raw.tcp_connect {
            let addr = entry.parse::<SocketAddr>().map_err(|e| {
                self.invalid(&format!("{key}.tcp_connect"), format!("{entry:?} is not an IP address and port: {e}"))
            })?;
            tcp_connect.push(addr);
        }
        Ok(Grants { env: raw.env.into_iter().collect(), dirs, tcp_connect })
    }

    /// Tenant `name` from its table; `prefix` is where its keys live (empty
    /// for the default tenant, else `tenants.NAME.`).
    fn tenant(&self, name: &str, prefix: &str, raw: RawTenant, top: &RawLimits) -> Result<TenantConfig, ConfigError> {
        let limits_prefix = format!("{prefix}limits.");
        if !prefix.is_empty() && raw.limits.max_depth.is_some() {
            return Err(self.invalid(
                &format!("{limits_prefix}max_depth"),
                "applies to every tenant: set it in the top-level [limits]".into(),
            ));
        }
        let limits = self.limits(&limits_prefix, &raw.limits.over(top))?;
        let mut api_keys = Vec::new();
        for (i, key) in raw.api_keys.into_iter().enumerate() {
            check_secret(&key).map_err(|p| self.invalid(&format!("{prefix}api_keys[{i}]"), p))?;
            api_keys.push(key);
        }
        if !prefix.is_empty() && api_keys.is_empty() {
            return Err(self.invalid(
                &format!("{prefix}api_keys"),
                "a tenant needs at least one API key (its /t/NAME/api/v1 is closed without one)".into(),
            ));
        }

        let mut names = HashSet::new();
        let mut apps = Vec::new();
        for (i, app) in raw.apps.into_iter().enumerate() {
            let key = |field: &str| format!("{prefix}apps[{i}].{field}");
            check_plugin_name(&app.name).map_err(|p| self.invalid(&key("name"), p))?;
            if !names.insert(app.name.clone()) {
                return Err(self.invalid(&key("name"), format!("the name {:?} is used twice", app.name)));
            }
            let source = plugin_source(&app.plugin, self.base).map_err(|p| self.invalid(&key("plugin"), p))?;
            let settings = host_settings(
                PluginKind::App,
                &app.name,
                flatten_settings(&app.settings),
                self.project_name,
                self.default_response,
            );
            let limits = self.own_limits(&key, limits.app, [app.call_timeout_ms, app.memory_mib, app.max_instances])?;
            let grants = self.grants(&key("grants"), app.grants)?;
            apps.push(PluginConfig {
                name: app.name,
                source,
                settings,
                allowed_hosts: AllowedHosts::none(),
                limits,
                grants,
            });
        }

        let mut backends = Vec::new();
        for (name, backend) in raw.backends {
            let key = |field: &str| format!("{prefix}backends.{name}.{field}");
            let table = format!("{prefix}backends.{name}");
            check_plugin_name(&name).map_err(|p| self.invalid(&table, p))?;
            if !names.insert(name.clone()) {
                return Err(
                    self.invalid(&table, format!("the name {name:?} is already used by an app; names must be unique"))
                );
            }
            let source = plugin_source(&backend.plugin, self.base).map_err(|p| self.invalid(&key("plugin"), p))?;
            let allowed_hosts =
                AllowedHosts::parse(&backend.allowed_hosts).map_err(|p| self.invalid(&key("allowed_hosts"), p))?;
            let settings = host_settings(
                PluginKind::Backend,
                &name,
                flatten_settings(&backend.settings),
                self.project_name,
                self.default_response,
            );
            let own = [backend.call_timeout_ms, backend.memory_mib, backend.max_instances];
            let limits = self.own_limits(&key, limits.backend, own)?;
            let grants = self.grants(&key("grants"), backend.grants)?;
            backends.push(PluginConfig { name, source, settings, allowed_hosts, limits, grants });
        }
        Ok(TenantConfig { name: name.to_owned(), api_keys, limits, apps, backends })
    }
}

/// A secret (admin token, API key): at least 16 characters, no spaces.
fn check_secret(secret: &str) -> Result<(), String> {
    if secret.chars().count() < 16 || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be at least 16 characters, without spaces".into());
    }
    Ok(())
}

impl Config {
    /// Read and validate the configuration file at `path`. Relative paths
    /// inside it are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &file, &base, Some(path.to_path_buf()))
    }

    /// The built-in configuration, relative to the current directory.
    pub fn builtin() -> Result<Config, ConfigError> {
        Self::parse(DEFAULT_CONFIG, "<built-in configuration>", Path::new("."), None)
    }

    /// Validate TOML `text`; `file` names it in errors, `base` anchors
    /// relative paths.
    pub fn parse(text: &str, file: &str, base: &Path, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let mut raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string() })?;
        let invalid =
            |key: &str, problem: String| ConfigError::Invalid { file: file.to_owned(), key: key.to_owned(), problem };
        let in_range = |key: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(invalid(key, format!("{value} is outside {}..={}", range.start(), range.end())))
            }
        };

        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr =
            listen.parse().map_err(|e| invalid("listen", format!("{listen:?} is not an IP address and port: {e}")))?;

        let max_depth = raw.limits.max_depth.unwrap_or(8);
        if !(1..=64).contains(&max_depth) {
            return Err(invalid("limits.max_depth", format!("{max_depth} is outside 1..=64")));
        }

        let router = &raw.router;
        let durable = match router.kind.as_deref().unwrap_or("blocking") {
            "blocking" => None,
            "durable" => {
                let defaults = DurableOptions::default();
                let ms = |key: &str, value: Option<u64>, default: Duration| {
                    let value = value.unwrap_or(default.as_millis() as u64);
                    in_range(key, value, 1..=86_400_000).map(Duration::from_millis)
                };
                let initial_delay =
                    ms("router.retry_initial_ms", router.retry_initial_ms, defaults.retry.initial_delay)?;
                let max_delay = ms("router.retry_max_ms", router.retry_max_ms, defaults.retry.max_delay)?;
                if max_delay < initial_delay {
                    return Err(invalid("router.retry_max_ms", "is shorter than `router.retry_initial_ms`".into()));
                }
                let count = |key: &str, value: Option<u64>, default: usize, max: u64| {
                    in_range(key, value.unwrap_or(default as u64), 1..=max).map(|v| v as usize)
                };
                Some(DurableOptions {
                    workers: count("router.workers", router.workers, defaults.workers, 256)?,
                    send_concurrency: count(
                        "router.send_concurrency",
                        router.send_concurrency,
                        defaults.send_concurrency,
                        1024,
                    )?,
                    retry: RetryPolicy {
                        max_attempts: count("router.max_attempts", router.max_attempts, 8, 1000)? as u32,
                        initial_delay,
                        max_delay,
                    },
                })
            }
            other => {
                return Err(invalid(
                    "router.kind",
                    format!("{other:?} is not a router: use \"blocking\" or \"durable\""),
                ));
            }
        };
        if durable.is_none()
            && (
                router.workers,
                router.send_concurrency,
                router.max_attempts,
                router.retry_initial_ms,
                router.retry_max_ms,
            ) != (None, None, None, None, None)
        {
            return Err(invalid("router.kind", "the other `router` keys only apply with kind = \"durable\"".into()));
        }

        if let Some(token) = &raw.admin_token {
            check_secret(token).map_err(|p| invalid("admin_token", format!("{p} (it guards plugin swaps)")))?;
        }

        let project_name = raw.project_name.take().unwrap_or_else(|| "RapidSMS".to_owned());
        let default_response = raw.default_response.take().unwrap_or_else(|| DEFAULT_RESPONSE.to_owned());
        let checker = Checker { file, base, project_name: &project_name, default_response: &default_response };

        let top = raw.limits.clone();
        let default_tenant =
            RawTenant { api_keys: raw.api_keys, limits: raw.limits, apps: raw.apps, backends: raw.backends };
        let mut tenants = vec![checker.tenant(DEFAULT_TENANT, "", default_tenant, &top)?];
        let mut keys: HashSet<String> = tenants[0].api_keys.iter().cloned().collect();
        for (name, tenant) in raw.tenants {
            let prefix = format!("tenants.{name}.");
            check_plugin_name(&name).map_err(|p| invalid(&format!("tenants.{name}"), p))?;
            if name == DEFAULT_TENANT {
                return Err(invalid(
                    "tenants.default",
                    "`default` is the tenant of the top-level keys; give this tenant another name".into(),
                ));
            }
            let tenant = checker.tenant(&name, &prefix, tenant, &top)?;
            for key in &tenant.api_keys {
                if !keys.insert(key.clone()) {
                    return Err(invalid(
                        &format!("{prefix}api_keys"),
                        "an API key is used twice; each key must open exactly one tenant".into(),
                    ));
                }
            }
            tenants.push(tenant);
        }

        let data_dir = base.join(raw.data_dir.unwrap_or_else(|| PathBuf::from("rapidwasm-data")));
        Ok(Config {
            source,
            compile_cache: raw.compile_cache.map(|dir| base.join(dir)).unwrap_or_else(|| data_dir.join("compiled")),
            data_dir,
            listen,
            project_name,
            default_response,
            max_depth,
            durable,
            admin_token: raw.admin_token,
            watch_plugins: raw.watch_plugins,
            tenants,
        })
    }
}

/// The accepted range of call timeouts of apps, in milliseconds.
const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1..=60_000;
/// The accepted range of call timeouts of backends and of any one plugin.
const BACKEND_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1..=600_000;
/// The accepted range of memory limits, in MiB.
const MEMORY_MIB: std::ops::RangeInclusive<u64> = 1..=4096;
/// The accepted range of instance caps.
const INSTANCES: std::ops::RangeInclusive<u64> = 1..=1024;

/// The accepted range of fuel per call.
const FUEL: std::ops::RangeInclusive<u64> = 1_000..=u64::MAX / 2;
/// The accepted range of message sizes, in bytes.
const MESSAGE_BYTES: std::ops::RangeInclusive<u64> = 1..=1 << 20;
/// The longest message text a tenant accepts unless it sets
/// `max_message_bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn make_limits(call_timeout_ms: u64, memory_mib: u64, max_instances: usize, fuel: Option<u64>) -> Limits {
    Limits {
        call_timeout: Duration::from_millis(call_timeout_ms),
        memory_bytes: (memory_mib as usize) << 20,
        max_instances,
        fuel,
    }
}

/// Names: 1–64 ASCII letters, digits, `-` or `_` (they appear in URLs,
/// logs and storage keys).
pub fn check_plugin_name(name: &str) -> Result<(), String> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid name: use 1 to 64 ASCII letters, digits, `-` or `_`"))
    }
}

/// Where `spec` (`builtin:NAME` or a path, relative to `base`) points.
pub fn plugin_source(spec: &str, base: &Path) -> Result<PluginSource, String> {
    if let Some(name) = spec.strip_prefix("builtin:") {
        return if rapidwasm_builtin_plugins::get(name).is_some() {
            Ok(PluginSource::Builtin(name.to_owned()))
        } else {
            Err(format!("no built-in plugin {name:?}; the built-in plugins are {}", builtin_names().join(", ")))
        };
    }
    if spec.is_empty() {
        return Err("must name a .wasm file or builtin:NAME".to_owned());
    }
    let path = base.join(spec);
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    Ok(PluginSource::File(path))
}

/// The settings plugin `name` of `kind` is configured with: `settings`,
/// plus what the host adds. An app gets `project_name` and
/// `default_response` unless it sets them; a backend gets its own name as
/// `backend_name`, for the connections it receives on.
pub fn host_settings(
    kind: PluginKind,
    name: &str,
    mut settings: Fields,
    project_name: &str,
    default_response: &str,
) -> Fields {
    match kind {
        PluginKind::App => {
            settings.entry("project_name".to_owned()).or_insert_with(|| project_name.to_owned());
            settings.entry("default_response".to_owned()).or_insert_with(|| default_response.to_owned());
        }
        PluginKind::Backend => {
            settings.insert("backend_name".to_owned(), name.to_owned());
        }
    }
    settings
}

/// Settings as flat string pairs: keys lower-cased (as RapidSMS does for
/// backend settings), nested tables joined with dots, other values as TOML.
fn flatten_settings(table: &toml::Table) -> Fields {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Fields) {
        for (key, value) in table {
            let key = if prefix.is_empty() { key.to_lowercase() } else { format!("{prefix}.{}", key.to_lowercase()) };
            match value {
                toml::Value::Table(inner) => walk(&key, inner, out),
                toml::Value::String(s) => {
                    out.insert(key, s.clone());
                }
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    let mut out = Fields::new();
    walk("", table, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", Path::new("."), None)
    }

    #[test]
    fn builtin_configuration_is_valid() {
        let config = Config::builtin().expect("valid");
        let apps: Vec<_> = config.default_tenant().apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(apps, ["messagelog", "echo", "ping", "default"]);
        assert_eq!(config.default_tenant().backends[0].name, "console");
        assert_eq!(config.tester_backend(), Some("message_tester"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn settings_are_flattened_and_lowercased() {
        let config = parse(
            "[backends.k]\nplugin = \"builtin:console\"\n[backends.k.settings]\nCharset = \"utf-8\"\ncoding = 2\n\
             sendsms_params = { username = \"u\", smsc = \"x\" }\n",
        )
        .expect("valid");
        let s = &config.default_tenant().backends[0].settings;
        assert_eq!(s["charset"], "utf-8");
        assert_eq!(s["coding"], "2");
        assert_eq!(s["sendsms_params.username"], "u");
    }

    #[test]
    fn plugins_may_set_their_own_limits() {
        let config = parse(
            "[limits]\nmemory_mib = 32\n[[apps]]\nname = \"js\"\nplugin = \"builtin:echo\"\nmemory_mib = 128\n\
             call_timeout_ms = 5000\n[[apps]]\nname = \"e\"\nplugin = \"builtin:echo\"\n",
        )
        .expect("valid");
        assert_eq!(config.default_tenant().apps[0].limits.memory_bytes, 128 << 20);
        assert_eq!(config.default_tenant().apps[0].limits.call_timeout.as_millis(), 5000);
        assert_eq!(config.default_tenant().apps[1].limits, config.default_tenant().limits.app);
        assert_eq!(config.default_tenant().limits.app.memory_bytes, 32 << 20);
        assert_eq!(config.compile_cache, Path::new("./rapidwasm-data/compiled"));
        let e = error_text("[[apps]]\nname = \"a\"\nplugin = \"builtin:echo\"\nmemory_mib = 0\n");
        assert!(e.contains("`apps[0].memory_mib`: 0 is outside 1..=4096"), "{e}");
    }

    #[test]
    fn apps_get_project_name_and_default_response() {
        let config =
            parse("project_name = \"Clinic\"\n[[apps]]\nname = \"d\"\nplugin = \"builtin:default\"\n").expect("valid");
        assert_eq!(config.default_tenant().apps[0].settings["project_name"], "Clinic");
        assert_eq!(config.default_tenant().apps[0].settings["default_response"], DEFAULT_RESPONSE);
    }

    fn error_text(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = error_text("[[apps]]\nname = \"a\"\nplugin = \"builtin:nope\"\n");
        assert!(e.starts_with("test.toml: `apps[0].plugin`: no built-in plugin \"nope\""), "{e}");
        let e = error_text("[[apps]]\nname = \"a b\"\nplugin = \"builtin:echo\"\n");
        assert!(e.contains("`apps[0].name`") && e.contains("not a valid name"), "{e}");
        let e = error_text("[[apps]]\nname = \"a\"\nplugin = \"missing.wasm\"\n");
        assert!(e.contains("`apps[0].plugin`") && e.contains("missing.wasm is not a file"), "{e}");
        let e = error_text("[limits]\ncall_timeout_ms = 0\n");
        assert!(e.contains("`limits.call_timeout_ms`: 0 is outside"), "{e}");
        let e = error_text("[backends.k]\nplugin = \"builtin:console\"\nallowed_hosts = [\"http://x\"]\n");
        assert!(e.contains("`backends.k.allowed_hosts`: `http://x` is not a host"), "{e}");
        let e = error_text("listen = \"nowhere\"\n");
        assert!(e.contains("`listen`"), "{e}");
        let e = error_text(
            "[[apps]]\nname = \"x\"\nplugin = \"builtin:echo\"\n[backends.x]\nplugin = \"builtin:console\"\n",
        );
        assert!(e.contains("`backends.x`") && e.contains("already used"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_refused_with_position() {
        let e = error_text("data_dri = \"x\"\n");
        assert!(e.starts_with("test.toml: ") && e.contains("data_dri"), "{e}");
        let e = error_text("apps = [\n");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn tenants_have_their_own_plugins_keys_and_limits() {
        let config = parse(
            "api_keys = [\"default-key-0123456789\"]\n[limits]\nmemory_mib = 32\ncalls_per_second = 500\n\
             [[apps]]\nname = \"echo\"\nplugin = \"builtin:echo\"\n\
             [tenants.acme]\napi_keys = [\"acme-key-0123456789\"]\n\
             [tenants.acme.limits]\nmemory_mib = 16\nfuel = 1000000\nmax_message_bytes = 160\n\
             [[tenants.acme.apps]]\nname = \"ping\"\nplugin = \"builtin:ping\"\n\
             [tenants.acme.backends.console]\nplugin = \"builtin:console\"\n",
        )
        .expect("valid");
        let names: Vec<_> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["default", "acme"]);
        let acme = config.tenant("acme").expect("acme");
        assert_eq!(acme.apps[0].name, "ping");
        assert_eq!(acme.backends[0].settings["backend_name"], "console");
        assert_eq!(acme.limits.app.memory_bytes, 16 << 20, "its own key wins");
        assert_eq!(acme.limits.calls_per_second, Some(500), "the top level's fills the rest");
        assert_eq!(acme.limits.app.fuel, Some(1_000_000));
        assert_eq!(acme.apps[0].limits.fuel, Some(1_000_000));
        assert_eq!(acme.limits.max_message_bytes, 160);
        assert_eq!(config.default_tenant().limits.app.fuel, None);
        assert_eq!(config.default_tenant().limits.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    }

    #[test]
    fn tenant_mistakes_are_named() {
        let e = error_text("[tenants.acme]\n");
        assert!(e.contains("`tenants.acme.api_keys`: a tenant needs at least one API key"), "{e}");
        let e = error_text("[tenants.acme]\napi_keys = [\"short\"]\n");
        assert!(e.contains("`tenants.acme.api_keys[0]`: must be at least 16 characters"), "{e}");
        let e = error_text("[tenants.default]\napi_keys = [\"0123456789abcdef\"]\n");
        assert!(e.contains("`tenants.default`"), "{e}");
        let e = error_text(
            "[tenants.a]\napi_keys = [\"0123456789abcdef\"]\n[tenants.b]\napi_keys = [\"0123456789abcdef\"]\n",
        );
        assert!(e.contains("`tenants.b.api_keys`: an API key is used twice"), "{e}");
        let e = error_text("[tenants.a]\napi_keys = [\"0123456789abcdef\"]\n[tenants.a.limits]\nmax_depth = 3\n");
        assert!(e.contains("`tenants.a.limits.max_depth`"), "{e}");
        let e = error_text("[tenants.a]\napi_keys = [\"0123456789abcdef\"]\nappz = []\n");
        assert!(e.contains("appz"), "{e}");
        let e = error_text(
            "[tenants.a]\napi_keys = [\"0123456789abcdef\"]\n[[tenants.a.apps]]\nname = \"x\"\nplugin = \"builtin:nope\"\n",
        );
        assert!(e.contains("`tenants.a.apps[0].plugin`"), "{e}");
        let e = error_text("[limits]\nfuel = 5\n");
        assert!(e.contains("`limits.fuel`: 5 is outside"), "{e}");
    }

    #[test]
    fn grants_are_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[[apps]]\nname = \"a\"\nplugin = \"builtin:echo\"\n\
             [apps.grants]\nenv = {{ TZ = \"UTC\" }}\ntcp_connect = [\"127.0.0.1:9\"]\n\
             dirs = [{{ host = {:?}, guest = \"/data\" }}]\n",
            dir.path().display().to_string()
        );
        let config = parse(&text).expect("valid");
        let grants = &config.default_tenant().apps[0].grants;
        assert_eq!(grants.env, [("TZ".to_owned(), "UTC".to_owned())]);
        assert_eq!(grants.tcp_connect[0].to_string(), "127.0.0.1:9");
        assert!(!grants.dirs[0].writable, "read-only unless said");
        let e = error_text(
            "[[apps]]\nname = \"a\"\nplugin = \"builtin:echo\"\n[apps.grants]\ndirs = [{ host = \"/nonexistent-x\", guest = \"/d\" }]\n",
        );
        assert!(e.contains("`apps[0].grants.dirs[0].host`: /nonexistent-x is not a directory"), "{e}");
        let e = error_text(
            "[[apps]]\nname = \"a\"\nplugin = \"builtin:echo\"\n[apps.grants]\ntcp_connect = [\"localhost:80\"]\n",
        );
        assert!(e.contains("`apps[0].grants.tcp_connect`"), "{e}");
    }
}
