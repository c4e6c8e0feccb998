//! A partition's output as its table will hold it: the planned query executed, each batch
//! fitted (`fit`: record ids, partition column, conform). A run uploads what comes out;
//! `sluice test` compares it with a test's expected rows. One path, so a test checks what
//! a run would write.

use super::conform::ConformError;
use super::fit::{Fitted, Fitter};
use super::{Engine, EngineError, PartitionQuery, TextFile};
use crate::schema::TableSchema;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::logical_expr::LogicalPlan;
use futures::StreamExt as _;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Conform(#[from] ConformError),
}

/// The fitted output of one partition's query, batch by batch.
pub struct FittedOutput {
    stream: SendableRecordBatchStream,
    fitter: Fitter,
    /// The CSV and JSON files the query reads (for the bad-row scan when a read fails).
    pub text_files: Vec<TextFile>,
    /// Whether the SQL orders its rows (ends in ORDER BY): a test then compares in order.
    pub ordered: bool,
    /// Kept while the output streams (see [`super::Prepared::scratch`]).
    _scratch: super::Scratch,
}

/// A failure, with the text files the query was reading (empty if it never started).
pub type OutputFailure = (OutputError, Vec<TextFile>);

impl Engine {
    /// Plans the partition's query against `table` and starts it. `unknown_column_hint`
    /// says what to do about a column the table lacks.
    pub async fn output<'a>(
        &self,
        q: &PartitionQuery<'a>,
        table: &TableSchema,
        unknown_column_hint: impl Fn(&str) -> String,
    ) -> Result<FittedOutput, OutputFailure> {
        let prepared = self.prepare(q).await.map_err(|e| (e.into(), Vec::new()))?;
        let text_files = prepared.text_files;
        let scratch = prepared.scratch;
        let ordered = ends_in_order(prepared.df.logical_plan());
        let stream = match super::execute(prepared.df).await {
            Ok(s) => s,
            Err(e) => return Err((e.into(), text_files)),
        };
        let fitter = match Fitter::new(q.job, table, &q.key, &stream.schema(), unknown_column_hint)
        {
            Ok(f) => f,
            Err(e) => return Err((e.into(), text_files)),
        };
        Ok(FittedOutput {
            stream,
            fitter,
            text_files,
            ordered,
            _scratch: scratch,
        })
    }
}

impl FittedOutput {
    /// The table's Arrow schema: what every fitted batch has.
    pub fn target_schema(&self) -> SchemaRef {
        self.fitter.target_schema()
    }

    /// The next fitted batch; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Fitted, OutputFailure>> {
        let batch = self.stream.next().await?;
        let fitted = match batch {
            Ok(b) => self.fitter.fit(&b).map_err(OutputError::from),
            Err(e) => Err(super::execution_error(e).into()),
        };
        Some(fitted.map_err(|e| (e, self.text_files.clone())))
    }
}

/// Whether the plan's rows come out of a sort: ORDER BY, perhaps under a projection, a
/// LIMIT or an alias.
fn ends_in_order(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(_) => true,
        LogicalPlan::Projection(p) => ends_in_order(&p.input),
        LogicalPlan::Limit(l) => ends_in_order(&l.input),
        LogicalPlan::SubqueryAlias(s) => ends_in_order(&s.input),
        _ => false,
    }
}
