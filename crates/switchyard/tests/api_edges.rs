//! The API's edges seen from outside: how credentials are read, and that
//! every error, whichever layer produced it, is the JSON error body.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// Sends a request with a raw `Authorization` value (or none) and returns
/// the status, the content type and the body parsed as JSON (`Null` if not).
async fn raw(
    server: &Server,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Value>,
) -> (u16, String, Value) {
    let http = reqwest::Client::new();
    let mut req = http.request(method, format!("{}{path}", server.url));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive.
#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    for value in [
        format!("Bearer {TOKEN}"),
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("bEaReR   {TOKEN}"),
        TOKEN.to_owned(),
    ] {
        let (status, _, body) = raw(&server, Method::GET, "/api/v1/app", Some(&value), None).await;
        assert_eq!(status, 200, "{value:?}: {body}");
    }
    for value in [
        format!("Basic {TOKEN}"),
        "bearer wrong".to_owned(),
        "bearer".to_owned(),
    ] {
        let (status, content_type, body) =
            raw(&server, Method::GET, "/api/v1/app", Some(&value), None).await;
        assert_eq!(status, 401, "{value:?}: {body}");
        assert!(content_type.starts_with("application/json"), "{value:?}");
        assert_eq!(body["code"], "authentication_failed", "{value:?}");
    }
}

/// Sends raw bytes and returns the status line and the body.
async fn raw_bytes(server: &Server, request: &[u8]) -> (String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Two credentials are refused, whichever comes first.
#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    for (first, second) in [(TOKEN, "wrong"), ("wrong", TOKEN)] {
        let request = format!(
            "GET /api/v1/app HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {first}\r\nAuthorization: Bearer {second}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw_bytes(&server, request.as_bytes()).await;
        assert!(status.contains(" 401 "), "{status} {body}");
        assert_eq!(body["code"], "authentication_failed", "{body}");
    }
}

/// A body cut off or malformed on the wire is a 400, not "too large", on
/// the API and at ingest (where it is counted as unreadable).
#[tokio::test]
async fn a_body_that_cannot_be_read_is_a_400_not_a_413() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            json!({"name": "n", "type": "none", "config": {}}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let ingest = source["ingestUrl"]
        .as_str()
        .unwrap_or("")
        .split(&server.url)
        .nth(1)
        .unwrap_or("")
        .to_owned();
    for path in ["/api/v1/app", ingest.as_str()] {
        let chunked = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
        );
        let (status, body) = raw_bytes(&server, chunked.as_bytes()).await;
        assert!(status.contains(" 400 "), "{path}: {status} {body}");
        assert_eq!(body["code"], "invalid_body", "{path}: {body}");
    }
    let id = source["id"].as_str().unwrap_or("");
    let (_, stats) = api.get(&format!("/ingest/api/v1/source/{id}/stats")).await;
    assert_eq!(stats["lastRejection"], "body unreadable", "{stats}");
}

/// Path parameters that are not UTF-8 once decoded, unknown routes, wrong
/// methods and the provider-facing ingest route: all JSON, with the status
/// the error deserves.
#[tokio::test]
async fn every_error_is_the_json_error_body() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let auth = format!("Bearer {TOKEN}");
    let (status, _, app) = raw(
        &server,
        Method::POST,
        "/api/v1/app",
        Some(&auth),
        Some(json!({"name": "a", "uid": "a"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let bad_paths = [
        (Method::GET, "/api/v1/app/%ff"),
        (Method::DELETE, "/api/v1/app/%ff"),
        (Method::GET, "/api/v1/app/a/endpoint/%ff"),
        (Method::GET, "/api/v1/app/%ff/endpoint/%C3%28"),
        (Method::GET, "/api/v1/app/a/msg/%ff"),
        (Method::GET, "/api/v1/app/a/attempt/msg/%ff"),
        (Method::GET, "/api/v1/app/a/msg/%ff/attempt/atmpt_1"),
        (Method::GET, "/api/v1/event-type/%ff"),
        (Method::GET, "/ingest/api/v1/source/%ff"),
        (Method::GET, "/ingest/api/v1/source/%ff/endpoint"),
    ];
    for (method, path) in bad_paths {
        let (status, content_type, body) =
            raw(&server, method.clone(), path, Some(&auth), None).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}"
        );
        assert_eq!(body["code"], "invalid_path", "{method} {path}: {body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains("UTF-8"),
            "{method} {path}: {body}"
        );
    }
    let others = [
        (Method::GET, "/nowhere", Some(&auth), 404, "not_found"),
        (
            Method::GET,
            "/api/v1/nowhere/%ff",
            Some(&auth),
            404,
            "not_found",
        ),
        (
            Method::PATCH,
            "/api/v1/health",
            None,
            405,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            "/api/v1/app",
            Some(&auth),
            405,
            "method_not_allowed",
        ),
        (Method::GET, "/ingest/%ff", None, 405, "method_not_allowed"),
        (Method::POST, "/ingest/%ff", None, 404, "not_found"),
        (Method::POST, "/ingest/%ff/a/%ff", None, 404, "not_found"),
        (
            Method::GET,
            "/api/v1/app/%ff",
            None,
            401,
            "authentication_failed",
        ),
    ];
    for (method, path, auth, want, code) in others {
        let (status, content_type, body) = raw(
            &server,
            method.clone(),
            path,
            auth.map(String::as_str),
            None,
        )
        .await;
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}"
        );
        assert_eq!(body["code"], code, "{method} {path}: {body}");
    }
}

