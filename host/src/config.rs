//! Configuration: a TOML file, validated before anything starts.
//!
//! ```toml
//! data_dir = "rapidwasm-data"          # sled store; relative to this file
//! compile_cache = "rapidwasm-data/compiled"  # compiled components, reused on restart
//! listen = "127.0.0.1:8080"            # the HTTP server of `rapidwasm serve`
//! admin_token = "a long random secret" # turns on the admin API (plugin list and swap)
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
use crate::plugins::{AllowedHosts, Limits};
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
    /// Limits of every app call.
    pub limits: Limits,
    /// Limits of every backend call: like `limits`, with a longer timeout
    /// that covers the backend's network requests.
    pub backend_limits: Limits,
    /// Where compiled components are kept between runs.
    pub compile_cache: std::path::PathBuf,
    /// How deeply plugins may nest `receive`/`send`.
    pub max_depth: u32,
    /// The durable router's settings; `None` for the blocking router.
    pub durable: Option<DurableOptions>,
    /// The bearer token of the admin API; `None` turns the API off.
    pub admin_token: Option<String>,
    /// Apps, in phase order.
    pub apps: Vec<PluginConfig>,
    /// Backends, by name.
    pub backends: Vec<PluginConfig>,
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
}

impl Config {
    /// The first backend running the built-in message tester, which the
    /// `/tester` page talks to.
    pub fn tester_backend(&self) -> Option<&str> {
        self.backends.iter().find(|b| b.source == PluginSource::Builtin("tester".into())).map(|b| b.name.as_str())
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
    listen: Option<String>,
    project_name: Option<String>,
    default_response: Option<String>,
    #[serde(default)]
    router: RawRouter,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    call_timeout_ms: Option<u64>,
    backend_call_timeout_ms: Option<u64>,
    memory_mib: Option<u64>,
    max_instances: Option<u64>,
    max_depth: Option<u32>,
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
    settings: toml::Table,
}

/// The names of the plugins built into the binary.
pub fn builtin_names() -> Vec<&'static str> {
    rapidwasm_builtin_plugins::ALL.iter().map(|(name, _)| *name).collect()
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
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string() })?;
        let invalid =
            |key: &str, problem: String| ConfigError::Invalid { file: file.to_owned(), key: key.to_owned(), problem };

        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr =
            listen.parse().map_err(|e| invalid("listen", format!("{listen:?} is not an IP address and port: {e}")))?;

        let in_range = |key: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(invalid(key, format!("{value} is outside {}..={}", range.start(), range.end())))
            }
        };
        let call_timeout_ms =
            in_range("limits.call_timeout_ms", raw.limits.call_timeout_ms.unwrap_or(1000), TIMEOUT_MS)?;
        let backend_call_timeout_ms = in_range(
            "limits.backend_call_timeout_ms",
            raw.limits.backend_call_timeout_ms.unwrap_or(30_000),
            BACKEND_TIMEOUT_MS,
        )?;
        let memory_mib = in_range("limits.memory_mib", raw.limits.memory_mib.unwrap_or(64), MEMORY_MIB)?;
        let max_instances =
            in_range("limits.max_instances", raw.limits.max_instances.unwrap_or(32), INSTANCES)? as usize;
        let limits = make_limits(call_timeout_ms, memory_mib, max_instances);
        let backend_limits = make_limits(backend_call_timeout_ms, memory_mib, max_instances);
        // A plugin's own limits replace its kind's.
        let own_limits = |key: &dyn Fn(&str) -> String, base: Limits, own: [Option<u64>; 3]| {
            let [timeout, memory, instances] = own;
            let timeout = match timeout {
                Some(ms) => in_range(&key("call_timeout_ms"), ms, BACKEND_TIMEOUT_MS)?,
                None => base.call_timeout.as_millis() as u64,
            };
            let memory = match memory {
                Some(mib) => in_range(&key("memory_mib"), mib, MEMORY_MIB)?,
                None => (base.memory_bytes >> 20) as u64,
            };
            let instances = match instances {
                Some(n) => in_range(&key("max_instances"), n, INSTANCES)? as usize,
                None => base.max_instances,
            };
            Ok::<Limits, ConfigError>(make_limits(timeout, memory, instances))
        };
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

        let admin_token = match raw.admin_token {
            Some(token) if token.chars().count() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(invalid(
                    "admin_token",
                    "must be at least 16 characters, without spaces (it guards plugin swaps)".into(),
                ));
            }
            other => other,
        };

        let project_name = raw.project_name.unwrap_or_else(|| "RapidSMS".to_owned());
        let default_response = raw.default_response.unwrap_or_else(|| DEFAULT_RESPONSE.to_owned());

        let mut names = HashSet::new();
        let mut apps = Vec::new();
        for (i, app) in raw.apps.into_iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            check_plugin_name(&app.name).map_err(|p| invalid(&key("name"), p))?;
            if !names.insert(app.name.clone()) {
                return Err(invalid(&key("name"), format!("the name {:?} is used twice", app.name)));
            }
            let source = plugin_source(&app.plugin, base).map_err(|p| invalid(&key("plugin"), p))?;
            let mut settings = flatten_settings(&app.settings);
            settings.entry("project_name".to_owned()).or_insert_with(|| project_name.clone());
            settings.entry("default_response".to_owned()).or_insert_with(|| default_response.clone());
            let limits = own_limits(&key, limits, [app.call_timeout_ms, app.memory_mib, app.max_instances])?;
            apps.push(PluginConfig { name: app.name, source, settings, allowed_hosts: AllowedHosts::none(), limits });
        }

        let mut backends = Vec::new();
        for (name, backend) in raw.backends {
            let key = |field: &str| format!("backends.{name}.{field}");
            check_plugin_name(&name).map_err(|p| invalid(&format!("backends.{name}"), p))?;
            if !names.insert(name.clone()) {
                return Err(invalid(
                    &format!("backends.{name}"),
                    format!("the name {name:?} is already used by an app; names must be unique"),
                ));
            }
            let source = plugin_source(&backend.plugin, base).map_err(|p| invalid(&key("plugin"), p))?;
            let allowed_hosts =
                AllowedHosts::parse(&backend.allowed_hosts).map_err(|p| invalid(&key("allowed_hosts"), p))?;
            let mut settings = flatten_settings(&backend.settings);
            // A backend needs its own name for the connections it receives on.
            settings.insert("backend_name".to_owned(), name.clone());
            let own = [backend.call_timeout_ms, backend.memory_mib, backend.max_instances];
            let limits = own_limits(&key, backend_limits, own)?;
            backends.push(PluginConfig { name, source, settings, allowed_hosts, limits });
        }

        let data_dir = base.join(raw.data_dir.unwrap_or_else(|| PathBuf::from("rapidwasm-data")));
        Ok(Config {
            source,
            compile_cache: raw.compile_cache.map(|dir| base.join(dir)).unwrap_or_else(|| data_dir.join("compiled")),
            data_dir,
            listen,
            project_name,
            default_response,
            limits,
            backend_limits,
            max_depth,
            durable,
            admin_token,
            apps,
            backends,
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

fn make_limits(call_timeout_ms: u64, memory_mib: u64, max_instances: usize) -> Limits {
    Limits {
        call_timeout: Duration::from_millis(call_timeout_ms),
        memory_bytes: (memory_mib as usize) << 20,
        max_instances,
    }
}

/// Names: 1–64 ASCII letters, digits, `-` or `_` (they appear in URLs,
/// logs and storage keys).
fn check_plugin_name(name: &str) -> Result<(), String> {
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
        let apps: Vec<_> = config.apps.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(apps, ["messagelog", "echo", "ping", "default"]);
        assert_eq!(config.backends[0].name, "console");
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
        let s = &config.backends[0].settings;
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
        assert_eq!(config.apps[0].limits.memory_bytes, 128 << 20);
        assert_eq!(config.apps[0].limits.call_timeout.as_millis(), 5000);
        assert_eq!(config.apps[1].limits, config.limits);
        assert_eq!(config.limits.memory_bytes, 32 << 20);
        assert_eq!(config.compile_cache, Path::new("./rapidwasm-data/compiled"));
        let e = error_text("[[apps]]\nname = \"a\"\nplugin = \"builtin:echo\"\nmemory_mib = 0\n");
        assert!(e.contains("`apps[0].memory_mib`: 0 is outside 1..=4096"), "{e}");
    }

    #[test]
    fn apps_get_project_name_and_default_response() {
        let config =
            parse("project_name = \"Clinic\"\n[[apps]]\nname = \"d\"\nplugin = \"builtin:default\"\n").expect("valid");
        assert_eq!(config.apps[0].settings["project_name"], "Clinic");
        assert_eq!(config.apps[0].settings["default_response"], DEFAULT_RESPONSE);
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
}
