//! Views a pack reads more than once, computed once. A pack runs every governance query
//! for its populations and every section of the package reports, and several of them read
//! the same view: `assignment_holdings` is read by five queries and by the "holders" and
//! "trend" sections, `remediation_timeliness` by `recertification_coverage`, the whole
//! `approval_trail` by "holders" (its population holds the period only). Each read planned
//! the view again and recomputed it from the lake. Here each view that another query or a
//! section reads is computed once, whole and unordered, into a Parquet file of a scratch
//! folder beside the pack (removed when the pack is done), registered under the view's own
//! name, and the views that read it are registered again so they read the file. The rows
//! every query sees are the same: the view's rows at the pinned table versions, which no
//! query run of the pack changes (no view reads the clock).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::datafusion::prelude::SessionContext;

use super::{Error, Result};
use crate::query::views::{self, QueryFile};

/// The scratch folder of the views computed once, removed when dropped.
pub struct SharedViews {
    /// The views now read from their file, in the order they were computed.
    pub views: Vec<String>,
    _scratch: Option<tempfile::TempDir>,
}

/// Computes once each registered view that another query file or one of `readers` (SQL the
/// pack runs besides the query files) reads, in an order where a view is computed after the
/// views it reads, each into `<folder>/<random>/<view>.parquet`. A view whose file cannot be
/// registered (a folder name DataFusion would read as a glob) stays a view.
pub async fn compute_once(
    ctx: &SessionContext,
    queries: &[QueryFile],
    registered: &[String],
    readers: &[String],
    folder: &Path,
) -> Result<SharedViews> {
    // Which registered views each query file and reader reads (SQL that does not parse
    // reads none here: where the pack runs it, planning it reports the error).
    let reads = |sql: &str| -> Vec<String> {
        views::relations(ctx, sql)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| registered.contains(r))
            .collect()
    };
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    let mut read_by_others = std::collections::BTreeSet::new();
    for q in queries {
        let read = reads(q.sql.trim().trim_end_matches(';'));
        read_by_others.extend(read.iter().filter(|v| **v != q.name).cloned());
        if registered.contains(&q.name) {
            wanted.push((q.name.clone(), read));
        }
    }
    for sql in readers {
        read_by_others.extend(reads(sql));
    }
    wanted.retain(|(name, _)| read_by_others.contains(name));
    if wanted.is_empty() {
        return Ok(SharedViews {
            views: Vec::new(),
            _scratch: None,
        });
    }
    let scratch = tempfile::Builder::new()
        .prefix(".govlake-pack-views-")
        .tempdir_in(folder)
        .map_err(super::io_err("create a scratch folder in", folder))?;
    let mut done: Vec<String> = Vec::new();
    // Dependency order: each pass computes the views whose wanted inputs are done.
    while !wanted.is_empty() {
        let ready = wanted
            .iter()
            .position(|(_, read)| {
                read.iter()
                    .all(|v| done.contains(v) || !wanted.iter().any(|(w, _)| w == v))
            })
            .unwrap_or(0);
        let (name, _) = wanted.remove(ready);
        let path = scratch.path().join(format!("{name}.parquet"));
        let Some(location) = readable_location(&path) else {
            tracing::debug!(view = %name, "View not computed once: its scratch path is not one DataFusion reads as a file");
            continue;
        };
        let started = std::time::Instant::now();
        let (rows, schema) = write_view(ctx, &name, &path).await?;
        let query_err = |source| Error::Query {
            what: name.clone(),
            source: Box::new(source),
        };
        ctx.deregister_table(TableReference::bare(name.as_str()))
            .map_err(query_err)?;
        // Read with the view's own schema (left to itself, DataFusion reads text columns
        // as views of strings, and drops field metadata).
        ctx.register_parquet(
            TableReference::bare(name.as_str()),
            &location,
            deltalake::datafusion::prelude::ParquetReadOptions::default().schema(&schema),
        )
        .await
        .map_err(query_err)?;
        done.push(name.clone());
        // The views that read it plan again over the file.
        let others: Vec<QueryFile> = queries
            .iter()
            .filter(|q| !done.contains(&q.name))
            .cloned()
            .collect();
        views::register(ctx, &others).await?;
        tracing::debug!(
            view = %name,
            rows,
            seconds = started.elapsed().as_secs_f64(),
            "View computed once for the pack"
        );
    }
    Ok(SharedViews {
        views: done,
        _scratch: Some(scratch),
    })
}

