//! The `rapidwasm` binary as a person uses it: one-shot commands, chat, a
//! running server, bad configuration. Real processes, real sled on disk,
//! real HTTP on loopback.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rapidwasm");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).current_dir(dir).env_remove("RAPIDWASM_CONFIG").args(args).output().expect("run rapidwasm")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn receive_prints_the_phases_and_the_response_sent_through_the_console_backend() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(dir.path(), &["receive", "--backend", "console", "--identity", "123", "echo hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("received \"echo hi\" from 123 via console"), "{text}");
    assert!(text.contains("handle   echo         -> true"), "{text}");
    assert!(text.contains("sent \"hi\" to 123 via console"), "{text}");
    assert!(dir.path().join("rapidwasm-data").is_dir(), "the built-in configuration stores in ./rapidwasm-data");

    // The message log kept both messages across processes.
    let out = run(dir.path(), &["plugin-data", "messagelog"]);
    let log = stdout(&out);
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains(r#""text":"echo hi""#) && log.contains(r#""text":"hi""#), "{log}");
}

#[test]
fn send_reaches_every_recipient() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(dir.path(), &["send", "--to", "1", "--to", "2", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sent \"hello\" to 1, 2 via console"), "{}", stdout(&out));
    let outbox = stdout(&run(dir.path(), &["plugin-data", "console", "--prefix", "outbox/"]));
    assert_eq!(outbox.lines().count(), 2, "{outbox}");
}

#[test]
fn chat_acts_as_a_phone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_remove("RAPIDWASM_CONFIG")
        .args(["chat", "--identity", "+255700000001"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat");
    child.stdin.take().expect("stdin").write_all(b"echo hello there\nping\nwhat?\n").expect("type");
    let out = child.wait_with_output().expect("chat ends at end of input");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("< hello there"), "{text}");
    assert!(text.contains("< pong"), "{text}");
    assert!(text.contains("< Sorry, RapidSMS could not understand your message."), "{text}");
}

#[test]
fn bad_configuration_is_refused_with_file_key_and_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[[apps]]\nname = \"echo\"\nplugin = \"builtin:ehco\"\n").expect("write");
    let out = run(dir.path(), &["--config", "bad.toml", "check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.toml: `apps[0].plugin`: no built-in plugin \"ehco\""), "{err}");
    let out = run(dir.path(), &["--config", "missing.toml", "check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot read missing.toml"), "{}", stderr(&out));
}

