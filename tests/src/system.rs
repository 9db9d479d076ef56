//! Real programs for the tests: Debian packages installed on demand, child
//! processes killed when the test ends, and free loopback ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Make sure `binary` exists, installing Debian `packages` with apt-get when
/// it does not (as `.ci/run` does up front). Panics with the command to run
/// when that is impossible.
pub fn require(binary: &str, packages: &[&str]) {
    static APT: Mutex<()> = Mutex::new(());
    if Path::new(binary).exists() {
        return;
    }
    let _one_at_a_time = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if Path::new(binary).exists() {
        return;
    }
    let command = format!("apt-get install -y --no-install-recommends {}", packages.join(" "));
    eprintln!("{binary} is missing; running `{command}`");
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && Path::new(binary).exists(),
        "this test needs {binary}: install it with `sudo {command}`"
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Wait until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, within: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A child process, killed and reaped when dropped.
pub struct Process {
    /// What it is, for messages.
    pub name: String,
    /// The process.
    pub child: Child,
}

impl Process {
    /// Start `command` with its output sent to `log` (a file path).
    pub fn start(name: &str, command: &mut Command, log: &Path) -> Process {
        let file = std::fs::File::create(log).expect("create a log file");
        let err = file.try_clone().expect("clone the log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name: name.to_owned(), child }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
