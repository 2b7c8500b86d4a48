//! Stripe (`stripe`): `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>…]`,
//! each `v1` an HMAC-SHA256 of `{t}.{body}` under the endpoint's signing
//! secret (`whsec_…`, used as text). Config: `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, PairsHeader, Rejection};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Stripe;

impl Provider for Stripe {
    fn kind(&self) -> &'static str {
        "stripe"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::pointer("/type")],
            dedupe: vec![Location::pointer("/id")],
            forward_headers: &["stripe-signature"],
            signs_time: true,
        }
    }
}

const SCHEME: PairsHeader = PairsHeader {
    header: "Stripe-Signature",
    separator: ',',
    timestamp_key: "t",
    signature_key: "v1",
    joiner: '.',
};

/// Checks `Stripe-Signature`.
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
    use crate::providers::testing::{
        Headers, assert_signature_checks, borrowed, hex_mac, incoming, object,
    };
    use serde_json::json;

    /// A request signed at `at`.
    pub(crate) fn signed(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"type":"t","id":"e1"}"#.to_vec();
        let sig = hex_mac(secret, &[format!("{at}.").as_bytes(), &body]);
        (
            vec![("Stripe-Signature".into(), format!("t={at},v1={sig}"))],
            body,
        )
    }

    #[test]
    fn defaults_read_the_event_object() {
        let d = Stripe.defaults();
        assert_eq!(d.event_type, [Location::pointer("/type")]);
        assert_eq!(d.dedupe, [Location::pointer("/id")]);
        assert_eq!(d.forward_headers, ["stripe-signature"]);
        assert!(d.signs_time);
        assert_eq!(Stripe.secret_field(), Some("secret"));
    }

    #[test]
    fn any_v1_signature_may_match() {
        assert_signature_checks(&Stripe, "whsec_x", signed);
        let now = 1_700_000_000;
        let (mut headers, body) = signed("whsec_x", now);
        headers[0].1 = format!("t={now},v1=00,{}", &headers[0].1[13..]);
        let h = borrowed(&headers);
        assert_eq!(
            verify(&["whsec_x"], &incoming(&h, &body, "", now), Some(300)),
            Ok(())
        );
        let h = [("Stripe-Signature", "v1=00")];
        assert_eq!(
            verify(&["whsec_x"], &incoming(&h, &body, "", now), None),
            Err(Rejection::Malformed("Stripe-Signature"))
        );
        assert_eq!(
            Stripe
                .parse(&object(json!({"secret": ""})))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err("config.secret: must be a non-empty string".to_owned())
        );
    }
}
