//! Rows to records, once for both backends: each backend only says how to
//! read one column, so a record reads the same whichever database it came from.

use crate::*;
use switchyard_core::sealing::Keyring;
use switchyard_core::signing::EndpointSecret;

/// Reading one column of a result row by name.
pub(crate) trait Columns {
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    /// A column of bytes (a payload), whichever way the backend stored them.
    fn opt_bytes(&self, column: &str) -> Result<Option<bytes::Bytes>>;
    fn flag(&self, column: &str) -> Result<bool>;
    /// Any integer column, whatever its width; `None` for NULL.
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;

    fn text(&self, column: &str) -> Result<String> {
        self.opt_text(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.opt_int(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }

    /// A Unix-milliseconds column.
    fn ms(&self, column: &str) -> Result<u64> {
        Ok(self.int(column)?.max(0) as u64)
    }

    fn opt_ms(&self, column: &str) -> Result<Option<u64>> {
        Ok(self.opt_int(column)?.map(|t| t.max(0) as u64))
    }

    fn opt_u32(&self, column: &str) -> Result<Option<u32>> {
        Ok(self
            .opt_int(column)?
            .map(|v| v.clamp(0, i64::from(u32::MAX)) as u32))
    }

    fn status(&self, column: &str) -> Result<DeliveryStatus> {
        let v = self.int(column)?;
        u8::try_from(v)
            .ok()
            .and_then(DeliveryStatus::from_u8)
            .ok_or_else(|| StoreError::Corrupt(format!("{column} {v}")))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<Option<T>> {
        self.opt_text(column)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(StoreError::from)
    }

    /// A column of a [`SEALED`] table, opened with `keys` (a plain value as
    /// it is). `id` is the row's id, which the value is bound to.
    fn sealed(&self, column: &str, keys: &Keyring, table: &str, id: &str) -> Result<String> {
        open(keys, table, column, id, &self.text(column)?).map(std::borrow::Cow::into_owned)
    }

    fn sealed_json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
        keys: &Keyring,
        table: &str,
        id: &str,
    ) -> Result<T> {
        Ok(serde_json::from_str(
            &self.sealed(column, keys, table, id)?,
        )?)
    }
}

/// The columns that hold secrets, by table (whose key column is `id`):
/// sealed with the store's [`Keyring`] on every write, opened on every read,
/// and re-sealed by `reseal_secrets`.
pub(crate) const SEALED: &[(&str, &[&str])] = &[
    // Custom headers often carry credentials (`Authorization`).
    (
        "endpoints",
        &["secret", "retired_secrets", "headers", "auth"],
    ),
    (
        "sources",
        &["config", "token", "retired_tokens", "retired_secrets"],
    ),
    // Broker URLs carry passwords.
    ("broker_sources", &["broker"]),
];

/// Where a sealed value lives, which it is bound to:
/// `<table>.<column>:<row id>`.
pub(crate) fn sealed_place(table: &str, column: &str, id: &str) -> String {
    format!("{table}.{column}:{id}")
}

/// One stored value of a secret column opened (a plain one as it is); the
/// error names the column and the row.
fn open<'a>(
    keys: &Keyring,
    table: &str,
    column: &str,
    id: &str,
    stored: &'a str,
) -> Result<std::borrow::Cow<'a, str>> {
    keys.open(&sealed_place(table, column, id), stored)
        .map_err(|e| StoreError::Sealed(format!("{table}.{column} of {id}: {e}")))
}

/// The stored form of one secret column's value.
pub(crate) fn seal(keys: &Keyring, table: &str, column: &str, id: &str, plain: &str) -> String {
    keys.seal(&sealed_place(table, column, id), plain)
}

