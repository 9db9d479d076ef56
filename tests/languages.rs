//! Apps written in Python (componentize-py) and JavaScript
//! (componentize-js), built from `plugins/` with the SDK's layers and loaded
//! exactly like Rust apps.

use std::path::PathBuf;
use std::sync::OnceLock;

use rapidwasm::messages::Connection;
use rapidwasm::router::{PhaseResult, RouterEvent};
use rapidwasm_tests::guests::{build_js, build_python, root};
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
