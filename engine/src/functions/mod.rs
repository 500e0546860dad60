//! Declarative functions: the model users write in YAML (triggers, steps,
//! retries, concurrency), shared by the engine (which runs them) and by
//! `stacks` (which validates them inside a stack spec).

mod duration;
mod model;

pub use duration::{Duration, DurationError};
pub use model::*;
