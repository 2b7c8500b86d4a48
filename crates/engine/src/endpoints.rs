//! Endpoints (outgoing endpoints and ingest destinations alike): every read
//! and change, with their rules (URL, filters, channels, headers, secrets and
//! their rotation with a grace period, upsert by uid, recovery, cache
//! invalidation and the notice to other nodes) in one place.

use crate::apps::{check_rate_limit, parse_uid};
use crate::operational::{EndpointRef, OperationalEvent, check_operational_endpoint};
use crate::{Engine, EngineError, limits};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::BTreeMap;
use switchyard_core::breaker::BreakerConfig;
use switchyard_core::filter::Filter;
use switchyard_core::signing::{EndpointSecret, SignatureScheme};
use switchyard_core::{Channel, EndpointId, EndpointUrl, EventTypePattern};
use switchyard_store::{
    Application, CircuitSnapshot, CircuitState, Endpoint, EndpointStats, Metadata, Page,
    PageRequest, RetiredSecret,
};

/// An endpoint's settable fields (create and upsert).
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    /// An [`EndpointUrl`]: http(s), deliverable (no zone id, port 0, ...).
    pub url: String,
    pub description: String,
    /// Messages per second; at least 1 when given.
    pub rate_limit: Option<u32>,
    /// Deliveries in flight at once, 1 to [`MAX_CONCURRENCY_LIMIT`] when given.
    pub concurrency_limit: Option<u32>,
    pub uid: Option<String>,
    pub disabled: bool,
    /// Event types or `*` patterns; `None` receives all, an empty list is refused.
    pub filter_types: Option<Vec<String>>,
    /// At most 10 [`Channel`]s.
    pub channels: Option<Vec<String>>,
    /// A `whsec_` secret; `None` generates one.
    pub secret: Option<String>,
    pub metadata: Option<Metadata>,
    /// Custom headers sent with each delivery; upsert keeps the current ones
    /// when `None`.
    pub headers: Option<BTreeMap<String, String>>,
    /// A [`Filter`] on the payload; `null` means none.
    pub payload_filter: Option<Value>,
    /// Circuit-breaker settings (a [`BreakerConfig`] as JSON); `null` means none.
    pub circuit_breaker: Option<Value>,
    /// One delivery at a time, in message order ([`Endpoint::fifo`]).
    pub fifo: bool,
}

/// A partial change: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub rate_limit: Option<Option<u32>>,
    pub concurrency_limit: Option<Option<u32>>,
    pub uid: Option<Option<String>>,
    pub disabled: Option<bool>,
    pub filter_types: Option<Option<Vec<String>>>,
    pub channels: Option<Option<Vec<String>>>,
    pub metadata: Option<Metadata>,
    pub secret: Option<String>,
    pub payload_filter: Option<Option<Value>>,
    pub circuit_breaker: Option<Option<Value>>,
    pub fifo: Option<bool>,
}

/// Most deliveries an endpoint's concurrency limit may allow in flight.
pub const MAX_CONCURRENCY_LIMIT: u32 = 10_000;

/// A concurrency limit: absent, or 1 to [`MAX_CONCURRENCY_LIMIT`].
fn check_concurrency_limit(limit: Option<u32>) -> Result<Option<u32>, EngineError> {
    match limit {
        Some(n) if !(1..=MAX_CONCURRENCY_LIMIT).contains(&n) => Err(EngineError::invalid(
            "concurrencyLimit",
            format!("must be 1 to {MAX_CONCURRENCY_LIMIT} deliveries in flight"),
        )),
        other => Ok(other),
    }
}

/// An endpoint's circuit breaker as the engine reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitView {
    /// `None`: the endpoint has no breaker (its state stays closed).
    pub config: Option<BreakerConfig>,
    pub snapshot: CircuitSnapshot,
}

/// Default grace period of a rotated-out endpoint secret, in seconds.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
/// Longest grace period of a rotated-out endpoint secret, in seconds.
pub const MAX_GRACE_SECS: u64 = 7 * 24 * 3600;

/// Headers Switchyard sets itself, which custom headers may not replace.
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

/// Most channels on an endpoint or a message.
const MAX_CHANNELS: usize = 10;

/// An http(s) URL, or a URL of a broker destination registered in this
/// build (`broker_schemes`).
fn parse_url(url: &str, broker_schemes: &[&str]) -> Result<EndpointUrl, EngineError> {
    EndpointUrl::parse_for(url, broker_schemes)
        .map_err(|e| EngineError::invalid("url", e.to_string()))
}

