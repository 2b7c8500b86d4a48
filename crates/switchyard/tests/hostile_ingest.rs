//! Hostile input against the real binary: an ingest path suffix that tries
//! to leave its destination's path, and payloads whose duplicate keys would
//! let the checked copy and the delivered bytes say different things.
//!
//! Request lines are written on a raw TCP socket: an HTTP client library
//! parses the URL first and would resolve `%2e%2e` itself, so the server
//! would never see the input.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use common::{Api, Server};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STRIPE_SECRET: &str = "whsec_a1b2c3d4a1b2c3d4a1b2c3d4a1b2c3d4";

/// Path and query of every request that reached the receiver, with its body.
#[derive(Clone, Default)]
struct Targets(Arc<Mutex<Vec<(String, Bytes)>>>);

async fn record(State(t): State<Targets>, uri: Uri, body: Bytes) -> StatusCode {
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    t.0.lock().unwrap().push((target, body));
    StatusCode::OK
}

impl Targets {
    async fn start() -> (Targets, String) {
        let t = Targets::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .fallback(axum::routing::any(record))
            .with_state(t.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (t, base)
    }

    fn seen(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen()
    }
}

/// Stripe's scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`
/// keyed with the secret as written.
fn stripe_signature(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` to `target` (sent verbatim on the request line) with a valid
/// Stripe signature; returns the status and the JSON answer.
async fn post_raw(server: &str, target: &str, body: &str) -> (u16, Value) {
    let addr = server.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Stripe-Signature: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        stripe_signature(body),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// A Stripe source delivering to `destination`; returns (source id, ingest path).
async fn stripe_source(api: &Api, destination: &str) -> (String, String) {
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            json!({"name": "stripe", "type": "stripe", "config": {"secret": STRIPE_SECRET}}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let id = source["id"].as_str().unwrap().to_owned();
    let (status, dest) = api
        .post(
            &format!("/ingest/api/v1/source/{id}/endpoint"),
            json!({ "url": destination }),
        )
        .await;
    assert_eq!(status, 201, "{dest}");
    let token = source["ingestUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .unwrap()
        .to_owned();
    (id, format!("/ingest/{token}"))
}

async fn rejected(api: &Api, source: &str, at_least: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = api
            .get(&format!("/ingest/api/v1/source/{source}/stats"))
            .await;
        if stats["rejected"].as_u64().unwrap_or(0) >= at_least || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event(kind: &str) -> String {
    format!("{{\"id\":\"evt_{}\",\"type\":\"{kind}\"}}", rand_id())
}

fn rand_id() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn an_ingest_path_cannot_leave_the_destination_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = server.client();
    let (targets, receiver) = Targets::start().await;
    let (source, ingest) = stripe_source(&api, &format!("{receiver}/stripe/hook")).await;

    // The issue's input: correctly signed, path aimed at /admin.
    let (status, answer) = post_raw(
        &server.url,
        &format!("{ingest}/%2e%2e/%2e%2e/admin?q=1"),
        &event("invoice.paid"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_path", "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("dot segment"));

    // Other members of the kind: every spelling of a dot segment, encoded
    // separators, backslashes, control bytes.
    let hostile = [
        "/../../admin",
        "/./x",
        "/a/%2E%2e/%2e%2E/admin",
        "/.%2e/admin",
        "/%252e%252e/%252e%252e/admin",
        "/..;x=1/..;/admin",
        "/a%2f..%2f..%2fadmin",
        "/a%5c..%5c..%5cadmin",
        "/a%00",
        "/a%0d%0aX:%201",
    ];
    for suffix in hostile {
        let (status, answer) =
            post_raw(&server.url, &format!("{ingest}{suffix}"), &event("x")).await;
        assert_eq!(status, 400, "{suffix}: {answer}");
        assert_eq!(answer["code"], "invalid_path", "{suffix}: {answer}");
    }
    let stats = rejected(&api, &source, 1 + hostile.len() as u64).await;
    assert_eq!(
        stats["rejected"].as_u64(),
        Some(1 + hostile.len() as u64),
        "{stats}"
    );
    assert!(
        stats["lastRejection"]
            .as_str()
            .unwrap()
            .contains("unsafe path"),
        "{stats}"
    );
    let (_, listed) = api.get(&format!("/api/v1/app/{source}/msg")).await;
    assert_eq!(listed["data"], json!([]), "nothing refused is stored");

    // A forged request still gets 401, not a hint about paths.
    let forged = format!(
        "POST {ingest}/%2e%2e HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let mut stream = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(forged.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 401"));

    // Normal suffixes still go under the destination path, trailing slash,
    // encoded characters and query included; a suffix of `/` alone (a
    // provider URL that ends in a slash) adds nothing.
    for suffix in [
        "/orders/7?full=1",
        "/orders/",
        "/v1.2/a;b?x=%20y&z",
        "/",
        "/?q=1",
    ] {
        let (status, answer) =
            post_raw(&server.url, &format!("{ingest}{suffix}"), &event("ok")).await;
        assert_eq!(status, 200, "{suffix}: {answer}");
    }
    let mut seen = targets.wait_for(5).await;
    seen.sort();
    assert_eq!(
        seen,
        [
            "/stripe/hook",
            "/stripe/hook/orders/",
            "/stripe/hook/orders/7?full=1",
            "/stripe/hook/v1.2/a%3Bb?x=%20y&z",
            "/stripe/hook?q=1",
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(targets.seen().len(), 5, "nothing else reached the service");
}

async fn schema_type(api: &Api) -> String {
    let (status, app) = api.post("/api/v1/app", json!({"name": "dup"})).await;
    assert_eq!(status, 201, "{app}");
    let (status, et) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "t", "description": "d", "schemas": {"1": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
            }}}),
        )
        .await;
    assert_eq!(status, 201, "{et}");
    app["id"].as_str().unwrap().to_owned()
}

/// Posts a message body given as text (so its keys can repeat).
async fn post_text(api: &Api, app: &str, body: &str) -> (u16, Value) {
    let resp = api
        .http
        .post(format!("{}/api/v1/app/{app}/msg", api.base))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_payload_with_duplicate_keys_is_never_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = server.client();
    let (targets, receiver) = Targets::start().await;
    let app = schema_type(&api).await;
    let (status, ep) = api
        .post(
            &format!("/api/v1/app/{app}/endpoint"),
            json!({"url": format!("{receiver}/out")}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");

    let (status, _) = post_text(&api, &app, r#"{"eventType":"t","payload":{"a":"evil"}}"#).await;
    assert_eq!(status, 422);
    // The issue's input: the schema saw `"a": 1`, a first-key receiver `"evil"`.
    let (status, answer) = post_text(
        &api,
        &app,
        r#"{"eventType":"t","payload":{"a":"evil","a":1}}"#,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "payload", "a"]));
    assert!(
        answer["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("duplicate key 'a'"),
        "{answer}"
    );
    for (body, loc) in [
        (
            r#"{"eventType":"t","payload":{"a":1,"b":{"c":{"d":1,"d":2}}}}"#,
            json!(["body", "payload", "b", "c", "d"]),
        ),
        (
            r#"{"eventType":"t","payload":{"a":1,"items":[{"id":1},{"id":2,"id":3}]}}"#,
            json!(["body", "payload", "items", "1", "id"]),
        ),
        (
            r#"{"eventType":"none","payload":{"x.y":1,"x.y":2}}"#,
            json!(["body", "payload", "x.y"]),
        ),
    ] {
        let (status, answer) = post_text(&api, &app, body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], loc, "{body}");
    }
    // The message's own fields are a struct: serde refuses a repeated one.
    let (status, answer) = post_text(
        &api,
        &app,
        r#"{"eventType":"t","payload":{"a":1},"payload":{"a":"evil"}}"#,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("duplicate field")
    );
    let (status, answer) = api
        .http
        .post(format!("{}/api/v1/app/{app}/endpoint", api.base))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"url":"http://127.0.0.1:1/a","url":"http://127.0.0.1:1/b"}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(status, 422, "{:?}", answer.text().await);

    let (_, listed) = api.get(&format!("/api/v1/app/{app}/msg")).await;
    assert_eq!(listed["data"], json!([]), "nothing refused is stored");
    let (status, _) = post_text(
        &api,
        &app,
        r#"{"eventType":"t","payload":{"a":1,"b":{"a":2}}}"#,
    )
    .await;
    assert_eq!(status, 202, "the same key in different objects is fine");
    assert_eq!(targets.wait_for(1).await, ["/out"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        targets.seen().len(),
        1,
        "only the valid message was delivered"
    );
}

#[tokio::test]
async fn an_incoming_body_with_duplicate_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = server.client();
    let (targets, receiver) = Targets::start().await;
    let (source, ingest) = stripe_source(&api, &format!("{receiver}/in")).await;
    // A filter and the dedupe id would read one `type`/`id`, a receiver maybe the other.
    for body in [
        r#"{"id":"evt_1","type":"invoice.paid","type":"charge.refunded"}"#,
        r#"{"id":"evt_2","id":"evt_3","type":"invoice.paid"}"#,
        r#"{"id":"evt_4","type":"x","data":{"object":[{"amount":1,"amount":2}]}}"#,
    ] {
        let (status, answer) = post_raw(&server.url, &ingest, body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["code"], "duplicate_key", "{answer}");
    }
    let stats = rejected(&api, &source, 3).await;
    assert_eq!(stats["rejected"], 3, "{stats}");
    assert!(
        stats["lastRejection"]
            .as_str()
            .unwrap()
            .contains("duplicate key 'amount'")
    );
    // Hidden from a strict parse behind what lenient parsers take (NaN, a
    // second value): refused too, not routed as "no document".
    for body in [
        r#"{"id":"evt_6","type":"invoice.paid","n":NaN,"type":"charge.refunded"}"#,
        r#"{"id":"evt_7","type":"invoice.paid"} {"type":"charge.refunded"}"#,
    ] {
        let (status, answer) = post_raw(&server.url, &ingest, body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["code"], "invalid_json", "{answer}");
    }
    let body =
        "{\"id\":\"evt_5\",  \"type\":\"invoice.paid\",\"data\":{\"a\":{\"k\":1},\"b\":{\"k\":2}}}";
    let (status, answer) = post_raw(&server.url, &ingest, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(targets.wait_for(1).await, ["/in"]);
    let delivered = targets.0.lock().unwrap()[0].1.clone();
    assert_eq!(delivered, body.as_bytes(), "forwarded byte for byte");
}
