//! Integration tests: one binary (every test binary links DuckDB again).

mod badinput;
mod common;
mod console;
mod controls;
mod e2e;
mod formats;
mod lifecycle;
mod mobilization;
mod prioritization;
mod process;
mod sample;
mod sync;
