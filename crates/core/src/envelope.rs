//! The broker envelope: how a message read from a broker (RabbitMQ, NATS,
//! Redis Streams, Kafka, SQS, Pub/Sub, MQTT) says what `POST
//! /api/v1/app/{app}/msg` would say in its path and body.
//!
//! Two forms, so producers that cannot change their payload can still
//! publish:
//! - **Envelope body**: a JSON object
//!   `{"app": "<id or uid>", "eventType": "...", "payload": {...},
//!   "eventId": "...", "channels": [...], "tags": [...]}`; `app` may be left
//!   out when the source is bound to an application.
//! - **Headers** (or attributes, or user properties): `switchyard-event-type`
//!   (required for this form), `switchyard-app`, `switchyard-event-id`,
//!   `switchyard-channels` and `switchyard-tags` (comma-separated); the whole
//!   body is then the payload. Header names match in any case.
//!
//! Only the shape is read here; the message rules (event-type names,
//! payload object, id and tag lengths, schemas) are the engine's, applied
//! as to any message.

use serde_json::value::RawValue;

/// Header carrying the event type (its presence selects the header form).
pub const EVENT_TYPE_HEADER: &str = "switchyard-event-type";
/// Header carrying the application (id or uid).
pub const APP_HEADER: &str = "switchyard-app";
/// Header carrying the event id (idempotency across redeliveries).
pub const EVENT_ID_HEADER: &str = "switchyard-event-id";
/// Header carrying channels, comma-separated.
pub const CHANNELS_HEADER: &str = "switchyard-channels";
/// Header carrying tags, comma-separated.
pub const TAGS_HEADER: &str = "switchyard-tags";

/// A broker message read as a message request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The application's id or uid, when the message names one.
    pub app: Option<String>,
    pub event_type: String,
    /// The payload's bytes as the producer wrote them (what endpoints get).
    pub payload: bytes::Bytes,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

/// Why a broker message is not a message: a stable `code` for counting and
/// a sentence for the rejected log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `not_json`, `not_an_envelope`, `missing_field`, `bad_field`,
    /// `bad_header`, `unknown_app`, `invalid_message`, ...
    pub code: &'static str,
    pub reason: String,
}

/// Longest rejection reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 1024;

