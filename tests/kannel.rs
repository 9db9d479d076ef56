//! End to end through a real Kannel (Debian's `kannel` and `kannel-extras`):
//! fakesmsc → bearerbox → smsbox → our host (kannel backend, echo app) →
//! smsbox's sendsms → bearerbox → fakesmsc receives the reply.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rapidwasm::store::journal::Status;
use rapidwasm_tests::system::{Process, free_port, require, wait_for_port};
use rapidwasm_tests::{TestHost, app, backend, eventually};

const BEARERBOX: &str = "/usr/sbin/bearerbox";
const SMSBOX: &str = "/usr/sbin/smsbox";
const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";

/// Ports of one Kannel.
struct Ports {
    admin: u16,
    smsbox: u16,
    smsc: u16,
    sendsms: u16,
}

/// A bearerbox and an smsbox whose get-url points at `host_url`.
struct Kannel {
    ports: Ports,
    dir: tempfile::TempDir,
    _boxes: Vec<Process>,
}

impl Kannel {
    fn start(ports: Ports, host_url: &str) -> Kannel {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("kannel.conf");
        std::fs::write(&conf, kannel_conf(&ports, host_url, dir.path())).expect("write kannel.conf");
        let bearerbox = Process::start("bearerbox", Command::new(BEARERBOX).arg(&conf), &dir.path().join("bb.out"));
        assert!(wait_for_port(ports.admin, Duration::from_secs(20)), "bearerbox did not start");
        let smsbox = Process::start("smsbox", Command::new(SMSBOX).arg(&conf), &dir.path().join("sb.out"));
        let kannel = Kannel { _boxes: vec![bearerbox, smsbox], ports, dir };
        assert!(
            wait_for_port(kannel.ports.sendsms, Duration::from_secs(20)),
            "smsbox did not start: {}",
            kannel.logs()
        );
        kannel
    }

