//! Checks on the typed spec that the JSON Schema cannot express: AWS limits
//! (Fargate sizes, SQS ranges, CloudWatch retention values), consistency
//! between fields (min <= desired <= max, scale-in below scale-out, an
//! `sqs` strategy naming a real queue) and naming rules; and, as warnings,
//! what is valid but cannot work where the stack runs (an AWS stack's http
//! step aimed at the loopback address). Each problem keeps the path of the
//! value it is about, so it can be placed in the file.

use engine::functions::{Duration, FunctionDef, Path, closest};
use engine::path;

use super::diagnostic::{At, Problem};
use super::interpolate::variables;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value as J;

use super::{
    Connection, Executors, Logs, Network, Observability, Provider, Publish, Queue, Queues, Scaling,
    Service, Spec, State, Step, Timeouts, Traces,
};

/// Every value of a CloudWatch Logs retention (days) that AWS accepts.
pub const LOG_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// The Fargate CPU values, each with the memory sizes (MiB) AWS accepts
/// with it: (cpu, first, last, step).
const FARGATE: [(u32, u32, u32, u32); 7] = [
    (256, 512, 2048, 512),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

/// Whether Fargate accepts this cpu/memory pair.
pub fn fargate_pair_ok(cpu: u32, memory: u32) -> bool {
    if cpu == 256 {
        // The one irregular row: 512, 1024 or 2048, not 1536.
        return matches!(memory, 512 | 1024 | 2048);
    }
    FARGATE.iter().any(|&(c, first, last, step)| {
        c == cpu && (first..=last).contains(&memory) && (memory - first).is_multiple_of(step)
    })
}

fn memory_choices(cpu: u32) -> Option<String> {
    let &(_, first, last, step) = FARGATE.iter().find(|f| f.0 == cpu)?;
    if cpu == 256 {
        return Some("512, 1024 or 2048".into());
    }
    let values: Vec<String> = (first..=last)
        .step_by(step as usize)
        .map(|m| m.to_string())
        .collect();
    Some(if values.len() <= 4 {
        values.join(", ")
    } else {
        format!("{first} to {last} in steps of {step}")
    })
}

/// Reads one section of the spec: its default when absent, `None` when it
/// does not deserialize (the schema has already reported why).
fn section<T: DeserializeOwned>(json: &J, pointer: &str, default: Option<T>) -> Option<T> {
    match json.pointer(pointer) {
        None | Some(J::Null) => default,
        Some(v) => serde_json::from_value(v.clone()).ok(),
    }
}

/// Reads a section that has a `scaling` key, and its scaling on its own, so
/// that a broken strategy does not hide the checks of the counts.
fn scaled<T: DeserializeOwned>(json: &J, pointer: &str) -> Option<(T, Option<Scaling>)> {
    let mut value = json.pointer(pointer)?.clone();
    let scaling = value
        .as_object_mut()
        .and_then(|o| o.remove("scaling"))
        .filter(|s| !s.is_null())
        .and_then(|s| serde_json::from_value(s).ok());
    Some((serde_json::from_value(value).ok()?, scaling))
}

/// Checks a spec section by section, so that a broken section (already
/// reported by the schema) does not hide the problems of the others.
pub(crate) fn check_sections(json: &J) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(stack) = json.get("stack").and_then(J::as_str) {
        check_stack_name(stack, &mut out);
    }
    if let Some(region) = json.get("region").and_then(J::as_str)
        && !is_region(region)
    {
        out.push(Problem::new(
            path!["region"],
            At::Value,
            format!("`{region}` is not an AWS region name"),
            "write a region such as `us-east-1` or `eu-west-3`, or remove `region` to use the AWS config's",
        ));
    }
    if let Some(network) = section::<Network>(json, "/network", Some(Network::default())) {
        check_network(&network, json.get("region").and_then(J::as_str), &mut out);
    }
    let event_api = scaled::<Service>(json, "/services/event-api");
    let runner = scaled::<Service>(json, "/services/runner");
    for (name, service) in [("event-api", &event_api), ("runner", &runner)] {
        if let Some((service, scaling)) = service {
            check_service(name, service, scaling.as_ref(), &mut out);
        }
    }
    let (event_api, runner) = (event_api.map(|s| s.0), runner.map(|s| s.0));
    if let (Some(a), Some(b)) = (
        event_api.as_ref().and_then(|s| s.port),
        runner.as_ref().and_then(|s| s.port),
    ) && a == b
    {
        out.push(Problem::new(
            path!["services", "runner", "port"],
            At::Value,
            format!("the runner and the event API both use port {a}"),
            "give each service its own port",
        ));
    }
    if let Some((executors, scaling)) = scaled::<Executors>(json, "/executors") {
        check_executors(&executors, scaling.as_ref(), &mut out);
    }
    for name in Queues::NAMES {
        if let Some(queue) =
            section::<Queue>(json, &format!("/queues/{name}"), Some(Queue::default()))
        {
            check_queue(name, &queue, &mut out);
        }
    }
    if json.pointer("/state/url").is_some() && json.pointer("/state/memorydb").is_some() {
        out.push(Problem::new(
            path!["state", "memorydb"],
            At::Key,
            "`state` has both `url` (a Redis of your own) and `memorydb`",
            "keep one: `url` to use your Redis, `memorydb` for a MemoryDB cluster the stack creates",
        ));
    }
    if json.pointer("/state/redis").is_some() && json.pointer("/state/memorydb").is_some() {
        out.push(Problem::new(
            path!["state", "memorydb"],
            At::Key,
            "`state` has both `redis` (ElastiCache) and `memorydb`",
            "keep one: `memorydb` for MemoryDB, `redis` for ElastiCache",
        ));
    }
    if let Some(state) = section::<State>(json, "/state", Some(State::default())) {
        check_state(&state, &mut out);
        check_run_retention(state.run_retention, &mut out);
    }
    if let Some(keys) = section::<BTreeMap<String, String>>(json, "/event_keys", None) {
        check_event_keys(&keys, &mut out);
    }
    if let Some(logs) = section::<Logs>(json, "/logs", Some(Logs::default())) {
        check_logs(&logs, &mut out);
    }
    if let Some(timeouts) = section::<Timeouts>(json, "/timeouts", Some(Timeouts::default())) {
        check_timeouts(&timeouts, &mut out);
    }
    if let Some(observability) = section::<Observability>(json, "/observability", None) {
        let events = section::<Queue>(json, "/queues/events", Some(Queue::default()));
        check_observability(
            &observability,
            json.get("region").and_then(J::as_str),
            events.map(|q| q.retention),
            &mut out,
        );
    }
    out
}

