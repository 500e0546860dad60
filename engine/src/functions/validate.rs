//! Semantic checks of one function definition: what serde and the JSON
//! Schema cannot see (step graph, CEL syntax, cron syntax, id rules).
//!
//! Every error carries the path of the offending value inside the function
//! (e.g. `steps[2].after[0]`), so the caller can point at it: `stacks` maps
//! the path to `file:line:column`, the engine's registration API returns it
//! as is. All errors are collected; nothing stops at the first one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::{ACTION_KEYS, FunctionDef, Retries, Step, Trigger};

const SECOND: std::time::Duration = std::time::Duration::from_secs(1);
/// The most events one batch may gather (Inngest's cap too).
pub const BATCH_MAX_SIZE: u32 = 100;
const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
/// The longest throttle period and debounce wait, as Inngest allows.
const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// One segment of a path into a document: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(key: &str) -> Self {
        Self::Key(key.to_string())
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// A path into a document, shown as `steps[2].after[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub Vec<PathSegment>);

impl Path {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path with one more segment.
    pub fn join(&self, segment: impl Into<PathSegment>) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment.into());
        Self(segments)
    }

    /// `prefix` followed by this path.
    pub fn prefixed(&self, prefix: &Path) -> Self {
        Self(prefix.0.iter().chain(&self.0).cloned().collect())
    }

    /// The segments.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(k) if i == 0 => write!(f, "{k}")?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Builds a [`Path`] from keys and indices: `path!["steps", 2, "after"]`.
#[macro_export]
macro_rules! path {
    ($($segment:expr),* $(,)?) => {
        $crate::functions::Path(vec![$($crate::functions::PathSegment::from($segment)),*])
    };
}

/// A problem found in a function, at `path` inside it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct FunctionError {
    /// Where, relative to the function.
    pub path: Path,
    /// What.
    pub kind: FunctionErrorKind,
}

/// What is wrong with a function.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionErrorKind {
    /// An id that is not lowercase letters, digits and `-`.
    #[error("invalid {what} id `{id}`")]
    InvalidId {
        /// `function` or `step`.
        what: &'static str,
        /// The id as written.
        id: String,
    },
    /// No triggers at all.
    #[error("function `{function}` has no triggers")]
    NoTriggers {
        /// The function id.
        function: String,
    },
    /// No steps at all.
    #[error("function `{function}` has no steps")]
    NoSteps {
        /// The function id.
        function: String,
    },
    /// An event name that is empty.
    #[error("empty event name")]
    EmptyEventName,
    /// Two steps with one id.
    #[error("duplicate step id `{id}`")]
    DuplicateStep {
        /// The repeated id.
        id: String,
        /// Index of the first step with this id.
        first: usize,
    },
    /// `after` naming a step that does not exist.
    #[error("step `{step}` runs after `{missing}`, which is not a step of this function")]
    UnknownAfter {
        /// The step whose `after` is wrong.
        step: String,
        /// The unknown name.
        missing: String,
        /// The closest existing step id, if one is close.
        suggestion: Option<String>,
    },
    /// `after` edges that form a cycle.
    #[error("steps form a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The step ids along the cycle; the first is repeated at the end.
        cycle: Vec<String>,
    },
    /// A step with none of the action keys.
    #[error("step `{step}` does nothing")]
    NoAction {
        /// The step id.
        step: String,
    },
    /// A step with more than one action key.
    #[error("step `{step}` sets {} actions: {}", keys.len(), keys.join(", "))]
    SeveralActions {
        /// The step id.
        step: String,
        /// The action keys it sets.
        keys: Vec<&'static str>,
    },
    /// A CEL expression that does not parse.
    #[error("invalid CEL expression `{expression}`: {message}")]
    InvalidCel {
        /// The expression as written.
        expression: String,
        /// The parser's message, with the position inside the expression.
        message: String,
    },
    /// A cron schedule that does not parse.
    #[error("invalid cron schedule `{cron}`: {message}")]
    InvalidCron {
        /// The schedule as written.
        cron: String,
        /// The parser's message.
        message: String,
    },
    /// `concurrency.limit: 0`.
    #[error("concurrency limit must be at least 1")]
    ZeroConcurrency,
    /// `rate_limit.limit: 0`.
    #[error("rate limit must be at least 1")]
    ZeroRateLimit,
    /// A `rate_limit.period` outside 1s..=24h.
    #[error("rate limit period {period} is outside 1s to 24h")]
    RateLimitPeriod {
        /// The period as written.
        period: String,
    },
    /// `throttle.limit: 0`.
    #[error("throttle limit must be at least 1")]
    ZeroThrottle,
    /// A `throttle.period` outside 1s..=7d.
    #[error("throttle period {period} is outside 1s to 7d")]
    ThrottlePeriod {
        /// The period as written.
        period: String,
    },
    /// A `debounce.period` outside 100ms..=7d.
    #[error("debounce period {period} is outside 100ms to 7d")]
    DebouncePeriod {
        /// The period as written.
        period: String,
    },
    /// A `debounce.timeout` shorter than the period or longer than 7d.
    #[error("debounce timeout {timeout} is outside {period} (the period) to 7d")]
    DebounceTimeout {
        /// The timeout as written.
        timeout: String,
        /// The period as written.
        period: String,
    },
    /// A `batch_events.max_size` of 0 or above [`BATCH_MAX_SIZE`].
    #[error("batch max_size {max_size} is outside 1 to {BATCH_MAX_SIZE}")]
    BatchSize {
        /// The size as written.
        max_size: u32,
    },
    /// A `batch_events.timeout` outside 1s..=1h.
    #[error("batch timeout {timeout} is outside 1s to 1h")]
    BatchTimeout {
        /// The timeout as written.
        timeout: String,
    },
    /// `batch_events` beside a flow-control setting it cannot combine with.
    #[error("batch_events cannot be combined with {other}: {why}")]
    BatchWith {
        /// The other setting.
        other: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// `priority` on a function without `concurrency`.
    #[error("priority needs a concurrency limit: it orders the runs waiting for a slot")]
    PriorityWithoutConcurrency,
    /// A retry backoff larger than its cap.
    #[error("retry backoff {backoff} is larger than max_backoff {max_backoff}")]
    BackoffAboveMax {
        /// The first delay.
        backoff: String,
        /// The cap.
        max_backoff: String,
    },
    /// A zero duration where waiting is the point.
    #[error("{what} must be longer than 0")]
    ZeroDuration {
        /// Which duration.
        what: &'static str,
    },
}