/// Event types or [`EventTypePattern`]s with `*` wildcards (`invoice.*`).
/// Ingested events keep their provider's names, which may hold characters
/// such as `/` (Shopify topics), so patterns are looser than event-type names.
fn parse_filter_types(
    types: Option<Vec<String>>,
) -> Result<Option<Vec<EventTypePattern>>, EngineError> {
    let Some(types) = types else {
        return Ok(None);
    };
    if types.is_empty() {
        return Err(EngineError::invalid(
            "filterTypes",
            "must list at least one event type (omit it to receive all)",
        ));
    }
    limits::check_count("filterTypes", types.len(), limits::MAX_FILTER_TYPES)?;
    let mut parsed: Vec<EventTypePattern> = Vec::with_capacity(types.len());
    for t in &types {
        let pattern =
            EventTypePattern::parse(t).map_err(|e| EngineError::invalid("filterTypes", e.0))?;
        // A repeat matches nothing more; it is stored once.
        if !parsed.contains(&pattern) {
            parsed.push(pattern);
        }
    }
    Ok(Some(parsed))
}

/// At most [`MAX_CHANNELS`] channels, each a [`Channel`]; `field` names them
/// in errors (endpoints and messages both carry channels).
pub fn parse_channels(
    field: &str,
    channels: Option<Vec<String>>,
) -> Result<Option<Vec<Channel>>, EngineError> {
    let Some(channels) = channels else {
        return Ok(None);
    };
    if channels.len() > MAX_CHANNELS {
        return Err(EngineError::invalid(
            field,
            format!("at most {MAX_CHANNELS} channels are allowed"),
        ));
    }
    channels
        .iter()
        .map(|c| Channel::parse(c).map_err(|e| EngineError::invalid(field, e.to_string())))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse_payload_filter(filter: Option<Value>) -> Result<Option<Value>, EngineError> {
    match filter {
        None | Some(Value::Null) => Ok(None),
        Some(f) => match limits::check_payload_filter_size(&f)
            .and_then(|()| Filter::parse(&f).map_err(|e| EngineError::invalid("payloadFilter", e)))
        {
            Ok(_) => Ok(Some(f)),
            Err(e) => Err(e),
        },
    }
}

/// Circuit-breaker settings; errors name `circuitBreaker.<field>`.
fn parse_breaker(settings: Option<Value>) -> Result<Option<BreakerConfig>, EngineError> {
    let settings = match settings {
        None | Some(Value::Null) => return Ok(None),
        Some(s) => s,
    };
    let config: BreakerConfig = serde_json::from_value(settings)
        .map_err(|e| EngineError::invalid("circuitBreaker", e.to_string()))?;
    config.check().map_err(|(field, problem)| {
        EngineError::invalid(format!("circuitBreaker.{field}"), problem)
    })?;
    Ok(Some(config))
}

/// A secret as given (`whsec_…` or `whsk_…`), or a new one of `scheme`.
fn parse_secret(
    field: &str,
    secret: Option<String>,
    scheme: SignatureScheme,
) -> Result<EndpointSecret, EngineError> {
    match secret {
        None => Ok(EndpointSecret::generate_for(scheme)),
        Some(s) => {
            EndpointSecret::parse(&s).map_err(|e| EngineError::invalid(field, e.to_string()))
        }
    }
}

/// Custom headers: valid HTTP names and values, none that Switchyard sets.
/// Errors name `headers.<name>`.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), EngineError> {
    limits::check_header_sizes(headers)?;
    let mut seen = std::collections::HashSet::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        // Header names are case-insensitive (RFC 9110 §5.1): two spellings
        // of one name would both be sent.
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(EngineError::invalid(
                &field,
                "is given twice, in different cases",
            ));
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(EngineError::invalid(
                &field,
                "is not a valid HTTP header name",
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(EngineError::invalid(
                &field,
                "is set by Switchyard and cannot be overridden",
            ));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err(EngineError::invalid(
                &field,
                "is not a valid HTTP header value",
            ));
        }
    }
    Ok(())
}

