//! The router: RapidSMS's `BlockingRouter`.
//!
//! An incoming message passes the phases `filter`, `parse`, `handle`,
//! `default` and `cleanup`, each over the apps in configured order:
//!
//! - `filter` returning true drops the message: nothing else runs, but
//!   responses already queued are still sent.
//! - `handle` returning true marks the message handled, skips the remaining
//!   apps' `handle` and the whole `default` phase.
//! - `default` returning true skips the remaining apps' `default`.
//! - `cleanup` runs for every message that was not filtered. (RapidSMS's code
//!   skips it after a handled message although its documentation says
//!   otherwise; we follow the documentation.)
//!
//! Then the queued responses are sent in the order they were queued, each
//! through the outgoing phase on its own: apps' `outgoing` in **reverse**
//! order, any returning false cancels that send. A message to several
//! connections is split per backend, and each backend is called once with all
//! of its identities.
//!
//! A failure inside an app (a trap, a timeout) never escapes the router: it
//! is logged with the app's name and phase and the app counts as having
//! returned nothing for that phase.
//!
//! The router sees apps and backends only through the [`App`] and
//! [`Backend`] traits; [`plugins`](crate::plugins) implements them with
//! WebAssembly components.

mod durable;
mod events;
mod inbound;
mod incoming;
mod outgoing;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use arc_swap::ArcSwap;

pub use self::durable::{DurableOptions, RetryPolicy, Submitted};
pub use self::events::{Observer, PhaseResult, RouterEvent};
pub use self::inbound::{InboundError, InboundRequest, InboundResponse};
use crate::messages::{Connection, Contact, Fields, IncomingMessage, OutgoingMessage, ResponseContext};
use crate::store::{Store, StoreError};

/// A boxed future, as the [`App`] and [`Backend`] traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A phase of RapidSMS's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// May drop the message.
    Filter,
    /// Annotates the message.
    Parse,
    /// Handles the message.
    Handle,
    /// Runs when nobody handled the message.
    Default,
    /// Runs for every message that was not filtered.
    Cleanup,
    /// Runs for every outgoing message; may cancel it.
    Outgoing,
}

impl Phase {
    /// The incoming phases, in order.
    pub const INCOMING: [Phase; 5] = [Phase::Filter, Phase::Parse, Phase::Handle, Phase::Default, Phase::Cleanup];

    /// The phase's name, as in RapidSMS.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Filter => "filter",
            Phase::Parse => "parse",
            Phase::Handle => "handle",
            Phase::Default => "default",
            Phase::Cleanup => "cleanup",
            Phase::Outgoing => "outgoing",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl Phase {
    /// Whether the phase's return value means something (parse and cleanup
    /// return nothing).
    pub fn returns_value(self) -> bool {
        !matches!(self, Phase::Parse | Phase::Cleanup)
    }
}

/// A set of phases: those an app takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseSet(u8);

impl PhaseSet {
    /// Every phase.
    pub const ALL: PhaseSet = PhaseSet(0b11_1111);

