//! [`RedisState`]: the [`StateStore`] over Redis hashes, sorted sets and the
//! scripts in `scripts`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::keys::{self, Keys};
use super::{Conn, classify, connect, scripts};
use crate::backend::{
    Attempt, BackendError, Batch, Batched, Debounced, Event, Queue, Result, Run, RunStatus,
    StateStore, StepEnd, StepOutcome, StepRecord, Wait,
};
use crate::functions::FunctionDef;

/// Digits of the zero-padded attempt number in a step field, so fields sort
/// and parse back.
const ATTEMPT_DIGITS: usize = 10;

/// The Redis state store. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisState {
    conn: Conn,
    keys: Keys,
}

/// A step outcome as stored: written once with its time.
#[derive(Serialize, Deserialize)]
struct StoredOutcome {
    at: i64,
    outcome: StepOutcome,
}

fn json_err(e: serde_json::Error) -> BackendError {
    BackendError::Corrupt(format!("redis state: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| BackendError::Other(format!("encode: {e}")))
}

/// The zero-padded attempt number of a step's attempt field.
fn attempt_field(number: u32) -> String {
    format!("{number:0ATTEMPT_DIGITS$}")
}

/// Refuses to end a run with a status that is not an end.
fn terminal(run_id: &str, status: RunStatus) -> Result<()> {
    if status.is_terminal() {
        Ok(())
    } else {
        Err(BackendError::Other(format!(
            "finish_run {run_id}: `{}` is not a terminal status",
            keys::status_str(status)
        )))
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4).max(1)
}

/// A run from its hash: the JSON written at creation, overlaid with the
/// fields `finish_run` changes.
fn decode_run(fields: HashMap<String, String>) -> Result<Option<Run>> {
    let Some(json) = fields.get("run") else {
        return Ok(None);
    };
    let mut run: Run = serde_json::from_str(json).map_err(json_err)?;
    if let Some(status) = fields.get("status") {
        run.status = keys::parse_status(status)
            .ok_or_else(|| BackendError::Corrupt(format!("run {}: status `{status}`", run.id)))?;
    }
    run.error = fields.get("error").cloned();
    run.ended_at = fields.get("ended_at").and_then(|v| v.parse().ok());
    Ok(Some(run))
}

impl RedisState {
    /// Connects to `url` (see the module docs for its forms); `cluster`
    /// for a Redis Cluster such as MemoryDB.
    pub async fn open(url: &str, cluster: bool) -> Result<Self> {
        Ok(Self {
            conn: connect(url, cluster).await?,
            keys: if cluster {
                Keys::CLUSTER
            } else {
                Keys::STANDALONE
            },
        })
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Runs by id, in the order given, skipping ids without a run.
    async fn runs_by_id(&self, ids: &[String]) -> Result<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.run(id));
        }
        let all: Vec<HashMap<String, String>> =
            pipe.query_async(&mut self.conn()).await.map_err(classify)?;
        let mut runs = Vec::with_capacity(all.len());
        for fields in all {
            if let Some(run) = decode_run(fields)? {
                runs.push(run);
            }
        }
        Ok(runs)
    }
}

#[async_trait]
impl StateStore for RedisState {
    async fn put_function(&self, function: &FunctionDef) -> Result<()> {
        let json = to_json(function)?;
        self.conn()
            .hset::<_, _, _, ()>(self.keys.functions(), &function.id, json)
            .await
            .map_err(classify)
    }

    async fn list_functions(&self) -> Result<Vec<FunctionDef>> {
        let all: BTreeMap<String, String> = self
            .conn()
            .hgetall(self.keys.functions())
            .await
            .map_err(classify)?;
        all.values()
            .map(|v| serde_json::from_str(v).map_err(json_err))
            .collect()
    }

