//! The incoming-webhook providers Switchyard verifies, one file each. A
//! provider owns its source `type` name, the config it reads (typed, with
//! the same accepted and refused inputs as the API documents), its defaults
//! (where the event type and delivery id are read, which headers are passed
//! on, whether it signs a send time), which config field holds the secret a
//! rotation replaces, its verification handshake if it has one, and its
//! signature check.
//!
//! [`PROVIDERS`] is the one list they are looked up in: adding a provider is
//! its file, a `mod` line and one entry there. What all sources share
//! (settings, the compiled [`crate::source::Plan`]) is in
//! [`crate::source`]; the primitives every check uses (HMAC, constant-time
//! comparison, clock tolerance, hex) are in [`crate::verify`].

pub mod api_key;
pub mod basic_auth;
pub mod generic_hmac;
pub mod github;
pub mod linear;
pub mod none;
pub mod paddle;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
pub mod twilio;
pub mod zoom;

use crate::source::{FieldError, Location};
use crate::verify::{Incoming, Rejection};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Every provider, in the order the API lists them (and names them in the
/// error for an unknown type).
pub static PROVIDERS: &[&dyn Provider] = &[
    &standard_webhooks::StandardWebhooks,
    &standard_webhooks::Svix,
    &stripe::Stripe,
    &github::Github,
    &shopify::Shopify,
    &slack::Slack,
    &twilio::Twilio,
    &paddle::Paddle,
    &linear::Linear,
    &zoom::Zoom,
    &generic_hmac::GenericWebhook,
    &basic_auth::BasicAuth,
    &api_key::ApiKey,
    &none::Unverified,
];

/// The provider whose source `type` is `kind`.
pub fn find(kind: &str) -> Option<&'static dyn Provider> {
    PROVIDERS.iter().copied().find(|p| p.kind() == kind)
}

/// Every source `type`, in [`PROVIDERS`] order.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().map(|p| p.kind())
}

/// One incoming-webhook provider (see the module doc).
pub trait Provider: Sync + std::fmt::Debug {
    /// The source `type` in the API (`stripe`, `basic-auth`, ...).
    fn kind(&self) -> &'static str;

    /// Reads the provider's config object.
    ///
    /// # Errors
    /// A [`FieldError`] naming the config key (`config.secret`) and what is
    /// wrong with it. Keys the provider does not read are ignored.
    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError>;

    /// Where the event type and delivery id are read when the source's
    /// settings do not say, and which headers are passed on.
    fn defaults(&self) -> Defaults {
        Defaults::plain()
    }

    /// The config key holding the secret that a rotation replaces (and that
    /// the API never shows); `None` when the provider has no secret.
    fn secret_field(&self) -> Option<&'static str> {
        Some("secret")
    }

    /// A secret for a rotation that does not bring its own: 32 random bytes
    /// in hex, unless the provider needs another form.
    fn generate_secret(&self) -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// The answer to a verification handshake the provider makes when a URL
    /// is configured (answered instead of stored), given the request's body
    /// as a document and the current secret; `None` for any other request.
    fn challenge(&self, _document: &Value, _secret: Option<&str>) -> Option<Value> {
        None
    }
}

/// A provider's config, read: checks requests with a list of secrets (the
/// current one and those retired but still in their grace period).
pub trait Verify: Send + Sync + std::fmt::Debug {
    /// The secret the config holds now.
    fn secret(&self) -> Option<&str>;

    /// Checks `request` against any of `secrets`. Where the scheme signs a
    /// send time, it must lie within `tolerance_secs` of the request's clock
    /// in either direction (`None`: no clock check).
    ///
    /// # Errors
    /// Why the request is refused.
    fn verify(
        &self,
        secrets: &[&str],
        request: &Incoming<'_>,
        tolerance_secs: Option<i64>,
    ) -> Result<(), Rejection>;

    /// A header the config names as carrying the signature, passed on to
    /// destinations like a provider's own signature header.
    fn signature_header(&self) -> Option<&str> {
        None
    }
}

/// What a source of a provider does when its settings do not say otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Where the event type is read; the first location with a value wins.
    pub event_type: Vec<Location>,
    /// Where the provider's delivery id is read, to drop its retries.
    pub dedupe: Vec<Location>,
    /// Lower-case header names passed on besides `content-type` and
    /// `user-agent`.
    pub forward_headers: &'static [&'static str],
    /// Whether the scheme signs a send time, which then gets the default
    /// clock tolerance.
    pub signs_time: bool,
}

