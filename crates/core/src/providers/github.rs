//! GitHub (`github`): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
//! body>` under the webhook's secret. No send time is signed. Config:
//! `{"secret": "…"}`.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection, body_signature, hex_decode};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Github;

impl Provider for Github {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::header("X-GitHub-Event")],
            dedupe: vec![Location::header("X-GitHub-Delivery")],
            forward_headers: &[
                "x-github-event",
                "x-github-delivery",
                "x-github-hook-id",
                "x-github-hook-installation-target-id",
                "x-github-hook-installation-target-type",
                "x-hub-signature-256",
            ],
            signs_time: false,
        }
    }
}

/// Checks `X-Hub-Signature-256`.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    _tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let decode = |value: &str| value.strip_prefix("sha256=").and_then(hex_decode);
    body_signature(incoming, "X-Hub-Signature-256", decode, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, hex_mac, incoming};

    fn signed(secret: &str, _at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"zen":"x"}"#.to_vec();
        let sig = format!("sha256={}", hex_mac(secret, &[&body]));
        (vec![("x-hub-signature-256".into(), sig)], body)
    }

    #[test]
    fn defaults_read_the_delivery_headers() {
        let d = Github.defaults();
        assert_eq!(d.event_type, [Location::header("X-GitHub-Event")]);
        assert_eq!(d.dedupe, [Location::header("X-GitHub-Delivery")]);
        assert!(d.forward_headers.contains(&"x-hub-signature-256"));
        assert!(!d.signs_time);
    }

    #[test]
    fn the_body_signature_verifies() {
        assert_signature_checks(&Github, "s", signed);
        let (headers, body) = signed("s", 0);
        let unprefixed = [("X-Hub-Signature-256", &headers[0].1[7..])];
        assert_eq!(
            verify(&["s"], &incoming(&unprefixed, &body, "", 0), None),
            Err(Rejection::Malformed("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn a_missing_header_is_named() {
        let headers = [("content-type", "application/json")];
        assert_eq!(
            verify(&["s"], &incoming(&headers, b"{}", "https://x/", 0), None),
            Err(Rejection::MissingHeader("X-Hub-Signature-256"))
        );
    }
}