fn check_observability(
    o: &Observability,
    region: Option<&str>,
    events_retention: Option<Duration>,
    out: &mut Vec<Problem>,
) {
    if !(0.0..=1.0).contains(&o.sample) {
        out.push(Problem::new(
            path!["observability", "sample"],
            At::Value,
            format!("a sampled fraction of {} is not between 0 and 1", o.sample),
            "write the fraction of traces to keep, e.g. `0.05` for 5 %, `1` for all",
        ));
    }
    let Some(alarms) = &o.alarms else {
        return;
    };
    let at = path!["observability", "alarms"];
    if let Some(arn) = &alarms.topic_arn {
        if !alarms.email.is_empty() {
            out.push(Problem::new(
                at.join("email"),
                At::Key,
                "`alarms` has both `topic_arn` (a topic of yours) and `email` (a topic the stack creates)",
                "keep one: subscribe the addresses to your topic, or remove `topic_arn` to let the stack make its own",
            ));
        }
        if let Some(problem) = topic_problem(arn, region) {
            out.push(Problem::new(
                at.join("topic_arn"),
                At::Value,
                problem,
                "write the ARN of an SNS topic in the stack's region, `arn:aws:sns:REGION:ACCOUNT:NAME`",
            ));
        }
    }
    for (i, address) in alarms.email.iter().enumerate() {
        let plausible = address.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !address.contains(char::is_whitespace)
        });
        if !plausible {
            out.push(Problem::new(
                at.join("email").join(i),
                At::Value,
                format!("`{address}` is not an email address"),
                "write an address such as `ops@example.com`",
            ));
        } else if alarms.email[..i].contains(address) {
            out.push(Problem::new(
                at.join("email").join(i),
                At::Value,
                format!("`{address}` is listed twice"),
                "list each address once",
            ));
        }
    }
    let age = alarms.queue_age.std();
    if age < std::time::Duration::from_secs(60) {
        out.push(Problem::new(
            at.join("queue_age"),
            At::Value,
            format!(
                "CloudWatch measures queue age once a minute: {} is too short",
                alarms.queue_age
            ),
            "use `1m` or more, e.g. `5m`",
        ));
    } else if let Some(retention) = events_retention
        && age >= retention.std()
    {
        out.push(Problem::new(
            at.join("queue_age"),
            At::Value,
            format!(
                "events are deleted after {retention} (`queues.events.retention`), before they are {} old: the alarm could never fire",
                alarms.queue_age
            ),
            "alarm on an age below the events' retention, e.g. `5m`",
        ));
    }
    if alarms.api_errors_per_minute == 0 {
        out.push(Problem::new(
            at.join("api_errors_per_minute"),
            At::Value,
            "an alarm at 0 errors a minute would always be on",
            "alarm from 1 error a minute, e.g. `5`",
        ));
    }
}

