//! Deliveries and attempts: claims, retries, recovery, manual resends, views, and one payload per claimed message.

use super::*;

/// A delivery is claimed once, made due again by a fresh lease, retried on
/// its schedule, failed, recovered and resent by hand (never while in
/// flight), and shows in the attempt log and in both delivery views.
pub async fn delivery_lifecycle_claims_retries_and_recovery(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let e = s.insert_endpoint(endpoint(&a.id, None, 2)).await.unwrap();
    let now = switchyard_core::timefmt::now_ms();
    let m = created(
        accept(
            s,
            message(&a.id, now - 10, None),
            None,
            std::slice::from_ref(&e.id),
        )
        .await,
    );
    let claimed = s.claim_due(now, 10, &ALL).await.unwrap();
    assert_eq!(claimed.len(), 1, "{}", b.name);
    assert_eq!(&*claimed[0].payload, br#"{"a":1}"#);
    assert!(
        s.claim_due(now, 10, &ALL).await.unwrap().is_empty(),
        "a claimed delivery is not claimed twice"
    );
    assert_eq!(s.endpoint_stats(&e.id).await.unwrap().sending, 1);
    // A process death leaves it sending; the next owner's fresh lease
    // makes it due again.
    let grant = s.lease(&lease_request("n1", now, true)).await.unwrap();
    assert_eq!(grant.acquired.len(), 256, "{}", b.name);
    let task = s.claim_due(now, 10, &ALL).await.unwrap().remove(0);
    s.record_outcomes(vec![outcome(
        &task,
        DeliveryStatus::Pending,
        500,
        Some(now + 60_000),
        now,
    )])
    .await
    .unwrap();
    assert!(
        s.claim_due(now, 10, &ALL).await.unwrap().is_empty(),
        "not due before its retry time"
    );
    let retry = s.claim_due(now + 60_000, 10, &ALL).await.unwrap().remove(0);
    assert_eq!(retry.attempts, 1);
    s.record_outcomes(vec![outcome(
        &retry,
        DeliveryStatus::Fail,
        503,
        None,
        now + 60_001,
    )])
    .await
    .unwrap();
    assert_eq!(s.endpoint_stats(&e.id).await.unwrap().fail, 1);
    let attempts = s
        .list_attempts(&AttemptFilter {
            msg_id: Some(m.id.clone()),
            page: page(10, None, Order::Descending),
            ..Default::default()
        })
        .await
        .unwrap();
    let codes: Vec<i32> = attempts
        .data
        .iter()
        .map(|a| a.response_status_code)
        .collect();
    assert_eq!(codes, vec![503, 500]);
    let one = &attempts.data[0];
    let fetched = s.get_attempt(&a.id, &m.id, &one.id).await.unwrap().unwrap();
    assert_eq!(fetched.response_status_code, 503);
    let only_fail = AttemptFilter {
        endpoint_id: Some(e.id.clone()),
        status: Some(2),
        page: page(10, None, Order::Descending),
        ..Default::default()
    };
    assert_eq!(s.list_attempts(&only_fail).await.unwrap().data.len(), 2);
    // Recovery makes the failed delivery pending again with a fresh schedule.
    assert_eq!(
        s.recover(&e.id, now - 1_000, None, now + 70_000)
            .await
            .unwrap(),
        1
    );
    let recovered = s.claim_due(now + 70_000, 10, &ALL).await.unwrap().remove(0);
    assert_eq!(recovered.attempts, 0);
    s.record_outcomes(vec![outcome(
        &recovered,
        DeliveryStatus::Success,
        200,
        None,
        now + 70_001,
    )])
    .await
    .unwrap();
    // A manual resend of a finished delivery is queued once, flagged manual.
    assert!(
        s.requeue(&a.id, &m.id, &e.id, now + 80_000, false)
            .await
            .unwrap()
    );
    let manual = s.claim_due(now + 80_000, 10, &ALL).await.unwrap().remove(0);
    assert!(manual.manual);
    assert!(
        !s.requeue(&a.id, &m.id, &e.id, now + 80_001, false)
            .await
            .unwrap(),
        "in flight: not requeued"
    );
    let views = s
        .deliveries_of_message(&a.id, &m.id, &page(10, None, Order::Ascending))
        .await
        .unwrap();
    assert_eq!(views.data[0].endpoint.as_ref().unwrap().id, e.id);
    let f = MessageFilter {
        page: page(10, None, Order::Descending),
        ..Default::default()
    };
    let by_ep = s.deliveries_of_endpoint(&e.id, &f, None).await.unwrap();
    assert_eq!(by_ep.data[0].message.as_ref().unwrap().id, m.id);
}

/// The claimed deliveries of one message share one copy of its payload.
pub async fn claimed_fan_out_carries_each_message_payload_once(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let mut eps = Vec::new();
    for at in 2..5 {
        eps.push(
            s.insert_endpoint(endpoint(&a.id, None, at))
                .await
                .unwrap()
                .id,
        );
    }
    let now = switchyard_core::timefmt::now_ms();
    let mut payloads = std::collections::HashMap::new();
    // Payloads are bytes: the second is not UTF-8 (a Latin-1 body) and
    // must come back byte for byte.
    let bodies: [&[u8]; 2] = [br#"{"n":0}"#, b"<o>Sch\xf6n</o>"];
    for (i, body) in (0u64..).zip(bodies) {
        let mut m = message(&a.id, now - 10 + i, None);
        let payload = bytes::Bytes::from_static(body);
        m.payload = Some(payload.clone());
        payloads.insert(m.id.clone(), payload);
        let stored = created(accept(s, m, None, &eps).await);
        let read = s.get_message(&a.id, stored.id.as_str()).await.unwrap();
        assert_eq!(read.unwrap().payload.as_deref(), Some(body), "{}", b.name);
    }
    let claimed = s.claim_due(now, 100, &ALL).await.unwrap();
    assert_eq!(claimed.len(), 6, "{}", b.name);
    for task in &claimed {
        assert_eq!(&*task.payload, payloads[&task.msg_id], "{}", b.name);
        let first = claimed.iter().find(|t| t.msg_id == task.msg_id).unwrap();
        assert!(
            first.payload.as_ptr() == task.payload.as_ptr(),
            "{}: deliveries of one message share its payload",
            b.name
        );
    }
}

/// A deferred delivery waits for its time without an attempt: none is
/// recorded, none counted, and a delivery no longer being sent (made pending
/// by a hand-over) is not touched.
pub async fn deferred_deliveries_wait_without_an_attempt(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let e = s.insert_endpoint(endpoint(&a.id, None, 2)).await.unwrap();
    let now = switchyard_core::timefmt::now_ms();
    let m = created(
        accept(
            s,
            message(&a.id, now - 10, None),
            None,
            std::slice::from_ref(&e.id),
        )
        .await,
    );
    let task = s.claim_due(now, 10, &ALL).await.unwrap().remove(0);
    let deferral = Deferral {
        msg_id: task.msg_id.clone(),
        endpoint_id: task.endpoint_id.clone(),
        run_at: now + 5_000,
    };
    s.defer(vec![deferral.clone()], now).await.unwrap();
    assert!(
        s.claim_due(now + 4_999, 10, &ALL).await.unwrap().is_empty(),
        "{}: not due before its time",
        b.name
    );
    // A change of limits releases what a control held back.
    assert_eq!(
        s.release_held(&e.id, now + 1).await.unwrap(),
        1,
        "{}",
        b.name
    );
    let released = s.claim_due(now + 1, 10, &ALL).await.unwrap();
    assert_eq!(released.len(), 1, "{}", b.name);
    s.defer(vec![deferral.clone()], now + 1).await.unwrap();
    // Made due at once (a breaker reset): claimable before its time.
    assert_eq!(s.due_now(&e.id, now + 1).await.unwrap(), 1, "{}", b.name);
    assert_eq!(s.due_now(&e.id, now + 1).await.unwrap(), 0, "{}", b.name);
    let early = s.claim_due(now + 1, 10, &ALL).await.unwrap();
    assert_eq!(early.len(), 1, "{}", b.name);
    s.defer(vec![deferral.clone()], now + 2).await.unwrap();
    let again = s.claim_due(now + 5_000, 10, &ALL).await.unwrap();
    assert_eq!(again.len(), 1, "{}", b.name);
    assert_eq!(
        again[0].attempts, 0,
        "{}: a deferral is not an attempt",
        b.name
    );
    let attempts = s
        .list_attempts(&AttemptFilter {
            msg_id: Some(m.id.clone()),
            page: page(10, None, Order::Descending),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(attempts.data.is_empty(), "{}", b.name);
    // Finished, then deferred late (a stale deferral): nothing changes.
    s.record_outcomes(vec![outcome(
        &again[0],
        DeliveryStatus::Success,
        200,
        None,
        now + 5_001,
    )])
    .await
    .unwrap();
    s.defer(vec![deferral], now + 5_002).await.unwrap();
    assert!(
        s.claim_due(now + 10_000, 10, &ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.endpoint_stats(&e.id).await.unwrap().success,
        1,
        "{}",
        b.name
    );
}

/// A FIFO endpoint's deliveries are claimed one at a time in message order:
/// the next waits while one is being sent, while an earlier one waits for
/// its retry (even when the later one is due sooner), and while an earlier
/// one is held back by a control; it goes once the earlier one succeeds or
/// fails for good. Another endpoint's deliveries are not held back, and a
/// hand-over gives the new owner the same head.
pub async fn fifo_deliveries_are_claimed_one_at_a_time_in_message_order(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let mut fifo_ep = endpoint(&a.id, None, 2);
    fifo_ep.fifo = true;
    let fifo_ep = s.insert_endpoint(fifo_ep).await.unwrap();
    assert!(fifo_ep.fifo);
    let read = s
        .get_endpoint(&a.id, fifo_ep.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert!(read.fifo, "{}: the flag is stored", b.name);
    let other = s.insert_endpoint(endpoint(&a.id, None, 3)).await.unwrap();
    let now = switchyard_core::timefmt::now_ms();
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = message(&a.id, now - 100 + i, None);
        ids.push(m.id.clone());
        let accepted = s
            .accept(NewMessage {
                message: m,
                idempotency_key: None,
                deliveries: vec![
                    NewDelivery {
                        endpoint_id: fifo_ep.id.clone(),
                        send_now: false,
                        fifo: true,
                    },
                    NewDelivery {
                        endpoint_id: other.id.clone(),
                        send_now: false,
                        fifo: false,
                    },
                ],
            })
            .await
            .unwrap();
        created(accepted);
    }
    let claim = |at: u64| async move {
        let mut tasks = s.claim_due(at, 100, &ALL).await.unwrap();
        tasks.sort_by(|x, y| x.msg_id.cmp(&y.msg_id));
        tasks
    };
    let of = |tasks: &[DeliveryTask], ep: &EndpointId| -> Vec<MessageId> {
        tasks
            .iter()
            .filter(|t| &t.endpoint_id == ep)
            .map(|t| t.msg_id.clone())
            .collect()
    };
    // Those behind the first wait without a due time, so a long queue
    // behind a failing delivery costs the claims nothing.
    let waiting = s
        .deliveries_of_endpoint(
            &fifo_ep.id,
            &MessageFilter {
                page: page(10, None, Order::Descending),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .unwrap();
    let mut due: Vec<(MessageId, Option<u64>)> = waiting
        .data
        .iter()
        .map(|d| (d.msg_id.clone(), d.next_attempt_at))
        .collect();
    due.sort();
    assert_eq!(
        due.iter().map(|(_, at)| at.is_some()).collect::<Vec<_>>(),
        [true, false, false],
        "{}: {due:?}",
        b.name
    );
    let first = claim(now).await;
    assert_eq!(of(&first, &other.id), ids, "{}: others go at once", b.name);
    assert_eq!(
        of(&first, &fifo_ep.id),
        ids[..1],
        "{}: only the head",
        b.name
    );
    assert!(
        of(&claim(now).await, &fifo_ep.id).is_empty(),
        "{}: one in flight",
        b.name
    );
    // The head fails and waits a minute for its retry: the rest wait too.
    let head = first.iter().find(|t| t.endpoint_id == fifo_ep.id).unwrap();
    s.record_outcomes(vec![outcome(
        head,
        DeliveryStatus::Pending,
        500,
        Some(now + 60_000),
        now,
    )])
    .await
    .unwrap();
    assert!(
        claim(now + 1).await.is_empty(),
        "{}: a failing head holds back the rest",
        b.name
    );
    // Its retry is the next claim; it is deferred by a control (still
    // first), then fails for good: the second goes.
    let retry = claim(now + 60_000).await;
    assert_eq!(of(&retry, &fifo_ep.id), ids[..1], "{}", b.name);
    s.defer(
        vec![Deferral {
            msg_id: ids[0].clone(),
            endpoint_id: fifo_ep.id.clone(),
            run_at: now + 70_000,
        }],
        now + 60_000,
    )
    .await
    .unwrap();
    assert!(claim(now + 65_000).await.is_empty(), "{}", b.name);
    let retry = claim(now + 70_000).await;
    assert_eq!(of(&retry, &fifo_ep.id), ids[..1], "{}", b.name);
    s.record_outcomes(vec![outcome(
        &retry[0],
        DeliveryStatus::Fail,
        500,
        None,
        now + 70_000,
    )])
    .await
    .unwrap();
    let second = claim(now + 70_001).await;
    assert_eq!(of(&second, &fifo_ep.id), ids[1..2], "{}", b.name);
    // The owner dies with the second in flight: the next owner's lease
    // makes it due again, and it is still the head.
    let grant = s
        .lease(&lease_request("fifo-n2", now + 70_002, true))
        .await
        .unwrap();
    assert!(!grant.acquired.is_empty(), "{}", b.name);
    let again = claim(now + 70_003).await;
    assert_eq!(of(&again, &fifo_ep.id), ids[1..2], "{}", b.name);
    let second = again.iter().find(|t| t.endpoint_id == fifo_ep.id).unwrap();
    s.record_outcomes(vec![outcome(
        second,
        DeliveryStatus::Success,
        200,
        None,
        now + 70_004,
    )])
    .await
    .unwrap();
    let third = claim(now + 70_005).await;
    assert_eq!(of(&third, &fifo_ep.id), ids[2..], "{}", b.name);
}

/// A FIFO queue whose next delivery was never made due (the end of the one
/// before it did not see it: a race between connections on PostgreSQL,
/// here made by an outcome that does not say it ends a FIFO delivery) is
/// repaired: its first open delivery becomes due, and only that one.
pub async fn fifo_queues_left_with_nothing_due_are_repaired(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let mut ep = endpoint(&a.id, None, 2);
    ep.fifo = true;
    let ep = s.insert_endpoint(ep).await.unwrap();
    let now = switchyard_core::timefmt::now_ms();
    let mut ids = Vec::new();
    for i in 0..3 {
        let m = message(&a.id, now - 100 + i, None);
        ids.push(m.id.clone());
        s.accept(NewMessage {
            message: m,
            idempotency_key: None,
            deliveries: vec![NewDelivery {
                endpoint_id: ep.id.clone(),
                send_now: false,
                fifo: true,
            }],
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.repair_fifo_heads(now).await.unwrap(),
        0,
        "{}: nothing to repair",
        b.name
    );
    let head = s.claim_due(now, 10, &ALL).await.unwrap().remove(0);
    let mut lost = outcome(&head, DeliveryStatus::Success, 200, None, now);
    lost.fifo = false;
    s.record_outcomes(vec![lost]).await.unwrap();
    assert!(
        s.claim_due(now + 1, 10, &ALL).await.unwrap().is_empty(),
        "{}: stuck",
        b.name
    );
    assert_eq!(s.repair_fifo_heads(now + 2).await.unwrap(), 1, "{}", b.name);
    assert_eq!(s.repair_fifo_heads(now + 2).await.unwrap(), 0, "{}", b.name);
    let next = s.claim_due(now + 3, 10, &ALL).await.unwrap();
    assert_eq!(
        next.iter().map(|t| t.msg_id.clone()).collect::<Vec<_>>(),
        ids[1..2],
        "{}",
        b.name
    );
}

/// A FIFO delivery whose message was made before one already stored (made
/// earlier, committed later: another node, another connection) does not
/// wait behind it: it is due, and goes first.
pub async fn a_fifo_delivery_committed_late_goes_first(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(None, 1)).await.unwrap();
    let mut ep = endpoint(&a.id, None, 2);
    ep.fifo = true;
    let ep = s.insert_endpoint(ep).await.unwrap();
    let now = switchyard_core::timefmt::now_ms();
    let early = message(&a.id, now - 100, None);
    let late = message(&a.id, now - 50, None);
    let ids = [early.id.clone(), late.id.clone()];
    for m in [late, early] {
        s.accept(NewMessage {
            message: m,
            idempotency_key: None,
            deliveries: vec![NewDelivery {
                endpoint_id: ep.id.clone(),
                send_now: false,
                fifo: true,
            }],
        })
        .await
        .unwrap();
    }
    let first = s.claim_due(now, 10, &ALL).await.unwrap();
    assert_eq!(
        first.iter().map(|t| t.msg_id.clone()).collect::<Vec<_>>(),
        ids[..1],
        "{}",
        b.name
    );
    s.record_outcomes(vec![outcome(
        &first[0],
        DeliveryStatus::Success,
        200,
        None,
        now,
    )])
    .await
    .unwrap();
    let second = s.claim_due(now + 1, 10, &ALL).await.unwrap();
    assert_eq!(
        second.iter().map(|t| t.msg_id.clone()).collect::<Vec<_>>(),
        ids[1..],
        "{}",
        b.name
    );
}
