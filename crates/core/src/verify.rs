//! Signature checks for webhooks that third-party providers send to
//! Switchyard (the incoming side). Each scheme is the provider's published
//! algorithm; every check accepts a list of secrets, so a rotation can keep
//! the old one valid for a while. Pure functions: the caller supplies the
//! headers, the raw body, the URL the provider posted to and the clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

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

/// The provider schemes with a signature over the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `webhook-id/-timestamp/-signature` (Standard Webhooks).
    StandardWebhooks,
    /// The same, under `svix-*` header names (falling back to `webhook-*`).
    Svix,
    Stripe,
    Github,
    Shopify,
    Slack,
    Twilio,
    Paddle,
    Linear,
    Zoom,
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

/// Checks `incoming` against any of `secrets`. Where the scheme signs a
/// timestamp (Standard Webhooks, Svix, Stripe, Slack, Zoom, Paddle, Linear),
/// it must lie within `tolerance_secs` of `now_secs` in either direction: too
/// old is a replay, too new is a timestamp the sender could have chosen to
/// stay valid for as long as it likes. This is the Standard Webhooks
/// reference libraries' rule (five minutes each way); `None` turns the clock
/// check off.
pub fn verify(
    scheme: Scheme,
    secrets: &[&str],
    incoming: &Incoming<'_>,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    match scheme {
        Scheme::StandardWebhooks => standard(incoming, "webhook", secrets, tolerance_secs),
        Scheme::Svix => standard(incoming, "svix", secrets, tolerance_secs),
        Scheme::Stripe => stripe(incoming, secrets, tolerance_secs),
        Scheme::Github => {
            let given = required(incoming, "X-Hub-Signature-256")?;
            let hex_sig = given
                .strip_prefix("sha256=")
                .ok_or(Rejection::Malformed("X-Hub-Signature-256"))?;
            let sig = hex_decode(hex_sig).ok_or(Rejection::Malformed("X-Hub-Signature-256"))?;
            any_sha256(secrets, &[incoming.body], &[sig])
        }
        Scheme::Shopify => {
            let given = required(incoming, "X-Shopify-Hmac-Sha256")?;
            let sig = BASE64
                .decode(given.trim())
                .map_err(|_| Rejection::Malformed("X-Shopify-Hmac-Sha256"))?;
            any_sha256(secrets, &[incoming.body], &[sig])
        }
        Scheme::Slack => v0(
            incoming,
            "X-Slack-Request-Timestamp",
            "X-Slack-Signature",
            secrets,
            tolerance_secs,
        ),
        Scheme::Zoom => v0(
            incoming,
            "x-zm-request-timestamp",
            "x-zm-signature",
            secrets,
            tolerance_secs,
        ),
        Scheme::Twilio => twilio(incoming, secrets),
        Scheme::Paddle => paddle(incoming, secrets, tolerance_secs),
        Scheme::Linear => linear(incoming, secrets, tolerance_secs),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// An HMAC scheme for providers without a preset: which header carries the
/// signature, how it is computed and written, and what is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    pub header: String,
    pub algorithm: HashAlgorithm,
    pub encoding: Encoding,
    /// Text before the signature in the header, e.g. `sha256=`.
    pub prefix: String,
    /// What is signed: `{body}` is the raw body, `{url}` the URL posted to
    /// and `{header:Name}` a header's value; anything else is literal.
    /// The default is `{body}`.
    pub template: String,
}

impl GenericHmac {
    /// Checks the template's placeholders, so a source is refused when it is
    /// configured rather than on every request.
    pub fn validate(&self) -> Result<(), String> {
        if self.header.trim().is_empty() {
            return Err("header: must name the header carrying the signature".into());
        }
        render_template(
            &self.template,
            &Incoming {
                headers: &[],
                body: b"",
                url: "",
                now_secs: 0,
            },
        )
        .map(|_| ())
        .or_else(|e| match e {
            Rejection::MissingHeader(_) => Ok(()),
            _ => Err("template: unknown placeholder (use {body}, {url} or {header:Name})".into()),
        })
    }
}

