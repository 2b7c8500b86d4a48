//! Broker destinations, end to end: an endpoint whose URL is a Redis stream
//! gets each message as a stream entry a consumer can verify (Standard
//! Webhooks signature over `id.timestamp.body`), with attempts listed as for
//! HTTP; failures (an error reply, an unreachable server, the network
//! policy) are failed attempts retried, resent and recovered like HTTP
//! ones; broker URLs are checked when set; an ingest source routes to a
//! stream the same way.
//!
//! Needs Redis (`SWITCHYARD_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`, reached at 127.0.0.1): unreachable, the tests
//! fail under `CI=true` and are skipped with a printed reason otherwise.

mod common;

use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The port of the test Redis (which must listen on 127.0.0.1).
fn redis_port(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(6379)
}

/// Only loopback's first address may be reached, as the issue asks.
fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let mut all = vec![("SWITCHYARD_ALLOWED_NETWORKS", "127.0.0.1/32")];
    all.extend_from_slice(env);
    Server::start(dir, &all)
}

/// A stream's entries: id and fields (field names may repeat).
type Entry = (String, Vec<(String, Vec<u8>)>);

async fn entries(redis: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<Entry> {
    let raw: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(redis)
        .await
        .unwrap_or(redis::Value::Nil);
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => b.clone(),
        redis::Value::SimpleString(s) => s.clone().into_bytes(),
        _ => Vec::new(),
    };
    let redis::Value::Array(items) = raw else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let redis::Value::Array(parts) = item else {
                return None;
            };
            let id = String::from_utf8(text(parts.first()?)).ok()?;
            let redis::Value::Array(fields) = parts.get(1)? else {
                return None;
            };
            let fields = fields
                .chunks(2)
                .map(|p| {
                    (
                        String::from_utf8_lossy(&text(&p[0])).into_owned(),
                        text(&p[1]),
                    )
                })
                .collect();
            Some((id, fields))
        })
        .collect()
}

/// Waits until the stream holds at least `n` entries, returning them.
async fn wait_for_entries(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    n: usize,
) -> Vec<Entry> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = entries(redis, stream).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{stream} has {} entries, not {n}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn field<'a>(entry: &'a Entry, name: &str) -> &'a [u8] {
    entry
        .1
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
        .unwrap_or_else(|| panic!("no field {name} in {:?}", entry.1))
}

fn text_field(entry: &Entry, name: &str) -> String {
    String::from_utf8_lossy(field(entry, name)).into_owned()
}

/// Standard Webhooks `v1`, as a consumer would check it: HMAC-SHA256 of
/// `id.timestamp.body` with the endpoint secret.
fn signature_ok(secret: &str, entry: &Entry) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            text_field(entry, "webhook-id"),
            text_field(entry, "webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(field(entry, "body"));
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    text_field(entry, "webhook-signature")
        .split(' ')
        .any(|s| s == format!("v1,{expected}"))
}

async fn new_app(api: &Api) -> String {
    let (status, app) = api.post("/api/v1/app", json!({"name": "brokers"})).await;
    assert_eq!(status, 201, "{app}");
    app["id"].as_str().unwrap().to_owned()
}

/// Creates an endpoint, returning its id and secret.
async fn endpoint(api: &Api, app: &str, body: Value) -> (String, String) {
    let (status, ep) = api.post(&format!("/api/v1/app/{app}/endpoint"), body).await;
    assert_eq!(status, 201, "{ep}");
    let id = ep["id"].as_str().unwrap().to_owned();
    let (_, secret) = api
        .get(&format!("/api/v1/app/{app}/endpoint/{id}/secret"))
        .await;
    (id, secret["key"].as_str().unwrap().to_owned())
}

