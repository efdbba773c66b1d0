//! Appends that stay open across chunks: an ingest hands an append-only table its rows one
//! chunk at a time, and they go into Parquet files that stay open (one per partition) until
//! the ingest commits them, together, every so many rows ([`OpenAppend::commit`]).
//!
//! A file then holds a commit's share of a partition instead of a chunk's. Committing each
//! chunk of 25,000 audit events left ~2,500-row files (a chunk spreads over every month's
//! partition): 4,128 of them in `audit_events` at 10M events, which the end of the run spent
//! ~40 s compacting, and each of 413 commits made delta-rs rebuild the table's list of files,
//! a cost that grew with commits × files. Rows written but not committed are invisible to
//! readers and lost to a crash, which the ingest's dedupe makes harmless: the rerun stores
//! them (RELIABILITY A.1). Memory stays bounded: the writer holds one row group per open
//! file ([`HELD_ROW_GROUP_ROWS`]), and completed row groups stream to the store.

use std::collections::HashMap;

use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::operations::write::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};

use super::error::Result;
use super::row::{Cell, HELD_ROW_GROUP_ROWS, TableSchema};
use super::table::{Lake, delta_err};

/// Rows written to one table and not yet committed.
pub struct OpenAppend {
    schema: TableSchema,
    writer: DeltaWriter,
    rows: u64,
}

impl std::fmt::Debug for OpenAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAppend")
            .field("table", &self.schema.name)
            .field("rows", &self.rows)
            .finish()
    }
}

impl OpenAppend {
    /// The table written to.
    pub fn table(&self) -> &str {
        &self.schema.name
    }

    /// Rows written and not committed.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes rows into the open files (the table's partitions each get their own).
    pub async fn write(&mut self, rows: &[Vec<Cell>]) -> Result<()> {
        // Batches of a few thousand rows, as `Lake::append` builds them.
        for chunk in rows.chunks(4096) {
            let batch = self.schema.to_batch(chunk)?;
            self.writer
                .write(&batch)
                .await
                .map_err(delta_err(&self.schema.name, "writing to it"))?;
        }
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Closes the files and commits them in one commit carrying `metadata`; returns the
    /// table's new version (its current one when nothing was written).
    pub async fn commit(
        self,
        lake: &Lake,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        let name = self.schema.name.clone();
        let adds = self
            .writer
            .close()
            .await
            .map_err(delta_err(&name, "writing to it"))?;
        lake.commit_files(&self.schema, adds, metadata).await
    }
}

impl Lake {
    /// Starts an append to `schema`'s table (creating the table if needed), written with the
    /// settings of compacted files ([`TableSchema::large_file_properties`]).
    pub async fn open_append(&self, schema: &TableSchema) -> Result<OpenAppend> {
        let name = schema.name.as_str();
        let table = match self.writer_handle(name) {
            Some(t) => t,
            None => self.ensure(schema).await?,
        };
        let stats = WriterStatsConfig::from_config(
            table
                .snapshot()
                .map_err(delta_err(name, "reading its settings"))?
                .snapshot()
                .table_configuration(),
        );
        let properties = schema
            .large_file_properties()
            .into_builder()
            .set_max_row_group_row_count(Some(HELD_ROW_GROUP_ROWS))
            .build();
        let config = WriterConfig::new(
            schema.arrow(),
            schema.partition_by.clone(),
            Some(properties),
            // One file per partition until the commit.
            None,
            None,
            stats.num_indexed_cols,
            stats.stats_columns,
        );
        let store = table.log_store().object_store(Some(uuid::Uuid::new_v4()));
        Ok(OpenAppend {
            schema: schema.clone(),
            writer: DeltaWriter::new(store, config),
            rows: 0,
        })
    }

    /// Commits data files already in the table's folder (`adds`) as one append, with the
    /// checks and the settling of [`Lake::append`]'s commits.
    async fn commit_files(
        &self,
        schema: &TableSchema,
        adds: Vec<deltalake::kernel::Add>,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        let name = schema.name.as_str();
        let table = match self.writer_handle(name) {
            Some(t) => t,
            None => self.ensure(schema).await?,
        };
        if adds.is_empty() {
            return Ok(table.version().map_or(0, |v| v as i64));
        }
        self.check_unchanged(name, &table)?;
        let before = table.version().map(|v| v as i64);
        let token = uuid::Uuid::new_v4().to_string();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: (!schema.partition_by.is_empty()).then(|| schema.partition_by.clone()),
            predicate: None,
        };
        let log_store = table.log_store();
        let outcome = match table.snapshot() {
            Ok(snapshot) => CommitBuilder::from(Self::commit_properties_for(metadata, &token))
                .with_actions(adds.into_iter().map(Action::Add).collect())
                .build(Some(snapshot), log_store, operation)
                .await
                .map(|commit| {
                    let mut committed = table.clone();
                    committed.state = Some(commit.snapshot);
                    committed
                }),
            Err(e) => Err(e),
        };
        self.settle_commit(name, before, &token, outcome, "writing to it")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::LakeLocation;
    use crate::lake::bookkeeping::{RAW, raw_schema};

    fn raw_row(entity: &str, id: &str) -> Vec<Cell> {
        vec![
            Cell::Str(entity.into()),
            Cell::Str(id.into()),
            Cell::Str(format!("hash-{id}")),
            Cell::Str("test".into()),
            Cell::Str("run".into()),
            Cell::Ts(0),
            Cell::Str(format!("{{\"id\":\"{id}\"}}")),
        ]
    }

    async fn ids(lake: &Lake) -> Vec<String> {
        let mut ids = vec![];
        lake.scan_strings(RAW, &["id"], |v| ids.push(v[0].unwrap().to_string()))
            .await
            .unwrap();
        ids.sort();
        ids
    }

    /// Rows written over several calls are invisible until the commit, which lands them
    /// in one version with one file per partition.
    #[tokio::test]
    async fn written_rows_land_at_the_commit_in_one_file_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let location =
            LakeLocation::resolve(&dir.path().to_string_lossy(), Default::default()).unwrap();
        let lake = Lake::new(location).guarded();
        let schema = raw_schema();
        let mut append = lake.open_append(&schema).await.unwrap();
        append
            .write(&[raw_row("a", "1"), raw_row("b", "2"), raw_row("a", "3")])
            .await
            .unwrap();
        append
            .write(&[raw_row("b", "4"), raw_row("a", "5")])
            .await
            .unwrap();
        assert_eq!(append.rows(), 5);
        assert!(ids(&lake).await.is_empty(), "visible before the commit");
        let created = lake.version(RAW).await.unwrap().unwrap();

        let version = append.commit(&lake, &HashMap::new()).await.unwrap();
        assert_eq!(version, created + 1);
        assert_eq!(ids(&lake).await, ["1", "2", "3", "4", "5"]);
        let table = lake.open(RAW).await.unwrap();
        let files: Vec<String> = table
            .get_file_uris()
            .unwrap()
            .map(|uri| uri.split("/_raw/").nth(1).unwrap().to_string())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(
            files.iter().any(|f| f.starts_with("entity=a/")),
            "{files:?}"
        );
        assert!(
            files.iter().any(|f| f.starts_with("entity=b/")),
            "{files:?}"
        );
    }
}
