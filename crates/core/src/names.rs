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

/// What every validated name shares: read access, conversion back to text,
/// display, serialization as the plain string, and `from_trusted` for values
/// read back from our own store (which only holds values once parsed).
macro_rules! name_common {
    ($name:ident) => {
        impl $name {
            /// For values read back from our own store, which only ever holds
            /// values that were parsed when they came in.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
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

        /// Reads as the text it holds, so `&str` APIs (and `Option::as_deref`)
        /// take it directly.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// Deserializing parses: a value read from JSON is checked as one from a
/// request would be.
macro_rules! name_deserialize {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, InvalidName> {
                Self::parse(&s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
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
        }

        name_common!($name);
        name_deserialize!($name);
    };
}

token_type!(EventTypeName, "event type name", 256);
token_type!(Channel, "channel", 128);

/// A caller-chosen alias for an application or endpoint. It may not look like an
/// id of any kind, so a path segment is never ambiguous.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
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
}

impl Uid {
    /// The uid a source's application gets: the source's id, so the
    /// application is addressable as `/app/{source id}`. Users cannot pick a
    /// uid with an id prefix, so this one never collides with theirs.
    pub fn of_source(source: &crate::SourceId) -> Self {
        Self(source.as_str().to_owned())
    }
}

name_common!(Uid);
name_deserialize!(Uid);

/// An absolute URL a delivery can be sent to, at most 65 536 bytes long,
/// kept as the user wrote it (trimmed): an http(s) URL, or a broker URL of a
/// scheme this build delivers to ([`EndpointUrl::parse_for`]).
///
/// Refused, each with a message naming the problem, is what no delivery can
/// ever reach: a scheme other than `http`/`https` or a registered broker
/// scheme (any case); no host; an IPv6 zone such as `[fe80::1%25eth0]`
/// (RFC 6874: a zone names an interface of one machine, and the WHATWG URL
/// parser that deliveries use has no place for it); port 0; a host name DNS
/// cannot carry (over 253 octets, a label over 63 or an empty label,
/// RFC 1035 section 2.3.4); whitespace or control characters; anything else
/// the WHATWG URL parser rejects.
///
/// Internal addresses are accepted: the SSRF guard judges them at delivery
/// time against the allow-list in force then. User info (`user:pass@host`)
/// is accepted in http(s) URLs, as Svix does, and sent as HTTP Basic
/// authorization; a broker URL refuses it (every endpoint read would show
/// the password), its credentials are the endpoint's `http-auth` instead.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Whether it is an https URL (the scheme in any case).
    pub fn is_https(&self) -> bool {
        self.0
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// Whether it is an http or https URL (delivered by the HTTP client),
    /// not a broker URL.
    pub fn is_http(&self) -> bool {
        self.is_https()
            || self
                .0
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    }

    /// The scheme as written (compare it ignoring case).
    pub fn scheme(&self) -> &str {
        self.0.split_once(':').map_or("", |(scheme, _)| scheme)
    }

    /// An http(s) URL; see [`EndpointUrl::parse_for`] for broker URLs.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        Self::parse_for(s, &[])
    }

    /// An http(s) URL, or a URL of one of `broker_schemes` (lowercase
    /// names, such as `redis`, of the broker destinations registered in
    /// this build). A broker URL follows the rules above and has no user
    /// info and no fragment; what its query means is for its destination
    /// to check.
    pub fn parse_for(s: &str, broker_schemes: &[&str]) -> Result<Self, InvalidName> {
        let s = s.trim();
        if s.len() > 65_536 {
            return Err(InvalidName("url is too long".into()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidName("url must not contain whitespace".into()));
        }
        let (rest, broker) = match strip_prefix_ignore_case(s, "https://")
            .or_else(|| strip_prefix_ignore_case(s, "http://"))
        {
            Some(rest) => (rest, false),
            None => {
                let rest = s
                    .split_once("://")
                    .filter(|(scheme, _)| {
                        broker_schemes.iter().any(|b| b.eq_ignore_ascii_case(scheme))
                    })
                    .map(|(_, rest)| rest)
                    .ok_or_else(|| {
                        InvalidName(if broker_schemes.is_empty() {
                            "url must start with http:// or https://".into()
                        } else {
                            format!(
                                "url must start with http:// or https://, or be a broker URL of a scheme this Switchyard delivers to ({})",
                                broker_schemes
                                    .iter()
                                    .map(|b| format!("{b}://"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                    })?;
                (rest, true)
            }
        };
        // The URL parser reads `http:///host` as `http://host/`; a user who
        // wrote no host between the slashes meant something else.
        let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
        if broker && authority.contains('@') {
            return Err(InvalidName(
                "url must not hold credentials (user info before '@'): every endpoint read shows the URL; set the broker's username and password with the endpoint's http-auth (basic) instead".into(),
            ));
        }
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(InvalidName("url must have a host".into()));
        }
        if host.starts_with('[') && host.contains('%') {
            return Err(InvalidName(
                "url must not have an IPv6 zone (such as %25eth0): a zone only means something on one machine, so deliveries cannot use it".into(),
            ));
        }
        let parsed =
            url::Url::parse(s).map_err(|e| InvalidName(format!("url is not valid: {e}")))?;
        if parsed.port() == Some(0) {
            return Err(InvalidName("url port must be between 1 and 65535".into()));
        }
        if broker && parsed.fragment().is_some() {
            return Err(InvalidName("url must not have a fragment ('#...')".into()));
        }
        let name = match parsed.host() {
            Some(url::Host::Domain(name)) => Some(name),
            // A scheme the WHATWG parser does not know keeps its host as
            // written ("opaque"); it must still be a host a connection can
            // reach.
            None => return Err(InvalidName("url must have a host".into())),
            _ => None,
        };
        if let Some(name) = name {
            if broker && !is_dns_name(name) {
                return Err(InvalidName(
                    "url host must be a DNS name, a dotted IPv4 address or a bracketed IPv6 address".into(),
                ));
            }
            let name = name.strip_suffix('.').unwrap_or(name);
            if name.len() > 253 || name.split('.').any(|l| l.is_empty() || l.len() > 63) {
                return Err(InvalidName(
                    "url host is not a name DNS can resolve (at most 253 characters, labels of 1 to 63)".into(),
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

/// Letters, digits, `-`, `_` and dots: what a host name in a broker URL
/// may hold (such URLs keep their host undecoded, so `%`, `!` and the like
/// would reach the resolver as written). A name ending in a numeric label
/// must be a dotted-quad IPv4 address: the resolver reads other numeric
/// spellings (`127.1`, `0x7f.1`, `2130706433`) as addresses too, and only
/// one spelling of each is kept so the network policy can judge it on sight.
fn is_dns_name(name: &str) -> bool {
    let charset = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let last = name
        .strip_suffix('.')
        .unwrap_or(name)
        .rsplit('.')
        .next()
        .unwrap_or("");
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")));
    charset && (!numeric || name.parse::<std::net::Ipv4Addr>().is_ok())
}

name_common!(EndpointUrl);
name_deserialize!(EndpointUrl);

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The event type a message carries: an [`EventTypeName`] for messages
/// created through the API, or the name a provider gave an incoming webhook,
/// which may hold characters names may not (Shopify's `orders/create`, a
/// non-ASCII name) and is kept as the provider wrote it, made printable and
/// bounded by [`MessageEventType::from_provider`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct MessageEventType(String);

impl MessageEventType {
    /// Longest kept provider event type, in characters.
    pub const MAX_CHARS: usize = 256;

    /// A provider's event type: control characters dropped, whitespace made
    /// `_`, cut to [`Self::MAX_CHARS`] characters; `unknown` when nothing is
    /// left.
    pub fn from_provider(raw: &str) -> Self {
        let cleaned: String = raw
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .take(Self::MAX_CHARS)
            .collect();
        if cleaned.is_empty() {
            Self("unknown".into())
        } else {
            Self(cleaned)
        }
    }
}

name_common!(MessageEventType);

impl From<EventTypeName> for MessageEventType {
    fn from(name: EventTypeName) -> Self {
        Self(name.0)
    }
}

/// One entry of an endpoint's event-type filter: an event type or a pattern
/// in which `*` stands for any run of characters (`invoice.*`), 1 to 256
/// visible ASCII characters without commas. Looser than [`EventTypeName`]
/// because ingested events keep their provider's names (`orders/create`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EventTypePattern(String);

impl EventTypePattern {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(InvalidName(format!(
                "'{s}' must be 1 to 256 visible characters without commas"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// Whether `event_type` is this type or matches this pattern.
    pub fn matches(&self, event_type: &str) -> bool {
        crate::filter::event_type_matches(&self.0, event_type)
    }
}

name_common!(EventTypePattern);
name_deserialize!(EventTypePattern);

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
        assert!(EventTypePattern::parse("orders/create").is_ok());
        assert!(EventTypePattern::parse("invoice.*").is_ok());
        assert!(EventTypePattern::parse("a,b").is_err());
        assert!(EventTypePattern::parse("").is_err());
        assert!(EventTypePattern::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn broker_urls_are_accepted_only_for_registered_schemes() {
        let brokers = &["redis", "rediss"];
        let ok = |s: &str| EndpointUrl::parse_for(s, brokers).unwrap();
        let refused = |s: &str| EndpointUrl::parse_for(s, brokers).unwrap_err().0;
        let url = ok("redis://127.0.0.1:6379/0?stream=orders");
        assert!(!url.is_http() && !url.is_https());
        assert_eq!(url.scheme(), "redis");
        assert_eq!(ok("REDISS://cache.internal/?stream=s").scheme(), "REDISS");
        assert!(
            ok("redis://[::1]:6379/?stream=s")
                .as_str()
                .contains("[::1]")
        );
        assert!(ok("https://example.com/hook").is_http());
        assert!(ok("http://user:pw@example.com/hook").is_http());
        // Not registered in this build, or not registered at all.
        for s in ["amqp://broker/x", "ftp://example.com", "redis:/x"] {
            let e = refused(s);
            assert!(e.contains("redis://, rediss://"), "{s}: {e}");
        }
        assert_eq!(
            EndpointUrl::parse("redis://127.0.0.1/?stream=s")
                .unwrap_err()
                .0,
            "url must start with http:// or https://"
        );
        // Credentials never in a broker URL.
        for s in [
            "redis://user:pw@127.0.0.1/?stream=s",
            "redis://:pw@127.0.0.1/?stream=s",
            "rediss://user@127.0.0.1/?stream=s",
        ] {
            assert!(refused(s).contains("http-auth"), "{s}");
        }
        assert!(refused("redis://127.0.0.1/?stream=s#x").contains("fragment"));
        assert!(refused("redis:///?stream=s").contains("host"));
        assert!(refused("redis://:6379/?stream=s").contains("host"));
        assert!(refused("redis://h:0/?stream=s").contains("port"));
        assert!(refused("redis://[fe80::1%25eth0]/").contains("zone"));
        // One spelling per address, so the policy can judge literals.
        for s in [
            "redis://127.1/?stream=s",
            "redis://2130706433/?stream=s",
            "redis://0x7f.0.0.1/?stream=s",
            "redis://0177.0.0.1/?stream=s",
            "redis://ex%61mple.com/?stream=s",
        ] {
            assert!(refused(s).contains("host must be"), "{s}");
        }
        assert_eq!(ok("redis://redis-1.internal./?stream=s").scheme(), "redis");
    }

    #[test]
    fn provider_event_types_are_made_printable_and_bounded() {
        assert_eq!(
            MessageEventType::from_provider("orders/create").as_str(),
            "orders/create"
        );
        assert_eq!(
            MessageEventType::from_provider("a b\u{0}\tc\n").as_str(),
            "a_bc"
        );
        assert_eq!(MessageEventType::from_provider("\u{1}").as_str(), "unknown");
        assert_eq!(
            MessageEventType::from_provider(&"\u{e9}".repeat(300))
                .as_str()
                .chars()
                .count(),
            MessageEventType::MAX_CHARS
        );
    }

    #[test]
    fn endpoint_urls_that_can_never_be_delivered_are_refused() {
        for (url, problem) in [
            ("http://[fe80::1%25lo]/", "IPv6 zone"),
            ("http://[fe80::1%lo]/", "IPv6 zone"),
            ("https://u:p@[fe80::1%25eth0]:8443/x", "IPv6 zone"),
            ("ftp://example.com", "http:// or https://"),
            ("javascript:alert(1)", "http:// or https://"),
            ("http:example.com", "http:// or https://"),
            ("http://", "host"),
            ("http:///nohost", "host"),
            ("http://user@/x", "host"),
            ("http://:80/x", "host"),
            ("http://example.com:0/", "port"),
            ("http://example.com:65536/", "not valid"),
            ("http://example.com:8x/", "not valid"),
            ("http://[::1/", "not valid"),
            ("http://256.0.0.1/", "not valid"),
            ("http://exa%00mple.com/", "not valid"),
            ("http://a..b/", "DNS"),
            ("http://./", "DNS"),
            ("http://example.com\t/", "whitespace"),
        ] {
            let err = EndpointUrl::parse(url).expect_err(url).0;
            assert!(err.contains(problem), "{url}: {err}");
        }
        let long_label = format!("http://{}.com/", "a".repeat(64));
        assert!(
            EndpointUrl::parse(&long_label)
                .unwrap_err()
                .0
                .contains("DNS")
        );
        let long_name = format!("http://{}com/", "a.".repeat(127));
        assert!(
            EndpointUrl::parse(&long_name)
                .unwrap_err()
                .0
                .contains("DNS")
        );
    }

    #[test]
    fn endpoint_urls_the_guard_judges_later_are_accepted_as_written() {
        for url in [
            "https://example.com/hook",
            "HTTPS://Example.COM/hook",
            "http://127.0.0.1:9000/x",
            "http://2130706433/x",
            "http://localhost./x",
            "http://[::1]:8080/x",
            "http://[fe80::1]/x",
            "http://[64:ff9b::127.0.0.1]:19500/",
            "https://user:secret@example.com/hook?x=1#frag",
            "https://example.com:65535/",
            "http://bücher.example/",
        ] {
            assert_eq!(EndpointUrl::parse(url).expect(url).as_str(), url);
        }
        assert_eq!(
            EndpointUrl::parse(" https://example.com/ ")
                .unwrap()
                .as_str(),
            "https://example.com/"
        );
    }
}