async fn publish(api: &Api, app: &str, payload: Value) -> String {
    let (status, msg) = api
        .post(
            &format!("/api/v1/app/{app}/msg"),
            json!({"eventType": "order.paid", "payload": payload}),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap().to_owned()
}

async fn attempts(api: &Api, app: &str, ep: &str) -> Vec<Value> {
    let (status, page) = api
        .get(&format!(
            "/api/v1/app/{app}/attempt/endpoint/{ep}?limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the endpoint's attempts satisfy `done`, returning them.
async fn wait_for_attempts(
    api: &Api,
    app: &str,
    ep: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = attempts(api, app, ep).await;
        if done(&listed) {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SUCCESS: i64 = 0;
const FAIL: i64 = 2;

fn count(listed: &[Value], status: i64) -> usize {
    listed
        .iter()
        .filter(|a| a["status"].as_i64() == Some(status))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_on_the_stream_signed_and_are_listed() {
    let Some((url, mut redis)) = redis_or_skip().await else {
        return;
    };
    let port = redis_port(&url);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let api = server.client();
    let app = new_app(&api).await;
    let stream = unique("sy-dest");
    let (ep, secret) = endpoint(
        &api,
        &app,
        json!({
            "url": format!("redis://127.0.0.1:{port}/?stream={stream}&maxlen=1000"),
            "headers": {"X-Tenant": "acme"},
            "filterTypes": ["order.*"],
        }),
    )
    .await;
    // Filtered out: never reaches the stream.
    let (status, _) = api
        .post(
            &format!("/api/v1/app/{app}/msg"),
            json!({"eventType": "user.created", "payload": {"skip": true}}),
        )
        .await;
    assert_eq!(status, 202);
    let msg = publish(&api, &app, json!({"order": 42, "note": "é"})).await;

    let found = wait_for_entries(&mut redis, &stream, 1).await;
    let listed = wait_for_attempts(&api, &app, &ep, "the attempt", |a| !a.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let entry = &found[0];
    let names: Vec<&str> = entry.1.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "body",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "content-type",
            "x-tenant"
        ]
    );
    assert_eq!(text_field(entry, "webhook-id"), msg);
    assert_eq!(text_field(entry, "content-type"), "application/json");
    assert_eq!(text_field(entry, "x-tenant"), "acme");
    let body: Value = serde_json::from_slice(field(entry, "body")).unwrap();
    assert_eq!(body, json!({"order": 42, "note": "é"}));
    assert!(signature_ok(&secret, entry), "bad signature: {entry:?}");
    // A wrong secret does not verify (the check is not vacuous).
    let wrong = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    assert!(!signature_ok(&wrong, entry));

    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], SUCCESS, "{listed:?}");
    assert_eq!(listed[0]["responseStatusCode"], 200, "{listed:?}");
    assert_eq!(listed[0]["response"], json!(entry.0), "{listed:?}");
    assert_eq!(listed[0]["msgId"], json!(msg));
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_then_resent_and_recovered_once_the_stream_works() {
    let Some((url, mut redis)) = redis_or_skip().await else {
        return;
    };
    let port = redis_port(&url);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let api = server.client();
    let app = new_app(&api).await;
    // A string where the stream should be: XADD gets WRONGTYPE.
    let stream = unique("sy-dest-wrongtype");
    let _: () = redis::cmd("SET")
        .arg(&stream)
        .arg("not a stream")
        .query_async(&mut redis)
        .await
        .unwrap();
    let (ep, secret) = endpoint(
        &api,
        &app,
        json!({"url": format!("redis://127.0.0.1:{port}/?stream={stream}")}),
    )
    .await;
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (down, _) = endpoint(
        &api,
        &app,
        json!({"url": format!("redis://127.0.0.1:{closed_port}/?stream=never")}),
    )
    .await;

    let first = publish(&api, &app, json!({"n": 1})).await;
    let second = publish(&api, &app, json!({"n": 2})).await;
    // SWITCHYARD_RETRY_SCHEDULE=1,1: three attempts each, all failed.
    let failed = wait_for_attempts(&api, &app, &ep, "six failed attempts", |a| {
        count(a, FAIL) == 6
    })
    .await;
    for attempt in &failed {
        assert_eq!(attempt["responseStatusCode"], 0, "{attempt}");
        let response = attempt["response"].as_str().unwrap_or_default();
        assert!(response.contains("WRONGTYPE"), "{response}");
        assert!(
            response.contains(&format!("127.0.0.1:{port}")),
            "{response}"
        );
    }
    let unreachable = wait_for_attempts(&api, &app, &down, "failed attempts", |a| {
        count(a, FAIL) == 6
    })
    .await;
    for attempt in &unreachable {
        assert_eq!(attempt["responseStatusCode"], 0, "{attempt}");
        let response = attempt["response"].as_str().unwrap_or_default();
        assert!(
            response.contains(&format!("connecting to 127.0.0.1:{closed_port} failed")),
            "{response}"
        );
    }
    let (_, msg) = api.get(&format!("/api/v1/app/{app}/msg/{first}")).await;
    let since = msg["timestamp"].as_str().unwrap().to_owned();

    // Fixed: the key is gone, so XADD makes the stream.
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app}/msg/{first}/endpoint/{ep}/resend"),
            json!({}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let found = wait_for_entries(&mut redis, &stream, 1).await;
    assert_eq!(text_field(&found[0], "webhook-id"), first);
    assert!(signature_ok(&secret, &found[0]));

    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app}/endpoint/{ep}/recover"),
            json!({"since": since}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let found = wait_for_entries(&mut redis, &stream, 2).await;
    let ids: Vec<String> = found.iter().map(|e| text_field(e, "webhook-id")).collect();
    assert!(ids.contains(&second), "{ids:?}");
    let listed =
        wait_for_attempts(&api, &app, &ep, "the successes", |a| count(a, SUCCESS) >= 2).await;
    for ok in listed.iter().filter(|a| a["status"] == SUCCESS) {
        assert_eq!(ok["responseStatusCode"], 200, "{ok}");
        let entry_id = ok["response"].as_str().unwrap_or_default();
        assert!(found.iter().any(|e| e.0 == entry_id), "{ok}");
    }
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_http_auth_never_from_the_url() {
    let Some((url, mut redis)) = redis_or_skip().await else {
        return;
    };
    let port = redis_port(&url);
    let user = unique("sy-dest-user");
    let stream = unique("sy-dest-auth");
    let password = "s3cret-pw";
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{stream}"))
        .arg("+@all")
        .query_async(&mut redis)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let api = server.client();
    let app = new_app(&api).await;
    let target = format!("redis://127.0.0.1:{port}/?stream={stream}");
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app}/endpoint"),
            json!({"url": format!("redis://{user}:{password}@127.0.0.1:{port}/?stream={stream}")}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "url"]), "{body}");
    assert!(body.to_string().contains("http-auth"), "{body}");

    let (ep, secret) = endpoint(&api, &app, json!({"url": target})).await;
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/app/{app}/endpoint/{ep}/http-auth"),
            Some(json!({"type": "basic", "username": user, "password": "wrong"})),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let msg = publish(&api, &app, json!({"auth": 1})).await;
    let listed =
        wait_for_attempts(&api, &app, &ep, "a refused AUTH", |a| count(a, FAIL) >= 1).await;
    let response = listed[0]["response"].as_str().unwrap_or_default();
    assert!(
        response
            .to_ascii_lowercase()
            .contains("authentication failed"),
        "{response}"
    );
    assert!(
        !response.contains("wrong"),
        "the password is shown: {response}"
    );

    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/v1/app/{app}/endpoint/{ep}/http-auth"),
            Some(json!({"type": "basic", "username": user, "password": password})),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app}/msg/{msg}/endpoint/{ep}/resend"),
            json!({}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let found = wait_for_entries(&mut redis, &stream, 1).await;
    assert!(signature_ok(&secret, &found[0]));
    let all: Vec<&str> = found[0].1.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!all.contains(&"authorization"), "{all:?}");
    let (_, read) = api.get(&format!("/api/v1/app/{app}/endpoint/{ep}")).await;
    assert!(!read.to_string().contains(password), "{read}");

    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_urls_are_judged_like_http_ones() {
    let Some((url, mut redis)) = redis_or_skip().await else {
        return;
    };
    let port = redis_port(&url);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let api = server.client();
    let app = new_app(&api).await;
    let stream = unique("sy-dest-ssrf");
    let refused: HashMap<String, &str> = HashMap::from([
        // Outside 127.0.0.1/32, as an address literal: refused on sight.
        (
            format!("redis://127.0.0.2:{port}/?stream={stream}"),
            "SWITCHYARD_ALLOWED_NETWORKS",
        ),
        (
            format!("redis://[::1]:{port}/?stream={stream}"),
            "SWITCHYARD_ALLOWED_NETWORKS",
        ),
        (
            format!("redis://127.1:{port}/?stream={stream}"),
            "host must be",
        ),
        (format!("redis://127.0.0.1:{port}/"), "stream"),
        (
            format!("redis://127.0.0.1:{port}/?stream={stream}&maxlen=0"),
            "maxlen",
        ),
        (format!("amqp://127.0.0.1/?stream={stream}"), "redis://"),
        (
            format!("redis://:pw@127.0.0.1:{port}/?stream={stream}"),
            "http-auth",
        ),
    ]);
    for (target, why) in &refused {
        let (status, body) = api
            .post(
                &format!("/api/v1/app/{app}/endpoint"),
                json!({"url": target}),
            )
            .await;
        assert_eq!(status, 422, "{target}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "url"]), "{body}");
        assert!(body.to_string().contains(why), "{target}: {body}");
    }
    // A name is judged on what it resolves to, at each attempt: `localhost`
    // may resolve to ::1 and 127.0.0.1; with only the latter allowed, it is
    // delivered to the allowed address.
    endpoint(
        &api,
        &app,
        json!({"url": format!("redis://localhost:{port}/?stream={stream}")}),
    )
    .await;
    let msg = publish(&api, &app, json!({"n": 1})).await;
    let found = wait_for_entries(&mut redis, &stream, 1).await;
    assert_eq!(text_field(&found[0], "webhook-id"), msg);
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    drop(server);

    // Loopback not allowed at all: the name resolves only to refused
    // addresses, so the attempt fails naming the guard and nothing is added.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[("SWITCHYARD_ALLOWED_NETWORKS", "10.9.0.0/16")],
    );
    let api = server.client();
    let app = new_app(&api).await;
    let (ep, _) = endpoint(
        &api,
        &app,
        json!({"url": format!("redis://localhost:{port}/?stream={stream}")}),
    )
    .await;
    publish(&api, &app, json!({"n": 2})).await;
    let listed = wait_for_attempts(&api, &app, &ep, "a refused attempt", |a| {
        count(a, FAIL) >= 1
    })
    .await;
    let response = listed[0]["response"].as_str().unwrap_or_default();
    assert!(response.contains("blocked by the SSRF guard"), "{response}");
    assert_eq!(listed[0]["responseStatusCode"], 0);
    assert!(entries(&mut redis, &stream).await.is_empty());
    drop(server);

    // https-only mode: only the TLS scheme.
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[("SWITCHYARD_HTTPS_ONLY", "true")]);
    let api = server.client();
    let app = new_app(&api).await;
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app}/endpoint"),
            json!({"url": format!("redis://127.0.0.1:{port}/?stream={stream}")}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("SWITCHYARD_HTTPS_ONLY"), "{body}");
    endpoint(
        &api,
        &app,
        json!({"url": format!("rediss://127.0.0.1:{port}/?stream={stream}")}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_source_routes_to_a_redis_stream() {
    let Some((url, mut redis)) = redis_or_skip().await else {
        return;
    };
    let port = redis_port(&url);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let api = server.client();
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            json!({"name": "provider", "type": "none", "config": {}}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source_id = source["id"].as_str().unwrap().to_owned();
    let ingest_url = source["ingestUrl"].as_str().unwrap().to_owned();
    let stream = unique("sy-dest-ingest");
    let (status, ep) = api
        .post(
            &format!("/ingest/api/v1/source/{source_id}/endpoint"),
            json!({"url": format!("redis://127.0.0.1:{port}/?stream={stream}")}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    let (_, secret) = api
        .get(&format!(
            "/ingest/api/v1/source/{source_id}/endpoint/{ep_id}/secret"
        ))
        .await;
    let secret = secret["key"].as_str().unwrap().to_owned();

    let sent = r#"{"id":"evt_1","type":"charge.succeeded","data":{"amount":5}}"#;
    let response = reqwest::Client::new()
        .post(&ingest_url)
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.status());
    let found = wait_for_entries(&mut redis, &stream, 1).await;
    assert_eq!(field(&found[0], "body"), sent.as_bytes());
    assert!(signature_ok(&secret, &found[0]), "{:?}", found[0]);
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
}
