//! Apps: RapidSMS's `AppBase`, as a trait whose phases default to no-ops.

use crate::bindings::imports::rapidwasm::messaging::incoming;
use crate::host::{Connection, HostError, Message};
use crate::settings::Settings;

/// A RapidSMS app. Implement the phases you need inside [`app!`](crate::app);
/// every phase you leave out is never called by the host.
///
/// Apps are created with `Default::default()` and then [`configure`]d, once
/// per fresh instance. The host may run several instances of an app and
/// replaces an instance that trapped, so keep no state in memory between
/// messages: use [`storage`](crate::storage).
///
/// [`configure`]: App::configure
pub trait App: Default {
    /// Read settings from the host's configuration. An error refuses the
    /// configuration: the host reports it and does not start.
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }
    /// true: drop the message; no further phase runs, not even `cleanup`.
    fn filter(&self, msg: &IncomingMessage) -> bool {
        let _ = msg;
        false
    }
    /// Annotate the message, for example with [`IncomingMessage::set_field`].
    fn parse(&self, msg: &IncomingMessage) {
        let _ = msg;
    }
    /// true: the message is handled; later apps' `handle` and every
    /// `default` are skipped.
    fn handle(&self, msg: &IncomingMessage) -> bool {
        let _ = msg;
        false
    }
    /// Runs only when no app handled the message. true: later apps'
    /// `default` are skipped.
    fn default(&self, msg: &IncomingMessage) -> bool {
        let _ = msg;
        false
    }
    /// Runs for every message that was not filtered.
    fn cleanup(&self, msg: &IncomingMessage) {
        let _ = msg;
    }
    /// Runs for every outgoing message, apps in reverse order. false:
    /// cancel the send.
    fn outgoing(&self, msg: &OutgoingMessage) -> bool {
        let _ = msg;
        true
    }
}

/// The message an incoming phase is processing, with RapidSMS's
/// `IncomingMessage` methods.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    message: Message,
}

impl IncomingMessage {
    /// Wrap message data handed over by the host.
    pub fn new(message: Message) -> Self {
        IncomingMessage { message }
    }

    /// The connection the message came from (RapidSMS's deprecated
    /// `connection`, kept because nearly every app wants it).
    pub fn connection(&self) -> Option<&Connection> {
        self.message.connections.first()
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        field(&self.message.fields, key)
    }

    /// Queue a response to the sender. Responses are sent after every
    /// incoming phase has run, in the order they were queued.
    pub fn respond(&self, text: &str) -> Result<(), HostError> {
        self.respond_with(text, Respond::default())
    }

    /// Queue a response with options (other connections, fields, ...).
    pub fn respond_with(&self, text: &str, options: Respond) -> Result<(), HostError> {
        incoming::respond(text, &options.into_wit())
    }

    /// Queue an `ErrorMessage` response to the sender.
    pub fn error(&self, text: &str) -> Result<(), HostError> {
        self.error_with(text, Respond::default())
    }

    /// Queue an `ErrorMessage` response with options.
    pub fn error_with(&self, text: &str, options: Respond) -> Result<(), HostError> {
        incoming::error(text, &options.into_wit())
    }

    /// Set field `key`; later phases and apps see the new value.
    pub fn set_field(&self, key: &str, value: &str) -> Result<(), HostError> {
        incoming::set_field(key, value)
    }
}

impl core::ops::Deref for IncomingMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

/// A message in the outgoing phase.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    message: Message,
}

impl OutgoingMessage {
    /// Wrap message data handed over by the host.
    pub fn new(message: Message) -> Self {
        OutgoingMessage { message }
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        field(&self.message.fields, key)
    }
}

impl core::ops::Deref for OutgoingMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Options of [`IncomingMessage::respond_with`], as RapidSMS's
/// `respond(text, **kwargs)`.
#[derive(Debug, Clone, Default)]
pub struct Respond {
    /// Send to these connections instead of the sender.
    pub connections: Option<Vec<Connection>>,
    /// The id of the message answered; defaults to the current message.
    pub in_response_to: Option<String>,
    /// Fields of the response.
    pub fields: Vec<(String, String)>,
}

impl Respond {
    fn into_wit(self) -> incoming::RespondOptions {
        incoming::RespondOptions {
            connections: self.connections,
            in_response_to: self.in_response_to,
            fields: self.fields,
        }
    }
}

/// Which phases an `impl App` block defines, from its method names, as the
/// bits of the WIT `phases` flags (in declaration order).
#[doc(hidden)]
pub fn phase_bits_from_names(names: &[&str]) -> u8 {
    names.iter().fold(0, |acc, name| {
        acc | match *name {
            "filter" => 1,
            "parse" => 1 << 1,
            "handle" => 1 << 2,
            "default" => 1 << 3,
            "cleanup" => 1 << 4,
            "outgoing" => 1 << 5,
            _ => 0,
        }
    })
}
