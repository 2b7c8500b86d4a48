//! The part of an ingest URL a provider controls (the path after
//! `/ingest/{token}` and the query string), kept so it can be passed on to a
//! source's destinations.
//!
//! Neither is covered by the provider's signature, so anyone who knows an
//! ingest URL chooses them. A [`ForwardPath`] exists only when the suffix
//! cannot leave the destination's own path once joined to it: no segment is
//! a dot segment in any spelling or encoding, none hides a separator, and
//! every segment is re-encoded so that the destination sees exactly the
//! segments that were checked. Dot segments are those of RFC 3986 §3.3 and
//! §5.2.4; the WHATWG URL Standard (which `url` and browsers follow) also
//! reads `%2e` as a dot, and servlet containers strip `;parameters` before
//! resolving them, hence the spellings refused here.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;
use url::Url;

/// Bytes written as they are in a forwarded segment: RFC 3986's unreserved
/// characters. Everything else (`;`, `:`, `%`, `=`, ...) is percent-encoded
/// so no server can read structure into it.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-decoding rounds tried on a segment before it is refused as
/// encoded too many times to be checked.
const MAX_DECODES: usize = 4;

/// Longest segment quoted back in an error message.
const QUOTE_MAX: usize = 64;

/// Why a provider-controlled suffix cannot be passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    #[error("the path suffix must start with '/'")]
    Relative,
    #[error("path segment '{0}' is a dot segment ('.' or '..', in some spelling or encoding)")]
    DotSegment(String),
    #[error("path segment '{0}' contains a path separator ('\\', or '/' or '\\' percent-encoded)")]
    Separator(String),
    #[error("path segment '{0}' contains a control character")]
    Control(String),
    #[error(
        "path segment '{0}' is not UTF-8 once decoded (overlong forms such as %c0%ae are '.' to some servers)"
    )]
    NotUtf8(String),
    #[error("path segment '{0}' is percent-encoded more than {MAX_DECODES} times over")]
    TooDeeplyEncoded(String),
    #[error("destination URL '{0}' cannot be extended with a path")]
    Destination(String),
}

/// A checked, normalised ingest suffix: `path` is empty or starts with `/`
/// and holds strictly encoded segments; `query` holds only characters that
/// RFC 3986 §3.4 allows in a query, so it cannot end the query early.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardPath {
    path: String,
    query: Option<String>,
}

impl ForwardPath {
    /// Checks the raw (still percent-encoded) path suffix of a request, as
    /// it appeared on the request line, and its raw query (`None` or empty:
    /// no query).
    ///
    /// # Errors
    /// [`UnsafePath`] naming the first offending segment.
    pub fn parse(suffix: &str, query: Option<&str>) -> Result<Self, UnsafePath> {
        let path = if suffix.is_empty() {
            String::new()
        } else {
            let rest = suffix.strip_prefix('/').ok_or(UnsafePath::Relative)?;
            let mut path = String::with_capacity(suffix.len());
            for segment in rest.split('/') {
                path.push('/');
                path.push_str(&checked_segment(segment)?);
            }
            path
        };
        let query = query.filter(|q| !q.is_empty()).map(normalised_query);
        Ok(Self { path, query })
    }

    /// Reads a suffix as stored with a message (`path?query`, see
    /// [`ForwardPath::to_stored`]), checking it again: rows written by
    /// versions before this check hold the suffix as the provider sent it.
    ///
    /// # Errors
    /// As [`ForwardPath::parse`].
    pub fn from_stored(stored: &str) -> Result<Self, UnsafePath> {
        match stored.split_once('?') {
            Some((path, query)) => Self::parse(path, Some(query)),
            None => Self::parse(stored, None),
        }
    }

