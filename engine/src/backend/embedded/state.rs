//! The embedded state store: runs, steps, waits, claims, slots, throttles,
//! debounces, the event index and the function registry as SQLite tables.
//! Write-once operations are single conditional statements whose
//! changed-row count says who won.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, EmbeddedQueue, GcClock, json_err, ms, now_ms, sql_err};
use crate::backend::{
    Attempt, BackendError, Batch, Batched, Debounced, Event, Message, Queue, Result, Run,
    RunStatus, StateStore, StepEnd, StepOutcome, StepRecord, Wait,
};
use crate::functions::FunctionDef;

/// The state store of one embedded handle.
pub struct EmbeddedState {
    db: Arc<Db>,
    gc: GcClock,
    /// Sweeps of expired throttle rows.
    flow_gc: GcClock,
    /// Sweeps of expired batch rows.
    batch_gc: GcClock,
}

impl EmbeddedState {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self {
            db,
            gc: GcClock::default(),
            flow_gc: GcClock::default(),
            batch_gc: GcClock::default(),
        }
    }

    /// `work` as an embedded queue of this same handle, whose writes can
    /// join this store's transactions.
    fn same_db<'q>(&self, work: &'q dyn Queue) -> Option<&'q EmbeddedQueue> {
        work.as_any()?
            .downcast_ref::<EmbeddedQueue>()
            .filter(|q| Arc::ptr_eq(&q.db, &self.db))
    }
}

fn create_run_in(c: &Connection, run: &Run, event: &str) -> Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO runs (id, function_id, event_id, event, status, error, created_at, ended_at, traceparent) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(sql_err)?
        .execute(params![
            run.id,
            run.function_id,
            run.event.internal_id,
            event,
            status_str(run.status),
            run.error,
            run.created_at,
            run.ended_at,
            run.traceparent
        ])
        .map_err(sql_err)?;
    Ok(n == 1)
}

fn finish_run_in(
    c: &Connection,
    id: &str,
    status: RunStatus,
    error: Option<&str>,
    at: i64,
) -> Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE runs SET status = ?2, error = ?3, ended_at = ?4 WHERE id = ?1 AND status = 'running'",
        )
        .map_err(sql_err)?
        .execute(params![id, status_str(status), error, at])
        .map_err(sql_err)?;
    Ok(n == 1)
}

fn record_attempt_in(c: &Connection, run_id: &str, step_id: &str, attempt: Attempt) -> Result<()> {
    let existing: Option<String> = c
        .prepare_cached("SELECT attempts FROM steps WHERE run_id = ?1 AND step_id = ?2")
        .map_err(sql_err)?
        .query_row(params![run_id, step_id], |r| r.get(0))
        .optional()
        .map_err(sql_err)?;
    let mut attempts: Vec<Attempt> = match &existing {
        Some(a) => serde_json::from_str(a).map_err(json_err)?,
        None => Vec::new(),
    };
    // Recording the same attempt twice (a retried call) replaces it.
    attempts.retain(|a| a.number != attempt.number);
    attempts.push(attempt);
    attempts.sort_by_key(|a| a.number);
    let started = attempts.iter().map(|a| a.started_at).min();
    let text = serde_json::to_string(&attempts).map_err(json_err)?;
    c.prepare_cached(
        "INSERT INTO steps (run_id, step_id, attempts, started_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (run_id, step_id) DO UPDATE SET attempts = excluded.attempts, \
         started_at = MIN(COALESCE(steps.started_at, excluded.started_at), excluded.started_at)",
    )
    .map_err(sql_err)?
    .execute(params![run_id, step_id, text, started])
    .map_err(sql_err)?;
    Ok(())
}

fn set_outcome_in(
    c: &Connection,
    run_id: &str,
    step_id: &str,
    outcome: &str,
    at: i64,
) -> Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO steps (run_id, step_id, outcome, ended_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (run_id, step_id) DO UPDATE SET outcome = excluded.outcome, \
             ended_at = excluded.ended_at WHERE steps.outcome IS NULL",
        )
        .map_err(sql_err)?
        .execute(params![run_id, step_id, outcome, at])
        .map_err(sql_err)?;
    Ok(n == 1)
}

