//! Per-endpoint delivery controls against the real binary and a real
//! receiver: a rate limit (the endpoint's, or its application's default) is
//! held within 10 % of the set rate, and the excess waits without failing or
//! consuming a retry, on SQLite and on three PostgreSQL nodes; a concurrency
//! limit caps the requests open at once.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Deliveries per second set on the endpoint, and on the application whose
/// endpoint inherits it.
const RATE: u32 = 40;
/// Messages per endpoint: thirty seconds at the set rate, the window the
/// issue measures over.
const MESSAGES: usize = 1_200;

/// Creates an application (with `app_rate` as its default rate limit) and
/// one endpoint at `base{path}` with `endpoint_rate`.
async fn rate_limited(
    api: &Api,
    base: &str,
    path: &str,
    app_rate: Option<u32>,
    endpoint_rate: Option<u32>,
) -> (String, String) {
    let (status, app) = api
        .post(
            "/api/v1/app",
            json!({ "name": "rate", "rateLimit": app_rate }),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap_or_default().to_owned();
    let (status, ep) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({ "url": format!("{base}{path}"), "rateLimit": endpoint_rate }),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    (app_id, ep["id"].as_str().unwrap_or_default().to_owned())
}

/// Creates an application and one endpoint from `endpoint` (its JSON body),
/// returning their ids and the endpoint as created.
async fn app_with(api: &Api, endpoint: Value) -> (String, String, Value) {
    let (status, app) = api.post("/api/v1/app", json!({ "name": "controls" })).await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap_or_default().to_owned();
    let (status, ep) = api
        .post(&format!("/api/v1/app/{app_id}/endpoint"), endpoint)
        .await;
    assert_eq!(status, 201, "{ep}");
    let ep_id = ep["id"].as_str().unwrap_or_default().to_owned();
    (app_id, ep_id, ep)
}

/// Posts `count` messages to `app_id` through the given nodes, 16 at a time,
/// and returns their ids.
async fn publish(apis: &[Api], app_id: &str, count: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let api = apis[worker % apis.len()].clone();
        let app_id = app_id.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (worker..count).step_by(16) {
                ids.push(send_message(&api, &app_id).await);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("publisher"));
    }
    ids
}

/// Deliveries per second at `path`, from the first arrival to the last,
/// once every message has arrived exactly once.
fn measured_rate(rx: &Receiver, path: &str, ids: &[String]) -> f64 {
    let arrivals = rx.arrivals.lock().unwrap();
    let mut times: Vec<Instant> = Vec::new();
    for id in ids {
        let seen = &arrivals[&(path.to_owned(), id.clone())];
        assert_eq!(seen.len(), 1, "{id} arrived {} times", seen.len());
        times.push(seen[0]);
    }
    times.sort();
    let span = times[times.len() - 1] - times[0];
    (times.len() - 1) as f64 / span.as_secs_f64()
}

/// No attempt failed: waiting for the rate is not a failed attempt.
async fn assert_no_failed_attempt(api: &Api, app_id: &str, ep_id: &str) {
    let (status, failed) = api
        .get(&format!(
            "/api/v1/app/{app_id}/attempt/endpoint/{ep_id}?status=2&limit=10"
        ))
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["data"], json!([]), "{failed}");
    let (status, stats) = api
        .get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        (stats["success"].clone(), stats["fail"].clone()),
        (json!(MESSAGES), json!(0)),
        "{stats}"
    );
}

async fn rate_limits_hold(apis: &[Api]) {
    let (rx, base) = Receiver::start().await;
    let (own_app, own_ep) = rate_limited(&apis[0], &base, "/own", None, Some(RATE)).await;
    let (inherit_app, inherit_ep) =
        rate_limited(&apis[0], &base, "/inherited", Some(RATE), None).await;
    let started = Instant::now();
    let (own, inherited) = tokio::join!(
        publish(apis, &own_app, MESSAGES),
        publish(apis, &inherit_app, MESSAGES)
    );
    let published_in = started.elapsed();
    // Publishing is far faster than the rate: the excess has to wait.
    assert!(
        published_in < Duration::from_secs(15),
        "publishing took {published_in:?}; the test would not load the limit"
    );
    let paths = |p: &str| vec![p.to_owned()];
    rx.assert_all_arrive(&paths("/own"), &own, Duration::from_secs(60))
        .await;
    rx.assert_all_arrive(&paths("/inherited"), &inherited, Duration::from_secs(60))
        .await;
    for (path, ids) in [("/own", &own), ("/inherited", &inherited)] {
        let rate = measured_rate(&rx, path, ids);
        let set = f64::from(RATE);
        eprintln!("{path}: {rate:.2} deliveries/s (set {set}/s)");
        assert!(
            (rate - set).abs() <= set * 0.10,
            "{path}: {rate:.1} deliveries/s, set {set}/s"
        );
    }
    assert_no_failed_attempt(&apis[0], &own_app, &own_ep).await;
    assert_no_failed_attempt(&apis[0], &inherit_app, &inherit_ep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_hold_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    rate_limits_hold(&[server.client()]).await;
}

/// Three nodes share the partitions; messages are published through all of
/// them, and the node owning each endpoint holds its rate alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn rate_limits_hold_on_three_postgres_nodes() {
    use switchyard_store::postgres::test_database;
    let db = test_database().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<Server> = dirs
        .iter()
        .map(|d| {
            Server::start(
                d.path(),
                &[
                    ("SWITCHYARD_DATABASE_URL", db.url()),
                    ("SWITCHYARD_LEASE_TTL_SECS", "3"),
                    ("SWITCHYARD_DATABASE_POOL_SIZE", "8"),
                ],
            )
        })
        .collect();
    let apis: Vec<Api> = servers.iter().map(Server::client).collect();
    // The endpoints' owners are settled before the measurement starts.
    wait_until_shared(&apis[0], 3).await;
    rate_limits_hold(&apis).await;
}

