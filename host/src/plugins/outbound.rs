//! Outbound HTTP for backends: `wasi:http` limited to the hosts a
//! backend's configuration grants it (`allowed_hosts`). Apps have no
//! `wasi:http` at all: their linker does not define it.

use std::sync::Arc;

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// The destinations one backend may reach.
///
/// Each entry is `host` (any port), `host:port`, `*.domain` (any subdomain,
/// any port) or `*` (anywhere). Hosts compare case-insensitively; IPv6
/// addresses are written in brackets (`[::1]:8080`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Arc<[String]>);

impl AllowedHosts {
    /// No destination at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// The hosts in `entries`, or a message naming the first malformed one.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.trim().to_ascii_lowercase();
            let malformed = entry.is_empty()
                || entry.contains(['/', '?', '#', '@', ' '])
                || entry.contains("://")
                || (entry.contains('*') && entry != "*" && entry.strip_prefix("*.").is_none_or(|d| d.contains('*')));
            if malformed {
                return Err(format!("`{entry}` is not a host, host:port, *.domain or *"));
            }
            out.push(entry);
        }
        Ok(AllowedHosts(out.into()))
    }

    /// Whether `host` on `port` may be reached.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.0.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some(domain) = entry.strip_prefix("*.") {
                return host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1);
            }
            match split_port(entry) {
                (name, Some(p)) => name == host && p == port,
                (name, None) => name == host,
            }
        })
    }
}

/// `host:port` split; a bracketed IPv6 host keeps its brackets.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    let colon = match entry.rfind(':') {
        Some(i) if !entry[i..].contains(']') && (entry.starts_with('[') || entry[..i].find(':').is_none()) => i,
        _ => return (entry, None),
    };
    match entry[colon + 1..].parse() {
        Ok(port) => (&entry[..colon], Some(port)),
        Err(_) => (entry, None),
    }
}

/// The `wasi:http` hooks of one backend instance: refuses destinations
/// outside [`AllowedHosts`] and sends the rest with wasmtime's client.
pub(super) struct OutboundPolicy {
    pub plugin: Arc<str>,
    pub allowed: AllowedHosts,
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> ResponseFuture {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().to_owned();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allowed.allows(&host, port) {
            tracing::warn!(
                target: "rapidwasm::plugin",
                plugin = &*self.plugin,
                destination = %format!("{host}:{port}"),
                "refused an outbound request: the destination is not in the backend's allowed_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        tracing::debug!(target: "rapidwasm::plugin", plugin = &*self.plugin, uri = %uri, "outbound request");
        let _ = fut;
        if https {
            // TLS goes through wasmtime's own client, a connection each.
            return Box::new(async move {
                use http_body_util::BodyExt;
                let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
            });
        }
        Box::new(send_pooled(request, options))
    }
}

/// The process's client for plain HTTP: it keeps connections open per
/// destination and reuses them, instead of a TCP connection per request.
fn pooled_client() -> &'static PooledClient {
    static CLIENT: std::sync::OnceLock<PooledClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(30)));
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector)
    })
}

type PooledClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, WasiBody>;

/// Send a plain-HTTP request on a pooled connection, within the request's
/// first-byte timeout (600 s if the plugin sets none, as wasmtime's client).
async fn send_pooled(
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)> {
    use http_body_util::BodyExt;
    use wasmtime_wasi_http::Error;
    let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(std::time::Duration::from_secs(600));
    let response = match tokio::time::timeout(first_byte, pooled_client().request(request)).await {
        Err(_) => return Err(Error::ConnectionReadTimeout),
        Ok(Err(err)) if err.is_connect() => {
            return Err(Error::Connect(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, err.to_string())));
        }
        Ok(Err(err)) => {
            return Err(Error::Connect(std::io::Error::other(err.to_string())));
        }
        Ok(Ok(response)) => response,
    };
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    // The pool drives the connection itself.
    let io: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> = Box::new(async { Ok(()) });
    Ok((response, io))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn entries_match_hosts_and_ports() {
        let allowed = hosts(&["127.0.0.1:13013", "API.twilio.com", "*.vumi.org", "[::1]:8080"]);
        assert!(allowed.allows("127.0.0.1", 13013));
        assert!(!allowed.allows("127.0.0.1", 13014));
        assert!(allowed.allows("api.twilio.com", 443));
        assert!(allowed.allows("api.twilio.com", 8443));
        assert!(allowed.allows("go.vumi.org", 80));
        assert!(!allowed.allows("vumi.org", 80));
        assert!(!allowed.allows("evilvumi.org", 80));
        assert!(allowed.allows("[::1]", 8080));
        assert!(!allowed.allows("[::1]", 8081));
        assert!(!allowed.allows("example.com", 80));
        assert!(!AllowedHosts::none().allows("127.0.0.1", 80));
        assert!(hosts(&["*"]).allows("anything.example", 1));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["http://x", "x/y", "", "a*.b", "*.*.b", "user@host"] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
