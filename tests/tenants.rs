//! Tenants side by side in one host: each reaches only its own plugins and
//! data, whatever its plugins ask; its API answers only its own keys; its
//! limits (fuel, message size, requests per second) hold; and an attacking
//! tenant does not stop the others. Grants open exactly what they name.

use std::time::{Duration, Instant};

use rapidwasm::http::{ErrorBody, ReceiveResponse, TenantInfo};
use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::{PhaseResult, Router, RouterEvent};
use rapidwasm_tests::gateway::{Gateway, query_pairs, value};
use rapidwasm_tests::{TestHost, app, backend, console, in_tenant, median};
use reqwest::StatusCode;

const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// An `http` backend called `sms` that sends to `gateway`.
fn sms_to(gateway: &Gateway) -> String {
    let settings = format!("outbound_url = \"{}/send?to={{identity}}&text={{text}}\"", gateway.url());
    backend("sms", "http", &[&gateway.host()], &settings)
}

/// The default tenant (echo on a console), `acme` (the hostile app first,
/// metered with fuel, small messages, 20 requests a second) and `globex`
/// (echo), each with its own `sms` backend to its own gateway.
fn config(acme_gateway: &Gateway, globex_gateway: &Gateway) -> String {
    let default = format!("{}{}", app("echo", "echo", ""), console("console", ""));
    let acme = in_tenant(
        "acme",
        &format!("api_keys = [\"{ACME_KEY}\"]"),
        &format!(
            "[limits]\nfuel = 20000000\nmax_message_bytes = 160\ncalls_per_second = 20\n{}{}{}{}{}",
            app("hostile", "hostile", ""),
            app("echo", "echo", ""),
            app("default", "default", ""),
            console("console", ""),
            sms_to(acme_gateway),
        ),
    );
    let globex = in_tenant(
        "globex",
        &format!("api_keys = [\"{GLOBEX_KEY}\"]"),
        &format!("{}{}{}", app("echo", "echo", ""), console("console", ""), sms_to(globex_gateway)),
    );
    format!("admin_token = \"{ADMIN}\"\n[limits]\ncall_timeout_ms = 1000\nmemory_mib = 32\n{default}{acme}{globex}")
}

fn router_of<'a>(t: &'a TestHost, tenant: &str) -> &'a Router {
    t.host.tenant(tenant).unwrap_or_else(|| panic!("tenant {tenant}")).router()
}

async fn receive(t: &TestHost, tenant: &str, identity: &str, text: &str) -> Vec<String> {
    let msg =
        router_of(t, tenant).receive(text, Connection::new("console", identity), Fields::new()).await.expect("receive");
    msg.sent.iter().map(|m| m.text.clone()).collect()
}

