//! Query results written to Parquet on every core, while the query still runs.
//!
//! `govlake sql -o parquet` encoded its result with parquet's [`ArrowWriter`] on the thread
//! that also drives the query: at 10M audit events encoding `assignment_holdings`' 2.3M
//! rows took ~1.8 s of one core, after the query's last single-threaded merge, while the
//! other core idled. [`ParallelParquetWriter`] writes the same file (byte for byte: the
//! same row groups, pages and footer as [`ArrowWriter`] with the same properties) but
//! encodes each full row group on a background thread, its columns spread over the
//! machine's cores, while the caller goes on pulling the next row group's batches from the
//! query. At most one row group is encoded at a time and one buffered, so memory stays at
//! about two row groups of the result (unencoded: more than [`ArrowWriter`]'s one, which
//! is why a pack, whose peak is near its 2 GiB goal and whose time is well within its own,
//! still writes with [`ArrowWriter`]).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Field, SchemaRef};
use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves,
};
use deltalake::parquet::errors::{ParquetError, Result};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::file::writer::SerializedFileWriter;

/// Encoding of one row group: its column chunks, in schema order.
type Encoding = JoinHandle<Result<Vec<ArrowColumnChunk>>>;

/// Writes record batches to a Parquet file, encoding row groups in the background.
pub struct ParallelParquetWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    row_group_rows: usize,
    buffered: Vec<RecordBatch>,
    buffered_rows: usize,
    row_groups: usize,
    encoding: Option<Encoding>,
    /// A call failed (a row group may be lost with it): the file would lack rows, so
    /// nothing more is written.
    failed: bool,
}

impl<W: Write + Send> ParallelParquetWriter<W> {
    /// A writer of `schema`'s batches to `out` with `props`. Row groups end at the row limit
    /// only (no limit: one row group, as [`ArrowWriter`] writes); a row-group byte limit and
    /// content-defined chunking, which [`ArrowWriter`] would apply, are refused.
    pub fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        if props.max_row_group_bytes().is_some() || props.content_defined_chunking().is_some() {
            return Err(ParquetError::General(
                "the parallel writer supports neither a row-group byte limit nor content-defined chunking".into(),
            ));
        }
        let row_group_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        // Built as ArrowWriter builds it (the Arrow schema in the footer's metadata), then
        // taken apart for the column writers.
        let (file, factory) =
            ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        Ok(Self {
            file,
            factory,
            schema,
            row_group_rows,
            buffered: vec![],
            buffered_rows: 0,
            row_groups: 0,
            encoding: None,
            failed: false,
        })
    }

    /// Buffers `batch`; each row group it fills is handed to the background encoder. After
    /// an error every later call fails too.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_not_failed()?;
        let result = self.buffer(batch);
        self.failed = result.is_err();
        result
    }

    fn check_not_failed(&self) -> Result<()> {
        if self.failed {
            return Err(ParquetError::General(
                "an earlier row group failed to encode or write: the file is incomplete".into(),
            ));
        }
        Ok(())
    }

    fn buffer(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.row_group_rows - self.buffered_rows).min(batch.num_rows() - offset);
            self.buffered.push(batch.slice(offset, take));
            self.buffered_rows += take;
            offset += take;
            if self.buffered_rows == self.row_group_rows {
                self.start_row_group()?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered and the footer, and hands back the output.
    pub fn into_inner(mut self) -> Result<W> {
        self.check_not_failed()?;
        self.start_row_group()?;
        self.finish_encoding()?;
        self.file.into_inner()
    }

    /// Writes what is buffered and the footer.
    pub fn close(self) -> Result<()> {
        self.into_inner().map(drop)
    }

    /// Hands the buffered rows to a new background encoding, once the one before is
    /// appended to the file.
    fn start_row_group(&mut self) -> Result<()> {
        if self.buffered_rows == 0 {
            return Ok(());
        }
        self.finish_encoding()?;
        let writers = self.factory.create_column_writers(self.row_groups)?;
        self.row_groups += 1;
        let batches = std::mem::take(&mut self.buffered);
        self.buffered_rows = 0;
        let schema = self.schema.clone();
        let handle = std::thread::Builder::new()
            .name("parquet-encode".into())
            .spawn(move || encode_row_group(&schema, &batches, writers))
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        self.encoding = Some(handle);
        Ok(())
    }

    /// Waits for the row group being encoded and appends it to the file.
    fn finish_encoding(&mut self) -> Result<()> {
        let Some(handle) = self.encoding.take() else {
            return Ok(());
        };
        let chunks = handle
            .join()
            .map_err(|_| ParquetError::General("the Parquet encoder thread panicked".into()))??;
        let mut row_group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }
}

