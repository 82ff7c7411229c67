//! ctem: Continuous Threat Exposure Management from the terminal.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod explain;
pub mod generator;
pub mod ingest;
pub mod model;
pub mod mobilize;
pub mod paths;
pub mod query;
pub mod report;
pub mod risk;
pub mod routing;
pub mod fixplan;
pub mod intel;
pub mod store;
pub mod sync;
pub mod tui;

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
