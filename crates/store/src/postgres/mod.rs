//! The shared backend: any number of stateless nodes on one PostgreSQL
//! database. Message intake is group-committed like on SQLite (concurrent
//! accepts share a transaction of multi-row inserts); wake-ups and cache
//! invalidations travel between nodes with `LISTEN/NOTIFY`.

mod listen;
mod tls;

use crate::rows::*;
use crate::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::{id_floor_for_time, partition_of};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// Schema steps in order; `switchyard_schema` records those applied.
const MIGRATIONS: [&str; 4] = [
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
];
const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;
/// Any constant shared by all nodes: serialises migrations across them.
const MIGRATION_LOCK: i64 = 0x5357_5943_4844;
/// The channel every node listens on.
const CHANNEL: &str = "switchyard";
/// Accept batches committing at once; more queue up and grow the next batch.
/// One at a time measured best here: while it commits, the next batch grows,
/// and fewer, larger statements cost PostgreSQL less per message.
const ACCEPT_PARALLELISM: usize = 1;
const ACCEPT_BATCH: usize = 512;
/// Batched statements join a few hundred keys against tables of millions of
/// rows. Before statistics exist (a new database) or when they are stale, the
/// planner may pick a hash join over a full scan, whose cost grows with the
/// table; per-key index lookups are always right here, for every statement
/// of ours, so this is set for the whole session. JIT is off: short statements gain nothing from it, and the cost penalty of
/// a disabled plan type would otherwise make every such plan look worth compiling.
const INDEX_JOINS_ONLY: &str =
    "-c enable_hashjoin=off -c enable_mergejoin=off -c enable_seqscan=off -c jit=off";

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    pub pool_size: usize,
    /// How long a request waits for a connection (or to connect) before the
    /// database counts as unavailable.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    accepts: mpsc::UnboundedSender<AcceptJob>,
    events: broadcast::Sender<ClusterEvent>,
    _listener: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct AcceptJob {
    new: NewMessage,
    reply: oneshot::Sender<Result<Accepted>>,
}

impl PgStore {
    /// Connects, migrates (once across concurrently starting nodes) and
    /// starts listening for other nodes' events.
    pub async fn connect(options: &PgOptions) -> Result<Self> {
        let (mut config, tls) = tls::parse(&options.url)?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("switchyard");
        }
        let session = match config.get_options() {
            Some(own) => format!("{own} {INDEX_JOINS_ONLY}"),
            None => INDEX_JOINS_ONLY.to_owned(),
        };
        config.options(&session);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("database pool: {e}")))?;
        migrate(&pool).await?;
        let (events, _) = broadcast::channel(1024);
        let listener = tokio::spawn(listen::run(config, tls, events.clone()));
        let (accepts, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run_accepts(pool.clone(), jobs));
        Ok(Self {
            pool,
            accepts,
            events,
            _listener: Arc::new(AbortOnDrop(listener.abort_handle())),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

async fn migrate(pool: &Pool) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = async {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS switchyard_schema (version INTEGER NOT NULL)")
            .await?;
        let version: i32 = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM switchyard_schema",
                &[],
            )
            .await?
            .try_get(0)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Database(format!(
                "the database has schema version {version}, newer than this binary ({SCHEMA_VERSION})"
            )));
        }
        for (done, step) in (1..).zip(MIGRATIONS).skip(usize::try_from(version).unwrap_or(0)) {
            client
                .batch_execute(&format!(
                    "BEGIN; {step} INSERT INTO switchyard_schema (version) VALUES ({done}); COMMIT;"
                ))
                .await?;
        }
        Ok(())
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

// ---- group-committed intake --------------------------------------------------

