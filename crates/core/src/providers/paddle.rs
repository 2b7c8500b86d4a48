//! Paddle Billing (`paddle`): `Paddle-Signature: ts=<unix secs>;h1=<hex>`,
//! each `h1` an HMAC-SHA256 of `{ts}:{body}` under the notification
//! destination's secret. Config: `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, PairsHeader, Rejection};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Paddle;

impl Provider for Paddle {
    fn kind(&self) -> &'static str {
        "paddle"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::pointer("/event_type")],
            dedupe: vec![
                Location::pointer("/notification_id"),
                Location::pointer("/event_id"),
            ],
            forward_headers: &["paddle-signature"],
            signs_time: true,
        }
    }
}

const SCHEME: PairsHeader = PairsHeader {
    header: "Paddle-Signature",
    separator: ';',
    timestamp_key: "ts",
    signature_key: "h1",
    joiner: ':',
};

/// Checks `Paddle-Signature`.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    SCHEME.verify(incoming, secrets, tolerance_secs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, hex_mac, incoming};

    /// A request signed at `at`.
    pub(crate) fn signed(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"event_type":"transaction.paid","event_id":"evt_1"}"#.to_vec();
        let sig = hex_mac(secret, &[format!("{at}:").as_bytes(), &body]);
        (
            vec![("Paddle-Signature".into(), format!("ts={at};h1={sig}"))],
            body,
        )
    }

    #[test]
    fn defaults_read_the_notification() {
        let d = Paddle.defaults();
        assert_eq!(d.event_type, [Location::pointer("/event_type")]);
        assert_eq!(d.dedupe[0], Location::pointer("/notification_id"));
        assert!(d.signs_time);
    }

    #[test]
    fn the_h1_signature_verifies() {
        assert_signature_checks(&Paddle, "pdl_ntfset_x", signed);
        let h = [("Paddle-Signature", "ts=1;h2=00")];
        assert_eq!(
            verify(&["pdl_ntfset_x"], &incoming(&h, b"{}", "", 0), None),
            Err(Rejection::Malformed("Paddle-Signature"))
        );
    }
}
