//! {{name}}: a rapidwasm app. It answers "hello" with a greeting.

use rapidwasm_guest::{App, IncomingMessage};

#[derive(Default)]
struct Hello;

rapidwasm_guest::app! {
    impl App for Hello {
        fn handle(&self, msg: &IncomingMessage) -> bool {
            if !msg.text.trim().eq_ignore_ascii_case("hello") {
                return false; // not mine: let the next app try
            }
            let who = msg.connection().map(|c| c.identity.as_str()).unwrap_or("there");
            let _ = msg.respond(&format!("Hello, {who}!"));
            true
        }
    }
}
