//! RapidSMS's `contrib.echo` echo handler: `echo hello` answers `hello`.

use rapidwasm_guest::{HandlerResult, IncomingMessage, Keyword, KeywordHandler};

/// Answers `ECHO <text>` with `<text>`; a bare `echo` gets the help text.
#[derive(Default)]
pub struct EchoHandler;

impl KeywordHandler for EchoHandler {
    fn keyword(&self) -> &str {
        "echo"
    }

    fn help(&self, msg: &IncomingMessage) -> HandlerResult {
        msg.respond("To echo some text, send: ECHO <ANYTHING>")
    }

    fn handle(&self, msg: &IncomingMessage, text: &str) -> HandlerResult {
        msg.respond(text)
    }
}

rapidwasm_guest::handlers_app!(Keyword(EchoHandler));
