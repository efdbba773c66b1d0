//! Delta table I/O: create, append, overwrite and scan the lake's tables through delta-rs,
//! reading them back with DataFusion over the same object store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::{Expr, SessionContext};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};

use super::error::{Error, Result};
use super::row::{Cell, HELD_ROW_GROUP_ROWS, TableSchema};
use super::store::LakeLocation;
use crate::config::RetentionConfig;

pub(super) fn delta_err(
    table: &str,
    action: &'static str,
) -> impl FnOnce(DeltaTableError) -> Error {
    let table = table.to_string();
    move |e| Error::Delta {
        table,
        action,
        source: Box::new(e),
    }
}

fn query_err(table: &str) -> impl FnOnce(deltalake::datafusion::error::DataFusionError) -> Error {
    let table = table.to_string();
    move |e| Error::Query {
        table,
        source: Box::new(e),
    }
}

fn commit_properties(metadata: &HashMap<String, serde_json::Value>) -> CommitProperties {
    CommitProperties::default().with_metadata(metadata.iter().map(|(k, v)| (k.clone(), v.clone())))
}

/// A session that plans a write of batches as one stream. delta-rs' default plans as many
/// streams as cores: it deals the batches out round-robin, then hash-partitions them again
/// by the table's partition column so each stream owns its partitions, copying every row
/// twice (~3 % of an ingest's CPU) for parallelism an ingest has no use for: its commits
/// already run beside the reading, on every core.
fn single_stream_session(table: &str) -> Result<SessionContext> {
    let overrides = HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]);
    deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(&overrides)
        .map(|c| c.into_inner())
        .map_err(|source| Error::Delta {
            table: table.to_string(),
            action: "planning a write",
            source: Box::new(source),
        })
}

/// Commit-info key carrying a writer's token, so an ambiguous commit (the store wrote the
/// log entry but the client saw an error) can be recognised as its own on reload.
const COMMIT_TOKEN: &str = "govlake.commitToken";

/// Tables only ever appended to without being read first (one row per run or reject):
/// concurrent writers cannot duplicate anything there, so they are not guarded.
const BLIND_APPEND: [&str; 3] = [
    super::bookkeeping::INGEST_RUNS,
    super::bookkeeping::REJECTS,
    super::bookkeeping::PACK_PINS,
];

/// Table name → the version a guarded handle last read or wrote (`None`: no table yet).
type SeenVersions = Arc<Mutex<HashMap<String, Option<i64>>>>;

/// Table name → the handle a guarded writer's last commit returned (its snapshot already
/// holds that commit, so the next write need not read the log again).
type WriterHandles = Arc<Mutex<HashMap<String, DeltaTable>>>;

/// Attempts of a blind append that keeps losing the race to other writers.
const BLIND_APPEND_ATTEMPTS: u32 = 10;

/// Handle on the lake: opens tables by name.
#[derive(Debug, Clone)]
pub struct Lake {
    location: LakeLocation,
    retention: RetentionConfig,
    /// Set by [`Lake::guarded`]: the version of each table this handle last read or wrote.
    seen: Option<SeenVersions>,
    /// Set by [`Lake::guarded`]: reused between a writer's commits. Without it every chunk
    /// of an ingest reloaded the table's log, a cost growing with the table's size.
    handles: Option<WriterHandles>,
}

impl Lake {
    /// A lake at the given location.
    pub fn new(location: LakeLocation) -> Self {
        Self {
            location,
            retention: RetentionConfig::default(),
            seen: None,
            handles: None,
        }
    }

    /// Sets how long tables created through this handle keep old versions readable.
    pub fn with_retention(mut self, retention: RetentionConfig) -> Self {
        self.retention = retention;
        self
    }

    /// The retention settings.
    pub fn retention(&self) -> RetentionConfig {
        self.retention
    }

    /// A handle for a writer that dedupes against what it read (ingest): every commit to a
    /// table requires the table to be at the version this handle first read or last wrote
    /// (optimistic concurrency, one attempt). A concurrent writer's commit in between makes
    /// the commit fail with [`Error::Conflict`] instead of being rebased over rows this
    /// writer never saw, which is how two runs at once could otherwise store a record twice.
    pub fn guarded(mut self) -> Self {
        self.seen = Some(Arc::default());
        self.handles = Some(Arc::default());
        self
    }

