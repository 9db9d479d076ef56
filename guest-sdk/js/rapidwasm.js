// rapidwasm for JavaScript apps: RapidSMS's AppBase on the host's WIT.
//
//   import { exportApp } from "./rapidwasm.js";
//   export const app = exportApp({
//     handle(msg) {
//       if (msg.text.trim().toLowerCase() !== "hello") return false;
//       msg.respond(`Hello, ${msg.connection.identity}!`);
//       return true;
//     },
//   });
//
// Build with componentize-js against the project's WIT (world
// `app-plugin`). Define only the phases you need (filter, parse, handle,
// default, cleanup, outgoing): the host never calls the others. An
// exception escaping a phase traps the instance; the host logs it, skips the
// app for that message and starts a fresh instance.

import * as incoming from "rapidwasm:messaging/incoming@0.1.0";
import * as logging from "rapidwasm:messaging/log@0.1.0";
import * as router from "rapidwasm:messaging/router@0.1.0";
import * as kv from "rapidwasm:messaging/storage@0.1.0";

const PHASES = ["filter", "parse", "handle", "default", "cleanup", "outgoing"];

function options(opts = {}) {
  return {
    connections: opts.connections,
    inResponseTo: opts.inResponseTo,
    fields: Object.entries(opts.fields ?? {}),
  };
}

/** A message as RapidSMS's MessageBase; incoming ones can be answered. */
class Message {
  constructor(raw) {
    this.id = raw.id;
    this.text = raw.text;
    this.rawText = raw.rawText;
    this.connections = raw.connections;
    this.fields = Object.fromEntries(raw.fields);
    this.inResponseTo = raw.inResponseTo;
    this.handled = raw.handled;
    this.processed = raw.processed;
  }

  /** The first connection, as RapidSMS's `msg.connection`. */
  get connection() {
    return this.connections[0];
  }

  /** Queue a response, sent after every phase has run. */
  respond(text, opts) {
    incoming.respond(text, options(opts));
  }

  /** Queue an error response (RapidSMS's ErrorMessage). */
  error(text, opts) {
    incoming.error(text, options(opts));
  }

  /** Set a field on the message, for later apps. */
  setField(key, value) {
    incoming.setField(key, value);
    this.fields[key] = value;
  }
}

/**
 * The object to export as `app` for an app made of phase methods, plus an
 * optional `configure(settings)` (settings is an object of strings; throw
 * to refuse them).
 */
export function exportApp(impl) {
  const phases = Object.fromEntries(PHASES.map((p) => [p, typeof impl[p] === "function"]));
  const call = (phase, raw) => impl[phase](new Message(raw));
  return {
    configure(settings) {
      if (typeof impl.configure === "function") {
        impl.configure(Object.fromEntries(settings));
      }
    },
    phases: () => phases,
    filter: (m) => Boolean(call("filter", m)),
    parse: (m) => void call("parse", m),
    handle: (m) => Boolean(call("handle", m)),
    default: (m) => Boolean(call("default", m)),
    cleanup: (m) => void call("cleanup", m),
    // No answer (undefined) lets the message go, as in RapidSMS.
    outgoing: (m) => call("outgoing", m) !== false,
  };
}

/**
 * RapidSMS's KeywordHandler rule: null when `text` does not start with the
 * keyword `pattern`, else the rest ("" for a bare keyword).
 */
export function keyword(pattern, text) {
  const match = new RegExp(`^\\s*(?:${pattern})(?:[\\s,;:]+([\\s\\S]+))?$`, "i").exec(text);
  return match ? (match[1] ?? "").trim() : null;
}

export const { receive, send, lookupConnections, contactOf, registerContact } = router;

/** Logging into the host's log. */
export const log = {
  debug: (message) => logging.log("debug", message),
  info: (message) => logging.log("info", message),
  warn: (message) => logging.log("warn", message),
  error: (message) => logging.log("error", message),
};

/** The app's private key/value store, with text values. */
export const storage = {
  get(key) {
    const value = kv.get(key);
    return value === undefined ? undefined : new TextDecoder().decode(value);
  },
  set: (key, value) => kv.set(key, new TextEncoder().encode(value)),
  delete: (key) => kv.delete(key),
};