/// Sweeps expired rows inside the caller's transaction.
fn sweep(c: &Connection, now: i64) -> Result<()> {
    for table in ["claims", "events", "slots"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE expires_at <= ?1"),
            [now],
        )
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Deletes the batches, memberships and open-batch marks past their time.
fn sweep_batches(c: &Connection, now: i64) -> Result<()> {
    for sql in [
        "DELETE FROM batch_events WHERE batch_id IN (SELECT batch_id FROM batches WHERE expires_at <= ?1)",
        "DELETE FROM batches WHERE expires_at <= ?1",
        "DELETE FROM batch_members WHERE expires_at <= ?1",
        "DELETE FROM batch_open WHERE expires_at <= ?1",
    ] {
        c.prepare_cached(sql)
            .map_err(sql_err)?
            .execute([now])
            .map_err(sql_err)?;
    }
    Ok(())
}

type DebounceRow = (String, i64, i64);

fn to_debounced((event, since, last): DebounceRow) -> Result<Debounced> {
    Ok(Debounced {
        event: serde_json::from_str(&event).map_err(json_err)?,
        since,
        last,
    })
}

fn debounced_in(c: &Connection, key: &str, now: i64) -> Result<Option<DebounceRow>> {
    c.prepare_cached("SELECT event, since, last FROM debounces WHERE key = ?1 AND expires_at > ?2")
        .map_err(sql_err)?
        .query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(sql_err)
}

/// One GCRA step: the start reserved at `now` for a key whose theoretical
/// arrival time is `tat` (none: no recent start), with `tolerance` (ms) of
/// starts allowed ahead of schedule, and the key's next `tat`.
fn gcra(tat: Option<f64>, now: i64, interval: f64, tolerance: f64) -> (i64, f64) {
    let tat = tat.unwrap_or(f64::MIN).max(now as f64);
    let start = (tat - tolerance).max(now as f64).ceil() as i64;
    (start, tat + interval)
}

fn status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Skipped => "skipped",
    }
}

fn parse_status(s: &str) -> Result<RunStatus> {
    Ok(match s {
        "running" => RunStatus::Running,
        "completed" => RunStatus::Completed,
        "failed" => RunStatus::Failed,
        "cancelled" => RunStatus::Cancelled,
        "skipped" => RunStatus::Skipped,
        other => {
            return Err(BackendError::Corrupt(format!(
                "unknown run status `{other}`"
            )));
        }
    })
}

const RUN_COLUMNS: &str =
    "id, function_id, event, status, error, created_at, ended_at, traceparent";

type RunRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
);

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn to_run(row: RunRow) -> Result<Run> {
    let (id, function_id, event, status, error, created_at, ended_at, traceparent) = row;
    Ok(Run {
        id,
        function_id,
        event: serde_json::from_str(&event).map_err(json_err)?,
        status: parse_status(&status)?,
        error,
        created_at,
        ended_at,
        traceparent,
    })
}

