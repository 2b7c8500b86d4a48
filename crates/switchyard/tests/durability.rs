//! Guarantee 1: a 2xx from message create means the message and its
//! deliveries survive `kill -9`; after a restart every pending one is sent.
//! Checked on the embedded default and on PostgreSQL.

mod common;

use common::*;
use std::time::Duration;
#[cfg(feature = "postgres")]
use switchyard_store::postgres::test_database;

async fn sigkill_under_load(env: &[(&str, &str)]) {
    let data = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start().await;
    let mut server = Server::start(data.path(), env);
    let api = server.client();
    let app_id = app_with_endpoint(&api, &format!("{base}/crash")).await;

    let producers = Producers::start(std::slice::from_ref(&api), &app_id, 16);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    let acked = producers.stop().await;
    assert!(
        acked.len() > 50,
        "the load should have produced messages, got {}",
        acked.len()
    );

    let restarted = Server::start(data.path(), env);
    receiver
        .assert_all_arrive(&["/crash".to_owned()], &acked, Duration::from_secs(60))
        .await;
    let duplicates: u32 = receiver.seen.lock().unwrap().values().map(|n| n - 1).sum();
    println!(
        "acknowledged={} delivered={} duplicates_after_kill={duplicates}",
        acked.len(),
        receiver.count()
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_accepted_message() {
    sigkill_under_load(&[]).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn sigkill_under_load_loses_no_accepted_message_on_postgres() {
    let db = test_database().await;
    let url = db.url().to_owned();
    // The restarted node has the same id, so it takes its partitions back at
    // once instead of waiting for the old leases to expire.
    sigkill_under_load(&[
        ("SWITCHYARD_DATABASE_URL", &url),
        ("SWITCHYARD_NODE_ID", "crash-node"),
    ])
    .await;
}
