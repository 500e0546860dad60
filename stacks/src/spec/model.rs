//! The stack spec as serde types: the single source of the spec's shape.
//! Unknown fields are rejected everywhere; the JSON Schema printed by
//! `stackctl schema` is generated from these types.

use std::collections::BTreeMap;

use engine::functions::{Duration, FunctionDef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole stack: everything `stackctl up` creates and runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The stack's name: 1-20 characters, lowercase letters, digits and `-`,
    /// starting with a letter. Every resource name is derived from it.
    pub stack: String,
    /// Where the stack runs.
    pub provider: Provider,
    /// AWS region (aws only); without it the AWS config's region is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Tags added to every resource, next to `stackctl:stack` and
    /// `stackctl:resource`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The engine image.
    #[serde(default)]
    pub image: Image,
    /// Networking (aws).
    #[serde(default)]
    pub network: Network,
    /// The event API and the runner.
    pub services: Services,
    /// The executors.
    pub executors: Executors,
    /// The event stream and the work queue.
    #[serde(default)]
    pub queues: Queues,
    /// Where runs, step outputs, waits and the function registry live.
    #[serde(default)]
    pub state: State,
    /// Event keys accepted by the event API, by name: `POST /e/{key}`.
    pub event_keys: BTreeMap<String, String>,
    /// Bearer token of the runs API (status, verification, cancel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<String>,
    /// Functions: inline definitions and files matched by globs.
    #[serde(default)]
    pub functions: Functions,
    /// CloudWatch log settings (aws).
    #[serde(default)]
    pub logs: Logs,
    /// How long `up`, `scale` and `down` wait for each kind of resource.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Local provider settings.
    #[serde(default)]
    pub local: Local,
    /// Traces and alarms (aws). Without it the stack has neither: no
    /// collector, no X-Ray permissions, no alarm beyond the dead-letter
    /// queues' (which then notify nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
}

/// Where a stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// ECS, EC2 Auto Scaling, SQS and ElastiCache in the default VPC.
    Aws,
    /// Processes on this machine on the embedded durable store.
    Local,
}

impl Provider {
    /// The name as written in a spec: `aws` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Local => "local",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine image: built from this workspace (default) or a prebuilt URI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// A prebuilt image, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/engine@sha256:...`.
    /// Without it `up` builds the engine image and pushes it to the stack's ECR repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The CPU architecture of the prebuilt image: `x86_64` (the default) or `arm64`. The task
    /// definitions and the executors' AMI follow it, and `executors.instance_type` must run it
    /// (a Graviton type such as `t4g.medium` for arm64). An image `up` builds has its engine
    /// binary's architecture; set here, the binary must match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<crate::arch::Architecture>,
}

/// Networking. The stack is built in the default VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Only `default` (the region's default VPC) is supported.
    #[serde(default = "default_vpc")]
    pub vpc: String,
    /// How clients reach the event API.
    #[serde(default)]
    pub event_api: Connection,
    /// CIDR blocks allowed to reach a `public` event API. Default: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
    /// HTTPS for a `public` event API: its load balancer listens on port 443
    /// with this ACM certificate. Required for `public` unless `plain_http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<Https>,
    /// Publish a `public` event API over plain HTTP on port 80 instead of
    /// HTTPS: event keys and payloads cross the internet unencrypted. Only
    /// for trials; default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
    /// What a `public` or `vpc_link` event API publishes: `events` (the
    /// default: `/e/*` and `/health`) or `all` (also the runs API under
    /// `/v1`, behind its token, and `/metrics`).
    #[serde(default)]
    pub publish: Publish,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            vpc: default_vpc(),
            event_api: Connection::default(),
            allowed_cidrs: Vec::new(),
            https: None,
            plain_http: false,
            publish: Publish::default(),
        }
    }
}

/// The certificate of a `public` event API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Https {
    /// An issued ACM certificate in the stack's region that covers `domain`
    /// (`arn:aws:acm:REGION:ACCOUNT:certificate/ID`).
    pub certificate_arn: String,
    /// The name clients use for the event API. Its DNS record (a CNAME or
    /// alias to the load balancer, which `up` prints) is yours to make; the
    /// canary checks the certificate against this name.
    pub domain: String,
}