/// What is wrong with an SNS topic ARN, if anything.
fn topic_problem(arn: &str, region: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let shaped = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty();
    if !shaped {
        return Some(format!("`{arn}` is not an SNS topic ARN"));
    }
    match region {
        Some(region) if parts[3] != region => Some(format!(
            "topic `{arn}` is in {}, not the stack's region {region}: CloudWatch alarms notify topics of their own region",
            parts[3]
        )),
        _ => None,
    }
}

/// What a local stack ignores of `observability`, as warnings: X-Ray,
/// CloudWatch alarms and SNS exist only on AWS.
pub(crate) fn check_observability_locally(spec: &Spec) -> Vec<Problem> {
    let Some(o) = &spec.observability else {
        return Vec::new();
    };
    if spec.provider != Provider::Local {
        return Vec::new();
    }
    let mut out = Vec::new();
    if o.traces == Traces::Xray {
        out.push(Problem::new(
            path!["observability", "traces"],
            At::Value,
            "`traces: xray` is ignored by `provider: local`: there is no X-Ray collector on this machine",
            "to trace a local stack, run `stackctl up` with OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_TRACES_SAMPLER_ARG) set to your OTLP receiver; keep `xray` for the AWS spec",
        ));
    }
    if o.alarms.is_some() {
        out.push(Problem::new(
            path!["observability", "alarms"],
            At::Key,
            "`alarms` is ignored by `provider: local`: they are CloudWatch alarms",
            "watch a local stack with `stackctl status`; keep `alarms` for the AWS spec",
        ));
    }
    out
}

fn check_logs(logs: &Logs, out: &mut Vec<Problem>) {
    if !LOG_RETENTION_DAYS.contains(&logs.retention_days) {
        let near = LOG_RETENTION_DAYS
            .iter()
            .min_by_key(|d| d.abs_diff(logs.retention_days))
            .copied()
            .unwrap_or(14);
        out.push(Problem::new(
            path!["logs", "retention_days"],
            At::Value,
            format!(
                "CloudWatch Logs does not accept a retention of {} days",
                logs.retention_days
            ),
            format!(
                "use one of {} (the nearest is {near})",
                LOG_RETENTION_DAYS.map(|d| d.to_string()).join(", ")
            ),
        ));
    }
}

fn check_run_retention(retention: Duration, out: &mut Vec<Problem>) {
    if retention.std() < std::time::Duration::from_secs(60) {
        out.push(Problem::new(
            path!["state", "run_retention"],
            At::Value,
            format!("runs would be deleted {retention} after they end"),
            "keep runs at least `1m` after they end, e.g. `7d`",
        ));
    }
}

fn check_timeouts(timeouts: &Timeouts, out: &mut Vec<Problem>) {
    for (name, d) in [
        ("services", timeouts.services),
        ("executors", timeouts.executors),
        ("redis", timeouts.redis),
        ("canary", timeouts.canary),
    ] {
        if d.std().is_zero() {
            out.push(Problem::new(
                path!["timeouts", name],
                At::Value,
                format!("timeout `{name}` is 0"),
                "give the wait a positive duration, e.g. `10m`",
            ));
        }
    }
}