fn new_endpoint(
    app_id: switchyard_core::AppId,
    input: EndpointInput,
    uid: Option<String>,
    now: u64,
    scheme: SignatureScheme,
    broker_schemes: &[&str],
) -> Result<Endpoint, EngineError> {
    let headers = input.headers.unwrap_or_default();
    check_headers(&headers)?;
    limits::check_metadata(input.metadata.as_ref())?;
    limits::check_chars(
        "description",
        &input.description,
        limits::MAX_DESCRIPTION_CHARS,
    )?;
    Ok(Endpoint {
        id: EndpointId::generate_at(now),
        app_id,
        uid: parse_uid("uid", uid.or(input.uid))?,
        url: parse_url(&input.url, broker_schemes)?,
        description: input.description,
        disabled: input.disabled,
        disabled_reason: None,
        filter_types: parse_filter_types(input.filter_types)?,
        channels: parse_channels("channels", input.channels)?,
        rate_limit: check_rate_limit("rateLimit", input.rate_limit)?,
        concurrency_limit: check_concurrency_limit(input.concurrency_limit)?,
        circuit_breaker: parse_breaker(input.circuit_breaker)?,
        fifo: input.fifo,
        metadata: input.metadata.unwrap_or_default(),
        headers,
        auth: Default::default(),
        payload_filter: parse_payload_filter(input.payload_filter)?,
        secret: parse_secret("secret", input.secret, scheme)?,
        retired_secrets: Vec::new(),
        created_at: now,
        updated_at: now,
    })
}

