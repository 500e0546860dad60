//! The stacks library's integration tests: specs, the resource graph, the
//! AWS provider on moto, benchmarks' building blocks and images. One test
//! binary: one link, one place for the shared helpers.

#[cfg(feature = "aws")]
mod aws_apigateway;
#[cfg(feature = "aws")]
mod aws_apply;
#[cfg(feature = "aws")]
mod aws_describe;
#[cfg(feature = "aws")]
mod aws_down;
#[cfg(feature = "aws")]
mod aws_elbv2;
#[cfg(feature = "aws")]
mod aws_engine_config;
#[cfg(feature = "aws")]
mod aws_observability;
mod bench;
#[cfg(feature = "aws")]
mod bench_aws;
mod bench_engine;
mod cost;
mod graph;
mod graph_plan;
mod image_registry;
mod spec_corpus;
mod spec_load;
mod spec_schema;
mod support;