    async fn delete_function(&self, id: &str) -> Result<bool> {
        let n: u64 = self
            .conn()
            .hdel(self.keys.functions(), id)
            .await
            .map_err(classify)?;
        Ok(n > 0)
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<String> {
        // SET NX GET answers the holder's value, or nil when this call set it.
        let previous: Option<String> = redis::cmd("SET")
            .arg(self.keys.claim(key))
            .arg(owner)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(ms(ttl))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(previous.unwrap_or_else(|| owner.to_string()))
    }

    async fn index_event(&self, event: &Event, retention: Duration) -> Result<()> {
        let [by_ts, bodies, by_expiry] = self.keys.event_index(&event.name);
        scripts::INDEX_EVENT
            .key(by_ts)
            .key(bodies)
            .key(by_expiry)
            .arg(&event.internal_id)
            .arg(event.ts)
            .arg(to_json(event)?)
            .arg(ms(retention))
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn events_since(&self, name: &str, since: i64, limit: usize) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let [by_ts, bodies, _] = self.keys.event_index(name);
        let found: Vec<Option<String>> = scripts::EVENTS_SINCE
            .key(by_ts)
            .key(bodies)
            .arg(since)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        found
            .into_iter()
            .flatten()
            .map(|v| serde_json::from_str(&v).map_err(json_err))
            .collect()
    }

    async fn create_run(&self, run: &Run) -> Result<bool> {
        let created: i64 = scripts::CREATE_RUN
            .key(self.keys.run(&run.id))
            .key(self.keys.runs())
            .key(self.keys.runs_with(run.status))
            .key(self.keys.event_runs(&run.event.internal_id))
            .arg(to_json(run)?)
            .arg(keys::status_str(run.status))
            .arg(run.created_at)
            .arg(&run.id)
            .arg(if run.error.is_some() { "1" } else { "0" })
            .arg(run.error.as_deref().unwrap_or(""))
            .arg(run.ended_at.map(|t| t.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(created == 1)
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>> {
        let fields: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.run(run_id))
            .await
            .map_err(classify)?;
        decode_run(fields)
    }

    async fn runs_for_event(&self, internal_id: &str) -> Result<Vec<Run>> {
        let ids: Vec<String> = self
            .conn()
            .zrange(self.keys.event_runs(internal_id), 0, -1)
            .await
            .map_err(classify)?;
        self.runs_by_id(&ids).await
    }

    async fn list_runs(&self, status: Option<RunStatus>, limit: usize) -> Result<Vec<Run>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match status {
            Some(s) => self.keys.runs_with(s),
            None => self.keys.runs(),
        };
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let ids: Vec<String> = self
            .conn()
            .zrevrange(index, 0, stop)
            .await
            .map_err(classify)?;
        self.runs_by_id(&ids).await
    }

    async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
        at: i64,
    ) -> Result<bool> {
        terminal(run_id, status)?;
        let ended: i64 = scripts::FINISH_RUN
            .key(self.keys.run(run_id))
            .key(self.keys.runs_with(RunStatus::Running))
            .key(self.keys.runs_with(status))
            .arg(keys::status_str(status))
            .arg(if error.is_some() { "1" } else { "0" })
            .arg(error.as_deref().unwrap_or(""))
            .arg(at)
            .arg(run_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(ended == 1)
    }

    async fn purge_finished(&self, before: i64, limit: usize) -> Result<usize> {
        let mut script = scripts::PURGE_FINISHED.key(self.keys.runs());
        for status in RunStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            script.key(self.keys.runs_with(status));
        }
        let purged: i64 = script
            .arg(before)
            .arg(limit)
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(usize::try_from(purged).unwrap_or(0))
    }

    async fn run_counts(&self) -> Result<BTreeMap<RunStatus, u64>> {
        let mut pipe = redis::pipe();
        for s in RunStatus::ALL {
            pipe.zcard(self.keys.runs_with(s));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.conn()).await.map_err(classify)?;
        Ok(RunStatus::ALL
            .into_iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn record_attempt(&self, run_id: &str, step_id: &str, attempt: Attempt) -> Result<()> {
        scripts::RECORD_ATTEMPT
            .key(self.keys.steps(run_id))
            .arg(step_id)
            .arg(attempt_field(attempt.number))
            .arg(to_json(&attempt)?)
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_outcome(
        &self,
        run_id: &str,
        step_id: &str,
        outcome: &StepOutcome,
        at: i64,
    ) -> Result<bool> {
        let stored = to_json(&StoredOutcome {
            at,
            outcome: outcome.clone(),
        })?;
        let written: i64 = scripts::SET_OUTCOME
            .key(self.keys.steps(run_id))
            .arg(step_id)
            .arg(stored)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(written == 1)
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let fields: HashMap<String, String> = self
            .conn()
            .hgetall(self.keys.steps(run_id))
            .await
            .map_err(classify)?;
        steps_from_fields(fields)
    }

    async fn add_wait(&self, wait: &Wait) -> Result<()> {
        scripts::ADD_WAIT
            .key(self.keys.run_waits(&wait.run_id))
            .key(self.keys.waits(&wait.event_name))
            .arg(&wait.step_id)
            .arg(&wait.event_name)
            .arg(keys::wait_field(&wait.run_id, &wait.step_id))
            .arg(to_json(wait)?)
            .arg(self.keys.waits_prefix())
            .invoke_async::<i64>(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn waits_for(&self, event_name: &str) -> Result<Vec<Wait>> {
        let all: BTreeMap<String, String> = self
            .conn()
            .hgetall(self.keys.waits(event_name))
            .await
            .map_err(classify)?;
        all.values()
            .map(|v| serde_json::from_str(v).map_err(json_err))
            .collect()
    }

    async fn take_wait(&self, run_id: &str, step_id: &str) -> Result<bool> {
        let taken: i64 = scripts::TAKE_WAIT
            .key(self.keys.run_waits(run_id))
            .arg(step_id)
            .arg(keys::wait_field(run_id, step_id))
            .arg(self.keys.waits_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(taken == 1)
    }

    async fn run_with_steps(&self, run_id: &str) -> Result<(Option<Run>, Vec<StepRecord>)> {
        let (run, steps): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .hgetall(self.keys.run(run_id))
            .hgetall(self.keys.steps(run_id))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok((decode_run(run)?, steps_from_fields(steps)?))
    }

    /// The outcome, the attempt and the end of the run are one script (one
    /// round trip); the jobs go out after it, as the default does. A run
    /// that ends while jobs are sent (not something the executor asks for)
    /// is ended after them, in order.
    async fn end_step(&self, end: StepEnd, work: &dyn Queue) -> Result<bool> {
        let StepEnd {
            run_id,
            step_id,
            outcome,
            at,
            attempt,
            jobs,
            finish,
        } = end;
        let (now, later) = if jobs.is_empty() {
            (finish, None)
        } else {
            (None, finish)
        };
        let mut script = scripts::END_STEP.key(self.keys.steps(&run_id));
        script
            .key(self.keys.run(&run_id))
            .key(self.keys.runs_with(RunStatus::Running))
            .key(
                self.keys
                    .runs_with(now.as_ref().map_or(RunStatus::Running, |(s, _)| *s)),
            )
            .arg(&step_id)
            .arg(to_json(&StoredOutcome { at, outcome })?);
        match &attempt {
            Some(a) => script.arg(attempt_field(a.number)).arg(to_json(a)?),
            None => script.arg("").arg(""),
        };
        match &now {
            Some((status, error)) => {
                terminal(&run_id, *status)?;
                script
                    .arg(keys::status_str(*status))
                    .arg(if error.is_some() { "1" } else { "0" })
                    .arg(error.as_deref().unwrap_or(""))
            }
            None => script.arg("").arg("0").arg(""),
        };
        let written: i64 = script
            .arg(at)
            .arg(&run_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        if written == 0 {
            return Ok(false);
        }
        if !jobs.is_empty() {
            work.send(jobs).await?;
        }
        if let Some((status, error)) = later {
            self.finish_run(&run_id, status, error, at).await?;
        }
        Ok(true)
    }

    async fn acquire_slot(
        &self,
        key: &str,
        holder: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<bool> {
        let granted: i64 = scripts::ACQUIRE_SLOT
            .key(self.keys.slot(key))
            .arg(holder)
            .arg(limit)
            .arg(ms(lease))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(granted == 1)
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
        let [waiters, until] = self.keys.slot_waiters(key);
        let granted: i64 = scripts::ACQUIRE_SLOT_RANKED
            .key(self.keys.slot(key))
            .key(waiters)
            .key(until)
            .arg(holder)
            .arg(limit)
            .arg(ms(lease))
            .arg(rank)
            .arg(ms(wait))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(granted == 1)
    }

    async fn release_slot(&self, key: &str, holder: &str) -> Result<()> {
        self.conn()
            .zrem::<_, _, ()>(self.keys.slot(key), holder)
            .await
            .map_err(classify)
    }

    async fn reserve_start(
        &self,
        key: &str,
        holder: &str,
        interval: Duration,
        burst: u32,
        keep: Duration,
    ) -> Result<i64> {
        let [tat, starts] = self.keys.throttle(key);
        let interval = interval.as_secs_f64() * 1000.0;
        let start: String = scripts::RESERVE_START
            .key(tat)
            .key(starts)
            .arg(holder)
            .arg(format!("{interval:.3}"))
            .arg(format!("{:.3}", interval * f64::from(burst)))
            .arg(ms(keep))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        start
            .parse()
            .map_err(|e| BackendError::Corrupt(format!("throttle {key}: start `{start}`: {e}")))
    }

    async fn debounce(
        &self,
        key: &str,
        event: &Event,
        at: i64,
        ttl: Duration,
    ) -> Result<Debounced> {
        let held: Vec<Option<String>> = scripts::DEBOUNCE
            .key(self.keys.debounce(key))
            .arg(&event.internal_id)
            .arg(to_json(event)?)
            .arg(at)
            .arg(ms(ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        decode_debounced(key, held)?.ok_or_else(|| {
            BackendError::Other(format!("debounce key `{key}` vanished while written"))
        })
    }

    async fn debounced(&self, key: &str) -> Result<Option<Debounced>> {
        let held: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.debounce(key))
            .arg("event")
            .arg("since")
            .arg("last")
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        decode_debounced(key, held)
    }

    async fn take_debounced(&self, key: &str, internal_id: &str) -> Result<bool> {
        let taken: i64 = scripts::TAKE_DEBOUNCED
            .key(self.keys.debounce(key))
            .arg(internal_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(taken == 1)
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
        let [open, member] = self.keys.batch_key(key, &event.internal_id);
        let (id, size, opened_at): (String, u32, i64) = scripts::BATCH_ADD
            .key(open)
            .key(member)
            .arg(self.keys.batch_prefix())
            .arg(candidate)
            .arg(to_json(event)?)
            .arg(max_size)
            .arg(at)
            .arg(ms(keep))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(Batched {
            id,
            size,
            opened_at,
        })
    }

    async fn seal_batch(&self, key: &str, batch_id: &str) -> Result<()> {
        let [open, _] = self.keys.batch_key(key, "");
        let _: i64 = scripts::SEAL_BATCH
            .key(open)
            .arg(batch_id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn batch(&self, batch_id: &str) -> Result<Option<Batch>> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.batch(batch_id))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let Some(at) = fields.get("at") else {
            return Ok(None);
        };
        let number = |v: &str| {
            v.parse::<i64>()
                .map_err(|e| BackendError::Corrupt(format!("batch {batch_id}: `{v}`: {e}")))
        };
        let opened_at = number(at)?;
        let size = number(fields.get("n").map_or("0", String::as_str))?;
        let events = (1..=size)
            .map(|n| {
                let body = fields.get(&format!("e{n}")).ok_or_else(|| {
                    BackendError::Corrupt(format!("batch {batch_id}: event {n} missing"))
                })?;
                serde_json::from_str(body).map_err(json_err)
            })
            .collect::<Result<Vec<Event>>>()?;
        Ok(Some(Batch { events, opened_at }))
    }
}

/// A debounce key's fields (event, since, last), if it holds an event.
fn decode_debounced(key: &str, fields: Vec<Option<String>>) -> Result<Option<Debounced>> {
    let [Some(event), Some(since), Some(last)] = <[Option<String>; 3]>::try_from(fields)
        .map_err(|f| BackendError::Corrupt(format!("debounce {key}: {} fields", f.len())))?
    else {
        return Ok(None);
    };
    let time = |v: &str| {
        v.parse::<i64>()
            .map_err(|e| BackendError::Corrupt(format!("debounce {key}: time `{v}`: {e}")))
    };
    Ok(Some(Debounced {
        event: serde_json::from_str(&event).map_err(json_err)?,
        since: time(&since)?,
        last: time(&last)?,
    }))
}

/// The record of `step` (first-seen order, record), made on first use.
fn record<'a>(
    records: &'a mut HashMap<String, (u64, StepRecord)>,
    step: &str,
) -> &'a mut (u64, StepRecord) {
    records.entry(step.to_string()).or_insert_with(|| {
        (
            u64::MAX,
            StepRecord {
                step_id: step.to_string(),
                attempts: Vec::new(),
                outcome: None,
                started_at: None,
                ended_at: None,
            },
        )
    })
}

/// Step records from a run's steps hash: `n:STEP` (first-seen order),
/// `a:STEP:NUMBER` (attempts), `o:STEP` (the outcome) and the `#` counter.
fn steps_from_fields(fields: HashMap<String, String>) -> Result<Vec<StepRecord>> {
    let corrupt = |field: &str| BackendError::Corrupt(format!("redis state: field `{field}`"));
    let mut records: HashMap<String, (u64, StepRecord)> = HashMap::new();
    let mut attempts: Vec<(String, u32, Attempt)> = Vec::new();
    for (field, value) in &fields {
        if let Some(step) = field.strip_prefix("n:") {
            record(&mut records, step).0 = value.parse().map_err(|_| corrupt(field))?;
        } else if let Some(step) = field.strip_prefix("o:") {
            let stored: StoredOutcome = serde_json::from_str(value).map_err(json_err)?;
            let rec = &mut record(&mut records, step).1;
            rec.outcome = Some(stored.outcome);
            rec.ended_at = Some(stored.at);
        } else if let Some(rest) = field.strip_prefix("a:") {
            // STEP ':' NUMBER, the number zero-padded to a fixed width.
            let split = rest
                .len()
                .checked_sub(ATTEMPT_DIGITS + 1)
                .ok_or_else(|| corrupt(field))?;
            let (step, number) = rest.split_at(split);
            let number: u32 = number[1..].parse().map_err(|_| corrupt(field))?;
            let attempt: Attempt = serde_json::from_str(value).map_err(json_err)?;
            attempts.push((step.to_string(), number, attempt));
        }
    }
    attempts.sort_by_key(|a| a.1);
    for (step, _, attempt) in attempts {
        let rec = &mut record(&mut records, &step).1;
        rec.started_at = Some(
            rec.started_at
                .map_or(attempt.started_at, |s| s.min(attempt.started_at)),
        );
        rec.attempts.push(attempt);
    }
    let mut out: Vec<(u64, StepRecord)> = records.into_values().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.step_id.cmp(&b.1.step_id)));
    Ok(out.into_iter().map(|(_, r)| r).collect())
}
