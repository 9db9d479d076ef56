//! A configurable app for tests and experiments, like RapidSMS's `MockApp`:
//! its phases return what its settings say, and it can respond, set fields,
//! send, trap or loop on demand.
//!
//! Settings (all optional):
//! - `filter`, `handle`, `default`, `outgoing`: the phase's return value
//!   (`true`/`false`; defaults false, false, false, true).
//! - `respond`: `phase:text` pairs separated by `|`; in that phase the app
//!   responds with the text (`{text}` is replaced by the message's text,
//!   `{fields}` by its fields as `k=v` pairs joined with `,`).
//! - `error`: the same, queuing `ErrorMessage`s.
//! - `respond_to`: `backend:identity` pairs separated by `,`: responses go to
//!   these connections instead of the sender.
//! - `set_field`: `key=value`, set in the parse phase.
//! - `send`: `backend:identity` pairs; in the handle phase the app calls the
//!   router's `send` with text `sent:{text}`.
//! - `receive_from`: `backend:identity`; in the handle phase the app calls
//!   the router's `receive` with the same text from that connection (which
//!   loops until the host's nesting limit stops it), logging the outcome
//!   under the storage key `receive-result/<message id>`.
//! - `trap_text`: a message with exactly this text makes the app trap (panic)
//!   in the phase named by `trap_in` (default `handle`).
//! - `hog_text`: a message with exactly this text makes the app allocate
//!   and touch 256 MiB in its handle phase (beyond the host's default limit).
//! - `loop_text`: a message with exactly this text makes the app spin forever
//!   in its handle phase.

use rapidwasm_guest::{
    App, Connection, IncomingMessage, OutgoingMessage, Respond, Settings, log, receive, send, storage,
};

/// The probe app.
#[derive(Default)]
pub struct Probe {
    filter: bool,
    handle: bool,
    default: bool,
    outgoing: bool,
    respond: Vec<(String, String)>,
    error: Vec<(String, String)>,
    respond_to: Option<Vec<Connection>>,
    set_field: Option<(String, String)>,
    send_to: Vec<Connection>,
    receive_from: Option<Connection>,
    trap_text: Option<String>,
    trap_in: String,
    loop_text: Option<String>,
    hog_text: Option<String>,
}

fn connections(list: &str) -> Result<Vec<Connection>, String> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (backend, identity) =
                pair.trim().split_once(':').ok_or_else(|| format!("`{pair}` is not backend:identity"))?;
            Ok(Connection { backend: backend.to_owned(), identity: identity.to_owned() })
        })
        .collect()
}

fn phase_texts(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split('|')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            pair.split_once(':')
                .map(|(p, t)| (p.to_owned(), t.to_owned()))
                .ok_or_else(|| format!("`{pair}` is not phase:text"))
        })
        .collect()
}

/// `template` with `{text}` and `{fields}` filled in from `msg`.
fn fill(template: &str, msg: &IncomingMessage) -> String {
    let fields: Vec<String> = msg.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    template.replace("{text}", &msg.text).replace("{fields}", &fields.join(","))
}

impl Probe {
    /// Everything the probe does on entering an incoming phase.
    fn enter(&self, phase: &str, msg: &IncomingMessage) {
        if self.trap_in == phase && self.trap_text.as_deref() == Some(msg.text.as_str()) {
            panic!("probe trapped in {phase} on request");
        }
        let options = || Respond { connections: self.respond_to.clone(), ..Respond::default() };
        for (p, text) in &self.respond {
            if p == phase {
                let text = fill(text, msg);
                if let Err(err) = msg.respond_with(&text, options()) {
                    log::error(&format!("respond failed: {err:?}"));
                }
            }
        }
        for (p, text) in &self.error {
            if p == phase {
                let text = fill(text, msg);
                if let Err(err) = msg.error_with(&text, options()) {
                    log::error(&format!("error failed: {err:?}"));
                }
            }
        }
    }
}

rapidwasm_guest::app! {
    impl App for Probe {
        fn configure(&mut self, settings: &Settings) -> Result<(), String> {
            self.filter = settings.get_bool("filter")?.unwrap_or(false);
            self.handle = settings.get_bool("handle")?.unwrap_or(false);
            self.default = settings.get_bool("default")?.unwrap_or(false);
            self.outgoing = settings.get_bool("outgoing")?.unwrap_or(true);
            self.respond = phase_texts(settings.get_or("respond", ""))?;
            self.error = phase_texts(settings.get_or("error", ""))?;
            self.respond_to = settings.get("respond_to").map(connections).transpose()?;
            self.set_field = match settings.get("set_field") {
                Some(kv) => Some(
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| format!("set_field `{kv}` is not key=value"))?,
                ),
                None => None,
            };
            self.send_to = connections(settings.get_or("send", ""))?;
            self.receive_from = connections(settings.get_or("receive_from", ""))?.into_iter().next();
            self.trap_text = settings.get("trap_text").map(str::to_owned);
            self.trap_in = settings.get_or("trap_in", "handle").to_owned();
            self.loop_text = settings.get("loop_text").map(str::to_owned);
            self.hog_text = settings.get("hog_text").map(str::to_owned);
            Ok(())
        }

        fn filter(&self, msg: &IncomingMessage) -> bool {
            self.enter("filter", msg);
            self.filter
        }

        fn parse(&self, msg: &IncomingMessage) {
            self.enter("parse", msg);
            if let Some((key, value)) = &self.set_field
                && let Err(err) = msg.set_field(key, value)
            {
                log::error(&format!("set_field failed: {err:?}"));
            }
        }

        fn handle(&self, msg: &IncomingMessage) -> bool {
            self.enter("handle", msg);
            if self.loop_text.as_deref() == Some(msg.text.as_str()) {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            if self.hog_text.as_deref() == Some(msg.text.as_str()) {
                let hog = vec![1u8; 256 << 20];
                log::info(&format!("allocated {} bytes", std::hint::black_box(&hog).len()));
            }
            if !self.send_to.is_empty()
                && let Err(err) = send(&format!("sent:{}", msg.text), &self.send_to, &[])
            {
                log::error(&format!("send failed: {err:?}"));
            }
            if let Some(from) = &self.receive_from {
                let outcome = match receive(&msg.text, from, &[]) {
                    Ok(id) => format!("ok:{id}"),
                    Err(err) => format!("err:{err:?}"),
                };
                if let Err(err) = storage::set(&format!("receive-result/{}", msg.id), outcome.as_bytes()) {
                    log::error(&format!("storage failed: {err:?}"));
                }
            }
            self.handle
        }

        fn default(&self, msg: &IncomingMessage) -> bool {
            self.enter("default", msg);
            self.default
        }

        fn cleanup(&self, msg: &IncomingMessage) {
            self.enter("cleanup", msg);
        }

        fn outgoing(&self, msg: &OutgoingMessage) -> bool {
            if self.trap_in == "outgoing" && self.trap_text.as_deref() == Some(msg.text.as_str()) {
                panic!("probe trapped in outgoing on request");
            }
            self.outgoing
        }
    }
}
