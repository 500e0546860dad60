//! `stacks::cost`: the example stack's estimate checked line by line
//! against a hand computation from the shipped table's us-east-1 prices;
//! the table covers us-east-1, us-west-2 and eu-west-1 (each pricing the
//! example, Ireland at its own prices); MemoryDB and a `vpc_link` event API
//! bring their own lines; the SQS band for a rate; a planned change over an
//! auto-scaled service keeps the running count inside the new bounds;
//! counts of events parse.

use stacks::cost::{self, Estimate, Footprint, Options, PriceTable};

use crate::support::example_loaded;

/// `(monthly, at min, at max)` of the line `item`.
fn line(e: &Estimate, item: &str) -> (f64, f64, f64) {
    let l = e
        .line(item)
        .unwrap_or_else(|| panic!("no line {item}: {:#?}", e.lines));
    (l.monthly, l.monthly_min, l.monthly_max)
}

#[track_caller]
fn close(got: (f64, f64, f64), want: (f64, f64, f64)) {
    for (g, w) in [(got.0, want.0), (got.1, want.1), (got.2, want.2)] {
        assert!((g - w).abs() < 1e-9, "got {got:?}, want {want:?}");
    }
}

fn fixed(v: f64) -> (f64, f64, f64) {
    (v, v, v)
}

