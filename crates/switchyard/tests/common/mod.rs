//! Starts the real `switchyard` binary and a real HTTP receiver for end-to-end tests.

#![allow(dead_code)]

pub mod broker;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "e2e-admin-token";

pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("serve")
            .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
            .env("SWITCHYARD_DATA_DIR", data_dir)
            .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
            .env("SWITCHYARD_ALLOWED_NETWORKS", "127.0.0.0/8")
            .env("SWITCHYARD_RETRY_SCHEDULE", "1,1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn switchyard");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on ") => {
                    break line
                        .split("listening on ")
                        .nth(1)
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                }
                Some(Ok(_)) => continue,
                _ => panic!("switchyard exited before listening"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Sends a signal to the server process (SIGTERM for a graceful stop,
    /// SIGKILL for a crash).
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; the pid is our own child's, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub fn client(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.url.clone(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// Arrival times per (request path, `webhook-id`).
pub type Arrivals = HashMap<(String, String), Vec<Instant>>;

/// Records deliveries by `webhook-id`, and by path and `webhook-id` with
/// their arrival times.
#[derive(Clone, Default)]
pub struct Receiver {
    pub seen: Arc<Mutex<HashMap<String, u32>>>,
    pub arrivals: Arc<Mutex<Arrivals>>,
    pub bodies: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn record(
    State(rx): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    rx.arrivals
        .lock()
        .unwrap()
        .entry((uri.path().to_owned(), id.clone()))
        .or_default()
        .push(Instant::now());
    *rx.seen.lock().unwrap().entry(id).or_default() += 1;
    rx.bodies.lock().unwrap().push((headers, body));
    StatusCode::OK
}

impl Receiver {
    pub async fn start() -> (Receiver, String) {
        let rx = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{*path}", axum::routing::post(record))
            .with_state(rx.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (rx, base)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Asserts that every message id reaches every path within `timeout`.
    pub async fn assert_all_arrive(&self, paths: &[String], ids: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let missing: Vec<(String, String)> = {
                let arrivals = self.arrivals.lock().unwrap();
                paths
                    .iter()
                    .flat_map(|p| ids.iter().map(move |id| (p.clone(), id.clone())))
                    .filter(|key| !arrivals.contains_key(key))
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} acknowledged deliveries never arrived, e.g. {:?}",
                missing.len(),
                ids.len() * paths.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Producers posting messages as fast as they can, spread over the given
/// nodes, remembering which messages were acknowledged with a 2xx.
pub struct Producers {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    pub fn start(apis: &[Api], app_id: &str, count: usize) -> Producers {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..count)
            .map(|p| {
                let api = apis[p % apis.len()].clone();
                let (app_id, acked, stop) = (app_id.to_owned(), acked.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let sent = api
                            .http
                            .post(format!("{}/api/v1/app/{app_id}/msg", api.base))
                            .bearer_auth(TOKEN)
                            .json(&serde_json::json!({ "eventType": "load.test", "payload": { "p": p, "n": n } }))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        // Only a 2xx is a promise; errors (a dead node, a
                        // 503 while the database is away) are not.
                        match sent {
                            Ok(resp) if resp.status().is_success() => {
                                if let Ok(body) = resp.json::<serde_json::Value>().await
                                    && let Some(id) = body["id"].as_str()
                                {
                                    acked.lock().unwrap().push(id.to_owned());
                                }
                            }
                            _ => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        Producers { acked, stop, tasks }
    }

    pub fn acked_so_far(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().unwrap().clone()
    }
}

pub async fn app_with_endpoint(api: &Api, url: &str) -> String {
    let (status, app) = api
        .post("/api/v1/app", serde_json::json!({ "name": "e2e" }))
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap().to_owned();
    let (status, ep) = api
        .post(
            &format!("/api/v1/app/{app_id}/endpoint"),
            serde_json::json!({ "url": url }),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    app_id
}

/// Publishes an empty `a.b` message and returns its id.
pub async fn send_message(api: &Api, app_id: &str) -> String {
    let (status, msg) = api
        .post(
            &format!("/api/v1/app/{app_id}/msg"),
            serde_json::json!({ "eventType": "a.b", "payload": {} }),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap_or_default().to_owned()
}

/// A test service that did not answer: fails the test under `CI=true`,
/// where every service must be up; otherwise says why it is skipped.
pub fn unreachable<T>(service: &str, url: &str, reason: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{service} at {url} is required under CI=true and is unreachable: {reason}");
    }
    eprintln!("skipped: {service} at {url} is unreachable ({reason})");
    None
}

/// A connection to the test Redis (`SWITCHYARD_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379`); unreachable, it fails the test under `CI=true`
/// and returns `None` with a printed reason otherwise.
pub async fn redis_or_skip() -> Option<(String, redis::aio::MultiplexedConnection)> {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let connected = async {
        let client = redis::Client::open(url.as_str())?;
        client.get_multiplexed_async_connection().await
    };
    match tokio::time::timeout(Duration::from_secs(5), connected).await {
        Ok(Ok(conn)) => Some((url, conn)),
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 5 s".into(),
            };
            unreachable("Redis", &url, &reason)
        }
    }
}

/// A connection to the test NATS server (`SWITCHYARD_TEST_NATS_URL`,
/// default `nats://127.0.0.1:4222`, with JetStream); unreachable, it fails
/// the test under `CI=true` and returns `None` with a printed reason
/// otherwise.
pub async fn nats_or_skip() -> Option<(String, async_nats::Client)> {
    let url = std::env::var("SWITCHYARD_TEST_NATS_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let connected = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str());
    match tokio::time::timeout(Duration::from_secs(6), connected).await {
        Ok(Ok(client)) => Some((url, client)),
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 6 s".into(),
            };
            unreachable("NATS", &url, &reason)
        }
    }
}

/// A key no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A connection to the test RabbitMQ (`SWITCHYARD_TEST_AMQP_URL`, default
/// `amqp://guest:guest@127.0.0.1:5672/%2f`); unreachable, it fails the test
/// under `CI=true` and returns `None` with a printed reason otherwise.
pub async fn rabbitmq_or_skip() -> Option<(String, lapin::Connection)> {
    let url = std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let connected = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(5), connected).await {
        Ok(Ok(conn)) => Some((url, conn)),
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 5 s".into(),
            };
            unreachable("RabbitMQ", &url, &reason)
        }
    }
}

/// The test MQTT broker (`SWITCHYARD_TEST_MQTT_URL`, default
/// `mqtt://127.0.0.1:1883`) as its URL and its host and port, once an MQTT
/// 5 client got its CONNACK; unreachable, it fails the test under
/// `CI=true` and returns `None` with a printed reason otherwise.
pub async fn mqtt_or_skip() -> Option<(String, String, u16)> {
    let url = std::env::var("SWITCHYARD_TEST_MQTT_URL")
        .unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let rest = url.strip_prefix("mqtt://").unwrap_or(&url);
    let rest = rest
        .rsplit('@')
        .next()
        .unwrap_or(rest)
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(1883)),
        None => (rest.to_owned(), 1883),
    };
    let connected = async {
        let options = rumqttc::v5::MqttOptions::new(unique("sy-probe"), host.as_str(), port);
        let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 10);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_))) => {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), connected).await {
        Ok(Ok(())) => Some((url, host, port)),
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e,
                _ => "no answer within 5 s".into(),
            };
            unreachable("MQTT", &url, &reason)
        }
    }
}
