//! A hostile app, for the host's isolation tests: each message text
//! triggers one attack in the `handle` phase. Every other text is left
//! alone (returns false).
//!
//! | text | attack |
//! |---|---|
//! | `loop` | spin forever |
//! | `bomb` | allocate memory until refused |
//! | `recurse` | unbounded recursion (stack overflow) |
//! | `trap` | panic |
//! | `flood` | queue 100,000 responses |
//! | `huge` | respond with a 1 MiB text |
//! | `files` | read `/etc/passwd` and list `/` |
//! | `env` | read the environment and the arguments |
//! | `socket` | open a TCP connection to 127.0.0.1:22 |
//! | `read PATH` | read the file at PATH |
//! | `connect ADDR` | open a TCP connection to ADDR (`ip:port`) |
//! | `lookup BACKEND IDENTITY` | look a connection up on BACKEND (another tenant's?) |
//! | `send BACKEND IDENTITY` | send `stolen` to IDENTITY through BACKEND |
//! | `contact BACKEND IDENTITY` | read the contact linked to that connection |
//!
//! What the host let through is reported in a response `leak: ...`; what it
//! refused in `denied: ...`.

use rapidwasm_guest::{App, Connection, IncomingMessage, contact_of, log, lookup_connections, send};

/// The hostile app.
#[derive(Default)]
pub struct Hostile;

/// Recurse until the stack runs out: the attack itself.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    let mut local = [depth; 64];
    local[(depth % 64) as usize] ^= sink[(depth % 64) as usize];
    std::hint::black_box(&mut local);
    recurse(depth + 1, &mut local) + local[0]
}

fn report(msg: &IncomingMessage, what: &str, outcome: Result<String, String>) {
    let text = match outcome {
        Ok(found) => format!("leak: {what}: {found}"),
        Err(why) => format!("denied: {what}: {why}"),
    };
    if let Err(err) = msg.respond(&text) {
        log::error(&format!("respond failed: {err:?}"));
    }
}

rapidwasm_guest::app! {
    impl App for Hostile {
        fn handle(&self, msg: &IncomingMessage) -> bool {
            let words: Vec<&str> = msg.text.split_whitespace().collect();
            match words.as_slice() {
                ["read", path] => {
                    let read = std::fs::read_to_string(path).map(|s| s.trim().to_owned());
                    report(msg, "read", read.map_err(|e| e.to_string()));
                    return true;
                }
                ["connect", addr] => {
                    let connected = std::net::TcpStream::connect(addr).map(|_| "connected".to_owned());
                    report(msg, "connect", connected.map_err(|e| e.to_string()));
                    return true;
                }
                ["lookup", backend, identity] => {
                    let found = lookup_connections(backend, &[identity]).map(|c| format!("{c:?}"));
                    report(msg, "lookup", found.map_err(|e| format!("{e:?}")));
                    return true;
                }
                ["send", backend, identity] => {
                    let to = Connection { backend: (*backend).to_owned(), identity: (*identity).to_owned() };
                    let sent = send("stolen", &[to], &[]);
                    report(msg, "send", sent.map_err(|e| format!("{e:?}")));
                    return true;
                }
                ["contact", backend, identity] => {
                    let to = Connection { backend: (*backend).to_owned(), identity: (*identity).to_owned() };
                    let found = contact_of(&to).map(|c| format!("{c:?}"));
                    report(msg, "contact", found.map_err(|e| format!("{e:?}")));
                    return true;
                }
                _ => {}
            }
            match msg.text.as_str() {
                "loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "bomb" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![7u8; 16 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "recurse" => {
                    let mut sink = [0u64; 64];
                    std::hint::black_box(recurse(0, &mut sink));
                }
                "trap" => panic!("hostile app trapped on purpose"),
                "flood" => {
                    let mut refused = None;
                    for i in 0..100_000 {
                        if let Err(err) = msg.respond(&format!("flood {i}")) {
                            refused = Some(format!("after {i}: {err:?}"));
                            break;
                        }
                    }
                    report(msg, "flood", refused.map_or(Ok("100000 responses queued".into()), Err));
                }
                "huge" => {
                    if let Err(err) = msg.respond(&"x".repeat(1 << 20)) {
                        report(msg, "huge", Err(format!("{err:?}")));
                    }
                }
                "files" => {
                    let read = std::fs::read_to_string("/etc/passwd").map(|s| s.len().to_string());
                    report(msg, "read /etc/passwd", read.map_err(|e| e.to_string()));
                    let listed = std::fs::read_dir("/").map(|d| d.count().to_string());
                    report(msg, "list /", listed.map_err(|e| e.to_string()));
                }
                "env" => {
                    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                    let args: Vec<String> = std::env::args().collect();
                    let found = (vars.len(), args.len());
                    report(
                        msg,
                        "environment",
                        if found == (0, 0) { Err("empty".into()) } else { Ok(format!("{vars:?} {args:?}")) },
                    );
                }
                "socket" => {
                    let connected = std::net::TcpStream::connect("127.0.0.1:22").map(|_| "connected".to_owned());
                    report(msg, "socket", connected.map_err(|e| e.to_string()));
                }
                _ => return false,
            }
            true
        }
    }
}
