//! Conversions between the host's message types and the WIT types.

use super::bindings::imports::rapidwasm::messaging::types;
use crate::messages::{Connection, Contact, Fields, MessageBase};
use crate::store::check_name;

/// A WIT connection, checked like the store checks names.
pub(super) fn from_wit_connection(c: types::Connection) -> Result<Connection, types::HostError> {
    check_name("backend name", &c.backend)
        .and_then(|()| check_name("identity", &c.identity))
        .map_err(|e| types::HostError::InvalidArgument(e.to_string()))?;
    Ok(Connection { backend: c.backend, identity: c.identity })
}

pub(super) fn to_wit_connection(c: &Connection) -> types::Connection {
    types::Connection { backend: c.backend.clone(), identity: c.identity.clone() }
}

pub(super) fn to_wit_contact(c: &Contact) -> types::Contact {
    types::Contact { id: c.id.clone(), name: c.name.clone(), language: c.language.clone() }
}

/// WIT fields as a map; a later duplicate key wins.
pub(super) fn fields_from_wit(fields: types::Fields) -> Fields {
    fields.into_iter().collect()
}

pub(super) fn fields_to_wit(fields: &Fields) -> types::Fields {
    fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(super) fn to_wit_message(msg: &MessageBase) -> types::Message {
    types::Message {
        id: msg.id.clone(),
        text: msg.text.clone(),
        raw_text: msg.raw_text.clone(),
        connections: msg.connections.iter().map(to_wit_connection).collect(),
        fields: fields_to_wit(&msg.fields),
        in_response_to: msg.in_response_to.clone(),
        handled: msg.handled,
        processed: msg.processed,
    }
}
