//! `govlake demo`: ingest the bundled sample tenant into a local lake and show what it holds.

use std::path::PathBuf;

use govlake::ingest::IngestSettings;

use super::{ExitStatus, Printer, open_lake};
use crate::cli::{DemoArgs, GlobalArgs, OutputFormat};

/// Finds sample-data/: the flag, else ./sample-data, else the source checkout's.
fn sample_dir(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.sample_data {
        return Ok(p.clone());
    }
    for candidate in [
        PathBuf::from("sample-data"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample-data"),
    ] {
        if candidate.join("_export.json").is_file() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "Cannot find the sample tenant: run from the govlake checkout or pass `--sample-data DIR` (make one with `govlake generate --out DIR`)"
    )
}

/// Runs `govlake demo`.
pub async fn run(
    global: &GlobalArgs,
    args: &DemoArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let dir = sample_dir(args)?;
    let lake = open_lake(global, "govlake-demo")?;
    let settings = IngestSettings {
        inputs: vec![dir.clone()],
        ..IngestSettings::default()
    };
    let summary = super::ingest::ingest_with_progress(&lake, &settings, printer).await?;
    let infos = super::tables::collect(&lake).await?;
    if printer.format == OutputFormat::Json {
        printer.json(
            "demo",
            "ok",
            &serde_json::json!({"ingest": summary, "tables": infos}),
        )?;
        return Ok(ExitStatus::Success);
    }
    println!("Ingested the sample tenant from {}.", dir.display());
    println!(
        "{} files, {} records in {:.2} s ({:.0} records/s); snapshots observed at {}.\n",
        summary.files,
        summary.records,
        summary.elapsed_secs,
        summary.records_per_sec(),
        summary.observed_at
    );
    super::tables::print(&infos, printer, &lake.location().display())?;
    println!(
        "\nThe lake is plain Delta Lake: point Spark, DuckDB (delta_scan) or Polars at {} to read it.",
        lake.location().display()
    );
    let at = lake.location().display();
    println!(
        "Run `govlake --lake {at} tables` to see it again; rerun the demo and nothing is stored twice."
    );
    println!(
        "Ask it a question: govlake --lake {at} sql -c \"select user_principal_name, both_held_since, grandfathered from sod_violations\""
    );
    Ok(if summary.rejected > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
