//! RabbitMQ as a broker source, end to end: messages published with lapin
//! arrive at a real HTTP receiver, signed; poison goes to the dead-letter
//! queue with the reason; a SIGKILL mid-stream loses nothing and duplicates
//! no message; a message published before Switchyard starts is read.
//!
//! Needs RabbitMQ (`SWITCHYARD_TEST_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): unreachable, the tests fail
//! under `CI=true` and are skipped with a printed reason otherwise. Each
//! test uses queues of its own and deletes them.

mod common;

use common::broker::*;
use common::*;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use std::time::Duration;
use switchyard_engine::broker_intake::{BrokerConsumer, BrokerKinds, Settlement, broker_key};

/// Starts a server whose TOML file declares a RabbitMQ source on `queue`,
/// bound to the application `shop`.
fn start(dir: &std::path::Path, url: &str, queue: &str) -> Server {
    start_with(dir, url, queue, "")
}

/// As [`start`], with more broker settings (`, key = value` each).
fn start_with(dir: &std::path::Path, url: &str, queue: &str, more: &str) -> Server {
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[broker_sources]]\nname = \"orders\"\napp = \"shop\"\nbatch_size = 50\nbroker = {{ type = \"rabbitmq\", url = \"{url}\", queue = \"{queue}\", prefetch = 120{more} }}\n"
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    Server::start(dir, &[("SWITCHYARD_CONFIG", config.as_str())])
}

/// A producer's channel, with publisher confirms so a publish has landed
/// when it returns.
async fn producer(conn: &lapin::Connection) -> Channel {
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
}

