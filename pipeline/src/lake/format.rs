//! The lake's format version: which layout of tables a lake holds and which govlake wrote
//! it, recorded in the `_govlake` table (one row per creation or migration).
//!
//! Every command checks it when it opens the lake ([`check`]): the same version proceeds; an
//! older one proceeds only for what its migration steps allow without work (reading, or
//! also writing); otherwise the command stops and names `govlake migrate`; a newer one
//! than this binary knows is refused, read or write, and never written into. A lake written
//! before versions were recorded (no `_govlake` table, but an `_ingest_runs` table) is
//! version 0. [`STEPS`] lists what `govlake migrate` does from each version to the next.

use std::collections::HashMap;

use super::bookkeeping::{INGEST_RUNS, RAW};
use super::error::{Error, Result};
use super::row::{Cell, Column, ColumnType, TableSchema};
use super::table::Lake;

/// The format this govlake writes.
pub const FORMAT_VERSION: i64 = 3;

/// The format-version table.
pub const GOVLAKE: &str = "_govlake";

/// `_govlake`: one row per format change (creation, each migration step, each rebuild).
pub fn govlake_schema() -> TableSchema {
    let col = |name: &str, ty| Column {
        name: name.into(),
        ty,
    };
    TableSchema {
        name: GOVLAKE.into(),
        columns: vec![
            col("format_version", ColumnType::Int),
            col("govlake_version", ColumnType::Str),
            col("action", ColumnType::Str),
            col("at", ColumnType::Timestamp),
        ],
        partition_by: vec![],
    }
}

/// One step of `govlake migrate`: from `from` to `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The version the step starts from.
    pub from: i64,
    /// What the step does, for `migrate --dry-run` and the README.
    pub does: &'static str,
    /// Whether this govlake may read a lake of version `from` as it is (queries, reports).
    pub readable_as_is: bool,
    /// Whether this govlake may also write into it without migrating first.
    pub writable_as_is: bool,
}

/// The migration steps, in order; `STEPS[i].from == i`.
pub const STEPS: &[Step] = &[
    Step {
        from: 0,
        does: "record the lake format in a `_govlake` table, add the columns this govlake's \
           bookkeeping tables have and the lake's lack, and rebuild every typed table and \
           its `_history` from `_raw` with this govlake's mapping (lakes written before \
           format versions existed may hold rows mapped by older code, whose row hashes \
           would make the next ingest store every object again)",
        readable_as_is: true,
        writable_as_is: false,
    },
    Step {
        from: 1,
        does: "store each audit event's links to the requests it is about in a table \
               `audit_event_requests`, filled from the lake's `audit_event_target_resources` \
               and `audit_event_additional_details` by the link rule the approval views \
               used to apply at every query (format 1 lakes are still read through that \
               rule until they are migrated)",
        readable_as_is: true,
        writable_as_is: false,
    },
    Step {
        from: 2,
        does: "store with each of those links the event's columns and additional details \
               the approval trail shows (activity, time, result, who acted, approval stage, \
               justification, external correlation id, escalation), so its steps are read \
               from one table instead of joining every linked event with `audit_events` and \
               `audit_event_additional_details` at every query (format 2 lakes are still \
               read through that join until they are migrated)",
        readable_as_is: true,
        writable_as_is: false,
    },
];

/// What a command intends to do with the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Queries, reports, verification.
    Read,
    /// Ingest, packs, vacuum: anything that commits.
    Write,
}

/// The format found at a lake location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No govlake lake here (no `_ingest_runs`, no `_govlake`).
    NoLake,
    /// A lake of this format version (0: written before versions were recorded).
    Version(i64),
}

/// Reads the lake's format version.
pub async fn found(lake: &Lake) -> Result<Found> {
    if lake.table_exists(GOVLAKE).await? {
        let mut newest = None::<i64>;
        lake.scan_strings(GOVLAKE, &["format_version"], |v| {
            if let Some(n) = v[0].and_then(|s| s.parse::<i64>().ok()) {
                newest = Some(newest.map_or(n, |m| m.max(n)));
            }
        })
        .await?;
        // An empty `_govlake` (a stamp killed between creating the table and writing its
        // row) says nothing: what else the lake holds decides.
        if let Some(v) = newest {
            return Ok(Found::Version(v));
        }
    }
    // Any of the tables every govlake writes (a first run killed before its bookkeeping
    // still left `_raw`): a lake from before format versions.
    for table in [INGEST_RUNS, RAW] {
        if lake.table_exists(table).await? {
            return Ok(Found::Version(0));
        }
    }
    // Nothing, or only an empty stamp of a lake this govlake began to create.
    Ok(Found::NoLake)
}

/// Checks that this govlake may use the lake for `intent`. A location with no lake passes
/// (the caller decides whether it may create one); [`stamp_new`] records the format of a
/// lake this govlake creates.
pub async fn check(lake: &Lake, intent: Intent) -> Result<Found> {
    let found = found(lake).await?;
    let Found::Version(version) = found else {
        return Ok(found);
    };
    if version > FORMAT_VERSION {
        return Err(Error::FormatTooNew {
            location: lake.location().display(),
            version,
            known: FORMAT_VERSION,
        });
    }
    if version < FORMAT_VERSION {
        let pending = &STEPS[version.max(0) as usize..];
        let allowed = match intent {
            Intent::Read => pending.iter().all(|s| s.readable_as_is),
            Intent::Write => pending.iter().all(|s| s.writable_as_is),
        };
        if !allowed {
            return Err(Error::NeedsMigration {
                location: lake.location().display(),
                version,
                current: FORMAT_VERSION,
            });
        }
        tracing::warn!(
            "The lake at {} is in format {version}, this govlake writes format {FORMAT_VERSION}; run `govlake migrate` to upgrade it.",
            lake.location().display()
        );
    }
    Ok(found)
}

/// When the lake first reached format `version` or a later one (UTC micros of the
/// `_govlake` row that says so: a creation, a migration step or a rebuild), `None` when it
/// has not. A row is written after the work it records, so every commit of the lake at or
/// after this time was made in that format.
pub async fn since(lake: &Lake, version: i64) -> Result<Option<i64>> {
    let mut first = None::<i64>;
    let sql = format!(
        "select cast(min(\"at\") as bigint) from \"{GOVLAKE}\" where format_version >= {version}"
    );
    lake.scan_sql(GOVLAKE, &sql, |v| {
        first = v[0].and_then(|s| s.parse().ok());
    })
    .await?;
    Ok(first)
}

/// Appends a `_govlake` row.
pub async fn record(lake: &Lake, version: i64, action: &str) -> Result<()> {
    let row = vec![
        Cell::Int(version),
        Cell::Str(env!("CARGO_PKG_VERSION").into()),
        Cell::Str(action.into()),
        Cell::Ts(chrono::Utc::now().timestamp_micros()),
    ];
    lake.append(&govlake_schema(), &[row], &HashMap::new())
        .await?;
    Ok(())
}

/// Prepares a lake for a writer that may create it (ingest): a new lake is stamped with the
/// current format before anything else is written; an existing one must pass [`check`].
pub async fn prepare_for_write(lake: &Lake) -> Result<()> {
    if check(lake, Intent::Write).await? == Found::NoLake {
        record(lake, FORMAT_VERSION, "created").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_step_per_version_below_the_current_one() {
        assert_eq!(STEPS.len() as i64, FORMAT_VERSION);
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(s.from, i as i64, "STEPS[{i}] starts from {}", s.from);
            assert!(!s.does.is_empty());
            // A lake a step may write into as it is can be read as it is too.
            assert!(!s.writable_as_is || s.readable_as_is);
        }
    }
}
