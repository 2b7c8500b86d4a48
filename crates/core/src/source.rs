//! Incoming-webhook sources as configured: which verifier a source type
//! uses and with which secrets, and Switchyard's per-source options (where
//! the event type and the provider's delivery id are read from, which
//! headers are passed on, body limit, the answer given to the provider).
//! Parsing happens once, when a source is written or loaded; requests then
//! run against the compiled [`Plan`].

use crate::json::{DocumentError, parse_document};
use crate::verify::{
    Encoding, GenericHmac, HashAlgorithm, Incoming, Rejection, Scheme, verify, verify_api_key,
    verify_basic_auth, verify_generic,
};
use serde_json::map::Entry;
use serde_json::{Map, Value, json};

/// Source types Switchyard verifies, by their API name.
pub const KINDS: &[&str] = &[
    "standard-webhooks",
    "svix",
    "stripe",
    "github",
    "shopify",
    "slack",
    "twilio",
    "paddle",
    "linear",
    "zoom",
    "generic-webhook",
    "basic-auth",
    "api-key",
    "none",
];

/// Seconds a signed timestamp may be off by, for schemes that sign one.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
pub const MAX_BODY_CEILING: usize = 16 << 20;

/// The config key holding the secret that a rotation replaces.
pub fn secret_key(kind: &str) -> Option<&'static str> {
    match kind {
        "none" => None,
        "basic-auth" => Some("password"),
        "api-key" => Some("key"),
        _ => Some("secret"),
    }
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
    fn parse(field: &str, v: &Value, allow_value: bool) -> Result<Location, String> {
        let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
            format!(
                "{field}: must be one of {{\"pointer\": \"/a/b\"}}, {{\"header\": \"Name\"}}{}",
                if allow_value {
                    " or {\"value\": \"fixed\"}"
                } else {
                    ""
                }
            )
        })?;
        let (key, val) = obj.iter().next().ok_or_else(|| format!("{field}: empty"))?;
        let text = val
            .as_str()
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| format!("{field}.{key}: must be a string of 1 to 256 characters"))?;
        match key.as_str() {
            "pointer" if text.starts_with('/') => Ok(Location::Pointer(text.into())),
            "pointer" => Err(format!("{field}.pointer: a JSON pointer starts with '/'")),
            "header" => Ok(Location::Header(text.into())),
            "value" if allow_value => Ok(Location::Value(text.into())),
            other => Err(format!("{field}: unknown location '{other}'")),
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

/// How requests to a source are checked.
#[derive(Debug, Clone)]
pub enum Verifier {
    Scheme(Scheme),
    Generic(GenericHmac),
    BasicAuth { username: String },
    ApiKey { header: String },
    None,
}

/// A secret with the time it stops being accepted (`None`: current).
#[derive(Debug, Clone)]
pub struct Secret {
    pub value: String,
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
    pub kind: String,
    pub verifier: Verifier,
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
    /// Checks a request against the secrets valid at `now_ms`.
    pub fn verify(&self, request: &Incoming<'_>, now_ms: u64) -> Result<(), Rejection> {
        let secrets: Vec<&str> = self
            .secrets
            .iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now_ms))
            .map(|s| s.value.as_str())
            .collect();
        match &self.verifier {
            Verifier::None => Ok(()),
            Verifier::Scheme(scheme) => verify(*scheme, &secrets, request, self.tolerance_secs),
            Verifier::Generic(hmac) => verify_generic(hmac, &secrets, request),
            Verifier::BasicAuth { username } => {
                let pairs: Vec<String> =
                    secrets.iter().map(|p| format!("{username}:{p}")).collect();
                let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
                verify_basic_auth(&pairs, request)
            }
            Verifier::ApiKey { header } => verify_api_key(header, &secrets, request),
        }
    }

    /// The event type: the first configured location that has a value, else
    /// the source type's name.
    pub fn event_type(&self, request: &Incoming<'_>, document: Option<&Value>) -> String {
        let found = self
            .event_type
            .iter()
            .find_map(|l| l.read(request, document))
            .unwrap_or_else(|| self.kind.clone());
        clean_event_type(&found)
    }

    /// The provider's delivery id, used to drop the provider's retries.
    pub fn dedupe_id(&self, request: &Incoming<'_>, document: Option<&Value>) -> Option<String> {
        self.dedupe.iter().find_map(|l| l.read(request, document))
    }
}

