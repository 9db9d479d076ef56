//! # rapidwasm-guest: write RapidSMS apps and backends as Wasm components
//!
//! A rapidwasm plugin is a WebAssembly component that the host loads at run
//! time. This crate hides the component plumbing (`wit-bindgen`): an app is a
//! `Default` struct implementing [`App`] inside the [`app!`] macro, a backend
//! a struct implementing [`Backend`] exported with [`backend!`].
//!
//! ```ignore
//! use rapidwasm_guest::{App, IncomingMessage};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! rapidwasm_guest::app! {
//!     impl App for Hello {
//!         fn handle(&self, msg: &IncomingMessage) -> bool {
//!             if msg.text.trim().eq_ignore_ascii_case("hello") {
//!                 let _ = msg.respond("Hi there!");
//!                 return true;
//!             }
//!             false
//!         }
//!     }
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type
//! `cdylib`, this crate with the `app` or `backend` feature) and point the
//! host's configuration at the `.wasm` file.
//!
//! The phases you write in the `app!` block are the only ones the host ever
//! calls: a phase left out costs nothing. RapidSMS's keyword and pattern
//! handlers live in [`handlers`], and [`handlers_app!`] turns a list of them
//! into an app.

#![warn(missing_docs)]

mod app;
mod backend;
pub mod bindings;
pub mod handlers;
mod host;
pub mod http;
mod settings;

pub use app::{App, IncomingMessage, OutgoingMessage, Respond};
pub use backend::{Backend, SendError};
#[cfg(feature = "backend")]
pub use backend::{DeliveryStatus, report_delivery};
pub use handlers::{Handler, HandlerResult, Keyword, KeywordHandler, Pattern, PatternHandler};
pub use host::{
    Connection, Contact, Fields, HostError, Message, contact_of, log, lookup_connections, receive, register_contact,
    send, storage,
};
pub use http::{HttpRequest, HttpResponse};
pub use settings::Settings;

/// Implementation details of the export macros.
#[doc(hidden)]
pub mod __private {
    pub use crate::app::phase_bits_from_names;
}

/// Export an app: wrap the `impl App for YourType { ... }` block in it.
///
/// The macro notes which phase methods the block defines and tells the host,
/// so phases you leave out are never called. Needs the `app` feature.
#[macro_export]
macro_rules! app {
    (impl $($trait_:ident)::+ for $ty:ty { $($body:tt)* }) => {
        impl $($trait_)::+ for $ty { $($body)* }
        $crate::__export_app!($ty, $crate::__phase_names!([] $($body)*));
    };
}

/// Collect the names of the `fn`s of an impl block (not of nested items).
#[doc(hidden)]
#[macro_export]
macro_rules! __phase_names {
    ([$($acc:tt)*]) => { &[$($acc)*] };
    ([$($acc:tt)*] fn $name:ident $($rest:tt)*) => {
        $crate::__phase_names!([$($acc)* stringify!($name),] $($rest)*)
    };
    ([$($acc:tt)*] $other:tt $($rest:tt)*) => { $crate::__phase_names!([$($acc)*] $($rest)*) };
}

/// Turn handlers into an app whose `handle` phase offers each message to
/// them in order; the first that takes it wins (RapidSMS's handlers app).
///
/// ```ignore
/// rapidwasm_guest::handlers_app!(Keyword(EchoHandler), PingHandler);
/// ```
#[macro_export]
macro_rules! handlers_app {
    ($($handler:expr),+ $(,)?) => {
        mod __rapidwasm_handlers_app {
            #[allow(unused_imports)]
            use super::*;
            use $crate::App;

            #[derive(Default)]
            pub struct HandlersApp;

            $crate::app! {
                impl App for HandlersApp {
                    fn handle(&self, msg: &$crate::IncomingMessage) -> bool {
                        let handlers: &[&dyn $crate::Handler] = &[$(&$handler),+];
                        handlers.iter().any(|h| h.dispatch(msg))
                    }
                }
            }
        }
    };
}

