//! The HTTP backends (kannel, vumi, http, twilio, tester, memory) as real
//! components: inbound requests in each provider's format over real HTTP,
//! outbound requests checked at a real listener on loopback.

use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::RouterEvent;
use rapidwasm_tests::gateway::{Gateway, form_pairs, query_pairs, value};
use rapidwasm_tests::{Served, TestHost, app, backend, twilio_signature};
use reqwest::StatusCode;

/// A host with the echo and default apps and `backends`, served on loopback.
async fn host(backends: &str) -> (TestHost, Served) {
    let body = format!("{}{}{backends}", app("echo", "echo", ""), app("default", "default", "default_response = \"\""));
    let t = TestHost::start(&body).await.expect("start");
    let served = t.serve().await;
    (t, served)
}

async fn get(url: &str) -> (StatusCode, String) {
    let response = reqwest::get(url).await.expect("request");
    (response.status(), response.text().await.expect("body"))
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
    let response =
        reqwest::Client::new().post(url).header("content-type", content_type).body(body).send().await.expect("request");
    (response.status(), response.text().await.expect("body"))
}

/// The failure reported for the last send on `backend`, if any.
fn last_send_failure(t: &TestHost, backend: &str) -> Option<String> {
    t.recorder.events().into_iter().rev().find_map(|e| match e {
        RouterEvent::Sent { backend: b, error, .. } if b == backend => Some(error.unwrap_or_default()),
        _ => None,
    })
}

