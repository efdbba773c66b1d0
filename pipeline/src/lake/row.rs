//! Typed rows: the small value model (`Cell`) that ingest produces and the lake stores.
//!
//! Ingest turns lenient Graph JSON into rows of cells; this module turns those rows into Arrow
//! record batches with an explicit schema (no inference).

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;

use super::error::{Error, Result};

/// Rows of one row group in a file written while other work goes on (an ingest's open
/// appends, a current table rewritten at the end of an ingest): the Parquet writer holds one
/// row group of each open file in memory (a quarter of the ~13 MiB of compressed raw JSON it
/// held at 65,536 rows, far less for typed tables). An ingest keeps ~25 files open (a month partition of `audit_events` each, the
/// child tables, a partition of `_raw` per entity); at 65,536 rows their writers held
/// 276 MiB of a 1M ingest's 625 MiB heap peak (heaptrack), and a rewrite at the default
/// row group size held up to a million requests' rows.
pub const HELD_ROW_GROUP_ROWS: usize = 16_384;

/// The column by which an audit event's child rows name their event, written with a Bloom
/// filter in the [`EVENT_LOOKUP_TABLES`] ([`TableSchema::writer_properties`]).
const EVENT_LINK_COLUMN: &str = "audit_event_id";

/// The child tables of audit events that views look up by a few events' ids.
const EVENT_LOOKUP_TABLES: [&str; 2] = [
    "audit_event_target_resources",
    "audit_event_additional_details",
];

/// False-positive rate of the Bloom filters: at 1 % a filter costs ~10 bits per distinct
/// value (~8 KB for a row group of 16,384 target rows, ~5,500 events).
const BLOOM_FILTER_FPP: f64 = 0.01;

/// The column types govlake stores. Timestamps are UTC microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Str,
    /// JSON text (a nested value, or a whole record): stored as UTF-8 like `Str`, but written
    /// without a dictionary or min/max statistics, as its values are long and nearly all
    /// different and nothing prunes on them. Building either costs the writer a hash and a
    /// comparison of every value, kilobytes each.
    Json,
    /// Boolean.
    Bool,
    /// 64-bit integer.
    Int,
    /// UTC timestamp, microsecond precision.
    Timestamp,
}

