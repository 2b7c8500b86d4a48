//! What every incoming-webhook verifier shares: the request as received,
//! why one is refused, and the primitives the provider checks in
//! [`crate::providers`] are built from (HMAC over several parts,
//! constant-time comparison, the clock tolerance, hex, the header shapes
//! several providers use). Pure functions: the caller supplies the headers,
//! the raw body, the URL the provider posted to and the clock.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a request was refused; short, safe to show to the sender and to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MissingHeader(&'static str),
    Malformed(&'static str),
    Stale,
    Mismatch,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingHeader(h) => write!(f, "missing {h} header"),
            Self::Malformed(what) => write!(f, "malformed {what}"),
            Self::Stale => f.write_str("timestamp outside the tolerance"),
            Self::Mismatch => f.write_str("no signature matches"),
        }
    }
}

/// What the provider sent.
pub struct Incoming<'a> {
    /// Header names and values as received (names match case-insensitively).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The full public URL the provider posted to (Twilio signs it).
    pub url: &'a str,
    pub now_secs: i64,
}

impl<'a> Incoming<'a> {
    /// A header's value, the name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The credentials of an `Authorization` value (`<scheme> <credentials>`)
/// when its scheme is `scheme`, compared case-insensitively as RFC 9110
/// §11.1 requires (`bearer x`, `BEARER x` and `Bearer x` are the same);
/// `None` for another scheme or a value without credentials. Surrounding
/// whitespace and any run of spaces after the scheme are ignored.
pub fn authorization_credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim().split_once([' ', '\t'])?;
    let credentials = rest.trim();
    (given.eq_ignore_ascii_case(scheme) && !credentials.is_empty()).then_some(credentials)
}

/// A non-empty header, refused as missing under its own name.
pub(crate) fn required_header<'a>(
    incoming: &Incoming<'a>,
    name: &'static str,
) -> Result<&'a str, Rejection> {
    present_header(incoming, name, name)
}

/// A non-empty header; `label` names it in the rejection.
pub(crate) fn present_header<'a>(
    incoming: &Incoming<'a>,
    name: &str,
    label: &'static str,
) -> Result<&'a str, Rejection> {
    incoming
        .header(name)
        .filter(|v| !v.is_empty())
        .ok_or(Rejection::MissingHeader(label))
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Whether the MAC `M` of the concatenated `parts` under `key` is `given`,
/// compared in constant time.
pub(crate) fn mac_matches<M: Mac + hmac::digest::KeyInit>(
    key: &[u8],
    parts: &[&[u8]],
    given: &[u8],
) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(given).is_ok()
}

/// Whether any secret's HMAC-SHA256 over `parts` equals any given signature,
/// compared in constant time.
pub(crate) fn any_sha256(
    secrets: &[&str],
    parts: &[&[u8]],
    given: &[Vec<u8>],
) -> Result<(), Rejection> {
    let matches = secrets.iter().any(|secret| {
        given
            .iter()
            .any(|sig| mac_matches::<Hmac<Sha256>>(secret.as_bytes(), parts, sig))
    });
    if matches {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// Equality in time independent of where the inputs differ (the length is
/// not hidden).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Hex in either case, surrounding whitespace ignored; `None` for anything
/// else.
pub(crate) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.trim()).ok()
}

/// Unix seconds as a provider writes them in a header.
pub(crate) fn parse_secs(text: &str, header: &'static str) -> Result<i64, Rejection> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| Rejection::Malformed(header))
}

/// `Stale` when `signed_secs` is more than `tolerance_secs` before or after
/// `now_secs` (no overflow for any pair of values a header can carry). Too
/// old is a replay; too new is a time the sender could have chosen to stay
/// valid for as long as it likes: the Standard Webhooks reference
/// libraries' rule, applied to every scheme that signs a time.
pub(crate) fn within_tolerance(
    now_secs: i64,
    signed_secs: i64,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    match tolerance_secs {
        Some(tol) if now_secs.abs_diff(signed_secs) > tol.unsigned_abs() => Err(Rejection::Stale),
        _ => Ok(()),
    }
}

