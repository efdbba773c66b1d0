//! `govlake ingest --graph`: fetch from Microsoft Graph into a spool folder (pages as an
//! export holds them), then ingest that folder exactly as `--from` would. Watermarks live in
//! the lake (`_ingest_runs.watermark`), written only when the run's commits are done, so a
//! failed run leaves them where they were.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use govlake::graph::client::{ClientSettings, Credential, GraphClient, Secret};
use govlake::graph::crawl::{self, AuditWindow};
use govlake::ingest::IngestSettings;
use url::Url;

use super::ingest::{ingest_with_progress, print_summary};
use super::{ExitStatus, Printer};
use crate::cli::{IngestArgs, OutputFormat};

/// The newest audit event any earlier run stored (UTC micros).
async fn audit_watermark(lake: &govlake::lake::Lake) -> anyhow::Result<Option<i64>> {
    let mut newest: Option<i64> = None;
    lake.scan_sql(
        govlake::lake::bookkeeping::INGEST_RUNS,
        "select cast(max(watermark) as varchar) from _ingest_runs where table_name = 'audit_events'",
        |v| {
            newest = v[0].and_then(govlake::ingest::value::parse_ts);
        },
    )
    .await?;
    Ok(newest)
}

fn required(value: &Option<String>, what: &str, env: &str) -> anyhow::Result<String> {
    value.clone().filter(|v| !v.is_empty()).with_context(|| {
        format!("`govlake ingest --graph` needs {what}: set {env} (or pass the flag)")
    })
}