async fn run_accepts(pool: Pool, mut jobs: mpsc::UnboundedReceiver<AcceptJob>) {
    let permits = Arc::new(Semaphore::new(ACCEPT_PARALLELISM));
    loop {
        // Waiting for a free slot first lets jobs pile up into a larger batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(64);
        if jobs.recv_many(&mut batch, ACCEPT_BATCH).await == 0 {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let messages: Vec<&NewMessage> = batch.iter().map(|j| &j.new).collect();
            match accept_batch(&pool, &messages).await {
                Ok(results) => {
                    for (job, result) in batch.into_iter().zip(results) {
                        let _ = job.reply.send(result);
                    }
                }
                Err(e) => {
                    let unavailable = matches!(e, StoreError::Unavailable(_));
                    let reason = e.to_string();
                    for job in batch {
                        let _ = job.reply.send(Err(if unavailable {
                            StoreError::Unavailable(reason.clone())
                        } else {
                            StoreError::Database(reason.clone())
                        }));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Stores a batch of messages with their deliveries in one transaction.
/// Messages that collide with an earlier idempotency key or event id are
/// answered with the earlier message.
async fn accept_batch(pool: &Pool, batch: &[&NewMessage]) -> Result<Vec<Result<Accepted>>> {
    let client = pool.get().await?;
    let mut ids = Vec::with_capacity(batch.len());
    let mut apps = Vec::with_capacity(batch.len());
    let mut types = Vec::with_capacity(batch.len());
    let mut event_ids = Vec::with_capacity(batch.len());
    let mut keys = Vec::with_capacity(batch.len());
    let mut channels = Vec::with_capacity(batch.len());
    let mut tags = Vec::with_capacity(batch.len());
    let mut payloads = Vec::with_capacity(batch.len());
    let mut created = Vec::with_capacity(batch.len());
    let mut forwards = Vec::with_capacity(batch.len());
    let mut d_msgs = Vec::new();
    let mut d_eps = Vec::new();
    let mut d_apps = Vec::new();
    let mut d_status = Vec::new();
    let mut d_at = Vec::new();
    let mut d_partition = Vec::new();
    for new in batch {
        let m = &new.message;
        ids.push(m.id.as_str());
        apps.push(m.app_id.as_str());
        types.push(m.event_type.as_str());
        event_ids.push(m.event_id.as_deref());
        keys.push(new.idempotency_key.as_deref());
        channels.push(opt_json_text(&m.channels)?);
        tags.push(opt_json_text(&m.tags)?);
        payloads.push(m.payload.as_deref());
        created.push(m.created_at as i64);
        forwards.push(opt_json_text(&m.forward)?);
        for d in &new.deliveries {
            d_msgs.push(m.id.as_str());
            d_eps.push(d.endpoint_id.as_str());
            d_apps.push(m.app_id.as_str());
            d_status.push(initial_status(d) as i16);
            d_at.push(m.created_at as i64);
            d_partition.push(i32::from(partition_of(&d.endpoint_id)));
        }
    }
    // One statement, so one round trip and one commit: the messages that
    // did not collide are inserted, and their deliveries with them.
    let insert = client
        .prepare_cached(
            "WITH ins AS (
               INSERT INTO messages (id, app_id, event_type, event_id, idem_key, channels, tags, payload, created_at, forward)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[], $16::text[])
               ON CONFLICT DO NOTHING RETURNING id),
             dl AS (
               INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, updated_at)
               SELECT u.m, u.e, u.a, u.s, 0, u.t, u.p, u.t
               FROM UNNEST($10::text[], $11::text[], $12::text[], $13::int2[], $14::int8[], $15::int4[]) AS u(m, e, a, s, t, p)
               WHERE u.m COLLATE \"C\" IN (SELECT id FROM ins))
             SELECT id FROM ins",
        )
        .await?;
    let inserted: HashSet<String> = client
        .query(
            &insert,
            &[
                &ids,
                &apps,
                &types,
                &event_ids,
                &keys,
                &channels,
                &tags,
                &payloads,
                &created,
                &d_msgs,
                &d_eps,
                &d_apps,
                &d_status,
                &d_at,
                &d_partition,
                &forwards,
            ],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(0))
        .collect::<Result<_, _>>()?;
    let mut results = Vec::with_capacity(batch.len());
    let mut left_pending = false;
    for new in batch {
        let m = &new.message;
        if inserted.contains(m.id.as_str()) {
            left_pending |= new.deliveries.iter().any(|d| !d.send_now);
            results.push(Ok(Accepted::Created(m.clone())));
        } else {
            results.push(find_earlier(&client, new).await?);
        }
    }
    if left_pending {
        // After the commit: the owners find the deliveries when they look.
        // The slow poll finds them if this is lost.
        if let Err(e) = client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &ClusterEvent::Due.encode()],
            )
            .await
        {
            tracing::warn!(error = %e, "could not wake the other nodes");
        }
    }
    Ok(results)
}

async fn find_earlier(
    client: &impl deadpool_postgres::GenericClient,
    new: &NewMessage,
) -> Result<Result<Accepted>> {
    let m = &new.message;
    let app = m.app_id.as_str();
    if let Some(key) = &new.idempotency_key
        && let Some(found) = find_message(client, app, "idem_key", key).await?
    {
        return Ok(Ok(Accepted::Existing(found)));
    }
    if let Some(event_id) = &m.event_id
        && let Some(found) = find_message(client, app, "event_id", event_id).await?
    {
        return Ok(Ok(Accepted::Existing(found)));
    }
    Ok(Err(StoreError::Conflict("a message with this id".into())))
}

// ---- row mapping -----------------------------------------------------------

impl Columns for Row {
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.try_get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        use tokio_postgres::types::Type;
        let kind = self
            .columns()
            .iter()
            .find(|c| c.name() == column)
            .map(|c| c.type_().clone())
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))?;
        Ok(match kind {
            Type::INT2 => self.try_get::<_, Option<i16>>(column)?.map(i64::from),
            Type::INT4 => self.try_get::<_, Option<i32>>(column)?.map(i64::from),
            _ => self.try_get::<_, Option<i64>>(column)?,
        })
    }
}

fn unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn conflict_or(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        if unique_violation(&e) {
            StoreError::Conflict(what.into())
        } else {
            e.into()
        }
    }
}

/// A statement assembled from optional filters, with numbered parameters.
#[derive(Default)]
struct Query {
    sql: String,
    args: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Query {
    fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.args.push(Box::new(value));
        format!("${}", self.args.len())
    }

    fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    fn keyset(&mut self, column: &str, page: &PageRequest) {
        if let Some(it) = &page.iterator {
            let op = match page.order {
                Order::Ascending => '>',
                Order::Descending => '<',
            };
            let p = self.bind(it.clone());
            self.push(&format!(" AND {column} {op} {p}"));
        }
        let dir = match page.order {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        };
        let p = self.bind(page.limit as i64 + 1);
        self.push(&format!(" ORDER BY {column} {dir} LIMIT {p}"));
    }

    fn message_filter(&mut self, f: &MessageFilter) {
        if let Some(types) = &f.event_types
            && !types.is_empty()
        {
            let p = self.bind(types.clone());
            self.push(&format!(" AND m.event_type = ANY({p})"));
        }
        if let Some(channel) = &f.channel {
            let p = self.bind(channel.clone());
            self.push(&format!(" AND m.channels::jsonb ? {p}"));
        }
        if let Some(before) = f.before_ms {
            let p = self.bind(before as i64);
            self.push(&format!(" AND m.created_at < {p}"));
        }
        if let Some(after) = f.after_ms {
            let p = self.bind(after as i64);
            self.push(&format!(" AND m.created_at > {p}"));
        }
    }

