//! Row estimates that say how much filters and groupings keep, so that a join builds its
//! hash table on the side that keeps fewer rows.
//!
//! DataFusion chooses a hash join's build side (and whether to collect it whole) from each
//! side's estimated size. The lake's tables carry row counts and byte sizes, but hardly any
//! column statistics, so two estimates are blind:
//!
//! - A filter DataFusion cannot analyse keeps a flat 20 % of its input
//!   (`datafusion.optimizer.default_filter_selectivity`), however many conditions it has. The
//!   views test text through `lower(...)`, `LIKE` and `IN`, none of which it analyses. So
//!   `remediation_timeliness` joined the handful of audit events that remove an assignment
//!   (three conditions) to every user target of the lake (one): 20 % of each, the targets
//!   table the smaller, so the hash table was built on the targets (130 MB at 1M audit
//!   events, ~1.3 GB at 10M) and probed by a few removal events. [`FilterSelectivity`] gives
//!   each filter a default selectivity that counts its conditions: each condition keeps the
//!   session's default share (20 %), the conditions of an `AND` are taken as independent
//!   (their shares multiply), an `OR` or `IN` list is one condition (its alternatives test
//!   one column for a few of its many values), a `NOT`, `<>`, `IS DISTINCT FROM`, `NOT IN`,
//!   `NOT LIKE`, `!~` or `IS NOT NULL` keeps the rest. Repeated conditions count once;
//!   dynamic filters and `true` keep everything. A filter DataFusion can analyse from column
//!   statistics is estimated as before. (Counting an `IN` of four keys as 1 − 0.8⁴ = 59 %
//!   made `approval_trail` build on its 1.03M audit events instead of their 552k detail
//!   rows: 89 → 265 MB at 1M.)
//! - A grouping is taken to keep every row it reads: with no distinct counts DataFusion
//!   assumes each row is its own group. `assignment_holdings` looks up the snapshot before
//!   each version in the lake's observations (the distinct snapshot times: one per ingest
//!   run) and DataFusion, taking them for as many as the versions, built its hash tables on
//!   the versions, 17 columns wide (64 MB each at 1M, four of them in
//!   `recertification_coverage`). [`GroupEstimates`] puts an [`EstimatedGroups`] over each
//!   grouping that only removes repeats (`DISTINCT`, `UNION`, a `GROUP BY` with no
//!   aggregate and no `ROLLUP`, `CUBE` or `GROUPING SETS`, whose keys' distinct counts are
//!   unknown), which says it keeps one row in [`ROWS_PER_GROUP`]; [`DropEstimates`]
//!   takes them out again once join selection has read them. A `GROUP BY` with aggregates is
//!   left as it is: in the views it makes one row per event, request or assignment, about as
//!   many as it reads (taking `control_changes`' first target per audit event for a tenth of
//!   the events made it the build side: 1.03M rows instead of the two it is joined to).
//!
//! - A scan's size is its files' compressed size, which says little about the hash table its
//!   rows would fill: a column of ids each repeated on neighbouring rows compresses to a few
//!   bytes a row, a column of distinct ids to thirty. `sod_violations` joined the one audit
//!   event that declares an incompatibility (10.3M events at 10M, 523 MB of files for the
//!   three columns read) to the 30.8M target resources (216 MB of files), built its hash table
//!   on the targets (1.1 GB) and scanned them twice. [`ScanWidths`] puts a [`WidthEstimate`]
//!   over each scan whose size is not exact, which gives each column rows × a width its type
//!   is taken to hold in memory ([`width_in_memory`]), so every side is measured alike.
//!
//! All run just before DataFusion's `join_selection` (and the drop just after it). Only
//! estimates change: the plans compute the same rows.

