//! Errors of the lake stage (object storage and Delta tables).

use std::path::PathBuf;

/// Result of lake operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while reading or writing the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--lake` location could not be understood.
    #[error("Cannot use `{location}` as a lake location: {reason}")]
    BadLocation {
        /// What the user gave.
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// A local lake folder could not be created.
    #[error("Failed to create the lake folder `{}`", path.display())]
    CreateDir {
        /// Folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A Delta operation failed.
    #[error("Delta operation on table `{table}` failed while {action}")]
    Delta {
        /// Table name.
        table: String,
        /// What was being done.
        action: &'static str,
        /// Cause.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// Reading a table through DataFusion failed.
    #[error("Failed to read table `{table}`")]
    Query {
        /// Table name.
        table: String,
        /// Cause.
        #[source]
        source: Box<deltalake::datafusion::error::DataFusionError>,
    },
    /// Building Arrow data failed.
    #[error("Failed to build Arrow data for table `{table}`")]
    Arrow {
        /// Table name.
        table: String,
        /// Cause.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// A snapshot older than what the lake already holds would rewrite history.
    #[error("Table `{table}` already holds changes observed at {} but this input was observed at {}; ingest exports in time order (or pass a later `--observed-at`)", crate::time::fmt_ts(*newest), crate::time::fmt_ts(*observed_at))]
    OutOfOrder {
        /// Table.
        table: String,
        /// This run's observation time (UTC micros).
        observed_at: i64,
        /// Newest change in the table (UTC micros).
        newest: i64,
    },
    /// A pinned table version is not (or no longer) in the lake.
    #[error("Table `{table}` version {version} is no longer available{}: it was vacuumed or never written, so results pinned to it cannot be reproduced", latest.map(|l| format!(" (the table is at version {l})")).unwrap_or_else(|| " (the table does not exist)".into()))]
    VersionUnavailable {
        /// Table.
        table: String,
        /// Requested version.
        version: i64,
        /// The table's newest version, if it exists.
        latest: Option<i64>,
    },
    /// `govlake vacuum` was asked for a retention below the safe minimum.
    #[error(
        "Refusing to vacuum with a retention of {hours} h, below the safe minimum of {minimum} h (7 days): files removed sooner may still be read by a reader of an older version. Pass `--allow-short-retention` to vacuum anyway (files no commit references stay for at least an hour either way)"
    )]
    ShortRetention {
        /// The retention asked for.
        hours: u64,
        /// The minimum without the override.
        minimum: u64,
    },
    /// Vacuum could not delete a file.
    #[error("Failed to delete `{file}` of table `{table}` while vacuuming")]
    Vacuum {
        /// Table.
        table: String,
        /// File, relative to the table.
        file: String,
        /// Cause.
        #[source]
        source: Box<deltalake::logstore::object_store::Error>,
    },
    /// Another writer committed to a table between this run's read and its commit.
    #[error("Table `{table}` was changed by another writer while this run was writing (this run read version {}, the table is now at {}); this run's commit was not made. Wait for the other `govlake ingest` to finish, then rerun: records already stored are skipped", fmt_version(*expected), fmt_version(*found))]
    Conflict {
        /// Table.
        table: String,
        /// The version this run read or last wrote.
        expected: Option<i64>,
        /// The version found at commit time.
        found: Option<i64>,
    },
    /// The lake was written by a newer govlake than this one.
    #[error(
        "The lake at `{location}` is in format {version}, newer than the format {known} this govlake knows; it was written by a newer govlake. Upgrade govlake to use it (nothing was read or written)"
    )]
    FormatTooNew {
        /// Lake location.
        location: String,
        /// The lake's format version.
        version: i64,
        /// The newest format this binary knows.
        known: i64,
    },
    /// The lake is in an older format that must be migrated before this use.
    #[error(
        "The lake at `{location}` is in format {version}; this govlake writes format {current}. Run `govlake --lake {location} migrate` to upgrade it (`migrate --dry-run` lists the steps; back up the lake folder or bucket first)"
    )]
    NeedsMigration {
        /// Lake location.
        location: String,
        /// The lake's format version.
        version: i64,
        /// The format this govlake writes.
        current: i64,
    },
}

fn fmt_version(v: Option<i64>) -> String {
    v.map_or_else(|| "none (no table)".into(), |v| v.to_string())
}