async fn declare(channel: &Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

async fn publish(channel: &Channel, queue: &str, body: &str, properties: BasicProperties) {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
}

/// Publishes the envelopes of `events` without waiting for each confirm
/// (so the queue fills faster than it drains), then waits for them all.
async fn publish_many(channel: &Channel, queue: &str, events: std::ops::Range<usize>) {
    let mut confirms = Vec::new();
    for i in events {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                envelope(i).as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }
}

fn with_headers(pairs: &[(&str, &str)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert((*k).into(), AMQPValue::LongString((*v).into()));
    }
    BasicProperties::default().with_headers(table)
}

/// Ready messages in `queue`.
async fn ready(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count()
}

fn header(properties: &BasicProperties, name: &str) -> String {
    match properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
    {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {name}: {other:?}"),
    }
}

/// Polls `done` every 50 ms for up to 20 s.
async fn wait_for_async<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delete(channel: &Channel, queues: &[&str]) {
    for queue in queues {
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_messages_arrive_signed_and_poison_is_dead_lettered() {
    let Some((url, conn)) = rabbitmq_or_skip().await else {
        return;
    };
    let queue = unique("sy-orders");
    let dead = format!("{queue}.dead");
    let channel = producer(&conn).await;
    declare(&channel, &queue).await;
    // Published before Switchyard runs: read once it does.
    let early = serde_json::json!({
        "eventType": "order.paid", "eventId": "early", "payload": {"e": "early"},
    });
    publish(
        &channel,
        &queue,
        &early.to_string(),
        BasicProperties::default(),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &url, &queue);
    let (rx, base) = Receiver::start().await;
    let api = server.client();
    // Switchyard took it while its application did not exist yet, so it
    // was handed back to the queue (not acknowledged, not dead-lettered).
    let probe = producer(&conn).await;
    wait_for_async("the early message taken", || async {
        ready(&probe, &queue).await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let secret = shop_with_endpoint(&api, &format!("{base}/hook")).await;
    let (status, et) = api
        .post(
            "/api/v1/event-type",
            serde_json::json!({"name": "order.shipped", "description": "d", "schemas": {"1": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "required": ["a"],
            }}}),
        )
        .await;
    assert_eq!(status, 201, "{et}");

    let n = 200;
    for i in 0..n {
        publish(&channel, &queue, &envelope(i), BasicProperties::default()).await;
        if i % 50 == 7 {
            // Poison: not JSON, an envelope naming another application,
            // and a payload its event type's schema refuses.
            let poison = [
                "not json".to_owned(),
                r#"{"app":"other","eventType":"a.b","payload":{}}"#.to_owned(),
                r#"{"eventType":"order.shipped","payload":{"a":"x"}}"#.to_owned(),
            ];
            for body in poison {
                let properties = with_headers(&[("producer-note", "keep me")]);
                publish(&channel, &queue, &body, properties).await;
            }
        }
    }
    // The header form: the body is the payload, the event type a header.
    let properties = with_headers(&[
        ("switchyard-event-type", "order.paid"),
        ("switchyard-event-id", "by-header"),
    ]);
    publish(&channel, &queue, r#"{"e":"by-header"}"#, properties).await;
    // Without an eventId, the message_id property names the message: the
    // same message_id twice is one message.
    for _ in 0..2 {
        let properties = with_headers(&[("switchyard-event-type", "order.paid")])
            .with_message_id(ShortString::from("order-77"));
        publish(&channel, &queue, r#"{"e":"by-message-id"}"#, properties).await;
    }

    wait_for("every message delivered", Duration::from_secs(60), || {
        arrived(&rx, &secret).len() == n + 3
    })
    .await;
    let by_event = arrived(&rx, &secret);
    assert!(by_event.contains_key("early"));
    assert!(by_event.contains_key("by-header"));
    assert!(by_event.values().all(|ids| ids.len() == 1), "{by_event:?}");

    // 4 × 3 poison messages in the dead-letter queue, with the reason.
    let mut codes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while codes.len() < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "dead letters so far: {codes:?}"
        );
        let got = channel
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        let Some(message) = got else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let properties = &message.delivery.properties;
        assert!(!header(properties, "x-switchyard-rejected-reason").is_empty());
        assert_eq!(header(properties, "producer-note"), "keep me");
        let code = header(properties, "x-switchyard-rejected-code");
        let body = String::from_utf8(message.delivery.data.clone()).unwrap();
        match code.as_str() {
            "not_json" => assert_eq!(body, "not json"),
            "app_mismatch" => assert!(body.contains("other"), "{body}"),
            "invalid_message" => assert!(body.contains("order.shipped"), "{body}"),
            other => panic!("unexpected code {other}: {body}"),
        }
        codes.push(code);
    }
    codes.sort();
    codes.dedup();
    assert_eq!(codes, ["app_mismatch", "invalid_message", "not_json"]);
    assert_eq!(ready(&channel, &dead).await, 0, "only the poison");

    // Every message was acknowledged: once Switchyard is gone (which would
    // give back anything it held unacked), the queue is empty.
    drop(server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ready(&channel, &queue).await, 0);
    delete(&channel, &[&queue, &dead]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_stream_loses_nothing_and_duplicates_no_message() {
    let Some((url, conn)) = rabbitmq_or_skip().await else {
        return;
    };
    let queue = unique("sy-crash");
    let channel = producer(&conn).await;
    declare(&channel, &queue).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &url, &queue);
    let (rx, base) = Receiver::start().await;
    let secret = shop_with_endpoint(&server.client(), &format!("{base}/hook")).await;
    let n = 3000;
    publish_many(&channel, &queue, 0..n / 2).await;
    wait_for("some deliveries", Duration::from_secs(30), || {
        rx.count() >= 50
    })
    .await;
    server.kill9();
    // Published while Switchyard is down.
    publish_many(&channel, &queue, n / 2..n).await;
    let _server = start(dir.path(), &url, &queue);
    wait_for("every message delivered", Duration::from_secs(90), || {
        arrived(&rx, &secret).len() == n
    })
    .await;
    // One message per event id, however often it was delivered.
    let by_event = arrived(&rx, &secret);
    let duplicated: Vec<_> = by_event.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(duplicated.is_empty(), "{duplicated:?}");
    delete(&channel, &[&queue, &format!("{queue}.dead")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_is_declared_again_and_read() {
    let Some((url, conn)) = rabbitmq_or_skip().await else {
        return;
    };
    let queue = unique("sy-gone");
    let channel = producer(&conn).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &url, &queue);
    let (rx, base) = Receiver::start().await;
    let secret = shop_with_endpoint(&server.client(), &format!("{base}/hook")).await;
    // Switchyard declares the queue (and its dead-letter queue) itself.
    // Each probe on a channel of its own: a failed one closes its channel.
    wait_for_async("the queue declared", || async {
        let probe = conn.create_channel().await.unwrap();
        probe
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok()
    })
    .await;
    publish_many(&channel, &queue, 0..10).await;
    wait_for("the first messages", Duration::from_secs(30), || {
        arrived(&rx, &secret).len() == 10
    })
    .await;
    // Deleting the queue cancels the consumer: the source reconnects and
    // declares it again.
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    wait_for_async("the queue declared again", || async {
        let probe = conn.create_channel().await.unwrap();
        probe
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok()
    })
    .await;
    publish_many(&channel, &queue, 10..20).await;
    wait_for("the messages after", Duration::from_secs(30), || {
        arrived(&rx, &secret).len() == 20
    })
    .await;
    delete(&channel, &[&queue, &format!("{queue}.dead")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_written_leaves_the_message_in_the_queue() {
    let Some((url, conn)) = rabbitmq_or_skip().await else {
        return;
    };
    let queue = unique("sy-nodlq");
    let channel = producer(&conn).await;
    declare(&channel, &queue).await;
    let dir = tempfile::tempdir().unwrap();
    // amq.direct exists, and nothing is bound to it with this key: the
    // dead letter is unroutable.
    let server = start_with(
        dir.path(),
        &url,
        &queue,
        ", dead_letter_exchange = \"amq.direct\", dead_letter_routing_key = \"nobody-listens\"",
    );
    let (rx, base) = Receiver::start().await;
    let secret = shop_with_endpoint(&server.client(), &format!("{base}/hook")).await;
    publish(&channel, &queue, "not json", BasicProperties::default()).await;
    publish_many(&channel, &queue, 0..20).await;
    wait_for("the good messages", Duration::from_secs(30), || {
        arrived(&rx, &secret).len() == 20
    })
    .await;
    // Tried (and requeued) a few times meanwhile; kept, not dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(server);
    wait_for_async("the poison back in the queue", || async {
        ready(&channel, &queue).await == 1
    })
    .await;
    let kept = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.delivery.data, b"not json");
    delete(&channel, &[&queue]).await;
}

/// Receives from `consumer` until `n` messages came (each receive waits
/// about a second at most when none is there).
async fn receive_n(
    consumer: &mut Box<dyn BrokerConsumer>,
    n: usize,
) -> Vec<(u64, switchyard_engine::broker_intake::BrokerMessage)> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= n {
            break;
        }
        got.extend(consumer.receive(n - got.len()).await.unwrap());
    }
    assert_eq!(got.len(), n, "received");
    got
}

fn event_of(m: &switchyard_engine::broker_intake::BrokerMessage) -> String {
    let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    v["eventId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_holds_prefetch_requeues_what_waits_and_reports_the_backlog() {
    let Some((url, conn)) = rabbitmq_or_skip().await else {
        return;
    };
    let queue = unique("sy-consumer");
    let channel = producer(&conn).await;
    declare(&channel, &queue).await;
    for i in 0..5 {
        let properties = BasicProperties::default().with_message_id(format!("m{i}").into());
        publish(&channel, &queue, &envelope(i), properties).await;
    }
    let broker = serde_json::json!({"type": "rabbitmq", "url": url, "queue": queue, "prefetch": 2});
    let mut consumer = switchyard_brokers::Kinds
        .connect(&broker, "node-1")
        .await
        .unwrap();
    let accepted = || Settlement::Accepted {
        message: switchyard_core::MessageId::generate(),
        created: true,
    };

    // Prefetch 2: two are handed out, three wait in the queue.
    let first = receive_n(&mut consumer, 2).await;
    assert_eq!(
        first[0].1.key.as_deref(),
        Some(broker_key(&format!("amqp:{queue}:m0")).as_str())
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while consumer.backlog().await.unwrap() != Some(3) {
        assert!(std::time::Instant::now() < deadline, "backlog never 3");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The first is requeued (the store could not take it), the second
    // acknowledged: the ack must not cover the first.
    consumer
        .settle(vec![
            (first[0].0, Settlement::Later("store away".into())),
            (first[1].0, accepted()),
        ])
        .await
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        let batch = receive_n(&mut consumer, 1).await;
        seen.extend(batch.iter().map(|(_, m)| event_of(m)));
        consumer
            .settle(batch.into_iter().map(|(h, _)| (h, accepted())).collect())
            .await
            .unwrap();
        if seen.len() == 4 {
            break;
        }
    }
    let rest = consumer.receive(10).await.unwrap();
    seen.extend(rest.iter().map(|(_, m)| event_of(m)));
    consumer
        .settle(rest.into_iter().map(|(h, _)| (h, accepted())).collect())
        .await
        .unwrap();
    seen.sort();
    assert_eq!(seen, ["e0", "e2", "e3", "e4"], "the requeued one came back");
    assert_eq!(consumer.backlog().await.unwrap(), Some(0));
    // Nothing is held unacked either.
    drop(consumer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready(&channel, &queue).await, 0);
    delete(&channel, &[&queue, &format!("{queue}.dead")]).await;
}