/// What a load-balanced event API publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Publish {
    /// `/e/*` (sending events) and `/health`; everything else answers 404.
    #[default]
    Events,
    /// Every path: also the runs API (`/v1`, behind its token) and `/metrics`.
    All,
}

impl Publish {
    /// The request paths published (ELB path patterns), or none for all.
    pub fn paths(self) -> &'static [&'static str] {
        match self {
            Self::Events => &["/e/*", "/health", "/health/*"],
            Self::All => &[],
        }
    }
}

fn default_vpc() -> String {
    "default".into()
}

/// How the event API is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// No ingress at all.
    Internal,
    /// Over HTTP by an internal DNS name (Cloud Map) inside the VPC.
    #[default]
    InternalDns,
    /// Published through an API Gateway VPC link (network load balancer).
    VpcLink,
    /// Behind a public application load balancer.
    Public,
}

/// The two ECS services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The HTTP event API.
    #[serde(rename = "event-api")]
    pub event_api: Service,
    /// The runner: consumes events, creates runs, schedules steps.
    pub runner: Service,
}

/// One service: its size, count and scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Tasks (aws) or processes (local) to run.
    pub count: u32,
    /// Fargate CPU units: 256, 512, 1024, 2048, 4096, 8192 or 16384. On AWS
    /// the engine runs one worker thread per whole vCPU, at least one.
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    /// Fargate memory in MiB; must be a pair AWS accepts for `cpu`.
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// Port the service listens on. Default 8288 (event API), 8289 (runner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Auto-scaling; without it the count is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

fn default_cpu() -> u32 {
    512
}
fn default_memory() -> u32 {
    1024
}

/// The executors: an EC2 Auto Scaling Group (aws) or processes (local).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Executors {
    /// EC2 instance type, e.g. `t3.medium`.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Auto Scaling Group minimum.
    pub min: u32,
    /// Auto Scaling Group desired capacity (process count locally).
    pub desired: u32,
    /// Auto Scaling Group maximum.
    pub max: u32,
    /// Step drivers the executors offer.
    #[serde(default = "default_drivers")]
    pub drivers: Vec<Driver>,
    /// Step jobs one executor runs at once.
    #[serde(default = "default_executor_concurrency")]
    pub concurrency: u32,
    /// Auto-scaling of the group; without it the group stays at `desired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

fn default_instance_type() -> String {
    "t3.medium".into()
}
fn default_drivers() -> Vec<Driver> {
    vec![Driver::Http, Driver::Docker]
}
fn default_executor_concurrency() -> u32 {
    16
}

/// A step driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// POST to a URL.
    Http,
    /// Run a container through the host's Docker engine.
    Docker,
}

/// An auto-scaling strategy; each has a maximum count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scaling {
    /// Scale out above a CPU % threshold, in below a lower one.
    Cpu {
        /// Lower bound; default the service's count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u32>,
        /// Upper bound.
        max: u32,
        /// When to add capacity (threshold in CPU %).
        scale_out: Step,
        /// When to remove capacity (threshold in CPU %, below `scale_out`'s).
        scale_in: Step,
    },
    /// Scale by the average number of visible messages in a queue.
    Sqs {
        /// Lower bound; default the service's count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u32>,
        /// Upper bound.
        max: u32,
        /// The queue whose depth drives scaling: `events` or `work`.
        queue: String,
        /// When to add capacity (threshold in visible messages).
        scale_out: Step,
        /// When to remove capacity (threshold below `scale_out`'s).
        scale_in: Step,
    },
    /// Target tracking on load-balancer requests per task (AWS picks the step).
    Alb {
        /// Lower bound; default the service's count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u32>,
        /// Upper bound.
        max: u32,
        /// Requests per task per minute to hold.
        target_requests: u32,
        /// Wait after scaling out.
        #[serde(default = "default_out_cooldown")]
        scale_out_cooldown: Duration,
        /// Wait after scaling in.
        #[serde(default = "default_in_cooldown")]
        scale_in_cooldown: Duration,
    },
}

fn default_out_cooldown() -> Duration {
    Duration::from_secs(60)
}
fn default_in_cooldown() -> Duration {
    Duration::from_secs(300)
}

