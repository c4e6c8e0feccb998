//! A partition written by Ballista's executors: the node that fits a query's output to its
//! table and uploads it as Parquet files where it is computed, and the codec that carries
//! that node to the executors.
//!
//! The node runs sluice's own `Fitter` and `PartitionWriter`, so the files are the ones
//! the embedded engine writes (record ids, partition column, conform, bad rows set aside).
//! Each of its tasks sends back, as rows of (kind, payload), the `add` actions of the files
//! it uploaded, the rows it left out and its row count; nothing is committed there. The
//! process that runs the partition gathers them and commits under its lease, as for the
//! embedded engine. A task that dies has uploaded files no `add` names: orphans, which
//! `gc` removes after the retention.

use crate::delta::{PartitionWriter, WriterLayout};
use crate::engine::BadRow;
use crate::engine::fit::{FitRules, Fitter};
use crate::names::Name;
use crate::schema::TableSchema;
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use deltalake::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use deltalake::datafusion::physical_plan::stream::RecordBatchReceiverStream;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use deltalake::datafusion::scalar::ScalarValue;
use futures::StreamExt as _;
use prost::Message as _;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use url::Url;

/// What the executors need to write one partition's files.
#[derive(Debug, Clone)]
pub struct WriteSpec {
    /// The physical version's Delta table.
    pub url: Url,
    pub table: TableSchema,
    pub layout: WriterLayout,
    pub fit: FitRules,
}

crate::spelling::spelled_enum! {
    /// What a task sends back, one row per item.
    pub enum Sent {
        /// A file uploaded, as its Delta `add` action (JSON).
        Add => "add",
        /// An output row left out under `bad_rows = "skip"` (a [`BadRow`] as JSON).
        Rejected => "rejected",
        /// The rows the task wrote.
        Rows => "rows",
    }
}

/// The schema of what the node returns.
pub fn sent_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// The `executor_after_upload` failpoint stops only tasks of this many rows or more: none
/// of the sample's partitions, only a big one.
const BIG_TASK_ROWS: u64 = 100_000;

/// Rows left out are sent back this many at a time, so that a task keeps few of them.
const REJECTED_PER_BATCH: usize = 1000;

/// Fits its input to the table and writes it as new files of the partition, per input
/// partition; returns what it wrote.
#[derive(Debug)]
pub struct PartitionWriteExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<WriteSpec>,
    properties: Arc<PlanProperties>,
}

impl PartitionWriteExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, spec: Arc<WriteSpec>) -> PartitionWriteExec {
        let parts = input.properties().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(sent_schema()),
            Partitioning::UnknownPartitioning(parts),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        PartitionWriteExec {
            input,
            spec,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for PartitionWriteExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PartitionWriteExec: table={}", self.spec.table.name)
    }
}

impl ExecutionPlan for PartitionWriteExec {
    fn name(&self) -> &str {
        "PartitionWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(PartitionWriteExec::new(input, self.spec.clone()))),
            Err(_) => Err(DataFusionError::Internal(
                "PartitionWriteExec has one input".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let parts = self.properties.output_partitioning().partition_count();
        let spec = self.spec.clone();
        let mut builder = RecordBatchReceiverStream::builder(sent_schema(), 2);
        let tx = builder.tx();
        builder.spawn(write_part(spec, input, (partition, parts), tx));
        Ok(builder.build())
    }
}

/// One task: input partition `part.0` of `part.1`, fitted and uploaded.
async fn write_part(
    spec: Arc<WriteSpec>,
    mut input: SendableRecordBatchStream,
    part: (usize, usize),
    tx: Sender<DfResult<RecordBatch>>,
) -> DfResult<()> {
    let mut rules = spec.fit.clone();
    if part.1 > 1 {
        // A dead letter's line counts the rows of its own part of the output.
        rules.origin = format!("{} part {} of {}", rules.origin, part.0 + 1, part.1);
    }
    let mut fitter = Fitter::with_rules(rules, &spec.table, &input.schema(), |_| {
        "remove it from the SELECT, or add the column to the table with a migration".into()
    })
    .map_err(external)?;
    let mut writer = PartitionWriter::at(&spec.url, fitter.target_schema(), spec.layout.clone())
        .map_err(external)?;
    let mut rejected = Vec::new();
    while let Some(batch) = input.next().await {
        let fitted = fitter.fit(&batch?).map_err(external)?;
        for r in &fitted.rejected {
            rejected.push(serde_json::to_string(r).map_err(external)?);
        }
        if rejected.len() >= REJECTED_PER_BATCH && !send(&tx, Sent::Rejected, &mut rejected).await {
            return Ok(());
        }
        writer.write(fitted.batch).await.map_err(external)?;
    }
    let mut rows = vec![writer.rows().to_string()];
    let written = writer.rows();
    let adds = writer.finish().await.map_err(external)?;
    if written >= BIG_TASK_ROWS {
        crate::failpoint::pause_if_set("executor_after_upload").await;
    }
    let mut adds = adds
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(external)?;
    let _ = send(&tx, Sent::Rejected, &mut rejected).await
        && send(&tx, Sent::Add, &mut adds).await
        && send(&tx, Sent::Rows, &mut rows).await;
    Ok(())
}

/// Sends `payloads` (emptied) as rows of `kind`; false when nobody reads any more.
async fn send(tx: &Sender<DfResult<RecordBatch>>, kind: Sent, payloads: &mut Vec<String>) -> bool {
    if payloads.is_empty() {
        return true;
    }
    let kinds = StringArray::from(vec![kind.as_str(); payloads.len()]);
    let values = StringArray::from(std::mem::take(payloads));
    let batch = RecordBatch::try_new(sent_schema(), vec![Arc::new(kinds), Arc::new(values)])
        .map_err(DataFusionError::from);
    tx.send(batch).await.is_ok()
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A task's rows read back: what the process that commits gathers.
pub fn read_sent(batch: &RecordBatch) -> Result<Vec<(Sent, &str)>, String> {
    let column = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| "the cluster sent back rows of an unexpected shape".to_string())
    };
    let (kinds, payloads) = (column(0)?, column(1)?);
    (0..batch.num_rows())
        .map(|i| {
            let kind = kinds.value(i).parse::<Sent>().map_err(|e| e.to_string())?;
            Ok((kind, payloads.value(i)))
        })
        .collect()
}

/// A rejected row as sent back.
pub fn rejected_row(payload: &str) -> Result<BadRow, String> {
    serde_json::from_str(payload).map_err(|e| format!("a rejected row sent back: {e}"))
}

/// [`WriteSpec`] on the wire. Partition values are DataFusion's protobuf scalars, so that
/// every type round-trips exactly.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireSpec {
    url: String,
    table: TableSchema,
    layout: WriterLayout,
    record_id: Option<Name>,
    key: Vec<Name>,
    skip_bad_rows: bool,
    origin: String,
    partition: Vec<(String, Vec<u8>, String)>,
}