/// An endpoint's secret columns as stored: `(secret, retired_secrets,
/// headers, auth)`.
pub(crate) fn sealed_endpoint(
    keys: &Keyring,
    ep: &Endpoint,
) -> Result<(String, String, String, String)> {
    let id = ep.id.as_str();
    Ok((
        seal(keys, "endpoints", "secret", id, &ep.secret.to_secret_text()),
        seal(
            keys,
            "endpoints",
            "retired_secrets",
            id,
            &json_text(&ep.retired_secrets)?,
        ),
        seal(keys, "endpoints", "headers", id, &json_text(&ep.headers)?),
        seal(keys, "endpoints", "auth", id, &json_text(&ep.auth)?),
    ))
}

/// A source's secret columns as stored.
pub(crate) struct SealedSource {
    pub config: String,
    pub token: String,
    pub retired_tokens: String,
    pub retired_secrets: String,
}

pub(crate) fn sealed_source(keys: &Keyring, s: &Source) -> Result<SealedSource> {
    let id = s.id.as_str();
    Ok(SealedSource {
        config: seal(keys, "sources", "config", id, &json_text(&s.config)?),
        token: seal(keys, "sources", "token", id, &s.token),
        retired_tokens: seal(
            keys,
            "sources",
            "retired_tokens",
            id,
            &json_text(&s.retired_tokens)?,
        ),
        retired_secrets: seal(
            keys,
            "sources",
            "retired_secrets",
            id,
            &json_text(&s.retired_secrets)?,
        ),
    })
}

/// The count of values per key (`''` for plain ones) of one sealed column:
/// sealed values start `$sy1$` and name their key in the 8 characters after.
pub(crate) fn sealed_counts_select(table: &str, column: &str) -> String {
    format!(
        "SELECT CASE WHEN {column} LIKE '$sy1$%' THEN substr({column}, 6, 8) ELSE '' END AS k, COUNT(*) \
         FROM {table} GROUP BY 1"
    )
}

/// Rows of a [`SEALED`] table read per re-sealing step.
pub(crate) const RESEAL_BATCH: usize = 200;

/// The select of one re-sealing step: `id` and the sealed columns of up to
/// [`RESEAL_BATCH`] rows after the id bound as the one argument.
pub(crate) fn reseal_select(table: &str, columns: &[&str], placeholder: &str) -> String {
    format!(
        "SELECT id, {} FROM {table} WHERE id > {placeholder} ORDER BY id LIMIT {RESEAL_BATCH}",
        columns.join(", ")
    )
}

/// The compare-and-set update of one column re-sealed: new value, id and
/// the value read, in that order of placeholders.
pub(crate) fn reseal_update(table: &str, column: &str, p: [&str; 3]) -> String {
    format!(
        "UPDATE {table} SET {column} = {} WHERE id = {} AND {column} = {}",
        p[0], p[1], p[2]
    )
}

/// One stored value re-sealed under the current key (or opened to plain
/// when there is none); `None` when it already is.
pub(crate) fn resealed(
    keys: &Keyring,
    table: &str,
    column: &str,
    id: &str,
    stored: &str,
) -> Result<Option<String>> {
    if keys.is_current(stored) {
        return Ok(None);
    }
    let plain = open(keys, table, column, id, stored)?;
    Ok(Some(seal(keys, table, column, id, &plain)))
}

pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

pub(crate) fn opt_json_text<T: serde::Serialize>(value: &Option<T>) -> Result<Option<String>> {
    value.as_ref().map(json_text).transpose()
}

/// Turns the `limit + 1` rows a listing fetched into a page.
pub(crate) fn paginate<T>(mut rows: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let done = rows.len() <= limit;
    rows.truncate(limit);
    let iterator = rows.last().map(&key);
    Page {
        data: rows,
        iterator,
        done,
    }
}

pub(crate) const APP_COLS: &str = "id, uid, name, rate_limit, metadata, created_at, updated_at";

pub(crate) fn app_from_row(row: &impl Columns) -> Result<Application> {
    Ok(Application {
        id: AppId::from_trusted(row.text("id")?),
        uid: row.opt_text("uid")?.map(Uid::from_trusted),
        name: row.text("name")?,
        rate_limit: row.opt_u32("rate_limit")?,
        metadata: row.json("metadata")?.unwrap_or_default(),
        created_at: row.ms("created_at")?,
        updated_at: row.ms("updated_at")?,
    })
}