    async fn run<T>(
        &self,
        client: &deadpool_postgres::Object,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let stmt = client.prepare_cached(&self.sql).await?;
        let args: Vec<&(dyn ToSql + Sync)> = self
            .args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        client.query(&stmt, &args).await?.iter().map(map).collect()
    }
}

/// At most one row of a cached statement, as a record.
async fn fetch_one<T>(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    map: impl Fn(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let stmt = client.prepare_cached(sql).await?;
    client
        .query_opt(&stmt, params)
        .await?
        .map(|r| map(&r))
        .transpose()
}

async fn find_message(
    client: &impl deadpool_postgres::GenericClient,
    app: &str,
    column: &str,
    value: &str,
) -> Result<Option<Message>> {
    fetch_one(
        client,
        &format!(
            "SELECT {MSG_COLS}, m.payload FROM messages m WHERE m.app_id = $1 AND m.{column} = $2"
        ),
        &[&app, &value],
        |r| message_from_row(r, true),
    )
    .await
}

async fn insert_app_row(
    client: &impl deadpool_postgres::GenericClient,
    app: &Application,
) -> Result<()> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO applications ({APP_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7)"
        ))
        .await?;
    client
        .execute(
            &stmt,
            &[
                &app.id.as_str(),
                &app.uid,
                &app.name,
                &app.rate_limit.map(i64::from),
                &json_text(&app.metadata)?,
                &(app.created_at as i64),
                &(app.updated_at as i64),
            ],
        )
        .await
        .map_err(conflict_or("an application with this uid"))?;
    Ok(())
}

/// Removes an application with its endpoints, messages, deliveries and
/// attempts; true when the application existed.
async fn delete_app_rows(
    client: &impl deadpool_postgres::GenericClient,
    app: &str,
) -> Result<bool> {
    for table in ["attempts", "deliveries", "messages", "endpoints"] {
        client
            .execute(&format!("DELETE FROM {table} WHERE app_id = $1"), &[&app])
            .await?;
    }
    Ok(client
        .execute("DELETE FROM applications WHERE id = $1", &[&app])
        .await?
        > 0)
}

async fn write_source(
    client: &impl deadpool_postgres::GenericClient,
    s: &Source,
    insert: bool,
) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO sources ({SOURCE_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
        )
    } else {
        "UPDATE sources SET uid=$2, name=$3, kind=$4, config=$5, settings=$6, metadata=$7, app_id=$8,
           token=$9, retired_tokens=$10, retired_secrets=$11, created_at=$12, updated_at=$13 WHERE id=$1"
            .to_string()
    };
    let stmt = client.prepare_cached(&sql).await?;
    let changed = client
        .execute(
            &stmt,
            &[
                &s.id,
                &s.uid,
                &s.name,
                &s.kind,
                &json_text(&s.config)?,
                &json_text(&s.settings)?,
                &json_text(&s.metadata)?,
                &s.app_id.as_str(),
                &s.token,
                &json_text(&s.retired_tokens)?,
                &json_text(&s.retired_secrets)?,
                &(s.created_at as i64),
                &(s.updated_at as i64),
            ],
        )
        .await
        .map_err(conflict_or("a source with this uid"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("source".into()));
    }
    Ok(())
}

fn partitions_param(partitions: &[u16]) -> Vec<i32> {
    partitions.iter().map(|&p| i32::from(p)).collect()
}

fn partitions_of(rows: &[Row]) -> Result<Vec<u16>> {
    rows.iter()
        .map(|r| {
            let p: i32 = r.try_get(0)?;
            u16::try_from(p).map_err(|_| StoreError::Corrupt(format!("partition {p}")))
        })
        .collect()
}

#[async_trait]
impl Store for PgStore {
    async fn insert_app(&self, app: Application) -> Result<Application> {
        insert_app_row(&self.client().await?, &app).await?;
        Ok(app)
    }

