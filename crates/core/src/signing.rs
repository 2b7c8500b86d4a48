//! Standard Webhooks signatures of `{id}.{timestamp}.{body}`: `v1`,
//! HMAC-SHA256 with a `whsec_` secret, and `v1a`, ed25519 with a `whsk_`
//! signing key whose `whpk_` public key verifies (the Standard Webhooks
//! specification, "Signature scheme"; key encodings as Svix issues them:
//! `whsk_` is base64 of the 32-byte seed followed by the 32-byte public key,
//! `whpk_` base64 of the public key).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";
const SIGNING_KEY_PREFIX: &str = "whsk_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 75;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret must be base64 (optionally prefixed with 'whsec_'), or a 'whsk_' ed25519 signing key"
    )]
    NotBase64,
    #[error("secret must decode to between 24 and 75 bytes")]
    BadLength,
    #[error("a 'whsk_' key must be base64 of 64 bytes: the ed25519 seed, then its public key")]
    BadSigningKey,
    #[error("a 'whpk_' key must be base64 of a 32-byte ed25519 public key")]
    BadPublicKey,
    #[error("a 'whpk_' public key only verifies; an endpoint needs a secret that signs")]
    CannotSign,
}

/// Which Standard Webhooks scheme a secret belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    /// `v1`: HMAC-SHA256, `whsec_` secrets.
    #[default]
    Hmac,
    /// `v1a`: ed25519, `whsk_` signing keys and `whpk_` public keys.
    Ed25519,
}

#[derive(Clone)]
enum Key {
    Hmac(Vec<u8>),
    Signing(Box<SigningKey>),
    /// Verifies only: what a receiver (or an ingest source) holds.
    Public(VerifyingKey),
}

/// An endpoint's signing secret: an HMAC key (`whsec_`) or an ed25519 key
/// pair (`whsk_`); for verifying only, also an ed25519 public key (`whpk_`).
#[derive(Clone)]
pub struct EndpointSecret {
    key: Key,
}

impl PartialEq for EndpointSecret {
    fn eq(&self, other: &Self) -> bool {
        match (&self.key, &other.key) {
            (Key::Hmac(a), Key::Hmac(b)) => a == b,
            (Key::Signing(a), Key::Signing(b)) => a.to_bytes() == b.to_bytes(),
            (Key::Public(a), Key::Public(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for EndpointSecret {}

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecret(..)")
    }
}

/// Stored as its full form ([`EndpointSecret::to_secret_text`]).
impl serde::Serialize for EndpointSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_secret_text())
    }
}

/// Reads any form [`EndpointSecret::parse_any_length`] reads, as stored.
impl<'de> serde::Deserialize<'de> for EndpointSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_any_length(&text).map_err(serde::de::Error::custom)
    }
}

impl EndpointSecret {
    /// A new random secret of `scheme`: 24 bytes of HMAC key, or an ed25519
    /// key pair.
    pub fn generate_for(scheme: SignatureScheme) -> Self {
        match scheme {
            SignatureScheme::Hmac => Self::generate(),
            SignatureScheme::Ed25519 => {
                let seed: [u8; 32] = rand::random();
                Self {
                    key: Key::Signing(Box::new(SigningKey::from_bytes(&seed))),
                }
            }
        }
    }

    /// A new random HMAC secret.
    pub fn generate() -> Self {
        let key: [u8; MIN_KEY_BYTES] = rand::random();
        Self {
            key: Key::Hmac(key.to_vec()),
        }
    }

