//! sluice: partitioned, idempotent batch jobs that write versioned Delta Lake tables.
//!
//! See `ARCHITECTURE.md` for the code map and the invariants each module keeps.

pub mod actor;
pub mod app;
pub mod backfill;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod command_input;
pub mod config;
pub mod cost;
pub mod daemon;
pub mod database_input;
pub mod dead_letters;
pub mod delta;
pub mod diff;
pub mod duration;
pub mod engine;
pub mod failpoint;
pub mod fingerprint;
pub mod gc;
pub mod job;
pub mod job_tests;
pub mod lineage;
pub mod logging;
pub mod merge;
pub mod migrate;
pub mod names;
pub mod notify;
pub mod partition;
pub mod project;
pub mod promote;
pub mod provenance;
pub mod quality;
pub mod query;
pub mod redact;
pub mod run;
pub mod scaffold;
pub mod schema;
pub mod spelling;
pub mod text;
pub mod ui;
pub mod validate;
pub mod warehouse;
