//! Messages on PostgreSQL: group-committed intake (concurrent accepts
//! share one transaction of multi-row inserts), reads and retention.

use super::*;
use deadpool_postgres::Pool;
use std::collections::HashSet;
use std::sync::Arc;
use switchyard_core::{id_floor_for_time, partition_of};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Accept batches committing at once; more queue up and grow the next batch.
/// One at a time measured best here: while it commits, the next batch grows,
/// and fewer, larger statements cost PostgreSQL less per message.
const ACCEPT_PARALLELISM: usize = 1;

const ACCEPT_BATCH: usize = 512;

pub(super) struct AcceptJob {
    new: NewMessage,
    reply: oneshot::Sender<Result<Accepted>>,
}

// ---- group-committed intake --------------------------------------------------

pub(super) async fn run_accepts(pool: Pool, mut jobs: mpsc::UnboundedReceiver<AcceptJob>) {
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
    let mut d_fifo = Vec::new();
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
            d_fifo.push(d.fifo);
        }
    }
    // One statement, so one round trip and one commit: the messages that
    // did not collide are inserted, and their deliveries with them.
    let insert = client
        .prepare_cached(
            "WITH ins AS (
               INSERT INTO messages (id, app_id, event_type, event_id, idem_key, channels, tags, payload, created_at, forward)
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::int8[], $16::text[])
               ON CONFLICT DO NOTHING RETURNING id),
             dl AS (
               INSERT INTO deliveries (msg_id, endpoint_id, app_id, status, attempts, next_attempt_at, partition, updated_at, fifo)
               SELECT u.m, u.e, u.a, u.s, 0,
                 CASE WHEN u.f AND EXISTS (
                   SELECT 1 FROM deliveries e
                   WHERE e.fifo AND e.status IN (1, 3) AND e.endpoint_id = u.e
                     AND e.msg_id < u.m)
                 THEN NULL ELSE u.t END,
                 u.p, u.t, u.f
               FROM UNNEST($10::text[], $11::text[], $12::text[], $13::int2[], $14::int8[], $15::int4[], $17::bool[]) AS u(m, e, a, s, t, p, f)
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
                &d_fifo,
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

#[async_trait]
impl MessageStore for PgStore {
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
        let q = query::messages(app, filter);
        let rows = self
            .list(q, |r| message_from_row(r, filter.with_content))
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
}
