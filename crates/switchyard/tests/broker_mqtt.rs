//! MQTT as a broker source, end to end: QoS 1 messages published with an
//! MQTT client arrive at a real HTTP receiver, signed; poison is in the
//! rejected log and on the dead-letter topic with its reason; a SIGKILL
//! mid-stream loses nothing and duplicates no message, and what is
//! published while Switchyard is down is kept in its persistent session;
//! a message the store cannot take yet stays with the broker.
//!
//! Needs an MQTT 5 broker (`SWITCHYARD_TEST_MQTT_URL`, default
//! `mqtt://127.0.0.1:1883`): unreachable, the tests fail under `CI=true`
//! and are skipped with a printed reason otherwise.

mod common;

use common::broker::*;
use common::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An MQTT client of the test: publishes at QoS 1 and counts the broker's
/// PUBACKs; keeps what its subscription receives.
struct Client {
    client: AsyncClient,
    acked: Arc<AtomicUsize>,
    subacked: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Publish>>>,
    published: usize,
}

impl Client {
    async fn connect(host: &str, port: u16) -> Client {
        let options = MqttOptions::new(unique("sy-test"), host, port);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let acked = Arc::new(AtomicUsize::new(0));
        let subacked = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (a, s, r) = (acked.clone(), subacked.clone(), received.clone());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        s.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => r.lock().unwrap().push(p),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Client {
            client,
            acked,
            subacked,
            received,
            published: 0,
        }
    }

    async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        wait_for("the SUBACK", Duration::from_secs(10), || {
            self.subacked.load(Ordering::SeqCst) > 0
        })
        .await;
    }

    async fn publish(&mut self, topic: &str, body: &str, properties: &[(&str, &str)]) {
        let properties = PublishProperties {
            user_properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                body.as_bytes().to_vec(),
                properties,
            )
            .await
            .unwrap();
        self.published += 1;
    }

    /// Waits until the broker acknowledged every publish.
    async fn all_acked(&self) {
        wait_for("the broker's PUBACKs", Duration::from_secs(30), || {
            self.acked.load(Ordering::SeqCst) >= self.published
        })
        .await;
    }
}

async fn shop_with_endpoint(api: &Api, url: &str) -> String {
    let (status, app) = api
        .post("/api/v1/app", json!({"name": "shop", "uid": "shop"}))
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, ep) = api
        .post("/api/v1/app/shop/endpoint", json!({"url": url}))
        .await;
    assert_eq!(status, 201, "{ep}");
    let ep = ep["id"].as_str().unwrap().to_owned();
    let (_, secret) = api
        .get(&format!("/api/v1/app/shop/endpoint/{ep}/secret"))
        .await;
    secret["key"].as_str().unwrap().to_owned()
}

/// Event ids seen at the receiver (the warm-up left out), each with the
/// message ids that carried it; every signature checked.
fn arrived(rx: &Receiver, secret: &str) -> HashMap<String, HashSet<String>> {
    let mut by_event: HashMap<String, HashSet<String>> = HashMap::new();
    for (headers, body) in rx.bodies.lock().unwrap().iter() {
        assert!(signature_ok(secret, headers, body), "bad signature");
        let payload: Value = serde_json::from_slice(body).unwrap();
        let event = payload["e"].as_str().unwrap_or_default().to_owned();
        if event == "warm-up" {
            continue;
        }
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        by_event.entry(event).or_default().insert(id);
    }
    by_event
}

fn envelope(i: usize) -> String {
    json!({
        "app": "shop",
        "eventType": "order.paid",
        "eventId": format!("e{i}"),
        "payload": {"e": format!("e{i}")},
    })
    .to_string()
}