/// Event types from providers are free text; keep them printable and bounded.
fn clean_event_type(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .take(256)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

fn defaults(kind: &str) -> (Vec<Location>, Vec<Location>, &'static [&'static str]) {
    use Location::{Header as H, Pointer as P};
    let p = |s: &str| P(s.into());
    let h = |s: &str| H(s.into());
    match kind {
        "stripe" => (vec![p("/type")], vec![p("/id")], &["stripe-signature"]),
        "github" => (
            vec![h("X-GitHub-Event")],
            vec![h("X-GitHub-Delivery")],
            &[
                "x-github-event",
                "x-github-delivery",
                "x-github-hook-id",
                "x-github-hook-installation-target-id",
                "x-github-hook-installation-target-type",
                "x-hub-signature-256",
            ],
        ),
        "shopify" => (
            vec![h("X-Shopify-Topic")],
            vec![h("X-Shopify-Webhook-Id"), h("X-Shopify-Event-Id")],
            &[
                "x-shopify-topic",
                "x-shopify-hmac-sha256",
                "x-shopify-shop-domain",
                "x-shopify-api-version",
                "x-shopify-webhook-id",
                "x-shopify-event-id",
                "x-shopify-triggered-at",
            ],
        ),
        "slack" => (
            vec![
                p("/event/type"),
                p("/type"),
                p("/command"),
                p("/payload/type"),
            ],
            vec![p("/event_id"), p("/trigger_id"), p("/payload/trigger_id")],
            &[
                "x-slack-signature",
                "x-slack-request-timestamp",
                "x-slack-retry-num",
                "x-slack-retry-reason",
            ],
        ),
        "twilio" => (
            vec![p("/EventType"), p("/MessageStatus"), p("/CallStatus")],
            vec![h("I-Twilio-Idempotency-Token")],
            &["x-twilio-signature", "i-twilio-idempotency-token"],
        ),
        "paddle" => (
            vec![p("/event_type")],
            vec![p("/notification_id"), p("/event_id")],
            &["paddle-signature"],
        ),
        "linear" => (
            vec![h("Linear-Event"), p("/type")],
            vec![h("Linear-Delivery")],
            &["linear-signature", "linear-delivery", "linear-event"],
        ),
        "zoom" => (
            vec![p("/event")],
            vec![],
            &[
                "x-zm-signature",
                "x-zm-request-timestamp",
                "x-zm-trackingid",
            ],
        ),
        "svix" => (
            vec![p("/type"), p("/eventType")],
            vec![h("svix-id"), h("webhook-id")],
            &["svix-id", "svix-timestamp", "svix-signature"],
        ),
        "standard-webhooks" => (
            vec![p("/type")],
            vec![h("webhook-id")],
            &["webhook-original-id"],
        ),
        _ => (vec![p("/type")], vec![h("Idempotency-Key")], &[]),
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

fn parse_scheme(kind: &str) -> Option<Scheme> {
    Some(match kind {
        "standard-webhooks" => Scheme::StandardWebhooks,
        "svix" => Scheme::Svix,
        "stripe" => Scheme::Stripe,
        "github" => Scheme::Github,
        "shopify" => Scheme::Shopify,
        "slack" => Scheme::Slack,
        "twilio" => Scheme::Twilio,
        "paddle" => Scheme::Paddle,
        "linear" => Scheme::Linear,
        "zoom" => Scheme::Zoom,
        _ => return None,
    })
}

/// Whether the scheme signs a send time (a header, or Linear's
/// `webhookTimestamp` in the body), which then gets the default tolerance.
fn has_clock(scheme: Scheme) -> bool {
    !matches!(scheme, Scheme::Github | Scheme::Shopify | Scheme::Twilio)
}

fn text_field(config: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("config.{key}: must be a non-empty string")),
    }
}

fn required_text(config: &Map<String, Value>, key: &str, why: &str) -> Result<String, String> {
    text_field(config, key)?.ok_or_else(|| format!("config.{key}: required{why}"))
}

/// Config keys Switchyard keeps for itself inside a source's config.
pub const RETIRED_SECRETS_KEY: &str = "retiredSecrets";

