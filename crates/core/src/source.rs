//! Incoming-webhook sources as configured: the provider a source type names
//! (see [`crate::providers`]) with its secrets, and Switchyard's per-source
//! options (where the event type and the provider's delivery id are read
//! from, which headers are passed on, body limit, the answer given to the
//! provider). Parsing happens once, when a source is written or loaded;
//! requests then run against the compiled [`Plan`]. A refused definition is
//! a [`FieldError`] naming the field.

use crate::json::{DocumentError, parse_document};
use crate::names::MessageEventType;
use crate::providers::{self, Provider, Verify};
use crate::verify::{Incoming, Rejection};
use serde_json::map::Entry;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Seconds a signed timestamp may be off by, for schemes that sign one.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
pub const MAX_BODY_CEILING: usize = 16 << 20;

/// The config key under which secrets retired by a rotation were kept
/// before they became a field of the source of their own. Stored configs
/// that still hold it are migrated when read; it is never shown.
pub const LEGACY_RETIRED_SECRETS_KEY: &str = "retiredSecrets";

/// A step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object key (`config`, `secret`, `eventType`, ...).
    Key(String),
    /// A list position, from 0.
    Index(usize),
}

/// Where in a source definition a problem is, from the request body's top:
/// written `type`, `config.secret` or `settings.eventType[0].pointer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// A top-level field (`type`, `config`, `settings`).
    pub fn root(key: &str) -> Self {
        FieldPath(vec![Segment::Key(key.to_owned())])
    }

    /// The path of `key` inside this one.
    #[must_use]
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Segment::Key(key.to_owned()));
        self
    }

    /// The path of list position `index` inside this one.
    #[must_use]
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path below the top-level field `root`, when it starts there and
    /// goes deeper (`config.secret` below `config` is `secret`).
    pub fn below(&self, root: &str) -> Option<FieldPath> {
        match self.0.split_first() {
            Some((Segment::Key(first), rest)) if first == root && !rest.is_empty() => {
                Some(FieldPath(rest.to_vec()))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A refused source definition: the field, and what is wrong with it (a
/// sentence fragment such as `required for stripe sources`). Displayed as
/// `field: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct FieldError {
    pub path: FieldPath,
    pub problem: String,
}

impl FieldError {
    pub fn new(path: FieldPath, problem: impl Into<String>) -> Self {
        FieldError {
            path,
            problem: problem.into(),
        }
    }

    /// A problem at the path of `keys` (`["config"]`, `["settings", "dedupe"]`).
    pub fn at(keys: &[&str], problem: impl Into<String>) -> Self {
        let mut path = FieldPath(Vec::with_capacity(keys.len()));
        for key in keys {
            path = path.key(key);
        }
        FieldError::new(path, problem)
    }

    /// A problem with the config key `key` (`config.<key>`).
    pub fn config(key: &str, problem: impl Into<String>) -> Self {
        FieldError::new(FieldPath::root("config").key(key), problem)
    }
}

/// The provider of source type `kind`.
///
/// # Errors
/// `type`, naming the supported types, for any other.
pub fn provider(kind: &str) -> Result<&'static dyn Provider, FieldError> {
    providers::find(kind).ok_or_else(|| {
        let kinds: Vec<&str> = providers::kinds().collect();
        FieldError::at(
            &["type"],
            format!("'{kind}' is not supported; use one of {}", kinds.join(", ")),
        )
    })
}

/// Where a value is read from in an ingested request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A JSON pointer into the body (or into the form fields of a form body).
    Pointer(String),
    Header(String),
    /// A fixed value (event types only).
    Value(String),
}

impl Location {
    /// A JSON pointer (`/type`).
    pub fn pointer(pointer: &str) -> Self {
        Location::Pointer(pointer.to_owned())
    }

    /// A header, by name.
    pub fn header(name: &str) -> Self {
        Location::Header(name.to_owned())
    }

    fn parse(field: FieldPath, v: &Value, allow_value: bool) -> Result<Location, FieldError> {
        let Some((key, val)) = v
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        else {
            return Err(FieldError::new(
                field,
                format!(
                    "must be one of {{\"pointer\": \"/a/b\"}}, {{\"header\": \"Name\"}}{}",
                    if allow_value {
                        " or {\"value\": \"fixed\"}"
                    } else {
                        ""
                    }
                ),
            ));
        };
        let Some(text) = val.as_str().filter(|s| !s.is_empty() && s.len() <= 256) else {
            return Err(FieldError::new(
                field.key(key),
                "must be a string of 1 to 256 characters",
            ));
        };
        match key.as_str() {
            "pointer" if text.starts_with('/') => Ok(Location::Pointer(text.into())),
            "pointer" => Err(FieldError::new(
                field.key("pointer"),
                "a JSON pointer starts with '/'",
            )),
            "header" => Ok(Location::Header(text.into())),
            "value" if allow_value => Ok(Location::Value(text.into())),
            other => Err(FieldError::new(
                field,
                format!("unknown location '{other}'"),
            )),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Location::Pointer(p) => json!({ "pointer": p }),
            Location::Header(h) => json!({ "header": h }),
            Location::Value(v) => json!({ "value": v }),
        }
    }

    /// The value at this location, as text (numbers are written out).
    pub fn read(&self, request: &Incoming<'_>, document: Option<&Value>) -> Option<String> {
        match self {
            Location::Value(v) => Some(v.clone()),
            Location::Header(h) => request
                .header(h)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            Location::Pointer(p) => match document?.pointer(p)? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            },
        }
    }
}