use std::collections::HashSet;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::common::Statistics;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::tree_node::{
    Transformed, TransformedResult, TreeNode, TreeNodeRecursion,
};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::logical_expr::{Aggregate, Operator};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_expr::expressions::{
    BinaryExpr, Column, DynamicFilterPhysicalExpr, InListExpr, IsNotNullExpr, LikeExpr, Literal,
    NotExpr,
};
use deltalake::datafusion::physical_expr::split_conjunction;
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use deltalake::datafusion::physical_plan::filter::FilterExec;
use deltalake::datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};
use deltalake::datafusion::scalar::ScalarValue;

use super::pass_through::{PassThrough, Passing};

/// Sets each [`FilterExec`]'s default selectivity from the shape of its predicate (module
/// doc). Place it before DataFusion's `join_selection`.
#[derive(Debug, Default)]
pub struct FilterSelectivity;

impl PhysicalOptimizerRule for FilterSelectivity {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let unit = f64::from(filter.default_selectivity()) / 100.0;
            let percent = as_percent(selectivity(filter.predicate(), unit));
            if percent == filter.default_selectivity() {
                return Ok(Transformed::no(node));
            }
            let tuned = filter.clone().with_default_selectivity(percent)?;
            Ok(Transformed::yes(Arc::new(tuned) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "filter_selectivity"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A share as a whole percentage, rounded up and at least 1 (FilterExec's unit; a filter
/// is never assumed to keep nothing). Floating-point noise is not rounded up: 0.2 × 0.2 is
/// 0.04000000000000001, and 4 %.
fn as_percent(share: f64) -> u8 {
    (share * 100.0 - 1e-9).ceil().clamp(1.0, 100.0) as u8
}

/// The share of rows `predicate` is taken to keep, each opaque condition keeping `unit`.
pub fn selectivity(predicate: &Arc<dyn PhysicalExpr>, unit: f64) -> f64 {
    let mut seen = HashSet::new();
    split_conjunction(predicate)
        .into_iter()
        .filter(|condition| seen.insert(condition.to_string()))
        .map(|condition| condition_selectivity(condition, unit))
        .product()
}

fn condition_selectivity(condition: &Arc<dyn PhysicalExpr>, unit: f64) -> f64 {
    if condition
        .downcast_ref::<DynamicFilterPhysicalExpr>()
        .is_some()
    {
        return 1.0;
    }
    if let Some(literal) = condition.downcast_ref::<Literal>() {
        return match literal.value() {
            ScalarValue::Boolean(Some(true)) => 1.0,
            _ => unit,
        };
    }
    if let Some(binary) = condition.downcast_ref::<BinaryExpr>() {
        match binary.op() {
            Operator::And => return selectivity(condition, unit),
            Operator::NotEq
            | Operator::IsDistinctFrom
            | Operator::NotLikeMatch
            | Operator::NotILikeMatch
            | Operator::RegexNotMatch
            | Operator::RegexNotIMatch => return 1.0 - unit,
            _ => {}
        }
    }
    if let Some(like) = condition.downcast_ref::<LikeExpr>()
        && like.negated()
    {
        return 1.0 - unit;
    }
    if let Some(not) = condition.downcast_ref::<NotExpr>() {
        return 1.0 - selectivity(not.arg(), unit);
    }
    if condition.downcast_ref::<IsNotNullExpr>().is_some() {
        return 1.0 - unit;
    }
    if let Some(in_list) = condition.downcast_ref::<InListExpr>()
        && in_list.negated()
    {
        return 1.0 - unit;
    }
    // Anything else, an `OR` or `IN` list included, is one condition.
    unit
}

/// How many input rows a grouping is taken to fold into one group when nothing says how many
/// distinct keys it has (module doc).
pub const ROWS_PER_GROUP: usize = 10;

/// Puts an [`EstimatedGroups`] over every grouping that only removes repeats (`DISTINCT`,
/// `UNION`, a `GROUP BY` without aggregates) where it gives its final rows (module doc).
/// Place it before DataFusion's `join_selection`, and [`DropEstimates`] after it.
#[derive(Debug, Default)]
pub struct GroupEstimates;

impl PhysicalOptimizerRule for GroupEstimates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let distinct = node
                .downcast_ref::<AggregateExec>()
                .is_some_and(removes_repeats_blindly);
            if !distinct {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(EstimatedGroups::new(node, FewerGroups)) as Arc<dyn ExecutionPlan>,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "group_estimates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `agg` is a grouping that only removes repeats, gives its final rows, and has
/// nothing to estimate its groups by: one plain grouping set, not a half of a `ROLLUP`,
/// `CUBE` or `GROUPING SETS` (they can give more rows than they read), no aggregate, a
/// final or single mode (not a partial one, whose output is merged again), and not every
/// key a column whose distinct count is known (DataFusion then estimates the groups from
/// those counts).
fn removes_repeats_blindly(agg: &AggregateExec) -> bool {
    let group_by = agg.group_expr();
    // The final half of a `ROLLUP`, `CUBE` or `GROUPING SETS` groups by the partial half's
    // grouping id as well: a plain grouping over rows that may outnumber the input.
    let of_grouping_sets = group_by
        .expr()
        .iter()
        .any(|(_, name)| name == Aggregate::INTERNAL_GROUPING_ID);
    if group_by.is_empty()
        || !group_by.is_single()
        || of_grouping_sets
        || !agg.aggr_expr().is_empty()
    {
        return false;
    }
    if !matches!(
        agg.mode(),
        AggregateMode::Final
            | AggregateMode::FinalPartitioned
            | AggregateMode::Single
            | AggregateMode::SinglePartitioned
    ) {
        return false;
    }
    // A fresh context: its cache is keyed by plan-node addresses, which this rewrite reuses.
    let Ok(input) = StatisticsContext::new().compute(agg.input().as_ref(), &StatisticsArgs::new())
    else {
        return true;
    };
    let counted = group_by.expr().iter().all(|(expr, _)| {
        expr.downcast_ref::<Column>().is_some_and(|c| {
            input
                .column_statistics
                .get(c.index())
                .is_some_and(|s| s.distinct_count.get_value().is_some())
        })
    });
    !counted
}

/// Takes out the [`EstimatedGroups`] and [`WidthEstimate`]s that [`GroupEstimates`] and
/// [`ScanWidths`] put in.
#[derive(Debug, Default)]
pub struct DropEstimates;

impl PhysicalOptimizerRule for DropEstimates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(estimated) = node.downcast_ref::<EstimatedGroups>() {
                return Ok(Transformed::yes(Arc::clone(estimated.input())));
            }
            if let Some(estimated) = node.downcast_ref::<WidthEstimate>() {
                return Ok(Transformed::yes(Arc::clone(estimated.input())));
            }
            Ok(Transformed::no(node))
        })
        .data()
    }

    fn name(&self) -> &str {
        "drop_estimates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A grouping's output, unchanged, whose statistics say it keeps one row in
/// [`ROWS_PER_GROUP`] of what DataFusion estimates (never fewer than one). It lives only
/// while join selection reads the plan; should it run, it passes its input's batches on.
pub type EstimatedGroups = PassThrough<FewerGroups>;

/// The statistics an [`EstimatedGroups`] reports.
#[derive(Debug)]
pub struct FewerGroups;

impl Passing for FewerGroups {
    const NAME: &'static str = "EstimatedGroupsExec";

    fn details(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, ": rows_per_group={ROWS_PER_GROUP}")
    }

    fn statistics(&self, input: &Arc<Statistics>) -> Result<Arc<Statistics>> {
        let mut stats = Statistics::clone(input).to_inexact();
        let fewer = |n: usize| n.div_ceil(ROWS_PER_GROUP).max(1);
        stats.num_rows = stats.num_rows.map(fewer);
        stats.total_byte_size = stats.total_byte_size.map(fewer);
        // Each column keeps at most as many nulls and distinct values as there are rows.
        if let Some(&rows) = stats.num_rows.get_value() {
            for column in &mut stats.column_statistics {
                column.null_count = column.null_count.map(|n| n.min(rows));
                column.distinct_count = column.distinct_count.map(|n| n.min(rows));
            }
        }
        Ok(Arc::new(stats))
    }
}

/// Puts a [`WidthEstimate`] over each scan of the lake (a `DeltaScanExec`) and each other
/// leaf whose size is not exact (module doc). Place it before DataFusion's `join_selection`,
/// and [`DropEstimates`] after it.
#[derive(Debug, Default)]
pub struct ScanWidths;

impl PhysicalOptimizerRule for ScanWidths {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            let scan = node.name() == "DeltaScanExec" || node.children().is_empty();
            if !scan {
                return Ok(Transformed::no(node));
            }
            let exact = StatisticsContext::new()
                .compute(node.as_ref(), &StatisticsArgs::new())
                .is_ok_and(|s| s.total_byte_size.is_exact().unwrap_or(false));
            if exact {
                return Ok(Transformed::no(node));
            }
            let schema = node.schema();
            let wrapped = Arc::new(WidthEstimate::new(node, ColumnWidths { schema }));
            // The scan's own inputs (a Delta scan's file source) are left as they are.
            Ok(Transformed::new(
                wrapped as Arc<dyn ExecutionPlan>,
                true,
                TreeNodeRecursion::Jump,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "scan_widths"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The bytes a value of `data_type` is taken to hold in memory: its width when it has one,
/// else [`TEXT_WIDTH`] (text, binary and nested values: an id is 36 characters and a view
/// of 16 bytes; names are shorter, JSON longer).
pub fn width_in_memory(data_type: &DataType) -> usize {
    match data_type {
        DataType::Null => 0,
        DataType::Boolean => 1,
        other => other.primitive_width().unwrap_or(TEXT_WIDTH),
    }
}

/// See [`width_in_memory`].
pub const TEXT_WIDTH: usize = 48;

/// A scan's output, unchanged, whose statistics give each column rows × its
/// [`width_in_memory`] bytes. It lives only while join selection reads the plan.
pub type WidthEstimate = PassThrough<ColumnWidths>;

/// The statistics a [`WidthEstimate`] reports: its scan's schema says the widths.
#[derive(Debug)]
pub struct ColumnWidths {
    schema: SchemaRef,
}

impl Passing for ColumnWidths {
    const NAME: &'static str = "WidthEstimateExec";

    fn statistics(&self, input: &Arc<Statistics>) -> Result<Arc<Statistics>> {
        let Some(&rows) = input.num_rows.get_value() else {
            return Ok(Arc::clone(input));
        };
        let mut stats = Statistics::clone(input).to_inexact();
        let mut total = 0usize;
        for (column, field) in stats.column_statistics.iter_mut().zip(self.schema.fields()) {
            let bytes = rows.saturating_mul(width_in_memory(field.data_type()));
            column.byte_size = Precision::Inexact(bytes);
            total = total.saturating_add(bytes);
        }
        stats.total_byte_size = Precision::Inexact(total);
        Ok(Arc::new(stats))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::physical_expr::expressions::{col, in_list, lit, not};
    use deltalake::datafusion::physical_expr::{PhysicalExpr, conjunction};
    use deltalake::datafusion::physical_plan::joins::HashJoinExec;
    use deltalake::datafusion::physical_plan::{ExecutionPlan, collect, displayable};
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    use super::super::global_aggregates::physical_optimizer_rules;
    use super::selectivity;

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// `a` and `b`, nullable text.
    fn two_text_columns() -> Schema {
        Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ])
    }

    #[test]
    fn conditions_multiply_and_alternatives_or_repeats_count_once() {
        let schema = two_text_columns();
        let a = col("a", &schema).expect("a");
        let b = col("b", &schema).expect("b");
        let eq = |c: &Arc<dyn PhysicalExpr>, v: &str| -> Arc<dyn PhysicalExpr> {
            deltalake::datafusion::physical_expr::expressions::binary(
                Arc::clone(c),
                deltalake::datafusion::logical_expr::Operator::Eq,
                lit(v),
                &schema,
            )
            .expect("eq")
        };
        let or = |l, r| -> Arc<dyn PhysicalExpr> {
            deltalake::datafusion::physical_expr::expressions::binary(
                l,
                deltalake::datafusion::logical_expr::Operator::Or,
                r,
                &schema,
            )
            .expect("or")
        };
        assert!(approx(selectivity(&eq(&a, "x"), 0.2), 0.2));
        // Two conditions, one of them repeated: 0.2 × 0.2.
        let and = conjunction([eq(&a, "x"), eq(&b, "y"), eq(&a, "x")]);
        assert!(approx(selectivity(&and, 0.2), 0.04));
        // An alternative is one condition, whatever its number of branches; with another
        // condition beside it, two.
        assert!(approx(selectivity(&or(eq(&a, "x"), eq(&a, "z")), 0.2), 0.2));
        let both = conjunction([or(eq(&a, "x"), eq(&a, "z")), eq(&b, "y")]);
        assert!(approx(selectivity(&both, 0.2), 0.04));
        let list = in_list(
            Arc::clone(&a),
            vec![lit("x"), lit("y"), lit("z")],
            &false,
            &schema,
        )
        .expect("in");
        assert!(approx(selectivity(&list, 0.2), 0.2));
        let not_in = in_list(Arc::clone(&a), vec![lit("x")], &true, &schema).expect("not in");
        assert!(approx(selectivity(&not_in, 0.2), 0.8));
        assert!(approx(
            selectivity(&not(eq(&b, "y")).expect("not"), 0.2),
            0.8
        ));
        assert!(approx(selectivity(&lit(true), 0.2), 1.0));
    }

    #[test]
    fn a_scan_is_measured_by_its_rows_and_its_columns_types_not_its_files() {
        use deltalake::datafusion::common::stats::Precision;
        use deltalake::datafusion::common::{ColumnStatistics, Statistics};

        use super::{ColumnWidths, Passing, TEXT_WIDTH};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8View, false),
            Field::new("at", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        // Compressed, the ids (repeated on neighbouring rows) took a byte a row.
        let scanned = Statistics {
            num_rows: Precision::Inexact(1_000),
            total_byte_size: Precision::Inexact(2_000),
            column_statistics: vec![
                ColumnStatistics::new_unknown().with_byte_size(Precision::Inexact(1_000)),
                ColumnStatistics::new_unknown().with_byte_size(Precision::Inexact(900)),
                ColumnStatistics::new_unknown().with_byte_size(Precision::Inexact(100)),
            ],
        };
        let widths = ColumnWidths { schema };
        let estimated = widths.statistics(&Arc::new(scanned)).expect("stats");
        let bytes: Vec<_> = estimated
            .column_statistics
            .iter()
            .map(|c| c.byte_size)
            .collect();
        assert_eq!(
            bytes,
            vec![
                Precision::Inexact(1_000 * TEXT_WIDTH),
                Precision::Inexact(8_000),
                Precision::Inexact(1_000),
            ]
        );
        assert_eq!(
            estimated.total_byte_size,
            Precision::Inexact(1_000 * TEXT_WIDTH + 9_000)
        );
        assert_eq!(estimated.num_rows, Precision::Inexact(1_000));
        // Rows unknown: nothing to measure by, the scan's own figures stand.
        let unknown = Arc::new(Statistics::new_unknown(&widths.schema));
        assert!(Arc::ptr_eq(
            &widths.statistics(&unknown).expect("stats"),
            &unknown
        ));
    }

    #[test]
    fn shares_round_up_to_whole_percents_but_not_for_floating_point_noise() {
        // 0.2 × 0.2 is 0.04000000000000001 and 0.8 × 0.2 is 0.16000000000000003.
        assert_eq!(super::as_percent(0.2 * 0.2), 4);
        assert_eq!(super::as_percent(0.8 * 0.2), 16);
        assert_eq!(super::as_percent(0.041), 5);
        assert_eq!(super::as_percent(0.0), 1);
        assert_eq!(super::as_percent(1.0), 100);
    }

    #[test]
    fn negations_keep_the_rest() {
        use deltalake::datafusion::logical_expr::Operator;
        use deltalake::datafusion::physical_expr::expressions::{binary, like};
        let schema = two_text_columns();
        let a = col("a", &schema).expect("a");
        let b = col("b", &schema).expect("b");
        let not_like = like(true, false, Arc::clone(&a), lit("%x%"), &schema).expect("not like");
        assert!(approx(selectivity(&not_like, 0.2), 0.8));
        let plain_like = like(false, false, Arc::clone(&a), lit("%x%"), &schema).expect("like");
        assert!(approx(selectivity(&plain_like, 0.2), 0.2));
        for op in [
            Operator::IsDistinctFrom,
            Operator::NotLikeMatch,
            Operator::NotILikeMatch,
            Operator::RegexNotMatch,
            Operator::RegexNotIMatch,
        ] {
            let right = if op == Operator::IsDistinctFrom {
                Arc::clone(&b)
            } else {
                lit("x")
            };
            let e = binary(Arc::clone(&a), op, right, &schema).expect("binary");
            assert!(approx(selectivity(&e, 0.2), 0.8), "{op}");
        }
    }

    /// How many groupings of `sql` (over a 1,000-row table `t(a, b)`, planned for
    /// `partitions`) the rule would wrap.
    async fn groupings_wrapped(sql: &str, partitions: usize) -> usize {
        use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule as _;
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(partitions),
        );
        let schema = Arc::new(two_text_columns());
        let values: Vec<String> = (0..1_000).map(|i| format!("v{}", i % 7)).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(&values)),
                Arc::new(StringArray::from_iter_values(&values)),
            ],
        )
        .expect("batch");
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        let plan = ctx
            .sql(sql)
            .await
            .expect("sql")
            .create_physical_plan()
            .await
            .expect("plan");
        let wrapped = super::GroupEstimates
            .optimize(plan, ctx.state().config_options())
            .expect("optimize");
        displayable(wrapped.as_ref())
            .indent(true)
            .to_string()
            .matches("EstimatedGroupsExec")
            .count()
    }

