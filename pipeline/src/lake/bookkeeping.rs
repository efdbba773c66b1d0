//! The lake's own tables: `_raw` (every distinct object version verbatim), `_rejects`
//! (quarantined input with its reason) and `_ingest_runs` (per run and table: fetched,
//! stored, duplicates, rejected, watermark and Delta version) and `_pack_pins` (the table
//! versions each evidence pack read).

use super::row::{Column, ColumnType, TableSchema};

/// Raw layer table name.
pub const RAW: &str = "_raw";
/// Quarantine table name.
pub const REJECTS: &str = "_rejects";
/// Run bookkeeping table name.
pub const INGEST_RUNS: &str = "_ingest_runs";
/// Table versions read by evidence packs (kept by `govlake vacuum`).
pub const PACK_PINS: &str = "_pack_pins";

fn schema(name: &str, cols: &[(&str, ColumnType)], partition_by: &[&str]) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns: cols
            .iter()
            .map(|(n, t)| Column {
                name: (*n).into(),
                ty: *t,
            })
            .collect(),
        partition_by: partition_by.iter().map(|s| (*s).into()).collect(),
    }
}

/// Every bookkeeping table's schema: `_raw`, `_rejects`, `_ingest_runs`, `_pack_pins`.
pub fn schemas() -> [TableSchema; 4] {
    [
        raw_schema(),
        rejects_schema(),
        ingest_runs_schema(),
        pack_pins_schema(),
    ]
}

/// `_raw`: one row per distinct (entity, object version), the JSON as received.
pub fn raw_schema() -> TableSchema {
    use ColumnType::*;
    schema(
        RAW,
        &[
            ("entity", Str),
            ("id", Str),
            ("record_hash", Str),
            ("source", Str),
            ("run_id", Str),
            ("fetched_at", Timestamp),
            ("json", Json),
        ],
        &["entity"],
    )
}

/// `_rejects`: input that could not be stored, with the reason.
pub fn rejects_schema() -> TableSchema {
    use ColumnType::*;
    schema(
        REJECTS,
        &[
            ("reject_hash", Str),
            ("run_id", Str),
            ("rejected_at", Timestamp),
            ("source", Str),
            ("location", Str),
            ("entity", Str),
            ("record_id", Str),
            ("reason", Str),
            ("raw", Str),
        ],
        &[],
    )
}

/// `_ingest_runs`: one row per run and table.
pub fn ingest_runs_schema() -> TableSchema {
    use ColumnType::*;
    schema(
        INGEST_RUNS,
        &[
            ("run_id", Str),
            ("started_at", Timestamp),
            ("finished_at", Timestamp),
            ("observed_at", Timestamp),
            ("sources", Str),
            ("table_name", Str),
            ("fetched", Int),
            ("stored", Int),
            ("duplicates", Int),
            ("rejected", Int),
            ("closed", Int),
            ("watermark", Timestamp),
            ("table_version", Int),
            ("status", Str),
        ],
        &[],
    )
}

/// `_pack_pins`: one row per evidence pack and table version it read.
pub fn pack_pins_schema() -> TableSchema {
    use ColumnType::*;
    schema(
        PACK_PINS,
        &[
            ("pack_id", Str),
            ("period", Str),
            ("location", Str),
            ("pinned_at", Timestamp),
            ("table_name", Str),
            ("version", Int),
        ],
        &[],
    )
}