impl Defaults {
    /// For requests without a provider's conventions: the event type at
    /// `/type`, the delivery id in `Idempotency-Key`, no clock.
    pub fn plain() -> Self {
        Defaults {
            event_type: vec![Location::pointer("/type")],
            dedupe: vec![Location::header("Idempotency-Key")],
            forward_headers: &[],
            signs_time: false,
        }
    }
}

/// A config value meant to be a non-empty string, as given. Reading it
/// never fails, so that each provider checks its keys in its own order and
/// reports the first problem the way the API documents it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Text {
    /// Absent, or `null`.
    #[default]
    Absent,
    Given(String),
    /// Anything but a non-empty string.
    Invalid,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Text::Absent,
            Value::String(s) if !s.is_empty() => Text::Given(s),
            _ => Text::Invalid,
        })
    }
}

impl Text {
    /// The string, if one is given.
    ///
    /// # Errors
    /// `config.<key>: must be a non-empty string` for any other value.
    pub fn optional(&self, key: &str) -> Result<Option<&str>, FieldError> {
        match self {
            Text::Absent => Ok(None),
            Text::Given(s) => Ok(Some(s)),
            Text::Invalid => Err(FieldError::config(key, "must be a non-empty string")),
        }
    }

    /// The string, which must be given; `why` follows `required` in the
    /// error (e.g. ` for stripe sources`).
    ///
    /// # Errors
    /// As [`Text::optional`], and `config.<key>: required<why>` when absent.
    pub fn required(&self, key: &str, why: &str) -> Result<String, FieldError> {
        self.optional(key)?
            .map(str::to_owned)
            .ok_or_else(|| FieldError::config(key, format!("required{why}")))
    }
}

/// Reads a provider's config struct, whose fields are all [`Text`] (so
/// reading cannot fail on a value; an error here would be a config struct
/// with another field type).
/// Whether `name` can name a header a config reads (`X-Signature`): letters,
/// digits, `-` and `_`, at least one. Narrower than RFC 9110's token on
/// purpose: every provider's header fits, and a typo (a space, a newline)
/// is refused when the source is saved instead of failing every request.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn read_config<'a, T: Deserialize<'a>>(
    config: &'a Map<String, Value>,
) -> Result<T, FieldError> {
    T::deserialize(config).map_err(|e| FieldError::at(&["config"], e.to_string()))
}

/// The config of a provider whose only setting is its signing secret:
/// `{"secret": "…"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SecretConfig {
    pub secret: Text,
}

