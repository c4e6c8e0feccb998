//! The dependency graph between jobs: which job writes which table, who reads it, in what
//! order they run, and the checks that need more than one spec (unknown tables, two writers
//! of one table, cycles).

use super::{Job, SpecError};
use crate::names::Name;
use crate::schema::TableSchema;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// table -> the job that writes it
    pub writer: BTreeMap<Name, Name>,
    /// job -> jobs whose tables it reads
    pub upstream: BTreeMap<Name, BTreeSet<Name>>,
    /// jobs in an order where every job comes after the jobs it reads from
    pub order: Vec<Name>,
}

impl Graph {
    /// Checks `jobs` against each other and against the declared table schemas. Returns the
    /// graph of the jobs that passed, and one error per problem; a job with a problem is left
    /// out of the graph (and its downstream jobs with it), the others go on.
    pub fn build(
        root: &Path,
        jobs: &mut BTreeMap<Name, Job>,
        tables: &BTreeMap<Name, TableSchema>,
    ) -> (Graph, Vec<SpecError>) {
        let mut errors = Vec::new();
        let mut bad: BTreeSet<Name> = BTreeSet::new();
        let mut writer = writers(root, jobs, tables, &mut errors, &mut bad);
        let mut upstream = upstream_jobs(root, jobs, tables, &writer, &mut errors, &mut bad);
        let mut order = topological_order(root, jobs, &upstream, &mut errors, &mut bad);

        // A job whose upstream failed validation cannot run either.
        loop {
            let before = bad.len();
            for (j, ups) in &upstream {
                if !bad.contains(j) && ups.iter().any(|u| bad.contains(u)) {
                    bad.insert(j.clone());
                }
            }
            if bad.len() == before {
                break;
            }
        }
        for b in &bad {
            jobs.remove(b);
            upstream.remove(b);
        }
        writer.retain(|_, j| !bad.contains(j));
        order.retain(|j| !bad.contains(j));
        (
            Graph {
                writer,
                upstream,
                order,
            },
            errors,
        )
    }

    /// Jobs that read `job`'s table, directly or further down.
    pub fn downstream_of(&self, job: &Name) -> BTreeSet<Name> {
        let mut out = BTreeSet::new();
        let mut frontier = vec![job.clone()];
        while let Some(j) = frontier.pop() {
            for (d, ups) in &self.upstream {
                if ups.contains(&j) && out.insert(d.clone()) {
                    frontier.push(d.clone());
                }
            }
        }
        out
    }
}

/// Each table's one writer, and each job's output checked against its table's schema.
fn writers(
    root: &Path,
    jobs: &BTreeMap<Name, Job>,
    tables: &BTreeMap<Name, TableSchema>,
    errors: &mut Vec<SpecError>,
    bad: &mut BTreeSet<Name>,
) -> BTreeMap<Name, Name> {
    let mut writer: BTreeMap<Name, Name> = BTreeMap::new();
    for job in jobs.values() {
        let file = job.spec_file(root);
        let mut err = |m: String| {
            errors.push(SpecError {
                file: file.clone(),
                message: m,
            });
            bad.insert(job.name.clone());
        };
        if let Some(other) = writer.get(&job.table) {
            err(format!(
                "output table `{}` is also written by job `{other}`; a table has one writer",
                job.table
            ));
            continue;
        }
        writer.insert(job.table.clone(), job.name.clone());
        match tables.get(&job.table) {
            None => err(format!(
                "output table `{}` is not created by any file in migrations/; add migrations/NNNN_create_{}.sql with CREATE TABLE {} (...)",
                job.table, job.table, job.table
            )),
            Some(schema) => {
                if let Err(m) = super::partitioning::check_table(job, schema) {
                    err(m);
                }
                for k in &job.key {
                    if schema.column(k.as_str()).is_none() {
                        err(format!(
                            "field `output.key`: `{k}` is not a column of table `{}`",
                            job.table
                        ));
                    }
                }
            }
        }
    }
    writer
}

/// The jobs each job reads from; an upstream table nothing declares is an error.
fn upstream_jobs(
    root: &Path,
    jobs: &BTreeMap<Name, Job>,
    tables: &BTreeMap<Name, TableSchema>,
    writer: &BTreeMap<Name, Name>,
    errors: &mut Vec<SpecError>,
    bad: &mut BTreeSet<Name>,
) -> BTreeMap<Name, BTreeSet<Name>> {
    let mut upstream: BTreeMap<Name, BTreeSet<Name>> = BTreeMap::new();
    for job in jobs.values() {
        let file = job.spec_file(root);
        let mut ups = BTreeSet::new();
        for (t, _) in job.upstream_tables() {
            if let Some(w) = writer.get(t) {
                ups.insert(w.clone());
            } else if !tables.contains_key(t) {
                errors.push(SpecError {
                    file: file.clone(),
                    message: format!(
                        "unknown upstream table `{t}`: no job writes it and no migration creates it; check the name or add the job that writes it"
                    ),
                });
                bad.insert(job.name.clone());
            }
        }
        upstream.insert(job.name.clone(), ups);
    }
    upstream
}

/// Jobs in dependency order (upstream first); every job on a cycle is reported with the
/// cycle and marked bad.
fn topological_order(
    root: &Path,
    jobs: &BTreeMap<Name, Job>,
    upstream: &BTreeMap<Name, BTreeSet<Name>>,
    errors: &mut Vec<SpecError>,
    bad: &mut BTreeSet<Name>,
) -> Vec<Name> {
    // Cycles: depth-first search; every job on a cycle is reported with the cycle.
    let mut state: BTreeMap<&Name, u8> = BTreeMap::new(); // 1 = on stack, 2 = done
    let mut order: Vec<Name> = Vec::new();
    let mut cyclic: BTreeSet<Name> = BTreeSet::new();
    fn visit<'a>(
        n: &'a Name,
        upstream: &'a BTreeMap<Name, BTreeSet<Name>>,
        state: &mut BTreeMap<&'a Name, u8>,
        stack: &mut Vec<&'a Name>,
        order: &mut Vec<Name>,
        cycles: &mut Vec<Vec<Name>>,
    ) {
        match state.get(n) {
            Some(2) => return,
            Some(1) => {
                let from = stack.iter().position(|x| *x == n).unwrap_or(0);
                cycles.push(stack[from..].iter().map(|x| (*x).clone()).collect());
                return;
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        if let Some(ups) = upstream.get(n) {
            for u in ups {
                visit(u, upstream, state, stack, order, cycles);
            }
        }
        stack.pop();
        state.insert(n, 2);
        order.push(n.clone());
    }
    let mut cycles = Vec::new();
    for n in upstream.keys() {
        let mut stack = Vec::new();
        visit(n, upstream, &mut state, &mut stack, &mut order, &mut cycles);
    }
    for cycle in cycles {
        let path: Vec<String> = cycle
            .iter()
            .chain(cycle.first())
            .map(|n| n.to_string())
            .collect();
        for n in &cycle {
            if cyclic.insert(n.clone()) {
                let file = jobs.get(n).map(|j| j.spec_file(root)).unwrap_or_default();
                errors.push(SpecError {
                    file,
                    message: format!(
                        "dependency cycle: {} (each job reads the table of the next); break the cycle",
                        path.join(" -> ")
                    ),
                });
            }
        }
    }
    bad.extend(cyclic);
    order
}
