//! Broker sources: services publish by writing to the broker they already
//! use, and Switchyard accepts each message as `POST /msg` would. One
//! module and one cargo feature per broker; each gives a configuration
//! (checked, shown without secrets) and a consumer implementing
//! [`BrokerConsumer`]. The engine stores and runs sources through
//! [`Kinds`], the registry of the kinds compiled in.

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use switchyard_engine::broker_intake::{BrokerConfigError, BrokerConsumer, BrokerKinds};

#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqs")]
pub mod sqs;

/// A broker configuration, by its `type`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BrokerConfig {
    /// Redis Streams: a consumer group on one stream.
    #[cfg(feature = "redis")]
    Redis(redis::RedisStreamConfig),
    /// NATS JetStream: a durable pull consumer on one stream.
    #[cfg(feature = "nats")]
    Nats(nats::NatsConfig),
    /// RabbitMQ (AMQP 0-9-1): a consumer on one queue.
    #[cfg(feature = "rabbitmq")]
    RabbitMq(rabbitmq::RabbitMqConfig),
    /// MQTT 5: a (shared) subscription in a persistent session.
    #[cfg(feature = "mqtt")]
    Mqtt(mqtt::MqttConfig),
    /// Amazon SQS: one queue, long polling.
    #[cfg(feature = "sqs")]
    Sqs(sqs::SqsConfig),
}

/// The names of the kinds compiled in, as `type` takes them.
pub const KINDS: &[&str] = &[
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "nats")]
    "nats",
    #[cfg(feature = "rabbitmq")]
    "rabbitmq",
    #[cfg(feature = "mqtt")]
    "mqtt",
    #[cfg(feature = "sqs")]
    "sqs",
];

impl BrokerConfig {
    /// Reads and checks a configuration, naming the refused field.
    pub fn parse(broker: &serde_json::Value) -> Result<Self, BrokerConfigError> {
        let kind = broker.get("type").and_then(|t| t.as_str()).ok_or_else(|| {
            BrokerConfigError::new("type", format!("must be one of: {}", KINDS.join(", ")))
        })?;
        let config = match kind {
            #[cfg(feature = "redis")]
            "redis" => Self::Redis(settings(broker)?),
            #[cfg(feature = "nats")]
            "nats" => Self::Nats(settings(broker)?),
            #[cfg(feature = "rabbitmq")]
            "rabbitmq" => Self::RabbitMq(settings(broker)?),
            #[cfg(feature = "mqtt")]
            "mqtt" => Self::Mqtt(settings(broker)?),
            #[cfg(feature = "sqs")]
            "sqs" => Self::Sqs(settings(broker)?),
            other => {
                return Err(BrokerConfigError::new(
                    "type",
                    format!(
                        "'{other}' is not a broker this build has; it has: {}",
                        KINDS.join(", ")
                    ),
                ));
            }
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), BrokerConfigError> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.check(),
            #[cfg(feature = "nats")]
            Self::Nats(c) => c.check(),
            #[cfg(feature = "rabbitmq")]
            Self::RabbitMq(c) => c.check(),
            #[cfg(feature = "mqtt")]
            Self::Mqtt(c) => c.check(),
            #[cfg(feature = "sqs")]
            Self::Sqs(c) => c.check(),
        }
    }
}

/// A kind's settings: the configuration without its `type`, refused
/// naming the field (`claimIdleMs`, `url`).
fn settings<T: DeserializeOwned>(broker: &serde_json::Value) -> Result<T, BrokerConfigError> {
    let mut fields = broker.clone();
    if let Some(object) = fields.as_object_mut() {
        object.remove("type");
    }
    serde_path_to_error::deserialize(fields).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        BrokerConfigError::new(field, e.inner().to_string())
    })
}

pub mod destinations;

/// The registry of broker kinds handed to the engine.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kinds;

impl BrokerKinds for Kinds {
    fn check(&self, broker: &serde_json::Value) -> Result<(), BrokerConfigError> {
        BrokerConfig::parse(broker).map(|_| ())
    }

    fn reads(&self, broker: &serde_json::Value) -> Result<String, BrokerConfigError> {
        Ok(match BrokerConfig::parse(broker)? {
            #[cfg(feature = "redis")]
            BrokerConfig::Redis(c) => c.reads(),
            #[cfg(feature = "nats")]
            BrokerConfig::Nats(c) => c.reads(),
            #[cfg(feature = "rabbitmq")]
            BrokerConfig::RabbitMq(c) => c.reads(),
            #[cfg(feature = "mqtt")]
            BrokerConfig::Mqtt(c) => c.reads(),
            #[cfg(feature = "sqs")]
            BrokerConfig::Sqs(c) => c.reads(),
        })
    }

    fn redact(&self, broker: &serde_json::Value) -> serde_json::Value {
        let Ok(config) = BrokerConfig::parse(broker) else {
            // Stored configurations were checked; one this build cannot
            // read is shown by its type only.
            return serde_json::json!({"type": broker.get("type")});
        };
        let shown = match config {
            #[cfg(feature = "redis")]
            BrokerConfig::Redis(c) => serde_json::to_value(c.redacted()),
            #[cfg(feature = "nats")]
            BrokerConfig::Nats(c) => serde_json::to_value(c.redacted()),
            #[cfg(feature = "rabbitmq")]
            BrokerConfig::RabbitMq(c) => serde_json::to_value(c.redacted()),
            #[cfg(feature = "mqtt")]
            BrokerConfig::Mqtt(c) => serde_json::to_value(c.redacted()),
            #[cfg(feature = "sqs")]
            BrokerConfig::Sqs(c) => serde_json::to_value(c.redacted()),
        };
        let mut shown = shown.unwrap_or_default();
        if let Some(object) = shown.as_object_mut() {
            object.insert(
                "type".into(),
                broker.get("type").cloned().unwrap_or_default(),
            );
        }
        shown
    }

