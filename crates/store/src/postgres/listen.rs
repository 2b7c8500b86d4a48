//! One dedicated connection per node that `LISTEN`s for other nodes' events
//! and reconnects on its own; after a reconnect it announces `Resync`, since
//! notifications sent meanwhile are lost.

use super::CHANNEL;
use crate::ClusterEvent;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

pub(super) async fn run(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    events: broadcast::Sender<ClusterEvent>,
) {
    let mut connected_before = false;
    let mut backoff = Duration::from_millis(250);
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (payloads, mut received) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                let _ = payloads.send(n.payload().to_owned());
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "notification connection lost");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(250);
                        if connected_before {
                            let _ = events.send(ClusterEvent::Resync);
                        }
                        connected_before = true;
                        while let Some(payload) = received.recv().await {
                            match ClusterEvent::decode(&payload) {
                                Some(event) => {
                                    let _ = events.send(event);
                                }
                                None => tracing::debug!(%payload, "unknown notification"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect for notifications; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
