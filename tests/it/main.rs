//! The integration suite: one test binary (each binary is another long link), modules by
//! capability. Every test drives the real `sluice` binary on a temp copy of the sample
//! project, and reads what it wrote with readers that are not sluice. The daemon's
//! scheduling tests drive its core in-process with a manual clock instead of sleeping.

mod backfill;
mod daemon;
mod foundation;
mod migrate;
mod quality;
mod tables;
mod util;
mod workers;