    /// The handle the last commit through this (guarded) lake returned for `name`.
    pub(super) fn writer_handle(&self, name: &str) -> Option<DeltaTable> {
        let handles = self.handles.as_ref()?;
        handles.lock().expect("not poisoned").get(name).cloned()
    }

    /// Keeps (`Some`) or drops (`None`) the writer's handle on `name`.
    fn keep_writer_handle(&self, name: &str, table: Option<&DeltaTable>) {
        if let Some(handles) = &self.handles {
            let mut map = handles.lock().expect("not poisoned");
            match table {
                Some(t) => map.insert(name.to_string(), t.clone()),
                None => map.remove(name),
            };
        }
    }

    fn is_guarded(&self, name: &str) -> bool {
        self.seen.is_some() && !BLIND_APPEND.contains(&name)
    }

    fn seen_version(&self, name: &str) -> Option<Option<i64>> {
        let seen = self.seen.as_ref()?;
        seen.lock().expect("not poisoned").get(name).copied()
    }

    fn note_seen(&self, name: &str, version: Option<i64>, overwrite: bool) {
        if let Some(seen) = &self.seen {
            let mut map = seen.lock().expect("not poisoned");
            if overwrite || !map.contains_key(name) {
                map.insert(name.to_string(), version);
            }
        }
    }

    /// Checks, before a guarded commit, that nobody else committed to the table since this
    /// handle saw it.
    pub(super) fn check_unchanged(&self, name: &str, table: &DeltaTable) -> Result<()> {
        if !self.is_guarded(name) {
            return Ok(());
        }
        let found = table.version().map(|v| v as i64);
        match self.seen_version(name) {
            Some(expected) if expected != found => Err(Error::Conflict {
                table: name.to_string(),
                expected,
                found,
            }),
            _ => Ok(()),
        }
    }

    /// Commit properties of a write: the run's metadata, a token naming this commit, and a
    /// single attempt (see [`Lake::settle_commit`]).
    pub(super) fn commit_properties_for(
        metadata: &HashMap<String, serde_json::Value>,
        token: &str,
    ) -> CommitProperties {
        // One attempt inside delta-rs: a retry there cannot tell "another writer took the
        // version" from "my own write landed but the reply was lost" and would append twice.
        commit_properties(metadata)
            .with_max_retries(0)
            .with_metadata([(COMMIT_TOKEN.to_string(), serde_json::json!(token))])
    }

    /// Turns the outcome of a commit into the table's new version. A lost race is
    /// [`Error::Conflict`]. Any other error may be ambiguous (Azure answering 412 to the
    /// conditional put, a timeout after the store wrote the entry): the table is reloaded,
    /// and if the next version carries this commit's token the commit did land.
    pub(super) async fn settle_commit(
        &self,
        name: &str,
        before: Option<i64>,
        token: &str,
        outcome: std::result::Result<DeltaTable, DeltaTableError>,
        action: &'static str,
    ) -> Result<i64> {
        let err = match outcome {
            Ok(table) => {
                let v = table.version().map_or(0, |v| v as i64);
                self.note_seen(name, Some(v), true);
                self.keep_writer_handle(name, Some(&table));
                return Ok(v);
            }
            Err(e) => e,
        };
        self.keep_writer_handle(name, None);
        let reloaded = self.open(name).await?;
        let found = reloaded.version().map(|v| v as i64);
        let next = before.map_or(0, |v| v + 1);
        if found.is_some_and(|f| f >= next) {
            if self.commit_token(&reloaded, next).await.as_deref() == Some(token) {
                tracing::warn!(table = %name, version = next, error = %err, "The store reported an error, but the commit landed; continuing.");
                self.note_seen(name, Some(next), true);
                return Ok(next);
            }
            return Err(Error::Conflict {
                table: name.to_string(),
                expected: before,
                found,
            });
        }
        Err(delta_err(name, action)(err))
    }