pub(crate) const ET_COLS: &str = "name, description, archived, deprecated, schemas, feature_flags, group_name, created_at, updated_at";

pub(crate) fn event_type_from_row(row: &impl Columns) -> Result<EventType> {
    Ok(EventType {
        name: EventTypeName::from_trusted(row.text("name")?),
        description: row.text("description")?,
        archived: row.flag("archived")?,
        deprecated: row.flag("deprecated")?,
        schemas: row.json("schemas")?,
        feature_flags: row.json("feature_flags")?,
        group_name: row.opt_text("group_name")?,
        created_at: row.ms("created_at")?,
        updated_at: row.ms("updated_at")?,
    })
}

pub(crate) const EP_COLS: &str = "id, app_id, uid, url, description, disabled, filter_types, channels, rate_limit, metadata, headers, secret, retired_secrets, created_at, updated_at, payload_filter, concurrency_limit, circuit_breaker, disabled_reason, fifo, auth";

pub(crate) fn endpoint_from_row(row: &impl Columns, keys: &Keyring) -> Result<Endpoint> {
    let id = row.text("id")?;
    let secret = endpoint_secret(&row.sealed("secret", keys, "endpoints", &id)?)?;
    let retired_secrets = row.sealed_json("retired_secrets", keys, "endpoints", &id)?;
    let headers = row.sealed_json("headers", keys, "endpoints", &id)?;
    let auth = row.sealed_json("auth", keys, "endpoints", &id)?;
    Ok(Endpoint {
        id: EndpointId::from_trusted(id),
        app_id: AppId::from_trusted(row.text("app_id")?),
        uid: row.opt_text("uid")?.map(Uid::from_trusted),
        url: EndpointUrl::from_trusted(row.text("url")?),
        description: row.text("description")?,
        disabled: row.flag("disabled")?,
        filter_types: row.json("filter_types")?,
        channels: row.json("channels")?,
        rate_limit: row.opt_u32("rate_limit")?,
        concurrency_limit: row.opt_u32("concurrency_limit")?,
        circuit_breaker: row.json("circuit_breaker")?,
        disabled_reason: row.opt_text("disabled_reason")?,
        fifo: row.flag("fifo")?,
        metadata: row.json("metadata")?.unwrap_or_default(),
        headers,
        auth,
        payload_filter: row.json("payload_filter")?,
        secret,
        retired_secrets,
        created_at: row.ms("created_at")?,
        updated_at: row.ms("updated_at")?,
    })
}

fn endpoint_secret(text: &str) -> Result<EndpointSecret> {
    EndpointSecret::parse_any_length(text)
        .map_err(|e| StoreError::Corrupt(format!("endpoint secret: {e}")))
}

/// The endpoint columns qualified with the `e.` alias, for joins.
pub(crate) fn endpoint_cols_of_e() -> String {
    EP_COLS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) const MSG_COLS: &str =
    "m.id, m.app_id, m.event_type, m.event_id, m.channels, m.tags, m.forward, m.created_at";

pub(crate) fn message_from_row(row: &impl Columns, with_payload: bool) -> Result<Message> {
    Ok(Message {
        id: MessageId::from_trusted(row.text("id")?),
        app_id: AppId::from_trusted(row.text("app_id")?),
        event_type: MessageEventType::from_trusted(row.text("event_type")?),
        event_id: row.opt_text("event_id")?,
        channels: row.json("channels")?,
        tags: row.json("tags")?,
        payload: if with_payload {
            row.opt_bytes("payload")?
        } else {
            None
        },
        forward: row.json("forward")?,
        created_at: row.ms("created_at")?,
    })
}

pub(crate) const ATTEMPT_COLS: &str = "a.id, a.app_id, a.msg_id, a.endpoint_id, a.url, a.status, a.response_status_code, a.response, a.response_duration_ms, a.manual, a.created_at";