/// A signature check of a provider configured by its secret alone.
pub type Check = fn(&[&str], &Incoming<'_>, Option<i64>) -> Result<(), Rejection>;

/// A provider configured by its secret alone, read: the secret and the
/// provider's check.
#[derive(Debug)]
pub struct Signed {
    pub secret: String,
    check: Check,
}

impl Signed {
    /// Reads `{"secret": "…"}` for a provider of type `kind`, checked by `check`.
    ///
    /// # Errors
    /// `config.secret` when it is missing or not a non-empty string.
    pub fn parse(
        config: &Map<String, Value>,
        kind: &str,
        check: Check,
    ) -> Result<Self, FieldError> {
        let config: SecretConfig = read_config(config)?;
        let secret = config
            .secret
            .required("secret", &format!(" for {kind} sources"))?;
        Ok(Signed { secret, check })
    }
}

impl Verify for Signed {
    fn secret(&self) -> Option<&str> {
        Some(&self.secret)
    }

    fn verify(
        &self,
        secrets: &[&str],
        request: &Incoming<'_>,
        tolerance_secs: Option<i64>,
    ) -> Result<(), Rejection> {
        (self.check)(secrets, request, tolerance_secs)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building requests for the providers' tests.

    use crate::verify::Incoming;

    /// Header pairs as owned strings, for signers that compute values.
    pub type Headers = Vec<(String, String)>;

    /// A request of `headers` and `body`, posted to `url` at `now_secs`.
    pub fn incoming<'a>(
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
        url: &'a str,
        now_secs: i64,
    ) -> Incoming<'a> {
        Incoming {
            headers,
            body,
            url,
            now_secs,
        }
    }

    /// Borrowed views of owned header pairs.
    pub fn borrowed(headers: &Headers) -> Vec<(&str, &str)> {
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// A JSON object value as a config map (empty for anything else).
    pub fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }

    /// Signs a request of one provider with a secret at a time (unix
    /// seconds): its headers and body.
    pub type Signer = fn(&str, i64) -> (Headers, Vec<u8>);

    /// `provider`, configured with `{"secret": secret}`, accepts what `sign`
    /// signed with that secret (also when other secrets are accepted too)
    /// and refuses it when only another secret is.
    pub fn assert_signature_checks(provider: &dyn super::Provider, secret: &str, sign: Signer) {
        let kind = provider.kind();
        let now = 1_700_000_000;
        let config = object(serde_json::json!({ "secret": secret }));
        let verifier = provider.parse(&config).expect("config");
        assert_eq!(verifier.secret(), Some(secret), "{kind}");
        let (headers, body) = sign(secret, now);
        let headers = borrowed(&headers);
        let request = incoming(&headers, &body, "", now);
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            verifier.verify(&[other, secret], &request, Some(300)),
            Ok(()),
            "{kind}"
        );
        assert_eq!(
            verifier.verify(&[other], &request, Some(300)),
            Err(crate::verify::Rejection::Mismatch),
            "{kind}"
        );
    }

    /// Lower-case hex HMAC-SHA256 of `parts` under `secret`.
    pub fn hex_mac(secret: &str, parts: &[&[u8]]) -> String {
        hex::encode(crate::verify::hmac_sha256(secret.as_bytes(), parts))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Signer, borrowed, incoming, object};
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn the_registry_lists_each_kind_once_in_api_order() {
        let kinds: Vec<&str> = kinds().collect();
        assert_eq!(
            kinds,
            [
                "standard-webhooks",
                "svix",
                "stripe",
                "github",
                "shopify",
                "slack",
                "twilio",
                "paddle",
                "linear",
                "zoom",
                "generic-webhook",
                "basic-auth",
                "api-key",
                "none",
            ]
        );
        for kind in &kinds {
            assert_eq!(find(kind).map(|p| p.kind()), Some(*kind));
        }
        assert!(find("nope").is_none());
    }

    /// Every provider that signs a send time refuses one beyond the
    /// tolerance in either direction, far future included, and accepts one
    /// inside it; the others have no clock to check.
    #[test]
    fn signed_timestamps_are_bounded_both_ways() {
        let signers: [(&str, Signer); 7] = [
            ("standard-webhooks", standard_webhooks::tests::signed),
            ("svix", standard_webhooks::tests::signed_svix),
            ("stripe", stripe::tests::signed),
            ("slack", slack::tests::signed),
            ("zoom", zoom::tests::signed),
            ("paddle", paddle::tests::signed),
            ("linear", linear::tests::signed),
        ];
        let now = 1_700_000_000;
        for provider in PROVIDERS {
            let signer = signers.iter().find(|(k, _)| *k == provider.kind());
            assert_eq!(
                provider.defaults().signs_time,
                signer.is_some(),
                "{}",
                provider.kind()
            );
            let Some((kind, sign)) = signer else {
                continue;
            };
            let verifier = provider
                .parse(&object(json!({ "secret": SECRET })))
                .expect("config");
            let check = |at: i64, tolerance: Option<i64>| {
                let (headers, body) = sign(SECRET, at);
                let headers = borrowed(&headers);
                verifier.verify(&[SECRET], &incoming(&headers, &body, "", now), tolerance)
            };
            for at in [now, now - 300, now + 300] {
                assert_eq!(check(at, Some(300)), Ok(()), "{kind} at {at}");
            }
            for at in [now + 301, now + 3_600, now + 10 * 365 * 86_400, now - 301] {
                assert_eq!(
                    check(at, Some(300)),
                    Err(Rejection::Stale),
                    "{kind} at {at}"
                );
            }
            assert_eq!(check(now + 3_600, None), Ok(()), "{kind} unchecked");
            // Extreme values are refused, never an arithmetic overflow.
            for at in [i64::MAX, i64::MIN, i64::MIN / 1000] {
                assert!(check(at, Some(300)).is_err(), "{kind} at {at}");
            }
        }
    }

    #[test]
    fn config_text_is_read_leniently_and_checked_in_order() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Two {
            a: Text,
            b: Text,
        }
        let two: Two =
            read_config(&object(json!({"a": 5, "b": null, "other": [1]}))).expect("read");
        assert_eq!(
            (two.a.clone(), two.b.clone()),
            (Text::Invalid, Text::Absent)
        );
        assert_eq!(
            two.b.required("b", " here").map_err(|e| e.to_string()),
            Err("config.b: required here".to_owned())
        );
        assert_eq!(
            two.a.optional("a").map_err(|e| e.to_string()),
            Err("config.a: must be a non-empty string".to_owned())
        );
        let given: Two = read_config(&object(json!({"a": "x", "b": ""}))).expect("read");
        assert_eq!(given.a.optional("a"), Ok(Some("x")));
        assert_eq!(given.b, Text::Invalid, "an empty string is no value");
    }
}
