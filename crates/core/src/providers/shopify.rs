//! Shopify (`shopify`): `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the
//! body>` under the app's client secret. No send time is signed. Config:
//! `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection, body_signature};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Shopify;

impl Provider for Shopify {
    fn kind(&self) -> &'static str {
        "shopify"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::header("X-Shopify-Topic")],
            dedupe: vec![
                Location::header("X-Shopify-Webhook-Id"),
                Location::header("X-Shopify-Event-Id"),
            ],
            forward_headers: &[
                "x-shopify-topic",
                "x-shopify-hmac-sha256",
                "x-shopify-shop-domain",
                "x-shopify-api-version",
                "x-shopify-webhook-id",
                "x-shopify-event-id",
                "x-shopify-triggered-at",
            ],
            signs_time: false,
        }
    }
}

/// Checks `X-Shopify-Hmac-Sha256`.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    _tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let decode = |value: &str| BASE64.decode(value.trim()).ok();
    body_signature(incoming, "X-Shopify-Hmac-Sha256", decode, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, incoming};
    use crate::verify::hmac_sha256;

    fn signed(secret: &str, _at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"id":1}"#.to_vec();
        let sig = BASE64.encode(hmac_sha256(secret.as_bytes(), &[&body]));
        (vec![("X-Shopify-Hmac-Sha256".into(), sig)], body)
    }

    #[test]
    fn defaults_read_the_topic_and_webhook_id() {
        let d = Shopify.defaults();
        assert_eq!(d.event_type, [Location::header("X-Shopify-Topic")]);
        assert_eq!(d.dedupe[0], Location::header("X-Shopify-Webhook-Id"));
        assert!(d.forward_headers.contains(&"x-shopify-shop-domain"));
        assert!(!d.signs_time);
    }

    #[test]
    fn the_base64_body_signature_verifies() {
        assert_signature_checks(&Shopify, "s", signed);
        let headers = [("X-Shopify-Hmac-Sha256", "%%")];
        assert_eq!(
            verify(&["s"], &incoming(&headers, b"{}", "", 0), None),
            Err(Rejection::Malformed("X-Shopify-Hmac-Sha256"))
        );
    }
}
