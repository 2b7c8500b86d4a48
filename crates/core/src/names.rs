//! Validated user-supplied names. A value of these types is known to be valid,
//! so handlers and the store never re-check.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

fn check_token(kind: &str, s: &str, max: usize) -> Result<(), InvalidName> {
    if s.is_empty() {
        return Err(InvalidName(format!("{kind} must not be empty")));
    }
    if s.len() > max {
        return Err(InvalidName(format!(
            "{kind} must be at most {max} characters"
        )));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(InvalidName(format!(
            "{kind} may only contain letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

macro_rules! token_type {
    ($name:ident, $kind:literal, $max:expr) => {
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidName> {
                check_token($kind, s, $max)?;
                Ok(Self(s.to_owned()))
            }

            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_type!(EventTypeName, "event type name", 256);
token_type!(Channel, "channel", 128);

/// A caller-chosen alias for an application or endpoint. It may not look like an
/// id of any kind, so a path segment is never ambiguous.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Uid(String);

impl Uid {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        check_token("uid", s, 256)?;
        if let Some((prefix, _)) = s.split_once('_')
            && matches!(prefix, "app" | "ep" | "msg" | "atmpt" | "src")
        {
            return Err(InvalidName(format!(
                "uid must not start with the reserved prefix '{prefix}_'"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute http(s) URL with a host, at most 65 536 bytes long.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let s = s.trim();
        if s.len() > 65_536 {
            return Err(InvalidName("url is too long".into()));
        }
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| InvalidName("url must start with http:// or https://".into()))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(InvalidName("url must have a host".into()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidName("url must not contain whitespace".into()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validate() {
        assert!(EventTypeName::parse("invoice.paid").is_ok());
        assert!(EventTypeName::parse("bad name").is_err());
        assert!(EventTypeName::parse("").is_err());
        assert!(Uid::parse("customer-42").is_ok());
        assert!(Uid::parse("app_123").is_err());
        assert!(EndpointUrl::parse("https://example.com/hook").is_ok());
        assert!(EndpointUrl::parse("ftp://example.com").is_err());
        assert!(EndpointUrl::parse("http:///nohost").is_err());
        assert!(EndpointUrl::parse("http://exa mple.com").is_err());
    }
}
