//! A query result as a table of text cells, in a deterministic order: every query runs
//! wrapped in `ORDER BY` all of its columns, so the same lake versions give the same rows in
//! the same order whatever the thread count.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::scalar::ScalarValue;

use super::{Error, Result};
use crate::query::read_only;

/// A result: column names and rows of text (NULL is the empty string).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, one text cell per column.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The cell of `column` in `row`, or "" when there is no such column.
    pub fn cell<'a>(&'a self, row: &'a [String], column: &str) -> &'a str {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| row.get(i))
            .map_or("", String::as_str)
    }

    /// Only the named columns, in that order (columns it lacks are left out).
    pub fn select(&self, columns: &[&str]) -> Table {
        let idx: Vec<usize> = columns
            .iter()
            .filter_map(|c| self.columns.iter().position(|x| x == c))
            .collect();
        Table {
            columns: idx.iter().map(|&i| self.columns[i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
                .collect(),
        }
    }
}

/// Rows of text cells kept as Arrow `Utf8` columns (a cell is a slice of its batch's
/// buffer, not a `String`), read a row at a time: a package report's section, which for
/// the largest package of a 10M-event tenant is over a million rows. Templates read it as
/// a [`Table`] (`columns`, `rows`), each row made when the template reaches it; NULL is the
/// empty string, as in [`Table`].
#[derive(Debug, Clone, Default)]
pub struct TextRows {
    columns: Vec<String>,
    /// Batches of text columns, none empty.
    batches: Vec<RecordBatch>,
    /// The index of each batch's first row.
    starts: Vec<usize>,
    len: usize,
}

impl TextRows {
    /// No rows yet, with these columns.
    pub fn new(columns: Vec<String>) -> Self {
        Self {
            columns,
            ..Self::default()
        }
    }

    /// Appends a batch's rows (its columns turned into text, as [`append_rows`] does).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), deltalake::arrow::error::ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = std::sync::Arc::new(deltalake::arrow::datatypes::Schema::new(
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| deltalake::arrow::datatypes::Field::new(f.name(), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let text = RecordBatch::try_new_with_options(
            schema,
            text_columns(batch)?,
            &deltalake::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(batch.num_rows())),
        )?;
        self.starts.push(self.len);
        self.len += text.num_rows();
        self.batches.push(text);
        Ok(())
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `index`'s cells, or `None` past the end.
    pub fn row(&self, index: usize) -> Option<impl Iterator<Item = &str>> {
        if index >= self.len {
            return None;
        }
        let b = self.starts.partition_point(|&start| start <= index) - 1;
        let batch = &self.batches[b];
        let at = index - self.starts[b];
        Some(batch.columns().iter().map(move |c| {
            let c = c.as_string::<i32>();
            if c.is_null(at) { "" } else { c.value(at) }
        }))
    }

    /// Every row as `String` cells.
    pub fn to_table(&self) -> Table {
        Table {
            columns: self.columns.clone(),
            rows: (0..self.len)
                .filter_map(|i| self.row(i).map(|r| r.map(str::to_string).collect()))
                .collect(),
        }
    }
}

impl minijinja::value::Object for TextRows {
    fn get_value_by_str(self: &std::sync::Arc<Self>, key: &str) -> Option<minijinja::Value> {
        match key {
            "columns" => Some(minijinja::Value::from(self.columns.clone())),
            "rows" => Some(minijinja::Value::from_object(RowsOf(self.clone()))),
            _ => None,
        }
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        key.as_str().and_then(|k| self.get_value_by_str(k))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&["columns", "rows"])
    }
}

/// The rows of a [`TextRows`] as a template sequence: each row (a list of its cells) is
/// made when the template reads it.
#[derive(Debug)]
struct RowsOf(std::sync::Arc<TextRows>);

impl minijinja::value::Object for RowsOf {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let index = key.as_usize()?;
        let row = self.0.row(index)?;
        Some(minijinja::Value::from(
            row.map(minijinja::Value::from).collect::<Vec<_>>(),
        ))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.0.len)
    }
}