impl Engine {
    /// An application's endpoints, a page at a time.
    pub async fn list_endpoints(
        &self,
        app_key: &str,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, EngineError> {
        let app = self.app(app_key).await?;
        Ok(self.store.list_endpoints(&app.id, page).await?)
    }

    /// An endpoint by id or uid within its application (id or uid).
    ///
    /// Errors: [`EngineError::NotFound`] for either.
    pub async fn endpoint(&self, app_key: &str, key: &str) -> Result<Endpoint, EngineError> {
        let app = self.app(app_key).await?;
        self.endpoint_in(&app, key).await
    }

    /// An endpoint by id or uid within an application already found.
    pub async fn endpoint_in(&self, app: &Application, key: &str) -> Result<Endpoint, EngineError> {
        self.store
            .get_endpoint(&app.id, key)
            .await?
            .ok_or(EngineError::NotFound("endpoint"))
    }

    /// Runs a read-modify-write of an endpoint, and again on the row as it
    /// is now when another change was stored between its read and its write
    /// ([`switchyard_store::StoreError::Stale`]), so concurrent changes (a
    /// PATCH and a credentials PUT, two credentials PUTs) are each applied
    /// or refused, never lost. After 5 tries the change is refused with 409.
    pub(crate) async fn again_if_stale<T, Fut>(
        &self,
        mut change: impl FnMut() -> Fut,
    ) -> Result<T, EngineError>
    where
        Fut: std::future::Future<Output = Result<T, EngineError>>,
    {
        for _ in 0..5 {
            match change().await {
                Err(EngineError::Store(switchyard_store::StoreError::Stale(_))) => continue,
                done => return done,
            }
        }
        Err(EngineError::Conflict(
            "the endpoint was changed by other requests meanwhile; try again".into(),
        ))
    }

    /// Stores a changed endpoint; `set_disabled` when the change enables or
    /// disables it (otherwise an auto-disable made meanwhile stands).
    pub(crate) async fn save_endpoint(
        &self,
        mut ep: Endpoint,
        set_disabled: bool,
    ) -> Result<Endpoint, EngineError> {
        // The row is written only if it is still as read (its `updated_at`),
        // and the new time is later even within one millisecond.
        let read_at = ep.updated_at;
        ep.updated_at = self.now_ms().max(read_at + 1);
        // An enabled endpoint has no reason to be disabled; one disabled
        // through the API has none of Switchyard's.
        if !ep.disabled {
            ep.disabled_reason = None;
        }
        let ep = self
            .store
            .update_endpoint(ep, set_disabled, read_at)
            .await?;
        self.endpoints_changed(&ep.app_id);
        self.release_held(std::slice::from_ref(&ep.id)).await?;
        Ok(ep)
    }

    /// Deliveries a control put back in the queue were given due times by
    /// the endpoint's limits as they were; after a change they are looked at
    /// again now, under the new ones (those still over a limit are held
    /// back again, in turn).
    pub(crate) async fn release_held(&self, endpoints: &[EndpointId]) -> Result<(), EngineError> {
        let now = self.now_ms();
        let mut released = 0;
        for ep in endpoints {
            released += self.store.release_held(ep, now).await?;
        }
        if released > 0 {
            self.wake_dispatcher();
        }
        Ok(())
    }

    /// As [`Self::release_held`], for every endpoint of an application
    /// (its default rate limit changed).
    pub(crate) async fn release_held_of_app(
        &self,
        app: &switchyard_core::AppId,
    ) -> Result<(), EngineError> {
        let ids: Vec<EndpointId> = self
            .store
            .all_endpoints(Some(app))
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect();
        self.release_held(&ids).await
    }

    /// After an endpoint was changed through the API:
    /// - enabled or disabled: a failure streak from before does not count
    ///   towards disabling it (again);
    /// - re-enabled: it resumes, so an open breaker closes and what it held
    ///   back is due now;
    /// - breaker added or removed: a new breaker starts closed, not in the
    ///   state a removed one was left in.
    async fn after_change(
        &self,
        was_disabled: bool,
        had_breaker: bool,
        ep: &Endpoint,
    ) -> Result<(), EngineError> {
        if was_disabled != ep.disabled {
            self.store.mark_failing(vec![(ep.id.clone(), None)]).await?;
        }
        let endpoint = EndpointRef::of(ep);
        self.tell_operators(OperationalEvent::EndpointUpdated(endpoint.clone()))
            .await;
        match (was_disabled, ep.disabled) {
            (true, false) => {
                self.tell_operators(OperationalEvent::EndpointEnabled(endpoint))
                    .await
            }
            (false, true) => {
                self.tell_operators(OperationalEvent::EndpointDisabled {
                    endpoint,
                    fail_since: None,
                })
                .await
            }
            _ => {}
        }
        let reenabled = was_disabled && !ep.disabled;
        if had_breaker != ep.circuit_breaker.is_some() || (reenabled && had_breaker) {
            self.close_circuit(ep, reenabled).await?;
        }
        Ok(())
    }

    /// Disables every endpoint that has failed without a single success
    /// for the configured time (`auto_disable_after`), with the reason, and
    /// returns how many. Every node runs this once a minute or more often;
    /// an endpoint is disabled once.
    pub async fn disable_failing_endpoints(&self) -> Result<usize, EngineError> {
        let Some(after) = self.auto_disable_after else {
            return Ok(0);
        };
        let now = self.now_ms();
        let reason = format!(
            "disabled by Switchyard: every delivery attempt failed for {} s; re-enable it, then recover what failed meanwhile",
            after.as_secs()
        );
        let disabled = self
            .store
            .disable_failing(now.saturating_sub(after.as_millis() as u64), &reason, now)
            .await?;
        let apps: std::collections::BTreeSet<_> = disabled.iter().map(|(app, _, _)| app).collect();
        for app in apps {
            self.endpoints_changed(app);
        }
        for (app, ep, failing_since) in &disabled {
            tracing::warn!(app = %app, endpoint = %ep, "endpoint disabled: every delivery attempt failed for {} s", after.as_secs());
            self.tell_operators(OperationalEvent::EndpointDisabled {
                endpoint: EndpointRef::ids(app.clone(), ep.clone()),
                fail_since: Some(*failing_since),
            })
            .await;
        }
        Ok(disabled.len())
    }

    /// Checks a URL being set on an endpoint (one stored before can still be
    /// disabled or changed otherwise; a delivery to it fails saying why):
    /// - in https-only mode, only encrypted schemes (`https`, or a broker's
    ///   TLS scheme such as `rediss`);
    /// - a broker URL as its destination reads it (a Redis stream named);
    /// - a broker URL whose host is an address literal the network policy
    ///   refuses (names are judged at delivery, on what they resolve to;
    ///   http URLs keep Svix's rule and are judged at delivery only).
    fn check_url(&self, url: &EndpointUrl) -> Result<(), EngineError> {
        if self.https_only && !self.destinations.is_tls(url) {
            return Err(EngineError::invalid(
                "url",
                if url.is_http() {
                    "must be an https URL: this Switchyard delivers only over https (SWITCHYARD_HTTPS_ONLY)".to_owned()
                } else {
                    format!(
                        "must use an encrypted scheme: this Switchyard delivers only over TLS (SWITCHYARD_HTTPS_ONLY), so {}:// is refused",
                        url.scheme().to_ascii_lowercase()
                    )
                },
            ));
        }
        if url.is_http() {
            return Ok(());
        }
        let parsed =
            url::Url::parse(url).map_err(|e| EngineError::invalid("url", e.to_string()))?;
        let destination = self.destinations.for_url(url).ok_or_else(|| {
            EngineError::invalid("url", "no destination of this build serves its scheme")
        })?;
        destination
            .check_url(&parsed)
            .map_err(|e| EngineError::invalid("url", e))?;
        let literal = match parsed.host() {
            Some(url::Host::Domain(name)) => name.parse::<std::net::IpAddr>().ok(),
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            None => None,
        };
        if let Some(ip) = literal
            && let Err(refusal) = self.network_policy.check(ip)
        {
            return Err(EngineError::invalid(
                "url",
                format!(
                    "is refused by the network policy: {refusal}; an operator may allow its range with SWITCHYARD_ALLOWED_NETWORKS"
                ),
            ));
        }
        Ok(())
    }

    async fn insert_endpoint(
        &self,
        app: &Application,
        input: EndpointInput,
        uid: Option<String>,
    ) -> Result<Endpoint, EngineError> {
        let ep = new_endpoint(
            app.id.clone(),
            input,
            uid,
            self.now_ms(),
            self.signature_scheme,
            &self.destinations.broker_schemes(),
        )?;
        check_operational_endpoint(app, &ep)?;
        self.check_url(&ep.url)?;
        let Some(ep) = self
            .store
            .insert_endpoint_within(ep, self.max_endpoints_per_app)
            .await?
        else {
            return Err(EngineError::Conflict(format!(
                "application {} has {} endpoints, the most allowed (SWITCHYARD_MAX_ENDPOINTS_PER_APP); delete one first",
                app.id, self.max_endpoints_per_app
            )));
        };
        self.endpoints_changed(&ep.app_id);
        self.tell_operators(OperationalEvent::EndpointCreated(EndpointRef::of(&ep)))
            .await;
        Ok(ep)
    }

    /// Creates an endpoint in an application.
    pub async fn create_endpoint(
        &self,
        app_key: &str,
        input: EndpointInput,
    ) -> Result<Endpoint, EngineError> {
        let app = self.app(app_key).await?;
        self.insert_endpoint(&app, input, None).await
    }

    /// Replaces the endpoint named by `key` (id or uid), or creates it with
    /// `key` as its uid (a key shaped like an id must exist). Custom headers
    /// stay as they are unless the input has some. Returns whether it was
    /// created.
    async fn upsert_endpoint_once(
        &self,
        app_key: &str,
        key: &str,
        input: EndpointInput,
    ) -> Result<(Endpoint, bool), EngineError> {
        let app = self.app(app_key).await?;
        match self.store.get_endpoint(&app.id, key).await? {
            Some(mut ep) => {
                let (was_disabled, had_breaker) = (ep.disabled, ep.circuit_breaker.is_some());
                let old_url = ep.url.clone();
                ep.url = parse_url(&input.url, &self.destinations.broker_schemes())?;
                limits::check_chars(
                    "description",
                    &input.description,
                    limits::MAX_DESCRIPTION_CHARS,
                )?;
                ep.description = input.description;
                ep.rate_limit = check_rate_limit("rateLimit", input.rate_limit)?;
                ep.concurrency_limit = check_concurrency_limit(input.concurrency_limit)?;
                ep.uid = parse_uid("uid", input.uid)?.or(ep.uid);
                ep.disabled = input.disabled;
                ep.filter_types = parse_filter_types(input.filter_types)?;
                ep.channels = parse_channels("channels", input.channels)?;
                limits::check_metadata(input.metadata.as_ref())?;
                ep.metadata = input.metadata.unwrap_or_default();
                ep.payload_filter = parse_payload_filter(input.payload_filter)?;
                ep.circuit_breaker = parse_breaker(input.circuit_breaker)?;
                ep.fifo = input.fifo;
                if let Some(headers) = input.headers {
                    check_headers(&headers)?;
                    ep.headers = headers;
                }
                check_operational_endpoint(&app, &ep)?;
                if ep.url != old_url {
                    self.check_url(&ep.url)?;
                }
                let saved = self.save_endpoint(ep, true).await?;
                self.after_change(was_disabled, had_breaker, &saved).await?;
                Ok((saved, false))
            }
            None if EndpointId::parse(key).is_some() => Err(EngineError::NotFound("endpoint")),
            None => {
                let ep = self
                    .insert_endpoint(&app, input, Some(key.to_owned()))
                    .await?;
                Ok((ep, true))
            }
        }
    }

    /// Changes the given fields of an endpoint.
    async fn patch_endpoint_once(
        &self,
        app_key: &str,
        key: &str,
        patch: EndpointPatch,
    ) -> Result<Endpoint, EngineError> {
        let app = self.app(app_key).await?;
        let mut ep = self.endpoint_in(&app, key).await?;
        let (was_disabled, had_breaker) = (ep.disabled, ep.circuit_breaker.is_some());
        let old_url = ep.url.clone();
        let set_disabled = patch.disabled.is_some();
        if let Some(url) = patch.url {
            ep.url = parse_url(&url, &self.destinations.broker_schemes())?;
        }
        if let Some(d) = patch.description {
            limits::check_chars("description", &d, limits::MAX_DESCRIPTION_CHARS)?;
            ep.description = d;
        }
        if let Some(r) = patch.rate_limit {
            ep.rate_limit = check_rate_limit("rateLimit", r)?;
        }
        if let Some(c) = patch.concurrency_limit {
            ep.concurrency_limit = check_concurrency_limit(c)?;
        }
        if let Some(fifo) = patch.fifo {
            ep.fifo = fifo;
        }
        if let Some(uid) = patch.uid {
            ep.uid = parse_uid("uid", uid)?;
        }
        if let Some(d) = patch.disabled {
            ep.disabled = d;
        }
        if let Some(f) = patch.filter_types {
            ep.filter_types = parse_filter_types(f)?;
        }
        if let Some(c) = patch.channels {
            ep.channels = parse_channels("channels", c)?;
        }
        if let Some(m) = patch.metadata {
            limits::check_metadata(Some(&m))?;
            ep.metadata = m;
        }
        if let Some(secret) = patch.secret {
            ep.secret = parse_secret("secret", Some(secret), ep.secret.scheme())?;
        }
        if let Some(f) = patch.payload_filter {
            ep.payload_filter = parse_payload_filter(f)?;
        }
        if let Some(b) = patch.circuit_breaker {
            ep.circuit_breaker = parse_breaker(b)?;
        }
        check_operational_endpoint(&app, &ep)?;
        if ep.url != old_url {
            self.check_url(&ep.url)?;
        }
        let saved = self.save_endpoint(ep, set_disabled).await?;
        self.after_change(was_disabled, had_breaker, &saved).await?;
        Ok(saved)
    }

    /// An endpoint's circuit breaker: its settings and its state as last
    /// stored (every change of state is stored by the node sending to the
    /// endpoint; an endpoint whose breaker never tripped is closed).
    pub async fn endpoint_circuit(
        &self,
        app_key: &str,
        key: &str,
    ) -> Result<CircuitView, EngineError> {
        let ep = self.endpoint(app_key, key).await?;
        let snapshot = self
            .store
            .circuits(&ep.app_id)
            .await?
            .into_iter()
            .find(|(id, _)| *id == ep.id)
            .map(|(_, s)| s)
            .unwrap_or_else(|| CircuitSnapshot::closed(ep.created_at));
        Ok(CircuitView {
            config: ep.circuit_breaker,
            snapshot,
        })
    }

    /// Closes an endpoint's breaker now, whatever its state, and makes its
    /// waiting deliveries (held back, or waiting for a retry) due now. The
    /// node sending to the endpoint
    /// takes the new state when its endpoint cache reloads (at once: the
    /// change is announced like any endpoint change).
    pub async fn reset_circuit(
        &self,
        app_key: &str,
        key: &str,
    ) -> Result<CircuitView, EngineError> {
        let before = self.endpoint_circuit(app_key, key).await?.snapshot;
        let ep = self.endpoint(app_key, key).await?;
        let snapshot = self.close_circuit(&ep, true).await?;
        if before.state != CircuitState::Closed {
            self.tell_operators(OperationalEvent::CircuitClosed {
                endpoint: EndpointRef::of(&ep),
                snapshot: snapshot.clone(),
            })
            .await;
        }
        Ok(CircuitView {
            config: ep.circuit_breaker,
            snapshot,
        })
    }

    /// Stores an endpoint's breaker as closed from now, and tells every
    /// node. With `release`, what the breaker held back (waiting for its
    /// cool-down in the queue) is due now instead, like every retry the
    /// endpoint was waiting on.
    async fn close_circuit(
        &self,
        ep: &Endpoint,
        release: bool,
    ) -> Result<CircuitSnapshot, EngineError> {
        let now = self.now_ms();
        let snapshot = CircuitSnapshot::closed(now);
        self.store
            .save_circuit(&ep.app_id, &ep.id, &snapshot)
            .await?;
        self.endpoints_changed(&ep.app_id);
        if release {
            let due = self.store.due_now(&ep.id, now).await?;
            tracing::info!(endpoint = %ep.id, deliveries = due, "circuit breaker closed; waiting deliveries are due");
            self.wake_dispatcher();
        }
        Ok(snapshot)
    }

    /// Deletes an endpoint; its pending deliveries go with it.
    pub async fn delete_endpoint(&self, app_key: &str, key: &str) -> Result<(), EngineError> {
        let ep = self.endpoint(app_key, key).await?;
        if self.store.delete_endpoint(&ep.app_id, &ep.id).await? {
            self.tell_operators(OperationalEvent::EndpointDeleted(EndpointRef::of(&ep)))
                .await;
        }
        self.endpoints_changed(&ep.app_id);
        Ok(())
    }

    /// Issues a new signing secret (`key`, or a generated one of the current
    /// secret's scheme). The old one keeps signing beside it for
    /// `grace_secs` ([`DEFAULT_GRACE_SECS`] when `None`, at most
    /// [`MAX_GRACE_SECS`]; 0 retires it at once); retired secrets past their
    /// grace are dropped, and at most [`limits::MAX_RETIRED_SECRETS`] may be
    /// in their grace at once (each signs every delivery). Returns the new
    /// secret.
    async fn rotate_endpoint_secret_once(
        &self,
        app_key: &str,
        key: &str,
        new_key: Option<String>,
        grace_secs: Option<u64>,
    ) -> Result<EndpointSecret, EngineError> {
        let grace = grace_secs.unwrap_or(DEFAULT_GRACE_SECS);
        if grace > MAX_GRACE_SECS {
            return Err(EngineError::invalid(
                "gracePeriodSeconds",
                format!("must be at most {MAX_GRACE_SECS} seconds"),
            ));
        }
        let mut ep = self.endpoint(app_key, key).await?;
        let new_secret = parse_secret("key", new_key, ep.secret.scheme())?;
        let now = self.now_ms();
        ep.retired_secrets.retain(|r| r.expires_at > now);
        if grace > 0 {
            limits::check_retired_secrets(&ep.retired_secrets)?;
            ep.retired_secrets.push(RetiredSecret {
                secret: std::mem::replace(&mut ep.secret, new_secret),
                expires_at: now + grace * 1000,
            });
        } else {
            ep.secret = new_secret;
        }
        Ok(self.save_endpoint(ep, false).await?.secret)
    }

    /// Replaces an endpoint's custom headers.
    async fn set_endpoint_headers_once(
        &self,
        app_key: &str,
        key: &str,
        headers: BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        check_headers(&headers)?;
        let mut ep = self.endpoint(app_key, key).await?;
        ep.headers = headers;
        self.save_endpoint(ep, false).await?;
        Ok(())
    }

    /// Deletes the headers named in `delete`, then adds or changes `set`;
    /// names match in any case, and a changed header replaces any spelling
    /// of its name already set.
    async fn patch_endpoint_headers_once(
        &self,
        app_key: &str,
        key: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), EngineError> {
        check_headers(&set)?;
        let mut ep = self.endpoint(app_key, key).await?;
        for name in delete.iter().chain(set.keys()) {
            ep.headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
        }
        ep.headers.extend(set);
        limits::check_header_sizes(&ep.headers)?;
        self.save_endpoint(ep, false).await?;
        Ok(())
    }

    /// Makes every failed delivery to the endpoint created in
    /// `[since, until)` (Unix ms; `until` defaults to now) pending again, and
    /// wakes the dispatcher. Returns how many.
    pub async fn recover_endpoint(
        &self,
        app_key: &str,
        key: &str,
        since: u64,
        until: Option<u64>,
    ) -> Result<u64, EngineError> {
        let ep = self.endpoint(app_key, key).await?;
        let requeued = self
            .store
            .recover(&ep.id, since, until, self.now_ms())
            .await?;
        tracing::info!(endpoint = %ep.id, deliveries = requeued, "recovering failed deliveries");
        self.wake_dispatcher();
        Ok(requeued)
    }

    /// Deliveries to the endpoint by status.
    pub async fn endpoint_stats(
        &self,
        app_key: &str,
        key: &str,
    ) -> Result<EndpointStats, EngineError> {
        let ep = self.endpoint(app_key, key).await?;
        Ok(self.store.endpoint_stats(&ep.id).await?)
    }
}

/// The endpoint changes of the API, each a read-modify-write.
impl Engine {
    /// See `upsert_endpoint_once` for what it does; it is made again on the
    /// stored row when another change landed meanwhile
    /// ([`Self::again_if_stale`]).
    pub async fn upsert_endpoint(
        &self,
        app_key: &str,
        key: &str,
        input: EndpointInput,
    ) -> Result<(Endpoint, bool), EngineError> {
        self.again_if_stale(|| self.upsert_endpoint_once(app_key, key, input.clone()))
            .await
    }

