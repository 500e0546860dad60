//! stackctl's library: the stack spec and its validation, the resource graph
//! and plan, and the providers that apply it (aws, local).

pub mod spec;
