//! The integration suite: one test binary (each binary is another long link), modules by
//! capability. Most tests drive the real `sluice` binary on a temp copy of the sample
//! project, and read what it wrote with readers that are not sluice. In-process: the
//! daemon's scheduling tests (a manual clock instead of sleeping), the catalog's state
//! machine (`catalog`), SQL behaviour as data files (`sql`, `tests/sql/*.slt`), and the
//! architecture's import rules (`architecture`).

mod architecture;
mod backfill;
mod bad_input;
mod ballista;
mod catalog;
mod catalog_outage;
mod command_inputs;
mod cost;
mod daemon;
mod daemon_process;
mod data_changes;
mod database_inputs;
mod dry_runs;
mod env_builds;
mod environments;
mod faults;
mod foundation;
mod job_tests;
mod keys;
mod keys_alone;
mod keys_changes;
mod lineage;
mod memory;
mod merge;
mod migrate;
mod newcomer;
mod notify;
mod notify_delivery;
mod quality;
mod replay;
mod retention;
mod soak;
mod sql;
mod synthetic_catalog;
mod tables;
mod ui;
mod ui_actions;
mod ui_grid;
mod util;
mod workers;
