//! Managing broker sources (create, change, pause, delete, status, the
//! rejected log) with their checks in one place, and the supervisor each
//! node runs: it reads every source that is not paused, through the
//! broker's own sharing (consumer groups, durable consumers, competing
//! consumers), so nodes share the load and a node's death loses nothing.

use crate::apps::parse_uid;
use crate::broker_intake::{BrokerKinds, BrokerMessage, SourceRun, SourceStats, run_source};
use crate::{Engine, EngineError, limits};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::envelope::Rejection;
use switchyard_core::{BrokerSourceId, RejectionId};
use switchyard_store::{
    BrokerRejection, BrokerSource, BrokerSourceStats, Metadata, Page, PageRequest,
    REJECTED_BODY_KEPT, StoreError,
};
use tokio::sync::watch;

/// Broker sources a deployment may have: each is a connection and a task
/// on every node.
pub const MAX_BROKER_SOURCES: usize = 100;
/// Rejected messages kept per source; older ones go first.
pub const REJECTIONS_KEPT: u64 = 10_000;
/// Messages a source takes at once when not told.
pub const DEFAULT_BATCH_SIZE: u32 = 100;

/// A broker source's settable fields (create and replace).
#[derive(Debug, Clone, Default)]
pub struct BrokerSourceInput {
    /// 1 to 256 characters.
    pub name: String,
    pub uid: Option<String>,
    /// The application (id or uid) every message goes to; `None` lets each
    /// message name its own (`app` in the envelope or `switchyard-app`).
    pub app: Option<String>,
    /// 1 to 1000 [default: 100].
    pub batch_size: Option<u32>,
    /// Created or replaced paused [default: false].
    pub paused: Option<bool>,
    /// `{"type": "<kind>", ...the kind's settings}`.
    pub broker: Value,
    pub metadata: Option<Metadata>,
}

/// A partial change; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct BrokerSourcePatch {
    pub name: Option<String>,
    pub uid: Option<Option<String>>,
    pub app: Option<Option<String>>,
    pub batch_size: Option<u32>,
    pub broker: Option<Value>,
    pub metadata: Option<Metadata>,
}

/// A source with the counts every node added up.
#[derive(Debug, Clone)]
pub struct BrokerSourceStatus {
    pub source: BrokerSource,
    pub stats: BrokerSourceStats,
}

fn check_name(name: &str) -> Result<(), EngineError> {
    if name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(EngineError::invalid(
            "name",
            "must be 1 to 256 characters, without control characters",
        ));
    }
    Ok(())
}

fn check_batch(batch: Option<u32>) -> Result<u32, EngineError> {
    match batch {
        None => Ok(DEFAULT_BATCH_SIZE),
        Some(b @ 1..=1000) => Ok(b),
        Some(_) => Err(EngineError::invalid("batchSize", "must be 1 to 1000")),
    }
}

impl Engine {
    /// Hands the engine the broker kinds this binary was built with; the
    /// first call wins. Without them, broker sources cannot be created.
    pub fn register_broker_kinds(&self, kinds: Arc<dyn BrokerKinds>) {
        let _ = self.broker_kinds.set(kinds);
    }

    fn kinds(&self) -> Result<&Arc<dyn BrokerKinds>, EngineError> {
        self.broker_kinds
            .get()
            .ok_or_else(|| EngineError::invalid("broker.type", "this build has no brokers"))
    }

    /// The broker configuration as an API reader may see it (passwords
    /// replaced by `********`).
    pub fn shown_broker(&self, broker: &Value) -> Value {
        match self.broker_kinds.get() {
            Some(kinds) => kinds.redact(broker),
            None => serde_json::json!({"type": broker.get("type")}),
        }
    }

    /// Checks the broker configuration and the application; what it reads.
    fn check_broker_source(
        &self,
        broker: &Value,
        app: Option<&str>,
    ) -> Result<String, EngineError> {
        if !broker.is_object() {
            return Err(EngineError::invalid(
                "broker",
                "must be an object with a type",
            ));
        }
        limits::check_json_bytes("broker", broker, limits::MAX_SOURCE_JSON_BYTES)?;
        let kinds = self.kinds()?;
        let located = |e: crate::broker_intake::BrokerConfigError| {
            let field = if e.field.is_empty() {
                "broker".to_owned()
            } else {
                format!("broker.{}", e.field)
            };
            EngineError::invalid(field, e.message)
        };
        kinds.check(broker).map_err(located)?;
        let reads = kinds.reads(broker).map_err(located)?;
        // An application that does not exist yet is allowed (it may be
        // created after the source, as a configuration file's sources are
        // declared at start): its messages wait in the broker and the
        // source's status names the missing application.
        if app.is_some_and(str::is_empty) {
            return Err(EngineError::invalid(
                "app",
                "must not be empty; null lets each message name its application",
            ));
        }
        Ok(reads)
    }