    /// Send one message from a fake phone and wait for the reply that
    /// fakesmsc prints (`<from to type text>`).
    fn exchange(&self, message: &str) -> String {
        let mut fake = Command::new(FAKESMSC)
            .args(["-H", "127.0.0.1", "-r", &self.ports.smsc.to_string(), "-i", "0", "-m", "1", message])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fakesmsc");
        let stderr = fake.stderr.take().expect("fakesmsc's log");
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => match line.split_once("Got message 1: <") {
                    Some((_, rest)) => break Some(rest.trim_end_matches('>').to_owned()),
                    None => seen.push(line),
                },
                Err(_) => break None,
            }
        };
        let _ = fake.kill();
        let _ = fake.wait();
        reply.unwrap_or_else(|| panic!("no reply within 30 s.\nfakesmsc:\n{}\n{}", seen.join("\n"), self.logs()))
    }

    /// The boxes' logs, for failure messages.
    fn logs(&self) -> String {
        ["bb.out", "sb.out", "bearerbox.log", "smsbox.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!("--- {name}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Kannel's configuration, as the README tells operators to write it.
fn kannel_conf(ports: &Ports, host_url: &str, dir: &Path) -> String {
    format!(
        r#"group = core
admin-port = {admin}
admin-password = secret
smsbox-port = {smsbox}
box-allow-ip = 127.0.0.1
log-level = 0
log-file = "{dir}/bearerbox.log"

group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {smsc}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
log-level = 0
log-file = "{dir}/smsbox.log"

group = sendsms-user
username = rapidsms
password = s3cret

group = sms-service
keyword = default
catch-all = yes
max-messages = 0
get-url = "{host_url}/backends/kannel/?id=%p&text=%a&charset=%C&coding=%c&message_id=%I"
"#,
        admin = ports.admin,
        smsbox = ports.smsbox,
        smsc = ports.smsc,
        sendsms = ports.sendsms,
        dir = dir.display(),
    )
}

/// `%XX`-encoded bytes (fakesmsc's notation for UCS-2 payloads) decoded.
fn percent_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    out
}

fn utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    String::from_utf16(&units).expect("UTF-16BE")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_kannel_delivers_the_echo_reply() {
    require(BEARERBOX, &["kannel"]);
    require(FAKESMSC, &["kannel-extras"]);
    let ports = Ports { admin: free_port(), smsbox: free_port(), smsc: free_port(), sendsms: free_port() };
    // The host's port must be known before its configuration names it as
    // the delivery report URL.
    let host_port = free_port();
    let settings = format!(
        "sendsms_url = \"http://127.0.0.1:{}/cgi-bin/sendsms\", sendsms_params = {{ username = \"rapidsms\", \
         password = \"s3cret\", from = \"555\", smsc = \"fake\" }}, \
         delivery_report_url = \"http://127.0.0.1:{host_port}\"",
        ports.sendsms
    );
    let allowed = format!("127.0.0.1:{}", ports.sendsms);
    let body = format!(
        "[router]\nkind = \"durable\"\n{}{}",
        app("echo", "echo", ""),
        backend("kannel", "kannel", &[&allowed], &settings)
    );
    let t = TestHost::start(&body).await.expect("start the host");
    let served = t.serve_on(host_port).await;
    let kannel = Kannel::start(ports, &served.base);

    let exchange = |message: &'static str| {
        let kannel = &kannel;
        tokio::task::block_in_place(move || kannel.exchange(message))
    };

    // Plain text, 7-bit both ways.
    assert_eq!(exchange("+256700000001 555 text echo hello world"), "555 +256700000001 text hello world");

    // UTF-8 text with Cyrillic arrives intact and goes back as UCS-2.
    let reply = exchange("+256700000002 555 text echo café мир");
    let payload = reply.strip_prefix("555 +256700000002 ucs-2 ").unwrap_or_else(|| panic!("a UCS-2 reply: {reply}"));
    assert_eq!(utf16be(&percent_bytes(payload)), "café мир");

    // A UCS-2 message from the phone (smsbox forwards it as UTF-16BE) is
    // decoded, and its reply, with an emoji, survives the round trip.
    let reply = exchange("+256700000003 555 ucs2 %00e%00c%00h%00o%00%20%04%1F%04%40%048%042%045%04B%00%20%D8%3D%DCM");
    let payload = reply.strip_prefix("555 +256700000003 ucs-2 ").unwrap_or_else(|| panic!("a UCS-2 reply: {reply}"));
    assert_eq!(utf16be(&percent_bytes(payload)), "Привет 👍");

    // The host saw each message once, from the right phone.
    let received: Vec<String> = t
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            rapidwasm::router::RouterEvent::Received { connection, text, .. } => {
                Some(format!("{}: {text}", connection.identity))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        received,
        ["+256700000001: echo hello world", "+256700000002: echo café мир", "+256700000003: echo Привет 👍"]
    );

    // Kannel's own message id became the `external_id` field, so smsbox's
    // retries would be recognised.
    let router = t.host.router();
    for id in &t.recorder.received_ids() {
        let (record, _) = router.message_record(id).expect("read").expect("stored");
        let external = record.fields.get("external_id").map(String::as_str).unwrap_or_default();
        assert_eq!(external.len(), 36, "Kannel's UUID: {external:?}");
    }

    // Kannel reported on each reply (dlr-mask 31: the SMSC took it), by the
    // URL the backend gave it, and the host matched every report.
    // The phone may see a reply before the host has recorded its send.
    let sent: Vec<String> = eventually(Duration::from_secs(15), async || {
        let sent = t.recorder.sent_ids();
        (sent.len() == 3).then_some(sent)
    })
    .await
    .expect("three sends recorded");
    for id in &sent {
        let reported = eventually(Duration::from_secs(15), async || {
            let kept = t.host.store().plugin_scan("kannel", &format!("dlr/{id}/"), None, 10).expect("scan");
            (!kept.is_empty()).then_some(kept)
        })
        .await
        .unwrap_or_else(|| panic!("no delivery report for {id}"));
        let report = String::from_utf8_lossy(&reported[0].1).into_owned();
        assert!(report.contains("status=8") || report.contains("status=1"), "{report}");
        let (_, transmissions) = router.message_record(id).expect("read").expect("stored");
        assert!(matches!(transmissions[0].status, Status::Sent | Status::Delivered), "{transmissions:?}");
    }
}
