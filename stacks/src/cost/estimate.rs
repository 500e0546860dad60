//! A footprint priced line by line ([`Estimate`]), the difference of two
//! ([`CostChange`], what `plan` shows), and their human renderings.

use std::fmt::Write as _;

use serde::Serialize;

use super::CostError;
use super::footprint::{At, Footprint, StateEngine};
use super::keys;
use super::prices::{PriceTable, Provenance, priced};
use crate::arch::Architecture;

/// One priced line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// The AWS service billed: `Fargate`, `EC2`, `SQS`, ...
    pub service: &'static str,
    /// What of the stack: `runner vCPU`, `executors t3.medium`, ...
    pub item: String,
    /// How the quantity comes about, e.g. `4 tasks x 0.5 vCPU x 730 h`.
    pub detail: String,
    /// Billed units a month, at the counts.
    pub quantity: f64,
    /// The unit: `vCPU-hours`, `requests`, ...
    pub unit: &'static str,
    /// Price of one unit.
    pub unit_price: f64,
    /// quantity x unit price.
    pub monthly: f64,
    /// With every scaled part at its lower bound.
    pub monthly_min: f64,
    /// With every scaled part at its upper bound.
    pub monthly_max: f64,
    /// Priced per event (zero without events).
    pub per_event: bool,
    /// The price's entry in the table, e.g. `ec2_instance_hour.t3.medium`.
    pub price_key: String,
    /// Where the unit price comes from: the table, or the Price List API.
    pub price_source: PriceSource,
}

/// Where a line's unit price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The price table (shipped, or `--prices FILE`).
    Table,
    /// The AWS Price List API (`--live-prices`).
    Live,
}

impl PriceSource {
    /// `table` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Table => "table",
            PriceSource::Live => "live",
        }
    }
}

/// A stack's monthly estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The stack.
    pub stack: String,
    /// The region priced.
    pub region: String,
    /// The engine image's CPU architecture (Fargate's rate).
    pub architecture: Architecture,
    /// `USD`.
    pub currency: String,
    /// Where the prices come from.
    pub prices: Provenance,
    /// Hours in the month priced.
    pub hours_per_month: f64,
    /// Events a month the request-priced lines are for.
    pub events_per_month: u64,
    /// Their average rate.
    pub events_per_second: f64,
    /// The lines.
    pub lines: Vec<Line>,
    /// The sum at the counts.
    pub monthly: f64,
    /// The sum with every scaled part at its lower bound.
    pub monthly_min: f64,
    /// The sum with every scaled part at its upper bound.
    pub monthly_max: f64,
    /// `monthly` over the events, per million (with events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_million_events: Option<f64>,
    /// The usage figures the lines rest on, with their sources.
    pub assumptions: Vec<String>,
    /// What the estimate leaves out.
    pub not_included: Vec<&'static str>,
}

/// What the estimates leave out.
const NOT_INCLUDED: &[&str] = &[
    "data transfer (between Availability Zones, e.g. to Redis replicas, and out to the internet)",
    "free tiers (e.g. the first million SQS requests a month)",
    "ECR storage of the engine image (about 14 MiB) and snapshot storage beyond the free allowance",
    "MemoryDB data written",
    "SQS requests of load-balancer health checks (a readiness check asks SQS for the queue depth)",
    "Savings Plans, reserved nodes and taxes",
];

struct Builder<'t> {
    lines: Vec<Line>,
    table: &'t PriceTable,
}

impl Builder<'_> {
    /// Adds a line whose quantity `qty` gives at each count, priced at
    /// `unit_price`, the table's entry `price_key`.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        service: &'static str,
        item: impl Into<String>,
        detail: impl Into<String>,
        unit: &'static str,
        (price_key, unit_price): (String, f64),
        per_event: bool,
        qty: impl Fn(At) -> f64,
    ) {
        let price_source = match &self.table.live {
            Some(live) if live.has(&price_key) => PriceSource::Live,
            _ => PriceSource::Table,
        };
        let quantity = qty(At::Count);
        self.lines.push(Line {
            service,
            item: item.into(),
            detail: detail.into(),
            quantity,
            unit,
            unit_price,
            monthly: quantity * unit_price,
            monthly_min: qty(At::Min) * unit_price,
            monthly_max: qty(At::Max) * unit_price,
            per_event,
            price_key,
            price_source,
        });
    }
}