/// The headers of a request signed at `at` by each scheme with a clock:
/// Standard Webhooks and Stripe (whose own libraries check only the age).
fn signed_headers(kind: &str, secret: &str, at: i64, body: &[u8]) -> Vec<(String, String)> {
    use hmac::{Hmac, Mac};
    match kind {
        "standard-webhooks" => {
            let key = switchyard_core::signing::EndpointSecret::parse(secret).unwrap();
            vec![
                ("webhook-id".into(), format!("msg_{at}")),
                ("webhook-timestamp".into(), at.to_string()),
                (
                    "webhook-signature".into(),
                    key.sign(&format!("msg_{at}"), at, body),
                ),
            ]
        }
        "stripe" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{at}.").as_bytes());
            mac.update(body);
            let sig: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            vec![("stripe-signature".into(), format!("t={at},v1={sig}"))]
        }
        other => panic!("no signer for {other}"),
    }
}

/// A correctly signed ingest request dated far in the future is refused like
/// a stale one (the README's "within 5 minutes", both ways), for every
/// verifier type with a signed time; a minute of skew is accepted.
#[tokio::test]
async fn a_far_future_signed_timestamp_is_refused_at_ingest() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let http = reqwest::Client::new();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let now = (switchyard_core::timefmt::now_ms() / 1000) as i64;
    for kind in ["standard-webhooks", "stripe"] {
        let (status, source) = api
            .post(
                "/ingest/api/v1/source",
                json!({"name": kind, "type": kind, "config": {"secret": secret}}),
            )
            .await;
        assert_eq!(status, 201, "{source}");
        let url = source["ingestUrl"].as_str().expect("ingestUrl").to_owned();
        for (at, want) in [
            (now + 3_600, 401),
            (now + 10 * 365 * 86_400, 401),
            (now - 3_600, 401),
            (now + 60, 200),
        ] {
            let body = format!(r#"{{"id":"evt_{at}","type":"t"}}"#);
            let mut req = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            for (k, v) in signed_headers(kind, secret, at, body.as_bytes()) {
                req = req.header(k, v);
            }
            let resp = req.send().await.expect("post");
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, want, "{kind} at now{:+}: {answer}", at - now);
            if want == 401 {
                assert_eq!(
                    answer["code"], "timestamp_out_of_tolerance",
                    "{kind}: {answer}"
                );
            }
        }
    }
}

/// Text holding NUL (U+0000) is refused where it enters, naming the field,
/// on every backend alike (PostgreSQL cannot store it in text and answered
/// 500); inside a message's payload, which is stored as bytes, it is kept.
#[tokio::test]
async fn text_holding_nul_is_refused_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let auth = format!("Bearer {TOKEN}");
    let call = |method: Method, path: String, body: Option<Value>| {
        let (server, auth) = (&server, auth.clone());
        async move { raw(server, method, &path, Some(&auth), body).await }
    };
    let (status, _, body) = call(
        Method::POST,
        "/api/v1/app".into(),
        Some(json!({"name": "a\u{0}b"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]), "{body}");
    let (status, _, app) = call(
        Method::POST,
        "/api/v1/app".into(),
        Some(json!({"name": "ok", "metadata": {"k": "v"}})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap().to_owned();
    for (body, loc) in [
        (
            json!({"eventType": "a.b", "payload": {}, "eventId": "e\u{0}"}),
            json!(["body", "eventId"]),
        ),
        (
            json!({"eventType": "a.b", "payload": {}, "tags": ["ok", "t\u{0}"]}),
            json!(["body", "tags", "1"]),
        ),
    ] {
        let (status, _, answer) = call(
            Method::POST,
            format!("/api/v1/app/{app_id}/msg"),
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["detail"][0]["loc"], loc, "{answer}");
    }
    let (status, _, answer) = call(
        Method::POST,
        format!("/api/v1/app/{app_id}/endpoint"),
        Some(json!({"url": "http://127.0.0.1:9/x", "description": "d\u{0}"})),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "description"]));
    // In a payload it is data, kept as sent.
    let (status, _, msg) = call(
        Method::POST,
        format!("/api/v1/app/{app_id}/msg"),
        Some(json!({"eventType": "a.b", "payload": {"k": "v\u{0}"}})),
    )
    .await;
    assert_eq!(status, 202, "{msg}");
    assert_eq!(msg["payload"], json!({"k": "v\u{0}"}));
    // In a path or a query: refused before any lookup.
    let (status, _, answer) = call(Method::GET, "/api/v1/app/%00".into(), None).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (400, json!("invalid_path")),
        "{answer}"
    );
    let (status, _, answer) = call(
        Method::GET,
        format!("/api/v1/app/{app_id}/msg?channel=%00"),
        None,
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["query", "channel"]));
}
