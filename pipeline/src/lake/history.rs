//! Validity intervals for entities Graph only shows as "now".
//!
//! Snapshot entities (packages, policies, assignments, ...) and upserted ones (requests) are
//! stored twice: `<table>_history` holds every observed version with `valid_from` / `valid_to`
//! (as observed, UTC), and `<table>` holds the current version of each object. A version is
//! identified by a hash of its typed columns, so re-ingesting the same data changes nothing.
//! Snapshot tables close the versions of objects missing from a complete snapshot of their
//! scope (the whole table, or one parent such as one review instance's decisions).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use super::error::{Error, Result};
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
    /// Current state: data columns + `valid_from`.
    pub current: TableSchema,
    /// All versions: data columns + `valid_from`, `valid_to`, `row_hash`, `snapshot_scope`.
    pub history: TableSchema,
    /// Snapshot or upsert.
    pub versioning: Versioning,
    data_width: usize,
}

/// One incoming object version.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Data cells in the entity's column order; the first column is `id`.
    pub cells: Vec<Cell>,
    /// Snapshot scope ("" for whole-table snapshots).
    pub scope: String,
}

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Objects whose new version was stored.
    pub stored: u64,
    /// Objects seen unchanged (or repeated in the input).
    pub duplicates: u64,
    /// Versions closed because the object vanished from its snapshot.
    pub closed: u64,
    /// Delta version of the history table after the merge.
    pub history_version: Option<i64>,
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
        let data_width = data.len();
        let ts = |n: &str| Column {
            name: n.into(),
            ty: ColumnType::Timestamp,
        };
        let mut current = data.clone();
        current.push(ts(VALID_FROM));
        let mut history = data;
        history.push(ts(VALID_FROM));
        history.push(ts(VALID_TO));
        history.push(Column {
            name: ROW_HASH.into(),
            ty: ColumnType::Str,
        });
        history.push(Column {
            name: SCOPE.into(),
            ty: ColumnType::Str,
        });
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
            data_width,
        }
    }

    /// Number of data columns.
    pub fn data_width(&self) -> usize {
        self.data_width
    }

    /// Merges one run's versions observed at `observed_at` (UTC micros). `complete_scopes`
    /// lists the scopes this run saw in full; only those can close objects.
    pub async fn merge(
        &self,
        lake: &Lake,
        incoming: Vec<Incoming>,
        complete_scopes: &BTreeSet<String>,
        observed_at: i64,
        metadata: &HashMap<String, serde_json::Value>,
    ) -> Result<MergeOutcome> {
        let w = self.data_width;
        let (i_from, i_to, i_hash, i_scope) = (w, w + 1, w + 2, w + 3);
        let mut outcome = MergeOutcome::default();

        // Last version per id wins inside one run; repeats count as duplicates.
        let mut latest: BTreeMap<String, Incoming> = BTreeMap::new();
        for inc in incoming {
            let Some(id) = inc.cells[0].as_str().map(str::to_string) else {
                continue;
            };
            if latest.insert(id, inc).is_some() {
                outcome.duplicates += 1;
            }
        }

        let mut history = lake.read_rows(&self.history).await?;
        let mut open: HashMap<String, usize> = HashMap::new();
        let mut newest_change = i64::MIN;
        for (i, row) in history.iter().enumerate() {
            if let Cell::Ts(t) = row[i_from] {
                newest_change = newest_change.max(t);
            }
            if let Cell::Ts(t) = row[i_to] {
                newest_change = newest_change.max(t);
            }
            if row[i_to] == Cell::Null {
                if let Some(id) = row[0].as_str() {
                    open.insert(id.to_string(), i);
                }
            }
        }

        let mut changed = false;
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut additions = Vec::new();
        for (id, inc) in &latest {
            seen.insert(id);
            let hash = row_hash(&inc.cells);
            match open.get(id) {
                Some(&i) if history[i][i_hash].as_str() == Some(hash.as_str()) => {
                    outcome.duplicates += 1;
                }
                existing => {
                    if let Some(&i) = existing {
                        history[i][i_to] = Cell::Ts(observed_at);
                    }
                    let mut row = inc.cells.clone();
                    row.push(Cell::Ts(observed_at));
                    row.push(Cell::Null);
                    row.push(Cell::Str(hash));
                    row.push(Cell::Str(inc.scope.clone()));
                    additions.push(row);
                    outcome.stored += 1;
                    changed = true;
                }
            }
        }
        if self.versioning == Versioning::Snapshot {
            for (id, &i) in &open {
                let scope = history[i][i_scope].as_str().unwrap_or("");
                if !seen.contains(id.as_str()) && complete_scopes.contains(scope) {
                    history[i][i_to] = Cell::Ts(observed_at);
                    outcome.closed += 1;
                    changed = true;
                }
            }
        }
        if changed && observed_at < newest_change {
            return Err(Error::OutOfOrder {
                table: self.current.name.clone(),
                observed_at,
                newest: newest_change,
            });
        }
        history.extend(additions);
        history.sort_by(|a, b| (&a[0], &a[i_from]).cmp(&(&b[0], &b[i_from])));

        if changed {
            outcome.history_version =
                Some(lake.overwrite(&self.history, &history, metadata).await?);
        } else {
            outcome.history_version = lake
                .ensure(&self.history)
                .await?
                .version()
                .map(|v| v as i64);
        }

        // The current table is derived from history; rewrite it whenever it differs, which
        // also repairs a crash between the two commits.
        let mut current: Vec<Vec<Cell>> = history
            .into_iter()
            .filter(|r| r[i_to] == Cell::Null)
            .map(|mut r| {
                r.truncate(w + 1);
                r
            })
            .collect();
        current.sort();
        let mut stored_current = lake.read_rows(&self.current).await?;
        stored_current.sort();
        let exists = lake.version(&self.current.name).await?;
        outcome.current_version = if stored_current != current || exists.is_none() {
            drop(stored_current);
            Some(lake.overwrite(&self.current, &current, metadata).await?)
        } else {
            exists
        };
        Ok(outcome)
    }
}
