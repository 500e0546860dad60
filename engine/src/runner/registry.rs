//! The in-process view of the function registry: every registered function
//! with its expressions compiled once and its step graph indexed, reloaded
//! from the state store on an interval and on demand (a job naming an
//! unknown function). Unchanged functions keep their compiled form.
//!
//! Reloads run one at a time, so a slow one (started before a change) can
//! never replace the snapshot of a later one; a lookup that misses is
//! answered from a reload that started after the miss, so a function put
//! into the store before its run was created is always found.
//!
//! A runner pins the functions it was configured with: a state store that
//! no longer has one (a Redis restarted without its data) gets it back at
//! the next reload, and the loss is logged and counted, instead of events
//! finding no function and starting no run in silence.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, StateStore};
use crate::functions::{CompiledFunction, ExprError, FunctionDef, Step, Trigger};
use crate::metrics::Metrics;

/// How often the registry is reloaded in the background.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// A function ready to run: its definition, compiled expressions and graph.
#[derive(Debug)]
pub struct LoadedFunction {
    /// The definition as registered.
    pub def: FunctionDef,
    /// Its CEL expressions, compiled.
    pub exprs: CompiledFunction,
    index: HashMap<String, usize>,
    successors: Vec<Vec<usize>>,
    /// Cron triggers, parsed: (trigger index, schedule).
    pub crons: Vec<(usize, croner::Cron)>,
}

impl LoadedFunction {
    /// Compiles and indexes a definition.
    pub fn load(def: FunctionDef) -> Result<Self, ExprError> {
        let exprs = CompiledFunction::compile(&def)?;
        let index: HashMap<String, usize> = def
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let mut successors = vec![Vec::new(); def.steps.len()];
        for (i, step) in def.steps.iter().enumerate() {
            for before in &step.after {
                if let Some(&b) = index.get(before) {
                    successors[b].push(i);
                }
            }
        }
        let mut crons = Vec::new();
        for (i, trigger) in def.triggers.iter().enumerate() {
            if let Trigger::Cron { cron } = trigger {
                match parse_cron(cron) {
                    Ok(c) => crons.push((i, c)),
                    // Registration validates schedules; one that still fails
                    // is skipped rather than stopping the function's events.
                    Err(e) => {
                        tracing::error!(function = %def.id, cron = %cron, error = %e, "skipping an invalid cron trigger")
                    }
                }
            }
        }
        Ok(Self {
            def,
            exprs,
            index,
            successors,
            crons,
        })
    }

    /// A step by id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.index.get(id).map(|&i| &self.def.steps[i])
    }

    /// Steps that start when the run is created (no `after`).
    pub fn first_steps(&self) -> impl Iterator<Item = &Step> {
        self.def.steps.iter().filter(|s| s.after.is_empty())
    }

    /// Steps that list `id` in their `after`.
    pub fn successors(&self, id: &str) -> impl Iterator<Item = &Step> {
        self.index
            .get(id)
            .map(|&i| self.successors[i].as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&j| &self.def.steps[j])
    }
}

/// Parses a five-field cron schedule (UTC), as `validate` accepts it.
pub fn parse_cron(schedule: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
}

#[derive(Default)]
struct Snapshot {
    functions: HashMap<String, Arc<LoadedFunction>>,
    /// Event name → functions with an event trigger on it (trigger index).
    by_event: HashMap<String, Vec<(Arc<LoadedFunction>, usize)>>,
    /// Event names some function waits for or cancels on.
    waited: HashSet<String>,
}

/// The registry cache shared by the tasks of one process.
pub struct Registry {
    state: Arc<dyn StateStore>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held for the whole of a reload: reloads never overlap.
    loading: tokio::sync::Mutex<()>,
    /// When the last completed reload started reading the store.
    last_load: Mutex<Option<Instant>>,
    /// Functions put back whenever the state store does not have them.
    pinned: Vec<FunctionDef>,
    /// Where those are counted.
    metrics: Option<Arc<Metrics>>,
}

