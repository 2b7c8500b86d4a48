//! The embedded backend: one SQLite file in WAL mode, one group-committing
//! writer thread and a small pool of reader connections.

mod checkpoint;
mod writer;

use crate::rows::*;
use crate::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use switchyard_core::{id_floor_for_time, partition_of};
use tokio::sync::Semaphore;
use writer::Writer;

const READERS: usize = 4;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: survives a killed process; the last
    /// commits can be lost only if the machine itself loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced.
    Full,
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    /// Held for the store's life: one process per database file.
    _lock: Arc<std::fs::File>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// Page cache per connection, in KiB: the writer keeps the hot tail of every
/// index; readers and the checkpointer need little.
const WRITER_CACHE_KIB: u32 = 16_384;
const READER_CACHE_KIB: u32 = 4_096;

fn open(path: &Path, durability: Durability, cache_kib: u32) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF;
         PRAGMA cache_size=-{cache_kib}; PRAGMA temp_store=MEMORY;"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Schema steps in order; the database's `user_version` counts those applied.
const MIGRATIONS: [&str; 5] = [
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
    include_str!("schema5.sql"),
];
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Database(format!(
            "the database has schema version {version}, newer than this binary ({SCHEMA_VERSION})"
        )));
    }
    for (done, step) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        conn.execute_batch(&format!(
            "BEGIN; {step} PRAGMA user_version = {done}; COMMIT;"
        ))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub fn open(path: impl Into<PathBuf>, durability: Durability) -> Result<Self> {
        let path = path.into();
        let lock = lock_database(&path)?;
        let conn = open(&path, durability, WRITER_CACHE_KIB)?;
        migrate(&conn)?;
        // Only this process uses the file, so leases left by an earlier one
        // are void; the next lease call takes them all afresh.
        conn.execute_batch("UPDATE leases SET node_id = NULL, expires_at = 0;")?;
        // Checkpoints run on their own thread; the writer only copies the
        // last frames when the log must rewind (see `checkpoint`).
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        let rewind = checkpoint::RewindRequest::default();
        checkpoint::start(open(&path, durability, READER_CACHE_KIB)?, rewind.clone());
        Ok(Self {
            writer: Writer::start(conn, rewind),
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(READERS),
            }),
            _lock: Arc::new(lock),
        })
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let _permit = readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("reader pool closed".into()))?;
        let pool = readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => open(&pool.path, Durability::Normal, READER_CACHE_KIB)?,
            };
            let result = work(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write(work).await
    }

    /// For the hot paths, whose jobs fail only when the database does.
    async fn write_fast<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write_unisolated(work).await
    }
}

/// Two processes writing one SQLite file would each believe they own every
/// partition; the second is refused instead.
fn lock_database(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another switchyard process (use PostgreSQL to run several nodes)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

// ---- row mapping -----------------------------------------------------------

impl Columns for Row<'_> {
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.get(column)?)
    }
}

/// Adds the keyset condition and ordering for `column` to a query.
fn keyset(sql: &mut String, args: &mut Vec<SqlValue>, column: &str, page: &PageRequest) {
    if let Some(it) = &page.iterator {
        let op = match page.order {
            Order::Ascending => '>',
            Order::Descending => '<',
        };
        sql.push_str(&format!(" AND {column} {op} ?"));
        args.push(SqlValue::Text(it.clone()));
    }
    let dir = match page.order {
        Order::Ascending => "ASC",
        Order::Descending => "DESC",
    };
    sql.push_str(&format!(" ORDER BY {column} {dir} LIMIT ?"));
    args.push(SqlValue::Integer(page.limit as i64 + 1));
}

fn query_all<T>(
    conn: &Connection,
    sql: &str,
    args: Vec<SqlValue>,
    mut map: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row of a query, if any (the twin of the PostgreSQL `fetch_one`).
fn query_first<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    map: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    rows.next()?.map(map).transpose()
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn get_app_sync(conn: &Connection, id_or_uid: &str) -> Result<Option<Application>> {
    let column = key_column(AppId::parse(id_or_uid).is_some());
    query_first(
        conn,
        &format!("SELECT {APP_COLS} FROM applications WHERE {column} = ?"),
        [id_or_uid],
        |r| app_from_row(r),
    )
}

fn get_endpoint_sync(conn: &Connection, app: &str, id_or_uid: &str) -> Result<Option<Endpoint>> {
    let column = key_column(EndpointId::parse(id_or_uid).is_some());
    query_first(
        conn,
        &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ? AND {column} = ?"),
        [app, id_or_uid],
        |r| endpoint_from_row(r),
    )
}

fn find_message_sync(
    conn: &Connection,
    app: &str,
    column: &str,
    value: &str,
) -> Result<Option<Message>> {
    query_first(
        conn,
        &format!(
            "SELECT {MSG_COLS}, m.payload FROM messages m WHERE m.app_id = ? AND m.{column} = ?"
        ),
        [app, value],
        |r| message_from_row(r, true),
    )
}

fn insert_app_row(conn: &Connection, app: &Application) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO applications ({APP_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7)"
    ))?
    .execute(params![
        app.id.as_str(),
        app.uid,
        app.name,
        app.rate_limit,
        json_text(&app.metadata)?,
        app.created_at as i64,
        app.updated_at as i64
    ])
    .map_err(|e| conflict_or(e, "an application with this uid"))?;
    Ok(())
}

