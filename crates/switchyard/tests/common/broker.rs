//! What the broker-source tests share: an application with an endpoint, the
//! signature check, and what arrived at the receiver by event.

use super::{Api, Receiver};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Creates the application `shop` with an endpoint at `url`; returns the
/// endpoint's signing secret.
pub async fn shop_with_endpoint(api: &Api, url: &str) -> String {
    let (status, app) = api
        .post(
            "/api/v1/app",
            serde_json::json!({"name": "shop", "uid": "shop"}),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, ep) = api
        .post("/api/v1/app/shop/endpoint", serde_json::json!({"url": url}))
        .await;
    assert_eq!(status, 201, "{ep}");
    let ep = ep["id"].as_str().unwrap().to_owned();
    let (_, secret) = api
        .get(&format!("/api/v1/app/shop/endpoint/{ep}/secret"))
        .await;
    secret["key"].as_str().unwrap().to_owned()
}

/// Standard Webhooks `v1`: HMAC-SHA256 of `id.timestamp.body`.
pub fn signature_ok(secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", get("webhook-id"), get("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    get("webhook-signature")
        .split(' ')
        .any(|s| s == format!("v1,{expected}"))
}

/// Event ids (the payload's `e`) seen at the receiver, each with the
/// message ids that carried it; every delivery's signature is checked.
pub fn arrived(rx: &Receiver, secret: &str) -> HashMap<String, HashSet<String>> {
    let mut by_event: HashMap<String, HashSet<String>> = HashMap::new();
    for (headers, body) in rx.bodies.lock().unwrap().iter() {
        assert!(signature_ok(secret, headers, body), "bad signature");
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        let event = payload["e"].as_str().unwrap_or_default().to_owned();
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        by_event.entry(event).or_default().insert(id);
    }
    by_event
}

/// Polls `done` every 100 ms; fails naming `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The envelope of event `e{i}`: its payload is `{"e": "e{i}"}`.
pub fn envelope(i: usize) -> String {
    serde_json::json!({
        "eventType": "order.paid",
        "eventId": format!("e{i}"),
        "payload": {"e": format!("e{i}")},
    })
    .to_string()
}
