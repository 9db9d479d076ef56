//! A Twilio-style backend: signed webhooks in, REST sends out.
//!
//! **Inbound** (`POST /backends/<name>/`): Twilio's form-encoded webhook
//! (`From`, `To`, `Body`, `MessageSid`, `NumMedia`, ...). With `auth_token`
//! set, the `X-Twilio-Signature` header must be the Base64 HMAC-SHA1, keyed
//! with the token, of the webhook's full URL followed by every POST
//! parameter's name and value in name order; anything else gets 403. The
//! answer is an empty TwiML `<Response/>`, so Twilio sends nothing back by
//! itself. The message's fields are `external_id` (`MessageSid`), `to` and
//! `num_media`.
//!
//! **Status callbacks** (`POST /backends/<name>/status`): signed the same
//! way; kept in the plugin's storage under `status/<MessageSid>/...` and
//! reported to the host (`sent`; `delivered`/`read`; `undelivered`,
//! `failed`, `canceled`), named by the `message_id` and `identity` this
//! backend adds to the `StatusCallback` URL of each send.
//!
//! **Outbound**: one `POST {api_url}/Accounts/{account_sid}/Messages.json`
//! per identity, form-encoded `To`, `From`, `Body` and `StatusCallback`
//! (when `status_callback` is set), with HTTP Basic authentication
//! `account_sid:auth_token`.
//!
//! Settings: `account_sid`, `auth_token`, `from` (required for sending),
//! `api_url` (default `https://api.twilio.com/2010-04-01`),
//! `status_callback`, `webhook_url` (the public URL Twilio posts to, when a
//! proxy changes it; by default it is rebuilt from the request's `Host`
//! and `X-Forwarded-Proto` headers), `timeout_ms` (default 10000).

use std::time::Duration;

use hmac::{Hmac, Mac};
use rapidwasm_guest::http::client::Request;
use rapidwasm_guest::http::{base64_encode, encode_form, same_secret};
use rapidwasm_guest::{
    Backend, Connection, DeliveryStatus, HttpRequest, HttpResponse, Message, SendError, Settings, log, receive,
    report_delivery, storage,
};

/// The answer to a webhook: TwiML that sends nothing.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// The Twilio backend.
#[derive(Default)]
pub struct Twilio {
    name: String,
    account_sid: String,
    auth_token: Option<String>,
    from: String,
    api_url: String,
    status_callback: Option<String>,
    webhook_url: Option<String>,
    timeout: Duration,
}