impl FunctionError {
    fn new(path: Path, kind: FunctionErrorKind) -> Self {
        Self { path, kind }
    }

    /// How to fix it, in one sentence.
    pub fn help(&self) -> String {
        use FunctionErrorKind as K;
        match &self.kind {
            K::InvalidId { .. } => {
                "use lowercase letters, digits and `-`, starting with a letter (e.g. `send-welcome`)"
                    .into()
            }
            K::NoTriggers { .. } => {
                "add a trigger, e.g. `triggers: [{event: user/signup}]` or `[{cron: \"0 * * * *\"}]`"
                    .into()
            }
            K::NoSteps { .. } => "add at least one step with `http`, `docker`, `sleep` or `wait_for_event`".into(),
            K::EmptyEventName => "name the event, e.g. `user/signup`".into(),
            K::DuplicateStep { first, .. } => {
                format!("rename this step: step {first} already uses this id")
            }
            K::UnknownAfter {
                suggestion: Some(s),
                ..
            } => format!("did you mean `{s}`?"),
            K::UnknownAfter { .. } => "`after` lists ids of other steps of the same function".into(),
            K::Cycle { cycle } => format!(
                "remove one of these `after` edges; `{}` would wait for itself",
                cycle.first().map(String::as_str).unwrap_or_default()
            ),
            K::NoAction { .. } => format!(
                "set exactly one of {}",
                ACTION_KEYS.map(|k| format!("`{k}`")).join(", ")
            ),
            K::SeveralActions { .. } => {
                "split it into several steps chained with `after`: a step does exactly one thing"
                    .into()
            }
            K::InvalidCel { .. } => {
                "write a CEL expression over `event` (and `steps` or `async` where they exist), e.g. `event.data.plan == \"pro\"`".into()
            }
            K::InvalidCron { .. } => {
                "use five fields, minute hour day-of-month month day-of-week (UTC), e.g. `*/5 * * * *`"
                    .into()
            }
            K::ZeroConcurrency => "remove `concurrency` for no limit, or set `limit: 1` or more".into(),
            K::ZeroRateLimit => "remove `rate_limit` for no limit, or set `limit: 1` or more".into(),
            K::RateLimitPeriod { .. } => "use a period from `1s` to `24h`, e.g. `1m`".into(),
            K::ZeroThrottle => "remove `throttle` for no limit, or set `limit: 1` or more".into(),
            K::ThrottlePeriod { .. } => "use a period from `1s` to `7d`, e.g. `1m`".into(),
            K::DebouncePeriod { .. } => "use a period from `100ms` to `7d`, e.g. `5s`".into(),
            K::DebounceTimeout { period, .. } => {
                format!("use a timeout from `{period}` to `7d`, or remove it to wait for a quiet period however long")
            }
            K::BatchSize { .. } => format!("use a max_size from 1 to {BATCH_MAX_SIZE}, e.g. `10`"),
            K::BatchTimeout { .. } => "use a timeout from `1s` to `1h`, e.g. `5s`".into(),
            K::BatchWith { other, .. } => {
                format!("remove `{other}` or `batch_events`, or split the function in two")
            }
            K::PriorityWithoutConcurrency => {
                "priority orders runs waiting for a concurrency slot: add `concurrency: {limit: N}`"
                    .into()
            }
            K::BackoffAboveMax { .. } => "lower `backoff` or raise `max_backoff`".into(),
            K::ZeroDuration { .. } => "use a duration such as `30s`, `5m` or `1d`".into(),
        }
    }
}