/// The texts gateway `g` was asked to send.
fn gateway_texts(g: &Gateway) -> Vec<String> {
    g.requests().iter().filter_map(|r| value(&query_pairs(r), "text").map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_reaches_only_its_own_backends_and_data() {
    let (gw_acme, gw_globex) = (Gateway::start(200, "ok").await, Gateway::start(200, "ok").await);
    let t = TestHost::start(&config(&gw_acme, &gw_globex)).await.expect("start");

    // Globex has a phone with a contact, and talks to it.
    let phone = Connection::new("sms", "+255700000001");
    let contact = router_of(&t, "globex").register_contact(&phone, "Asha", "sw").expect("register");
    router_of(&t, "globex").send("hello Asha", vec![phone.clone()], Fields::new()).await.expect("send");
    assert_eq!(gateway_texts(&gw_globex), ["hello Asha"]);

    // Acme's hostile app goes after it by name.
    let lookup = receive(&t, "acme", "666", "lookup sms +255700000001").await;
    assert!(lookup[0].starts_with("leak: lookup: "), "a lookup in its own namespace works: {lookup:?}");
    let seen = receive(&t, "acme", "666", "contact sms +255700000001").await;
    assert_eq!(seen, ["leak: contact: None"], "globex's contact is not acme's");
    let sent = receive(&t, "acme", "666", "send sms +255700000001").await;
    assert!(sent[0].starts_with("leak: send: "), "{sent:?}");
    assert_eq!(gateway_texts(&gw_acme), ["stolen"], "`sms` in acme's namespace is acme's own backend");
    assert_eq!(gateway_texts(&gw_globex), ["hello Asha"], "globex's gateway saw nothing from acme");

    // The stores are apart: globex's record of the phone keeps its contact,
    // and acme's phone 666 exists only in acme's.
    let globex_store = t.host.tenant("globex").expect("globex").store();
    let acme_store = t.host.tenant("acme").expect("acme").store();
    let record = globex_store.connection(&phone).expect("read").expect("globex's connection");
    assert_eq!(record.contact_id.as_deref(), Some(contact.id.as_str()));
    let acme_record = acme_store.connection(&phone).expect("read").expect("acme's own connection");
    assert_eq!(acme_record.contact_id, None);
    assert!(globex_store.contact(&contact.id).expect("read").is_some());
    assert!(acme_store.contact(&contact.id).expect("read").is_none(), "contacts are per tenant");
    let attacker = Connection::new("console", "666");
    assert!(acme_store.connection(&attacker).expect("read").is_some());
    assert!(globex_store.connection(&attacker).expect("read").is_none());
    assert!(t.host.store().connection(&attacker).expect("read").is_none(), "nor in the default tenant");
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.error.code, body.error.message)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_scoped_by_url_and_key_and_limited_per_tenant() {
    let (gw_acme, gw_globex) = (Gateway::start(200, "ok").await, Gateway::start(200, "ok").await);
    let t = TestHost::start(&config(&gw_acme, &gw_globex)).await.expect("start");
    let served = t.serve().await;
    let client = reqwest::Client::new();
    let receive_at = |tenant: &str| match tenant {
        "default" => format!("{}/api/v1/receive", served.base),
        other => format!("{}/t/{other}/api/v1/receive", served.base),
    };
    let body = |text: &str| serde_json::json!({"text": text, "backend": "console", "identity": "42"});

    // No key, the wrong tenant's key, an unknown tenant.
    let response = client.post(receive_at("acme")).json(&body("echo hi")).send().await.expect("post");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"), "{message}");
    assert!(message.contains("tenant `acme`"), "{message}");
    let response =
        client.post(receive_at("acme")).bearer_auth(GLOBEX_KEY).json(&body("echo hi")).send().await.expect("post");
    assert_eq!(error_of(response).await.0, StatusCode::UNAUTHORIZED, "globex's key does not open acme");
    let response =
        client.post(receive_at("nope")).bearer_auth(ACME_KEY).json(&body("echo hi")).send().await.expect("post");
    let (status, _, message) = error_of(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message.contains("no tenant is named `nope`"), "{message}");

    // The right key reaches acme's own apps; X-Api-Key works too.
    let answer: ReceiveResponse = client
        .post(receive_at("acme"))
        .bearer_auth(ACME_KEY)
        .json(&body("echo hi"))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(answer.responses[0].text, "hi");
    assert!(router_of(&t, "acme").store().connection(&Connection::new("console", "42")).expect("read").is_some());
    assert!(router_of(&t, "globex").store().connection(&Connection::new("console", "42")).expect("read").is_none());
    let response = client
        .get(format!("{}/t/globex/api/v1/connections?backend=console&identity=7", served.base))
        .header("x-api-key", GLOBEX_KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    // The default tenant has no keys: open, as before tenants.
    let response = client.post(receive_at("default")).json(&body("echo open")).send().await.expect("post");
    assert_eq!(response.status(), StatusCode::OK);

    // Acme's messages are at most 160 bytes; the default tenant's are not.
    let long = format!("echo {}", "x".repeat(200));
    let response = client.post(receive_at("acme")).bearer_auth(ACME_KEY).json(&body(&long)).send().await.expect("post");
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"));
    assert!(message.contains("205 bytes long; the limit is 160"), "{message}");
    let response = client.post(receive_at("default")).json(&body(&long)).send().await.expect("post");
    assert_eq!(response.status(), StatusCode::OK);

    // Acme takes 20 requests a second: a burst of 60 gets 429s with
    // Retry-After, while globex is not limited at all.
    let lookups = (0..60).map(|i| {
        let request = client
            .get(format!("{}/t/acme/api/v1/connections?backend=console&identity={i}", served.base))
            .bearer_auth(ACME_KEY);
        async move { request.send().await.expect("get") }
    });
    let mut answers = Vec::new();
    for lookup in lookups {
        answers.push(lookup.await);
    }
    let limited: Vec<_> = answers.iter().filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).collect();
    let ok = answers.iter().filter(|r| r.status() == StatusCode::OK).count();
    assert!(!limited.is_empty() && ok >= 15, "{} limited, {ok} ok", limited.len());
    assert!(limited[0].headers().contains_key("retry-after"));
    for i in 0..60 {
        let response = client
            .get(format!("{}/t/globex/api/v1/connections?backend=console&identity={i}", served.base))
            .bearer_auth(GLOBEX_KEY)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::OK, "globex has no rate limit");
    }

    // The operator sees every tenant and each tenant's plugins.
    let admin_get = async |path: &str| {
        let response = client.get(format!("{}{path}", served.base)).bearer_auth(ADMIN).send().await.expect("get");
        response.json::<serde_json::Value>().await.expect("json")
    };
    let tenants: Vec<TenantInfo> = serde_json::from_value(admin_get("/admin/v1/tenants").await).expect("tenants");
    let names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["acme", "default", "globex"]);
    let acme = &tenants[0];
    assert_eq!((acme.prefix.as_str(), acme.fuel, acme.calls_per_second), ("/t/acme/", Some(20_000_000), Some(20)));
    assert_eq!(acme.apps, ["hostile", "echo", "default"]);
    let plugins = admin_get("/t/globex/admin/v1/plugins").await;
    let plugins = plugins.as_array().expect("a list");
    let names: Vec<&str> = plugins.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["console", "echo", "sms"]);
    let response = client.get(format!("{}/admin/v1/tenants", served.base)).bearer_auth(ACME_KEY).send().await;
    assert_eq!(response.expect("get").status(), StatusCode::UNAUTHORIZED, "a tenant's key is not the admin token");
}

