//! The message tester page (RapidSMS's `httptester`): be a phone, type
//! messages, watch the replies arrive.
//!
//! The page talks to the configured tester backend (`builtin:tester`) at
//! `/backends/<name>/messages`: a `POST` routes a message from the chosen
//! number, a `GET` lists the conversation, which the page polls so replies
//! appear without reloading.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::Site;

const PAGE: &str = include_str!("tester.html");

pub(super) async fn page(State(site): State<Site>) -> Response {
    match &site.tester_backend {
        Some(backend) => Html(PAGE.replace("{{BACKEND}}", &super::page::escape(backend))).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(
                "<!doctype html><title>No message tester</title><h1>No message tester</h1>\
                 <p>Configure a backend with <code>plugin = \"builtin:tester\"</code> to use this page.</p>",
            ),
        )
            .into_response(),
    }
}
