//! The AWS provider: reads a stack's resources from AWS by their
//! deterministic names (no state file), plans the changes against the
//! desired [`Graph`](crate::graph::Graph), applies them as a dependency
//! graph, and holds the per-stack lock.
//!
//! - [`context`]: the SDK configuration, clients, retry policy, call log
//!   and account facts;
//! - [`error`]: errors with resource, action, AWS code and message;
//! - [`kinds`]: per service, how each kind is read and applied;
//! - [`resolve`]: placeholders and diff normalization;
//! - [`plan`](mod@plan): observation and the diff;
//! - [`apply`](mod@apply): the executor;
//! - [`publish`]: the engine image built from source, pushed by digest;
//! - [`secrets`]: generated secrets in SSM;
//! - [`lock`]: the stack lock (an SSM parameter lease);
//! - [`destroy`]: `down`, deleting in reverse dependency order with retries;
//! - [`sweep`]: what is left of a stack after `down`, listed by tag and name;
//! - [`scale`]: the `scale` command's changes (counts and bounds);
//! - [`logs`](mod@logs): reading and following CloudWatch Logs;
//! - [`wait`]: bounded waits for services, executors and Redis, and
//!   their live state.
//!
//! Waiting for services, `down`, `status`, `scale` and `logs` build on
//! these (issue 3, part 2).

pub mod apply;
pub mod context;
pub mod destroy;
pub mod error;
pub mod kinds;
pub mod lock;
pub mod logs;
pub mod plan;
pub mod publish;
pub mod resolve;
pub mod scale;
pub mod secrets;
pub mod sweep;
pub mod wait;

pub use apply::{ApplyOptions, ApplyReport, apply};
pub use context::{Aws, CallCounts, Env};
pub use destroy::{DownOptions, DownReport, down};
pub use error::{AwsError, Class, Subject};
pub use kinds::Observed;
pub use lock::{LockInfo, StackLock};
pub use plan::{AwsPlan, plan};
pub use publish::{EngineImage, EngineSource};
pub use resolve::{Inputs, Outputs, UNKNOWN};
