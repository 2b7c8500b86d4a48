//! Standard Webhooks (`standard-webhooks`) and Svix (`svix`): the `v1`
//! HMAC-SHA256 signature of `{id}.{timestamp}.{body}` with a `whsec_`
//! secret, in `webhook-id/-timestamp/-signature` headers; Svix sends the
//! same under `svix-*` names (read first, falling back to `webhook-*`).
//! Config: `{"secret": "whsec_…"}` (any key length, as senders issue them).

use super::{Defaults, Provider, Signed, Verify};
use crate::signing::{EndpointSecret, VerifyError};
use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection};
use serde_json::{Map, Value};

/// `standard-webhooks`: headers `webhook-*`.
#[derive(Debug)]
pub struct StandardWebhooks;

/// `svix`: headers `svix-*`, or `webhook-*`.
#[derive(Debug)]
pub struct Svix;

impl Provider for StandardWebhooks {
    fn kind(&self) -> &'static str {
        "standard-webhooks"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        parse(config, self.kind(), verify_standard)
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::pointer("/type")],
            dedupe: vec![Location::header("webhook-id")],
            forward_headers: &["webhook-original-id"],
            signs_time: true,
        }
    }

    fn generate_secret(&self) -> String {
        EndpointSecret::generate().to_secret_text()
    }
}

impl Provider for Svix {
    fn kind(&self) -> &'static str {
        "svix"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        parse(config, self.kind(), verify_svix)
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![Location::pointer("/type"), Location::pointer("/eventType")],
            dedupe: vec![Location::header("svix-id"), Location::header("webhook-id")],
            forward_headers: &["svix-id", "svix-timestamp", "svix-signature"],
            signs_time: true,
        }
    }

    fn generate_secret(&self) -> String {
        EndpointSecret::generate().to_secret_text()
    }
}

fn parse(
    config: &Map<String, Value>,
    kind: &str,
    check: super::Check,
) -> Result<Box<dyn Verify>, FieldError> {
    let signed = Signed::parse(config, kind, check)?;
    if EndpointSecret::parse_any_length(&signed.secret).is_err() {
        return Err(FieldError::config(
            "secret",
            "must be a whsec_ secret (base64 after the prefix)",
        ));
    }
    Ok(Box::new(signed))
}

/// Checks `webhook-*` headers.
pub fn verify_standard(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    verify_with_prefix(incoming, "webhook", secrets, tolerance_secs)
}

/// Checks `svix-*` headers, each falling back to its `webhook-*` name.
pub fn verify_svix(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    verify_with_prefix(incoming, "svix", secrets, tolerance_secs)
}

fn verify_with_prefix(
    incoming: &Incoming<'_>,
    prefix: &str,
    secrets: &[&str],
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let find = |suffix: &'static str, fallback: &'static str| {
        incoming
            .header(&format!("{prefix}-{suffix}"))
            .or_else(|| incoming.header(fallback))
            .filter(|v| !v.is_empty())
            .ok_or(Rejection::MissingHeader(fallback))
    };
    let id = find("id", "webhook-id")?;
    let timestamp = find("timestamp", "webhook-timestamp")?;
    let signatures = find("signature", "webhook-signature")?;
    let keys: Vec<EndpointSecret> = secrets
        .iter()
        .filter_map(|s| EndpointSecret::parse_any_length(s).ok())
        .collect();
    crate::signing::verify(
        &keys,
        id,
        timestamp,
        signatures,
        incoming.body,
        incoming.now_secs,
        tolerance_secs.unwrap_or(i64::MAX / 4),
    )
    .map_err(|e| match e {
        VerifyError::Stale => Rejection::Stale,
        VerifyError::BadTimestamp => Rejection::Malformed("webhook-timestamp"),
        _ => Rejection::Mismatch,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::testing::{Headers, assert_signature_checks, borrowed, incoming, object};
    use serde_json::json;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn signed_with(prefix: &str, secret: &str, at: i64) -> (Headers, Vec<u8>) {
        let body = br#"{"type":"t","id":"e1"}"#.to_vec();
        let key = EndpointSecret::parse_any_length(secret).expect("whsec secret");
        let headers = vec![
            (format!("{prefix}-id"), "msg_1".to_owned()),
            (format!("{prefix}-timestamp"), at.to_string()),
            (format!("{prefix}-signature"), key.sign("msg_1", at, &body)),
        ];
        (headers, body)
    }

    /// A request signed at `at` under `webhook-*` names.
    pub(crate) fn signed(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        signed_with("webhook", secret, at)
    }

    /// A request signed at `at` under `svix-*` names.
    pub(crate) fn signed_svix(secret: &str, at: i64) -> (Headers, Vec<u8>) {
        signed_with("svix", secret, at)
    }

    fn config(secret: &str) -> Map<String, Value> {
        object(json!({ "secret": secret }))
    }

    #[test]
    fn defaults_read_the_message_id() {
        let d = StandardWebhooks.defaults();
        assert_eq!(d.event_type, [Location::pointer("/type")]);
        assert_eq!(d.dedupe, [Location::header("webhook-id")]);
        assert!(d.signs_time);
        let d = Svix.defaults();
        assert_eq!(
            d.dedupe,
            [Location::header("svix-id"), Location::header("webhook-id")]
        );
        assert!(d.forward_headers.contains(&"svix-signature"));
        assert!(Svix.generate_secret().starts_with("whsec_"));
    }

    #[test]
    fn the_secret_must_be_whsec() {
        let err = StandardWebhooks
            .parse(&config("plain"))
            .expect_err("not whsec");
        assert_eq!(
            err.to_string(),
            "config.secret: must be a whsec_ secret (base64 after the prefix)"
        );
        let err = Svix.parse(&Map::new()).expect_err("missing");
        assert_eq!(err.to_string(), "config.secret: required for svix sources");
    }

    #[test]
    fn signatures_verify_under_either_header_family() {
        assert_signature_checks(&StandardWebhooks, SECRET, signed);
        assert_signature_checks(&Svix, SECRET, signed_svix);
        let now = 1_700_000_000;
        // Svix falls back to `webhook-*`; Standard Webhooks does not read `svix-*`.
        let (headers, body) = signed(SECRET, now);
        let headers = borrowed(&headers);
        assert_eq!(
            verify_svix(&[SECRET], &incoming(&headers, &body, "", now), None),
            Ok(())
        );
        let (headers, body) = signed_svix(SECRET, now);
        let headers = borrowed(&headers);
        assert_eq!(
            verify_standard(&[SECRET], &incoming(&headers, &body, "", now), None),
            Err(Rejection::MissingHeader("webhook-id"))
        );
    }
}
