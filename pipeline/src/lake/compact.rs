//! Compaction: a table's small Parquet files rewritten into few large ones (Delta's
//! OPTIMIZE: bin-packing within each partition, committed with `dataChange: false`), so
//! views read a handful of files instead of one per ingest chunk and partition. Rows,
//! history and earlier versions are unchanged: the replaced files stay readable by the
//! versions that hold them (evidence packs pin those) until `govlake vacuum` removes them.

use std::num::NonZeroU64;

use deltalake::operations::optimize::OptimizeType;
use serde::Serialize;

use super::TableSchema;
use super::error::Result;
use super::table::{Lake, delta_err};

/// Files below half this size count as small; compaction writes files of about this size.
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// What compacting one table found and did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Compaction {
    /// Table name.
    pub table: String,
    /// Files of its current version before.
    pub files_before: usize,
    /// Of those, the small ones (under half the target size).
    pub small_files: usize,
    /// Files the compaction replaced (0: nothing to do).
    pub files_removed: u64,
    /// Files it wrote in their place.
    pub files_added: u64,
    /// The version it committed, if it did.
    pub version: Option<i64>,
}

impl Lake {
    /// Counts `schema`'s table's files and, when at least `min_small_files` of them are
    /// small (and `dry_run` is false), compacts them in one commit carrying `metadata`.
    /// `None` when the table does not exist.
    ///
    /// The files are rewritten with the table's own settings at Zstandard level 1
    /// ([`TableSchema::large_file_properties`]), not delta-rs's default for OPTIMIZE.
    pub async fn compact(
        &self,
        schema: &TableSchema,
        min_small_files: usize,
        dry_run: bool,
        metadata: &std::collections::HashMap<String, serde_json::Value>,
    ) -> Result<Option<Compaction>> {
        let name = schema.name.as_str();
        if !self.table_exists(name).await? {
            return Ok(None);
        }
        let table = match self.writer_handle(name) {
            Some(t) => t,
            None => self.open(name).await?,
        };
        let sizes: Vec<i64> = table
            .snapshot()
            .map_err(delta_err(name, "listing its files"))?
            .log_data()
            .into_iter()
            .map(|f| f.size())
            .collect();
        let small_files = sizes
            .iter()
            .filter(|&&s| (s as u64) < TARGET_FILE_BYTES / 2)
            .count();
        let mut outcome = Compaction {
            table: name.to_string(),
            files_before: sizes.len(),
            small_files,
            files_removed: 0,
            files_added: 0,
            version: None,
        };
        if dry_run || small_files < min_small_files.max(2) {
            return Ok(Some(outcome));
        }
        self.check_unchanged(name, &table)?;
        let before = table.version().map(|v| v as i64);
        let token = uuid::Uuid::new_v4().to_string();
        let mut metrics = None;
        let result = table
            .optimize()
            .with_type(OptimizeType::Compact)
            .with_target_size(NonZeroU64::new(TARGET_FILE_BYTES).expect("not zero"))
            .with_writer_properties(schema.large_file_properties())
            .with_commit_properties(Self::commit_properties_for(metadata, &token))
            .await
            .map(|(table, m)| {
                metrics = Some(m);
                table
            });
        let version = self
            .settle_commit(name, before, &token, result, "compacting its files")
            .await?;
        if let Some(m) = metrics {
            outcome.files_removed = m.num_files_removed;
            outcome.files_added = m.num_files_added;
        }
        outcome.version = (Some(version) != before).then_some(version);
        tracing::debug!(table = %name, removed = outcome.files_removed, added = outcome.files_added, "Compacted `{name}`.");
        Ok(Some(outcome))
    }
}
