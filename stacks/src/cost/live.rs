//! `stackctl cost --live-prices`: the prices an estimate needs, fetched
//! from the AWS Price List Query API (GetProducts, one query per price,
//! filtered by service code, region and instance, node or usage type) with
//! aws-config's credential chain, and laid over the price table. Owns the
//! queries, the reading of the Price List documents (on-demand terms, their
//! price dimensions' `pricePerUnit.USD`) and the rule for what the API does
//! not price: an error naming each such price, unless the caller allows
//! the table's price for it ([`Fallback::ToTable`]); every line says where
//! its price comes from.

use std::collections::BTreeMap;

use aws_sdk_pricing::types::{Filter, FilterType};
use futures_util::future::join_all;
use serde::Deserialize;

use super::footprint::{At, Footprint, StateEngine};
use super::prices::{FargateRate, LivePrice, LivePrices, PriceTable, RegionPrices, Unpriced};
use super::{
    CostError, Estimate, Options, PriceSource, estimate_footprint, footprint, keys, region_of,
};
use crate::arch::Architecture;
use crate::aws::{Aws, AwsError, Subject};
use crate::spec::LoadedSpec;

/// The Price List Query API has endpoints in us-east-1, eu-central-1 and
/// ap-south-1 only, each serving every region's prices: this one is asked
/// whatever region the stack is in.
pub const ENDPOINT_REGION: &str = "us-east-1";

/// Results a GetProducts page may hold (the API's largest page).
const PAGE: i32 = 100;

/// What `--live-prices` does with a price the API does not give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// The estimate fails, naming every price the API did not give.
    #[default]
    Never,
    /// The line takes the table's price and says so (`--fallback-to-table`).
    ToTable,
}

/// One price to look up: a GetProducts query and how to read its answer.
#[derive(Debug, Clone)]
struct Query {
    /// The table entry it replaces.
    key: String,
    /// What it is, for messages.
    what: String,
    service_code: &'static str,
    filters: Vec<(FilterType, &'static str, String)>,
    /// The usage type the product must have, without its region prefix
    /// (`USE1-`, `EU-`, none for some us-east-1 products): the filter asks
    /// for usage types containing it, which also finds e.g. Spot's.
    usagetype: Option<&'static str>,
    /// Multiplies the API's price into the table's unit (per request to
    /// per million requests).
    scale: f64,
}

fn term(field: &'static str, value: &str) -> (FilterType, &'static str, String) {
    (FilterType::TermMatch, field, value.to_string())
}

impl Query {
    fn new(key: String, what: String, service_code: &'static str, region: Option<&str>) -> Self {
        Self {
            key,
            what,
            service_code,
            filters: region
                .map(|r| vec![term("regionCode", r)])
                .unwrap_or_default(),
            usagetype: None,
            scale: 1.0,
        }
    }

    fn with(mut self, field: &'static str, value: &str) -> Self {
        self.filters.push(term(field, value));
        self
    }

    fn usage(mut self, usagetype: &'static str) -> Self {
        self.filters
            .push((FilterType::Contains, "usagetype", usagetype.to_string()));
        self.usagetype = Some(usagetype);
        self
    }

    fn per_million(mut self) -> Self {
        self.scale = 1e6;
        self
    }