/// Plans `sql` read-only, wrapped in `ORDER BY` every column, with string parameters bound
/// by name.
async fn ordered_frame(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<deltalake::datafusion::dataframe::DataFrame> {
    let err = |source| Error::Query {
        what: what.to_string(),
        source: Box::new(source),
    };
    let inner = sql.trim().trim_end_matches(';');
    let planned = ctx
        .sql_with_options(inner, read_only())
        .await
        .map_err(err)?;
    let n = planned.schema().fields().len();
    // NULLs last whatever `datafusion.sql_parser.default_null_ordering` says: the package
    // reports rely on it (`package::SectionRows`), and a result's order should not depend on
    // an environment variable.
    let order: Vec<String> = (1..=n).map(|i| format!("{i} ASC NULLS LAST")).collect();
    let columns: Vec<String> = planned
        .schema()
        .fields()
        .iter()
        .map(|f| compacted_column(f.name(), f.data_type()))
        .collect();
    let wrapped = format!(
        "SELECT {} FROM (\n{inner}\n) AS q ORDER BY {}",
        columns.join(", "),
        order.join(", ")
    );
    let df = ctx
        .sql_with_options(&wrapped, read_only())
        .await
        .map_err(err)?;
    if params.is_empty() {
        return Ok(df);
    }
    let values: Vec<(String, ScalarValue)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), ScalarValue::Utf8(Some(v.to_string()))))
        .collect();
    df.with_param_values(values).map_err(err)
}

/// One column of the ordering wrapper, by its quoted name. A string-view column (what the
/// lake's scans give) is copied into buffers of its own: after a join, each batch's views
/// point into the whole build side, and the sort's memory accounting counts those shared
/// buffers once per batch (gigabytes for a batch of a few megabytes; DataFusion issue
/// 12136), so the population of a large view failed with "Not enough memory to continue
/// external sort". The type and the values stay the same.
fn compacted_column(name: &str, data_type: &DataType) -> String {
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match data_type {
        DataType::Utf8View => {
            format!("arrow_cast(arrow_cast({quoted}, 'Utf8'), 'Utf8View') AS {quoted}")
        }
        _ => quoted,
    }
}

