//! NATS JetStream as a broker source, end to end: messages published with
//! the NATS client arrive at a real HTTP receiver, signed; poison goes to
//! the dead-letter subject with its reason; a SIGKILL mid-stream loses
//! nothing and duplicates no message; messages published before Switchyard
//! starts are read; a dead-letter subject the stream stores is refused; the
//! source survives the NATS server going away and coming back.
//!
//! Needs NATS with JetStream (`SWITCHYARD_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`): unreachable, the tests fail under `CI=true` and
//! are skipped with a printed reason otherwise. The restart test runs its
//! own `nats-server` (`/usr/sbin/nats-server`) on a free loopback port.

mod common;

use async_nats::jetstream;
use common::broker::*;
use common::*;
use futures_util::StreamExt;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The TOML file declaring a NATS source on `stream` bound to `shop`, with
/// `extra` appended to its broker table (`, dead_letter_subject = "..."`).
fn config_file(dir: &std::path::Path, url: &str, stream: &str, extra: &str) -> String {
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[broker_sources]]\nname = \"orders\"\napp = \"shop\"\nbatch_size = 50\nbroker = {{ type = \"nats\", url = \"{url}\", stream = \"{stream}\", consumer = \"switchyard\", ack_wait_ms = 2000{extra} }}\n"
        ),
    )
    .unwrap();
    config.to_string_lossy().into_owned()
}

fn start(dir: &std::path::Path, url: &str, stream: &str, extra: &str) -> Server {
    let config = config_file(dir, url, stream, extra);
    Server::start(dir, &[("SWITCHYARD_CONFIG", config.as_str())])
}