    /// The set with these phases.
    pub fn of(phases: &[Phase]) -> Self {
        PhaseSet(phases.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Whether `phase` is in the set.
    pub fn contains(self, phase: Phase) -> bool {
        self.0 & phase.bit() != 0
    }

    /// The set as bits, one per phase (for keeping it in an atomic).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set with these [`bits`](Self::bits); bits that name no phase
    /// are dropped.
    pub fn from_bits(bits: u8) -> Self {
        PhaseSet(bits & Self::ALL.0)
    }
}

/// What an app's incoming phase produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseOutcome {
    /// The phase's return value (always false for `parse` and `cleanup`).
    pub returned: bool,
    /// Responses the app queued, in order.
    pub responses: Vec<ResponseContext>,
    /// Fields the app set on the message, in order.
    pub fields: Vec<(String, String)>,
}

/// A failure inside a plugin: a trap, a timeout, a broken instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginFailure(pub String);

/// An app (RapidSMS's `AppBase`), as the router sees it.
pub trait App: Send + Sync {
    /// The app's configured name.
    fn name(&self) -> &str;
    /// The phases the app takes part in; the router calls no others.
    fn phases(&self) -> PhaseSet;
    /// Run incoming `phase` on `msg`. `depth` counts how deeply routing is
    /// nested inside plugins' calls to the router.
    fn incoming<'a>(
        &'a self,
        phase: Phase,
        msg: &'a IncomingMessage,
        depth: u32,
    ) -> BoxFuture<'a, Result<PhaseOutcome, PluginFailure>>;
    /// Run the outgoing phase on `msg`: false cancels the send.
    fn outgoing<'a>(&'a self, msg: &'a OutgoingMessage, depth: u32) -> BoxFuture<'a, Result<bool, PluginFailure>>;
}

/// A backend's report that a send failed (RapidSMS's `MessageSendingError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What went wrong.
    pub message: String,
    /// The identities that failed; empty means all of them.
    pub failed_identities: Vec<String>,
}

/// A backend (RapidSMS's `BackendBase`), as the router sees it.
pub trait Backend: Send + Sync {
    /// The backend's configured name.
    fn name(&self) -> &str;
    /// Send `msg` to `identities`, all on this backend; `context` is
    /// `msg.extra_backend_context()`.
    fn send<'a>(
        &'a self,
        msg: &'a OutgoingMessage,
        identities: &'a [String],
        context: &'a Fields,
        depth: u32,
    ) -> BoxFuture<'a, Result<(), SendError>>;

    /// Handle an inbound HTTP request a gateway sent to
    /// `/backends/<name>/...`. The default answers 404.
    fn handle_http(&self, request: InboundRequest) -> BoxFuture<'_, Result<InboundResponse, PluginFailure>> {
        let _ = request;
        inbound::not_accepted()
    }
}

/// Why the router refused a request.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Plugins routed messages from inside routing too deeply.
    #[error("messages routed from plugins are nested deeper than {0} levels")]
    TooDeep(u32),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The router has been shut down.
    #[error("the router has shut down")]
    Gone,
    /// The gateway delivered this message before; it was accepted as the
    /// message with this id.
    #[error("this message was received before, as message {0}")]
    Duplicate(String),
    /// The request needs the durable router (`router = "durable"`).
    #[error("this needs the durable router (set `router = \"durable\"` in the configuration)")]
    NotDurable,
    /// A message's text is longer than the tenant allows.
    #[error("the text is {len} bytes long; the limit is {limit} bytes")]
    TooLarge {
        /// The text's length in bytes.
        len: usize,
        /// The limit (`max_message_bytes`).
        limit: usize,
    },
}

/// Refuse a text longer than `limit` bytes.
pub fn check_text(text: &str, limit: usize) -> Result<(), RouterError> {
    if text.len() > limit {
        return Err(RouterError::TooLarge { len: text.len(), limit });
    }
    Ok(())
}

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// How deeply plugins may nest `receive`/`send` calls (a loop guard).
    pub max_depth: u32,
    /// Make the router durable (RapidSMS's `DatabaseRouter`) with this
    /// journal; `None` routes in process (RapidSMS's `BlockingRouter`).
    pub durable: Option<Durability>,
    /// Longest message text received or sent, in bytes.
    pub max_text_bytes: usize,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions { max_depth: 8, durable: None, max_text_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES }
    }
}

/// What makes a router durable: where it journals, and how it works.
#[derive(Debug, Clone)]
pub struct Durability {
    /// The journal of messages and transmissions.
    pub journal: crate::store::journal::Journal,
    /// Workers, concurrency and retries.
    pub options: DurableOptions,
}

/// The apps and backends a router calls: replaced whole when one is loaded
/// or unloaded, so a message routes on one consistent set.
struct Roster {
    apps: Vec<Arc<dyn App>>,
    backends: HashMap<String, Arc<dyn Backend>>,
}

