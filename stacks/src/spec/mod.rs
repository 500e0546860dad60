//! The stack spec: its types, loading (interpolation, located YAML) and
//! validation that reports every error with its place and its fix.
//!
//! Flow: [`load`] reads the file into a located tree ([`yaml`]), applies
//! `${VAR}` interpolation ([`interpolate`]), checks the tree against the JSON
//! Schema generated from the types ([`schema`]), deserializes the typed
//! [`Spec`] and functions, runs the semantic checks ([`semantic`], and the
//! engine's function checks), and returns either the loaded spec with its
//! warnings ([`SpecWarnings`]) or every problem as a [`SpecErrors`]
//! ([`diagnostic`]).

pub mod diagnostic;
pub mod interpolate;
mod load;
mod model;
pub mod schema;
pub mod semantic;
pub mod templates;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity, SpecErrors, SpecWarnings};
pub use load::{LoadError, LoadedFunction, LoadedSpec, load, load_str, load_with_env};
pub use model::*;
pub use schema::{function_schema, spec_schema};
