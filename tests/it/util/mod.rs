//! Test helpers: a temp copy of the sample project, the real binary run inside it, and
//! readers of its Delta tables that share no code with sluice's write path. On failure they
//! print the command, the folder, stdout and stderr. By what they hold: `project` (the
//! project and its commands), `stores` (the servers the suite may run against, and local
//! copies of a remote warehouse), `readers` (independent readers of the tables),
//! `processes` (helper programs, signals, waits), `json` (strict JSON).

#![allow(dead_code)]

mod json;
mod processes;
mod project;
mod readers;
mod stores;

pub use json::strict_json;
pub use processes::*;
pub use project::*;
pub use readers::*;
pub use stores::*;