/// Prices `fp` in `region` from `table`, with `events_per_month` for the
/// request-priced lines (none without events).
pub fn estimate_footprint(
    stack: &str,
    region: &str,
    fp: &Footprint,
    table: &PriceTable,
    events_per_month: u64,
) -> Result<Estimate, CostError> {
    let p = table.region(region)?;
    let usage = &table.usage;
    let hours = table.hours_per_month;
    let events = events_per_month as f64;
    let rate = events / (hours * 3600.0);
    let mut b = Builder {
        lines: Vec::new(),
        table,
    };
    let h = fmt_num(hours);

    let fargate = p.fargate(fp.architecture, region, table)?;
    for s in &fp.services {
        let vcpu = f64::from(s.cpu) / 1024.0;
        let gb = f64::from(s.memory) / 1024.0;
        let tasks = counts(s.count, s.min, s.max, "task");
        b.add(
            "Fargate",
            format!("{} vCPU", s.name),
            format!("{tasks} x {} vCPU x {h} h", fmt_num(vcpu)),
            "vCPU-hours",
            (
                keys::fargate(fp.architecture, "vcpu_hour"),
                fargate.vcpu_hour,
            ),
            false,
            |at| at.of(s.count, s.min, s.max) * vcpu * hours,
        );
        b.add(
            "Fargate",
            format!("{} memory", s.name),
            format!("{tasks} x {} GB x {h} h", fmt_num(gb)),
            "GB-hours",
            (keys::fargate(fp.architecture, "gb_hour"), fargate.gb_hour),
            false,
            |at| at.of(s.count, s.min, s.max) * gb * hours,
        );
    }
    if let Some(e) = &fp.executors {
        let price = priced(
            &p.ec2_instance_hour,
            &e.instance_type,
            "EC2 instance type",
            region,
            table,
        )?;
        let instances = counts(e.desired, e.min, e.max, "instance");
        b.add(
            "EC2",
            format!("executors {}", e.instance_type),
            format!("{instances} x {h} h"),
            "instance-hours",
            (keys::ec2(&e.instance_type), price),
            false,
            |at| at.of(e.desired, e.min, e.max) * hours,
        );
        let gb = usage.executor_root_volume_gb;
        b.add(
            "EBS",
            "executors' root volumes",
            format!("{instances} x {} GB gp3", fmt_num(gb)),
            "GB-months",
            (keys::EBS_GP3.into(), p.ebs_gp3_gb_month),
            false,
            |at| at.of(e.desired, e.min, e.max) * gb,
        );
    }
    let ips = |at: At| {
        let tasks: f64 = fp
            .services
            .iter()
            .filter(|s| s.public_ip)
            .map(|s| at.of(s.count, s.min, s.max))
            .sum();
        let hosts = fp
            .executors
            .as_ref()
            .filter(|e| e.public_ip)
            .map_or(0.0, |e| at.of(e.desired, e.min, e.max));
        tasks + hosts
    };
    if ips(At::Max) > 0.0 {
        b.add(
            "VPC",
            "public IPv4 addresses",
            format!(
                "{} (a task's or an executor's each) x {h} h",
                range_text(ips(At::Count), ips(At::Min), ips(At::Max))
            ),
            "address-hours",
            (keys::PUBLIC_IPV4.into(), p.public_ipv4_hour),
            false,
            |at| ips(at) * hours,
        );
    }
    if let Some(st) = &fp.state {
        let (service, map, what) = match st.engine {
            StateEngine::ElastiCache => (
                "ElastiCache",
                &p.elasticache_node_hour,
                "ElastiCache node type",
            ),
            StateEngine::MemoryDb => ("MemoryDB", &p.memorydb_node_hour, "MemoryDB node type"),
        };
        let price = priced(map, &st.node_type, what, region, table)?;
        let nodes = f64::from(st.nodes);
        b.add(
            service,
            format!("Redis {}", st.node_type),
            format!(
                "{} node{} ({} replica{}) x {h} h",
                st.nodes,
                plural(nodes),
                st.replicas,
                plural(f64::from(st.replicas))
            ),
            "node-hours",
            (keys::state(st.engine, &st.node_type), price),
            false,
            |_| nodes * hours,
        );
    }
    for lb in &fp.load_balancers {
        let (kind, hour, lcu, unit) = if lb.lb_type == "network" {
            ("network", p.nlb_hour, p.nlb_lcu_hour, "NLCU-hours")
        } else {
            ("application", p.alb_hour, p.alb_lcu_hour, "LCU-hours")
        };
        b.add(
            "ELB",
            format!("{kind} load balancer ({})", lb.scheme),
            format!("{h} h"),
            "hours",
            (keys::lb(&lb.lb_type, "hour"), hour),
            false,
            |_| hours,
        );
        let lcus = usage.lcus_per_load_balancer;
        b.add(
            "ELB",
            format!("{kind} load balancer capacity units"),
            format!("{} x {h} h", fmt_num(lcus)),
            unit,
            (keys::lb(&lb.lb_type, "lcu_hour"), lcu),
            false,
            |_| lcus * hours,
        );
    }
    if fp.vpc_links > 0 {
        let n = f64::from(fp.vpc_links);
        b.add(
            "API Gateway",
            "VPC link",
            format!(
                "{} x {h} h (no charge of its own; its load balancer is above)",
                fp.vpc_links
            ),
            "hours",
            (keys::VPC_LINK.into(), p.vpc_link_hour),
            false,
            |_| n * hours,
        );
    }
    if fp.rest_apis > 0 && events > 0.0 {
        let requests = events / usage.events_per_request.max(f64::MIN_POSITIVE);
        b.add(
            "API Gateway",
            "REST API requests",
            format!(
                "{} events / {} a request",
                fmt_num(events),
                fmt_num(usage.events_per_request)
            ),
            "million requests",
            (keys::REST_API.into(), p.rest_api_requests_million),
            true,
            |_| requests / 1e6,
        );
    }
    let band = usage.sqs_band(rate);
    if events > 0.0
        && let Some(band) = band
    {
        b.add(
            "SQS",
            "requests per event",
            format!(
                "{} events x {:.2} (event API {:.2}, runner {:.2}, executors {:.2})",
                fmt_num(events),
                band.total(),
                band.event_api,
                band.runner,
                band.executor
            ),
            "million requests",
            (keys::SQS.into(), p.sqs_requests_million),
            true,
            |_| events * band.total() / 1e6,
        );
    }
    let idle = &usage.sqs_idle_requests_per_hour;
    let polls = |at: At| {
        let (_, runners, executors) = fp.consumers(at);
        (runners * idle.runner + executors * idle.executor) * hours
    };
    if polls(At::Max) > 0.0 {
        let (_, runners, executors) = fp.consumers(At::Count);
        b.add(
            "SQS",
            "idle polling",
            format!(
                "({} runner{} x {} + {} executor{} x {}) an hour x {h} h",
                fmt_num(runners),
                plural(runners),
                fmt_num(idle.runner),
                fmt_num(executors),
                plural(executors),
                fmt_num(idle.executor)
            ),
            "million requests",
            (keys::SQS.into(), p.sqs_requests_million),
            false,
            |at| polls(at) / 1e6,
        );
    }
    let task_gb = |at: At| {
        let (tasks, _, executors) = fp.consumers(at);
        (tasks + executors) * usage.log_bytes_per_task_hour * hours / 1e9
    };
    let event_gb = events * usage.log_bytes_per_event / 1e9;
    if task_gb(At::Max) + event_gb > 0.0 {
        let (tasks, _, executors) = fp.consumers(At::Count);
        b.add(
            "CloudWatch Logs",
            "ingestion",
            format!(
                "{} tasks and executors x {} B/h x {h} h + {} events x {} B",
                fmt_num(tasks + executors),
                fmt_num(usage.log_bytes_per_task_hour),
                fmt_num(events),
                fmt_num(usage.log_bytes_per_event)
            ),
            "GB",
            (keys::LOGS_INGESTED.into(), p.logs_ingested_gb),
            false,
            |at| task_gb(at) + event_gb,
        );
        // At steady state a log group holds `retention` days of ingestion.
        let kept = f64::from(fp.log_retention_days) / (hours / 24.0);
        b.add(
            "CloudWatch Logs",
            "storage",
            format!("{} days of ingestion kept", fp.log_retention_days),
            "GB-months",
            (keys::LOGS_STORED.into(), p.logs_stored_gb_month),
            false,
            |at| (task_gb(at) + event_gb) * kept,
        );
    }
    if fp.alarms > 0 {
        let n = f64::from(fp.alarms);
        b.add(
            "CloudWatch",
            "alarms",
            format!(
                "{} (scaling, dead-letter and observability alarms)",
                fp.alarms
            ),
            "alarm-months",
            (keys::ALARM.into(), p.alarm_month),
            false,
            |_| n,
        );
    }
    if fp.cloud_map_namespaces > 0 {
        let n = f64::from(fp.cloud_map_namespaces);
        b.add(
            "Route 53",
            "Cloud Map namespace (private hosted zone)",
            format!("{} namespace{}", fp.cloud_map_namespaces, plural(n)),
            "zone-months",
            (keys::HOSTED_ZONE.into(), p.hosted_zone_month),
            false,
            |_| n,
        );
        let registered = |at: At| -> f64 {
            fp.services
                .iter()
                .filter(|s| s.cloud_map)
                .map(|s| at.of(s.count, s.min, s.max))
                .sum()
        };
        if registered(At::Max) > 0.0 {
            b.add(
                "Cloud Map",
                "registered instances",
                format!(
                    "{} task{}",
                    range_text(
                        registered(At::Count),
                        registered(At::Min),
                        registered(At::Max)
                    ),
                    plural(registered(At::Count))
                ),
                "instance-months",
                (keys::CLOUD_MAP.into(), p.cloud_map_instance_month),
                false,
                registered,
            );
        }
    }

    let lines = b.lines;
    let monthly = lines.iter().map(|l| l.monthly).sum::<f64>();
    let mut assumptions = Vec::new();
    if events > 0.0
        && let Some(band) = band
    {
        assumptions.push(format!(
            "each event starts one run of one step; SQS requests per event at {} events/s on \
             average: the figures from {} events/s on ({})",
            fmt_num(round2(rate)),
            fmt_num(band.from_rate),
            band.source
        ));
    }
    assumptions.push(format!(
        "idle polling: {} requests an hour per runner task, {} per executor ({}); counted on \
         top of the per-event requests, an upper bound under load, where polls carry messages",
        fmt_num(idle.runner),
        fmt_num(idle.executor),
        idle.source
    ));
    assumptions.push(format!(
        "logs: {} bytes an hour per task or executor and {} bytes per event ({})",
        fmt_num(usage.log_bytes_per_task_hour),
        fmt_num(usage.log_bytes_per_event),
        usage.logs_source
    ));
    if !fp.load_balancers.is_empty() {
        assumptions.push(format!("load balancers: {}", usage.lcus_source));
    }
    if fp.rest_apis > 0 {
        assumptions.push(format!(
            "API Gateway: {} events per request",
            fmt_num(usage.events_per_request)
        ));
    }
    if fp.executors.is_some() {
        assumptions.push(format!(
            "executors' root volumes: {}",
            usage.executor_root_volume_source
        ));
    }
    Ok(Estimate {
        stack: stack.to_string(),
        region: region.to_string(),
        architecture: fp.architecture,
        currency: table.currency.clone(),
        prices: table.provenance(),
        hours_per_month: hours,
        events_per_month,
        events_per_second: rate,
        monthly,
        monthly_min: lines.iter().map(|l| l.monthly_min).sum(),
        monthly_max: lines.iter().map(|l| l.monthly_max).sum(),
        per_million_events: (events > 0.0).then(|| monthly / events * 1e6),
        lines,
        assumptions,
        not_included: NOT_INCLUDED.to_vec(),
    })
}