    /// See `patch_endpoint_once` for what it does; it is made again on the
    /// stored row when another change landed meanwhile
    /// ([`Self::again_if_stale`]).
    pub async fn patch_endpoint(
        &self,
        app_key: &str,
        key: &str,
        patch: EndpointPatch,
    ) -> Result<Endpoint, EngineError> {
        self.again_if_stale(|| self.patch_endpoint_once(app_key, key, patch.clone()))
            .await
    }

    /// See `rotate_endpoint_secret_once` for what it does; it is made again on the
    /// stored row when another change landed meanwhile
    /// ([`Self::again_if_stale`]).
    pub async fn rotate_endpoint_secret(
        &self,
        app_key: &str,
        key: &str,
        new_key: Option<String>,
        grace_secs: Option<u64>,
    ) -> Result<EndpointSecret, EngineError> {
        self.again_if_stale(|| {
            self.rotate_endpoint_secret_once(app_key, key, new_key.clone(), grace_secs)
        })
        .await
    }

    /// See `set_endpoint_headers_once` for what it does; it is made again on the
    /// stored row when another change landed meanwhile
    /// ([`Self::again_if_stale`]).
    pub async fn set_endpoint_headers(
        &self,
        app_key: &str,
        key: &str,
        headers: BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.again_if_stale(|| self.set_endpoint_headers_once(app_key, key, headers.clone()))
            .await
    }