/// Creates the source through the API: unbound, so each message names
/// its application.
async fn create_source(api: &Api, broker: Value) -> String {
    let (status, created) = api
        .post(
            "/api/v1/broker-source",
            json!({"name": "orders", "uid": "orders", "batchSize": 50, "broker": broker}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Publishes a warm-up message until one arrives: the source's
/// subscription (and session) then exists, and nothing published after
/// is missed.
async fn warm_up(producer: &mut Client, topic: &str, rx: &Receiver) {
    let body = json!({"app": "shop", "eventType": "order.paid", "eventId": "warm-up", "payload": {"e": "warm-up"}});
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.count() == 0 {
        assert!(Instant::now() < deadline, "the source never took a message");
        producer.publish(topic, &body.to_string(), &[]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_arrive_signed_and_poison_is_dead_lettered() {
    let Some((url, host, port)) = mqtt_or_skip().await else {
        return;
    };
    let base = unique("sy-orders");
    let dead_topic = format!("{base}/dead");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("SWITCHYARD_NODE_ID", &unique("node"))]);
    let api = server.client();
    let (rx, rx_url) = Receiver::start().await;
    let secret = shop_with_endpoint(&api, &format!("{rx_url}/hook")).await;
    let (status, et) = api
        .post(
            "/api/v1/event-type",
            json!({"name": "order.paid", "description": "d", "schemas": {"1": {
                "type": "object",
                "properties": {"e": {"type": "string"}},
                "required": ["e"],
            }}}),
        )
        .await;
    assert_eq!(status, 201, "{et}");
    // Something keeps the dead letters: MQTT drops what nobody subscribes to.
    let dead = Client::connect(&host, port).await;
    dead.subscribe(&dead_topic).await;
    let id = create_source(
        &api,
        json!({"type": "mqtt", "url": url, "topic": format!("{base}/in/+"), "deadLetterTopic": dead_topic}),
    )
    .await;
    let mut producer = Client::connect(&host, port).await;
    warm_up(&mut producer, &format!("{base}/in/w"), &rx).await;

    let n = 200;
    let mut poison = 0;
    for i in 0..n {
        let topic = format!("{base}/in/{}", i % 3);
        producer.publish(&topic, &envelope(i), &[]).await;
        if i % 50 == 7 {
            producer
                .publish(&topic, "not json", &[("trace", "t-1")])
                .await;
            // Against the event type's schema.
            let bad = json!({"app": "shop", "eventType": "order.paid", "payload": {"e": 5}});
            producer.publish(&topic, &bad.to_string(), &[]).await;
            let ghost = json!({"app": "ghost", "eventType": "order.paid", "payload": {"e": "x"}});
            producer.publish(&topic, &ghost.to_string(), &[]).await;
            poison += 3;
        }
    }
    // The header form: user properties name the event; the body is the
    // payload.
    producer
        .publish(
            &format!("{base}/in/h"),
            r#"{"e":"by-header"}"#,
            &[
                ("switchyard-event-type", "order.paid"),
                ("switchyard-app", "shop"),
                ("switchyard-event-id", "by-header"),
            ],
        )
        .await;
    producer.all_acked().await;

    wait_for("every message delivered", Duration::from_secs(60), || {
        arrived(&rx, &secret).len() == n + 1
    })
    .await;
    let by_event = arrived(&rx, &secret);
    assert!(by_event.values().all(|ids| ids.len() == 1));
    assert!(by_event.contains_key("by-header"));

    // Every poison message is in the rejected log, with its reason.
    let (status, log) = api
        .get(&format!("/api/v1/broker-source/{id}/rejected?limit=100"))
        .await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    assert_eq!(entries.len(), poison, "{log}");
    let count = |code: &str| entries.iter().filter(|e| e["code"] == code).count();
    assert_eq!(count("not_json"), poison / 3, "{log}");
    assert_eq!(count("invalid_message"), poison / 3, "{log}");
    assert_eq!(count("unknown_app"), poison / 3, "{log}");
    assert!(
        entries
            .iter()
            .filter(|e| e["code"] == "not_json")
            .all(|e| e["body"] == "not json"
                && e["headers"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(["trace", "t-1"]))),
        "{log}"
    );

    // And on the dead-letter topic, with the same reasons.
    wait_for("every dead letter", Duration::from_secs(20), || {
        dead.received.lock().unwrap().len() >= poison
    })
    .await;
    let letters = dead.received.lock().unwrap().clone();
    assert_eq!(letters.len(), poison);
    let property = |p: &Publish, name: &str| {
        p.properties
            .as_ref()
            .and_then(|p| p.user_properties.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut codes: Vec<String> = letters
        .iter()
        .map(|p| property(p, "rejected-code"))
        .collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes, ["invalid_message", "not_json", "unknown_app"]);
    for letter in &letters {
        assert!(!property(letter, "rejected-reason").is_empty());
        assert!(property(letter, "original-topic").starts_with(&format!("{base}/in/")));
        if property(letter, "rejected-code") == "not_json" {
            assert_eq!(&letter.payload[..], b"not json");
            assert_eq!(property(letter, "trace"), "t-1");
        }
    }
    // Counts reach the store every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = api.get(&format!("/api/v1/broker-source/{id}/status")).await;
        if status["rejected"] == poison {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_stream_loses_nothing_and_the_session_keeps_what_came_meanwhile() {
    let Some((url, host, port)) = mqtt_or_skip().await else {
        return;
    };
    let base = unique("sy-crash");
    let dir = tempfile::tempdir().unwrap();
    // The node id names the persistent session: the same after a restart.
    let node = unique("node");
    let env = [("SWITCHYARD_NODE_ID", node.as_str())];
    let mut server = Server::start(dir.path(), &env);
    let (rx, rx_url) = Receiver::start().await;
    let secret = shop_with_endpoint(&server.client(), &format!("{rx_url}/hook")).await;
    create_source(
        &server.client(),
        json!({"type": "mqtt", "url": url, "topic": format!("{base}/in")}),
    )
    .await;
    let topic = format!("{base}/in");
    let mut producer = Client::connect(&host, port).await;
    warm_up(&mut producer, &topic, &rx).await;
    // A burst, then more while Switchyard is down (kept in its session);
    // in all under the broker's queue per session (Mosquitto:
    // max_queued_messages, 1000 by default), beyond which it drops. (An
    // ack before the commit is caught by the test of messages left for
    // later: here the commits are too quick for the kill to land between.)
    let (n, while_down) = (900, 200);
    let before = rx.count();
    for i in 0..n - while_down {
        producer.publish(&topic, &envelope(i), &[]).await;
    }
    wait_for("a delivery", Duration::from_secs(30), || {
        rx.count() > before
    })
    .await;
    server.kill9();
    for i in n - while_down..n {
        producer.publish(&topic, &envelope(i), &[]).await;
    }
    producer.all_acked().await;
    let _server = Server::start(dir.path(), &env);
    wait_for("every message delivered", Duration::from_secs(90), || {
        arrived(&rx, &secret).len() == n
    })
    .await;
    // One message per event id, however often MQTT delivered it.
    let by_event = arrived(&rx, &secret);
    let duplicated: Vec<_> = by_event.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(duplicated.is_empty(), "{duplicated:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_store_cannot_take_yet_stay_with_the_broker() {
    let Some((url, host, port)) = mqtt_or_skip().await else {
        return;
    };
    let topic = unique("sy-late");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("SWITCHYARD_NODE_ID", &unique("node"))]);
    let api = server.client();
    // Bound to an application that does not exist yet: each message is
    // left for later (not acknowledged), so MQTT must send it again.
    let (status, created) = api
        .post(
            "/api/v1/broker-source",
            json!({"name": "late", "uid": "late", "app": "shop", "batchSize": 10,
                   "broker": {"type": "mqtt", "url": url, "topic": topic}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mut producer = Client::connect(&host, port).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body =
            json!({"eventType": "order.paid", "eventId": "probe", "payload": {"e": "probe"}});
        producer.publish(&topic, &body.to_string(), &[]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, status) = api.get("/api/v1/broker-source/late/status").await;
        if status["deferred"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never deferred: {status}");
    }
    let n = 20;
    for i in 0..n {
        producer.publish(&topic, &envelope(i), &[]).await;
    }
    producer.all_acked().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rx, rx_url) = Receiver::start().await;
    let secret = shop_with_endpoint(&api, &format!("{rx_url}/hook")).await;
    wait_for("every message delivered", Duration::from_secs(60), || {
        arrived(&rx, &secret).len() == n + 1
    })
    .await;
    let by_event = arrived(&rx, &secret);
    assert!(by_event.values().all(|ids| ids.len() == 1), "{by_event:?}");
}
