//! The Kannel backend, wire-compatible with RapidSMS's `KannelBackend`.
//!
//! **Inbound** (`GET /backends/<name>/`): what Kannel's smsbox sends with
//! `get-url = "http://HOST/backends/<name>/?id=%p&text=%a&charset=%C&coding=%c"`.
//! `id` and `text` are required (stripped; empty is refused with 400, as
//! RapidSMS does); the answer is 200 with an **empty body**, because Kannel
//! would send any body back to the phone as an SMS. Unlike RapidSMS, the
//! text is decoded with the `charset` Kannel names (UTF-8, UTF-16BE/UCS-2,
//! ISO-8859-1, WINDOWS-1252, US-ASCII), so non-ASCII text arrives intact.
//!
//! Add `&message_id=%I` to the get-url and smsbox's retries of one message
//! are recognised (it becomes the `external_id` field) and routed once.
//!
//! **Delivery reports** (`GET /backends/<name>/delivery-report/`): the
//! fields RapidSMS's `DeliveryReportView` requires, all of them; a valid
//! report is kept in the plugin's storage under `dlr/<message id>/...`,
//! reported to the host (1 → delivered, 2 and 16 → failed, 4 and 8 →
//! sent), which updates the transmission's status under the durable
//! router, and answered with 200 and an empty body, also when the id is
//! unknown (so Kannel does not retry).
//!
//! **Outbound**: `GET sendsms_url?<sendsms_params>&to=<identities, space-separated>&text=…&charset=…&coding=…`
//! (plus `dlr-mask=31&dlr-url=…` when `delivery_report_url` is set: then one
//! request per identity, whose report URL names it), with a timeout. Text goes as UTF-8; `coding` is 0 (GSM 7-bit) when every
//! character is in the GSM alphabet and 2 (UCS-2) otherwise, unless the
//! `coding` setting fixes it.
//!
//! Settings: `sendsms_url` (default `http://127.0.0.1:13013/cgi-bin/sendsms`),
//! `sendsms_params.*` (`username`, `password`, `from`, `smsc`, ...),
//! `charset` (`UTF-8`, the default, or `UTF-16BE`), `coding` (`auto`, the
//! default, `0` or `2`), `delivery_report_url` (this host's base URL, e.g.
//! `http://127.0.0.1:8080`), `timeout_ms` (default 10000).

mod charset;

use std::time::Duration;

use rapidwasm_guest::http::client::Request;
use rapidwasm_guest::http::{decode_form, decode_form_bytes, encode_form, encode_form_bytes};
use rapidwasm_guest::{
    Backend, Connection, DeliveryStatus, HttpRequest, HttpResponse, Message, SendError, Settings, log, receive,
    report_delivery, storage,
};

/// The status codes of a Kannel delivery report (`%d`).
const DLR_STATUSES: [&str; 5] = ["1", "2", "4", "8", "16"];

/// How the text of outgoing messages is coded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Coding {
    /// GSM 7-bit when the text fits the GSM alphabet, else UCS-2.
    #[default]
    Auto,
    /// Always `coding=0`.
    Gsm,
    /// Always `coding=2`.
    Ucs2,
}

/// The Kannel backend.
#[derive(Default)]
pub struct Kannel {
    name: String,
    sendsms_url: String,
    params: Vec<(String, String)>,
    utf16: bool,
    coding: Coding,
    delivery_report_url: Option<String>,
    timeout: Duration,
}

impl Backend for Kannel {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        self.name = settings.backend_name()?;
        self.sendsms_url = settings.get_or("sendsms_url", "http://127.0.0.1:13013/cgi-bin/sendsms").to_owned();
        self.params = settings.prefixed("sendsms_params.");
        self.utf16 = match settings.get_or("charset", "UTF-8").to_ascii_uppercase().as_str() {
            "UTF-8" | "UTF8" => false,
            "UTF-16BE" | "UCS-2" => true,
            other => return Err(format!("setting `charset` must be UTF-8 or UTF-16BE, not `{other}`")),
        };
        self.coding = match settings.get_or("coding", "auto") {
            "auto" => Coding::Auto,
            "0" => Coding::Gsm,
            "2" => Coding::Ucs2,
            other => return Err(format!("setting `coding` must be auto, 0 or 2, not `{other}`")),
        };
        self.delivery_report_url =
            settings.get("delivery_report_url").filter(|u| !u.is_empty()).map(|u| u.trim_end_matches('/').to_owned());
        self.timeout = Duration::from_millis(settings.get_u64("timeout_ms")?.unwrap_or(10_000));
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        // With delivery reports, one request per identity, so that each
        // report names the identity exactly as the host knows it.
        if self.delivery_report_url.is_some() {
            return SendError::for_each(identities, |identity| self.sendsms(message, &[identity.to_owned()]));
        }
        self.sendsms(message, identities).map_err(SendError::all)?;
        Ok(())
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        if request.method != "GET" {
            return HttpResponse::text(405, "Kannel sends GET requests").with_header("allow", "GET");
        }
        match request.path.as_str() {
            "/" => self.incoming(request),
            "/delivery-report" | "/delivery-report/" => delivery_report(request),
            _ => HttpResponse::text(404, "unknown path: use / for messages or /delivery-report/"),
        }
    }
}

impl Kannel {
    /// One sendsms request.
    fn sendsms(&self, message: &Message, identities: &[String]) -> Result<(), String> {
        let url = self.sendsms_request(message, identities);
        let response = Request::get(url).timeout(self.timeout).send().map_err(|e| e.to_string())?;
        // As RapidSMS: only 4xx and 5xx are failures (Kannel answers 202).
        if response.status >= 400 {
            return Err(format!("Kannel answered {}: {}", response.status, response.body_excerpt()));
        }
        log::debug(&format!(
            "Kannel accepted {} for {}: {}",
            message.id,
            identities.join(" "),
            response.body_excerpt()
        ));
        Ok(())
    }