    /// The query in words, for a price it found nothing for.
    fn describe(&self) -> String {
        let filters: Vec<String> = self
            .filters
            .iter()
            .map(|(t, f, v)| format!("{f} {} {v}", t.as_str()))
            .collect();
        format!("{}: {}", self.service_code, filters.join(", "))
    }
}

/// The queries for every price `fp`'s estimate in `region` uses, with
/// `events` a month (the same conditions as the estimate's lines; an
/// estimate line no query priced is caught after pricing).
fn queries(fp: &Footprint, region: &str, table: &PriceTable, events: u64) -> Vec<Query> {
    let r = Some(region);
    let mut out = Vec::new();
    if !fp.services.is_empty() {
        let arm = fp.architecture == Architecture::Arm64;
        let arch = fp.architecture.as_str();
        let (vcpu, gb) = if arm {
            ("Fargate-ARM-vCPU-Hours:perCPU", "Fargate-ARM-GB-Hours")
        } else {
            ("Fargate-vCPU-Hours:perCPU", "Fargate-GB-Hours")
        };
        out.push(
            Query::new(
                keys::fargate(fp.architecture, "vcpu_hour"),
                format!("Fargate vCPU ({arch})"),
                "AmazonECS",
                r,
            )
            .usage(vcpu),
        );
        out.push(
            Query::new(
                keys::fargate(fp.architecture, "gb_hour"),
                format!("Fargate memory ({arch})"),
                "AmazonECS",
                r,
            )
            .usage(gb),
        );
    }
    if let Some(e) = &fp.executors {
        out.push(
            Query::new(
                keys::ec2(&e.instance_type),
                format!("EC2 instance type `{}`", e.instance_type),
                "AmazonEC2",
                r,
            )
            .with("instanceType", &e.instance_type)
            .with("operatingSystem", "Linux")
            .with("tenancy", "Shared")
            .with("preInstalledSw", "NA")
            .with("capacitystatus", "Used")
            .with("licenseModel", "No License required"),
        );
        out.push(
            Query::new(
                keys::EBS_GP3.into(),
                "EBS gp3 storage".into(),
                "AmazonEC2",
                r,
            )
            .with("productFamily", "Storage")
            .with("volumeApiName", "gp3"),
        );
    }
    let public = fp.services.iter().any(|s| s.public_ip && s.max > 0.0)
        || fp
            .executors
            .as_ref()
            .is_some_and(|e| e.public_ip && e.max > 0.0);
    if public {
        out.push(
            Query::new(
                keys::PUBLIC_IPV4.into(),
                "public IPv4 address".into(),
                "AmazonVPC",
                r,
            )
            .usage("PublicIPv4:InUseAddress"),
        );
    }
    if let Some(st) = &fp.state {
        let key = keys::state(st.engine, &st.node_type);
        out.push(match st.engine {
            StateEngine::ElastiCache => Query::new(
                key,
                format!("ElastiCache node type `{}`", st.node_type),
                "AmazonElastiCache",
                r,
            )
            .with("instanceType", &st.node_type)
            .with("cacheEngine", "Redis"),
            StateEngine::MemoryDb => Query::new(
                key,
                format!("MemoryDB node type `{}`", st.node_type),
                "AmazonMemoryDB",
                r,
            )
            .with("instanceType", &st.node_type),
        });
    }
    let mut lb_types: Vec<&str> = fp
        .load_balancers
        .iter()
        .map(|l| l.lb_type.as_str())
        .collect();
    lb_types.sort_unstable();
    lb_types.dedup();
    for t in lb_types {
        let (family, name) = if t == "network" {
            ("Load Balancer-Network", "network load balancer")
        } else {
            ("Load Balancer-Application", "application load balancer")
        };
        out.push(
            Query::new(keys::lb(t, "hour"), format!("{name} hour"), "AWSELB", r)
                .with("productFamily", family)
                .usage("LoadBalancerUsage"),
        );
        out.push(
            Query::new(
                keys::lb(t, "lcu_hour"),
                format!("{name} capacity unit"),
                "AWSELB",
                r,
            )
            .with("productFamily", family)
            .usage("LCUUsage"),
        );
    }
    if fp.rest_apis > 0 && events > 0 {
        out.push(
            Query::new(
                keys::REST_API.into(),
                "API Gateway REST API requests".into(),
                "AmazonApiGateway",
                r,
            )
            .usage("ApiGatewayRequest")
            .per_million(),
        );
    }
    let (_, runners, executors) = fp.consumers(At::Max);
    if events > 0 || runners + executors > 0.0 {
        out.push(
            Query::new(
                keys::SQS.into(),
                "SQS standard-queue requests".into(),
                "AWSQueueService",
                r,
            )
            .usage("Requests-Tier1")
            .per_million(),
        );
    }
    let (tasks, _, execs) = fp.consumers(At::Max);
    let logs = (tasks + execs) * table.usage.log_bytes_per_task_hour
        + events as f64 * table.usage.log_bytes_per_event;
    if logs > 0.0 {
        out.push(
            Query::new(
                keys::LOGS_INGESTED.into(),
                "CloudWatch Logs ingestion".into(),
                "AmazonCloudWatch",
                r,
            )
            .usage("DataProcessing-Bytes"),
        );
        out.push(
            Query::new(
                keys::LOGS_STORED.into(),
                "CloudWatch Logs storage".into(),
                "AmazonCloudWatch",
                r,
            )
            .usage("TimedStorage-ByteHrs"),
        );
    }
    if fp.alarms > 0 {
        out.push(
            Query::new(
                keys::ALARM.into(),
                "CloudWatch alarm".into(),
                "AmazonCloudWatch",
                r,
            )
            .usage("CW:AlarmMonitorUsage"),
        );
    }
    if fp.cloud_map_namespaces > 0 {
        // Route 53's hosted zones are priced once for every region.
        out.push(
            Query::new(
                keys::HOSTED_ZONE.into(),
                "Route 53 hosted zone".into(),
                "AmazonRoute53",
                None,
            )
            .with("productFamily", "DNS Zone")
            .usage("HostedZone"),
        );
        if fp.services.iter().any(|s| s.cloud_map && s.max > 0.0) {
            out.push(
                Query::new(
                    keys::CLOUD_MAP.into(),
                    "Cloud Map registered instance".into(),
                    "AWSCloudMap",
                    r,
                )
                .usage("RegisteredResource"),
            );
        }
    }
    out
}

/// One Price List document (the JSON text of each `PriceList` entry):
/// the parts read here.
#[derive(Debug, Deserialize)]
struct Document {
    product: Product,
    #[serde(default)]
    terms: Terms,
}

#[derive(Debug, Deserialize)]
struct Product {
    sku: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Terms {
    #[serde(rename = "OnDemand", default)]
    on_demand: BTreeMap<String, Term>,
}

#[derive(Debug, Deserialize)]
struct Term {
    #[serde(rename = "priceDimensions", default)]
    dimensions: BTreeMap<String, Dimension>,
    #[serde(rename = "effectiveDate")]
    effective_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Dimension {
    #[serde(rename = "pricePerUnit", default)]
    price_per_unit: BTreeMap<String, String>,
    #[serde(rename = "beginRange")]
    begin_range: Option<String>,
}

/// A product's on-demand price in USD: its one price dimension's, or for
/// tiered prices (requests, alarms) the first tier that is not free, as
/// the table's figures are (free tiers are not in the estimate).
fn on_demand_price(doc: &Document) -> Result<(f64, Option<String>), String> {
    let mut tiers: Vec<(f64, f64, Option<&String>)> = Vec::new();
    for term in doc.terms.on_demand.values() {
        for d in term.dimensions.values() {
            let usd = d
                .price_per_unit
                .get("USD")
                .ok_or_else(|| format!("SKU {} has a price without USD", doc.product.sku))?;
            let price: f64 = usd.parse().map_err(|_| {
                format!(
                    "SKU {} has a price `{usd}` that is not a number",
                    doc.product.sku
                )
            })?;
            let begin = d
                .begin_range
                .as_deref()
                .and_then(|b| b.parse().ok())
                .unwrap_or(0.0);
            tiers.push((begin, price, term.effective_date.as_ref()));
        }
    }
    tiers.sort_by(|a, b| a.0.total_cmp(&b.0));
    let chosen = tiers
        .iter()
        .find(|t| t.1 > 0.0)
        .or(tiers.first())
        .ok_or_else(|| format!("SKU {} has no on-demand price", doc.product.sku))?;
    Ok((chosen.1, chosen.2.cloned()))
}

/// Whether `usagetype` is `want` with or without a region prefix.
fn usagetype_is(usagetype: &str, want: &str) -> bool {
    usagetype == want
        || usagetype.strip_suffix(want).is_some_and(|prefix| {
            prefix.ends_with('-') && !prefix[..prefix.len() - 1].contains(['-', ':'])
        })
}

/// The price a query's documents give, or why none.
fn price_of(q: &Query, docs: &[String]) -> Result<LivePrice, String> {
    let mut found: Vec<(Document, f64, Option<String>)> = Vec::new();
    for text in docs {
        let doc: Document = serde_json::from_str(text)
            .map_err(|e| format!("a Price List document is not one ({e})"))?;
        if let Some(want) = q.usagetype {
            let usagetype = doc.product.attributes.get("usagetype");
            if !usagetype.is_some_and(|u| usagetype_is(u, want)) {
                continue;
            }
        }
        let (price, effective) = on_demand_price(&doc)?;
        found.push((doc, price * q.scale, effective));
    }
    let Some((first, price, effective)) = found.first() else {
        return Err(format!(
            "no product in the price list matches ({})",
            q.describe()
        ));
    };
    if let Some(other) = found.iter().find(|f| (f.1 - price).abs() > 1e-12) {
        return Err(format!(
            "{} products match with different prices (SKU {} at {}, SKU {} at {}; {})",
            found.len(),
            first.product.sku,
            price,
            other.0.product.sku,
            other.1,
            q.describe()
        ));
    }
    Ok(LivePrice {
        key: q.key.clone(),
        what: q.what.clone(),
        price: *price,
        sku: first.product.sku.clone(),
        usagetype: first.product.attributes.get("usagetype").cloned(),
        effective_date: effective.clone(),
    })
}

/// Every page of one query's documents.
async fn get_products(aws: &Aws, q: &Query) -> Result<Vec<String>, String> {
    let filters = q
        .filters
        .iter()
        .map(|(t, f, v)| {
            Filter::builder()
                .r#type(t.clone())
                .field(*f)
                .value(v)
                .build()
                .map_err(|e| format!("cannot build the filter {f}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut pages = aws
        .pricing()
        .get_products()
        .service_code(q.service_code)
        .set_filters(Some(filters))
        .format_version("aws_v1")
        .max_results(PAGE)
        .into_paginator()
        .send();
    let mut docs = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            AwsError::api(
                Subject::other("Price List", q.service_code),
                "GetProducts",
                e,
            )
            .to_string()
        })?;
        docs.extend(page.price_list().iter().cloned());
    }
    Ok(docs)
}

/// Fetches the prices `fp`'s estimate uses in `region`, each from its own
/// query, all at once. The API's failures are per price (in `unpriced`);
/// no credentials at all fail every price.
async fn fetch(fp: &Footprint, region: &str, table: &PriceTable, events: u64) -> LivePrices {
    let wanted = queries(fp, region, table, events);
    let mut live = LivePrices {
        endpoint_region: ENDPOINT_REGION.into(),
        ..LivePrices::default()
    };
    let aws = if crate::aws::context::credentials_available().await {
        Aws::load(Some(ENDPOINT_REGION))
            .await
            .map_err(|e| e.to_string())
    } else {
        Err(
            "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run where an \
             instance or container role provides them)"
                .to_string(),
        )
    };
    let results = match &aws {
        Ok(aws) => {
            join_all(wanted.iter().map(|q| async move {
                let docs = get_products(aws, q).await?;
                price_of(q, &docs)
            }))
            .await
        }
        Err(why) => wanted.iter().map(|_| Err(why.clone())).collect(),
    };
    for (q, result) in wanted.iter().zip(results) {
        match result {
            Ok(price) => live.fetched.push(price),
            Err(reason) => live.unpriced.push(Unpriced {
                key: q.key.clone(),
                what: q.what.clone(),
                reason,
            }),
        }
    }
    live
}

/// A region's prices with nothing in them, for a region the table lacks
/// (every price then has to come live).
fn empty_region() -> RegionPrices {
    RegionPrices {
        fargate: BTreeMap::new(),
        ec2_instance_hour: BTreeMap::new(),
        ebs_gp3_gb_month: 0.0,
        public_ipv4_hour: 0.0,
        elasticache_node_hour: BTreeMap::new(),
        memorydb_node_hour: BTreeMap::new(),
        alb_hour: 0.0,
        alb_lcu_hour: 0.0,
        nlb_hour: 0.0,
        nlb_lcu_hour: 0.0,
        vpc_link_hour: 0.0,
        rest_api_requests_million: 0.0,
        sqs_requests_million: 0.0,
        logs_ingested_gb: 0.0,
        logs_stored_gb_month: 0.0,
        alarm_month: 0.0,
        cloud_map_instance_month: 0.0,
        hosted_zone_month: 0.0,
    }
}

/// Sets the table entry `key` of `p`.
fn set(p: &mut RegionPrices, key: &str, v: f64) {
    let (head, rest) = key.split_once('.').unwrap_or((key, ""));
    match head {
        "fargate" => {
            if let Some((arch, what)) = rest.rsplit_once('.') {
                let rate = p.fargate.entry(arch.to_string()).or_insert(FargateRate {
                    vcpu_hour: 0.0,
                    gb_hour: 0.0,
                });
                if what == "vcpu_hour" {
                    rate.vcpu_hour = v;
                } else {
                    rate.gb_hour = v;
                }
            }
        }
        "ec2_instance_hour" => {
            p.ec2_instance_hour.insert(rest.to_string(), v);
        }
        "elasticache_node_hour" => {
            p.elasticache_node_hour.insert(rest.to_string(), v);
        }
        "memorydb_node_hour" => {
            p.memorydb_node_hour.insert(rest.to_string(), v);
        }
        keys::EBS_GP3 => p.ebs_gp3_gb_month = v,
        keys::PUBLIC_IPV4 => p.public_ipv4_hour = v,
        "alb_hour" => p.alb_hour = v,
        "alb_lcu_hour" => p.alb_lcu_hour = v,
        "nlb_hour" => p.nlb_hour = v,
        "nlb_lcu_hour" => p.nlb_lcu_hour = v,
        keys::REST_API => p.rest_api_requests_million = v,
        keys::SQS => p.sqs_requests_million = v,
        keys::LOGS_INGESTED => p.logs_ingested_gb = v,
        keys::LOGS_STORED => p.logs_stored_gb_month = v,
        keys::ALARM => p.alarm_month = v,
        keys::HOSTED_ZONE => p.hosted_zone_month = v,
        keys::CLOUD_MAP => p.cloud_map_instance_month = v,
        _ => {}
    }
}

/// `table` with `live`'s prices for `region` in place of its own.
fn overlay(table: &PriceTable, region: &str, live: LivePrices) -> PriceTable {
    let mut out = table.clone();
    let prices = out
        .regions
        .entry(region.to_string())
        .or_insert_with(empty_region);
    for p in &live.fetched {
        set(prices, &p.key, p.price);
    }
    out.live = Some(live);
    out
}

/// The monthly estimate of a spec's AWS resources with live prices from
/// the AWS Price List API (`stackctl cost --live-prices`): each line says
/// whether its price is `live` or from the `table`. A price the API does
/// not give fails the estimate (naming each) unless `fallback` lets the
/// table's stand in; a region the table lacks can be priced all live.
pub async fn estimate_live(
    loaded: &LoadedSpec,
    table: &PriceTable,
    opts: &Options,
    fallback: Fallback,
) -> Result<Estimate, CostError> {
    let fp = footprint(loaded)?;
    let region = region_of(loaded, opts.region.as_deref())?;
    let live = fetch(&fp, &region, table, opts.events_per_month).await;
    let unpriced = |items: Vec<(String, String)>| {
        // One reason for every price (no credentials, no network) is said once.
        let same = items.len() > 1 && items.iter().all(|(_, why)| *why == items[0].1);
        let missing = if same {
            let what: Vec<&str> = items.iter().map(|(what, _)| what.as_str()).collect();
            vec![format!("{}: {}", what.join(", "), items[0].1)]
        } else {
            items
                .into_iter()
                .map(|(what, why)| format!("{what}: {why}"))
                .collect()
        };
        CostError::LiveUnpriced {
            region: region.clone(),
            missing,
            table: table.describe(),
        }
    };
    if fallback == Fallback::Never && !live.unpriced.is_empty() {
        return Err(unpriced(
            live.unpriced
                .iter()
                .map(|u| (u.what.clone(), u.reason.clone()))
                .collect(),
        ));
    }
    let has_region = table.regions.contains_key(&region);
    let with_live = overlay(table, &region, live);
    let est = estimate_footprint(
        &loaded.spec.stack,
        &region,
        &fp,
        &with_live,
        opts.events_per_month,
    )?;
    // A VPC link has no charge of its own and no product in the price
    // list: its zero is the table's whatever the mode.
    let from_table: Vec<&super::Line> = est
        .lines
        .iter()
        .filter(|l| l.price_source == PriceSource::Table && l.price_key != keys::VPC_LINK)
        .collect();
    if !from_table.is_empty() {
        if !has_region {
            return Err(table.region(&region).map(|_| ()).unwrap_err());
        }
        if fallback == Fallback::Never {
            return Err(unpriced(
                from_table
                    .iter()
                    .map(|l| (l.price_key.clone(), "no query asks for it".to_string()))
                    .collect(),
            ));
        }
    }
    Ok(est)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_types_match_with_or_without_a_region_prefix() {
        assert!(usagetype_is("USE1-Fargate-GB-Hours", "Fargate-GB-Hours"));
        assert!(usagetype_is("EU-Fargate-GB-Hours", "Fargate-GB-Hours"));
        assert!(usagetype_is("LoadBalancerUsage", "LoadBalancerUsage"));
        assert!(!usagetype_is(
            "USE1-SpotUsage:Fargate-GB-Hours",
            "Fargate-GB-Hours"
        ));
        assert!(!usagetype_is(
            "USE1-Fargate-ARM-GB-Hours",
            "Fargate-GB-Hours"
        ));
        assert!(!usagetype_is("USE1-Requests-FIFO-Tier1", "Requests-Tier1"));
    }

    #[test]
    fn a_tiered_price_is_its_first_paid_tier() {
        let doc: Document = serde_json::from_value(serde_json::json!({
            "product": {"sku": "S", "attributes": {"usagetype": "USE1-Requests-Tier1"}},
            "terms": {"OnDemand": {"S.JRTCKXETXF": {
                "effectiveDate": "2026-11-01T00:00:00Z",
                "priceDimensions": {
                    "S.JRTCKXETXF.A": {"beginRange": "100000000000", "pricePerUnit": {"USD": "0.0000002400"}},
                    "S.JRTCKXETXF.B": {"beginRange": "0", "pricePerUnit": {"USD": "0.0000000000"}},
                    "S.JRTCKXETXF.C": {"beginRange": "1000000", "pricePerUnit": {"USD": "0.0000004000"}}
                }
            }}}
        }))
        .unwrap();
        let (price, effective) = on_demand_price(&doc).unwrap();
        assert!((price - 0.0000004).abs() < 1e-15);
        assert_eq!(effective.as_deref(), Some("2026-11-01T00:00:00Z"));
    }
}
