//! The embedded backend: queues and state in one SQLite database (WAL,
//! `synchronous=FULL`) that several engine processes on one host share.
//!
//! Every write goes through one writer thread per open handle, which drains
//! whatever calls are waiting and commits them in one transaction (group
//! commit: one fsync for many concurrent callers); each call runs inside its
//! own savepoint so one failing call does not undo the others. Reads use a
//! small pool of connections on blocking threads, concurrent with the writer
//! thanks to WAL, and a checkpoint thread copies the WAL into the database
//! off the commit path. Other processes' writes are seen by polling (see
//! `queue`).

mod queue;
mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub use queue::EmbeddedQueue;
pub use state::EmbeddedState;

use super::{BackendError, Result};
use crate::config::QueuesConfig;

/// Most calls committed in one transaction.
const MAX_BATCH: usize = 512;
/// How long a call waits for another process's write lock before `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection (the writer runs about 30 distinct ones).
const STATEMENT_CACHE: usize = 64;
/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself (SQLite's default
/// is 1,000: at full ingestion rate that was several stalls a second).
const FALLBACK_CHECKPOINT_PAGES: u32 = 20_000;
/// Idle read connections kept per handle.
const MAX_IDLE_READERS: usize = 8;
/// How often expired claims, indexed events, slots and old messages are swept.
const GC_INTERVAL_MS: i64 = 60_000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages(queue, dead, visible_at);
CREATE TABLE IF NOT EXISTS functions (id TEXT PRIMARY KEY, def TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    name TEXT NOT NULL,
    internal_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (name, internal_id)
);
CREATE INDEX IF NOT EXISTS events_by_ts ON events(name, ts);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    function_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_event ON runs(event_id);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs(created_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status, created_at);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempts TEXT NOT NULL DEFAULT '[]',
    outcome TEXT,
    started_at INTEGER,
    ended_at INTEGER,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS waits (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
CREATE INDEX IF NOT EXISTS waits_by_name ON waits(event_name);
CREATE TABLE IF NOT EXISTS slots (
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, holder)
);
-- Flow control: throttle reservations, debounces, batches, slot waiters.
CREATE TABLE IF NOT EXISTS throttles (key TEXT PRIMARY KEY, tat REAL NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS throttles_by_expiry ON throttles(expires_at);
CREATE TABLE IF NOT EXISTS throttle_starts (
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    start_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, holder)
);
CREATE INDEX IF NOT EXISTS throttle_starts_by_expiry ON throttle_starts(key, expires_at);
CREATE TABLE IF NOT EXISTS debounces (
    key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    since INTEGER NOT NULL,
    last INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_open (key TEXT PRIMARY KEY, batch_id TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batch_members (
    key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, event_id)
);
CREATE INDEX IF NOT EXISTS batch_members_by_expiry ON batch_members(expires_at);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    opened_at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_expiry ON batches(expires_at);
CREATE TABLE IF NOT EXISTS batch_events (
    batch_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
CREATE TABLE IF NOT EXISTS slot_waiters (
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    rank INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, holder)
);
"#;

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

pub(crate) fn sql_err(e: rusqlite::Error) -> BackendError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory => BackendError::Unavailable(format!("sqlite: {e}")),
            ErrorCode::TooBig => BackendError::TooLarge(format!("sqlite: {e}")),
            _ => BackendError::Other(format!("sqlite: {e}")),
        },
        _ => BackendError::Other(format!("sqlite: {e}")),
    }
}

pub(crate) fn json_err(e: serde_json::Error) -> BackendError {
    BackendError::Corrupt(e.to_string())
}

fn dup(e: &BackendError) -> BackendError {
    match e {
        BackendError::Unavailable(m) => BackendError::Unavailable(m.clone()),
        BackendError::TooLarge(m) => BackendError::TooLarge(m.clone()),
        BackendError::Corrupt(m) => BackendError::Corrupt(m.clone()),
        BackendError::Other(m) => BackendError::Other(m.clone()),
    }
}

/// Called with the batch's commit result once the transaction has ended.
type Finish = Box<dyn FnOnce(&Result<()>) + Send>;
/// Runs one call inside the batch transaction (`None`: the transaction could
/// not be started, so do not run, only report).
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> Finish + Send>;

/// One open handle on a database file.
pub(crate) struct Db {
    writer: mpsc::Sender<WriteJob>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Tells the checkpoint thread to end.
    stop_checkpoints: Arc<AtomicBool>,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
    }
}

/// Checkpoints the WAL (passive: never waits for, nor blocks, the writer
/// or readers) every [`CHECKPOINT_EVERY`] until `stop`.
fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "embedded backend: checkpoint failed; retrying");
        }
    }
}

/// When one owner (a queue, the state store) last swept its expired rows,
/// so that each sweeps at most once per interval.
#[derive(Debug, Default)]
pub(crate) struct GcClock(AtomicI64);

impl GcClock {
    /// Whether a sweep is due now; claims it if so.
    pub(crate) fn due(&self, now: i64) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        now - last >= GC_INTERVAL_MS
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Adds the columns that tables made by an older engine lack (`CREATE
/// TABLE IF NOT EXISTS` leaves an existing table as it is).
fn add_new_columns(conn: &Connection) -> Result<()> {
    let has_traceparent: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = 'traceparent'",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    if !has_traceparent {
        conn.execute_batch("ALTER TABLE runs ADD COLUMN traceparent TEXT;")
            .map_err(sql_err)?;
    }
    Ok(())
}

