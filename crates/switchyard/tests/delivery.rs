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
    for url in [
        format!("{base}/blocked"),
        base.replace("127.0.0.1", "localhost") + "/blocked",
    ] {
        let app_id = app_with_endpoint(&api, &url).await;
        let msg_id = send_message(&api, &app_id).await;
        let attempt = first_attempt(&api, &app_id, &msg_id).await;
        assert_eq!(attempt["status"], 2, "{attempt}");
        assert_eq!(attempt["responseStatusCode"], 0);
        assert!(
            attempt["response"].as_str().unwrap().contains("SSRF guard"),
            "{attempt}"
        );
    }
    assert_eq!(receiver.count(), 0, "nothing may reach a blocked address");
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