/// examples/aws.yaml (event API 2 tasks, max 6; runner 4, max 8; both
/// 0.5 vCPU / 1 GB; executors t3.medium 1 of 1..4; Redis cache.t4g.small
/// with a replica; Cloud Map; 8 alarms) at 10 million events a month, by
/// hand from the shipped table's us-east-1 prices.
#[test]
fn the_examples_estimate_is_the_hand_computation_from_the_table() {
    let table = PriceTable::shipped();
    // The prices the hand computation uses, as the table has them.
    let p = &table.regions["us-east-1"];
    assert_eq!(table.hours_per_month, 730.0);
    assert_eq!(p.fargate["x86_64"].vcpu_hour, 0.04048);
    assert_eq!(p.fargate["x86_64"].gb_hour, 0.004445);
    assert_eq!(p.ec2_instance_hour["t3.medium"], 0.0416);
    assert_eq!(p.ebs_gp3_gb_month, 0.08);
    assert_eq!(p.public_ipv4_hour, 0.005);
    assert_eq!(p.elasticache_node_hour["cache.t4g.small"], 0.032);
    assert_eq!(p.sqs_requests_million, 0.40);
    assert_eq!(p.logs_ingested_gb, 0.50);
    assert_eq!(p.logs_stored_gb_month, 0.03);
    assert_eq!(p.alarm_month, 0.10);
    assert_eq!(p.hosted_zone_month, 0.50);
    assert_eq!(p.cloud_map_instance_month, 0.10);
    // And the usage figures: 10M events a month is 3.8 events/s, the
    // lowest band's (measured) figures.
    let band = &table.usage.sqs_requests_per_event[0];
    assert_eq!(band.from_rate, 0.0);
    let per_event = band.event_api + band.runner + band.executor;
    assert_eq!(per_event, 1.0 + 3.0 + 2.1);
    assert_eq!(table.usage.sqs_idle_requests_per_hour.runner, 3600.0);
    assert_eq!(table.usage.sqs_idle_requests_per_hour.executor, 3600.0);
    assert_eq!(table.usage.log_bytes_per_task_hour, 1000.0);
    assert_eq!(table.usage.log_bytes_per_event, 0.0);
    assert_eq!(table.usage.executor_root_volume_gb, 8.0);

    let e = cost::estimate(
        &example_loaded(),
        &table,
        &Options {
            events_per_month: 10_000_000,
            region: None,
        },
    )
    .unwrap();
    assert_eq!(e.region, "us-east-1");
    assert_eq!(e.architecture.as_str(), "x86_64");

    let h = 730.0;
    let want: Vec<(&str, (f64, f64, f64))> = vec![
        // tasks x vCPU x hours x price, at 2 (min 2, max 6) tasks
        (
            "event-api vCPU",
            (
                2.0 * 0.5 * h * 0.04048,
                2.0 * 0.5 * h * 0.04048,
                6.0 * 0.5 * h * 0.04048,
            ),
        ),
        (
            "event-api memory",
            (
                2.0 * 1.0 * h * 0.004445,
                2.0 * 1.0 * h * 0.004445,
                6.0 * 1.0 * h * 0.004445,
            ),
        ),
        (
            "runner vCPU",
            (
                4.0 * 0.5 * h * 0.04048,
                4.0 * 0.5 * h * 0.04048,
                8.0 * 0.5 * h * 0.04048,
            ),
        ),
        (
            "runner memory",
            (
                4.0 * 1.0 * h * 0.004445,
                4.0 * 1.0 * h * 0.004445,
                8.0 * 1.0 * h * 0.004445,
            ),
        ),
        (
            "executors t3.medium",
            (1.0 * h * 0.0416, 1.0 * h * 0.0416, 4.0 * h * 0.0416),
        ),
        (
            "executors' root volumes",
            (1.0 * 8.0 * 0.08, 1.0 * 8.0 * 0.08, 4.0 * 8.0 * 0.08),
        ),
        // every task and executor has a public address: 2+4+1, 2+4+1, 6+8+4
        (
            "public IPv4 addresses",
            (7.0 * h * 0.005, 7.0 * h * 0.005, 18.0 * h * 0.005),
        ),
        // primary and replica
        ("Redis cache.t4g.small", fixed(2.0 * h * 0.032)),
        ("requests per event", fixed(10_000_000.0 * 6.1 / 1e6 * 0.40)),
        // 4 runners and 1 executor polling; 8 and 4 at the maximum
        (
            "idle polling",
            (
                (4.0 + 1.0) * 3600.0 * h / 1e6 * 0.40,
                (4.0 + 1.0) * 3600.0 * h / 1e6 * 0.40,
                (8.0 + 4.0) * 3600.0 * h / 1e6 * 0.40,
            ),
        ),
        // 7 tasks and executors (18 at the maximum) x 1000 B an hour
        (
            "ingestion",
            (
                7.0 * 1000.0 * h / 1e9 * 0.50,
                7.0 * 1000.0 * h / 1e9 * 0.50,
                18.0 * 1000.0 * h / 1e9 * 0.50,
            ),
        ),
        // 14 days of that kept
        (
            "storage",
            (
                7.0 * 1000.0 * h / 1e9 * (14.0 / (h / 24.0)) * 0.03,
                7.0 * 1000.0 * h / 1e9 * (14.0 / (h / 24.0)) * 0.03,
                18.0 * 1000.0 * h / 1e9 * (14.0 / (h / 24.0)) * 0.03,
            ),
        ),
        // 6 scaling alarms and 2 dead-letter alarms
        ("alarms", fixed(8.0 * 0.10)),
        ("Cloud Map namespace (private hosted zone)", fixed(0.50)),
        // the event API's tasks are Cloud Map instances
        ("registered instances", (2.0 * 0.10, 2.0 * 0.10, 6.0 * 0.10)),
    ];
    let items: Vec<&str> = e.lines.iter().map(|l| l.item.as_str()).collect();
    assert_eq!(
        items,
        want.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        "the lines"
    );
    for (item, expected) in &want {
        close(line(&e, item), *expected);
    }
    let total: f64 = want.iter().map(|(_, w)| w.0).sum();
    assert!((e.monthly - total).abs() < 1e-9);
    assert!((e.monthly_max - want.iter().map(|(_, w)| w.2).sum::<f64>()).abs() < 1e-9);
    assert!((e.per_million_events.unwrap() - total / 10.0).abs() < 1e-9);
    // What it comes to, rounded, as the README shows it.
    assert_eq!(cost::money(e.monthly), "$242.56");
    assert_eq!(cost::money(e.monthly_max), "$527.65");
}

/// The table has the three regions the brief names, each prices the
/// example; Ireland's EC2 and ElastiCache prices are its own; a region not
/// in the table is an error that names it and the fix.
#[test]
fn the_table_prices_the_example_in_each_of_its_regions() {
    let table = PriceTable::shipped();
    for region in ["us-east-1", "us-west-2", "eu-west-1"] {
        assert!(table.regions.contains_key(region), "{region}");
        let e = cost::estimate(
            &example_loaded(),
            &table,
            &Options {
                events_per_month: 0,
                region: None,
            },
        );
        assert!(e.is_ok(), "{region}: {e:?}");
    }
    let fp = cost::footprint(&example_loaded()).unwrap();
    let ireland = cost::estimate_footprint("reference", "eu-west-1", &fp, &table, 0).unwrap();
    close(
        line(&ireland, "executors t3.medium"),
        (730.0 * 0.0456, 730.0 * 0.0456, 4.0 * 730.0 * 0.0456),
    );
    close(
        line(&ireland, "Redis cache.t4g.small"),
        fixed(2.0 * 730.0 * 0.036),
    );
    let err = cost::estimate_footprint("reference", "sa-east-1", &fp, &table, 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`sa-east-1`")
            && err.contains("eu-west-1, us-east-1, us-west-2")
            && err.contains("--prices FILE"),
        "{err}"
    );
}

