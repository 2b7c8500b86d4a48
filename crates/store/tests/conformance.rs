//! The storage conformance suite: every backend must pass each check here.
//! Each check runs on SQLite (`sqlite::<check>`) and on PostgreSQL
//! (`postgres::<check>`, a fresh database per test on the server at
//! `SWITCHYARD_TEST_POSTGRES_URL`, default the local one). The PostgreSQL
//! tests are `#[ignore]`d unless asked for: `scripts/test` asks when the
//! server answers, fails under `CI=true` when it does not, and otherwise
//! leaves them reported as ignored/skipped.

use std::sync::Arc;
use switchyard_core::{AppId, AttemptId, EndpointId, MessageId};
use switchyard_store::sqlite::{Durability, SqliteStore};
use switchyard_store::*;

struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    /// Dropped after the store, taking the PostgreSQL database with it.
    _db: Option<switchyard_store::postgres::ScratchDatabase>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        SqliteStore::open(dir.path().join("t.db"), Durability::Normal).expect("open sqlite");
    Backend {
        name: "sqlite",
        store: Arc::new(store),
        _dir: dir,
        _db: None,
    }
}

async fn postgres() -> Backend {
    use switchyard_store::postgres::{PgOptions, PgStore, test_database};
    let db = test_database().await;
    let store = PgStore::connect(&PgOptions::new(db.url().to_owned()))
        .await
        .expect("connect to scratch database");
    Backend {
        name: "postgres",
        store: Arc::new(store),
        _dir: tempfile::tempdir().expect("tempdir"),
        _db: Some(db),
    }
}

/// Each check as two tests, `sqlite::<check>` and `postgres::<check>`; the
/// PostgreSQL ones are ignored unless asked for (scripts/test asks when the
/// server answers), so a run without it counts them as not run.
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
                async fn $check() {
                    super::$check(super::postgres().await).await
                }
            )*
        }
    };
}

const ALL: [u16; 256] = {
    let mut all = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u16;
        i += 1;
    }
    all
};

fn lease_request(node: &str, now: u64, fresh: bool) -> LeaseRequest {
    LeaseRequest {
        node_id: node.into(),
        address: format!("{node}.local:8071"),
        now_ms: now,
        ttl_ms: 10_000,
        fresh,
    }
}

fn app(uid: Option<&str>, at: u64) -> Application {
    Application {
        id: AppId::generate_at(at),
        uid: uid.map(str::to_owned),
        name: "app".into(),
        rate_limit: None,
        metadata: Default::default(),
        created_at: at,
        updated_at: at,
    }
}

fn endpoint(app: &AppId, uid: Option<&str>, at: u64) -> Endpoint {
    Endpoint {
        id: EndpointId::generate_at(at),
        app_id: app.clone(),
        uid: uid.map(str::to_owned),
        url: "https://example.com/hook".into(),
        description: String::new(),
        disabled: false,
        filter_types: None,
        channels: None,
        rate_limit: None,
        metadata: Default::default(),
        headers: Default::default(),
        payload_filter: None,
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        retired_secrets: vec![],
        created_at: at,
        updated_at: at,
    }
}

