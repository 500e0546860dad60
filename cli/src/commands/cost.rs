//! `stackctl cost [FILE | -f FILE]`: the monthly estimate of an aws stack's
//! resources, line by line (`stacks::cost::estimate`), from the price table
//! shipped with the tool or `--prices FILE`; `--events-per-month N` adds the
//! request-priced lines and the cost per million events. `--dump-prices`
//! prints the shipped table. `--live-prices` asks the AWS Price List API
//! for the prices (`stacks::cost::live`, aws-config's credentials), failing
//! on any it does not give unless `--fallback-to-table`; each line says
//! where its price comes from. Otherwise reads no AWS API. Exit 0; 1 on
//! errors (a region or type without a price among them); 2 on an invalid
//! spec.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::up::{StackFile, load};
use crate::output::{self, Exit, Output};

/// Estimate what an aws stack costs a month, line by line.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  stackctl cost examples/aws.yaml
  stackctl cost examples/aws.yaml --events-per-month 10M
  stackctl cost --dump-prices > prices.json   # edit, then: stackctl cost aws.yaml --prices prices.json
  stackctl cost examples/aws.yaml --live-prices   # prices from the AWS Price List API (needs credentials)")]
pub struct CostArgs {
    #[command(flatten)]
    stack: StackFile,
    /// Events a month (e.g. 2500000, 10M, 800k): adds SQS, API Gateway and log lines priced
    /// per event, from the SQS requests one event costs in this engine (measured).
    #[arg(long, value_name = "N", default_value = "0", value_parser = stacks::cost::parse_count)]
    events_per_month: u64,
    /// A price table of the shape `--dump-prices` prints, instead of the shipped one.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// The region to price when the spec names none.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Print the shipped price table (JSON) and exit.
    #[arg(long, exclusive = true)]
    dump_prices: bool,
    /// Fetch the prices from the AWS Price List API (GetProducts at its us-east-1 endpoint,
    /// whatever the stack's region; AWS credentials from the usual chain, any account).
    /// Fails naming every price it cannot fetch, unless --fallback-to-table.
    #[arg(long)]
    live_prices: bool,
    /// With --live-prices: take the table's price for what the Price List API does not
    /// price; each line says whether its price is `live` or from the `table`.
    #[arg(long, requires = "live_prices")]
    fallback_to_table: bool,
}

/// Runs `stackctl cost`.
pub async fn run(args: CostArgs, out: Output) -> anyhow::Result<Exit> {
    if args.dump_prices {
        output::print_text(stacks::cost::PriceTable::shipped_text())?;
        return Ok(Exit::Ok);
    }
    let loaded = match load(&args.stack, out)? {
        Ok(loaded) => loaded,
        Err(exit) => return Ok(exit),
    };
    let table = stacks::cost::PriceTable::load_or_shipped(args.prices.as_deref())?;
    let options = stacks::cost::Options {
        events_per_month: args.events_per_month,
        region: args.region,
    };
    let estimate = if args.live_prices {
        let fallback = if args.fallback_to_table {
            stacks::cost::live::Fallback::ToTable
        } else {
            stacks::cost::live::Fallback::Never
        };
        stacks::cost::live::estimate_live(&loaded, &table, &options, fallback).await
    } else {
        stacks::cost::estimate(&loaded, &table, &options)
    }
    .with_context(|| format!("cannot estimate the cost of {}", loaded.path.display()))?;
    match out {
        Output::Human => output::print_text(&estimate.render_text())?,
        Output::Json => output::print_json(&estimate)?,
    }
    Ok(Exit::Ok)
}
