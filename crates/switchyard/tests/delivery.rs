//! Delivery behaviour seen from outside: the SSRF guard and attempt records.

mod common;

use common::*;
use std::time::Duration;

async fn first_attempt(api: &Api, app_id: &str, msg_id: &str) -> serde_json::Value {
    for _ in 0..100 {
        let (_, attempts) = api
            .get(&format!("/api/v1/app/{app_id}/attempt/msg/{msg_id}"))
            .await;
        if let Some(first) = attempts["data"].as_array().and_then(|a| a.last()) {
            return first.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no attempt recorded for {msg_id}");
}

#[tokio::test]
async fn ssrf_guard_refuses_loopback_unless_allowed() {
    let data = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start().await;
    // An empty allow-list: loopback is internal and must be refused.
    let server = Server::start(
        data.path(),
        &[
            ("SWITCHYARD_ALLOWED_NETWORKS", ""),
            ("SWITCHYARD_RETRY_SCHEDULE", ""),
        ],
    );
    let api = server.client();
    let port = base.rsplit(':').next().unwrap();
    for url in [
        format!("{base}/blocked"),
        base.replace("127.0.0.1", "localhost") + "/blocked",
        // Other spellings of 127.0.0.1: decimal, hex, octal, short form.
        format!("http://2130706433:{port}/blocked"),
        format!("http://0x7f.1:{port}/blocked"),
        format!("http://0177.0.0.1:{port}/blocked"),
        format!("http://127.1:{port}/blocked"),
        // IPv6 addresses that carry it.
        format!("http://[::ffff:127.0.0.1]:{port}/blocked"),
        format!("http://[64:ff9b::127.0.0.1]:{port}/blocked"),
        format!("http://[::127.0.0.1]:{port}/blocked"),
        format!("http://[2002:7f00:1::]:{port}/blocked"),
    ] {
        let app_id = app_with_endpoint(&api, &url).await;
        let msg_id = send_message(&api, &app_id).await;
        let attempt = first_attempt(&api, &app_id, &msg_id).await;
        assert_eq!(attempt["status"], 2, "{attempt}");
        assert_eq!(attempt["responseStatusCode"], 0);
        assert!(
            attempt["response"].as_str().unwrap().contains("SSRF guard"),
            "{url}: {attempt}"
        );
    }
    assert_eq!(receiver.count(), 0, "nothing may reach a blocked address");
}

/// Accepts connections, counts them and answers every request with 200, as
/// an open forward proxy would.
async fn proxy_stub() -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (hits, url)
}

#[tokio::test]
async fn proxies_in_the_environment_are_never_used() {
    use std::sync::atomic::Ordering;
    let (hits, proxy) = proxy_stub().await;
    let (receiver, base) = Receiver::start().await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let mut env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, proxy.as_str()))
    .collect();
    // An inherited NO_PROXY could exempt localhost and hide the fault.
    env.extend([
        ("NO_PROXY", ""),
        ("no_proxy", ""),
        ("SWITCHYARD_RETRY_SCHEDULE", ""),
    ]);

    // No allowed networks: the guard refuses, and no proxy decides otherwise.
    let data = tempfile::tempdir().unwrap();
    let mut strict = env.clone();
    strict.push(("SWITCHYARD_ALLOWED_NETWORKS", ""));
    let server = Server::start(data.path(), &strict);
    let api = server.client();
    for url in [
        format!("http://localhost:{port}/x"),
        format!("https://localhost:{port}/x"),
        format!("http://127.0.0.1:{port}/x"),
    ] {
        let app_id = app_with_endpoint(&api, &url).await;
        let msg_id = send_message(&api, &app_id).await;
        let attempt = first_attempt(&api, &app_id, &msg_id).await;
        assert_eq!(attempt["status"], 2, "{url}: {attempt}");
        assert_eq!(attempt["responseStatusCode"], 0, "{url}: {attempt}");
        assert!(
            attempt["response"].as_str().unwrap().contains("SSRF guard"),
            "{url}: {attempt}"
        );
    }
    drop(server);

    // Loopback allowed: the delivery goes straight to the receiver.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &env);
    let api = server.client();
    let app_id = app_with_endpoint(&api, &format!("http://localhost:{port}/direct")).await;
    let msg_id = send_message(&api, &app_id).await;
    receiver
        .assert_all_arrive(&["/direct".to_owned()], &[msg_id], Duration::from_secs(10))
        .await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the proxy was used");
}