/// A stream named `name` storing `<name>.>`; its name is also usable as a
/// subject token.
async fn make_stream(js: &jetstream::Context, name: &str) -> jetstream::stream::Stream {
    js.create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn publish(js: &jetstream::Context, subject: &str, body: String) {
    js.publish(subject.to_owned(), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Publishes envelopes `range` with their PubAcks awaited together.
async fn publish_many(js: &jetstream::Context, subject: &str, range: std::ops::Range<usize>) {
    let mut acks = Vec::new();
    for i in range {
        acks.push(
            js.publish(subject.to_owned(), envelope(i).into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
}

/// Waits until the source's consumer has nothing pending or unacknowledged.
async fn wait_all_acknowledged(js: &jetstream::Context, stream: &str) {
    let stream = js.get_stream(stream).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = stream.consumer_info("switchyard").await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still pending: {} undelivered, {} unacknowledged",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_messages_arrive_signed_and_poison_is_dead_lettered() {
    let Some((url, client)) = nats_or_skip().await else {
        return;
    };
    let js = jetstream::new(client);
    let stream = unique("SY_ORDERS");
    make_stream(&js, &stream).await;
    // The dead letters go to a stream of their own, so the source waits
    // for their PubAck.
    let dead_subject = format!("dead.{stream}");
    let dead_stream = format!("{stream}_DEAD");
    let dead = js
        .create_stream(jetstream::stream::Config {
            name: dead_stream.clone(),
            subjects: vec![dead_subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        &url,
        &stream,
        &format!(", dead_letter_subject = \"{dead_subject}\""),
    );
    let (rx, base) = Receiver::start().await;
    let api = server.client();
    let secret = shop_with_endpoint(&api, &format!("{base}/hook")).await;
    let (status, et) = api
        .post(
            "/api/v1/event-type",
            serde_json::json!({"name": "order.checked", "description": "d", "schemas": {"1": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
            }}}),
        )
        .await;
    assert_eq!(status, 201, "{et}");

    let subject = format!("{stream}.orders");
    let n = 200;
    for i in 0..n {
        publish(&js, &subject, envelope(i)).await;
        if i % 50 == 7 {
            // Poison: not JSON, an envelope naming another application,
            // and a payload its event type's schema refuses.
            publish(&js, &subject, "not json".into()).await;
            let other = r#"{"app":"other","eventType":"a.b","payload":{}}"#;
            publish(&js, &subject, other.into()).await;
            let unfit = r#"{"eventType":"order.checked","payload":{"a":"x","e":"unfit"}}"#;
            publish(&js, &subject, unfit.into()).await;
        }
    }
    // The header form: the body is the payload.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("switchyard-event-type", "order.paid");
    headers.insert("switchyard-event-id", "by-header");
    js.publish_with_headers(subject.clone(), headers, r#"{"e":"by-header"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();

    wait_for("every message delivered", Duration::from_secs(60), || {
        arrived(&rx, &secret).len() == n + 1
    })
    .await;
    let by_event = arrived(&rx, &secret);
    assert!(by_event.values().all(|ids| ids.len() == 1));
    assert!(by_event.contains_key("by-header"));
    assert!(!by_event.contains_key("unfit"), "a refused payload arrived");

    let deadline = Instant::now() + Duration::from_secs(20);
    while dead.get_info().await.unwrap().state.messages < 12 {
        assert!(Instant::now() < deadline, "the dead letters never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        dead.get_info().await.unwrap().state.messages,
        12,
        "4 × 3 poison messages, each dead-lettered once"
    );
    let mut codes = Vec::new();
    for seq in 1..=12 {
        let letter = dead.get_raw_message(seq).await.unwrap();
        let header = |n: &str| {
            letter
                .headers
                .get(n)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        assert!(!header("Switchyard-Rejected-Reason").is_empty());
        assert_eq!(header("Switchyard-Original-Stream"), stream);
        if header("Switchyard-Rejected-Code") == "not_json" {
            assert_eq!(&letter.payload[..], b"not json", "the original payload");
        }
        codes.push(header("Switchyard-Rejected-Code"));
    }
    for code in ["not_json", "app_mismatch", "invalid_message"] {
        assert_eq!(
            codes.iter().filter(|c| *c == code).count(),
            4,
            "{code}: {codes:?}"
        );
    }
    // Every message was settled: none is left to be delivered again.
    wait_all_acknowledged(&js, &stream).await;
    drop(server);
    js.delete_stream(&stream).await.unwrap();
    js.delete_stream(&dead_stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_stream_loses_nothing_and_duplicates_no_message() {
    let Some((url, client)) = nats_or_skip().await else {
        return;
    };
    let js = jetstream::new(client);
    let stream = unique("SY_CRASH");
    make_stream(&js, &stream).await;
    let subject = format!("{stream}.orders");
    let dir = tempfile::tempdir().unwrap();
    // The application first, then a backlog, so the source is busy (batches
    // between fetch and commit) when it is killed.
    let setup = Server::start(dir.path(), &[]);
    let (rx, base) = Receiver::start().await;
    let secret = shop_with_endpoint(&setup.client(), &format!("{base}/hook")).await;
    drop(setup);
    let n = 3000;
    publish_many(&js, &subject, 0..n * 2 / 3).await;
    let mut server = start(dir.path(), &url, &stream, "");
    let backlog = js.get_stream(&stream).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(info) = backlog.consumer_info("switchyard").await
            && info.ack_floor.stream_sequence >= 100
        {
            break;
        }
        assert!(Instant::now() < deadline, "the source never read");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    let info = backlog.consumer_info("switchyard").await.unwrap();
    assert!(info.num_pending > 0, "killed after the source had read all");
    // Published while Switchyard is down.
    publish_many(&js, &subject, n * 2 / 3..n).await;
    let server = start(dir.path(), &url, &stream, "");
    wait_for("every message delivered", Duration::from_secs(90), || {
        arrived(&rx, &secret).len() == n
    })
    .await;
    // One message per event id, however often NATS delivered it.
    let by_event = arrived(&rx, &secret);
    let duplicated: Vec<_> = by_event.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(duplicated.is_empty(), "{duplicated:?}");
    wait_all_acknowledged(&js, &stream).await;
    drop(server);
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_before_switchyard_starts_are_read() {
    let Some((url, client)) = nats_or_skip().await else {
        return;
    };
    let js = jetstream::new(client.clone());
    let stream = unique("SY_EARLY");
    make_stream(&js, &stream).await;
    let subject = format!("{stream}.orders");
    // No stream stores the dead-letter subject here: a plain publish that
    // a subscriber sees.
    let dead_subject = format!("dead.{stream}");
    let mut dead = client.subscribe(dead_subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    for i in 0..20 {
        publish(&js, &subject, envelope(i)).await;
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("switchyard-event-type", "not a valid type!");
    headers.insert("X-Trace", "t-1");
    js.publish_with_headers(subject.clone(), headers, r#"{"e":"bad"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &url,
        &stream,
        &format!(", dead_letter_subject = \"{dead_subject}\""),
    );
    // The application exists before the source reads anything.
    let setup = Server::start(dir.path(), &[]);
    let (rx, base) = Receiver::start().await;
    let secret = shop_with_endpoint(&setup.client(), &format!("{base}/hook")).await;
    drop(setup);
    let server = Server::start(dir.path(), &[("SWITCHYARD_CONFIG", config.as_str())]);

    wait_for(
        "every early message delivered",
        Duration::from_secs(60),
        || arrived(&rx, &secret).len() == 20,
    )
    .await;
    let letter = tokio::time::timeout(Duration::from_secs(20), dead.next())
        .await
        .expect("a dead letter")
        .unwrap();
    let headers = letter.headers.unwrap();
    assert_eq!(
        headers.get("Switchyard-Rejected-Code").unwrap().as_str(),
        "invalid_message"
    );
    assert_eq!(headers.get("X-Trace").unwrap().as_str(), "t-1");
    assert_eq!(&letter.payload[..], br#"{"e":"bad"}"#);
    // Switchyard made the durable consumer, acknowledging explicitly.
    let info = js
        .get_stream(&stream)
        .await
        .unwrap()
        .consumer_info("switchyard")
        .await
        .unwrap();
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    wait_all_acknowledged(&js, &stream).await;
    drop(server);
    js.delete_stream(&stream).await.unwrap();
}

/// Starts the binary with its log on a channel, for a source that fails
/// without stopping the server.
fn start_logged(
    dir: &std::path::Path,
    config: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_DATA_DIR", dir)
        .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
        .env("SWITCHYARD_CONFIG", config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_subject_the_stream_stores_is_refused() {
    let Some((url, client)) = nats_or_skip().await else {
        return;
    };
    let js = jetstream::new(client);
    let stream = unique("SY_LOOP");
    make_stream(&js, &stream).await;
    let captured = format!("{stream}.dead");
    let dir = tempfile::tempdir().unwrap();

    // Named in the configuration: the server does not start.
    let config = config_file(
        dir.path(),
        &url,
        &stream,
        &format!(", subjects = [\"{stream}.>\"], dead_letter_subject = \"{captured}\""),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_DATA_DIR", dir.path())
        .env("SWITCHYARD_CONFIG", &config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("deadLetterSubject") && said.contains(&captured),
        "{said}"
    );

    // Found only in the stream's own subjects: the source refuses to read.
    let config = config_file(
        dir.path(),
        &url,
        &stream,
        &format!(", dead_letter_subject = \"{captured}\""),
    );
    let (mut child, lines) = start_logged(dir.path(), &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    let refusal = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("deadLetterSubject") => break line,
            Ok(_) => continue,
            Err(e) => panic!("no refusal of the dead-letter subject logged: {e}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        refusal.contains(&captured) && refusal.contains("stored by the stream"),
        "{refusal}"
    );
    // Nothing was consumed: the consumer was never made.
    let stream_handle = js.get_stream(&stream).await.unwrap();
    assert!(stream_handle.consumer_info("switchyard").await.is_err());
    js.delete_stream(&stream).await.unwrap();
}

/// A `nats-server` of this test's own, with JetStream stored in `store`.
fn own_nats_server(port: u16, store: &std::path::Path) -> std::process::Child {
    Command::new("/usr/sbin/nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn connect_when_up(url: &str) -> async_nats::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = async_nats::connect(url).await {
            return c;
        }
        assert!(Instant::now() < deadline, "nats-server never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reads_on_after_the_nats_server_comes_back() {
    if !std::path::Path::new("/usr/sbin/nats-server").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("/usr/sbin/nats-server is required under CI=true");
        }
        eprintln!("skipped: /usr/sbin/nats-server is not installed");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let store = tempfile::tempdir().unwrap();
    let mut nats = own_nats_server(port, store.path());
    let js = jetstream::new(connect_when_up(&url).await);
    let stream = "SY_RESTART";
    make_stream(&js, stream).await;
    let subject = format!("{stream}.orders");
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &url, stream, "");
    let (rx, base) = Receiver::start().await;
    let secret = shop_with_endpoint(&server.client(), &format!("{base}/hook")).await;
    for i in 0..50 {
        publish(&js, &subject, envelope(i)).await;
    }
    wait_for("the first half delivered", Duration::from_secs(30), || {
        arrived(&rx, &secret).len() == 50
    })
    .await;

    let _ = nats.kill();
    let _ = nats.wait();
    // Long enough for fetches to fail against the missing server.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut nats = own_nats_server(port, store.path());
    let js = jetstream::new(connect_when_up(&url).await);
    for i in 50..100 {
        publish(&js, &subject, envelope(i)).await;
    }
    wait_for("the second half delivered", Duration::from_secs(60), || {
        arrived(&rx, &secret).len() == 100
    })
    .await;
    let by_event = arrived(&rx, &secret);
    assert!(by_event.values().all(|ids| ids.len() == 1));
    drop(server);
    let _ = nats.kill();
    let _ = nats.wait();
}