    #[tokio::test]
    async fn only_plain_final_groupings_without_aggregates_are_estimated_smaller() {
        // Over two partitions: the final half of a DISTINCT, not its partial half.
        assert_eq!(groupings_wrapped("SELECT DISTINCT a FROM t", 2).await, 1);
        assert_eq!(
            groupings_wrapped("SELECT a, b FROM t GROUP BY a, b", 2).await,
            1
        );
        assert_eq!(
            groupings_wrapped("SELECT a, count(*) FROM t GROUP BY a", 2).await,
            0
        );
        // Over one: a single grouping, unless it has aggregates. Grouping sets (which give
        // more rows than they read) neither in their partial half nor in their final one.
        assert_eq!(groupings_wrapped("SELECT DISTINCT a FROM t", 1).await, 1);
        assert_eq!(
            groupings_wrapped("SELECT a, count(*) FROM t GROUP BY a", 1).await,
            0
        );
        for partitions in [1, 2] {
            assert_eq!(
                groupings_wrapped("SELECT a, b FROM t GROUP BY ROLLUP (a, b)", partitions).await,
                0
            );
            assert_eq!(
                groupings_wrapped(
                    "SELECT a, b FROM t GROUP BY GROUPING SETS ((a), (b))",
                    partitions
                )
                .await,
                0
            );
        }
    }

