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
//! - [`secrets`]: the stack's secrets in SSM (from the spec or generated);
//! - [`lock`]: the stack lock (an SSM parameter lease);
//! - [`destroy`]: `down`, deleting in reverse dependency order with retries;
//! - [`sweep`]: what is left of a stack after `down`, listed by tag and name;
//! - [`scale`]: the `scale` command's changes (counts and bounds);
//! - [`logs`](mod@logs): reading and following CloudWatch Logs;
//! - [`wait`]: bounded waits for services, executors and Redis, and
//!   their live state;
//! - [`canary`]: the end-to-end check, run as a one-off task in the VPC;
//! - [`ops`]: the operations the CLI calls (`down`, `scale`, and what they
//!   share with [`up`](mod@up): build, plan, lock, apply, wait, verify).
//!
//! Waiting for services, `down`, `status`, `scale` and `logs` build on
//! these (issue 3, part 2).

pub mod apply;
pub mod canary;
pub mod context;
pub mod destroy;
pub mod error;
pub mod kinds;
pub mod lock;
pub mod logs;
pub mod ops;
pub mod plan;
pub mod publish;
pub mod resolve;
pub mod rollout;
pub mod scale;
pub mod secrets;
pub mod sweep;
pub mod task;
pub mod up;
pub mod wait;

pub use apply::{ApplyOptions, ApplyReport, apply};
pub use context::{Aws, CallCounts, Env};
pub use destroy::{DownOptions, DownReport, down};
pub use error::{AwsError, Class, Subject};
pub use kinds::Observed;
pub use kinds::apigateway::rest_api_invoke_url;
pub use lock::{ForceUnlock, LockInfo, StackLock};
pub use plan::{AwsPlan, plan};
pub use publish::{EngineImage, EngineSource};
pub use resolve::{Inputs, Outputs, UNKNOWN};

use std::collections::BTreeMap;

use crate::graph::{Attributes, Graph, LogicalId};

/// A resource's non-empty output, when known.
pub(crate) fn output_value(
    outputs: &BTreeMap<LogicalId, Outputs>,
    id: &str,
    name: &str,
) -> Option<String> {
    outputs
        .get(&LogicalId::new(id))
        .and_then(|o| o.get(name))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// The event API's address from the resources' outputs (after `apply`, or
/// as observed): the API Gateway stage's invoke URL (`vpc_link`), the
/// internet-facing load balancer (`public`); `None` for the other
/// connection types, or while the resource does not exist.
pub fn event_api_url(graph: &Graph, outputs: &BTreeMap<LogicalId, Outputs>) -> Option<String> {
    let output = |id: &str, name: &str| output_value(outputs, id, name);
    if graph.get(&LogicalId::new("apigateway.rest-api")).is_some() {
        return output("apigateway.rest-api", "invoke_url");
    }
    let lb = graph.get(&LogicalId::new("elb.load-balancer"))?;
    let Attributes::LoadBalancer(attrs) = &lb.attributes else {
        return None;
    };
    if attrs.scheme != "internet-facing" {
        return None;
    }
    let dns = output("elb.load-balancer", "dns_name")?;
    let listener = graph.get(&LogicalId::new("elb.listener"));
    Some(match listener.map(|l| &l.attributes) {
        Some(Attributes::Listener(l)) if l.protocol == "HTTPS" => match &graph.event_api_domain {
            Some(domain) => format!("https://{domain}"),
            None => format!("https://{dns}"),
        },
        Some(Attributes::Listener(l)) if l.port != 80 => format!("http://{dns}:{}", l.port),
        _ => format!("http://{dns}"),
    })
}

/// The load balancer DNS name the domain of an HTTPS `public` event API
/// must point at (its CNAME record, which is the user's to make).
pub fn event_api_dns_target(
    graph: &Graph,
    outputs: &BTreeMap<LogicalId, Outputs>,
) -> Option<String> {
    graph.event_api_domain.as_ref()?;
    output_value(outputs, "elb.load-balancer", "dns_name")
}
