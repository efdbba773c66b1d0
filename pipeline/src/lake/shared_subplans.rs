//! Each repeated part of a query computed once.
//!
//! DataFusion inlines a view wherever it is named and a common table expression wherever it
//! is referenced, and plans every copy on its own: `recertification_coverage` reads
//! `assignment_holdings` through its own `held` and through `remediation_timeliness`, whose
//! `held` is referenced twice, so the holdings (the costliest part of both views) were
//! computed three times over; DuckDB, running the same SQL, was 1.8× faster at 1M audit
//! events and 2.3× at 10M. [`ComputeRepeatsOnce`] is an analyzer rule that finds each
//! subquery (a view or a CTE: a `SubqueryAlias` in the plan) that appears more than once,
//! identical and over the same tables (two `generate_series` calls are not the same), and
//! does real work (an aggregation, a window or a
//! join), and replaces every copy with a scan of one [`SharedResult`]: the first scan runs
//! the subquery (with the session's rules, memory pool and settings) and keeps its batches;
//! every copy reads them. The rows are the same (the differential test compares every view
//! with and without this rule). What changes:
//! - the result is held in memory, reserved from the session's pool until the last plan or
//!   stream that reads it is dropped (each scan is a [`HeldBatches`] that keeps the
//!   reservation), up to [`most_held`]; an output partition that would take more (or more
//!   than the pool has left) is written to a spill file in the temporary folder instead (as
//!   a sort spills, LZ4-compressed by default), which every copy reads back, and which is
//!   deleted with the last reader. At 10M audit events `approval_trail`'s shared request
//!   steps are 10.3M rows, 3.1 GB in memory, the largest part of its 6.9 GB peak; computing
//!   them again for each copy instead costs 15 s a copy.
//! - filters of one copy are no longer pushed into the shared computation, and the
//!   subquery's own `ORDER BY` is left out unless the query has a LIMIT somewhere.
//! - it is computed when the query is planned, so `EXPLAIN` of such a query computes it too.
//!
//! Left as they are: subqueries that refer to an outer query's columns, to a parameter or to
//! a recursive CTE's work table, that hold a volatile function, and every copy inside a
//! correlated subquery (DataFusion must see that a correlated scalar subquery returns one
//! row, which a scan does not show); queries with a recursive CTE.
//!
//! A shared result used inside another is held until the query is planned (with the outer
//! one's plan), not freed once the outer one is computed: later shared results may then find
//! less room in the pool and spill.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::Statistics;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use deltalake::datafusion::datasource::cte_worktable::CteWorkTable;
use deltalake::datafusion::datasource::memory::MemorySourceConfig;
use deltalake::datafusion::datasource::{provider_as_source, source_as_provider};
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use deltalake::datafusion::execution::{SendableRecordBatchStream, SpillFile, TaskContext};
use deltalake::datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, Projection, TableType,
};
use deltalake::datafusion::optimizer::AnalyzerRule;
use deltalake::datafusion::physical_expr::LexOrdering;
use deltalake::datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, SpillMetrics};
use deltalake::datafusion::physical_plan::spill::SpillManager;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use deltalake::datafusion::physical_plan::{ExecutionPlan, execute_stream_partitioned};
use futures::StreamExt as _;
use futures::future::try_join_all;

use super::compact_joins::compact;
use super::pass_through::{PassThrough, Passing};

/// The analyzer rule (module doc). Runs after DataFusion's own analyzer rules, so the copies
/// it compares are type-coerced alike.
#[derive(Debug, Default)]
pub struct ComputeRepeatsOnce {
    /// The most a shared result may hold, instead of [`most_held`] (tests).
    hold_at_most: Option<usize>,
}

impl ComputeRepeatsOnce {
    /// The rule, with shared results held in memory only up to `bytes` (beyond, they are
    /// written to spill files).
    pub fn holding_at_most(bytes: usize) -> Self {
        Self {
            hold_at_most: Some(bytes),
        }
    }
}

