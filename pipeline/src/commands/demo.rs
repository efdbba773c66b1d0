//! `govlake demo`: ingest the bundled sample tenant into a local lake, show what it holds and
//! write its signed evidence pack for the quarter.

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
    let pack = demo_pack(&lake, args, printer).await?;
    if printer.format == OutputFormat::Json {
        printer.json(
            "demo",
            "ok",
            &serde_json::json!({"ingest": summary, "tables": infos, "pack": pack}),
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
    println!(
        "\nEvidence pack for {}: {} files, {} SoD violations, signed by key {}. Check it: govlake verify {} --public-key {}.pub",
        args.period,
        pack.files,
        pack.sod_violations,
        pack.signed_by.as_deref().unwrap_or("-"),
        pack.dir.display(),
        args.pack.display()
    );
    println!("{}", pack.index.display());
    Ok(if summary.rejected > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// Writes the demo's evidence pack, replacing the previous one (only if it is a pack), with
/// a key pair made on the first run.
async fn demo_pack(
    lake: &govlake::lake::Lake,
    args: &DemoArgs,
    printer: &Printer,
) -> anyhow::Result<govlake::report::pack::PackSummary> {
    use govlake::report::sign::SecretKey;
    let key_path = PathBuf::from(format!("{}.key", args.pack.display()));
    let key = if key_path.is_file() {
        SecretKey::parse(&std::fs::read_to_string(&key_path)?)?
    } else {
        let key = SecretKey::generate()?;
        super::report::write_secret(&key_path, &key.to_file_text())?;
        std::fs::write(
            format!("{}.pub", args.pack.display()),
            key.public().to_file_text(),
        )?;
        key
    };
    if args.pack.join(govlake::report::pack::BAGIT).is_file() {
        std::fs::remove_dir_all(&args.pack)?;
    }
    let settings = govlake::report::pack::PackSettings {
        out: args.pack.clone(),
        period: govlake::report::Period::quarter(&args.period)?,
        as_of: govlake::query::AsOf::Latest,
        queries: govlake::query::views::embedded(),
        templates: None,
        key: Some(key),
        archive: true,
        samples: vec![("approval_trail".into(), 25, 7)],
    };
    let tar = PathBuf::from(format!("{}.tar", args.pack.display()));
    if tar.is_file() {
        std::fs::remove_file(&tar)?;
    }
    let summary = super::report::build_pack(lake, &settings, printer).await?;
    super::report::pin_pack(lake, &summary, &settings.period.label).await?;
    Ok(summary)
}