fn kannel(gateway: &Gateway, extra: &str) -> String {
    backend(
        "kannel",
        "kannel",
        &[&gateway.host()],
        &format!(
            "sendsms_url = \"{}/cgi-bin/sendsms\", sendsms_params = {{ username = \"rapidsms\", password = \"s3cret\", \
             from = \"1234\", smsc = \"fake\" }}{extra}",
            gateway.url()
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_inbound_routes_and_the_reply_goes_to_sendsms() {
    let gateway = Gateway::start(202, "0: Accepted for delivery").await;
    let (t, s) = host(&kannel(&gateway, "")).await;

    // Exactly what smsbox sends for get-url "...?id=%p&text=%a&charset=%C&coding=%c".
    let (status, body) = get(&format!(
        "{}/backends/kannel/?id=%2B256700000001&text=echo+h%C3%A9llo+%D0%BC%D0%B8%D1%80&charset=UTF-8&coding=0",
        s.base
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""), "Kannel must get an empty body");

    let sent = gateway.requests();
    assert_eq!(sent.len(), 1);
    let request = &sent[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/cgi-bin/sendsms"));
    let query = query_pairs(request);
    assert_eq!(value(&query, "to"), Some("+256700000001"));
    assert_eq!(value(&query, "text"), Some("héllo мир"), "non-ASCII text arrives intact");
    assert_eq!(value(&query, "charset"), Some("UTF-8"));
    assert_eq!(value(&query, "coding"), Some("2"), "Cyrillic needs UCS-2");
    assert_eq!(value(&query, "username"), Some("rapidsms"));
    assert_eq!(value(&query, "password"), Some("s3cret"));
    assert_eq!(value(&query, "from"), Some("1234"));
    assert_eq!(value(&query, "smsc"), Some("fake"));
    assert_eq!(value(&query, "dlr-mask"), None, "no delivery reports unless configured");
    assert_eq!(last_send_failure(&t, "kannel"), Some(String::new()));

    // GSM-only text goes as 7-bit.
    let (status, _) = get(&format!("{}/backends/kannel/?id=5&text=echo+%40home+%C2%A35&charset=UTF-8", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    let query = query_pairs(&gateway.requests()[1]);
    assert_eq!((value(&query, "text"), value(&query, "coding")), (Some("@home £5"), Some("0")));
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_decodes_ucs2_and_refuses_malformed_requests() {
    let gateway = Gateway::start(202, "0: Accepted for delivery").await;
    let (_t, s) = host(&kannel(&gateway, "")).await;
    let url = format!("{}/backends/kannel/", s.base);

    // A UCS-2 message as smsbox forwards it: UTF-16BE bytes, charset UTF-16BE.
    let utf16: Vec<u8> = "echo Привет 👍".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let text: String = form_urlencoded::byte_serialize(&utf16).collect();
    let (status, _) = get(&format!("{url}?id=77&text={text}&charset=UTF-16BE&coding=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value(&query_pairs(&gateway.requests()[0]), "text"), Some("Привет 👍"));

    for (query, problem) in [
        ("text=hi", "`id`"),
        ("id=1&text=+++", "`text` is empty"),
        ("id=1", "`text`"),
        ("id=1&text=%FF%FE", "not valid UTF-8"),
        ("id=1&text=hi&charset=KOI8-R", "unsupported charset"),
    ] {
        let (status, body) = get(&format!("{url}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body.starts_with("form failed to validate") && body.contains(problem), "{query}: {body}");
    }
    let (status, _) = post(&url, "text/plain", "id=1&text=hi").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Bodies over the host's limit never reach the component.
    let (status, body) = post(&url, "text/plain", vec![b'x'; 65 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("payload_too_large"), "{body}");
    let (status, body) = get(&format!("{}/backends/nope/?id=1&text=hi", s.base)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no backend is named `nope`"), "{body}");
    assert_eq!(gateway.requests().len(), 1, "nothing malformed was routed");
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_delivery_reports_are_requested_and_kept() {
    let gateway = Gateway::start(202, "0: Accepted for delivery").await;
    let (t, s) = host(&kannel(&gateway, ", delivery_report_url = \"http://127.0.0.1:8080/\"")).await;

    let (status, _) = get(&format!("{}/backends/kannel/?id=9&text=echo+hi", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    let query = query_pairs(&gateway.requests()[0]);
    assert_eq!(value(&query, "dlr-mask"), Some("31"));
    let dlr_url = value(&query, "dlr-url").expect("a dlr-url");
    let message_id = t.recorder.sent_ids().into_iter().next().expect("a send");
    assert_eq!(
        dlr_url,
        format!(
            "http://127.0.0.1:8080/backends/kannel/delivery-report/?message_id={message_id}&identity=9&status=%d\
             &status_text=%A&smsc=%i&sms_id=%I&date_sent=%t"
        )
    );

    // Kannel fills the placeholders and calls back.
    let report = dlr_url
        .replace("http://127.0.0.1:8080", &s.base)
        .replace("%d", "1")
        .replace("%A", "Delivered")
        .replace("%i", "fake")
        .replace("%I", "c0ffee00-0000-4000-8000-000000000001")
        .replace("%t", "2026-11-26+22%3A10");
    assert_eq!(get(&report).await, (StatusCode::OK, String::new()));
    let kept = t.host.store().plugin_scan("kannel", &format!("dlr/{message_id}/"), None, 10).expect("scan");
    assert_eq!(kept.len(), 1);
    assert!(String::from_utf8_lossy(&kept[0].1).contains("status=1&status_text=Delivered"));

    let (status, body) = get(&report.replace("status=1", "status=3")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = get(&report.replace("&status_text=Delivered", "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_outside_allowed_hosts_are_refused() {
    let gateway = Gateway::start(202, "0: Accepted for delivery").await;
    // Allowed: another port on the same host only.
    let other = format!("127.0.0.1:{}", gateway.addr.port().wrapping_add(1));
    let settings = format!("sendsms_url = \"{}/cgi-bin/sendsms\"", gateway.url());
    let (t, s) = host(&backend("kannel", "kannel", &[&other], &settings)).await;

    let (status, _) = get(&format!("{}/backends/kannel/?id=1&text=echo+hi", s.base)).await;
    assert_eq!(status, StatusCode::OK, "the inbound message is still accepted");
    assert!(gateway.requests().is_empty(), "the request never left the host");
    let failure = last_send_failure(&t, "kannel").expect("a send was attempted");
    assert!(failure.contains("not in allowed_hosts"), "{failure}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kannel_reports_gateway_errors() {
    let gateway = Gateway::start(403, "Authorization failed for sendsms").await;
    let (t, s) = host(&kannel(&gateway, ", timeout_ms = 2000")).await;
    let (status, _) = get(&format!("{}/backends/kannel/?id=1&text=echo+hi", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    let failure = last_send_failure(&t, "kannel").expect("a send");
    assert!(failure.contains("Kannel answered 403: Authorization failed"), "{failure}");
}

/// The message from RapidSMS's own Vumi tests.
const VUMI_MESSAGE: &str = r#"{"transport_name":"transport","in_reply_to":null,"group":null,"from_addr":"127.0.0.1:38634",
 "message_type":"user_message","helper_metadata":{},"to_addr":"0.0.0.0:8005","content":"echo ping",
 "message_version":"20110921","transport_type":"telnet","timestamp":"2012-07-06 14:08:20.845715",
 "transport_metadata":{},"session_event":"resume","message_id":"56047985ceec40da908ca064f2fd59d3"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn vumi_inbound_and_reply_in_vumis_json() {
    let gateway = Gateway::start(200, "[]").await;
    let settings = format!(
        "sendsms_url = \"{}/send/\", sendsms_user = \"rapid\", sendsms_pass = \"pw\", \
         sendsms_params = {{ transport_name = \"transport\" }}",
        gateway.url()
    );
    let (t, s) = host(&backend("vumi", "vumi", &[&gateway.host()], &settings)).await;
    let url = format!("{}/backends/vumi/", s.base);

    assert_eq!(post(&url, "application/json", VUMI_MESSAGE).await, (StatusCode::OK, String::new()));
    let incoming = t
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            RouterEvent::Received { message_id, connection, .. } => Some((message_id, connection)),
            _ => None,
        })
        .expect("received");
    assert_eq!(incoming.1.identity, "127.0.0.1:38634");

    let sent = gateway.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].method.as_str(), sent[0].path.as_str()), ("POST", "/send/"));
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(sent[0].header("authorization"), Some("Basic cmFwaWQ6cHc="));
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).expect("JSON");
    assert_eq!(body["content"], "ping");
    assert_eq!(body["to_addr"], serde_json::json!(["127.0.0.1:38634"]));
    assert_eq!(body["in_reply_to"], "56047985ceec40da908ca064f2fd59d3", "replies name the original");
    assert_eq!(body["session_event"], serde_json::Value::Null);
    assert_eq!(body["transport_name"], "transport");
    assert_eq!(body["metadata"]["rapidsms_msg_id"].as_str().map(str::len), Some(32));
}

#[tokio::test(flavor = "multi_thread")]
async fn vumi_refuses_malformed_and_unauthenticated_messages() {
    let settings = "sendsms_url = \"http://127.0.0.1:9/\", inbound_user = \"vumi\", inbound_pass = \"pw\"";
    let (_t, s) = host(&backend("vumi", "vumi", &[], settings)).await;
    let url = format!("{}/backends/vumi/", s.base);
    let client = reqwest::Client::new();
    let send = |body: &'static str, auth: bool| {
        let mut request = client.post(&url).body(body);
        if auth {
            request = request.basic_auth("vumi", Some("pw"));
        }
        request.send()
    };
    assert_eq!(send(VUMI_MESSAGE, false).await.expect("request").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send(VUMI_MESSAGE, true).await.expect("request").status(), StatusCode::OK);
    for (body, problem) in [
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        (r#"{"message_id":"1","to_addr":"a","from_addr":"b","transport_type":"sms"}"#, "`transport_name` is required"),
    ] {
        let response = send(body, true).await.expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = response.text().await.expect("body");
        assert!(text.contains(problem), "{body}: {text}");
    }
    let response = client.get(&url).basic_auth("vumi", Some("pw")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_http_inbound_and_outbound_templates() {
    let gateway = Gateway::start(200, "queued").await;
    let settings = format!(
        "identity_name = \"from\", text_name = \"msg\", outbound_url = \"{}/out?to={{identity}}&body={{text}}&ref={{id}}\"",
        gateway.url()
    );
    let (_t, s) = host(&backend("http", "http", &[&gateway.host()], &settings)).await;
    let url = format!("{}/backends/http/", s.base);

    assert_eq!(get(&format!("{url}?from=1112223333&msg=echo+hello")).await, (StatusCode::OK, "OK".to_owned()));
    assert_eq!(
        post(&url, "application/x-www-form-urlencoded", "from=1112223333&msg=echo+%C3%BCber").await,
        (StatusCode::OK, "OK".to_owned())
    );
    let sent = gateway.requests();
    assert_eq!(sent.len(), 2);
    let peers = gateway.peers();
    assert_eq!(peers[0], peers[1], "the second reply reused the first one's connection");
    let first = query_pairs(&sent[0]);
    assert_eq!((value(&first, "to"), value(&first, "body")), (Some("1112223333"), Some("hello")));
    assert_eq!(value(&first, "ref").map(str::len), Some(32));
    assert_eq!(value(&query_pairs(&sent[1]), "body"), Some("über"));

    let (status, body) = get(&format!("{url}?identity=1&text=hi")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "renamed fields are required");
    assert!(body.contains("`from` and `msg` are required"), "{body}");
    let (status, _) = get(&format!("{url}?from=1&msg=++")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "text is stripped, as Django does");
    let response = reqwest::Client::new().put(&url).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_http_posts_with_a_body_template() {
    let gateway = Gateway::start(201, "").await;
    let settings = format!(
        "outbound_url = \"{}/messages\", outbound_method = \"POST\", \
         outbound_body = \"{{\\\"to\\\": \\\"{{identity}}\\\", \\\"text\\\": \\\"{{text}}\\\"}}\", \
         outbound_content_type = \"application/json\"",
        gateway.url()
    );
    let (t, s) = host(&backend("http", "http", &[&gateway.host()], &settings)).await;
    let (status, _) = get(&format!("{}/backends/http/?identity=42&text=echo+%22yo%22+there", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    let sent = gateway.requests();
    assert_eq!((sent[0].method.as_str(), sent[0].path.as_str()), ("POST", "/messages"));
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(String::from_utf8_lossy(&sent[0].body), r#"{"to": "42", "text": "\"yo\" there"}"#, "JSON-escaped");
    assert_eq!(last_send_failure(&t, "http"), Some(String::new()));
}

#[tokio::test(flavor = "multi_thread")]
async fn twilio_checks_signatures_and_sends_through_the_rest_api() {
    let gateway = Gateway::start(201, r#"{"sid": "SM1"}"#).await;
    let settings = format!(
        "account_sid = \"AC123\", auth_token = \"tok\", from = \"+15005550006\", api_url = \"{}/2010-04-01\", \
         status_callback = \"https://example.org/backends/twilio/status\"",
        gateway.url()
    );
    let (t, s) = host(&backend("twilio", "twilio", &[&gateway.host()], &settings)).await;
    let url = format!("{}/backends/twilio/", s.base);
    let params = [
        ("From", "+15551230000"),
        ("To", "+15005550006"),
        ("Body", "echo ça va"),
        ("MessageSid", "SM0123456789abcdef"),
        ("NumMedia", "0"),
    ];
    let form: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let client = reqwest::Client::new();
    let webhook = |signature: Option<String>, body: String| {
        let mut request = client.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(signature) = signature {
            request = request.header("x-twilio-signature", signature);
        }
        request.send()
    };

    assert_eq!(webhook(None, form.clone()).await.expect("request").status(), StatusCode::FORBIDDEN);
    let wrong = twilio_signature("other-token", &url, &params);
    assert_eq!(webhook(Some(wrong), form.clone()).await.expect("request").status(), StatusCode::FORBIDDEN);
    let forged = form.replace("echo+%C3%A7a+va", "echo+pwned");
    let signed = twilio_signature("tok", &url, &params);
    assert_eq!(webhook(Some(signed.clone()), forged).await.expect("request").status(), StatusCode::FORBIDDEN);
    assert!(gateway.requests().is_empty(), "nothing unsigned was routed");

    let response = webhook(Some(signed), form).await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/xml");
    assert!(response.text().await.expect("body").contains("<Response></Response>"));

    let sent = gateway.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].method.as_str(), sent[0].path.as_str()), ("POST", "/2010-04-01/Accounts/AC123/Messages.json"));
    assert_eq!(sent[0].header("authorization"), Some("Basic QUMxMjM6dG9r"));
    let form = form_pairs(&sent[0]);
    assert_eq!(value(&form, "To"), Some("+15551230000"));
    assert_eq!(value(&form, "From"), Some("+15005550006"));
    assert_eq!(value(&form, "Body"), Some("ça va"));
    let callback = value(&form, "StatusCallback").expect("a status callback");
    assert!(callback.starts_with("https://example.org/backends/twilio/status?message_id="), "{callback}");
    assert!(callback.ends_with("&identity=%2B15551230000"), "the transmission is named: {callback}");

    // A signed status callback is kept.
    let status_url = format!("{url}status");
    let params = [("MessageSid", "SM1"), ("MessageStatus", "delivered")];
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let response = client
        .post(&status_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", twilio_signature("tok", &status_url, &params))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let kept = t.host.store().plugin_scan("twilio", "status/SM1/", None, 10).expect("scan");
    assert!(String::from_utf8_lossy(&kept[0].1).contains("MessageStatus=delivered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tester_keeps_both_sides_of_a_conversation() {
    let (_t, s) = host(&backend("message_tester", "tester", &[], "")).await;
    let url = format!("{}/backends/message_tester/messages", s.base);
    let client = reqwest::Client::new();
    let response = client.post(&url).json(&serde_json::json!({"identity": "5551234", "text": "echo hi there"})).send();
    assert_eq!(response.await.expect("request").status(), StatusCode::OK);
    let response = client.post(&url).form(&[("identity", "5551234"), ("text", "echo form")]).send();
    assert_eq!(response.await.expect("request").status(), StatusCode::OK);

    let list: Vec<serde_json::Value> =
        client.get(format!("{url}?identity=5551234")).send().await.expect("request").json().await.expect("JSON");
    let shown: Vec<(String, String)> = list
        .iter()
        .map(|m| (m["direction"].as_str().unwrap_or("").to_owned(), m["text"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected = [("in", "echo hi there"), ("out", "hi there"), ("in", "echo form"), ("out", "form")];
    assert_eq!(shown, expected.map(|(d, t)| (d.to_owned(), t.to_owned())));

    let after = list[1]["key"].as_str().expect("key");
    let rest: Vec<serde_json::Value> = client
        .get(format!("{url}?identity=5551234&after={after}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(rest.len(), 2);

    let bad = client.post(&url).json(&serde_json::json!({"identity": "12ab", "text": "x"})).send().await;
    assert_eq!(bad.expect("request").status(), StatusCode::BAD_REQUEST);
    let cleared = client.delete(format!("{url}?identity=5551234")).send().await.expect("request");
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    let list: Vec<serde_json::Value> =
        client.get(format!("{url}?identity=5551234")).send().await.expect("request").json().await.expect("JSON");
    assert!(list.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_keeps_the_last_sends_in_memory_and_writes_nothing() {
    let mem = format!("{}max_instances = 1\n", backend("mem", "memory", &[], "keep = \"2\""));
    let (t, s) = host(&mem).await;
    for text in ["one", "two", "three"] {
        let msg = t.host.router().receive(format!("echo {text}"), Connection::new("mem", "555"), Fields::new()).await;
        assert_eq!(msg.expect("routed").sent.len(), 1);
    }
    let url = format!("{}/backends/mem/messages", s.base);
    let (status, body) = get(&url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(seen["sent"], 3);
    let kept: Vec<(&str, &str)> = seen["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .map(|m| (m["identities"][0].as_str().unwrap_or(""), m["text"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(kept, [("555", "two"), ("555", "three")]);
    assert!(t.host.store().plugin_scan("mem", "", None, 10).expect("scan").is_empty());

    let (status, _) = post(&url, "application/json", "{}").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let refused = TestHost::start(&backend("mem", "memory", &[], "keep = \"lots\"")).await.err().expect("refused");
    assert!(format!("{refused:#}").contains("keep must be a whole number, not \"lots\""), "{refused:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backends_without_inbound_answer_404() {
    let (_t, s) = host(&rapidwasm_tests::console("console", "")).await;
    let (status, body) = get(&format!("{}/backends/console/", s.base)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("takes no inbound HTTP requests"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_traps_or_loops_gets_a_precise_error_and_the_host_stays_up() {
    let body = format!(
        "[limits]\nbackend_call_timeout_ms = 300\n{}{}",
        app("echo", "echo", ""),
        backend("probe", "probe-backend", &[], "")
    );
    let t = TestHost::start(&body).await.expect("start");
    let s = t.serve().await;
    let url = format!("{}/backends/probe", s.base);

    let (status, body) = get(&format!("{url}/trap")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("backend_failed") && body.contains("wasm trap"), "{body}");

    let started = std::time::Instant::now();
    let (status, body) = get(&format!("{url}/loop")).await;
    assert!(status == StatusCode::INTERNAL_SERVER_ERROR || status == StatusCode::GATEWAY_TIMEOUT, "{status}");
    assert!(body.contains("timed out") || body.contains("did not answer within 300 ms"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // The backend's own answer passes through, headers included; a status
    // outside 100-599 becomes 500.
    let response = reqwest::get(format!("{url}/status/418")).await.expect("request");
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers()["x-probe"], "yes");
    let (status, _) = get(&format!("{url}/status/1000")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    // Still serving, and a send that traps is reported, not fatal.
    assert_eq!(get(&format!("{url}/")).await, (StatusCode::OK, "ok".to_owned()));
    let sent = t
        .host
        .router()
        .send("trap", vec![rapidwasm::messages::Connection::new("probe", "1")], Default::default())
        .await
        .expect("send");
    assert!(!sent.base.id.is_empty());
    let failure = last_send_failure(&t, "probe").expect("a send");
    assert!(failure.contains("backend failed") && failure.contains("wasm trap"), "{failure}");
}
