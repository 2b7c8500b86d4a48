//! Endpoints: uids and lookups scoped to their application, updates of every field.

use super::*;

/// Endpoint uids are unique within their application only, lookups do not
/// cross applications, every field survives an update, and a delete
/// removes the endpoint once.
pub async fn endpoints_are_scoped_to_their_app(b: Backend) {
    let s = b.store.as_ref();
    let a1 = s.insert_app(app(None, 1)).await.unwrap();
    let a2 = s.insert_app(app(None, 2)).await.unwrap();
    let e1 = s
        .insert_endpoint(endpoint(&a1.id, Some("main"), 3))
        .await
        .unwrap();
    s.insert_endpoint(endpoint(&a2.id, Some("main"), 4))
        .await
        .unwrap();
    assert!(
        matches!(
            s.insert_endpoint(endpoint(&a1.id, Some("main"), 5)).await,
            Err(StoreError::Conflict(_))
        ),
        "{}",
        b.name
    );
    assert_eq!(
        s.get_endpoint(&a1.id, "main").await.unwrap().unwrap().id,
        e1.id
    );
    assert!(
        s.get_endpoint(&a2.id, e1.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
    let listed = s
        .list_endpoints(&a1.id, &page(10, None, Order::Ascending))
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);
    assert_eq!(s.all_endpoints(None).await.unwrap().len(), 2);
    let mut changed = e1.clone();
    changed.headers.insert("X-A".into(), "1".into());
    changed.rate_limit = Some(7);
    changed.concurrency_limit = Some(3);
    changed.circuit_breaker = Some(switchyard_core::breaker::BreakerConfig {
        failure_ratio: Some(0.25),
        ..Default::default()
    });
    changed.retired_secrets.push(RetiredSecret {
        secret: EndpointSecret::generate(),
        expires_at: 99,
    });
    let read_at = changed.updated_at;
    changed.updated_at = read_at + 1;
    s.update_endpoint(changed.clone(), true, read_at)
        .await
        .unwrap();
    // A second change made on the row as it was read before the first is
    // refused, not written over it.
    let mut lost = e1.clone();
    lost.description = "lost".into();
    lost.updated_at = read_at + 2;
    assert!(matches!(
        s.update_endpoint(lost, true, read_at).await,
        Err(StoreError::Stale(_))
    ));
    assert_eq!(
        s.get_endpoint(&a1.id, e1.id.as_str())
            .await
            .unwrap()
            .unwrap(),
        changed
    );
    // Breaker states: stored per endpoint, replaced, gone with the endpoint.
    assert!(s.circuits(&a1.id).await.unwrap().is_empty());
    let open = CircuitSnapshot {
        state: CircuitState::Open,
        since: 10,
        last_error: Some("HTTP 500".into()),
        consecutive_failures: 5,
    };
    s.save_circuit(&a1.id, &e1.id, &CircuitSnapshot::closed(1))
        .await
        .unwrap();
    s.save_circuit(&a1.id, &e1.id, &open).await.unwrap();
    assert_eq!(
        s.circuits(&a1.id).await.unwrap(),
        vec![(e1.id.clone(), open)],
        "{}",
        b.name
    );
    assert!(s.circuits(&a2.id).await.unwrap().is_empty());
    assert!(s.delete_endpoint(&a1.id, &e1.id).await.unwrap());
    assert!(!s.delete_endpoint(&a1.id, &e1.id).await.unwrap());
    assert!(s.circuits(&a1.id).await.unwrap().is_empty(), "{}", b.name);
}

/// A failure streak starts once and ends on success; endpoints failing
/// since before the cut-off are disabled once, with the reason.
pub async fn failing_endpoints_are_disabled_once(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let failing = s.insert_endpoint(endpoint(&a.id, None, 2)).await.unwrap();
    let recovered = s.insert_endpoint(endpoint(&a.id, None, 3)).await.unwrap();
    let recent = s.insert_endpoint(endpoint(&a.id, None, 4)).await.unwrap();
    s.mark_failing(vec![
        (failing.id.clone(), Some(100)),
        (recovered.id.clone(), Some(100)),
        (recent.id.clone(), Some(900)),
    ])
    .await
    .unwrap();
    // A later failure does not move the start; a success ends the streak.
    s.mark_failing(vec![
        (failing.id.clone(), Some(500)),
        (recovered.id.clone(), None),
    ])
    .await
    .unwrap();
    let disabled = s
        .disable_failing(150, "failing for 5 days", 1_000)
        .await
        .unwrap();
    assert_eq!(
        disabled,
        vec![(a.id.clone(), failing.id.clone(), 100)],
        "{}",
        b.name
    );
    let ep = s
        .get_endpoint(&a.id, failing.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(ep.disabled);
    assert_eq!(ep.disabled_reason.as_deref(), Some("failing for 5 days"));
    assert!(
        s.disable_failing(150, "again", 1_001)
            .await
            .unwrap()
            .is_empty()
    );
    // An update that does not set `disabled` (a PATCH of the description,
    // read before the auto-disable) leaves it disabled.
    let mut stale = ep.clone();
    stale.disabled = false;
    stale.disabled_reason = None;
    stale.description = "changed".into();
    stale.updated_at = ep.updated_at + 1;
    let kept = s
        .update_endpoint(stale.clone(), false, ep.updated_at)
        .await
        .unwrap();
    assert!(kept.disabled, "{}", b.name);
    assert_eq!(kept.description, "changed");
    let read_at = stale.updated_at;
    stale.updated_at += 1;
    assert!(
        !s.update_endpoint(stale, true, read_at)
            .await
            .unwrap()
            .disabled
    );
    let other = s
        .get_endpoint(&a.id, recovered.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(!other.disabled, "{}", b.name);
}

/// An application's endpoints are capped: concurrent creates cannot pass
/// the bound together (found by a review: 40 at once passed a cap of 5).
pub async fn endpoints_per_application_are_capped_under_concurrency(b: Backend) {
    let a = b.store.insert_app(app(None, 1)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = b.store.clone();
        let ep = endpoint(&a.id, None, 10 + i);
        tasks.push(tokio::spawn(async move {
            store.insert_endpoint_within(ep, 5).await
        }));
    }
    let mut made = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().is_some() {
            made += 1;
        }
    }
    assert_eq!(made, 5, "{}", b.name);
    assert_eq!(
        b.store.all_endpoints(Some(&a.id)).await.unwrap().len(),
        5,
        "{}",
        b.name
    );
}
