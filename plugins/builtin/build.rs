//! Compiles the example plugins in `plugins/` for `wasm32-wasip2` with the
//! workspace's `plugin` profile, then embeds them (see `src/lib.rs`).
//!
//! The guests are built by a nested `cargo` with its own target directory,
//! as wasmtime's test-programs do, so a plain `cargo build`/`cargo test` on a
//! fresh clone produces real components without committed binaries.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in name (also the folder in `plugins/`), crate name, and the
/// constant it is embedded as.
const PLUGINS: &[(&str, &str, &str)] = &[
    ("echo", "echo", "ECHO"),
    ("ping", "ping", "PING"),
    ("default", "default", "DEFAULT"),
    ("messagelog", "messagelog", "MESSAGELOG"),
    ("console", "console", "CONSOLE"),
    ("memory", "memory", "MEMORY"),
    ("probe", "probe", "PROBE"),
    ("kannel", "kannel", "KANNEL"),
    ("vumi", "vumi", "VUMI"),
    ("http", "generic-http", "HTTP"),
    ("twilio", "twilio", "TWILIO"),
    ("tester", "tester", "TESTER"),
    ("fetcher", "fetcher", "FETCHER"),
    ("probe-backend", "probe-backend", "PROBE_BACKEND"),
    ("hostile", "hostile", "HOSTILE"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("plugins"),
        None => root.join("target/plugins"),
    };

    for watched in ["wit", "guest-sdk/src", "guest-sdk/Cargo.toml", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for (name, _, _) in PLUGINS {
        println!("cargo:rerun-if-changed={}", root.join("plugins").join(name).display());
    }

    ensure_target_installed();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "--profile", "plugin", "--target", TARGET, "--target-dir"]).arg(&target_dir);
    for (_, krate, _) in PLUGINS {
        cmd.args(["-p", krate]);
    }
    // The outer build's flags are for the host target, not for the guests.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "CARGO_BUILD_RUSTFLAGS"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for {TARGET} failed (see above). If the target is missing, \
             run `rustup target add {TARGET}`."
        );
    }

    let mut generated = String::new();
    for (name, krate, constant) in PLUGINS {
        let built = target_dir.join(TARGET).join("plugin").join(format!("{}.wasm", krate.replace('-', "_")));
        let embedded = out_dir.join(format!("{name}.wasm"));
        copy(&built, &embedded);
        writeln!(
            generated,
            "/// The `{name}` plugin, a WebAssembly component built from `plugins/{name}`.\n\
             pub const {constant}: &[u8] = include_bytes!({:?});",
            embedded.display().to_string()
        )
        .expect("writing to a String");
    }
    generated.push_str("/// Every built-in plugin, by name.\npub const ALL: &[(&str, &[u8])] = &[\n");
    for (name, _, constant) in PLUGINS {
        writeln!(generated, "    ({name:?}, {constant}),").expect("writing to a String");
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("plugins.rs"), generated).expect("failed to write plugins.rs");
}

/// rustup installs the targets of `rust-toolchain.toml` only when it
/// installs the toolchain itself; add the guest target to an existing one.
fn ensure_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output();
    let installed = match sysroot {
        Ok(out) if out.status.success() => {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Path::new(&root).join("lib/rustlib").join(TARGET).is_dir()
        }
        _ => false,
    };
    if installed {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; running `rustup target add {TARGET}`");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &toolchain]);
    }
    match cmd.status() {
        Ok(status) if status.success() => {}
        _ => panic!("the {TARGET} target is not installed and `rustup target add {TARGET}` failed; run it by hand"),
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(err) = std::fs::copy(from, to) {
        panic!("cannot copy {} to {}: {err}", from.display(), to.display());
    }
}
