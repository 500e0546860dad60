//! Builds the desired resource graph of an `aws` spec, section by section
//! in dependency order (network, IAM, logs, queues, Redis, images, cluster,
//! event-API ingress, tasks and services, executors, scaling), so every
//! resource is added after what it depends on.

use std::collections::BTreeMap;

use super::attributes::*;
use super::names::{Names, check_stack_name};
use super::placeholder::{context, output, secret, secret_version};
use super::template;
use super::{Graph, GraphError, Kind, LogicalId, Resource, TAG_RESOURCE, TAG_STACK};
use crate::engine_config::{Placement, engine_config};
use crate::spec::{
    Alarms, Connection, Driver, Provider, Publish, Scaling, Service, Spec, Step, Traces,
};
use engine::functions::FunctionDef;

/// Port of the event API unless the spec sets one.
pub const EVENT_API_PORT: u16 = 8288;
/// Port of the runner (health and metrics) unless the spec sets one.
pub const RUNNER_PORT: u16 = 8289;
/// Port of an executor's health and metrics endpoint.
pub const EXECUTOR_PORT: u16 = 8290;
/// Port the load balancer listens on.
pub const LISTENER_PORT: u16 = 80;
/// The port of a `public` event API's HTTPS listener.
pub const HTTPS_PORT: u16 = 443;
/// The TLS policy of the HTTPS listener: TLS 1.3 and 1.2 with forward secrecy.
pub const TLS_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";
/// The API Gateway stage that publishes the event API (`vpc_link`).
pub const API_STAGE: &str = "v1";
/// Redis port.
pub const REDIS_PORT: u16 = 6379;
/// The ElastiCache parameter group family of the Redis engine version.
const REDIS_FAMILY: &str = "redis7";
/// MemoryDB's default parameter group of the Redis engine version: its
/// `maxmemory-policy` is `noeviction`, what the engine needs.
const MEMORYDB_PARAMETER_GROUP: &str = "default.memorydb-redis7";
/// What the engine's MemoryDB user may do: every key, channel and command.
const MEMORYDB_ACCESS: &str = "on ~* &* +@all";
/// The Docker Engine socket on executor hosts (the docker driver's).
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The most the engine configuration may take in a task definition (whose
/// whole JSON AWS caps at 64 KiB), leaving room for everything else.
const MAX_ENGINE_CONFIG_BYTES: usize = 48 * 1024;
/// Seconds per alarm period.
const ALARM_PERIOD: u32 = 60;
/// Periods a scale-out alarm must breach: react within two minutes.
const OUT_EVALUATION_PERIODS: u32 = 2;
/// Periods a scale-in alarm must breach: longer, so load dips do not flap.
const IN_EVALUATION_PERIODS: u32 = 5;
/// Retention of dead-letter queues: the SQS maximum, to leave time to look.
const DLQ_RETENTION_SECS: u64 = 14 * 86_400;
/// The variable that sets the engine's async worker threads (tokio's own).
const WORKER_THREADS_VAR: &str = "TOKIO_WORKER_THREADS";

/// The engine's worker threads in a Fargate task of `cpu` units: one per
/// whole vCPU, at least one. Unset, the runtime starts one per CPU the
/// container sees, and ECS caps CPU on the task's cgroup, not the
/// container's: a 0.5 vCPU task would run two workers on half a CPU, waking
/// each other for work one does.
fn worker_threads(cpu: u32) -> u32 {
    (cpu / 1024).max(1)
}

/// The AWS Distro for OpenTelemetry collector, pinned: it receives the
/// engine's OTLP traces and sends them to X-Ray.
pub const OTEL_COLLECTOR_IMAGE: &str =
    "public.ecr.aws/aws-observability/aws-otel-collector:v0.45.1";
/// The collector configuration shipped in its image that does traces only
/// (OTLP on 4317/4318 to X-Ray): the default one also ships metrics to a
/// log group outside the stack.
pub const OTEL_COLLECTOR_CONFIG: &str = "--config=/etc/ecs/ecs-xray.yaml";
/// The collector's container name, in the tasks and on executor hosts.
pub const OTEL_COLLECTOR_NAME: &str = "aws-otel-collector";
/// Where the engine sends traces: the collector's OTLP/HTTP receiver, on
/// the task's (awsvpc) or the host's loopback.
pub const OTEL_ENDPOINT: &str = "http://127.0.0.1:4318";
/// The collector's memory in a task (MiB), taken off the engine's: a
/// traces-only collector uses well under it.
const OTEL_COLLECTOR_MEMORY: u32 = 128;
/// What an engine role may do in X-Ray: send segments and telemetry, and
/// read the sampling rules (none of these has resource-level permissions).
const XRAY_ACTIONS: [&str; 5] = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
];
/// Minutes in a row the event API must answer 5xx before its alarm fires.
const API_ERROR_PERIODS: u32 = 3;

pub(crate) fn build(spec: &Spec, functions: &[FunctionDef]) -> Result<Graph, GraphError> {
    if spec.provider != Provider::Aws {
        return Err(GraphError::NotAws {
            stack: spec.stack.clone(),
        });
    }
    check_stack_name(&spec.stack)?;
    let mut b = Builder {
        spec,
        functions,
        names: Names::new(&spec.stack),
        graph: Graph::empty(&spec.stack, spec.region.clone()),
    };
    b.security_groups()?;
    b.iam()?;
    b.log_groups()?;
    b.alarm_topic()?;
    b.queues()?;
    b.redis()?;
    b.repository()?;
    b.cluster()?;
    b.ingress()?;
    b.services()?;
    b.executors()?;
    b.scaling()?;
    b.alarms()?;
    if spec.network.event_api == Connection::Public {
        b.graph.event_api_domain = spec.network.https.as_ref().map(|h| h.domain.clone());
    }
    Ok(b.graph)
}

/// The API Gateway resources that publish `publish`'s paths, each with the
/// URI its integration sends to under `base`: ELB path patterns ending in
/// `/*` become a greedy `{proxy+}` resource.
fn api_gateway_routes(publish: Publish, base: &str) -> BTreeMap<String, String> {
    let patterns: &[&str] = match publish.paths() {
        [] => &["/*"],
        paths => paths,
    };
    patterns
        .iter()
        .map(|pattern| match pattern.strip_suffix("/*") {
            Some(prefix) => (
                format!("{prefix}/{{proxy+}}"),
                format!("{base}{prefix}/{{proxy}}"),
            ),
            None => ((*pattern).to_string(), format!("{base}{pattern}")),
        })
        .collect()
}

/// The three engine roles that run in AWS.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    EventApi,
    Runner,
    Executors,
}

impl Role {
    fn key(self) -> &'static str {
        match self {
            Role::EventApi => "event-api",
            Role::Runner => "runner",
            Role::Executors => "executors",
        }
    }

    /// The engine role these containers run.
    fn engine(self) -> engine::config::Role {
        match self {
            Role::EventApi => engine::config::Role::EventApi,
            Role::Runner => engine::config::Role::Runner,
            Role::Executors => engine::config::Role::Executor,
        }
    }

    /// The `--role` argument of the engine binary.
    fn engine_role(self) -> &'static str {
        self.engine().as_str()
    }
}

struct Builder<'a> {
    spec: &'a Spec,
    /// Every function of the stack (inline and from files).
    functions: &'a [FunctionDef],
    names: Names<'a>,
    graph: Graph,
}