/// Checks a request signed as `config` describes with any of `secrets`.
pub fn verify_generic(
    config: &GenericHmac,
    secrets: &[&str],
    incoming: &Incoming<'_>,
) -> Result<(), Rejection> {
    let value = present(incoming, &config.header, "signature")?;
    let encoded = value
        .trim()
        .strip_prefix(config.prefix.as_str())
        .ok_or(Rejection::Malformed("signature prefix"))?;
    let given = match config.encoding {
        Encoding::Hex => hex_decode(encoded),
        Encoding::Base64 => BASE64.decode(encoded).ok(),
    }
    .ok_or(Rejection::Malformed("signature encoding"))?;
    let signed = render_template(&config.template, incoming)?;
    let matches = |secret: &&str| match config.algorithm {
        HashAlgorithm::Sha1 => mac_matches::<Hmac<Sha1>>(secret, &signed, &given),
        HashAlgorithm::Sha256 => mac_matches::<Hmac<Sha256>>(secret, &signed, &given),
        HashAlgorithm::Sha512 => mac_matches::<Hmac<sha2::Sha512>>(secret, &signed, &given),
    };
    if secrets.iter().any(matches) {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

fn mac_matches<M: Mac + hmac::digest::KeyInit>(secret: &str, signed: &[u8], given: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(signed);
    mac.verify_slice(given).is_ok()
}

fn render_template(template: &str, incoming: &Incoming<'_>) -> Result<Vec<u8>, Rejection> {
    let template = if template.is_empty() {
        "{body}"
    } else {
        template
    };
    let mut out = Vec::with_capacity(incoming.body.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(Rejection::Malformed("template"))?;
        match &after[..close] {
            "body" => out.extend_from_slice(incoming.body),
            "url" => out.extend_from_slice(incoming.url.as_bytes()),
            name => {
                let header = name
                    .strip_prefix("header:")
                    .ok_or(Rejection::Malformed("template"))?;
                let value = incoming
                    .header(header)
                    .ok_or(Rejection::MissingHeader("signed header"))?;
                out.extend_from_slice(value.as_bytes());
            }
        }
        rest = &after[close + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
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

/// `Authorization: Basic …` (scheme in any case) with any of the accepted
/// `user:password` pairs.
pub fn verify_basic_auth(credentials: &[&str], incoming: &Incoming<'_>) -> Result<(), Rejection> {
    let value = required(incoming, "Authorization")?;
    let encoded =
        authorization_credentials(value, "Basic").ok_or(Rejection::Malformed("Authorization"))?;
    let given = BASE64
        .decode(encoded.trim())
        .map_err(|_| Rejection::Malformed("Authorization"))?;
    if credentials
        .iter()
        .any(|c| constant_time_eq(c.as_bytes(), &given))
    {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// A fixed key in a named header, any of `keys` accepted.
pub fn verify_api_key(
    header: &str,
    keys: &[&str],
    incoming: &Incoming<'_>,
) -> Result<(), Rejection> {
    let given = present(incoming, header, "API key")?;
    if keys
        .iter()
        .any(|k| constant_time_eq(k.as_bytes(), given.trim().as_bytes()))
    {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// Zoom's `endpoint.url_validation` answer: hex HMAC-SHA256 of the plain token.
pub fn zoom_encrypted_token(secret: &str, plain_token: &str) -> String {
    hex_encode(&hmac_sha256(secret.as_bytes(), &[plain_token.as_bytes()]))
}

fn required<'a>(incoming: &Incoming<'a>, name: &'static str) -> Result<&'a str, Rejection> {
    present(incoming, name, name)
}

/// A non-empty header; `label` names it in the rejection.
fn present<'a>(
    incoming: &Incoming<'a>,
    name: &str,
    label: &'static str,
) -> Result<&'a str, Rejection> {
    incoming
        .header(name)
        .filter(|v| !v.is_empty())
        .ok_or(Rejection::MissingHeader(label))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Whether any secret's HMAC-SHA256 over `parts` equals any given signature,
/// compared in constant time.
fn any_sha256(secrets: &[&str], parts: &[&[u8]], given: &[Vec<u8>]) -> Result<(), Rejection> {
    for secret in secrets {
        for sig in given {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            for part in parts {
                mac.update(part);
            }
            if mac.verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(Rejection::Mismatch)
}

fn parse_secs(text: &str, header: &'static str) -> Result<i64, Rejection> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| Rejection::Malformed(header))
}

fn standard(
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
    let keys: Vec<crate::signing::EndpointSecret> = secrets
        .iter()
        .filter_map(|s| crate::signing::EndpointSecret::parse_any_length(s).ok())
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
        crate::signing::VerifyError::Stale => Rejection::Stale,
        crate::signing::VerifyError::BadTimestamp => Rejection::Malformed("webhook-timestamp"),
        _ => Rejection::Mismatch,
    })
}

/// A header of `key=value` pairs holding one timestamp and one or more hex
/// signatures (Stripe's `t=…,v1=…`, Paddle's `ts=…;h1=…`): the timestamp as
/// sent and parsed, and the decoded signatures.
fn timestamp_and_signatures<'a>(
    incoming: &Incoming<'a>,
    header: &'static str,
    separator: char,
    timestamp_key: &str,
    signature_key: &str,
) -> Result<(&'a str, i64, Vec<Vec<u8>>), Rejection> {
    let value = required(incoming, header)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in value.split(separator) {
        match part.trim().split_once('=') {
            Some((k, t)) if k == timestamp_key => timestamp = Some((t, parse_secs(t, header)?)),
            Some((k, sig)) if k == signature_key => signatures.extend(hex_decode(sig)),
            _ => {}
        }
    }
    match timestamp {
        Some((raw, t)) if !signatures.is_empty() => Ok((raw, t, signatures)),
        _ => Err(Rejection::Malformed(header)),
    }
}

fn stripe(
    incoming: &Incoming<'_>,
    secrets: &[&str],
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let (raw, t, signatures) =
        timestamp_and_signatures(incoming, "Stripe-Signature", ',', "t", "v1")?;
    // Stripe's own libraries refuse only timestamps that are too old; a far
    // future one is refused here too, as for every other scheme.
    within_tolerance(incoming.now_secs, t, tolerance_secs)?;
    let prefix = format!("{raw}.");
    any_sha256(secrets, &[prefix.as_bytes(), incoming.body], &signatures)
}

fn v0(
    incoming: &Incoming<'_>,
    timestamp_header: &'static str,
    signature_header: &'static str,
    secrets: &[&str],
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let timestamp = required(incoming, timestamp_header)?;
    let t = parse_secs(timestamp, timestamp_header)?;
    within_tolerance(incoming.now_secs, t, tolerance_secs)?;
    let given = required(incoming, signature_header)?;
    let sig = given
        .strip_prefix("v0=")
        .and_then(hex_decode)
        .ok_or(Rejection::Malformed(signature_header))?;
    let prefix = format!("v0:{}:", timestamp.trim());
    any_sha256(secrets, &[prefix.as_bytes(), incoming.body], &[sig])
}

fn paddle(
    incoming: &Incoming<'_>,
    secrets: &[&str],
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let (raw, t, signatures) =
        timestamp_and_signatures(incoming, "Paddle-Signature", ';', "ts", "h1")?;
    within_tolerance(incoming.now_secs, t, tolerance_secs)?;
    let prefix = format!("{raw}:");
    any_sha256(secrets, &[prefix.as_bytes(), incoming.body], &signatures)
}

fn linear(
    incoming: &Incoming<'_>,
    secrets: &[&str],
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let given = required(incoming, "Linear-Signature")?;
    let sig = hex_decode(given).ok_or(Rejection::Malformed("Linear-Signature"))?;
    any_sha256(secrets, &[incoming.body], &[sig])?;
    let Some(tol) = tolerance_secs else {
        return Ok(());
    };
    // The signed body carries the send time in milliseconds; Linear always
    // sends it, so with the clock check on its absence is refused.
    #[derive(serde::Deserialize)]
    struct Stamp {
        #[serde(rename = "webhookTimestamp")]
        webhook_timestamp: Option<i64>,
    }
    let ms = serde_json::from_slice::<Stamp>(incoming.body)
        .ok()
        .and_then(|s| s.webhook_timestamp)
        .ok_or(Rejection::Malformed("webhookTimestamp in the body"))?;
    if incoming.now_secs.saturating_mul(1000).abs_diff(ms) > tol.unsigned_abs().saturating_mul(1000)
    {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// `Stale` when `signed_secs` is more than `tolerance_secs` before or after
/// `now_secs` (no overflow for any pair of values a header can carry).
fn within_tolerance(
    now_secs: i64,
    signed_secs: i64,
    tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    match tolerance_secs {
        Some(tol) if now_secs.abs_diff(signed_secs) > tol.unsigned_abs() => Err(Rejection::Stale),
        _ => Ok(()),
    }
}

/// Twilio signs the full URL followed by every form parameter (name, then
/// value, sorted); JSON bodies are covered instead by a `bodySHA256` query
/// parameter. The URL is tried with and without its default port, as
/// Twilio's own validators do.
fn twilio(incoming: &Incoming<'_>, secrets: &[&str]) -> Result<(), Rejection> {
    let given = required(incoming, "X-Twilio-Signature")?;
    let sig = BASE64
        .decode(given.trim())
        .map_err(|_| Rejection::Malformed("X-Twilio-Signature"))?;
    let query = incoming.url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let body_hash = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned());
    let mut params: Vec<(String, String)> = Vec::new();
    match body_hash {
        Some(expected) => {
            let actual = hex_encode(&Sha256::digest(incoming.body));
            let Some(expected) = hex_decode(&expected) else {
                return Err(Rejection::Malformed("bodySHA256"));
            };
            let actual = hex_decode(&actual).unwrap_or_default();
            if !constant_time_eq(&actual, &expected) {
                return Err(Rejection::Mismatch);
            }
        }
        None => {
            params = form_urlencoded::parse(incoming.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            params.sort();
            params.dedup();
        }
    }
    let mut signed_params = String::new();
    for (k, v) in &params {
        signed_params.push_str(k);
        signed_params.push_str(v);
    }
    for url in url_port_variants(incoming.url) {
        for secret in secrets {
            let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            mac.update(url.as_bytes());
            mac.update(signed_params.as_bytes());
            if mac.verify_slice(&sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(Rejection::Mismatch)
}

/// The URL without an explicit port, and with the scheme's default port
/// added when none is given.
fn url_port_variants(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    // An IPv6 literal is bracketed; its port follows the closing bracket.
    let port_colon = if hostport.starts_with('[') {
        hostport.find("]:").map(|i| i + 1)
    } else {
        hostport.rfind(':')
    };
    let has_port = port_colon.is_some();
    let host = match port_colon {
        Some(i) => &hostport[..i],
        None => hostport,
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = if has_port {
        url.to_owned()
    } else {
        format!("{scheme}://{userinfo}{host}:{default_port}{tail}")
    };
    vec![url.to_owned(), without, with]
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants_cover_default_ports() {
        assert_eq!(
            url_port_variants("https://a.com/x?y=1"),
            vec![
                "https://a.com/x?y=1".to_string(),
                "https://a.com/x?y=1".to_string(),
                "https://a.com:443/x?y=1".to_string()
            ]
        );
        assert_eq!(
            url_port_variants("http://a.com:1234/x")[1],
            "http://a.com/x".to_string()
        );
    }

    #[test]
    fn hex_round_trip_and_rejects_odd_input() {
        assert_eq!(
            hex_decode(&hex_encode(&[0, 255, 16])),
            Some(vec![0, 255, 16])
        );
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn generic_hmac_follows_its_configuration() {
        let signed = b"1700000000.{\"a\":1}";
        let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(b"k").unwrap();
        mac.update(signed);
        let sig = BASE64.encode(mac.finalize().into_bytes());
        let header = format!("sig={sig}");
        let headers = [("X-Sig", header.as_str()), ("X-Ts", "1700000000")];
        let incoming = Incoming {
            headers: &headers,
            body: br#"{"a":1}"#,
            url: "https://x/",
            now_secs: 0,
        };
        let config = GenericHmac {
            header: "x-sig".into(),
            algorithm: HashAlgorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "sig=".into(),
            template: "{header:X-Ts}.{body}".into(),
        };
        assert!(config.validate().is_ok());
        assert_eq!(verify_generic(&config, &["old", "k"], &incoming), Ok(()));
        assert_eq!(
            verify_generic(&config, &["old"], &incoming),
            Err(Rejection::Mismatch)
        );
        let sha256 = GenericHmac {
            algorithm: HashAlgorithm::Sha256,
            ..config.clone()
        };
        assert_eq!(
            verify_generic(&sha256, &["k"], &incoming),
            Err(Rejection::Mismatch)
        );
        let bad = GenericHmac {
            template: "{nope}".into(),
            ..config
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn basic_auth_and_api_keys() {
        let auth = format!("Basic {}", BASE64.encode("user:pw"));
        let headers = [("authorization", auth.as_str()), ("X-Api-Key", "k2")];
        let incoming = Incoming {
            headers: &headers,
            body: b"",
            url: "",
            now_secs: 0,
        };
        assert!(verify_basic_auth(&["user:pw"], &incoming).is_ok());
        assert_eq!(
            verify_basic_auth(&["user:other"], &incoming),
            Err(Rejection::Mismatch)
        );
        assert!(verify_api_key("x-api-key", &["k1", "k2"], &incoming).is_ok());
        assert!(verify_api_key("x-api-key", &["k1"], &incoming).is_err());
        assert_eq!(
            verify_api_key("x-other", &["k1"], &incoming),
            Err(Rejection::MissingHeader("API key"))
        );
    }

    /// A correctly signed request of `scheme` whose signed time is `at`.
    fn signed_at(scheme: Scheme, secret: &str, at: i64) -> (Vec<(String, String)>, Vec<u8>) {
        let mac = |parts: &[&[u8]]| hex_encode(&hmac_sha256(secret.as_bytes(), parts));
        let body = br#"{"type":"t","id":"e1"}"#.to_vec();
        let h = |k: &str, v: String| (k.to_owned(), v);
        match scheme {
            Scheme::StandardWebhooks | Scheme::Svix => {
                let key = crate::signing::EndpointSecret::parse_any_length(secret).unwrap();
                let prefix = if scheme == Scheme::Svix {
                    "svix"
                } else {
                    "webhook"
                };
                let headers = vec![
                    h(&format!("{prefix}-id"), "msg_1".into()),
                    h(&format!("{prefix}-timestamp"), at.to_string()),
                    h(&format!("{prefix}-signature"), key.sign("msg_1", at, &body)),
                ];
                (headers, body)
            }
            Scheme::Stripe => {
                let sig = mac(&[format!("{at}.").as_bytes(), &body]);
                (
                    vec![h("Stripe-Signature", format!("t={at},v1={sig}"))],
                    body,
                )
            }
            Scheme::Slack | Scheme::Zoom => {
                let (ts, sig) = if scheme == Scheme::Slack {
                    ("X-Slack-Request-Timestamp", "X-Slack-Signature")
                } else {
                    ("x-zm-request-timestamp", "x-zm-signature")
                };
                let mac = mac(&[format!("v0:{at}:").as_bytes(), &body]);
                (
                    vec![h(ts, at.to_string()), h(sig, format!("v0={mac}"))],
                    body,
                )
            }
            Scheme::Paddle => {
                let sig = mac(&[format!("{at}:").as_bytes(), &body]);
                (
                    vec![h("Paddle-Signature", format!("ts={at};h1={sig}"))],
                    body,
                )
            }
            Scheme::Linear => {
                let body = format!(
                    r#"{{"type":"Issue","webhookTimestamp":{}}}"#,
                    at.saturating_mul(1000)
                );
                let sig = mac(&[body.as_bytes()]);
                (vec![h("Linear-Signature", sig)], body.into_bytes())
            }
            other => panic!("{other:?} signs no timestamp"),
        }
    }

    /// Every scheme that signs a time refuses one beyond the tolerance in
    /// either direction, far future included, and accepts one inside it.
    #[test]
    fn signed_timestamps_are_bounded_both_ways() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let now = 1_700_000_000;
        for scheme in [
            Scheme::StandardWebhooks,
            Scheme::Svix,
            Scheme::Stripe,
            Scheme::Slack,
            Scheme::Zoom,
            Scheme::Paddle,
            Scheme::Linear,
        ] {
            let check = |at: i64, tolerance: Option<i64>| {
                let (headers, body) = signed_at(scheme, secret, at);
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let incoming = Incoming {
                    headers: &headers,
                    body: &body,
                    url: "",
                    now_secs: now,
                };
                verify(scheme, &[secret], &incoming, tolerance)
            };
            for at in [now, now - 300, now + 300] {
                assert_eq!(check(at, Some(300)), Ok(()), "{scheme:?} at {at}");
            }
            for at in [now + 301, now + 3_600, now + 10 * 365 * 86_400, now - 301] {
                assert_eq!(
                    check(at, Some(300)),
                    Err(Rejection::Stale),
                    "{scheme:?} at {at}"
                );
            }
            assert_eq!(check(now + 3_600, None), Ok(()), "{scheme:?} unchecked");
            // Extreme values are refused, never an arithmetic overflow.
            for at in [i64::MAX, i64::MIN, i64::MIN / 1000] {
                assert!(check(at, Some(300)).is_err(), "{scheme:?} at {at}");
            }
        }
    }

    #[test]
    fn a_linear_body_without_its_timestamp_is_refused_when_the_clock_is_checked() {
        let body = br#"{"type":"Issue"}"#;
        let sig = hex_encode(&hmac_sha256(b"s", &[body]));
        let headers = [("Linear-Signature", sig.as_str())];
        let incoming = Incoming {
            headers: &headers,
            body,
            url: "",
            now_secs: 0,
        };
        assert!(verify(Scheme::Linear, &["s"], &incoming, Some(300)).is_err());
        assert_eq!(verify(Scheme::Linear, &["s"], &incoming, None), Ok(()));
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
        let encoded = BASE64.encode("user:pw");
        for scheme in ["basic", "BASIC", "bAsIc"] {
            let auth = format!("{scheme} {encoded}");
            let headers = [("Authorization", auth.as_str())];
            let incoming = Incoming {
                headers: &headers,
                body: b"",
                url: "",
                now_secs: 0,
            };
            assert_eq!(
                verify_basic_auth(&["user:pw"], &incoming),
                Ok(()),
                "{scheme}"
            );
        }
    }

    #[test]
    fn a_missing_header_is_named() {
        let incoming = Incoming {
            headers: &[("content-type", "application/json")],
            body: b"{}",
            url: "https://x/",
            now_secs: 0,
        };
        assert_eq!(
            verify(Scheme::Github, &["s"], &incoming, None),
            Err(Rejection::MissingHeader("X-Hub-Signature-256"))
        );
    }
}
