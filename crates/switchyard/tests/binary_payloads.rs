//! Payloads are bytes (issue 11, item 3): a correctly signed incoming body
//! that is not UTF-8 is stored and delivered byte for byte, and the message
//! API shows it faithfully. It used to be refused with 415 after its
//! signature had passed, so the provider retried it forever.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use common::{Server, TOKEN};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STRIPE_SECRET: &str = "whsec_a1b2c3d4a1b2c3d4a1b2c3d4a1b2c3d4";

/// Bodies and Content-Types that reached the receiver.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Bytes, String)>>>);

async fn record(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    r.0.lock().unwrap().push((body, content_type));
    StatusCode::OK
}

async fn receiver() -> (Received, String) {
    let r = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .fallback(axum::routing::any(record))
        .with_state(r.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, url)
}

/// Stripe's scheme over the body's bytes: `t=<secs>,v1=<hex HMAC-SHA256 of "t." + body>`.
fn stripe_signature(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(STRIPE_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Stripe source with `settings` and one destination; its id and ingest URL.
async fn stripe_source(
    api: &common::Api,
    settings: serde_json::Value,
    destination: &str,
) -> (String, String) {
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            json!({"name": "legacy", "type": "stripe", "config": {"secret": STRIPE_SECRET},
                   "settings": settings}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source_id = source["id"].as_str().unwrap().to_owned();
    let ingest_url = source["ingestUrl"].as_str().unwrap().to_owned();
    let (status, dest) = api
        .post(
            &format!("/ingest/api/v1/source/{source_id}/endpoint"),
            json!({ "url": destination }),
        )
        .await;
    assert_eq!(status, 201, "{dest}");
    (source_id, ingest_url)
}

#[tokio::test]
async fn a_signed_body_that_is_not_utf8_is_stored_and_delivered_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = server.client();
    let (received, destination) = receiver().await;
    let (source_id, ingest_url) = stripe_source(
        &api,
        json!({"eventType": {"value": "order.created"}}),
        &destination,
    )
    .await;

    // The example, an ISO-8859-1 XML order from a legacy system, and
    // a binary body with NUL and every high byte.
    let latin1: &[u8] =
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><order><name>M\xfcller Stra\xdfe</name></order>";
    let binary: Vec<u8> = (0..=255u8).rev().chain([0, 0xff, 0xfe]).collect();
    let cases: [(&[u8], &str); 2] = [
        (latin1, "application/xml; charset=ISO-8859-1"),
        (&binary, "application/octet-stream"),
    ];
    let http = reqwest::Client::new();
    let mut message_ids = Vec::new();
    for (body, content_type) in cases {
        let answer = http
            .post(&ingest_url)
            .header("content-type", content_type)
            .header("stripe-signature", stripe_signature(body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let reply: serde_json::Value = answer.json().await.unwrap_or_default();
        assert_eq!(status, 200, "{content_type}: {reply}");
        message_ids.push(reply["id"].as_str().unwrap().to_owned());
    }

    // Delivered as received, with the provider's Content-Type.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.0.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = received.0.lock().unwrap().clone();
    got.sort_by_key(|(body, _)| body.len());
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0].0[..], latin1);
    assert_eq!(got[0].1, "application/xml; charset=ISO-8859-1");
    assert_eq!(&got[1].0[..], &binary[..]);
    assert_eq!(got[1].1, "application/octet-stream");

    // The message API shows the bytes in base64 under a marker key, and the
    // content route returns them as they are.
    for ((body, content_type), id) in cases.iter().zip(&message_ids) {
        let (status, msg) = api.get(&format!("/api/v1/app/{source_id}/msg/{id}")).await;
        assert_eq!(status, 200, "{msg}");
        let shown = msg["payload"]["$rawBodyBase64"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(shown)
                .unwrap(),
            *body,
            "{msg}"
        );
        let content = http
            .get(format!(
                "{}/api/v1/app/{source_id}/msg/{id}/content",
                server.url
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(content.status().as_u16(), 200);
        assert_eq!(
            content.headers()["content-type"].to_str().unwrap(),
            *content_type
        );
        assert_eq!(&content.bytes().await.unwrap()[..], *body);
    }
}

/// Found by a hostile review after the first fix: signed bodies that merely
/// start like JSON, JSON in a declared legacy charset, and bodies without a
/// Content-Type are taken, delivered as sent and shown as an object; a 204
/// reply carries no body.
#[tokio::test]
async fn signed_bodies_in_other_charsets_or_shapes_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = server.client();
    let (received, destination) = receiver().await;
    let (source_id, ingest_url) = stripe_source(
        &api,
        json!({"response": {"status": 204, "body": "ignored"}}),
        &destination,
    )
    .await;
    let cases: [(&[u8], Option<&str>, &str); 4] = [
        (
            b"{\"name\":\"M\xfcller\",\"type\":\"order.created\"}",
            Some("application/json; charset=iso-8859-1"),
            "application/json; charset=iso-8859-1",
        ),
        (
            b"{\x00\x01\xff\xfe",
            Some("application/octet-stream"),
            "application/octet-stream",
        ),
        // No Content-Type: not JSON, so not said to be.
        (b"\xff\xfe\x00raw", None, "application/octet-stream"),
        // JSON, but not an object: shown wrapped, delivered as sent.
        (b"[1,2]", Some("application/json"), "application/json"),
    ];
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for (body, content_type, _) in cases {
        let mut request = http
            .post(&ingest_url)
            .header("stripe-signature", stripe_signature(body))
            .body(body.to_vec());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 204, "{content_type:?}");
        assert_eq!(answer.headers().get("content-length"), None);
        assert!(answer.bytes().await.unwrap().is_empty());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.0.lock().unwrap().len() < cases.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.0.lock().unwrap().clone();
    assert_eq!(got.len(), cases.len());
    for (body, _, delivered_as) in cases {
        assert!(
            got.iter()
                .any(|(b, ct)| &b[..] == body && ct == delivered_as),
            "{body:?} as {delivered_as}: {got:?}"
        );
    }
    // Every payload shows as an object, as the SDKs type it.
    let (status, list) = api
        .get(&format!("/api/v1/app/{source_id}/msg?with_content=true"))
        .await;
    assert_eq!(status, 200, "{list}");
    for msg in list["data"].as_array().unwrap() {
        assert!(msg["payload"].is_object(), "{msg}");
        ids.push(msg["payload"].clone());
    }
    assert!(ids.contains(&json!({"$rawBody": "[1,2]"})), "{ids:?}");
}
