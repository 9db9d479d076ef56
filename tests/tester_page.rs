//! The message tester page in a real headless Chromium (Debian's
//! `chromium` and `chromium-driver`), driven over WebDriver.

use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use rapidwasm_tests::system::{Process, free_port, require, wait_for_port};
use rapidwasm_tests::{TestHost, app, backend};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session behind a chromedriver of its own.
struct Browser {
    client: Client,
    _driver: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        require(CHROMIUM, &["chromium"]);
        require(CHROMEDRIVER, &["chromium-driver"]);
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let driver = Process::start(
            "chromedriver",
            Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
            &profile.path().join("chromedriver.log"),
        );
        assert!(wait_for_port(port, Duration::from_secs(20)), "chromedriver did not start");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().join("chrome").display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": CHROMIUM, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Browser { client, _driver: driver, _profile: profile }
    }
}

/// The conversation as shown: (direction, text) per bubble.
async fn conversation(client: &Client) -> Vec<(String, String)> {
    let script = "return [...document.querySelectorAll('#log li')].map(li => \
                  [li.dataset.direction, li.lastChild.textContent]);";
    let shown = client.execute(script, vec![]).await.expect("read the conversation");
    serde_json::from_value(shown).expect("pairs")
}

/// Wait until the page shows `expected`.
async fn wait_for_conversation(client: &Client, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected.iter().map(|(d, t)| (d.to_string(), t.to_string())).collect();
    let mut shown = Vec::new();
    for _ in 0..100 {
        shown = conversation(client).await;
        if shown == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page shows {shown:?}, not {expected:?}");
}

/// Pixels of exactly `rgb` in a PNG screenshot.
fn count_pixels(png_bytes: &[u8], rgb: [u8; 3]) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let channels = info.color_type.samples();
    let count = buffer[..info.buffer_size()].chunks(channels).filter(|px| px[..3] == rgb).count();
    (info.width, info.height, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_chats_with_the_apps_in_chromium() {
    let body = format!(
        "{}{}{}",
        app("echo", "echo", ""),
        app("default", "default", ""),
        backend("message_tester", "tester", &[], "")
    );
    let t = TestHost::start(&body).await.expect("start the host");
    let served = t.serve().await;
    let browser = Browser::start().await;
    let c = &browser.client;

    c.goto(&format!("{}/tester?identity=5550100", served.base)).await.expect("open the page");
    let identity = c.find(Locator::Id("identity")).await.expect("the number field");
    assert_eq!(identity.prop("value").await.expect("value").as_deref(), Some("5550100"));

    // Type a message as the phone and press Send.
    let text = c.find(Locator::Id("text")).await.expect("the message field");
    text.send_keys("echo Hello from Kampala ✓").await.expect("type");
    c.find(Locator::Id("send")).await.expect("the button").click().await.expect("send");
    wait_for_conversation(c, &[("in", "echo Hello from Kampala ✓"), ("out", "Hello from Kampala ✓")]).await;
    assert_eq!(text.prop("value").await.expect("value").as_deref(), Some(""), "the field is cleared");

    // A message the apps cannot handle gets the default response.
    text.send_keys("what?").await.expect("type");
    c.find(Locator::Id("send")).await.expect("the button").click().await.expect("send");
    let sorry = "Sorry, RapidSMS could not understand your message.";
    wait_for_conversation(
        c,
        &[("in", "echo Hello from Kampala ✓"), ("out", "Hello from Kampala ✓"), ("in", "what?"), ("out", sorry)],
    )
    .await;

    // A message sent to this phone from elsewhere appears without a reload.
    let sent = reqwest::Client::new()
        .post(format!("{}/api/v1/send", served.base))
        .json(&serde_json::json!({"text": "Clinic opens at 9", "connections": [{"backend": "message_tester", "identity": "5550100"}]}))
        .send()
        .await
        .expect("send");
    assert!(sent.status().is_success());
    wait_for_conversation(
        c,
        &[
            ("in", "echo Hello from Kampala ✓"),
            ("out", "Hello from Kampala ✓"),
            ("in", "what?"),
            ("out", sorry),
            ("out", "Clinic opens at 9"),
        ],
    )
    .await;

    // The screenshot shows both kinds of bubble in their colours.
    let shot = c.screenshot().await.expect("a screenshot");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tester-page.png");
    std::fs::write(&target, &shot).expect("keep the screenshot");
    let (width, height, incoming) = count_pixels(&shot, [0xe8, 0xf0, 0xfe]);
    let (_, _, outgoing) = count_pixels(&shot, [0xe6, 0xf4, 0xea]);
    assert!(width >= 800 && height >= 500, "a {width}x{height} screenshot");
    assert!(incoming > 2_000, "phone bubbles are drawn ({incoming} pixels); see {}", target.display());
    assert!(outgoing > 3_000, "reply bubbles are drawn ({outgoing} pixels); see {}", target.display());

    // Clear empties the conversation.
    c.find(Locator::Id("clear")).await.expect("the button").click().await.expect("clear");
    wait_for_conversation(c, &[]).await;

    // A bad number is refused with a message on the page.
    identity.clear().await.expect("clear");
    identity.send_keys("12ab").await.expect("type");
    // (The field's own pattern check would stop the browser; the host must
    // refuse it too.)
    c.execute("document.getElementById('identity').removeAttribute('pattern'); return true;", vec![])
        .await
        .expect("drop the pattern");
    c.find(Locator::Id("send")).await.expect("the button").click().await.expect("send");
    let status = c.find(Locator::Id("status")).await.expect("the status line");
    let mut said = String::new();
    for _ in 0..50 {
        said = status.text().await.expect("text");
        if !said.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(said.contains("phone number must be 1 to 32 digits"), "{said}");

    browser.client.close().await.expect("close the session");
}