impl Registry {
    /// An empty cache over `state`; call [`Registry::refresh`] to load it.
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        Self {
            state,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            loading: tokio::sync::Mutex::new(()),
            last_load: Mutex::new(None),
            pinned: Vec::new(),
            metrics: None,
        }
    }

    /// Like [`Registry::new`], putting `pinned` (the process's configured
    /// functions) back into the state store at any reload that misses one,
    /// counted in `metrics` (`stackctl_runner_functions_restored_total`).
    pub fn pinning(
        state: Arc<dyn StateStore>,
        pinned: Vec<FunctionDef>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pinned,
            metrics: Some(metrics),
            ..Self::new(state)
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.read().expect("registry lock").clone()
    }

    /// Reloads every function from the state store.
    pub async fn refresh(&self) -> Result<(), BackendError> {
        let _loading = self.loading.lock().await;
        self.load().await
    }

    /// One reload; the caller holds `loading`.
    async fn load(&self) -> Result<(), BackendError> {
        let started = Instant::now();
        let mut defs = self.state.list_functions().await?;
        let missing: Vec<&FunctionDef> = self
            .pinned
            .iter()
            .filter(|p| !defs.iter().any(|d| d.id == p.id))
            .collect();
        if !missing.is_empty() {
            for f in &missing {
                self.state.put_function(f).await?;
            }
            let ids: Vec<&str> = missing.iter().map(|f| f.id.as_str()).collect();
            if self.last_load.lock().expect("registry lock").is_some() {
                if let Some(m) = &self.metrics {
                    m.runner_functions_restored.inc();
                }
                tracing::error!(
                    functions = ?ids,
                    "the state store lost registered functions (a Redis restarted without its \
                     data?); put them back. Runs in progress before are lost: their step jobs \
                     fail and are dead-lettered (see `stackctl dlq`)"
                );
            }
            defs.extend(missing.into_iter().cloned());
        }
        let old = self.current();
        let mut next = Snapshot::default();
        for def in defs {
            let loaded = match old.functions.get(&def.id) {
                Some(f) if f.def == def => f.clone(),
                _ => match LoadedFunction::load(def) {
                    Ok(f) => Arc::new(f),
                    Err(e) => {
                        // Registration validates expressions; one that still
                        // fails here cannot run, and must not stop the others.
                        tracing::error!(error = %e, "skipping a function whose expressions do not compile");
                        continue;
                    }
                },
            };
            for (i, trigger) in loaded.def.triggers.iter().enumerate() {
                if let Trigger::Event { event, .. } = trigger {
                    next.by_event
                        .entry(event.clone())
                        .or_default()
                        .push((loaded.clone(), i));
                }
            }
            for step in &loaded.def.steps {
                if let Some(w) = &step.wait_for_event {
                    next.waited.insert(w.event.clone());
                }
            }
            for c in &loaded.def.cancel_on {
                next.waited.insert(c.event.clone());
            }
            next.functions.insert(loaded.def.id.clone(), loaded);
        }
        *self.snapshot.write().expect("registry lock") = Arc::new(next);
        *self.last_load.lock().expect("registry lock") = Some(started);
        Ok(())
    }

    /// A function by id. One not known yet is looked up again in a reload
    /// that started after this call (it may have been registered since the
    /// last one); misses at the same moment share that reload.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<LoadedFunction>>, BackendError> {
        if let Some(f) = self.current().functions.get(id) {
            return Ok(Some(f.clone()));
        }
        self.get_fresh(id).await
    }

    /// A function by id as the state store has it now: from a reload that
    /// started after this call (shared with lookups at the same moment).
    /// For a job that names what the cached definition lacks (a step added
    /// by an update the last reload did not see yet).
    pub async fn get_fresh(&self, id: &str) -> Result<Option<Arc<LoadedFunction>>, BackendError> {
        let asked = Instant::now();
        let _loading = self.loading.lock().await;
        let fresh = self
            .last_load
            .lock()
            .expect("registry lock")
            .is_some_and(|started| started >= asked);
        if !fresh {
            self.load().await?;
        }
        Ok(self.current().functions.get(id).cloned())
    }

    /// Functions with an event trigger on `name`, with the trigger's index.
    pub fn triggered_by(&self, name: &str) -> Vec<(Arc<LoadedFunction>, usize)> {
        self.current()
            .by_event
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Functions with at least one cron trigger.
    pub fn with_crons(&self) -> Vec<Arc<LoadedFunction>> {
        self.current()
            .functions
            .values()
            .filter(|f| !f.crons.is_empty())
            .cloned()
            .collect()
    }

    /// Whether some function waits for (or cancels on) events named `name`.
    pub fn is_waited(&self, name: &str) -> bool {
        self.current().waited.contains(name)
    }

    /// Reloads every `interval` until `stop` resolves. Errors are logged and
    /// the previous snapshot kept.
    pub async fn keep_fresh(
        &self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "cannot reload the function registry");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(id: &str) -> FunctionDef {
        serde_json::from_value(json!({
            "id": id,
            "triggers": [{"event": "a"}],
            "steps": [{"id": "s", "sleep": "1s"}]
        }))
        .unwrap()
    }

    /// An embedded state store in a temporary directory (kept while the
    /// directory lives).
    async fn store() -> (tempfile::TempDir, Arc<dyn StateStore>) {
        let dir = tempfile::tempdir().unwrap();
        let backends = crate::backend::embedded::open(
            &dir.path().join("db"),
            &crate::config::QueuesConfig::default(),
        )
        .await
        .unwrap();
        (dir, backends.state)
    }

    #[tokio::test]
    async fn a_function_stored_just_after_a_reload_is_found_by_the_next_lookup() {
        let (_dir, state) = store().await;
        let registry = Registry::new(state.clone());
        for round in 0..20 {
            registry.refresh().await.unwrap();
            let id = format!("f{round}");
            state.put_function(&def(&id)).await.unwrap();
            let found = registry.get(&id).await.unwrap();
            assert_eq!(found.map(|f| f.def.id.clone()), Some(id));
        }
    }

    #[tokio::test]
    async fn a_step_added_just_after_a_reload_is_found_by_a_fresh_lookup() {
        let (_dir, state) = store().await;
        let registry = Registry::new(state.clone());
        state.put_function(&def("f")).await.unwrap();
        registry.refresh().await.unwrap();
        let mut updated = def("f");
        updated.steps.push(def("f").steps[0].clone());
        updated.steps[1].id = "added".into();
        state.put_function(&updated).await.unwrap();
        let cached = registry.get("f").await.unwrap().unwrap();
        assert!(
            cached.step("added").is_none(),
            "the cache is one reload behind"
        );
        let fresh = registry.get_fresh("f").await.unwrap().unwrap();
        assert!(fresh.step("added").is_some());
    }

    #[test]
    fn indexes_first_steps_and_successors() {
        let def: FunctionDef = serde_json::from_value(json!({
            "id": "f",
            "triggers": [{"event": "a"}],
            "steps": [
                {"id": "a", "http": {"url": "http://127.0.0.1:1/"}},
                {"id": "b", "after": ["a"], "sleep": "1s"},
                {"id": "c", "after": ["a"], "sleep": "1s"},
                {"id": "d", "after": ["b", "c"], "sleep": "1s"},
                {"id": "e", "sleep": "1s"}
            ]
        }))
        .unwrap();
        let f = LoadedFunction::load(def).unwrap();
        let first: Vec<&str> = f.first_steps().map(|s| s.id.as_str()).collect();
        assert_eq!(first, ["a", "e"]);
        let after_a: Vec<&str> = f.successors("a").map(|s| s.id.as_str()).collect();
        assert_eq!(after_a, ["b", "c"]);
        let after_b: Vec<&str> = f.successors("b").map(|s| s.id.as_str()).collect();
        assert_eq!(after_b, ["d"]);
        assert_eq!(f.successors("d").count(), 0);
        assert_eq!(f.successors("nope").count(), 0);
        assert_eq!(f.step("c").unwrap().id, "c");
    }
}
