//! Issue 10, item 1: a stored JSON Schema can't make the server do unbounded
//! work, and a stop signal ends the process even while a request is stuck.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;
use switchyard_store::sqlite::Durability;
use switchyard_store::sqlite::SqliteStore;
use switchyard_store::{EventType, EventTypeStore};

fn loc(body: &Value) -> Vec<String> {
    body["detail"][0]["loc"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_that_loop_in_place_are_refused_with_the_location() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    // The input.
    let (status, body) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "loop", "description": "d", "schemas": {"1": {"allOf": [{"$ref": "#"}]}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(loc(&body), ["body", "schemas", "1"], "{body}");
    let msg = body["detail"][0]["msg"].as_str().unwrap_or("");
    assert!(msg.contains("cycle") && msg.contains("#/allOf/0"), "{msg}");

    // The other members of the kind, on create, upsert and patch.
    let refused = [
        json!({"$ref": "#"}),
        json!({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/b"}]}, "b": {"not": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}),
        json!({"$ref": "https://example.com/schema.json"}),
        json!({"type": "string", "pattern": "^(a|b)\\1$"}),
    ];
    for (i, schema) in refused.iter().enumerate() {
        let (status, body) = api
            .post(
                "/api/v1/event-type",
                json!({"name": format!("bad{i}"), "description": "d", "schemas": {"1": schema}}),
            )
            .await;
        assert_eq!(status, 422, "{schema}: {body}");
    }
    let (status, _) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "ok", "description": "d"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = api
        .call(
            reqwest::Method::PATCH,
            "/api/v1/event-type/ok",
            Some(json!({"schemas": {"2": {"allOf": [{"$ref": "#"}]}}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(loc(&body), ["body", "schemas", "2"], "{body}");
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/event-type/ok",
            Some(json!({"description": "d", "schemas": {"1": {"not": {"$ref": "#"}}}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_stored_before_the_rules_refuses_its_messages_at_once() {
    let data = tempfile::tempdir().unwrap();
    {
        let store =
            SqliteStore::open(data.path().join("switchyard.db"), Durability::Normal).unwrap();
        store
            .insert_event_type(EventType {
                name: switchyard_core::EventTypeName::parse("loop").unwrap(),
                description: "d".into(),
                archived: false,
                deprecated: false,
                schemas: Some(json!({"1": {"allOf": [{"$ref": "#"}]}})),
                feature_flags: None,
                group_name: None,
                created_at: 1,
                updated_at: 1,
            })
            .await
            .unwrap();
    }
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (status, _) = api
        .post("/api/v1/app", json!({"name": "a", "uid": "a"}))
        .await;
    assert_eq!(status, 201);
    // Before the fix this request never answered and memory grew without bound.
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        api.post(
            "/api/v1/app/a/msg",
            json!({"eventType": "loop", "payload": {"a": 1}}),
        ),
    )
    .await
    .expect("message create must answer");
    assert_eq!(answer.0, 422, "{}", answer.1);
    assert_eq!(loc(&answer.1), ["body", "eventType"], "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_too_costly_for_its_schema_is_refused_not_checked() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    // Legitimate and accepted: recursion that descends into the payload. The
    // validator's work doubles with each level of `a`, though.
    let schema = json!({"type": "object", "allOf": [
        {"properties": {"a": {"$ref": "#"}}},
        {"properties": {"a": {"$ref": "#"}}, "additionalProperties": false}
    ]});
    let (status, body) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "tree", "description": "d", "schemas": {"1": schema}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    api.post("/api/v1/app", json!({"name": "a", "uid": "a"}))
        .await;
    let mut payload = json!({});
    for _ in 0..3 {
        payload = json!({"a": payload});
    }
    let (status, body) = api
        .post(
            "/api/v1/app/a/msg",
            json!({"eventType": "tree", "payload": payload}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    for _ in 0..60 {
        payload = json!({"a": payload});
    }
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(30),
        api.post(
            "/api/v1/app/a/msg",
            json!({"eventType": "tree", "payload": payload}),
        ),
    )
    .await
    .expect("message create must answer");
    assert_eq!(status, 422, "{body}");
    assert_eq!(loc(&body), ["body", "payload"], "{body}");
    // A violation is still reported with its location.
    let (status, body) = api
        .post(
            "/api/v1/app/a/msg",
            json!({"eventType": "tree", "payload": {"a": {"x/y": 1}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(loc(&body), ["body", "payload", "a"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_process_even_with_a_request_that_never_finishes() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    // A client that announces a body and never sends it.
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stuck,
        "POST /api/v1/app HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"name\":"
    )
    .unwrap();
    stuck.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(libc::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "switchyard still running 60 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("exited with {status} after SIGTERM with a stuck request");
    drop(stuck);
}