    /// Audit events (1,000, four of them removals) and their targets (3 per event, short
    /// rows): the whole events table is larger than the targets table (168 KB against
    /// 123 KB in memory; 58 against 54 MB in the 1M lake), the removal events are far fewer
    /// than the user targets. Returns the table the join's build side reads and
    /// the join's rows.
    async fn removal_join(with_estimates: bool) -> (String, usize) {
        let mut rules = physical_optimizer_rules();
        if !with_estimates {
            rules.retain(|r| r.name() != "filter_selectivity");
        }
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                0,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                0,
            );
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let events = 1_000;
        let ids: Vec<String> = (0..events).map(|i| format!("event-{i:05}")).collect();
        let names: Vec<String> = (0..events)
            .map(|i| {
                if i % 250 == 0 {
                    "Administrator removes access package assignment".to_string()
                } else {
                    format!("Create access package assignment request {i:05} in the portal by the catalog owner")
                }
            })
            .collect();
        let event_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("activity_display_name", DataType::Utf8, false),
            Field::new("result", DataType::Utf8, true),
        ]));
        let event_batch = RecordBatch::try_new(
            Arc::clone(&event_schema),
            vec![
                Arc::new(StringArray::from_iter_values(&ids)),
                Arc::new(StringArray::from_iter_values(&names)),
                Arc::new(StringArray::from_iter_values(ids.iter().map(|_| "success"))),
            ],
        )
        .expect("events");
        let kinds = ["User", "AccessPackage", "Policy"];
        let target_schema = Arc::new(Schema::new(vec![
            Field::new("audit_event_id", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
        ]));
        let target_ids: Vec<&str> = ids
            .iter()
            .flat_map(|id| kinds.iter().map(move |_| id.as_str()))
            .collect();
        let target_kinds: Vec<&str> = ids.iter().flat_map(|_| kinds).collect();
        let target_batch = RecordBatch::try_new(
            Arc::clone(&target_schema),
            vec![
                Arc::new(StringArray::from_iter_values(target_ids)),
                Arc::new(StringArray::from_iter_values(target_kinds)),
            ],
        )
        .expect("targets");
        for (name, schema, batch) in [
            ("audit_events", event_schema, event_batch),
            ("audit_event_target_resources", target_schema, target_batch),
        ] {
            let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
            ctx.register_table(name, Arc::new(table)).expect("register");
        }
        let df = ctx
            .sql(
                "SELECT e.id, u.type FROM audit_events e \
                 JOIN audit_event_target_resources u ON u.audit_event_id = e.id \
                     AND lower(u.type) = 'user' \
                 WHERE (lower(e.activity_display_name) LIKE '%removes%access package assignment%' \
                        OR lower(e.activity_display_name) LIKE 'remove access package assignment%') \
                   AND (e.result IS NULL OR lower(e.result) = 'success')",
            )
            .await
            .expect("sql");
        let (plan, rows) = planned_rows(&ctx, df).await;
        (build_side_table(&plan), rows)
    }

    /// The physical plan of `df` (with no estimate left in it) and the rows it returns.
    async fn planned_rows(
        ctx: &SessionContext,
        df: deltalake::datafusion::dataframe::DataFrame,
    ) -> (Arc<dyn ExecutionPlan>, usize) {
        let plan = df.create_physical_plan().await.expect("plan");
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(!shown.contains("EstimatedGroups"), "{shown}");
        assert!(!shown.contains("WidthEstimate"), "{shown}");
        let rows: usize = collect(Arc::clone(&plan), ctx.task_ctx())
            .await
            .expect("rows")
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        (plan, rows)
    }

    /// Which table the first hash join's build side (its left input) scans.
    fn build_side_table(plan: &Arc<dyn ExecutionPlan>) -> String {
        if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
            let build = displayable(join.left().as_ref()).indent(true).to_string();
            return if build.contains("activity_display_name") {
                "audit_events".to_string()
            } else {
                "audit_event_target_resources".to_string()
            };
        }
        plan.children()
            .into_iter()
            .map(build_side_table)
            .find(|t| !t.is_empty())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_join_builds_on_the_few_removal_events_not_on_every_user_target() {
        // Without the rule both filters keep 20 %, and the targets table is the smaller one.
        let (without, rows_without) = removal_join(false).await;
        assert_eq!(without, "audit_event_target_resources");
        let (with, rows_with) = removal_join(true).await;
        assert_eq!(with, "audit_events");
        // Four removal events (every 250th of 1,000), one user target each, either way.
        assert_eq!((rows_without, rows_with), (4, 4));
    }

    /// Versions of assignments (3,000 rows, wide) looked up in their distinct snapshot
    /// times (four: each valid_from and valid_to) as `assignment_holdings` does. Returns whether the first hash join
    /// builds on the snapshot times, and the rows.
    async fn snapshot_lookup(with_estimates: bool) -> (bool, usize) {
        let mut rules = physical_optimizer_rules();
        if !with_estimates {
            rules.retain(|r| r.name() != "group_estimates");
        }
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let versions = 3_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("valid_from", DataType::Utf8, false),
            Field::new("valid_to", DataType::Utf8, false),
            Field::new("display_name", DataType::Utf8, false),
        ]));
        let ids: Vec<String> = (0..versions)
            .map(|i| format!("assignment-{i:06}"))
            .collect();
        let times: Vec<String> = (0..versions)
            .map(|i| format!("2026-0{}-01T00:00:00Z", 1 + i % 3))
            .collect();
        let ends: Vec<String> = (0..versions)
            .map(|i| format!("2026-0{}-01T00:00:00Z", 2 + i % 3))
            .collect();
        let names: Vec<String> = (0..versions)
            .map(|i| format!("Financial Analyst - Standard, policy {i:06}"))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(&ids)),
                Arc::new(StringArray::from_iter_values(&times)),
                Arc::new(StringArray::from_iter_values(&ends)),
                Arc::new(StringArray::from_iter_values(&names)),
            ],
        )
        .expect("versions");
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        ctx.register_table("versions", Arc::new(table))
            .expect("register");
        let df = ctx
            .sql(
                "WITH observations AS ( \
                     SELECT valid_from AS observed_at FROM versions \
                     UNION SELECT valid_to FROM versions), \
                 observation_order AS ( \
                     SELECT observed_at, lag(observed_at) OVER (ORDER BY observed_at) AS previous \
                     FROM observations) \
                 SELECT v.*, o.previous FROM versions v \
                 LEFT JOIN observation_order o ON o.observed_at = v.valid_from",
            )
            .await
            .expect("sql");
        let (plan, rows) = planned_rows(&ctx, df).await;
        (builds_on_snapshot_times(&plan), rows)
    }

    fn builds_on_snapshot_times(plan: &Arc<dyn ExecutionPlan>) -> bool {
        match plan.downcast_ref::<HashJoinExec>() {
            Some(join) => join.left().schema().field_with_name("previous").is_ok(),
            None => plan.children().into_iter().any(builds_on_snapshot_times),
        }
    }

    #[tokio::test]
    async fn a_lookup_in_distinct_snapshot_times_builds_on_the_times_not_on_the_versions() {
        // Without the estimate the four snapshot times are taken for 6,000 groups (every
        // valid_from and valid_to), more than the 3,000 versions: the versions are built on.
        let (without, rows_without) = snapshot_lookup(false).await;
        assert!(!without);
        let (with, rows_with) = snapshot_lookup(true).await;
        assert!(with);
        assert_eq!((rows_without, rows_with), (3_000, 3_000));
    }
}