/// `path` as DataFusion's `register_parquet` reads one file: absolute, UTF-8, without the
/// `*`, `?` or `[` it would read as a glob.
pub fn readable_location(path: &Path) -> Option<String> {
    std::path::absolute(path)
        .ok()
        .and_then(|p: PathBuf| p.to_str().map(str::to_string))
        .filter(|p| !p.contains(['*', '?', '[']))
}

/// Writes every row of view `name` to a Parquet file, batch by batch, without the view's
/// final `ORDER BY` (its readers sort or aggregate for themselves). Returns the rows and
/// the view's schema.
async fn write_view(
    ctx: &SessionContext,
    name: &str,
    path: &Path,
) -> Result<(usize, deltalake::arrow::datatypes::Schema)> {
    use futures::TryStreamExt as _;
    let query_err = |source| Error::Query {
        what: name.to_string(),
        source: Box::new(source),
    };
    let arrow_err = |source: deltalake::parquet::errors::ParquetError| Error::Arrow {
        what: name.to_string(),
        source: source.into(),
    };
    let provider = ctx
        .table_provider(TableReference::bare(name))
        .await
        .map_err(query_err)?;
    let df = match provider.get_logical_plan() {
        Some(view) => deltalake::datafusion::dataframe::DataFrame::new(
            ctx.state(),
            without_final_sort(view.into_owned()).map_err(query_err)?,
        ),
        None => ctx
            .table(TableReference::bare(name))
            .await
            .map_err(query_err)?,
    };
    let schema = df.schema().as_arrow().clone();
    let mut stream = df.execute_stream().await.map_err(query_err)?;
    let file = std::fs::File::create(path).map_err(super::io_err("create", path))?;
    let props = deltalake::parquet::file::properties::WriterProperties::builder()
        .set_compression(deltalake::parquet::basic::Compression::SNAPPY)
        // Row groups of a quarter of the default: less held while one is filled, and
        // finer statistics for the period filters of the populations read from it.
        .set_max_row_group_row_count(Some(256 * 1024))
        .build();
    let mut writer = deltalake::parquet::arrow::ArrowWriter::try_new(
        std::io::BufWriter::new(file),
        stream.schema(),
        Some(props),
    )
    .map_err(arrow_err)?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await.map_err(query_err)? {
        rows += batch.num_rows();
        writer.write(&batch).map_err(arrow_err)?;
    }
    writer.close().map_err(arrow_err)?;
    Ok((rows, schema))
}

/// `plan` without its final sort (under the projections and aliases on top of it), when
/// that sort has no limit: the same rows, in no particular order.
fn without_final_sort(
    plan: LogicalPlan,
) -> std::result::Result<LogicalPlan, deltalake::datafusion::error::DataFusionError> {
    match plan {
        LogicalPlan::Sort(sort) if sort.fetch.is_none() => Ok(Arc::unwrap_or_clone(sort.input)),
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            let input = without_final_sort(plan.inputs()[0].clone())?;
            plan.with_new_exprs(plan.expressions(), vec![input])
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_final_sort_is_dropped_and_a_sort_with_a_limit_kept() {
        let ctx = SessionContext::new();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().into_unoptimized_plan() }
        };
        let has_sort = |p: &LogicalPlan| format!("{}", p.display_indent()).contains("Sort:");
        let sorted = plan("SELECT a FROM (VALUES (2, 'x'), (1, 'y')) t(a, b) ORDER BY b").await;
        assert!(has_sort(&sorted));
        let unsorted = without_final_sort(sorted.clone()).unwrap();
        assert!(!has_sort(&unsorted), "{}", unsorted.display_indent());
        assert_eq!(unsorted.schema(), sorted.schema());
        let limited =
            plan("SELECT a FROM (VALUES (2, 'x'), (1, 'y')) t(a, b) ORDER BY b LIMIT 1").await;
        assert!(has_sort(&without_final_sort(limited).unwrap()));
    }
}
