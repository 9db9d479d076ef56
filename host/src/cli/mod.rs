//! The command-line interface, at the edge of the library: parses
//! arguments, starts a [`Host`] and prints what the router did.

mod admin;
mod journal;
mod print;
mod remote;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::{Parser, Subcommand};
use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::Observer;
use rapidwasm::store::StoreError;
use rapidwasm::{Host, StartError};

/// RapidSMS's messaging core as a WebAssembly plugin host.
#[derive(Debug, Parser)]
#[command(name = "rapidwasm", version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, the built-in configuration:
    /// the example plugins, the console backend, a store in ./rapidwasm-data.
    #[arg(long, short, global = true, env = "RAPIDWASM_CONFIG")]
    config: Option<PathBuf>,

    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// What to do; `serve` when left out.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the host and its HTTP server; run until interrupted (the default).
    Serve {
        /// Address to listen on, overriding the configuration's `listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Route one incoming message and print what happened.
    Receive {
        /// The backend the message arrives on.
        #[arg(long, default_value = "console")]
        backend: String,
        /// Who sent it.
        #[arg(long)]
        identity: String,
        /// A field of the message, KEY=VALUE (repeatable).
        #[arg(long = "field", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        /// The message's text.
        text: String,
    },
    /// Send one message and print what happened.
    Send {
        /// The backend to send through.
        #[arg(long, default_value = "console")]
        backend: String,
        /// A recipient (repeatable).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// A field of the message, KEY=VALUE (repeatable).
        #[arg(long = "field", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        /// The message's text.
        text: String,
    },
    /// Act as a phone: each line you type is received from IDENTITY, and the
    /// replies are printed.
    Chat {
        /// The backend the phone is on.
        #[arg(long, default_value = "console")]
        backend: String,
        /// The phone's identity.
        #[arg(long)]
        identity: String,
    },
    /// Validate the configuration and load every plugin, then exit.
    Check,
    /// Print a plugin's stored data (for example the message log).
    PluginData {
        /// The plugin's configured name.
        plugin: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a stored message, its status and its transmissions (durable router).
    Status {
        /// The message's id.
        id: String,
    },
    /// List or re-queue transmissions whose retries ran out (durable router).
    DeadLetters {
        /// What to do.
        #[command(subcommand)]
        action: DeadLetters,
    },
    /// List, load, swap or unload the plugins of the running server (its
    /// admin API).
    Plugins {
        /// The tenant whose plugins these are (default: the top-level one).
        #[arg(long, global = true)]
        tenant: Option<String>,
        /// What to do.
        #[command(subcommand)]
        action: Plugins,
    },
    /// Create a new plugin project.
    New {
        /// What to create.
        #[command(subcommand)]
        what: New,
    },
}

#[derive(Debug, Subcommand)]
enum Plugins {
    /// Print each running plugin: name, kind, version, source, SHA-256.
    List,
    /// Replace a plugin's component while the server runs: the new one is
    /// checked first, calls in flight finish on the old one.
    Swap {
        /// The app's or backend's configured name.
        name: String,
        /// `builtin:NAME` or a `.wasm` file.
        plugin: String,
        /// A new setting KEY=VALUE (repeatable); with none, the current
        /// settings stay.
        #[arg(long = "setting", value_parser = parse_field)]
        settings: Vec<(String, String)>,
    },
    /// Load a new app or backend into the running server; it lasts until
    /// the server stops (add it to the configuration to keep it).
    Load {
        /// Its name, unique in the tenant.
        name: String,
        /// `builtin:NAME` or a `.wasm` file.
        plugin: String,
        /// `app` or `backend`.
        #[arg(long, value_parser = ["app", "backend"])]
        kind: String,
        /// A setting KEY=VALUE (repeatable).
        #[arg(long = "setting", value_parser = parse_field)]
        settings: Vec<(String, String)>,
        /// A host a backend may send HTTP requests to (repeatable).
        #[arg(long = "allow")]
        allowed_hosts: Vec<String>,
        /// An app's place in the phases (0: first); last if not given.
        #[arg(long)]
        position: Option<usize>,
    },
    /// Take an app or backend out of the running server: calls in flight
    /// finish, a backend's queued messages wait in the outbox.
    Unload {
        /// The app's or backend's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetters {
    /// Print the dead letters, one per line.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back in the outbox: one, or all with --all.
    Requeue {
        /// The outgoing message's id.
        #[arg(long, required_unless_present = "all")]
        message: Option<String>,
        /// The backend of the transmission.
        #[arg(long, required_unless_present = "all")]
        backend: Option<String>,
        /// The identity of the transmission.
        #[arg(long, required_unless_present = "all")]
        identity: Option<String>,
        /// Every dead letter (up to 1000).
        #[arg(long, conflicts_with_all = ["message", "backend", "identity"])]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum New {
    /// An app, ready to build, with the WIT it targets and a configuration
    /// that loads it.
    App {
        /// rust, python or js.
        #[arg(long, default_value = "rust")]
        lang: rapidwasm::scaffold::Language,
        /// The app's name, also its folder's.
        name: String,
        /// The Rust guest SDK's folder (Rust apps depend on it).
        #[arg(long)]
        guest_sdk: Option<PathBuf>,
    },
}

fn parse_field(text: &str) -> Result<(String, String), String> {
    text.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Run the command line; errors are printed with their causes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A chat is a conversation: keep the log out of it unless asked.
    let quiet = matches!(cli.command, Some(Command::Chat { .. }));
    init_logging(cli.verbose, quiet);
    if let Err(err) = rapidwasm::process::tune_memory() {
        tracing::warn!(%err, "cannot keep the process on small memory pages; going on");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn",
        0 => "warn,rapidwasm=info",
        1 => "info,rapidwasm=debug",
        _ => "debug,rapidwasm=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::builtin()?,
    })
}

/// Why the host did not start, naming its data directory.
fn start_failed(err: StartError, data_dir: &std::path::Path) -> anyhow::Error {
    anyhow::Error::new(err).context(format!("cannot start the host (data directory {})", data_dir.display()))
}

async fn start(config: Config, observers: Vec<Arc<dyn Observer>>) -> anyhow::Result<Host> {
    let data_dir = config.data_dir.clone();
    Host::start(config, observers).await.map_err(|err| start_failed(err, &data_dir))
}

/// How long a one-shot command waits for the durable router to send what
/// it queued before it exits (what is left is sent at the next start).
const ONE_SHOT_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Start a host that prints its events, or `None` when a running server
/// holds the data directory (then the command is sent to that server).
async fn start_or_forward(config: Config) -> anyhow::Result<Option<Host>> {
    start_or_forward_with(config, vec![Arc::new(print::Printer::stdout())]).await
}

/// [`start_or_forward`] without printing events.
async fn start_or_forward_quietly(config: Config) -> anyhow::Result<Option<Host>> {
    start_or_forward_with(config, Vec::new()).await
}

async fn start_or_forward_with(config: Config, observers: Vec<Arc<dyn Observer>>) -> anyhow::Result<Option<Host>> {
    let data_dir = config.data_dir.clone();
    match Host::start(config, observers).await {
        Ok(host) => Ok(Some(host)),
        Err(StartError::Store(StoreError::Locked { .. })) => Ok(None),
        Err(err) => Err(start_failed(err, &data_dir)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    // Creating a project needs no configuration.
    if let Command::New { what } = command {
        return new_project(what);
    }
    let config = load_config(cli.config.as_ref())?;
    match command {
        Command::Serve { listen } => serve(config, listen).await,
        Command::Receive { backend, identity, fields, text } => {
            let fields: Fields = fields.into_iter().collect();
            let listen = config.listen;
            let Some(host) = start_or_forward(config).await? else {
                return remote::receive(listen, &text, &backend, &identity, fields).await;
            };
            host.router().receive(text, Connection::new(backend, identity), fields).await?;
            host.drain(ONE_SHOT_DRAIN).await;
            host.shutdown()?;
            Ok(())
        }
        Command::Send { backend, to, fields, text } => {
            let fields: Fields = fields.into_iter().collect();
            let listen = config.listen;
            let Some(host) = start_or_forward(config).await? else {
                return remote::send(listen, &text, &backend, &to, fields).await;
            };
            let connections = host.router().lookup_connections(&backend, &to)?;
            host.router().send(text, connections, fields).await?;
            host.drain(ONE_SHOT_DRAIN).await;
            host.shutdown()?;
            Ok(())
        }
        Command::Chat { backend, identity } => chat(config, backend, identity).await,
        Command::New { what } => new_project(what),
        Command::Check => {
            let host = start(config, Vec::new()).await?;
            let router = host.router();
            println!("configuration OK");
            println!("apps (in order): {}", router.app_names().join(", "));
            println!("backends: {}", router.backend_names().join(", "));
            println!("data directory: {}", host.config().data_dir.display());
            host.shutdown()?;
            Ok(())
        }
        Command::Status { id } => {
            let listen = config.listen;
            let Some(host) = start_or_forward_quietly(config).await? else {
                return journal::print_status(&remote::get(listen, &format!("/api/v1/messages/{id}")).await?);
            };
            let found = host.router().message_record(&id)?;
            host.shutdown()?;
            let Some((message, transmissions)) = found else { bail!("no message has the id {id:?}") };
            let status = rapidwasm::http::message_status(&message, &transmissions).to_owned();
            journal::print_status(&rapidwasm::http::MessageStatus { message, status, transmissions })
        }
        Command::DeadLetters { action } => journal::dead_letters(config, action).await,
        Command::Plugins { tenant, action } => admin::plugins(&config, tenant.as_deref(), action).await,
        Command::PluginData { plugin, prefix, limit } => {
            let host = start(config, Vec::new()).await?;
            for (key, value) in host.store().plugin_scan(&plugin, &prefix, None, limit)? {
                println!("{key}\t{}", String::from_utf8_lossy(&value));
            }
            host.shutdown()?;
            Ok(())
        }
    }
}

/// `rapidwasm new app`: create the project and say how to build and run it.
fn new_project(what: New) -> anyhow::Result<()> {
    let New::App { lang, name, guest_sdk } = what;
    let sdk = guest_sdk.unwrap_or_else(rapidwasm::scaffold::default_guest_sdk);
    let project = rapidwasm::scaffold::new_app(lang, &name, Path::new("."), &sdk)?;
    println!("created {}/", project.dir.display());
    println!("\nbuild it:\n  cd {}", project.dir.display());
    for step in &project.build {
        println!("  {step}");
    }
    println!("\nrun it (rapidwasm.toml loads {}):\n  {}", project.wasm, project.run);
    Ok(())
}

async fn serve(mut config: Config, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let listen = config.listen;
    let host = start(config, vec![Arc::new(print::Printer::log())]).await?;
    let listener = rapidwasm::http::bind(listen).await?;
    let address = listener.local_addr()?;
    let router = host.router();
    tracing::info!(
        apps = %router.app_names().join(","),
        backends = %router.backend_names().join(","),
        data_dir = %host.config().data_dir.display(),
        "rapidwasm is serving on http://{address}/ ; Ctrl-C or SIGTERM stops it"
    );
    let site = rapidwasm::http::Site::for_host(&host);
    if let Some(tester) = &site.tester_backend {
        tracing::info!("message tester: http://{address}/tester (backend `{tester}`)");
    }
    rapidwasm::http::serve(listener, site, stop_signal()).await?;
    tracing::info!("stopping");
    host.drain(std::time::Duration::from_secs(5)).await;
    host.shutdown()?;
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot wait for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::error!(%err, "cannot wait for SIGTERM");
                interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    interrupt.await;
}

async fn chat(config: Config, backend: String, identity: String) -> anyhow::Result<()> {
    let host = start(config, Vec::new()).await?;
    if !host.router().backend_names().contains(&backend) {
        bail!("no backend {backend:?} is configured");
    }
    println!("You are {identity} on {backend}. Type a message and press Enter; Ctrl-D ends.");
    let me = Connection::new(backend, identity);
    let stdin = std::io::stdin();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            break;
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let msg = host.router().receive(text, me.clone(), Fields::new()).await?;
        let replies: Vec<_> = msg.sent.iter().filter(|out| out.processed && out.connections.contains(&me)).collect();
        if replies.is_empty() {
            println!("(no reply)");
        }
        for reply in replies {
            println!("< {}", reply.text);
        }
    }
    host.drain(ONE_SHOT_DRAIN).await;
    host.shutdown()?;
    Ok(())
}
