//! Plan operators that pass their input's rows on unchanged — the same rows, order,
//! partitioning and properties, so the plan above keeps every guarantee it relied on — and
//! each add one thing, told by a [`Passing`]: `compact_joins` copies text columns into buffers
//! of their own (and cuts oversized batches to the batch size, rows and order unchanged),
//! `estimates` lowers a grouping's row estimate while join selection reads it, and
//! `shared_subplans` keeps a shared result's memory reserved while a query reads it.

use std::fmt::{self, Debug};
use std::sync::Arc;

use deltalake::datafusion::common::Statistics;
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::error::Result;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};

/// What a [`PassThrough`] adds to its input.
pub trait Passing: Debug + Send + Sync + 'static {
    /// The operator's name in plans (`...Exec`).
    const NAME: &'static str;

    /// Details shown after the name in `EXPLAIN` (none by default).
    fn details(&self, _f: &mut fmt::Formatter) -> fmt::Result {
        Ok(())
    }

    /// The statistics it reports, from its input's (the input's by default).
    fn statistics(&self, input: &Arc<Statistics>) -> Result<Arc<Statistics>> {
        Ok(Arc::clone(input))
    }

    /// Its output stream, from its input's (the input's by default); `context` is the
    /// task's (its session's settings, such as the batch size).
    fn stream(
        &self,
        input: SendableRecordBatchStream,
        _context: &TaskContext,
    ) -> SendableRecordBatchStream {
        input
    }
}

/// An operator over one input that passes its rows on (module doc).
#[derive(Debug)]
pub struct PassThrough<P> {
    input: Arc<dyn ExecutionPlan>,
    passing: Arc<P>,
}

impl<P: Passing> PassThrough<P> {
    /// `passing` over `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>, passing: P) -> Self {
        Self {
            input,
            passing: Arc::new(passing),
        }
    }

    /// Its input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl<P: Passing> DisplayAs for PassThrough<P> {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", P::NAME)?;
        self.passing.details(f)
    }
}

impl<P: Passing> ExecutionPlan for PassThrough<P> {
    fn name(&self) -> &str {
        P::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.passing.statistics(&input_stats[0])
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
        Ok(Arc::new(PassThrough {
            input: children.swap_remove(0),
            passing: Arc::clone(&self.passing),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        Ok(self.passing.stream(input, &context))
    }
}
