//! How an endpoint authenticates deliveries besides the Standard Webhooks
//! signature: an `Authorization` header (HTTP basic, a bearer token, or an
//! OAuth 2.0 access token obtained with the client-credentials grant,
//! RFC 6749 §4.4) and a TLS client certificate (mTLS). This is the stored
//! shape (sealed with the other secret columns); the engine checks values
//! on the way in and the dispatcher applies them on the way out.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// An endpoint's credentials. Each part is optional; `http` and `oauth` both
/// set `Authorization`, so at most one of them is set (the engine refuses
/// the second).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OauthClientCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsIdentity>,
}

impl EndpointAuth {
    /// No credentials at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.oauth.is_none() && self.mtls.is_none()
    }
}

/// Credentials never reach logs: only which kinds are set.
impl fmt::Debug for EndpointAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointAuth")
            .field("http", &self.http.as_ref().map(HttpAuth::kind))
            .field("oauth", &self.oauth.as_ref().map(|o| &o.token_url))
            .field("mtls", &self.mtls.is_some())
            .finish()
    }
}

/// A fixed `Authorization` header (RFC 9110 §11.6.2).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HttpAuth {
    /// `Basic base64(username:password)` (RFC 7617); the username may not
    /// contain `:`.
    Basic { username: String, password: String },
    /// `Bearer <token>` (RFC 6750).
    Bearer { token: String },
}

impl HttpAuth {
    /// `basic` or `bearer`.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpAuth::Basic { .. } => "basic",
            HttpAuth::Bearer { .. } => "bearer",
        }
    }

    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        match self {
            HttpAuth::Basic { username, password } => basic_credentials(username, password),
            HttpAuth::Bearer { token } => format!("Bearer {token}"),
        }
    }
}

/// `Basic base64(user:password)`.
pub fn basic_credentials(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1),
/// named as Svix's `authMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OauthAuthMethod {
    /// `Authorization: Basic` with the form-urlencoded id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

/// The OAuth 2.0 client-credentials grant (RFC 6749 §4.4): Switchyard asks
/// `token_url` for an access token and sends it as `Bearer`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OauthClientCredentials {
    pub token_url: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub auth_method: OauthAuthMethod,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Added to the token request's form (`audience`, `resource`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
    /// Added to the token request's headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
}

impl OauthClientCredentials {
    /// The token request's form body (`application/x-www-form-urlencoded`).
    pub fn token_request_form(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !self.scopes.is_empty() {
            form.append_pair("scope", &self.scopes.join(" "));
        }
        if self.auth_method == OauthAuthMethod::ClientSecretPost {
            form.append_pair("client_id", &self.client_id);
            if let Some(secret) = &self.client_secret {
                form.append_pair("client_secret", secret);
            }
        }
        for (name, value) in &self.extra_params {
            form.append_pair(name, value);
        }
        form.finish()
    }

    /// The token request's `Authorization` for `clientSecretBasic`: the id
    /// and secret are form-urlencoded before joining (RFC 6749 §2.3.1).
    pub fn token_request_authorization(&self) -> Option<String> {
        if self.auth_method != OauthAuthMethod::ClientSecretBasic {
            return None;
        }
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        Some(basic_credentials(
            &encode(&self.client_id),
            &encode(self.client_secret.as_deref().unwrap_or("")),
        ))
    }

    /// Tells configurations apart without holding their secrets: a cached
    /// token belongs to the configuration that obtained it.
    pub fn fingerprint(&self) -> [u8; 32] {
        let text = serde_json::to_string(self).unwrap_or_default();
        Sha256::digest(text.as_bytes()).into()
    }
}

/// Without the secret or header values.
impl fmt::Debug for OauthClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OauthClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// A TLS client identity: a PEM private key and certificate chain (leaf
/// first), as Svix's `identity`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MtlsIdentity {
    pub pem: String,
    /// Hex SHA-256 of the leaf certificate's DER, which the API shows in
    /// place of the identity.
    pub certificate_sha256: String,
}

impl MtlsIdentity {
    /// Tells identities apart (a client is built once per identity).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.pem.as_bytes()).into()
    }
}

/// What an OAuth 2.0 token endpoint answered (RFC 6749 §5.1), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub access_token: String,
    /// Seconds the token lives, when the server said.
    pub expires_in: Option<u64>,
}

/// Longest access token accepted: it goes out with every delivery.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 16 * 1024;

/// Reads a successful token response. `token_type` must be `Bearer` (any
/// case) when given; `expires_in` may be a number or, as some servers send
/// it, a string of one.
pub fn parse_token_response(body: &[u8]) -> Result<AccessToken, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("the response is not a JSON object".into());
    };
    let token = match object.get("access_token") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => t,
        Some(_) => return Err("access_token is not a non-empty string".into()),
        None => return Err("the response has no access_token".into()),
    };
    if token.len() > MAX_ACCESS_TOKEN_BYTES {
        return Err(format!(
            "access_token is longer than {MAX_ACCESS_TOKEN_BYTES} bytes"
        ));
    }
    // It goes out as a header value: visible ASCII only (RFC 6750 §2.1's
    // b64token is narrower still).
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("access_token holds characters a header cannot carry".into());
    }
    match object.get("token_type") {
        None => {}
        Some(serde_json::Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(other) => {
            return Err(format!(
                "token_type {other} is not supported (only Bearer tokens are)"
            ));
        }
    }
    let expires_in = match object.get("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or("expires_in is not a non-negative number")?,
        ),
        Some(serde_json::Value::String(s)) => Some(
            s.trim()
                .parse::<u64>()
                .map_err(|_| "expires_in is not a number of seconds")?,
        ),
        Some(_) => return Err("expires_in is not a number of seconds".into()),
    };
    Ok(AccessToken {
        access_token: token.clone(),
        expires_in,
    })
}