/// A secret with the time it stops being accepted (`None`: current).
#[derive(Debug, Clone)]
pub struct Secret {
    pub value: String,
    /// Unix milliseconds.
    pub expires_at: Option<u64>,
}

/// What the provider is answered after the event is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

/// A source compiled for the request path.
#[derive(Debug, Clone)]
pub struct Plan {
    pub provider: &'static dyn Provider,
    /// The provider's config, read.
    pub verifier: Arc<dyn Verify>,
    /// The current secret first, then retired ones still in their grace
    /// period (see [`Plan::with_retired_secrets`]).
    pub secrets: Vec<Secret>,
    pub tolerance_secs: Option<i64>,
    pub event_type: Vec<Location>,
    pub dedupe: Vec<Location>,
    /// Lower-case header names passed on to destinations.
    pub forward_headers: Vec<String>,
    pub forward_path: bool,
    /// `None`: the server's limit.
    pub max_body_bytes: Option<usize>,
    pub reply: Option<Reply>,
    /// The URL as configured at the provider, for schemes that sign it
    /// (Twilio) when a proxy in front of Switchyard changes scheme, host or
    /// path; the request's query string is appended to it.
    pub signed_url: Option<String>,
}

impl Plan {
    /// The source type.
    pub fn kind(&self) -> &'static str {
        self.provider.kind()
    }

    /// Adds secrets a rotation retired, each accepted until its expiry
    /// (`(secret, unix milliseconds)`).
    #[must_use]
    pub fn with_retired_secrets<'a>(
        mut self,
        retired: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Self {
        self.secrets
            .extend(retired.into_iter().map(|(value, expires_at)| Secret {
                value: value.to_owned(),
                expires_at: Some(expires_at),
            }));
        self
    }

    /// Checks a request against the secrets valid at `now_ms`.
    pub fn verify(&self, request: &Incoming<'_>, now_ms: u64) -> Result<(), Rejection> {
        let secrets: Vec<&str> = self
            .secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now_ms))
            .map(|s| s.value.as_str())
            .collect();
        self.verifier.verify(&secrets, request, self.tolerance_secs)
    }

    /// The answer to the provider's verification handshake when `document`
    /// is one (answered instead of stored).
    pub fn challenge(&self, document: &Value) -> Option<Value> {
        self.provider.challenge(document, self.verifier.secret())
    }

    /// The event type: the first configured location that has a value, else
    /// the source type's name.
    pub fn event_type(&self, request: &Incoming<'_>, document: Option<&Value>) -> MessageEventType {
        let found = self
            .event_type
            .iter()
            .find_map(|l| l.read(request, document))
            .unwrap_or_else(|| self.kind().to_owned());
        MessageEventType::from_provider(&found)
    }

    /// The provider's delivery id, used to drop the provider's retries.
    /// A NUL character (which PostgreSQL cannot store in text) is kept as
    /// the six characters `\u0000`.
    pub fn dedupe_id(&self, request: &Incoming<'_>, document: Option<&Value>) -> Option<String> {
        self.dedupe
            .iter()
            .find_map(|l| l.read(request, document))
            .map(|id| {
                if id.contains('\0') {
                    id.replace('\0', "\\u0000")
                } else {
                    id
                }
            })
    }
}