/// Whether `id` is a valid function or step id: lowercase letters, digits and
/// `-`, starting with a letter, at most 64 characters.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Parses a CEL expression, returning the parser's first message with its
/// position inside the expression.
pub fn check_cel(expression: &str) -> Result<(), String> {
    // The cel parser recurses on deeply nested input; a panic there must not
    // take down the caller, so it is reported like any other parse error.
    let parsed = std::panic::catch_unwind(|| cel::Program::compile(expression));
    match parsed {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(errors)) => Err(errors
            .errors
            .first()
            .map(|e| {
                format!(
                    "{} (at column {})",
                    e.msg.trim(),
                    e.pos.1.max(0).saturating_add(1)
                )
            })
            .unwrap_or_else(|| "does not parse".into())),
        Err(_) => Err("the expression is too deeply nested to parse".into()),
    }
}

/// Parses a five-field cron schedule (minute hour day-of-month month
/// day-of-week), the format of cron triggers.
pub fn check_cron(schedule: &str) -> Result<(), String> {
    let fields = schedule.split_whitespace().count();
    if !schedule.trim_start().starts_with('@') && fields != 5 {
        return Err(format!("expected 5 fields, found {fields}"));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(schedule)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks one function and returns every problem found (empty when valid).
pub fn validate_function(function: &FunctionDef) -> Vec<FunctionError> {
    let mut errors = Vec::new();
    if !is_valid_id(&function.id) {
        errors.push(FunctionError::new(
            path!["id"],
            FunctionErrorKind::InvalidId {
                what: "function",
                id: function.id.clone(),
            },
        ));
    }
    if function.triggers.is_empty() {
        errors.push(FunctionError::new(
            path!["triggers"],
            FunctionErrorKind::NoTriggers {
                function: function.id.clone(),
            },
        ));
    }
    for (i, trigger) in function.triggers.iter().enumerate() {
        let at = path!["triggers", i];
        match trigger {
            Trigger::Event { event, expression } => {
                check_event_name(event, at.join("event"), &mut errors);
                if let Some(expr) = expression {
                    cel_error(expr, at.join("if"), &mut errors);
                }
            }
            Trigger::Cron { cron } => {
                if let Err(message) = check_cron(cron) {
                    errors.push(FunctionError::new(
                        at.join("cron"),
                        FunctionErrorKind::InvalidCron {
                            cron: cron.clone(),
                            message,
                        },
                    ));
                }
            }
        }
    }
    if let Some(retries) = &function.retries {
        check_retries(retries, path!["retries"], &mut errors);
    }
    if let Some(concurrency) = &function.concurrency {
        if concurrency.limit == 0 {
            errors.push(FunctionError::new(
                path!["concurrency", "limit"],
                FunctionErrorKind::ZeroConcurrency,
            ));
        }
        if let Some(key) = &concurrency.key {
            cel_error(key, path!["concurrency", "key"], &mut errors);
        }
    }
    if let Some(key) = &function.idempotency {
        cel_error(key, path!["idempotency"], &mut errors);
    }
    if let Some(timeouts) = &function.timeouts {
        for (name, value, what) in [
            ("start", timeouts.start, "timeouts.start"),
            ("finish", timeouts.finish, "timeouts.finish"),
        ] {
            if value.is_some_and(|d| d.std().is_zero()) {
                errors.push(FunctionError::new(
                    path!["timeouts", name],
                    FunctionErrorKind::ZeroDuration { what },
                ));
            }
        }
    }
    if let Some(rate) = &function.rate_limit {
        check_rule(
            &mut errors,
            "rate_limit",
            (rate.limit, &rate.period, rate.key.as_deref()),
            SECOND..=DAY,
            FunctionErrorKind::ZeroRateLimit,
            |period| FunctionErrorKind::RateLimitPeriod { period },
        );
    }
    if let Some(throttle) = &function.throttle {
        check_rule(
            &mut errors,
            "throttle",
            (throttle.limit, &throttle.period, throttle.key.as_deref()),
            SECOND..=WEEK,
            FunctionErrorKind::ZeroThrottle,
            |period| FunctionErrorKind::ThrottlePeriod { period },
        );
    }
    if let Some(debounce) = &function.debounce {
        let period = debounce.period.std();
        if !(std::time::Duration::from_millis(100)..=WEEK).contains(&period) {
            errors.push(FunctionError::new(
                path!["debounce", "period"],
                FunctionErrorKind::DebouncePeriod {
                    period: debounce.period.to_string(),
                },
            ));
        }
        if let Some(timeout) = debounce.timeout
            && !(period..=WEEK).contains(&timeout.std())
        {
            errors.push(FunctionError::new(
                path!["debounce", "timeout"],
                FunctionErrorKind::DebounceTimeout {
                    timeout: timeout.to_string(),
                    period: debounce.period.to_string(),
                },
            ));
        }
        if let Some(key) = &debounce.key {
            cel_error(key, path!["debounce", "key"], &mut errors);
        }
    }
    if let Some(batch) = &function.batch_events {
        if !(1..=BATCH_MAX_SIZE).contains(&batch.max_size) {
            errors.push(FunctionError::new(
                path!["batch_events", "max_size"],
                FunctionErrorKind::BatchSize {
                    max_size: batch.max_size,
                },
            ));
        }
        if !(SECOND..=HOUR).contains(&batch.timeout.std()) {
            errors.push(FunctionError::new(
                path!["batch_events", "timeout"],
                FunctionErrorKind::BatchTimeout {
                    timeout: batch.timeout.to_string(),
                },
            ));
        }
        if let Some(key) = &batch.key {
            cel_error(key, path!["batch_events", "key"], &mut errors);
        }
        if function.debounce.is_some() {
            errors.push(FunctionError::new(
                path!["batch_events"],
                FunctionErrorKind::BatchWith {
                    other: "debounce",
                    why: "a debounce keeps only the last event of a burst, a batch keeps them all",
                },
            ));
        }
        if !function.cancel_on.is_empty() {
            errors.push(FunctionError::new(
                path!["batch_events"],
                FunctionErrorKind::BatchWith {
                    other: "cancel_on",
                    why: "a batch's run has many events, and a cancelling event could match any of \
                          them or none (as in Inngest, batching and cancellation do not mix)",
                },
            ));
        }
    }
    if let Some(priority) = &function.priority {
        cel_error(&priority.run, path!["priority", "run"], &mut errors);
        // The engine reorders nothing else: its queues (SQS among them)
        // deliver in their own order, and only a full concurrency key
        // makes steps wait where they can be ranked.
        if function.concurrency.is_none() {
            errors.push(FunctionError::new(
                path!["priority"],
                FunctionErrorKind::PriorityWithoutConcurrency,
            ));
        }
    }
    for (i, cancel) in function.cancel_on.iter().enumerate() {
        check_event_name(&cancel.event, path!["cancel_on", i, "event"], &mut errors);
        if let Some(m) = &cancel.matches {
            cel_error(m, path!["cancel_on", i, "match"], &mut errors);
        }
    }
    if function.steps.is_empty() {
        errors.push(FunctionError::new(
            path!["steps"],
            FunctionErrorKind::NoSteps {
                function: function.id.clone(),
            },
        ));
    }
    check_steps(&function.steps, &mut errors);
    errors
}

fn check_event_name(name: &str, at: Path, errors: &mut Vec<FunctionError>) {
    if name.trim().is_empty() {
        errors.push(FunctionError::new(at, FunctionErrorKind::EmptyEventName));
    }
}

/// Checks a `{limit, period, key}` rule at `field`: a zero limit (`zero`),
/// a period outside `periods` (`out_of_range` with the period as written)
/// and a key that is not CEL.
fn check_rule(
    errors: &mut Vec<FunctionError>,
    field: &'static str,
    (limit, period, key): (u32, &super::Duration, Option<&str>),
    periods: std::ops::RangeInclusive<std::time::Duration>,
    zero: FunctionErrorKind,
    out_of_range: impl FnOnce(String) -> FunctionErrorKind,
) {
    if limit == 0 {
        errors.push(FunctionError::new(path![field, "limit"], zero));
    }
    if !periods.contains(&period.std()) {
        errors.push(FunctionError::new(
            path![field, "period"],
            out_of_range(period.to_string()),
        ));
    }
    if let Some(key) = key {
        cel_error(key, path![field, "key"], errors);
    }
}

fn cel_error(expression: &str, at: Path, errors: &mut Vec<FunctionError>) {
    if let Err(message) = check_cel(expression) {
        errors.push(FunctionError::new(
            at,
            FunctionErrorKind::InvalidCel {
                expression: expression.to_string(),
                message,
            },
        ));
    }
}

fn check_retries(retries: &Retries, at: Path, errors: &mut Vec<FunctionError>) {
    if retries.backoff > retries.max_backoff {
        errors.push(FunctionError::new(
            at.join("backoff"),
            FunctionErrorKind::BackoffAboveMax {
                backoff: retries.backoff.to_string(),
                max_backoff: retries.max_backoff.to_string(),
            },
        ));
    }
}

fn check_steps(steps: &[Step], errors: &mut Vec<FunctionError>) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let at = path!["steps", i];
        if !is_valid_id(&step.id) {
            errors.push(FunctionError::new(
                at.join("id"),
                FunctionErrorKind::InvalidId {
                    what: "step",
                    id: step.id.clone(),
                },
            ));
        }
        if let Some(&first) = first_index.get(step.id.as_str()) {
            errors.push(FunctionError::new(
                at.join("id"),
                FunctionErrorKind::DuplicateStep {
                    id: step.id.clone(),
                    first,
                },
            ));
        } else {
            first_index.insert(&step.id, i);
        }
        check_action(step, &at, errors);
        if let Some(condition) = &step.condition {
            cel_error(condition, at.join("if"), errors);
        }
        if let Some(retries) = &step.retries {
            check_retries(retries, at.join("retries"), errors);
        }
        if let Some(wait) = &step.wait_for_event {
            check_event_name(&wait.event, at.join("wait_for_event").join("event"), errors);
            if let Some(m) = &wait.matches {
                cel_error(m, at.join("wait_for_event").join("match"), errors);
            }
            if wait.timeout.std().is_zero() {
                errors.push(FunctionError::new(
                    at.join("wait_for_event").join("timeout"),
                    FunctionErrorKind::ZeroDuration {
                        what: "wait_for_event timeout",
                    },
                ));
            }
        }
        if step.sleep.is_some_and(|d| d.std().is_zero()) {
            errors.push(FunctionError::new(
                at.join("sleep"),
                FunctionErrorKind::ZeroDuration { what: "sleep" },
            ));
        }
        for (j, dep) in step.after.iter().enumerate() {
            if !steps.iter().any(|s| &s.id == dep) {
                errors.push(FunctionError::new(
                    at.join("after").join(j),
                    FunctionErrorKind::UnknownAfter {
                        step: step.id.clone(),
                        missing: dep.clone(),
                        suggestion: closest(dep, steps.iter().map(|s| s.id.as_str())),
                    },
                ));
            }
        }
    }
    if let Some((index, cycle)) = find_cycle(steps) {
        errors.push(FunctionError::new(
            path!["steps", index, "after"],
            FunctionErrorKind::Cycle { cycle },
        ));
    }
}

