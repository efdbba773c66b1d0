//! `govlake changes`: the rows the finding views gained, lost or changed between the end of
//! an ingest run and now (or another run), printed as a table, JSON or CSV, optionally sent
//! to the `[notify]` webhooks, with an exit code a scheduler can alert on.

use std::io::Write as _;

use anyhow::Context as _;
use govlake::query::changes::{self, Changes, Point};
use serde_json::{Map, Value};

use super::{Access, ExitStatus, Printer, open_lake, text_table};
use crate::cli::{ChangesArgs, ChangesFormat, FailOn, GlobalArgs, OutputFormat};

/// Runs `govlake changes`.
pub async fn run(
    global: &GlobalArgs,
    args: &ChangesArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let point = |flag: &str, text: &str| {
        Point::parse(text).map_err(|e| anyhow::anyhow!("`{flag} {text}`: {e}"))
    };
    let (since, until) = (
        point("--since", &args.since)?,
        point("--until", &args.until)?,
    );
    let files = super::report::queries(args.queries.as_deref())?;
    let config = govlake::config::PipelineConfig::load(global.config.as_deref())?;
    let memory = super::sql::memory_limit(args.memory_limit.as_deref(), &config)?;
    let lake = open_lake(global, "govlake-data", Access::Read).await?;
    let found = changes::compare(&lake, &files, &args.views, &since, &until, memory)
        .await
        .context("Failed to compare the finding views")?;
    let format = match (printer.format, args.output) {
        (OutputFormat::Json, ChangesFormat::Table) => ChangesFormat::Json,
        (_, o) => o,
    };
    print(&found, format, printer)?;
    let mut status = match args.fail_on {
        Some(FailOn::New) if found.added() > 0 => ExitStatus::Failure,
        Some(FailOn::Any) if found.total() > 0 => ExitStatus::Failure,
        _ => ExitStatus::Success,
    };
    if args.notify {
        let deliveries = govlake::notify::send(&config.notify, &message(&found, None)).await;
        for d in deliveries.iter().filter(|d| d.failed()) {
            eprintln!("error: notification `{}` {}", d.webhook, d.outcome);
            status = ExitStatus::Failure;
        }
    }
    Ok(status)
}

/// The message the webhooks get about these changes (and the pack, when one was built).
pub fn message(found: &Changes, pack: Option<String>) -> govlake::notify::Message {
    let lines: Vec<String> = found
        .views
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, v)| {
            format!(
                "{name}: {} added, {} removed, {} changed",
                v.added.len(),
                v.removed.len(),
                v.changed.len()
            )
        })
        .collect();
    let since = found
        .since
        .run_id
        .as_deref()
        .map_or("now".to_string(), |r| format!("run {r}"));
    let title = match found.added() {
        0 if found.total() == 0 => format!("govlake: no changes in the findings since {since}"),
        0 => format!(
            "govlake: {} finding(s) changed or resolved since {since}",
            found.total()
        ),
        n => format!("govlake: {n} new finding(s) since {since}"),
    };
    govlake::notify::Message {
        title,
        lines,
        pack,
        added: found.added(),
        changed: found.total(),
        document: serde_json::to_value(found).unwrap_or(Value::Null),
    }
}

fn key_text(key: &[String], row: &Map<String, Value>) -> String {
    key.iter()
        .map(|k| format!("{k}={}", cell(row.get(k))))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Prints the changes in the chosen format on stdout.
pub fn print(found: &Changes, format: ChangesFormat, printer: &Printer) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    match format {
        ChangesFormat::Json => {
            serde_json::to_writer_pretty(&mut out, found)?;
            writeln!(out)?;
        }
        ChangesFormat::Csv => {
            govlake::report::csv::write_line(
                &mut out,
                &["view", "change", "key", "columns", "row", "before"],
            )?;
            for (view, v) in &found.views {
                let key = &v.key;
                let json = |r: &Map<String, Value>| serde_json::to_string(r).unwrap_or_default();
                for (change, rows) in [("added", &v.added), ("removed", &v.removed)] {
                    for r in rows {
                        let k = key_text(key, r);
                        govlake::report::csv::write_line(
                            &mut out,
                            &[view.as_str(), change, &k, "", &json(r), ""],
                        )?;
                    }
                }
                for c in &v.changed {
                    govlake::report::csv::write_line(
                        &mut out,
                        &[
                            view.as_str(),
                            "changed",
                            &key_text(&c.key.keys().cloned().collect::<Vec<_>>(), &c.key),
                            &c.columns.join(" "),
                            &json(&c.after),
                            &json(&c.before),
                        ],
                    )?;
                }
            }
        }
        ChangesFormat::Table => {
            let state = |s: &changes::State| match (&s.run_id, &s.observed_at) {
                (Some(r), Some(o)) => format!("the end of run {r} (snapshots of {o})"),
                _ => "now".to_string(),
            };
            writeln!(
                out,
                "Changes from {} to {}:",
                state(&found.since),
                state(&found.until)
            )?;
            for (view, v) in &found.views {
                if v.is_empty() {
                    if printer.quiet == 0 {
                        writeln!(out, "\n{view}: no changes")?;
                    }
                    continue;
                }
                writeln!(
                    out,
                    "\n{view}: {} added, {} removed, {} changed",
                    v.added.len(),
                    v.removed.len(),
                    v.changed.len()
                )?;
                let key = &v.key;
                let mut rows: Vec<Vec<String>> = Vec::new();
                for (change, list) in [("added", &v.added), ("removed", &v.removed)] {
                    rows.extend(
                        list.iter()
                            .map(|r| vec![change.to_string(), key_text(key, r), String::new()]),
                    );
                }
                rows.extend(v.changed.iter().map(|c| {
                    vec![
                        "changed".to_string(),
                        key_text(&c.key.keys().cloned().collect::<Vec<_>>(), &c.key),
                        c.columns.join(", "),
                    ]
                }));
                write!(
                    out,
                    "{}",
                    text_table(&["change", "key", "columns changed"], &rows)
                )?;
            }
        }
    }
    out.flush().context("Cannot write the result")?;
    Ok(())
}