impl WireSpec {
    fn of(spec: &WriteSpec) -> DfResult<WireSpec> {
        let partition = spec
            .fit
            .partition
            .iter()
            .map(|(column, value, text)| {
                let proto = datafusion_proto_common::ScalarValue::try_from(value)
                    .map_err(|e| DataFusionError::Internal(format!("partition value: {e}")))?;
                Ok((column.clone(), proto.encode_to_vec(), text.clone()))
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(WireSpec {
            url: spec.url.to_string(),
            table: spec.table.clone(),
            layout: spec.layout.clone(),
            record_id: spec.fit.record_id.clone(),
            key: spec.fit.key.clone(),
            skip_bad_rows: spec.fit.skip_bad_rows,
            origin: spec.fit.origin.clone(),
            partition,
        })
    }

    fn into_spec(self) -> DfResult<WriteSpec> {
        let partition = self
            .partition
            .into_iter()
            .map(|(column, bytes, text)| {
                let bad = |e: String| DataFusionError::Internal(format!("partition value: {e}"));
                let proto = datafusion_proto_common::ScalarValue::decode(bytes.as_slice())
                    .map_err(|e| bad(e.to_string()))?;
                let value = ScalarValue::try_from(&proto).map_err(|e| bad(e.to_string()))?;
                Ok((column, value, text))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let url = Url::parse(&self.url)
            .map_err(|e| DataFusionError::Internal(format!("table URL {}: {e}", self.url)))?;
        Ok(WriteSpec {
            url,
            table: self.table,
            layout: self.layout,
            fit: FitRules {
                record_id: self.record_id,
                key: self.key,
                skip_bad_rows: self.skip_bad_rows,
                origin: self.origin,
                partition,
            },
        })
    }
}

/// Marks a node of ours in a plan on the wire; anything else is Ballista's.
const WRITE_NODE: &[u8] = b"sluice:partition-write:1\n";

/// Ballista's codec, and sluice's write node. The scheduler, every executor and the
/// process that submits a partition use it (`sluice ballista scheduler|executor` register
/// it), so that one binary runs everything a sluice plan holds.
#[derive(Debug, Default)]
pub struct SluiceCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for SluiceCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(json) = buf.strip_prefix(WRITE_NODE) else {
            return self.ballista.try_decode(buf, inputs, ctx, converter);
        };
        let wire: WireSpec = serde_json::from_slice(json)
            .map_err(|e| DataFusionError::Internal(format!("sluice's write node: {e}")))?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(
                "sluice's write node has one input".into(),
            ));
        };
        Ok(Arc::new(PartitionWriteExec::new(
            input.clone(),
            Arc::new(wire.into_spec()?),
        )))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(write) = node.downcast_ref::<PartitionWriteExec>() else {
            return self.ballista.try_encode(node, buf, converter);
        };
        buf.extend_from_slice(WRITE_NODE);
        serde_json::to_writer(buf, &WireSpec::of(&write.spec)?)
            .map_err(|e| DataFusionError::Internal(format!("sluice's write node: {e}")))
    }
}
