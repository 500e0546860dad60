//! The price and usage table: AWS list prices per region, and the figures
//! of this engine's own usage (SQS requests per event, idle polling, log
//! volume) that turn a rate of events into request-priced lines. One table
//! ships with the tool (`prices.json`, naming its date and source); a file
//! of the same shape replaces it (`--prices FILE`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CostError;
use crate::arch::Architecture;

/// The table shipped with the tool.
const SHIPPED: &str = include_str!("prices.json");

/// Prices per region and the engine's usage figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Where the prices come from, in words.
    pub source: String,
    /// When they were written down (YYYY-MM-DD).
    pub as_of: String,
    /// `USD`.
    pub currency: String,
    /// Hours in a billing month (AWS's calculators use 730).
    pub hours_per_month: f64,
    /// Prices by region name (`us-east-1`).
    pub regions: BTreeMap<String, RegionPrices>,
    /// Which entries were compared with a public page, against what, and
    /// which could not be verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<PriceCheck>,
    /// What the engine uses per event and per hour.
    pub usage: Usage,
    /// The file the table was read from; `None`: the shipped one.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// The prices fetched from the AWS Price List API over this table's
    /// (`--live-prices`); `None`: every price is the table's.
    #[serde(skip)]
    pub live: Option<LivePrices>,
}

/// A check of some of the table's entries against public pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceCheck {
    /// The entries, `REGION.KEY` (`*` for every region), e.g.
    /// `us-east-1.fargate.x86_64`.
    pub entries: Vec<String>,
    /// `checked` (the pages show the table's figure), `corrected` or
    /// `not verified`.
    pub status: String,
    /// Each page: its URL, the date it shows and what it shows.
    pub sources: Vec<String>,
    /// Anything else worth knowing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Prices one command fetched from the AWS Price List Query API, which
/// replace the table's for the lines that use them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LivePrices {
    /// The API's endpoint region asked (it serves every region's prices).
    pub endpoint_region: String,
    /// The prices fetched, each with the product and term it comes from.
    pub fetched: Vec<LivePrice>,
    /// What the API gave no price for, and why; those lines keep the
    /// table's price when the caller allowed it, else the estimate fails.
    pub unpriced: Vec<Unpriced>,
}

/// One price from the Price List API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LivePrice {
    /// The table entry it replaces, e.g. `ec2_instance_hour.t3.medium`.
    pub key: String,
    /// What it is, e.g. ``EC2 instance type `t3.medium` ``.
    pub what: String,
    /// The price, in the table's unit.
    pub price: f64,
    /// The product's SKU.
    pub sku: String,
    /// The product's usage type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usagetype: Option<String>,
    /// The on-demand term's effective date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<String>,
}

/// A price the Price List API did not give.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unpriced {
    /// The table entry, e.g. `ec2_instance_hour.c7g.large`.
    pub key: String,
    /// What it is.
    pub what: String,
    /// Why.
    pub reason: String,
}

impl LivePrices {
    /// Whether the price `key` was fetched.
    pub fn has(&self, key: &str) -> bool {
        self.fetched.iter().any(|p| p.key == key)
    }
}

/// Fargate rates of one CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FargateRate {
    /// Per vCPU-hour.
    pub vcpu_hour: f64,
    /// Per GB-hour of memory.
    pub gb_hour: f64,
}

/// One region's prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionPrices {
    /// Fargate (Linux) by architecture: `x86_64`, `arm64`.
    pub fargate: BTreeMap<String, FargateRate>,
    /// EC2 on-demand Linux per instance-hour, by instance type.
    pub ec2_instance_hour: BTreeMap<String, f64>,
    /// EBS gp3 storage per GB-month.
    pub ebs_gp3_gb_month: f64,
    /// A public IPv4 address per hour.
    pub public_ipv4_hour: f64,
    /// ElastiCache on-demand per node-hour, by node type.
    pub elasticache_node_hour: BTreeMap<String, f64>,
    /// MemoryDB on-demand per node-hour, by node type.
    pub memorydb_node_hour: BTreeMap<String, f64>,
    /// Application load balancer per hour.
    pub alb_hour: f64,
    /// Application load balancer per LCU-hour.
    pub alb_lcu_hour: f64,
    /// Network load balancer per hour.
    pub nlb_hour: f64,
    /// Network load balancer per NLCU-hour.
    pub nlb_lcu_hour: f64,
    /// An API Gateway VPC link per hour (API Gateway lists no charge of
    /// its own; the network load balancer behind it is priced apart).
    pub vpc_link_hour: f64,
    /// API Gateway REST API requests per million (first tier).
    pub rest_api_requests_million: f64,
    /// SQS standard-queue requests per million (after the free tier).
    pub sqs_requests_million: f64,
    /// CloudWatch Logs ingestion per GB.
    pub logs_ingested_gb: f64,
    /// CloudWatch Logs storage per GB-month.
    pub logs_stored_gb_month: f64,
    /// A standard-resolution CloudWatch alarm per month.
    pub alarm_month: f64,
    /// A Cloud Map registered instance per month.
    pub cloud_map_instance_month: f64,
    /// A Route 53 hosted zone (a Cloud Map DNS namespace has one) per month.
    pub hosted_zone_month: f64,
}

