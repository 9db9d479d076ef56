//! Apps written in Python (componentize-py) and JavaScript
//! (componentize-js), built from `plugins/` with the SDK's layers and loaded
//! exactly like Rust apps.

use std::path::PathBuf;
use std::sync::OnceLock;

use rapidwasm::config::Config;
use rapidwasm::messages::Connection;
use rapidwasm::router::{PhaseResult, RouterEvent};
use rapidwasm::scaffold::{Language, new_app};
use rapidwasm_tests::guests::{build_js, build_python, componentize_js, componentize_py, root, run};
use rapidwasm_tests::{TestHost, app, console};

fn built(name: &str) -> PathBuf {
    let dir = root().join("target/guest-builds");
    std::fs::create_dir_all(&dir).expect("build dir");
    dir.join(name)
}

/// `plugins/registration-py`, built once per run.
fn registration() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = built("registration.wasm");
        build_python(&root().join("plugins/registration-py"), &out);
        out
    })
}

/// `plugins/hello-js`, built once per run.
fn hello() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = built("hello.wasm");
        build_js(&root().join("plugins/hello-js"), &out);
        out
    })
}

fn file_app(name: &str, path: &std::path::Path, extra: &str) -> String {
    format!("[[apps]]\nname = \"{name}\"\nplugin = {:?}\n{extra}\n", path.display().to_string())
}

async fn reply(t: &TestHost, identity: &str, text: &str) -> Vec<String> {
    t.receive(identity, text).await.sent.iter().map(|m| m.text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_app_registers_contacts() {
    let wasm = tokio::task::block_in_place(registration);
    let body =
        format!("{}{}{}", file_app("registration", wasm, ""), app("default", "default", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");

    assert_eq!(reply(&t, "256700", "register Amina Okello").await, ["Thank you for registering, Amina Okello!"]);
    let contact = t.host.router().contact_of(&Connection::new("console", "256700")).expect("lookup").expect("linked");
    assert_eq!(contact.name, "Amina Okello");

    // RapidSMS's keywords and help; other messages fall through to default.
    assert_eq!(reply(&t, "256701", "JOIN: Baraka").await, ["Thank you for registering, Baraka!"]);
    assert_eq!(reply(&t, "256702", "reg").await, ["To register, send JOIN <NAME>"]);
    assert_eq!(reply(&t, "256702", "hello").await, ["Sorry, RapidSMS could not understand your message."]);

    // An exception in the guest (the host refuses a 101-character name) traps
    // that call only: the app is skipped, the default app answers, and the
    // next message is served by a fresh instance.
    let long = format!("register {}", "x".repeat(101));
    let msg = t.receive("256703", &long).await;
    let failed = t.recorder.events().into_iter().any(|e| {
        matches!(e, RouterEvent::Phase { message_id, app, result: PhaseResult::Failed(_), .. }
            if message_id == msg.base.id && app == "registration")
    });
    assert!(failed, "the registration app's failure is recorded");
    assert_eq!(
        msg.sent.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["Sorry, RapidSMS could not understand your message."]
    );
    assert_eq!(reply(&t, "256703", "join Chiku").await, ["Thank you for registering, Chiku!"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_app_answers_and_keeps_state_in_storage() {
    let wasm = tokio::task::block_in_place(hello);
    let body = format!(
        "{}{}{}",
        file_app("hello", wasm, "memory_mib = 128\nsettings = { greeting = \"Jambo\" }"),
        app("default", "default", ""),
        console("console", "")
    );
    let t = TestHost::start(&body).await.expect("start");
    assert_eq!(reply(&t, "42", "hello").await, ["Jambo, 42! (visit 1)"]);
    assert_eq!(reply(&t, "42", "Hi there").await, ["Jambo, 42! (visit 2)"]);
    assert_eq!(reply(&t, "43", "hello").await, ["Jambo, 43! (visit 1)"]);
    assert_eq!(reply(&t, "43", "bye").await, ["Sorry, RapidSMS could not understand your message."]);
    // Only the phase it defines is called.
    let phases = t.recorder.phases_of(&t.receive("44", "hello").await.base.id);
    assert_eq!(phases, ["hello.handle"]);

    // A JavaScript exception (the host refuses a storage key over 1024
    // bytes) traps that call only; the default app answers instead.
    let long = "9".repeat(1020);
    let msg = t.receive(&long, "hello").await;
    assert_eq!(t.recorder.phases_of(&msg.base.id), ["hello.handle!", "default.default"]);
    assert_eq!(msg.sent.len(), 1);
    assert_eq!(reply(&t, "42", "hello").await, ["Jambo, 42! (visit 3)"], "a fresh instance serves the next one");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_language_runtime_is_still_capped_by_its_memory_limit() {
    let wasm = tokio::task::block_in_place(hello);
    let body = format!("{}{}", file_app("hello", wasm, "memory_mib = 4"), console("console", ""));
    let err = match TestHost::start(&body).await {
        Ok(_) => panic!("a JavaScript runtime does not fit in 4 MiB"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.starts_with("plugin `hello` failed while starting"), "{err}");
    assert!(err.contains("exceeded its memory limit of 4194304 bytes"), "{err}");
}

/// Create an app with `rapidwasm new app`, build it with its printed
/// commands, load it with its generated configuration and say hello.
async fn scaffolded_app_says_hello(language: Language, name: &str, build: impl FnOnce(&std::path::Path)) {
    let parent = tempfile::tempdir().expect("temp dir");
    let project = new_app(language, name, parent.path(), &root().join("guest-sdk")).expect("scaffold");
    tokio::task::block_in_place(|| build(&project.dir));
    assert!(project.dir.join(&project.wasm).is_file(), "the build made {}", project.wasm);

    let config = Config::load(&project.dir.join("rapidwasm.toml")).expect("the generated configuration");
    let host = rapidwasm::Host::start(config, Vec::new()).await.expect("start");
    let msg = host.router().receive("hello", Connection::new("console", "42"), Default::default()).await;
    let sent: Vec<String> = msg.expect("receive").sent.iter().map(|m| m.text.clone()).collect();
    assert_eq!(sent, ["Hello, 42!"], "{language:?}");
    host.shutdown().expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_rust_app_builds_and_runs() {
    scaffolded_app_says_hello(Language::Rust, "hello-rs", |dir| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--release", "--target", "wasm32-wasip2"]).current_dir(dir);
        for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
            build.env_remove(var);
        }
        run("cargo build of the new app", &mut build);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_python_app_builds_and_runs() {
    scaffolded_app_says_hello(Language::Python, "hello-py", |dir| {
        run(
            "componentize-py",
            std::process::Command::new(componentize_py())
                .args(["-d", "wit", "-w", "app-plugin", "componentize", "app", "-o", "hello-py.wasm"])
                .current_dir(dir),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_javascript_app_builds_and_runs() {
    scaffolded_app_says_hello(Language::JavaScript, "hello-js", |dir| {
        // `npm install` there would fetch the same pinned package; share ours.
        std::os::unix::fs::symlink(componentize_js().join("node_modules"), dir.join("node_modules"))
            .expect("link node_modules");
        run(
            "node build.mjs",
            std::process::Command::new("node").args(["build.mjs", "app.js", "wit", "hello-js.wasm"]).current_dir(dir),
        );
    })
    .await;
}