fn query_runs(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Run>> {
    let mut stmt = c.prepare_cached(sql).map_err(sql_err)?;
    let rows: Vec<RunRow> = stmt
        .query_map(params, run_row)
        .map_err(sql_err)?
        .collect::<std::result::Result<_, _>>()
        .map_err(sql_err)?;
    rows.into_iter().map(to_run).collect()
}

#[async_trait]
impl StateStore for EmbeddedState {
    async fn put_function(&self, function: &FunctionDef) -> Result<()> {
        let id = function.id.clone();
        let def = serde_json::to_string(function).map_err(json_err)?;
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO functions (id, def) VALUES (?1, ?2)",
                    params![id, def],
                )
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn list_functions(&self) -> Result<Vec<FunctionDef>> {
        self.db
            .read(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT def FROM functions ORDER BY id")
                    .map_err(sql_err)?;
                let defs: Vec<String> = stmt
                    .query_map([], |r| r.get(0))
                    .map_err(sql_err)?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sql_err)?;
                defs.iter()
                    .map(|d| serde_json::from_str(d).map_err(json_err))
                    .collect()
            })
            .await
    }

    async fn delete_function(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.db
            .write(move |c| {
                let n = c
                    .execute("DELETE FROM functions WHERE id = ?1", [id])
                    .map_err(sql_err)?;
                Ok(n == 1)
            })
            .await
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<String> {
        let (key, owner) = (key.to_string(), owner.to_string());
        let ttl = ms(ttl);
        let now = now_ms();
        let gc = self.gc.due(now);
        self.db
            .write(move |c| {
                if gc {
                    sweep(c, now)?;
                }
                let held: Option<(String, i64)> = c
                    .query_row("SELECT owner, expires_at FROM claims WHERE key = ?1", [&key], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                    .map_err(sql_err)?;
                match held {
                    Some((holder, expires)) if expires > now => Ok(holder),
                    _ => {
                        c.execute(
                            "INSERT OR REPLACE INTO claims (key, owner, expires_at) VALUES (?1, ?2, ?3)",
                            params![key, owner, now.saturating_add(ttl)],
                        )
                        .map_err(sql_err)?;
                        Ok(owner)
                    }
                }
            })
            .await
    }

    async fn index_event(&self, event: &Event, retention: Duration) -> Result<()> {
        let body = serde_json::to_string(event).map_err(json_err)?;
        let (name, id, ts) = (event.name.clone(), event.internal_id.clone(), event.ts);
        let expires = now_ms().saturating_add(ms(retention));
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO events (name, internal_id, ts, body, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, id, ts, body, expires],
                )
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn events_since(&self, name: &str, since: i64, limit: usize) -> Result<Vec<Event>> {
        let name = name.to_string();
        let now = now_ms();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT body FROM events WHERE name = ?1 AND ts >= ?2 AND expires_at > ?3 \
                         ORDER BY ts, internal_id LIMIT ?4",
                    )
                    .map_err(sql_err)?;
                let bodies: Vec<String> = stmt
                    .query_map(params![name, since, now, limit as i64], |r| r.get(0))
                    .map_err(sql_err)?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sql_err)?;
                bodies
                    .iter()
                    .map(|b| serde_json::from_str(b).map_err(json_err))
                    .collect()
            })
            .await
    }

    async fn create_run(&self, run: &Run) -> Result<bool> {
        let event = serde_json::to_string(&run.event).map_err(json_err)?;
        let run = run.clone();
        self.db.write(move |c| create_run_in(c, &run, &event)).await
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>> {
        let id = run_id.to_string();
        self.db
            .read(move |c| {
                let row = c
                    .query_row(
                        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                        [id],
                        run_row,
                    )
                    .optional()
                    .map_err(sql_err)?;
                row.map(to_run).transpose()
            })
            .await
    }

    async fn runs_for_event(&self, internal_id: &str) -> Result<Vec<Run>> {
        let id = internal_id.to_string();
        self.db
            .read(move |c| {
                query_runs(
                    c,
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE event_id = ?1 ORDER BY created_at, id"
                    ),
                    [id],
                )
            })
            .await
    }

    async fn list_runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>> {
        let limit = limit as i64;
        self.db
            .read(move |c| match status {
                Some(s) => query_runs(
                    c,
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE status = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
                    ),
                    params![status_str(s), limit],
                ),
                None => query_runs(
                    c,
                    &format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1"),
                    [limit],
                ),
            })
            .await
    }

    async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
        at: i64,
    ) -> Result<bool> {
        if !status.is_terminal() {
            return Err(BackendError::Other(
                "finish_run needs a terminal status".into(),
            ));
        }
        let id = run_id.to_string();
        self.db
            .write(move |c| finish_run_in(c, &id, status, error.as_deref(), at))
            .await
    }

    async fn purge_finished(&self, before: i64, limit: usize) -> Result<usize> {
        self.db
            .write(move |c| {
                let ids: Vec<String> = c
                    .prepare_cached(
                        "SELECT id FROM runs WHERE status != 'running' \
                         AND COALESCE(ended_at, created_at) < ?1 LIMIT ?2",
                    )
                    .map_err(sql_err)?
                    .query_map(params![before, limit as i64], |r| r.get(0))
                    .map_err(sql_err)?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sql_err)?;
                for id in &ids {
                    for sql in [
                        "DELETE FROM steps WHERE run_id = ?1",
                        "DELETE FROM waits WHERE run_id = ?1",
                        "DELETE FROM runs WHERE id = ?1",
                    ] {
                        c.execute(sql, [id]).map_err(sql_err)?;
                    }
                }
                Ok(ids.len())
            })
            .await
    }

    async fn run_counts(&self) -> Result<BTreeMap<RunStatus, u64>> {
        self.db
            .read(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status")
                    .map_err(sql_err)?;
                let rows: Vec<(String, i64)> = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql_err)?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sql_err)?;
                let mut out = BTreeMap::new();
                for (s, n) in rows {
                    out.insert(parse_status(&s)?, n as u64);
                }
                Ok(out)
            })
            .await
    }

    async fn record_attempt(&self, run_id: &str, step_id: &str, attempt: Attempt) -> Result<()> {
        let (run_id, step_id) = (run_id.to_string(), step_id.to_string());
        self.db
            .write(move |c| record_attempt_in(c, &run_id, &step_id, attempt))
            .await
    }

    async fn set_outcome(
        &self,
        run_id: &str,
        step_id: &str,
        outcome: &StepOutcome,
        at: i64,
    ) -> Result<bool> {
        let (run_id, step_id) = (run_id.to_string(), step_id.to_string());
        let text = serde_json::to_string(outcome).map_err(json_err)?;
        self.db
            .write(move |c| set_outcome_in(c, &run_id, &step_id, &text, at))
            .await
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let run_id = run_id.to_string();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT step_id, attempts, outcome, started_at, ended_at FROM steps \
                         WHERE run_id = ?1 ORDER BY rowid",
                    )
                    .map_err(sql_err)?;
                type Row = (String, String, Option<String>, Option<i64>, Option<i64>);
                let rows: Vec<Row> = stmt
                    .query_map([run_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(sql_err)?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sql_err)?;
                rows.into_iter()
                    .map(|(step_id, attempts, outcome, started_at, ended_at)| {
                        Ok(StepRecord {
                            step_id,
                            attempts: serde_json::from_str(&attempts).map_err(json_err)?,
                            outcome: outcome
                                .map(|o| serde_json::from_str(&o))
                                .transpose()
                                .map_err(json_err)?,
                            started_at,
                            ended_at,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn add_wait(&self, wait: &Wait) -> Result<()> {
        let body = serde_json::to_string(wait).map_err(json_err)?;
        let (run_id, step_id, name) = (
            wait.run_id.clone(),
            wait.step_id.clone(),
            wait.event_name.clone(),
        );
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO waits (run_id, step_id, event_name, body) VALUES (?1, ?2, ?3, ?4)",
                    params![run_id, step_id, name, body],
                )
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn waits_for(&self, event_name: &str) -> Result<Vec<Wait>> {
        let name = event_name.to_string();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT body FROM waits WHERE event_name = ?1 ORDER BY rowid")
                    .map_err(sql_err)?;
                let bodies: Vec<String> = stmt
                    .query_map([name], |r| r.get(0))
                    .map_err(sql_err)?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(sql_err)?;
                bodies
                    .iter()
                    .map(|b| serde_json::from_str(b).map_err(json_err))
                    .collect()
            })
            .await
    }

    async fn take_wait(&self, run_id: &str, step_id: &str) -> Result<bool> {
        let (run_id, step_id) = (run_id.to_string(), step_id.to_string());
        self.db
            .write(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM waits WHERE run_id = ?1 AND step_id = ?2",
                        params![run_id, step_id],
                    )
                    .map_err(sql_err)?;
                Ok(n == 1)
            })
            .await
    }

    async fn acquire_slot(
        &self,
        key: &str,
        holder: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool> {
        let (key, holder) = (key.to_string(), holder.to_string());
        let lease = ms(lease);
        self.db
            .write(move |c| {
                let now = now_ms();
                c.execute(
                    "DELETE FROM slots WHERE key = ?1 AND expires_at <= ?2",
                    params![key, now],
                )
                .map_err(sql_err)?;
                let renewed = c
                    .execute(
                        "UPDATE slots SET expires_at = ?3 WHERE key = ?1 AND holder = ?2",
                        params![key, holder, now.saturating_add(lease)],
                    )
                    .map_err(sql_err)?;
                if renewed == 1 {
                    return Ok(true);
                }
                let held: i64 = c
                    .query_row("SELECT COUNT(*) FROM slots WHERE key = ?1", [&key], |r| {
                        r.get(0)
                    })
                    .map_err(sql_err)?;
                if held >= i64::from(limit) {
                    return Ok(false);
                }
                c.execute(
                    "INSERT INTO slots (key, holder, expires_at) VALUES (?1, ?2, ?3)",
                    params![key, holder, now.saturating_add(lease)],
                )
                .map_err(sql_err)?;
                Ok(true)
            })
            .await
    }

    async fn acquire_slot_ranked(
        &self,
        key: &str,
        holder: &str,
        limit: u32,
        lease: Duration,
        rank: i64,
        wait: Duration,
    ) -> Result<bool> {
        let (key, holder) = (key.to_string(), holder.to_string());
        let (lease, wait) = (ms(lease), ms(wait));
        self.db
            .write(move |c| {
                let now = now_ms();
                c.prepare_cached("DELETE FROM slots WHERE key = ?1 AND expires_at <= ?2")
                    .map_err(sql_err)?
                    .execute(params![key, now])
                    .map_err(sql_err)?;
                c.prepare_cached("DELETE FROM slot_waiters WHERE key = ?1 AND expires_at <= ?2")
                    .map_err(sql_err)?
                    .execute(params![key, now])
                    .map_err(sql_err)?;
                let renewed = c
                    .prepare_cached("UPDATE slots SET expires_at = ?3 WHERE key = ?1 AND holder = ?2")
                    .map_err(sql_err)?
                    .execute(params![key, holder, now.saturating_add(lease)])
                    .map_err(sql_err)?;
                if renewed == 1 {
                    return Ok(true);
                }
                let held: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM slots WHERE key = ?1")
                    .map_err(sql_err)?
                    .query_row([&key], |r| r.get(0))
                    .map_err(sql_err)?;
                // Text compares bytewise here, as Redis orders members of one
                // score, so both stores break ties alike.
                let ahead: i64 = c
                    .prepare_cached(
                        "SELECT COUNT(*) FROM slot_waiters WHERE key = ?1 \
                         AND (rank < ?2 OR (rank = ?2 AND holder < ?3))",
                    )
                    .map_err(sql_err)?
                    .query_row(params![key, rank, holder], |r| r.get(0))
                    .map_err(sql_err)?;
                if i64::from(limit) - held > ahead {
                    c.prepare_cached("DELETE FROM slot_waiters WHERE key = ?1 AND holder = ?2")
                        .map_err(sql_err)?
                        .execute(params![key, holder])
                        .map_err(sql_err)?;
                    c.prepare_cached("INSERT INTO slots (key, holder, expires_at) VALUES (?1, ?2, ?3)")
                        .map_err(sql_err)?
                        .execute(params![key, holder, now.saturating_add(lease)])
                        .map_err(sql_err)?;
                    return Ok(true);
                }
                c.prepare_cached(
                    "INSERT OR REPLACE INTO slot_waiters (key, holder, rank, expires_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql_err)?
                .execute(params![key, holder, rank, now.saturating_add(wait)])
                .map_err(sql_err)?;
                Ok(false)
            })
            .await
    }

    async fn release_slot(&self, key: &str, holder: &str) -> Result<()> {
        let (key, holder) = (key.to_string(), holder.to_string());
        self.db
            .write(move |c| {
                c.execute(
                    "DELETE FROM slots WHERE key = ?1 AND holder = ?2",
                    params![key, holder],
                )
                .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn reserve_start(
        &self,
        key: &str,
        holder: &str,
        interval: Duration,
        burst: u32,
        keep: Duration,
    ) -> Result<i64> {
        let (key, holder) = (key.to_string(), holder.to_string());
        let interval = interval.as_secs_f64() * 1000.0;
        let tolerance = interval * f64::from(burst);
        let keep = ms(keep);
        let gc = self.flow_gc.due(now_ms());
        self.db
            .write(move |c| {
                let now = now_ms();
                if gc {
                    c.execute("DELETE FROM throttles WHERE expires_at <= ?1", [now])
                        .map_err(sql_err)?;
                }
                let held: Option<i64> = c
                    .prepare_cached(
                        "SELECT start_at FROM throttle_starts WHERE key = ?1 AND holder = ?2 AND expires_at > ?3",
                    )
                    .map_err(sql_err)?
                    .query_row(params![key, holder, now], |r| r.get(0))
                    .optional()
                    .map_err(sql_err)?;
                if let Some(start) = held {
                    return Ok(start);
                }
                c.prepare_cached("DELETE FROM throttle_starts WHERE key = ?1 AND expires_at <= ?2")
                    .map_err(sql_err)?
                    .execute(params![key, now])
                    .map_err(sql_err)?;
                let tat: Option<f64> = c
                    .prepare_cached("SELECT tat FROM throttles WHERE key = ?1")
                    .map_err(sql_err)?
                    .query_row([&key], |r| r.get(0))
                    .optional()
                    .map_err(sql_err)?;
                let (start, tat) = gcra(tat, now, interval, tolerance);
                c.prepare_cached("INSERT OR REPLACE INTO throttles (key, tat, expires_at) VALUES (?1, ?2, ?3)")
                    .map_err(sql_err)?
                    .execute(params![key, tat, (tat.ceil() as i64).saturating_add(1000)])
                    .map_err(sql_err)?;
                c.prepare_cached(
                    "INSERT OR REPLACE INTO throttle_starts (key, holder, start_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql_err)?
                .execute(params![key, holder, start, start.saturating_add(keep)])
                .map_err(sql_err)?;
                Ok(start)
            })
            .await
    }

    async fn debounce(
        &self,
        key: &str,
        event: &Event,
        at: i64,
        ttl: Duration,
    ) -> Result<Debounced> {
        let key = key.to_string();
        let id = event.internal_id.clone();
        let body = serde_json::to_string(event).map_err(json_err)?;
        let ttl = ms(ttl);
        let row = self
            .db
            .write(move |c| {
                let now = now_ms();
                let held: Option<String> = c
                    .prepare_cached("SELECT event_id FROM debounces WHERE key = ?1 AND expires_at > ?2")
                    .map_err(sql_err)?
                    .query_row(params![key, now], |r| r.get(0))
                    .optional()
                    .map_err(sql_err)?;
                match held {
                    Some(held) if held.as_str() >= id.as_str() => {}
                    Some(_) => {
                        c.prepare_cached(
                            "UPDATE debounces SET event_id = ?2, event = ?3, last = ?4, expires_at = ?5 WHERE key = ?1",
                        )
                        .map_err(sql_err)?
                        .execute(params![key, id, body, at, now.saturating_add(ttl)])
                        .map_err(sql_err)?;
                    }
                    None => {
                        c.prepare_cached(
                            "INSERT OR REPLACE INTO debounces (key, event_id, event, since, last, expires_at) \
                             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                        )
                        .map_err(sql_err)?
                        .execute(params![key, id, body, at, now.saturating_add(ttl)])
                        .map_err(sql_err)?;
                    }
                }
                debounced_in(c, &key, now)?.ok_or_else(|| {
                    BackendError::Other(format!("debounce key `{key}` vanished while written"))
                })
            })
            .await?;
        to_debounced(row)
    }

    async fn debounced(&self, key: &str) -> Result<Option<Debounced>> {
        let key = key.to_string();
        let row = self
            .db
            .read(move |c| debounced_in(c, &key, now_ms()))
            .await?;
        row.map(to_debounced).transpose()
    }

    async fn take_debounced(&self, key: &str, internal_id: &str) -> Result<bool> {
        let (key, id) = (key.to_string(), internal_id.to_string());
        self.db
            .write(move |c| {
                let n = c
                    .prepare_cached("DELETE FROM debounces WHERE key = ?1 AND event_id = ?2")
                    .map_err(sql_err)?
                    .execute(params![key, id])
                    .map_err(sql_err)?;
                Ok(n == 1)
            })
            .await
    }

    async fn batch_add(
        &self,
        key: &str,
        candidate: &str,
        event: &Event,
        max_size: u32,
        at: i64,
        keep: Duration,
    ) -> Result<Batched> {
        let (key, candidate) = (key.to_string(), candidate.to_string());
        let id = event.internal_id.clone();
        let body = serde_json::to_string(event).map_err(json_err)?;
        let keep = ms(keep);
        let gc = self.batch_gc.due(now_ms());
        self.db
            .write(move |c| {
                let now = now_ms();
                if gc {
                    sweep_batches(c, now)?;
                }
                let expires = now.saturating_add(keep);
                let member: Option<String> = c
                    .prepare_cached(
                        "SELECT batch_id FROM batch_members WHERE key = ?1 AND event_id = ?2 AND expires_at > ?3",
                    )
                    .map_err(sql_err)?
                    .query_row(params![key, id, now], |r| r.get(0))
                    .optional()
                    .map_err(sql_err)?;
                let batch_id = match member {
                    Some(batch_id) => batch_id,
                    None => {
                        let open: Option<String> = c
                            .prepare_cached(
                                "SELECT batch_id FROM batch_open WHERE key = ?1 AND expires_at > ?2",
                            )
                            .map_err(sql_err)?
                            .query_row(params![key, now], |r| r.get(0))
                            .optional()
                            .map_err(sql_err)?;
                        let batch_id = match open {
                            Some(open) => open,
                            None => {
                                c.prepare_cached(
                                    "INSERT OR REPLACE INTO batch_open (key, batch_id, expires_at) VALUES (?1, ?2, ?3)",
                                )
                                .map_err(sql_err)?
                                .execute(params![key, candidate, expires])
                                .map_err(sql_err)?;
                                c.prepare_cached(
                                    "INSERT OR REPLACE INTO batches (batch_id, opened_at, size, expires_at) VALUES (?1, ?2, 0, ?3)",
                                )
                                .map_err(sql_err)?
                                .execute(params![candidate, at, expires])
                                .map_err(sql_err)?;
                                candidate
                            }
                        };
                        let size: i64 = c
                            .prepare_cached(
                                "UPDATE batches SET size = size + 1, expires_at = ?2 WHERE batch_id = ?1 RETURNING size",
                            )
                            .map_err(sql_err)?
                            .query_row(params![batch_id, expires], |r| r.get(0))
                            .map_err(sql_err)?;
                        c.prepare_cached(
                            "INSERT INTO batch_events (batch_id, seq, event) VALUES (?1, ?2, ?3)",
                        )
                        .map_err(sql_err)?
                        .execute(params![batch_id, size, body])
                        .map_err(sql_err)?;
                        c.prepare_cached(
                            "INSERT OR REPLACE INTO batch_members (key, event_id, batch_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(sql_err)?
                        .execute(params![key, id, batch_id, expires])
                        .map_err(sql_err)?;
                        if size >= i64::from(max_size) {
                            c.prepare_cached("DELETE FROM batch_open WHERE key = ?1 AND batch_id = ?2")
                                .map_err(sql_err)?
                                .execute(params![key, batch_id])
                                .map_err(sql_err)?;
                        }
                        batch_id
                    }
                };
                let (size, opened_at): (i64, i64) = c
                    .prepare_cached("SELECT size, opened_at FROM batches WHERE batch_id = ?1")
                    .map_err(sql_err)?
                    .query_row([&batch_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(sql_err)?;
                Ok(Batched {
                    id: batch_id,
                    size: u32::try_from(size).unwrap_or(u32::MAX),
                    opened_at,
                })
            })
            .await
    }

    async fn seal_batch(&self, key: &str, batch_id: &str) -> Result<()> {
        let (key, batch_id) = (key.to_string(), batch_id.to_string());
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM batch_open WHERE key = ?1 AND batch_id = ?2")
                    .map_err(sql_err)?
                    .execute(params![key, batch_id])
                    .map_err(sql_err)?;
                Ok(())
            })
            .await
    }

    async fn batch(&self, batch_id: &str) -> Result<Option<Batch>> {
        let batch_id = batch_id.to_string();
        let rows = self
            .db
            .read(move |c| {
                let opened_at: Option<i64> = c
                    .prepare_cached(
                        "SELECT opened_at FROM batches WHERE batch_id = ?1 AND expires_at > ?2",
                    )
                    .map_err(sql_err)?
                    .query_row(params![batch_id, now_ms()], |r| r.get(0))
                    .optional()
                    .map_err(sql_err)?;
                let Some(opened_at) = opened_at else {
                    return Ok(None);
                };
                let events = c
                    .prepare_cached(
                        "SELECT event FROM batch_events WHERE batch_id = ?1 ORDER BY seq",
                    )
                    .map_err(sql_err)?
                    .query_map([&batch_id], |r| r.get::<_, String>(0))
                    .map_err(sql_err)?
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(sql_err)?;
                Ok(Some((opened_at, events)))
            })
            .await?;
        let Some((opened_at, events)) = rows else {
            return Ok(None);
        };
        let events = events
            .iter()
            .map(|e| serde_json::from_str(e).map_err(json_err))
            .collect::<Result<Vec<Event>>>()?;
        Ok(Some(Batch { events, opened_at }))
    }

    async fn create_run_and_send(
        &self,
        run: &Run,
        work: &dyn Queue,
        jobs: Vec<Message>,
    ) -> Result<bool> {
        let Some(queue) = self.same_db(work) else {
            return crate::backend::create_run_then_send(self, run, work, jobs).await;
        };
        let event = serde_json::to_string(&run.event).map_err(json_err)?;
        let run = run.clone();
        let lease = queue.begin_send(&jobs)?;
        let terms = EmbeddedQueue::lease_terms(&lease);
        let name = queue.name();
        let (created, leased) = self
            .db
            .write(move |c| {
                if !create_run_in(c, &run, &event)? {
                    return Ok((false, Vec::new()));
                }
                Ok((true, EmbeddedQueue::insert(c, name, jobs, terms, now_ms())?))
            })
            .await?;
        queue.end_send(lease, leased);
        Ok(created)
    }

    async fn end_step(&self, end: StepEnd, work: &dyn Queue) -> Result<bool> {
        let Some(queue) = self.same_db(work) else {
            return crate::backend::end_step_in_order(self, end, work).await;
        };
        if end.finish.as_ref().is_some_and(|(s, _)| !s.is_terminal()) {
            return Err(BackendError::Other(
                "end_step can only finish a run with a terminal status".into(),
            ));
        }
        let outcome = serde_json::to_string(&end.outcome).map_err(json_err)?;
        let lease = queue.begin_send(&end.jobs)?;
        let terms = EmbeddedQueue::lease_terms(&lease);
        let name = queue.name();
        let (won, leased) = self
            .db
            .write(move |c| {
                let StepEnd {
                    run_id,
                    step_id,
                    at,
                    attempt,
                    jobs,
                    finish,
                    ..
                } = end;
                if !set_outcome_in(c, &run_id, &step_id, &outcome, at)? {
                    return Ok((false, Vec::new()));
                }
                if let Some(a) = attempt {
                    record_attempt_in(c, &run_id, &step_id, a)?;
                }
                let leased = EmbeddedQueue::insert(c, name, jobs, terms, now_ms())?;
                if let Some((status, error)) = finish {
                    finish_run_in(c, &run_id, status, error.as_deref(), at)?;
                }
                Ok((true, leased))
            })
            .await?;
        queue.end_send(lease, leased);
        Ok(won)
    }
}
