//! The landing page.

use axum::extract::State;
use axum::response::Html;

use super::Site;

/// Escape text for HTML.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("<li><code>{}</code></li>", escape(i))).collect()
}

pub(super) async fn landing(State(site): State<Site>) -> Html<String> {
    let (apps, backends) = match site.default_tenant() {
        Some(tenant) => (list(&tenant.router().app_names()), list(&tenant.router().backend_names())),
        None => (String::new(), String::new()),
    };
    let others = site.tenants.len().saturating_sub(1);
    let tenants = match others {
        0 => String::new(),
        n => format!(
            "<p>This host also serves {n} other tenant{s}, each under <code>/t/&lt;tenant&gt;/</code> with API keys of its own.</p>",
            s = if n == 1 { "" } else { "s" }
        ),
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>rapidwasm</title>
<style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body>
<h1>rapidwasm</h1>
<p>RapidSMS's messaging core as a WebAssembly plugin host.</p>
<h2>Apps, in phase order</h2><ol>{apps}</ol>
<h2>Backends</h2><ul>{backends}</ul>
{tenants}
<p><a href="/tester">Message tester</a> — be a phone and talk to the apps.</p>
<h2>JSON API</h2>
<ul>
<li><code>POST /api/v1/receive</code> — <code>{{"text", "backend", "identity", "fields"}}</code></li>
<li><code>POST /api/v1/send</code> — <code>{{"text", "connections": [{{"backend", "identity"}}], "fields"}}</code></li>
<li><code>GET /api/v1/connections?backend=B&amp;identity=I</code></li>
</ul>
<p>The full description: <a href="/api/v1/openapi.json">OpenAPI</a>, and the README's “HTTP API” section.</p>
<h2>Gateways</h2>
<p>Gateways send to <code>/backends/&lt;backend name&gt;/</code>: each backend's component reads its provider's format.</p>
</body></html>
"#,
    ))
}