    /// Refuses a source reading what another already reads: they would
    /// take each other's messages.
    async fn check_reads_free(
        &self,
        reads: &str,
        except: Option<&BrokerSourceId>,
    ) -> Result<(), EngineError> {
        let all = self.store.all_broker_sources().await?;
        if let Some(other) = all
            .iter()
            .find(|s| s.reads == reads && Some(&s.id) != except)
        {
            return Err(EngineError::Conflict(format!(
                "broker source '{}' ({}) already reads this; two sources would take each other's messages",
                other.name, other.id
            )));
        }
        if except.is_none() && all.len() >= MAX_BROKER_SOURCES {
            return Err(EngineError::Conflict(format!(
                "there are {} broker sources; at most {MAX_BROKER_SOURCES} are allowed",
                all.len()
            )));
        }
        Ok(())
    }

    fn broker_sources_changed(&self) {
        self.broker_sources_wake.notify_one();
        self.tell_others(switchyard_store::ClusterEvent::BrokerSourcesChanged);
    }

    /// Creates a broker source; every node starts reading it unless paused.
    ///
    /// Errors: `Invalid` naming the field (`broker.url`, `batchSize`,
    /// `app`, ...); `Conflict` when the uid is taken or another source reads
    /// the same.
    pub async fn create_broker_source(
        &self,
        input: BrokerSourceInput,
    ) -> Result<BrokerSource, EngineError> {
        check_name(&input.name)?;
        let uid = parse_uid("uid", input.uid)?;
        let batch_size = check_batch(input.batch_size)?;
        limits::check_metadata(input.metadata.as_ref())?;
        let reads = self.check_broker_source(&input.broker, input.app.as_deref())?;
        self.check_reads_free(&reads, None).await?;
        let now = self.now_ms();
        let source = BrokerSource {
            id: BrokerSourceId::generate_at(now),
            uid,
            name: input.name,
            app: input.app,
            batch_size,
            paused: input.paused.unwrap_or(false),
            broker: input.broker,
            reads,
            metadata: input.metadata.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        };
        let source = self.store.insert_broker_source(source).await?;
        self.broker_sources_changed();
        Ok(source)
    }

    /// A broker source by id or uid.
    ///
    /// Errors: `NotFound` when there is none.
    pub async fn broker_source(&self, key: &str) -> Result<BrokerSource, EngineError> {
        self.store
            .get_broker_source(key)
            .await?
            .ok_or(EngineError::NotFound("broker source"))
    }

    pub async fn list_broker_sources(
        &self,
        page: &PageRequest,
    ) -> Result<Page<BrokerSource>, EngineError> {
        Ok(self.store.list_broker_sources(page).await?)
    }

