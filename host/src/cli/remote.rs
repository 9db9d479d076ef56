//! One-shot commands sent to a running `rapidwasm serve` through its JSON
//! API, used when that server holds the data directory.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use rapidwasm::http::{ApiConnection, ErrorBody, ReceiveRequest, ReceiveResponse, SendRequest, SendResponse};
use rapidwasm::messages::Fields;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// POST `body` as JSON to the server at `listen` and decode its answer.
pub async fn post<B: Serialize, R: DeserializeOwned>(listen: SocketAddr, path: &str, body: &B) -> anyhow::Result<R> {
    post_as(listen, path, body, None).await
}

/// [`post`] with a bearer token.
pub async fn post_as<B: Serialize, R: DeserializeOwned>(
    listen: SocketAddr,
    path: &str,
    body: &B,
    token: Option<&str>,
) -> anyhow::Result<R> {
    // A swap compiles a component: give it time.
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300)).build()?;
    let url = format!("http://{listen}{path}");
    let mut request = client.post(&url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    call(request, &url).await
}

/// GET `path` from the server at `listen` and decode its answer.
pub async fn get<R: DeserializeOwned>(listen: SocketAddr, path: &str) -> anyhow::Result<R> {
    get_as(listen, path, None).await
}

/// [`get`] with a bearer token.
pub async fn get_as<R: DeserializeOwned>(listen: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<R> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let url = format!("http://{listen}{path}");
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    call(request, &url).await
}

/// DELETE `path` on the server at `listen` with a bearer token, and decode
/// its answer.
pub async fn delete_as<R: DeserializeOwned>(listen: SocketAddr, path: &str, token: &str) -> anyhow::Result<R> {
    // Unloading a backend waits for its sends in flight.
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(660)).build()?;
    let url = format!("http://{listen}{path}");
    call(client.delete(&url).bearer_auth(token), &url).await
}

async fn call<R: DeserializeOwned>(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<R> {
    let response = request
        .send()
        .await
        .with_context(|| format!("no rapidwasm server answers at {url} (is it running, or with another --listen?)"))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => bail!("the server refused the request ({status}, {}): {}", body.error.code, body.error.message),
            Err(_) => bail!("the server answered {status}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    serde_json::from_slice(&bytes).with_context(|| format!("unexpected answer from {url}"))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Receive through the server and print its responses.
pub async fn receive(
    listen: SocketAddr,
    text: &str,
    backend: &str,
    identity: &str,
    fields: Fields,
) -> anyhow::Result<()> {
    let request =
        ReceiveRequest { text: text.to_owned(), backend: backend.to_owned(), identity: identity.to_owned(), fields };
    let answer: ReceiveResponse = post(listen, "/api/v1/receive", &request).await?;
    println!(
        "received {text:?} from {identity} via {backend} [message {}] by the server at {listen}",
        short(&answer.message_id)
    );
    for response in &answer.responses {
        let to: Vec<String> =
            response.connections.iter().map(|c| format!("{} via {}", c.identity, c.backend)).collect();
        let outcome = if response.processed { "sent" } else { "cancelled" };
        println!("{outcome} {:?} to {} [message {}]", response.text, to.join(", "), short(&response.id));
    }
    Ok(())
}

/// Send through the server.
pub async fn send(listen: SocketAddr, text: &str, backend: &str, to: &[String], fields: Fields) -> anyhow::Result<()> {
    let connections =
        to.iter().map(|identity| ApiConnection { backend: backend.to_owned(), identity: identity.clone() }).collect();
    let request = SendRequest { text: text.to_owned(), connections, fields };
    let answer: SendResponse = post(listen, "/api/v1/send", &request).await?;
    let outcome = if answer.processed { "sent" } else { "cancelled" };
    println!(
        "{outcome} {text:?} to {} via {backend} [message {}] by the server at {listen}",
        to.join(", "),
        short(&answer.message_id)
    );
    Ok(())
}
