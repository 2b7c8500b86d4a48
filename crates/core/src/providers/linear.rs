//! Linear (`linear`): `Linear-Signature: <hex HMAC-SHA256 of the body>`
//! under the webhook's signing secret. The send time is signed inside the
//! body (`webhookTimestamp`, in milliseconds), so with the clock check on a
//! body without it is refused. Config: `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection, body_signature, hex_decode};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Linear;

impl Provider for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::header("Linear-Event"), Location::pointer("/type")],
            dedupe: vec![Location::header("Linear-Delivery")],
            forward_headers: &["linear-signature", "linear-delivery", "linear-event"],
            signs_time: true,
        }
    }
}

/// Checks `Linear-Signature`, then the body's `webhookTimestamp`.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    body_signature(incoming, "Linear-Signature", hex_decode, secrets)?;
    let Some(tol) = tolerance_secs else {
        return Ok(());
    };
    #[derive(serde::Deserialize)]
    struct Stamp {
        #[serde(rename = "webhookTimestamp")]
        webhook_timestamp: Option<i64>,
    }
    let ms = serde_json::from_slice::<Stamp>(incoming.body)
        .ok()
        .and_then(|s| s.webhook_timestamp)
        .ok_or(Rejection::Malformed("webhookTimestamp in the body"))?;
    if incoming.now_secs.saturating_mul(1000).abs_diff(ms) > tol.unsigned_abs().saturating_mul(1000)
    {
        return Err(Rejection::Stale);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, hex_mac, incoming};

    /// A request whose body carries `at` (in milliseconds), signed.
    pub(crate) fn signed(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        let body = format!(
            r#"{{"type":"Issue","webhookTimestamp":{}}}"#,
            at.saturating_mul(1000)
        );
        let sig = hex_mac(secret, &[body.as_bytes()]);
        (vec![("Linear-Signature".into(), sig)], body.into_bytes())
    }

    #[test]
    fn defaults_read_the_event_header_first() {
        let d = Linear.defaults();
        assert_eq!(
            d.event_type,
            [Location::header("Linear-Event"), Location::pointer("/type")]
        );
        assert_eq!(d.dedupe, [Location::header("Linear-Delivery")]);
        assert!(d.signs_time);
    }

    #[test]
    fn the_body_signature_verifies() {
        assert_signature_checks(&Linear, "lin_wh_x", signed);
    }

    #[test]
    fn a_body_without_its_timestamp_is_refused_when_the_clock_is_checked() {
        let body = br#"{"type":"Issue"}"#;
        let sig = hex_mac("s", &[body]);
        let headers = [("Linear-Signature", sig.as_str())];
        let request = incoming(&headers, body, "", 0);
        assert!(verify(&["s"], &request, Some(300)).is_err());
        assert_eq!(verify(&["s"], &request, None), Ok(()));
    }
}
