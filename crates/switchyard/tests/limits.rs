//! Limits on what a client can make large (issue 13): each over-limit
//! request against the real binary is refused with a 4xx whose body names
//! the field and the limit, and the same request at the limit is taken.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Map, Value, json};

fn pairs(n: usize, value_len: usize) -> Value {
    let map: Map<String, Value> = (0..n)
        .map(|i| (format!("x-k{i}"), json!("v".repeat(value_len))))
        .collect();
    Value::Object(map)
}

fn list(n: usize, prefix: &str) -> Value {
    json!((0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>())
}

/// Asserts a 422 naming `field` with a message that gives the limit.
fn refused(status: u16, body: &Value, field: &str, what: &str) {
    assert_eq!(status, 422, "{what}: {body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", field]),
        "{what}: {body}"
    );
    let msg = body["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("at most"),
        "{what}: the limit is named: {body}"
    );
}

#[tokio::test]
async fn over_limit_requests_are_refused_naming_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[("SWITCHYARD_MAX_ENDPOINTS_PER_APP", "3")]);
    let api = server.client();
    let (status, app) = api.post("/api/v1/app", json!({ "name": "limits" })).await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap_or_default().to_owned();
    let url = "https://example.com/hook";
    let endpoints = format!("/api/v1/app/{app_id}/endpoint");

    // (what, method, path, body, field): each body is over one limit.
    let cases: Vec<(&str, Method, String, Value, &str)> = vec![
        (
            "51 custom headers",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "headers": pairs(51, 1) }),
            "headers",
        ),
        (
            "16 KiB of custom headers",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "headers": pairs(2, 9_000) }),
            "headers",
        ),
        (
            "257 event types",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "filterTypes": list(257, "t.e") }),
            "filterTypes",
        ),
        (
            "257 event types, by their other name",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "eventTypes": list(257, "t.e") }),
            "eventTypes",
        ),
        (
            "a 17 KiB payload filter",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "payloadFilter": { "a": "x".repeat(17_000) } }),
            "payloadFilter",
        ),
        (
            "101 metadata entries on an endpoint",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "metadata": pairs(101, 1) }),
            "metadata",
        ),
        (
            "17 KiB of metadata on an application",
            Method::POST,
            "/api/v1/app".into(),
            json!({ "name": "m", "metadata": pairs(2, 9_000) }),
            "metadata",
        ),
        (
            "101 metadata entries on an application patch",
            Method::PATCH,
            format!("/api/v1/app/{app_id}"),
            json!({ "metadata": pairs(101, 1) }),
            "metadata",
        ),
        (
            "101 metadata entries on a source",
            Method::POST,
            "/ingest/api/v1/source".into(),
            json!({ "name": "s", "type": "none", "metadata": pairs(101, 1) }),
            "metadata",
        ),
        (
            "an endpoint description of 4097 characters",
            Method::POST,
            endpoints.clone(),
            json!({ "url": url, "description": "é".repeat(4097) }),
            "description",
        ),
        (
            "event-type schemas of 300 KB",
            Method::POST,
            "/api/v1/event-type".into(),
            json!({ "name": "big.schema", "description": "d",
                    "schemas": { "1": { "description": "x".repeat(300_000) } } }),
            "schemas",
        ),
        (
            "26 feature flags",
            Method::POST,
            "/api/v1/event-type".into(),
            json!({ "name": "flags", "description": "d", "featureFlags": list(26, "f") }),
            "featureFlags",
        ),
        (
            "a source config of 70 KB",
            Method::POST,
            "/ingest/api/v1/source".into(),
            json!({ "name": "s", "type": "none", "config": { "x": "y".repeat(70_000) } }),
            "config",
        ),
        (
            "a tag of 129 characters",
            Method::POST,
            format!("/api/v1/app/{app_id}/msg"),
            json!({ "eventType": "a.b", "payload": {}, "tags": ["é".repeat(129)] }),
            "tags",
        ),
        (
            "21 tags on a message",
            Method::POST,
            format!("/api/v1/app/{app_id}/msg"),
            json!({ "eventType": "a.b", "payload": {}, "tags": list(21, "t") }),
            "tags",
        ),
    ];
    for (what, method, path, body, field) in cases {
        let (status, answer) = api.call(method, &path, Some(body)).await;
        refused(status, &answer, field, what);
    }

    // At the limits: taken.
    let (status, ep) = api
        .post(
            &endpoints,
            json!({ "url": url, "headers": pairs(50, 1), "filterTypes": list(256, "t.e"),
                    "metadata": pairs(100, 1) }),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap_or_default().to_owned();
    // Adding one header to the 50 through PATCH …/headers goes over.
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("{endpoints}/{ep_id}/headers"),
            Some(json!({ "headers": { "x-one-more": "v" } })),
        )
        .await;
    refused(status, &body, "headers", "a 51st header by PATCH");
    let (status, msg) = api
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({ "eventType": "a.b", "payload": {}, "tags": list(20, "t") }),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    // Tags are counted in characters: 128 two-byte ones are taken.
    let (status, msg) = api
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            json!({ "eventType": "a.b", "payload": {}, "tags": ["é".repeat(128)] }),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    // One header name in two cases would be sent twice: refused.
    let (status, body) = api
        .post(
            &endpoints,
            json!({ "url": url, "headers": { "X-Dup": "a", "x-dup": "b" } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("twice"), "{body}");
    // A repeated event type is stored once.
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("{endpoints}/{ep_id}"),
            Some(json!({ "filterTypes": ["x.y", "x.y", "z.*"] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filterTypes"], json!(["x.y", "z.*"]), "{body}");

    // Rotated-out secrets in their grace period: 10, then the 11th rotation
    // that would keep one more is refused; one without a grace is taken.
    let rotate = format!("{endpoints}/{ep_id}/secret/rotate");
    for i in 0..10 {
        let (status, body) = api.post(&rotate, json!({})).await;
        assert!(status < 300, "rotation {i}: {body}");
    }
    let (status, body) = api.post(&rotate, json!({})).await;
    refused(status, &body, "key", "an 11th secret in its grace");
    let (status, body) = api.post(&rotate, json!({ "gracePeriodSeconds": 0 })).await;
    assert!(status < 300, "a rotation without a grace: {body}");

    // Endpoints per application (3 here): the 4th is refused with 409.
    for _ in 0..2 {
        let (status, body) = api.post(&endpoints, json!({ "url": url })).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = api.post(&endpoints, json!({ "url": url })).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.to_string()
            .contains("SWITCHYARD_MAX_ENDPOINTS_PER_APP"),
        "{body}"
    );
}

/// https-only mode (`SWITCHYARD_HTTPS_ONLY`): an http endpoint is refused
/// when created or changed, and one stored before the mode was turned on
/// gets no request: its delivery fails at once, saying why.
#[tokio::test]
async fn https_only_mode_refuses_http_endpoints_and_sends_nothing_to_them() {
    let data = tempfile::tempdir().unwrap();
    let (rx, base) = Receiver::start().await;
    let app_id = {
        let server = Server::start(data.path(), &[]);
        let api = server.client();
        let app_id = app_with_endpoint(&api, &format!("{base}/plain")).await;
        drop(server);
        app_id
    };
    let server = Server::start(data.path(), &[("SWITCHYARD_HTTPS_ONLY", "true")]);
    let api = server.client();
    let endpoints = format!("/api/v1/app/{app_id}/endpoint");
    let (status, body) = api
        .post(&endpoints, json!({ "url": format!("{base}/new") }))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "url"]), "{body}");
    let (status, ep) = api
        .post(
            &endpoints,
            json!({ "url": "https://example.com/hook", "disabled": true }),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap_or_default().to_owned();
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("{endpoints}/{ep_id}"),
            Some(json!({ "url": format!("{base}/changed") })),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let msg = send_message(&api, &app_id).await;
    // The restarted node takes the partitions once the killed one's
    // leases run out (10 s).
    let mut failed = Value::Null;
    for _ in 0..600 {
        let (_, attempts) = api
            .get(&format!("/api/v1/app/{app_id}/attempt/msg/{msg}"))
            .await;
        if attempts["data"].as_array().is_some_and(|a| !a.is_empty()) {
            failed = attempts["data"][0].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(failed["status"], json!(2), "{failed}");
    // An http endpoint stored before can still be changed otherwise
    // (disabled, described), found by a review.
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!(
                "/api/v1/app/{app_id}/endpoint/{}",
                failed["endpointId"].as_str().unwrap_or_default()
            ),
            Some(json!({ "disabled": true, "description": "old" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        failed["response"]
            .as_str()
            .unwrap_or_default()
            .contains("https-only"),
        "{failed}"
    );
    assert_eq!(rx.count(), 0, "nothing was sent");
}
