//! HTTP Basic authentication (`basic-auth`): `Authorization: Basic
//! base64(user:password)`, the scheme name in any case (RFC 9110 §11.1).
//! Config: `{"username": "…", "password": "…"}`; the password is the secret
//! a rotation replaces, and a retired one is accepted with the same user.

use super::{Provider, Text, Verify, read_config};
use crate::source::FieldError;
use crate::verify::{
    Incoming, Rejection, authorization_credentials, constant_time_eq, required_header,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct BasicAuth;

/// The config as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub username: Text,
    pub password: Text,
}

/// The config, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Without `:`, which would make `user:password` ambiguous.
    pub username: String,
    pub password: String,
}

impl Provider for BasicAuth {
    fn kind(&self) -> &'static str {
        "basic-auth"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        let config: Config = read_config(config)?;
        let username = config.username.required("username", "")?;
        if username.contains(':') {
            return Err(FieldError::config("username", "must not contain ':'"));
        }
        let password = config.password.required("password", "")?;
        Ok(Box::new(Credentials { username, password }))
    }

    fn secret_field(&self) -> Option<&'static str> {
        Some("password")
    }
}

impl Verify for Credentials {
    fn secret(&self) -> Option<&str> {
        Some(&self.password)
    }

    /// Any of `secrets` is a password accepted with the configured user.
    fn verify(
        &self,
        secrets: &[&str],
        incoming: &Incoming<'_>,
        _tolerance_secs: Option<i64>,
    ) -> Result<(), Rejection> {
        let value = required_header(incoming, "Authorization")?;
        let encoded = authorization_credentials(value, "Basic")
            .ok_or(Rejection::Malformed("Authorization"))?;
        let given = BASE64
            .decode(encoded.trim())
            .map_err(|_| Rejection::Malformed("Authorization"))?;
        let accepted = secrets.iter().any(|password| {
            let pair = format!("{}:{password}", self.username);
            constant_time_eq(pair.as_bytes(), &given)
        });
        if accepted {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Defaults;
    use crate::providers::testing::{incoming, object};
    use serde_json::json;

    fn verifier() -> Box<dyn Verify> {
        BasicAuth
            .parse(&object(json!({"username": "user", "password": "pw"})))
            .expect("config")
    }

    #[test]
    fn defaults_and_secret_field() {
        assert_eq!(BasicAuth.defaults(), Defaults::plain());
        assert_eq!(BasicAuth.secret_field(), Some("password"));
        for (config, error) in [
            (json!({}), "config.username: required"),
            (json!({"password": 2}), "config.username: required"),
            (
                json!({"username": "a:b", "password": "p"}),
                "config.username: must not contain ':'",
            ),
            (json!({"username": "u"}), "config.password: required"),
            (
                json!({"username": 1, "password": "p"}),
                "config.username: must be a non-empty string",
            ),
        ] {
            assert_eq!(
                BasicAuth
                    .parse(&object(config.clone()))
                    .err()
                    .map(|e| e.to_string())
                    .as_deref(),
                Some(error),
                "{config}"
            );
        }
    }

    #[test]
    fn credentials_verify_with_any_accepted_password() {
        let auth = format!("Basic {}", BASE64.encode("user:pw"));
        let headers = [("authorization", auth.as_str())];
        let request = incoming(&headers, b"", "", 0);
        assert_eq!(verifier().verify(&["old", "pw"], &request, None), Ok(()));
        assert_eq!(
            verifier().verify(&["other"], &request, None),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verifier().verify(&["pw"], &incoming(&[], b"", "", 0), None),
            Err(Rejection::MissingHeader("Authorization"))
        );
    }

    #[test]
    fn the_scheme_name_matches_in_any_case() {
        let encoded = BASE64.encode("user:pw");
        for scheme in ["basic", "BASIC", "bAsIc"] {
            let auth = format!("{scheme} {encoded}");
            let headers = [("Authorization", auth.as_str())];
            assert_eq!(
                verifier().verify(&["pw"], &incoming(&headers, b"", "", 0), None),
                Ok(()),
                "{scheme}"
            );
        }
    }
}
