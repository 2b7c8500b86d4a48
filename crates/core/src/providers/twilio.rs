//! Twilio (`twilio`): `X-Twilio-Signature: <base64 HMAC-SHA1>` of the full
//! URL followed by every form parameter (name, then value, sorted); a JSON
//! body is covered instead by a `bodySHA256` query parameter. The URL is
//! tried with and without its default port, as Twilio's own validators do.
//! No send time is signed. Config: `{"secret": "<auth token>"}`; behind a
//! proxy that changes the URL, the source's `signedUrl` setting gives it.

use super::{Defaults, Provider, Signed, Verify};
use crate::source::{FieldError, Location};
use crate::verify::{
    Incoming, Rejection, constant_time_eq, hex_decode, mac_matches, required_header,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::Hmac;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug)]
pub struct Twilio;

impl Provider for Twilio {
    fn kind(&self) -> &'static str {
        "twilio"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(Signed::parse(config, self.kind(), verify)?))
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            event_type: vec![
                Location::pointer("/EventType"),
                Location::pointer("/MessageStatus"),
                Location::pointer("/CallStatus"),
            ],
            dedupe: vec![Location::header("I-Twilio-Idempotency-Token")],
            forward_headers: &["x-twilio-signature", "i-twilio-idempotency-token"],
            signs_time: false,
        }
    }
}

/// Checks `X-Twilio-Signature` against the request's URL and body.
pub fn verify(
    secrets: &[&str],
    incoming: &Incoming<'_>,
    _tolerance_secs: Option<i64>,
) -> Result<(), Rejection> {
    let given = required_header(incoming, "X-Twilio-Signature")?;
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
            let expected = hex_decode(&expected).ok_or(Rejection::Malformed("bodySHA256"))?;
            if !constant_time_eq(&Sha256::digest(incoming.body), &expected) {
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
    let matches = url_port_variants(incoming.url).iter().any(|url| {
        secrets.iter().any(|secret| {
            mac_matches::<Hmac<Sha1>>(
                secret.as_bytes(),
                &[url.as_bytes(), signed_params.as_bytes()],
                &sig,
            )
        })
    });
    if matches {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// The URL as given, without an explicit port, and with the scheme's
/// default port added when none is given.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{incoming, object};
    use serde_json::json;

    fn sign(secret: &str, signed: &str) -> String {
        use hmac::Mac;
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(signed.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

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
    fn defaults_read_the_status_fields() {
        let d = Twilio.defaults();
        assert_eq!(d.event_type[0], Location::pointer("/EventType"));
        assert_eq!(d.dedupe, [Location::header("I-Twilio-Idempotency-Token")]);
        assert!(!d.signs_time);
    }

    #[test]
    fn form_parameters_are_signed_sorted_after_the_url() {
        let verifier = Twilio
            .parse(&object(json!({"secret": "tok"})))
            .expect("config");
        let url = "https://example.com/ingest/t";
        let body = b"To=%2B1&CallSid=CA1&From=%2B2";
        let sig = sign("tok", &format!("{url}CallSidCA1From+2To+1"));
        let headers = [("X-Twilio-Signature", sig.as_str())];
        assert_eq!(
            verifier.verify(&["tok"], &incoming(&headers, body, url, 0), None),
            Ok(())
        );
        let with_port = "https://example.com:443/ingest/t";
        assert_eq!(
            verifier.verify(&["tok"], &incoming(&headers, body, with_port, 0), None),
            Ok(()),
            "the default port is optional"
        );
        assert_eq!(
            verifier.verify(&["other"], &incoming(&headers, body, url, 0), None),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn a_json_body_is_covered_by_its_hash() {
        let body = br#"{"a":1}"#;
        let url = format!(
            "https://example.com/t?bodySHA256={}",
            hex::encode(Sha256::digest(body))
        );
        let sig = sign("tok", &url);
        let headers = [("X-Twilio-Signature", sig.as_str())];
        assert_eq!(
            verify(&["tok"], &incoming(&headers, body, &url, 0), None),
            Ok(())
        );
        assert_eq!(
            verify(&["tok"], &incoming(&headers, b"{}", &url, 0), None),
            Err(Rejection::Mismatch)
        );
    }
}