/// SQS requests per event at and above an event rate, by process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsBand {
    /// The lowest average rate (events/s) these figures hold for.
    pub from_rate: f64,
    /// Requests per accepted event at the event API (sends).
    pub event_api: f64,
    /// Requests per run at the runner (receive, delete, send step jobs).
    pub runner: f64,
    /// Requests per run at the executors (receive, delete, queue depth).
    pub executor: f64,
    /// How the figures were measured.
    pub source: String,
}

impl SqsBand {
    /// Requests per event, every process (one 1-step run per event).
    pub fn total(&self) -> f64 {
        self.event_api + self.runner + self.executor
    }
}

/// SQS requests of a consumer with nothing to receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdlePolling {
    /// Per runner task and hour.
    pub runner: f64,
    /// Per executor and hour.
    pub executor: f64,
    /// How the figures were measured.
    pub source: String,
}

/// What this engine uses, per event and per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// By rate band, lowest first.
    pub sqs_requests_per_event: Vec<SqsBand>,
    /// Receives of idle consumers.
    pub sqs_idle_requests_per_hour: IdlePolling,
    /// Log bytes each event adds (every process).
    pub log_bytes_per_event: f64,
    /// Log bytes of a running task or executor with no load.
    pub log_bytes_per_task_hour: f64,
    /// Where the log figures come from.
    pub logs_source: String,
    /// Capacity units each load balancer is billed for per hour.
    pub lcus_per_load_balancer: f64,
    /// Where that figure comes from.
    pub lcus_source: String,
    /// An executor's root volume, GB of gp3.
    pub executor_root_volume_gb: f64,
    /// Where that figure comes from.
    pub executor_root_volume_source: String,
    /// Events per event-API request (API Gateway bills requests).
    pub events_per_request: f64,
}

impl Usage {
    /// The band for an average rate: the highest whose `from_rate` the
    /// rate reaches (figures per event fall as the rate grows, so a rate
    /// between two bands gets the lower band's, larger figures).
    pub fn sqs_band(&self, events_per_second: f64) -> Option<&SqsBand> {
        self.sqs_requests_per_event
            .iter()
            .filter(|b| b.from_rate <= events_per_second)
            .max_by(|a, b| a.from_rate.total_cmp(&b.from_rate))
            .or_else(|| {
                self.sqs_requests_per_event
                    .iter()
                    .min_by(|a, b| a.from_rate.total_cmp(&b.from_rate))
            })
    }
}

impl PriceTable {
    /// The table shipped with the tool.
    pub fn shipped() -> Self {
        serde_json::from_str(SHIPPED).expect("the shipped price table parses (tested)")
    }

    /// The shipped table's text (`stackctl cost --dump-prices`), to copy
    /// and edit into a `--prices` file.
    pub fn shipped_text() -> &'static str {
        SHIPPED
    }

    /// A table from a file of the shipped table's shape.
    pub fn load(path: &Path) -> Result<Self, CostError> {
        let text = std::fs::read_to_string(path).map_err(|source| CostError::ReadPrices {
            path: path.to_path_buf(),
            source,
        })?;
        let mut table: Self =
            serde_json::from_str(&text).map_err(|source| CostError::ParsePrices {
                path: path.to_path_buf(),
                source,
            })?;
        table.file = Some(path.to_path_buf());
        Ok(table)
    }

    /// `path`'s table, else the shipped one.
    pub fn load_or_shipped(path: Option<&Path>) -> Result<Self, CostError> {
        path.map_or_else(|| Ok(Self::shipped()), Self::load)
    }

    /// What the table is, for messages: the file, or the shipped table.
    pub fn describe(&self) -> String {
        match &self.file {
            Some(path) => format!("the price file {}", path.display()),
            None => format!("the price table shipped with stackctl ({})", self.as_of),
        }
    }

    /// One region's prices, or an error naming the region and the regions
    /// the table has.
    pub fn region(&self, region: &str) -> Result<&RegionPrices, CostError> {
        self.regions
            .get(region)
            .ok_or_else(|| CostError::UnknownRegion {
                region: region.to_string(),
                table: self.describe(),
                known: self.regions.keys().cloned().collect(),
            })
    }

    /// Where the prices come from, for a report.
    pub fn provenance(&self) -> Provenance {
        Provenance {
            source: self.source.clone(),
            as_of: self.as_of.clone(),
            file: self.file.as_ref().map(|p| p.display().to_string()),
            live: self.live.clone().map(Box::new),
        }
    }
}

/// Where a report's prices come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// The table's source line.
    pub source: String,
    /// Its date.
    pub as_of: String,
    /// The `--prices` file; absent: the shipped table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The prices fetched from the Price List API (`--live-prices`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Box<LivePrices>>,
}

impl RegionPrices {
    /// Fargate's rates for `arch`.
    pub(crate) fn fargate(
        &self,
        arch: Architecture,
        region: &str,
        table: &PriceTable,
    ) -> Result<FargateRate, CostError> {
        self.fargate
            .get(arch.as_str())
            .copied()
            .ok_or_else(|| CostError::NoPrice {
                what: format!("Fargate ({})", arch.as_str()),
                region: region.to_string(),
                table: table.describe(),
            })
    }
}

/// A price from one of a region's maps, or an error naming what has none.
pub(crate) fn priced(
    map: &BTreeMap<String, f64>,
    key: &str,
    what: &str,
    region: &str,
    table: &PriceTable,
) -> Result<f64, CostError> {
    map.get(key).copied().ok_or_else(|| CostError::NoPrice {
        what: format!("{what} `{key}`"),
        region: region.to_string(),
        table: table.describe(),
    })
}
