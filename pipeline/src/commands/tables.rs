//! `govlake tables` (what the lake holds, with the last run's reconciliation) and `govlake vacuum`
//! (old files out, pinned versions kept).

use std::collections::BTreeMap;

use anyhow::Context as _;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::Int64Type;
use serde::Serialize;

use super::{Access, ExitStatus, Printer, open_lake, text_table};
use crate::cli::{GlobalArgs, OutputFormat};
use govlake::lake::compact::CompactWhen;

/// One table's line.
#[derive(Debug, Serialize)]
pub struct TableInfo {
    /// Table name.
    pub table: String,
    /// Rows now.
    pub rows: Option<i64>,
    /// Delta version.
    pub version: Option<i64>,
    /// Last run that touched it: fetched, stored, duplicates, rejected.
    pub last_run: Option<LastRun>,
}

/// Reconciliation of the last run for a table.
#[derive(Debug, Serialize)]
pub struct LastRun {
    /// Run id.
    pub run_id: String,
    /// Records read.
    pub fetched: i64,
    /// Stored.
    pub stored: i64,
    /// Duplicates.
    pub duplicates: i64,
    /// Rejected.
    pub rejected: i64,
    /// fetched = stored + duplicates + rejected.
    pub reconciles: bool,
}

/// Collects the table list.
pub async fn collect(lake: &govlake::lake::Lake) -> anyhow::Result<Vec<TableInfo>> {
    let ctx = govlake::query::session(lake).await?;
    let mut last: BTreeMap<String, LastRun> = BTreeMap::new();
    if ctx.table_exist("_ingest_runs")? {
        let batches = ctx
            .sql("select table_name, run_id, fetched, stored, duplicates, rejected from _ingest_runs order by finished_at, run_id")
            .await?
            .collect()
            .await?;
        for b in &batches {
            let s = |i: usize| {
                deltalake::arrow::compute::cast(
                    b.column(i),
                    &deltalake::arrow::datatypes::DataType::Utf8,
                )
            };
            let names = s(0)?;
            let runs = s(1)?;
            let (names, runs) = (names.as_string::<i32>(), runs.as_string::<i32>());
            let n = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
            let (f, st, d, r) = (n(2), n(3), n(4), n(5));
            for row in 0..b.num_rows() {
                if names.is_null(row) {
                    continue;
                }
                last.insert(
                    names.value(row).to_string(),
                    LastRun {
                        run_id: runs.value(row).to_string(),
                        fetched: f.value(row),
                        stored: st.value(row),
                        duplicates: d.value(row),
                        rejected: r.value(row),
                        reconciles: f.value(row) == st.value(row) + d.value(row) + r.value(row),
                    },
                );
            }
        }
    }
    let mut out = Vec::new();
    for name in govlake::query::table_names() {
        let version = lake.version(&name).await?;
        let rows = if version.is_some() {
            let b = ctx
                .sql(&format!("select count(*) from \"{name}\""))
                .await
                .with_context(|| format!("Failed to count rows of `{name}`"))?
                .collect()
                .await?;
            b.first()
                .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
        } else {
            None
        };
        out.push(TableInfo {
            last_run: last.remove(&name),
            table: name,
            rows,
            version,
        });
    }
    Ok(out)
}

/// Prints the table list.
pub fn print(infos: &[TableInfo], printer: &Printer, location: &str) -> anyhow::Result<()> {
    if printer.format == OutputFormat::Json {
        return printer.json(
            "tables",
            "ok",
            &serde_json::json!({"lake": location, "tables": infos}),
        );
    }
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|t| {
            let (f, s, d, r, ok) = match &t.last_run {
                Some(l) => (
                    l.fetched.to_string(),
                    l.stored.to_string(),
                    l.duplicates.to_string(),
                    l.rejected.to_string(),
                    if l.reconciles {
                        "ok".to_string()
                    } else {
                        "MISMATCH".to_string()
                    },
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
            };
            vec![
                t.table.clone(),
                t.rows.map_or("(absent)".into(), |r| r.to_string()),
                t.version.map_or("-".into(), |v| v.to_string()),
                f,
                s,
                d,
                r,
                ok,
            ]
        })
        .collect();
    println!("Lake: {location}\n");
    print!(
        "{}",
        text_table(
            &[
                "table",
                "rows",
                "version",
                "last fetched",
                "stored",
                "duplicates",
                "rejected",
                "reconciles"
            ],
            &rows
        )
    );
    Ok(())
}

