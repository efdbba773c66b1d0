//! Validity intervals for entities Graph only shows as "now".
//!
//! Snapshot entities (packages, policies, assignments, ...) and upserted ones (requests) are
//! stored twice: `<table>_history` holds every observed version with `valid_from` / `valid_to`
//! (as observed, UTC), and `<table>` holds the current version of each object. A version is
//! identified by a hash of its typed columns, so re-ingesting the same data changes nothing.
//! Snapshot tables close the versions of objects missing from a complete snapshot of their
//! scope (the whole table, or one parent such as one review instance's decisions).
//!
//! A run keeps only a small index in memory (id → open version's hash and scope). New versions
//! are appended to the history in chunks as they arrive; at the end one MERGE closes the
//! versions they replace (matched by id and hash), and the current table is rebuilt from the
//! history when the two disagree. A run killed anywhere converges on rerun: open versions
//! left behind by a crash are closed (the newest one stays open) and the current table is
//! re-derived.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::{col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::open_index::{Open, OpenIndex};
use super::row::{Cell, Column, ColumnType, TableSchema};
use super::table::Lake;

/// Column names the history layer adds.
pub const VALID_FROM: &str = "valid_from";
/// End of a version's validity; NULL while current.
pub const VALID_TO: &str = "valid_to";
/// Hash of the version's typed columns.
pub const ROW_HASH: &str = "row_hash";
/// The snapshot scope a row belongs to ("" = whole table).
pub const SCOPE: &str = "snapshot_scope";

/// Whether objects missing from a snapshot are closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Full snapshots: objects missing from a complete scope are closed.
    Snapshot,
    /// Upserts by id: objects are never closed by absence (requests).
    Upsert,
}

/// A versioned entity's two physical tables.
#[derive(Debug, Clone)]
pub struct VersionedTable {
    /// Current state: data columns + `valid_from`, `row_hash`.
    pub current: TableSchema,
    /// All versions: data columns + `valid_from`, `valid_to`, `row_hash`, `snapshot_scope`.
    pub history: TableSchema,
    /// Snapshot or upsert.
    pub versioning: Versioning,
}

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Objects whose new version was stored.
    pub stored: u64,
    /// Objects seen unchanged (or repeated unchanged in the input).
    pub duplicates: u64,
    /// Versions closed because the object vanished from its snapshot.
    pub closed: u64,
    /// Delta version of the current table after the merge.
    pub current_version: Option<i64>,
}

/// Hash of a row's data cells.
pub fn row_hash(cells: &[Cell]) -> String {
    let mut h = Sha256::new();
    for c in cells {
        c.hash_into(&mut h);
    }
    hex::encode(&h.finalize()[..16])
}

