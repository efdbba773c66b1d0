//! Typed rows: the small value model (`Cell`) that ingest produces and the lake stores.
//!
//! Ingest turns lenient Graph JSON into rows of cells; this module turns those rows into Arrow
//! record batches with an explicit schema (no inference) and back, so the lake can diff and
//! rewrite versioned tables without caring which entity they hold.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, StringArray,
    StringBuilder, StringViewArray, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;

use super::error::{Error, Result};

/// The column types govlake stores. Timestamps are UTC microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text (also JSON text of nested values).
    Str,
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
            ColumnType::Str => DataType::Utf8,
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

    /// Builds one record batch from rows laid out in column order.
    pub fn to_batch(&self, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (i, col) in self.columns.iter().enumerate() {
            let array: ArrayRef = match col.ty {
                ColumnType::Str => {
                    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
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

    /// Reads rows back from a batch whose columns are named like this schema's.
    /// Columns the batch lacks come back as NULL (an older table version).
    pub fn rows_from_batch(&self, batch: &RecordBatch, out: &mut Vec<Vec<Cell>>) -> Result<()> {
        let schema = batch.schema();
        let cols: Vec<Option<&ArrayRef>> = self
            .columns
            .iter()
            .map(|c| schema.index_of(&c.name).ok().map(|i| batch.column(i)))
            .collect();
        for row in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(self.columns.len());
            for (col, array) in self.columns.iter().zip(&cols) {
                cells.push(match array {
                    Some(a) => read_cell(a.as_ref(), row, col.ty),
                    None => Cell::Null,
                });
            }
            out.push(cells);
        }
        Ok(())
    }
}

fn read_cell(array: &dyn Array, row: usize, ty: ColumnType) -> Cell {
    if array.is_null(row) {
        return Cell::Null;
    }
    let any = array.as_any();
    match ty {
        ColumnType::Str => {
            if let Some(a) = any.downcast_ref::<StringArray>() {
                Cell::Str(a.value(row).to_string())
            } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
                Cell::Str(a.value(row).to_string())
            } else if let Some(a) =
                any.downcast_ref::<deltalake::arrow::array::LargeStringArray>()
            {
                Cell::Str(a.value(row).to_string())
            } else if let Some(a) = any.downcast_ref::<deltalake::arrow::array::DictionaryArray<
                deltalake::arrow::datatypes::UInt16Type,
            >>() {
                let values = a.values();
                let key = a.keys().value(row) as usize;
                read_cell(values.as_ref(), key, ty)
            } else {
                Cell::Null
            }
        }
        ColumnType::Bool => any
            .downcast_ref::<BooleanArray>()
            .map_or(Cell::Null, |a| Cell::Bool(a.value(row))),
        ColumnType::Int => any
            .downcast_ref::<Int64Array>()
            .map_or(Cell::Null, |a| Cell::Int(a.value(row))),
        ColumnType::Timestamp => any
            .downcast_ref::<TimestampMicrosecondArray>()
            .map_or(Cell::Null, |a| Cell::Ts(a.value(row))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_through_arrow() {
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
        let mut back = Vec::new();
        schema.rows_from_batch(&batch, &mut back).expect("rows");
        assert_eq!(back, rows);
    }
}
