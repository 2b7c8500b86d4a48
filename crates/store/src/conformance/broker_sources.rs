//! Broker sources: uids and what they read unique, changes compared and
//! set, counts added by many nodes, the rejected log newest first and
//! trimmed, deletion taking counts and log along.

use super::*;
use switchyard_core::{BrokerSourceId, RejectionId};

fn source(uid: Option<&str>, reads: &str, at: u64) -> BrokerSource {
    BrokerSource {
        id: BrokerSourceId::generate_at(at),
        uid: uid.map(test_uid),
        name: "orders".into(),
        app: Some("shop".into()),
        batch_size: 100,
        paused: false,
        broker: serde_json::json!({"type": "redis", "url": "redis://u:secret@h", "stream": reads}),
        reads: reads.into(),
        metadata: Default::default(),
        created_at: at,
        updated_at: at,
    }
}

fn rejection(source: &BrokerSourceId, at: u64, body: &[u8]) -> BrokerRejection {
    BrokerRejection {
        id: RejectionId::generate_at(at),
        source_id: source.clone(),
        at,
        code: "invalid_json".into(),
        reason: "not JSON".into(),
        body: bytes::Bytes::copy_from_slice(body),
        body_size: body.len() as u64,
        headers: vec![("switchyard-app".into(), "shop".into())],
    }
}

pub async fn broker_sources_are_unique_compared_counted_and_logged(b: Backend) {
    let s = b.store.as_ref();
    let n = b.name;
    let a = s
        .insert_broker_source(source(Some("orders"), "redis h orders g", 1))
        .await
        .unwrap();
    assert_eq!(
        s.get_broker_source(a.id.as_str()).await.unwrap().as_ref(),
        Some(&a),
        "{n}"
    );
    assert_eq!(
        s.get_broker_source("orders").await.unwrap().as_ref(),
        Some(&a),
        "{n}"
    );
    for clash in [
        source(Some("orders"), "redis h other g", 2),
        source(None, "redis h orders g", 2),
    ] {
        assert!(
            matches!(
                s.insert_broker_source(clash).await,
                Err(StoreError::Conflict(_))
            ),
            "{n}: a second source with the uid or reading the same"
        );
    }
    let other = s
        .insert_broker_source(source(None, "redis h other g", 3))
        .await
        .unwrap();
    let listed = s
        .list_broker_sources(&page(1, None, Order::Ascending))
        .await
        .unwrap();
    assert_eq!(listed.data, vec![a.clone()], "{n}");
    assert!(!listed.done, "{n}");
    assert_eq!(s.all_broker_sources().await.unwrap().len(), 2, "{n}");

    // Compare and set on updated_at.
    let mut paused = a.clone();
    paused.paused = true;
    paused.updated_at = 10;
    let paused = s.update_broker_source(paused, a.updated_at).await.unwrap();
    let mut late = a.clone();
    late.name = "late".into();
    late.updated_at = 11;
    assert!(
        matches!(
            s.update_broker_source(late, a.updated_at).await,
            Err(StoreError::Stale(_))
        ),
        "{n}: a change made on an old read"
    );
    let mut clash = paused.clone();
    clash.reads = other.reads.clone();
    clash.updated_at = 12;
    assert!(
        matches!(
            s.update_broker_source(clash, paused.updated_at).await,
            Err(StoreError::Conflict(_))
        ),
        "{n}"
    );
    assert!(
        s.get_broker_source("orders").await.unwrap().unwrap().paused,
        "{n}"
    );

    // Counts add up; the newer backlog and error win.
    let stats = |received, backlog_at: u64, error_at: u64| BrokerSourceStats {
        received,
        accepted: received,
        backlog: Some(backlog_at * 10),
        backlog_at: Some(backlog_at),
        last_error: Some(format!("error at {error_at}")),
        last_error_at: Some(error_at),
        ..Default::default()
    };
    s.add_broker_source_stats(vec![(a.id.clone(), stats(5, 20, 30))])
        .await
        .unwrap();
    s.add_broker_source_stats(vec![
        (a.id.clone(), stats(7, 10, 40)),
        (BrokerSourceId::generate_at(5), stats(1, 1, 1)),
    ])
    .await
    .unwrap();
    let total = s.broker_source_stats(&a.id).await.unwrap().unwrap();
    assert_eq!((total.received, total.accepted), (12, 12), "{n}");
    assert_eq!(
        (total.backlog, total.backlog_at),
        (Some(200), Some(20)),
        "{n}"
    );
    assert_eq!(total.last_error.as_deref(), Some("error at 40"), "{n}");
    s.add_broker_source_stats(vec![(
        a.id.clone(),
        BrokerSourceStats {
            duplicates: 1,
            ..Default::default()
        },
    )])
    .await
    .unwrap();
    let total = s.broker_source_stats(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (total.duplicates, total.backlog, total.last_error_at),
        (1, Some(200), Some(40)),
        "{n}"
    );

    // The rejected log: bytes kept as they were, newest first, trimmed.
    let binary = [0xff_u8, 0, 0xfe];
    s.insert_broker_rejections(vec![
        rejection(&a.id, 100, b"one"),
        rejection(&a.id, 200, &binary),
        rejection(&a.id, 300, b"three"),
        rejection(&other.id, 150, b"other"),
    ])
    .await
    .unwrap();
    let log = s
        .list_broker_rejections(&a.id, &page(2, None, Order::Descending))
        .await
        .unwrap();
    assert_eq!(
        log.data.iter().map(|r| r.at).collect::<Vec<_>>(),
        vec![300, 200],
        "{n}"
    );
    assert_eq!(&log.data[1].body[..], &binary, "{n}");
    assert_eq!(
        log.data[1].headers,
        vec![("switchyard-app".to_owned(), "shop".to_owned())],
        "{n}"
    );
    let rest = s
        .list_broker_rejections(&a.id, &page(2, log.iterator, Order::Descending))
        .await
        .unwrap();
    assert_eq!(
        rest.data.iter().map(|r| r.at).collect::<Vec<_>>(),
        vec![100],
        "{n}"
    );
    assert!(rest.done, "{n}");
    // Older than 150 ms goes, then only the newest 1 per source stays.
    assert_eq!(
        s.trim_broker_rejections(Some(150), 10).await.unwrap(),
        1,
        "{n}"
    );
    assert_eq!(s.trim_broker_rejections(None, 1).await.unwrap(), 1, "{n}");
    let left = s
        .list_broker_rejections(&a.id, &page(10, None, Order::Descending))
        .await
        .unwrap();
    assert_eq!(
        left.data.iter().map(|r| r.at).collect::<Vec<_>>(),
        vec![300],
        "{n}"
    );

    assert!(s.delete_broker_source(&a.id).await.unwrap(), "{n}");
    assert!(!s.delete_broker_source(&a.id).await.unwrap(), "{n}");
    assert!(
        s.get_broker_source("orders").await.unwrap().is_none(),
        "{n}"
    );
    assert!(
        s.list_broker_rejections(&a.id, &page(10, None, Order::Descending))
            .await
            .unwrap()
            .data
            .is_empty(),
        "{n}"
    );
    let mut gone = paused.clone();
    gone.updated_at = 50;
    assert!(
        matches!(
            s.update_broker_source(gone, paused.updated_at).await,
            Err(StoreError::NotFound(_))
        ),
        "{n}"
    );
    // The other source's log is its own.
    assert_eq!(
        s.list_broker_rejections(&other.id, &page(10, None, Order::Descending))
            .await
            .unwrap()
            .data
            .len(),
        1,
        "{n}"
    );
}
