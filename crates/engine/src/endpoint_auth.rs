//! Endpoint credentials (HTTP basic or bearer, OAuth 2.0 client
//! credentials, an mTLS identity): their checks and changes. They are
//! stored sealed with the endpoint and applied by the dispatcher; reads
//! through the API never return the secret parts (see [`AuthView`]).

use crate::dispatch::tls;
use crate::{Engine, EngineError};
use reqwest::header::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use switchyard_core::EndpointUrl;
use switchyard_core::endpoint_auth::{
    EndpointAuth, HttpAuth, MtlsIdentity, OauthAuthMethod, OauthClientCredentials,
};

/// Characters of a username, client id or scope.
const MAX_NAME_CHARS: usize = 256;
/// Bytes of a password, bearer token or client secret.
const MAX_SECRET_BYTES: usize = 4096;
/// Scopes, extra parameters and extra headers of an OAuth configuration
/// (each).
const MAX_OAUTH_ENTRIES: usize = 20;

/// Svix's `EndpointOauthConfigIn`, as given: the names of the grant and the
/// method are checked here so errors name the field.
#[derive(Debug, Clone, Default)]
pub struct OauthInput {
    /// `clientCredentials` (the `refreshToken` grant is refused).
    pub grant_type: String,
    /// `clientSecretBasic` or `clientSecretPost` (`clientSecretJwt` is
    /// refused).
    pub auth_method: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub token_url: String,
    pub scopes: Option<Vec<String>>,
    pub extra_params: Option<BTreeMap<String, String>>,
    pub extra_headers: Option<BTreeMap<String, String>>,
    /// Given for the grants and methods not supported; refused when set.
    pub refresh_token: Option<String>,
    pub jwt_params: bool,
}

/// Which part of an endpoint's credentials a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPart {
    Http,
    Oauth,
    Mtls,
}