/// Runs a live ingest.
pub async fn run(
    lake: &govlake::lake::Lake,
    args: &IngestArgs,
    observed_at: Option<i64>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let live = &args.live;
    let parse_url =
        |s: &str, flag: &str| Url::parse(s).with_context(|| format!("`{flag} {s}` is not a URL"));
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    let credential = match (
        env("AZURE_CLIENT_SECRET"),
        env("AZURE_FEDERATED_TOKEN_FILE"),
    ) {
        (Some(secret), _) => Credential::Secret(Secret::new(secret)),
        (None, Some(file)) => Credential::FederatedTokenFile(PathBuf::from(file)),
        (None, None) => anyhow::bail!(
            "`govlake ingest --graph` needs a credential in the environment: AZURE_CLIENT_SECRET (client secret) or AZURE_FEDERATED_TOKEN_FILE (workload identity federation); never on the command line"
        ),
    };
    let settings = ClientSettings {
        endpoint: parse_url(&live.graph_endpoint, "--graph-endpoint")?,
        authority: parse_url(&live.authority_host, "--authority-host")?,
        tenant: required(&live.tenant, "a tenant", "AZURE_TENANT_ID")?,
        client_id: required(
            &live.client_id,
            "an application (client) id",
            "AZURE_CLIENT_ID",
        )?,
        credential,
        max_attempts: live.max_attempts.max(1),
        backoff_base: Duration::from_millis(live.backoff_ms),
        request_timeout: Duration::from_secs(120),
        deadline: Duration::from_secs(live.deadline_minutes * 60),
        audit_rate_limit: (!live.no_rate_limit).then_some((5, Duration::from_secs(10))),
    };
    let window = if live.full {
        AuditWindow::All
    } else if let Some(s) = &live.since {
        AuditWindow::Since(
            govlake::ingest::value::parse_ts(s)
                .with_context(|| format!("`--since {s}` is not a timestamp (RFC 3339)"))?,
        )
    } else {
        match audit_watermark(lake).await? {
            Some(w) => AuditWindow::Since(w - (live.overlap_minutes as i64) * 60_000_000),
            None => AuditWindow::All,
        }
    };
    let (fetched, summary) = fetch_and_ingest(
        lake,
        settings,
        LiveRun {
            window,
            page_size: live.page_size,
            spool: live.spool.clone(),
            observed_at,
            chunk_rows: args.chunk_rows.max(1),
            endpoint: live.graph_endpoint.clone(),
        },
        printer,
    )
    .await?;
    let gaps = !fetched.coverage_gaps.is_empty();
    let failed = gaps || (summary.rejected > 0 && !args.allow_rejects);
    if printer.format == OutputFormat::Json {
        let status = if failed { "incomplete" } else { "ok" };
        printer.json(
            "ingest",
            status,
            &serde_json::json!({"graph": fetched, "ingest": summary}),
        )?;
    } else {
        print_summary("ingest", &summary, printer, failed)?;
        if printer.quiet == 0 {
            println!(
                "Graph: {} pages, {} records, {} requests ({} throttled, {} retries, {:.1} s waiting){}.",
                fetched.pages,
                fetched.records,
                fetched.requests,
                fetched.throttled,
                fetched.retries,
                fetched.waited_secs,
                fetched
                    .audit_events_since
                    .as_ref()
                    .map_or(String::new(), |s| format!("; audit events since {s}"))
            );
        }
        for g in &fetched.coverage_gaps {
            println!(
                "Coverage gap: {} was refused (403: {}); grant the app its read permission and rerun.",
                g.collection, g.reason
            );
        }
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// What one live run reads and how.
pub struct LiveRun {
    /// Where audit events start.
    pub window: AuditWindow,
    /// `$top`.
    pub page_size: u32,
    /// Keep the pages here (else a temporary folder, removed after success).
    pub spool: Option<PathBuf>,
    /// Observation time of the snapshots (default: now).
    pub observed_at: Option<i64>,
    /// Append rows per commit.
    pub chunk_rows: usize,
    /// The Graph endpoint, for messages.
    pub endpoint: String,
}

/// Fetches from Graph into a spool folder, then ingests it (shared by `ingest --graph` and
/// `demo --live`).
pub async fn fetch_and_ingest(
    lake: &govlake::lake::Lake,
    settings: ClientSettings,
    run: LiveRun,
    printer: &Printer,
) -> anyhow::Result<(crawl::CrawlSummary, govlake::ingest::IngestSummary)> {
    let started_at = chrono::Utc::now().timestamp_micros();
    let observed_at = run.observed_at.unwrap_or(started_at);
    let (spool, temporary): (PathBuf, bool) = match &run.spool {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("govlake-graph-{}", uuid::Uuid::new_v4())),
            true,
        ),
    };
    let client = GraphClient::new(settings)?;
    let spinner = if printer.progress {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let stats = &client.stats;
    let progress = |name: &str, pages: u64, records: u64| {
        spinner.set_message(format!(
            "Graph {name}: {pages} pages, {records} records ({} throttled waits)",
            stats.throttled.load(std::sync::atomic::Ordering::Relaxed)
        ));
    };
    let fetched = crawl::crawl(&client, &spool, run.page_size, run.window, &progress).await;
    spinner.finish_and_clear();
    let fetched = fetched.with_context(|| {
        format!(
            "Failed to read from Graph at {}; nothing was written to the lake and the watermarks are unchanged (pages so far: {})",
            run.endpoint,
            spool.display()
        )
    })?;
    std::fs::write(
        spool.join("_export.json"),
        serde_json::json!({"exportedAt": govlake::lake::fmt_ts(observed_at), "source": run.endpoint})
            .to_string(),
    )?;
    let ingest_settings = IngestSettings {
        inputs: vec![spool.clone()],
        observed_at: Some(observed_at),
        chunk_rows: run.chunk_rows,
        coverage_gaps: fetched
            .coverage_gaps
            .iter()
            .map(|g| {
                (
                    g.table.clone(),
                    format!("{} refused (403): {}", g.collection, g.reason),
                )
            })
            .collect(),
        ..IngestSettings::default()
    };
    let summary = ingest_with_progress(lake, &ingest_settings, printer).await?;
    if temporary {
        let _ = std::fs::remove_dir_all(&spool);
    }
    Ok((fetched, summary))
}
