//! Drives any Svix-compatible server end to end: a verifying receiver on
//! loopback, K endpoints, N messages from C concurrent producers, then reports
//! accept rate, end-to-end throughput, send→arrival latency, losses,
//! duplicates and the server's peak RSS.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use clap::Parser;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::signing::EndpointSecret;

#[derive(Parser, Debug, Clone)]
#[command(about = "End-to-end benchmark for Svix-compatible webhook servers")]
struct Args {
    /// Base URL of the server under test; several comma-separated URLs
    /// (nodes sharing one database) spread the producers over them.
    #[arg(long, default_value = "http://127.0.0.1:8071")]
    url: String,
    /// Bearer token for its API.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN")]
    token: String,
    /// Messages to send.
    #[arg(long, short = 'n', default_value_t = 20_000)]
    messages: u64,
    /// Concurrent producers.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: u64,
    /// Endpoints per application (each message fans out to all of them).
    #[arg(long, short = 'k', default_value_t = 1)]
    endpoints: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 1024)]
    payload_bytes: usize,
    /// Target total send rate in messages/s (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// PIDs of the server's processes (comma-separated), to report their
    /// CPU time and peak RSS (Linux VmHWM).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Address the receiver binds (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    receiver: String,
    /// Also measure the harness's own ceiling: producers posting straight to
    /// the receiver, with no gateway in between.
    #[arg(long)]
    baseline: bool,
    /// Incoming-webhook mode: a Stripe source whose K destinations are the
    /// receiver's endpoints; producers post Stripe-signed events to its
    /// ingest URL, as Stripe would.
    #[arg(long)]
    ingest: bool,
    /// Sets this `rateLimit` (deliveries per second) on every endpoint, so
    /// the per-endpoint lane's controls are in the measured path; pick one
    /// above the offered load to measure their cost alone.
    #[arg(long)]
    endpoint_rate_limit: Option<u32>,
    /// Gives every endpoint a circuit breaker with the default settings, so
    /// its bookkeeping is in the measured path.
    #[arg(long)]
    endpoint_breaker: bool,
    /// Broker mode: producers write envelopes to this broker with its own
    /// client (`redis`: XADD to a stream; `rabbitmq`: publish to a durable
    /// queue with publisher confirms; `nats`: JetStream publish awaiting
    /// the PubAck), and a broker source bound to the application, created
    /// through the API, reads them.
    #[arg(long, value_parser = ["redis", "rabbitmq", "nats"])]
    broker: Option<String>,
    /// The broker's URL, as the server reaches it and the producers too
    /// [default: the local Redis, RabbitMQ or NATS].
    #[arg(long)]
    broker_url: Option<String>,
    /// The broker source's `batchSize`.
    #[arg(long, default_value_t = 500)]
    broker_batch: u32,
}

struct Receiver {
    started: Instant,
    secrets: Vec<EndpointSecret>,
    endpoints: u64,
    /// Arrival count per (message seq, endpoint).
    arrivals: Vec<AtomicU8>,
    delivered: AtomicU64,
    bad_signatures: AtomicU64,
    last_arrival_ns: AtomicU64,
    latencies: Mutex<Histogram<u64>>,
    verify: bool,
}

#[derive(serde::Deserialize)]
struct Probe {
    seq: u64,
    sent_ns: u64,
}

async fn receive(
    State(rx): State<Arc<Receiver>>,
    Path(endpoint): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = rx.started.elapsed().as_nanos() as u64;
    let Ok(probe) = serde_json::from_slice::<Probe>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if rx.verify {
        let ok = rx.secrets.get(endpoint as usize).is_some_and(|secret| {
            signature_verifies(secret, &headers, &body, (now_unix_ms() / 1000) as i64)
        });
        if !ok {
            rx.bad_signatures.fetch_add(1, Ordering::Relaxed);
            return StatusCode::UNAUTHORIZED;
        }
    }
    let slot = (probe.seq * rx.endpoints + endpoint) as usize;
    if let Some(count) = rx.arrivals.get(slot) {
        count.fetch_add(1, Ordering::Relaxed);
    }
    rx.delivered.fetch_add(1, Ordering::Relaxed);
    rx.last_arrival_ns.fetch_max(now, Ordering::Relaxed);
    if let Ok(mut h) = rx.latencies.lock() {
        let _ = h.record((now.saturating_sub(probe.sent_ns) / 1_000).max(1));
    }
    StatusCode::NO_CONTENT
}

