//! Join outputs whose text columns own their bytes, so that memory accounting sees what a
//! batch really holds.
//!
//! The lake's scans give text as string views (delta-rs reads `Utf8` as `Utf8View`, whatever
//! the session's settings say). A join's output batch takes its build-side values as views
//! into the whole build side's buffers, and every operator above it that reserves memory by
//! batch size (a sort, the next join's build side, a repartition, a window) counts those
//! shared buffers once per batch (DataFusion issue 12136). At 10M audit events that failed
//! four views under the 11.8 GB pool: `approval_trail`'s final sort asked for 1.35 GB for one
//! batch. [`CompactJoinOutput`] puts a [`CompactStrings`] above every join: it copies each
//! string-view column of each batch into buffers of its own (the same type, values, order
//! and partitioning), so each batch is counted at its own size. (The pack's population sort copies its
//! columns for the same reason: `report::table`.)

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{
    Transformed, TransformedResult, TreeNode, TreeNodeRecursion,
};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
};
use futures::StreamExt as _;

/// Puts a [`CompactStrings`] above every join whose output has a string-view column (module
/// doc).
#[derive(Debug, Default)]
pub struct CompactJoinOutput;

fn is_join(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<HashJoinExec>()
        || plan.is::<SortMergeJoinExec>()
        || plan.is::<NestedLoopJoinExec>()
        || plan.is::<CrossJoinExec>()
        || plan.is::<SymmetricHashJoinExec>()
}

impl PhysicalOptimizerRule for CompactJoinOutput {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let has_views = node
                .schema()
                .fields()
                .iter()
                .any(|f| f.data_type() == &DataType::Utf8View);
            if !is_join(node.as_ref()) || !has_views {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CompactStrings { input: node }) as Arc<dyn ExecutionPlan>
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "compact_join_output"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input's batches on with each string-view column copied into buffers of its
/// own (`StringViewArray::gc`). The rows, their order and partitioning are its input's, so
/// are its properties: the plan above keeps every guarantee it relied on.
#[derive(Debug)]
pub struct CompactStrings {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for CompactStrings {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "CompactStringsExec")
    }
}

impl ExecutionPlan for CompactStrings {
    fn name(&self) -> &str {
        "CompactStringsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CompactStrings {
            input: children.swap_remove(0),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let compacted = input.map(|batch| batch.and_then(compact));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, compacted)))
    }
}

/// The batch with each string-view column's bytes copied into a buffer of its own.
fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => Arc::new(c.as_string_view().gc()) as ArrayRef,
            _ => Arc::clone(c),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch, StringViewArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    use super::super::global_aggregates::physical_optimizer_rules;

    /// The rows of a LEFT join whose build side (written first, kept as the build side)
    /// holds 40,000 names of ~910 bytes (36 MB), half of them matched, and the bytes its
    /// output batches account for: what a sort, a repartition or the next join's build side
    /// above it reserves from the memory pool.
    async fn joined(compact: bool) -> (usize, usize) {
        let mut rules = physical_optimizer_rules();
        if !compact {
            rules.retain(|r| r.name() != "compact_join_output");
        }
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(1_000)
            .set_bool("datafusion.optimizer.join_reordering", false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let names = 40_000;
        let text: Vec<String> = (0..names)
            .map(|i| format!("{i:08}-{}", "x".repeat(900)))
            .collect();
        let names_batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("text", DataType::Utf8View, false),
            ])),
            vec![
                Arc::new(Int64Array::from_iter_values(0..names)),
                Arc::new(StringViewArray::from_iter_values(&text)),
            ],
        )
        .expect("batch");
        ctx.register_batch("names", names_batch).expect("names");
        let refs_batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "name_id",
                DataType::Int64,
                false,
            )])),
            vec![Arc::new(Int64Array::from_iter_values(
                (0..names / 2).map(|i| i * 2),
            ))],
        )
        .expect("batch");
        let refs = MemTable::try_new(
            refs_batch.schema(),
            vec![
                (0..20)
                    .map(|i| refs_batch.slice(i * 1_000, 1_000))
                    .collect(),
            ],
        )
        .expect("refs");
        ctx.register_table("refs", Arc::new(refs)).expect("refs");
        let batches = ctx
            .sql("SELECT n.text, r.name_id FROM names n LEFT JOIN refs r ON n.id = r.name_id")
            .await
            .expect("planned")
            .collect()
            .await
            .expect("ran");
        (
            batches.iter().map(RecordBatch::num_rows).sum(),
            batches.iter().map(RecordBatch::get_array_memory_size).sum(),
        )
    }

    #[tokio::test]
    async fn a_joins_output_accounts_for_its_own_text_only() {
        let text = 40_000 * 909;
        let (rows, bytes) = joined(true).await;
        assert_eq!(rows, 40_000);
        assert!(bytes < text * 3 / 2, "{bytes} accounted for {text} of text");
        // The accounting the rule corrects: batches that point into the whole build side
        // each count all of it.
        let (rows, bytes) = joined(false).await;
        assert_eq!(rows, 40_000);
        assert!(bytes > text * 3, "{bytes} accounted for {text} of text");
    }
}