impl Builder<'_> {
    fn add(
        &mut self,
        id: &str,
        kind: Kind,
        name: String,
        dependencies: &[&str],
        attributes: Attributes,
    ) -> Result<(), GraphError> {
        let mut tags = BTreeMap::new();
        if kind.taggable() {
            tags.extend(self.spec.tags.clone());
            // Ours last: a spec tag cannot hide a resource from discovery.
            tags.insert(TAG_STACK.to_string(), self.spec.stack.clone());
            tags.insert(TAG_RESOURCE.to_string(), id.to_string());
        }
        self.graph.add(Resource {
            id: LogicalId::new(id),
            kind,
            name,
            tags,
            dependencies: dependencies.iter().map(|d| LogicalId::new(*d)).collect(),
            attributes,
        })
    }

    fn has(&self, id: &str) -> bool {
        self.graph.get(&LogicalId::new(id)).is_some()
    }

    /// Redis managed by the stack (ElastiCache or MemoryDB), not given by URL.
    fn manages_redis(&self) -> bool {
        self.spec.state.url.is_none()
    }

    fn uses_elasticache(&self) -> bool {
        self.manages_redis() && self.spec.state.memorydb.is_none()
    }

    fn uses_memorydb(&self) -> bool {
        self.manages_redis() && self.spec.state.memorydb.is_some()
    }

    fn builds_image(&self) -> bool {
        self.spec.image.uri.is_none()
    }

    /// Whether the engine's traces go to X-Ray through collectors.
    fn xray(&self) -> bool {
        self.spec
            .observability
            .as_ref()
            .is_some_and(|o| o.traces == Traces::Xray)
    }

    fn alarm_settings(&self) -> Option<&Alarms> {
        self.spec.observability.as_ref()?.alarms.as_ref()
    }

    /// The SNS topic the alarms notify (its ARN, and the resource it is
    /// when the stack owns it); `None` when nobody is notified.
    fn alarm_topic_arn(&self) -> Option<(String, Option<&'static str>)> {
        let alarms = self.alarm_settings()?;
        match &alarms.topic_arn {
            Some(arn) => Some((arn.clone(), None)),
            None if !alarms.email.is_empty() => {
                Some((output("sns.alarms", "arn"), Some("sns.alarms")))
            }
            None => None,
        }
    }

    /// A reporting alarm (no policy to run): it notifies the alarm topic,
    /// if any, on ALARM and on OK.
    fn report_alarm(&self, alarm: CloudWatchAlarm) -> CloudWatchAlarm {
        let actions: Vec<String> = self.alarm_topic_arn().map(|t| t.0).into_iter().collect();
        CloudWatchAlarm {
            alarm_actions: actions.clone(),
            ok_actions: actions,
            ..alarm
        }
    }

    /// The X-Ray statement of a role's policy, when traces go to X-Ray.
    fn xray_statement(&self) -> Option<Statement> {
        self.xray()
            .then(|| Statement::allow("XRay", &XRAY_ACTIONS, vec!["*".into()]))
    }

    fn port(&self, role: Role) -> u16 {
        match role {
            Role::EventApi => self.spec.services.event_api.port.unwrap_or(EVENT_API_PORT),
            Role::Runner => self.spec.services.runner.port.unwrap_or(RUNNER_PORT),
            Role::Executors => EXECUTOR_PORT,
        }
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            context("region"),
            context("account")
        )
    }

    fn queue_arns(&self) -> Vec<String> {
        ["events", "events-dlq", "work", "work-dlq"]
            .iter()
            .map(|q| self.queue_arn(q))
            .collect()
    }

    fn queue_arn(&self, queue: &str) -> String {
        self.arn("sqs", &self.names.dashed(queue))
    }

    /// What `role` may do with the stack's queues: find and measure every
    /// queue (the engine opens both and reports their depths), and only the
    /// message actions its own work needs. The event API sends events; the
    /// runner takes events (and puts one back after an outage) and sends
    /// step jobs; the executors take step jobs and send them (retries,
    /// sleeps, jobs put back).
    fn queue_statements(&self, role: Role) -> Vec<Statement> {
        const TAKE: [&str; 4] = [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:SendMessage",
        ];
        let mut out = vec![Statement::allow(
            "FindQueues",
            &["sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
            self.queue_arns(),
        )];
        let (events, work) = (vec![self.queue_arn("events")], vec![self.queue_arn("work")]);
        out.extend(match role {
            Role::EventApi => vec![Statement::allow("SendEvents", &["sqs:SendMessage"], events)],
            Role::Runner => vec![
                Statement::allow("TakeEvents", &TAKE, events),
                Statement::allow("SendJobs", &["sqs:SendMessage"], work),
            ],
            Role::Executors => vec![Statement::allow("TakeJobs", &TAKE, work)],
        });
        out
    }

    fn log_group_arn(&self, role: Role) -> String {
        // `:*` covers the group's streams, which is what the log actions act on.
        self.arn(
            "logs",
            &format!("log-group:{}:*", self.names.log_group(role.key())),
        )
    }

    /// The ECR repository the engine image is pulled from, when it is one.
    fn ecr_repository_arn(&self) -> Option<String> {
        match &self.spec.image.uri {
            None => Some(self.arn(
                "ecr",
                &format!("repository/{}", self.names.dashed("engine")),
            )),
            Some(uri) => ecr_repository_arn(uri),
        }
    }

    fn egress_all() -> Vec<Rule> {
        vec![Rule {
            protocol: "-1".into(),
            from_port: -1,
            to_port: -1,
            peer: Peer::Cidr("0.0.0.0/0".into()),
            description: "AWS APIs, image registries and HTTP steps".into(),
        }]
    }

    fn sg(&self, what: &str, ingress: Vec<Rule>, egress: Vec<Rule>) -> Attributes {
        Attributes::SecurityGroup(SecurityGroup {
            description: format!("stackctl {}: {what}", self.spec.stack),
            vpc_id: context("vpc_id"),
            ingress,
            egress,
        })
    }

    /// The load balancer listener's port: 443 for an HTTPS `public` event
    /// API, else 80.
    fn listener_port(&self) -> u16 {
        if self.spec.network.event_api == Connection::Public && self.spec.network.https.is_some() {
            HTTPS_PORT
        } else {
            LISTENER_PORT
        }
    }

    fn security_groups(&mut self) -> Result<(), GraphError> {
        let connection = self.spec.network.event_api;
        let api_port = i32::from(self.port(Role::EventApi));
        if connection == Connection::Public {
            let cidrs = if self.spec.network.allowed_cidrs.is_empty() {
                vec!["0.0.0.0/0".to_string()]
            } else {
                self.spec.network.allowed_cidrs.clone()
            };
            let ingress = cidrs
                .into_iter()
                .map(|cidr| Rule {
                    protocol: "tcp".into(),
                    from_port: i32::from(self.listener_port()),
                    to_port: i32::from(self.listener_port()),
                    peer: Peer::Cidr(cidr),
                    description: "clients of the event API".into(),
                })
                .collect();
            let attrs = self.sg("event API load balancer", ingress, Self::egress_all());
            self.add(
                "ec2.sg.lb",
                Kind::SecurityGroup,
                self.names.dashed("lb"),
                &[],
                attrs,
            )?;
        }
        let api_rule = |peer: Peer, description: &str| Rule {
            protocol: "tcp".into(),
            from_port: api_port,
            to_port: api_port,
            peer,
            description: description.into(),
        };
        let (api_ingress, api_deps): (Vec<Rule>, &[&str]) = match connection {
            Connection::Internal => (Vec::new(), &[]),
            Connection::InternalDns => (
                vec![api_rule(
                    Peer::Cidr(context("vpc_cidr")),
                    "clients inside the VPC (Cloud Map DNS)",
                )],
                &[],
            ),
            // NLB targets of type ip see the load balancer's private addresses.
            Connection::VpcLink => (
                vec![api_rule(
                    Peer::Cidr(context("vpc_cidr")),
                    "the internal network load balancer",
                )],
                &[],
            ),
            Connection::Public => (
                vec![api_rule(
                    Peer::SecurityGroup(output("ec2.sg.lb", "id")),
                    "the public load balancer",
                )],
                &["ec2.sg.lb"],
            ),
        };
        let attrs = self.sg("event API tasks", api_ingress, Self::egress_all());
        self.add(
            "ec2.sg.event-api",
            Kind::SecurityGroup,
            self.names.dashed("event-api"),
            api_deps,
            attrs,
        )?;
        let attrs = self.sg("runner tasks", Vec::new(), Self::egress_all());
        self.add(
            "ec2.sg.runner",
            Kind::SecurityGroup,
            self.names.dashed("runner"),
            &[],
            attrs,
        )?;
        let attrs = self.sg("executor instances", Vec::new(), Self::egress_all());
        self.add(
            "ec2.sg.executors",
            Kind::SecurityGroup,
            self.names.dashed("executors"),
            &[],
            attrs,
        )?;
        if self.manages_redis() {
            let ingress = ["event-api", "runner", "executors"]
                .iter()
                .map(|role| Rule {
                    protocol: "tcp".into(),
                    from_port: i32::from(REDIS_PORT),
                    to_port: i32::from(REDIS_PORT),
                    peer: Peer::SecurityGroup(output(&format!("ec2.sg.{role}"), "id")),
                    description: format!("the stack's {role}"),
                })
                .collect();
            // No egress: Redis only answers.
            let what = if self.uses_memorydb() {
                "MemoryDB Redis"
            } else {
                "ElastiCache Redis"
            };
            let attrs = self.sg(what, ingress, Vec::new());
            self.add(
                "ec2.sg.redis",
                Kind::SecurityGroup,
                self.names.dashed("redis"),
                &["ec2.sg.event-api", "ec2.sg.runner", "ec2.sg.executors"],
                attrs,
            )?;
        }
        Ok(())
    }

    fn iam(&mut self) -> Result<(), GraphError> {
        let ecr_pull = self.ecr_repository_arn().map(|repo| {
            vec![
                // GetAuthorizationToken has no resource-level permissions in AWS.
                Statement::allow("EcrLogin", &["ecr:GetAuthorizationToken"], vec!["*".into()]),
                Statement::allow(
                    "EcrPull",
                    &[
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage",
                    ],
                    vec![repo],
                ),
            ]
        });
        let logs = |roles: &[Role], b: &Self| {
            Statement::allow(
                "Logs",
                &["logs:CreateLogStream", "logs:PutLogEvents"],
                roles.iter().map(|r| b.log_group_arn(*r)).collect(),
            )
        };
        // The engine's secrets in SSM: ECS reads the services' with the
        // execution role (GetParameters), executor hosts theirs at boot.
        let arns = |secrets: Vec<(&str, &str)>| -> Vec<String> {
            secrets
                .into_iter()
                .map(|(_, name)| self.secret_parameter_arn(name))
                .collect()
        };
        let mut secret_arns = arns(self.engine_secrets(Role::EventApi));
        for arn in arns(self.engine_secrets(Role::Runner)) {
            if !secret_arns.contains(&arn) {
                secret_arns.push(arn);
            }
        }
        let executor_secret_arns = arns(self.engine_secrets(Role::Executors));

        let ecs_tasks = "ecs-tasks.amazonaws.com";
        let mut execution = ecr_pull.clone().unwrap_or_default();
        execution.push(logs(&[Role::EventApi, Role::Runner], self));
        let mut executors = self.queue_statements(Role::Executors);
        executors.push(logs(&[Role::Executors], self));
        executors.extend(ecr_pull.unwrap_or_default());
        executors.extend(self.xray_statement());
        if !secret_arns.is_empty() {
            execution.push(Statement::allow(
                "EngineSecrets",
                &["ssm:GetParameters"],
                secret_arns,
            ));
        }
        if !executor_secret_arns.is_empty() {
            executors.push(Statement::allow(
                "EngineSecrets",
                &["ssm:GetParameter"],
                executor_secret_arns,
            ));
        }
        let roles = [
            (
                "execution",
                ecs_tasks,
                "ECS pulls the engine image and ships task logs",
                execution,
            ),
            ("task", ecs_tasks, "event API tasks send events", {
                let mut api = self.queue_statements(Role::EventApi);
                api.push(logs(&[Role::EventApi], self));
                api.extend(self.xray_statement());
                api
            }),
            (
                "runner",
                ecs_tasks,
                "runner tasks take events and send step jobs",
                {
                    let mut runner = self.queue_statements(Role::Runner);
                    runner.push(logs(&[Role::Runner], self));
                    runner.extend(self.xray_statement());
                    runner
                },
            ),
            (
                "executors",
                "ec2.amazonaws.com",
                "executor instances pull the engine image, use the queues and ship logs",
                executors,
            ),
        ];
        for (key, service, description, statements) in roles {
            let role_id = format!("iam.role.{key}");
            let name = self.names.dashed(key);
            self.add(
                &role_id,
                Kind::IamRole,
                name.clone(),
                &[],
                Attributes::IamRole(IamRole {
                    description: format!("stackctl {}: {description}", self.spec.stack),
                    assume_role_policy: PolicyDocument::trust(service),
                }),
            )?;
            self.add(
                &format!("iam.policy.{key}"),
                Kind::IamRolePolicy,
                name,
                &[&role_id],
                Attributes::IamRolePolicy(IamRolePolicy {
                    role_name: output(&role_id, "name"),
                    document: PolicyDocument::new(statements),
                }),
            )?;
        }
        self.add(
            "iam.instance-profile.executors",
            Kind::IamInstanceProfile,
            self.names.dashed("executors"),
            &["iam.role.executors"],
            Attributes::IamInstanceProfile(IamInstanceProfile {
                role_name: output("iam.role.executors", "name"),
            }),
        )
    }

    fn log_groups(&mut self) -> Result<(), GraphError> {
        for role in [Role::EventApi, Role::Runner, Role::Executors] {
            self.add(
                &format!("logs.{}", role.key()),
                Kind::LogGroup,
                self.names.log_group(role.key()),
                &[],
                Attributes::LogGroup(LogGroup {
                    retention_days: self.spec.logs.retention_days,
                }),
            )?;
        }
        Ok(())
    }

    fn queues(&mut self) -> Result<(), GraphError> {
        for (key, queue) in [
            ("events", &self.spec.queues.events),
            ("work", &self.spec.queues.work),
        ] {
            let dlq_id = format!("sqs.{key}-dlq");
            self.add(
                &dlq_id,
                Kind::SqsQueue,
                self.names.dashed(&format!("{key}-dlq")),
                &[],
                Attributes::SqsQueue(SqsQueue {
                    visibility_timeout_seconds: queue.visibility_timeout.as_secs(),
                    message_retention_seconds: DLQ_RETENTION_SECS,
                    receive_wait_time_seconds: 20,
                    sqs_managed_sse: true,
                    redrive: None,
                }),
            )?;
            // Anything in a dead-letter queue is work that did not get done:
            // the alarm fires on the first message.
            let mut deps = vec![dlq_id.as_str()];
            deps.extend(self.alarm_topic_arn().and_then(|t| t.1));
            let alarm = self.report_alarm(CloudWatchAlarm {
                namespace: "AWS/SQS".into(),
                metric_name: "ApproximateNumberOfMessagesVisible".into(),
                dimensions: BTreeMap::from([(
                    "QueueName".to_string(),
                    self.names.dashed(&format!("{key}-dlq")),
                )]),
                statistic: "Maximum".into(),
                period_seconds: ALARM_PERIOD,
                evaluation_periods: 1,
                threshold: 0.0,
                comparison_operator: "GreaterThanThreshold".into(),
                alarm_actions: Vec::new(),
                ok_actions: Vec::new(),
                description: self.alarm_settings().map(|_| {
                    format!(
                        "stackctl {}: {} failed {} times and wait in {}; `stackctl dlq` shows and redrives them",
                        self.spec.stack,
                        if key == "events" { "events" } else { "step jobs" },
                        queue.max_receives,
                        self.names.dashed(&format!("{key}-dlq")),
                    )
                }),
                treat_missing_data: None,
            });
            self.add(
                &format!("cloudwatch.alarm.{key}-dlq"),
                Kind::CloudWatchAlarm,
                self.names.dashed(&format!("{key}-dlq-not-empty")),
                &deps,
                Attributes::CloudWatchAlarm(alarm),
            )?;
            self.add(
                &format!("sqs.{key}"),
                Kind::SqsQueue,
                self.names.dashed(key),
                &[&dlq_id],
                Attributes::SqsQueue(SqsQueue {
                    visibility_timeout_seconds: queue.visibility_timeout.as_secs(),
                    message_retention_seconds: queue.retention.as_secs(),
                    receive_wait_time_seconds: 20,
                    sqs_managed_sse: true,
                    redrive: Some(Redrive {
                        dead_letter_target_arn: output(&dlq_id, "arn"),
                        max_receive_count: queue.max_receives,
                    }),
                }),
            )?;
        }
        Ok(())
    }

    fn redis(&mut self) -> Result<(), GraphError> {
        if self.uses_memorydb() {
            return self.memorydb();
        }
        if !self.uses_elasticache() {
            return Ok(());
        }
        let redis = &self.spec.state.redis;
        self.add(
            "elasticache.subnet-group",
            Kind::ElastiCacheSubnetGroup,
            self.names.dashed("redis"),
            &[],
            Attributes::ElastiCacheSubnetGroup(ElastiCacheSubnetGroup {
                description: format!("stackctl {}: Redis in the default VPC", self.spec.stack),
                subnet_ids: vec![context("default_subnets")],
            }),
        )?;
        // Run records, id claims and leases are the engine's truth: a full
        // Redis must refuse writes (the engine backs off and retries), never
        // evict them, as the family's default `volatile-lru` would evict
        // every key with an expiry (id claims, leases).
        self.add(
            "elasticache.parameter-group",
            Kind::ElastiCacheParameterGroup,
            self.names.dashed("redis"),
            &[],
            Attributes::ElastiCacheParameterGroup(ElastiCacheParameterGroup {
                family: REDIS_FAMILY.into(),
                description: format!("stackctl {}: engine state settings", self.spec.stack),
                parameters: BTreeMap::from([("maxmemory-policy".into(), "noeviction".into())]),
            }),
        )?;
        self.add(
            "elasticache.redis",
            Kind::ElastiCacheReplicationGroup,
            self.names.dashed("redis"),
            &[
                "elasticache.subnet-group",
                "elasticache.parameter-group",
                "ec2.sg.redis",
            ],
            Attributes::ElastiCacheReplicationGroup(ElastiCacheReplicationGroup {
                description: format!("stackctl {}: engine state", self.spec.stack),
                engine: "redis".into(),
                engine_version: "7.1".into(),
                node_type: redis.node_type.clone(),
                replicas: redis.replicas,
                automatic_failover: redis.replicas > 0,
                multi_az: redis.replicas > 0,
                snapshot_retention_days: redis.snapshot_retention_days,
                port: REDIS_PORT,
                subnet_group: output("elasticache.subnet-group", "name"),
                parameter_group: output("elasticache.parameter-group", "name"),
                security_group_ids: vec![output("ec2.sg.redis", "id")],
                transit_encryption: redis.transit_encryption,
                at_rest_encryption: true,
                auth_token: redis.auth.then(|| secret("redis_auth_token")),
            }),
        )
    }

    /// MemoryDB: one shard (the engine keeps every key in one hash slot) with
    /// the spec's replicas, TLS, and the engine's own user (its password is
    /// the Redis auth token secret) in the cluster's ACL. The default
    /// parameter group's `maxmemory-policy` is already `noeviction`.
    fn memorydb(&mut self) -> Result<(), GraphError> {
        let memorydb = self.spec.state.memorydb.clone().unwrap_or_default();
        self.add(
            "memorydb.subnet-group",
            Kind::MemoryDbSubnetGroup,
            self.names.dashed("redis"),
            &[],
            Attributes::MemoryDbSubnetGroup(MemoryDbSubnetGroup {
                description: format!("stackctl {}: Redis in the default VPC", self.spec.stack),
                subnet_ids: vec![context("default_subnets")],
            }),
        )?;
        self.add(
            "memorydb.user",
            Kind::MemoryDbUser,
            self.names.dashed("engine"),
            &[],
            Attributes::MemoryDbUser(MemoryDbUser {
                access_string: MEMORYDB_ACCESS.into(),
                password: secret("redis_auth_token"),
            }),
        )?;
        self.add(
            "memorydb.acl",
            Kind::MemoryDbAcl,
            self.names.dashed("redis"),
            &["memorydb.user"],
            Attributes::MemoryDbAcl(MemoryDbAcl {
                user_names: vec![output("memorydb.user", "name")],
            }),
        )?;
        self.add(
            "memorydb.cluster",
            Kind::MemoryDbCluster,
            self.names.dashed("redis"),
            &["memorydb.subnet-group", "memorydb.acl", "ec2.sg.redis"],
            Attributes::MemoryDbCluster(MemoryDbCluster {
                description: format!("stackctl {}: engine state", self.spec.stack),
                engine_version: "7.1".into(),
                node_type: memorydb.node_type,
                shards: 1,
                replicas: memorydb.replicas,
                snapshot_retention_days: memorydb.snapshot_retention_days,
                port: REDIS_PORT,
                subnet_group: output("memorydb.subnet-group", "name"),
                parameter_group: MEMORYDB_PARAMETER_GROUP.into(),
                acl: output("memorydb.acl", "name"),
                security_group_ids: vec![output("ec2.sg.redis", "id")],
                tls: true,
            }),
        )
    }

    fn repository(&mut self) -> Result<(), GraphError> {
        if !self.builds_image() {
            return Ok(());
        }
        self.add(
            "ecr.engine",
            Kind::EcrRepository,
            self.names.dashed("engine"),
            &[],
            Attributes::EcrRepository(EcrRepository {
                image_tag_mutability: "MUTABLE".into(),
                scan_on_push: true,
                encryption: "AES256".into(),
            }),
        )
    }

    fn cluster(&mut self) -> Result<(), GraphError> {
        self.add(
            "ecs.cluster",
            Kind::EcsCluster,
            self.names.cluster(),
            &[],
            Attributes::EcsCluster(EcsCluster {
                capacity_providers: vec!["FARGATE".into()],
                container_insights: false,
            }),
        )
    }

    /// What each connection type puts in front of the event API.
    fn ingress(&mut self) -> Result<(), GraphError> {
        let port = self.port(Role::EventApi);
        let health = HealthCheck {
            protocol: "HTTP".into(),
            // Readiness: the event API's event stream answers.
            path: "/health/ready".into(),
            interval_seconds: 15,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        };
        let (lb_type, scheme, protocol, lb_deps, security_groups): (_, _, _, &[&str], _) =
            match self.spec.network.event_api {
                Connection::Internal => return Ok(()),
                Connection::InternalDns => {
                    self.add(
                        "cloudmap.namespace",
                        Kind::ServiceDiscoveryNamespace,
                        self.names.namespace(),
                        &[],
                        Attributes::ServiceDiscoveryNamespace(ServiceDiscoveryNamespace {
                            description: format!(
                                "stackctl {}: private DNS of the event API",
                                self.spec.stack
                            ),
                            vpc_id: context("vpc_id"),
                        }),
                    )?;
                    return self.add(
                        "cloudmap.service",
                        Kind::ServiceDiscoveryService,
                        "event-api".into(),
                        &["cloudmap.namespace"],
                        Attributes::ServiceDiscoveryService(ServiceDiscoveryService {
                            namespace_id: output("cloudmap.namespace", "id"),
                            dns_record_type: "A".into(),
                            dns_ttl_seconds: 10,
                            routing_policy: "MULTIVALUE".into(),
                            health_check_failure_threshold: 1,
                        }),
                    );
                }
                Connection::VpcLink => ("network", "internal", "TCP", &[], Vec::new()),
                Connection::Public => (
                    "application",
                    "internet-facing",
                    "HTTP",
                    &["ec2.sg.lb"],
                    vec![output("ec2.sg.lb", "id")],
                ),
            };
        self.add(
            "elb.load-balancer",
            Kind::LoadBalancer,
            self.names.dashed("api"),
            lb_deps,
            Attributes::LoadBalancer(LoadBalancer {
                lb_type: lb_type.into(),
                scheme: scheme.into(),
                subnets: vec![context("default_subnets")],
                security_groups,
            }),
        )?;
        self.add(
            "elb.target-group",
            Kind::TargetGroup,
            self.names.dashed("event-api"),
            &[],
            Attributes::TargetGroup(TargetGroup {
                protocol: protocol.into(),
                port,
                target_type: "ip".into(),
                vpc_id: context("vpc_id"),
                health_check: health,
                deregistration_delay_seconds: 30,
            }),
        )?;
        let network = &self.spec.network;
        let (listener_protocol, certificate_arn, ssl_policy, paths) = match &network.https {
            Some(https) if network.event_api == Connection::Public => (
                "HTTPS",
                Some(https.certificate_arn.clone()),
                Some(TLS_POLICY.to_string()),
                network.publish.paths(),
            ),
            // The network load balancer forwards TCP; API Gateway in front
            // of it publishes the paths.
            _ if network.event_api == Connection::VpcLink => (protocol, None, None, &[][..]),
            _ => (protocol, None, None, network.publish.paths()),
        };
        let port = self.listener_port();
        self.add(
            "elb.listener",
            Kind::Listener,
            self.names.dashed(&format!("api-{port}")),
            &["elb.load-balancer", "elb.target-group"],
            Attributes::Listener(Listener {
                load_balancer_arn: output("elb.load-balancer", "arn"),
                protocol: listener_protocol.into(),
                port,
                target_group_arn: output("elb.target-group", "arn"),
                certificate_arn,
                ssl_policy,
                paths: paths.iter().map(|p| (*p).to_string()).collect(),
            }),
        )?;
        if self.spec.network.event_api == Connection::VpcLink {
            self.add(
                "apigateway.vpc-link",
                Kind::ApiGatewayVpcLink,
                self.names.dashed("api"),
                &["elb.load-balancer"],
                Attributes::ApiGatewayVpcLink(ApiGatewayVpcLink {
                    description: format!(
                        "stackctl {}: API Gateway to the event API",
                        self.spec.stack
                    ),
                    target_arns: vec![output("elb.load-balancer", "arn")],
                }),
            )?;
            // One REST API whose published paths (any method) go through
            // the link to the load balancer's listener, and one stage.
            let base = format!(
                "http://{}:{LISTENER_PORT}",
                output("elb.load-balancer", "dns_name")
            );
            let routes = api_gateway_routes(self.spec.network.publish, &base);
            self.add(
                "apigateway.rest-api",
                Kind::ApiGatewayRestApi,
                self.names.dashed("api"),
                &["apigateway.vpc-link", "elb.load-balancer"],
                Attributes::ApiGatewayRestApi(ApiGatewayRestApi {
                    description: format!("stackctl {}: the event API", self.spec.stack),
                    endpoint_type: "REGIONAL".into(),
                    routes,
                    vpc_link_id: output("apigateway.vpc-link", "id"),
                    stage: API_STAGE.into(),
                }),
            )?;
        }
        Ok(())
    }

    /// The ARN of the SSM parameter holding a secret.
    fn secret_parameter_arn(&self, secret: &str) -> String {
        // The name starts with `/`, which follows `parameter` in the ARN.
        self.arn(
            "ssm",
            &format!("parameter{}", self.names.secret_parameter(secret)),
        )
    }

    /// Engine variables `role` reads from SSM parameters when it starts
    /// instead of from its plain environment: the event keys and the
    /// runs-API token (the event API only: nothing else serves them) and the
    /// Redis auth token. The task definitions list them as `secrets`
    /// (variable → parameter ARN), the executor hosts fetch theirs at boot,
    /// and each role may read exactly its own. Pairs of (variable, secret),
    /// sorted by secret.
    fn engine_secrets(&self, role: Role) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if role == Role::EventApi {
            out.push((engine::config::ENV_API_TOKEN, "api_token"));
            out.push((engine::config::ENV_EVENT_KEYS, "event_keys"));
        }
        if self.uses_memorydb() || (self.uses_elasticache() && self.spec.state.redis.auth) {
            out.push((engine::config::ENV_REDIS_AUTH_TOKEN, "redis_auth_token"));
        }
        out
    }

    /// `api_token=${secret:api_token@version},...`: the versions of the
    /// engine's secret parameters, in its environment. A secret's new value
    /// leaves the parameter ARNs in `secrets` as they were; its new version
    /// changes this variable, so the task definitions get a new revision
    /// (the services roll) and the executors a new launch template version
    /// (for hosts started from then on).
    fn secrets_version(&self, role: Role) -> String {
        let parts: Vec<String> = self
            .engine_secrets(role)
            .into_iter()
            .map(|(_, name)| format!("{name}={}", secret_version(name)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }

    /// The engine container environment for one role (the engine's
    /// `STACKCTL_ENGINE_*` contract), and the resources its placeholders
    /// refer to. Secrets stored in SSM are not in it: see [`Self::engine_secrets`].
    fn engine_env(
        &self,
        role: Role,
    ) -> Result<(BTreeMap<String, String>, Vec<&'static str>), GraphError> {
        let mut deps = vec!["sqs.events", "sqs.work"];
        let redis_url = if self.uses_memorydb() {
            deps.push("memorydb.cluster");
            // The engine's user; its password is added by the engine from
            // STACKCTL_ENGINE_REDIS_AUTH_TOKEN (`engine_secrets`).
            format!(
                "rediss://{}@{}:{REDIS_PORT}",
                self.names.dashed("engine"),
                output("memorydb.cluster", "endpoint")
            )
        } else if self.uses_elasticache() {
            deps.push("elasticache.redis");
            let scheme = if self.spec.state.redis.transit_encryption {
                "rediss"
            } else {
                "redis"
            };
            // The auth token is added by the engine from
            // STACKCTL_ENGINE_REDIS_AUTH_TOKEN (`engine_secrets`).
            format!(
                "{scheme}://{}:{REDIS_PORT}",
                output("elasticache.redis", "primary_endpoint")
            )
        } else {
            secret("state_url")
        };
        if self.builds_image() {
            deps.push("ecr.engine");
        }
        let placement = Placement::Aws {
            // URLs, not names: no GetQueueUrl round trip at start, and
            // exactly the queues this stack created.
            events_queue: output("sqs.events", "url"),
            work_queue: output("sqs.work", "url"),
            redis_url,
            redis_cluster: self.uses_memorydb(),
            port: self.port(role),
            docker_socket: DOCKER_SOCKET.into(),
        };
        let config = engine_config(self.spec, self.functions, role.engine(), &placement);
        let config = serde_json::to_string(&config).expect("a configuration serializes");
        if config.len() > MAX_ENGINE_CONFIG_BYTES {
            return Err(GraphError::EngineConfigTooLarge {
                role: role.key().into(),
                len: config.len(),
                limit: MAX_ENGINE_CONFIG_BYTES,
            });
        }
        let values = BTreeMap::from([
            ("config", config),
            ("secrets_version", self.secrets_version(role)),
        ]);
        let mut env = template::engine_env(&values)?;
        env.extend(self.otel_env(role));
        Ok((env, deps))
    }

    /// The standard OpenTelemetry variables that point a role's traces at
    /// its collector, when traces go to X-Ray: the service name the X-Ray
    /// map shows (`{stack}-{role}`) and the spec's sampled fraction of new
    /// traces (a trace started upstream keeps its own decision).
    fn otel_env(&self, role: Role) -> BTreeMap<String, String> {
        let Some(o) = self.spec.observability.as_ref().filter(|_| self.xray()) else {
            return BTreeMap::new();
        };
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", OTEL_ENDPOINT.to_string()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            (
                "OTEL_SERVICE_NAME",
                format!("{}-{}", self.spec.stack, role.engine_role()),
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", o.sample.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The collector next to the engine in a task: not essential (a
    /// collector that fails costs traces, never the event API or the
    /// runner), its logs in the role's log group.
    fn collector_sidecar(&self, role: Role) -> Sidecar {
        Sidecar {
            name: OTEL_COLLECTOR_NAME.into(),
            image: OTEL_COLLECTOR_IMAGE.into(),
            command: vec![OTEL_COLLECTOR_CONFIG.into()],
            environment: BTreeMap::from([("AWS_REGION".to_string(), context("region"))]),
            log_group: self.names.log_group(role.key()),
            log_stream_prefix: role.key().into(),
            memory: OTEL_COLLECTOR_MEMORY,
            // The image's own probe of the collector's health extension.
            health_check: vec!["CMD".into(), "/healthcheck".into()],
        }
    }

    fn services(&mut self) -> Result<(), GraphError> {
        for (role, service) in [
            (Role::EventApi, &self.spec.services.event_api),
            (Role::Runner, &self.spec.services.runner),
        ] {
            let key = role.key();
            let (mut environment, env_deps) = self.engine_env(role)?;
            environment.insert(
                WORKER_THREADS_VAR.into(),
                worker_threads(service.cpu).to_string(),
            );
            let taskdef_id = format!("ecs.taskdef.{key}");
            let log_id = format!("logs.{key}");
            // The event API's task role is `iam.role.task`, the runner's its own.
            let task_role = if role == Role::EventApi {
                "iam.role.task"
            } else {
                "iam.role.runner"
            };
            let mut deps: Vec<&str> = vec!["iam.role.execution", task_role, &log_id];
            deps.extend(env_deps);
            let sidecars: Vec<Sidecar> = if self.xray() {
                vec![self.collector_sidecar(role)]
            } else {
                Vec::new()
            };
            // Fargate refuses containers whose memory adds up to more than the task's.
            let engine_memory = service.memory - sidecars.iter().map(|s| s.memory).sum::<u32>();
            // The collector is up before the engine's first spans.
            let depends_on = sidecars
                .iter()
                .map(|s| (s.name.clone(), "START".to_string()))
                .collect();
            self.add(
                &taskdef_id,
                Kind::EcsTaskDefinition,
                self.names.dashed(key),
                &deps,
                Attributes::EcsTaskDefinition(Box::new(EcsTaskDefinition {
                    cpu: service.cpu,
                    memory: service.memory,
                    network_mode: "awsvpc".into(),
                    requires_compatibilities: vec!["FARGATE".into()],
                    // The engine image's, known once it is built.
                    cpu_architecture: context("cpu_architecture"),
                    execution_role_arn: output("iam.role.execution", "arn"),
                    task_role_arn: output(task_role, "arn"),
                    container: Container {
                        name: key.into(),
                        image: context("image"),
                        command: vec!["--role".into(), role.engine_role().into()],
                        port: self.port(role),
                        environment,
                        secrets: self
                            .engine_secrets(role)
                            .into_iter()
                            .map(|(var, name)| (var.to_string(), self.secret_parameter_arn(name)))
                            .collect(),
                        log_group: self.names.log_group(key),
                        log_stream_prefix: key.into(),
                        memory: engine_memory,
                        // The image has no shell or curl: the engine binary
                        // checks its own role. Liveness only: a backend
                        // outage must not get every task replaced (the load
                        // balancer's check asks for readiness).
                        health_check: vec![
                            "CMD".into(),
                            crate::image::ENGINE_PATH.into(),
                            "health".into(),
                            "--port".into(),
                            self.port(role).to_string(),
                            "--check".into(),
                            "live".into(),
                        ],
                        depends_on,
                    },
                    sidecars,
                })),
            )?;
            self.service(role, service, &taskdef_id)?;
        }
        Ok(())
    }

    fn service(
        &mut self,
        role: Role,
        service: &Service,
        taskdef_id: &str,
    ) -> Result<(), GraphError> {
        let key = role.key();
        let sg_id = format!("ec2.sg.{key}");
        let task_policy = if role == Role::EventApi {
            "iam.policy.task"
        } else {
            "iam.policy.runner"
        };
        let mut deps: Vec<&str> = vec![
            "ecs.cluster",
            taskdef_id,
            &sg_id,
            "iam.policy.execution",
            task_policy,
        ];
        let mut load_balancers = Vec::new();
        let mut service_registries = Vec::new();
        if role == Role::EventApi {
            if self.has("elb.listener") {
                // The target group must be attached to a listener first.
                deps.extend(["elb.target-group", "elb.listener"]);
                load_balancers.push(ServiceLoadBalancer {
                    target_group_arn: output("elb.target-group", "arn"),
                    container_name: key.into(),
                    container_port: self.port(role),
                });
            }
            if self.has("cloudmap.service") {
                deps.push("cloudmap.service");
                service_registries.push(output("cloudmap.service", "arn"));
            }
        }
        let health_check_grace_period_seconds = (!load_balancers.is_empty()).then_some(60);
        self.add(
            &format!("ecs.service.{key}"),
            Kind::EcsService,
            self.names.dashed(key),
            &deps,
            Attributes::EcsService(Box::new(EcsService {
                cluster: output("ecs.cluster", "arn"),
                task_definition: output(taskdef_id, "arn"),
                desired_count: service.count,
                scaling_managed: service.scaling.is_some(),
                launch_type: "FARGATE".into(),
                subnets: vec![context("default_subnets")],
                security_groups: vec![output(&sg_id, "id")],
                assign_public_ip: true,
                circuit_breaker: true,
                rollback: true,
                minimum_healthy_percent: 100,
                maximum_percent: 200,
                load_balancers,
                service_registries,
                health_check_grace_period_seconds,
            })),
        )
    }

    fn executors(&mut self) -> Result<(), GraphError> {
        let ex = &self.spec.executors;
        let (env, env_deps) = self.engine_env(Role::Executors)?;
        let env_text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // Each secret is read from its SSM parameter at boot with the
        // instance role, so the launch template's user data never holds it.
        let mut secret_env: Vec<String> = self
            .engine_secrets(Role::Executors)
            .into_iter()
            .map(|(var, name)| {
                format!(
                    "engine_secret {var} '{}'",
                    self.names.secret_parameter(name)
                )
            })
            .collect();
        if secret_env.is_empty() {
            secret_env.push("# (this stack has none)".into());
        }
        // The host's Docker socket is root on the host: only for the docker driver.
        let docker_socket = if ex.drivers.contains(&Driver::Docker) {
            format!(
                "--volume {DOCKER_SOCKET}:{DOCKER_SOCKET} --group-add \"$(stat -c %g {DOCKER_SOCKET})\""
            )
        } else {
            String::new()
        };
        // Started before the engine, so its first spans have a receiver.
        let otel_collector = if self.xray() {
            let block = template::render(
                "executor-otel-collector.sh",
                template::EXECUTOR_OTEL_COLLECTOR,
                &BTreeMap::from([
                    ("collector_image", OTEL_COLLECTOR_IMAGE.to_string()),
                    ("collector_config", OTEL_COLLECTOR_CONFIG.to_string()),
                    ("collector_name", OTEL_COLLECTOR_NAME.to_string()),
                    ("region", context("region")),
                    ("log_group", self.names.log_group(Role::Executors.key())),
                ]),
            )?;
            // Its own paragraph after the secrets; nothing at all without it.
            format!("\n\n{}", block.trim_end())
        } else {
            String::new()
        };
        let user_data = template::render(
            "executor-user-data.sh",
            template::EXECUTOR_USER_DATA,
            &BTreeMap::from([
                ("engine_env", env_text.join("\n")),
                ("secret_env", secret_env.join("\n")),
                ("otel_collector", otel_collector),
                ("image", context("image")),
                ("region", context("region")),
                ("log_group", self.names.log_group(Role::Executors.key())),
                ("docker_socket", docker_socket),
            ]),
        )?;
        let mut deps = vec![
            "iam.instance-profile.executors",
            "ec2.sg.executors",
            "logs.executors",
        ];
        deps.extend(env_deps);
        self.add(
            "ec2.launch-template.executors",
            Kind::LaunchTemplate,
            self.names.dashed("executors"),
            &deps,
            Attributes::LaunchTemplate(LaunchTemplate {
                image_id: context("ami_id"),
                instance_type: ex.instance_type.clone(),
                instance_profile_arn: output("iam.instance-profile.executors", "arn"),
                security_group_ids: vec![output("ec2.sg.executors", "id")],
                associate_public_ip_address: true,
                http_tokens: "required".into(),
                // One hop: the executor (host networking) reaches the
                // instance role; containers of docker steps do not.
                http_put_response_hop_limit: 1,
                user_data,
            }),
        )?;
        let (min_size, max_size) = match &ex.scaling {
            Some(s) => {
                let (min, max) = bounds(s);
                (min.unwrap_or(ex.min), max)
            }
            None => (ex.min, ex.max),
        };
        self.add(
            "autoscaling.group.executors",
            Kind::AutoScalingGroup,
            self.names.dashed("executors"),
            &["ec2.launch-template.executors", "iam.policy.executors"],
            Attributes::AutoScalingGroup(AutoScalingGroup {
                launch_template_id: output("ec2.launch-template.executors", "id"),
                launch_template_version: output("ec2.launch-template.executors", "latest_version"),
                min_size,
                max_size,
                // AWS refuses a desired capacity outside the bounds.
                desired_capacity: ex.desired.clamp(min_size, max_size.max(min_size)),
                scaling_managed: ex.scaling.is_some(),
                subnets: vec![context("default_subnets")],
                health_check_type: "EC2".into(),
                health_check_grace_period_seconds: 120,
            }),
        )
    }

    fn scaling(&mut self) -> Result<(), GraphError> {
        for (role, service) in [
            (Role::EventApi, &self.spec.services.event_api),
            (Role::Runner, &self.spec.services.runner),
        ] {
            let Some(scaling) = &service.scaling else {
                continue;
            };
            let key = role.key();
            let target_id = format!("scaling.target.{key}");
            let service_id = format!("ecs.service.{key}");
            let (min, max) = bounds(scaling);
            self.add(
                &target_id,
                Kind::ScalableTarget,
                self.names.scalable_target(key),
                &[&service_id],
                Attributes::ScalableTarget(ScalableTarget {
                    service_namespace: "ecs".into(),
                    resource_id: self.names.scalable_target(key),
                    scalable_dimension: "ecs:service:DesiredCount".into(),
                    min_capacity: min.unwrap_or(service.count),
                    max_capacity: max,
                }),
            )?;
            let ecs_dimensions = BTreeMap::from([
                ("ClusterName".to_string(), self.names.cluster()),
                ("ServiceName".to_string(), self.names.dashed(key)),
            ]);
            match scaling {
                Scaling::Alb {
                    target_requests,
                    scale_out_cooldown,
                    scale_in_cooldown,
                    ..
                } => {
                    if !(role == Role::EventApi
                        && self.spec.network.event_api == Connection::Public)
                    {
                        return Err(GraphError::AlbScalingWithoutAlb { target: key.into() });
                    }
                    self.add(
                        &format!("scaling.policy.{key}.requests"),
                        Kind::ScalingPolicy,
                        self.names.dashed(&format!("{key}-requests")),
                        &[&target_id, "elb.load-balancer", "elb.target-group"],
                        Attributes::ScalingPolicy(ScalingPolicy {
                            target: output(&target_id, "resource_id"),
                            policy_type: "TargetTrackingScaling".into(),
                            step_scaling: None,
                            target_tracking: Some(TargetTracking {
                                predefined_metric: "ALBRequestCountPerTarget".into(),
                                resource_label: format!(
                                    "{}/{}",
                                    output("elb.load-balancer", "arn_suffix"),
                                    output("elb.target-group", "arn_suffix")
                                ),
                                target_value: f64::from(*target_requests),
                                scale_out_cooldown_seconds: scale_out_cooldown.as_secs(),
                                scale_in_cooldown_seconds: scale_in_cooldown.as_secs(),
                            }),
                        }),
                    )?;
                }
                Scaling::Cpu {
                    scale_out,
                    scale_in,
                    ..
                } => {
                    let metric = Metric {
                        namespace: "AWS/ECS",
                        name: "CPUUtilization",
                        dimensions: ecs_dimensions,
                        dependency: None,
                    };
                    self.step_policies(
                        key,
                        Kind::ScalingPolicy,
                        &target_id,
                        &metric,
                        scale_out,
                        scale_in,
                    )?;
                }
                Scaling::Sqs {
                    queue,
                    scale_out,
                    scale_in,
                    ..
                } => {
                    let metric = self.queue_metric(key, queue)?;
                    self.step_policies(
                        key,
                        Kind::ScalingPolicy,
                        &target_id,
                        &metric,
                        scale_out,
                        scale_in,
                    )?;
                }
            }
        }
        let Some(scaling) = &self.spec.executors.scaling else {
            return Ok(());
        };
        let key = Role::Executors.key();
        let (metric, scale_out, scale_in) = match scaling {
            Scaling::Alb { .. } => {
                return Err(GraphError::AlbScalingWithoutAlb { target: key.into() });
            }
            Scaling::Cpu {
                scale_out,
                scale_in,
                ..
            } => {
                let metric = Metric {
                    namespace: "AWS/EC2",
                    name: "CPUUtilization",
                    dimensions: BTreeMap::from([(
                        "AutoScalingGroupName".to_string(),
                        self.names.dashed(key),
                    )]),
                    dependency: None,
                };
                (metric, scale_out, scale_in)
            }
            Scaling::Sqs {
                queue,
                scale_out,
                scale_in,
                ..
            } => (self.queue_metric(key, queue)?, scale_out, scale_in),
        };
        self.step_policies(
            key,
            Kind::AsgScalingPolicy,
            "autoscaling.group.executors",
            &metric,
            scale_out,
            scale_in,
        )
    }

    /// The stack's own SNS topic, when the alarms mail addresses.
    fn alarm_topic(&mut self) -> Result<(), GraphError> {
        let Some(alarms) = self.alarm_settings() else {
            return Ok(());
        };
        if alarms.topic_arn.is_some() || alarms.email.is_empty() {
            return Ok(());
        }
        let mut email = alarms.email.clone();
        email.sort();
        self.add(
            "sns.alarms",
            Kind::SnsTopic,
            self.names.dashed("alarms"),
            &[],
            Attributes::SnsTopic(SnsTopic { email }),
        )
    }

    /// The alarms `observability.alarms` adds to the dead-letter queues':
    /// events waiting too long for the runner, and the event API answering
    /// 5xx where a load balancer or API Gateway in front of it counts them
    /// (an `internal` or `internal_dns` event API has nothing that does);
    /// a load balancer's own 5xx too.
    fn alarms(&mut self) -> Result<(), GraphError> {
        let Some(settings) = self.alarm_settings().cloned() else {
            return Ok(());
        };
        let topic = self.alarm_topic_arn().and_then(|t| t.1);
        let events = self.names.dashed("events");
        let age = settings.queue_age.as_secs();
        let alarm = self.report_alarm(CloudWatchAlarm {
            namespace: "AWS/SQS".into(),
            metric_name: "ApproximateAgeOfOldestMessage".into(),
            dimensions: BTreeMap::from([("QueueName".to_string(), events.clone())]),
            statistic: "Maximum".into(),
            period_seconds: ALARM_PERIOD,
            evaluation_periods: 1,
            threshold: age as f64,
            comparison_operator: "GreaterThanThreshold".into(),
            alarm_actions: Vec::new(),
            ok_actions: Vec::new(),
            description: Some(format!(
                "stackctl {}: an event has waited more than {} in {events} for the runner: the runner is down, failing or too few (`stackctl status`, `stackctl logs runner`, `stackctl scale runner N`)",
                self.spec.stack, settings.queue_age
            )),
            // SQS stops publishing for a queue idle for hours: nothing waits.
            treat_missing_data: Some("notBreaching".into()),
        });
        let mut deps = vec!["sqs.events"];
        deps.extend(topic);
        self.add(
            "cloudwatch.alarm.events-age",
            Kind::CloudWatchAlarm,
            self.names.dashed("events-age"),
            &deps,
            Attributes::CloudWatchAlarm(alarm),
        )?;
        let lb = || {
            (
                "LoadBalancer".to_string(),
                output("elb.load-balancer", "arn_suffix"),
            )
        };
        /// One 5xx count of whatever fronts the event API.
        struct Front<'a> {
            /// The node id's and the alarm name's last part.
            name: &'a str,
            namespace: &'a str,
            metric: &'a str,
            dimensions: BTreeMap<String, String>,
            deps: &'a [&'a str],
            /// What the count means, `{n}` the threshold.
            what: &'a str,
        }
        let fronts: Vec<Front<'_>> = match self.spec.network.event_api {
            Connection::Internal | Connection::InternalDns => return Ok(()),
            Connection::Public => vec![
                Front {
                    name: "event-api-5xx",
                    namespace: "AWS/ApplicationELB",
                    metric: "HTTPCode_Target_5XX_Count",
                    dimensions: BTreeMap::from([
                        lb(),
                        (
                            "TargetGroup".to_string(),
                            output("elb.target-group", "arn_suffix"),
                        ),
                    ]),
                    deps: &["elb.load-balancer", "elb.target-group"],
                    what: "the event API answered {n} or more 5xx a minute (its load balancer's count)",
                },
                // The load balancer's own 5xx: 503 with no healthy
                // event-API task, 502/504 when tasks do not answer. The
                // targets' count above never sees those.
                Front {
                    name: "event-api-lb-5xx",
                    namespace: "AWS/ApplicationELB",
                    metric: "HTTPCode_ELB_5XX_Count",
                    dimensions: BTreeMap::from([lb()]),
                    deps: &["elb.load-balancer"],
                    what: "the load balancer answered {n} or more 5xx a minute itself (no healthy event-API task, or tasks not answering)",
                },
            ],
            Connection::VpcLink => vec![Front {
                name: "event-api-5xx",
                namespace: "AWS/ApiGateway",
                metric: "5XXError",
                dimensions: BTreeMap::from([
                    ("ApiName".to_string(), self.names.dashed("api")),
                    ("Stage".to_string(), API_STAGE.to_string()),
                ]),
                deps: &["apigateway.rest-api"],
                what: "the event API answered {n} or more 5xx a minute (API Gateway's count, its integration's failures included)",
            }],
        };
        for front in fronts {
            let Front {
                name,
                namespace,
                metric,
                dimensions,
                deps: front_deps,
                what,
            } = front;
            let what = what.replace("{n}", &settings.api_errors_per_minute.to_string());
            let alarm = self.report_alarm(CloudWatchAlarm {
                namespace: namespace.into(),
                metric_name: metric.into(),
                dimensions,
                statistic: "Sum".into(),
                period_seconds: ALARM_PERIOD,
                evaluation_periods: API_ERROR_PERIODS,
                threshold: f64::from(settings.api_errors_per_minute),
                comparison_operator: "GreaterThanOrEqualToThreshold".into(),
                alarm_actions: Vec::new(),
                ok_actions: Vec::new(),
                description: Some(format!(
                    "stackctl {}: {what} for {API_ERROR_PERIODS} minutes: senders are refused (`stackctl status`, `stackctl logs event-api`)",
                    self.spec.stack
                )),
                // The count is only published in minutes that have a 5xx.
                treat_missing_data: Some("notBreaching".into()),
            });
            let mut deps = front_deps.to_vec();
            deps.extend(topic);
            self.add(
                &format!("cloudwatch.alarm.{name}"),
                Kind::CloudWatchAlarm,
                self.names.dashed(name),
                &deps,
                Attributes::CloudWatchAlarm(alarm),
            )?;
        }
        Ok(())
    }

    fn queue_metric(&self, target: &str, queue: &str) -> Result<Metric, GraphError> {
        if !crate::spec::Queues::NAMES.contains(&queue) {
            return Err(GraphError::UnknownScalingQueue {
                target: target.into(),
                queue: queue.into(),
            });
        }
        Ok(Metric {
            namespace: "AWS/SQS",
            name: "ApproximateNumberOfMessagesVisible",
            dimensions: BTreeMap::from([("QueueName".to_string(), self.names.dashed(queue))]),
            dependency: Some(format!("sqs.{queue}")),
        })
    }

    /// A scale-out and a scale-in step policy, each with the alarm that
    /// runs it.
    fn step_policies(
        &mut self,
        key: &str,
        kind: Kind,
        target_id: &str,
        metric: &Metric,
        scale_out: &Step,
        scale_in: &Step,
    ) -> Result<(), GraphError> {
        let (policy_prefix, target) = if kind == Kind::AsgScalingPolicy {
            ("autoscaling.policy", output(target_id, "name"))
        } else {
            ("scaling.policy", output(target_id, "resource_id"))
        };
        for (side, step, comparison, periods) in [
            (
                "out",
                scale_out,
                "GreaterThanOrEqualToThreshold",
                OUT_EVALUATION_PERIODS,
            ),
            (
                "in",
                scale_in,
                "LessThanOrEqualToThreshold",
                IN_EVALUATION_PERIODS,
            ),
        ] {
            let policy_id = format!("{policy_prefix}.{key}.{side}");
            let name = self.names.dashed(&format!("{key}-scale-{side}"));
            // Bounds are relative to the alarm threshold: out acts above it, in below it.
            let (lower_bound, upper_bound) = if side == "out" {
                (Some(0.0), None)
            } else {
                (None, Some(0.0))
            };
            self.add(
                &policy_id,
                kind,
                name.clone(),
                &[target_id],
                Attributes::ScalingPolicy(ScalingPolicy {
                    target: target.clone(),
                    policy_type: "StepScaling".into(),
                    step_scaling: Some(StepScaling {
                        adjustment_type: "ChangeInCapacity".into(),
                        cooldown_seconds: step.cooldown.as_secs(),
                        metric_aggregation: "Average".into(),
                        steps: vec![StepAdjustment {
                            lower_bound,
                            upper_bound,
                            adjustment: step.adjustment,
                        }],
                    }),
                    target_tracking: None,
                }),
            )?;
            let mut deps: Vec<&str> = vec![&policy_id];
            if let Some(dep) = &metric.dependency {
                deps.push(dep);
            }
            self.add(
                &format!("cloudwatch.alarm.{key}.{side}"),
                Kind::CloudWatchAlarm,
                name,
                &deps,
                Attributes::CloudWatchAlarm(CloudWatchAlarm {
                    namespace: metric.namespace.into(),
                    metric_name: metric.name.into(),
                    dimensions: metric.dimensions.clone(),
                    statistic: "Average".into(),
                    period_seconds: ALARM_PERIOD,
                    evaluation_periods: periods,
                    threshold: step.threshold,
                    comparison_operator: comparison.into(),
                    alarm_actions: vec![output(&policy_id, "arn")],
                    ok_actions: Vec::new(),
                    description: None,
                    treat_missing_data: None,
                }),
            )?;
        }
        Ok(())
    }
}

