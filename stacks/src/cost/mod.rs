//! What an AWS stack costs: `stackctl cost` (a spec's monthly estimate,
//! line by line, [`estimate`]), the monthly difference of what `plan`
//! would change ([`change`], from the desired and the observed resources)
//! and the cost per million events of a measured `bench` run ([`of_bench`]).
//!
//! This module owns the price and usage table ([`PriceTable`]: AWS list
//! prices per region, shipped with the tool with its date and source, or a
//! `--prices` file of the same shape; and this engine's measured SQS
//! requests per event, idle polling and log volume), the footprint of a
//! stack (what AWS bills for, read off resources in the graph's shape,
//! [`Footprint`]) and the pricing of it. Prices come from the table,
//! unless `--live-prices` asks the AWS Price List API for them ([`live`],
//! with the `aws` feature); each line says which. A region or an instance
//! or node type without a price is an error naming it.

mod estimate;
mod footprint;
mod keys;
#[cfg(feature = "aws")]
pub mod live;
mod prices;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

pub use estimate::{
    CostChange, Estimate, Line, LineChange, PriceSource, change, estimate_footprint, fmt_num,
    money, signed,
};
pub use footprint::{ExecutorUse, Footprint, LoadBalancerUse, ServiceUse, StateEngine, StateUse};
pub use prices::{
    FargateRate, IdlePolling, LivePrice, LivePrices, PriceCheck, PriceTable, Provenance,
    RegionPrices, SqsBand, Unpriced, Usage,
};

use crate::bench::Report;
use crate::graph::{Graph, GraphError};
use crate::spec::{LoadedSpec, Provider};

/// Why a cost could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// A local stack runs nothing on AWS.
    #[error("stack `{stack}` is a local stack (`provider: local`): it runs nothing AWS bills for")]
    Local {
        /// The stack.
        stack: String,
    },
    /// The spec names no region and none was given.
    #[error("stack `{stack}` names no region: set `region:` in the spec or pass --region REGION")]
    NoRegion {
        /// The stack.
        stack: String,
    },
    /// The spec's resources could not be built.
    #[error("cannot build the resources of stack `{stack}`")]
    Graph {
        /// The stack.
        stack: String,
        /// Why.
        source: GraphError,
    },
    /// The table has no prices for the region.
    #[error(
        "no prices for region `{region}` in {table} (it has {}): pass --prices FILE with that \
         region's prices (`stackctl cost --dump-prices` prints the shipped table to start from)",
        known.join(", ")
    )]
    UnknownRegion {
        /// The region.
        region: String,
        /// Which table.
        table: String,
        /// The regions it has.
        known: Vec<String>,
    },
    /// The table has no price for something the stack runs.
    #[error(
        "no price for {what} in region `{region}` in {table}: pass --prices FILE with its price \
         (`stackctl cost --dump-prices` prints the shipped table to start from)"
    )]
    NoPrice {
        /// What, e.g. ``EC2 instance type `c7g.large` ``.
        what: String,
        /// The region.
        region: String,
        /// Which table.
        table: String,
    },
    /// `--live-prices`: the AWS Price List API gave no price for what the
    /// stack runs, and the table's may not stand in.
    #[error(
        "--live-prices: the AWS Price List API gave no price in region `{region}` for:\n{}\n\
         Pass --fallback-to-table to price these from {table} (each line then says where its \
         price comes from), or leave out --live-prices",
        missing.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n")
    )]
    LiveUnpriced {
        /// The region priced.
        region: String,
        /// Each price it did not give, with why.
        missing: Vec<String>,
        /// The table that would stand in.
        table: String,
    },
    /// A `--prices` file could not be read.
    #[error("cannot read the price file {}", path.display())]
    ReadPrices {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `--prices` file is not a price table.
    #[error("the price file {} is not a price table like `stackctl cost --dump-prices` prints", path.display())]
    ParsePrices {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// What `cost` takes besides the spec.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Events a month, for the request-priced lines (0: none).
    pub events_per_month: u64,
    /// The region to price when the spec names none.
    pub region: Option<String>,
}

/// The region a stack is priced in: the spec's, else `fallback`.
pub fn region_of(loaded: &LoadedSpec, fallback: Option<&str>) -> Result<String, CostError> {
    loaded
        .spec
        .region
        .clone()
        .or_else(|| fallback.map(str::to_string))
        .ok_or_else(|| CostError::NoRegion {
            stack: loaded.spec.stack.clone(),
        })
}

/// The footprint of the spec's desired resources.
pub fn footprint(loaded: &LoadedSpec) -> Result<Footprint, CostError> {
    let stack = &loaded.spec.stack;
    if loaded.spec.provider == Provider::Local {
        return Err(CostError::Local {
            stack: stack.clone(),
        });
    }
    let graph = Graph::build(loaded).map_err(|source| CostError::Graph {
        stack: stack.clone(),
        source,
    })?;
    Ok(Footprint::of(graph.resources()))
}

/// The monthly estimate of a spec's AWS resources (`stackctl cost`).
pub fn estimate(
    loaded: &LoadedSpec,
    table: &PriceTable,
    opts: &Options,
) -> Result<Estimate, CostError> {
    let fp = footprint(loaded)?;
    let region = region_of(loaded, opts.region.as_deref())?;
    estimate_footprint(
        &loaded.spec.stack,
        &region,
        &fp,
        table,
        opts.events_per_month,
    )
}

/// A `bench` run's cost: the stack at the counts it ran at, and its cost
/// per million events at the throughput measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchCost {
    /// The region priced.
    pub region: String,
    /// `USD`.
    pub currency: String,
    /// Where the prices come from.
    pub prices: Provenance,
    /// Accepted events per second over the run.
    pub events_per_second: f64,
    /// Tasks and instances priced, by service (averages over the run).
    pub counts: BTreeMap<String, f64>,
    /// `gauges` (the running counts sampled during the run) or `spec`
    /// (no sample had them: the spec's counts).
    pub counts_from: &'static str,
    /// The stack at those counts, an hour, without request-priced parts.
    pub hourly: f64,
    /// A month at this throughput and these counts.
    pub monthly_at_this_rate: f64,
    /// Cost per million events at this throughput (none without events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_million_events: Option<f64>,
}