impl AnalyzerRule for ComputeRepeatsOnce {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut recursive = false;
        plan.apply_with_subqueries(|node| {
            recursive |= matches!(node, LogicalPlan::RecursiveQuery(_));
            Ok(TreeNodeRecursion::Continue)
        })?;
        if recursive {
            return Ok(plan);
        }
        // A copy met again is not entered: what it holds is computed with it (once), so it
        // counts once however often the copy repeats. Nothing inside a correlated subquery
        // is counted (see `share`).
        let mut copies: HashMap<Copy, usize> = HashMap::new();
        plan.apply_with_subqueries(|node| {
            if correlated(node) {
                return Ok(TreeNodeRecursion::Jump);
            }
            let Some(copy) = Copy::of(node)? else {
                return Ok(TreeNodeRecursion::Continue);
            };
            let seen = copies.entry(copy).or_default();
            *seen += 1;
            Ok(if *seen > 1 {
                TreeNodeRecursion::Jump
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
        copies.retain(|_, n| *n > 1);
        if copies.is_empty() {
            return Ok(plan);
        }
        // With no LIMIT anywhere, no answer depends on the order of a subquery's rows, and
        // its `ORDER BY` is left out of the shared result (see `unordered`).
        let mut limited = false;
        plan.apply_with_subqueries(|node| {
            limited |= match node {
                LogicalPlan::Limit(_) => true,
                LogicalPlan::Sort(sort) => sort.fetch.is_some(),
                _ => false,
            };
            Ok(TreeNodeRecursion::Continue)
        })?;
        let sharing = Sharing {
            repeated: copies,
            hold_at_most: self.hold_at_most,
            keep_order: limited,
        };
        share(plan, &sharing, &mut HashMap::new())
    }

    fn name(&self) -> &str {
        "compute_repeats_once"
    }
}

/// A subquery that may be shared: its plan, and the tables it reads, by identity. (Plans
/// compare tables by name only: two `generate_series(…)` calls, or a table registered again
/// under the same name, must not be taken for the same.)
#[derive(Debug, PartialEq, Eq, Hash)]
struct Copy {
    plan: LogicalPlan,
    tables: Vec<usize>,
}

impl Copy {
    /// `node` as a copy that may be shared: a subquery ([`worth_sharing`]) whose every table
    /// is a provider known by identity.
    fn of(node: &LogicalPlan) -> Result<Option<Self>> {
        if !matches!(node, LogicalPlan::SubqueryAlias(_)) || !worth_sharing(node)? {
            return Ok(None);
        }
        let mut tables = Vec::new();
        let mut known = true;
        node.apply_with_subqueries(|n| {
            if let LogicalPlan::TableScan(scan) = n {
                match source_as_provider(&scan.source) {
                    Ok(provider) => tables.push(Arc::as_ptr(&provider).cast::<()>() as usize),
                    Err(_) => known = false,
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(known.then(|| Self {
            plan: node.clone(),
            tables,
        }))
    }
}

/// Whether `node` is a subquery that reads the outer query's row: what it holds is left
/// inlined (a correlated scalar subquery must show DataFusion that it returns at most one
/// row, which a scan of a shared result does not).
fn correlated(node: &LogicalPlan) -> bool {
    matches!(node, LogicalPlan::Subquery(s) if !s.outer_ref_columns.is_empty())
}

/// Whether computing `subquery` once pays and is possible on its own: it aggregates, windows
/// or joins, and refers to nothing outside itself (outer columns, parameters, a recursive
/// CTE's work table) and to nothing that may change between two evaluations (volatile
/// functions).
fn worth_sharing(subquery: &LogicalPlan) -> Result<bool> {
    let mut works = false;
    let mut standalone = true;
    subquery.apply_with_subqueries(|node| {
        if matches!(
            node,
            LogicalPlan::Aggregate(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Distinct(_)
        ) {
            works = true;
        }
        if let LogicalPlan::TableScan(scan) = node
            && source_as_provider(&scan.source).is_ok_and(|p| p.is::<CteWorkTable>())
        {
            standalone = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        node.apply_expressions(|e| {
            let outside = e.exists(|x| {
                Ok(matches!(
                    x,
                    Expr::OuterReferenceColumn(..) | Expr::Placeholder(_)
                ))
            })?;
            if outside || e.is_volatile() {
                standalone = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(if standalone {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    })?;
    Ok(works && standalone)
}

/// What [`share`] replaces, and how.
struct Sharing {
    /// The copies met more than once.
    repeated: HashMap<Copy, usize>,
    hold_at_most: Option<usize>,
    /// Keep each shared subquery's top `ORDER BY` (the query has a LIMIT somewhere).
    keep_order: bool,
}

/// Names of shared results' scans, each its own: two shared results under the same alias
/// must not compare equal (DataFusion plans equal scalar subqueries once).
static SHARED_SCANS: AtomicUsize = AtomicUsize::new(0);

/// `plan` with every copy of a repeated subquery replaced by a scan of its one
/// [`SharedResult`], made on its first copy, under the copy's alias. The first copy's own
/// repeated subqueries are replaced first, so a subquery read both inside a shared one and
/// elsewhere is computed once for all (`remediation_timeliness` reads its holdings inside
/// one shared CTE and beside it: before, they were computed once for each).
fn share(
    plan: LogicalPlan,
    sharing: &Sharing,
    shared: &mut HashMap<Copy, Arc<SharedResult>>,
) -> Result<LogicalPlan> {
    plan.transform_down_with_subqueries(|node| {
        if correlated(&node) {
            return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
        }
        let LogicalPlan::SubqueryAlias(alias) = &node else {
            return Ok(Transformed::no(node));
        };
        let Some((copy, copies)) = Copy::of(&node)?
            .and_then(|c| sharing.repeated.get(&c).map(|n| (c, *n)))
        else {
            return Ok(Transformed::no(node));
        };
        let result = match shared.get(&copy) {
            Some(result) => Arc::clone(result),
            None => {
                tracing::debug!(subquery = %alias.alias, copies, "Computed once for all its copies.");
                let input = if sharing.keep_order {
                    alias.input.as_ref().clone()
                } else {
                    unordered(alias.input.as_ref())
                };
                let input = share(input, sharing, shared)?;
                let result = Arc::new(SharedResult::new(
                    alias.alias.to_string(),
                    input,
                    sharing.hold_at_most,
                ));
                shared.insert(copy, Arc::clone(&result));
                result
            }
        };
        let name = format!(
            "__shared_{}",
            SHARED_SCANS.fetch_add(1, Ordering::Relaxed)
        );
        let scan = LogicalPlanBuilder::scan(name, provider_as_source(result), None)?
            .alias(alias.alias.clone())?
            .build()?;
        Ok(Transformed::new(scan, true, TreeNodeRecursion::Jump))
    })
    .map(|t| t.data)
}

/// A subquery's plan without the sort at its top (a view's `ORDER BY`), for a query with no
/// LIMIT: SQL keeps no order through a subquery, the sort costs time, and a sorted result
/// comes as one partition, read by one core.
fn unordered(subquery: &LogicalPlan) -> LogicalPlan {
    match subquery {
        LogicalPlan::Sort(sort) if sort.fetch.is_none() => unordered(sort.input.as_ref()),
        LogicalPlan::Projection(p) => match unordered(p.input.as_ref()) {
            input if &input == p.input.as_ref() => subquery.clone(),
            input => LogicalPlan::Projection(
                Projection::try_new_with_schema(
                    p.expr.clone(),
                    Arc::new(input),
                    Arc::clone(&p.schema),
                )
                .unwrap_or_else(|_| p.clone()),
            ),
        },
        _ => subquery.clone(),
    }
}

/// The most memory one shared result may hold (each shared result of a query has its own):
/// 256 MiB, or a quarter of the session's memory pool when that is less. (`approval_trail`'s
/// shared steps are 0.3 GB at 1M audit events and 3.1 GB at 10M: both spilled.) At 10M
/// (one run each, against 512 MiB): `recertification_coverage` 2,080 -> 1,877 MiB (it holds
/// two, of 450 and 311 MB), `remediation_timeliness` 1,838 -> 1,418, `approval_trail` 2,857
/// -> 2,682, `expiration_compliance` 576 -> 365, none slower; at 1M `approval_trail` 3.8–4.0
/// -> 4.2–4.3 s (it reads its steps back from disk), the others as before (128 MiB: 4.65 s
/// there, and `recertification_coverage` at 10M 1,745 MiB).
fn most_held(pool: &dyn MemoryPool) -> usize {
    const MOST: usize = 256 << 20;
    match pool.memory_limit() {
        MemoryLimit::Finite(bytes) => (bytes / 4).min(MOST),
        MemoryLimit::Infinite | MemoryLimit::Unknown => MOST,
    }
}

/// A subquery's result, computed on its first scan and read by every later one: held in
/// memory up to [`most_held`], and written to spill files beyond.
#[derive(Debug)]
pub struct SharedResult {
    name: String,
    plan: LogicalPlan,
    schema: SchemaRef,
    hold_at_most: Option<usize>,
    computed: tokio::sync::OnceCell<Arc<Computed>>,
}

/// Each output partition's batches, held or spilled; the memory of those held, reserved
/// from the session's pool; and what reads the spilled ones back.
#[derive(Debug)]
struct Computed {
    partitions: Vec<Part>,
    spills: SpillManager,
    /// Rows, and each column's bytes in memory: a spilled result's statistics (held
    /// batches give their own), which DataFusion picks join sides by.
    rows: usize,
    column_bytes: Vec<usize>,
    _reservation: MemoryReservation,
}

impl Computed {
    fn spilled(&self) -> bool {
        self.partitions
            .iter()
            .any(|p| matches!(p, Part::Spilled(_)))
    }
}

/// One output partition of a shared result.
enum Part {
    /// In memory (counted in [`Computed`]'s reservation).
    Held(Vec<RecordBatch>),
    /// In a spill file, deleted when the last copy is dropped.
    Spilled(Arc<dyn SpillFile>),
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Held(batches) => write!(f, "Held({} batches)", batches.len()),
            Part::Spilled(file) => write!(f, "Spilled({:?} bytes)", file.size()),
        }
    }
}

/// Reads one output partition of a shared result, for a [`StreamingTableExec`]: the held
/// batches, or the spill file.
#[derive(Debug)]
struct PartReader {
    computed: Arc<Computed>,
    index: usize,
    schema: SchemaRef,
}

impl PartitionStream for PartReader {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = Arc::clone(&self.schema);
        match &self.computed.partitions[self.index] {
            Part::Held(batches) => Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::iter(batches.clone().into_iter().map(Ok)),
            )),
            Part::Spilled(file) => {
                match self
                    .computed
                    .spills
                    .read_spill_as_stream(Arc::clone(file), None)
                {
                    Ok(stream) => stream,
                    Err(e) => Box::pin(RecordBatchStreamAdapter::new(
                        schema,
                        futures::stream::once(async move { Err(e) }),
                    )),
                }
            }
        }
    }
}

impl SharedResult {
    fn new(name: String, plan: LogicalPlan, hold_at_most: Option<usize>) -> Self {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Self {
            name,
            plan,
            schema,
            hold_at_most,
            computed: tokio::sync::OnceCell::new(),
        }
    }

    /// The result, all partitions read at once, each held or spilled ([`Self::read_part`]).
    async fn compute(&self, state: &dyn Session) -> Result<Arc<Computed>> {
        let started = std::time::Instant::now();
        let physical = state.create_physical_plan(&self.plan).await?;
        let runtime = state.runtime_env();
        let pool = &runtime.memory_pool;
        let limit = self
            .hold_at_most
            .unwrap_or_else(|| most_held(pool.as_ref()));
        let held = AtomicUsize::new(0);
        let reservation =
            MemoryConsumer::new(format!("shared result of `{}`", self.name)).register(pool);
        let spills = SpillManager::new(
            Arc::clone(runtime),
            SpillMetrics::new(&ExecutionPlanMetricsSet::new(), 0),
            Arc::clone(&self.schema),
        )
        .with_compression_type(state.config_options().execution.spill_compression);
        let streams = execute_stream_partitioned(physical, state.task_ctx())?;
        let read = streams
            .into_iter()
            .map(|stream| self.read_part(stream, &held, &reservation, &spills, limit));
        let mut partitions = Vec::new();
        let mut rows = 0;
        let mut column_bytes = vec![0; self.schema.fields().len()];
        for (part, part_rows, part_bytes) in try_join_all(read).await? {
            partitions.push(part);
            rows += part_rows;
            column_bytes
                .iter_mut()
                .zip(part_bytes)
                .for_each(|(all, b)| *all += b);
        }
        if partitions.is_empty() {
            partitions.push(Part::Held(Vec::new()));
        }
        tracing::debug!(
            subquery = %self.name,
            rows,
            bytes = column_bytes.iter().sum::<usize>(),
            seconds = started.elapsed().as_secs_f64(),
            "Shared result computed."
        );
        Ok(Arc::new(Computed {
            partitions,
            spills,
            rows,
            column_bytes,
            _reservation: reservation,
        }))
    }

    /// One output partition: held while every partition's batches together (`held`) stay
    /// within `limit` and the pool grants them; from the first batch that does not fit,
    /// this partition's batches, those held so far included, go to a spill file. With its
    /// rows and each column's bytes.
    async fn read_part(
        &self,
        mut stream: SendableRecordBatchStream,
        held: &AtomicUsize,
        reservation: &MemoryReservation,
        spills: &SpillManager,
        limit: usize,
    ) -> Result<(Part, usize, Vec<usize>)> {
        let mut rows = 0;
        let mut column_bytes = vec![0; self.schema.fields().len()];
        let mut batches = Vec::new();
        let mut bytes_held = 0;
        // (Its type, DataFusion's `InProgressSpillFile`, is not exported: inferred.)
        let mut spilling = None;
        while let Some(batch) = stream.next().await {
            // Views into the buffers of the batches they were cut from would keep those
            // alive (and be counted at their size): each column owns its bytes.
            let batch = compact(batch?)?;
            let batch = if batch.schema() == self.schema {
                batch
            } else {
                RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())?
            };
            rows += batch.num_rows();
            for (all, column) in column_bytes.iter_mut().zip(batch.columns()) {
                *all += column.get_array_memory_size();
            }
            if spilling.is_none() {
                let bytes = batch.get_array_memory_size();
                if held.fetch_add(bytes, Ordering::Relaxed) + bytes <= limit
                    && reservation.try_grow(bytes).is_ok()
                {
                    bytes_held += bytes;
                    batches.push(batch);
                    continue;
                }
                held.fetch_sub(bytes, Ordering::Relaxed);
                tracing::debug!(subquery = %self.name, limit, "Too large to hold: written to a spill file.");
                spilling = Some(
                    spills.create_in_progress_file(&format!("shared result of `{}`", self.name))?,
                );
            }
            if let Some(file) = spilling.as_mut() {
                for earlier in batches.drain(..) {
                    file.append_batch(&earlier)?;
                }
                file.append_batch(&batch)?;
                reservation.shrink(bytes_held);
                held.fetch_sub(bytes_held, Ordering::Relaxed);
                bytes_held = 0;
            }
        }
        let part = match spilling {
            // At least the batch that did not fit was written.
            Some(mut file) => Part::Spilled(file.finish()?.ok_or_else(|| {
                DataFusionError::Internal(format!("the spill file of `{}` is empty", self.name))
            })?),
            None => Part::Held(batches),
        };
        Ok((part, rows, column_bytes))
    }
}

#[async_trait]
impl TableProvider for SharedResult {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let computed = self
            .computed
            .get_or_try_init(|| self.compute(state))
            .await?;
        if !computed.spilled() {
            let held: Vec<Vec<RecordBatch>> = computed
                .partitions
                .iter()
                .map(|p| match p {
                    Part::Held(batches) => batches.clone(),
                    Part::Spilled(_) => unreachable!("not spilled"),
                })
                .collect();
            let batches = MemorySourceConfig::try_new_exec(
                &held,
                Arc::clone(&self.schema),
                projection.cloned(),
            )?;
            return Ok(Arc::new(HeldBatches::new(
                batches,
                Holding {
                    computed: Arc::clone(computed),
                    statistics: None,
                },
            )));
        }
        let parts = (0..computed.partitions.len())
            .map(|index| {
                Arc::new(PartReader {
                    computed: Arc::clone(computed),
                    index,
                    schema: Arc::clone(&self.schema),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let batches = StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            parts,
            projection,
            Vec::<LexOrdering>::new(),
            false,
            None,
        )?;
        let bytes = match projection {
            Some(columns) => columns.iter().map(|&i| computed.column_bytes[i]).sum(),
            None => computed.column_bytes.iter().sum(),
        };
        Ok(Arc::new(HeldBatches::new(
            Arc::new(batches),
            Holding {
                computed: Arc::clone(computed),
                statistics: Some((computed.rows, bytes)),
            },
        )))
    }
}

/// A scan of a shared result: its input (the batches, as a memory source) with the result's
/// reservation kept alive, so the pool counts the batches for as long as a plan or a stream
/// that reads them exists (a query's stream outlives its plan, and the plan its logical plan
/// and [`SharedResult`]).
type HeldBatches = PassThrough<Holding>;

/// The shared result a [`HeldBatches`] keeps, and hands each of its streams; for a spilled
/// one, the rows and bytes its scan reads (held batches report their own).
#[derive(Debug)]
struct Holding {
    computed: Arc<Computed>,
    statistics: Option<(usize, usize)>,
}

impl Passing for Holding {
    const NAME: &'static str = "HeldBatchesExec";

    fn statistics(&self, input: &Arc<Statistics>) -> Result<Arc<Statistics>> {
        let Some((rows, bytes)) = self.statistics else {
            return Ok(Arc::clone(input));
        };
        let mut statistics = input.as_ref().clone();
        statistics.num_rows = Precision::Exact(rows);
        statistics.total_byte_size = Precision::Exact(bytes);
        Ok(Arc::new(statistics))
    }

    fn stream(
        &self,
        input: SendableRecordBatchStream,
        _context: &deltalake::datafusion::execution::TaskContext,
    ) -> SendableRecordBatchStream {
        let held = Arc::clone(&self.computed);
        let schema = input.schema();
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            input.inspect(move |_| {
                let _still_reserved = &held;
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use deltalake::arrow::array::{Array, Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::util::pretty::pretty_format_batches;
    use deltalake::datafusion::execution::memory_pool::{
        GreedyMemoryPool, MemoryPool, TrackConsumersPool,
    };
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
    use futures::StreamExt as _;

    use super::ComputeRepeatsOnce;

    /// A session with table `t` (k, v: 6 rows, keys 1–3) and `counted(v)`, a pure function
    /// that returns `v` and counts the rows it was evaluated on; with `rule` or without.
    fn session_with(rule: Option<ComputeRepeatsOnce>) -> (SessionContext, Arc<AtomicUsize>) {
        let mut state = SessionStateBuilder::new().with_default_features();
        if let Some(rule) = rule {
            state = state.with_analyzer_rule(Arc::new(rule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("v", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2, 2, 3, 3])),
                Arc::new(Int64Array::from(vec![10, 20, 30, 40, 50, 60])),
            ],
        )
        .expect("batch");
        ctx.register_batch("t", batch).expect("t");
        let rows = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&rows);
        ctx.register_udf(create_udf(
            "counted",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                if let ColumnarValue::Array(a) = &args[0] {
                    seen.fetch_add(a.len(), Ordering::SeqCst);
                }
                Ok(args[0].clone())
            }),
        ));
        (ctx, rows)
    }

    /// The query's rows as a table.
    async fn table(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        pretty_format_batches(&batches).expect("prints").to_string()
    }

    /// [`session_with`] the rule (`share`) or without it.
    fn session(share: bool) -> (SessionContext, Arc<AtomicUsize>) {
        session_with(share.then(ComputeRepeatsOnce::default))
    }

    /// The query's rows as a table, and the rows `counted` was evaluated on.
    async fn run(share: bool, sql: &str) -> (String, usize) {
        run_with(session(share), sql).await
    }

    async fn run_with(
        (ctx, rows): (SessionContext, Arc<AtomicUsize>),
        sql: &str,
    ) -> (String, usize) {
        let table = table(&ctx, sql).await;
        (table, rows.load(Ordering::SeqCst))
    }

    /// A CTE read three times (twice joined, once in a scalar subquery).
    const TOTALS_THRICE: &str =
        "WITH totals AS (SELECT k, sum(counted(v)) AS total FROM t GROUP BY k)
        SELECT a.k, a.total, b.total AS again
        FROM totals a JOIN totals b ON a.k = b.k
        WHERE a.total > (SELECT min(total) FROM totals)
        ORDER BY a.k";

    #[tokio::test]
    async fn a_subquery_referenced_twice_is_computed_once_with_the_same_rows() {
        let (inlined, inlined_rows) = run(false, TOTALS_THRICE).await;
        let (shared, shared_rows) = run(true, TOTALS_THRICE).await;
        assert_eq!(shared, inlined);
        assert!(shared.contains("| 3 | 110   | 110   |"), "{shared}");
        // Each copy of `totals` evaluates `counted` on the 6 rows of `t`.
        assert_eq!(inlined_rows, 18);
        assert_eq!(shared_rows, 6);
    }

    #[tokio::test]
    async fn a_shared_result_is_counted_by_the_pool_until_the_query_reading_it_is_dropped() {
        let pool = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(1 << 30),
            NonZeroUsize::new(20).expect("non-zero"),
        ));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::clone(&pool) as Arc<dyn MemoryPool>)
            .build_arc()
            .expect("runtime");
        // One partition and batches of 8 rows: the shared result is 500 batches, and the
        // query's stream is read one batch at a time while both copies are being read.
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(
                SessionConfig::new()
                    .with_target_partitions(1)
                    .with_batch_size(8),
            )
            .with_runtime_env(runtime)
            .with_analyzer_rule(Arc::new(ComputeRepeatsOnce::default()));
        let ctx = SessionContext::new_with_state(state.build());
        let keys = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from_iter_values(0..4000))],
        )
        .expect("batch");
        ctx.register_batch("big", keys).expect("big");
        let shared_is_counted = || pool.report_top(20).contains("shared result of");
        // As `govlake sql` runs a query: the stream is all that is left of the plans once
        // it is made (the logical plan, its SharedResult and the physical plan are dropped).
        let mut stream = ctx
            .sql(
                "WITH groups AS (SELECT k, count(*) AS n FROM big GROUP BY k)
                 SELECT k, n FROM groups UNION ALL SELECT k, n FROM groups",
            )
            .await
            .expect("plans")
            .execute_stream()
            .await
            .expect("runs");
        let first = stream.next().await.expect("a batch").expect("runs");
        assert!(first.num_rows() > 0);
        assert!(
            shared_is_counted(),
            "the shared groups are counted while the query runs: {}",
            pool.report_top(20)
        );
        let mut rows = first.num_rows();
        while let Some(batch) = stream.next().await {
            rows += batch.expect("runs").num_rows();
        }
        assert_eq!(rows, 8000);
        drop(stream);
        assert!(!shared_is_counted(), "released with the query");
        assert_eq!(pool.reserved(), 0, "released with the query");
    }

    #[tokio::test]
    async fn answers_as_inlined_where_equal_plans_or_a_scan_would_mislead() {
        for (sql, expected) in [
            // Two table-function calls with different arguments have equal plans.
            (
                "SELECT 'small' AS which, n FROM (SELECT count(*) AS n FROM generate_series(1, 10)) s
                 UNION ALL
                 SELECT 'big', n FROM (SELECT count(*) AS n FROM generate_series(1, 1000)) s
                 ORDER BY which",
                "| big   | 1000 |",
            ),
            // Two shared results under one alias, in scalar subqueries (DataFusion plans
            // equal ones once).
            (
                "SELECT
                   (WITH s AS (SELECT k, min(v) AS n FROM t GROUP BY k)
                    SELECT sum(a.n) FROM s a JOIN s b ON a.k = b.k) AS low,
                   (WITH s AS (SELECT k, max(v) AS n FROM t GROUP BY k)
                    SELECT sum(a.n) FROM s a JOIN s b ON a.k = b.k) AS high",
                "| 90  | 120  |",
            ),
            // A correlated scalar subquery over a repeated CTE: one row per key.
            (
                "WITH totals AS (SELECT k, sum(v) AS total FROM t GROUP BY k)
                 SELECT o.k, (SELECT total FROM totals WHERE totals.k = o.k) AS again
                 FROM totals o ORDER BY o.k",
                "| 3 | 110   |",
            ),
        ] {
            let (inlined, _) = run(false, sql).await;
            let (shared, _) = run(true, sql).await;
            assert_eq!(shared, inlined, "{sql}");
            assert!(shared.contains(expected), "{sql}\n{shared}");
        }
    }

    #[tokio::test]
    async fn a_result_too_large_to_hold_is_computed_once_and_read_from_disk_by_every_copy() {
        let (inlined, _) = run(false, TOTALS_THRICE).await;
        let (spilled, spilled_rows) = run_with(
            session_with(Some(ComputeRepeatsOnce::holding_at_most(0))),
            TOTALS_THRICE,
        )
        .await;
        assert_eq!(spilled, inlined);
        // Computed once, on the 6 rows of `t`, though none of it could be held.
        assert_eq!(spilled_rows, 6);
    }

    /// A shared result held up to 1 KiB: the rest of each partition goes to a spill file,
    /// which exists while the query runs and is deleted with the query; the rows are those
    /// of the query run without the rule.
    #[tokio::test]
    async fn a_spilled_result_is_deleted_with_the_query_that_reads_it() {
        let sql = "WITH groups AS (SELECT k % 1000 AS k, count(*) AS n FROM big GROUP BY k % 1000)
                   SELECT a.k, a.n + b.n AS n FROM groups a JOIN groups b ON a.k = b.k
                   UNION ALL SELECT k, n FROM groups";
        let session = |rule: Option<ComputeRepeatsOnce>| {
            let runtime = RuntimeEnvBuilder::new().build_arc().expect("runtime");
            let mut state = SessionStateBuilder::new()
                .with_default_features()
                .with_config(
                    SessionConfig::new()
                        .with_target_partitions(2)
                        .with_batch_size(64),
                )
                .with_runtime_env(Arc::clone(&runtime));
            if let Some(rule) = rule {
                state = state.with_analyzer_rule(Arc::new(rule));
            }
            let ctx = SessionContext::new_with_state(state.build());
            let keys = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)])),
                vec![Arc::new(Int64Array::from_iter_values(0..20_000))],
            )
            .expect("batch");
            ctx.register_batch("big", keys).expect("big");
            (ctx, runtime)
        };
        let (plain, _) = session(None);
        let expected = table(&plain, &format!("{sql} ORDER BY 1, 2")).await;
        assert!(expected.contains("| 999 | 40 |"), "{expected}");