    /// See `patch_endpoint_headers_once` for what it does; it is made again on the
    /// stored row when another change landed meanwhile
    /// ([`Self::again_if_stale`]).
    pub async fn patch_endpoint_headers(
        &self,
        app_key: &str,
        key: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), EngineError> {
        self.again_if_stale(|| {
            self.patch_endpoint_headers_once(app_key, key, set.clone(), delete.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<Endpoint, EngineError>) -> String {
        match r {
            Err(EngineError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn each_field_is_checked_and_named() {
        let app = switchyard_core::AppId::generate_at(1);
        let ok = || EndpointInput {
            url: "https://example.com/hook".into(),
            ..EndpointInput::default()
        };
        assert!(new_endpoint(app.clone(), ok(), None, 0, SignatureScheme::Hmac, &[]).is_ok());
        let cases: Vec<(EndpointInput, &str)> = vec![
            (
                EndpointInput {
                    url: "ftp://x/".into(),
                    ..ok()
                },
                "url",
            ),
            (
                EndpointInput {
                    filter_types: Some(vec![]),
                    ..ok()
                },
                "filterTypes",
            ),
            (
                EndpointInput {
                    channels: Some(vec!["a b".into()]),
                    ..ok()
                },
                "channels",
            ),
            (
                EndpointInput {
                    rate_limit: Some(0),
                    ..ok()
                },
                "rateLimit",
            ),
            (
                EndpointInput {
                    concurrency_limit: Some(0),
                    ..ok()
                },
                "concurrencyLimit",
            ),
            (
                EndpointInput {
                    secret: Some("nope".into()),
                    ..ok()
                },
                "secret",
            ),
            (
                EndpointInput {
                    payload_filter: Some(serde_json::json!({"x": 1})),
                    ..ok()
                },
                "payloadFilter",
            ),
            (
                EndpointInput {
                    headers: Some(BTreeMap::from([("webhook-id".to_owned(), "x".to_owned())])),
                    ..ok()
                },
                "headers.webhook-id",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                field(new_endpoint(
                    app.clone(),
                    input,
                    None,
                    0,
                    SignatureScheme::Hmac,
                    &[]
                )),
                want
            );
        }
    }
}
