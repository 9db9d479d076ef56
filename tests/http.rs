//! The JSON API over real HTTP on loopback.

use rapidwasm::http::{ErrorBody, ReceiveResponse, SendResponse};
use rapidwasm_tests::{TestHost, app, console};
use reqwest::StatusCode;

struct Served {
    base: String,
    t: TestHost,
    _served: rapidwasm_tests::Served,
}

async fn serve() -> Served {
    let body = format!("{}{}{}", app("echo", "echo", ""), app("default", "default", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    let served = t.serve().await;
    Served { base: served.base.clone(), t, _served: served }
}

/// POST `body` as JSON to `url` and decode the JSON answer.
async fn post_json<T: serde::de::DeserializeOwned>(url: &str, body: serde_json::Value) -> T {
    let response = reqwest::Client::new().post(url).json(&body).send().await.expect("request");
    assert!(response.status().is_success(), "{url} answered {}", response.status());
    response.json().await.expect("a JSON answer")
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.error.code)
}

#[tokio::test(flavor = "multi_thread")]
async fn receive_returns_the_id_and_the_responses() {
    let s = serve().await;
    let answer: ReceiveResponse = post_json(
        &format!("{}/api/v1/receive", s.base),
        serde_json::json!({"text": "echo über", "backend": "console", "identity": "42", "fields": {"k": "v"}}),
    )
    .await;
    assert_eq!(answer.message_id.len(), 32);
    assert!(answer.handled);
    assert_eq!(answer.responses.len(), 1);
    assert_eq!(answer.responses[0].text, "über");
    assert_eq!(answer.responses[0].connections[0].identity, "42");
    assert_eq!(s.t.outbox("console"), [("42".to_owned(), "über".to_owned())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_and_lookup() {
    let s = serve().await;
    let client = reqwest::Client::new();
    let answer: SendResponse = post_json(
        &format!("{}/api/v1/send", s.base),
        serde_json::json!({"text": "hi all", "connections": [
            {"backend": "console", "identity": "1"}, {"backend": "console", "identity": "2"}]}),
    )
    .await;
    assert!(answer.processed);
    assert_eq!(s.t.outbox("console").len(), 2);
    let found: serde_json::Value = client
        .get(format!("{}/api/v1/connections?backend=other&identity=77", s.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(found, serde_json::json!([{"backend": "other", "identity": "77"}]));
    let landing = client.get(&s.base).send().await.expect("request");
    assert_eq!(landing.status(), StatusCode::OK);
    assert!(landing.text().await.expect("body").contains("<code>echo</code>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_precise_json_errors_and_lose_nothing() {
    let s = serve().await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/receive", s.base);
    let post = |body: String| client.post(&url).header("content-type", "application/json").body(body).send();

    assert_eq!(
        error_of(post("{\"text\":".into()).await.expect("request")).await,
        (StatusCode::BAD_REQUEST, "invalid_json".into())
    );
    assert_eq!(
        error_of(post(r#"{"text":"x","backend":"console"}"#.into()).await.expect("request")).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into())
    );
    assert_eq!(
        error_of(post(r#"{"text":"x","backend":"","identity":"1"}"#.into()).await.expect("request")).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into())
    );
    let huge = format!(r#"{{"text":"{}","backend":"console","identity":"1"}}"#, "a".repeat(100_000));
    assert_eq!(
        error_of(post(huge).await.expect("request")).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    let plain = client.post(&url).body("{}").send().await.expect("request");
    assert_eq!(error_of(plain).await, (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type".into()));
    let get = client.get(&url).send().await.expect("request");
    assert_eq!(error_of(get).await, (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into()));
    let missing = client.get(format!("{}/nope", s.base)).send().await.expect("request");
    assert_eq!(error_of(missing).await, (StatusCode::NOT_FOUND, "not_found".into()));
    let empty = client
        .post(format!("{}/api/v1/send", s.base))
        .json(&serde_json::json!({"text": "x", "connections": []}))
        .send()
        .await
        .expect("request");
    assert_eq!(error_of(empty).await, (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request".into()));

    // Nothing was routed by the bad requests, and the server still serves.
    assert!(s.t.outbox("console").is_empty());
    let ok = post(r#"{"text":"echo fine","backend":"console","identity":"1"}"#.into()).await.expect("request");
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_in_the_openapi_file_is_served() {
    let s = serve().await;
    let client = reqwest::Client::new();
    let spec: serde_json::Value =
        client.get(format!("{}/api/v1/openapi.json", s.base)).send().await.expect("get").json().await.expect("JSON");
    assert_eq!(spec["openapi"], "3.0.3");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 5, "{paths:?}");
    for (path, item) in paths {
        let url = format!(
            "{}{}",
            s.base,
            path.replace("{backend}", "console")
                .replace("{path}", "x")
                .replace("{id}", "x")
                .replace("{name}", "console")
                .replace("{tenant}", "default")
        );
        for method in item.as_object().expect("a path item").keys().filter(|k| *k != "parameters") {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let response =
                client.request(method.clone(), &url).json(&serde_json::json!({})).send().await.expect("send");
            let status = response.status();
            let body = response.text().await.expect("body");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(!body.contains("no such resource"), "{method} {path} is not routed: {body}");
        }
    }
}
