//! `govlake job run`: the one command a scheduler calls. Under the lake's lease (one job at a
//! time per lake, `lake::lease`), it runs the `[job]` steps of the config file in order —
//! ingest from Graph and export folders, vacuum, the changes of the finding views since the
//! previous run, the quarter's evidence pack when a quarter has closed and none of it is
//! pinned yet, notifications — records each step's outcome in `_ingest_runs` (one row per
//! step, `table_name` `job:<step>`, the job id as `run_id`) and prints one summary. Exit 0:
//! done; 1: done, something needs a person (new findings, rejects, a coverage gap, a failed
//! notification); 2: error (the lease is held, bad config, a step failed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use govlake::config::{AlertOn, PipelineConfig};
use govlake::lake::Cell;
use govlake::query::changes::{self, Changes, Point};
use govlake::report::period::Period;
use serde::Serialize;

use super::{Access, ExitStatus, Printer, open_lake};
use crate::cli::{GlobalArgs, JobRunArgs, OutputFormat};

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `ingest graph`, `ingest <folder>`, `vacuum`, `changes`, `pack`, `notify <name>`.
    pub step: String,
    /// `ok`, `attention` (done, a person should look), `skipped` or `failed`.
    pub outcome: String,
    /// What happened, in a sentence.
    pub detail: String,
    /// The step's own summary (ingest counts, changes, pack), when it has one.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// The job's summary (`--format json`: its `summary`).