/// A receiver that holds each request for `hold` and records the most
/// requests it had open at once, and how many it answered.
#[derive(Clone, Default)]
struct SlowReceiver {
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

async fn slow_receiver(hold: Duration) -> (SlowReceiver, String) {
    let rx = SlowReceiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = rx.clone();
    let app = axum::Router::new().fallback(move || {
        let rx = state.clone();
        async move {
            let now = rx.open.fetch_add(1, Ordering::SeqCst) + 1;
            rx.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(hold).await;
            rx.open.fetch_sub(1, Ordering::SeqCst);
            rx.answered.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::OK
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (rx, base)
}

/// An endpoint with `concurrencyLimit: 2` never has more than two requests
/// open, however many deliveries are due; all arrive, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_concurrency_limit_holds() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (rx, base) = slow_receiver(Duration::from_millis(150)).await;
    let (app_id, ep_id, ep) = app_with(
        &api,
        json!({ "url": format!("{base}/slow"), "concurrencyLimit": 2 }),
    )
    .await;
    assert_eq!(ep["concurrencyLimit"], json!(2), "{ep}");
    let count = 20;
    publish(std::slice::from_ref(&api), &app_id, count).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.answered.load(Ordering::SeqCst) < count {
        assert!(Instant::now() < deadline, "not all deliveries arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rx.most.load(Ordering::SeqCst), 2);
    // Lifting the limit lets them all go at once.
    let (status, patched) =
        patch_endpoint(&api, &app_id, &ep_id, json!({ "concurrencyLimit": null })).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["concurrencyLimit"], Value::Null);
    rx.most.store(0, Ordering::SeqCst);
    publish(std::slice::from_ref(&api), &app_id, count).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.answered.load(Ordering::SeqCst) < 2 * count {
        assert!(Instant::now() < deadline, "not all deliveries arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rx.most.load(Ordering::SeqCst) > 2);
    let (status, stats) = api
        .get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["fail"], json!(0), "{stats}");
    let (status, bad) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({ "url": format!("{base}/x"), "concurrencyLimit": 0 }),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(bad["detail"][0]["loc"], json!(["body", "concurrencyLimit"]));
}

/// A receiver answering every request with the status it is set to,
/// counting the requests.
#[derive(Clone)]
struct SwitchReceiver {
    status: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

async fn switch_receiver(status: u16) -> (SwitchReceiver, String) {
    let rx = SwitchReceiver {
        status: Arc::new(AtomicUsize::new(usize::from(status))),
        requests: Arc::new(AtomicUsize::new(0)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = rx.clone();
    let app = axum::Router::new().fallback(move || {
        let rx = state.clone();
        async move {
            rx.requests.fetch_add(1, Ordering::SeqCst);
            let code = rx.status.load(Ordering::SeqCst) as u16;
            axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (rx, base)
}

async fn wait_for(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `PATCH`es the endpoint with `body`.
async fn patch_endpoint(api: &Api, app: &str, ep: &str, body: Value) -> (u16, Value) {
    api.call(
        reqwest::Method::PATCH,
        &format!("/api/v1/app/{app}/endpoint/{ep}"),
        Some(body),
    )
    .await
}

/// The partition counts of the live nodes, as `api`'s node sees them.
async fn live_partition_counts(api: &Api) -> Vec<u64> {
    let (_, view) = api.get("/api/v1/cluster").await;
    view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["live"] == json!(true))
        .filter_map(|n| n["partitionCount"].as_u64())
        .collect()
}

/// Waits until `nodes` live nodes hold every partition between them, each
/// some.
async fn wait_until_shared(api: &Api, nodes: usize) {
    wait_for(
        &format!("{nodes} nodes share the partitions"),
        30,
        async || {
            let counts = live_partition_counts(api).await;
            counts.len() == nodes
                && counts.iter().all(|&n| n > 0)
                && counts.iter().sum::<u64>() == 256
        },
    )
    .await;
}

/// Waits until the message has an attempt for which `pred` holds.
async fn wait_for_attempt(
    what: &str,
    api: &Api,
    app: &str,
    msg: &str,
    pred: impl Fn(&Value) -> bool,
) {
    wait_for(what, 20, async || {
        let (_, attempts) = api
            .get(&format!("/api/v1/app/{app}/attempt/msg/{msg}"))
            .await;
        attempts["data"].as_array().into_iter().flatten().any(&pred)
    })
    .await;
}

async fn circuit_of(api: &Api, app: &str, ep: &str) -> Value {
    let (status, body) = api
        .get(&format!("/api/v1/app/{app}/endpoint/{ep}/circuit"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Sends `failures` messages one at a time to an endpoint whose receiver
/// fails, each waiting for its attempt (so exactly that many fail), then
/// waits until the breaker says it is open.
async fn open_breaker(api: &Api, rx: &SwitchReceiver, app_id: &str, ep_id: &str, failures: usize) {
    for _ in 0..failures {
        let before = rx.requests.load(Ordering::SeqCst);
        send_message(api, app_id).await;
        wait_for("the attempt", 10, async || {
            rx.requests.load(Ordering::SeqCst) > before
        })
        .await;
    }
    wait_for("the breaker opens", 10, async || {
        circuit_of(api, app_id, ep_id).await["state"] == "open"
    })
    .await;
}

async fn failed_attempts(api: &Api, app: &str, ep: &str) -> usize {
    let (status, body) = api
        .get(&format!(
            "/api/v1/app/{app}/attempt/endpoint/{ep}?status=2&limit=250"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().map_or(0, Vec::len)
}

/// Three failures open the breaker; while it is open nothing is sent and
/// waiting deliveries (new ones and due retries) use no attempt; its state
/// survives a SIGKILL; after the cool-down one probe succeeds, the breaker
/// closes and everything arrives. A reset through the API closes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_circuit_breaker_opens_holds_and_closes_after_a_probe() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &[]);
    let api = server.client();
    let (rx, base) = switch_receiver(500).await;
    let (app_id, ep_id, ep) = app_with(
        &api,
        json!({ "url": format!("{base}/cb"),
                    "circuitBreaker": { "consecutiveFailures": 3, "cooldownSecs": 6 } }),
    )
    .await;
    assert_eq!(
        ep["circuitBreaker"]["consecutiveFailures"],
        json!(3),
        "{ep}"
    );
    assert_eq!(
        ep["circuitBreaker"]["windowSecs"],
        json!(60),
        "defaults filled in"
    );
    assert_eq!(circuit_of(&api, &app_id, &ep_id).await["state"], "closed");

    open_breaker(&api, &rx, &app_id, &ep_id, 3).await;
    let circuit = circuit_of(&api, &app_id, &ep_id).await;
    assert_eq!(circuit["lastError"], "HTTP 500", "{circuit}");
    assert_eq!(circuit["consecutiveFailures"], 3, "{circuit}");

    // Open: new messages and the due retries (1 s) are held, no attempt.
    publish(std::slice::from_ref(&api), &app_id, 5).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        3,
        "nothing sent while open"
    );
    assert_eq!(failed_attempts(&api, &app_id, &ep_id).await, 3);

    // The state survives a crash.
    server.kill9();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    assert_eq!(circuit_of(&api, &app_id, &ep_id).await["state"], "open");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        3,
        "still held after restart"
    );

    // The endpoint recovers; after the cool-down a probe closes the breaker
    // and all eight messages arrive.
    rx.status.store(200, Ordering::SeqCst);
    wait_for("the breaker closes", 30, async || {
        circuit_of(&api, &app_id, &ep_id).await["state"] == "closed"
    })
    .await;
    wait_for("every message arrives", 30, async || {
        let (_, stats) = api
            .get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"))
            .await;
        stats["success"] == json!(8)
    })
    .await;
    assert_eq!(
        failed_attempts(&api, &app_id, &ep_id).await,
        3,
        "waiting used no attempt"
    );
    assert_eq!(rx.requests.load(Ordering::SeqCst), 3 + 8);

    // Open it again, then reset it through the API: a new message goes at
    // once instead of after a cool-down.
    let (status, _) = patch_endpoint(
        &api,
        &app_id,
        &ep_id,
        json!({ "circuitBreaker": { "consecutiveFailures": 1, "cooldownSecs": 3600 } }),
    )
    .await;
    assert_eq!(status, 200);
    rx.status.store(503, Ordering::SeqCst);
    send_message(&api, &app_id).await;
    wait_for("the breaker opens again", 10, async || {
        circuit_of(&api, &app_id, &ep_id).await["state"] == "open"
    })
    .await;
    rx.status.store(200, Ordering::SeqCst);
    let (status, reset) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}/circuit/reset"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["state"], "closed");
    let before = rx.requests.load(Ordering::SeqCst);
    send_message(&api, &app_id).await;
    wait_for("a message goes after the reset", 20, async || {
        rx.requests.load(Ordering::SeqCst) > before
    })
    .await;
    let (status, bad) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({ "url": format!("{base}/x"), "circuitBreaker": { "failureRatio": 2 } }),
        )
        .await;
    assert_eq!(status, 422, "{bad}");
    assert_eq!(
        bad["detail"][0]["loc"],
        json!(["body", "circuitBreaker", "failureRatio"]),
        "{bad}"
    );
}

/// The breaker's state survives a node's death: it is opened on the node
/// that owns every partition, that node is killed after two others joined,
/// and whichever node takes the endpoint over keeps holding deliveries
/// until a reset through a third node closes it; then everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn an_open_breaker_survives_a_takeover_on_postgres() {
    use switchyard_store::postgres::test_database;
    let db = test_database().await;
    let env = [
        ("SWITCHYARD_DATABASE_URL", db.url()),
        ("SWITCHYARD_LEASE_TTL_SECS", "3"),
        ("SWITCHYARD_DATABASE_POOL_SIZE", "8"),
    ];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut first = Server::start(dirs[0].path(), &env);
    let api = first.client();
    let (rx, base) = switch_receiver(500).await;
    let (app_id, ep_id, _) = app_with(
        &api,
        json!({ "url": format!("{base}/cb"),
                    "circuitBreaker": { "consecutiveFailures": 2, "cooldownSecs": 3600 } }),
    )
    .await;
    open_breaker(&api, &rx, &app_id, &ep_id, 2).await;

    let others: Vec<Server> = dirs[1..]
        .iter()
        .map(|d| Server::start(d.path(), &env))
        .collect();
    let apis: Vec<Api> = others.iter().map(Server::client).collect();
    wait_until_shared(&apis[0], 3).await;
    first.kill9();
    wait_until_shared(&apis[0], 2).await;

    // Whoever owns the endpoint now holds what comes, and the retries.
    publish(&apis, &app_id, 3).await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        2,
        "held after the takeover"
    );

    rx.status.store(200, Ordering::SeqCst);
    let (status, reset) = apis[1]
        .post(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}/circuit/reset"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{reset}");
    wait_for("every message arrives", 30, async || {
        let (_, stats) = apis[0]
            .get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"))
            .await;
        stats["success"] == json!(5)
    })
    .await;
    assert_eq!(failed_attempts(&apis[0], &app_id, &ep_id).await, 2);
}

/// Found by a hostile review: a manual resend of a delivery waiting for its
/// turn was accepted and then lost, and lifting a rate limit left the
/// waiting deliveries at the old pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifting_a_limit_releases_the_backlog_and_resends_are_kept() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (rx, base) = Receiver::start().await;
    let (app_id, ep_id) = rate_limited(&api, &base, "/slow", None, Some(1)).await;
    let ids = publish(std::slice::from_ref(&api), &app_id, 20).await;
    wait_for("two arrive", 10, async || rx.count() >= 2).await;
    // One that is still waiting (in memory or in the queue).
    let waiting = ids
        .iter()
        .find(|id| !rx.seen.lock().unwrap().contains_key(*id))
        .cloned()
        .unwrap();
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app_id}/msg/{waiting}/endpoint/{ep_id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = patch_endpoint(&api, &app_id, &ep_id, json!({ "rateLimit": null })).await;
    assert_eq!(status, 200, "{body}");
    // At the old pace the rest would take about 18 s.
    let lifted = Instant::now();
    rx.assert_all_arrive(&["/slow".to_owned()], &ids, Duration::from_secs(30))
        .await;
    assert!(
        lifted.elapsed() < Duration::from_secs(10),
        "the backlog kept the old pace: {:?}",
        lifted.elapsed()
    );
    // The resend is kept: a delivery still queued is brought forward (its
    // attempt is the scheduled one it waited for); one waiting in memory
    // is sent again as a manual attempt. Either way it succeeds.
    wait_for_attempt("the resend is attempted", &api, &app_id, &waiting, |a| {
        a["status"] == json!(0)
    })
    .await;
}

/// An endpoint failing without a success for the auto-disable time (2 s
/// here) is disabled with the reason; re-enabling it and recovering sends
/// what failed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_endpoint_is_auto_disabled_and_recovers() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[("SWITCHYARD_AUTO_DISABLE_AFTER_SECS", "2")]);
    let api = server.client();
    let (rx, base) = switch_receiver(500).await;
    let (app_id, ep_id, ep) = app_with(&api, json!({ "url": format!("{base}/ad") })).await;
    assert_eq!(ep["disabledReason"], Value::Null);
    let started = Instant::now();
    let msg = send_message(&api, &app_id).await;
    let endpoint = || {
        let api = api.clone();
        let path = format!("/api/v1/app/{app_id}/endpoint/{ep_id}");
        async move { api.get(&path).await.1 }
    };
    wait_for("the endpoint is disabled", 30, async || {
        endpoint().await["disabled"] == json!(true)
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before its time"
    );
    let disabled = endpoint().await;
    assert!(
        disabled["disabledReason"]
            .as_str()
            .unwrap_or_default()
            .contains("failed for 2 s"),
        "{disabled}"
    );
    rx.status.store(200, Ordering::SeqCst);
    let (status, enabled) =
        patch_endpoint(&api, &app_id, &ep_id, json!({ "disabled": false })).await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["disabledReason"], Value::Null);
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint/{ep_id}/recover"),
            json!({ "since": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_for_attempt(
        "the failed message is sent again",
        &api,
        &app_id,
        &msg,
        |a| a["status"] == json!(0),
    )
    .await;
    // Enabled again and succeeding: it stays enabled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(endpoint().await["disabled"], json!(false));
}

/// Found by a hostile review: a breaker removed while open came back open
/// when added again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_breaker_added_again_starts_closed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (rx, base) = switch_receiver(500).await;
    let breaker = json!({ "consecutiveFailures": 1, "cooldownSecs": 3600 });
    let (app_id, ep_id, _) = app_with(
        &api,
        json!({ "url": format!("{base}/again"), "circuitBreaker": breaker }),
    )
    .await;
    open_breaker(&api, &rx, &app_id, &ep_id, 1).await;
    let removed = patch_endpoint(&api, &app_id, &ep_id, json!({ "circuitBreaker": null })).await;
    assert_eq!(removed.0, 200);
    assert_eq!(circuit_of(&api, &app_id, &ep_id).await["state"], "closed");
    let added = patch_endpoint(&api, &app_id, &ep_id, json!({ "circuitBreaker": breaker })).await;
    assert_eq!(added.0, 200);
    assert_eq!(circuit_of(&api, &app_id, &ep_id).await["state"], "closed");
    rx.status.store(200, Ordering::SeqCst);
    let before = rx.requests.load(Ordering::SeqCst);
    send_message(&api, &app_id).await;
    wait_for("a new message goes at once", 10, async || {
        rx.requests.load(Ordering::SeqCst) > before
    })
    .await;
}

/// Ingest destinations take a breaker, and have its routes under the
/// ingest API too (found by a hostile review: they were only reachable
/// under `/api/v1/app/{source id}/...`).
#[tokio::test]
async fn ingest_destinations_show_and_reset_their_breaker() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (status, source) = api
        .post(
            "/ingest/api/v1/source",
            json!({ "name": "s", "type": "none" }),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source_id = source["id"].as_str().unwrap_or_default().to_owned();
    let (status, dest) = api
        .post(
            &format!("/ingest/api/v1/source/{source_id}/endpoint"),
            json!({ "url": "http://127.0.0.1:9/in", "circuitBreaker": { "cooldownSecs": 5 } }),
        )
        .await;
    assert_eq!(status, 201, "{dest}");
    let dest_id = dest["id"].as_str().unwrap_or_default().to_owned();
    let base = format!("/ingest/api/v1/source/{source_id}/endpoint/{dest_id}/circuit");
    let (status, circuit) = api.get(&base).await;
    assert_eq!(status, 200, "{circuit}");
    assert_eq!(circuit["state"], "closed");
    assert_eq!(circuit["settings"]["cooldownSecs"], 5);
    let (status, reset) = api.post(&format!("{base}/reset"), json!({})).await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["state"], "closed");
}

/// A receiver that logs every request's `webhook-id` in arrival order with
/// the status it answered, holds each request for `hold`, counts the most
/// requests open at once, and fails the messages it is told to, a set
/// number of times each. While `paused` it holds requests unanswered.
#[derive(Clone, Default)]
struct OrderReceiver {
    paused: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    failures: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

impl OrderReceiver {
    async fn start(hold: Duration) -> (OrderReceiver, String) {
        let rx = OrderReceiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = rx.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let rx = state.clone();
            async move {
                // Counted out when the request ends or is dropped (its
                // sender killed mid-request).
                struct Open(Arc<AtomicUsize>);
                impl Drop for Open {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let open = rx.open.fetch_add(1, Ordering::SeqCst) + 1;
                let _open = Open(rx.open.clone());
                rx.most_open.fetch_max(open, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                while rx.paused.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let fail = match rx.failures.lock().unwrap().get_mut(&id) {
                    Some(left) if *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                };
                let status = if fail { 500 } else { 200 };
                rx.log.lock().unwrap().push((id, status));
                axum::http::StatusCode::from_u16(status).unwrap_or_default()
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (rx, base)
    }

    fn successes(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == 200)
            .count()
    }

    /// Asserts FIFO order against `ids` (in creation order): no request for
    /// a message came before every earlier message had succeeded or been
    /// given up (`given_up`), and each message's first success came in
    /// order. A message may arrive twice (a node killed mid-request).
    fn assert_in_order(&self, ids: &[String], given_up: &[String]) {
        let log = self.log.lock().unwrap();
        let rank: std::collections::HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        // The next message allowed to arrive: every one before it is done.
        let mut done = 0;
        for (at, (id, status)) in log.iter().enumerate() {
            let r = rank[id.as_str()];
            assert!(
                r <= done,
                "request {at} was for message {r} ({id}) while message {done} was not done: {:?}",
                &log[..=at]
            );
            if r == done && (*status == 200 || given_up.contains(id)) {
                let last_try =
                    *status == 200 || !log[at + 1..].iter().any(|(later, _)| later == id);
                if last_try {
                    done += 1;
                }
            }
        }
        assert_eq!(done, ids.len(), "not every message was delivered");
    }
}

/// Creation order of messages: their ids sort by it.
fn in_creation_order(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// A FIFO endpoint gets its deliveries one at a time, in message-creation
/// order, although they were published concurrently: a failing message
/// holds back the rest until its retry succeeds, and one that runs out of
/// retries lets the next go. An endpoint without the flag beside it is not
/// held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fifo_endpoint_gets_messages_in_order_one_at_a_time() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[("SWITCHYARD_RETRY_SCHEDULE", "300ms,300ms")]);
    let api = server.client();
    let (rx, base) = OrderReceiver::start(Duration::from_millis(5)).await;
    let (plain_rx, plain_base) = OrderReceiver::start(Duration::from_millis(5)).await;
    let (app_id, ep_id, ep) =
        app_with(&api, json!({ "url": format!("{base}/fifo"), "fifo": true })).await;
    assert_eq!(ep["fifo"], json!(true), "{ep}");
    let (status, plain) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({ "url": format!("{plain_base}/plain") }),
        )
        .await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!(plain["fifo"], json!(false), "{plain}");

    // Held at the first request until the failures are set.
    rx.paused.store(true, Ordering::SeqCst);
    let ids = in_creation_order(publish(std::slice::from_ref(&api), &app_id, 60).await);
    let (retried, given_up) = (ids[40].clone(), ids[50].clone());
    rx.failures.lock().unwrap().insert(retried.clone(), 2);
    rx.failures.lock().unwrap().insert(given_up.clone(), 3);
    rx.paused.store(false, Ordering::SeqCst);
    wait_for("all but one succeed", 60, async || rx.successes() >= 59).await;
    wait_for("the plain endpoint has all", 10, async || {
        plain_rx.successes() >= 60
    })
    .await;
    rx.assert_in_order(&ids, std::slice::from_ref(&given_up));
    assert_eq!(rx.most_open.load(Ordering::SeqCst), 1, "one in flight");
    let tries = |id: &str| {
        rx.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(x, _)| x == id)
            .count()
    };
    assert_eq!(tries(&retried), 3, "two failures, then the success");
    assert_eq!(tries(&given_up), 3, "the first try and two retries");
    let (status, stats) = api
        .get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        (stats["success"].clone(), stats["fail"].clone()),
        (json!(59), json!(1)),
        "{stats}"
    );

    // Turned off with a queue waiting behind a held request: the queue
    // still drains, in order.
    rx.paused.store(true, Ordering::SeqCst);
    let queued = in_creation_order(publish(std::slice::from_ref(&api), &app_id, 10).await);
    let (status, body) = patch_endpoint(&api, &app_id, &ep_id, json!({ "fifo": false })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fifo"], json!(false), "{body}");
    rx.paused.store(false, Ordering::SeqCst);
    wait_for("the queue drains", 30, async || rx.successes() >= 59 + 10).await;
    let drained: Vec<String> = rx
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| queued.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(drained, queued, "in order, once each");
    let (status, bad) = patch_endpoint(&api, &app_id, &ep_id, json!({ "fifo": "yes" })).await;
    assert_eq!(status, 422, "{bad}");
}

/// FIFO order holds through a SIGKILL of the node that owns the endpoint,
/// on three PostgreSQL nodes: the next owner resumes at the message the
/// dead one was sending (which may arrive twice), never past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn fifo_order_survives_killing_the_owner_on_postgres() {
    use switchyard_store::postgres::test_database;
    let db = test_database().await;
    let env = [
        ("SWITCHYARD_DATABASE_URL", db.url()),
        ("SWITCHYARD_LEASE_TTL_SECS", "3"),
        ("SWITCHYARD_DATABASE_POOL_SIZE", "8"),
        ("SWITCHYARD_RETRY_SCHEDULE", "300ms,300ms,300ms"),
    ];
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Server> = dirs.iter().map(|d| Server::start(d.path(), &env)).collect();
    let apis: Vec<Api> = nodes.iter().map(Server::client).collect();
    let (rx, base) = OrderReceiver::start(Duration::from_millis(40)).await;
    let (app_id, ep_id, _) = app_with(
        &apis[0],
        json!({ "url": format!("{base}/fifo"), "fifo": true }),
    )
    .await;
    let partition = switchyard_core::partition_of(
        &switchyard_core::EndpointId::parse(&ep_id).expect("an endpoint id"),
    );
    let owner = || async {
        for (i, api) in apis.iter().enumerate() {
            let (_, view) = api.get("/api/v1/cluster").await;
            let mine = view["nodes"].as_array().into_iter().flatten().find(|n| {
                n["nodeId"] == view["nodeId"]
                    && n["partitions"]
                        .as_array()
                        .is_some_and(|p| p.contains(&json!(partition)))
            });
            if mine.is_some() {
                return Some(i);
            }
        }
        None
    };
    wait_until_shared(&apis[0], 3).await;
    let mut owner_index = None;
    wait_for("a node says it owns the endpoint", 30, async || {
        owner_index = owner().await;
        owner_index.is_some()
    })
    .await;
    let owner_index = owner_index.unwrap();
    rx.paused.store(true, Ordering::SeqCst);
    let ids = in_creation_order(publish(&apis, &app_id, 120).await);
    // One message fails twice before succeeding, after the kill.
    rx.failures.lock().unwrap().insert(ids[60].clone(), 2);
    rx.paused.store(false, Ordering::SeqCst);
    wait_for("some arrive", 30, async || rx.successes() >= 30).await;
    nodes[owner_index].kill9();
    let survivors: Vec<Api> = apis
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != owner_index)
        .map(|(_, a)| a.clone())
        .collect();
    wait_for("every message arrives", 90, async || {
        let log = rx.log.lock().unwrap();
        let ok: std::collections::HashSet<&String> = log
            .iter()
            .filter(|(_, s)| *s == 200)
            .map(|(id, _)| id)
            .collect();
        ok.len() == ids.len()
    })
    .await;
    rx.assert_in_order(&ids, &[]);
    assert_eq!(rx.most_open.load(Ordering::SeqCst), 1, "one in flight");
    let (status, stats) = survivors[0]
        .get(&format!("/api/v1/app/{app_id}/endpoint/{ep_id}/stats"))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["success"], json!(120), "{stats}");
}

/// The operational events of the controls reach an operational webhook
/// endpoint: an automatic disable (with when the failures started) and a
/// breaker opening and being reset. Only the subscribed types come.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operational_webhooks_report_auto_disable_and_the_breaker() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[("SWITCHYARD_AUTO_DISABLE_AFTER_SECS", "2")]);
    let api = server.client();
    let (ops_rx, ops_base) = Receiver::start().await;
    let (status, ops) = api
        .post(
            "/api/v1/operational-webhook/endpoint",
            json!({ "url": format!("{ops_base}/ops"),
                    "eventTypes": ["endpoint.disabled", "endpoint.circuit.opened", "endpoint.circuit.closed"] }),
        )
        .await;
    assert_eq!(status, 201, "{ops}");
    let (rx, base) = switch_receiver(500).await;
    let (app_id, ep_id, _) = app_with(
        &api,
        json!({ "url": format!("{base}/ad"), "uid": "disabled-one" }),
    )
    .await;
    let (status, cb) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({ "url": format!("{base}/cb"),
                    "circuitBreaker": { "consecutiveFailures": 1, "cooldownSecs": 3600 } }),
        )
        .await;
    assert_eq!(status, 201, "{cb}");
    let cb_id = cb["id"].as_str().unwrap_or_default().to_owned();
    let started = switchyard_core::timefmt::now_ms();
    send_message(&api, &app_id).await;
    let events = || -> Vec<Value> {
        ops_rx
            .bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, body)| serde_json::from_slice::<Value>(body).ok())
            .collect()
    };
    let about = |events: &[Value], kind: &str, ep: &str| -> Option<Value> {
        events
            .iter()
            .find(|e| e["type"] == kind && e["data"]["endpointId"] == ep)
            .cloned()
    };
    wait_for("the breaker's opening is reported", 20, async || {
        about(&events(), "endpoint.circuit.opened", &cb_id).is_some()
    })
    .await;
    let opened = about(&events(), "endpoint.circuit.opened", &cb_id).unwrap();
    assert_eq!(opened["data"]["appId"], json!(app_id), "{opened}");
    assert_eq!(opened["data"]["state"], "open", "{opened}");
    assert_eq!(opened["data"]["lastError"], "HTTP 500", "{opened}");
    let (status, _) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint/{cb_id}/circuit/reset"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    wait_for("the reset is reported", 20, async || {
        about(&events(), "endpoint.circuit.closed", &cb_id).is_some()
    })
    .await;
    wait_for("the automatic disable is reported", 30, async || {
        about(&events(), "endpoint.disabled", &ep_id).is_some()
    })
    .await;
    let disabled = about(&events(), "endpoint.disabled", &ep_id).unwrap();
    assert_eq!(disabled["data"]["trigger"], "automatic", "{disabled}");
    assert_eq!(
        disabled["data"]["endpointUid"], "disabled-one",
        "{disabled}"
    );
    let fail_since = switchyard_core::timefmt::parse_rfc3339_ms(
        disabled["data"]["failSince"].as_str().unwrap_or_default(),
    )
    .expect("failSince is a time");
    assert!(
        fail_since >= started.saturating_sub(1_000) && fail_since <= started + 10_000,
        "{disabled}"
    );
    assert!(
        events().iter().all(|e| [
            "endpoint.disabled",
            "endpoint.circuit.opened",
            "endpoint.circuit.closed"
        ]
        .contains(&e["type"].as_str().unwrap_or_default())),
        "only subscribed types: {:?}",
        events()
    );
    drop(rx);
}