fn signature_headers(headers: &HeaderMap) -> Option<(&str, &str, &str)> {
    switchyard_core::signing::signature_headers(|n| headers.get(n).and_then(|v| v.to_str().ok()))
}

/// Whether a delivery carries a valid signature by `secret`, within the
/// Standard Webhooks tolerance of five minutes.
fn signature_verifies(
    secret: &EndpointSecret,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> bool {
    signature_headers(headers).is_some_and(|(id, timestamp, signature)| {
        switchyard_core::signing::verify(
            std::slice::from_ref(secret),
            id,
            timestamp,
            signature,
            body,
            now_secs,
            300,
        )
        .is_ok()
    })
}

fn now_unix_ms() -> u64 {
    switchyard_core::timefmt::now_ms()
}

/// User + system CPU seconds the process has used so far.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn api(
    client: &reqwest::Client,
    args: &Args,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let resp = client
        .post(format!("{}{path}", node_urls(args)[0]))
        .bearer_auth(&args.token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("POST {path} returned {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

fn payload(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    padded(
        format!(r#"{{"seq":{seq},"sent_ns":{sent_ns},"pad":""#),
        size,
    )
}

/// `head` (a JSON object opened up to a string value) closed after enough
/// padding to make the document `size` bytes.
fn padded(head: String, size: usize) -> Vec<u8> {
    let pad = size.saturating_sub(head.len() + 2);
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    body.resize(head.len() + pad, b'x');
    body.extend_from_slice(b"\"}");
    body
}

struct ProducerReport {
    accept_latency: Histogram<u64>,
    accepted: u64,
    errors: u64,
    accept_elapsed: Duration,
}

/// Runs `concurrency` producers over `messages` sequence numbers; `send` posts one.
async fn produce<F, Fut>(args: &Args, started: Instant, send: F) -> ProducerReport
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let send = Arc::new(send);
    let accept_latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
    ));
    let t0 = Instant::now();
    let mut producers = Vec::new();
    for _ in 0..args.concurrency {
        let (next, accepted, errors, send, accept_latency) = (
            next.clone(),
            accepted.clone(),
            errors.clone(),
            send.clone(),
            accept_latency.clone(),
        );
        let (total, rate) = (args.messages, args.rate);
        producers.push(tokio::spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    break;
                }
                if rate > 0 {
                    let due = t0 + Duration::from_secs_f64(seq as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent_ns = started.elapsed().as_nanos() as u64;
                let sent_at = Instant::now();
                let ok = send(seq, sent_ns).await;
                if let Ok(mut h) = accept_latency.lock() {
                    let _ = h.record((sent_at.elapsed().as_micros() as u64).max(1));
                }
                if ok {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for p in producers {
        let _ = p.await;
    }
    let accept_latency = accept_latency
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    ProducerReport {
        accept_latency,
        accepted: accepted.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        accept_elapsed: t0.elapsed(),
    }
}

async fn start_receiver(
    args: &Args,
    secrets: Vec<EndpointSecret>,
    verify: bool,
) -> anyhow::Result<(Arc<Receiver>, String, Instant)> {
    let started = Instant::now();
    let rx = Arc::new(Receiver {
        started,
        secrets,
        endpoints: args.endpoints,
        arrivals: (0..args.messages * args.endpoints)
            .map(|_| AtomicU8::new(0))
            .collect(),
        delivered: AtomicU64::new(0),
        bad_signatures: AtomicU64::new(0),
        last_arrival_ns: AtomicU64::new(0),
        latencies: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
        verify,
    });
    let listener = tokio::net::TcpListener::bind(&args.receiver).await?;
    if !listener.local_addr()?.ip().is_loopback() {
        bail!("the receiver must bind a loopback address");
    }
    let base = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/ep/{endpoint}", axum::routing::post(receive))
        .with_state(rx.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((rx, base, started))
}

async fn wait_for(rx: &Receiver, expected: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while rx.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A short grace period to catch late duplicates.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn report(label: &str, args: &Args, rx: &Receiver, prod: &ProducerReport, expected: u64) {
    let delivered = rx.delivered.load(Ordering::Relaxed);
    let e2e_secs = (rx.last_arrival_ns.load(Ordering::Relaxed) as f64 / 1e9).max(1e-9);
    let (mut lost, mut duplicates) = (0u64, 0u64);
    for count in &rx.arrivals {
        match count.load(Ordering::Relaxed) {
            0 => lost += 1,
            n => duplicates += u64::from(n) - 1,
        }
    }
    // Messages the server refused were never promised, so they are not lost.
    lost = lost.saturating_sub(prod.errors * args.endpoints);
    let h = rx.latencies.lock().map(|h| h.clone()).ok();
    let q = |p: f64| {
        h.as_ref()
            .map(|h| h.value_at_quantile(p) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    println!("== {label}");
    println!(
        "messages={} endpoints={} concurrency={} payload={}B rate={}",
        args.messages,
        args.endpoints,
        args.concurrency,
        args.payload_bytes,
        if args.rate > 0 {
            args.rate.to_string()
        } else {
            "max".into()
        }
    );
    println!(
        "accepted={} rejected={} accept_rate={:.0} msg/s",
        prod.accepted,
        prod.errors,
        prod.accepted as f64 / prod.accept_elapsed.as_secs_f64()
    );
    let a = &prod.accept_latency;
    println!(
        "accept_latency_ms p50={:.2} p99={:.2} max={:.2}",
        a.value_at_quantile(0.5) as f64 / 1000.0,
        a.value_at_quantile(0.99) as f64 / 1000.0,
        a.max() as f64 / 1000.0
    );
    println!(
        "delivered={}/{} end_to_end={:.0} msg/s deliveries={:.0} /s",
        delivered,
        expected,
        prod.accepted as f64 / e2e_secs,
        delivered as f64 / e2e_secs
    );
    println!(
        "latency_ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        h.as_ref().map(|h| h.max() as f64 / 1000.0).unwrap_or(0.0)
    );
    println!(
        "lost={lost} duplicates={duplicates} bad_signatures={}",
        rx.bad_signatures.load(Ordering::Relaxed)
    );
}

async fn run_baseline(args: &Args) -> anyhow::Result<()> {
    let mut base_args = args.clone();
    base_args.endpoints = 1;
    let (rx, base, started) = start_receiver(&base_args, vec![], false).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let url = format!("{base}/ep/0");
    let size = args.payload_bytes;
    let prod = produce(&base_args, started, move |seq, sent_ns| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(payload(seq, sent_ns, size))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    wait_for(&rx, prod.accepted, Duration::from_secs(10)).await;
    report(
        "baseline: producers -> receiver directly (harness ceiling)",
        &base_args,
        &rx,
        &prod,
        base_args.messages,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.baseline {
        run_baseline(&args).await?;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize * 2)
        .build()?;
    let secrets: Vec<EndpointSecret> = (0..args.endpoints)
        .map(|_| EndpointSecret::generate())
        .collect();
    let (rx, base, started) = start_receiver(&args, secrets.clone(), true).await?;
    if args.ingest {
        return run_ingest(args, client, rx, base, started, secrets).await;
    }
    let app_id = app_with_endpoints(&client, &args, &base, &secrets).await?;
    if args.broker.is_some() {
        return run_broker(args, client, rx, started, app_id).await;
    }
    let cpu_before: Option<f64> = args.server_pid.iter().map(|&p| cpu_secs(p)).sum();
    let msg_urls: Arc<Vec<String>> = Arc::new(
        node_urls(&args)
            .iter()
            .map(|u| format!("{u}/api/v1/app/{app_id}/msg?with_content=false"))
            .collect(),
    );
    let auth = format!("Bearer {}", args.token);
    let size = args.payload_bytes;
    let fail_logged = Arc::new(AtomicBool::new(false));
    let prod = produce(&args, started, move |seq, sent_ns| {
        let (client, url, auth, fail_logged) = (
            client.clone(),
            msg_urls[seq as usize % msg_urls.len()].clone(),
            auth.clone(),
            fail_logged.clone(),
        );
        async move {
            let mut body = br#"{"eventType":"bench.event","payload":"#.to_vec();
            body.extend_from_slice(&payload(seq, sent_ns, size));
            body.push(b'}');
            let request = client
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(body);
            send_counted(request, &fail_logged).await
        }
    })
    .await;
    finish(&args, &rx, &prod, cpu_before).await;
    Ok(())
}

/// An application whose endpoints are the receiver's, each with its secret.
async fn app_with_endpoints(
    client: &reqwest::Client,
    args: &Args,
    base: &str,
    secrets: &[EndpointSecret],
) -> anyhow::Result<String> {
    let app_uid = format!("bench-{}", now_unix_ms());
    let app = api(
        client,
        args,
        "/api/v1/app",
        json!({ "name": app_uid, "uid": app_uid }),
    )
    .await?;
    let app_id = app["id"].as_str().context("app id")?.to_owned();
    for (i, secret) in secrets.iter().enumerate() {
        api(
            client,
            args,
            &format!("/api/v1/app/{app_id}/endpoint"),
            json!({ "url": format!("{base}/ep/{i}"), "secret": secret.to_secret_text(),
                     "rateLimit": args.endpoint_rate_limit,
                     "circuitBreaker": args.endpoint_breaker.then(|| json!({})) }),
        )
        .await?;
    }
    Ok(app_id)
}

/// The envelope a producer writes to a broker: the probe as the payload.
fn envelope(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut body = br#"{"eventType":"bench.event","payload":"#.to_vec();
    body.extend_from_slice(&payload(seq, sent_ns, size));
    body.push(b'}');
    body
}

/// Broker mode: a broker source through the API, producers on the
/// broker's own client; the source is deleted afterwards (and the stream,
/// queue or subject's data with it where the broker allows).
async fn run_broker(
    args: Args,
    client: reqwest::Client,
    rx: Arc<Receiver>,
    started: Instant,
    app_id: String,
) -> anyhow::Result<()> {
    let kind = args.broker.clone().unwrap_or_default();
    let name = format!("bench-{}", now_unix_ms());
    let url = args.broker_url.clone().unwrap_or_else(|| {
        match kind.as_str() {
            "rabbitmq" => "amqp://guest:guest@127.0.0.1:5672/%2f",
            "nats" => "nats://127.0.0.1:4222",
            _ => "redis://127.0.0.1:6379",
        }
        .to_owned()
    });
    let producer = Producer::connect(&kind, &url, &name).await?;
    let broker = match kind.as_str() {
        "redis" => json!({"type": "redis", "url": url, "stream": name, "group": "bench"}),
        "rabbitmq" => {
            json!({"type": "rabbitmq", "url": url, "queue": name, "prefetch": args.broker_batch * 2})
        }
        "nats" => json!({"type": "nats", "url": url, "stream": name, "consumer": "bench"}),
        other => bail!("no producer for broker '{other}'"),
    };
    let source = api(
        &client,
        &args,
        "/api/v1/broker-source",
        json!({"name": name, "app": app_id, "batchSize": args.broker_batch, "broker": broker}),
    )
    .await?;
    let source_id = source["id"].as_str().context("source id")?.to_owned();
    let cpu_before: Option<f64> = args.server_pid.iter().map(|&p| cpu_secs(p)).sum();
    let size = args.payload_bytes;
    let fail_logged = Arc::new(AtomicBool::new(false));
    let producer = Arc::new(producer);
    let prod = {
        let producer = producer.clone();
        produce(&args, started, move |seq, sent_ns| {
            let (producer, fail_logged) = (producer.clone(), fail_logged.clone());
            async move {
                let sent = producer.send(envelope(seq, sent_ns, size)).await;
                if let Err(e) = &sent
                    && !fail_logged.swap(true, Ordering::Relaxed)
                {
                    eprintln!("first failed publish: {e}");
                }
                sent.is_ok()
            }
        })
        .await
    };
    finish(&args, &rx, &prod, cpu_before).await;
    let status = client
        .get(format!(
            "{}/api/v1/broker-source/{source_id}/status",
            node_urls(&args)[0]
        ))
        .bearer_auth(&args.token)
        .send()
        .await?
        .text()
        .await?;
    println!("source_status={status}");
    client
        .delete(format!(
            "{}/api/v1/broker-source/{source_id}",
            node_urls(&args)[0]
        ))
        .bearer_auth(&args.token)
        .send()
        .await?;
    producer.clean_up().await;
    Ok(())
}

/// A producer on a broker's own client, writing to `name` (a stream, a
/// queue, or a JetStream stream of that name on the subject `name.events`).
enum Producer {
    Redis(redis::aio::MultiplexedConnection, String),
    /// The connection is kept with its channel.
    RabbitMq(lapin::Connection, lapin::Channel, String),
    Nats(async_nats::jetstream::Context, String),
}

impl Producer {
    async fn connect(kind: &str, url: &str, name: &str) -> anyhow::Result<Self> {
        Ok(match kind {
            "redis" => {
                let client = redis::Client::open(url)?;
                Self::Redis(
                    client.get_multiplexed_async_connection().await?,
                    name.into(),
                )
            }
            "rabbitmq" => {
                let conn =
                    lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
                let channel = conn.create_channel().await?;
                channel
                    .confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await?;
                channel
                    .queue_declare(
                        name.into(),
                        lapin::options::QueueDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await?;
                Self::RabbitMq(conn, channel, name.into())
            }
            "nats" => {
                let js = async_nats::jetstream::new(async_nats::connect(url).await?);
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: name.into(),
                    subjects: vec![format!("{name}.events")],
                    ..Default::default()
                })
                .await?;
                Self::Nats(js, format!("{name}.events"))
            }
            other => bail!("no producer for broker '{other}'"),
        })
    }

    async fn send(&self, body: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::Redis(conn, stream) => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("XADD")
                    .arg(stream)
                    .arg("*")
                    .arg("body")
                    .arg(body)
                    .query_async(&mut conn)
                    .await?;
            }
            Self::RabbitMq(_, channel, queue) => {
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        lapin::options::BasicPublishOptions::default(),
                        &body,
                        lapin::BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                if !confirm.is_ack() {
                    bail!("RabbitMQ did not confirm the publish: {confirm:?}");
                }
            }
            Self::Nats(js, subject) => {
                js.publish(subject.clone(), body.into()).await?.await?;
            }
        }
        Ok(())
    }

    async fn clean_up(&self) {
        match self {
            Self::Redis(conn, stream) => {
                let mut conn = conn.clone();
                let _: redis::RedisResult<i64> =
                    redis::cmd("DEL").arg(stream).query_async(&mut conn).await;
            }
            Self::RabbitMq(conn, channel, queue) => {
                let _ = channel
                    .queue_delete(queue.as_str().into(), Default::default())
                    .await;
                let _ = channel
                    .queue_delete(format!("{queue}.dead").as_str().into(), Default::default())
                    .await;
                let _ = conn.close(200, "benchmark done".into()).await;
            }
            Self::Nats(js, subject) => {
                let stream = subject.trim_end_matches(".events");
                let _ = js.delete_stream(stream).await;
            }
        }
    }
}

/// Waits for the deliveries, then prints the report and the server's CPU and memory.
async fn finish(args: &Args, rx: &Receiver, prod: &ProducerReport, cpu_before: Option<f64>) {
    let expected = prod.accepted * args.endpoints;
    wait_for(rx, expected, Duration::from_secs(args.timeout_secs)).await;
    report(&format!("server {}", args.url), args, rx, prod, expected);
    let cpu_after: Option<f64> = args.server_pid.iter().map(|&p| cpu_secs(p)).sum();
    if let (Some(before), Some(after)) = (cpu_before, cpu_after)
        && !args.server_pid.is_empty()
    {
        println!(
            "server_cpu={:.2}s ({:.0} us per message)",
            after - before,
            (after - before) * 1e6 / prod.accepted.max(1) as f64
        );
    }
    for &pid in &args.server_pid {
        match peak_rss_kib(pid) {
            Some(kib) => println!("server_peak_rss={:.1} MiB (pid {pid})", kib as f64 / 1024.0),
            None => println!("server_peak_rss=unknown (no /proc/{pid}/status)"),
        }
    }
}

const STRIPE_SECRET: &str = "whsec_benchmarksecret0123456789";

/// A Stripe-shaped event carrying the receiver's probe fields, signed as
/// Stripe signs (`t=…,v1=hex(HMAC-SHA256(secret, "t.body"))`).
fn stripe_event(seq: u64, sent_ns: u64, size: usize, run: u64) -> (Vec<u8>, String) {
    let body = padded(
        format!(
            r#"{{"id":"evt_{run}_{seq}","object":"event","type":"invoice.paid","seq":{seq},"sent_ns":{sent_ns},"pad":""#
        ),
        size,
    );
    let t = now_unix_ms() / 1000;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(STRIPE_SECRET.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&body);
    let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

async fn run_ingest(
    args: Args,
    client: reqwest::Client,
    rx: Arc<Receiver>,
    base: String,
    started: Instant,
    secrets: Vec<EndpointSecret>,
) -> anyhow::Result<()> {
    let run = now_unix_ms();
    let source = api(
        &client,
        &args,
        "/ingest/api/v1/source",
        json!({ "name": format!("bench-{run}"), "type": "stripe", "config": { "secret": STRIPE_SECRET } }),
    )
    .await?;
    let source_id = source["id"].as_str().context("source id")?.to_owned();
    let token = source["ingestUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .context("ingest token")?
        .to_owned();
    for (i, secret) in secrets.iter().enumerate() {
        api(
            &client,
            &args,
            &format!("/ingest/api/v1/source/{source_id}/endpoint"),
            json!({ "url": format!("{base}/ep/{i}"), "secret": secret.to_secret_text(),
                     "rateLimit": args.endpoint_rate_limit,
                     "circuitBreaker": args.endpoint_breaker.then(|| json!({})) }),
        )
        .await?;
    }
    let cpu_before: Option<f64> = args.server_pid.iter().map(|&p| cpu_secs(p)).sum();
    let urls: Arc<Vec<String>> = Arc::new(
        node_urls(&args)
            .iter()
            .map(|u| format!("{u}/ingest/{token}"))
            .collect(),
    );
    let size = args.payload_bytes;
    let fail_logged = Arc::new(AtomicBool::new(false));
    let prod = produce(&args, started, move |seq, sent_ns| {
        let (client, url, fail_logged) = (
            client.clone(),
            urls[seq as usize % urls.len()].clone(),
            fail_logged.clone(),
        );
        async move {
            let (body, signature) = stripe_event(seq, sent_ns, size, run);
            let request = client
                .post(&url)
                .header("stripe-signature", signature)
                .header("content-type", "application/json")
                .body(body);
            send_counted(request, &fail_logged).await
        }
    })
    .await;
    finish(&args, &rx, &prod, cpu_before).await;
    Ok(())
}

/// Sends one producer request; the first refusal is printed, so a run that
/// fails wholesale says why.
async fn send_counted(request: reqwest::RequestBuilder, fail_logged: &AtomicBool) -> bool {
    match request.send().await {
        Ok(r) if r.status().is_success() => true,
        other => {
            if !fail_logged.swap(true, Ordering::Relaxed) {
                eprintln!("first rejected send: {other:?}");
            }
            false
        }
    }
}

fn node_urls(args: &Args) -> Vec<&str> {
    let urls: Vec<&str> = args
        .url
        .split(',')
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        vec!["http://127.0.0.1:8071"]
    } else {
        urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn signed(family: &str, secret: &EndpointSecret, at: i64, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut set = |name: String, value: String| {
            let name = axum::http::HeaderName::try_from(name).unwrap();
            headers.insert(name, HeaderValue::try_from(value).unwrap());
        };
        set(format!("{family}-id"), "msg_1".into());
        set(format!("{family}-timestamp"), at.to_string());
        set(
            format!("{family}-signature"),
            secret.sign("msg_1", at, body),
        );
        headers
    }

    /// svix-server's default header names verify like the Standard Webhooks ones.
    #[test]
    fn both_header_families_verify() {
        let secret = EndpointSecret::generate();
        let other = EndpointSecret::generate();
        let body = br#"{"seq":1,"sent_ns":2}"#;
        for family in ["webhook", "svix"] {
            let headers = signed(family, &secret, 1_000, body);
            assert!(
                signature_verifies(&secret, &headers, body, 1_000),
                "{family}"
            );
            assert!(
                !signature_verifies(&other, &headers, body, 1_000),
                "{family}"
            );
            assert!(
                !signature_verifies(&secret, &headers, b"{}", 1_000),
                "{family}"
            );
            assert!(
                !signature_verifies(&secret, &headers, body, 1_000 + 301),
                "{family}"
            );
        }
        assert!(!signature_verifies(&secret, &HeaderMap::new(), body, 1_000));
    }
}
