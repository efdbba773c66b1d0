//! `govlake ingest`: export files → lake, with a progress bar and a reconciliation summary
//! (`summary.rs` prints both); `--graph` and `--log-analytics` go to `live.rs`.

use anyhow::Context as _;
use govlake::ingest::IngestSettings;

use super::summary::{ingest_with_progress, print_summary};
use super::{Access, ExitStatus, Printer, open_lake};
use crate::cli::{GlobalArgs, IngestArgs};

/// Runs `govlake ingest`.
pub async fn run(
    global: &GlobalArgs,
    args: &IngestArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let lake = open_lake(global, "govlake-data", Access::Create).await?;
    let observed_at = match &args.observed_at {
        Some(s) => Some(govlake::time::parse_ts(s).with_context(|| {
            format!(
                "`--observed-at {s}` is not a timestamp (use RFC 3339, e.g. 2026-10-01T06:00:00Z)"
            )
        })?),
        None => None,
    };
    if args.graph || args.log_analytics.is_some() {
        return super::live::run(&lake, args, observed_at, printer).await;
    }
    let settings = IngestSettings {
        inputs: args.from.clone(),
        observed_at,
        chunk_rows: args.chunk_rows.max(1),
        commit_rows: args.commit_rows.max(1),
        dedupe_keys_in_memory: args.dedupe_keys_in_memory.max(1),
        compact_past_small_files: args.compact_past_small_files,
        compact_past_small_files_in_a_partition: args.compact_past_small_files_in_a_partition,
        ..IngestSettings::default()
    };
    let summary = ingest_with_progress(&lake, &settings, printer).await?;
    let failed = (summary.rejected > 0 && !args.allow_rejects)
        || (!summary.snapshot_gaps.is_empty() && !args.allow_gaps);
    print_summary("ingest", &summary, printer, failed)?;
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
