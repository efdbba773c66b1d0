//! Batches whose text columns own their bytes, so that memory accounting sees what a batch
//! really holds.
//!
//! The lake's scans give text as string views (delta-rs reads `Utf8` as `Utf8View`, whatever
//! the session's settings say). A batch of views can point into buffers far larger than its
//! own values: a join's output batch takes its build-side values as views into the whole
//! build side's buffers, and a filtered scan's batch keeps the whole page it was cut from.
//! Every operator that reserves memory by batch size (a sort, a join's build side, a
//! repartition, a window) counts those shared buffers once per batch (DataFusion issue
//! 12136). At 10M audit events that failed four views under the 11.8 GB pool:
//! `approval_trail`'s final sort asked for 1.35 GB for one batch, and
//! `recertification_coverage` built hash tables of a few thousand rows that held 1.5 GB of
//! pages. [`CompactJoinOutput`] puts a [`CompactStrings`] above every join and below every
//! hash join's build side and every sort: it copies each string-view column whose buffers
//! are more than twice the bytes its values use into buffers of its own (the same type,
//! values, order and partitioning), so each batch is counted at about its own size. Columns
//! that already use most of their buffers are passed on as they are. It also cuts a batch of
//! more than twice the session's batch size into batches of that size: a hash join emits every
//! unmatched build-side row of an outer join as one batch at its end, and a sort reserves
//! twice a batch at once and cannot spill part of one (at 10M audit events one such batch
//! failed `recertification_coverage`, and the pack with it). (The pack's population sort
//! copies its columns for the same reason: `report::table`.)

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, MutableArrayData, RecordBatch, StringViewArray, make_array,
};
use deltalake::arrow::buffer::{NullBuffer, ScalarBuffer};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::execution_plan::{
    ChildrenPropertiesMode, ReplaceChildrenOptions,
};
use deltalake::datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use deltalake::datafusion::physical_plan::sorts::sort::SortExec;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt as _;

use super::pass_through::{PassThrough, Passing};

/// Puts a [`CompactStrings`] above every join, below every hash join's build side and below
/// every sort, where the batches there have a string-view column (module doc).
#[derive(Debug, Default)]
pub struct CompactJoinOutput;

fn is_join(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<HashJoinExec>()
        || plan.is::<SortMergeJoinExec>()
        || plan.is::<NestedLoopJoinExec>()
        || plan.is::<CrossJoinExec>()
        || plan.is::<SymmetricHashJoinExec>()
}

fn has_views(plan: &dyn ExecutionPlan) -> bool {
    plan.schema()
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Utf8View)
}

/// `node` with its child `index` under a [`CompactStrings`], unless that child has no
/// string-view column or is one already.
fn compact_child(
    node: Arc<dyn ExecutionPlan>,
    index: usize,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let mut children: Vec<Arc<dyn ExecutionPlan>> = node.children().into_iter().cloned().collect();
    let child = &children[index];
    if !has_views(child.as_ref()) || child.is::<CompactStrings>() {
        return Ok(Transformed::no(node));
    }
    children[index] = Arc::new(CompactStrings::new(Arc::clone(child), Compacting));
    Ok(Transformed::yes(node.replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
    )?))
}

