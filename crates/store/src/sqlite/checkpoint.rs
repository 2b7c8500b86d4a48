//! WAL checkpoints. A background thread copies committed frames into the
//! database file without blocking the writer. Under sustained load the log
//! never drains on its own, so the writer itself copies the last few frames
//! between two group commits; its next transaction can then rewind the log.
//!
//! Letting another connection do that last step (a RESTART checkpoint) stalls
//! the writer much longer than the copy: the writer meets a locked database
//! and SQLite's busy handler sleeps 1, 2, 5, 10 ms before it retries, which
//! measured as 11-18 ms stalls twice a second at 4,000 messages/s.

use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(500);
/// WAL frames (pages) above which the log is rewound rather than left to grow.
const REWIND_FRAMES: i64 = 16_384;
/// A log this large despite rewind requests (readers kept it in use) is
/// rewound by a RESTART checkpoint, which waits for those readers.
const FORCE_FRAMES: i64 = 4 * REWIND_FRAMES;

/// Set by the checkpoint thread, taken by the writer.
#[derive(Clone, Default)]
pub(crate) struct RewindRequest(Arc<AtomicBool>);

impl RewindRequest {
    /// Run by the writer between group commits when a rewind was asked for.
    pub(crate) fn serve(&self, writer: &Connection) {
        if !self.0.swap(false, Ordering::AcqRel) {
            return;
        }
        let result = writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| {
                r.get::<_, i64>(1)
            })
            .and_then(|log| {
                if log > FORCE_FRAMES {
                    writer.query_row("PRAGMA wal_checkpoint(RESTART);", [], |_| Ok(()))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
        }
    }
}

/// Starts the checkpoint thread on its own connection.
pub(crate) fn start(conn: Connection, rewind: RewindRequest) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            if let Err(e) = conn.execute_batch("PRAGMA journal_size_limit=67108864;") {
                tracing::warn!(error = %e, "cannot limit the WAL size");
            }
            loop {
                std::thread::sleep(INTERVAL);
                if let Err(e) = copy_committed(&conn, &rewind, REWIND_FRAMES) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the checkpoint thread");
    }
}

fn copy_committed(
    conn: &Connection,
    rewind: &RewindRequest,
    rewind_frames: i64,
) -> rusqlite::Result<()> {
    let passive = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| {
            r.get::<_, i64>(1)
        })
    };
    if passive()? > rewind_frames {
        // The first pass took long enough for many commits to land behind
        // it; a second one copies those, so the writer is left only what
        // arrives in the meantime.
        passive()?;
        rewind.0.store(true, Ordering::Release);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
            .unwrap();
        conn
    }

    fn commit_rows(conn: &Connection, count: usize) {
        for _ in 0..count {
            conn.execute("INSERT INTO t (body) VALUES (zeroblob(3000))", [])
                .unwrap();
        }
    }

    fn log_frames(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| r.get(1))
            .unwrap()
    }

    #[test]
    fn the_writer_rewinds_a_log_that_kept_growing_behind_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        let checkpointer = open(&path);
        let rewind = RewindRequest::default();
        commit_rows(&writer, 200);
        copy_committed(&checkpointer, &rewind, 100).unwrap();
        // Commits behind the checkpointer keep the log from rewinding on its own.
        commit_rows(&writer, 50);
        rewind.serve(&writer);
        commit_rows(&writer, 1);
        let frames = writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE);", [], |r| {
                r.get::<_, i64>(1)
            })
            .unwrap();
        assert!(
            frames < 10,
            "the log should have started over; it holds {frames} frames"
        );
        // A request is served once.
        commit_rows(&writer, 50);
        rewind.serve(&writer);
        commit_rows(&writer, 1);
        assert!(log_frames(&checkpointer) > 50);
    }
}