impl BenchCost {
    /// The line bench ends with.
    pub fn render_text(&self) -> String {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt_num((v * 100.0).round() / 100.0)))
            .collect();
        let from = if self.counts_from == "gauges" {
            "running"
        } else {
            "the spec's counts"
        };
        match self.per_million_events {
            Some(m) => format!(
                "  cost: {} per million events at {} events/s ({} {}; {}/hour, {}/month at this \
                 rate; {} list prices of {})",
                money(m),
                fmt_num((self.events_per_second * 10.0).round() / 10.0),
                counts.join(", "),
                from,
                money(self.hourly),
                money(self.monthly_at_this_rate),
                self.region,
                self.prices.as_of
            ),
            None => format!(
                "  cost: no events accepted, so none per event ({} {}: {}/hour)",
                counts.join(", "),
                from,
                money(self.hourly)
            ),
        }
    }
}

/// The cost per million events of a `bench` run on an AWS stack: the
/// stack at the average running counts the run sampled
/// (`ecs.<service>.running`, `asg.executors.in_service`; the spec's counts
/// when no sample had them), at the accepted-event throughput, sustained
/// for a month.
pub fn of_bench(
    loaded: &LoadedSpec,
    report: &Report,
    table: &PriceTable,
) -> Result<BenchCost, CostError> {
    let mut fp = footprint(loaded)?;
    let region = region_of(loaded, None)?;
    let average = |key: &str| -> Option<f64> {
        let seen: Vec<f64> = report
            .timeline
            .iter()
            .filter_map(|s| s.gauges.get(key).copied())
            .collect();
        (!seen.is_empty()).then(|| seen.iter().sum::<f64>() / seen.len() as f64)
    };
    let mut counts = BTreeMap::new();
    let mut measured = false;
    for s in &mut fp.services {
        if let Some(n) = average(&format!("ecs.{}.running", s.name)) {
            s.count = n;
            measured = true;
        }
        (s.min, s.max) = (s.count, s.count);
        counts.insert(s.name.clone(), s.count);
    }
    if let Some(e) = &mut fp.executors {
        if let Some(n) = average("asg.executors.in_service") {
            e.desired = n;
            measured = true;
        }
        (e.min, e.max) = (e.desired, e.desired);
        counts.insert("executors".into(), e.desired);
    }
    let rate = report.events_accepted.rate;
    let events = (rate * 3600.0 * table.hours_per_month).round() as u64;
    let fixed = estimate_footprint(&loaded.spec.stack, &region, &fp, table, 0)?;
    let at_rate = estimate_footprint(&loaded.spec.stack, &region, &fp, table, events)?;
    Ok(BenchCost {
        region,
        currency: table.currency.clone(),
        prices: table.provenance(),
        events_per_second: rate,
        counts,
        counts_from: if measured { "gauges" } else { "spec" },
        hourly: fixed.monthly / table.hours_per_month,
        monthly_at_this_rate: at_rate.monthly,
        per_million_events: at_rate.per_million_events,
    })
}

/// A count of events: `2500000`, `2,500,000`, `2.5M`, `800k`, `1B`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().replace(['_', ','], "");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('b' | 'B' | 'g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t.as_str(), 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a count (e.g. 2500000, 2.5M, 800k)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not a count (e.g. 2500000, 2.5M, 800k)"));
    }
    Ok((v * mult).round() as u64)
}