    /// The sendsms URL for `message` to `identities`.
    fn sendsms_request(&self, message: &Message, identities: &[String]) -> String {
        let ucs2 = match self.coding {
            Coding::Auto => !charset::fits_gsm(&message.text),
            Coding::Gsm => false,
            Coding::Ucs2 => true,
        };
        let to = identities.join(" ");
        let mut query =
            encode_form(self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain([("to", to.as_str())]));
        let text = if self.utf16 { charset::encode_utf16be(&message.text) } else { message.text.as_bytes().to_vec() };
        query.push_str("&text=");
        query.push_str(&encode_form_bytes(&text));
        let dlr = self.delivery_report_url.as_ref().map(|base| {
            let ours = encode_form([("message_id", message.id.as_str()), ("identity", to.as_str())]);
            format!(
                "{base}/backends/{}/delivery-report/?{ours}&status=%d&status_text=%A&smsc=%i&sms_id=%I&date_sent=%t",
                self.name
            )
        });
        let charset = if self.utf16 { "UTF-16BE" } else { "UTF-8" };
        let coding = if ucs2 { "2" } else { "0" };
        let tail = encode_form(
            [("charset", charset), ("coding", coding)]
                .into_iter()
                .chain(dlr.as_deref().map(|url| [("dlr-mask", "31"), ("dlr-url", url)]).into_iter().flatten()),
        );
        let separator = if self.sendsms_url.contains('?') { '&' } else { '?' };
        format!("{}{separator}{query}&{tail}", self.sendsms_url)
    }

    /// A message from Kannel's smsbox.
    fn incoming(&self, request: &HttpRequest) -> HttpResponse {
        let pairs = decode_form_bytes(request.query.as_bytes());
        let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
        let Some(id) = value("id").map(|v| String::from_utf8_lossy(v).trim().to_owned()).filter(|v| !v.is_empty())
        else {
            return bad_request("`id` (the sender, Kannel's %p) is missing or empty");
        };
        let Some(raw) = value("text") else {
            return bad_request("`text` (Kannel's %a) is missing");
        };
        let charset = value("charset").map(|v| String::from_utf8_lossy(v).into_owned());
        let coding = value("coding").map(|v| String::from_utf8_lossy(v).into_owned());
        let text = match charset::decode(raw, charset.as_deref(), coding.as_deref()) {
            Ok(text) => text.trim().to_owned(),
            Err(why) => return bad_request(&why),
        };
        if text.is_empty() {
            return bad_request("`text` is empty");
        }
        let connection = Connection { backend: self.name.clone(), identity: id };
        // Kannel's own message id (`%I`), when the get-url passes it, lets
        // the host recognise smsbox's retries of the same message.
        let fields: Vec<(String, String)> = value("message_id")
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(|v| ("external_id".to_owned(), v))
            .into_iter()
            .collect();
        match receive(&text, &connection, &fields) {
            Ok(_) => HttpResponse::empty(200),
            Err(e) => {
                log::error(&format!("cannot route a message from {}: {e:?}", connection.identity));
                HttpResponse::text(500, format!("the message could not be routed: {e:?}"))
            }
        }
    }
}

/// A delivery report, checked as RapidSMS's `DeliveryReportForm` does.
fn delivery_report(request: &HttpRequest) -> HttpResponse {
    let pairs = decode_form(request.query.as_bytes());
    let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let mut fields = Vec::new();
    for (name, max) in [
        ("date_sent", 64),
        ("message_id", 255),
        ("identity", 100),
        ("sms_id", 36),
        ("smsc", 255),
        ("status", 2),
        ("status_text", 255),
    ] {
        match value(name) {
            Some(v) if v.chars().count() <= max => fields.push((name, v)),
            Some(_) => return bad_request(&format!("`{name}` is longer than {max} characters")),
            None => return bad_request(&format!("`{name}` is missing or empty")),
        }
    }
    let status = fields[5].1;
    if !DLR_STATUSES.contains(&status) {
        return bad_request("`status` must be one of 1, 2, 4, 8, 16");
    }
    let message_id = fields[1].1;
    let record = encode_form(fields.iter().copied());
    let key = format!("dlr/{message_id}/{:024}", now_nanos());
    if let Err(e) = storage::set(&key, record.as_bytes()) {
        log::error(&format!("cannot keep a delivery report for {message_id}: {e:?}"));
        return HttpResponse::text(500, "the delivery report could not be stored");
    }
    // 1 delivered, 2 failed, 4 buffered, 8 taken by the SMSC, 16 refused by it.
    let reported = match status {
        "1" => DeliveryStatus::Delivered,
        "2" | "16" => DeliveryStatus::Failed,
        _ => DeliveryStatus::Sent,
    };
    let identity = fields[2].1;
    let status_text = fields[6].1;
    match report_delivery(message_id, identity, reported, status_text) {
        Ok(true) => log::info(&format!("delivery report for {message_id} to {identity}: status {status}")),
        // The host has logged it; Kannel must not keep retrying.
        Ok(false) => {}
        Err(e) => {
            log::error(&format!("cannot record a delivery report for {message_id}: {e:?}"));
            return HttpResponse::text(500, "the delivery report could not be recorded");
        }
    }
    HttpResponse::empty(200)
}

fn bad_request(why: &str) -> HttpResponse {
    HttpResponse::text(400, format!("form failed to validate: {why}"))
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

rapidwasm_guest::backend!(Kannel);
