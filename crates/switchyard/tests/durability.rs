//! Guarantee 1: a 2xx from message create means the message and its
//! deliveries survive `kill -9`; after a restart every pending one is sent.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_accepted_message() {
    let data = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start().await;
    let mut server = Server::start(data.path(), &[]);
    let api = server.client();
    let app_id = app_with_endpoint(&api, &format!("{base}/crash")).await;

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for p in 0..16 {
        let (api, app_id, acked, stop) = (api.clone(), app_id.clone(), acked.clone(), stop.clone());
        producers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = api
                    .http
                    .post(format!("{}/api/v1/app/{app_id}/msg", api.base))
                    .bearer_auth(TOKEN)
                    .json(&json!({ "eventType": "crash.test", "payload": { "p": p, "n": n } }))
                    .send()
                    .await;
                // Only a 2xx is a promise; connection errors at the kill are not.
                if let Ok(resp) = sent
                    && resp.status().is_success()
                    && let Ok(body) = resp.json::<serde_json::Value>().await
                    && let Some(id) = body["id"].as_str()
                {
                    acked.lock().unwrap().push(id.to_owned());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the load should have produced messages, got {}",
        acked.len()
    );

    let restarted = Server::start(data.path(), &[]);
    let missing = receiver.wait_for(&acked, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages never arrived, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicates: u32 = receiver.seen.lock().unwrap().values().map(|n| n - 1).sum();
    println!(
        "acknowledged={} delivered={} duplicates_after_kill={duplicates}",
        acked.len(),
        receiver.count()
    );
    drop(restarted);
}
