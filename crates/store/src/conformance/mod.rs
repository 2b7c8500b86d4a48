//! The storage conformance suite: a store is correct when every check here
//! passes on it (DESIGN.md §8), and every backend runs all of them.
//!
//! Each concern is a module of `pub async fn` checks, each taking a fresh
//! [`Backend`]. A backend's test file makes that backend (its factory) and
//! hands it to [`conformance_suite!`](crate::conformance_suite), which
//! declares one test per check, named `<concern>::<check>` in the backend's
//! test binary, so a failure names the backend, the concern and the check.
//! A new check is added to its concern module and to the list in
//! `conformance_suite!`; a new backend only calls the macro.
//!
//! Built with the `testing` cargo feature, for tests only.

pub mod apps;
pub mod broker_sources;
pub mod cluster;
pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod messages;
pub mod settings;
pub mod sources;
pub mod tokens;

use crate::*;
use std::sync::Arc;
use switchyard_core::signing::EndpointSecret;
use switchyard_core::{AppId, AttemptId, Channel, EndpointId, MessageId};

/// A store under test, fresh for one check.
pub struct Backend {
    /// Named in assertion messages.
    pub name: &'static str,
    /// The store the check works on.
    pub store: Arc<dyn Store>,
    /// What the store lives in (a temporary directory, a scratch database),
    /// dropped after the store.
    _home: Box<dyn std::any::Any + Send + Sync>,
}

impl Backend {
    /// `home` is kept until the backend is dropped, and dropped after the store.
    pub fn new(
        name: &'static str,
        store: impl Store,
        home: impl std::any::Any + Send + Sync,
    ) -> Self {
        Self {
            name,
            store: Arc::new(store),
            _home: Box::new(home),
        }
    }
}

/// One `#[tokio::test]` per conformance check, for the backend the given
/// expression makes (it is evaluated afresh inside each test's `async fn`,
/// so it may `.await`, and sees the test file's items). Attributes after it
/// go on every test, e.g. `#[ignore = "needs PostgreSQL"]`. The test file
/// needs `tokio` (with its `macros` and `rt` features).
///
/// ```text
/// async fn backend() -> Backend { /* … */ }
/// switchyard_store::conformance_suite!(backend().await, #[ignore = "needs a server"]);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::__conformance_modules! {
            { $(#[$attr])* } $backend;
            apps: applications_crud_uid_and_pagination;
            event_types: event_types_archive_and_list;
            endpoints: endpoints_are_scoped_to_their_app, failing_endpoints_are_disabled_once,
                endpoints_per_application_are_capped_under_concurrency;
            messages:
                accept_is_idempotent_by_key_and_event_id,
                concurrent_accepts_with_one_key_store_one_message,
                messages_past_retention_go_with_their_deliveries_and_attempts;
            deliveries:
                delivery_lifecycle_claims_retries_and_recovery,
                claimed_fan_out_carries_each_message_payload_once,
                deferred_deliveries_wait_without_an_attempt,
                fifo_deliveries_are_claimed_one_at_a_time_in_message_order,
                fifo_queues_left_with_nothing_due_are_repaired,
                a_fifo_delivery_committed_late_goes_first;
            settings: settings_and_idempotency_records;
            cluster:
                partition_leases_are_shared_renewed_and_taken_over,
                a_send_committed_after_its_partition_was_taken_over_becomes_due_again;
            sources: sources_own_their_application_and_count_requests;
            tokens: tokens_are_found_by_hash_listed_and_expired;
            broker_sources: broker_sources_are_unique_compared_counted_and_logged;
        }
    };
}

/// A module of tests per concern. The attributes travel as one token tree:
/// a repetition can't nest inside another one it was not matched in.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_modules {
    ($attrs:tt $backend:expr; $($concern:ident: $($check:ident),+;)+) => {
        $(
            mod $concern {
                #[allow(unused_imports)]
                use super::*;
                $( $crate::__conformance_test!($attrs $backend; $concern::$check); )+
            }
        )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    ({ $(#[$attr:meta])* } $backend:expr; $concern:ident::$check:ident) => {
        #[tokio::test]
        $(#[$attr])*
        async fn $check() {
            $crate::conformance::$concern::$check($backend).await
        }
    };
}

// ---- records the checks share ------------------------------------------------

/// Every partition.
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

/// A uid for a test record; `uid` must be a valid one.
pub fn test_uid(uid: &str) -> Uid {
    Uid::parse(uid).expect("a valid test uid")
}

/// The signing secret of test endpoints.
pub fn test_secret() -> EndpointSecret {
    EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a valid secret")
}

/// A keyring with one random key, for stores that seal their secrets.
pub fn test_keyring() -> Arc<switchyard_core::sealing::Keyring> {
    let key = switchyard_core::sealing::Keyring::generate_key();
    Arc::new(switchyard_core::sealing::Keyring::parse(&key).expect("a generated key parses"))
}

/// An application with the given uid, created at `at`; for backend-specific
/// tests too.
pub fn app(uid: Option<&str>, at: u64) -> Application {
    Application {
        id: AppId::generate_at(at),
        uid: uid.map(test_uid),
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
        uid: uid.map(test_uid),
        url: EndpointUrl::from_trusted("https://example.com/hook".into()),
        description: String::new(),
        disabled: false,
        disabled_reason: None,
        filter_types: None,
        channels: None,
        rate_limit: None,
        concurrency_limit: None,
        circuit_breaker: None,
        fifo: false,
        metadata: Default::default(),
        headers: Default::default(),
        auth: Default::default(),
        payload_filter: None,
        secret: test_secret(),
        retired_secrets: vec![],
        created_at: at,
        updated_at: at,
    }
}

fn message(app: &AppId, at: u64, event_id: Option<&str>) -> Message {
    Message {
        id: MessageId::generate_at(at),
        app_id: app.clone(),
        event_type: MessageEventType::from_provider("order.created"),
        event_id: event_id.map(str::to_owned),
        channels: Some(vec![Channel::from_trusted("eu".into())]),
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
                fifo: false,
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
            url: Some(EndpointUrl::from_trusted("https://example.com/hook".into())),
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
        sent: true,
        fifo: task.fifo,
        attempts_before: task.attempts,
    }
}