/// Runs `sql` with string parameters bound by name and returns its rows ordered by every
/// column. `what` names the query in errors.
pub async fn query(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<Table> {
    let (columns, stream) = query_stream(ctx, what, sql, params).await?;
    let batches = collect(what, stream).await?;
    let mut rows = Vec::new();
    for b in &batches {
        append_rows(&mut rows, b).map_err(|source| Error::Arrow {
            what: what.to_string(),
            source,
        })?;
    }
    Ok(Table { columns, rows })
}

/// Every batch of `stream`, a query's named `what` in errors.
pub(crate) async fn collect(
    what: &str,
    stream: deltalake::datafusion::physical_plan::SendableRecordBatchStream,
) -> Result<Vec<RecordBatch>> {
    use futures::TryStreamExt as _;
    stream.try_collect().await.map_err(|source| Error::Query {
        what: what.to_string(),
        source: Box::new(source),
    })
}

/// Runs `sql` like [`query`], but hands back its column names and a stream of its batches
/// (ordered by every column) instead of collecting them.
pub async fn query_stream(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<(
    Vec<String>,
    deltalake::datafusion::physical_plan::SendableRecordBatchStream,
)> {
    let df = ordered_frame(ctx, what, sql, params).await?;
    let columns = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let stream = df.execute_stream().await.map_err(|source| Error::Query {
        what: what.to_string(),
        source: Box::new(source),
    })?;
    Ok((columns, stream))
}

/// A batch's columns as text, as the cast to `Utf8` prints each type.
fn text_columns(
    b: &RecordBatch,
) -> Result<Vec<deltalake::arrow::array::ArrayRef>, deltalake::arrow::error::ArrowError> {
    b.columns()
        .iter()
        .map(|c| cast(c, &DataType::Utf8))
        .collect()
}

/// Appends a batch's rows as text cells (NULL is the empty string).
pub fn append_rows(
    rows: &mut Vec<Vec<String>>,
    b: &RecordBatch,
) -> Result<(), deltalake::arrow::error::ArrowError> {
    let cols = text_columns(b)?;
    for row in 0..b.num_rows() {
        rows.push(
            cols.iter()
                .map(|c| {
                    let c = c.as_string::<i32>();
                    if c.is_null(row) {
                        String::new()
                    } else {
                        c.value(row).to_string()
                    }
                })
                .collect(),
        );
    }
    Ok(())
}

/// Appends a batch's rows as CSV lines to `out`: the cells [`append_rows`] gives (NULL is
/// the empty string), guarded and quoted as [`super::csv::write_line`] writes them, without
/// a `String` per cell.
pub fn append_csv_lines(
    out: &mut Vec<u8>,
    b: &RecordBatch,
) -> Result<(), deltalake::arrow::error::ArrowError> {
    let cols = text_columns(b)?;
    let cols: Vec<_> = cols.iter().map(|c| c.as_string::<i32>()).collect();
    for row in 0..b.num_rows() {
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if !c.is_null(row) {
                // Writing to a Vec cannot fail.
                let _ = super::csv::write_cell(out, c.value(row));
            }
        }
        out.push(b'\n');
    }
    Ok(())
}

/// What [`stream_to_files`] wrote.
#[derive(Debug)]
pub struct Streamed {
    /// Rows written.
    pub rows: usize,
    /// The CSV file's digest.
    pub csv: super::digest::FileDigest,
    /// The Parquet file's digest.
    pub parquet: super::digest::FileDigest,
}

/// Streams a query's rows, ordered by every column, into a CSV file (cells guarded) and a
/// Parquet file (types kept) at once, batch by batch, hashing both as they are written.
/// Memory stays bounded by the sort (which spills when the session has a memory limit),
/// not by the result.
pub async fn stream_to_files(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
    params: &[(&str, &str)],
    csv_path: &std::path::Path,
    parquet_path: &std::path::Path,
) -> Result<Streamed> {
    use futures::TryStreamExt as _;
    let err = |source| Error::Query {
        what: what.to_string(),
        source: Box::new(source),
    };
    let arrow_err = |source| Error::Arrow {
        what: what.to_string(),
        source,
    };
    let df = ordered_frame(ctx, what, sql, params).await?;
    let mut stream = df.execute_stream().await.map_err(err)?;
    let schema = stream.schema();
    let mut csv = super::digest::HashingFile::create(csv_path)?;
    let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    super::csv::write_line(&mut csv, &header).map_err(super::io_err("write", csv_path))?;
    let props = deltalake::parquet::file::properties::WriterProperties::builder()
        .set_compression(deltalake::parquet::basic::Compression::SNAPPY)
        .set_created_by(format!("govlake {}", env!("CARGO_PKG_VERSION")))
        .build();
    let pq_file = super::digest::HashingFile::create(parquet_path)?;
    let mut parquet = deltalake::parquet::arrow::ArrowWriter::try_new(pq_file, schema, Some(props))
        .map_err(|e| arrow_err(e.into()))?;
    let mut rows = 0;
    let mut lines: Vec<u8> = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(err)? {
        rows += batch.num_rows();
        lines.clear();
        append_csv_lines(&mut lines, &batch).map_err(arrow_err)?;
        std::io::Write::write_all(&mut csv, &lines).map_err(super::io_err("write", csv_path))?;
        parquet.write(&batch).map_err(|e| arrow_err(e.into()))?;
    }
    // `into_inner` writes the footer and hands back the (hashing) file.
    let parquet = parquet
        .into_inner()
        .map_err(|e| arrow_err(e.into()))?
        .finish()?;
    Ok(Streamed {
        rows,
        csv: csv.finish()?,
        parquet,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringViewArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::datafusion::prelude::SessionConfig;
    use futures::TryStreamExt as _;

    use super::*;

    /// The CSV lines written straight from a batch are the bytes of its rows as text cells
    /// written line by line: NULLs empty, formulas neutralised, quotes doubled, numbers,
    /// booleans and times as the cast prints them.
    #[test]
    fn csv_lines_from_a_batch_match_the_rows_written_one_by_one() {
        use deltalake::arrow::array::{BooleanArray, StringArray, TimestampMicrosecondArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("view", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new(
                "at",
                DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, None),
                true,
            ),
        ]));
        let hostile = [
            Some("=HYPERLINK(\"http://x\",\"y\")"),
            Some("  +cmd|' /C calc'!A0"),
            None,
            Some("a,b\nc \"quoted\""),
            Some("\tx"),
            Some("ünïcode, @home"),
            Some(""),
        ];
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(hostile.to_vec())),
                Arc::new(StringViewArray::from(
                    hostile.iter().rev().copied().collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![
                    Some(-5),
                    None,
                    Some(0),
                    Some(7),
                    Some(i64::MAX),
                    Some(1),
                    Some(2),
                ])),
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                    None,
                    Some(false),
                    Some(true),
                ])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_790_000_000_000_000),
                    None,
                    Some(0),
                    Some(1),
                    Some(-1),
                    None,
                    Some(1_790_000_000_123_456),
                ])),
            ],
        )
        .expect("batch");
        let mut rows = Vec::new();
        append_rows(&mut rows, &batch).expect("rows");
        let mut one_by_one = Vec::new();
        for r in &rows {
            super::super::csv::write_line(&mut one_by_one, r).expect("line");
        }
        let mut direct = Vec::new();
        append_csv_lines(&mut direct, &batch).expect("lines");
        let direct = String::from_utf8(direct).expect("utf-8");
        assert_eq!(direct, String::from_utf8(one_by_one).expect("utf-8"));
        assert_eq!(rows.len(), 7);
        let lines: Vec<&str> = direct.lines().collect();
        assert!(
            lines[0].starts_with("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",,'-5,true,2026-"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[2], ",'\tx,0,,1970-01-01T00:00:00");
    }

    /// After a join, every output batch's string views point into the whole build side
    /// (here 16 MB of text, where the result is 8 MB); the ordering sort must not count those shared buffers once
    /// per batch. Without copying the columns first, this query asked the pool for ~32 MiB a
    /// batch and failed ("Not enough memory to continue external sort") well under the
    /// limit: the population of a 1M-event approval_trail asked for 3.6 GB at once.
    #[tokio::test]
    async fn a_joined_string_column_is_sorted_within_a_small_memory_limit() {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(48 << 20, 1.0)
            .build_arc()
            .expect("runtime");
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_target_partitions(2),
            runtime,
        );
        let names = 40_000;
        let text: Vec<String> = (0..names)
            .map(|i| format!("{i:08}-{}", "x".repeat(400)))
            .collect();
        let names_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8View, false),
        ]));
        let names_batch = RecordBatch::try_new(
            names_schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..names)),
                Arc::new(StringViewArray::from_iter_values(&text)),
            ],
        )
        .expect("batch");
        ctx.register_batch("names", names_batch).expect("names");
        let rows = 20_000;
        let refs_schema = Arc::new(Schema::new(vec![Field::new(
            "name_id",
            DataType::Int64,
            false,
        )]));
        let refs_batch = RecordBatch::try_new(
            refs_schema,
            vec![Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i * 7919) % names),
            ))],
        )
        .expect("batch");
        ctx.register_batch("refs", refs_batch).expect("refs");

        let (_, stream) = query_stream(
            &ctx,
            "joined",
            "SELECT n.text, r.name_id FROM refs r JOIN names n ON n.id = r.name_id",
            &[],
        )
        .await
        .expect("planned");
        let batches: Vec<RecordBatch> = stream.try_collect().await.expect("sorted in the limit");
        let texts: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_string_view();
                (0..b.num_rows())
                    .map(|i| column.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(texts.len(), rows as usize);
        assert!(texts.windows(2).all(|w| w[0] <= w[1]), "ordered");
        assert_eq!(
            batches[0].schema().field(0).data_type(),
            &DataType::Utf8View
        );
    }
}