fn message(app: &AppId, at: u64, event_id: Option<&str>) -> Message {
    Message {
        id: MessageId::generate_at(at),
        app_id: app.clone(),
        event_type: "order.created".into(),
        event_id: event_id.map(str::to_owned),
        channels: Some(vec!["eu".into()]),
        tags: None,
        payload: Some(r#"{"a":1}"#.into()),
        forward: None,
        created_at: at,
    }
}

fn page(limit: usize, iterator: Option<String>, order: Order) -> PageRequest {
    PageRequest {
        limit,
        iterator,
        order,
    }
}

/// `send_now`: the accepting node sends the deliveries itself (they are
/// stored as sending, not due).
fn new_message(m: Message, key: Option<&str>, eps: &[EndpointId], send_now: bool) -> NewMessage {
    NewMessage {
        message: m,
        idempotency_key: key.map(str::to_owned),
        deliveries: eps
            .iter()
            .map(|e| NewDelivery {
                endpoint_id: e.clone(),
                send_now,
            })
            .collect(),
    }
}

async fn accept(store: &dyn Store, m: Message, key: Option<&str>, eps: &[EndpointId]) -> Accepted {
    store
        .accept(new_message(m, key, eps, false))
        .await
        .expect("accept")
}

fn created(a: Accepted) -> Message {
    match a {
        Accepted::Created(m) => m,
        other => panic!("expected a new message, got {other:?}"),
    }
}

fn existing(a: Accepted) -> Message {
    match a {
        Accepted::Existing(m) => m,
        other => panic!("expected the earlier message, got {other:?}"),
    }
}

fn outcome(
    task: &DeliveryTask,
    status: DeliveryStatus,
    code: i32,
    next: Option<u64>,
    at: u64,
) -> Outcome {
    Outcome {
        attempt: Attempt {
            id: AttemptId::generate_at(at),
            app_id: task.app_id.clone(),
            msg_id: task.msg_id.clone(),
            endpoint_id: task.endpoint_id.clone(),
            url: "https://example.com/hook".into(),
            status: if code == 200 {
                DeliveryStatus::Success
            } else {
                DeliveryStatus::Fail
            },
            response_status_code: code,
            response: "ok".into(),
            response_duration_ms: 3,
            manual: task.manual,
            created_at: at,
        },
        delivery_status: status,
        next_attempt_at: next,
    }
}

async fn applications_crud_uid_and_pagination(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(Some("acme"), 1_000)).await.unwrap();
    assert!(
        matches!(
            s.insert_app(app(Some("acme"), 1_001)).await,
            Err(StoreError::Conflict(_))
        ),
        "{}",
        b.name
    );
    assert_eq!(s.get_app("acme").await.unwrap().unwrap().id, a.id);
    assert_eq!(
        s.get_app(a.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .uid
            .as_deref(),
        Some("acme")
    );
    for i in 0..4 {
        s.insert_app(app(None, 2_000 + i)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut it = None;
    loop {
        let p = s.list_apps(&page(2, it, Order::Ascending)).await.unwrap();
        assert!(p.data.len() <= 2);
        seen.extend(p.data.iter().map(|a| a.id.clone()));
        if p.done {
            break;
        }
        it = p.iterator;
    }
    assert_eq!(seen.len(), 5, "{}", b.name);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let desc = s
        .list_apps(&page(10, None, Order::Descending))
        .await
        .unwrap();
    assert_eq!(desc.data.first().map(|a| &a.id), seen.last());
    let mut changed = a.clone();
    changed.name = "renamed".into();
    s.update_app(changed).await.unwrap();
    assert_eq!(s.get_app("acme").await.unwrap().unwrap().name, "renamed");
    assert!(s.delete_app(&a.id).await.unwrap());
    assert!(s.get_app("acme").await.unwrap().is_none());
    assert!(!s.delete_app(&a.id).await.unwrap());
}

async fn event_types_archive_and_list(b: Backend) {
    let s = b.store.as_ref();
    let et = EventType {
        name: "user.created".into(),
        description: "d".into(),
        archived: false,
        deprecated: false,
        schemas: Some(serde_json::json!({"1": {"type": "object"}})),
        feature_flags: None,
        group_name: None,
        created_at: 1,
        updated_at: 1,
    };
    s.insert_event_type(et.clone()).await.unwrap();
    assert!(matches!(
        s.insert_event_type(et.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut archived = et.clone();
    archived.archived = true;
    s.put_event_type(archived).await.unwrap();
    let visible = s
        .list_event_types(&page(10, None, Order::Ascending), false)
        .await
        .unwrap();
    assert!(visible.data.is_empty(), "{}", b.name);
    let all = s
        .list_event_types(&page(10, None, Order::Ascending), true)
        .await
        .unwrap();
    assert_eq!(all.data.len(), 1);
    assert_eq!(
        s.get_event_type("user.created")
            .await
            .unwrap()
            .unwrap()
            .schemas,
        et.schemas
    );
    assert!(s.delete_event_type("user.created").await.unwrap());
    assert!(s.get_event_type("user.created").await.unwrap().is_none());
}

async fn endpoints_are_scoped_to_their_app(b: Backend) {
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
    changed.retired_secrets.push(RetiredSecret {
        secret: "whsec_x".into(),
        expires_at: 99,
    });
    s.update_endpoint(changed.clone()).await.unwrap();
    assert_eq!(
        s.get_endpoint(&a1.id, e1.id.as_str())
            .await
            .unwrap()
            .unwrap(),
        changed
    );
    assert!(s.delete_endpoint(&a1.id, &e1.id).await.unwrap());
    assert!(!s.delete_endpoint(&a1.id, &e1.id).await.unwrap());
}

async fn accept_is_idempotent_by_key_and_event_id(b: Backend) {
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
    assert_eq!(listed.data[0].payload.as_deref(), Some(r#"{"a":1}"#));
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

async fn delivery_lifecycle_claims_retries_and_recovery(b: Backend) {
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
    assert_eq!(&*claimed[0].payload, r#"{"a":1}"#);
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

async fn settings_and_idempotency_records(b: Backend) {
    let s = b.store.as_ref();
    assert!(s.init_setting("k", "v1").await.unwrap());
    assert!(!s.init_setting("k", "v2").await.unwrap(), "{}", b.name);
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v1"));
    s.replace_setting("k", "v3").await.unwrap();
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v3"));
    let r = StoredResponse {
        status: 201,
        body: "{}".into(),
        created_at: 100,
    };
    s.save_idempotent_response("key", r.clone()).await.unwrap();
    assert_eq!(s.idempotent_response("key").await.unwrap(), Some(r));
    assert_eq!(s.purge_idempotency(101).await.unwrap(), 1);
    assert_eq!(s.idempotent_response("key").await.unwrap(), None);
}

async fn claimed_fan_out_carries_each_message_payload_once(b: Backend) {
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
    for i in 0..2u64 {
        let mut m = message(&a.id, now - 10 + i, None);
        let payload = format!(r#"{{"n":{i}}}"#);
        m.payload = Some(payload.clone());
        payloads.insert(m.id.clone(), payload);
        created(accept(s, m, None, &eps).await);
    }
    let claimed = s.claim_due(now, 100, &ALL).await.unwrap();
    assert_eq!(claimed.len(), 6, "{}", b.name);
    for task in &claimed {
        assert_eq!(&*task.payload, payloads[&task.msg_id], "{}", b.name);
        let first = claimed.iter().find(|t| t.msg_id == task.msg_id).unwrap();
        assert!(
            Arc::ptr_eq(&first.payload, &task.payload),
            "{}: deliveries of one message share its payload",
            b.name
        );
    }
}

async fn concurrent_accepts_with_one_key_store_one_message(b: Backend) {
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

async fn partition_leases_are_shared_renewed_and_taken_over(b: Backend) {
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

async fn a_send_committed_after_its_partition_was_taken_over_becomes_due_again(b: Backend) {
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

async fn messages_past_retention_go_with_their_deliveries_and_attempts(b: Backend) {
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

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let app_id = {
        let s = SqliteStore::open(&path, Durability::Normal).unwrap();
        s.insert_app(app(Some("keep"), 1)).await.unwrap().id
    };
    let s = SqliteStore::open(&path, Durability::Full).unwrap();
    assert_eq!(s.get_app("keep").await.unwrap().unwrap().id, app_id);
}

fn source(app: &AppId, uid: Option<&str>, at: u64) -> Source {
    Source {
        id: switchyard_core::SourceId::generate_at(at).into_string(),
        uid: uid.map(str::to_owned),
        name: "stripe".into(),
        kind: "stripe".into(),
        config: serde_json::json!({"secret": "whsec_x"}),
        settings: serde_json::json!({"maxBodyBytes": 2048}),
        metadata: Default::default(),
        app_id: app.clone(),
        token: format!("tok{at}"),
        retired_tokens: vec![],
        retired_secrets: vec![],
        created_at: at,
        updated_at: at,
    }
}

async fn sources_own_their_application_and_count_requests(b: Backend) {
    let s = b.store.as_ref();
    let backing = app(Some("src-app"), 1);
    let src = s
        .insert_source(source(&backing.id, Some("stripe-prod"), 1), backing.clone())
        .await
        .unwrap();
    assert_eq!(
        s.get_source(&src.id).await.unwrap().as_ref(),
        Some(&src),
        "{}",
        b.name
    );
    assert_eq!(
        s.get_source("stripe-prod").await.unwrap().as_ref(),
        Some(&src)
    );
    assert!(s.get_app(backing.id.as_str()).await.unwrap().is_some());
    let other = app(None, 2);
    assert!(
        matches!(
            s.insert_source(source(&other.id, Some("stripe-prod"), 2), other.clone())
                .await,
            Err(StoreError::Conflict(_))
        ),
        "{}: a uid is unique, and the failed insert leaves no application behind",
        b.name
    );
    assert!(
        s.get_app(other.id.as_str()).await.unwrap().is_none(),
        "{}",
        b.name
    );

    let mut changed = src.clone();
    changed.retired_tokens.push(RetiredSecret {
        secret: changed.token.clone(),
        expires_at: 99,
    });
    changed.token = "rotated".into();
    changed.retired_secrets.push(RetiredSecret {
        secret: "whsec_old".into(),
        expires_at: 98,
    });
    s.update_source(changed.clone()).await.unwrap();
    assert_eq!(s.all_sources().await.unwrap(), vec![changed.clone()]);
    let listed = s
        .list_sources(&page(10, None, Order::Ascending))
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);

    s.add_source_stats(vec![(
        src.id.clone(),
        SourceStats {
            accepted: 3,
            duplicates: 1,
            rejected: 2,
            last_rejection: Some("no signature matches".into()),
            last_rejection_at: Some(50),
        },
    )])
    .await
    .unwrap();
    s.add_source_stats(vec![(
        src.id.clone(),
        SourceStats {
            accepted: 1,
            ..Default::default()
        },
    )])
    .await
    .unwrap();
    let stats = s.source_stats(&src.id).await.unwrap().unwrap();
    assert_eq!(
        (stats.accepted, stats.duplicates, stats.rejected),
        (4, 1, 2),
        "{}",
        b.name
    );
    assert_eq!(
        stats.last_rejection.as_deref(),
        Some("no signature matches")
    );
    assert_eq!(stats.last_rejection_at, Some(50));

    // What an ingested message passes on is stored with it and handed
    // to the dispatcher with each claimed delivery.
    let mut ep = endpoint(&backing.id, None, 3);
    ep.payload_filter = Some(serde_json::json!({"path": "/amount", "gt": 10}));
    let ep = s.insert_endpoint(ep).await.unwrap();
    assert_eq!(
        s.get_endpoint(&backing.id, ep.id.as_str()).await.unwrap(),
        Some(ep.clone())
    );
    let now = switchyard_core::timefmt::now_ms();
    let mut m = message(&backing.id, now - 5, Some("evt_1"));
    m.forward = Some(Forward {
        headers: vec![("stripe-signature".into(), "t=1,v1=ab".into())],
        path: "/sub?x=1".into(),
    });
    let m = created(accept(s, m, None, std::slice::from_ref(&ep.id)).await);
    assert_eq!(
        s.get_message(&backing.id, "evt_1")
            .await
            .unwrap()
            .unwrap()
            .forward,
        m.forward
    );
    let task = s.claim_due(now, 10, &ALL).await.unwrap().remove(0);
    assert_eq!(task.forward.as_deref(), m.forward.as_ref(), "{}", b.name);

    assert!(s.delete_source(&src.id).await.unwrap());
    assert!(s.get_source(&src.id).await.unwrap().is_none());
    assert!(
        s.get_app(backing.id.as_str()).await.unwrap().is_none(),
        "{}",
        b.name
    );
    assert!(
        s.get_message(&backing.id, m.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.delete_source(&src.id).await.unwrap());
}

on_every_backend!(
    applications_crud_uid_and_pagination,
    event_types_archive_and_list,
    endpoints_are_scoped_to_their_app,
    accept_is_idempotent_by_key_and_event_id,
    delivery_lifecycle_claims_retries_and_recovery,
    settings_and_idempotency_records,
    claimed_fan_out_carries_each_message_payload_once,
    concurrent_accepts_with_one_key_store_one_message,
    partition_leases_are_shared_renewed_and_taken_over,
    a_send_committed_after_its_partition_was_taken_over_becomes_due_again,
    messages_past_retention_go_with_their_deliveries_and_attempts,
    sources_own_their_application_and_count_requests,
);