impl Estimate {
    /// The line for `item`.
    pub fn line(&self, item: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.item == item)
    }

    /// The human rendering: a table of the lines, the total with its
    /// range, the cost per million events, and what the figures rest on.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Monthly estimate for stack `{}` in {} ({}, {} hours a month, {})",
            self.stack,
            self.region,
            self.architecture.as_str(),
            fmt_num(self.hours_per_month),
            self.currency
        );
        let live_lines = self
            .lines
            .iter()
            .filter(|l| l.price_source == PriceSource::Live)
            .count();
        if let Some(live) = &self.prices.live {
            let _ = writeln!(
                out,
                "Prices: {live_lines} of {} lines live from the AWS Price List API (GetProducts at \
                 its {} endpoint, which serves every region's prices; on-demand terms effective {})",
                self.lines.len(),
                live.endpoint_region,
                effective_dates(live)
            );
            if live_lines < self.lines.len() {
                let _ = writeln!(
                    out,
                    "        the lines marked `table` from: {}",
                    self.prices.source
                );
            }
            for u in &live.unpriced {
                let _ = writeln!(out, "        no live price for {}: {}", u.what, u.reason);
            }
        } else {
            let _ = writeln!(out, "Prices: {}", self.prices.source);
        }
        if let Some(file) = &self.prices.file {
            let _ = writeln!(out, "        (from {file})");
        }
        let _ = writeln!(out);
        let range = |l: &Line| {
            if (l.monthly_min - l.monthly).abs() > 1e-9 || (l.monthly_max - l.monthly).abs() > 1e-9
            {
                format!("{}..{}", money(l.monthly_min), money(l.monthly_max))
            } else {
                String::new()
            }
        };
        let header = [
            "item".to_string(),
            "quantity a month".to_string(),
            "unit price".to_string(),
            "monthly".to_string(),
            "at min..max".to_string(),
        ];
        let rows: Vec<[String; 5]> = self
            .lines
            .iter()
            .map(|l| {
                [
                    format!("{} {}", l.service, l.item),
                    format!("{} {}", fmt_qty(l.quantity), l.unit),
                    if self.prices.live.is_some() {
                        format!("{} {}", unit_price(l.unit_price), l.price_source.as_str())
                    } else {
                        unit_price(l.unit_price)
                    },
                    money(l.monthly),
                    range(l),
                ]
            })
            .collect();
        let total = [
            "total".to_string(),
            String::new(),
            String::new(),
            money(self.monthly),
            format!("{}..{}", money(self.monthly_min), money(self.monthly_max)),
        ];
        let all: Vec<&[String; 5]> = std::iter::once(&header)
            .chain(rows.iter())
            .chain(std::iter::once(&total))
            .collect();
        let w: Vec<usize> = (0..5)
            .map(|i| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let row = |out: &mut String, r: &[String; 5]| {
            let line = format!(
                "  {:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4],
            );
            let _ = writeln!(out, "{}", line.trim_end());
        };
        row(&mut out, &header);
        for (r, l) in rows.iter().zip(&self.lines) {
            row(&mut out, r);
            let _ = writeln!(out, "      {}", l.detail);
        }
        let _ = writeln!(out, "  {}", "-".repeat(w.iter().sum::<usize>() + 8));
        row(&mut out, &total);
        let _ = writeln!(out);
        match self.per_million_events {
            Some(per_million) => {
                let _ = writeln!(
                    out,
                    "{} events a month ({} events/s on average): {} a month, {} per million events",
                    fmt_num(self.events_per_month as f64),
                    fmt_num(round2(self.events_per_second)),
                    money(self.monthly),
                    money(per_million)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "No events priced: --events-per-month N adds the request-priced lines (SQS, \
                     API Gateway, logs) and the cost per million events."
                );
            }
        }
        let _ = writeln!(out, "\nAssumptions:");
        for a in &self.assumptions {
            let _ = writeln!(out, "  - {a}");
        }
        let _ = writeln!(out, "Not included:");
        for n in &self.not_included {
            let _ = writeln!(out, "  - {n}");
        }
        out
    }
}

