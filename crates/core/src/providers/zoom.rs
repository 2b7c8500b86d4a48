//! Zoom (`zoom`): `x-zm-signature: v0=<hex HMAC-SHA256 of
//! "v0:{timestamp}:{body}">` with the time in `x-zm-request-timestamp`,
//! under the app's secret token. Zoom checks a URL with a signed
//! `endpoint.url_validation` event, answered with the plain token and its
//! HMAC ([`encrypted_token`]). Config: `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection, hmac_sha256, v0_signature};
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct Zoom;

impl Provider for Zoom {
    fn kind(&self) -> &'static str {
        "zoom"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::pointer("/event")],
            dedupe: vec![],
            forward_headers: &[
                "x-zm-signature",
                "x-zm-request-timestamp",
                "x-zm-trackingid",
            ],
            signs_time: true,
        }
    }

    /// `endpoint.url_validation` with `payload.plainToken` is answered with
    /// the token and [`encrypted_token`] under the current secret.
    fn challenge(&self, document: &Value, secret: Option<&str>) -> Option<Value> {
        if document["event"] != "endpoint.url_validation" {
            return None;
        }
        let plain = document["payload"]["plainToken"].as_str()?;
        let secret = secret?;
        Some(json!({
            "plainToken": plain,
            "encryptedToken": encrypted_token(secret, plain),
        }))
    }
}

/// Checks `x-zm-signature` and `x-zm-request-timestamp`.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    v0_signature(
        incoming,
        "x-zm-request-timestamp",
        "x-zm-signature",
        secrets,
        tolerance_secs,
    )
}

/// Zoom's `endpoint.url_validation` answer: hex HMAC-SHA256 of the plain
/// token under the secret.
pub fn encrypted_token(secret: &str, plain_token: &str) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[plain_token.as_bytes()]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, hex_mac};

    /// A request signed at `at`.
    pub(crate) fn signed(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"event":"meeting.started","event_ts":1}"#.to_vec();
        let mac = hex_mac(secret, &[format!("v0:{at}:").as_bytes(), &body]);
        let headers = vec![
            ("x-zm-request-timestamp".into(), at.to_string()),
            ("x-zm-signature".into(), format!("v0={mac}")),
        ];
        (headers, body)
    }

    #[test]
    fn defaults_read_the_event_name() {
        let d = Zoom.defaults();
        assert_eq!(d.event_type, [Location::pointer("/event")]);
        assert!(d.dedupe.is_empty());
        assert!(d.signs_time);
    }

    #[test]
    fn the_v0_signature_verifies() {
        assert_signature_checks(&Zoom, "s", signed);
    }

    #[test]
    fn url_validation_is_answered_with_the_token_hmac() {
        let event = json!({"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}});
        let answer = Zoom.challenge(&event, Some("zoom_webhook_secret_token"));
        assert_eq!(
            answer,
            Some(json!({
                "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
                "encryptedToken": hex_mac("zoom_webhook_secret_token", &[b"qgg8vlvZRS6UYooatFL8Aw"]),
            }))
        );
        assert_eq!(Zoom.challenge(&event, None), None);
        assert_eq!(
            Zoom.challenge(&json!({"event": "meeting.started"}), Some("s")),
            None
        );
    }
}