async fn calm(router: &Router, i: usize) -> Duration {
    let started = Instant::now();
    let msg = router
        .receive(format!("echo calm {i}"), Connection::new("console", "100"), Fields::new())
        .await
        .expect("receive");
    assert_eq!(msg.sent[0].text, format!("calm {i}"));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attacking_tenant_is_contained_and_the_others_keep_their_pace() {
    let (gw_acme, gw_globex) = (Gateway::start(200, "ok").await, Gateway::start(200, "ok").await);
    let t = TestHost::start(&config(&gw_acme, &gw_globex)).await.expect("start");
    let globex = router_of(&t, "globex").clone();

    // Each attack once, to see how it is stopped. Acme's fuel stops the loop
    // before its deadline does.
    for (attack, expected) in [
        ("loop", "ran out of fuel after 20000000 units"),
        ("bomb", "exceeded its memory limit"),
        ("trap", "unreachable"),
    ] {
        let msg = router_of(&t, "acme")
            .receive(attack, Connection::new("console", "666"), Fields::new())
            .await
            .expect("receive");
        match t.recorder.handle_of(&msg.id, "hostile") {
            Some(PhaseResult::Failed(why)) => assert!(why.contains(expected), "{attack}: {why}"),
            other => panic!("{attack} was not stopped: {other:?}"),
        }
        let texts: Vec<&str> = msg.sent.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["Sorry, RapidSMS could not understand your message."], "acme's other apps went on");
    }

    // Globex's normal pace.
    let mut normal = Vec::new();
    for i in 0..60 {
        normal.push(calm(&globex, i).await);
    }

    // Acme attacks without pause on two tasks while globex talks.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..2)
        .map(|n| {
            let (acme, stop) = (router_of(&t, "acme").clone(), stop.clone());
            tokio::spawn(async move {
                let attacks = ["loop", "bomb", "recurse", "trap", "flood", "huge", "send sms 1", "lookup sms 1"];
                let mut sent = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let attack = attacks[sent % attacks.len()];
                    acme.receive(attack, Connection::new("console", format!("66{n}")), Fields::new())
                        .await
                        .expect("acme's router keeps accepting");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    // Paced over about 3 s, so acme's breaker lets its hostile app be
    // tried again (after 1 s, then 2 s) during the window.
    let mut during = Vec::new();
    for i in 0..120 {
        during.push(calm(&globex, 100 + i).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut attacks = 0;
    for attacker in attackers {
        attacks += attacker.await.expect("attacker");
    }

    // Acme's hostile app kept failing: its breaker paused it, in acme only.
    let hostile = t.host.tenant("acme").expect("acme").registry().list();
    let hostile = hostile.iter().find(|p| p.name == "hostile").expect("listed");
    assert!(hostile.failures >= 5 && hostile.last_failure.is_some(), "every stopped call is counted: {hostile:?}");
    let paused = t.recorder.events().into_iter().any(|e| {
        matches!(e, RouterEvent::Phase { app, result: PhaseResult::Failed(why), .. }
            if app == "hostile" && why.contains("paused after failing 5 calls in a row"))
    });
    assert!(paused, "acme's breaker paused its hostile app");
    for tenant in ["globex", "default"] {
        let plugins = t.host.tenant(tenant).expect("tenant").registry().list();
        assert!(plugins.iter().all(|p| p.failures == 0 && p.paused_until.is_none()), "{tenant}: {plugins:?}");
    }
    // Acme's own well-behaved app still answers, and globex's gateway saw
    // none of acme's sends.
    let after = receive(&t, "acme", "667", "echo after").await;
    assert_eq!(after, ["after"]);
    assert!(gateway_texts(&gw_globex).is_empty());

    let (normal, during) = (median(normal), median(during));
    println!(
        "tenants: {attacks} attacks by acme; a globex message took median {normal:.2?} alone and {during:.2?} \
         during the attacks ({:.2}x)",
        during.as_secs_f64() / normal.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_open_exactly_what_they_name() {
    let shared = tempfile::tempdir().expect("temp dir");
    std::fs::write(shared.path().join("secret.txt"), "s3cret\n").expect("write");
    let granted = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (granted_addr, other_addr) = (granted.local_addr().expect("addr"), other.local_addr().expect("addr"));

    let body = format!(
        "[[apps]]\nname = \"hostile\"\nplugin = \"builtin:hostile\"\n[apps.grants]\nenv = {{ GREETING = \"hi\" }}\n\
         tcp_connect = [\"{granted_addr}\"]\ndirs = [{{ host = {:?}, guest = \"/data\" }}]\n{}{}",
        shared.path().display().to_string(),
        console("console", ""),
        in_tenant(
            "plain",
            "api_keys = [\"plain-key-0123456789\"]",
            &format!("{}{}", app("hostile", "hostile", ""), console("console", ""))
        ),
    );
    let t = TestHost::start(&body).await.expect("start");
    let one = async |tenant: &str, text: &str| receive(&t, tenant, "1", text).await.join(" | ");

    // The granted app sees what was granted, and nothing else.
    assert!(one("default", "env").await.starts_with("leak: environment: [\"GREETING\"]"));
    assert_eq!(one("default", "read /data/secret.txt").await, "leak: read: s3cret");
    assert!(one("default", "read /etc/passwd").await.starts_with("denied: read: "));
    assert_eq!(one("default", &format!("connect {granted_addr}")).await, "leak: connect: connected");
    let refused = one("default", &format!("connect {other_addr}")).await;
    assert!(refused.starts_with("denied: connect: "), "{refused}");

    // The same component without grants, in another tenant, sees nothing.
    for attack in ["env", "read /data/secret.txt", &format!("connect {granted_addr}")] {
        let answer = one("plain", attack).await;
        assert!(answer.starts_with("denied: "), "{attack}: {answer}");
    }
}
