//! Group commit: one thread owns the write connection and runs every write
//! job that queued while the previous transaction committed inside one new
//! transaction. Each job runs in its own savepoint, so one failing job never
//! undoes its neighbours, and each caller hears back only after the commit.

use super::checkpoint::RewindRequest;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

const MAX_BATCH: usize = 2048;

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

trait WriteJob: Send {
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, bool);
    fn fail(self: Box<Self>, reason: String);
}

struct Job<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T>>,
    isolated: bool,
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match work(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (Completion, bool) {
        let Job {
            work,
            reply,
            isolated,
        } = *self;
        let result = if isolated {
            in_savepoint(conn, work)
        } else {
            work(conn)
        };
        // A failed job without a savepoint may have left partial writes: the
        // whole batch must then be rolled back.
        let poisons_batch = !isolated && result.is_err();
        let completion: Completion = Box::new(move |commit| {
            let _ = reply.send(match commit {
                Ok(()) => result,
                Err(reason) => Err(StoreError::Unavailable(reason)),
            });
        });
        (completion, poisons_batch)
    }

    fn fail(self: Box<Self>, reason: String) {
        let _ = self.reply.send(Err(StoreError::Unavailable(reason)));
    }
}

#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn WriteJob>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection, rewind: RewindRequest) -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn WriteJob>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || commit_loop(conn, queue, rewind))
            .expect("spawning the sqlite writer thread");
        Self { jobs }
    }

    /// Runs `work` in the next group commit, inside its own savepoint so that
    /// its failure undoes only its own writes.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(work, true).await
    }

    /// Like `write` without the savepoint, for hot-path jobs whose only errors
    /// are database failures: such a failure rolls back the whole batch.
    pub(crate) async fn write_unisolated<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(work, false).await
    }

    async fn submit<T, F>(&self, work: F, isolated: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Job {
                work,
                reply,
                isolated,
            }))
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }
}

fn commit_loop(conn: Connection, queue: mpsc::Receiver<Box<dyn WriteJob>>, rewind: RewindRequest) {
    while let Ok(first) = queue.recv() {
        // Everything that queued while the previous batch committed joins this
        // one. No waiting for stragglers: measured, a gather window only added
        // latency, because the callers it waits for are blocked on this commit.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "cannot begin a write transaction");
            for job in batch {
                job.fail(e.to_string());
            }
            continue;
        }
        let mut poisoned = false;
        let completions: Vec<Completion> = batch
            .into_iter()
            .map(|job| {
                let (completion, poisons) = job.run(&conn);
                poisoned |= poisons;
                completion
            })
            .collect();
        let commit = if poisoned {
            Err("a write in the same batch failed; nothing in it was stored".to_string())
        } else {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())
        };
        if let Err(reason) = &commit {
            tracing::error!(error = %reason, batch = completions.len(), "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for complete in completions {
            complete(commit.clone());
        }
        rewind.serve(&conn);
    }
}
