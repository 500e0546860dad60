//! The function format: what a user writes, deserialized strictly (unknown
//! fields are errors) and described by a JSON Schema for editors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// A CEL expression, kept as its source text; parsed when the function is
/// validated or loaded.
pub type Expr = String;

/// A durable function: triggered by events or a schedule, made of steps that
/// form a DAG through `after` edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    /// Unique id within the stack, e.g. `process-signup`. Lowercase letters,
    /// digits and `-`.
    pub id: String,
    /// Human-readable name shown in status output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What starts a run: at least one trigger.
    pub triggers: Vec<Trigger>,
    /// Default retry policy for every step that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Limit of concurrently running steps, optionally per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Cancel a running run when a matching event arrives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel_on: Vec<CancelOn>,
    /// CEL over `event` giving an idempotency key, e.g. `event.data.order_id`:
    /// an event whose key an earlier event of the last 24 hours had starts
    /// no run of this function (other functions it triggers still run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Expr>,
    /// At most `limit` runs start in any `period` (per key); the events over
    /// it start no run: each is recorded as a `skipped` run with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// At most `limit` runs start per `period` (per key), evenly spaced;
    /// the runs over it start later, none is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Only the last event of a quiet `period` (per key) starts a run, with
    /// that event; `timeout` bounds how long a run can be put off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Debounce>,
    /// Events gathered (per key) into one run of up to `max_size` events,
    /// started once the batch is full or `timeout` after its first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_events: Option<BatchEvents>,
    /// How long a run may take to start and to finish; past either it is
    /// cancelled with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Which runs go first when steps wait for a `concurrency` slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The steps; those without `after` start as soon as the run is created.
    pub steps: Vec<Step>,
}

/// One trigger: an event (with an optional CEL filter) or a cron schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Trigger {
    /// Runs when an event with this name arrives and `if` (if any) holds.
    Event {
        /// Event name, e.g. `user/signup`.
        event: String,
        /// CEL over `event`, e.g. `event.data.plan == "pro"`.
        #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
        expression: Option<Expr>,
    },
    /// Runs on a schedule (five-field cron, UTC).
    Cron {
        /// e.g. `*/5 * * * *`.
        cron: String,
    },
}

/// Retry policy of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Attempts after the first one (0 disables retries). Default 3.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First backoff delay, doubled on each retry with jitter. Default `1s`.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// Upper bound on a backoff delay. Default `5m`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

/// At most `limit` steps of this function run at once per value of `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Maximum concurrently running steps (at least 1).
    pub limit: u32,
    /// CEL over `event` giving the partition key, e.g. `event.data.user_id`.
    /// Without it the limit is for the function as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expr>,
}

/// How long a run may take, from its creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Until its first step is picked up: a run held back (e.g. by a
    /// concurrency limit) longer than this is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Duration>,
    /// Until it ends: a run still running after this is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<Duration>,
}

/// A limit on how many runs of a function start in a sliding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Runs that may start in any `period` (at least 1).
    pub limit: u32,
    /// The window, from `1s` to `24h`.
    pub period: Duration,
    /// CEL over `event` giving the key the limit counts by, e.g.
    /// `event.data.user_id`. Without it the limit is for the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expr>,
}

/// A limit on how fast runs of a function start: the runs over it wait
/// for their turn instead of being dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// Runs that may start per `period` (at least 1); they are spaced
    /// `period / limit` apart.
    pub limit: u32,
    /// The period, from `1s` to `7d`.
    pub period: Duration,
    /// Runs that may start at once on top of the first after a quiet
    /// spell, so that at most `limit + burst` start in any `period`.
    /// `0` (the default) spaces every run evenly.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub burst: u32,
    /// CEL over `event` giving the key the limit counts by, e.g.
    /// `event.data.user_id`. Without it the limit is for the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expr>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Waiting for a quiet spell before starting a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Debounce {
    /// How long no further event (of the key) must arrive before the last
    /// one starts a run, from `100ms` to `7d`.
    pub period: Duration,
    /// CEL over `event` giving the key events are debounced by, e.g.
    /// `event.data.account_id`. Without it every event of the function
    /// counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expr>,
    /// The longest a run can be put off after the first event of a burst
    /// (at least `period`, at most `7d`): then it starts with the latest
    /// event even if events keep coming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Gathering events into batches, each starting one run that receives