/// How long a token is used for, in ms: until `min(60 s, a tenth of its
/// life)` before it runs out, so a delivery does not carry a token that
/// expires on the way; a server that gives no lifetime gets 5 minutes.
pub fn token_use_ms(expires_in: Option<u64>) -> u64 {
    let life = expires_in.unwrap_or(300).saturating_mul(1000);
    life - (life / 10).min(60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(method: OauthAuthMethod) -> OauthClientCredentials {
        OauthClientCredentials {
            token_url: "https://auth.example/token".into(),
            client_id: "my id".into(),
            client_secret: Some("s:e&c".into()),
            auth_method: method,
            scopes: vec!["a".into(), "b".into()],
            extra_params: BTreeMap::from([("audience".into(), "x y".into())]),
            extra_headers: BTreeMap::new(),
        }
    }

    #[test]
    fn client_secret_basic_encodes_then_joins() {
        let o = oauth(OauthAuthMethod::ClientSecretBasic);
        assert_eq!(
            o.token_request_form(),
            "grant_type=client_credentials&scope=a+b&audience=x+y"
        );
        // base64("my+id:s%3Ae%26c")
        assert_eq!(
            o.token_request_authorization().as_deref(),
            Some("Basic bXkraWQ6cyUzQWUlMjZj")
        );
    }

    #[test]
    fn client_secret_post_puts_the_secret_in_the_body() {
        let o = oauth(OauthAuthMethod::ClientSecretPost);
        assert_eq!(o.token_request_authorization(), None);
        assert_eq!(
            o.token_request_form(),
            "grant_type=client_credentials&scope=a+b&client_id=my+id&client_secret=s%3Ae%26c&audience=x+y"
        );
    }

    #[test]
    fn token_responses_are_checked() {
        let ok = |b: &str| parse_token_response(b.as_bytes());
        assert_eq!(
            ok(r#"{"access_token":"t","token_type":"bearer","expires_in":60}"#),
            Ok(AccessToken {
                access_token: "t".into(),
                expires_in: Some(60)
            })
        );
        assert_eq!(
            ok(r#"{"access_token":"t","expires_in":"3600"}"#)
                .unwrap()
                .expires_in,
            Some(3600)
        );
        assert_eq!(ok(r#"{"access_token":"t"}"#).unwrap().expires_in, None);
        for bad in [
            "not json",
            "[]",
            r#"{"token_type":"bearer"}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":5}"#,
            r#"{"access_token":"a b"}"#,
            r#"{"access_token":"a\r\nX-Evil: 1"}"#,
            r#"{"access_token":"t","token_type":"mac"}"#,
            r#"{"access_token":"t","expires_in":-5}"#,
            r#"{"access_token":"t","expires_in":"soon"}"#,
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(20_000));
        assert!(ok(&long).is_err());
    }

    #[test]
    fn tokens_are_renewed_before_they_run_out() {
        assert_eq!(token_use_ms(Some(3600)), 3_540_000);
        assert_eq!(token_use_ms(Some(2)), 1_800);
        assert_eq!(token_use_ms(Some(0)), 0);
        assert_eq!(token_use_ms(None), 270_000);
        assert_eq!(token_use_ms(Some(u64::MAX)), u64::MAX - 60_000);
    }

    #[test]
    fn debug_output_holds_no_credentials() {
        let auth = EndpointAuth {
            http: Some(HttpAuth::Basic {
                username: "u".into(),
                password: "hunter2".into(),
            }),
            oauth: Some(oauth(OauthAuthMethod::ClientSecretPost)),
            mtls: Some(MtlsIdentity {
                pem: "-----BEGIN PRIVATE KEY-----secret".into(),
                certificate_sha256: "ab".into(),
            }),
        };
        let text = format!("{auth:?}");
        assert!(!text.contains("hunter2") && !text.contains("s:e&c") && !text.contains("secret"));
    }

    #[test]
    fn the_stored_shape_round_trips() {
        let auth = EndpointAuth {
            http: Some(HttpAuth::Bearer { token: "t".into() }),
            ..Default::default()
        };
        let text = serde_json::to_string(&auth).unwrap();
        assert_eq!(text, r#"{"http":{"type":"bearer","token":"t"}}"#);
        assert_eq!(serde_json::from_str::<EndpointAuth>(&text).unwrap(), auth);
        assert!(
            serde_json::from_str::<EndpointAuth>("{}")
                .unwrap()
                .is_empty()
        );
    }
}