/// One side of a step-scaling strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Metric value that triggers this side.
    pub threshold: f64,
    /// Tasks/instances to add (positive, scale-out) or remove (negative, scale-in).
    pub adjustment: i32,
    /// Wait after an adjustment before the next one.
    pub cooldown: Duration,
}

/// The two queues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Queues {
    /// Which queue backend the engine uses. Default: `sqs` on aws,
    /// `embedded` locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<QueueBackend>,
    /// Events from the event API to the runner.
    #[serde(default)]
    pub events: Queue,
    /// Step jobs from the runner to the executors.
    #[serde(default)]
    pub work: Queue,
}

impl Queues {
    /// The queue names a scaling strategy may refer to.
    pub const NAMES: [&'static str; 2] = ["events", "work"];
}

/// Queue backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueBackend {
    /// The engine's embedded durable queue.
    Embedded,
    /// Amazon SQS (endpoint from `AWS_ENDPOINT_URL` when set).
    Sqs,
}

/// One queue with its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// How long an unconsumed message is kept (SQS: 1m to 14d).
    #[serde(default = "default_retention")]
    pub retention: Duration,
    /// How long a received message stays invisible to other consumers (SQS: up to 12h).
    #[serde(default = "default_visibility")]
    pub visibility_timeout: Duration,
    /// Receives before a message moves to the dead-letter queue (1-1000).
    #[serde(default = "default_max_receives")]
    pub max_receives: u32,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            retention: default_retention(),
            visibility_timeout: default_visibility(),
            max_receives: default_max_receives(),
        }
    }
}

fn default_retention() -> Duration {
    Duration::from_secs(4 * 86_400)
}
fn default_visibility() -> Duration {
    Duration::from_secs(30)
}
fn default_max_receives() -> u32 {
    5
}

/// Where the engine keeps its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// An existing Redis, `redis://` or `rediss://` (local provider). Without
    /// it a local stack uses the embedded store and an AWS stack ElastiCache
    /// (or MemoryDB with `memorydb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long a run (with its steps and outputs) is kept after it ended;
    /// older ones are deleted, so the state store does not fill up.
    #[serde(default = "default_run_retention")]
    pub run_retention: Duration,
    /// ElastiCache Redis (aws).
    #[serde(default)]
    pub redis: Redis,
    /// MemoryDB (aws) instead of ElastiCache: every write is in a Multi-AZ
    /// transaction log before it is acknowledged, so a node loss loses
    /// nothing acknowledged. Not together with `redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memorydb: Option<MemoryDb>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            url: None,
            run_retention: default_run_retention(),
            redis: Redis::default(),
            memorydb: None,
        }
    }
}

/// MemoryDB settings: one shard (the engine keeps every key in one hash
/// slot), TLS, and a user of its own with a generated password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryDb {
    /// Node type, e.g. `db.t4g.small`.
    #[serde(default = "default_memorydb_node_type")]
    pub node_type: String,
    /// Replicas next to the primary (0-5), in other Availability Zones;
    /// a primary's loss fails over to one. Default 1.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Days of daily snapshots MemoryDB keeps (0-35; 0: none). Default 1.
    #[serde(default = "default_snapshot_days")]
    pub snapshot_retention_days: u32,
}

impl Default for MemoryDb {
    fn default() -> Self {
        Self {
            node_type: default_memorydb_node_type(),
            replicas: default_replicas(),
            snapshot_retention_days: default_snapshot_days(),
        }
    }
}

fn default_memorydb_node_type() -> String {
    "db.t4g.small".into()
}

fn default_run_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}

/// ElastiCache Redis settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// Node type, e.g. `cache.t4g.small`.
    #[serde(default = "default_node_type")]
    pub node_type: String,
    /// Read replicas next to the primary (0-5); one or more enables
    /// automatic failover and Multi-AZ, so a node loss loses no run.
    /// Default 1.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Days of daily snapshots ElastiCache keeps (0-35; 0: none). Default 1.
    #[serde(default = "default_snapshot_days")]
    pub snapshot_retention_days: u32,
    /// Require an auth token (generated and kept in Secrets Manager-free task env).
    #[serde(default = "yes")]
    pub auth: bool,
    /// TLS between the engine and Redis (required when `auth` is on).
    #[serde(default = "yes")]
    pub transit_encryption: bool,
}

