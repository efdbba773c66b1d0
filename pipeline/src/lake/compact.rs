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

/// Compaction writes files of about this size.
pub const TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// Files below this size count as small. A file past it holds over a hundred thousand rows,
/// several row groups that a scan reads as it would read them in a larger file, so
/// rewriting it saves a view nothing. Until session 41 this was half the target size (64
/// MiB): a 10M-event ingest then ended by rewriting the audit child tables' 33 files of
/// 19-30 MB (one per 1M-event commit) into 8, 17 s of its 378 (4.5 %), for no view faster.
/// Daily runs' files (kilobytes to a few MB) and a large ingest's monthly `audit_events`
/// files (2-6 MB each at 10M) stay small.
pub const SMALL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// When a table is compacted: when it holds at least `small_files` small files in all, or
/// one of its partitions (an unpartitioned table is one) holds at least
/// `small_files_in_a_partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactWhen {
    /// Small files of the whole table.
    pub small_files: usize,
    /// Small files of one partition.
    pub small_files_in_a_partition: usize,
}

impl CompactWhen {
    /// Compacts whenever the table holds `n` small files (`govlake optimize`).
    pub fn table_holds(n: usize) -> Self {
        Self {
            small_files: n,
            small_files_in_a_partition: n,
        }
    }
}

/// What compacting one table found and did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Compaction {
    /// Table name.
    pub table: String,
    /// Files of its current version before.
    pub files_before: usize,
    /// Of those, the small ones (under [`SMALL_FILE_BYTES`]).
    pub small_files: usize,
    /// The most small files one partition holds.
    pub most_small_files_in_a_partition: usize,
    /// Files the compaction replaced (0: nothing to do).
    pub files_removed: u64,
    /// Files it wrote in their place.
    pub files_added: u64,
    /// The version it committed, if it did.
    pub version: Option<i64>,
}

impl Lake {
    /// Counts `schema`'s table's small files, in all and per partition, and when they
    /// reach `when` (and `dry_run` is false) compacts them in one commit carrying
    /// `metadata`. `None` when the table does not exist.
    ///
    /// The files are rewritten with the table's own settings at Zstandard level 1
    /// ([`TableSchema::large_file_properties`]), not delta-rs's default for OPTIMIZE.
    pub async fn compact(
        &self,
        schema: &TableSchema,
        when: CompactWhen,
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
        // Small files per partition folder (a file's path less its name).
        let mut per_partition: std::collections::HashMap<String, usize> = Default::default();
        let mut files_before = 0;
        for file in table
            .snapshot()
            .map_err(delta_err(name, "listing its files"))?
            .log_data()
        {
            files_before += 1;
            if (file.size() as u64) < SMALL_FILE_BYTES {
                let path = file.path();
                let folder = path.rsplit_once('/').map_or("", |(folder, _)| folder);
                *per_partition.entry(folder.to_string()).or_default() += 1;
            }
        }
        let small_files = per_partition.values().sum();
        let most_small_files_in_a_partition = per_partition.values().copied().max().unwrap_or(0);
        let mut outcome = Compaction {
            table: name.to_string(),
            files_before,
            small_files,
            most_small_files_in_a_partition,
            files_removed: 0,
            files_added: 0,
            version: None,
        };
        let due = small_files >= when.small_files.max(2)
            || most_small_files_in_a_partition >= when.small_files_in_a_partition.max(2);
        if dry_run || !due {
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