/// An exclusive lock on a file beside the database, held while one process
/// sets the database up. Several processes (the roles of a local stack)
/// open a new file at the same moment; switching it to WAL takes locks for
/// which SQLite answers "database is locked" at once instead of waiting out
/// the busy timeout, so the setup is done by one opener at a time. Dropping
/// it closes the file, which releases the lock.
struct SetupLock {
    _file: std::fs::File,
}

impl SetupLock {
    fn take(db: &Path) -> Result<Self> {
        let mut name = db.as_os_str().to_owned();
        name.push("-open.lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot open {}: {e}", path.display()))
            })?;
        file.lock().map_err(|e| {
            BackendError::Unavailable(format!("cannot lock {}: {e}", path.display()))
        })?;
        Ok(Self { _file: file })
    }
}

/// Opens the writer's connection: WAL, full fsync, the schema and any
/// columns an older engine's tables lack.
fn set_up(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    // journal_mode is persistent in the file; setting it again is cheap.
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .map_err(sql_err)?;
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .map_err(sql_err)?;
    conn.execute_batch(&format!("BEGIN IMMEDIATE;{SCHEMA}"))
        .map_err(sql_err)?;
    let upgraded = add_new_columns(&conn);
    conn.execute_batch(if upgraded.is_ok() {
        "COMMIT;"
    } else {
        "ROLLBACK;"
    })
    .map_err(sql_err)?;
    upgraded?;
    Ok(conn)
}

impl Db {
    fn open(path: &Path) -> Result<Arc<Self>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                BackendError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = {
            let _setup = SetupLock::take(path)?;
            set_up(path)?
        };
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Checkpoints run on their own thread (below), so that copying the
        // WAL into the database and its fsync do not stall the commits
        // waiting behind them; the writer checkpoints itself only if that
        // thread falls far behind.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={FALLBACK_CHECKPOINT_PAGES};"
        ))
        .map_err(sql_err)?;
        let checkpoints = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err)?;
        checkpoints.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
        checkpoints
            .execute_batch("PRAGMA synchronous=FULL;")
            .map_err(sql_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, stopped))
            .map_err(|e| BackendError::Other(format!("cannot start the checkpoint thread: {e}")))?;
        let (tx, rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| BackendError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(Arc::new(Self {
            writer: tx,
            readers: Mutex::new(Vec::new()),
            path: path.to_path_buf(),
            stop_checkpoints: stop,
        }))
    }

    /// Runs `f` in the next group-committed transaction; returns once it is durable.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_with(true, f).await
    }

    /// [`Db::write`] for a call that runs exactly one SQL statement: a
    /// statement that fails undoes itself, so it needs no savepoint of its
    /// own (two statements and a statement journal fewer per call; the
    /// ingestion path makes one such call per request).
    pub(crate) async fn write_one_statement<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_with(false, f).await
    }

    async fn write_with<T: Send + 'static>(
        &self,
        savepoint: bool,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: WriteJob = Box::new(move |conn| {
            let r = match conn {
                Some(c) if savepoint => in_savepoint(c, f),
                Some(c) => f(c),
                None => Err(BackendError::Unavailable("transaction not started".into())),
            };
            Box::new(move |commit: &Result<()>| {
                let _ = tx.send(match commit {
                    Ok(()) => r,
                    Err(e) => Err(dup(e)),
                });
            })
        });
        self.writer
            .send(job)
            .map_err(|_| BackendError::Unavailable("the database writer has stopped".into()))?;
        rx.await
            .map_err(|_| BackendError::Unavailable("the database writer has stopped".into()))?
    }

    /// Runs `f` on a read connection on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = db.take_reader()?;
            let r = f(&conn);
            db.put_reader(conn);
            r
        })
        .await
        .map_err(|e| BackendError::Other(format!("read task failed: {e}")))?
    }

    fn take_reader(&self) -> Result<Connection> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut r| r.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(sql_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch("PRAGMA query_only=1;")
            .map_err(sql_err)?;
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        if let Ok(mut r) = self.readers.lock()
            && r.len() < MAX_IDLE_READERS
        {
            r.push(conn);
        }
    }
}

fn in_savepoint<T>(c: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Cached statements: every call of every batch runs these, and parsing
    // them each time showed in the ingestion profile.
    let run = |sql: &str| {
        c.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map_err(sql_err)
    };
    run("SAVEPOINT call")?;
    let r = f(c);
    if r.is_ok() {
        run("RELEASE call")?;
    } else {
        run("ROLLBACK TO call")?;
        run("RELEASE call")?;
    }
    r
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begun = conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_err);
        let finishers: Vec<Finish> = batch
            .into_iter()
            .map(|job| job(begun.is_ok().then_some(&conn)))
            .collect();
        let result = match begun {
            Ok(()) => conn.execute_batch("COMMIT").map_err(sql_err),
            Err(e) => Err(e),
        };
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        if let Err(e) = &result {
            tracing::warn!(error = %e, "embedded backend: transaction failed");
        }
        for finish in finishers {
            finish(&result);
        }
    }
}

/// Opens the embedded backend on `path`: the event stream, the work queue
/// and the state store over one handle.
pub async fn open(path: &Path, queues: &QueuesConfig) -> Result<super::Backends> {
    let path = path.to_path_buf();
    let db = tokio::task::spawn_blocking(move || Db::open(&path))
        .await
        .map_err(|e| BackendError::Other(format!("open task failed: {e}")))??;
    Ok(super::Backends {
        events: Arc::new(EmbeddedQueue::new(
            Arc::clone(&db),
            "events",
            &queues.events,
        )),
        work: Arc::new(EmbeddedQueue::new(Arc::clone(&db), "work", &queues.work)),
        state: Arc::new(EmbeddedState::new(db)),
    })
}