/// Headers every source passes on unless its list is given explicitly.
const COMMON_FORWARD: &[&str] = &["content-type", "user-agent"];

/// Never passed on: they describe the hop, not the event, or would clash
/// with Switchyard's own signature on the delivery.
pub const NEVER_FORWARD: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "authorization",
    "cookie",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Compiles a source's type, config and settings. Retired secrets are not
/// part of the config; add them with [`Plan::with_retired_secrets`].
///
/// # Errors
/// A [`FieldError`] naming the offending field (`config.secret`,
/// `settings.eventType`, `type`, ...); the fields are checked in the order
/// config, settings, type, the provider's config keys, settings' keys.
pub fn compile(kind: &str, config: &Value, settings: &Value) -> Result<Plan, FieldError> {
    let empty = Map::new();
    let config = match config {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err(FieldError::at(&["config"], "must be an object")),
    };
    let settings = match settings {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err(FieldError::at(&["settings"], "must be an object")),
    };
    let provider = provider(kind)?;
    let verifier: Arc<dyn Verify> = Arc::from(provider.parse(config)?);
    let defaults = provider.defaults();
    let (mut event_type, mut dedupe) = (defaults.event_type, defaults.dedupe);
    let mut forward_headers: Vec<String> = COMMON_FORWARD
        .iter()
        .chain(defaults.forward_headers)
        .map(|s| s.to_string())
        .collect();
    if let Some(header) = verifier.signature_header() {
        forward_headers.push(header.to_ascii_lowercase());
    }
    let mut tolerance_secs = defaults.signs_time.then_some(DEFAULT_TOLERANCE_SECS);
    let mut forward_path = true;
    let mut max_body_bytes = None;
    let mut reply = None;
    let mut signed_url = None;
    for (key, value) in settings {
        let field = FieldPath::root("settings").key(key);
        let refuse = |problem: &str| Err(FieldError::new(field.clone(), problem));
        match key.as_str() {
            "eventType" => event_type = locations(field, value, true)?,
            "dedupe" => dedupe = locations(field, value, false)?,
            "forwardHeaders" => {
                let Some(list) = value.as_array() else {
                    return refuse("must be a list of header names");
                };
                forward_headers = Vec::with_capacity(list.len());
                for name in list {
                    let Some(name) = name.as_str().filter(|n| {
                        !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    }) else {
                        return refuse("each entry must be a header name");
                    };
                    let name = name.to_ascii_lowercase();
                    if NEVER_FORWARD.contains(&name.as_str()) {
                        return refuse(&format!("'{name}' cannot be passed on"));
                    }
                    forward_headers.push(name);
                }
            }
            "forwardPath" => {
                let Some(on) = value.as_bool() else {
                    return refuse("must be true or false");
                };
                forward_path = on;
            }
            "toleranceSeconds" => {
                tolerance_secs = match value {
                    Value::Null => None,
                    v => match v.as_i64().filter(|t| (1..=86_400 * 7).contains(t)) {
                        Some(t) => Some(t),
                        None => {
                            return refuse(
                                "must be 1 to 604800 seconds, or null for no clock check",
                            );
                        }
                    },
                }
            }
            "maxBodyBytes" => {
                let Some(n) = value
                    .as_u64()
                    .filter(|n| (1..=MAX_BODY_CEILING as u64).contains(n))
                else {
                    return refuse(&format!("must be 1 to {MAX_BODY_CEILING} bytes"));
                };
                max_body_bytes = Some(n as usize);
            }
            "response" => reply = Some(parse_reply(field, value)?),
            "signedUrl" => {
                signed_url = match value {
                    Value::Null => None,
                    Value::String(u)
                        if (u.starts_with("https://") || u.starts_with("http://"))
                            && !u.contains('?') =>
                    {
                        Some(u.clone())
                    }
                    _ => return refuse("must be an http(s) URL without a query string"),
                }
            }
            _ => return refuse("unknown setting"),
        }
    }
    Ok(Plan {
        provider,
        secrets: verifier
            .secret()
            .map(|value| Secret {
                value: value.to_owned(),
                expires_at: None,
            })
            .into_iter()
            .collect(),
        verifier,
        tolerance_secs,
        event_type,
        dedupe,
        forward_headers,
        forward_path,
        max_body_bytes,
        reply,
        signed_url,
    })
}