fn check_stack_name(name: &str, out: &mut Vec<Problem>) {
    // One rule set, owned by the resource names it protects.
    if let Err(crate::graph::GraphError::StackName { reason, .. }) =
        crate::graph::check_stack_name(name)
    {
        out.push(Problem::new(
            path!["stack"],
            At::Value,
            format!("invalid stack name `{name}`: {reason}"),
            "every AWS resource name is derived from the stack name: use 1-20 lowercase letters, digits and single `-`, starting with a letter (e.g. `orders-prod`)",
        ));
    }
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

fn check_network(network: &Network, region: Option<&str>, out: &mut Vec<Problem>) {
    if network.vpc != "default" {
        out.push(Problem::new(
            path!["network", "vpc"],
            At::Value,
            format!("unsupported VPC `{}`", network.vpc),
            "stacks are built in the region's default VPC: write `vpc: default` or remove it",
        ));
    }
    for (i, cidr) in network.allowed_cidrs.iter().enumerate() {
        if !is_cidr(cidr) {
            out.push(Problem::new(
                path!["network", "allowed_cidrs", i],
                At::Value,
                format!("`{cidr}` is not a CIDR block"),
                "write an address and a prefix length, e.g. `203.0.113.0/24` or `2001:db8::/32`",
            ));
        }
    }
    if !network.allowed_cidrs.is_empty() && network.event_api != Connection::Public {
        out.push(Problem::new(
            path!["network", "allowed_cidrs"],
            At::Key,
            "`allowed_cidrs` only applies to a `public` event API",
            "remove `allowed_cidrs`, or set `event_api: public`",
        ));
    }
    check_exposure(network, region, out);
}

/// A `public` event API is HTTPS with a certificate unless plain HTTP is
/// asked for; the certificate and publishing settings apply only where
/// they mean something.
fn check_exposure(network: &Network, region: Option<&str>, out: &mut Vec<Problem>) {
    let public = network.event_api == Connection::Public;
    match (&network.https, network.plain_http) {
        (None, false) if public => out.push(Problem::new(
            path!["network", "event_api"],
            At::Value,
            "a `public` event API needs HTTPS: its clients send the event key in the path",
            "add `https: {certificate_arn: arn:aws:acm:REGION:ACCOUNT:certificate/ID, domain: \
             events.example.com}` under `network` (an ACM certificate for the name clients use), \
             or set `plain_http: true` to publish over HTTP on port 80 (trials only)",
        )),
        (Some(_), true) => out.push(Problem::new(
            path!["network", "plain_http"],
            At::Key,
            "`plain_http` and `https` exclude each other",
            "remove `plain_http` to publish over HTTPS, or remove `https`",
        )),
        _ => {}
    }
    if !public {
        if network.https.is_some() {
            out.push(Problem::new(
                path!["network", "https"],
                At::Key,
                "`https` only applies to a `public` event API",
                "remove `https`, or set `event_api: public`",
            ));
        }
        if network.plain_http {
            out.push(Problem::new(
                path!["network", "plain_http"],
                At::Key,
                "`plain_http` only applies to a `public` event API",
                "remove `plain_http`",
            ));
        }
    }
    if network.publish == Publish::All
        && !matches!(network.event_api, Connection::Public | Connection::VpcLink)
    {
        out.push(Problem::new(
            path!["network", "publish"],
            At::Key,
            "`publish` only applies to a `public` or `vpc_link` event API",
            "remove `publish`",
        ));
    }
    if let Some(https) = &network.https {
        if let Some(problem) = certificate_problem(&https.certificate_arn, region) {
            out.push(Problem::new(
                path!["network", "https", "certificate_arn"],
                At::Value,
                problem,
                "write the ARN of an issued ACM certificate in the stack's region, \
                 `arn:aws:acm:REGION:ACCOUNT:certificate/ID` (ACM console or \
                 `aws acm list-certificates`)",
            ));
        }
        if !is_dns_name(&https.domain) {
            out.push(Problem::new(
                path!["network", "https", "domain"],
                At::Value,
                format!("`{}` is not a DNS name", https.domain),
                "write the name clients use, e.g. `events.example.com`",
            ));
        }
    }
}

/// What is wrong with an ACM certificate ARN, if anything.
fn certificate_problem(arn: &str, region: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, cert_region, account, resource] = parts[..] else {
        return Some(format!("`{arn}` is not an ARN"));
    };
    if scheme != "arn" || !partition.starts_with("aws") || account.is_empty() {
        return Some(format!("`{arn}` is not an ARN"));
    }
    if service != "acm" || !resource.starts_with("certificate/") || resource.len() <= 12 {
        return Some(format!("`{arn}` is not an ACM certificate"));
    }
    match region {
        Some(region) if region != cert_region => Some(format!(
            "the certificate is in `{cert_region}`, the stack in `{region}`: a load balancer \
             uses certificates of its own region"
        )),
        _ => None,
    }
}