/// Found by a hostile review: a manual resend of a FIFO endpoint's failing
/// first delivery that failed again ended it for good (the queue behind it
/// went), and a resend while it was being sent put two requests in flight.
/// Now a resend of a delivery waiting for a retry brings that retry
/// forward and keeps the rest of its retries, and a resend of one being
/// sent to a FIFO endpoint is refused with 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resends_keep_a_fifo_queue_in_order() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[("SWITCHYARD_RETRY_SCHEDULE", "60s,60s")]);
    let api = server.client();
    let (rx, base) = OrderReceiver::start(Duration::from_millis(5)).await;
    let (app_id, ep_id, _) =
        app_with(&api, json!({ "url": format!("{base}/fifo"), "fifo": true })).await;
    rx.paused.store(true, Ordering::SeqCst);
    let ids = in_creation_order(publish(std::slice::from_ref(&api), &app_id, 5).await);
    // The first is being sent (held by the receiver): a resend is refused.
    wait_for("the first is in flight", 10, async || {
        rx.open.load(Ordering::SeqCst) == 1
    })
    .await;
    let resend = |id: String| {
        let api = api.clone();
        let path = format!("/api/v1/app/{app_id}/msg/{id}/endpoint/{ep_id}/resend");
        async move { api.post(&path, json!({})).await }
    };
    let (status, body) = resend(ids[0].clone()).await;
    assert_eq!(status, 409, "{body}");
    // It fails (a retry in a minute), and so does the resend of it.
    rx.failures.lock().unwrap().insert(ids[0].clone(), 2);
    rx.paused.store(false, Ordering::SeqCst);
    wait_for("the first attempt fails", 10, async || {
        rx.log.lock().unwrap().len() == 1
    })
    .await;
    let (status, body) = resend(ids[0].clone()).await;
    assert_eq!(status, 202, "{body}");
    wait_for("the resend fails", 10, async || {
        rx.log.lock().unwrap().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        rx.log.lock().unwrap().len(),
        2,
        "the queue still waits behind the first: {:?}",
        rx.log.lock().unwrap()
    );
    // A third resend succeeds: the queue goes, in order.
    let (status, body) = resend(ids[0].clone()).await;
    assert_eq!(status, 202, "{body}");
    wait_for("all arrive", 20, async || rx.successes() == 5).await;
    rx.assert_in_order(&ids, &[]);
    assert_eq!(rx.most_open.load(Ordering::SeqCst), 1, "one in flight");
}

/// Found by the second review of the resend rules: a resend of a delivery
/// held back by an open breaker must go through it (the operator's call),
/// as a manual attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resend_goes_through_an_open_breaker() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (rx, base) = switch_receiver(500).await;
    let (app_id, ep_id, _) = app_with(
        &api,
        json!({ "url": format!("{base}/cb"),
                "circuitBreaker": { "consecutiveFailures": 1, "cooldownSecs": 3600 } }),
    )
    .await;
    open_breaker(&api, &rx, &app_id, &ep_id, 1).await;
    rx.status.store(200, Ordering::SeqCst);
    let held = send_message(&api, &app_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests.load(Ordering::SeqCst), 1, "held by the breaker");
    let (status, body) = api
        .post(
            &format!("/api/v1/app/{app_id}/msg/{held}/endpoint/{ep_id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_for_attempt("the resend is sent", &api, &app_id, &held, |a| {
        a["triggerType"] == json!(1) && a["status"] == json!(0)
    })
    .await;
}