    /// The token recorded in the commit info of `version`, if any.
    async fn commit_token(&self, table: &DeltaTable, version: i64) -> Option<String> {
        let bytes = table
            .log_store()
            .read_commit_entry(version as u64)
            .await
            .ok()??;
        let text = std::str::from_utf8(&bytes).ok()?;
        text.lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            v.get("commitInfo")?
                .get(COMMIT_TOKEN)?
                .as_str()
                .map(str::to_string)
        })
    }

    /// Table properties of tables govlake creates: how long old versions stay loadable, and
    /// how often the log is checkpointed.
    fn table_configuration(&self) -> [(&'static str, Option<String>); 3] {
        let r = self.retention;
        [
            (
                "delta.checkpointInterval",
                Some(self.checkpoint_interval().to_string()),
            ),
            (
                "delta.logRetentionDuration",
                Some(format!("interval {} days", r.log_retention_days)),
            ),
            (
                "delta.deletedFileRetentionDuration",
                Some(format!("interval {} days", r.deleted_file_retention_days)),
            ),
        ]
    }

    /// Commits between checkpoints (at least 1).
    fn checkpoint_interval(&self) -> u64 {
        u64::from(self.retention.checkpoint_interval_commits.max(1))
    }

    /// The version of the table's newest checkpoint, as `_delta_log/_last_checkpoint` names
    /// it (`None`: no checkpoint, or no readable pointer).
    pub async fn last_checkpoint(&self, table: &DeltaTable) -> Option<u64> {
        use deltalake::logstore::object_store::{ObjectStoreExt, path::Path};
        let store = table.log_store().object_store(None);
        let bytes = store
            .get(&Path::from("_delta_log/_last_checkpoint"))
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("version")?
            .as_u64()
    }

    /// Writes a checkpoint of the table at its current version when its newest checkpoint
    /// is `checkpoint_interval_commits` or more commits behind (or it has none and at least
    /// that many commits). delta-rs checkpoints on its own at every multiple of the table's
    /// `delta.checkpointInterval`; this catches up where that was skipped: a crash or a lost
    /// reply at that commit, or a table created without the property. Returns the version
    /// checkpointed, if any.
    pub async fn checkpoint_if_due(&self, name: &str) -> Result<Option<u64>> {
        let table = match self.writer_handle(name) {
            Some(t) => t,
            None => self.open(name).await?,
        };
        let Some(version) = table.version() else {
            return Ok(None);
        };
        if version + 1 < self.checkpoint_interval() {
            return Ok(None); // too few commits for any checkpoint to be due
        }
        let behind = match self.last_checkpoint(&table).await {
            Some(c) => version.saturating_sub(c),
            None => version + 1,
        };
        if behind < self.checkpoint_interval() {
            return Ok(None);
        }
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(delta_err(name, "writing a checkpoint"))?;
        tracing::debug!(table = %name, version, "Wrote a checkpoint of `{name}`.");
        Ok(Some(version))
    }

    /// The tables this (guarded) handle committed to, by name.
    pub fn written_tables(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.handles {
            Some(h) => h.lock().expect("not poisoned").keys().cloned().collect(),
            None => vec![],
        };
        names.sort();
        names
    }

    /// [`Lake::checkpoint_if_due`] for every table this (guarded) handle committed to.
    pub async fn checkpoint_written_tables(&self) -> Result<()> {
        for name in self.written_tables() {
            self.checkpoint_if_due(&name).await?;
        }
        Ok(())
    }

    /// The location.
    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// Opens a table; a table that does not exist yet comes back uninitialised
    /// (`version()` is `None`). Creates nothing: reading a missing table leaves no trace.
    pub async fn open(&self, name: &str) -> Result<DeltaTable> {
        let url = self.location.table_url(name);
        let table = match url.to_file_path() {
            // delta-rs wants a local table's folder to exist before it looks inside; a
            // missing folder is a table not created yet, handed out unloaded.
            Ok(path) if !path.is_dir() => deltalake::DeltaTableBuilder::from_url(url)
                .and_then(|b| {
                    b.with_storage_options(self.location.storage_options.clone())
                        .build()
                })
                .map_err(delta_err(name, "opening it"))?,
            _ => deltalake::DeltaTable::try_from_url_with_storage_options(
                url,
                self.location.storage_options.clone(),
            )
            .await
            .map_err(delta_err(name, "opening it"))?,
        };
        self.note_seen(name, table.version().map(|v| v as i64), false);
        Ok(table)
    }

    /// Whether a govlake lake is at this location: its `_ingest_runs` table, which every
    /// ingest (and so `govlake demo`) writes a row to, has a Delta log. Reads only, through
    /// the same store on every backend, so asking never creates anything.
    pub async fn exists(&self) -> Result<bool> {
        self.table_exists(super::bookkeeping::INGEST_RUNS).await
    }

    /// Whether the table exists (has a Delta log). Reads only, so asking never creates
    /// anything.
    pub async fn table_exists(&self, name: &str) -> Result<bool> {
        Ok(self.version(name).await?.is_some())
    }

    /// The table's column names, `None` when it does not exist.
    pub async fn column_names(&self, name: &str) -> Result<Option<Vec<String>>> {
        if !self.table_exists(name).await? {
            return Ok(None);
        }
        let table = self.open(name).await?;
        let schema = table
            .snapshot()
            .map_err(delta_err(name, "reading its schema"))?
            .schema();
        Ok(Some(schema.fields().map(|f| f.name().clone()).collect()))
    }

    /// Adds the schema's columns that the table lacks (as nullable, empty in old rows), in
    /// one commit that writes no rows. Returns the columns added.
    pub async fn add_missing_columns(&self, schema: &TableSchema) -> Result<Vec<String>> {
        let Some(have) = self.column_names(&schema.name).await? else {
            self.ensure(schema).await?;
            return Ok(vec![]);
        };
        let missing: Vec<String> = schema
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| !have.contains(c))
            .collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        let table = self.open(&schema.name).await?;
        table
            .write(vec![schema.to_batch(&[])?])
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .await
            .map_err(delta_err(&schema.name, "adding columns to it"))?;
        Ok(missing)
    }

    /// Replaces `target`'s rows (and schema) with those of the same-named table of `source`
    /// (another lake), in one commit that streams the rows; the old versions stay readable
    /// by time travel. Returns the new version.
    pub async fn overwrite_from_lake(
        &self,
        target: &TableSchema,
        source: &Lake,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        let table = self.ensure(target).await?;
        let before = table.version().map(|v| v as i64);
        let token = uuid::Uuid::new_v4().to_string();
        let write = table
            .write(vec![])
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_partition_columns(target.partition_by.clone())
            .with_writer_properties(target.writer_properties())
            .with_commit_properties(Self::commit_properties_for(metadata, &token));
        let outcome = match source.scan_context(&[&target.name]).await? {
            Some(ctx) => {
                let plan = ctx
                    .sql(&format!("select * from \"{}\"", target.name))
                    .await
                    .map_err(query_err(&target.name))?
                    .logical_plan()
                    .clone();
                write
                    .with_input_plan(plan)
                    .with_session_state(Arc::new(ctx.state()))
                    .await
            }
            None => write.with_input_batches(vec![target.to_batch(&[])?]).await,
        };
        self.settle_commit(&target.name, before, &token, outcome, "rebuilding it")
            .await
    }

    /// Current Delta version of a table, `None` when it does not exist.
    pub async fn version(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.open(name).await?.version().map(|v| v as i64))
    }

    /// Creates the table (empty, with its schema) when it does not exist yet.
    pub async fn ensure(&self, schema: &TableSchema) -> Result<DeltaTable> {
        if let Ok(path) = self.location.table_url(&schema.name).to_file_path() {
            // Writing is what creates a local lake's folders (reading never does).
            std::fs::create_dir_all(&path).map_err(|source| Error::CreateDir { path, source })?;
        }
        let table = self.open(&schema.name).await?;
        if table.version().is_some() {
            return Ok(table);
        }
        let batch = schema.to_batch(&[])?;
        let created = table
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(schema.partition_by.clone())
            .with_table_name(schema.name.clone())
            .with_configuration(self.table_configuration())
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(table) => {
                self.note_seen(&schema.name, Some(0), true);
                Ok(table)
            }
            Err(e) => {
                // Another writer created it first. That is harmless while the table holds
                // nothing else: an empty table is what this writer saw.
                let table = self.open(&schema.name).await?;
                match table.version() {
                    Some(0) => {
                        self.note_seen(&schema.name, Some(0), true);
                        Ok(table)
                    }
                    Some(v) if self.is_guarded(&schema.name) => Err(Error::Conflict {
                        table: schema.name.clone(),
                        expected: None,
                        found: Some(v as i64),
                    }),
                    Some(_) => Ok(table),
                    None => Err(delta_err(&schema.name, "creating it")(e)),
                }
            }
        }
    }

    /// Appends rows in one commit and returns the new version. `metadata` lands in the
    /// commit info (run id and so on), which `DESCRIBE HISTORY` readers show.
    pub async fn append(
        &self,
        schema: &TableSchema,
        rows: &[Vec<Cell>],
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        self.write(schema, rows, SaveMode::Append, metadata).await
    }

    async fn write(
        &self,
        schema: &TableSchema,
        rows: &[Vec<Cell>],
        mode: SaveMode,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        // Batches of a few thousand rows: a batch of raw JSON stays a few MiB, so its buffers
        // come from the allocator's reused pages instead of fresh ones the kernel must zero
        // (at 64k rows, tens of MiB each, that zeroing was ~6% of an ingest's CPU).
        let batches = rows
            .chunks(4096)
            .map(|chunk| schema.to_batch(chunk))
            .collect::<Result<Vec<_>>>()?;
        self.write_batches(schema, batches, mode, metadata).await
    }

    async fn write_batches(
        &self,
        schema: &TableSchema,
        batches: Vec<RecordBatch>,
        mode: SaveMode,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        // A write with no rows still needs one (empty) batch to carry the schema.
        let batches = if batches.is_empty() {
            vec![schema.to_batch(&[])?]
        } else {
            batches
        };
        // A guarded table gets one attempt; a blind append is simply redone on top of the
        // other writer's commit (its rows cannot duplicate anything), a bounded number of times.
        let mut attempts = 0;
        loop {
            let table = match self.writer_handle(&schema.name) {
                Some(t) => t,
                None => self.ensure(schema).await?,
            };
            self.check_unchanged(&schema.name, &table)?;
            let before = table.version().map(|v| v as i64);
            let token = uuid::Uuid::new_v4().to_string();
            let outcome = table
                .write(batches.clone())
                .with_session_state(Arc::new(single_stream_session(&schema.name)?.state()))
                .with_save_mode(mode)
                .with_partition_columns(schema.partition_by.clone())
                .with_writer_properties(schema.writer_properties())
                .with_commit_properties(Self::commit_properties_for(metadata, &token))
                .await;
            match self
                .settle_commit(&schema.name, before, &token, outcome, "writing to it")
                .await
            {
                Err(Error::Conflict { .. })
                    if !self.is_guarded(&schema.name) && attempts < BLIND_APPEND_ATTEMPTS =>
                {
                    attempts += 1;
                    tracing::debug!(table = %schema.name, attempts, "Another writer committed first; appending again on top.");
                }
                other => return other,
            }
        }
    }

    /// Replaces `target`'s contents with the result of `sql` over the tables `sources`
    /// (one commit), returning the new version; with none of them in the lake, `target` is
    /// left empty. The query streams into the writer, so the result never sits in memory
    /// whole.
    pub async fn overwrite_from_sql(
        &self,
        target: &TableSchema,
        sources: &[&str],
        sql: &str,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        self.overwrite_from_sql_in(target, sources, sql, metadata, false)
            .await
    }

    /// Like [`Lake::overwrite_from_sql`], adding the columns `target` has and the table
    /// lacks in the same commit (no version of the table holds them empty).
    pub async fn overwrite_from_sql_adding_columns(
        &self,
        target: &TableSchema,
        sources: &[&str],
        sql: &str,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        self.overwrite_from_sql_in(target, sources, sql, metadata, true)
            .await
    }

    async fn overwrite_from_sql_in(
        &self,
        target: &TableSchema,
        sources: &[&str],
        sql: &str,
        metadata: &HashMap<String, serde_json::Value>,
        adding_columns: bool,
    ) -> Result<i64> {
        let source = sources.join(", ");
        let Some(ctx) = self.scan_context(sources).await? else {
            return self
                .write_batches(target, vec![], SaveMode::Overwrite, metadata)
                .await;
        };
        let plan = ctx
            .sql(sql)
            .await
            .map_err(query_err(&source))?
            .logical_plan()
            .clone();
        let table = self.ensure(target).await?;
        self.check_unchanged(&target.name, &table)?;
        let before = table.version().map(|v| v as i64);
        let token = uuid::Uuid::new_v4().to_string();
        let mut write = table.write(vec![]);
        if adding_columns {
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Merge);
        }
        let outcome = write
            .with_input_plan(plan)
            .with_session_state(Arc::new(ctx.state()))
            // Row groups of a bounded size: the writer holds one in memory, and a current
            // table rebuilt at the end of an ingest has millions of rows (the default row
            // group is a million).
            .with_writer_properties(
                target
                    .writer_properties()
                    .into_builder()
                    .set_max_row_group_row_count(Some(HELD_ROW_GROUP_ROWS))
                    .build(),
            )
            .with_save_mode(SaveMode::Overwrite)
            .with_commit_properties(Self::commit_properties_for(metadata, &token))
            .await;
        self.settle_commit(&target.name, before, &token, outcome, "rewriting it")
            .await
    }

    /// One MERGE commit: the rows of `table_name` that `predicate` matches against `source`
    /// (aliases `target` and `source`) get `column = value`. `what` names the change in
    /// errors ("closing versions").
    pub async fn update_matched(
        &self,
        table_name: &str,
        source: RecordBatch,
        predicate: Expr,
        (column, value): (&str, Expr),
        metadata: &HashMap<String, serde_json::Value>,
        what: &'static str,
    ) -> Result<()> {
        let table = self.open(table_name).await?;
        self.check_unchanged(table_name, &table)?;
        let before = table.version().map(|v| v as i64);
        let token = uuid::Uuid::new_v4().to_string();
        let source = SessionContext::new()
            .read_batch(source)
            .map_err(query_err(table_name))?;
        let outcome = table
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_update(|u| u.update(column, value))
            .map_err(delta_err(table_name, "preparing a merge"))?
            .with_commit_properties(Self::commit_properties_for(metadata, &token))
            .await
            .map(|(table, _metrics)| table);
        self.settle_commit(table_name, before, &token, outcome, what)
            .await?;
        Ok(())
    }

    /// Reads the given columns of a table as text (e.g. ids for dedupe), calling `each` per row.
    pub async fn scan_strings(
        &self,
        table: &str,
        columns: &[&str],
        each: impl FnMut(&[Option<&str>]),
    ) -> Result<()> {
        let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let sql = format!("select {} from \"{table}\"", cols.join(", "));
        self.scan_sql(table, &sql, each).await
    }

    /// Runs `sql` over the table (registered under its name) and streams every row's values
    /// as text to `each`. A missing table yields no rows.
    pub async fn scan_sql(
        &self,
        table: &str,
        sql: &str,
        mut each: impl FnMut(&[Option<&str>]),
    ) -> Result<()> {
        use deltalake::arrow::array::{Array, AsArray};
        use deltalake::arrow::compute::cast;
        use deltalake::arrow::datatypes::DataType;
        use futures::StreamExt;

        let Some(mut stream) = self.stream_sql(table, sql).await? else {
            return Ok(());
        };
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_err(table))?;
            let arrays = batch
                .columns()
                .iter()
                .map(|a| cast(a, &DataType::Utf8))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|source| Error::Arrow {
                    table: table.to_string(),
                    source,
                })?;
            let strings: Vec<&deltalake::arrow::array::StringArray> =
                arrays.iter().map(|a| a.as_string::<i32>()).collect();
            let mut values: Vec<Option<&str>> = Vec::with_capacity(strings.len());
            for row in 0..batch.num_rows() {
                values.clear();
                values.extend(
                    strings
                        .iter()
                        .map(|s| (!s.is_null(row)).then(|| s.value(row))),
                );
                each(&values);
            }
        }
        Ok(())
    }

    /// Runs `sql` over the table (registered under its name) and returns its record
    /// batches as a stream, `None` when the table does not exist. For readers that must
    /// await between batches (a scan callback cannot).
    pub async fn stream_sql(
        &self,
        table: &str,
        sql: &str,
    ) -> Result<Option<deltalake::datafusion::physical_plan::SendableRecordBatchStream>> {
        let Some(ctx) = self.scan_context(&[table]).await? else {
            return Ok(None);
        };
        let df = ctx.sql(sql).await.map_err(query_err(table))?;
        Ok(Some(df.execute_stream().await.map_err(query_err(table))?))
    }

    /// A DataFusion session with just this table registered, or `None` if it does not exist.
    async fn scan_context(&self, names: &[&str]) -> Result<Option<SessionContext>> {
        // delta-rs' session carries the planner its writes need (overwrite_from_sql).
        let ctx: SessionContext = deltalake::delta_datafusion::create_session().into_inner();
        let ctx = SessionContext::new_with_state(super::global_aggregates::with_govlake_optimizer(
            ctx.state(),
        ));
        let mut any = false;
        for name in names {
            any |= self.register(&ctx, name, TablePin::Latest).await?;
        }
        Ok(any.then_some(ctx))
    }

    /// Whether every data file of the loaded version is still in the store. A vacuum keeps
    /// the log but deletes files, so an old version can load and still be unreadable; a
    /// pinned read checks first (one HEAD per file, pinned reads only).
    async fn files_present(&self, name: &str, table: &DeltaTable) -> Result<bool> {
        use deltalake::logstore::object_store::{ObjectStoreExt, path::Path};
        use futures::StreamExt;
        let store = table.object_store();
        let paths: Vec<Path> = table
            .snapshot()
            .map_err(delta_err(name, "listing its files of a pinned version"))?
            .log_data()
            .into_iter()
            .map(|add| add.object_store_path())
            .collect();
        let missing = futures::stream::iter(paths)
            .map(|p| {
                let store = store.clone();
                async move { store.head(&p).await.is_err() }
            })
            .buffer_unordered(16)
            .any(|gone| async move { gone })
            .await;
        Ok(!missing)
    }

    /// Registers a table in a DataFusion session under its name, sharing the lake's object
    /// store, at the given point in its history. Returns false, and registers nothing, when
    /// the table does not exist (at that time). A pinned version that the table no longer
    /// holds (vacuumed, or never written) is an error, never a silent fallback to current data.
    pub async fn register(&self, ctx: &SessionContext, name: &str, at: TablePin) -> Result<bool> {
        if at == TablePin::Absent {
            return Ok(false);
        }
        let mut table = self.open(name).await?;
        let Some(latest) = table.version() else {
            if let TablePin::Version(version) = at {
                return Err(Error::VersionUnavailable {
                    table: name.to_string(),
                    version,
                    latest: None,
                });
            }
            return Ok(false);
        };
        match at {
            TablePin::Latest | TablePin::Absent => {}
            TablePin::Time(t) => {
                let at = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default();
                if let Err(e) = table.load_with_datetime(at).await {
                    tracing::debug!(table = %name, error = %e, "Table skipped: no version at the requested time.");
                    return Ok(false);
                }
            }
            TablePin::Version(version) => {
                if version < 0
                    || version > latest as i64
                    || table.load_version(version as u64).await.is_err()
                    || !self.files_present(name, &table).await?
                {
                    return Err(Error::VersionUnavailable {
                        table: name.to_string(),
                        version,
                        latest: Some(latest as i64),
                    });
                }
            }
        }
        table
            .update_datafusion_session(&ctx.state())
            .map_err(delta_err(name, "registering its store"))?;
        let partition_columns = table
            .snapshot()
            .map(|s| s.metadata().partition_columns().to_vec())
            .unwrap_or_default();
        let provider = table.table_provider().await.map_err(query_err(name))?;
        let provider = Arc::new(super::rechecked::Rechecked::new(
            provider,
            &partition_columns,
        ));
        ctx.register_table(name, provider)
            .map_err(query_err(name))?;
        Ok(true)
    }
}

/// Which state of a table a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TablePin {
    /// The newest version.
    Latest,
    /// The version current at this Delta commit time (UTC micros).
    Time(i64),
    /// Exactly this Delta version.
    Version(i64),
    /// Not read: the session does without the table (it registers nothing).
    Absent,
}