#[derive(Debug, Serialize)]
pub struct JobSummary {
    /// The job's id (the `run_id` of its `_ingest_runs` step rows).
    pub job_id: String,
    /// The lake.
    pub lake: String,
    /// The lease holder (this job).
    pub holder: Option<govlake::lake::lease::Holder>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

fn step(name: &str, outcome: &str, detail: String, data: serde_json::Value) -> Step {
    Step {
        step: name.to_string(),
        outcome: outcome.to_string(),
        detail,
        data,
    }
}

/// The quarter that last closed before `at` (UTC micros).
pub fn closed_quarter(at: i64) -> anyhow::Result<Period> {
    use chrono::Datelike as _;
    let t =
        chrono::DateTime::from_timestamp_micros(at).context("the job's time is out of range")?;
    let q = (t.month() - 1) / 3 + 1;
    let (year, q) = if q == 1 {
        (t.year() - 1, 4)
    } else {
        (t.year(), q - 1)
    };
    Ok(Period::quarter(&format!("{year}Q{q}"))?)
}

/// A relative path in the config file is taken from the file's folder.
fn from_config(config: &PipelineConfig, p: &Path) -> PathBuf {
    match config.source.as_deref().and_then(Path::parent) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// `<out>/<quarter>` for a folder or a URL.
fn pack_target(out: &str, label: &str) -> String {
    format!("{}/{label}", out.trim_end_matches('/'))
}

/// The plan, one line per step, without touching the tenant or the lake.
fn plan(global: &GlobalArgs, config: &PipelineConfig, at: i64) -> anyhow::Result<Vec<String>> {
    let job = &config.job;
    let lake = global
        .lake
        .clone()
        .or(config.lake.location.clone())
        .unwrap_or_else(|| "govlake-data".into());
    let mut lines = vec![format!(
        "take the lease `{}` of the lake `{lake}` (lifetime {} s, renewed every {} s)",
        govlake::lake::lease::LEASE_OBJECT,
        job.lease_ttl_secs,
        job.lease_ttl_secs / 3
    )];
    if job.graph {
        lines.push("ingest live from Microsoft Graph (sign-in from the environment, as `govlake ingest --graph`)".into());
        if let Some(ws) = &job.log_analytics_workspace {
            lines.push(format!("if the audit window reaches past Graph's retention: backfill it from the Log Analytics workspace `{ws}`"));
        }
    }
    for e in &job.exports {
        lines.push(format!(
            "ingest the export `{}`",
            from_config(config, e).display()
        ));
    }
    if job.vacuum {
        lines.push(format!(
            "vacuum, keeping files removed less than {} h ago and every version a pack pinned",
            job.vacuum_retain_hours
                .unwrap_or(u64::from(config.lake.retention.deleted_file_retention_days) * 24)
        ));
    }
    if job.changes {
        lines.push(format!(
            "report the changes of {} since the previous run (exit 1 on {:?} changes)",
            if job.views.is_empty() {
                "every finding view".to_string()
            } else {
                job.views.join(", ")
            },
            job.alert_on
        ));
    }
    if let Some(p) = &job.pack {
        let q = closed_quarter(at)?;
        lines.push(format!(
            "build, sign, publish to `{}` and pin the {} evidence pack, unless a pack of {} is pinned already",
            pack_target(&p.out, &q.label),
            q.label,
            q.label
        ));
    }
    for w in &config.notify.webhooks {
        lines.push(format!(
            "notify `{}` ({:?}, URL from {}) on {:?}",
            w.name, w.kind, w.url_env, w.on
        ));
    }
    Ok(lines)
}

/// Runs `govlake job run`.
pub async fn run(
    global: &GlobalArgs,
    args: &JobRunArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let config = PipelineConfig::load(global.config.as_deref())?;
    let job = config.job.clone();
    let at = match &args.at {
        Some(s) => govlake::time::parse_ts(s)
            .with_context(|| format!("`--at {s}` is not an RFC 3339 time"))?,
        None => chrono::Utc::now().timestamp_micros(),
    };
    if !job.graph && job.exports.is_empty() && !job.changes && job.pack.is_none() {
        anyhow::bail!(
            "The config file's [job] section gives nothing to do: set `graph = true`, `exports = [...]`, `changes = true` or a [job.pack]"
        );
    }
    if args.dry_run {
        let lines = plan(global, &config, at)?;
        if printer.format == OutputFormat::Json {
            printer.json("job", "dry-run", &serde_json::json!({ "plan": lines }))?;
        } else {
            println!("Plan (dry run: nothing is read or written):");
            for (i, l) in lines.iter().enumerate() {
                println!("  {}. {l}", i + 1);
            }
        }
        return Ok(ExitStatus::Success);
    }

    let lake = open_lake(global, "govlake-data", Access::Create).await?;
    let job_id = uuid::Uuid::new_v4().to_string();
    let lease = govlake::lake::lease::acquire(
        lake.location(),
        &job_id,
        Duration::from_secs(job.lease_ttl_secs.max(3)),
        args.wait.map(Duration::from_secs),
    )
    .await?;
    let holder = lease.holder().clone();
    let renewing = lease.keep_renewed();
    let started_at = chrono::Utc::now().timestamp_micros();
    let outcome = steps(global, &config, &lake, at, printer, &renewing).await;
    let released = renewing.release().await;
    let mut steps = outcome?;
    if let Err(e) = released {
        steps.push(step(
            "lease",
            "failed",
            e.to_string(),
            serde_json::Value::Null,
        ));
    }
    record(&lake, &job_id, started_at, &steps).await;

    let failed = steps.iter().any(|s| s.outcome == "failed");
    let attention = steps.iter().any(|s| s.outcome == "attention");
    let (status, word) = if failed {
        (ExitStatus::Error, "failed")
    } else if attention {
        (ExitStatus::Failure, "attention")
    } else {
        (ExitStatus::Success, "ok")
    };
    let summary = JobSummary {
        job_id,
        lake: lake.location().display(),
        holder: Some(holder),
        steps,
    };
    if printer.format == OutputFormat::Json {
        printer.json("job", word, &summary)?;
    } else if printer.quiet == 0 || status != ExitStatus::Success {
        println!("Job {} on {}: {word}", summary.job_id, summary.lake);
        for s in &summary.steps {
            println!("  {:<10} {}: {}", s.outcome, s.step, s.detail);
        }
    }
    Ok(status)
}

/// The steps, in order. A step that fails is recorded and the job goes on with the steps that
/// do not depend on it (no pack over a failed ingest); losing the lease stops it.
async fn steps(
    global: &GlobalArgs,
    config: &PipelineConfig,
    lake: &govlake::lake::Lake,
    at: i64,
    printer: &Printer,
    lease: &govlake::lake::lease::Renewing,
) -> anyhow::Result<Vec<Step>> {
    let job = &config.job;
    let quiet = Printer {
        format: OutputFormat::Text,
        progress: printer.progress,
        quiet: 2,
    };
    let mut out: Vec<Step> = Vec::new();
    let still_ours = || match lease.lost() {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    };
    // The run the changes are measured from: the newest before this job wrote anything.
    let previous = changes::runs(lake).await?.last().map(|r| r.run_id.clone());
    let mut ingest_failed = false;
    if job.graph {
        still_ours()?;
        let (graph, failed) = graph_step(lake, job, &quiet).await?;
        out.extend(graph);
        ingest_failed |= failed;
    }
    for export in &job.exports {
        still_ours()?;
        let (export, failed) = export_step(lake, config, export, &quiet).await?;
        out.push(export);
        ingest_failed |= failed;
    }
    if job.vacuum {
        still_ours()?;
        out.push(vacuum_step(lake, job).await);
    }
    let mut found: Option<Changes> = None;
    if job.changes {
        still_ours()?;
        let (changes, c) = changes_step(lake, config, previous.as_deref()).await?;
        out.push(changes);
        found = c;
    }
    let mut pack_location: Option<String> = None;
    if let Some(p) = &job.pack {
        still_ours()?;
        let (pack, location) =
            pack_step(global, config, lake, p, at, ingest_failed, printer).await?;
        out.push(pack);
        pack_location = location;
    }
    if !config.notify.webhooks.is_empty() {
        let notified = notify_steps(config, found.as_ref(), pack_location, &out).await;
        out.extend(notified);
    }
    still_ours()?;
    Ok(out)
}

/// `ingest --graph` (and the Log Analytics backfill of an aged-out audit window): its
/// steps, and whether the ingest failed.
async fn graph_step(
    lake: &govlake::lake::Lake,
    job: &govlake::config::JobConfig,
    quiet: &Printer,
) -> anyhow::Result<(Vec<Step>, bool)> {
    let cli = crate::cli::Cli::try_parse_from(["govlake", "ingest", "--graph"])
        .context("Cannot form the Graph ingest's settings")?;
    let crate::cli::Command::Ingest(args) = cli.command else {
        unreachable!("parsed an ingest command line")
    };
    let mut out = Vec::new();
    let mut ingest_failed = false;
    match super::live::graph(lake, &args, None, quiet).await {
        Ok((fetched, summary, aged_out)) => {
            let gaps = fetched.coverage_gaps.len() + summary.snapshot_gaps.len();
            let mut outcome = if gaps > 0 || summary.rejected > 0 {
                "attention"
            } else {
                "ok"
            };
            let mut detail = format!(
                "run {}: {} records, {} rejected, {gaps} coverage gap(s)",
                summary.run_id, summary.records, summary.rejected
            );
            let data = serde_json::json!({"graph": fetched, "ingest": summary});
            let backfill = match (aged_out, &job.log_analytics_workspace) {
                (Some(window), Some(workspace)) => {
                    Some(backfill(lake, workspace, window, quiet).await)
                }
                _ => None,
            };
            // The only gap was the aged-out audit window, and the backfill filled it.
            if let Some(b) = &backfill
                && b.outcome == "ok"
                && fetched.coverage_gaps.len() == 1
                && summary.snapshot_gaps.is_empty()
                && summary.rejected == 0
            {
                outcome = "ok";
                detail.push_str(
                    " (the audit window past Graph's retention was backfilled from Log Analytics)",
                );
            }
            out.push(step("ingest graph", outcome, detail, data));
            out.extend(backfill);
        }
        Err(e) => {
            ingest_failed = true;
            out.push(step(
                "ingest graph",
                "failed",
                format!("{e:#}"),
                serde_json::Value::Null,
            ));
        }
    }
    Ok((out, ingest_failed))
}

/// Ingests one export the config lists: its step, and whether it failed.
async fn export_step(
    lake: &govlake::lake::Lake,
    config: &PipelineConfig,
    export: &Path,
    quiet: &Printer,
) -> anyhow::Result<(Step, bool)> {
    let path = from_config(config, export);
    let name = format!("ingest {}", path.display());
    let settings = govlake::ingest::IngestSettings {
        inputs: vec![path.clone()],
        ..Default::default()
    };
    Ok(
        match super::summary::ingest_with_progress(lake, &settings, quiet).await {
            Ok(s) => {
                let outcome = if s.rejected > 0 || !s.snapshot_gaps.is_empty() {
                    "attention"
                } else {
                    "ok"
                };
                let detail = format!(
                    "run {}: {} records, {} rejected, {} snapshot gap(s), observed at {}",
                    s.run_id,
                    s.records,
                    s.rejected,
                    s.snapshot_gaps.len(),
                    s.observed_at
                );
                (
                    step(&name, outcome, detail, serde_json::to_value(&s)?),
                    false,
                )
            }
            Err(e) => (
                step(&name, "failed", format!("{e:#}"), serde_json::Value::Null),
                true,
            ),
        },
    )
}

/// Vacuums the tables with the job's retention (the lake's by default).
async fn vacuum_step(lake: &govlake::lake::Lake, job: &govlake::config::JobConfig) -> Step {
    let hours = job
        .vacuum_retain_hours
        .unwrap_or(u64::from(lake.retention().deleted_file_retention_days) * 24);
    let tables = super::tables::vacuumed_tables();
    let options = govlake::lake::retention::VacuumOptions {
        retention_hours: hours,
        dry_run: false,
        full: false,
        allow_short_retention: false,
    };
    match govlake::lake::retention::vacuum(lake, &tables, &options).await {
        Ok(report) => step(
            "vacuum",
            "ok",
            format!(
                "{} file(s) deleted (retention {hours} h)",
                report.iter().map(|t| t.files_deleted).sum::<usize>()
            ),
            serde_json::Value::Null,
        ),
        Err(e) => step(
            "vacuum",
            "failed",
            format!("{e:#}"),
            serde_json::Value::Null,
        ),
    }
}

/// What changed in the views since the run before the job (skipped on a lake without one).
async fn changes_step(
    lake: &govlake::lake::Lake,
    config: &PipelineConfig,
    previous: Option<&str>,
) -> anyhow::Result<(Step, Option<Changes>)> {
    let job = &config.job;
    let Some(prev) = previous else {
        let detail = "the lake had no earlier run to compare with".into();
        return Ok((
            step("changes", "skipped", detail, serde_json::Value::Null),
            None,
        ));
    };
    let files = govlake::query::views::embedded();
    let memory = super::sql::memory_limit(None, config)?;
    let compared = changes::compare(
        lake,
        &files,
        &job.views,
        &Point::Run(prev.to_string()),
        &Point::Now,
        memory,
    )
    .await;
    Ok(match compared {
        Ok(c) => {
            let alert = match job.alert_on {
                AlertOn::New => c.added() > 0,
                AlertOn::Any => c.total() > 0,
                AlertOn::Never => false,
            };
            let detail = format!(
                "since run {prev}: {} added, {} in all",
                c.added(),
                c.total()
            );
            let outcome = if alert { "attention" } else { "ok" };
            (
                step("changes", outcome, detail, serde_json::to_value(&c)?),
                Some(c),
            )
        }
        Err(e) => (
            step(
                "changes",
                "failed",
                format!("{e:#}"),
                serde_json::Value::Null,
            ),
            None,
        ),
    })
}

/// The last closed quarter's pack, unless an ingest step failed or the quarter's pack is
/// pinned already: its step, and where the pack was published.
async fn pack_step(
    global: &GlobalArgs,
    config: &PipelineConfig,
    lake: &govlake::lake::Lake,
    p: &govlake::config::JobPackConfig,
    at: i64,
    ingest_failed: bool,
    printer: &Printer,
) -> anyhow::Result<(Step, Option<String>)> {
    let quarter = closed_quarter(at)?;
    let pinned = pinned_packs(lake, &quarter.label).await?;
    let skipped = |detail: String| {
        Ok((
            step("pack", "skipped", detail, serde_json::Value::Null),
            None,
        ))
    };
    if ingest_failed {
        return skipped(format!(
            "{}: an ingest step failed, so no pack is built over it",
            quarter.label
        ));
    }
    if let Some((id, location)) = pinned.first() {
        return skipped(format!(
            "the {} pack is pinned already (pack {id} at {location})",
            quarter.label
        ));
    }
    Ok(
        match build_pack(global, config, lake, p, &quarter, printer).await {
            Ok(summary) => {
                let detail = format!(
                    "the {} pack: {} files, signed by {}, published to {} and pinned",
                    quarter.label,
                    summary.files,
                    summary.signed_by.clone().unwrap_or_default(),
                    summary.dir.display()
                );
                (
                    step("pack", "ok", detail, serde_json::to_value(&summary)?),
                    Some(summary.dir.display().to_string()),
                )
            }
            Err(e) => (
                step("pack", "failed", format!("{e:#}"), serde_json::Value::Null),
                None,
            ),
        },
    )
}

/// Sends the job's message (the changes, the pack, every step that was not ok) to each
/// webhook: a step per webhook.
async fn notify_steps(
    config: &PipelineConfig,
    found: Option<&Changes>,
    pack_location: Option<String>,
    done: &[Step],
) -> Vec<Step> {
    let mut message = match found {
        Some(c) => super::changes::message(c, pack_location),
        None => govlake::notify::Message {
            title: "govlake: job finished".into(),
            lines: vec![],
            pack: pack_location,
            added: 0,
            changed: 0,
            document: serde_json::Value::Null,
        },
    };
    message.lines.extend(
        done.iter()
            .filter(|s| s.outcome != "ok")
            .map(|s| format!("{} {}: {}", s.outcome, s.step, s.detail)),
    );
    let mut out = Vec::new();
    for d in govlake::notify::send(&config.notify, &message).await {
        out.push(step(
            &format!("notify {}", d.webhook),
            if d.failed() {
                "attention"
            } else if d.outcome == "sent" {
                "ok"
            } else {
                "skipped"
            },
            format!("{} ({} attempt(s))", d.outcome, d.attempts),
            serde_json::Value::Null,
        ));
    }
    out
}

/// Backfills the audit window Graph no longer serves from Log Analytics.
async fn backfill(
    lake: &govlake::lake::Lake,
    workspace: &str,
    (since, until): (i64, i64),
    printer: &Printer,
) -> Step {
    let name = "backfill log analytics";
    let (since, until) = (govlake::time::fmt_ts(since), govlake::time::fmt_ts(until));
    let cli = match crate::cli::Cli::try_parse_from([
        "govlake",
        "ingest",
        "--log-analytics",
        workspace,
        "--since",
        &since,
        "--until",
        &until,
    ]) {
        Ok(c) => c,
        Err(e) => return step(name, "failed", e.to_string(), serde_json::Value::Null),
    };
    let crate::cli::Command::Ingest(args) = cli.command else {
        unreachable!("parsed an ingest command line")
    };
    match super::live::log_analytics(lake, &args, workspace, None, printer).await {
        Ok((fetched, summary)) => {
            let gaps = fetched.coverage_gaps.len() + summary.snapshot_gaps.len();
            step(
                name,
                if gaps > 0 || summary.rejected > 0 {
                    "attention"
                } else {
                    "ok"
                },
                format!(
                    "audit events from {since} to {until}: run {}, {} records, {} stored, {} rejected",
                    summary.run_id,
                    summary.records,
                    summary.tables.get("audit_events").map_or(0, |t| t.stored),
                    summary.rejected
                ),
                serde_json::json!({"graph": fetched, "ingest": summary}),
            )
        }
        Err(e) => step(name, "failed", format!("{e:#}"), serde_json::Value::Null),
    }
}

/// Packs of this period already pinned: (pack id, location).
async fn pinned_packs(
    lake: &govlake::lake::Lake,
    label: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    // `label` is a quarter label we formed (`2026Q3`), not user text.
    lake.scan_sql(
        govlake::lake::bookkeeping::PACK_PINS,
        &format!(
            "select distinct pack_id, location from {} where period = '{label}' order by pack_id",
            govlake::lake::bookkeeping::PACK_PINS
        ),
        |r| {
            out.push((
                r[0].unwrap_or_default().to_string(),
                r[1].unwrap_or_default().to_string(),
            ))
        },
    )
    .await?;
    Ok(out)
}

async fn build_pack(
    global: &GlobalArgs,
    config: &PipelineConfig,
    lake: &govlake::lake::Lake,
    p: &govlake::config::JobPackConfig,
    quarter: &Period,
    printer: &Printer,
) -> anyhow::Result<govlake::report::pack::PackSummary> {
    let key_file = p.key_file.as_deref().map(|k| from_config(config, k));
    let key = super::report::signing_key(key_file.as_deref())?.context(
        "No signing key for the job's pack: set [job.pack] key_file or GOVLAKE_SIGNING_KEY (a job never builds an unsigned pack)",
    )?;
    let target = pack_target(&p.out, &quarter.label);
    let out = match govlake::report::remote::remote_target(&target) {
        Some(_) => PathBuf::from(&target),
        None => from_config(config, Path::new(&target)),
    };
    let settings = govlake::report::pack::PackSettings {
        out,
        period: quarter.clone(),
        as_of: govlake::query::AsOf::Latest,
        queries: govlake::query::views::embedded(),
        templates: None,
        key: Some(key),
        archive: true,
        samples: vec![],
        memory: super::sql::memory_limit(None, config)?,
    };
    let quiet = Printer {
        format: OutputFormat::Text,
        progress: printer.progress,
        quiet: 2,
    };
    super::report::build_publish_pin(global, lake, settings, &quiet).await
}

/// One `_ingest_runs` row per step: `run_id` the job id, `table_name` `job:<step>`,
/// `status` the outcome and detail. A failure to write them is logged, not fatal.
async fn record(lake: &govlake::lake::Lake, job_id: &str, started_at: i64, steps: &[Step]) {
    let finished_at = chrono::Utc::now().timestamp_micros();
    let rows: Vec<Vec<Cell>> = steps
        .iter()
        .map(|s| {
            vec![
                Cell::Str(job_id.to_string()),
                Cell::Ts(started_at),
                Cell::Ts(finished_at),
                Cell::Ts(finished_at),
                Cell::Str("govlake job run".into()),
                Cell::Str(format!("job:{}", s.step)),
                Cell::Int(0),
                Cell::Int(0),
                Cell::Int(0),
                Cell::Int(0),
                Cell::Int(0),
                Cell::Null,
                Cell::Null,
                Cell::Str(format!("{}: {}", s.outcome, s.detail)),
            ]
        })
        .collect();
    let metadata = std::collections::HashMap::from([(
        "govlake.run_id".to_string(),
        serde_json::Value::String(job_id.to_string()),
    )]);
    if let Err(e) = lake
        .append(
            &govlake::lake::bookkeeping::ingest_runs_schema(),
            &rows,
            &metadata,
        )
        .await
    {
        tracing::error!("Failed to record the job's steps in `_ingest_runs`: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_quarter_is_the_one_before_now() {
        let t = |s: &str| govlake::time::parse_ts(s).unwrap();
        assert_eq!(
            closed_quarter(t("2026-10-01T00:00:00Z")).unwrap().label,
            "2026Q3"
        );
        assert_eq!(
            closed_quarter(t("2026-12-31T23:59:59Z")).unwrap().label,
            "2026Q3"
        );
        assert_eq!(
            closed_quarter(t("2027-01-01T00:00:00Z")).unwrap().label,
            "2026Q4"
        );
        assert_eq!(
            closed_quarter(t("2026-02-10T00:00:00Z")).unwrap().label,
            "2025Q4"
        );
    }
}