fn locations(
    field: FieldPath,
    value: &Value,
    allow_value: bool,
) -> Result<Vec<Location>, FieldError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Location::parse(field.clone().index(i), v, allow_value))
            .collect(),
        v => Ok(vec![Location::parse(field, v, allow_value)?]),
    }
}

fn parse_reply(field: FieldPath, value: &Value) -> Result<Reply, FieldError> {
    let Some(obj) = value.as_object() else {
        return Err(FieldError::new(
            field,
            "must be an object with status, body and contentType",
        ));
    };
    let status = match obj.get("status") {
        None => 200,
        Some(v) => match v.as_u64().filter(|s| (200..=299).contains(s)) {
            Some(s) => s as u16,
            None => return Err(FieldError::new(field.key("status"), "must be a 2xx status")),
        },
    };
    let body = match obj.get("body") {
        None => String::new(),
        Some(Value::String(s)) if s.len() <= 4096 => s.clone(),
        Some(_) => {
            return Err(FieldError::new(
                field.key("body"),
                "must be a string of at most 4096 bytes",
            ));
        }
    };
    let content_type = match obj.get("contentType") {
        None => "text/plain; charset=utf-8".to_owned(),
        Some(Value::String(s))
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            s.clone()
        }
        Some(_) => {
            return Err(FieldError::new(
                field.key("contentType"),
                "must be a media type",
            ));
        }
    };
    Ok(Reply {
        status,
        body,
        content_type,
    })
}

impl Plan {
    /// The settings in effect, defaults included, as the API shows them.
    pub fn settings_json(&self, server_max_body: usize) -> Value {
        let list = |ls: &[Location]| Value::Array(ls.iter().map(Location::to_json).collect());
        json!({
            "eventType": list(&self.event_type),
            "dedupe": list(&self.dedupe),
            "forwardHeaders": self.forward_headers,
            "forwardPath": self.forward_path,
            "toleranceSeconds": self.tolerance_secs,
            "maxBodyBytes": self.max_body_bytes.unwrap_or(server_max_body),
            "signedUrl": self.signed_url,
            "response": self.reply.as_ref().map(|r| json!({
                "status": r.status, "body": r.body, "contentType": r.content_type,
            })),
        })
    }
}