    /// The form kept with a message: the path followed by `?query` when
    /// there is one; empty when there is neither.
    pub fn to_stored(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The destination URL extended by this suffix: the segments go under
    /// the destination's path (a trailing slash on either is kept once), and
    /// the destination's query comes first, then the provider's, joined by
    /// `&`. A suffix of `/` alone adds nothing.
    ///
    /// # Errors
    /// [`UnsafePath::Destination`] when `base` is not an absolute URL that
    /// can hold a path.
    pub fn join(&self, base: &str) -> Result<String, UnsafePath> {
        let adds_path = !self.path.is_empty() && self.path != "/";
        if !adds_path && self.query.is_none() {
            return Ok(base.to_owned());
        }
        let bad_base = || UnsafePath::Destination(quote(base));
        let mut url = Url::parse(base).map_err(|_| bad_base())?;
        if url.cannot_be_a_base() {
            return Err(bad_base());
        }
        if adds_path {
            let base_path = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base_path}{}", self.path));
            // Nothing in a checked suffix can move the result out from under
            // the base; this guards the guarantee against a change in `url`.
            let under = url
                .path()
                .strip_prefix(base_path.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
            if !under {
                return Err(UnsafePath::DotSegment(quote(&self.path)));
            }
        }
        let queries: Vec<&str> = [url.query(), self.query.as_deref()]
            .into_iter()
            .flatten()
            .filter(|q| !q.is_empty())
            .collect();
        if !queries.is_empty() {
            let merged = queries.join("&");
            url.set_query(Some(&merged));
        }
        Ok(url.into())
    }
}

/// One segment, refused if any of its decodings is unsafe, otherwise
/// decoded once (the provider's encoding) and re-encoded strictly.
fn checked_segment(raw: &str) -> Result<String, UnsafePath> {
    let mut level: Cow<[u8]> = Cow::Borrowed(raw.as_bytes());
    let mut rounds = 0;
    loop {
        check_decoded(&level, rounds > 0).map_err(|e| e(quote(raw)))?;
        let next: Cow<[u8]> = percent_decode(&level).into();
        if next == level {
            break;
        }
        if rounds == MAX_DECODES {
            return Err(UnsafePath::TooDeeplyEncoded(quote(raw)));
        }
        level = Cow::Owned(next.into_owned());
        rounds += 1;
    }
    let value: Cow<[u8]> = percent_decode(raw.as_bytes()).into();
    Ok(percent_encode(&value, SEGMENT).to_string())
}

/// The checks made on a segment at every level of decoding. `decoded`:
/// whether `/` here came from an escape (a raw one splits segments instead).
fn check_decoded(bytes: &[u8], decoded: bool) -> Result<(), fn(String) -> UnsafePath> {
    check_ascii_rules(bytes, decoded)?;
    if bytes.is_ascii() {
        return Ok(());
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(UnsafePath::NotUtf8);
    };
    // Servers that normalise paths (NFKC, as some frameworks and file
    // systems do) read full-width '．', '／', '＼' and '‥' as '.', '/', '\\'
    // and '..': the same rules apply to the normalised form.
    let normalised: String = text.nfkc().collect();
    check_ascii_rules(normalised.as_bytes(), true)
}

fn check_ascii_rules(bytes: &[u8], decoded: bool) -> Result<(), fn(String) -> UnsafePath> {
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(UnsafePath::Control);
    }
    if bytes.contains(&b'\\') || (decoded && bytes.contains(&b'/')) {
        return Err(UnsafePath::Separator);
    }
    // `..;jsessionid=x` is `..` to a servlet container; a name made only of
    // dots is never a useful resource name and `...` means `..` to some
    // Windows servers.
    let name = bytes.split(|&b| b == b';').next().unwrap_or_default();
    if !name.is_empty() && name.iter().all(|&b| b == b'.') {
        return Err(UnsafePath::DotSegment);
    }
    Ok(())
}

