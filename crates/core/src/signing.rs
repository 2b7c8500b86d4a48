//! Standard Webhooks signatures (`v1`, HMAC-SHA256 over `id.timestamp.body`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 75;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret must be base64 (optionally prefixed with 'whsec_')")]
    NotBase64,
    #[error("secret must decode to between 24 and 75 bytes")]
    BadLength,
}

/// An endpoint's symmetric signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecret(..)")
    }
}

/// Stored and shown as its `whsec_` form.
impl serde::Serialize for EndpointSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_whsec())
    }
}

/// Reads the `whsec_` form (or bare base64) of any non-empty key, as stored.
impl<'de> serde::Deserialize<'de> for EndpointSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_any_length(&text).map_err(serde::de::Error::custom)
    }
}

impl EndpointSecret {
    pub fn generate() -> Self {
        let key: [u8; MIN_KEY_BYTES] = rand::random();
        Self { key: key.to_vec() }
    }

    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let key = B64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(Self { key })
    }

    /// Lenient parse used by verifiers, where the sender picked the key length.
    pub fn parse_any_length(s: &str) -> Result<Self, SecretError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let key = B64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if key.is_empty() {
            return Err(SecretError::BadLength);
        }
        Ok(Self { key })
    }

    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.key))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(&self.key).expect("hmac accepts any key length")
    }

    /// The `v1,<base64>` signature of one delivery.
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }

    fn verify_one(&self, msg_id: &str, timestamp: &str, body: &[u8], sig_b64: &str) -> bool {
        let Ok(expected) = B64.decode(sig_b64) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(&expected).is_ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed timestamp")]
    BadTimestamp,
    #[error("timestamp outside the tolerance window")]
    Stale,
    #[error("no signature matched")]
    NoMatch,
}

/// The Standard Webhooks headers of a delivery, `(id, timestamp, signature)`:
/// `webhook-id`, `webhook-timestamp` and `webhook-signature`, or the `svix-`
/// family that svix-server sends by default (the same scheme under other
/// names). One family is taken whole, never a mix. `get` reads a header by
/// its lower-case name.
pub fn signature_headers<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Option<(&'a str, &'a str, &'a str)> {
    ["webhook", "svix"].into_iter().find_map(|family| {
        Some((
            get(&format!("{family}-id"))?,
            get(&format!("{family}-timestamp"))?,
            get(&format!("{family}-signature"))?,
        ))
    })
}

/// Verifies a Standard Webhooks signature header (space-separated `v1,<sig>` entries)
/// against any of `secrets`. The timestamp (Unix seconds) must lie within
/// `tolerance_secs` of `now_secs` in either direction, as the Standard
/// Webhooks reference libraries require, or the result is `Stale`.
pub fn verify(
    secrets: &[EndpointSecret],
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    // abs_diff: a timestamp of i64::MIN must be refused, not overflow.
    if now_secs.abs_diff(ts) > tolerance_secs.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    let matched = signature_header
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .any(|(_, sig)| {
            secrets
                .iter()
                .any(|s| s.verify_one(msg_id, timestamp, body, sig))
        });
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The official Standard Webhooks vector.
    #[test]
    fn signs_official_vector() {
        let secret = EndpointSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rejects_bad_secrets() {
        assert_eq!(
            EndpointSecret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            EndpointSecret::parse("whsec_YWJj"),
            Err(SecretError::BadLength)
        );
        let generated = EndpointSecret::generate();
        assert_eq!(EndpointSecret::parse(&generated.to_whsec()), Ok(generated));
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(body in proptest::collection::vec(any::<u8>(), 0..512),
                                        ts in 0i64..4_000_000_000, id in "msg_[a-zA-Z0-9]{1,30}") {
            let secret = EndpointSecret::generate();
            let other = EndpointSecret::generate();
            let header = format!("{} {}", other.sign(&id, ts, &body), secret.sign(&id, ts, &body));
            prop_assert!(verify(std::slice::from_ref(&secret), &id, &ts.to_string(), &header, &body, ts, 300).is_ok());
            let mut tampered = body.clone();
            tampered.push(b'x');
            prop_assert_eq!(verify(&[secret], &id, &ts.to_string(), &header, &tampered, ts, 300), Err(VerifyError::NoMatch));
        }
    }
}
