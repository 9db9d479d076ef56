//! rapidwasm host library.
pub mod messages;
pub mod plugins;
pub mod router;
pub mod store;
