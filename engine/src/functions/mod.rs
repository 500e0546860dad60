//! Declarative functions: the model users write in YAML (triggers, steps,
//! retries, concurrency), shared by the engine (which runs them) and by
//! `stacks` (which validates them inside a stack spec).

pub mod duration;
mod expr;
mod model;
mod validate;

pub use duration::{Duration, DurationError};
pub use expr::{CompiledFunction, ExprError, Expression, Vars};
pub use model::*;
pub use validate::*;
