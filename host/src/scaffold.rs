//! `rapidwasm new app`: a buildable app project in Rust, Python or
//! JavaScript, with the WIT it targets, a configuration that loads it, and
//! the commands to build and run it.

use std::path::{Path, PathBuf};

/// The WIT every plugin targets.
const WIT: &str = include_str!("../../wit/messaging.wit");
/// The configuration that loads the new app.
const CONFIG: &str = include_str!("../templates/rapidwasm.toml");

/// A language an app can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, with the guest SDK.
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    JavaScript,
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rust" => Ok(Language::Rust),
            "python" | "py" => Ok(Language::Python),
            "js" | "javascript" => Ok(Language::JavaScript),
            other => Err(format!("unknown language `{other}`: use rust, python or js")),
        }
    }
}

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot name a project and a plugin.
    #[error("`{0}` is not a valid app name: use a lower-case letter, then letters, digits, `-` or `_` (at most 64)")]
    Name(String),
    /// The folder is already there.
    #[error("{0} already exists; choose another name or remove it")]
    Exists(PathBuf),
    /// A Rust app needs the guest SDK's folder.
    #[error("cannot find the Rust guest SDK at {0}; pass --guest-sdk PATH (the guest-sdk folder of rapidwasm)")]
    NoGuestSdk(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A project that was created.
#[derive(Debug, Clone)]
pub struct Project {
    /// Its folder.
    pub dir: PathBuf,
    /// The component the build produces, relative to `dir`.
    pub wasm: String,
    /// The shell commands that build it, run in `dir`.
    pub build: Vec<String>,
    /// The command that runs it, in `dir`.
    pub run: String,
}

/// Create app `name` in `language` as the folder `parent/name`. A Rust app
/// depends on the guest SDK at `guest_sdk`.
pub fn new_app(language: Language, name: &str, parent: &Path, guest_sdk: &Path) -> Result<Project, ScaffoldError> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(ScaffoldError::Name(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let fill = |text: &str, wasm: &str, limits: &str| {
        text.replace("{{name}}", name).replace("{{wasm}}", wasm).replace("{{limits}}", limits)
    };
    let (files, wasm, build, limits): (Vec<(&str, String)>, String, Vec<String>, &str) = match language {
        Language::Rust => {
            let sdk = guest_sdk.canonicalize().map_err(|_| ScaffoldError::NoGuestSdk(guest_sdk.to_owned()))?;
            if !sdk.join("Cargo.toml").is_file() {
                return Err(ScaffoldError::NoGuestSdk(sdk));
            }
            let manifest = include_str!("../templates/rust/Cargo.toml")
                .replace("{{guest_sdk}}", &sdk.display().to_string().replace('\\', "/"));
            let wasm = format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
            let files = vec![
                ("Cargo.toml", fill(&manifest, &wasm, "")),
                ("src/lib.rs", fill(include_str!("../templates/rust/src/lib.rs"), &wasm, "")),
            ];
            let build = vec![
                "rustup target add wasm32-wasip2".to_owned(),
                "cargo build --release --target wasm32-wasip2".to_owned(),
            ];
            (files, wasm, build, "")
        }
        Language::Python => {
            let wasm = format!("{name}.wasm");
            let files = vec![
                ("app.py", fill(include_str!("../templates/python/app.py"), &wasm, "")),
                ("rapidwasm/__init__.py", include_str!("../../guest-sdk/python/rapidwasm/__init__.py").to_owned()),
                ("requirements.txt", include_str!("../../guest-sdk/python/requirements.txt").to_owned()),
            ];
            let build = vec![
                "python3 -m venv .venv".to_owned(),
                ".venv/bin/pip install -r requirements.txt".to_owned(),
                format!(".venv/bin/componentize-py -d wit -w app-plugin componentize app -o {wasm}"),
            ];
            (files, wasm, build, "")
        }
        Language::JavaScript => {
            let wasm = format!("{name}.wasm");
            let files = vec![
                ("app.js", fill(include_str!("../templates/js/app.js"), &wasm, "")),
                ("rapidwasm.js", include_str!("../../guest-sdk/js/rapidwasm.js").to_owned()),
                ("build.mjs", include_str!("../../guest-sdk/js/build.mjs").to_owned()),
                ("package.json", include_str!("../../guest-sdk/js/package.json").to_owned()),
            ];
            let build = vec!["npm install".to_owned(), format!("node build.mjs app.js wit {wasm}")];
            // A JavaScript runtime grows to about 80 MiB.
            (files, wasm, build, "\nmemory_mib = 128")
        }
    };
    let mut files = files;
    files.push(("wit/messaging.wit", WIT.to_owned()));
    files.push(("rapidwasm.toml", fill(CONFIG, &wasm, limits)));
    for (relative, text) in files {
        let path = dir.join(relative);
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, text));
        written.map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(Project { dir, wasm, build, run: "rapidwasm --config rapidwasm.toml receive --identity 42 hello".to_owned() })
}

/// Where the guest SDK of this build of rapidwasm is, if it is still there.
pub fn default_guest_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")
}