impl VersionedTable {
    /// Builds both schemas from the entity's data columns (the first must be `id`).
    pub fn new(name: &str, data: Vec<Column>, versioning: Versioning) -> Self {
        let ts = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Timestamp,
        };
        let text = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Str,
        };
        let mut current = data.clone();
        current.push(ts(VALID_FROM));
        current.push(text(ROW_HASH));
        let mut history = data;
        history.push(ts(VALID_FROM));
        history.push(ts(VALID_TO));
        history.push(text(ROW_HASH));
        history.push(text(SCOPE));
        Self {
            current: TableSchema {
                name: name.into(),
                columns: current,
                partition_by: vec![],
            },
            history: TableSchema {
                name: format!("{name}_history"),
                columns: history,
                partition_by: vec![],
            },
            versioning,
        }
    }

    /// Starts a run's merge: loads the index of open versions.
    pub async fn begin(&self, lake: &Lake, observed_at: i64) -> Result<VersionMerge> {
        lake.ensure(&self.history).await?;
        let sql = format!(
            "select {id}, {ROW_HASH}, {SCOPE}, cast({VALID_FROM} as bigint), cast({VALID_TO} as bigint) from \"{t}\"",
            id = "id",
            t = self.history.name
        );
        let mut open = OpenIndex::default();
        // Each open version's valid_from, by its place in the index: needed only here, to
        // tell which of two open versions of one id is the newest.
        let mut valid_froms: Vec<i64> = Vec::new();
        let mut scopes = Scopes::default();
        let mut stale = Vec::new();
        let mut newest_change = i64::MIN;
        lake.scan_sql(&self.history.name, &sql, |v| {
            let from = v[3].and_then(|s| s.parse::<i64>().ok()).unwrap_or(i64::MIN);
            let to = v[4].and_then(|s| s.parse::<i64>().ok());
            newest_change = newest_change.max(from).max(to.unwrap_or(i64::MIN));
            if to.is_some() {
                return;
            }
            let (Some(id), Some(hash)) = (v[0], v[1]) else {
                return;
            };
            let entry = Open {
                hash: hash_bits(hash),
                scope: scopes.intern(v[2].unwrap_or("")),
                seen: false,
                in_current: false,
            };
            // Two open versions of one id are a crash's leftovers: the newest stays open.
            let Some(at) = open.position(id) else {
                debug_assert_eq!(open.next_position() as usize, valid_froms.len());
                open.insert(id, entry);
                valid_froms.push(from);
                return;
            };
            let kept = open.get(id).map_or(0, |o| o.hash);
            if (valid_froms[at as usize], kept) >= (from, entry.hash) {
                stale.push((id.to_string(), hash.to_string()));
            } else {
                stale.push((id.to_string(), hash_hex(kept)));
                open.insert(id, entry);
                valid_froms[at as usize] = from;
            }
        })
        .await?;
        Ok(VersionMerge {
            table: self.clone(),
            observed_at,
            open,
            scopes,
            to_close: stale,
            additions: Vec::new(),
            newest_change,
            outcome: MergeOutcome::default(),
        })
    }
}

fn hash_bits(hex: &str) -> u128 {
    u128::from_str_radix(hex, 16).unwrap_or(0)
}

fn hash_hex(bits: u128) -> String {
    format!("{bits:032x}")
}

/// Snapshot scopes, interned (most rows share a handful).
#[derive(Debug, Default)]
struct Scopes {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Scopes {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// One entity's merge during a run.
#[derive(Debug)]
pub struct VersionMerge {
    table: VersionedTable,
    observed_at: i64,
    open: OpenIndex,
    scopes: Scopes,
    to_close: Vec<(String, String)>,
    additions: Vec<Vec<Cell>>,
    newest_change: i64,
    outcome: MergeOutcome,
}

impl VersionMerge {
    /// Offers one observed version (data cells, first is `id`). Returns whether it was new.
    pub fn offer(&mut self, cells: Vec<Cell>, scope: &str) -> Result<bool> {
        let Some(id) = cells[0].as_str().map(str::to_string) else {
            return Ok(false);
        };
        let hash = row_hash(&cells);
        let bits = hash_bits(&hash);
        let unchanged = self.open.update(id.as_str(), |o| {
            o.seen = true;
            o.hash == bits
        });
        if unchanged == Some(true) {
            self.outcome.duplicates += 1;
            return Ok(false);
        }
        if self.observed_at < self.newest_change {
            return Err(Error::OutOfOrder {
                table: self.table.current.name.clone(),
                observed_at: self.observed_at,
                newest: self.newest_change,
            });
        }
        let new = Open {
            hash: bits,
            scope: self.scopes.intern(scope),
            seen: true,
            in_current: false,
        };
        if let Some(old) = self.open.insert(&id, new) {
            self.to_close.push((id, hash_hex(old.hash)));
        }
        let mut row = cells;
        row.push(Cell::Ts(self.observed_at));
        row.push(Cell::Null);
        row.push(Cell::Str(hash));
        row.push(Cell::Str(scope.to_string()));
        self.additions.push(row);
        self.outcome.stored += 1;
        Ok(true)
    }