pub(crate) fn attempt_from_row(row: &impl Columns) -> Result<Attempt> {
    let code = row.int("response_status_code")?;
    Ok(Attempt {
        id: AttemptId::from_trusted(row.text("id")?),
        app_id: AppId::from_trusted(row.text("app_id")?),
        msg_id: MessageId::from_trusted(row.text("msg_id")?),
        endpoint_id: EndpointId::from_trusted(row.text("endpoint_id")?),
        url: Some(row.text("url")?)
            .filter(|u| !u.is_empty())
            .map(EndpointUrl::from_trusted),
        status: row.status("status")?,
        response_status_code: i32::try_from(code)
            .map_err(|_| StoreError::Corrupt(format!("response_status_code {code}")))?,
        response: row.text("response")?,
        response_duration_ms: row.ms("response_duration_ms")?,
        manual: row.flag("manual")?,
        created_at: row.ms("created_at")?,
    })
}

/// A row of a delivery joined with its endpoint (`d.msg_id`,
/// `d.status AS delivery_status`, `d.next_attempt_at`, then the endpoint).
pub(crate) fn destination_from_row(row: &impl Columns, keys: &Keyring) -> Result<DeliveryView> {
    let endpoint = endpoint_from_row(row, keys)?;
    Ok(DeliveryView {
        msg_id: MessageId::from_trusted(row.text("msg_id")?),
        endpoint_id: endpoint.id.clone(),
        status: row.status("delivery_status")?,
        next_attempt_at: row.opt_ms("next_attempt_at")?,
        endpoint: Some(endpoint),
        message: None,
    })
}

/// A row of a delivery joined with its message (`d.endpoint_id`,
/// `d.status AS delivery_status`, `d.next_attempt_at`, then the message).
pub(crate) fn attempted_message_from_row(
    row: &impl Columns,
    with_payload: bool,
) -> Result<DeliveryView> {
    let message = message_from_row(row, with_payload)?;
    Ok(DeliveryView {
        msg_id: message.id.clone(),
        endpoint_id: EndpointId::from_trusted(row.text("endpoint_id")?),
        status: row.status("delivery_status")?,
        next_attempt_at: row.opt_ms("next_attempt_at")?,
        endpoint: None,
        message: Some(message),
    })
}

pub(crate) fn node_from_row(row: &impl Columns) -> Result<NodeInfo> {
    Ok(NodeInfo {
        node_id: row.text("node_id")?,
        address: row.text("address")?,
        started_at: row.ms("started_at")?,
        heartbeat_at: row.ms("heartbeat_at")?,
        partitions: Vec::new(),
    })
}

/// Reads claimed deliveries (`msg_id`, `endpoint_id`, `app_id`, `attempts`,
/// `manual`, `payload`, `forward`). The deliveries of one message share one
/// copy of its payload: a claim of K-way fan-out would otherwise hold K copies
/// of every body until they are sent.
#[derive(Default)]
pub(crate) struct TaskReader {
    contents: std::collections::HashMap<String, MessageContent>,
}

type MessageContent = (bytes::Bytes, Option<std::sync::Arc<Forward>>);