/// A host name of dot-separated labels (letters, digits, `-`).
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_cidr(text: &str) -> bool {
    let Some((addr, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

fn check_service(name: &str, service: &Service, scaling: Option<&Scaling>, out: &mut Vec<Problem>) {
    let at = path!["services", name];
    if !FARGATE.iter().any(|f| f.0 == service.cpu) {
        out.push(Problem::new(
            at.join("cpu"),
            At::Value,
            format!(
                "Fargate has no CPU size {} (`services.{name}.cpu`)",
                service.cpu
            ),
            "use 256, 512, 1024, 2048, 4096, 8192 or 16384 CPU units (1024 = 1 vCPU)",
        ));
    } else if !fargate_pair_ok(service.cpu, service.memory) {
        out.push(Problem::new(
            at.join("memory"),
            At::Value,
            format!(
                "Fargate does not accept memory {} MiB with cpu {} (`services.{name}`)",
                service.memory, service.cpu
            ),
            format!(
                "with cpu {} use memory {}",
                service.cpu,
                memory_choices(service.cpu).unwrap_or_default()
            ),
        ));
    }
    if let Some(scaling) = scaling {
        check_scaling(scaling, service.count, "count", &at.join("scaling"), out);
    }
}

fn check_executors(e: &Executors, scaling: Option<&Scaling>, out: &mut Vec<Problem>) {
    if e.min > e.desired {
        out.push(Problem::new(
            path!["executors", "desired"],
            At::Value,
            format!("executors: desired {} is below min {}", e.desired, e.min),
            "keep min <= desired <= max",
        ));
    }
    if e.desired > e.max {
        out.push(Problem::new(
            path!["executors", "max"],
            At::Value,
            format!("executors: max {} is below desired {}", e.max, e.desired),
            "keep min <= desired <= max",
        ));
    }
    if e.max == 0 {
        out.push(Problem::new(
            path!["executors", "max"],
            At::Value,
            "executors: max is 0, so no step could ever run",
            "set `max` to 1 or more",
        ));
    }
    if e.concurrency == 0 {
        out.push(Problem::new(
            path!["executors", "concurrency"],
            At::Value,
            "executors: concurrency is 0, so no step could ever run",
            "set `concurrency` to 1 or more (16 is the default)",
        ));
    }
    if e.drivers.is_empty() {
        out.push(Problem::new(
            path!["executors", "drivers"],
            At::Value,
            "executors offer no step driver",
            "list `http`, `docker` or both",
        ));
    }
    if !e.instance_type.contains('.') {
        out.push(Problem::new(
            path!["executors", "instance_type"],
            At::Value,
            format!("`{}` is not an EC2 instance type", e.instance_type),
            "write a family and a size, e.g. `t3.medium` or `c7g.large`",
        ));
    }
    if let Some(scaling) = scaling {
        check_scaling(
            scaling,
            e.desired,
            "desired",
            &path!["executors", "scaling"],
            out,
        );
    }
}

fn check_scaling(
    scaling: &Scaling,
    count: u32,
    count_name: &str,
    at: &Path,
    out: &mut Vec<Problem>,
) {
    let (min, max) = match scaling {
        Scaling::Cpu { min, max, .. }
        | Scaling::Sqs { min, max, .. }
        | Scaling::Alb { min, max, .. } => (*min, *max),
    };
    if let Some(min) = min
        && min > count
    {
        out.push(Problem::new(
            at.join("min"),
            At::Value,
            format!("scaling min {min} is above the {count_name} {count}"),
            format!("keep scaling min <= {count_name} <= scaling max"),
        ));
    }
    if max == 0 {
        out.push(Problem::new(
            at.join("max"),
            At::Value,
            "scaling max is 0",
            "set the most tasks or instances scaling may reach, 1 or more",
        ));
    } else if count > max {
        out.push(Problem::new(
            at.join("max"),
            At::Value,
            format!("scaling max {max} is below the {count_name} {count}"),
            format!("keep scaling min <= {count_name} <= scaling max"),
        ));
    }
    match scaling {
        Scaling::Cpu {
            scale_out,
            scale_in,
            ..
        } => {
            for (side, step) in [("scale_out", scale_out), ("scale_in", scale_in)] {
                if !(0.0..=100.0).contains(&step.threshold) {
                    out.push(Problem::new(
                        at.join(side).join("threshold"),
                        At::Value,
                        format!("CPU threshold {} is not a percentage", step.threshold),
                        "use a value from 0 to 100",
                    ));
                }
            }
            check_steps(scale_out, scale_in, at, out);
        }
        Scaling::Sqs {
            queue,
            scale_out,
            scale_in,
            ..
        } => {
            if !Queues::NAMES.contains(&queue.as_str()) {
                let help = match closest(queue, Queues::NAMES) {
                    Some(s) => format!("did you mean `{s}`? (the queues are `events` and `work`)"),
                    None => "use `events` (the event stream) or `work` (step jobs)".into(),
                };
                out.push(Problem::new(
                    at.join("queue"),
                    At::Value,
                    format!("there is no queue `{queue}` to scale on"),
                    help,
                ));
            }
            for (side, step) in [("scale_out", scale_out), ("scale_in", scale_in)] {
                if step.threshold < 0.0 {
                    out.push(Problem::new(
                        at.join(side).join("threshold"),
                        At::Value,
                        format!("queue-depth threshold {} is negative", step.threshold),
                        "use a number of visible messages, 0 or more",
                    ));
                }
            }
            check_steps(scale_out, scale_in, at, out);
        }
        Scaling::Alb {
            target_requests, ..
        } => {
            if *target_requests == 0 {
                out.push(Problem::new(
                    at.join("target_requests"),
                    At::Value,
                    "target_requests is 0",
                    "set the requests per task per minute to hold, e.g. 1000",
                ));
            }
        }
    }
}

fn check_steps(scale_out: &Step, scale_in: &Step, at: &Path, out: &mut Vec<Problem>) {
    if scale_in.threshold >= scale_out.threshold {
        out.push(Problem::new(
            at.join("scale_in").join("threshold"),
            At::Value,
            format!(
                "scale-in threshold {} is not below the scale-out threshold {}",
                scale_in.threshold, scale_out.threshold
            ),
            "scale in below the scale-out threshold (e.g. out at 80, in at 40), or the two would flap",
        ));
    }
    if scale_out.adjustment <= 0 {
        out.push(Problem::new(
            at.join("scale_out").join("adjustment"),
            At::Value,
            format!(
                "scale-out adjustment {} does not add capacity",
                scale_out.adjustment
            ),
            "use a positive adjustment, e.g. `adjustment: 1`",
        ));
    }
    if scale_in.adjustment >= 0 {
        out.push(Problem::new(
            at.join("scale_in").join("adjustment"),
            At::Value,
            format!(
                "scale-in adjustment {} does not remove capacity",
                scale_in.adjustment
            ),
            "use a negative adjustment, e.g. `adjustment: -1`",
        ));
    }
}

fn check_queue(name: &str, queue: &Queue, out: &mut Vec<Problem>) {
    let at = path!["queues", name];
    let range = |d: Duration, lo: u64, hi: u64| {
        (lo..=hi).contains(&d.std().as_millis().try_into().unwrap_or(u64::MAX))
    };
    if !range(queue.retention, 60_000, 14 * 86_400_000) {
        out.push(Problem::new(
            at.join("retention"),
            At::Value,
            format!("SQS cannot keep messages for {}", queue.retention),
            "use a retention from `1m` to `14d`",
        ));
    }
    if !range(queue.visibility_timeout, 0, 12 * 3_600_000)
        || queue.visibility_timeout.std().subsec_millis() != 0
    {
        out.push(Problem::new(
            at.join("visibility_timeout"),
            At::Value,
            format!(
                "SQS does not accept a visibility timeout of {}",
                queue.visibility_timeout
            ),
            "use whole seconds up to `12h`",
        ));
    }
    if !(1..=1000).contains(&queue.max_receives) {
        out.push(Problem::new(
            at.join("max_receives"),
            At::Value,
            format!("SQS does not accept max_receives {}", queue.max_receives),
            "use 1 to 1000 receives before a message moves to the dead-letter queue",
        ));
    }
}

fn check_state(state: &State, out: &mut Vec<Problem>) {
    if let Some(url) = &state.url
        && !(url.starts_with("redis://") || url.starts_with("rediss://"))
    {
        out.push(Problem::new(
            path!["state", "url"],
            At::Value,
            format!("`{url}` is not a Redis URL"),
            "write `redis://host:port` or `rediss://host:port` (TLS)",
        ));
    }
    let redis = &state.redis;
    check_replicas_and_snapshots(
        "redis",
        "ElastiCache",
        redis.replicas,
        redis.snapshot_retention_days,
        out,
    );
    if redis.auth && !redis.transit_encryption {
        out.push(Problem::new(
            path!["state", "redis", "transit_encryption"],
            At::Value,
            "Redis `auth` requires `transit_encryption`",
            "set `transit_encryption: true` (ElastiCache only accepts an auth token over TLS), or `auth: false`",
        ));
    }
    if !redis.node_type.starts_with("cache.") {
        out.push(Problem::new(
            path!["state", "redis", "node_type"],
            At::Value,
            format!("`{}` is not an ElastiCache node type", redis.node_type),
            "write e.g. `cache.t4g.small` or `cache.r7g.large`",
        ));
    }
    if let Some(memorydb) = &state.memorydb {
        check_replicas_and_snapshots(
            "memorydb",
            "MemoryDB",
            memorydb.replicas,
            memorydb.snapshot_retention_days,
            out,
        );
        if !memorydb.node_type.starts_with("db.") {
            out.push(Problem::new(
                path!["state", "memorydb", "node_type"],
                At::Value,
                format!("`{}` is not a MemoryDB node type", memorydb.node_type),
                "write e.g. `db.t4g.small` or `db.r7g.large`",
            ));
        }
    }
}

/// The limits ElastiCache and MemoryDB share: 5 replicas, 35 days of
/// snapshots.
fn check_replicas_and_snapshots(
    section: &'static str,
    service: &str,
    replicas: u32,
    snapshot_retention_days: u32,
    out: &mut Vec<Problem>,
) {
    if replicas > 5 {
        out.push(Problem::new(
            path!["state", section, "replicas"],
            At::Value,
            format!("{service} allows at most 5 replicas, not {replicas}"),
            "use 0 to 5 replicas",
        ));
    }
    if snapshot_retention_days > 35 {
        out.push(Problem::new(
            path!["state", section, "snapshot_retention_days"],
            At::Value,
            format!("{service} keeps snapshots for at most 35 days, not {snapshot_retention_days}"),
            "use 0 (no snapshots) to 35 days",
        ));
    }
}

fn check_event_keys(event_keys: &BTreeMap<String, String>, out: &mut Vec<Problem>) {
    if event_keys.is_empty() {
        out.push(Problem::new(
            path!["event_keys"],
            At::Key,
            "no event keys: nobody could send events",
            "add one, e.g. `event_keys: {default: ${STACKCTL_EVENT_KEY}}`",
        ));
    }
    for (name, key) in event_keys {
        let ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
        if !ok {
            out.push(Problem::new(
                path!["event_keys", name.as_str()],
                At::Value,
                format!("event key `{name}` is empty or not URL-safe"),
                "event keys go in the URL (`POST /e/{key}`): use letters, digits, `-`, `_`, `.` and `~`",
            ));
        }
    }
}

/// Whether `url`'s host is the machine that sends the request: `localhost`
/// (or a name under it), 127.0.0.0/8, or ::1 (also as `::ffff:127.x.y.z`).
pub fn is_loopback_url(url: &str) -> bool {
    use std::net::IpAddr;
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

/// Warnings for the `http` steps of an AWS stack's function that call a
/// loopback address: the executors send them from their EC2 hosts, where no
/// step service listens, so every run of the function would fail there.
/// `at` is where the function is in its file; `written` gives a value's text
/// as written, so the help can name the variable the URL is read from.
pub(crate) fn check_loopback_steps(
    def: &FunctionDef,
    at: &Path,
    written: impl Fn(&Path) -> Option<String>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, step) in def.steps.iter().enumerate() {
        let Some(http) = &step.http else { continue };
        if !is_loopback_url(&http.url) {
            continue;
        }
        let path = at.join("steps").join(i).join("http").join("url");
        let names = written(&path).map(|w| variables(&w)).unwrap_or_default();
        let fix = if names.is_empty() {
            "point the url at an address the executors can reach (a name or address inside the VPC)"
                .to_string()
        } else {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!(
                "set {} (or the url) to an address the executors can reach (a name or address inside the VPC)",
                names.join(" or ")
            )
        };
        out.push(Problem::new(
            path,
            At::Value,
            format!(
                "step `{}` of function `{}` calls `{}`, a loopback address",
                step.id, def.id, http.url
            ),
            format!("on AWS this calls the executor host itself; {fix}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_pairs_match_aws() {
        for (cpu, mem) in [
            (256, 512),
            (256, 2048),
            (512, 1024),
            (512, 4096),
            (1024, 8192),
            (4096, 30720),
            (8192, 61440),
            (16384, 122880),
        ] {
            assert!(fargate_pair_ok(cpu, mem), "{cpu}/{mem}");
        }
        for (cpu, mem) in [
            (256, 1536),
            (256, 4096),
            (512, 512),
            (512, 1536),
            (1024, 1024),
            (8192, 18432),
            (16384, 36864),
            (300, 1024),
        ] {
            assert!(!fargate_pair_ok(cpu, mem), "{cpu}/{mem}");
        }
    }

    #[test]
    fn exposure_of_the_event_api() {
        let problems = |network: Network, region: Option<&str>| {
            let mut out = Vec::new();
            check_exposure(&network, region, &mut out);
            out.iter().map(|p| p.message.clone()).collect::<Vec<_>>()
        };
        let arn = "arn:aws:acm:us-east-1:123456789012:certificate/abc-123";
        let https = |arn: &str, domain: &str| {
            Some(super::super::Https {
                certificate_arn: arn.into(),
                domain: domain.into(),
            })
        };
        let public = Network {
            event_api: Connection::Public,
            ..Network::default()
        };
        assert_eq!(
            problems(public.clone(), None),
            ["a `public` event API needs HTTPS: its clients send the event key in the path"]
        );
        assert!(
            problems(
                Network {
                    plain_http: true,
                    ..public.clone()
                },
                None
            )
            .is_empty()
        );
        let with = |arn: &str, domain: &str| Network {
            https: https(arn, domain),
            ..public.clone()
        };
        assert!(problems(with(arn, "events.example.com"), Some("us-east-1")).is_empty());
        assert_eq!(
            problems(with(arn, "events.example.com"), Some("eu-west-3")),
            [
                "the certificate is in `us-east-1`, the stack in `eu-west-3`: a load balancer uses \
              certificates of its own region"
            ]
        );
        assert_eq!(
            problems(with("arn:aws:iam::1:server-certificate/x", "a.b"), None),
            ["`arn:aws:iam::1:server-certificate/x` is not an ACM certificate"]
        );
        assert_eq!(
            problems(with(arn, "not a name"), None),
            ["`not a name` is not a DNS name"]
        );
        assert_eq!(
            problems(
                Network {
                    plain_http: true,
                    ..with(arn, "a.example")
                },
                None
            ),
            ["`plain_http` and `https` exclude each other"]
        );
        assert_eq!(
            problems(
                Network {
                    https: https(arn, "a.example"),
                    publish: Publish::All,
                    ..Network::default()
                },
                None
            ),
            [
                "`https` only applies to a `public` event API",
                "`publish` only applies to a `public` or `vpc_link` event API"
            ]
        );
    }

    #[test]
    fn regions_and_cidrs() {
        assert!(is_region("us-east-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("useast1"));
        assert!(is_cidr("10.0.0.0/8"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("10.0.0.0"));
    }

    #[test]
    fn loopback_urls() {
        for url in [
            "http://127.0.0.1:8300/a",
            "http://127.9.8.7/",
            "https://localhost/x",
            "http://LOCALHOST.:80",
            "http://steps.localhost:8300",
            "http://[::1]:8300/a",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://steps.internal:8300/a",
            "http://10.0.0.5/",
            "http://128.0.0.1/",
            "http://[::2]/",
            "http://localhost.example.com/",
            "not a url",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
