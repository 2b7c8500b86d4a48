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
    assert!(s.requeue(&a.id, &m.id, &e.id, now + 80_000).await.unwrap());
    let manual = s.claim_due(now + 80_000, 10, &ALL).await.unwrap().remove(0);
    assert!(manual.manual);
    assert!(
        !s.requeue(&a.id, &m.id, &e.id, now + 80_001).await.unwrap(),
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