    fn connect(
        &self,
        broker: &serde_json::Value,
        consumer: &str,
    ) -> BoxFuture<'static, Result<Box<dyn BrokerConsumer>, String>> {
        let config = BrokerConfig::parse(broker);
        let consumer = consumer.to_owned();
        Box::pin(async move {
            match config.map_err(|e| e.to_string())? {
                #[cfg(feature = "redis")]
                BrokerConfig::Redis(c) => {
                    let c = redis::RedisStreamConsumer::connect(c, consumer).await?;
                    Ok(Box::new(c) as Box<dyn BrokerConsumer>)
                }
                #[cfg(feature = "nats")]
                BrokerConfig::Nats(c) => {
                    let c = nats::NatsConsumer::connect(c, consumer).await?;
                    Ok(Box::new(c) as Box<dyn BrokerConsumer>)
                }
                #[cfg(feature = "rabbitmq")]
                BrokerConfig::RabbitMq(c) => {
                    let c = rabbitmq::RabbitMqConsumer::connect(c, consumer).await?;
                    Ok(Box::new(c) as Box<dyn BrokerConsumer>)
                }
                #[cfg(feature = "mqtt")]
                BrokerConfig::Mqtt(c) => {
                    let c = mqtt::MqttConsumer::connect(c, consumer).await?;
                    Ok(Box::new(c) as Box<dyn BrokerConsumer>)
                }
                #[cfg(feature = "sqs")]
                BrokerConfig::Sqs(c) => {
                    // SQS shares a queue among its consumers by itself: no
                    // consumer name is needed.
                    let _ = consumer;
                    let c = sqs::SqsConsumer::connect(c).await?;
                    Ok(Box::new(c) as Box<dyn BrokerConsumer>)
                }
            }
        })
    }
}

/// `url` with any password replaced by `********`; an unparseable URL is
/// shown as `********` whole, since it may hold one.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("********"));
            }
            parsed.to_string()
        }
        Err(_) => "********".into(),
    }
}

/// `url` without user information, query or fragment: what names the
/// server.
pub fn url_without_secrets(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_refused_naming_the_field() {
        let refused = |v: serde_json::Value| BrokerConfig::parse(&v).unwrap_err();
        assert_eq!(refused(serde_json::json!({})).field, "type");
        assert_eq!(
            refused(serde_json::json!({"type": "carrier-pigeon"})).field,
            "type"
        );
        #[cfg(feature = "redis")]
        {
            let e =
                refused(serde_json::json!({"type": "redis", "url": "redis://x", "stream": "s"}));
            assert!(e.message.contains("group"), "{e}");
            let e = refused(
                serde_json::json!({"type": "redis", "url": "redis://x", "stream": "s", "group": "g", "colour": 1}),
            );
            assert!(e.message.contains("colour"), "{e}");
            let e = refused(
                serde_json::json!({"type": "redis", "url": "redis://x", "stream": "s", "group": "g", "claimIdleMs": "soon"}),
            );
            assert_eq!(e.field, "claimIdleMs", "{e}");
            let e = refused(
                serde_json::json!({"type": "redis", "url": "redis://x", "stream": "s", "group": "g", "deadLetterStream": "s"}),
            );
            assert_eq!(e.field, "deadLetterStream", "{e}");
        }
        #[cfg(feature = "rabbitmq")]
        {
            let e = refused(serde_json::json!({"type": "rabbitmq", "url": "amqp://x"}));
            assert!(e.message.contains("queue"), "{e}");
            let e = refused(
                serde_json::json!({"type": "rabbitmq", "url": "amqp://x", "queue": "q", "colour": 1}),
            );
            assert!(e.message.contains("colour"), "{e}");
            let e = refused(
                serde_json::json!({"type": "rabbitmq", "url": "amqp://x", "queue": "q", "prefetch": "lots"}),
            );
            assert_eq!(e.field, "prefetch", "{e}");
            let e = refused(
                serde_json::json!({"type": "rabbitmq", "url": "amqp://x", "queue": "q", "deadLetterRoutingKey": "q"}),
            );
            assert_eq!(e.field, "deadLetterRoutingKey", "{e}");
        }
    }

    #[cfg(feature = "rabbitmq")]
    #[test]
    fn rabbitmq_passwords_are_not_shown() {
        let broker = serde_json::json!({
            "type": "rabbitmq", "url": "amqp://user:hunter2@127.0.0.1:5672/%2f", "queue": "orders"
        });
        let shown = Kinds.redact(&broker);
        assert_eq!(shown["type"], "rabbitmq");
        assert_eq!(shown["url"], "amqp://user:********@127.0.0.1:5672/%2f");
        assert_eq!(shown["queue"], "orders");
        assert!(!shown.to_string().contains("hunter2"));
        let reads = Kinds.reads(&broker).unwrap();
        assert_eq!(reads, "rabbitmq amqp://127.0.0.1:5672 vhost / queue orders");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn passwords_are_not_shown() {
        let shown = Kinds.redact(&serde_json::json!({
            "type": "redis", "url": "redis://user:hunter2@127.0.0.1:6379/0", "stream": "s", "group": "g"
        }));
        assert_eq!(shown["type"], "redis");
        assert_eq!(shown["url"], "redis://user:********@127.0.0.1:6379/0");
        assert!(!shown.to_string().contains("hunter2"));
        assert_eq!(redact_url("not a url :: hunter2"), "********");
        assert_eq!(
            url_without_secrets("amqp://u:p@host:5672/vh?x=1"),
            "amqp://host:5672/vh"
        );
    }
}