fn check_text(field: &str, value: &str, max_bytes: usize) -> Result<(), EngineError> {
    if value.len() > max_bytes {
        return Err(EngineError::invalid(
            field,
            format!("must be at most {max_bytes} bytes"),
        ));
    }
    // Every credential travels in a header or a form field.
    if value.chars().any(char::is_control) {
        return Err(EngineError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_non_empty(field: &str, value: &str, max_bytes: usize) -> Result<(), EngineError> {
    if value.is_empty() {
        return Err(EngineError::invalid(field, "must not be empty"));
    }
    check_text(field, value, max_bytes)
}

/// Checks HTTP basic or bearer credentials.
pub fn check_http_auth(auth: &HttpAuth) -> Result<(), EngineError> {
    match auth {
        HttpAuth::Basic { username, password } => {
            check_non_empty("username", username, MAX_NAME_CHARS)?;
            // RFC 7617 §2: the user-id cannot contain a colon.
            if username.contains(':') {
                return Err(EngineError::invalid("username", "must not contain ':'"));
            }
            check_text("password", password, MAX_SECRET_BYTES)
        }
        HttpAuth::Bearer { token } => {
            check_non_empty("token", token, MAX_SECRET_BYTES)?;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(EngineError::invalid(
                    "token",
                    "must be visible ASCII without spaces (RFC 6750 b64token)",
                ));
            }
            Ok(())
        }
    }
}

/// Checks an OAuth configuration and turns it into the stored shape.
pub fn parse_oauth(input: OauthInput) -> Result<OauthClientCredentials, EngineError> {
    match input.grant_type.as_str() {
        "clientCredentials" => {}
        "refreshToken" => {
            return Err(EngineError::invalid(
                "grantType",
                "refreshToken is not supported; use clientCredentials",
            ));
        }
        other => {
            return Err(EngineError::invalid(
                "grantType",
                format!("'{other}' is not a grant type; use clientCredentials"),
            ));
        }
    }
    let auth_method = match input.auth_method.as_str() {
        "clientSecretBasic" => OauthAuthMethod::ClientSecretBasic,
        "clientSecretPost" => OauthAuthMethod::ClientSecretPost,
        "clientSecretJwt" => {
            return Err(EngineError::invalid(
                "authMethod",
                "clientSecretJwt is not supported; use clientSecretBasic or clientSecretPost",
            ));
        }
        other => {
            return Err(EngineError::invalid(
                "authMethod",
                format!("'{other}' is not supported; use clientSecretBasic or clientSecretPost"),
            ));
        }
    };
    if input.refresh_token.is_some() {
        return Err(EngineError::invalid(
            "refreshToken",
            "is only for the refreshToken grant, which is not supported",
        ));
    }
    if input.jwt_params {
        return Err(EngineError::invalid(
            "jwtParams",
            "is only for clientSecretJwt, which is not supported",
        ));
    }
    check_non_empty("clientId", &input.client_id, MAX_NAME_CHARS)?;
    if let Some(secret) = &input.client_secret {
        check_text("clientSecret", secret, MAX_SECRET_BYTES)?;
    }
    // The token URL is held to the endpoint URL's rules (http(s), a host,
    // no zone id); where it leads is judged by the SSRF guard when used.
    let token_url = EndpointUrl::parse(&input.token_url)
        .map_err(|e| EngineError::invalid("tokenUrl", e.to_string()))?;
    // User info in the URL would be shown by every read and is not how the
    // client authenticates here.
    if url::Url::parse(token_url.as_str())
        .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
    {
        return Err(EngineError::invalid(
            "tokenUrl",
            "must not carry user info; give the credentials as clientId and clientSecret",
        ));
    }
    let scopes = input.scopes.unwrap_or_default();
    crate::limits::check_count("scopes", scopes.len(), MAX_OAUTH_ENTRIES)?;
    for (i, scope) in scopes.iter().enumerate() {
        let field = format!("scopes.{i}");
        check_non_empty(&field, scope, MAX_NAME_CHARS)?;
        // RFC 6749 §3.3: scope tokens are joined by spaces, so hold none.
        if !scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(EngineError::invalid(
                field,
                "must be visible ASCII without spaces, '\"' or '\\' (RFC 6749 §3.3)",
            ));
        }
    }
    let extra_params = input.extra_params.unwrap_or_default();
    crate::limits::check_count("extraParams", extra_params.len(), MAX_OAUTH_ENTRIES)?;
    for (name, value) in &extra_params {
        let field = format!("extraParams.{name}");
        check_non_empty(&field, name, MAX_NAME_CHARS)?;
        check_text(&field, value, MAX_SECRET_BYTES)?;
        // The grant's own fields are Switchyard's to set.
        if matches!(
            name.as_str(),
            "grant_type" | "client_id" | "client_secret" | "scope"
        ) {
            return Err(EngineError::invalid(
                field,
                "is set by Switchyard from the configuration",
            ));
        }
    }
    let extra_headers = input.extra_headers.unwrap_or_default();
    crate::limits::check_count("extraHeaders", extra_headers.len(), MAX_OAUTH_ENTRIES)?;
    for (name, value) in &extra_headers {
        let field = format!("extraHeaders.{name}");
        check_text(&field, value, MAX_SECRET_BYTES)?;
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(EngineError::invalid(
                field,
                "is not a valid HTTP header name",
            ));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err(EngineError::invalid(
                field,
                "is not a valid HTTP header value",
            ));
        }
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "content-type" | "content-length" | "host" | "transfer-encoding" | "connection"
        ) {
            return Err(EngineError::invalid(field, "is set by Switchyard"));
        }
    }
    Ok(OauthClientCredentials {
        token_url: token_url.as_str().to_owned(),
        client_id: input.client_id,
        client_secret: input.client_secret,
        auth_method,
        scopes,
        extra_params,
        extra_headers,
    })
}

/// Checks a PEM identity (a private key and the certificate chain it
/// belongs to) and turns it into the stored shape.
pub fn parse_mtls(pem: String) -> Result<MtlsIdentity, EngineError> {
    let certificate_sha256 =
        tls::check_identity(&pem).map_err(|e| EngineError::invalid("identity", e))?;
    Ok(MtlsIdentity {
        pem,
        certificate_sha256,
    })
}

/// What the API shows of an endpoint's credentials: everything but the
/// secrets (passwords, tokens, client secrets, private keys, and the values
/// of extra token-request headers, which often hold keys).
pub struct AuthView<'a>(pub &'a EndpointAuth);