        let (ctx, runtime) = session(Some(ComputeRepeatsOnce::holding_at_most(1024)));
        let mut stream = ctx
            .sql(sql)
            .await
            .expect("plans")
            .execute_stream()
            .await
            .expect("runs");
        let mut batches = vec![stream.next().await.expect("a batch").expect("runs")];
        assert!(
            runtime.disk_manager.used_disk_space() > 0,
            "the shared groups are on disk while the query runs"
        );
        while let Some(batch) = stream.next().await {
            batches.push(batch.expect("runs"));
        }
        drop(stream);
        assert_eq!(
            runtime.disk_manager.used_disk_space(),
            0,
            "deleted with the query"
        );
        let sorted = ctx
            .read_batches(batches)
            .expect("rows")
            .sort_by(vec![
                deltalake::datafusion::prelude::col("k"),
                deltalake::datafusion::prelude::col("n"),
            ])
            .expect("sorted")
            .collect()
            .await
            .expect("runs");
        assert_eq!(
            pretty_format_batches(&sorted).expect("prints").to_string(),
            expected
        );
    }

    #[tokio::test]
    async fn views_read_through_other_views_share_what_they_repeat() {
        let (ctx, rows) = session(true);
        for view in [
            "CREATE VIEW totals AS SELECT k, sum(counted(v)) AS total FROM t GROUP BY k",
            "CREATE VIEW top AS SELECT k FROM totals WHERE total = (SELECT max(total) FROM totals)",
        ] {
            ctx.sql(view).await.expect("view");
        }
        let table = table(&ctx, "SELECT t.k, t.total FROM totals t JOIN top USING (k)").await;
        assert!(table.contains("| 3 | 110   |"), "{table}");
        assert_eq!(rows.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn a_subquery_read_inside_a_shared_one_and_beside_it_is_computed_once() {
        // `totals` is read by `top` (itself read twice) and by the outer query: computed in
        // `top` and again for the outer query, `counted` would see 12 rows.
        let sql = "WITH totals AS (SELECT k, sum(counted(v)) AS total FROM t GROUP BY k),
                   top AS (SELECT a.k FROM totals a JOIN t ON t.k = a.k
                           WHERE t.v > 45 AND a.total > 0)
                   SELECT x.k, s.total, (SELECT count(*) FROM top) AS n
                   FROM top x JOIN totals s ON s.k = x.k ORDER BY x.k";
        let (inlined, inlined_rows) = run(false, sql).await;
        let (shared, shared_rows) = run(true, sql).await;
        assert_eq!(shared, inlined);
        assert!(shared.contains("| 3 | 110   | 2 |"), "{shared}");
        assert_eq!(inlined_rows, 18);
        assert_eq!(shared_rows, 6);
    }

    #[tokio::test]
    async fn a_repeated_subquery_without_work_is_not_held() {
        // A filter of one table: reading it twice costs less than holding it.
        let sql = "WITH big AS (SELECT k, counted(v) AS v FROM t WHERE v > 25)
                   SELECT a.k, b.v FROM big a JOIN big b ON a.k = b.k ORDER BY a.k, b.v";
        let (inlined, inlined_rows) = run(false, sql).await;
        let (shared, shared_rows) = run(true, sql).await;
        assert_eq!(shared, inlined);
        assert_eq!(shared_rows, inlined_rows);
    }
}