#[test]
fn check_lists_the_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("apps (in order): messagelog, echo, ping, default"), "{text}");
    assert!(text.contains("backends: console"), "{text}");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_shot_commands_go_through_a_running_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nadmin_token = \"cli-test-token-0123456789\"\n\
         [[apps]]\nname = \"echo\"\nplugin = \"builtin:echo\"\n\
         [backends.console]\nplugin = \"builtin:console\"\n\
         [tenants.acme]\napi_keys = [\"acme-key-0123456789\"]\n\
         [[tenants.acme.apps]]\nname = \"echo\"\nplugin = \"builtin:echo\"\n"
    );
    std::fs::write(dir.path().join("rapidwasm.toml"), config).expect("write config");
    let server = Server(
        Command::new(BIN)
            .current_dir(dir.path())
            .args(["--config", "rapidwasm.toml", "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server"),
    );
    wait_for(port);
    let out = run(dir.path(), &["--config", "rapidwasm.toml", "receive", "--identity", "123", "echo hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("by the server at 127.0.0.1:{port}")), "{text}");
    assert!(text.contains("sent \"hi\" to 123 via console"), "{text}");

    // The admin API, with the configuration's token: list, then swap.
    let admin = |args: &[&str]| {
        let mut all = vec!["--config", "rapidwasm.toml", "plugins"];
        all.extend_from_slice(args);
        let out = run(dir.path(), &all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let listed = admin(&["list"]);
    assert!(listed.contains("console\tbackend\tv1\tbuiltin:console\t"), "{listed}");
    assert!(listed.contains("echo\tapp\tv1\tbuiltin:echo\t"), "{listed}");
    let swapped = admin(&["swap", "console", "builtin:console", "--setting", "fail_identities=7"]);
    assert!(swapped.contains("swapped console to v2 (builtin:console)"), "{swapped}");
    assert!(admin(&["list"]).contains("console\tbackend\tv2\t"));
    let refused = run(dir.path(), &["--config", "rapidwasm.toml", "plugins", "swap", "console", "builtin:echo"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("does not fit the backend world"), "{}", stderr(&refused));

    // Load an app in front of echo, use it, unload it; and another tenant's
    // plugins through --tenant.
    let loaded = admin(&["load", "ping", "builtin:ping", "--kind", "app", "--position", "0"]);
    assert!(loaded.contains("loaded app ping (builtin:ping)"), "{loaded}");
    let out = run(dir.path(), &["--config", "rapidwasm.toml", "receive", "--identity", "123", "ping"]);
    assert!(stdout(&out).contains("sent \"pong\" to 123"), "{}{}", stdout(&out), stderr(&out));
    let unloaded = admin(&["unload", "ping"]);
    assert!(unloaded.contains("unloaded app ping (v1, builtin:ping)"), "{unloaded}");
    assert!(!admin(&["list"]).contains("ping"));
    let listed = admin(&["--tenant", "acme", "list"]);
    assert!(listed.starts_with("echo\tapp\tv1\tbuiltin:echo\t") && !listed.contains("console"), "{listed}");
    let unknown = run(dir.path(), &["--config", "rapidwasm.toml", "plugins", "--tenant", "nope", "list"]);
    assert!(stderr(&unknown).contains("no tenant is named `nope`"), "{}", stderr(&unknown));

    // SIGTERM stops the server cleanly; what it stored is there afterwards.
    let mut server = server;
    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(killed.success());
    let status = server.0.wait().expect("wait for the server");
    assert!(status.success(), "the server exits 0 on SIGTERM, not {status}");
    let out = run(dir.path(), &["--config", "rapidwasm.toml", "plugin-data", "console"]);
    assert!(stdout(&out).contains("\t123\thi"), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn compiled_components_are_kept_on_disk_and_reused_on_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let compiled =
        |out: &Output| stderr(out).lines().filter(|l| l.contains("plugins::engine") && l.contains("compiled")).count();

    let first = run(dir.path(), &["-v", "check"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let cache = dir.path().join("rapidwasm-data/compiled");
    let files: Vec<_> = std::fs::read_dir(&cache).expect("the cache directory").flatten().collect();
    assert_eq!(compiled(&first), files.len(), "one file per compiled component:\n{}", stderr(&first));
    assert!(files.len() >= 5, "{files:?}");

    let second = run(dir.path(), &["-v", "check"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(compiled(&second), 0, "a restart compiles nothing:\n{}", stderr(&second));

    // A damaged file is ignored and replaced, not trusted.
    let victim = files[0].path();
    std::fs::write(&victim, b"not a compiled component").expect("damage a file");
    let third = run(dir.path(), &["-v", "check"]);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(compiled(&third), 1, "{}", stderr(&third));
    assert!(stderr(&third).contains("ignoring an unusable compiled component"), "{}", stderr(&third));
    assert!(std::fs::metadata(&victim).expect("replaced").len() > 1000);
}

#[test]
fn dead_letters_are_listed_and_requeued_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("rapidwasm.toml");
    let write = |fail: &str| {
        let text = format!(
            "[router]\nkind = \"durable\"\nmax_attempts = 2\nretry_initial_ms = 10\n\n\
             [backends.console]\nplugin = \"builtin:console\"\nsettings = {{ fail_identities = \"{fail}\" }}\n"
        );
        std::fs::write(&config, text).expect("write config");
    };
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", "rapidwasm.toml"];
        all.extend_from_slice(args);
        let out = run(dir.path(), &all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };

    // The console cannot reach 7: two tries, then a dead letter.
    write("7");
    cli(&["send", "--to", "7", "--to", "8", "hello"]);
    let listed = cli(&["dead-letters", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains(" 7 via console: failed, 2 tries, dead letter"), "{listed}");
    let id = listed.split_whitespace().next().expect("a message id").to_owned();
    let status = cli(&["status", &id]);
    assert!(status.contains("(Outgoing, failed)"), "{status}");
    assert!(status.contains("8 via console: sent, 1 tries"), "{status}");

    // Fixed: re-queue everything, and it is sent.
    write("");
    let requeued = cli(&["dead-letters", "requeue", "--all"]);
    assert!(requeued.contains(&format!("re-queued {id} to 7 via console")), "{requeued}");
    assert_eq!(cli(&["dead-letters", "list"]).trim(), "no dead letters");
    let status = cli(&["status", &id]);
    assert!(status.contains("(Outgoing, sent)") && status.contains("7 via console: sent, 1 tries"), "{status}");
    let refused = run(dir.path(), &["--config", "rapidwasm.toml", "dead-letters", "requeue", "--message", &id]);
    assert!(!refused.status.success(), "--backend and --identity are required with --message");
}
