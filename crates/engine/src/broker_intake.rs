//! From a broker message to an accepted message: the one decision every
//! broker source makes for each message it reads, whatever the broker.
//! The answer tells the source how to settle the message with its broker:
//! acknowledge it (the message and its deliveries are committed, or were
//! by an earlier delivery of the same `eventId`), dead-letter it (it can
//! never become a message; the reason goes to the rejected log), or leave
//! it for later (the store could not take it now; the source backs off).

use crate::publish::MessageRequest;
use crate::{Engine, EngineError};
use switchyard_core::MessageId;
use switchyard_core::envelope::{Rejection, read_envelope};
use switchyard_store::StoreError;

/// One message as a broker delivered it: the body and the headers (AMQP
/// headers, NATS headers, Kafka headers, SQS and Pub/Sub attributes, MQTT 5
/// user properties) whose values are text.
#[derive(Debug, Clone, Default)]
pub struct BrokerMessage {
    pub body: bytes::Bytes,
    pub headers: Vec<(String, String)>,
}

/// How a source settles a broker message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Committed (or already committed under its `eventId`): acknowledge.
    Accepted { message: MessageId, created: bool },
    /// Never a message: dead-letter it where the broker can, record it.
    Rejected(Rejection),
    /// Not taken now (the store is unavailable): do not acknowledge, so the
    /// broker delivers it again, and slow down.
    Later(String),
}

impl Engine {
    /// Reads `message` as an envelope and publishes it as `POST /msg`
    /// would, for the application the source is bound to (`bound_app`, id
    /// or uid) or, for an unbound source, the one the message names. A
    /// bound source refuses a message naming another application.
    pub async fn take_broker_message(
        &self,
        bound_app: Option<&str>,
        message: &BrokerMessage,
    ) -> Settlement {
        let envelope = match read_envelope(&message.body, &message.headers) {
            Ok(e) => e,
            Err(rejection) => return Settlement::Rejected(rejection),
        };
        let app = match (bound_app, envelope.app.as_deref()) {
            (Some(bound), Some(named)) if bound != named => {
                // A uid and an id of the same application are one.
                match (self.find_app(bound).await, self.find_app(named).await) {
                    (Ok(Some(a)), Ok(Some(b))) if a.id == b.id => bound.to_owned(),
                    (Err(e), _) | (_, Err(e)) => return Settlement::Later(e.to_string()),
                    _ => {
                        return Settlement::Rejected(Rejection::new(
                            "app_mismatch",
                            format!(
                                "the source is bound to application '{bound}'; the message names '{named}'"
                            ),
                        ));
                    }
                }
            }
            (Some(bound), _) => bound.to_owned(),
            (None, Some(named)) => named.to_owned(),
            (None, None) => {
                return Settlement::Rejected(Rejection::new(
                    "missing_app",
                    "the source is bound to no application and the message names none (set app in the envelope or the switchyard-app header)",
                ));
            }
        };
        let request = MessageRequest {
            event_type: envelope.event_type,
            payload: envelope.payload,
            event_id: envelope.event_id,
            channels: envelope.channels,
            tags: envelope.tags,
            idempotency_key: None,
            application: None,
        };
        match self.publish(&app, request).await {
            Ok(accepted) => Settlement::Accepted {
                message: accepted.message.id,
                created: accepted.created,
            },
            Err(e) => settle_error(e),
        }
    }
}