    /// Marks an object as present in this run without a new version (its record was
    /// quarantined), so a complete snapshot does not close it.
    pub fn mark_seen(&mut self, id: &str) {
        self.open.update(id, |o| o.seen = true);
    }

    /// New versions waiting to be appended.
    pub fn pending(&self) -> usize {
        self.additions.len()
    }

    /// Takes the pending new versions, for the caller to append to the history table (the
    /// schema returned) in one commit of its own.
    pub fn take_pending(&mut self) -> (TableSchema, Vec<Vec<Cell>>) {
        (
            self.table.history.clone(),
            std::mem::take(&mut self.additions),
        )
    }

    /// Appends the pending new versions to the history (one commit).
    async fn flush(
        &mut self,
        lake: &Lake,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<()> {
        if self.additions.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.additions);
        lake.append(&self.table.history, &rows, metadata).await?;
        Ok(())
    }

    /// Ends the run: appends what is left, closes replaced and vanished versions in one
    /// MERGE, and re-derives the current table when it disagrees with the history.
    pub async fn finish(
        mut self,
        lake: &Lake,
        is_complete: &(dyn Fn(&str) -> bool + Sync),
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<MergeOutcome> {
        self.flush(lake, metadata).await?;
        if self.table.versioning == Versioning::Snapshot {
            // The scopes of this table's open versions, asked one by one.
            let complete: HashSet<u32> = (0..self.scopes.names.len() as u32)
                .filter(|&i| is_complete(&self.scopes.names[i as usize]))
                .collect();
            let vanished: Vec<String> = self
                .open
                .iter()
                .filter(|(_, o)| !o.seen && complete.contains(&o.scope))
                .map(|(id, _)| id.to_string())
                .collect();
            for id in vanished {
                if let Some(o) = self.open.remove(&id) {
                    self.to_close.push((id, hash_hex(o.hash)));
                    self.outcome.closed += 1;
                }
            }
        }
        if !self.to_close.is_empty() {
            if self.observed_at < self.newest_change {
                return Err(Error::OutOfOrder {
                    table: self.table.current.name.clone(),
                    observed_at: self.observed_at,
                    newest: self.newest_change,
                });
            }
            let (predicate, value) = close_expressions(self.observed_at);
            lake.update_matched(
                &self.table.history.name,
                close_batch(&self.to_close)?,
                predicate,
                (VALID_TO, value),
                metadata,
                "closing versions",
            )
            .await?;
        }

        // The current table must hold exactly the open versions: each of its rows is an
        // open version, found once (checked against the index in place, so no second copy
        // of millions of ids is built to compare), and it has as many rows as the index.
        let exists = lake.version(&self.table.current.name).await?;
        let mut same = exists.is_some();
        let mut rows = 0usize;
        if exists.is_some() {
            let open = &mut self.open;
            lake.scan_sql(
                &self.table.current.name,
                &format!("select id, {ROW_HASH} from \"{}\"", self.table.current.name),
                |v| {
                    rows += 1;
                    if !same {
                        return;
                    }
                    let hash = hash_bits(v[1].unwrap_or(""));
                    let found = open.update(v[0].unwrap_or(""), |o| {
                        let first = o.hash == hash && !o.in_current;
                        o.in_current = true;
                        first
                    });
                    if found != Some(true) {
                        same = false;
                    }
                },
            )
            .await?;
        }
        let same = same && rows == self.open.len();
        // The index is done with: let it go before the current table is rewritten (millions
        // of entries, held while the rewrite's writers fill).
        self.open = OpenIndex::default();
        self.outcome.current_version = if same {
            exists
        } else {
            let columns: Vec<String> = self
                .table
                .current
                .columns
                .iter()
                // Text is read back as Utf8View; the table stores Utf8.
                .map(|c| match c.ty {
                    ColumnType::Str | ColumnType::Json => {
                        format!("arrow_cast(\"{0}\", 'Utf8') as \"{0}\"", c.name)
                    }
                    _ => format!("\"{}\"", c.name),
                })
                .collect();
            let sql = format!(
                "select {} from \"{}\" where {VALID_TO} is null",
                columns.join(", "),
                self.table.history.name
            );
            Some(
                lake.overwrite_from_sql(
                    &self.table.current,
                    &[&self.table.history.name],
                    &sql,
                    metadata,
                )
                .await?,
            )
        };
        Ok(self.outcome)
    }
}

/// The (id, row_hash) pairs to close, as a record batch for the MERGE source.
fn close_batch(pairs: &[(String, String)]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(ROW_HASH, DataType::Utf8, false),
    ]));
    let ids = StringArray::from_iter_values(pairs.iter().map(|(i, _)| i.as_str()));
    let hashes = StringArray::from_iter_values(pairs.iter().map(|(_, h)| h.as_str()));
    RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(hashes)]).map_err(|source| {
        Error::Arrow {
            table: "(versions to close)".into(),
            source,
        }
    })
}