fn verifier_of(kind: &str, config: &Map<String, Value>) -> Result<(Verifier, Vec<Secret>), String> {
    let mut secrets = Vec::new();
    let verifier = if let Some(scheme) = parse_scheme(kind) {
        let secret = required_text(config, "secret", &format!(" for {kind} sources"))?;
        if matches!(scheme, Scheme::StandardWebhooks | Scheme::Svix)
            && crate::signing::EndpointSecret::parse_any_length(&secret).is_err()
        {
            return Err("config.secret: must be a whsec_ secret (base64 after the prefix)".into());
        }
        secrets.push(secret);
        Verifier::Scheme(scheme)
    } else {
        match kind {
            "generic-webhook" => {
                let why =
                    " for generic-webhook sources (use type none to accept unsigned requests)";
                secrets.push(required_text(config, "secret", why)?);
                let algorithm = match text_field(config, "algorithm")?.as_deref() {
                    None | Some("sha256") => HashAlgorithm::Sha256,
                    Some("sha1") => HashAlgorithm::Sha1,
                    Some("sha512") => HashAlgorithm::Sha512,
                    Some(_) => {
                        return Err("config.algorithm: must be sha1, sha256 or sha512".into());
                    }
                };
                let encoding = match text_field(config, "encoding")?.as_deref() {
                    None | Some("hex") => Encoding::Hex,
                    Some("base64") => Encoding::Base64,
                    Some(_) => return Err("config.encoding: must be hex or base64".into()),
                };
                let hmac = GenericHmac {
                    header: required_text(
                        config,
                        "header",
                        " (the header carrying the signature)",
                    )?,
                    algorithm,
                    encoding,
                    prefix: text_field(config, "prefix")?.unwrap_or_default(),
                    template: text_field(config, "template")?.unwrap_or_default(),
                };
                hmac.validate().map_err(|e| format!("config.{e}"))?;
                Verifier::Generic(hmac)
            }
            "basic-auth" => {
                let username = required_text(config, "username", "")?;
                if username.contains(':') {
                    return Err("config.username: must not contain ':'".into());
                }
                secrets.push(required_text(config, "password", "")?);
                Verifier::BasicAuth { username }
            }
            "api-key" => {
                let header = text_field(config, "header")?.unwrap_or_else(|| "X-API-Key".into());
                if !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err("config.header: must be a header name".into());
                }
                secrets.push(required_text(config, "key", "")?);
                Verifier::ApiKey { header }
            }
            "none" => Verifier::None,
            other => {
                return Err(format!(
                    "type: '{other}' is not supported; use one of {}",
                    KINDS.join(", ")
                ));
            }
        }
    };
    let mut secrets: Vec<Secret> = secrets
        .into_iter()
        .map(|value| Secret {
            value,
            expires_at: None,
        })
        .collect();
    if let Some(retired) = config.get(RETIRED_SECRETS_KEY).and_then(Value::as_array) {
        for r in retired {
            if let (Some(value), Some(at)) = (r["secret"].as_str(), r["expiresAt"].as_u64()) {
                secrets.push(Secret {
                    value: value.into(),
                    expires_at: Some(at),
                });
            }
        }
    }
    Ok((verifier, secrets))
}

/// Compiles a source's type, config and settings; the error names the
/// offending field (`config.secret`, `settings.eventType`, ...).
pub fn compile(kind: &str, config: &Value, settings: &Value) -> Result<Plan, String> {
    let empty = Map::new();
    let config = match config {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err("config: must be an object".into()),
    };
    let settings = match settings {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => return Err("settings: must be an object".into()),
    };
    let (verifier, secrets) = verifier_of(kind, config)?;
    let (mut event_type, mut dedupe, provider_headers) = defaults(kind);
    let mut forward_headers: Vec<String> = COMMON_FORWARD
        .iter()
        .chain(provider_headers)
        .map(|s| s.to_string())
        .collect();
    if let Verifier::Generic(h) = &verifier {
        forward_headers.push(h.header.to_ascii_lowercase());
    }
    let mut tolerance_secs = match verifier {
        Verifier::Scheme(s) if has_clock(s) => Some(DEFAULT_TOLERANCE_SECS),
        _ => None,
    };
    let mut forward_path = true;
    let mut max_body_bytes = None;
    let mut reply = None;
    let mut signed_url = None;
    for (key, value) in settings {
        let field = format!("settings.{key}");
        match key.as_str() {
            "eventType" => event_type = locations(&field, value, true)?,
            "dedupe" => dedupe = locations(&field, value, false)?,
            "forwardHeaders" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| format!("{field}: must be a list of header names"))?;
                forward_headers = Vec::with_capacity(list.len());
                for name in list {
                    let name = name
                        .as_str()
                        .filter(|n| {
                            !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                        })
                        .ok_or_else(|| format!("{field}: each entry must be a header name"))?
                        .to_ascii_lowercase();
                    if NEVER_FORWARD.contains(&name.as_str()) {
                        return Err(format!("{field}: '{name}' cannot be passed on"));
                    }
                    forward_headers.push(name);
                }
            }
            "forwardPath" => {
                forward_path = value
                    .as_bool()
                    .ok_or_else(|| format!("{field}: must be true or false"))?
            }
            "toleranceSeconds" => tolerance_secs = match value {
                Value::Null => None,
                v => Some(
                    v.as_i64()
                        .filter(|t| (1..=86_400 * 7).contains(t))
                        .ok_or_else(|| {
                            format!(
                                "{field}: must be 1 to 604800 seconds, or null for no clock check"
                            )
                        })?,
                ),
            },
            "maxBodyBytes" => {
                max_body_bytes = Some(
                    value
                        .as_u64()
                        .filter(|n| (1..=MAX_BODY_CEILING as u64).contains(n))
                        .ok_or_else(|| format!("{field}: must be 1 to {MAX_BODY_CEILING} bytes"))?
                        as usize,
                )
            }
            "response" => reply = Some(parse_reply(&field, value)?),
            "signedUrl" => {
                signed_url = match value {
                    Value::Null => None,
                    Value::String(u)
                        if (u.starts_with("https://") || u.starts_with("http://"))
                            && !u.contains('?') =>
                    {
                        Some(u.clone())
                    }
                    _ => {
                        return Err(format!(
                            "{field}: must be an http(s) URL without a query string"
                        ));
                    }
                }
            }
            _ => return Err(format!("{field}: unknown setting")),
        }
    }
    Ok(Plan {
        kind: kind.to_owned(),
        verifier,
        secrets,
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

fn locations(field: &str, value: &Value, allow_value: bool) -> Result<Vec<Location>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Location::parse(&format!("{field}[{i}]"), v, allow_value))
            .collect(),
        v => Ok(vec![Location::parse(field, v, allow_value)?]),
    }
}