impl AuthView<'_> {
    /// The part asked about, when set.
    pub fn of(&self, part: AuthPart) -> Option<serde_json::Value> {
        use serde_json::json;
        match part {
            AuthPart::Http => self.0.http.as_ref().map(|h| match h {
                HttpAuth::Basic { username, .. } => {
                    json!({"type": "basic", "username": username})
                }
                HttpAuth::Bearer { .. } => json!({"type": "bearer"}),
            }),
            AuthPart::Oauth => self.0.oauth.as_ref().map(|o| {
                let method = match o.auth_method {
                    OauthAuthMethod::ClientSecretBasic => "clientSecretBasic",
                    OauthAuthMethod::ClientSecretPost => "clientSecretPost",
                };
                let headers: BTreeMap<&str, &str> = o
                    .extra_headers
                    .keys()
                    .map(|k| (k.as_str(), "********"))
                    .collect();
                json!({
                    "grantType": "clientCredentials",
                    "authMethod": method,
                    "clientId": o.client_id,
                    "tokenUrl": o.token_url,
                    "scopes": (!o.scopes.is_empty()).then_some(&o.scopes),
                    "extraParams": (!o.extra_params.is_empty()).then_some(&o.extra_params),
                    "extraHeaders": (!headers.is_empty()).then_some(headers),
                })
            }),
            AuthPart::Mtls => self
                .0
                .mtls
                .as_ref()
                .map(|m| json!({"certificateSha256": m.certificate_sha256})),
        }
    }
}

/// A credentials change.
pub enum AuthChange {
    Http(HttpAuth),
    Oauth(OauthInput),
    Mtls(String),
    Clear(AuthPart),
}

impl Engine {
    /// An endpoint's credentials (for [`AuthView`]).
    pub async fn endpoint_auth(
        &self,
        app_key: &str,
        key: &str,
    ) -> Result<EndpointAuth, EngineError> {
        Ok(self.endpoint(app_key, key).await?.auth)
    }

    /// Sets or clears one part of an endpoint's credentials. HTTP and
    /// OAuth both set `Authorization`, so setting one while the other is
    /// set is a [`EngineError::Conflict`] naming it.
    pub async fn change_endpoint_auth(
        &self,
        app_key: &str,
        key: &str,
        change: AuthChange,
    ) -> Result<(), EngineError> {
        let change = self.checked_auth_change(change)?;
        self.again_if_stale(|| self.apply_auth_change(app_key, key, change.clone()))
            .await
    }

    /// Checked before the lookup, so a bad body is refused as such.
    fn checked_auth_change(&self, change: AuthChange) -> Result<Checked, EngineError> {
        let change = match change {
            AuthChange::Http(h) => {
                check_http_auth(&h)?;
                Checked::Http(h)
            }
            AuthChange::Oauth(o) => {
                let parsed = parse_oauth(o)?;
                if self.https_only && !parsed.token_url.starts_with("https:") {
                    return Err(EngineError::invalid(
                        "tokenUrl",
                        "must be an https URL: this Switchyard delivers only over https (SWITCHYARD_HTTPS_ONLY)",
                    ));
                }
                Checked::Oauth(parsed)
            }
            AuthChange::Mtls(pem) => Checked::Mtls(parse_mtls(pem)?),
            AuthChange::Clear(part) => Checked::Clear(part),
        };
        Ok(change)
    }

    async fn apply_auth_change(
        &self,
        app_key: &str,
        key: &str,
        change: Checked,
    ) -> Result<(), EngineError> {
        let mut ep = self.endpoint(app_key, key).await?;
        let conflict = |other: &str, route: &str| {
            EngineError::Conflict(format!(
                "the endpoint already authenticates with {other}, which sets Authorization too; delete it first (DELETE …/{route})"
            ))
        };
        match change {
            Checked::Http(h) => {
                if ep.auth.oauth.is_some() {
                    return Err(conflict("OAuth 2.0", "oauth"));
                }
                ep.auth.http = Some(h);
            }
            Checked::Oauth(o) => {
                if let Some(h) = &ep.auth.http {
                    return Err(conflict(&format!("HTTP {}", h.kind()), "http-auth"));
                }
                ep.auth.oauth = Some(o);
            }
            Checked::Mtls(m) => ep.auth.mtls = Some(m),
            Checked::Clear(AuthPart::Http) => ep.auth.http = None,
            Checked::Clear(AuthPart::Oauth) => ep.auth.oauth = None,
            Checked::Clear(AuthPart::Mtls) => ep.auth.mtls = None,
        }
        self.save_endpoint(ep, false).await?;
        Ok(())
    }
}