/// A header carrying an HMAC-SHA256 of the body alone, which `decode`
/// turns into bytes (GitHub's `sha256=<hex>`, Shopify's base64, Linear's hex).
pub(crate) fn body_signature(
    incoming: &Incoming<'_>,
    header: &'static str,
    decode: fn(&str) -> Option<Vec<u8>>,
    secrets: &[&str],
) -> Result<(), Rejection> {
    let given = required_header(incoming, header)?;
    let sig = decode(given).ok_or(Rejection::Malformed(header))?;
    any_sha256(secrets, &[incoming.body], &[sig])
}

/// A header of `key=value` pairs holding a send time and one or more hex
/// HMAC-SHA256 signatures of `{time}{joiner}{body}`: Stripe's
/// `t=…,v1=…` and Paddle's `ts=…;h1=…`.
pub(crate) struct PairsHeader {
    pub header: &'static str,
    pub separator: char,
    pub timestamp_key: &'static str,
    pub signature_key: &'static str,
    /// Between the time as sent and the body in what is signed.
    pub joiner: char,
}

impl PairsHeader {
    /// Checks the header: any signature under any secret, and the time
    /// within the tolerance. Stripe's own libraries refuse only times that
    /// are too old; a far future one is refused here too, as for every
    /// other scheme.
    pub(crate) fn verify(
        &self,
        incoming: &Incoming<'_>,
        secrets: &[&str],
        tolerance_secs: Option<i64>,
    ) -> Result<(), Rejection> {
        let value = required_header(incoming, self.header)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in value.split(self.separator) {
            match part.trim().split_once('=') {
                Some((k, t)) if k == self.timestamp_key => {
                    timestamp = Some((t, parse_secs(t, self.header)?));
                }
                Some((k, sig)) if k == self.signature_key => signatures.extend(hex_decode(sig)),
                _ => {}
            }
        }
        let Some((raw, t)) = timestamp.filter(|_| !signatures.is_empty()) else {
            return Err(Rejection::Malformed(self.header));
        };
        within_tolerance(incoming.now_secs, t, tolerance_secs)?;
        let prefix = format!("{raw}{}", self.joiner);
        any_sha256(secrets, &[prefix.as_bytes(), incoming.body], &signatures)
    }
}

/// The `v0` scheme Slack introduced and Zoom copied: a timestamp header and
/// `v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">`.
pub(crate) fn v0_signature(
    incoming: &Incoming<'_>,
    timestamp_header: &'static str,
    signature_header: &'static str,
    secrets: &[&str],
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let timestamp = required_header(incoming, timestamp_header)?;
    let t = parse_secs(timestamp, timestamp_header)?;
    within_tolerance(incoming.now_secs, t, tolerance_secs)?;
    let given = required_header(incoming, signature_header)?;
    let sig = given
        .strip_prefix("v0=")
        .and_then(hex_decode)
        .ok_or(Rejection::Malformed(signature_header))?;
    let prefix = format!("v0:{}:", timestamp.trim());
    any_sha256(secrets, &[prefix.as_bytes(), incoming.body], &[sig])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_odd_input() {
        assert_eq!(
            hex_decode(&hex::encode([0, 255, 16])),
            Some(vec![0, 255, 16])
        );
        assert_eq!(hex_decode(" 00FF "), Some(vec![0, 255]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn the_authorization_scheme_matches_in_any_case() {
        for value in ["Bearer tok", "bearer tok", "BEARER  tok ", " bEaReR\ttok"] {
            assert_eq!(
                authorization_credentials(value, "Bearer"),
                Some("tok"),
                "{value:?}"
            );
        }
        for value in ["Basic tok", "Bearertok", "Bearer", "Bearer   ", "tok", ""] {
            assert_eq!(
                authorization_credentials(value, "Bearer"),
                None,
                "{value:?}"
            );
        }
    }

    #[test]
    fn tolerance_is_symmetric_and_optional() {
        assert_eq!(within_tolerance(1000, 700, Some(300)), Ok(()));
        assert_eq!(
            within_tolerance(1000, 1301, Some(300)),
            Err(Rejection::Stale)
        );
        assert_eq!(
            within_tolerance(i64::MIN, i64::MAX, Some(300)),
            Err(Rejection::Stale)
        );
        assert_eq!(within_tolerance(0, i64::MAX, None), Ok(()));
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