fn parse_reply(field: &str, value: &Value) -> Result<Reply, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{field}: must be an object with status, body and contentType"))?;
    let status = match obj.get("status") {
        None => 200,
        Some(v) => {
            v.as_u64()
                .filter(|s| (200..=299).contains(s))
                .ok_or_else(|| format!("{field}.status: must be a 2xx status"))? as u16
        }
    };
    let body = match obj.get("body") {
        None => String::new(),
        Some(Value::String(s)) if s.len() <= 4096 => s.clone(),
        Some(_) => {
            return Err(format!(
                "{field}.body: must be a string of at most 4096 bytes"
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
        Some(_) => return Err(format!("{field}.contentType: must be a media type")),
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

/// A source's config as the API shows it: secrets left out.
pub fn public_config(kind: &str, config: &Value) -> Value {
    let Some(obj) = config.as_object() else {
        return json!({});
    };
    let hidden = [secret_key(kind).unwrap_or(""), RETIRED_SECRETS_KEY];
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
    // The Content-Type header is not covered by any provider's signature and
    // many receivers parse the body as JSON whatever it says, so repeated
    // keys are refused in any body that is JSON, not only in declared JSON.
    let as_json = parse_document(body);
    if let Err(DocumentError::DuplicateKey(d)) = as_json {
        return Err(d.into());
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    let declared_json = media
        .as_deref()
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    if let Err(e) = &as_json
        && (declared_json || looks_like_json(body))
    {
        return Err(e.clone());
    }
    if media.as_deref() == Some("application/x-www-form-urlencoded") {
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
        for kind in KINDS {
            let result = compile(kind, &json!({}), &json!({}));
            match *kind {
                "none" => assert!(result.is_ok()),
                "basic-auth" => assert_eq!(result.unwrap_err(), "config.username: required"),
                "api-key" => assert_eq!(result.unwrap_err(), "config.key: required"),
                _ => assert!(result.unwrap_err().starts_with("config.secret: required")),
            }
        }
        assert!(
            compile("nope", &json!({}), &json!({}))
                .unwrap_err()
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
            let err = compile("none", &json!({}), &settings).unwrap_err();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn retired_secrets_verify_until_they_expire() {
        let config = json!({"username": "u", "password": "new",
                            "retiredSecrets": [{"secret": "old", "expiresAt": 1000}]});
        let plan = compile("basic-auth", &config, &json!({})).unwrap();
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
            clean_event_type("products/create\n"),
            "products/create".to_string()
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

    #[test]
    fn public_config_hides_secrets() {
        let shown = public_config(
            "generic-webhook",
            &json!({"secret": "s", "header": "X-Sig", "retiredSecrets": []}),
        );
        assert_eq!(shown, json!({"header": "X-Sig"}));
    }
}