/// A source's config as the API shows it: the provider's secret left out
/// (and the key retired secrets were once kept under, should a config still
/// hold it).
pub fn public_config(kind: &str, config: &Value) -> Value {
    let Some(obj) = config.as_object() else {
        return json!({});
    };
    let secret = providers::find(kind).map_or(Some("secret"), |p| p.secret_field());
    let hidden = [secret.unwrap_or(""), LEGACY_RETIRED_SECRETS_KEY];
    Value::Object(
        obj.iter()
            .filter(|(k, _)| !hidden.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

const FORM_PAYLOAD_FIELD: &str = "payload";

/// The body as a JSON document for event-type and dedupe pointers and for
/// payload filters: JSON bodies as they are, form bodies as an object of
/// their fields, anything else not at all (`Ok(None)`).
///
/// The body itself is forwarded unchanged, so the document must not be a
/// reading of it that a receiver could disagree with. JSON (a whole body,
/// or the JSON in a form's `payload` field) goes through
/// [`crate::json::parse_document`], which refuses duplicate object keys; a
/// form field given more than once becomes an array of its values in the
/// order sent, so no single one of them is picked for a decision.
///
/// A leading UTF-8 byte order mark is skipped, and a body that is JSON is
/// checked for repeated keys whatever its declared content type. A body (or
/// form `payload` field) that is declared JSON or starts like JSON (`{`,
/// `[`) must be strict JSON: lenient parsers read `NaN`, trailing values or
/// lone surrogates, so routing on "no document" could differ from what a
/// receiver reads (`{"type":"a","n":NaN,"type":"b"}`).
///
/// # Errors
/// [`DocumentError::DuplicateKey`] when the JSON repeats an object key (for
/// a form's `payload` field the path starts with `payload`);
/// [`DocumentError::Syntax`] for JSON-looking text that is not strict JSON.
pub fn document_of(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<Value>, DocumentError> {
    // RFC 8259 §8.1 lets parsers ignore a byte order mark, and common ones
    // (Python's `json.loads` on bytes) do: decisions must read that JSON too.
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    // A body in a declared charset other than UTF-8 (a legacy system's
    // ISO-8859-1 JSON) is read in that charset; the bytes are stored and
    // forwarded unchanged either way.
    let decoded = content_type
        .and_then(charset_of)
        .filter(|e| *e != encoding_rs::UTF_8)
        .map(|e| e.decode_without_bom_handling_and_without_replacement(body));
    let text: &[u8] = match &decoded {
        Some(Some(text)) => text.as_bytes(),
        // Not text in its declared charset: bytes, no document.
        Some(None) => return Ok(None),
        None => body,
    };
    // Bytes that are not UTF-8 are not JSON to any receiver either (RFC
    // 8259 §8.1), so no decision can differ from a receiver's: no document.
    if std::str::from_utf8(text).is_err() && media.as_deref() != Some(FORM_MEDIA) {
        return Ok(None);
    }
    // The Content-Type header is not covered by any provider's signature and
    // many receivers parse the body as JSON whatever it says, so repeated
    // keys are refused in any body that is JSON, not only in declared JSON.
    let as_json = parse_document(text);
    if let Err(DocumentError::DuplicateKey(d)) = as_json {
        return Err(d.into());
    }
    let declared_json = media
        .as_deref()
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if let Err(e) = &as_json
        && (declared_json || looks_like_json(text))
    {
        return Err(e.clone());
    }
    if media.as_deref() == Some(FORM_MEDIA) {
        let mut map = Map::new();
        for (k, v) in form_urlencoded::parse(body) {
            // Slack interactivity and GitHub's form-encoded deliveries put the
            // event, as JSON, in a `payload` field: read it as a document too.
            let value = if k == FORM_PAYLOAD_FIELD {
                match parse_document(v.as_bytes()) {
                    Ok(doc @ Value::Object(_)) => doc,
                    Err(DocumentError::DuplicateKey(mut d)) => {
                        d.path.insert(0, FORM_PAYLOAD_FIELD.to_owned());
                        return Err(d.into());
                    }
                    Err(DocumentError::Syntax(e)) if looks_like_json(v.as_bytes()) => {
                        return Err(DocumentError::Syntax(format!(
                            "form field '{FORM_PAYLOAD_FIELD}': {e}"
                        )));
                    }
                    _ => Value::String(v.into_owned()),
                }
            } else {
                Value::String(v.into_owned())
            };
            match map.entry(k.into_owned()) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                // A field's own value is a string or an object, never an
                // array, so an array here means the field was repeated.
                Entry::Occupied(mut seen) => match seen.get_mut() {
                    Value::Array(values) => values.push(value),
                    first => *first = Value::Array(vec![first.take(), value]),
                },
            }
        }
        return Ok(Some(Value::Object(map)));
    }
    Ok(as_json.ok())
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const FORM_MEDIA: &str = "application/x-www-form-urlencoded";

/// The encoding a Content-Type's `charset` parameter names (WHATWG labels:
/// `iso-8859-1`, `latin1`, `windows-1252`, `utf-16le`, ...), if any.
fn charset_of(content_type: &str) -> Option<&'static encoding_rs::Encoding> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| encoding_rs::Encoding::for_label(value.trim().trim_matches('"').as_bytes()))
            .flatten()
    })
}

/// Text whose first non-blank byte opens a JSON object or array.
fn looks_like_json(text: &[u8]) -> bool {
    text.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{' || b == b'[')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::DuplicateKey;

    fn request<'a>(headers: &'a [(&'a str, &'a str)], body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            headers,
            body,
            url: "https://example.com/ingest/t",
            now_secs: 0,
        }
    }

    #[test]
    fn every_kind_names_its_missing_secret() {
        for kind in providers::kinds() {
            let result = compile(kind, &json!({}), &json!({})).map_err(|e| e.to_string());
            match kind {
                "none" => assert!(result.is_ok()),
                "basic-auth" => assert_eq!(result.unwrap_err(), "config.username: required"),
                "api-key" => assert_eq!(result.unwrap_err(), "config.key: required"),
                _ => assert!(result.unwrap_err().starts_with("config.secret: required")),
            }
        }
        assert!(
            compile("nope", &json!({}), &json!({}))
                .unwrap_err()
                .to_string()
                .starts_with("type:")
        );
    }

    #[test]
    fn provider_defaults_read_event_type_and_delivery_id() {
        let plan = compile("github", &json!({"secret": "s"}), &json!({})).unwrap();
        let headers = [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-1")];
        let req = request(&headers, b"{}");
        assert_eq!(plan.event_type(&req, None), "push");
        assert_eq!(plan.dedupe_id(&req, None).as_deref(), Some("d-1"));
        assert!(
            plan.forward_headers
                .contains(&"x-hub-signature-256".to_string())
        );

        let plan = compile("stripe", &json!({"secret": "whsec_x"}), &json!({})).unwrap();
        let doc = json!({"id": "evt_1", "type": "invoice.paid"});
        assert_eq!(
            plan.event_type(&request(&[], b""), Some(&doc)),
            "invoice.paid"
        );
        assert_eq!(
            plan.dedupe_id(&request(&[], b""), Some(&doc)).as_deref(),
            Some("evt_1")
        );
        assert_eq!(plan.tolerance_secs, Some(DEFAULT_TOLERANCE_SECS));
        // PostgreSQL cannot store NUL in text: it is kept as `\u0000`.
        let doc = json!({"id": "evt\u{0}1"});
        assert_eq!(
            plan.dedupe_id(&request(&[], b""), Some(&doc)).as_deref(),
            Some("evt\\u00001")
        );
    }

    /// Every scheme that signs a send time gets the default clock check; the
    /// others have nothing to check.
    #[test]
    fn timestamped_schemes_get_the_default_tolerance() {
        for kind in [
            "standard-webhooks",
            "svix",
            "stripe",
            "slack",
            "zoom",
            "paddle",
            "linear",
        ] {
            let plan = compile(
                kind,
                &json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
                &json!({}),
            )
            .unwrap();
            assert_eq!(plan.tolerance_secs, Some(DEFAULT_TOLERANCE_SECS), "{kind}");
        }
        for kind in ["github", "shopify", "twilio"] {
            let plan = compile(kind, &json!({"secret": "s"}), &json!({})).unwrap();
            assert_eq!(plan.tolerance_secs, None, "{kind}");
        }
    }

    #[test]
    fn settings_override_and_are_checked() {
        let plan = compile(
            "none",
            &json!({}),
            &json!({"eventType": {"value": "fixed"}, "dedupe": null, "forwardHeaders": ["X-Req"],
                    "maxBodyBytes": 10, "response": {"status": 202, "body": "ok"}}),
        )
        .unwrap();
        assert_eq!(plan.event_type(&request(&[], b""), None), "fixed");
        assert!(plan.dedupe.is_empty());
        assert_eq!(plan.forward_headers, vec!["x-req"]);
        assert_eq!(plan.max_body_bytes, Some(10));
        assert_eq!(plan.reply.as_ref().unwrap().status, 202);
        for (settings, field) in [
            (
                json!({"eventType": {"pointer": "type"}}),
                "settings.eventType.pointer",
            ),
            (json!({"dedupe": {"value": "x"}}), "settings.dedupe"),
            (
                json!({"forwardHeaders": ["Host"]}),
                "settings.forwardHeaders",
            ),
            (json!({"maxBodyBytes": 0}), "settings.maxBodyBytes"),
            (
                json!({"response": {"status": 500}}),
                "settings.response.status",
            ),
            (json!({"what": 1}), "settings.what"),
        ] {
            let err = compile("none", &json!({}), &settings)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn retired_secrets_verify_until_they_expire() {
        let config = json!({"username": "u", "password": "new"});
        let plan = compile("basic-auth", &config, &json!({}))
            .unwrap()
            .with_retired_secrets([("old", 1000)]);
        let old = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:old")
        );
        let headers = [("Authorization", old.as_str())];
        assert!(plan.verify(&request(&headers, b""), 999).is_ok());
        assert_eq!(
            plan.verify(&request(&headers, b""), 1000),
            Err(Rejection::Mismatch)
        );
    }

    #[test]
    fn repeated_keys_are_found_whatever_the_body_claims_to_be() {
        let dup = br#"{"id":"e","type":"a","type":"b"}"#;
        let form = Some("application/x-www-form-urlencoded");
        for content_type in [form, Some("text/plain"), None] {
            assert!(document_of(content_type, dup).is_err(), "{content_type:?}");
        }
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(dup);
        assert!(document_of(Some("application/json"), &with_bom).is_err());
        with_bom.truncate(3);
        with_bom.extend_from_slice(br#"{"type":"invoice.paid"}"#);
        let doc = document_of(Some("application/json"), &with_bom).unwrap();
        assert_eq!(doc, Some(json!({"type": "invoice.paid"})));
    }

    #[test]
    fn json_looking_bodies_must_be_strict_json() {
        // A lenient receiver reads these (Python takes NaN and the last
        // `type`); routing must not decide on "no document" instead.
        for body in [
            &br#"{"type":"a","n":NaN,"type":"b"}"#[..],
            br#"{"type":"a"} {"type":"b"}"#,
            br#"{"type":"\ud800"}"#,
            b"  [1, 2,]",
        ] {
            for content_type in [Some("application/json"), Some("text/plain"), None] {
                assert!(
                    matches!(
                        document_of(content_type, body),
                        Err(DocumentError::Syntax(_))
                    ),
                    "{content_type:?} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        let form = Some("application/x-www-form-urlencoded");
        assert!(document_of(form, b"payload=%7B%22type%22%3ANaN%7D").is_err());
        assert!(document_of(Some("application/json"), b"not json").is_err());
        assert!(document_of(Some("application/vnd.x+json"), b"<x/>").is_err());
        // Not JSON and not claiming to be: no document, no refusal.
        assert_eq!(document_of(Some("application/xml"), b"<order/>"), Ok(None));
        assert_eq!(
            document_of(form, b"payload=hello").map(|d| d.is_some()),
            Ok(true)
        );
    }

    /// Item 3 of the engine-services issue: a signed body in a legacy
    /// charset, or bytes that merely start like JSON, are not refused.
    #[test]
    fn bodies_in_other_charsets_or_not_text_are_not_refused() {
        let latin1 = b"{\"name\":\"M\xfcller\",\"type\":\"order.created\"}";
        let doc = document_of(Some("application/json; charset=ISO-8859-1"), latin1).unwrap();
        assert_eq!(
            doc,
            Some(json!({"name": "M\u{fc}ller", "type": "order.created"}))
        );
        // The same bytes without their charset: not UTF-8, so not a document.
        assert_eq!(document_of(Some("application/json"), latin1), Ok(None));
        let utf16: Vec<u8> = "{\"type\":\"a\"}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(
            document_of(Some("application/json; charset=utf-16le"), &utf16),
            Ok(Some(json!({"type": "a"})))
        );
        for binary in [&b"{\x00\x01\xff\xfe"[..], b"[\xc0\xae]"] {
            assert_eq!(
                document_of(Some("application/octet-stream"), binary),
                Ok(None)
            );
            assert_eq!(document_of(None, binary), Ok(None));
        }
        // Declared Latin-1 but JSON-looking and malformed once read: refused
        // as before, since a receiver reading it in its charset disagrees.
        assert!(document_of(Some("text/plain; charset=latin1"), b"{\"a\":NaN}").is_err());
    }

    #[test]
    fn form_bodies_become_documents() {
        let doc = document_of(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"EventType=call&To=%2B1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(doc, json!({"EventType": "call", "To": "+1"}));
        let interaction = document_of(
            Some("application/x-www-form-urlencoded"),
            b"payload=%7B%22type%22%3A%22block_actions%22%7D&other=%7B%7D",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            interaction,
            json!({"payload": {"type": "block_actions"}, "other": "{}"}),
            "only the payload field is read as JSON"
        );
        let plan = compile("slack", &json!({"secret": "s"}), &json!({})).unwrap();
        assert_eq!(
            plan.event_type(&request(&[], b""), Some(&interaction)),
            "block_actions"
        );
        assert_eq!(document_of(Some("text/plain"), b"not json"), Ok(None));
        assert_eq!(
            MessageEventType::from_provider("products/create\n"),
            "products/create"
        );
    }

    fn duplicate(e: DocumentError) -> Option<DuplicateKey> {
        match e {
            DocumentError::DuplicateKey(d) => Some(d),
            DocumentError::Syntax(_) => None,
        }
    }

    #[test]
    fn documents_never_pick_one_of_several_values() {
        let dup = document_of(
            Some("application/json"),
            br#"{"type":"a","data":{"id":1,"id":2}}"#,
        )
        .err()
        .and_then(duplicate);
        assert_eq!(dup.map(|d| d.path).unwrap_or_default(), ["data", "id"]);
        let dup = document_of(None, br#"{"type":"invoice.paid","type":"charge.failed"}"#)
            .err()
            .and_then(duplicate);
        assert_eq!(
            dup.map(|d| d.path).unwrap_or_default(),
            ["type"],
            "JSON is read as JSON whatever the content type"
        );
        let form = Some("application/x-www-form-urlencoded");
        let dup = document_of(
            form,
            b"payload=%7B%22type%22%3A%22a%22%2C%22type%22%3A%22b%22%7D",
        )
        .err()
        .and_then(duplicate);
        assert_eq!(dup.map(|d| d.path).unwrap_or_default(), ["payload", "type"]);
        let doc = document_of(form, b"Status=ok&To=1&Status=evil&Status=x")
            .unwrap()
            .unwrap();
        assert_eq!(doc, json!({"Status": ["ok", "evil", "x"], "To": "1"}));
        let plan = compile(
            "api-key",
            &json!({"header": "k", "key": "v"}),
            &json!({"eventType": {"pointer": "/Status"}}),
        )
        .unwrap();
        assert_eq!(
            plan.event_type(&request(&[], b""), Some(&doc)),
            "api-key",
            "a repeated field is no single value"
        );
    }

    /// A refusal names its field as a path (the API's `loc`) and says what
    /// is wrong, the two apart.
    #[test]
    fn errors_name_the_field_path() {
        let settings = json!({"eventType": [{"pointer": "/a"}, {"pointer": "b"}]});
        let err = compile("none", &json!({}), &settings).unwrap_err();
        assert_eq!(
            err.path.segments(),
            [
                Segment::Key("settings".into()),
                Segment::Key("eventType".into()),
                Segment::Index(1),
                Segment::Key("pointer".into())
            ]
        );
        assert_eq!(err.problem, "a JSON pointer starts with '/'");
        assert_eq!(
            err.to_string(),
            "settings.eventType[1].pointer: a JSON pointer starts with '/'"
        );
        let err = compile("stripe", &json!({}), &json!({})).unwrap_err();
        assert_eq!(err.path.below("config"), Some(FieldPath::root("secret")));
        assert_eq!(err.path.below("settings"), None);
        assert_eq!(err.problem, "required for stripe sources");
        let err = compile("stripe", &json!(5), &json!(5)).unwrap_err();
        assert_eq!(err.to_string(), "config: must be an object");
        assert_eq!(err.path.below("config"), None);
        let err = compile("nope", &json!({}), &json!({"a.b": 1})).unwrap_err();
        assert_eq!(err.path, FieldPath::root("type"));
        assert!(err.problem.contains("standard-webhooks, svix, stripe"));
        let err = compile("none", &json!({}), &json!({"response": {"status": 500}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "settings.response.status: must be a 2xx status"
        );
    }

    #[test]
    fn public_config_hides_secrets() {
        let shown = public_config(
            "generic-webhook",
            &json!({"secret": "s", "header": "X-Sig", "retiredSecrets": []}),
        );
        assert_eq!(shown, json!({"header": "X-Sig"}));
    }
}