impl TaskReader {
    pub(crate) fn read(&mut self, row: &impl Columns) -> Result<DeliveryTask> {
        let msg_id = row.text("msg_id")?;
        let (payload, forward) = match self.contents.get(&msg_id) {
            Some(content) => content.clone(),
            None => {
                // An expunged message is still delivered, with an empty object.
                let payload = row
                    .opt_bytes("payload")?
                    .unwrap_or_else(|| bytes::Bytes::from_static(b"{}"));
                let forward = row.json("forward")?.map(std::sync::Arc::new);
                self.contents
                    .insert(msg_id.clone(), (payload.clone(), forward.clone()));
                (payload, forward)
            }
        };
        Ok(DeliveryTask {
            msg_id: MessageId::from_trusted(msg_id),
            endpoint_id: EndpointId::from_trusted(row.text("endpoint_id")?),
            app_id: AppId::from_trusted(row.text("app_id")?),
            attempts: row.int("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
            manual: row.flag("manual")?,
            fifo: row.flag("fifo")?,
            payload,
            forward,
        })
    }
}

pub(crate) const SOURCE_COLS: &str = "id, uid, name, kind, config, settings, metadata, app_id, token, retired_tokens, retired_secrets, created_at, updated_at";

/// A source row; retired secrets a row from before their column still keeps
/// in its config are moved to [`Source::retired_secrets`] (and written there
/// with the source's next change).
pub(crate) fn source_from_row(row: &impl Columns, keys: &Keyring) -> Result<Source> {
    let id = row.text("id")?;
    let mut config: serde_json::Value = row.sealed_json("config", keys, "sources", &id)?;
    let mut retired_secrets: Vec<RetiredSecret> =
        row.sealed_json("retired_secrets", keys, "sources", &id)?;
    retired_secrets.extend(Source::take_legacy_retired_secrets(&mut config));
    Ok(Source {
        token: row.sealed("token", keys, "sources", &id)?,
        retired_tokens: row.sealed_json("retired_tokens", keys, "sources", &id)?,
        id: SourceId::from_trusted(id),
        uid: row.opt_text("uid")?.map(Uid::from_trusted),
        name: row.text("name")?,
        kind: row.text("kind")?,
        config,
        settings: row.json("settings")?.unwrap_or_default(),
        metadata: row.json("metadata")?.unwrap_or_default(),
        app_id: AppId::from_trusted(row.text("app_id")?),
        retired_secrets,
        created_at: row.ms("created_at")?,
        updated_at: row.ms("updated_at")?,
    })
}

pub(crate) const SOURCE_STATS_COLS: &str =
    "accepted, duplicates, rejected, last_rejection, last_rejection_at";

pub(crate) fn source_stats_from_row(row: &impl Columns) -> Result<SourceStats> {
    Ok(SourceStats {
        accepted: row.int("accepted")?.max(0) as u64,
        duplicates: row.int("duplicates")?.max(0) as u64,
        rejected: row.int("rejected")?.max(0) as u64,
        last_rejection: row.opt_text("last_rejection")?,
        last_rejection_at: row.opt_ms("last_rejection_at")?,
    })
}

/// Records found by id or uid: the column to look in, `id` when the key is
/// a well-formed id of the record's kind (uids may not take id prefixes).
pub(crate) fn key_column(is_id: bool) -> &'static str {
    if is_id { "id" } else { "uid" }
}

/// A saved response (`key, status, body, created_at`). Its body may hold
/// secrets (a rotated secret, a new source's config), so it is sealed like
/// them; one that no key opens (sealed under a key since dropped) is
/// treated as not saved: the repeated request acts again rather than fail.
pub(crate) fn stored_response_from_row(
    row: &impl Columns,
    keys: &Keyring,
) -> Result<Option<StoredResponse>> {
    let status = row.int("status")?;
    let key = row.text("key")?;
    let body = match keys.open(&idempotency_place(&key), &row.text("body")?) {
        Ok(body) => body.into_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "a saved idempotent response does not open; it is not replayed");
            return Ok(None);
        }
    };
    Ok(Some(StoredResponse {
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("stored status {status}")))?,
        body,
        created_at: row.ms("created_at")?,
    }))
}

/// Where a saved response's body is bound when sealed.
pub(crate) fn idempotency_place(key: &str) -> String {
    sealed_place("idempotency", "body", key)
}

pub(crate) const CIRCUIT_COLS: &str = "endpoint_id, state, since, last_error, consecutive_failures";