impl Rejection {
    /// A rejection with `reason` made safe to store and to send on: reasons
    /// quote what the producer sent (an unknown field, an application's
    /// name), so control characters (NUL, which PostgreSQL text refuses;
    /// line breaks) become U+FFFD and the text is cut at
    /// [`MAX_REASON_CHARS`]. A reason that could not be recorded would leave
    /// its message with the broker for ever.
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        let reason: String = reason.into();
        let mut clean: String = reason
            .chars()
            .take(MAX_REASON_CHARS)
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        if reason.chars().nth(MAX_REASON_CHARS).is_some() {
            clean.push('…');
        }
        Self {
            code,
            reason: clean,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Body<'a> {
    #[serde(default)]
    app: Option<String>,
    event_type: String,
    #[serde(borrow, alias = "data")]
    payload: &'a RawValue,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a broker message: the header form when `switchyard-event-type` is
/// among `headers`, else the envelope body. Header values that are not
/// text should be left out by the caller (they cannot name anything).
pub fn read_envelope(body: &[u8], headers: &[(String, String)]) -> Result<Envelope, Rejection> {
    if let Some(event_type) = header(headers, EVENT_TYPE_HEADER) {
        // The body is the payload, and must still be one JSON document.
        let text = std::str::from_utf8(body)
            .map_err(|_| Rejection::new("not_json", "the body is not UTF-8 JSON"))?;
        serde_json::from_str::<&RawValue>(text)
            .map_err(|e| Rejection::new("not_json", format!("the body is not JSON: {e}")))?;
        return Ok(Envelope {
            app: header(headers, APP_HEADER).map(str::to_owned),
            event_type: event_type.to_owned(),
            payload: bytes::Bytes::copy_from_slice(body.trim_ascii()),
            event_id: header(headers, EVENT_ID_HEADER).map(str::to_owned),
            channels: header(headers, CHANNELS_HEADER).map(list),
            tags: header(headers, TAGS_HEADER).map(list),
        });
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
            Rejection::new("not_json", format!("the body is not JSON: {e}"))
        } else {
            Rejection::new(
                "not_an_envelope",
                format!(
                    "the body is not an envelope ({e}); send {{\"eventType\", \"payload\", \"app\"?, \"eventId\"?, \"channels\"?, \"tags\"?}} or set the {EVENT_TYPE_HEADER} header"
                ),
            )
        }
    })?;
    Ok(Envelope {
        app: parsed.app,
        event_type: parsed.event_type,
        payload: bytes::Bytes::copy_from_slice(parsed.payload.get().as_bytes()),
        event_id: parsed.event_id,
        channels: parsed.channels,
        tags: parsed.tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn an_envelope_body_keeps_the_payload_bytes() {
        let body = br#"{"app":"shop","eventType":"order.paid","payload":{"b":1,  "a":[2]},"eventId":"e1","channels":["eu"]}"#;
        let e = read_envelope(body, &[]).unwrap();
        assert_eq!(e.app.as_deref(), Some("shop"));
        assert_eq!(e.event_type, "order.paid");
        assert_eq!(&e.payload[..], br#"{"b":1,  "a":[2]}"#);
        assert_eq!(e.event_id.as_deref(), Some("e1"));
        assert_eq!(e.channels, Some(vec!["eu".to_owned()]));
        assert_eq!(e.tags, None);
    }

    #[test]
    fn headers_carry_what_a_payload_cannot() {
        let headers = h(&[
            ("Switchyard-Event-Type", "order.paid"),
            ("switchyard-app", "app_1"),
            ("switchyard-event-id", "e2"),
            ("switchyard-channels", "eu, us,"),
            ("other", "x"),
        ]);
        let e = read_envelope(b" {\"order\": 7}\n", &headers).unwrap();
        assert_eq!(e.event_type, "order.paid");
        assert_eq!(e.app.as_deref(), Some("app_1"));
        assert_eq!(&e.payload[..], b"{\"order\": 7}");
        assert_eq!(e.channels, Some(vec!["eu".to_owned(), "us".to_owned()]));
    }

    #[test]
    fn what_is_not_a_message_is_rejected_with_a_code() {
        let code = |body: &[u8], headers: &[(String, String)]| {
            read_envelope(body, headers).unwrap_err().code
        };
        assert_eq!(code(b"not json", &[]), "not_json");
        assert_eq!(code(b"\xff\xfe", &[]), "not_json");
        assert_eq!(code(b"{\"payload\":{}}", &[]), "not_an_envelope");
        assert_eq!(code(b"[1,2]", &[]), "not_an_envelope");
        assert_eq!(
            code(b"{\"eventType\":\"a\",\"payload\":{},\"extra\":1}", &[]),
            "not_an_envelope"
        );
        assert_eq!(
            code(b"{\"eventType\":5,\"payload\":{}}", &[]),
            "not_an_envelope"
        );
        let typed = h(&[("switchyard-event-type", "a")]);
        assert_eq!(code(b"{unterminated", &typed), "not_json");
        assert_eq!(code(b"\xff", &typed), "not_json");
    }

    #[test]
    fn reasons_quoting_the_producer_are_made_safe() {
        let r = Rejection::new("not_envelope", "unknown field `\u{0}x\r\n`");
        assert_eq!(r.reason, "unknown field `\u{fffd}x\u{fffd}\u{fffd}`");
        let long = Rejection::new("app_mismatch", "é".repeat(5000));
        assert_eq!(long.reason.chars().count(), MAX_REASON_CHARS + 1);
        assert!(long.reason.ends_with('…'));
        assert_eq!(Rejection::new("x", "plain").reason, "plain");
    }
}