#[tokio::test]
async fn urls_that_can_never_be_delivered_are_refused_when_endpoints_are_saved() {
    use reqwest::Method;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (_, app) = api
        .post("/api/v1/app", serde_json::json!({ "name": "urls" }))
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            serde_json::json!({"name": "s", "type": "twilio", "config": {"secret": "tw"}}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source_id = source["id"].as_str().unwrap().to_owned();
    let collections = [
        format!("/api/v1/app/{app_id}/endpoint"),
        format!("/ingest/api/v1/source/{source_id}/endpoint"),
    ];
    let refused = |status: u16, body: &serde_json::Value, problem: &str, what: &str| {
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            serde_json::json!(["body", "url"]),
            "{what}: {body}"
        );
        let msg = body["detail"][0]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(problem), "{what}: {body}");
    };
    for collection in &collections {
        for (url, problem) in [
            ("http://[fe80::1%25lo]/", "IPv6 zone"),
            ("http://[fe80::1%25lo]:19500/x", "IPv6 zone"),
            ("http://example.com:0/", "port"),
            ("gopher://example.com/", "http://"),
            ("http://[::1/", "not valid"),
        ] {
            let (status, body) = api
                .post(collection, serde_json::json!({ "url": url }))
                .await;
            refused(status, &body, problem, &format!("POST {collection} {url}"));
        }
        // Updates are held to the same rule.
        let (status, ep) = api
            .post(
                collection,
                serde_json::json!({ "url": "http://[fe80::1]:19500/x" }),
            )
            .await;
        assert_eq!(
            status, 201,
            "internal addresses are judged at delivery: {ep}"
        );
        let one = format!("{collection}/{}", ep["id"].as_str().unwrap());
        let zone = serde_json::json!({ "url": "http://[fe80::1%25eth0]/" });
        let (status, body) = api.call(Method::PATCH, &one, Some(zone.clone())).await;
        refused(status, &body, "IPv6 zone", &format!("PATCH {one}"));
        let (status, body) = api.call(Method::PUT, &one, Some(zone)).await;
        refused(status, &body, "IPv6 zone", &format!("PUT {one}"));
        let (_, kept) = api.get(&one).await;
        assert_eq!(kept["url"], "http://[fe80::1]:19500/x");
    }
}

#[tokio::test]
async fn redirects_count_as_failures_and_are_not_followed() {
    use axum::http::{StatusCode, header};
    let data = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_base = format!("http://{}", listener.local_addr().unwrap());
    let target = format!("{base}/after-redirect");
    let app = axum::Router::new().route(
        "/hop",
        axum::routing::post(move || {
            let target = target.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, target)]) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let server = Server::start(data.path(), &[("SWITCHYARD_RETRY_SCHEDULE", "")]);
    let api = server.client();
    let app_id = app_with_endpoint(&api, &format!("{redirect_base}/hop")).await;
    let msg_id = send_message(&api, &app_id).await;
    let attempt = first_attempt(&api, &app_id, &msg_id).await;
    assert_eq!(attempt["responseStatusCode"], 302);
    assert_eq!(attempt["status"], 2);
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn generated_admin_token_is_printed_once_and_required() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    let out = cmd
        .args(["rotate-token"])
        .env("SWITCHYARD_DATA_DIR", data.path())
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("sk_"));
    let server = Server::start(data.path(), &[("SWITCHYARD_ADMIN_TOKEN", "")]);
    let http = reqwest::Client::new();
    let ok = http
        .get(format!("{}/api/v1/app", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = http
        .get(format!("{}/api/v1/app", server.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
}

#[tokio::test]
async fn retry_after_lengthens_the_wait_and_timeouts_fail_the_attempt() {
    use axum::http::{StatusCode, header};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let data = tempfile::tempdir().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = arrivals.clone();
    let app = axum::Router::new()
        .route(
            "/busy/{style}",
            axum::routing::post(
                move |axum::extract::Path(style): axum::extract::Path<String>| {
                    let seen = seen.clone();
                    async move {
                        let mut seen = seen.lock().unwrap();
                        seen.push((style.clone(), Instant::now()));
                        if seen.iter().filter(|(s, _)| *s == style).count() > 1 {
                            return StatusCode::OK.into_response();
                        }
                        // Both forms RFC 9110 allows: seconds, or a date.
                        let retry_after = match style.as_str() {
                            "seconds" => "3".to_string(),
                            _ => httpdate::fmt_http_date(
                                std::time::SystemTime::now() + Duration::from_secs(4),
                            ),
                        };
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::RETRY_AFTER, retry_after)],
                        )
                            .into_response()
                    }
                },
            ),
        )
        .route(
            "/slow",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                StatusCode::OK
            }),
        );
    use axum::response::IntoResponse;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let server = Server::start(
        data.path(),
        &[
            ("SWITCHYARD_RETRY_SCHEDULE", "1"),
            ("SWITCHYARD_REQUEST_TIMEOUT_SECS", "1"),
        ],
    );
    let api = server.client();

    for style in ["seconds", "date"] {
        let app_id = app_with_endpoint(&api, &format!("{base}/busy/{style}")).await;
        let msg_id = send_message(&api, &app_id).await;
        let mut codes = Vec::new();
        for _ in 0..100 {
            let (_, attempts) = api
                .get(&format!("/api/v1/app/{app_id}/attempt/msg/{msg_id}"))
                .await;
            codes = attempts["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["responseStatusCode"].as_i64().unwrap())
                .collect();
            if codes.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(codes, vec![200, 503], "{style}");
        let times: Vec<Instant> = arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == style)
            .map(|(_, t)| *t)
            .collect();
        let gap = times[1] - times[0];
        // The schedule says 1 s; a Retry-After of 3 s (or a date at least 3 s
        // ahead, dates having whole seconds) must hold the retry back.
        assert!(
            gap >= Duration::from_millis(2_500),
            "{style}: retried after {gap:?}"
        );
    }

    let app_id = app_with_endpoint(&api, &format!("{base}/slow")).await;
    let msg_id = send_message(&api, &app_id).await;
    let attempt = first_attempt(&api, &app_id, &msg_id).await;
    assert_eq!(attempt["responseStatusCode"], 0);
    assert!(
        attempt["response"].as_str().unwrap().contains("timed out"),
        "{attempt}"
    );
}