pub(crate) fn circuit_from_row(row: &impl Columns) -> Result<(EndpointId, CircuitSnapshot)> {
    let state = row.text("state")?;
    Ok((
        EndpointId::from_trusted(row.text("endpoint_id")?),
        CircuitSnapshot {
            state: CircuitState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("circuit state {state}")))?,
            since: row.ms("since")?,
            last_error: row.opt_text("last_error")?,
            consecutive_failures: row.opt_u32("consecutive_failures")?.unwrap_or(0),
        },
    ))
}

pub(crate) const TOKEN_COLS: &str = "id, kind, name, token_sha256, censored, app_id, read_only, capabilities, session_id, created_at, expires_at";

pub(crate) fn token_from_row(row: &impl Columns) -> Result<ApiToken> {
    let kind = row.text("kind")?;
    Ok(ApiToken {
        id: TokenId::from_trusted(row.text("id")?),
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("token kind {kind}")))?,
        name: row.text("name")?,
        token_sha256: row.text("token_sha256")?,
        censored: row.text("censored")?,
        app_id: row.opt_text("app_id")?.map(AppId::from_trusted),
        read_only: row.flag("read_only")?,
        capabilities: row.json("capabilities")?,
        session_id: row.opt_text("session_id")?,
        created_at: row.ms("created_at")?,
        expires_at: row.opt_ms("expires_at")?,
    })
}

pub(crate) const BROKER_SOURCE_COLS: &str =
    "id, uid, name, app, batch_size, paused, broker, reads, metadata, created_at, updated_at";

/// A broker source's `broker` column as stored.
pub(crate) fn sealed_broker(keys: &Keyring, s: &BrokerSource) -> Result<String> {
    Ok(seal(
        keys,
        "broker_sources",
        "broker",
        s.id.as_str(),
        &json_text(&s.broker)?,
    ))
}

pub(crate) fn broker_source_from_row(row: &impl Columns, keys: &Keyring) -> Result<BrokerSource> {
    let id = row.text("id")?;
    Ok(BrokerSource {
        broker: row.sealed_json("broker", keys, "broker_sources", &id)?,
        id: BrokerSourceId::from_trusted(id),
        uid: row.opt_text("uid")?.map(Uid::from_trusted),
        name: row.text("name")?,
        app: row.opt_text("app")?,
        batch_size: row.opt_u32("batch_size")?.unwrap_or(1),
        paused: row.flag("paused")?,
        reads: row.text("reads")?,
        metadata: row.json("metadata")?.unwrap_or_default(),
        created_at: row.ms("created_at")?,
        updated_at: row.ms("updated_at")?,
    })
}

pub(crate) const BROKER_SOURCE_STATS_COLS: &str = "received, accepted, duplicates, rejected, deferred, backlog, backlog_at, last_error, last_error_at";

pub(crate) fn broker_source_stats_from_row(row: &impl Columns) -> Result<BrokerSourceStats> {
    let count = |c: &str| -> Result<u64> { Ok(row.int(c)?.max(0) as u64) };
    Ok(BrokerSourceStats {
        received: count("received")?,
        accepted: count("accepted")?,
        duplicates: count("duplicates")?,
        rejected: count("rejected")?,
        deferred: count("deferred")?,
        backlog: row.opt_int("backlog")?.map(|b| b.max(0) as u64),
        backlog_at: row.opt_ms("backlog_at")?,
        last_error: row.opt_text("last_error")?,
        last_error_at: row.opt_ms("last_error_at")?,
    })
}

pub(crate) const REJECTION_COLS: &str = "id, source_id, at, code, reason, body, body_size, headers";

pub(crate) fn rejection_from_row(row: &impl Columns) -> Result<BrokerRejection> {
    Ok(BrokerRejection {
        id: RejectionId::from_trusted(row.text("id")?),
        source_id: BrokerSourceId::from_trusted(row.text("source_id")?),
        at: row.ms("at")?,
        code: row.text("code")?,
        reason: row.text("reason")?,
        body: row.opt_bytes("body")?.unwrap_or_default(),
        body_size: row.int("body_size")?.max(0) as u64,
        headers: row.json("headers")?.unwrap_or_default(),
    })
}
