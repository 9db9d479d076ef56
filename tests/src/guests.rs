//! Apps in other languages, built for the tests with the pinned tools:
//! componentize-py (Python) and componentize-js (JavaScript). The tools are
//! installed once into `target/guest-tools/` from PyPI and npm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tools() -> PathBuf {
    root().join("target/guest-tools")
}

/// Run `command`, panicking with its output if it fails.
pub fn run(what: &str, command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `componentize-py`, installed in a virtual environment if missing.
pub fn componentize_py() -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one = ONCE.lock().unwrap_or_else(|p| p.into_inner());
    let venv = tools().join("python");
    let bin = venv.join("bin/componentize-py");
    if !bin.exists() {
        run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(
            "pip install componentize-py",
            Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "-r"])
                .arg(root().join("guest-sdk/python/requirements.txt")),
        );
    }
    bin
}

/// The folder holding componentize-js, installed with npm if missing.
pub fn componentize_js() -> PathBuf {
    static ONCE: Mutex<()> = Mutex::new(());
    let _one = ONCE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tools().join("js");
    if !dir.join("node_modules/@bytecodealliance/componentize-js").is_dir() {
        std::fs::create_dir_all(&dir).expect("tools dir");
        for file in ["package.json", "build.mjs"] {
            std::fs::copy(root().join("guest-sdk/js").join(file), dir.join(file)).expect("copy the JS tools");
        }
        run("npm install", Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(&dir));
    }
    dir
}

/// Build the Python app whose `app.py` is in `source` (with the SDK's
/// Python layer) into `out`.
pub fn build_python(source: &Path, out: &Path) {
    let tool = componentize_py();
    run(
        "componentize-py",
        Command::new(tool)
            .arg("-d")
            .arg(root().join("wit"))
            .args(["-w", "app-plugin", "componentize", "-p"])
            .arg(root().join("guest-sdk/python"))
            .arg("-p")
            .arg(source)
            .args(["app", "-o"])
            .arg(out),
    );
}

/// Build the JavaScript app `app.js` in `source` (next to a copy of the
/// SDK's `rapidwasm.js`) into `out`.
pub fn build_js(source: &Path, out: &Path) {
    let tools = componentize_js();
    let staging = tempfile::tempdir().expect("staging dir");
    std::fs::copy(source.join("app.js"), staging.path().join("app.js")).expect("copy app.js");
    std::fs::copy(root().join("guest-sdk/js/rapidwasm.js"), staging.path().join("rapidwasm.js"))
        .expect("copy rapidwasm.js");
    run(
        "componentize-js",
        Command::new("node")
            .arg(tools.join("build.mjs"))
            .arg(staging.path().join("app.js"))
            .arg(root().join("wit"))
            .arg(out)
            .current_dir(&tools),
    );
}