/// What a refused publish means for the broker message.
fn settle_error(e: EngineError) -> Settlement {
    let rejected =
        |code, e: &EngineError| Settlement::Rejected(Rejection::new(code, e.to_string()));
    match &e {
        EngineError::NotFound(_) => rejected("unknown_app", &e),
        EngineError::Invalid { .. } | EngineError::InvalidAt { .. } => {
            rejected("invalid_message", &e)
        }
        EngineError::Conflict(_) => rejected("conflict", &e),
        EngineError::Store(StoreError::Unrepresentable(_)) => rejected("invalid_message", &e),
        // Everything else is the store's trouble, not the message's.
        EngineError::Store(_) | EngineError::Unauthorized(_) | EngineError::Forbidden(_) => {
            Settlement::Later(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::AppInput;

    fn msg(body: &str, headers: &[(&str, &str)]) -> BrokerMessage {
        BrokerMessage {
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    fn code(s: &Settlement) -> &'static str {
        match s {
            Settlement::Rejected(r) => r.code,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_messages_are_held_to_the_rules_of_post_msg() {
        let (engine, _dir) = crate::test_engine().await;
        let app_input = |uid: &str| AppInput {
            name: uid.into(),
            uid: Some(uid.into()),
            ..Default::default()
        };
        let (shop, _) = engine.create_app(app_input("shop"), false).await.unwrap();
        engine.create_app(app_input("other"), false).await.unwrap();

        let first = engine
            .take_broker_message(
                None,
                &msg(
                    r#"{"app":"shop","eventType":"order.paid","payload":{"n":1},"eventId":"e1"}"#,
                    &[],
                ),
            )
            .await;
        let Settlement::Accepted { message, created } = first else {
            panic!("{first:?}")
        };
        assert!(created);
        // A redelivery (after a crash before the ack) is the same message.
        let again = engine
            .take_broker_message(
                Some("shop"),
                &msg(
                    r#"{"eventType":"order.paid","payload":{"n":1},"eventId":"e1"}"#,
                    &[],
                ),
            )
            .await;
        assert_eq!(
            again,
            Settlement::Accepted {
                message: message.clone(),
                created: false
            }
        );
        // The header form, bound by id while the header names the uid.
        let by_header = engine
            .take_broker_message(
                Some(shop.id.as_str()),
                &msg(
                    r#"{"n":2}"#,
                    &[
                        ("switchyard-event-type", "order.paid"),
                        ("switchyard-app", "shop"),
                    ],
                ),
            )
            .await;
        assert!(matches!(
            by_header,
            Settlement::Accepted { created: true, .. }
        ));

        let cases = [
            (None, msg("nope", &[]), "not_json"),
            (
                None,
                msg(r#"{"eventType":"a.b","payload":{}}"#, &[]),
                "missing_app",
            ),
            (
                None,
                msg(r#"{"app":"ghost","eventType":"a.b","payload":{}}"#, &[]),
                "unknown_app",
            ),
            (
                Some("shop"),
                msg(r#"{"app":"other","eventType":"a.b","payload":{}}"#, &[]),
                "app_mismatch",
            ),
            (
                Some("shop"),
                msg(r#"{"eventType":"bad type!","payload":{}}"#, &[]),
                "invalid_message",
            ),
            (
                Some("shop"),
                msg(r#"{"eventType":"a.b","payload":[1]}"#, &[]),
                "invalid_message",
            ),
            (
                Some("shop"),
                msg(r#"{"eventType":"a.b","payload":{"k":1,"k":2}}"#, &[]),
                "invalid_message",
            ),
            (
                Some("shop"),
                msg(
                    &format!(
                        r#"{{"eventType":"a.b","payload":{{}},"eventId":"{}"}}"#,
                        "x".repeat(300)
                    ),
                    &[],
                ),
                "invalid_message",
            ),
        ];
        for (bound, m, expected) in cases {
            let settled = engine.take_broker_message(bound, &m).await;
            assert_eq!(code(&settled), expected, "{:?}", m.body);
        }
    }

    /// A store that cannot take the message now is no reason to dead-letter
    /// it: the broker keeps it.
    #[test]
    fn store_trouble_leaves_the_message_with_the_broker() {
        for e in [
            StoreError::Unavailable("connection refused".into()),
            StoreError::Database("deadlock detected".into()),
        ] {
            assert!(matches!(
                settle_error(EngineError::Store(e)),
                Settlement::Later(_)
            ));
        }
        assert!(matches!(
            settle_error(EngineError::Store(StoreError::Unrepresentable(
                "NUL".into()
            ))),
            Settlement::Rejected(_)
        ));
    }
}