/// Leaf columns (Parquet columns) an Arrow field is stored in.
fn leaf_count(field: &Field) -> usize {
    match field.data_type() {
        DataType::Struct(children) => children.iter().map(|c| leaf_count(c)).sum(),
        DataType::List(child)
        | DataType::LargeList(child)
        | DataType::ListView(child)
        | DataType::LargeListView(child)
        | DataType::FixedSizeList(child, _)
        | DataType::Map(child, _) => leaf_count(child),
        DataType::RunEndEncoded(_, values) => leaf_count(values),
        DataType::Dictionary(_, value) => leaf_count(&Field::new("", (**value).clone(), true)),
        _ => 1,
    }
}

/// Encodes one row group's batches, one field at a time on each of up to as many threads
/// as the machine has cores. Returns the column chunks in schema order.
fn encode_row_group(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    writers: Vec<ArrowColumnWriter>,
) -> Result<Vec<ArrowColumnChunk>> {
    // The writers of each field (one per leaf), in schema order.
    let mut writers = writers.into_iter();
    let mut per_field: Vec<std::sync::Mutex<Option<Vec<ArrowColumnWriter>>>> = vec![];
    for field in schema.fields() {
        let field_writers: Vec<_> = writers.by_ref().take(leaf_count(field)).collect();
        per_field.push(std::sync::Mutex::new(Some(field_writers)));
    }
    if writers.next().is_some() {
        return Err(ParquetError::General(
            "the Arrow schema has fewer leaves than the Parquet schema".into(),
        ));
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(per_field.len())
        .max(1);
    let next_field = AtomicUsize::new(0);
    let chunks: Vec<std::sync::Mutex<Vec<ArrowColumnChunk>>> =
        per_field.iter().map(|_| Default::default()).collect();
    let encode_fields = || -> Result<()> {
        loop {
            let i = next_field.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = per_field.get(i) else {
                return Ok(());
            };
            let mut field_writers = slot
                .lock()
                .expect("each field is taken once")
                .take()
                .expect("each field is taken once");
            let field = schema.field(i);
            for batch in batches {
                let leaves = compute_leaves(field, batch.column(i))?;
                if leaves.len() != field_writers.len() {
                    return Err(ParquetError::General(format!(
                        "column `{}` has {} leaves where the Parquet schema has {}",
                        field.name(),
                        leaves.len(),
                        field_writers.len()
                    )));
                }
                for (writer, leaf) in field_writers.iter_mut().zip(&leaves) {
                    writer.write(leaf)?;
                }
            }
            let closed = field_writers
                .into_iter()
                .map(ArrowColumnWriter::close)
                .collect::<Result<Vec<_>>>()?;
            *chunks[i].lock().expect("each field is taken once") = closed;
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(encode_fields)).collect();
        let mut outcome = encode_fields();
        for helper in helpers {
            let joined = helper
                .join()
                .map_err(|_| ParquetError::General("a Parquet encoder thread panicked".into()))
                .and_then(|r| r);
            outcome = outcome.and(joined);
        }
        outcome
    })?;
    Ok(chunks
        .into_iter()
        .flat_map(|c| c.into_inner().expect("encoders are done"))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{
        ArrayRef, Int64Array, ListArray, StringArray, StringViewArray, StructArray,
        TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{Int32Type, Schema, TimeUnit};
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use deltalake::parquet::basic::Compression;

    use super::*;

    /// Batches of every column shape govlake's results have (text, text views, integers,
    /// times, NULLs) plus nested ones, in uneven sizes.
    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let item = Arc::new(Field::new("item", DataType::Int32, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("list", DataType::List(item), true),
            Field::new(
                "pair",
                DataType::Struct(
                    vec![
                        Field::new("a", DataType::Utf8, true),
                        Field::new("b", DataType::Int64, true),
                    ]
                    .into(),
                ),
                true,
            ),
        ]));
        let mut out = vec![];
        let mut start = 0i64;
        for size in [1usize, 700, 3, 2_500, 0, 1_111, 4_096] {
            let ids: Vec<i64> = (start..start + size as i64).collect();
            start += size as i64;
            let text = |i: &i64| format!("{:08x}-{}", i * 2_654_435_761 % 1_000_003, i % 7);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(ids.iter().map(text))),
                Arc::new(StringViewArray::from_iter(
                    ids.iter().map(|i| (i % 5 != 0).then(|| text(i).repeat(3))),
                )),
                Arc::new(Int64Array::from_iter(
                    ids.iter().map(|i| (i % 3 != 0).then_some(i * 17)),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(
                        ids.iter()
                            .map(|i| (i % 11 != 0).then_some(1_700_000_000_000_000 + i)),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
                    ids.iter().map(|i| {
                        (i % 4 != 0).then(|| (0..(i % 3) as i32).map(Some).collect::<Vec<_>>())
                    }),
                )),
                Arc::new(StructArray::from(vec![
                    (
                        Arc::new(Field::new("a", DataType::Utf8, true)),
                        Arc::new(StringArray::from_iter(
                            ids.iter().map(|i| (i % 2 == 0).then(|| text(i))),
                        )) as ArrayRef,
                    ),
                    (
                        Arc::new(Field::new("b", DataType::Int64, true)),
                        Arc::new(Int64Array::from_iter_values(ids.iter().copied())) as ArrayRef,
                    ),
                ])),
            ];
            out.push(RecordBatch::try_new(schema.clone(), columns).unwrap());
        }
        (schema, out)
    }

    fn props(row_group_rows: Option<usize>) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(row_group_rows)
            .build()
    }

    /// The parallel writer's file is the serial writer's, byte for byte, whether the row
    /// groups end inside batches, at their ends, or never (one row group).
    #[test]
    fn writes_the_bytes_arrow_writer_writes() {
        let (schema, batches) = batches();
        for rows in [Some(1_000), Some(701), Some(1), None] {
            let mut serial =
                ArrowWriter::try_new(vec![], schema.clone(), Some(props(rows))).unwrap();
            let mut parallel =
                ParallelParquetWriter::try_new(vec![], schema.clone(), props(rows)).unwrap();
            for b in &batches {
                serial.write(b).unwrap();
                parallel.write(b).unwrap();
            }
            let serial = serial.into_inner().unwrap();
            let parallel = parallel.into_inner().unwrap();
            assert!(
                serial == parallel,
                "row groups of {rows:?} rows: the files differ"
            );

            // And it reads back as the rows written.
            let read: Vec<RecordBatch> =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(parallel))
                    .unwrap()
                    .build()
                    .unwrap()
                    .collect::<std::result::Result<_, _>>()
                    .unwrap();
            let read = deltalake::arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
            let written = deltalake::arrow::compute::concat_batches(&schema, &batches).unwrap();
            assert_eq!(read.num_rows(), 8_411);
            for (i, field) in schema.fields().iter().enumerate() {
                let back =
                    deltalake::arrow::compute::cast(read.column(i), field.data_type()).unwrap();
                assert_eq!(&back, written.column(i), "column {}", field.name());
            }
        }
    }

    /// An empty result is a valid file with the schema and no rows.
    #[test]
    fn an_empty_result_is_a_file_with_no_rows() {
        let (schema, _) = batches();
        let out = ParallelParquetWriter::try_new(vec![], schema.clone(), props(None))
            .unwrap()
            .into_inner()
            .unwrap();
        let serial = ArrowWriter::try_new(vec![], schema, Some(props(None)))
            .unwrap()
            .into_inner()
            .unwrap();
        assert!(out == serial);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }
}