#[derive(Clone)]
enum Checked {
    Http(HttpAuth),
    Oauth(OauthClientCredentials),
    Mtls(MtlsIdentity),
    Clear(AuthPart),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth() -> OauthInput {
        OauthInput {
            grant_type: "clientCredentials".into(),
            auth_method: "clientSecretPost".into(),
            client_id: "id".into(),
            client_secret: Some("secret".into()),
            token_url: "https://auth.example/token".into(),
            ..Default::default()
        }
    }

    fn field_of(e: EngineError) -> String {
        match e {
            EngineError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn oauth_configurations_are_checked_field_by_field() {
        assert!(parse_oauth(oauth()).is_ok());
        let cases: Vec<(OauthInput, &str)> = vec![
            (
                OauthInput {
                    grant_type: "refreshToken".into(),
                    ..oauth()
                },
                "grantType",
            ),
            (
                OauthInput {
                    auth_method: "clientSecretJwt".into(),
                    ..oauth()
                },
                "authMethod",
            ),
            (
                OauthInput {
                    token_url: "ftp://x/".into(),
                    ..oauth()
                },
                "tokenUrl",
            ),
            (
                OauthInput {
                    token_url: "https://user:pw@auth.example/token".into(),
                    ..oauth()
                },
                "tokenUrl",
            ),
            (
                OauthInput {
                    client_id: String::new(),
                    ..oauth()
                },
                "clientId",
            ),
            (
                OauthInput {
                    client_secret: Some("a\r\nb".into()),
                    ..oauth()
                },
                "clientSecret",
            ),
            (
                OauthInput {
                    scopes: Some(vec!["a b".into()]),
                    ..oauth()
                },
                "scopes.0",
            ),
            (
                OauthInput {
                    scopes: Some(vec!["s".into(); 21]),
                    ..oauth()
                },
                "scopes",
            ),
            (
                OauthInput {
                    extra_params: Some(BTreeMap::from([("grant_type".into(), "x".into())])),
                    ..oauth()
                },
                "extraParams.grant_type",
            ),
            (
                OauthInput {
                    extra_headers: Some(BTreeMap::from([("bad header".into(), "x".into())])),
                    ..oauth()
                },
                "extraHeaders.bad header",
            ),
            (
                OauthInput {
                    refresh_token: Some("r".into()),
                    ..oauth()
                },
                "refreshToken",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(field_of(parse_oauth(input).unwrap_err()), field);
        }
    }

    #[test]
    fn http_credentials_are_checked() {
        let basic = |u: &str, p: &str| HttpAuth::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert!(check_http_auth(&basic("u", "p")).is_ok());
        assert!(check_http_auth(&basic("u", "")).is_ok());
        assert_eq!(
            field_of(check_http_auth(&basic("a:b", "p")).unwrap_err()),
            "username"
        );
        assert_eq!(
            field_of(check_http_auth(&basic("", "p")).unwrap_err()),
            "username"
        );
        assert_eq!(
            field_of(check_http_auth(&basic("u", "p\n")).unwrap_err()),
            "password"
        );
        let bearer = |t: &str| HttpAuth::Bearer { token: t.into() };
        assert!(check_http_auth(&bearer("abc.def-_~+/=")).is_ok());
        for bad in ["", "a b", "é", &"x".repeat(5000)] {
            assert_eq!(
                field_of(check_http_auth(&bearer(bad)).unwrap_err()),
                "token"
            );
        }
    }

    #[test]
    fn views_hold_no_secrets() {
        let auth = EndpointAuth {
            http: Some(HttpAuth::Basic {
                username: "u".into(),
                password: "hunter2".into(),
            }),
            oauth: Some(OauthClientCredentials {
                extra_headers: BTreeMap::from([("X-Key".into(), "k3y".into())]),
                ..parse_oauth(oauth()).unwrap()
            }),
            mtls: Some(MtlsIdentity {
                pem: "PRIVATE".into(),
                certificate_sha256: "ab".into(),
            }),
        };
        let view = AuthView(&auth);
        let all = format!(
            "{:?}{:?}{:?}",
            view.of(AuthPart::Http),
            view.of(AuthPart::Oauth),
            view.of(AuthPart::Mtls)
        );
        for secret in ["hunter2", "secret", "k3y", "PRIVATE"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
        assert!(all.contains("\"username\": String(\"u\")"), "{all}");
        assert!(all.contains("\"X-Key\": String(\"********\")"), "{all}");
        assert_eq!(AuthView(&EndpointAuth::default()).of(AuthPart::Mtls), None);
    }
}
