//! Starts real components for tests on free loopback ports.
