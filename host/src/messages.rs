//! Messages: RapidSMS's `MessageBase`, `IncomingMessage`, `OutgoingMessage`
//! and `ErrorMessage`, plus the `Connection` and `Contact` they refer to.
//!
//! Messages are plain data. Routing them is the [`router`](crate::router)'s
//! job: an [`IncomingMessage`] collects the responses apps queue with
//! [`respond`](IncomingMessage::respond), and the router sends them once every
//! incoming phase has run.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Arbitrary metadata carried by a message (RapidSMS's `fields`).
pub type Fields = BTreeMap<String, String>;

/// One way to reach someone: a backend's name and the identity on it (a
/// phone number, an email address, ...). Identities are opaque: the host
/// never normalises them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Connection {
    /// The backend's name, as configured.
    pub backend: String,
    /// The identity on that backend.
    pub identity: String,
}

impl Connection {
    /// A connection to `identity` on `backend`.
    pub fn new(backend: impl Into<String>, identity: impl Into<String>) -> Self {
        Connection { backend: backend.into(), identity: identity.into() }
    }
}

impl std::fmt::Display for Connection {
    /// RapidSMS's `"<identity> via <backend>"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.identity, self.backend)
    }
}

/// A person or organisation, who may own several connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// A random id: 32 lowercase hex characters.
    pub id: String,
    /// The contact's name; empty for an anonymous contact.
    pub name: String,
    /// A language tag such as `en`; empty when unknown.
    pub language: String,
}

/// A fresh random message id: a uuid4 as 32 lowercase hex characters, as
/// RapidSMS's `MessageBase.generate_id()`.
pub fn generate_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What incoming and outgoing messages share (RapidSMS's `MessageBase`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBase {
    /// A unique id, see [`generate_id`].
    pub id: String,
    /// The text; apps may have changed it.
    pub text: String,
    /// The text as it arrived (or was first given).
    pub raw_text: String,
    /// Where the message came from or goes to.
    pub connections: Vec<Connection>,
    /// Arbitrary metadata.
    pub fields: Fields,
    /// The id of the message this one answers.
    pub in_response_to: Option<String>,
    /// An app's `handle` phase took the message.
    pub handled: bool,
    /// Every app's `outgoing` phase accepted the message.
    pub processed: bool,
}

impl MessageBase {
    /// A message with a fresh id.
    pub fn new(text: impl Into<String>, connections: Vec<Connection>) -> Self {
        let text = text.into();
        MessageBase {
            id: generate_id(),
            raw_text: text.clone(),
            text,
            connections,
            fields: Fields::new(),
            in_response_to: None,
            handled: false,
            processed: false,
        }
    }

    /// The first connection (RapidSMS's deprecated `connection`).
    pub fn connection(&self) -> Option<&Connection> {
        self.connections.first()
    }
}

/// Whether an outgoing message is an ordinary one or an `ErrorMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageClass {
    /// RapidSMS's `OutgoingMessage`.
    #[default]
    Outgoing,
    /// RapidSMS's `ErrorMessage`: a response reporting an error.
    Error,
}

/// Options of [`IncomingMessage::respond`], as RapidSMS's `**kwargs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RespondOptions {
    /// Send to these connections instead of the message's own.
    pub connections: Option<Vec<Connection>>,
    /// The id of the message answered; defaults to the incoming message.
    pub in_response_to: Option<String>,
    /// Fields of the response.
    pub fields: Fields,
}

/// A queued response: what RapidSMS's `respond` returns and keeps in
/// `responses`, the arguments the router will pass to `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseContext {
    /// The response's text.
    pub text: String,
    /// Where it goes.
    pub connections: Vec<Connection>,
    /// The id of the message it answers.
    pub in_response_to: Option<String>,
    /// The `external_id` field of the message it answers, for backends.
    pub external_id: Option<String>,
    /// The response's fields.
    pub fields: Fields,
    /// Ordinary response or `ErrorMessage`.
    pub class: MessageClass,
}

impl ResponseContext {
    /// The outgoing message this response becomes.
    pub fn to_outgoing(&self) -> OutgoingMessage {
        let mut msg = OutgoingMessage::with_class(self.text.clone(), self.connections.clone(), self.class);
        msg.base.in_response_to = self.in_response_to.clone();
        msg.base.fields = self.fields.clone();
        msg.external_id = self.external_id.clone();
        msg
    }
}

/// An inbound message (RapidSMS's `IncomingMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingMessage {
    /// The shared attributes.
    pub base: MessageBase,
    /// Responses queued by [`respond`](Self::respond), in order.
    pub responses: Vec<ResponseContext>,
    /// The responses as the router sent them, after routing finished.
    pub sent: Vec<OutgoingMessage>,
}

impl IncomingMessage {
    /// A message received from `connection`.
    pub fn new(text: impl Into<String>, connection: Connection) -> Self {
        IncomingMessage { base: MessageBase::new(text, vec![connection]), responses: Vec::new(), sent: Vec::new() }
    }

    /// Queue a response. It is sent after every incoming phase has run, in
    /// the order responses were queued. Returns the queued context.
    pub fn respond(&mut self, text: impl Into<String>, options: RespondOptions) -> &ResponseContext {
        self.queue(text.into(), options, MessageClass::Outgoing)
    }

    /// Queue an `ErrorMessage` response.
    pub fn error(&mut self, text: impl Into<String>, options: RespondOptions) -> &ResponseContext {
        self.queue(text.into(), options, MessageClass::Error)
    }