/// MERGE predicate and update for closing versions at `at` (UTC micros).
fn close_expressions(
    at: i64,
) -> (
    deltalake::datafusion::prelude::Expr,
    deltalake::datafusion::prelude::Expr,
) {
    let predicate = col("target.id")
        .eq(col("source.id"))
        .and(col(format!("target.{ROW_HASH}")).eq(col(format!("source.{ROW_HASH}"))))
        .and(col(format!("target.{VALID_TO}")).is_null());
    let value = lit(ScalarValue::TimestampMicrosecond(
        Some(at),
        Some("UTC".into()),
    ));
    (predicate, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::LakeLocation;

    /// A crash between a new version's append and the MERGE that closes the old one leaves two
    /// open versions of one id: the next run keeps the newest (by `valid_from`, then hash)
    /// open and closes the other, in whichever order the history lists them.
    #[tokio::test]
    async fn of_two_open_versions_left_by_a_crash_the_newest_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let location =
            LakeLocation::resolve(&dir.path().to_string_lossy(), Default::default()).unwrap();
        let lake = Lake::new(location);
        let id = Column {
            name: "id".into(),
            ty: ColumnType::Str,
        };
        let table = VersionedTable::new("things", vec![id], Versioning::Snapshot);
        let version = |id: &str, from: i64, hash: u128| {
            vec![
                Cell::Str(id.into()),
                Cell::Ts(from),
                Cell::Null,
                Cell::Str(hash_hex(hash)),
                Cell::Str(String::new()),
            ]
        };
        let guid = "a931ae79-63f2-424a-a1ca-ceca05299fa1";
        // The newer version first for the GUID, last for the text id; equal times are told
        // by hash; one id has one version, and a closed version never counts.
        let mut closed = version("X-1", 40, 9);
        closed[2] = Cell::Ts(45);
        let rows = vec![
            version(guid, 20, 1),
            version(guid, 10, 2),
            version("X-1", 10, 3),
            version("X-1", 20, 4),
            closed,
            version("tie", 10, 6),
            version("tie", 10, 5),
            version("solo", 5, 7),
        ];
        lake.append(&table.history, &rows, &HashMap::new())
            .await
            .unwrap();
        let merge = table.begin(&lake, 50).await.unwrap();
        let mut to_close = merge.to_close.clone();
        to_close.sort();
        let pair = |id: &str, hash: u128| (id.to_string(), hash_hex(hash));
        assert_eq!(to_close, [pair("X-1", 3), pair(guid, 2), pair("tie", 5)]);
        let open_hash = |id: &str| merge.open.get(id).map(|o| o.hash);
        assert_eq!(open_hash(guid), Some(1));
        assert_eq!(open_hash("X-1"), Some(4));
        assert_eq!(open_hash("tie"), Some(6));
        assert_eq!(open_hash("solo"), Some(7));
        assert_eq!(merge.open.len(), 4);
    }
}
