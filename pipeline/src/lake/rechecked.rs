//! A table provider that never lets a scan be the only thing standing between a query and
//! the rows its filter excludes.
//!
//! DataFusion asks each table whether it applies a pushed-down filter *exactly*; when the
//! answer is `Exact` it drops its own `Filter` above the scan. delta-rs 1.1.3 answers
//! `Exact` for any predicate without column references (it takes "no columns" for "only
//! partition columns"), so `WHERE d > 0` over a `UNION ALL` branch with `CAST(NULL AS …)`
//! was pushed into the scan as `Boolean(NULL)`, never applied, and `count(*)` came from
//! statistics: rows the filter excludes were counted. Every table govlake registers is
//! wrapped in [`Rechecked`], which passes filters to the scan (file and partition pruning
//! still happen) but reports each one `Inexact`, so DataFusion always keeps — and runs —
//! its own filter. The cost is re-evaluating predicates the scan already applied. A scan of no
//! columns with a limit reads one column instead (delta-rs' scan of no columns ignores it).

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::{Constraints, Statistics};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::logical_expr::{
    Expr, LogicalPlan, TableProviderFilterPushDown, TableType,
};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

/// Wraps a provider; every filter it accepts is reported `Inexact` (see the module doc).
#[derive(Debug)]
pub struct Rechecked {
    inner: Arc<dyn TableProvider>,
    /// The first column stored in the data files (not a partition column): what a scan of
    /// no columns with a limit reads instead.
    first_file_column: Option<usize>,
}

impl Rechecked {
    /// Wraps `inner`, a table partitioned by `partition_columns`.
    pub fn new(inner: Arc<dyn TableProvider>, partition_columns: &[String]) -> Self {
        let first_file_column = inner
            .schema()
            .fields()
            .iter()
            .position(|f| !partition_columns.contains(f.name()));
        Self {
            inner,
            first_file_column,
        }
    }
}

/// What a filter's pushdown answer becomes: a scan may still use it, but never alone.
fn never_exact(answer: TableProviderFilterPushDown) -> TableProviderFilterPushDown {
    match answer {
        TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
        other => other,
    }
}

#[async_trait]
impl TableProvider for Rechecked {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // delta-rs answers a scan of no columns from the log (row counts), and that scan drops
        // a LIMIT it accepts: `SELECT 1 FROM assignments LIMIT 3` returned every row (delta-rs
        // issue 4037). With a limit, read one column of the data files (a partition column
        // is answered from the log too) and project it away instead.
        if let (Some([]), Some(_), Some(column)) =
            (projection.map(Vec::as_slice), limit, self.first_file_column)
        {
            let one = self
                .inner
                .scan(state, Some(&vec![column]), filters, limit)
                .await?;
            return Ok(Arc::new(ProjectionExec::try_new(
                Vec::<ProjectionExpr>::new(),
                one,
            )?));
        }
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .inner
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(never_exact)
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_becomes_inexact_and_nothing_else_changes() {
        use TableProviderFilterPushDown::*;
        assert_eq!(never_exact(Exact), Inexact);
        assert_eq!(never_exact(Inexact), Inexact);
        assert_eq!(never_exact(Unsupported), Unsupported);
    }
}
