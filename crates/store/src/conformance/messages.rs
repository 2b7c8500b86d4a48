//! Messages: idempotent intake, filters, expunging, concurrent intake and retention.

use super::*;

/// A repeated idempotency key or event id answers with the earlier message;
/// listings are newest first, with content when asked, and filter by
/// channel; expunging drops the payload.
pub async fn accept_is_idempotent_by_key_and_event_id(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let e = s.insert_endpoint(endpoint(&a.id, None, 2)).await.unwrap();
    let eps = [e.id.clone()];
    let first = created(accept(s, message(&a.id, 10, None), Some("k"), &eps).await);
    let again = existing(accept(s, message(&a.id, 11, None), Some("k"), &eps).await);
    assert_eq!(again.id, first.id, "{}", b.name);
    let by_event = created(accept(s, message(&a.id, 12, Some("evt")), None, &eps).await);
    let repeat = existing(accept(s, message(&a.id, 13, Some("evt")), None, &eps).await);
    assert_eq!(repeat.id, by_event.id);
    assert_eq!(
        s.get_message(&a.id, "evt").await.unwrap().unwrap().id,
        by_event.id
    );
    let f = MessageFilter {
        page: page(10, None, Order::Descending),
        with_content: true,
        ..Default::default()
    };
    let listed = s.list_messages(&a.id, &f).await.unwrap();
    assert_eq!(listed.data.len(), 2);
    assert_eq!(listed.data[0].id, by_event.id, "newest first");
    assert_eq!(listed.data[0].payload.as_deref(), Some(&br#"{"a":1}"#[..]));
    let other_channel = MessageFilter {
        channel: Some("us".into()),
        ..f.clone()
    };
    assert!(
        s.list_messages(&a.id, &other_channel)
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert_eq!(s.endpoint_stats(&e.id).await.unwrap().pending, 2);
    assert!(s.expunge_message_content(&a.id, &first.id).await.unwrap());
    let expunged = s
        .get_message(&a.id, first.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expunged.payload, None);
}

/// Concurrent accepts sharing keys and event ids store one message per
/// key or event id, each with its delivery.
pub async fn concurrent_accepts_with_one_key_store_one_message(b: Backend) {
    let a = b.store.insert_app(app(None, 1)).await.unwrap();
    let e = b
        .store
        .insert_endpoint(endpoint(&a.id, None, 2))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let store = b.store.clone();
        let (app_id, ep) = (a.id.clone(), e.id.clone());
        tasks.push(tokio::spawn(async move {
            let key = if i % 2 == 0 { Some("same-key") } else { None };
            let m = message(&app_id, 1_000 + i, Some(&format!("evt-{}", i % 4)));
            accept(store.as_ref(), m, key, &[ep]).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Accepted::Created(_)) {
            created += 1;
        }
    }
    // Ten share a key and all twenty share four event ids: at most four
    // messages can exist, and at least one was created.
    let listed = b
        .store
        .list_messages(
            &a.id,
            &MessageFilter {
                page: page(50, None, Order::Ascending),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.data.len(), created, "{}", b.name);
    assert!((1..=4).contains(&created), "{}: {created}", b.name);
    let claimed = b.store.claim_due(u64::MAX / 2, 100, &ALL).await.unwrap();
    assert_eq!(claimed.len(), created, "one delivery per stored message");
}

/// Retention removes finished messages older than the cutoff with their
/// deliveries and attempts, at most `limit` per call, and keeps messages
/// with a delivery still to make.
pub async fn messages_past_retention_go_with_their_deliveries_and_attempts(b: Backend) {
    const DAY: u64 = 86_400_000;
    let s = b.store.as_ref();
    let now = switchyard_core::timefmt::now_ms();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let e = s.insert_endpoint(endpoint(&a.id, None, 2)).await.unwrap();
    let eps = std::slice::from_ref(&e.id);
    let delivered = created(accept(s, message(&a.id, now - 100 * DAY, None), None, eps).await);
    let task = s.claim_due(now, 10, &ALL).await.unwrap().remove(0);
    s.record_outcomes(vec![outcome(
        &task,
        DeliveryStatus::Success,
        200,
        None,
        now,
    )])
    .await
    .unwrap();
    let unmatched = created(accept(s, message(&a.id, now - 99 * DAY, None), None, &[]).await);
    let retrying = created(accept(s, message(&a.id, now - 98 * DAY, None), None, eps).await);
    let recent = created(accept(s, message(&a.id, now - DAY, None), None, eps).await);

    let cutoff = now - 90 * DAY;
    assert_eq!(
        s.purge_messages(cutoff, 1).await.unwrap(),
        1,
        "{}: at most the limit",
        b.name
    );
    assert_eq!(
        s.purge_messages(cutoff, 100).await.unwrap(),
        1,
        "{}",
        b.name
    );
    assert_eq!(
        s.purge_messages(cutoff, 100).await.unwrap(),
        0,
        "{}",
        b.name
    );
    for (m, kept) in [
        (&delivered, false),
        (&unmatched, false),
        (&retrying, true),
        (&recent, true),
    ] {
        let found = s.get_message(&a.id, m.id.as_str()).await.unwrap();
        assert_eq!(found.is_some(), kept, "{}: {}", b.name, m.id);
    }
    let attempts = s
        .list_attempts(&AttemptFilter {
            msg_id: Some(delivered.id.clone()),
            page: page(10, None, Order::Descending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        attempts.data.is_empty(),
        "{}: its attempts went too",
        b.name
    );
    let stats = s.endpoint_stats(&e.id).await.unwrap();
    assert_eq!(stats.success, 0, "{}: and its delivery", b.name);
    assert_eq!(stats.pending, 2, "{}: the unfinished ones stay", b.name);
}