#[cfg(feature = "app")]
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip] // rustfmt mis-indents the `with_types_in` invocation
macro_rules! __export_app {
    ($ty:ty, $names:expr) => {
        const _: () = {
            use $crate::bindings::app::exports::rapidwasm::messaging::app as wit_app;
            use $crate::bindings::imports::rapidwasm::messaging::types::Message;

            ::std::thread_local! {
                static APP: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    ::std::cell::RefCell::new(::std::option::Option::None);
            }

            fn with_app<R>(f: impl FnOnce(&$ty) -> R) -> R {
                APP.with(|cell| {
                    if cell.borrow().is_none() {
                        *cell.borrow_mut() = ::std::option::Option::Some(<$ty as ::std::default::Default>::default());
                    }
                    let app = cell.borrow();
                    match app.as_ref() {
                        ::std::option::Option::Some(app) => f(app),
                        ::std::option::Option::None => ::std::unreachable!("the app was just created"),
                    }
                })
            }

            struct Export;

            impl wit_app::Guest for Export {
                fn configure(
                    settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    let mut app = <$ty as ::std::default::Default>::default();
                    $crate::App::configure(&mut app, &$crate::Settings::new(settings))?;
                    APP.with(|cell| *cell.borrow_mut() = ::std::option::Option::Some(app));
                    ::std::result::Result::Ok(())
                }

                fn phases() -> wit_app::PhaseSet {
                    wit_app::PhaseSet::from_bits_truncate($crate::__private::phase_bits_from_names($names))
                }
                fn filter(message: Message) -> bool {
                    with_app(|app| $crate::App::filter(app, &$crate::IncomingMessage::new(message)))
                }
                fn parse(message: Message) {
                    with_app(|app| $crate::App::parse(app, &$crate::IncomingMessage::new(message)))
                }
                fn handle(message: Message) -> bool {
                    with_app(|app| $crate::App::handle(app, &$crate::IncomingMessage::new(message)))
                }
                fn default(message: Message) -> bool {
                    with_app(|app| $crate::App::default(app, &$crate::IncomingMessage::new(message)))
                }
                fn cleanup(message: Message) {
                    with_app(|app| $crate::App::cleanup(app, &$crate::IncomingMessage::new(message)))
                }
                fn outgoing(message: Message) -> bool {
                    with_app(|app| $crate::App::outgoing(app, &$crate::OutgoingMessage::new(message)))
                }
            }

            $crate::bindings::app::export_app_world!(Export with_types_in $crate::bindings::app);
        };
    };
}

#[cfg(not(feature = "app"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __export_app {
    ($($t:tt)*) => {
        ::std::compile_error!("exporting an app needs the `app` feature of rapidwasm-guest");
    };
}

/// Export a backend: `rapidwasm_guest::backend!(YourType);` where
/// `YourType: Backend`. Needs the `backend` feature.
#[cfg(feature = "backend")]
#[macro_export]
#[rustfmt::skip] // rustfmt mis-indents the `with_types_in` invocation
macro_rules! backend {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::backend::exports::rapidwasm::messaging::backend as wit_backend;
            use $crate::bindings::imports::rapidwasm::messaging::types::Message;

            ::std::thread_local! {
                static BACKEND: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    ::std::cell::RefCell::new(::std::option::Option::None);
            }

            /// Run `f` on the configured backend (a default one if the
            /// host never called `configure`).
            fn with_backend<R>(f: impl ::std::ops::FnOnce(&$ty) -> R) -> R {
                BACKEND.with(|cell| {
                    if cell.borrow().is_none() {
                        *cell.borrow_mut() = ::std::option::Option::Some(<$ty as ::std::default::Default>::default());
                    }
                    let backend = cell.borrow();
                    match backend.as_ref() {
                        ::std::option::Option::Some(backend) => f(backend),
                        ::std::option::Option::None => ::std::unreachable!("the backend was just created"),
                    }
                })
            }

            struct Export;

            impl wit_backend::Guest for Export {
                fn configure(
                    settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    let mut backend = <$ty as ::std::default::Default>::default();
                    $crate::Backend::configure(&mut backend, &$crate::Settings::new(settings))?;
                    BACKEND.with(|cell| *cell.borrow_mut() = ::std::option::Option::Some(backend));
                    ::std::result::Result::Ok(())
                }

                fn send(
                    message: Message,
                    identities: ::std::vec::Vec<::std::string::String>,
                    context: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), wit_backend::SendError> {
                    with_backend(|backend| {
                        $crate::Backend::send(backend, &message, &identities, &context).map_err(|e| {
                            wit_backend::SendError { message: e.message, failed_identities: e.failed_identities }
                        })
                    })
                }

                fn handle_http(request: wit_backend::HttpRequest) -> wit_backend::HttpResponse {
                    let request = $crate::HttpRequest::from_parts(
                        request.method, request.path, request.query, request.headers, request.body,
                    );
                    let response = with_backend(|backend| $crate::Backend::handle_http(backend, &request));
                    wit_backend::HttpResponse { status: response.status, headers: response.headers, body: response.body }
                }
            }

            $crate::bindings::backend::export_backend_world!(Export with_types_in $crate::bindings::backend);
        };
    };
}

/// Export a backend (needs the `backend` feature of rapidwasm-guest).
#[cfg(not(feature = "backend"))]
#[macro_export]
macro_rules! backend {
    ($($t:tt)*) => {
        ::std::compile_error!("exporting a backend needs the `backend` feature of rapidwasm-guest");
    };
}
