"""rapidwasm for Python apps: RapidSMS's AppBase, on the host's WIT.

Write an app the way RapidSMS does::

    import rapidwasm

    class Hello(rapidwasm.AppBase):
        def handle(self, msg):
            if msg.text.strip().lower() != "hello":
                return False
            msg.respond(f"Hello, {msg.connection.identity}!")
            return True

    App = rapidwasm.export(Hello)

and build it with componentize-py against the project's WIT (world
``app-plugin``). Define only the phases you need (``filter``, ``parse``,
``handle``, ``default``, ``cleanup``, ``outgoing``): the host never calls
the others. An exception escaping a phase traps the instance; the host
logs it, skips the app for that message and starts a fresh instance.
"""

import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import app as wit_app
from wit_world.imports import incoming as wit_incoming
from wit_world.imports import log as wit_log
from wit_world.imports import router as wit_router
from wit_world.imports import storage as wit_storage
from wit_world.imports import types

__all__ = [
    "AppBase", "Connection", "IncomingMessage", "OutgoingMessage", "export", "keyword",
    "receive", "send", "lookup_connections", "contact_of", "register_contact", "log", "storage",
]

Connection = types.Connection

_PHASES = {
    "filter": wit_app.PhaseSet.FILTER,
    "parse": wit_app.PhaseSet.PARSE,
    "handle": wit_app.PhaseSet.HANDLE,
    "default": wit_app.PhaseSet.DEFAULT,
    "cleanup": wit_app.PhaseSet.CLEANUP,
    "outgoing": wit_app.PhaseSet.OUTGOING,
}


class _Message:
    """What every message has (RapidSMS's MessageBase)."""

    def __init__(self, raw):
        self.id = raw.id
        self.text = raw.text
        self.raw_text = raw.raw_text
        self.connections = list(raw.connections)
        self.fields = dict(raw.fields)
        self.in_response_to = raw.in_response_to
        self.handled = raw.handled
        self.processed = raw.processed

    @property
    def connection(self):
        """The first connection, as RapidSMS's ``msg.connection``."""
        return self.connections[0] if self.connections else None


class IncomingMessage(_Message):
    """A message being routed; answer it with ``respond``."""

    def respond(self, text, connections=None, in_response_to=None, fields=None):
        """Queue a response, sent after every phase has run."""
        wit_incoming.respond(text, _options(connections, in_response_to, fields))

    def error(self, text, connections=None, in_response_to=None, fields=None):
        """Queue an error response (RapidSMS's ErrorMessage)."""
        wit_incoming.error(text, _options(connections, in_response_to, fields))

    def set_field(self, key, value):
        """Set a field on the message, for later apps."""
        wit_incoming.set_field(key, value)
        self.fields[key] = value


class OutgoingMessage(_Message):
    """A message about to be sent (the outgoing phase)."""


def _options(connections, in_response_to, fields):
    return wit_incoming.RespondOptions(
        connections=list(connections) if connections is not None else None,
        in_response_to=in_response_to,
        fields=list((fields or {}).items()),
    )


class AppBase:
    """RapidSMS's AppBase: override the phases you need."""

    def configure(self, settings):
        """Read settings (a dict of strings); raise ValueError to refuse them."""
        self.settings = settings


def export(cls):
    """The class componentize-py exports for the app class ``cls``: assign
    it to ``App`` in your app's module."""
    phases = wit_app.PhaseSet(0)
    for name, flag in _PHASES.items():
        if getattr(cls, name, None) is not getattr(AppBase, name, None):
            phases |= flag
    state = {}

    def instance():
        if "app" not in state:
            state["app"] = cls()
        return state["app"]

    class App(exports.App):
        def configure(self, settings):
            app = cls()
            try:
                app.configure(dict(settings))
            except ValueError as refused:
                raise Err(str(refused))
            state["app"] = app

        def phases(self):
            return phases

        def filter(self, message):
            return bool(instance().filter(IncomingMessage(message)))

        def parse(self, message):
            instance().parse(IncomingMessage(message))

        def handle(self, message):
            return bool(instance().handle(IncomingMessage(message)))

        def default(self, message):
            return bool(instance().default(IncomingMessage(message)))

        def cleanup(self, message):
            instance().cleanup(IncomingMessage(message))

        def outgoing(self, message):
            # None (no answer) lets the message go, as in RapidSMS.
            return instance().outgoing(OutgoingMessage(message)) is not False

    return App


def keyword(pattern, text):
    """RapidSMS's KeywordHandler rule: ``None`` when ``text`` does not start
    with the keyword ``pattern``, else the rest of the text ("" for a bare
    keyword, for which RapidSMS answers with help)."""
    match = re.match(r"^\s*(?:%s)(?:[\s,;:]+(.+))?$" % pattern, text, re.IGNORECASE | re.DOTALL)
    if match is None:
        return None
    return (match.group(1) or "").strip()


def receive(text, connection, fields=None):
    """rapidsms.router.receive; returns the new message's id."""
    return wit_router.receive(text, connection, list((fields or {}).items()))


def send(text, connections, fields=None):
    """rapidsms.router.send; returns the outgoing message's id."""
    return wit_router.send(text, list(connections), list((fields or {}).items()))


def lookup_connections(backend, identities):
    """rapidsms.router.lookup_connections (creates missing ones)."""
    return wit_router.lookup_connections(backend, list(identities))


def contact_of(connection):
    """The contact linked to ``connection``, or None."""
    return wit_router.contact_of(connection)


def register_contact(connection, name, language=""):
    """Create a contact called ``name`` and link ``connection`` to it."""
    return wit_router.register_contact(connection, name, language)


def _logger(level):
    return staticmethod(lambda message: wit_log.log(level, message))


class log:
    """Logging into the host's log: ``log.info("...")``."""

    debug = _logger(wit_log.Level.DEBUG)
    info = _logger(wit_log.Level.INFO)
    warn = _logger(wit_log.Level.WARN)
    error = _logger(wit_log.Level.ERROR)


class storage:
    """The app's private key/value store (bytes values)."""

    get = staticmethod(wit_storage.get)
    set = staticmethod(wit_storage.set)
    delete = staticmethod(wit_storage.delete)

    @staticmethod
    def scan(prefix, start_after=None, limit=100):
        return wit_storage.scan(prefix, start_after, limit)
