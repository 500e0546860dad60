//! The stack spec: its types, loading (interpolation, located YAML) and
//! validation that reports every error with its place and its fix.

mod model;

pub use model::*;