impl Default for Redis {
    fn default() -> Self {
        Self {
            node_type: default_node_type(),
            replicas: default_replicas(),
            snapshot_retention_days: default_snapshot_days(),
            auth: true,
            transit_encryption: true,
        }
    }
}

fn default_replicas() -> u32 {
    1
}
fn default_snapshot_days() -> u32 {
    1
}
fn default_node_type() -> String {
    "cache.t4g.small".into()
}
fn yes() -> bool {
    true
}

/// Functions of the stack, registered by `up`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Functions {
    /// Globs relative to the spec file, e.g. `functions/*.yaml`; each file
    /// holds one function or a list of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Functions written in the spec itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<FunctionDef>,
}

/// CloudWatch Logs settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// Days to keep logs; one of the values CloudWatch accepts (1, 3, 5, 7, 14, 30, ...).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

impl Default for Logs {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
        }
    }
}

fn default_retention_days() -> u32 {
    14
}

/// Upper bounds on waits; each can be overridden by a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Services stable on their new task definition.
    #[serde(default = "default_services_timeout")]
    pub services: Duration,
    /// Executors InService.
    #[serde(default = "default_executors_timeout")]
    pub executors: Duration,
    /// Redis available (ElastiCache takes 5-15 minutes).
    #[serde(default = "default_redis_timeout")]
    pub redis: Duration,
    /// The canary event's run completed.
    #[serde(default = "default_canary_timeout")]
    pub canary: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            services: default_services_timeout(),
            executors: default_executors_timeout(),
            redis: default_redis_timeout(),
            canary: default_canary_timeout(),
        }
    }
}

fn default_services_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_executors_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_canary_timeout() -> Duration {
    Duration::from_secs(120)
}

/// Settings of the local provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Local {
    /// Where pids, ports, logs and the embedded store live, relative to the
    /// spec file. Default `.stackctl/<stack>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

/// Traces and alarms of an AWS stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    /// Where the engine's traces go: `none` (the default) or `xray`: an AWS
    /// Distro for OpenTelemetry collector next to every engine container
    /// (a sidecar in the event-API and runner tasks, a container on each
    /// executor host) receives them over OTLP and sends them to AWS X-Ray.
    /// Ignored, with a warning, by `provider: local`, which has no X-Ray:
    /// there the engine reads the standard `OTEL_*` variables instead.
    #[serde(default)]
    pub traces: Traces,
    /// The fraction of new traces recorded (0 to 1), e.g. `0.05` for 5 %;
    /// a trace started upstream keeps its own decision. Default 0.05.
    #[serde(default = "default_sample")]
    pub sample: f64,
    /// CloudWatch alarms on what needs a person: a dead-letter queue that
    /// is not empty, the event API answering 5xx, events waiting too long.
    /// Without it only the dead-letter queues have alarms, with no action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<Alarms>,
}

/// Where traces go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Traces {
    /// No traces leave the engine.
    #[default]
    None,
    /// AWS X-Ray, through an AWS Distro for OpenTelemetry collector.
    Xray,
}

fn default_sample() -> f64 {
    0.05
}

/// The stack's alarms and whom they notify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    /// An existing SNS topic the alarms notify
    /// (`arn:aws:sns:REGION:ACCOUNT:NAME`, in the stack's region). Not
    /// together with `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    /// Addresses the stack's own topic (`{stack}-alarms`) sends alarms to;
    /// each gets a message from AWS to confirm first. With neither this
    /// nor `topic_arn` the alarms notify nobody (their state shows in the
    /// CloudWatch console).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    /// Alarm when the oldest event waiting for the runner is older than
    /// this (1m or more, below `queues.events.retention`). Default 5m.
    #[serde(default = "default_queue_age")]
    pub queue_age: Duration,
    /// Alarm when the event API answers this many 5xx responses a minute,
    /// three minutes in a row (only where a load balancer or API Gateway
    /// fronts it: `public` and `vpc_link`). Default 5.
    #[serde(default = "default_api_errors")]
    pub api_errors_per_minute: u32,
}

fn default_queue_age() -> Duration {
    Duration::from_secs(300)
}
fn default_api_errors() -> u32 {
    5
}
