//! `switchyard listen`, the receiver of the README's quick start: it prints
//! each delivery and whether its signature verifies with the given secret.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Listener {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
}

impl Listener {
    fn start(secret: &str) -> Listener {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["listen", "--port", "0", "--secret", secret])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchyard listen");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("listen prints where it receives");
        let base = first
            .split("receiving on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        Listener { child, base, lines }
    }

    /// The next printed delivery: its summary line and its body line.
    fn next_delivery(&self) -> (String, String) {
        let wait = Duration::from_secs(20);
        let summary = self
            .lines
            .recv_timeout(wait)
            .expect("a delivery is printed");
        let body = self.lines.recv_timeout(wait).expect("its body is printed");
        (summary, body)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn listen_prints_deliveries_and_checks_their_signatures() {
    let listener = Listener::start(SECRET);
    let http = reqwest::Client::new();
    let key = switchyard_core::signing::EndpointSecret::parse(SECRET).unwrap();
    let now = (switchyard_core::timefmt::now_ms() / 1000) as i64;
    let body = r#"{"type":"invoice.paid","invoice":42}"#;

    let resp = http
        .post(format!("{}/webhooks", listener.base))
        .header("webhook-id", "msg_hand")
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            key.sign("msg_hand", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 204);
    let (summary, printed) = listener.next_delivery();
    assert!(summary.starts_with("POST /webhooks"), "{summary}");
    assert!(summary.contains("webhook-id: msg_hand"), "{summary}");
    assert!(summary.contains("type: invoice.paid"), "{summary}");
    assert!(summary.contains("signature: verified"), "{summary}");
    assert_eq!(printed, body);

    let forged = http
        .post(format!("{}/webhooks", listener.base))
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", "v1,AAAA")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status().as_u16(), 401);
    let (summary, _) = listener.next_delivery();
    assert!(summary.contains("signature: NOT VERIFIED"), "{summary}");

    // The quick start's path: Switchyard signs a delivery to the listener.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let api = server.client();
    let (status, app) = api
        .post("/api/v1/app", json!({"name": "Acme", "uid": "acme"}))
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, ep) = api
        .post(
            "/api/v1/app/acme/endpoint",
            json!({"url": format!("{}/webhooks", listener.base), "secret": SECRET}),
        )
        .await;
    assert_eq!(status, 201, "{ep}");
    let (status, msg) = api
        .post(
            "/api/v1/app/acme/msg",
            json!({"eventType": "invoice.paid", "payload": {"invoice": 42}}),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    let (summary, printed) = listener.next_delivery();
    let msg_id = msg["id"].as_str().expect("id");
    assert!(
        summary.contains(&format!("webhook-id: {msg_id}")),
        "{summary}"
    );
    assert!(summary.contains("signature: verified"), "{summary}");
    assert_eq!(printed, r#"{"invoice":42}"#);
}
