//! Slack (`slack`): `X-Slack-Signature: v0=<hex HMAC-SHA256 of
//! "v0:{timestamp}:{body}">` with the time in `X-Slack-Request-Timestamp`,
//! under the app's signing secret. Events API, slash commands and
//! interactivity (a form whose `payload` field is JSON) all arrive here; the
//! Events API's `url_verification` handshake is answered with its
//! challenge. Config: `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection, v0_signature};
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct Slack;

impl Provider for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        let p = Location::pointer;
        Defaults {
            event_type: vec![
                p("/event/type"),
                p("/type"),
                p("/command"),
                p("/payload/type"),
            ],
            dedupe: vec![p("/event_id"), p("/trigger_id"), p("/payload/trigger_id")],
            forward_headers: &[
                "x-slack-signature",
                "x-slack-request-timestamp",
                "x-slack-retry-num",
                "x-slack-retry-reason",
            ],
            signs_time: true,
        }
    }

    /// `{"type": "url_verification", "challenge": c}` is answered `{"challenge": c}`.
    fn challenge(&self, document: &Value, _secret: Option<&str>) -> Option<Value> {
        if document["type"] != "url_verification" {
            return None;
        }
        let challenge = document["challenge"].as_str()?;
        Some(json!({ "challenge": challenge }))
    }
}

/// Checks `X-Slack-Signature` and `X-Slack-Request-Timestamp`.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    v0_signature(
        incoming,
        "X-Slack-Request-Timestamp",
        "X-Slack-Signature",
        secrets,
        tolerance_secs,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, hex_mac, incoming};

    /// A request signed at `at`.
    pub(crate) fn signed(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"type":"event_callback","event_id":"Ev1"}"#.to_vec();
        let mac = hex_mac(secret, &[format!("v0:{at}:").as_bytes(), &body]);
        let headers = vec![
            ("X-Slack-Request-Timestamp".into(), at.to_string()),
            ("X-Slack-Signature".into(), format!("v0={mac}")),
        ];
        (headers, body)
    }

    #[test]
    fn defaults_cover_events_commands_and_interactions() {
        let d = Slack.defaults();
        assert_eq!(d.event_type[0], Location::pointer("/event/type"));
        assert_eq!(d.event_type[3], Location::pointer("/payload/type"));
        assert_eq!(d.dedupe[0], Location::pointer("/event_id"));
        assert!(d.signs_time);
    }

    #[test]
    fn the_v0_signature_verifies() {
        assert_signature_checks(&Slack, "s", signed);
        let h = [
            ("X-Slack-Request-Timestamp", "soon"),
            ("X-Slack-Signature", "v0=00"),
        ];
        assert_eq!(
            verify(&["s"], &incoming(&h, b"{}", "", 0), None),
            Err(Rejection::Malformed("X-Slack-Request-Timestamp"))
        );
    }

    #[test]
    fn url_verification_is_answered_with_its_challenge() {
        let handshake = json!({"token": "x", "challenge": "3eZbrw1a", "type": "url_verification"});
        assert_eq!(
            Slack.challenge(&handshake, Some("s")),
            Some(json!({"challenge": "3eZbrw1a"}))
        );
        assert_eq!(
            Slack.challenge(&json!({"type": "event_callback"}), Some("s")),
            None
        );
        assert_eq!(
            Slack.challenge(&json!({"type": "url_verification"}), None),
            None
        );
    }
}
