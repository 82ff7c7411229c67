//! Integration tests: one binary (every test binary links DuckDB again).

mod badinput;
mod common;
mod formats;
mod lifecycle;
mod process;
mod sample;