    async fn get_app(&self, id_or_uid: &str) -> Result<Option<Application>> {
        let column = key_column(AppId::parse(id_or_uid).is_some());
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {APP_COLS} FROM applications WHERE {column} = $1"),
            &[&id_or_uid],
            app_from_row,
        )
        .await
    }

    async fn list_apps(&self, page: &PageRequest) -> Result<Page<Application>> {
        let mut q = Query::new(format!("SELECT {APP_COLS} FROM applications WHERE TRUE"));
        q.keyset("id", page);
        let rows = q.run(&self.client().await?, app_from_row).await?;
        Ok(paginate(rows, page.limit, |a| a.id.to_string()))
    }

    async fn update_app(&self, app: Application) -> Result<Application> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE applications SET uid=$2, name=$3, rate_limit=$4, metadata=$5, updated_at=$6 WHERE id=$1",
            )
            .await?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &app.id.as_str(),
                    &app.uid,
                    &app.name,
                    &app.rate_limit.map(i64::from),
                    &json_text(&app.metadata)?,
                    &(app.updated_at as i64),
                ],
            )
            .await
            .map_err(conflict_or("an application with this uid"))?;
        if changed == 0 {
            return Err(StoreError::NotFound("application".into()));
        }
        Ok(app)
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let gone = delete_app_rows(&tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn insert_event_type(&self, et: EventType) -> Result<EventType> {
        self.write_event_type(&et, "").await?;
        Ok(et)
    }

    async fn put_event_type(&self, et: EventType) -> Result<EventType> {
        self.write_event_type(
            &et,
            " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, archived = EXCLUDED.archived,
              deprecated = EXCLUDED.deprecated, schemas = EXCLUDED.schemas, feature_flags = EXCLUDED.feature_flags,
              group_name = EXCLUDED.group_name, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
        )
        .await?;
        Ok(et)
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {ET_COLS} FROM event_types WHERE name = $1"),
            &[&name],
            event_type_from_row,
        )
        .await
    }

    async fn list_event_types(
        &self,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<EventType>> {
        let mut q = Query::new(format!("SELECT {ET_COLS} FROM event_types WHERE TRUE"));
        if !include_archived {
            q.push(" AND NOT archived");
        }
        q.keyset("name", page);
        let rows = q.run(&self.client().await?, event_type_from_row).await?;
        Ok(paginate(rows, page.limit, |e| e.name.clone()))
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM event_types WHERE name = $1", &[&name])
            .await?
            > 0)
    }

    async fn insert_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write_endpoint(&ep, true).await?;
        Ok(ep)
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> Result<Option<Endpoint>> {
        let column = key_column(EndpointId::parse(id_or_uid).is_some());
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = $1 AND {column} = $2"),
            &[&app.as_str(), &id_or_uid],
            endpoint_from_row,
        )
        .await
    }

    async fn list_endpoints(&self, app: &AppId, page: &PageRequest) -> Result<Page<Endpoint>> {
        let mut q = Query::new(format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = $1"));
        q.args.push(Box::new(app.to_string()));
        q.keyset("id", page);
        let rows = q.run(&self.client().await?, endpoint_from_row).await?;
        Ok(paginate(rows, page.limit, |e| e.id.to_string()))
    }

    async fn all_endpoints(&self, app: Option<&AppId>) -> Result<Vec<Endpoint>> {
        let mut q = Query::new(format!("SELECT {EP_COLS} FROM endpoints WHERE TRUE"));
        if let Some(app) = app {
            let p = q.bind(app.to_string());
            q.push(&format!(" AND app_id = {p}"));
        }
        q.push(" ORDER BY id");
        q.run(&self.client().await?, endpoint_from_row).await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write_endpoint(&ep, false).await?;
        Ok(ep)
    }

    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let gone = tx
            .execute(
                "DELETE FROM endpoints WHERE app_id = $1 AND id = $2",
                &[&app.as_str(), &id.as_str()],
            )
            .await?
            > 0;
        // Undelivered work for a deleted endpoint has nowhere to go; the
        // attempt log stays for inspection.
        tx.execute(
            "DELETE FROM deliveries WHERE endpoint_id = $1 AND status IN (1, 3)",
            &[&id.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(gone)
    }

    async fn accept(&self, new: NewMessage) -> Result<Accepted> {
        let (reply, answer) = oneshot::channel();
        self.accepts
            .send(AcceptJob { new, reply })
            .map_err(|_| StoreError::Unavailable("intake stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("intake stopped".into()))?
    }

    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> Result<Option<Message>> {
        let column = if MessageId::parse(id_or_event_id).is_some() {
            "id"
        } else {
            "event_id"
        };
        find_message(&self.client().await?, app.as_str(), column, id_or_event_id).await
    }

    async fn list_messages(&self, app: &AppId, filter: &MessageFilter) -> Result<Page<Message>> {
        let mut q = Query::new(format!(
            "SELECT {MSG_COLS}, m.payload FROM messages m WHERE m.app_id = $1"
        ));
        q.args.push(Box::new(app.to_string()));
        q.message_filter(filter);
        q.keyset("m.id", &filter.page);
        let rows = q
            .run(&self.client().await?, |r| {
                message_from_row(r, filter.with_content)
            })
            .await?;
        Ok(paginate(rows, filter.page.limit, |m| m.id.to_string()))
    }

    async fn expunge_message_content(&self, app: &AppId, id: &MessageId) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE messages SET payload = NULL WHERE app_id = $1 AND id = $2",
                &[&app.as_str(), &id.as_str()],
            )
            .await?
            > 0)
    }

    async fn claim_due(
        &self,
        now_ms: u64,
        limit: usize,
        partitions: &[u16],
    ) -> Result<Vec<DeliveryTask>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH due AS (
                   SELECT msg_id, endpoint_id FROM deliveries
                   WHERE status = 1 AND next_attempt_at <= $1 AND partition = ANY($3)
                   ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                 claimed AS (
                   UPDATE deliveries d SET status = 3, updated_at = $1 FROM due
                   WHERE d.msg_id = due.msg_id AND d.endpoint_id = due.endpoint_id
                   RETURNING d.msg_id, d.endpoint_id, d.app_id, d.attempts, d.manual)
                 SELECT c.msg_id, c.endpoint_id, c.app_id, c.attempts, c.manual,
                   m.payload, m.forward
                 FROM claimed c LEFT JOIN messages m ON m.app_id = c.app_id AND m.id = c.msg_id",
            )
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &(now_ms as i64),
                    &(limit as i64),
                    &partitions_param(partitions),
                ],
            )
            .await?;
        let mut tasks = TaskReader::default();
        rows.iter().map(|r| tasks.read(r)).collect()
    }

    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut a_ids = Vec::with_capacity(outcomes.len());
        let mut a_apps = Vec::with_capacity(outcomes.len());
        let mut a_msgs = Vec::with_capacity(outcomes.len());
        let mut a_eps = Vec::with_capacity(outcomes.len());
        let mut a_urls = Vec::with_capacity(outcomes.len());
        let mut a_status = Vec::with_capacity(outcomes.len());
        let mut a_codes = Vec::with_capacity(outcomes.len());
        let mut a_responses = Vec::with_capacity(outcomes.len());
        let mut a_durations = Vec::with_capacity(outcomes.len());
        let mut a_manual = Vec::with_capacity(outcomes.len());
        let mut a_at = Vec::with_capacity(outcomes.len());
        // One update per delivery, as if the batch's outcomes were applied in
        // order: the last decides the state, every scheduled one counts.
        let mut updates: HashMap<(&str, &str), (i16, i32, Option<i64>, i64)> = HashMap::new();
        for o in &outcomes {
            let a = &o.attempt;
            a_ids.push(a.id.as_str());
            a_apps.push(a.app_id.as_str());
            a_msgs.push(a.msg_id.as_str());
            a_eps.push(a.endpoint_id.as_str());
            a_urls.push(a.url.as_str());
            a_status.push(a.status as i16);
            a_codes.push(a.response_status_code);
            a_responses.push(a.response.as_str());
            a_durations.push(a.response_duration_ms as i64);
            a_manual.push(a.manual);
            a_at.push(a.created_at as i64);
            let counted = if a.manual { 0 } else { 1 };
            let entry = updates
                .entry((a.msg_id.as_str(), a.endpoint_id.as_str()))
                .or_insert((0, 0, None, 0));
            *entry = (
                o.delivery_status as i16,
                entry.1 + counted,
                o.next_attempt_at.map(|t| t as i64),
                a.created_at as i64,
            );
        }
        let mut u_msgs = Vec::with_capacity(updates.len());
        let mut u_eps = Vec::with_capacity(updates.len());
        let mut u_status = Vec::with_capacity(updates.len());
        let mut u_counted = Vec::with_capacity(updates.len());
        let mut u_next = Vec::with_capacity(updates.len());
        let mut u_at = Vec::with_capacity(updates.len());
        for ((msg, ep), (status, counted, next, at)) in updates {
            u_msgs.push(msg);
            u_eps.push(ep);
            u_status.push(status);
            u_counted.push(counted);
            u_next.push(next);
            u_at.push(at);
        }
        // One statement: one round trip, one commit.
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "WITH a AS (
                   INSERT INTO attempts ({})
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int2[],
                                        $7::int4[], $8::text[], $9::int8[], $10::bool[], $11::int8[]))
                 UPDATE deliveries d SET status = u.s, attempts = d.attempts + u.c, next_attempt_at = u.n,
                   manual = FALSE, updated_at = u.t
                 FROM UNNEST($12::text[], $13::text[], $14::int2[], $15::int4[], $16::int8[], $17::int8[]) AS u(m, e, s, c, n, t)
                 WHERE d.msg_id = u.m AND d.endpoint_id = u.e",
                ATTEMPT_COLS.replace("a.", "")
            ))
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &a_ids,
                    &a_apps,
                    &a_msgs,
                    &a_eps,
                    &a_urls,
                    &a_status,
                    &a_codes,
                    &a_responses,
                    &a_durations,
                    &a_manual,
                    &a_at,
                    &u_msgs,
                    &u_eps,
                    &u_status,
                    &u_counted,
                    &u_next,
                    &u_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn requeue(
        &self,
        app: &AppId,
        msg: &MessageId,
        ep: &EndpointId,
        now_ms: u64,
    ) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, manual, updated_at)
                 VALUES ($1, $2, $3, 1, 0, $4, $5, TRUE, $4)
                 ON CONFLICT (msg_id, endpoint_id) DO UPDATE SET status = 1, next_attempt_at = $4, manual = TRUE, updated_at = $4
                 WHERE deliveries.status <> 3",
            )
            .await?;
        Ok(client
            .execute(
                &stmt,
                &[
                    &msg.as_str(),
                    &ep.as_str(),
                    &app.as_str(),
                    &(now_ms as i64),
                    &i32::from(partition_of(ep)),
                ],
            )
            .await?
            > 0)
    }

    async fn recover(
        &self,
        ep: &EndpointId,
        since_ms: u64,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64> {
        let low = id_floor_for_time(MessageId::PREFIX, since_ms);
        let high = id_floor_for_time(MessageId::PREFIX, until_ms.unwrap_or(now_ms + 1));
        let client = self.client().await?;
        Ok(client
            .execute(
                "UPDATE deliveries SET status = 1, attempts = 0, next_attempt_at = $4, updated_at = $4
                 WHERE endpoint_id = $1 AND status = 2 AND msg_id >= $2 AND msg_id < $3",
                &[&ep.as_str(), &low, &high, &(now_ms as i64)],
            )
            .await?)
    }

    async fn endpoint_stats(&self, ep: &EndpointId) -> Result<EndpointStats> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT status, COUNT(*) AS n FROM deliveries WHERE endpoint_id = $1 GROUP BY status",
                &[&ep.as_str()],
            )
            .await?;
        let mut stats = EndpointStats::default();
        for row in rows {
            stats.set(row.status("status")?, row.ms("n")?);
        }
        Ok(stats)
    }

    async fn list_attempts(&self, f: &AttemptFilter) -> Result<Page<Attempt>> {
        let needs_message = f.event_types.is_some() || f.channel.is_some();
        let mut q = Query::new(format!("SELECT {ATTEMPT_COLS} FROM attempts a"));
        if needs_message {
            q.push(" JOIN messages m ON m.app_id = a.app_id AND m.id = a.msg_id");
        }
        q.push(" WHERE TRUE");
        for (column, value) in [
            ("a.app_id", f.app_id.as_ref().map(|v| v.to_string())),
            (
                "a.endpoint_id",
                f.endpoint_id.as_ref().map(|v| v.to_string()),
            ),
            ("a.msg_id", f.msg_id.as_ref().map(|v| v.to_string())),
        ] {
            if let Some(v) = value {
                let p = q.bind(v);
                q.push(&format!(" AND {column} = {p}"));
            }
        }
        if let Some(status) = f.status {
            let p = q.bind(i16::from(status));
            q.push(&format!(" AND a.status = {p}"));
        }
        if let Some(before) = f.before_ms {
            let p = q.bind(before as i64);
            q.push(&format!(" AND a.created_at < {p}"));
        }
        if let Some(after) = f.after_ms {
            let p = q.bind(after as i64);
            q.push(&format!(" AND a.created_at > {p}"));
        }
        if needs_message {
            q.message_filter(&MessageFilter {
                event_types: f.event_types.clone(),
                channel: f.channel.clone(),
                ..Default::default()
            });
        }
        q.keyset("a.id", &f.page);
        let rows = q.run(&self.client().await?, attempt_from_row).await?;
        Ok(paginate(rows, f.page.limit, |a| a.id.to_string()))
    }

    async fn get_attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Option<Attempt>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {ATTEMPT_COLS} FROM attempts a WHERE a.app_id = $1 AND a.msg_id = $2 AND a.id = $3"),
            &[&app.as_str(), &msg.as_str(), &id.as_str()],
            attempt_from_row,
        )
        .await
    }

    async fn deliveries_of_message(
        &self,
        app: &AppId,
        msg: &MessageId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>> {
        let cols = endpoint_cols_of_e();
        let mut q = Query::new(format!(
            "SELECT d.msg_id, d.status AS delivery_status, d.next_attempt_at, {cols}
             FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
             WHERE d.app_id = $1 AND d.msg_id = $2"
        ));
        q.args.push(Box::new(app.to_string()));
        q.args.push(Box::new(msg.to_string()));
        q.keyset("d.endpoint_id", page);
        let rows = q.run(&self.client().await?, destination_from_row).await?;
        Ok(paginate(rows, page.limit, |d| d.endpoint_id.to_string()))
    }

    async fn deliveries_of_endpoint(
        &self,
        ep: &EndpointId,
        filter: &MessageFilter,
        status: Option<u8>,
    ) -> Result<Page<DeliveryView>> {
        let mut q = Query::new(format!(
            "SELECT d.endpoint_id, d.status AS delivery_status, d.next_attempt_at, {MSG_COLS}, m.payload
             FROM deliveries d JOIN messages m ON m.app_id = d.app_id AND m.id = d.msg_id
             WHERE d.endpoint_id = $1"
        ));
        q.args.push(Box::new(ep.to_string()));
        if let Some(status) = status {
            let p = q.bind(i16::from(status));
            q.push(&format!(" AND d.status = {p}"));
        }
        q.message_filter(filter);
        q.keyset("d.msg_id", &filter.page);
        let rows = q
            .run(&self.client().await?, |row| {
                attempted_message_from_row(row, filter.with_content)
            })
            .await?;
        Ok(paginate(rows, filter.page.limit, |d| d.msg_id.to_string()))
    }

    async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        fetch_one(
            &self.client().await?,
            "SELECT status, body, created_at FROM idempotency WHERE key = $1",
            &[&key],
            stored_response_from_row,
        )
        .await
    }

    async fn save_idempotent_response(&self, key: &str, response: StoredResponse) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                &[
                    &key,
                    &i32::from(response.status),
                    &response.body,
                    &(response.created_at as i64),
                ],
            )
            .await?;
        Ok(())
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        Ok(client
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &value],
            )
            .await?
            > 0)
    }

    async fn replace_setting(&self, key: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, before_ms: u64) -> Result<u64> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM idempotency WHERE created_at < $1",
                &[&(before_ms as i64)],
            )
            .await?)
    }

    async fn purge_messages(&self, before_ms: u64, limit: usize) -> Result<u64> {
        let floor = id_floor_for_time(MessageId::PREFIX, before_ms);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Ids sort by time, so each application's old messages are a range of
        // the (app_id, id) key: no scan of the whole table.
        let old = tx
            .query(
                "SELECT m.app_id, m.id FROM applications a
                 JOIN messages m ON m.app_id = a.id AND m.id < $1
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.msg_id = m.id AND d.status IN (1, 3))
                 LIMIT $2
                 FOR UPDATE OF m SKIP LOCKED",
                &[&floor, &(limit as i64)],
            )
            .await?;
        let mut apps = Vec::with_capacity(old.len());
        let mut ids = Vec::with_capacity(old.len());
        for row in &old {
            apps.push(row.try_get::<_, String>(0)?);
            ids.push(row.try_get::<_, String>(1)?);
        }
        tx.execute("DELETE FROM attempts WHERE msg_id = ANY($1)", &[&ids])
            .await?;
        tx.execute("DELETE FROM deliveries WHERE msg_id = ANY($1)", &[&ids])
            .await?;
        tx.execute(
            "DELETE FROM messages m USING UNNEST($1::text[], $2::text[]) AS old(app_id, id)
             WHERE m.app_id = old.app_id AND m.id = old.id",
            &[&apps, &ids],
        )
        .await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn lease(&self, r: &LeaseRequest) -> Result<LeaseGrant> {
        let now = r.now_ms as i64;
        let expires = (r.now_ms + r.ttl_ms) as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO nodes (node_id, address, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (node_id) DO UPDATE SET address = $2, heartbeat_at = $3,
               started_at = CASE WHEN $4 THEN $3 ELSE nodes.started_at END",
            &[&r.node_id, &r.address, &now, &r.fresh],
        )
        .await?;
        let live: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= $1",
                &[&(now - r.ttl_ms as i64)],
            )
            .await?
            .try_get(0)?;
        let live_nodes = u32::try_from(live).unwrap_or(u32::MAX);
        let fair = fair_share(live_nodes);
        let mut owned = partitions_of(
            &tx.query(
                "UPDATE leases SET expires_at = $2,
                   acquired_at = CASE WHEN $3 THEN $4 ELSE acquired_at END
                 WHERE node_id = $1 RETURNING partition",
                &[&r.node_id, &expires, &r.fresh, &now],
            )
            .await?,
        )?;
        let mut acquired = if r.fresh { owned.clone() } else { Vec::new() };
        if owned.len() < fair {
            // SKIP LOCKED and the repeated condition make concurrent nodes
            // take disjoint partitions.
            let taken = partitions_of(
                &tx.query(
                    "UPDATE leases SET node_id = $1, expires_at = $2, acquired_at = $3
                     WHERE partition IN (
                       SELECT partition FROM leases WHERE node_id IS NULL OR expires_at < $3
                       ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED)
                     AND (node_id IS NULL OR expires_at < $3)
                     RETURNING partition",
                    &[&r.node_id, &expires, &now, &((fair - owned.len()) as i64)],
                )
                .await?,
            )?;
            owned.extend_from_slice(&taken);
            acquired.extend(taken);
        }
        if !acquired.is_empty() {
            tx.execute(
                "UPDATE deliveries SET status = 1 WHERE status = 3 AND partition = ANY($1)",
                &[&partitions_param(&acquired)],
            )
            .await?;
        }
        let stranded = tx
            .execute(
                "UPDATE deliveries d SET status = 1 FROM leases l
                 WHERE d.status = 3 AND d.partition = l.partition AND l.node_id = $1
                   AND d.updated_at < l.acquired_at - $2",
                &[&r.node_id, &(lease_margin_ms(r.ttl_ms) as i64)],
            )
            .await? as usize;
        if r.fresh && owned.len() < fair {
            // A newcomer short of its share: the others should shed theirs now.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &ClusterEvent::Leases.encode()],
            )
            .await?;
        }
        tx.commit().await?;
        owned.sort_unstable();
        acquired.sort_unstable();
        Ok(LeaseGrant {
            surplus: surplus_of(&owned, fair),
            owned,
            acquired,
            stranded,
            live_nodes,
        })
    }

    async fn release_partitions(&self, node_id: &str, partitions: &[u16]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let released = partitions_of(
            &tx.query(
                "UPDATE leases SET node_id = NULL, expires_at = 0
                 WHERE node_id = $1 AND partition = ANY($2) RETURNING partition",
                &[&node_id, &partitions_param(partitions)],
            )
            .await?,
        )?;
        tx.execute(
            "UPDATE deliveries SET status = 1 WHERE status = 3 AND partition = ANY($1)",
            &[&partitions_param(&released)],
        )
        .await?;
        for event in [ClusterEvent::Due, ClusterEvent::Leases] {
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &event.encode()])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn leave(&self, node_id: &str) -> Result<()> {
        let all: Vec<u16> = (0..switchyard_core::PARTITIONS).collect();
        self.client()
            .await?
            .execute(
                "UPDATE nodes SET heartbeat_at = 0 WHERE node_id = $1",
                &[&node_id],
            )
            .await?;
        self.release_partitions(node_id, &all).await
    }

    async fn cluster(&self, now_ms: u64) -> Result<Vec<NodeInfo>> {
        let client = self.client().await?;
        let mut nodes = client
            .query(
                "SELECT node_id, address, started_at, heartbeat_at FROM nodes ORDER BY node_id",
                &[],
            )
            .await?
            .iter()
            .map(node_from_row)
            .collect::<Result<Vec<_>>>()?;
        let rows = client
            .query(
                "SELECT partition, node_id FROM leases WHERE node_id IS NOT NULL AND expires_at >= $1 ORDER BY partition",
                &[&(now_ms as i64)],
            )
            .await?;
        let leases = partitions_of(&rows)?
            .into_iter()
            .zip(rows.iter())
            .map(|(p, row)| Ok((p, row.try_get::<_, String>(1)?)))
            .collect::<Result<Vec<_>>>()?;
        attach_leases(&mut nodes, leases);
        Ok(nodes)
    }

    async fn publish(&self, event: &ClusterEvent) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &event.encode()])
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<ClusterEvent>> {
        Some(self.events.subscribe())
    }

    async fn insert_source(&self, source: Source, app: Application) -> Result<Source> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        insert_app_row(&tx, &app).await?;
        write_source(&tx, &source, true).await?;
        tx.commit().await?;
        Ok(source)
    }

    async fn get_source(&self, id_or_uid: &str) -> Result<Option<Source>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!(
                "SELECT {SOURCE_COLS} FROM sources WHERE {} = $1",
                key_column(SourceId::parse(id_or_uid).is_some())
            ),
            &[&id_or_uid],
            source_from_row,
        )
        .await
    }

    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>> {
        let mut q = Query::new(format!("SELECT {SOURCE_COLS} FROM sources WHERE TRUE"));
        q.keyset("id", page);
        let rows = q.run(&self.client().await?, source_from_row).await?;
        Ok(paginate(rows, page.limit, |s| s.id.clone()))
    }

    async fn all_sources(&self) -> Result<Vec<Source>> {
        Query::new(format!("SELECT {SOURCE_COLS} FROM sources ORDER BY id"))
            .run(&self.client().await?, source_from_row)
            .await
    }

    async fn update_source(&self, source: Source) -> Result<Source> {
        write_source(&self.client().await?, &source, false).await?;
        Ok(source)
    }

    async fn delete_source(&self, id: &str) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT app_id FROM sources WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
        else {
            return Ok(false);
        };
        let app: String = row.try_get(0)?;
        delete_app_rows(&tx, &app).await?;
        tx.execute("DELETE FROM sources WHERE id = $1", &[&id])
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_source_stats(&self, deltas: Vec<(String, SourceStats)>) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE sources SET accepted = accepted + $2, duplicates = duplicates + $3,
                   rejected = rejected + $4,
                   last_rejection = COALESCE($5, last_rejection),
                   last_rejection_at = COALESCE($6, last_rejection_at)
                 WHERE id = $1",
            )
            .await?;
        for (id, d) in &deltas {
            client
                .execute(
                    &stmt,
                    &[
                        id,
                        &(d.accepted as i64),
                        &(d.duplicates as i64),
                        &(d.rejected as i64),
                        &d.last_rejection,
                        &d.last_rejection_at.map(|t| t as i64),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn source_stats(&self, id: &str) -> Result<Option<SourceStats>> {
        let client = self.client().await?;
        fetch_one(
            &client,
            &format!("SELECT {SOURCE_STATS_COLS} FROM sources WHERE id = $1"),
            &[&id],
            source_stats_from_row,
        )
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.client().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }
}

impl PgStore {
    async fn write_event_type(&self, et: &EventType, on_conflict: &str) -> Result<()> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "INSERT INTO event_types ({ET_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9){on_conflict}"
            ))
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &et.name,
                    &et.description,
                    &et.archived,
                    &et.deprecated,
                    &opt_json_text(&et.schemas)?,
                    &opt_json_text(&et.feature_flags)?,
                    &et.group_name,
                    &(et.created_at as i64),
                    &(et.updated_at as i64),
                ],
            )
            .await
            .map_err(conflict_or(&format!("event type '{}'", et.name)))?;
        Ok(())
    }

    async fn write_endpoint(&self, ep: &Endpoint, insert: bool) -> Result<()> {
        let sql = if insert {
            format!(
                "INSERT INTO endpoints ({EP_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"
            )
        } else {
            "UPDATE endpoints SET app_id=$2, uid=$3, url=$4, description=$5, disabled=$6, filter_types=$7, channels=$8,
               rate_limit=$9, metadata=$10, headers=$11, secret=$12, retired_secrets=$13, created_at=$14, updated_at=$15,
               payload_filter=$16
             WHERE id=$1"
                .to_string()
        };
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &ep.id.as_str(),
                    &ep.app_id.as_str(),
                    &ep.uid,
                    &ep.url,
                    &ep.description,
                    &ep.disabled,
                    &opt_json_text(&ep.filter_types)?,
                    &opt_json_text(&ep.channels)?,
                    &ep.rate_limit.map(i64::from),
                    &json_text(&ep.metadata)?,
                    &json_text(&ep.headers)?,
                    &ep.secret,
                    &json_text(&ep.retired_secrets)?,
                    &(ep.created_at as i64),
                    &(ep.updated_at as i64),
                    &opt_json_text(&ep.payload_filter)?,
                ],
            )
            .await
            .map_err(conflict_or("an endpoint with this uid"))?;
        if changed == 0 {
            return Err(StoreError::NotFound("endpoint".into()));
        }
        Ok(())
    }
}

