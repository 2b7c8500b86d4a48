//! Several nodes on one PostgreSQL database: a node killed mid-run loses no
//! acknowledged message and its partitions are taken over within the lease
//! time; cut database connections are survived without restarting nodes.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchyard_store::postgres::{test_database, test_server_url};

const LEASE_TTL_SECS: u64 = 3;

fn node_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SWITCHYARD_DATABASE_URL", url.to_owned()),
        ("SWITCHYARD_LEASE_TTL_SECS", LEASE_TTL_SECS.to_string()),
        ("SWITCHYARD_DATABASE_POOL_SIZE", "8".to_owned()),
    ]
}

fn start_node(data: &tempfile::TempDir, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(data.path(), &env)
}

async fn cluster(api: &Api) -> Value {
    let (status, body) = api.get("/api/v1/cluster").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Live nodes and the partitions each holds, as the cluster listing says.
fn live_partitions(view: &Value) -> Vec<(String, u64)> {
    view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["live"] == json!(true))
        .map(|n| {
            (
                n["nodeId"].as_str().unwrap_or_default().to_owned(),
                n["partitionCount"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn app_with_endpoints(api: &Api, base: &str, count: usize) -> (String, Vec<String>) {
    let (status, app) = api.post("/api/v1/app", json!({ "name": "cluster" })).await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap_or_default().to_owned();
    let mut paths = Vec::new();
    for i in 0..count {
        let path = format!("/ep{i}");
        let (status, ep) = api
            .post(
                &format!("/api/v1/app/{app_id}/endpoint"),
                json!({ "url": format!("{base}{path}") }),
            )
            .await;
        assert_eq!(status, 201, "{ep}");
        paths.push(path);
    }
    (app_id, paths)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn three_nodes_one_killed_mid_run_lose_nothing() {
    let db = test_database().await;
    let url = db.url().to_owned();
    let env = node_env(&url);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Server> = dirs.iter().map(|d| start_node(d, &env)).collect();
    let apis: Vec<Api> = nodes.iter().map(Server::client).collect();

    // The first node starts with every partition and hands a share to each
    // newcomer once they are seen alive.
    wait_until(
        "three nodes share the partitions",
        Duration::from_secs(30),
        async || {
            let live = live_partitions(&cluster(&apis[0]).await);
            live.len() == 3
                && live.iter().all(|(_, n)| *n > 0)
                && live.iter().map(|(_, n)| n).sum::<u64>() == 256
        },
    )
    .await;

    let (receiver, base) = Receiver::start().await;
    // Endpoints are spread over partitions, so over all three nodes.
    let (app_id, paths) = app_with_endpoints(&apis[0], &base, 6).await;
    // Every node must see the endpoints before it takes messages.
    for api in &apis {
        wait_until(
            "the endpoints are visible",
            Duration::from_secs(10),
            async || {
                let (_, list) = api.get(&format!("/api/v1/app/{app_id}/endpoint")).await;
                list["data"].as_array().map(Vec::len) == Some(paths.len())
            },
        )
        .await;
    }

    let producers = Producers::start(&apis, &app_id, 24);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let victim = nodes[1].client();
    let victim_id = cluster(&victim).await["nodeId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let killed_at = Instant::now();
    nodes[1].kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked = producers.stop().await;
    assert!(
        acked.len() > 100,
        "load produced only {} messages",
        acked.len()
    );

    // The survivors take over the dead node's partitions within the lease time
    // (plus one renewal round).
    let survivor = &apis[0];
    wait_until(
        "the dead node's partitions are taken over",
        Duration::from_secs(LEASE_TTL_SECS * 3 + 10),
        async || {
            let live = live_partitions(&cluster(survivor).await);
            live.len() == 2
                && !live.iter().any(|(id, _)| *id == victim_id)
                && live.iter().map(|(_, n)| n).sum::<u64>() == 256
        },
    )
    .await;
    let takeover = killed_at.elapsed();

    receiver
        .assert_all_arrive(&paths, &acked, Duration::from_secs(90))
        .await;
    // A duplicate is a delivery the dead node had sent (or was sending) when
    // it died, sent again by the new owner: its first arrival predates the kill.
    let arrivals = receiver.arrivals.lock().unwrap().clone();
    let duplicated: Vec<_> = arrivals.iter().filter(|(_, at)| at.len() > 1).collect();
    let late_firsts = duplicated
        .iter()
        .filter(|(_, at)| at[0] > killed_at + Duration::from_millis(500))
        .count();
    println!(
        "acknowledged={} deliveries={} duplicates={} takeover_after_kill={:?}",
        acked.len(),
        acked.len() * paths.len(),
        duplicated.len(),
        takeover
    );
    assert_eq!(
        late_firsts, 0,
        "duplicates must be deliveries in flight at the kill"
    );
    assert!(
        takeover < Duration::from_secs(LEASE_TTL_SECS * 2 + 5),
        "takeover took {takeover:?}"
    );
}

/// Terminates every connection the nodes hold to their database.
async fn cut_connections(database: &str) {
    admin_sql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ))
    .await;
}

async fn admin_sql(sql: &str) {
    let admin: tokio_postgres::Config = test_server_url().parse().expect("admin url");
    let (client, conn) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await.expect(sql);
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn database_outage_answers_503_and_recovers_without_restart() {
    let db = test_database().await;
    let url = db.url().to_owned();
    let database = url.rsplit('/').next().unwrap_or_default().to_owned();
    let env = node_env(&url);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes: Vec<Server> = dirs.iter().map(|d| start_node(d, &env)).collect();
    let apis: Vec<Api> = nodes.iter().map(Server::client).collect();
    let (receiver, base) = Receiver::start().await;
    let (app_id, paths) = app_with_endpoints(&apis[0], &base, 2).await;

    // Connections cut under load: in-flight requests fail, nothing
    // acknowledged is lost, and the pools reconnect on their own.
    let producers = Producers::start(&apis, &app_id, 8);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cut_connections(&database).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = producers.acked_so_far();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        producers.acked_so_far() > before,
        "the nodes accept again after the connections were cut"
    );

    // The database refuses connections altogether: the API says 503 with a
    // JSON reason, never a 2xx for something it could not store.
    admin_sql(&format!(
        "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false"
    ))
    .await;
    cut_connections(&database).await;
    let refused = apis[1]
        .http
        .post(format!("{}/api/v1/app/{app_id}/msg", apis[1].base))
        .bearer_auth(TOKEN)
        .json(&json!({ "eventType": "outage", "payload": {} }))
        .send()
        .await
        .expect("the node itself answers");
    let status = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap_or(Value::Null);
    let health = apis[1]
        .http
        .get(format!("{}/api/v1/health", apis[1].base))
        .send()
        .await
        .expect("health answers");
    let health_status = health.status().as_u16();
    admin_sql(&format!(
        "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true"
    ))
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].is_string(), "a JSON reason: {body}");
    assert_eq!(health_status, 503);

    // Back without restarting anything.
    wait_until("the API recovers", Duration::from_secs(30), async || {
        apis[1]
            .http
            .get(format!("{}/api/v1/health", apis[1].base))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 204)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let acked = producers.stop().await;
    let after = send_message(&apis[1], &app_id).await;
    let mut all = acked.clone();
    all.push(after);
    receiver
        .assert_all_arrive(&paths, &all, Duration::from_secs(60))
        .await;
    println!(
        "acknowledged={} through three connection cuts and a refusal",
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn concurrent_migrations_are_safe_and_idempotent() {
    let db = test_database().await;
    let url = db.url().to_owned();
    for round in 0..2 {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                    .arg("migrate")
                    .env("SWITCHYARD_DATABASE_URL", &url)
                    .env("RUST_LOG", "warn")
                    .output()
            })
            .collect();
        for run in runs {
            let out = run.expect("run switchyard migrate");
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn a_node_stopped_gracefully_hands_its_partitions_over_at_once() {
    let db = test_database().await;
    let url = db.url().to_owned();
    // A long lease time: only an explicit hand-over can be this quick.
    let mut env = node_env(&url);
    env.retain(|(k, _)| *k != "SWITCHYARD_LEASE_TTL_SECS");
    env.push(("SWITCHYARD_LEASE_TTL_SECS", "60".into()));
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start_node(&dirs[0], &env);
    let api = first.client();
    let mut second = start_node(&dirs[1], &env);
    wait_until(
        "both nodes hold partitions",
        Duration::from_secs(60),
        async || {
            let live = live_partitions(&cluster(&api).await);
            live.len() == 2 && live.iter().all(|(_, n)| *n > 0)
        },
    )
    .await;
    second.signal(libc::SIGTERM);
    let _ = second.child.wait();
    wait_until(
        "the first node owns everything again",
        Duration::from_secs(10),
        async || {
            let view = cluster(&api).await;
            view["ownedPartitions"] == json!(256)
        },
    )
    .await;
}

/// A source created, re-keyed or deleted through one node is seen the same
/// way by the others (their source caches are dropped on every change).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn every_node_serves_the_same_sources() {
    let db = test_database().await;
    let url = db.url().to_owned();
    let env = node_env(&url);
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b) = (start_node(&dirs[0], &env), start_node(&dirs[1], &env));
    let api = a.client();
    let (receiver, base) = Receiver::start().await;
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            json!({"name": "shared", "type": "api-key", "config": {"header": "X-Key", "key": "k1"}}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let id = source["id"].as_str().unwrap_or_default().to_owned();
    let token = source["ingestUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let (status, _) = api
        .post(
            &format!("/ingest/api/v1/source/{id}/endpoint"),
            json!({ "url": format!("{base}/shared") }),
        )
        .await;
    assert_eq!(status, 201);
    let http = reqwest::Client::new();
    let post_to_b = async |key: &str| {
        http.post(format!("{}/ingest/{token}", b.url))
            .header("X-Key", key)
            .header("content-type", "application/json")
            .body(r#"{"type":"thing.happened"}"#)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    wait_until(
        "the other node accepts the new source",
        Duration::from_secs(5),
        async || post_to_b("k1").await == 200,
    )
    .await;
    let (status, rotated) = api
        .post(
            &format!("/ingest/api/v1/source/{id}/secret/rotate"),
            json!({"secret": "k2", "gracePeriodSeconds": 0}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    wait_until(
        "the other node checks the new key",
        Duration::from_secs(5),
        async || post_to_b("k2").await == 200,
    )
    .await;
    assert_eq!(post_to_b("k1").await, 401, "the old key is gone everywhere");
    wait_until(
        "accepted events are delivered",
        Duration::from_secs(10),
        async || receiver.count() >= 2,
    )
    .await;
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/ingest/api/v1/source/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    wait_until(
        "the other node forgets the source",
        Duration::from_secs(5),
        async || post_to_b("k2").await == 404,
    )
    .await;
}
