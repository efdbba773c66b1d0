//! An ingest's output, shared by `ingest`, `ingest --graph`, `demo` and `job run`: the byte
//! progress bar on stderr while it runs, and the reconciliation summary on stdout (a table per
//! Delta table, throughput, rejects and snapshot gaps; or JSON).

use anyhow::Context as _;
use govlake::ingest::{self, IngestSettings, IngestSummary};

use super::{Printer, text_table};
use crate::cli::OutputFormat;

/// An ingest's byte progress bar on stderr (hidden when progress is off).
pub struct IngestBar(indicatif::ProgressBar);

impl IngestBar {
    /// A new bar.
    pub fn new(printer: &Printer) -> Self {
        Self(printer.bytes_bar("ingest"))
    }

    /// Bytes read of the total, and records so far.
    pub fn update(&self, done: u64, total: u64, records: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.set_prefix(format!("{records} records"));
    }

    /// Clears the bar.
    pub fn finish(self) {
        self.0.finish_and_clear();
    }
}

/// Runs an ingest with a byte progress bar on stderr.
pub async fn ingest_with_progress(
    lake: &govlake::lake::Lake,
    settings: &IngestSettings,
    printer: &Printer,
) -> anyhow::Result<IngestSummary> {
    let bar = IngestBar::new(printer);
    let summary = ingest::run(lake, settings, &|done, total, records| {
        bar.update(done, total, records)
    })
    .await
    .with_context(|| format!("Failed to ingest into `{}`", lake.location().display()))?;
    bar.finish();
    Ok(summary)
}

/// Prints an ingest summary (text or JSON) on stdout.
pub fn print_summary(
    command: &str,
    s: &IngestSummary,
    printer: &Printer,
    failed: bool,
) -> anyhow::Result<()> {
    if printer.format == OutputFormat::Json {
        let status = if !s.snapshot_gaps.is_empty() {
            "incomplete"
        } else if s.rejected > 0 {
            "rejects"
        } else {
            "ok"
        };
        return printer.json(command, status, s);
    }
    if printer.quiet > 0 && !failed {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = s
        .tables
        .iter()
        .map(|(t, c)| {
            vec![
                t.clone(),
                c.fetched.to_string(),
                c.stored.to_string(),
                c.duplicates.to_string(),
                c.rejected.to_string(),
                c.closed.to_string(),
                c.version.map_or("-".into(), |v| v.to_string()),
                if c.reconciles() {
                    "ok".into()
                } else {
                    "MISMATCH".into()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        text_table(
            &[
                "table",
                "fetched",
                "stored",
                "duplicates",
                "rejected",
                "closed",
                "version",
                "fetched=stored+dup+rej"
            ],
            &rows
        )
    );
    println!(
        "Read {} files, {} records, {:.1} MB in {:.2} s: {:.1} MB/s, {:.0} records/s. Snapshots observed at {}.",
        s.files,
        s.records,
        s.bytes as f64 / 1e6,
        s.elapsed_secs,
        s.mb_per_sec(),
        s.records_per_sec(),
        s.observed_at
    );
    println!("Lake: {} (run {})", s.lake, s.run_id);
    if s.rejected > 0 {
        println!(
            "\n{} record(s) rejected and quarantined in `_rejects`:",
            s.rejected
        );
        for n in &s.reject_notes {
            let at = if n.location.is_empty() {
                String::new()
            } else {
                format!(" ({})", n.location)
            };
            println!("  {}{}: [{}] {}", n.source, at, n.entity, n.reason);
        }
        if s.reject_notes.len() as u64 > 0 && (s.reject_notes.len() as u64) < s.rejected {
            println!("  … see `_rejects` for all of them.");
        }
    }
    print_snapshot_gaps(s);
    for c in &s.compacted {
        println!(
            "Compacted `{}`: {} files rewritten as {} (of {} files).",
            c.table, c.files_removed, c.files_added, c.files_before
        );
    }
    Ok(())
}

/// Names the snapshot scopes a run did not read whole (their objects were kept open).
fn print_snapshot_gaps(s: &IngestSummary) {
    if s.snapshot_gaps.is_empty() {
        return;
    }
    println!(
        "\nCoverage gap: {} snapshot scope(s) were not read whole, so nothing missing from them was closed (history stays as it was):",
        s.snapshot_gaps.len()
    );
    for g in s.snapshot_gaps.iter().take(20) {
        let scope = if g.scope.is_empty() {
            String::new()
        } else {
            format!(" `{}`", g.scope)
        };
        println!("  {}{}: {}", g.table, scope, g.reason);
    }
    if s.snapshot_gaps.len() > 20 {
        println!(
            "  … {} more (see `_ingest_runs.status`).",
            s.snapshot_gaps.len() - 20
        );
    }
    println!(
        "  Ingest the whole export (every page of each listing) to close what left the tenant; --allow-gaps exits 0 all the same."
    );
}
