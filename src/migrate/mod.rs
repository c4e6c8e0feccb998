//! `migrate`: the plan `migrate --plan` prints (`plan`: pending files in order, the ledger
//! checked against the files, each change classified), and its execution, the only path
//! that changes a table's schema (`apply`). The files themselves are read with the project
//! (`project::migration_files`).

mod apply;
mod plan;

pub use apply::{Applied, MigrateError, Options, apply, existing_tables};
pub use plan::{
    Change, ExistingTable, MigrationPlan, PlanError, PlannedMigration, plan, remaining_references,
};

/// Why destructive changes need a step of their own, and the way around them.
pub const EXPAND_CONTRACT: &str = "destructive changes break every reader and job that still uses the old shape, and cannot be undone by a rollback. Use expand/contract instead: (1) expand: add the new column or table in an additive migration and apply it; (2) change the jobs to write the new shape, backfill, and move readers over; (3) contract: when no job uses the old column or table any more, put the destructive change in a migration of its own and apply it with `sluice migrate --allow-destructive`";