/// The CloudWatch metric a step-scaling alarm watches.
struct Metric {
    namespace: &'static str,
    name: &'static str,
    dimensions: BTreeMap<String, String>,
    /// The resource the metric belongs to, when it is not already a
    /// dependency of the policy.
    dependency: Option<String>,
}

fn bounds(scaling: &Scaling) -> (Option<u32>, u32) {
    match scaling {
        Scaling::Cpu { min, max, .. }
        | Scaling::Sqs { min, max, .. }
        | Scaling::Alb { min, max, .. } => (*min, *max),
    }
}

/// `arn:aws:ecr:REGION:ACCOUNT:repository/REPO` for an ECR image URI
/// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:tag|@digest]`); `None` for
/// other registries, which need no IAM permission.
pub(crate) fn ecr_repository_arn(uri: &str) -> Option<String> {
    let (host, path) = uri.split_once('/')?;
    let mut parts = host.split('.');
    let account = parts.next()?;
    if parts.next()? != "dkr" || parts.next()? != "ecr" {
        return None;
    }
    let region = parts.next()?;
    let repo = path.split(['@', ':']).next()?;
    Some(format!("arn:aws:ecr:{region}:{account}:repository/{repo}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_arns_from_image_uris() {
        assert_eq!(
            ecr_repository_arn(
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/engine@sha256:ab"
            )
            .as_deref(),
            Some("arn:aws:ecr:eu-west-1:123456789012:repository/team/engine")
        );
        assert_eq!(
            ecr_repository_arn("123456789012.dkr.ecr.us-east-1.amazonaws.com/engine:1.2")
                .as_deref(),
            Some("arn:aws:ecr:us-east-1:123456789012:repository/engine")
        );
        assert_eq!(ecr_repository_arn("ghcr.io/acme/engine:1"), None);
        assert_eq!(ecr_repository_arn("busybox"), None);
    }
}
