//! stackctl's library: the stack spec and its validation, the resource graph
//! and plan, and the providers that apply it (aws, local).

pub mod arch;
#[cfg(feature = "aws")]
pub mod aws;
pub mod bench;
pub mod cost;
pub mod dlq;
pub mod engine_config;
pub mod figures;
pub mod graph;
pub mod image;
pub mod local;
pub mod progress;
pub mod runs;
pub mod spec;
pub mod stackref;