struct RouterInner {
    /// Read by every message without waiting (as a plugin slot's version
    /// is); `changing` keeps two loads or unloads from losing each other's
    /// change.
    roster: ArcSwap<Roster>,
    changing: Mutex<()>,
    store: Arc<dyn Store>,
    observers: Vec<Arc<dyn Observer>>,
    options: RouterOptions,
    durable: OnceLock<durable::Durable>,
}

/// The router. Cheap to clone; clones share one router.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("apps", &self.app_names()).field("backends", &self.backend_names()).finish()
    }
}

/// A late-bound handle to a router, for plugins that call back into it.
///
/// Plugins are loaded before the router that owns them exists; they get a
/// `RouterLink`, and [`Router::new`] connects it. The link holds the router
/// weakly, so plugins do not keep their own router alive.
#[derive(Clone, Default)]
pub struct RouterLink {
    slot: Arc<OnceLock<Weak<RouterInner>>>,
}

impl RouterLink {
    /// An unconnected link.
    pub fn new() -> Self {
        Self::default()
    }

    /// The router, if connected and still alive.
    pub fn router(&self) -> Result<Router, RouterError> {
        let inner = self.slot.get().and_then(Weak::upgrade).ok_or(RouterError::Gone)?;
        Ok(Router { inner })
    }
}

impl Router {
    /// A router over `apps` (in phase order) and `backends`, connecting
    /// `link` so plugins holding it can call back.
    ///
    /// A durable router (`options.durable`) starts its routing workers and
    /// send lanes as Tokio tasks, so it must be built inside a Tokio runtime;
    /// call [`recover`](Self::recover) next to resume what a previous run left.
    pub fn new(
        apps: Vec<Arc<dyn App>>,
        backends: Vec<Arc<dyn Backend>>,
        store: Arc<dyn Store>,
        observers: Vec<Arc<dyn Observer>>,
        options: RouterOptions,
        link: &RouterLink,
    ) -> Self {
        let backends: HashMap<String, Arc<dyn Backend>> =
            backends.into_iter().map(|b| (b.name().to_owned(), b)).collect();
        let durability = options.durable.clone();
        let roster = ArcSwap::from_pointee(Roster { apps, backends: backends.clone() });
        let inner = Arc::new(RouterInner {
            roster,
            changing: Mutex::new(()),
            store,
            observers,
            options,
            durable: OnceLock::new(),
        });
        if let Some(Durability { journal, options }) = durability {
            let durable = durable::Durable::start(journal, options, &backends, &Arc::downgrade(&inner));
            let _ = inner.durable.set(durable);
        }
        // A link connects to the first router only; later routers built with
        // the same link are reachable through their own handle.
        let _ = link.slot.set(Arc::downgrade(&inner));
        Router { inner }
    }

    /// The apps and backends now.
    fn roster(&self) -> Arc<Roster> {
        self.inner.roster.load_full()
    }

    /// Change the roster with `change`, which sees the current one.
    fn change_roster<T>(&self, change: impl FnOnce(&mut Roster) -> T) -> T {
        let _one_at_a_time = crate::sync::lock(&self.inner.changing);
        let roster = self.inner.roster.load();
        let mut next = Roster { apps: roster.apps.clone(), backends: roster.backends.clone() };
        let result = change(&mut next);
        self.inner.roster.store(Arc::new(next));
        result
    }

    /// The apps' names, in phase order.
    pub fn app_names(&self) -> Vec<String> {
        self.roster().apps.iter().map(|a| a.name().to_owned()).collect()
    }