impl Backend for Twilio {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        self.name = settings.backend_name()?;
        self.account_sid = settings.get_or("account_sid", "").to_owned();
        self.auth_token = settings.get("auth_token").filter(|t| !t.is_empty()).map(str::to_owned);
        self.from = settings.get_or("from", "").to_owned();
        self.api_url = settings.get_or("api_url", "https://api.twilio.com/2010-04-01").trim_end_matches('/').to_owned();
        self.status_callback = settings.get("status_callback").filter(|u| !u.is_empty()).map(str::to_owned);
        self.webhook_url = settings.get("webhook_url").filter(|u| !u.is_empty()).map(str::to_owned);
        self.timeout = Duration::from_millis(settings.get_u64("timeout_ms")?.unwrap_or(10_000));
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        let token = self.auth_token.as_deref().unwrap_or_default();
        if self.account_sid.is_empty() || token.is_empty() || self.from.is_empty() {
            return Err(SendError::all("sending needs the settings `account_sid`, `auth_token` and `from`"));
        }
        let url = format!("{}/Accounts/{}/Messages.json", self.api_url, self.account_sid);
        SendError::for_each(identities, |identity| {
            let mut form = vec![("To", identity), ("From", self.from.as_str()), ("Body", &message.text)];
            // The callback names the transmission, so its report matches
            // even if it comes before Twilio's answer to this request.
            let callback = self.status_callback.as_ref().map(|base| {
                let separator = if base.contains('?') { '&' } else { '?' };
                let ours = encode_form([("message_id", message.id.as_str()), ("identity", identity)]);
                format!("{base}{separator}{ours}")
            });
            if let Some(callback) = &callback {
                form.push(("StatusCallback", callback));
            }
            let request = Request::post(&url).timeout(self.timeout).basic_auth(&self.account_sid, token).form(form);
            request.send_ok().map(drop).map_err(|e| format!("Twilio {e}"))
        })
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        let status = match request.path.as_str() {
            "/" => false,
            "/status" | "/status/" => true,
            _ => return HttpResponse::text(404, "unknown path: use / for messages or /status for status callbacks"),
        };
        if request.method != "POST" {
            return HttpResponse::text(405, "Twilio sends POST requests").with_header("allow", "POST");
        }
        let params = request.form_pairs();
        if let Some(token) = &self.auth_token {
            let url = self.webhook_url(request);
            let valid = request
                .header("x-twilio-signature")
                .is_some_and(|given| same_secret(given.trim(), &signature(token, &url, &params)));
            if !valid {
                log::warn(&format!("refused a webhook with a missing or wrong X-Twilio-Signature for {url}"));
                return HttpResponse::text(403, "the X-Twilio-Signature header is missing or wrong");
            }
        }
        let value = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned());
        let Some(sid) = value("MessageSid").filter(|v| !v.is_empty()) else {
            return HttpResponse::text(400, "form failed to validate: `MessageSid` is required");
        };
        if status {
            let record = encode_form(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if let Err(e) = storage::set(&format!("status/{sid}/{:024}", now_nanos()), record.as_bytes()) {
                return HttpResponse::text(500, format!("the status could not be stored: {e:?}"));
            }
            return report_status(request, &value("MessageStatus").unwrap_or_default(), &value("ErrorCode"));
        }
        let Some(from) = value("From").filter(|v| !v.is_empty()) else {
            return HttpResponse::text(400, "form failed to validate: `From` is required");
        };
        let fields = vec![
            ("external_id".to_owned(), sid),
            ("to".to_owned(), value("To").unwrap_or_default()),
            ("num_media".to_owned(), value("NumMedia").unwrap_or_else(|| "0".to_owned())),
        ];
        let connection = Connection { backend: self.name.clone(), identity: from };
        match receive(&value("Body").unwrap_or_default(), &connection, &fields) {
            Ok(_) => HttpResponse::empty(200).with_header("content-type", "text/xml").with_body(EMPTY_TWIML),
            Err(e) => HttpResponse::text(500, format!("the message could not be routed: {e:?}")),
        }
    }
}

/// Pass a status callback on to the host: the transmission is named by the
/// `message_id` and `identity` this backend put in the callback's URL.
fn report_status(request: &HttpRequest, status: &str, error_code: &Option<String>) -> HttpResponse {
    let query = request.query_pairs();
    let ours = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (Some(message_id), Some(identity)) = (ours("message_id"), ours("identity")) else {
        log::warn("a status callback without message_id and identity in its URL; kept, not reported");
        return HttpResponse::empty(204);
    };
    let reported = match status {
        "sent" => DeliveryStatus::Sent,
        "delivered" | "read" => DeliveryStatus::Delivered,
        "undelivered" | "failed" | "canceled" => DeliveryStatus::Failed,
        // accepted, scheduled, queued, sending: nothing to record yet.
        _ => return HttpResponse::empty(204),
    };
    let detail = match error_code {
        Some(code) if !code.is_empty() => format!("Twilio {status}, error {code}"),
        _ => format!("Twilio {status}"),
    };
    match report_delivery(&message_id, &identity, reported, &detail) {
        Ok(_) => HttpResponse::empty(204),
        Err(e) => HttpResponse::text(500, format!("the status could not be recorded: {e:?}")),
    }
}

impl Twilio {
    /// The URL Twilio signed: configured, or rebuilt from the request.
    fn webhook_url(&self, request: &HttpRequest) -> String {
        let suffix = if request.path == "/" { "" } else { request.path.as_str() };
        let query = if request.query.is_empty() { String::new() } else { format!("?{}", request.query) };
        match &self.webhook_url {
            Some(base) => format!("{}{suffix}{query}", base.trim_end_matches('/')),
            None => {
                let scheme = request.header("x-forwarded-proto").unwrap_or("http");
                let host = request.header("host").unwrap_or("localhost");
                let slash = if suffix.is_empty() { "/" } else { "" };
                format!("{scheme}://{host}/backends/{}{slash}{suffix}{query}", self.name)
            }
        }
    }
}

/// Twilio's request signature: Base64(HMAC-SHA1(token, url + sorted name/value pairs)).
fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64_encode(&mac.finalize().into_bytes())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    /// The example from Twilio's security documentation.
    #[test]
    fn signature_matches_twilios_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            super::signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}

rapidwasm_guest::backend!(Twilio);