impl PhysicalOptimizerRule for CompactJoinOutput {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // The build side of a hash join and a sort's input are held whole: compact them
            // before they are counted.
            let node = if node.is::<HashJoinExec>() || node.is::<SortExec>() {
                compact_child(node, 0)?
            } else {
                Transformed::no(node)
            };
            if !is_join(node.data.as_ref()) || !has_views(node.data.as_ref()) {
                return Ok(node);
            }
            Ok(Transformed::yes(
                Arc::new(CompactStrings::new(node.data, Compacting)) as Arc<dyn ExecutionPlan>,
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
/// own (`StringViewArray::gc`), a batch of more than twice the session's batch size cut into
/// batches of that size. The rows, their order and partitioning are its input's, so
/// are its properties: the plan above keeps every guarantee it relied on.
pub type CompactStrings = PassThrough<Compacting>;

/// What a [`CompactStrings`] does to its input's batches.
#[derive(Debug)]
pub struct Compacting;

impl Passing for Compacting {
    const NAME: &'static str = "CompactStringsExec";

    fn stream(
        &self,
        input: SendableRecordBatchStream,
        context: &TaskContext,
    ) -> SendableRecordBatchStream {
        let schema = input.schema();
        let batch_size = context.session_config().batch_size().max(1);
        // Empty batches (a join's probe batch that matched nothing) are dropped: each would
        // still be counted at its builders' capacity. A batch of more than twice the
        // session's batch size (a hash join emits every unmatched build-side row of an outer
        // join as one batch at its end: millions of rows at 10M audit events) is cut into
        // batches of that size, each owning its bytes and copied only when the one above
        // asks for it: a sort reserves twice a batch's size at once and cannot spill part of
        // one, so a single batch larger than its share of the pool failed
        // `recertification_coverage` at 10M audit events.
        let compacted = input
            .filter(|batch| futures::future::ready(!matches!(batch, Ok(b) if b.num_rows() == 0)))
            .flat_map(move |batch| match batch {
                Ok(b) => {
                    let rows = b.num_rows();
                    let step = if rows > 2 * batch_size {
                        batch_size
                    } else {
                        rows
                    };
                    futures::stream::iter(
                        (0..rows)
                            .step_by(step)
                            .map(move |start| compact(b.slice(start, step.min(rows - start)))),
                    )
                    .left_stream()
                }
                Err(e) => futures::stream::once(futures::future::ready(Err(e))).right_stream(),
            });
        Box::pin(RecordBatchStreamAdapter::new(schema, compacted))
    }
}

/// The batch with each column that holds more than about twice the memory its values need
/// copied into buffers of its own, sized to its values.
pub(crate) fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = batch.columns().iter().map(own_bytes).collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `array`, or a copy of it in buffers of its own when it holds more than twice (plus 4 KiB)
/// the memory its values need: views into a larger batch's buffers, or the spare capacity of
/// a builder that was sized for a full batch and finished with a few rows.
fn own_bytes(array: &ArrayRef) -> ArrayRef {
    let held = array.get_array_memory_size();
    if held <= 4 * 1024 {
        return Arc::clone(array);
    }
    let needed = match array.data_type() {
        DataType::Utf8View => {
            let views = array.as_string_view();
            views.len() * 16 + views.total_buffer_bytes_used()
        }
        // Nested and view types other than text are passed on: `MutableArrayData` would keep
        // their children's or views' buffers, and their slice size leaves those out.
        t if t.is_nested() || matches!(t, DataType::BinaryView) => return Arc::clone(array),
        _ => match array.to_data().get_slice_memory_size() {
            Ok(size) => size,
            Err(_) => return Arc::clone(array),
        },
    };
    if held <= 2 * needed + 4 * 1024 {
        return Arc::clone(array);
    }
    match array.data_type() {
        DataType::Utf8View => {
            // `gc` sizes the text buffer to the values; the views are copied too, as they may
            // be a slice of a larger buffer.
            let compacted = array.as_string_view().gc();
            let (views, buffers, nulls) = compacted.into_parts();
            let views = ScalarBuffer::from(views.to_vec());
            let nulls = nulls.map(|n| NullBuffer::from(n.iter().collect::<Vec<bool>>()));
            match StringViewArray::try_new(views, buffers, nulls) {
                Ok(copy) => Arc::new(copy),
                Err(_) => Arc::clone(array),
            }
        }
        _ => {
            let data = array.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, array.len());
            match copy.try_extend(0, 0, array.len()) {
                Ok(()) => make_array(copy.freeze()),
                Err(_) => Arc::clone(array),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{
        Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringViewArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::execution::memory_pool::FairSpillPool;
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::physical_plan::displayable;
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    use super::own_bytes;

    use super::super::global_aggregates::physical_optimizer_rules;

    /// One partition, batches of 1,000 rows, joins kept in the order written (the left
    /// side is a hash join's build side), with or without the rule, and a fair spill pool of
    /// `pool` bytes when given.
    fn left_join_session(compact: bool, pool: Option<usize>) -> SessionContext {
        let mut rules = physical_optimizer_rules();
        if !compact {
            rules.retain(|r| r.name() != "compact_join_output");
        }
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .with_batch_size(1_000)
            .set_bool("datafusion.optimizer.join_reordering", false);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(rules);
        if let Some(bytes) = pool {
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
                .build_arc()
                .expect("runtime");
            state = state.with_runtime_env(runtime);
        }
        SessionContext::new_with_state(state.build())
    }

    /// A batch of `(id, text)`: ids 0, 1, … beside the given texts (string views).
    fn names_batch<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> RecordBatch {
        let text = StringViewArray::from_iter_values(texts);
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("text", DataType::Utf8View, false),
            ])),
            vec![
                Arc::new(Int64Array::from_iter_values(0..text.len() as i64)),
                Arc::new(text),
            ],
        )
        .expect("batch")
    }

    /// A batch of one column `name_id`.
    fn name_ids_batch(ids: impl IntoIterator<Item = i64>) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "name_id",
                DataType::Int64,
                false,
            )])),
            vec![Arc::new(Int64Array::from_iter_values(ids))],
        )
        .expect("batch")
    }

    /// The rows of a LEFT join whose build side (written first, kept as the build side)
    /// holds 40,000 names of ~910 bytes (36 MB), half of them matched, and the bytes its
    /// output batches account for: what a sort, a repartition or the next join's build side
    /// above it reserves from the memory pool.
    async fn joined(compact: bool) -> (usize, usize) {
        let ctx = left_join_session(compact, None);
        let names = 40_000;
        let text: Vec<String> = (0..names)
            .map(|i| format!("{i:08}-{}", "x".repeat(900)))
            .collect();
        let names_batch = names_batch(&text);
        ctx.register_batch("names", names_batch).expect("names");
        let refs_batch = name_ids_batch((0..names / 2).map(|i| i * 2));
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
        assert!(bytes < text * 2, "{bytes} accounted for {text} of text");
        // The accounting the rule corrects: batches that point into the whole build side
        // each count all of it.
        let (rows, bytes) = joined(false).await;
        assert_eq!(rows, 40_000);
        assert!(
            bytes > text * 3,
            "{bytes} accounted for {text} of text (no rule)"
        );
    }

    /// A LEFT join whose build side (kept as the left) matches nothing emits all its
    /// 300,000 rows as one batch at its end (DataFusion 55); a sort above reserves twice a
    /// batch's size at once and cannot spill part of one, so under a pool of 96 MiB the
    /// query failed (`recertification_coverage` at 10M audit events). Cut into batches of
    /// the session's size, it sorts with every row, once.
    #[tokio::test]
    async fn an_outer_joins_unmatched_rows_sort_within_a_small_memory_limit() {
        async fn run(compact: bool) -> Result<(usize, usize), String> {
            let ctx = left_join_session(compact, Some(96 << 20));
            let rows = 300_000_i64;
            let names = names_batch(
                (0..rows).map(|i| format!("{:08}-{}", (i * 7919) % rows, "z".repeat(80))),
            );
            // In slices of 1,000 rows each owning its bytes, as a scan gives them.
            let slices = (0..rows as usize)
                .step_by(1_000)
                .map(|at| super::compact(names.slice(at, 1_000)).expect("compact"))
                .collect();
            let names = MemTable::try_new(names.schema(), vec![slices]).expect("names");
            ctx.register_table("names", Arc::new(names)).expect("names");
            let refs = name_ids_batch([-1, -2, -3]);
            ctx.register_batch("refs", refs).expect("refs");
            let batches = ctx
                .sql(
                    "SELECT n.text, r.name_id FROM names n LEFT JOIN refs r ON n.id = r.name_id \
                     ORDER BY n.text",
                )
                .await
                .map_err(|e| e.to_string())?
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            let sorted = batches
                .iter()
                .flat_map(|b| {
                    let text = b.column(0).as_string_view();
                    (0..b.num_rows()).map(move |i| text.value(i).to_string())
                })
                .collect::<Vec<_>>();
            assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "ordered");
            Ok((
                sorted.len(),
                sorted
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
            ))
        }
        assert_eq!(run(true).await, Ok((300_000, 300_000)));
        // What the cut prevents: the one batch is more than the sort may reserve.
        let err = run(false)
            .await
            .expect_err("one batch of every unmatched row");
        assert!(err.contains("external sort"), "{err}");
    }

    /// A batch of more than twice the batch size is cut into batches of that size (the last
    /// shorter), in order; one of up to twice the size passes whole; an error passes on.
    #[tokio::test]
    async fn large_batches_are_cut_to_the_batch_size_in_order() {
        use deltalake::datafusion::execution::TaskContext;
        use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
        use futures::StreamExt as _;

        use super::super::pass_through::Passing as _;

        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |from: i64, rows: i64| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from_iter_values(from..from + rows))],
            )
            .expect("batch")
        };
        let input = vec![
            Ok(batch(0, 2_501)),
            Ok(batch(2_501, 2_000)),
            Err(deltalake::datafusion::error::DataFusionError::Execution(
                "read failed".into(),
            )),
        ];
        let context =
            TaskContext::default().with_session_config(SessionConfig::new().with_batch_size(1_000));
        let out: Vec<_> = super::Compacting
            .stream(
                Box::pin(RecordBatchStreamAdapter::new(
                    Arc::clone(&schema),
                    futures::stream::iter(input),
                )),
                &context,
            )
            .collect()
            .await;
        let sizes: Vec<Option<usize>> = out
            .iter()
            .map(|b| b.as_ref().ok().map(RecordBatch::num_rows))
            .collect();
        assert_eq!(
            sizes,
            [Some(1_000), Some(1_000), Some(501), Some(2_000), None]
        );
        let values: Vec<i64> = out
            .iter()
            .flatten()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, (0..4_501).collect::<Vec<_>>());
    }

    /// A few rows cut from a large batch (what a filter or a join passes on) keep the large
    /// batch's buffers; `own_bytes` copies them into buffers of their own size, same values.
    #[test]
    fn a_few_rows_of_a_large_batch_are_copied_to_their_own_size() {
        // Every seventh value null; the slice starts off a byte boundary of the null bitmap.
        let text: Vec<Option<String>> = (0..20_000)
            .map(|i| (i % 7 != 0).then(|| format!("{i:06}-{}", "y".repeat(100))))
            .collect();
        let names: ArrayRef = Arc::new(StringViewArray::from_iter(text));
        let numbers: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..200_000).map(|i| (i % 7 != 0).then_some(i)),
        ));
        for (whole, rows) in [(names, 20_000), (numbers, 200_000)] {
            let few = whole.slice(rows / 2 + 3, 10);
            assert!(few.null_count() > 0);
            assert!(few.get_array_memory_size() > 1_000_000);
            let owned = own_bytes(&few);
            assert_eq!(owned.as_ref(), few.as_ref(), "{}", whole.data_type());
            assert!(
                owned.get_array_memory_size() < 4 * 1024,
                "{}: {} bytes",
                whole.data_type(),
                owned.get_array_memory_size()
            );
        }
    }

    /// A column that uses its buffers is passed on as it is: no copy.
    #[test]
    fn a_column_that_uses_its_buffers_is_not_copied() {
        let text: Vec<String> = (0..20_000)
            .map(|i| format!("{i:06}-{}", "y".repeat(100)))
            .collect();
        // (`gc`: buffers of exactly the values' size, as a Parquet page decodes to.)
        let names: ArrayRef = Arc::new(StringViewArray::from_iter_values(&text).gc());
        let half = names.slice(0, 15_000);
        assert!(Arc::ptr_eq(&own_bytes(&names), &names));
        assert!(Arc::ptr_eq(&own_bytes(&half), &half));
    }

    /// The build side of each hash join and the input of each sort are compacted, as is
    /// each join's output.
    #[tokio::test]
    async fn build_sides_sorts_and_join_outputs_are_compacted() {
        let ctx = SessionContext::new_with_state(
            SessionStateBuilder::new()
                .with_config(SessionConfig::new().with_target_partitions(1))
                .with_default_features()
                .with_physical_optimizer_rules(physical_optimizer_rules())
                .build(),
        );
        let batch = names_batch(["a", "b", "c"]);
        ctx.register_batch("a", batch.clone()).expect("a");
        ctx.register_batch("b", batch).expect("b");
        let plan = ctx
            .sql("SELECT a.text, b.text FROM a JOIN b ON a.id = b.id ORDER BY a.text")
            .await
            .expect("planned")
            .create_physical_plan()
            .await
            .expect("physical");
        let shape = displayable(plan.as_ref()).indent(false).to_string();
        let lines: Vec<&str> = shape.lines().map(str::trim).collect();
        let below = |name: &str| {
            let at = lines.iter().position(|l| l.starts_with(name)).expect(name);
            lines[at + 1]
        };
        assert!(
            below("SortExec").starts_with("CompactStringsExec"),
            "{shape}"
        );
        assert!(
            below("CompactStringsExec").starts_with("HashJoinExec"),
            "{shape}"
        );
        assert!(
            below("HashJoinExec").starts_with("CompactStringsExec"),
            "{shape}"
        );
    }
}