impl ColumnType {
    fn arrow(self) -> DataType {
        match self {
            ColumnType::Str | ColumnType::Json => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int => DataType::Int64,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One value of a typed row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Text.
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// UTC microseconds since the epoch.
    Ts(i64),
}

impl Cell {
    /// The text of a `Str` cell, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Feeds the cell into a hasher in a stable, type-tagged form.
    pub fn hash_into(&self, h: &mut impl sha2::Digest) {
        match self {
            Cell::Null => h.update([0u8]),
            Cell::Str(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Cell::Bool(b) => h.update([2u8, *b as u8]),
            Cell::Int(i) => {
                h.update([3u8]);
                h.update(i.to_le_bytes());
            }
            Cell::Ts(t) => {
                h.update([4u8]);
                h.update(t.to_le_bytes());
            }
        }
    }
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// snake_case column name.
    pub name: String,
    /// Stored type.
    pub ty: ColumnType,
}

/// The explicit schema of a lake table.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Table name (also its folder in the lake).
    pub name: String,
    /// Columns in storage order.
    pub columns: Vec<Column>,
    /// Partition columns (must be `Str` columns of `columns`).
    pub partition_by: Vec<String>,
}

impl TableSchema {
    /// The Arrow schema; every column is nullable, as Graph promises little.
    pub fn arrow(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// Position of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// How the table's Parquet files are written: delta-rs's defaults (Snappy), with JSON
    /// columns left plain and without statistics (see [`ColumnType::Json`]).
    pub fn writer_properties(&self) -> WriterProperties {
        let mut props = WriterProperties::builder()
            .set_created_by(format!("delta-rs version {}", deltalake::crate_version()))
            .set_compression(Compression::SNAPPY);
        for c in self.columns.iter().filter(|c| c.ty == ColumnType::Json) {
            let path = ColumnPath::from(c.name.as_str());
            props = props
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_statistics_enabled(path, EnabledStatistics::None);
        }
        // Hashes (`row_hash`, `record_hash`, `reject_hash`) never repeat: a dictionary of
        // them is as big as the column and costs the writer a lookup per value (a file of
        // 25,000 rows never reaches the size at which the writer falls back to plain).
        // Nor do the rows' ids outside history tables (whose ids repeat once per version):
        // at 1M audit events interning them was 4 % of the ingest's CPU samples, and without
        // their dictionaries the lake is 2.5 % smaller (the time saved, a few percent, was
        // within the machine's drift); reading `assignments_history` without one made
        // `assignment_holdings` ~5 % slower.
        let unique_id = |name: &str| name == "id" && !self.name.ends_with("_history");
        for c in self
            .columns
            .iter()
            .filter(|c| c.name.ends_with("_hash") || unique_id(&c.name))
        {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), false);
        }
        // A Bloom filter on the link of an audit event's targets and details to their event:
        // a view that starts from a few events (`Create incompatible access package`, a
        // control's changes) looks their targets and details up by `audit_event_id`, and the
        // hash join's dynamic filter (`audit_event_id IN (…)`) then skips every row group
        // whose filter rules the ids out, where the ids' min/max (random GUIDs) rule out
        // nothing. At 10M audit events `sod_violations` went 2.50 → 0.75 s (it decoded all
        // 30.8M target rows to find two) and `control_changes` 3.29 → 1.30 s. Sized for the
        // row group's rows (resolved when the properties are built, so the open appends'
        // smaller row groups get smaller filters) and folded to BLOOM_FILTER_FPP once the
        // row group is written. Not on `audit_event_requests`' link: no view looks requests'
        // links up by a few events, and hashing each value costs the ingest.
        if EVENT_LOOKUP_TABLES.contains(&self.name.as_str()) {
            props = props
                .set_column_bloom_filter_fpp(ColumnPath::from(EVENT_LINK_COLUMN), BLOOM_FILTER_FPP);
        }
        props.build()
    }

    /// How files meant to stay are written (compaction's output, an ingest's open appends):
    /// [`TableSchema::writer_properties`] at Zstandard level 1. Level 4, delta-rs's default
    /// for OPTIMIZE, with a dictionary and statistics on every column, took 15.3–16.2 s to
    /// compact 2.5M audit events' four tables (291 MB) where these settings took 10.7–10.9 s
    /// (264 MB); Snappy took 9.1–9.6 s but wrote 600 MB.
    pub fn large_file_properties(&self) -> WriterProperties {
        self.writer_properties()
            .into_builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("a valid level"),
            ))
            .build()
    }

    /// Builds one record batch from rows laid out in column order.
    pub fn to_batch(&self, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (i, col) in self.columns.iter().enumerate() {
            let array: ArrayRef = match col.ty {
                ColumnType::Str | ColumnType::Json => {
                    // Sized exactly: raw JSON columns (kilobytes a row) would otherwise grow
                    // the buffer by doubling, copying it each time.
                    let bytes = rows
                        .iter()
                        .map(|r| match &r[i] {
                            Cell::Str(s) => s.len(),
                            _ => 0,
                        })
                        .sum();
                    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
                    for r in rows {
                        match &r[i] {
                            Cell::Str(s) => b.append_value(s),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                ColumnType::Bool => {
                    let mut b = BooleanBuilder::with_capacity(rows.len());
                    for r in rows {
                        match &r[i] {
                            Cell::Bool(v) => b.append_value(*v),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                ColumnType::Int => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    for r in rows {
                        match &r[i] {
                            Cell::Int(v) => b.append_value(*v),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                ColumnType::Timestamp => {
                    let mut b =
                        TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                    for r in rows {
                        match &r[i] {
                            Cell::Ts(v) => b.append_value(*v),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
            };
            arrays.push(array);
        }
        RecordBatch::try_new(self.arrow(), arrays).map_err(|source| Error::Arrow {
            table: self.name.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_settings_of_json_columns_and_unique_ids() {
        let schema = TableSchema {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: ColumnType::Str,
                },
                Column {
                    name: "json".into(),
                    ty: ColumnType::Json,
                },
            ],
            partition_by: vec![],
        };
        let props = schema.writer_properties();
        let (id, json) = (ColumnPath::from("id"), ColumnPath::from("json"));
        assert!(!props.dictionary_enabled(&id));
        assert!(!props.dictionary_enabled(&json));
        assert_eq!(props.statistics_enabled(&id), EnabledStatistics::Page);
        assert_eq!(props.statistics_enabled(&json), EnabledStatistics::None);
        assert_eq!(props.compression(&json), Compression::SNAPPY);
        assert_eq!(props.compression(&id), Compression::SNAPPY);
        // Stored as text all the same.
        assert_eq!(schema.arrow().field(1).data_type(), &DataType::Utf8);
        // A history table's ids repeat, once per version: they keep their dictionary.
        let history = TableSchema {
            name: "t_history".into(),
            ..schema
        };
        assert!(history.writer_properties().dictionary_enabled(&id));
    }

    #[test]
    fn an_audit_event_childs_row_groups_rule_out_other_events_by_bloom_filter() {
        use deltalake::parquet::arrow::ArrowWriter;
        use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = TableSchema {
            name: "audit_event_target_resources".into(),
            columns: vec![
                Column {
                    name: EVENT_LINK_COLUMN.into(),
                    ty: ColumnType::Str,
                },
                Column {
                    name: "target_id".into(),
                    ty: ColumnType::Str,
                },
            ],
            partition_by: vec![],
        };
        // Row groups of 100 rows: each row group has a filter of its own events.
        let props = schema
            .writer_properties()
            .into_builder()
            .set_max_row_group_row_count(Some(100));
        let rows: Vec<Vec<Cell>> = (0..300)
            .map(|n| {
                vec![
                    Cell::Str(format!("event-{}", n / 2)),
                    Cell::Str(format!("t{n}")),
                ]
            })
            .collect();
        let mut file = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut file, schema.arrow(), Some(props.build())).unwrap();
        writer.write(&schema.to_batch(&rows).unwrap()).unwrap();
        writer.close().unwrap();
        let options = deltalake::parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_reader_properties(
                deltalake::parquet::file::properties::ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build();
        let reader =
            SerializedFileReader::new_with_options(bytes::Bytes::from(file), options).unwrap();
        assert_eq!(reader.num_row_groups(), 3);
        for group in 0..3 {
            let row_group = reader.get_row_group(group).unwrap();
            let filter = row_group
                .get_column_bloom_filter(0)
                .expect("audit_event_id has a Bloom filter");
            let (first, last) = (group * 50, group * 50 + 49);
            assert!((first..=last).all(|e| filter.check(&format!("event-{e}").as_str())));
            // The other row groups' 100 events: at 1 % a false positive or two at most.
            let others = (0..150)
                .filter(|e| !(first..=last).contains(e))
                .filter(|e| filter.check(&format!("event-{e}").as_str()))
                .count();
            assert!(
                others <= 5,
                "row group {group}: {others} of 100 other events pass"
            );
            assert!(row_group.get_column_bloom_filter(1).is_none());
        }
        // The requests' links are not looked up by a few events: no filter to pay for.
        let requests = TableSchema {
            name: "audit_event_requests".into(),
            ..schema
        };
        let link = ColumnPath::from(EVENT_LINK_COLUMN);
        assert!(
            requests
                .writer_properties()
                .bloom_filter_properties(&link)
                .is_none()
        );
    }

    #[test]
    fn rows_become_typed_arrow_columns() {
        let schema = TableSchema {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "a".into(),
                    ty: ColumnType::Str,
                },
                Column {
                    name: "b".into(),
                    ty: ColumnType::Bool,
                },
                Column {
                    name: "c".into(),
                    ty: ColumnType::Int,
                },
                Column {
                    name: "d".into(),
                    ty: ColumnType::Timestamp,
                },
            ],
            partition_by: vec![],
        };
        let rows = vec![
            vec![
                Cell::Str("x".into()),
                Cell::Bool(true),
                Cell::Int(7),
                Cell::Ts(1_000),
            ],
            vec![Cell::Null, Cell::Null, Cell::Null, Cell::Null],
        ];
        let batch = schema.to_batch(&rows).expect("batch");
        let text = deltalake::arrow::util::pretty::pretty_format_batches(&[batch])
            .expect("format")
            .to_string();
        assert!(
            text.contains("| x | true | 7 | 1970-01-01T00:00:00.001Z |"),
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("| ")).count(),
            3,
            "header and two rows: {text}"
        );
    }
}