fn check_action(step: &Step, at: &Path, errors: &mut Vec<FunctionError>) {
    let set = [
        step.http.is_some(),
        step.docker.is_some(),
        step.sleep.is_some(),
        step.wait_for_event.is_some(),
    ];
    let keys: Vec<&'static str> = ACTION_KEYS
        .iter()
        .zip(set)
        .filter_map(|(k, on)| on.then_some(*k))
        .collect();
    match keys.len() {
        0 => errors.push(FunctionError::new(
            at.clone(),
            FunctionErrorKind::NoAction {
                step: step.id.clone(),
            },
        )),
        1 => {}
        _ => errors.push(FunctionError::new(
            at.join(keys[1]),
            FunctionErrorKind::SeveralActions {
                step: step.id.clone(),
                keys,
            },
        )),
    }
}

/// The existing name closest to `wanted`, when it is close enough to be a
/// likely typo.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Finds one cycle of `after` edges, returning the index of the step where
/// it was closed and the ids along it (first repeated at the end). Steps are
/// visited in order, so the same spec always reports the same cycle.
fn find_cycle(steps: &[Step]) -> Option<(usize, Vec<String>)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .rev()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; steps.len()];
    for start in 0..steps.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS over "runs after" edges: stack of (step, next edge).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Open;
        while let Some((node, edge)) = stack.last().copied() {
            let Some(dep) = steps[node].after.get(edge) else {
                marks[node] = Mark::Done;
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let Some(&next) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[next] {
                Mark::Open => {
                    let from = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    // Shown in execution order: a step, then the steps that wait for it.
                    let mut cycle = vec![steps[next].id.clone()];
                    cycle.extend(
                        stack[from + 1..]
                            .iter()
                            .rev()
                            .map(|(n, _)| steps[*n].id.clone()),
                    );
                    cycle.push(steps[next].id.clone());
                    return Some((node, cycle));
                }
                Mark::New => {
                    marks[next] = Mark::Open;
                    stack.push((next, 0));
                }
                Mark::Done => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(yaml_steps: serde_json::Value) -> FunctionDef {
        serde_json::from_value(serde_json::json!({
            "id": "f",
            "triggers": [{"event": "user/signup"}],
            "steps": yaml_steps,
        }))
        .unwrap()
    }

    fn kinds(f: &FunctionDef) -> Vec<(String, FunctionErrorKind)> {
        validate_function(f)
            .into_iter()
            .map(|e| (e.path.to_string(), e.kind))
            .collect()
    }

    #[test]
    fn valid_function_has_no_errors() {
        let f = function(serde_json::json!([
            {"id": "a", "http": {"url": "http://127.0.0.1:1/a"}},
            {"id": "b", "after": ["a"], "if": "steps.a.ok == true", "sleep": "1m"},
            {"id": "c", "after": ["a", "b"], "wait_for_event": {"event": "x", "match": "async.data.id == event.data.id", "timeout": "1d"}},
        ]));
        assert_eq!(kinds(&f), vec![]);
    }

    #[test]
    fn unknown_after_suggests_closest_step() {
        let f = function(serde_json::json!([
            {"id": "charge", "sleep": "1s"},
            {"id": "notify", "after": ["chrage"], "sleep": "1s"},
        ]));
        let errors = kinds(&f);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "steps[1].after[0]");
        assert!(matches!(
            &errors[0].1,
            FunctionErrorKind::UnknownAfter { suggestion: Some(s), .. } if s == "charge"
        ));
    }

    #[test]
    fn cycle_is_named_in_order() {
        let f = function(serde_json::json!([
            {"id": "a", "after": ["c"], "sleep": "1s"},
            {"id": "b", "after": ["a"], "sleep": "1s"},
            {"id": "c", "after": ["b"], "sleep": "1s"},
        ]));
        let errors = kinds(&f);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let FunctionErrorKind::Cycle { cycle } = &errors[0].1 else {
            panic!("expected a cycle, got {errors:?}");
        };
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        let msg = errors[0].1.to_string();
        assert!(msg.contains("a -> b -> c -> a"), "{msg}");
    }

    #[test]
    fn self_edge_is_a_cycle() {
        let f = function(serde_json::json!([{"id": "a", "after": ["a"], "sleep": "1s"}]));
        let errors = kinds(&f);
        assert!(
            matches!(&errors[..], [(p, FunctionErrorKind::Cycle { cycle })] if p == "steps[0].after" && cycle == &["a", "a"]),
            "{errors:?}"
        );
    }

    #[test]
    fn action_count_and_duplicates() {
        let f = function(serde_json::json!([
            {"id": "a"},
            {"id": "a", "sleep": "1s", "http": {"url": "http://127.0.0.1:1"}},
        ]));
        let errors = kinds(&f);
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["steps[0]", "steps[1].id", "steps[1].sleep"]);
        assert!(
            matches!(errors[2].1, FunctionErrorKind::SeveralActions { ref keys, .. } if keys == &["http", "sleep"])
        );
    }

    #[test]
    fn cel_and_cron_errors_carry_the_parser_message() {
        let f: FunctionDef = serde_json::from_value(serde_json::json!({
            "id": "f",
            "triggers": [{"event": "a", "if": "event.data.x =="}, {"cron": "61 * * * *"}, {"cron": "* * *"}],
            "concurrency": {"limit": 0, "key": "event.data.("},
            "idempotency": "event.data.order ==",
            "rate_limit": {"limit": 0, "period": "2d", "key": "event.("},
            "timeouts": {"start": "0s", "finish": "1h"},
            "throttle": {"limit": 0, "period": "8d", "key": "event.("},
            "debounce": {"period": "50ms", "key": "event.(", "timeout": "10ms"},
            "steps": [{"id": "s", "sleep": "1s"}],
        }))
        .unwrap();
        let errors = kinds(&f);
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "triggers[0].if",
                "triggers[1].cron",
                "triggers[2].cron",
                "concurrency.limit",
                "concurrency.key",
                "idempotency",
                "timeouts.start",
                "rate_limit.limit",
                "rate_limit.period",
                "rate_limit.key",
                "throttle.limit",
                "throttle.period",
                "throttle.key",
                "debounce.period",
                "debounce.timeout",
                "debounce.key"
            ]
        );
        assert!(
            matches!(&errors[2].1, FunctionErrorKind::InvalidCron { message, .. } if message == "expected 5 fields, found 3")
        );
        assert!(check_cel("event.data.plan == \"pro\" && size(event.data.items) > 0").is_ok());
        assert!(check_cron("*/5 * * * MON-FRI").is_ok());
    }

    #[test]
    fn batch_events_are_checked_at_their_place() {
        let f: FunctionDef = serde_json::from_value(serde_json::json!({
            "id": "f",
            "triggers": [{"event": "a"}],
            "batch_events": {"max_size": 0, "timeout": "2h", "key": "event.("},
            "debounce": {"period": "1s"},
            "cancel_on": [{"event": "b"}],
            "steps": [{"id": "s", "sleep": "1s"}],
        }))
        .unwrap();
        let errors = kinds(&f);
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "batch_events.max_size",
                "batch_events.timeout",
                "batch_events.key",
                "batch_events",
                "batch_events"
            ]
        );
        let message = errors[4].1.to_string();
        assert!(message.contains("cancel_on"), "{message}");
        for (size, timeout, ok) in [
            (101, "5s", false),
            (100, "1s", true),
            (1, "1h", true),
            (10, "500ms", false),
        ] {
            let f: FunctionDef = serde_json::from_value(serde_json::json!({
                "id": "f",
                "triggers": [{"event": "a"}],
                "batch_events": {"max_size": size, "timeout": timeout},
                "steps": [{"id": "s", "sleep": "1s"}],
            }))
            .unwrap();
            assert_eq!(
                kinds(&f).is_empty(),
                ok,
                "{size} {timeout}: {:?}",
                kinds(&f)
            );
        }
    }

    #[test]
    fn priority_needs_concurrency_and_valid_cel() {
        let f: FunctionDef = serde_json::from_value(serde_json::json!({
            "id": "f",
            "triggers": [{"event": "a"}],
            "priority": {"run": "event.data.("},
            "steps": [{"id": "s", "sleep": "1s"}],
        }))
        .unwrap();
        let errors = validate_function(&f);
        let paths: Vec<String> = errors.iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, ["priority.run", "priority"]);
        assert!(
            errors[1].help().contains("concurrency: {limit: N}"),
            "{}",
            errors[1].help()
        );
        let mut ok = f.clone();
        ok.priority = Some(crate::functions::Priority {
            run: "event.data.vip ? 60 : 0".into(),
        });
        ok.concurrency = Some(crate::functions::Concurrency {
            limit: 1,
            key: None,
        });
        assert!(validate_function(&ok).is_empty(), "{:?}", kinds(&ok));
    }

    #[test]
    fn ids_follow_the_rules() {
        for ok in ["a", "send-welcome", "step2"] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in ["", "A", "2nd", "with space", "under_score"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