/// One line of a [`CostChange`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineChange {
    /// The AWS service billed.
    pub service: &'static str,
    /// What of the stack.
    pub item: String,
    /// Monthly before the change.
    pub before: f64,
    /// Monthly after it.
    pub after: f64,
    /// after - before.
    pub delta: f64,
}

/// What a change does to the monthly cost (without request-priced lines).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostChange {
    /// The region priced.
    pub region: String,
    /// `USD`.
    pub currency: String,
    /// Where the prices come from.
    pub prices: Provenance,
    /// Monthly now (nothing: 0).
    pub before: f64,
    /// Monthly once applied.
    pub after: f64,
    /// after - before.
    pub delta: f64,
    /// The lines that change.
    pub lines: Vec<LineChange>,
}

/// The monthly difference between `before` and `after`, line by line.
pub fn change(
    stack: &str,
    region: &str,
    before: &Footprint,
    after: &Footprint,
    table: &PriceTable,
) -> Result<CostChange, CostError> {
    let b = estimate_footprint(stack, region, before, table, 0)?;
    let a = estimate_footprint(stack, region, after, table, 0)?;
    let mut lines: Vec<LineChange> = Vec::new();
    for l in &a.lines {
        let was = b.line(&l.item).map_or(0.0, |x| x.monthly);
        lines.push(LineChange {
            service: l.service,
            item: l.item.clone(),
            before: was,
            after: l.monthly,
            delta: l.monthly - was,
        });
    }
    for l in b.lines.iter().filter(|l| a.line(&l.item).is_none()) {
        lines.push(LineChange {
            service: l.service,
            item: l.item.clone(),
            before: l.monthly,
            after: 0.0,
            delta: -l.monthly,
        });
    }
    lines.retain(|l| l.delta.abs() >= 0.005);
    Ok(CostChange {
        region: region.to_string(),
        currency: a.currency,
        prices: a.prices,
        before: b.monthly,
        after: a.monthly,
        delta: a.monthly - b.monthly,
        lines,
    })
}