/// Removes an application with its endpoints, messages, deliveries and
/// attempts; true when the application existed.
fn delete_app_rows(conn: &Connection, app: &str) -> Result<bool> {
    for table in ["attempts", "deliveries", "messages", "endpoints"] {
        conn.execute(&format!("DELETE FROM {table} WHERE app_id = ?"), [app])?;
    }
    Ok(conn.execute("DELETE FROM applications WHERE id = ?", [app])? > 0)
}

fn conflict_or(e: rusqlite::Error, what: &str) -> StoreError {
    if unique_violation(&e) {
        StoreError::Conflict(what.into())
    } else {
        e.into()
    }
}

fn write_source(conn: &Connection, s: &Source, insert: bool) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO sources ({SOURCE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
        )
    } else {
        "UPDATE sources SET uid=?2, name=?3, kind=?4, config=?5, settings=?6, metadata=?7, app_id=?8,
           token=?9, retired_tokens=?10, retired_secrets=?11, created_at=?12, updated_at=?13 WHERE id=?1"
            .to_string()
    };
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params![
            s.id,
            s.uid,
            s.name,
            s.kind,
            json_text(&s.config)?,
            json_text(&s.settings)?,
            json_text(&s.metadata)?,
            s.app_id.as_str(),
            s.token,
            json_text(&s.retired_tokens)?,
            json_text(&s.retired_secrets)?,
            s.created_at as i64,
            s.updated_at as i64,
        ])
        .map_err(|e| conflict_or(e, "a source with this uid"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("source".into()));
    }
    Ok(())
}

fn write_endpoint(conn: &Connection, ep: &Endpoint, insert: bool) -> Result<()> {
    let sql = if insert {
        format!(
            "INSERT INTO endpoints ({EP_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
        )
    } else {
        "UPDATE endpoints SET app_id=?2, uid=?3, url=?4, description=?5, disabled=?6, filter_types=?7, channels=?8, rate_limit=?9, metadata=?10, headers=?11, secret=?12, retired_secrets=?13, created_at=?14, updated_at=?15, payload_filter=?16 WHERE id=?1".to_string()
    };
    let changed = conn
        .prepare_cached(&sql)?
        .execute(params![
            ep.id.as_str(),
            ep.app_id.as_str(),
            ep.uid,
            ep.url,
            ep.description,
            ep.disabled,
            opt_json_text(&ep.filter_types)?,
            opt_json_text(&ep.channels)?,
            ep.rate_limit,
            json_text(&ep.metadata)?,
            json_text(&ep.headers)?,
            ep.secret,
            json_text(&ep.retired_secrets)?,
            ep.created_at as i64,
            ep.updated_at as i64,
            opt_json_text(&ep.payload_filter)?,
        ])
        .map_err(|e| conflict_or(e, "an endpoint with this uid"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("endpoint".into()));
    }
    Ok(())
}

fn write_event_type(conn: &Connection, et: &EventType, mode: &str) -> Result<()> {
    conn.prepare_cached(&format!(
        "{mode} INTO event_types ({ET_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"
    ))?
    .execute(params![
        et.name,
        et.description,
        et.archived,
        et.deprecated,
        opt_json_text(&et.schemas)?,
        opt_json_text(&et.feature_flags)?,
        et.group_name,
        et.created_at as i64,
        et.updated_at as i64,
    ])
    .map_err(|e| conflict_or(e, &format!("event type '{}'", et.name)))?;
    Ok(())
}