    /// The backends' names, sorted.
    pub fn backend_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.roster().backends.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Add `app` to the phases at `position` (0 is first; `None` or past
    /// the end: last). Messages already routing keep the apps they started
    /// with.
    pub fn add_app(&self, app: Arc<dyn App>, position: Option<usize>) {
        self.change_roster(|roster| {
            let at = position.unwrap_or(usize::MAX).min(roster.apps.len());
            roster.apps.insert(at, app);
        });
    }

    /// Take app `name` out of the phases; messages already routing finish
    /// with it. Returns whether there was one.
    pub fn remove_app(&self, name: &str) -> bool {
        self.change_roster(|roster| {
            let before = roster.apps.len();
            roster.apps.retain(|a| a.name() != name);
            roster.apps.len() != before
        })
    }

    /// Add `backend`. Under the durable router it gets a send lane, and
    /// what the outbox holds for a backend of its name (left by an earlier
    /// one, or a previous run) is sent through it.
    pub fn add_backend(&self, backend: Arc<dyn Backend>) {
        let name = backend.name().to_owned();
        self.change_roster(|roster| roster.backends.insert(name, backend.clone()));
        if let Some(durable) = self.durable() {
            durable.add_lane(backend, &Arc::downgrade(&self.inner));
        }
    }

    /// Take backend `name` away. New messages to it fail at once (under
    /// the durable router: dead letters to re-queue later); under the
    /// durable router its sends in flight are waited for, up to `within`,
    /// and what it still had queued stays in the outbox for a backend of
    /// the same name. Returns whether there was one.
    pub async fn remove_backend(&self, name: &str, within: std::time::Duration) -> bool {
        let removed = self.change_roster(|roster| roster.backends.remove(name)).is_some();
        if let Some(durable) = self.durable() {
            durable.remove_lane(name, within).await;
        }
        removed
    }

    /// Hand an inbound HTTP request to backend `backend`.
    pub async fn handle_http(&self, backend: &str, request: InboundRequest) -> Result<InboundResponse, InboundError> {
        let roster = self.roster();
        let found = roster.backends.get(backend).ok_or_else(|| InboundError::NoSuchBackend(backend.to_owned()))?;
        found
            .handle_http(request)
            .await
            .map_err(|failure| InboundError::Failed { backend: backend.to_owned(), failure })
    }

    /// The store behind the router.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// `rapidsms.router.receive`: route `text` from `connection` through
    /// every app and send the responses. Returns the processed message.
    ///
    /// Under the durable router the message is routed by its connection's
    /// worker; this waits for that, and returns once the message, its
    /// routing outcome and its queued (not yet sent) responses are on disk,
    /// written together. A message with an `external_id` field is stored
    /// before routing, so that a gateway's redelivery (same backend and
    /// `external_id`) is refused with [`RouterError::Duplicate`].
    pub async fn receive(
        &self,
        text: impl Into<String>,
        connection: Connection,
        fields: Fields,
    ) -> Result<IncomingMessage, RouterError> {
        match self.receive_submitted(text.into(), connection, fields).await? {
            Submitted::New(msg) => Ok(msg),
            Submitted::Duplicate(id) => Err(RouterError::Duplicate(id)),
        }
    }

    /// Route a message at once, in this task (the blocking router's way).
    async fn receive_now(
        &self,
        text: String,
        connection: Connection,
        fields: Fields,
        depth: u32,
    ) -> Result<IncomingMessage, RouterError> {
        self.check_depth(depth)?;
        check_text(&text, self.inner.options.max_text_bytes)?;
        self.lookup_connections(&connection.backend, std::slice::from_ref(&connection.identity))?;
        let mut msg = IncomingMessage::new(text, connection);
        msg.fields = fields;
        Ok(self.receive_incoming(msg, depth).await)
    }

    /// `rapidsms.router.send`: send `text` to `connections`. Returns the
    /// message after the outgoing phase and the backends have run.
    pub async fn send(
        &self,
        text: impl Into<String>,
        connections: Vec<Connection>,
        fields: Fields,
    ) -> Result<OutgoingMessage, RouterError> {
        self.send_at_depth(text.into(), connections, fields, 0).await
    }

    /// [`send`](Self::send) called from inside routing, `depth` levels deep.
    pub async fn send_at_depth(
        &self,
        text: String,
        connections: Vec<Connection>,
        fields: Fields,
        depth: u32,
    ) -> Result<OutgoingMessage, RouterError> {
        match self.send_keyed_at_depth(text, connections, fields, None, depth).await? {
            Submitted::New(msg) => Ok(msg),
            // Without a client key there are no duplicates.
            Submitted::Duplicate(_) => Err(RouterError::Gone),
        }
    }

    /// [`send`](Self::send) with a client's idempotency key: a key used
    /// before sends nothing and answers the earlier message's id. Keys need
    /// the durable router.
    pub async fn send_keyed(
        &self,
        text: String,
        connections: Vec<Connection>,
        fields: Fields,
        client_key: Option<String>,
    ) -> Result<Submitted<OutgoingMessage>, RouterError> {
        self.send_keyed_at_depth(text, connections, fields, client_key, 0).await
    }

    async fn send_keyed_at_depth(
        &self,
        text: String,
        connections: Vec<Connection>,
        fields: Fields,
        client_key: Option<String>,
        depth: u32,
    ) -> Result<Submitted<OutgoingMessage>, RouterError> {
        self.check_depth(depth)?;
        check_text(&text, self.inner.options.max_text_bytes)?;
        let mut msg = OutgoingMessage::new(text, connections);
        msg.fields = fields;
        if self.durable().is_none() {
            if client_key.is_some() {
                return Err(RouterError::NotDurable);
            }
            self.send_outgoing(&mut msg, depth).await;
            return Ok(Submitted::New(msg));
        }
        if !self.outgoing_phase(&mut msg, depth).await {
            return Ok(Submitted::New(msg));
        }
        Ok(match self.queue_durably(&msg, depth, client_key).await? {
            Submitted::New(()) => Submitted::New(msg),
            Submitted::Duplicate(earlier) => Submitted::Duplicate(earlier),
        })
    }

    /// `rapidsms.router.lookup_connections`: the connections for
    /// `identities` on `backend`, in order, created where missing.
    pub fn lookup_connections(&self, backend: &str, identities: &[String]) -> Result<Vec<Connection>, RouterError> {
        let records = self.inner.store.lookup_connections(backend, identities)?;
        Ok(records.into_iter().map(|r| r.connection).collect())
    }

    /// The contact linked to `connection`, if any.
    pub fn contact_of(&self, connection: &Connection) -> Result<Option<Contact>, RouterError> {
        let Some(record) = self.inner.store.connection(connection)? else {
            return Ok(None);
        };
        match record.contact_id {
            Some(id) => Ok(self.inner.store.contact(&id)?),
            None => Ok(None),
        }
    }

    /// Create a contact called `name` and link `connection` to it (the
    /// connection is created if missing), as RapidSMS's registration does.
    pub fn register_contact(
        &self,
        connection: &Connection,
        name: &str,
        language: &str,
    ) -> Result<Contact, RouterError> {
        self.inner.store.lookup_connections(&connection.backend, std::slice::from_ref(&connection.identity))?;
        let contact = self.inner.store.create_contact(name, language)?;
        self.inner.store.link_contact(connection, Some(&contact.id))?;
        Ok(contact)
    }

    fn check_depth(&self, depth: u32) -> Result<(), RouterError> {
        if depth > self.inner.options.max_depth {
            return Err(RouterError::TooDeep(self.inner.options.max_depth));
        }
        Ok(())
    }

    fn emit(&self, event: RouterEvent) {
        events::log(&event);
        for observer in &self.inner.observers {
            observer.event(&event);
        }
    }
}

impl OutgoingMessage {
    /// Send this message through `router` (RapidSMS's
    /// `OutgoingMessage.send()`: a new message with the same text and
    /// connections).
    pub async fn send(&self, router: &Router) -> Result<OutgoingMessage, RouterError> {
        router.send(self.text.clone(), self.connections.clone(), Fields::new()).await
    }
}