    /// Makes a change to the source as it is now, again if another change
    /// came first (up to 5 times, then `Conflict`).
    async fn change_broker_source(
        &self,
        key: &str,
        change: impl Fn(&mut BrokerSource) -> Result<bool, EngineError>,
    ) -> Result<BrokerSource, EngineError> {
        for _ in 0..5 {
            let mut source = self.broker_source(key).await?;
            let before = source.clone();
            let recheck = change(&mut source)?;
            if source == before {
                return Ok(source);
            }
            if recheck {
                source.reads = self.check_broker_source(&source.broker, source.app.as_deref())?;
                self.check_reads_free(&source.reads, Some(&source.id))
                    .await?;
            }
            let read_at = source.updated_at;
            source.updated_at = self.now_ms().max(read_at + 1);
            match self.store.update_broker_source(source, read_at).await {
                Ok(saved) => {
                    self.broker_sources_changed();
                    return Ok(saved);
                }
                Err(StoreError::Stale(_)) => continue,
                Err(StoreError::NotFound(_)) => return Err(EngineError::NotFound("broker source")),
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Conflict(
            "the broker source was changed by other requests meanwhile; try again".into(),
        ))
    }

    /// Replaces a source's fields (its id and creation time stay); `paused`
    /// stays as it is unless given.
    pub async fn replace_broker_source(
        &self,
        key: &str,
        input: BrokerSourceInput,
    ) -> Result<BrokerSource, EngineError> {
        check_name(&input.name)?;
        let uid = parse_uid("uid", input.uid.clone())?;
        let batch_size = check_batch(input.batch_size)?;
        limits::check_metadata(input.metadata.as_ref())?;
        self.change_broker_source(key, |s| {
            s.name = input.name.clone();
            s.uid = uid.clone();
            s.app = input.app.clone();
            s.batch_size = batch_size;
            if let Some(paused) = input.paused {
                s.paused = paused;
            }
            s.broker = input.broker.clone();
            s.metadata = input.metadata.clone().unwrap_or_default();
            Ok(true)
        })
        .await
    }

    /// Changes the fields given.
    pub async fn patch_broker_source(
        &self,
        key: &str,
        patch: BrokerSourcePatch,
    ) -> Result<BrokerSource, EngineError> {
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        let uid = patch.uid.clone().map(|u| parse_uid("uid", u)).transpose()?;
        let batch_size = patch.batch_size.map(|b| check_batch(Some(b))).transpose()?;
        limits::check_metadata(patch.metadata.as_ref())?;
        self.change_broker_source(key, |s| {
            if let Some(name) = &patch.name {
                s.name = name.clone();
            }
            if let Some(uid) = &uid {
                s.uid = uid.clone();
            }
            if let Some(app) = &patch.app {
                s.app = app.clone();
            }
            if let Some(b) = batch_size {
                s.batch_size = b;
            }
            if let Some(broker) = &patch.broker {
                s.broker = broker.clone();
            }
            if let Some(metadata) = &patch.metadata {
                s.metadata = metadata.clone();
            }
            Ok(patch.broker.is_some() || patch.app.is_some())
        })
        .await
    }

    /// Pauses (every node stops reading it, within a moment; what was read
    /// is settled first) or resumes a source.
    pub async fn set_broker_source_paused(
        &self,
        key: &str,
        paused: bool,
    ) -> Result<BrokerSource, EngineError> {
        self.change_broker_source(key, |s| {
            s.paused = paused;
            Ok(false)
        })
        .await
    }

    /// Deletes a source with its counts and rejected log; nodes stop
    /// reading it. What is in the broker stays there.
    pub async fn delete_broker_source(&self, key: &str) -> Result<(), EngineError> {
        let source = self.broker_source(key).await?;
        if !self.store.delete_broker_source(&source.id).await? {
            return Err(EngineError::NotFound("broker source"));
        }
        self.broker_sources_changed();
        Ok(())
    }

    /// A source and its counts.
    pub async fn broker_source_status(&self, key: &str) -> Result<BrokerSourceStatus, EngineError> {
        let source = self.broker_source(key).await?;
        let stats = self
            .store
            .broker_source_stats(&source.id)
            .await?
            .unwrap_or_default();
        Ok(BrokerSourceStatus { source, stats })
    }

    /// A page of a source's rejected messages, newest first.
    pub async fn broker_rejections(
        &self,
        key: &str,
        page: &PageRequest,
    ) -> Result<Page<BrokerRejection>, EngineError> {
        let source = self.broker_source(key).await?;
        Ok(self.store.list_broker_rejections(&source.id, page).await?)
    }

    /// Records rejected broker messages before their broker is told, so
    /// none is dropped without a trace.
    pub(crate) async fn record_broker_rejections(
        &self,
        source: &BrokerSourceId,
        rejected: &[(&BrokerMessage, &Rejection)],
    ) -> Result<(), EngineError> {
        let now = self.now_ms();
        let records = rejected
            .iter()
            .map(|(message, rejection)| BrokerRejection {
                id: RejectionId::generate_at(now),
                source_id: source.clone(),
                at: now,
                code: rejection.code.to_owned(),
                reason: rejection.reason.clone(),
                body: message
                    .body
                    .slice(..message.body.len().min(REJECTED_BODY_KEPT)),
                body_size: message.body.len() as u64,
                headers: message.headers.clone(),
            })
            .collect();
        Ok(self.store.insert_broker_rejections(records).await?)
    }

    /// Declares a source from the configuration file: created under its
    /// uid, or changed to match (its paused state stays as set through the
    /// API).
    pub async fn declare_broker_source(
        &self,
        uid: &str,
        input: BrokerSourceInput,
    ) -> Result<BrokerSource, EngineError> {
        let mut last = None;
        for _ in 0..3 {
            match self.store.get_broker_source(uid).await? {
                Some(_) => {
                    return self
                        .replace_broker_source(
                            uid,
                            BrokerSourceInput {
                                paused: None,
                                ..input.clone()
                            },
                        )
                        .await;
                }
                None => match self.create_broker_source(input.clone()).await {
                    // Another node may have declared it at the same moment
                    // (its insert, or its reading the same, came first):
                    // look again under the uid.
                    Err(
                        e
                        @ (EngineError::Conflict(_) | EngineError::Store(StoreError::Conflict(_))),
                    ) => {
                        last = Some(e);
                    }
                    done => return done,
                },
            }
        }
        Err(last.unwrap_or_else(|| {
            EngineError::Conflict(format!("broker source '{uid}' could not be declared"))
        }))
    }
}

/// A source this node is reading.
struct Running {
    updated_at: u64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<SourceStats>,
}

/// How often counts are handed to the store, and how often sources are
/// looked for when no change notice came.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// Runs on every node until `stop` turns true: reads each source that is
/// not paused as `consumer` (this node's id), starts and stops sources as
/// they change (at once on this node's and other nodes' notices, else
/// within [`SYNC_EVERY`]), and adds the counts to the store every second.
/// On stop, each source settles what it read before its task ends.
pub async fn supervise_broker_sources(
    engine: Arc<Engine>,
    consumer: String,
    mut stop: watch::Receiver<bool>,
) {
    let Some(kinds) = engine.broker_kinds.get().cloned() else {
        return;
    };
    let mut running: HashMap<BrokerSourceId, Running> = HashMap::new();
    let mut synced: Option<tokio::time::Instant> = None;
    let mut wake = false;
    loop {
        if wake || synced.is_none_or(|at| at.elapsed() >= SYNC_EVERY) {
            synced = Some(tokio::time::Instant::now());
            match engine.store.all_broker_sources().await {
                Ok(all) => {
                    let wanted: HashMap<_, _> = all
                        .into_iter()
                        .filter(|s| !s.paused)
                        .map(|s| (s.id.clone(), s))
                        .collect();
                    let gone: Vec<_> = running
                        .iter()
                        .filter(|(id, r)| {
                            wanted.get(*id).is_none_or(|s| s.updated_at != r.updated_at)
                        })
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in gone {
                        if let Some(r) = running.remove(&id) {
                            finish(&engine, &id, r).await;
                        }
                    }
                    for (id, source) in wanted {
                        if running.contains_key(&id) {
                            continue;
                        }
                        let stats = Arc::new(SourceStats::named(&source.name));
                        let (stop_tx, stop_rx) = watch::channel(false);
                        let run = SourceRun {
                            id: id.clone(),
                            name: source.name.clone(),
                            app: source.app.clone(),
                            batch: source.batch_size as usize,
                            broker: source.broker.clone(),
                            consumer: consumer.clone(),
                        };
                        let task = tokio::spawn(run_source(
                            engine.clone(),
                            kinds.clone(),
                            run,
                            stats.clone(),
                            stop_rx,
                        ));
                        running.insert(
                            id,
                            Running {
                                updated_at: source.updated_at,
                                stop: stop_tx,
                                task,
                                stats,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the broker sources; trying again");
                }
            }
        }
        flush(&engine, &running).await;
        wake = tokio::select! {
            _ = tokio::time::sleep(FLUSH_EVERY) => false,
            _ = engine.broker_sources_wake.notified() => true,
            _ = stop.changed() => break,
        };
    }
    // Every source is told first, so none reads on while another settles.
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    let engine = &engine;
    futures_util::future::join_all(
        running
            .drain()
            .map(|(id, r)| async move { finish(engine, &id, r).await }),
    )
    .await;
}

/// Stops a source's task, waiting for it to settle what it read, and
/// hands over its last counts.
async fn finish(engine: &Engine, id: &BrokerSourceId, r: Running) {
    let _ = r.stop.send(true);
    let mut task = r.task;
    if tokio::time::timeout(Duration::from_secs(30), &mut task)
        .await
        .is_err()
    {
        tracing::warn!(source = %r.stats.name, "a broker source did not stop within 30 s; abandoned");
        task.abort();
    }
    let last = r.stats.take();
    if last != BrokerSourceStats::default()
        && let Err(e) = engine
            .store
            .add_broker_source_stats(vec![(id.clone(), last)])
            .await
    {
        tracing::warn!(error = %e, "broker source counts lost");
    }
}

async fn flush(engine: &Engine, running: &HashMap<BrokerSourceId, Running>) {
    let deltas: Vec<_> = running
        .iter()
        .map(|(id, r)| (id.clone(), r.stats.take()))
        .filter(|(_, d)| *d != BrokerSourceStats::default())
        .collect();
    if deltas.is_empty() {
        return;
    }
    if let Err(e) = engine.store.add_broker_source_stats(deltas.clone()).await {
        // Put back, so the next flush carries them.
        tracing::warn!(error = %e, "cannot store broker source counts; keeping them for the next try");
        for (id, d) in deltas {
            if let Some(r) = running.get(&id) {
                r.stats.add_back(d);
            }
        }
    }
}