/// MemoryDB prices its nodes (a primary and a replica) instead of
/// ElastiCache's.
#[test]
fn memorydb_nodes_are_priced_as_memorydb() {
    let mut loaded = example_loaded();
    loaded.spec.state.memorydb = Some(stacks::spec::MemoryDb::default());
    let table = PriceTable::shipped();
    let e = cost::estimate(&loaded, &table, &Options::default()).unwrap();
    close(line(&e, "Redis db.t4g.small"), fixed(2.0 * 730.0 * 0.054));
    assert!(e.lines.iter().all(|l| l.service != "ElastiCache"));
}

/// A `vpc_link` event API adds its network load balancer (hours and
/// capacity units), the VPC link (no charge of its own) and, with events,
/// the REST API's requests.
#[cfg(feature = "aws")]
#[test]
fn a_vpc_link_event_api_brings_its_load_balancer_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = crate::support::example_in(dir.path(), "event_api: vpc_link");
    let table = PriceTable::shipped();
    let e = cost::estimate(
        &loaded,
        &table,
        &Options {
            events_per_month: 2_000_000,
            region: None,
        },
    )
    .unwrap();
    close(
        line(&e, "network load balancer (internal)"),
        fixed(730.0 * 0.0225),
    );
    close(
        line(&e, "network load balancer capacity units"),
        fixed(730.0 * 0.006),
    );
    close(line(&e, "VPC link"), fixed(0.0));
    close(line(&e, "REST API requests"), fixed(2.0 * 3.50));
}

/// The figures per event fall as the rate grows: a rate gets the band it
/// reaches, below the lowest the lowest.
#[test]
fn the_sqs_band_is_the_highest_the_rate_reaches() {
    let usage = PriceTable::shipped().usage;
    let from = |rate: f64| usage.sqs_band(rate).unwrap().from_rate;
    assert_eq!(from(0.0), 0.0);
    assert_eq!(from(3.8), 0.0);
    assert_eq!(from(99.9), 0.0);
    assert_eq!(from(100.0), 100.0);
    assert_eq!(from(499.0), 100.0);
    assert_eq!(from(5000.0), 500.0);
    // The BENCHMARKS.md figures at 500 events/s and above.
    let b = usage.sqs_band(500.0).unwrap();
    assert_eq!((b.event_api, b.runner, b.executor), (0.10, 0.44, 0.39));
}

/// Applying a new count to an auto-scaled service moves its bounds; the
/// count AWS runs stays as observed, brought inside them.
#[test]
fn a_planned_change_keeps_an_autoscaled_count_inside_the_new_bounds() {
    let before = cost::footprint(&example_loaded()).unwrap();
    let mut loaded = example_loaded();
    loaded.spec.services.runner.count = 8;
    let after = cost::footprint(&loaded).unwrap();
    let runner = |f: &Footprint| {
        f.services
            .iter()
            .find(|s| s.name == "runner")
            .map(|s| (s.count, s.min, s.max))
            .unwrap()
    };
    assert_eq!(runner(&before), (4.0, 4.0, 8.0));
    assert_eq!(
        runner(&after.clone().settled_over(&before)),
        (8.0, 8.0, 8.0)
    );
    // Scaled out to 6 by then: a lower bound of 5 keeps the 6.
    let mut scaled = before.clone();
    scaled
        .services
        .iter_mut()
        .find(|s| s.name == "runner")
        .unwrap()
        .count = 6.0;
    loaded.spec.services.runner.count = 5;
    let after = cost::footprint(&loaded).unwrap().settled_over(&scaled);
    assert_eq!(runner(&after), (6.0, 5.0, 8.0));
}

#[test]
fn counts_of_events_parse() {
    assert_eq!(cost::parse_count("2500000"), Ok(2_500_000));
    assert_eq!(cost::parse_count("2,500,000"), Ok(2_500_000));
    assert_eq!(cost::parse_count("2.5M"), Ok(2_500_000));
    assert_eq!(cost::parse_count("800k"), Ok(800_000));
    assert_eq!(cost::parse_count("1B"), Ok(1_000_000_000));
    assert!(cost::parse_count("lots").is_err());
    assert!(cost::parse_count("-1").is_err());
}