impl CostChange {
    /// The human rendering, for the end of a plan: the totals, and the
    /// lines that change (a stack created from nothing is itemized by
    /// `stackctl cost` instead).
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Monthly cost: {} -> {} ({}) at {} list prices of {}; request-priced parts: \
             `stackctl cost --events-per-month N`",
            money(self.before),
            money(self.after),
            signed(self.delta),
            self.region,
            self.prices.as_of,
        );
        if self.before == 0.0 {
            if self.after > 0.0 {
                let _ = writeln!(out, "  (a new stack: `stackctl cost FILE` itemizes it)");
            }
            return out;
        }
        let w = self
            .lines
            .iter()
            .map(|l| l.service.len() + 1 + l.item.len())
            .max()
            .unwrap_or(0);
        for l in &self.lines {
            let _ = writeln!(
                out,
                "  {:<w$}  {:>10} -> {:>10}  ({})",
                format!("{} {}", l.service, l.item),
                money(l.before),
                money(l.after),
                signed(l.delta)
            );
        }
        out
    }
}

/// The distinct effective dates of the live prices' terms (their date
/// part), e.g. `2026-11-01`.
fn effective_dates(live: &super::prices::LivePrices) -> String {
    let dates: std::collections::BTreeSet<&str> = live
        .fetched
        .iter()
        .filter_map(|p| p.effective_date.as_deref())
        .map(|d| d.get(..10).unwrap_or(d))
        .collect();
    if dates.is_empty() {
        "on dates not given".into()
    } else {
        dates.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// `$1,234.56`.
pub fn money(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.abs();
    format!("{sign}${}.{:02}", group(cents / 100), cents % 100)
}

/// `+$1.00` or `-$1.00`.
pub fn signed(v: f64) -> String {
    if (v * 100.0).round() as i64 >= 0 {
        format!("+{}", money(v))
    } else {
        money(v)
    }
}

fn group(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A number without trailing zeros: `730`, `0.5`, `0.04048`, `10,000,000`.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return group(v as i64);
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A unit price: its own decimals, at least two (`$0.40`, `$0.004445`).
fn unit_price(v: f64) -> String {
    let s = fmt_num(v);
    match s.split_once('.') {
        Some((_, frac)) if frac.len() >= 2 => format!("${s}"),
        Some((whole, frac)) => format!("${whole}.{frac:0<2}"),
        None => format!("${s}.00"),
    }
}

/// A quantity: two decimals at most, grouped.
fn fmt_qty(v: f64) -> String {
    let r = round2(v);
    if r.fract() == 0.0 {
        group(r as i64)
    } else {
        let whole = r.trunc() as i64;
        let frac = format!("{:.2}", r.fract().abs());
        format!("{}{}", group(whole), &frac[1..])
    }
}

fn plural(n: f64) -> &'static str {
    if (n - 1.0).abs() < f64::EPSILON {
        ""
    } else {
        "s"
    }
}

/// `2 tasks` or `2 tasks (2..6)`.
fn counts(count: f64, min: f64, max: f64, what: &str) -> String {
    format!("{} {what}{}", range_text(count, min, max), plural(count))
}

/// `2` or `2 (2..6)`.
fn range_text(count: f64, min: f64, max: f64) -> String {
    if (min - count).abs() < f64::EPSILON && (max - count).abs() < f64::EPSILON {
        fmt_num(count)
    } else {
        format!("{} ({}..{})", fmt_num(count), fmt_num(min), fmt_num(max))
    }
}
