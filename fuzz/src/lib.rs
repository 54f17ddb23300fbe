//! Shared by the fuzz targets; `checks` is also included by
//! `tests/robustness.rs` so that `cargo test` checks the same invariants.

pub mod checks;