    /// An endpoint's secret as a client gives it: `whsec_` (or bare base64)
    /// of 24 to 75 bytes, or a `whsk_` signing key. A `whpk_` public key is
    /// refused: it cannot sign.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        if s.starts_with(PUBLIC_KEY_PREFIX) {
            return Err(SecretError::CannotSign);
        }
        let secret = Self::parse_any_length(s)?;
        if let Key::Hmac(key) = &secret.key
            && !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len())
        {
            return Err(SecretError::BadLength);
        }
        Ok(secret)
    }

    /// Lenient parse used by verifiers, where the sender picked the key
    /// length: any non-empty HMAC key, a `whsk_` signing key or a `whpk_`
    /// public key.
    pub fn parse_any_length(s: &str) -> Result<Self, SecretError> {
        if let Some(encoded) = s.strip_prefix(SIGNING_KEY_PREFIX) {
            let bytes = B64
                .decode(encoded)
                .map_err(|_| SecretError::BadSigningKey)?;
            let pair: [u8; 64] = bytes.try_into().map_err(|_| SecretError::BadSigningKey)?;
            // The public half must be the seed's, or verifiers given the
            // public key would reject every signature.
            let key =
                SigningKey::from_keypair_bytes(&pair).map_err(|_| SecretError::BadSigningKey)?;
            return Ok(Self {
                key: Key::Signing(Box::new(key)),
            });
        }
        if let Some(encoded) = s.strip_prefix(PUBLIC_KEY_PREFIX) {
            let bytes = B64.decode(encoded).map_err(|_| SecretError::BadPublicKey)?;
            let public: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadPublicKey)?;
            let key = VerifyingKey::from_bytes(&public).map_err(|_| SecretError::BadPublicKey)?;
            return Ok(Self {
                key: Key::Public(key),
            });
        }
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let key = B64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if key.is_empty() {
            return Err(SecretError::BadLength);
        }
        Ok(Self {
            key: Key::Hmac(key),
        })
    }

    /// Which scheme this secret signs or verifies with.
    pub fn scheme(&self) -> SignatureScheme {
        match self.key {
            Key::Hmac(_) => SignatureScheme::Hmac,
            Key::Signing(_) | Key::Public(_) => SignatureScheme::Ed25519,
        }
    }

    /// The full secret, as stored: `whsec_…`, `whsk_…` or `whpk_…`.
    pub fn to_secret_text(&self) -> String {
        match &self.key {
            Key::Hmac(key) => format!("{SECRET_PREFIX}{}", B64.encode(key)),
            Key::Signing(key) => {
                format!("{SIGNING_KEY_PREFIX}{}", B64.encode(key.to_keypair_bytes()))
            }
            Key::Public(key) => format!("{PUBLIC_KEY_PREFIX}{}", B64.encode(key.as_bytes())),
        }
    }

    /// What a receiver needs to verify, as the API shows it (as Svix does):
    /// the `whsec_` secret itself for HMAC, only the `whpk_` public key for
    /// ed25519, whose signing key never leaves Switchyard.
    pub fn to_verifier_text(&self) -> String {
        match &self.key {
            Key::Hmac(_) | Key::Public(_) => self.to_secret_text(),
            Key::Signing(key) => format!(
                "{PUBLIC_KEY_PREFIX}{}",
                B64.encode(key.verifying_key().as_bytes())
            ),
        }
    }

    fn mac(key: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(key).expect("hmac accepts any key length")
    }

    /// The signature entry of one delivery: `v1,<base64>` or `v1a,<base64>`.
    /// A public key cannot sign and gives an empty string.
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        match &self.key {
            Key::Hmac(key) => {
                let mut mac = Self::mac(key);
                mac.update(msg_id.as_bytes());
                mac.update(b".");
                mac.update(timestamp_secs.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
            }
            Key::Signing(key) => {
                let content = signed_content(msg_id, &timestamp_secs.to_string(), body);
                format!("v1a,{}", B64.encode(key.sign(&content).to_bytes()))
            }
            Key::Public(_) => String::new(),
        }
    }

    /// Whether one `version,signature` entry of a header is this secret's.
    fn verify_one(
        &self,
        version: &str,
        msg_id: &str,
        timestamp: &str,
        body: &[u8],
        sig_b64: &str,
    ) -> bool {
        let Ok(sig) = B64.decode(sig_b64) else {
            return false;
        };
        match (&self.key, version) {
            (Key::Hmac(key), "v1") => {
                let mut mac = Self::mac(key);
                mac.update(msg_id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.as_bytes());
                mac.update(b".");
                mac.update(body);
                // verify_slice compares in constant time.
                mac.verify_slice(&sig).is_ok()
            }
            (Key::Signing(_) | Key::Public(_), "v1a") => {
                let public = match &self.key {
                    Key::Signing(key) => key.verifying_key(),
                    Key::Public(key) => *key,
                    Key::Hmac(_) => return false,
                };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
                    return false;
                };
                public
                    .verify(&signed_content(msg_id, timestamp, body), &sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// `{id}.{timestamp}.{body}`, what both schemes sign.
fn signed_content(msg_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
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

/// Verifies a Standard Webhooks signature header (space-separated
/// `v1,<sig>` and `v1a,<sig>` entries) against any of `secrets`, each
/// checking the entries of its own scheme. The timestamp (Unix seconds) must lie within
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
        .any(|(version, sig)| {
            secrets
                .iter()
                .any(|s| s.verify_one(version, msg_id, timestamp, body, sig))
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

    const SIGNING_KEY: &str = "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==";
    const PUBLIC_KEY: &str = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=";

    #[test]
    fn ed25519_keys_sign_v1a_and_show_only_their_public_half() {
        let key = EndpointSecret::parse(SIGNING_KEY).unwrap();
        assert_eq!(key.scheme(), SignatureScheme::Ed25519);
        assert_eq!(key.to_secret_text(), SIGNING_KEY);
        assert_eq!(key.to_verifier_text(), PUBLIC_KEY);
        let body = br#"{"test": 2432232314}"#;
        let sig = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(
            sig,
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
        );
        let public = EndpointSecret::parse_any_length(PUBLIC_KEY).unwrap();
        let hmac = EndpointSecret::generate();
        let header = format!(
            "{} {sig}",
            hmac.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body)
        );
        for verifier in [&public, &key, &hmac] {
            assert_eq!(
                verify(
                    std::slice::from_ref(verifier),
                    "msg_p5jXN8AQM9LWM0D4loKWxJek",
                    "1614265330",
                    &header,
                    body,
                    1_614_265_330,
                    300
                ),
                Ok(()),
            );
        }
        // A v1a entry never matches an HMAC secret, nor a v1 entry a key pair.
        assert_eq!(
            verify(
                &[hmac],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &sig,
                body,
                1_614_265_330,
                300
            ),
            Err(VerifyError::NoMatch)
        );
        let v1_only = header.split(' ').next().unwrap().to_owned();
        assert_eq!(
            verify(
                std::slice::from_ref(&public),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &v1_only,
                body,
                1_614_265_330,
                300
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(
                &[public],
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &sig,
                b"{}",
                1_614_265_330,
                300
            ),
            Err(VerifyError::NoMatch)
        );
        let fresh = EndpointSecret::generate_for(SignatureScheme::Ed25519);
        assert_eq!(
            EndpointSecret::parse(&fresh.to_secret_text()),
            Ok(fresh.clone())
        );
        assert!(fresh.sign("msg_1", 1, b"x").starts_with("v1a,"));
    }

    #[test]
    fn bad_ed25519_keys_are_refused() {
        assert_eq!(
            EndpointSecret::parse(PUBLIC_KEY),
            Err(SecretError::CannotSign)
        );
        assert_eq!(
            EndpointSecret::parse("whsk_AAAA"),
            Err(SecretError::BadSigningKey)
        );
        assert_eq!(
            EndpointSecret::parse("whsk_!!"),
            Err(SecretError::BadSigningKey)
        );
        // The public half does not belong to the seed.
        let mut pair = B64.decode(&SIGNING_KEY[5..]).unwrap();
        pair[40] ^= 1;
        let mismatched = format!("whsk_{}", B64.encode(&pair));
        assert_eq!(
            EndpointSecret::parse(&mismatched),
            Err(SecretError::BadSigningKey)
        );
        assert_eq!(
            EndpointSecret::parse_any_length("whpk_AAAA"),
            Err(SecretError::BadPublicKey)
        );
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
        assert_eq!(
            EndpointSecret::parse(&generated.to_secret_text()),
            Ok(generated)
        );
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