/// all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEvents {
    /// The most events in one batch (1 to 100): a batch that reaches it
    /// starts its run at once.
    pub max_size: u32,
    /// How long after its first event a batch that is not full starts its
    /// run anyway, from `1s` to `1h`.
    pub timeout: Duration,
    /// CEL over `event` giving the key events are batched by, e.g.
    /// `event.data.account_id`. Without it every event of the function
    /// goes into the same batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Expr>,
}

/// The order in which runs waiting for a concurrency slot get one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Priority {
    /// CEL over `event` giving the run's advantage in seconds, from `-600`
    /// to `600` (values beyond are clamped; one that fails to evaluate
    /// counts as `0`), e.g. `event.data.plan == "pro" ? 60 : 0`: a waiting
    /// step of this run goes before those of runs created up to that many
    /// seconds earlier.
    pub run: Expr,
}

/// Cancels a run when an event of this name matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOn {
    /// Event name.
    pub event: String,
    /// CEL over `event` (the triggering event) and `async` (the new one).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Expr>,
}

/// One step of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the function.
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Steps that must finish (completed or skipped) before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// CEL over `event` and `steps` (outputs by step id); false skips the
    /// step, and a skipped step counts as finished for its successors.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Expr>,
    /// Overrides the function's retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// POST the run context to a URL; a 2xx JSON body is the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStep>,
    /// Run a container on the executor host; stdout JSON is the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerStep>,
    /// Wait for a duration, e.g. `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Duration>,
    /// Wait for a matching event, or time out (output `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_event: Option<WaitForEvent>,
}

/// What a step does. A step sets exactly one of `http`, `docker`, `sleep`
/// and `wait_for_event`; they are separate optional keys (rather than a
/// flattened enum) so that serde and the JSON Schema both reject unknown keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'a> {
    /// The `http` driver.
    Http(&'a HttpStep),
    /// The `docker` driver.
    Docker(&'a DockerStep),
    /// A durable sleep.
    Sleep(Duration),
    /// A wait for a matching event.
    WaitForEvent(&'a WaitForEvent),
}

/// The names of the keys that choose a step's action, for error messages.
pub const ACTION_KEYS: [&str; 4] = ["http", "docker", "sleep", "wait_for_event"];

impl Step {
    /// The step's action, or `None` unless exactly one action key is set
    /// (validation reports which).
    pub fn action(&self) -> Option<Action<'_>> {
        let all = [
            self.http.as_ref().map(Action::Http),
            self.docker.as_ref().map(Action::Docker),
            self.sleep.map(Action::Sleep),
            self.wait_for_event.as_ref().map(Action::WaitForEvent),
        ];
        let mut set = all.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(a), None) => Some(a),
            _ => None,
        }
    }
}

/// The `http` driver's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// Where the run context is POSTed.
    pub url: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// The `docker` driver's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerStep {
    /// Image reference, e.g. `busybox:1.36` or `repo@sha256:...`.
    pub image: String,
    /// Overrides the image's command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// When to pull the image.
    #[serde(default)]
    pub pull: PullPolicy,
    /// CPU limit in cores, e.g. 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Per-attempt timeout; the container is killed after it. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// When the docker driver pulls a step's image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull only when the image is not on the host.
    #[default]
    IfMissing,
    /// Pull before every run.
    Always,
    /// Never pull; a missing image fails the step.
    Never,
}

/// The `wait_for_event` step's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForEvent {
    /// Event name to wait for.
    pub event: String,
    /// CEL over `event` (the run's trigger) and `async` (the candidate).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Expr>,
    /// How long to wait; the step's output is `null` after it.
    pub timeout: Duration,
}
