//! Secrets at rest: values sealed with XChaCha20-Poly1305 under the keys of
//! `SWITCHYARD_ENCRYPTION_KEY` before they reach the database.
//!
//! A sealed value is text, so it fits the columns that held the plain value:
//! `$sy1$<key id>$<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id is the
//! first 4 bytes (8 hex digits) of the key's SHA-256, so a value names the
//! key that opens it without revealing anything of the key. Every value is
//! bound, as associated data, to where it is stored (`endpoints.secret:<id>`),
//! so a sealed secret copied to another row or column does not open.
//!
//! Values without the `$sy1$` prefix are plain: written before a key was
//! configured, or by a node without one. They are read as they are and
//! sealed by the next write or by `switchyard reseal-secrets`. No plain
//! value this project stores starts with `$` (secrets are `whsec_`/`whsk_`
//! or base64, tokens base64url, JSON starts with `{` or `[`).
//!
//! XChaCha20's 192-bit nonce is drawn at random for each value, which is
//! safe for any number of values under one key (RFC draft
//! draft-irtf-cfrg-xchacha, section 2).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

const PREFIX: &str = "$sy1$";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// Why a key list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key {position} is not base64 of 32 bytes (make one with `switchyard generate-encryption-key`)"
    )]
    Malformed { position: usize },
    #[error("key {position} is given twice")]
    Duplicate { position: usize },
}

/// Why a stored value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "sealed with key {key_id}, which SWITCHYARD_ENCRYPTION_KEY does not hold (keys held: {held})"
    )]
    UnknownKey { key_id: String, held: String },
    #[error("does not open with key {key_id}: altered, or moved from another row")]
    Tampered { key_id: String },
    #[error("starts as a sealed value but is malformed")]
    Malformed,
    #[error("opens to bytes that are not UTF-8")]
    NotText,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The encryption keys, the first of which seals; all of them open. Empty
/// when no key is configured: then values are stored plain.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.id))
            .finish()
    }
}

