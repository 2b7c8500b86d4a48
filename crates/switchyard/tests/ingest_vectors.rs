//! Every signature vector in `../shared/vectors/signatures.json` through the
//! real ingest route: the router served on loopback over HTTP, a source per
//! vector created through the API, the vector's request posted as-is. The
//! clock is pinned to each vector's `now`, so timestamp tolerance is tested
//! exactly as the vector states it.

use serde_json::{Value, json};
use std::sync::Arc;
use switchyard_api::{AppState, router, token_hash};
use switchyard_core::clock::ManualClock;
use switchyard_engine::{Engine, EngineConfig};
use switchyard_store::sqlite::{Durability, SqliteStore};

const TOKEN: &str = "vector-token";

#[path = "../../core/tests/support/vectors_file.rs"]
mod vectors_file;
use vectors_file::vectors;

async fn serve(clock: Arc<ManualClock>) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("v.db"), Durability::Normal).expect("sqlite");
    let config = EngineConfig {
        clock,
        ..EngineConfig::default()
    };
    let engine = Engine::start(Arc::new(store), config)
        .await
        .expect("engine");
    let app = router(AppState {
        engine,
        admin_token_sha256: token_hash(TOKEN),
        max_body_bytes: 1 << 20,
        public_url: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, dir)
}

#[tokio::test]
async fn every_vector_through_the_ingest_route() {
    let clock = Arc::new(ManualClock::starting_now());
    let (base, _dir) = serve(clock.clone()).await;
    let http = reqwest::Client::new();
    let mut checked = 0;
    for v in vectors() {
        let name = v["name"].as_str().expect("name");
        let scheme = v["scheme"].as_str().expect("scheme");
        let secret = v["secret"].as_str().expect("secret");
        let kind = if scheme == "zoom-url-validation" {
            "zoom"
        } else {
            scheme
        };
        let mut settings = json!({});
        // A null tolerance means the vector expects no clock check at all.
        settings["toleranceSeconds"] = v["tolerance_s"].clone();
        let mut query = None;
        if let Some(url) = v["url"].as_str() {
            let (signed, q) = url
                .split_once('?')
                .map_or((url, None), |(u, q)| (u, Some(q)));
            settings["signedUrl"] = json!(signed);
            query = q.map(str::to_owned);
        }
        let created = http
            .post(format!("{base}/ingest/api/v1/source"))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "type": kind, "config": {"secret": secret}, "settings": settings}))
            .send()
            .await
            .expect("create source");
        assert_eq!(
            created.status(),
            201,
            "{name}: {}",
            created.text().await.unwrap_or_default()
        );
        let source: Value = created.json().await.expect("source json");
        let mut url = format!(
            "{base}/ingest/{}",
            source["ingestUrl"]
                .as_str()
                .and_then(|u| u.rsplit('/').next())
                .expect("token")
        );
        if let Some(q) = query {
            url = format!("{url}?{q}");
        }
        let now_secs = v["now"].as_u64().unwrap_or(1_700_000_000);
        clock.set(now_secs * 1000);
        let body = v["body"].as_str().expect("body").to_owned();
        let mut request = http.post(&url).body(body.clone());
        let mut headers: Vec<(String, String)> = v["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if scheme == "zoom-url-validation" {
            // Zoom signs its URL validation requests like any other event.
            let ts = now_secs.to_string();
            headers.push(("x-zm-request-timestamp".into(), ts.clone()));
            headers.push((
                "x-zm-signature".into(),
                format!(
                    "v0={}",
                    switchyard_core::providers::zoom::encrypted_token(
                        secret,
                        &format!("v0:{ts}:{body}")
                    )
                ),
            ));
        }
        for (k, value) in &headers {
            request = request.header(k, value);
        }
        let response = request.send().await.expect("post vector");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if v["expected"] == "valid" {
            assert!(
                (200..300).contains(&status),
                "{name}: a valid vector must be accepted, got {status} {answer}"
            );
            if let Some(expected) = v.get("expected_response").filter(|e| !e.is_null()) {
                assert_eq!(&answer, expected, "{name}: challenge answer");
            } else {
                let id = answer["id"].as_str().expect("message id");
                let stored: Value = http
                    .get(format!(
                        "{base}/api/v1/app/{}/msg/{id}",
                        source["id"].as_str().expect("id")
                    ))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .expect("get message")
                    .json()
                    .await
                    .expect("message json");
                assert_eq!(stored["id"], id, "{name}: stored");
            }
        } else {
            assert_eq!(
                status, 401,
                "{name}: an invalid vector must be refused, got {answer}"
            );
            assert!(answer["detail"].is_string(), "{name}: the refusal says why");
        }
        checked += 1;
    }
    println!("{checked} vectors checked through HTTP, ed25519 (v1a) ones included");
    assert_eq!(checked, vectors().len(), "every vector is checked");
}