    fn queue(&mut self, text: String, options: RespondOptions, class: MessageClass) -> &ResponseContext {
        let context = self.response_context(text, options, class);
        self.responses.push(context);
        &self.responses[self.responses.len() - 1]
    }

    /// The context a response with these options would get, without queuing it.
    pub fn response_context(&self, text: String, options: RespondOptions, class: MessageClass) -> ResponseContext {
        self.reply_target().response(text, options, class)
    }

    /// Where responses to this message go by default.
    pub fn reply_target(&self) -> ReplyTarget {
        ReplyTarget {
            id: self.base.id.clone(),
            connections: self.base.connections.clone(),
            external_id: self.base.fields.get("external_id").cloned(),
        }
    }
}

/// What a response needs to know of the message it answers: its id, its
/// connections (the default recipients) and its `external_id` field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyTarget {
    /// The answered message's id.
    pub id: String,
    /// Where responses go unless told otherwise.
    pub connections: Vec<Connection>,
    /// The answered message's `external_id` field, for backends.
    pub external_id: Option<String>,
}

impl ReplyTarget {
    /// The context of a response with `text` and `options`
    /// (RapidSMS's `respond(text, **kwargs)`).
    pub fn response(&self, text: String, options: RespondOptions, class: MessageClass) -> ResponseContext {
        ResponseContext {
            text,
            connections: options.connections.unwrap_or_else(|| self.connections.clone()),
            in_response_to: Some(options.in_response_to.unwrap_or_else(|| self.id.clone())),
            external_id: self.external_id.clone(),
            fields: options.fields,
            class,
        }
    }
}

impl Deref for IncomingMessage {
    type Target = MessageBase;
    fn deref(&self) -> &MessageBase {
        &self.base
    }
}

impl DerefMut for IncomingMessage {
    fn deref_mut(&mut self) -> &mut MessageBase {
        &mut self.base
    }
}

/// An outbound message (RapidSMS's `OutgoingMessage`; an `ErrorMessage` when
/// its class is [`MessageClass::Error`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The shared attributes.
    pub base: MessageBase,
    /// Ordinary message or `ErrorMessage`.
    pub class: MessageClass,
    /// When the message was created (RapidSMS's `sent_at`).
    pub sent_at: SystemTime,
    /// The `external_id` field of the message this one answers.
    pub external_id: Option<String>,
}

impl OutgoingMessage {
    /// An ordinary outgoing message with a fresh id.
    pub fn new(text: impl Into<String>, connections: Vec<Connection>) -> Self {
        Self::with_class(text, connections, MessageClass::Outgoing)
    }

    fn with_class(text: impl Into<String>, connections: Vec<Connection>, class: MessageClass) -> Self {
        OutgoingMessage {
            base: MessageBase::new(text, connections),
            class,
            sent_at: SystemTime::now(),
            external_id: None,
        }
    }

    /// Whether this is an `ErrorMessage`.
    pub fn is_error(&self) -> bool {
        self.class == MessageClass::Error
    }

    /// Metadata for backends (RapidSMS's `extra_backend_context()`): for a
    /// response, `in_response_to` (the original's id) and, when the original
    /// had one, `external_id`.
    pub fn extra_backend_context(&self) -> Fields {
        let mut context = Fields::new();
        if let Some(original) = &self.base.in_response_to {
            context.insert("in_response_to".to_owned(), original.clone());
            if let Some(external_id) = &self.external_id {
                context.insert("external_id".to_owned(), external_id.clone());
            }
        }
        context
    }
}

impl Deref for OutgoingMessage {
    type Target = MessageBase;
    fn deref(&self) -> &MessageBase {
        &self.base
    }
}

impl DerefMut for OutgoingMessage {
    fn deref_mut(&mut self) -> &mut MessageBase {
        &mut self.base
    }
}

/// RapidSMS's `ErrorMessage`: an [`OutgoingMessage`] marked as reporting an
/// error.
pub struct ErrorMessage;

impl ErrorMessage {
    /// An outgoing message of class [`MessageClass::Error`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new(text: impl Into<String>, connections: Vec<Connection>) -> OutgoingMessage {
        OutgoingMessage::with_class(text, connections, MessageClass::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid4_hex() {
        let id = generate_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&id[12..13], "4", "uuid version 4");
        assert_ne!(generate_id(), id);
    }

    #[test]
    fn respond_defaults_to_sender_and_links_back() {
        let mut msg = IncomingMessage::new("hi", Connection::new("console", "1"));
        msg.fields.insert("external_id".into(), "ext-9".into());
        let ctx = msg.respond("hello", RespondOptions::default()).clone();
        assert_eq!(ctx.connections, vec![Connection::new("console", "1")]);
        assert_eq!(ctx.in_response_to.as_deref(), Some(msg.id.as_str()));
        let out = ctx.to_outgoing();
        let context = out.extra_backend_context();
        assert_eq!(context.get("in_response_to"), Some(&msg.id));
        assert_eq!(context.get("external_id").map(String::as_str), Some("ext-9"));
        assert!(out.fields.is_empty(), "fields of the original are not copied");
    }

    #[test]
    fn error_responses_are_error_messages() {
        let mut msg = IncomingMessage::new("?", Connection::new("console", "1"));
        msg.error("no", RespondOptions::default());
        assert!(msg.responses[0].to_outgoing().is_error());
        assert!(ErrorMessage::new("x", vec![]).is_error());
        assert!(OutgoingMessage::new("x", vec![]).extra_backend_context().is_empty());
    }
}