fn message_filter_sql(sql: &mut String, args: &mut Vec<SqlValue>, f: &MessageFilter) {
    if let Some(types) = &f.event_types
        && !types.is_empty()
    {
        sql.push_str(&format!(
            " AND m.event_type IN ({})",
            vec!["?"; types.len()].join(",")
        ));
        args.extend(types.iter().map(|t| SqlValue::Text(t.clone())));
    }
    if let Some(channel) = &f.channel {
        sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ?)");
        args.push(SqlValue::Text(channel.clone()));
    }
    if let Some(before) = f.before_ms {
        sql.push_str(" AND m.created_at < ?");
        args.push(SqlValue::Integer(before as i64));
    }
    if let Some(after) = f.after_ms {
        sql.push_str(" AND m.created_at > ?");
        args.push(SqlValue::Integer(after as i64));
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_app(&self, app: Application) -> Result<Application> {
        self.write(move |conn| {
            insert_app_row(conn, &app)?;
            Ok(app)
        })
        .await
    }

    async fn get_app(&self, id_or_uid: &str) -> Result<Option<Application>> {
        let key = id_or_uid.to_owned();
        self.read(move |conn| get_app_sync(conn, &key)).await
    }

    async fn list_apps(&self, page: &PageRequest) -> Result<Page<Application>> {
        let page = page.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {APP_COLS} FROM applications WHERE 1=1");
            let mut args = Vec::new();
            keyset(&mut sql, &mut args, "id", &page);
            let rows = query_all(conn, &sql, args, |r| app_from_row(r))?;
            Ok(paginate(rows, page.limit, |a| a.id.to_string()))
        })
        .await
    }

    async fn update_app(&self, app: Application) -> Result<Application> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE applications SET uid=?2, name=?3, rate_limit=?4, metadata=?5, updated_at=?6 WHERE id=?1",
                )?
                .execute(params![
                    app.id.as_str(),
                    app.uid,
                    app.name,
                    app.rate_limit,
                    json_text(&app.metadata)?,
                    app.updated_at as i64
                ])
                .map_err(|e| conflict_or(e, "an application with this uid"))?;
            if changed == 0 {
                return Err(StoreError::NotFound("application".into()));
            }
            Ok(app)
        })
        .await
    }

    async fn delete_app(&self, id: &AppId) -> Result<bool> {
        let id = id.to_string();
        self.write(move |conn| delete_app_rows(conn, &id)).await
    }

    async fn insert_event_type(&self, et: EventType) -> Result<EventType> {
        self.write(move |conn| {
            write_event_type(conn, &et, "INSERT")?;
            Ok(et)
        })
        .await
    }

    async fn put_event_type(&self, et: EventType) -> Result<EventType> {
        self.write(move |conn| {
            write_event_type(conn, &et, "INSERT OR REPLACE")?;
            Ok(et)
        })
        .await
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let name = name.to_owned();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {ET_COLS} FROM event_types WHERE name = ?"),
                [name],
                |r| event_type_from_row(r),
            )
        })
        .await
    }

    async fn list_event_types(
        &self,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<EventType>> {
        let page = page.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {ET_COLS} FROM event_types WHERE 1=1");
            if !include_archived {
                sql.push_str(" AND archived = 0");
            }
            let mut args = Vec::new();
            keyset(&mut sql, &mut args, "name", &page);
            let rows = query_all(conn, &sql, args, |r| event_type_from_row(r))?;
            Ok(paginate(rows, page.limit, |e| e.name.clone()))
        })
        .await
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM event_types WHERE name = ?", [name])? > 0)
        })
        .await
    }

    async fn insert_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write(move |conn| {
            write_endpoint(conn, &ep, true)?;
            Ok(ep)
        })
        .await
    }

    async fn get_endpoint(&self, app: &AppId, id_or_uid: &str) -> Result<Option<Endpoint>> {
        let (app, key) = (app.to_string(), id_or_uid.to_owned());
        self.read(move |conn| get_endpoint_sync(conn, &app, &key))
            .await
    }

    async fn list_endpoints(&self, app: &AppId, page: &PageRequest) -> Result<Page<Endpoint>> {
        let (app, page) = (app.to_string(), page.clone());
        self.read(move |conn| {
            let mut sql = format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ?");
            let mut args = vec![SqlValue::Text(app)];
            keyset(&mut sql, &mut args, "id", &page);
            let rows = query_all(conn, &sql, args, |r| endpoint_from_row(r))?;
            Ok(paginate(rows, page.limit, |e| e.id.to_string()))
        })
        .await
    }

    async fn all_endpoints(&self, app: Option<&AppId>) -> Result<Vec<Endpoint>> {
        let app = app.map(|a| a.to_string());
        self.read(move |conn| match app {
            Some(app) => query_all(
                conn,
                &format!("SELECT {EP_COLS} FROM endpoints WHERE app_id = ? ORDER BY id"),
                vec![SqlValue::Text(app)],
                |r| endpoint_from_row(r),
            ),
            None => query_all(
                conn,
                &format!("SELECT {EP_COLS} FROM endpoints ORDER BY id"),
                vec![],
                |r| endpoint_from_row(r),
            ),
        })
        .await
    }

    async fn update_endpoint(&self, ep: Endpoint) -> Result<Endpoint> {
        self.write(move |conn| {
            write_endpoint(conn, &ep, false)?;
            Ok(ep)
        })
        .await
    }

    async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> Result<bool> {
        let (app, id) = (app.to_string(), id.to_string());
        self.write(move |conn| {
            let gone = conn.execute(
                "DELETE FROM endpoints WHERE app_id = ? AND id = ?",
                [&app, &id],
            )? > 0;
            // Undelivered work for a deleted endpoint has nowhere to go; the
            // attempt log stays for inspection.
            conn.execute(
                "DELETE FROM deliveries WHERE endpoint_id = ? AND status IN (1, 3)",
                [&id],
            )?;
            Ok(gone)
        })
        .await
    }

    async fn accept(&self, new: NewMessage) -> Result<Accepted> {
        self.write_fast(move |conn| {
            let m = &new.message;
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO messages (id, app_id, event_type, event_id, idem_key, channels, tags, payload, created_at, forward)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    m.id.as_str(),
                    m.app_id.as_str(),
                    m.event_type,
                    m.event_id,
                    new.idempotency_key,
                    opt_json_text(&m.channels)?,
                    opt_json_text(&m.tags)?,
                    m.payload,
                    m.created_at as i64,
                    opt_json_text(&m.forward)?
                ])?;
            if inserted == 0 {
                let app = m.app_id.as_str();
                let by_key = match &new.idempotency_key {
                    Some(key) => find_message_sync(conn, app, "idem_key", key)?,
                    None => None,
                };
                let existing = match (by_key, &m.event_id) {
                    (Some(found), _) => Some(found),
                    (None, Some(event_id)) => find_message_sync(conn, app, "event_id", event_id)?,
                    (None, None) => None,
                };
                return existing
                    .map(Accepted::Existing)
                    .ok_or_else(|| StoreError::Conflict("a message with this id".into()));
            }
            let mut stmt = conn.prepare_cached(
                "INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, updated_at)
                 VALUES (?1,?2,?3,?4,0,?5,?6,?5)",
            )?;
            for d in &new.deliveries {
                stmt.execute(params![
                    m.id.as_str(),
                    d.endpoint_id.as_str(),
                    m.app_id.as_str(),
                    initial_status(d) as u8,
                    m.created_at as i64,
                    partition_of(&d.endpoint_id)
                ])?;
            }
            Ok(Accepted::Created(new.message))
        })
        .await
    }

    async fn get_message(&self, app: &AppId, id_or_event_id: &str) -> Result<Option<Message>> {
        let (app, key) = (app.to_string(), id_or_event_id.to_owned());
        self.read(move |conn| {
            let column = if MessageId::parse(&key).is_some() {
                "id"
            } else {
                "event_id"
            };
            find_message_sync(conn, &app, column, &key)
        })
        .await
    }

    async fn list_messages(&self, app: &AppId, filter: &MessageFilter) -> Result<Page<Message>> {
        let (app, f) = (app.to_string(), filter.clone());
        self.read(move |conn| {
            let mut sql =
                format!("SELECT {MSG_COLS}, m.payload FROM messages m WHERE m.app_id = ?");
            let mut args = vec![SqlValue::Text(app)];
            message_filter_sql(&mut sql, &mut args, &f);
            keyset(&mut sql, &mut args, "m.id", &f.page);
            let rows = query_all(conn, &sql, args, |r| message_from_row(r, f.with_content))?;
            Ok(paginate(rows, f.page.limit, |m| m.id.to_string()))
        })
        .await
    }

    async fn expunge_message_content(&self, app: &AppId, id: &MessageId) -> Result<bool> {
        let (app, id) = (app.to_string(), id.to_string());
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE messages SET payload = NULL WHERE app_id = ? AND id = ?",
                [app, id],
            )? > 0)
        })
        .await
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
        let partitions = json_text(&partitions)?;
        self.write_fast(move |conn| {
            let mut tasks = TaskReader::default();
            let due = query_all(
                conn,
                "SELECT d.msg_id, d.endpoint_id, d.app_id, d.attempts, d.manual, m.payload, m.forward
                 FROM deliveries d JOIN messages m ON m.app_id = d.app_id AND m.id = d.msg_id
                 WHERE d.status = 1 AND d.next_attempt_at <= ?
                   AND d.partition IN (SELECT value FROM json_each(?))
                 ORDER BY d.next_attempt_at LIMIT ?",
                vec![
                    SqlValue::Integer(now_ms as i64),
                    SqlValue::Text(partitions),
                    SqlValue::Integer(limit as i64),
                ],
                |r| tasks.read(r),
            )?;
            let mut mark = conn.prepare_cached(
                "UPDATE deliveries SET status = 3, updated_at = ? WHERE msg_id = ? AND endpoint_id = ?",
            )?;
            for task in &due {
                mark.execute(params![
                    now_ms as i64,
                    task.msg_id.as_str(),
                    task.endpoint_id.as_str()
                ])?;
            }
            Ok(due)
        })
        .await
    }

    async fn record_outcomes(&self, outcomes: Vec<Outcome>) -> Result<()> {
        self.write_fast(move |conn| {
            let mut insert = conn.prepare_cached(&format!(
                "INSERT INTO attempts ({}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                ATTEMPT_COLS.replace("a.", "")
            ))?;
            let mut update = conn.prepare_cached(
                "UPDATE deliveries SET status = ?3, attempts = attempts + ?4, next_attempt_at = ?5, manual = 0, updated_at = ?6
                 WHERE msg_id = ?1 AND endpoint_id = ?2",
            )?;
            for o in &outcomes {
                let a = &o.attempt;
                insert.execute(params![
                    a.id.as_str(),
                    a.app_id.as_str(),
                    a.msg_id.as_str(),
                    a.endpoint_id.as_str(),
                    a.url,
                    a.status as u8,
                    a.response_status_code,
                    a.response,
                    a.response_duration_ms as i64,
                    a.manual,
                    a.created_at as i64
                ])?;
                update.execute(params![
                    a.msg_id.as_str(),
                    a.endpoint_id.as_str(),
                    o.delivery_status as u8,
                    if a.manual { 0 } else { 1 },
                    o.next_attempt_at.map(|t| t as i64),
                    a.created_at as i64
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn requeue(
        &self,
        app: &AppId,
        msg: &MessageId,
        ep: &EndpointId,
        now_ms: u64,
    ) -> Result<bool> {
        let (app, msg, ep) = (app.to_string(), msg.to_string(), ep.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, manual, updated_at)
                 VALUES (?1, ?2, ?3, 1, 0, ?4, ?5, 1, ?4)
                 ON CONFLICT (msg_id, endpoint_id) DO UPDATE SET status = 1, next_attempt_at = ?4, manual = 1, updated_at = ?4
                 WHERE status <> 3",
            )?
            .execute(params![msg, ep.as_str(), app, now_ms as i64, partition_of(&ep)])
            .map(|changed| changed > 0)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn recover(
        &self,
        ep: &EndpointId,
        since_ms: u64,
        until_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<u64> {
        let ep = ep.to_string();
        let low = id_floor_for_time(MessageId::PREFIX, since_ms);
        let high = id_floor_for_time(MessageId::PREFIX, until_ms.unwrap_or(now_ms + 1));
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE deliveries SET status = 1, attempts = 0, next_attempt_at = ?4, updated_at = ?4
                 WHERE endpoint_id = ?1 AND status = 2 AND msg_id >= ?2 AND msg_id < ?3",
                params![ep, low, high, now_ms as i64],
            )? as u64)
        })
        .await
    }

    async fn endpoint_stats(&self, ep: &EndpointId) -> Result<EndpointStats> {
        let ep = ep.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT status, COUNT(*) FROM deliveries WHERE endpoint_id = ? GROUP BY status",
            )?;
            let mut rows = stmt.query([ep])?;
            let mut stats = EndpointStats::default();
            while let Some(row) = rows.next()? {
                stats.set(row.status("status")?, row.get::<_, i64>(1)?.max(0) as u64);
            }
            Ok(stats)
        })
        .await
    }

    async fn list_attempts(&self, filter: &AttemptFilter) -> Result<Page<Attempt>> {
        let f = filter.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {ATTEMPT_COLS} FROM attempts a");
            let needs_message = f.event_types.is_some() || f.channel.is_some();
            if needs_message {
                sql.push_str(" JOIN messages m ON m.app_id = a.app_id AND m.id = a.msg_id");
            }
            sql.push_str(" WHERE 1=1");
            let mut args = Vec::new();
            for (column, value) in [
                ("a.app_id", f.app_id.as_ref().map(|v| v.to_string())),
                (
                    "a.endpoint_id",
                    f.endpoint_id.as_ref().map(|v| v.to_string()),
                ),
                ("a.msg_id", f.msg_id.as_ref().map(|v| v.to_string())),
            ] {
                if let Some(v) = value {
                    sql.push_str(&format!(" AND {column} = ?"));
                    args.push(SqlValue::Text(v));
                }
            }
            if let Some(status) = f.status {
                sql.push_str(" AND a.status = ?");
                args.push(SqlValue::Integer(status.into()));
            }
            if let Some(before) = f.before_ms {
                sql.push_str(" AND a.created_at < ?");
                args.push(SqlValue::Integer(before as i64));
            }
            if let Some(after) = f.after_ms {
                sql.push_str(" AND a.created_at > ?");
                args.push(SqlValue::Integer(after as i64));
            }
            if needs_message {
                let mf = MessageFilter {
                    event_types: f.event_types.clone(),
                    channel: f.channel.clone(),
                    ..Default::default()
                };
                message_filter_sql(&mut sql, &mut args, &mf);
            }
            keyset(&mut sql, &mut args, "a.id", &f.page);
            let rows = query_all(conn, &sql, args, |r| attempt_from_row(r))?;
            Ok(paginate(rows, f.page.limit, |a| a.id.to_string()))
        })
        .await
    }

    async fn get_attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Option<Attempt>> {
        let (app, msg, id) = (app.to_string(), msg.to_string(), id.to_string());
        self.read(move |conn| {
            query_first(
                conn,
                &format!(
                    "SELECT {ATTEMPT_COLS} FROM attempts a
                     WHERE a.app_id = ? AND a.msg_id = ? AND a.id = ?"
                ),
                [app, msg, id],
                |r| attempt_from_row(r),
            )
        })
        .await
    }

    async fn deliveries_of_message(
        &self,
        app: &AppId,
        msg: &MessageId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>> {
        let (app, msg, page) = (app.to_string(), msg.to_string(), page.clone());
        self.read(move |conn| {
            let cols = endpoint_cols_of_e();
            let mut sql = format!(
                "SELECT d.msg_id, d.status AS delivery_status, d.next_attempt_at, {cols} FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
                 WHERE d.app_id = ? AND d.msg_id = ?"
            );
            let mut args = vec![SqlValue::Text(app), SqlValue::Text(msg)];
            keyset(&mut sql, &mut args, "d.endpoint_id", &page);
            let rows = query_all(conn, &sql, args, |r| destination_from_row(r))?;
            Ok(paginate(rows, page.limit, |d| d.endpoint_id.to_string()))
        })
        .await
    }

    async fn deliveries_of_endpoint(
        &self,
        ep: &EndpointId,
        filter: &MessageFilter,
        status: Option<u8>,
    ) -> Result<Page<DeliveryView>> {
        let (ep, f) = (ep.to_string(), filter.clone());
        self.read(move |conn| {
            let mut sql = format!(
                "SELECT d.endpoint_id, d.status AS delivery_status, d.next_attempt_at, {MSG_COLS}, m.payload FROM deliveries d JOIN messages m ON m.app_id = d.app_id AND m.id = d.msg_id
                 WHERE d.endpoint_id = ?"
            );
            let mut args = vec![SqlValue::Text(ep)];
            if let Some(status) = status {
                sql.push_str(" AND d.status = ?");
                args.push(SqlValue::Integer(status.into()));
            }
            message_filter_sql(&mut sql, &mut args, &f);
            keyset(&mut sql, &mut args, "d.msg_id", &f.page);
            let rows = query_all(conn, &sql, args, |row| {
                attempted_message_from_row(row, f.with_content)
            })?;
            Ok(paginate(rows, f.page.limit, |d| d.msg_id.to_string()))
        })
        .await
    }

    async fn idempotent_response(&self, key: &str) -> Result<Option<StoredResponse>> {
        let key = key.to_owned();
        self.read(move |conn| {
            query_first(
                conn,
                "SELECT status, body, created_at FROM idempotency WHERE key = ?",
                [key],
                |r| stored_response_from_row(r),
            )
        })
        .await
    }

    async fn save_idempotent_response(&self, key: &str, response: StoredResponse) -> Result<()> {
        let key = key.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO idempotency (key, status, body, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                params![key, response.status, response.body, response.created_at as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row("SELECT value FROM settings WHERE key = ?", [key], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            Ok(conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [key, value],
            )? > 0)
        })
        .await
    }

    async fn replace_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                [key, value],
            )?;
            Ok(())
        })
        .await
    }

    async fn purge_idempotency(&self, before_ms: u64) -> Result<u64> {
        self.write(move |conn| {
            Ok(conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?",
                [before_ms as i64],
            )? as u64)
        })
        .await
    }

    async fn purge_messages(&self, before_ms: u64, limit: usize) -> Result<u64> {
        let floor = id_floor_for_time(MessageId::PREFIX, before_ms);
        self.write(move |conn| {
            // Ids sort by time, so each application's old messages are a
            // range of the (app_id, id) index: no scan of the whole table.
            let old = query_all(
                conn,
                "SELECT m.app_id, m.id FROM applications a
                 JOIN messages m ON m.app_id = a.id AND m.id < ?1
                 WHERE NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.msg_id = m.id AND d.status IN (1, 3))
                 LIMIT ?2",
                vec![SqlValue::Text(floor), SqlValue::Integer(limit as i64)],
                |r| Ok((r.text("app_id")?, r.text("id")?)),
            )?;
            let mut attempts = conn.prepare_cached("DELETE FROM attempts WHERE msg_id = ?")?;
            let mut deliveries = conn.prepare_cached("DELETE FROM deliveries WHERE msg_id = ?")?;
            let mut messages =
                conn.prepare_cached("DELETE FROM messages WHERE app_id = ? AND id = ?")?;
            for (app_id, id) in &old {
                attempts.execute([id])?;
                deliveries.execute([id])?;
                messages.execute([app_id, id])?;
            }
            Ok(old.len() as u64)
        })
        .await
    }

    async fn lease(&self, request: &LeaseRequest) -> Result<LeaseGrant> {
        let r = request.clone();
        self.write(move |conn| {
            let now = r.now_ms as i64;
            let expires = (r.now_ms + r.ttl_ms) as i64;
            conn.prepare_cached(
                "INSERT INTO nodes (node_id, address, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (node_id) DO UPDATE SET address = ?2, heartbeat_at = ?3,
                   started_at = CASE WHEN ?4 THEN ?3 ELSE started_at END",
            )?
            .execute(params![r.node_id, r.address, now, r.fresh])?;
            let live_nodes: u32 = conn
                .prepare_cached("SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= ?")?
                .query_row([now - r.ttl_ms as i64], |row| row.get(0))?;
            let fair = fair_share(live_nodes);
            let mut owned = column_u16(
                conn,
                "UPDATE leases SET expires_at = ?2,
                   acquired_at = CASE WHEN ?3 THEN ?4 ELSE acquired_at END
                 WHERE node_id = ?1 RETURNING partition",
                params![r.node_id, expires, r.fresh, now],
            )?;
            let mut acquired = if r.fresh { owned.clone() } else { Vec::new() };
            if owned.len() < fair {
                let taken = column_u16(
                    conn,
                    "UPDATE leases SET node_id = ?1, expires_at = ?2, acquired_at = ?3
                     WHERE partition IN (
                       SELECT partition FROM leases WHERE node_id IS NULL OR expires_at < ?3
                       ORDER BY partition LIMIT ?4)
                     RETURNING partition",
                    params![r.node_id, expires, now, (fair - owned.len()) as i64],
                )?;
                owned.extend_from_slice(&taken);
                acquired.extend(taken);
            }
            if !acquired.is_empty() {
                conn.prepare_cached(
                    "UPDATE deliveries SET status = 1 WHERE status = 3
                     AND partition IN (SELECT value FROM json_each(?))",
                )?
                .execute([json_text(&acquired)?])?;
            }
            let stranded = conn
                .prepare_cached(
                    "UPDATE deliveries SET status = 1 WHERE status = 3
                     AND partition IN (SELECT partition FROM leases WHERE node_id = ?1)
                     AND updated_at < (SELECT l.acquired_at FROM leases l
                                       WHERE l.partition = deliveries.partition) - ?2",
                )?
                .execute(params![r.node_id, lease_margin_ms(r.ttl_ms) as i64])?;
            owned.sort_unstable();
            acquired.sort_unstable();
            Ok(LeaseGrant {
                surplus: surplus_of(&owned, fair),
                owned,
                acquired,
                stranded,
                live_nodes,
            })
        })
        .await
    }

    async fn release_partitions(&self, node_id: &str, partitions: &[u16]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let (node_id, partitions) = (node_id.to_owned(), json_text(&partitions)?);
        self.write(move |conn| {
            let released = column_u16(
                conn,
                "UPDATE leases SET node_id = NULL, expires_at = 0
                 WHERE node_id = ?1 AND partition IN (SELECT value FROM json_each(?2))
                 RETURNING partition",
                params![node_id, partitions],
            )?;
            conn.prepare_cached(
                "UPDATE deliveries SET status = 1 WHERE status = 3
                 AND partition IN (SELECT value FROM json_each(?))",
            )?
            .execute([json_text(&released)?])?;
            Ok(())
        })
        .await
    }

    async fn leave(&self, node_id: &str) -> Result<()> {
        let all: Vec<u16> = (0..switchyard_core::PARTITIONS).collect();
        let id = node_id.to_owned();
        self.write(move |conn| {
            conn.execute("UPDATE nodes SET heartbeat_at = 0 WHERE node_id = ?", [id])?;
            Ok(())
        })
        .await?;
        self.release_partitions(node_id, &all).await
    }

    async fn cluster(&self, now_ms: u64) -> Result<Vec<NodeInfo>> {
        self.read(move |conn| {
            let mut nodes = query_all(
                conn,
                "SELECT node_id, address, started_at, heartbeat_at FROM nodes ORDER BY node_id",
                vec![],
                |r| node_from_row(r),
            )?;
            let leases = query_all(
                conn,
                "SELECT partition, node_id FROM leases WHERE node_id IS NOT NULL AND expires_at >= ? ORDER BY partition",
                vec![SqlValue::Integer(now_ms as i64)],
                |row| Ok((row.get::<_, u16>(0)?, row.get::<_, String>(1)?)),
            )?;
            attach_leases(&mut nodes, leases);
            Ok(nodes)
        })
        .await
    }

    async fn publish(&self, _event: &ClusterEvent) -> Result<()> {
        // One process per file: the engine has already acted on its own change.
        Ok(())
    }

    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<ClusterEvent>> {
        None
    }

    async fn insert_source(&self, source: Source, app: Application) -> Result<Source> {
        self.write(move |conn| {
            insert_app_row(conn, &app)?;
            write_source(conn, &source, true)?;
            Ok(source)
        })
        .await
    }

    async fn get_source(&self, id_or_uid: &str) -> Result<Option<Source>> {
        let key = id_or_uid.to_owned();
        self.read(move |conn| {
            query_first(
                conn,
                &format!(
                    "SELECT {SOURCE_COLS} FROM sources WHERE {} = ?",
                    key_column(SourceId::parse(&key).is_some())
                ),
                [&key],
                |r| source_from_row(r),
            )
        })
        .await
    }

    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>> {
        let page = page.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {SOURCE_COLS} FROM sources WHERE 1");
            let mut args = Vec::new();
            keyset(&mut sql, &mut args, "id", &page);
            let rows = query_all(conn, &sql, args, |r| source_from_row(r))?;
            Ok(paginate(rows, page.limit, |s| s.id.clone()))
        })
        .await
    }

    async fn all_sources(&self) -> Result<Vec<Source>> {
        self.read(move |conn| {
            query_all(
                conn,
                &format!("SELECT {SOURCE_COLS} FROM sources ORDER BY id"),
                vec![],
                |r| source_from_row(r),
            )
        })
        .await
    }

    async fn update_source(&self, source: Source) -> Result<Source> {
        self.write(move |conn| {
            write_source(conn, &source, false)?;
            Ok(source)
        })
        .await
    }

    async fn delete_source(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |conn| {
            let app: Option<String> = conn
                .query_row("SELECT app_id FROM sources WHERE id = ?", [&id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(app) = app else {
                return Ok(false);
            };
            delete_app_rows(conn, &app)?;
            conn.execute("DELETE FROM sources WHERE id = ?", [&id])?;
            Ok(true)
        })
        .await
    }

    async fn add_source_stats(&self, deltas: Vec<(String, SourceStats)>) -> Result<()> {
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE sources SET accepted = accepted + ?2, duplicates = duplicates + ?3,
                   rejected = rejected + ?4,
                   last_rejection = COALESCE(?5, last_rejection),
                   last_rejection_at = COALESCE(?6, last_rejection_at)
                 WHERE id = ?1",
            )?;
            for (id, d) in &deltas {
                stmt.execute(params![
                    id,
                    d.accepted as i64,
                    d.duplicates as i64,
                    d.rejected as i64,
                    d.last_rejection,
                    d.last_rejection_at.map(|t| t as i64)
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn source_stats(&self, id: &str) -> Result<Option<SourceStats>> {
        let id = id.to_owned();
        self.read(move |conn| {
            query_first(
                conn,
                &format!("SELECT {SOURCE_STATS_COLS} FROM sources WHERE id = ?"),
                [&id],
                |r| source_stats_from_row(r),
            )
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }
}

fn column_u16(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<u16>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row.get(0)?);
    }
    Ok(out)
}