/// The query with every byte that RFC 3986 does not allow in a query
/// (`#`, spaces, quotes, non-ASCII, a `%` not starting an escape, ...)
/// percent-encoded; valid escapes and everything else are kept as sent.
fn normalised_query(query: &str) -> String {
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

fn quote(text: &str) -> String {
    if text.len() <= QUOTE_MAX {
        return text.to_owned();
    }
    let mut end = QUOTE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:19511/stripe/hook";

    fn joined(suffix: &str, query: Option<&str>, base: &str) -> String {
        ForwardPath::parse(suffix, query)
            .unwrap_or_else(|e| panic!("{suffix}: {e}"))
            .join(base)
            .unwrap()
    }

    #[test]
    fn hostile_suffixes_are_refused() {
        let table = [
            ("/%2e%2e/%2e%2e/admin", "dot"),
            ("/..", "dot"),
            ("/../admin", "dot"),
            ("/./admin", "dot"),
            ("/a/../../admin", "dot"),
            ("/%2e", "dot"),
            ("/%2E%2e", "dot"),
            ("/.%2e", "dot"),
            ("/%2e.", "dot"),
            ("/%252e%252e", "dot"),
            ("/%25252e%25252E", "dot"),
            ("/..;param", "dot"),
            ("/..;", "dot"),
            ("/%2e%2e;x=1", "dot"),
            ("/..%3bx", "dot"),
            ("/...", "dot"),
            ("/a%2f..%2fadmin", "separator"),
            ("/a%2F..", "separator"),
            ("/%252f", "separator"),
            ("/a%5c..%5cadmin", "separator"),
            ("/a%5C", "separator"),
            ("/..\\admin", "separator"),
            ("/a\\b", "separator"),
            ("/a%00", "control"),
            ("/a%0d%0aX-Injected:1", "control"),
            ("/a%2500", "control"),
            ("/a%7f", "control"),
            // Overlong UTF-8 for '.', and what NFKC turns into '.', '..', '/' or '\\'.
            ("/%c0%ae%c0%ae/admin", "utf8"),
            ("/%ff", "utf8"),
            ("/%ef%bc%8e%ef%bc%8e/admin", "dot"),
            ("/%e2%80%a5/admin", "dot"),
            ("/a%ef%bc%8fb", "separator"),
            ("/a%ef%bc%bcb", "separator"),
        ];
        for (suffix, want) in table {
            let got = ForwardPath::parse(suffix, None);
            let kind = match &got {
                Err(UnsafePath::DotSegment(_)) => "dot",
                Err(UnsafePath::Separator(_)) => "separator",
                Err(UnsafePath::Control(_)) => "control",
                Err(UnsafePath::NotUtf8(_)) => "utf8",
                _ => "other",
            };
            assert_eq!(kind, want, "{suffix}: {got:?}");
        }
        assert!(
            ForwardPath::parse("/caf%C3%A9/na%C3%AFve", None).is_ok(),
            "UTF-8 names pass"
        );
        assert_eq!(
            ForwardPath::parse("a", None),
            Err(UnsafePath::Relative),
            "a suffix starts after the token's slash"
        );
        assert!(matches!(
            ForwardPath::parse("/%2525252525252e", None),
            Err(UnsafePath::TooDeeplyEncoded(_))
        ));
        assert_eq!(
            ForwardPath::parse("/ok/%2e%2e", None),
            Err(UnsafePath::DotSegment("%2e%2e".into()))
        );
    }

    #[test]
    fn normal_suffixes_are_passed_on() {
        assert_eq!(
            joined("/orders/7", Some("full=1"), "http://svc/partner"),
            "http://svc/partner/orders/7?full=1"
        );
        assert_eq!(
            joined("/orders/", None, "http://svc/partner"),
            "http://svc/partner/orders/",
            "a trailing slash is passed on as sent"
        );
        assert_eq!(joined("/a", None, "http://svc/hook/"), "http://svc/hook/a");
        assert_eq!(joined("/a", None, "http://svc"), "http://svc/a");
        assert_eq!(
            joined("", Some("x=1"), "http://svc/hook?k=v"),
            "http://svc/hook?k=v&x=1",
            "the destination's query first"
        );
        assert_eq!(
            joined("/", None, "http://svc/hook?k=v"),
            "http://svc/hook?k=v"
        );
        assert_eq!(joined("", None, "http://svc/hook"), "http://svc/hook");
        assert_eq!(joined("/a/b", Some(""), "http://svc/h"), "http://svc/h/a/b");
        // Dots inside a name, encoded letters, and `..` as part of a name stay.
        assert_eq!(
            joined("/v1.2/..a/a../%41b", None, "http://svc/h"),
            "http://svc/h/v1.2/..a/a../Ab"
        );
        assert_eq!(joined("/a//b", None, "http://svc/h"), "http://svc/h/a//b");
    }

    #[test]
    fn segments_are_re_encoded_strictly() {
        assert_eq!(
            joined("/a;b=c/x:y/%3B/caf%C3%A9/50%25", None, "http://svc/h"),
            "http://svc/h/a%3Bb%3Dc/x%3Ay/%3B/caf%C3%A9/50%25"
        );
        assert_eq!(
            joined("/%2541", None, "http://svc/h"),
            "http://svc/h/%2541",
            "one level of the provider's encoding is kept"
        );
        // Stored form is stable: reading it back changes nothing.
        let once = ForwardPath::parse("/a;b/%2541/x y", Some("q=1 2#f")).unwrap();
        let twice = ForwardPath::from_stored(&once.to_stored()).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn queries_cannot_change_the_url_structure() {
        assert_eq!(
            joined("/a", Some("x=1#frag&y=\"<>\" %zz%41"), "http://svc/h"),
            "http://svc/h/a?x=1%23frag&y=%22%3C%3E%22%20%25zz%41"
        );
        assert_eq!(
            joined("", Some("a=b&c=/d?e"), "http://svc/h"),
            "http://svc/h?a=b&c=/d?e"
        );
    }

    #[test]
    fn stored_paths_from_older_versions_are_checked_again() {
        assert!(matches!(
            ForwardPath::from_stored("/%2e%2e/%2e%2e/admin?q=1"),
            Err(UnsafePath::DotSegment(_))
        ));
        assert_eq!(
            ForwardPath::from_stored("/orders/7?full=1")
                .unwrap()
                .join("http://svc/p")
                .unwrap(),
            "http://svc/p/orders/7?full=1"
        );
        assert_eq!(
            ForwardPath::from_stored("?x=1")
                .unwrap()
                .join("http://svc/p")
                .unwrap(),
            "http://svc/p?x=1"
        );
    }

    #[test]
    fn the_issue_input_stays_under_the_destination() {
        assert!(matches!(
            ForwardPath::parse("/%2e%2e/%2e%2e/admin", Some("q=1")),
            Err(UnsafePath::DotSegment(_))
        ));
        assert_eq!(
            joined("/admin", Some("q=1"), BASE),
            "http://127.0.0.1:19511/stripe/hook/admin?q=1"
        );
        assert!(matches!(
            ForwardPath::parse("/a", None).unwrap().join("mailto:x@y"),
            Err(UnsafePath::Destination(_))
        ));
    }
}