impl Keyring {
    /// No keys: values are stored and read plain.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Parses `SWITCHYARD_ENCRYPTION_KEY`: comma-separated base64 keys of
    /// 32 bytes each (standard or URL-safe alphabet, padding optional),
    /// the current key first and older ones after it, still opening what
    /// they sealed until `switchyard reseal-secrets` re-seals it. Blank
    /// entries are ignored, so an empty text means no key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, part) in text.split(',').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let position = i + 1;
            let bytes = decode_key(part).ok_or(KeyError::Malformed { position })?;
            let id = key_id(&bytes);
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyError::Duplicate { position });
            }
            keys.push(Key {
                id,
                cipher: XChaCha20Poly1305::new(&bytes.into()),
            });
        }
        Ok(Self { keys })
    }

    /// A new random key in the form [`Keyring::parse`] reads.
    pub fn generate_key() -> String {
        let key: [u8; KEY_BYTES] = rand::random();
        B64.encode(key)
    }

    /// Whether values are sealed (a key is configured).
    pub fn seals(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether the key with this id is one of these keys.
    pub fn holds(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// The id of the key that seals, if any.
    pub fn current_key_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// `plain` sealed under the current key and bound to `place` (where it
    /// is stored, such as `endpoints.secret:ep_…`); `plain` itself when
    /// there is no key.
    pub fn seal(&self, place: &str, plain: &str) -> String {
        let Some(key) = self.keys.first() else {
            return plain.to_owned();
        };
        let nonce: [u8; NONCE_BYTES] = rand::random();
        // Encryption fails only past the cipher's length bound (256 GiB),
        // far above any value a row holds.
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: place.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}${}", key.id, B64URL.encode(bytes))
    }

    /// The plain text of a stored value: a sealed value opened with the key
    /// it names (bound to `place`), a plain one as it is.
    pub fn open<'a>(&self, place: &str, stored: &'a str) -> Result<Cow<'a, str>, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Cow::Borrowed(stored));
        };
        let (key_id, body) = rest.split_once('$').ok_or(OpenError::Malformed)?;
        let key =
            self.keys
                .iter()
                .find(|k| k.id == key_id)
                .ok_or_else(|| OpenError::UnknownKey {
                    key_id: key_id.to_owned(),
                    held: self.held(),
                })?;
        let bytes = B64URL.decode(body).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Tampered {
                key_id: key.id.clone(),
            })?;
        String::from_utf8(plain)
            .map(Cow::Owned)
            .map_err(|_| OpenError::NotText)
    }

    /// Whether a stored value is already sealed under the current key (or
    /// plain while there is none): what re-sealing skips.
    pub fn is_current(&self, stored: &str) -> bool {
        match self.current_key_id() {
            None => !is_sealed(stored),
            Some(id) => stored
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split_once('$'))
                .is_some_and(|(key_id, _)| key_id == id),
        }
    }

    fn held(&self) -> String {
        if self.keys.is_empty() {
            return "none".into();
        }
        self.keys
            .iter()
            .map(|k| k.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a stored value is sealed (under any key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

fn decode_key(text: &str) -> Option<[u8; KEY_BYTES]> {
    let text = text.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .or_else(|_| B64URL.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

fn key_id(key: &[u8]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&str]) -> Keyring {
        Keyring::parse(&keys.join(",")).unwrap()
    }

    #[test]
    fn seals_and_opens_bound_to_the_place() {
        let k = Keyring::generate_key();
        let keys = ring(&[&k]);
        let sealed = keys.seal("endpoints.secret:ep_1", "whsec_abc");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(
            keys.open("endpoints.secret:ep_1", &sealed).unwrap(),
            "whsec_abc"
        );
        // Two seals of one value differ (random nonce).
        assert_ne!(sealed, keys.seal("endpoints.secret:ep_1", "whsec_abc"));
        // Moved to another row: refused.
        assert!(matches!(
            keys.open("endpoints.secret:ep_2", &sealed),
            Err(OpenError::Tampered { .. })
        ));
        // One bit changed: refused.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert!(keys.open("endpoints.secret:ep_1", &altered).is_err());
    }

    #[test]
    fn plain_values_pass_through_and_no_key_stores_plain() {
        let none = Keyring::plain();
        assert!(!none.seals());
        assert_eq!(none.seal("p", "whsec_x"), "whsec_x");
        assert_eq!(none.open("p", "whsec_x").unwrap(), "whsec_x");
        let keys = ring(&[&Keyring::generate_key()]);
        assert_eq!(keys.open("p", "{\"a\":1}").unwrap(), "{\"a\":1}");
    }

    #[test]
    fn older_keys_open_and_unknown_keys_say_which() {
        let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
        let sealed_old = ring(&[&old]).seal("p", "v");
        let rotated = ring(&[&new, &old]);
        assert_eq!(rotated.open("p", &sealed_old).unwrap(), "v");
        assert!(!rotated.is_current(&sealed_old));
        assert!(rotated.is_current(&rotated.seal("p", "v")));
        let err = ring(&[&new]).open("p", &sealed_old).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(ring(&[&old]).current_key_id().unwrap()),
            "{text}"
        );
        assert!(matches!(
            Keyring::plain().open("p", &sealed_old),
            Err(OpenError::UnknownKey { .. })
        ));
    }

    #[test]
    fn key_lists_are_checked() {
        assert_eq!(
            Keyring::parse("not a key").unwrap_err(),
            KeyError::Malformed { position: 1 }
        );
        let k = Keyring::generate_key();
        assert_eq!(
            Keyring::parse(&format!("{k},{k}")).unwrap_err(),
            KeyError::Duplicate { position: 2 }
        );
        // 16 bytes is too short.
        assert!(Keyring::parse(&B64.encode([0u8; 16])).is_err());
        assert!(!Keyring::parse(" , ").unwrap().seals());
        // URL-safe alphabet without padding is accepted too.
        let url = B64URL.encode([7u8; 32]);
        assert!(Keyring::parse(&url).unwrap().seals());
    }

    #[test]
    fn malformed_sealed_values_are_errors_not_panics() {
        let keys = ring(&[&Keyring::generate_key()]);
        let id = keys.current_key_id().unwrap().to_owned();
        for bad in [
            "$sy1$".to_string(),
            "$sy1$nodollar".to_string(),
            format!("$sy1${id}$!!!"),
            format!("$sy1${id}$"),
            format!("$sy1${id}$AAAA"),
        ] {
            assert!(keys.open("p", &bad).is_err(), "{bad}");
        }
    }
}
