//! The starter specs `stackctl init` writes, embedded from `templates/`.

/// `stackctl init --provider aws`.
pub const INIT_AWS: &str = include_str!("../../../templates/init-aws.yaml");

/// `stackctl init --provider local`.
pub const INIT_LOCAL: &str = include_str!("../../../templates/init-local.yaml");