/// The PostgreSQL server the test suites use: `SWITCHYARD_TEST_POSTGRES_URL`,
/// by default the local one.
pub fn test_server_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A scratch database on the test server, dropped (with any connections
/// still open to it) when this value is dropped, panic or not.
pub struct ScratchDatabase {
    url: String,
    name: String,
    admin: String,
}

impl ScratchDatabase {
    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run on a runtime's thread, where blocking on async work is
        // refused: the database is dropped from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_scratch_database(&admin, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop scratch database {}: {e}", self.name);
        }
    }
}

/// A fresh scratch database on the test server, for one test; it is dropped
/// when the returned value is. Tests calling this carry
/// `#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]`, so they
/// run only when asked (`--include-ignored`, nextest's `--run-ignored all`),
/// which `scripts/test` does once the server answers; a run without it
/// reports them as ignored or skipped. Once asked to run, an unreachable
/// server is a failure naming it, never a silent pass.
pub async fn test_database() -> ScratchDatabase {
    let admin = test_server_url();
    match create_scratch_database(&admin).await {
        Ok(url) => {
            let name = url
                .split('?')
                .next()
                .and_then(|base| base.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            ScratchDatabase { url, name, admin }
        }
        Err(e) => panic!(
            "this test needs PostgreSQL at {} and it is unreachable: {e}\n\
             (scripts/test runs the PostgreSQL tests only when the server answers; \
             set SWITCHYARD_TEST_POSTGRES_URL to use another server)",
            describe_url(&admin)
        ),
    }
}

async fn drop_scratch_database(admin_url: &str, name: &str) -> Result<()> {
    let (mut config, tls) = tls::parse(admin_url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    driver.abort();
    Ok(())
}

/// `postgres host/dbname` for a database URL, without credentials, for logs
/// and error messages.
pub fn describe_url(url: &str) -> String {
    match tls::settings(url) {
        Ok((config, _, _)) => format!(
            "postgres {}/{}",
            match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            },
            config.get_dbname().unwrap_or("")
        ),
        Err(_) => "postgres (invalid URL)".into(),
    }
}

/// Creates an empty, uniquely named database next to the one `admin_url`
/// points at and returns its URL; the test suites give each test its own.
/// Scratch databases left by earlier runs (older than an hour) are dropped.
pub async fn create_scratch_database(admin_url: &str) -> Result<String> {
    let (mut config, tls) = tls::parse(admin_url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(connection);
    let now = switchyard_core::timefmt::now_ms() / 1000;
    let stale = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'switchyard_scratch_%'",
            &[],
        )
        .await?;
    for row in stale {
        let name: String = row.try_get(0)?;
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if born + 3_600 < now {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
    let name = format!("switchyard_scratch_{now}_{:08x}", rand_suffix());
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    driver.abort();
    Ok(with_database(admin_url, &name))
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// The same connection URL with another database name.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_or_added() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "y"),
            "postgresql://h/y?sslmode=disable"
        );
    }
}