/// Runs `govlake tables`.
pub async fn run(global: &GlobalArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let lake = open_lake(global, "govlake-data", Access::Read).await?;
    let infos = collect(&lake).await?;
    print(&infos, printer, &lake.location().display())?;
    let ok = infos
        .iter()
        .all(|t| t.last_run.as_ref().is_none_or(|l| l.reconciles));
    Ok(if ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The tables `vacuum` (and a job's vacuum step) goes through: every lake table and
/// `_pack_pins`.
pub fn vacuumed_tables() -> Vec<String> {
    let mut tables = govlake::query::table_names();
    tables.push(govlake::lake::bookkeeping::PACK_PINS.to_string());
    tables
}

/// Runs `govlake vacuum`.
pub async fn vacuum(
    global: &GlobalArgs,
    args: &crate::cli::VacuumArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let lake = open_lake(global, "govlake-data", Access::Write).await?;
    let hours = args
        .retain_hours
        .unwrap_or(u64::from(lake.retention().deleted_file_retention_days) * 24);
    let tables = vacuumed_tables();
    let options = govlake::lake::retention::VacuumOptions {
        retention_hours: hours,
        dry_run: args.dry_run,
        full: args.full,
        allow_short_retention: args.allow_short_retention,
    };
    let report = govlake::lake::retention::vacuum(&lake, &tables, &options).await?;
    let deleted: usize = report.iter().map(|t| t.files_deleted).sum();
    if printer.format == OutputFormat::Json {
        printer.json(
            "vacuum",
            "ok",
            &serde_json::json!({
                "dry_run": args.dry_run, "retain_hours": hours, "files_deleted": deleted, "tables": report,
            }),
        )?;
        return Ok(ExitStatus::Success);
    }
    if printer.quiet == 0 {
        let rows: Vec<Vec<String>> = report
            .iter()
            .map(|t| {
                vec![
                    t.table.clone(),
                    t.files_deleted.to_string(),
                    t.pinned_versions
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        print!(
            "{}",
            text_table(
                &["table", &format!("files {verb}"), "versions kept for packs"],
                &rows
            )
        );
        println!(
            "{deleted} files {verb} (removed more than {hours} h ago, read by no current or pinned version)."
        );
    }
    Ok(ExitStatus::Success)
}

/// Runs `govlake optimize`: compacts the named tables (default: all but `_raw`), one commit
/// each, through a guarded handle (another writer's commit in between is a conflict, not a
/// silent rebase).
pub async fn optimize(
    global: &GlobalArgs,
    args: &crate::cli::OptimizeArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let lake = open_lake(global, "govlake-data", Access::Write)
        .await?
        .guarded();
    let known = vacuumed_tables();
    let tables: Vec<String> = if args.tables.is_empty() {
        known
            .into_iter()
            .filter(|t| t != govlake::lake::bookkeeping::RAW)
            .collect()
    } else {
        if let Some(t) = args.tables.iter().find(|t| !known.contains(t)) {
            anyhow::bail!(
                "`{t}` is not a lake table; `govlake tables` lists them (e.g. --table audit_events)"
            );
        }
        args.tables.clone()
    };
    let metadata = std::collections::HashMap::from([(
        "govlake.operation".to_string(),
        serde_json::json!("optimize"),
    )]);
    let mut report = vec![];
    for t in &tables {
        let schema = govlake::catalog::table_schema(t)
            .ok_or_else(|| anyhow::anyhow!("`{t}` is not a table govlake writes"))?;
        if let Some(c) = lake
            .compact(
                &schema,
                CompactWhen::table_holds(args.min_small_files),
                args.dry_run,
                &metadata,
            )
            .await?
        {
            report.push(c);
        }
    }
    lake.checkpoint_written_tables().await?;
    if printer.format == OutputFormat::Json {
        printer.json(
            "optimize",
            "ok",
            &serde_json::json!({ "dry_run": args.dry_run, "tables": report }),
        )?;
        return Ok(ExitStatus::Success);
    }
    if printer.quiet == 0 {
        let rows: Vec<Vec<String>> = report
            .iter()
            .map(|c| {
                vec![
                    c.table.clone(),
                    c.files_before.to_string(),
                    c.small_files.to_string(),
                    c.files_removed.to_string(),
                    c.files_added.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            text_table(
                &["table", "files", "small files", "rewritten", "written"],
                &rows
            )
        );
        let rewritten: u64 = report.iter().map(|c| c.files_removed).sum();
        if args.dry_run {
            println!("Dry run: nothing rewritten.");
        } else {
            println!(
                "{rewritten} files rewritten; the old ones stay for older versions until `govlake vacuum`."
            );
        }
    }
    Ok(ExitStatus::Success)
}
