//! What a front door asks of sluice. The CLI, the web view and the front doors to come
//! turn their input (arguments, a form) into the requests here and show the answers; the
//! rules (which partition text names a declared partition, how a flip is planned and
//! recorded, what a table's versions hold) live here once, so two front doors cannot
//! disagree. Below this layer: the project, the catalog, the runner; above it, only
//! parsing and rendering.

pub mod backfill;
pub mod coverage;
pub mod deliver;
pub mod downstream;
pub mod env_apply;
pub mod env_classify;
pub mod env_gate;
pub mod env_plan;
pub mod flip;
pub mod partition;
pub mod partition_detail;
pub mod retention;
pub mod status;
