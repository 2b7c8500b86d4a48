//! Partition leases: sharing, renewal, takeover, graceful leave, and sends committed after a takeover.

use super::*;

/// Nodes share the partitions fairly, renew without acquiring, hand their
/// surplus over, claim only in their own partitions, take over a dead
/// node's partitions with what it had in flight, and a leaving node's at once.
pub async fn partition_leases_are_shared_renewed_and_taken_over(b: Backend) {
    let s = b.store.as_ref();
    let now = switchyard_core::timefmt::now_ms();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    // An endpoint in the lower half, which n1 keeps when n2 joins.
    let e = loop {
        let candidate = endpoint(&a.id, None, 2);
        if switchyard_core::partition_of(&candidate.id) < 128 {
            break s.insert_endpoint(candidate).await.unwrap();
        }
    };
    let first = s.lease(&lease_request("n1", now, true)).await.unwrap();
    assert_eq!(first.owned.len(), 256, "{}: a lone node owns all", b.name);
    assert!(first.surplus.is_empty());
    // n1 sends a delivery itself.
    let m = message(&a.id, now, None);
    s.accept(new_message(m, None, std::slice::from_ref(&e.id), true))
        .await
        .unwrap();
    assert!(
        s.claim_due(now, 10, &ALL).await.unwrap().is_empty(),
        "sending, not due"
    );
    // n2 joins: nothing is free yet, but n1 now holds a surplus.
    let second = s.lease(&lease_request("n2", now + 1, true)).await.unwrap();
    assert!(second.owned.is_empty(), "{}", b.name);
    assert_eq!(second.live_nodes, 2);
    let renewed = s.lease(&lease_request("n1", now + 2, false)).await.unwrap();
    assert_eq!(renewed.owned.len(), 256);
    assert!(renewed.acquired.is_empty(), "a renewal acquires nothing");
    assert_eq!(renewed.surplus, (128..256).collect::<Vec<u16>>());
    s.release_partitions("n1", &renewed.surplus).await.unwrap();
    let second = s.lease(&lease_request("n2", now + 3, false)).await.unwrap();
    assert_eq!(second.owned, (128..256).collect::<Vec<u16>>(), "{}", b.name);
    assert_eq!(second.acquired, second.owned);
    // Only n2 may claim in its partitions, only n1 in its own.
    let mut m2 = message(&a.id, now + 4, None);
    m2.payload = Some("{}".into());
    accept(s, m2, None, std::slice::from_ref(&e.id)).await;
    assert!(
        s.claim_due(now + 5, 10, &second.owned)
            .await
            .unwrap()
            .is_empty()
    );
    let n1_owned: Vec<u16> = (0..128).collect();
    assert_eq!(s.claim_due(now + 5, 10, &n1_owned).await.unwrap().len(), 1);
    let nodes = s.cluster(now + 5).await.unwrap();
    let counts: Vec<(String, usize)> = nodes
        .iter()
        .map(|n| (n.node_id.clone(), n.partitions.len()))
        .collect();
    assert_eq!(counts, vec![("n1".into(), 128), ("n2".into(), 128)]);
    assert_eq!(nodes[1].address, "n2.local:8071");
    // n1 dies: after the lease time n2 is alone and takes everything,
    // and what n1 had in flight becomes due again.
    let later = now + 10_000 + 100;
    let takeover = s.lease(&lease_request("n2", later, false)).await.unwrap();
    assert_eq!(takeover.live_nodes, 1, "{}", b.name);
    assert_eq!(takeover.owned.len(), 256);
    assert_eq!(takeover.acquired, (0..128).collect::<Vec<u16>>());
    let due = s.claim_due(later, 10, &takeover.owned).await.unwrap();
    assert!(
        !due.is_empty(),
        "{}: deliveries in flight at n1 are resent",
        b.name
    );
    let stale = s.cluster(later).await.unwrap();
    assert!(
        stale
            .iter()
            .any(|n| n.node_id == "n1" && n.partitions.is_empty())
    );
    // n3 joins, then n2 leaves gracefully: n3 is alone at once.
    s.lease(&lease_request("n3", later + 1, true))
        .await
        .unwrap();
    s.leave("n2").await.unwrap();
    let alone = s
        .lease(&lease_request("n3", later + 2, false))
        .await
        .unwrap();
    assert_eq!(alone.live_nodes, 1, "{}", b.name);
    assert_eq!(alone.owned.len(), 256);
}

/// A send its old owner committed after the takeover is made due again at
/// the new owner's next renewal, and only that one.
pub async fn a_send_committed_after_its_partition_was_taken_over_becomes_due_again(b: Backend) {
    let s = b.store.as_ref();
    let now = switchyard_core::timefmt::now_ms();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let e = s.insert_endpoint(endpoint(&a.id, None, 2)).await.unwrap();
    let first = s.lease(&lease_request("n1", now, true)).await.unwrap();
    assert_eq!(first.owned.len(), 256, "{}", b.name);
    // n1 stops renewing; n2 takes everything over once the lease lapsed.
    let takeover_at = now + 10_000 + 100;
    let takeover = s
        .lease(&lease_request("n2", takeover_at, true))
        .await
        .unwrap();
    assert_eq!(takeover.owned.len(), 256, "{}", b.name);
    assert_eq!(takeover.stranded, 0);
    // n1 decided to send while its lease was valid; the commit lands only
    // now, after the takeover reset the partition.
    let eps = std::slice::from_ref(&e.id);
    let late = message(&a.id, now + 5_000, None);
    let late_id = late.id.clone();
    s.accept(new_message(late, None, eps, true)).await.unwrap();
    // n2 sends one itself.
    let own = message(&a.id, takeover_at + 500, None);
    s.accept(new_message(own, None, eps, true)).await.unwrap();
    assert!(
        s.claim_due(takeover_at + 1_000, 10, &ALL)
            .await
            .unwrap()
            .is_empty(),
        "{}: both are sending",
        b.name
    );
    let renewed = s
        .lease(&lease_request("n2", takeover_at + 2_500, false))
        .await
        .unwrap();
    assert_eq!(renewed.stranded, 1, "{}", b.name);
    let due = s
        .claim_due(takeover_at + 2_500, 10, &renewed.owned)
        .await
        .unwrap();
    let due: Vec<MessageId> = due.into_iter().map(|t| t.msg_id).collect();
    assert_eq!(
        due,
        vec![late_id],
        "{}: only the stranded send is due again, not n2's own",
        b.name
    );
    let again = s
        .lease(&lease_request("n2", takeover_at + 5_000, false))
        .await
        .unwrap();
    assert_eq!(again.stranded, 0, "{}", b.name);
}
