//! A test app that fetches `url` (a setting) for every message it handles.
//! Apps get no network, so the host refuses to load it: this plugin exists
//! to prove that.

use rapidwasm_guest::http::client::Request;
use rapidwasm_guest::{App, IncomingMessage, Settings};

/// The fetcher app.
#[derive(Default)]
pub struct Fetcher {
    url: String,
}

rapidwasm_guest::app! {
    impl App for Fetcher {
        fn configure(&mut self, settings: &Settings) -> Result<(), String> {
            self.url = settings.get_or("url", "http://127.0.0.1:9/").to_owned();
            Ok(())
        }

        fn handle(&self, msg: &IncomingMessage) -> bool {
            let answer = match Request::get(&self.url).send() {
                Ok(response) => format!("fetched: {}", response.status),
                Err(e) => format!("failed: {e}"),
            };
            msg.respond(&answer).is_ok()
        }
    }
}
