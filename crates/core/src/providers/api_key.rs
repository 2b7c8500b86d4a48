//! A fixed key in a header (`api-key`). Config: `{"key": "…", "header":
//! "X-API-Key"}` (the header is optional, `X-API-Key` by default); the key
//! is the secret a rotation replaces.

use super::{Provider, Text, Verify, read_config};
use crate::source::FieldError;
use crate::verify::{Incoming, Rejection, constant_time_eq, present_header};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct ApiKey;

/// The config as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub header: Text,
    pub key: Text,
}

/// The config, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHeader {
    /// Letters, digits, `-` and `_`; matched case-insensitively.
    pub header: String,
    pub key: String,
}

const DEFAULT_HEADER: &str = "X-API-Key";

impl Provider for ApiKey {
    fn kind(&self) -> &'static str {
        "api-key"
    }

    fn parse(&self, config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        let config: Config = read_config(config)?;
        let header = config
            .header
            .optional("header")?
            .unwrap_or(DEFAULT_HEADER)
            .to_owned();
        if !super::is_header_name(&header) {
            return Err(FieldError::config("header", "must be a header name"));
        }
        let key = config.key.required("key", "")?;
        Ok(Box::new(KeyHeader { header, key }))
    }

    fn secret_field(&self) -> Option<&'static str> {
        Some("key")
    }
}

impl Verify for KeyHeader {
    fn secret(&self) -> Option<&str> {
        Some(&self.key)
    }

    /// Any of `secrets` in the header, compared in constant time after
    /// trimming surrounding whitespace.
    fn verify(
        &self,
        secrets: &[&str],
        incoming: &Incoming<'_>,
        _tolerance_secs: Option<i64>,
    ) -> Result<(), Rejection> {
        let given = present_header(incoming, &self.header, "API key")?;
        if secrets
            .iter()
            .any(|k| constant_time_eq(k.as_bytes(), given.trim().as_bytes()))
        {
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

    #[test]
    fn defaults_and_the_default_header() {
        assert_eq!(ApiKey.defaults(), Defaults::plain());
        assert_eq!(ApiKey.secret_field(), Some("key"));
        let v = ApiKey.parse(&object(json!({"key": "k1"}))).expect("config");
        let headers = [("x-api-key", "k1")];
        assert_eq!(
            v.verify(&["k1"], &incoming(&headers, b"", "", 0), None),
            Ok(())
        );
        for (config, error) in [
            (json!({}), "config.key: required"),
            (
                json!({"header": "X Y", "key": "k"}),
                "config.header: must be a header name",
            ),
            (
                json!({"header": 1, "key": 1}),
                "config.header: must be a non-empty string",
            ),
            (json!({"key": 1}), "config.key: must be a non-empty string"),
        ] {
            assert_eq!(
                ApiKey
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
    fn any_accepted_key_verifies() {
        let v = ApiKey
            .parse(&object(json!({"header": "X-Partner-Key", "key": "k2"})))
            .expect("config");
        let headers = [("x-partner-key", " k2 ")];
        let request = incoming(&headers, b"", "", 0);
        assert_eq!(v.verify(&["k1", "k2"], &request, None), Ok(()));
        assert_eq!(v.verify(&["k1"], &request, None), Err(Rejection::Mismatch));
        assert_eq!(
            v.verify(&["k1"], &incoming(&[("x-other", "k1")], b"", "", 0), None),
            Err(Rejection::MissingHeader("API key"))
        );
    }
}
