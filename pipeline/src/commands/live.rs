//! `govlake ingest --graph` and `--log-analytics`: fetch into a spool folder (pages as an
//! export holds them), then ingest that folder exactly as `--from` would. Watermarks live in
//! the lake (`_ingest_runs.watermark`), written only when the run's commits are done, so a
//! failed run leaves them where they were. Collections Graph refuses, and audit-event windows
//! that start before Graph's retention, are coverage gaps: recorded, reported, exit 1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use govlake::graph::client::{ClientSettings, Credential, GraphClient, Secret};
use govlake::graph::crawl::{self, CoverageGap, Plan, Window};
use govlake::graph::credential::{ClientCertificate, DeviceCodePrompt, ManagedIdentity};
use govlake::ingest::IngestSettings;
use url::Url;

use super::ingest::{ingest_with_progress, print_summary};
use super::{ExitStatus, Printer};
use crate::cli::{IngestArgs, LiveArgs, OutputFormat};

const MINUTE_MICROS: i64 = 60_000_000;

/// Request states that can still change; such requests are re-read until they settle.
const UNFINISHED_REQUEST_STATES: &str = "'submitted', 'pendingApproval', 'delivering', 'scheduled'";

/// The newest value any earlier run stored for `table` (UTC micros).
pub(super) async fn watermark(
    lake: &govlake::lake::Lake,
    table: &str,
) -> anyhow::Result<Option<i64>> {
    let mut newest: Option<i64> = None;
    lake.scan_sql(
        govlake::lake::bookkeeping::INGEST_RUNS,
        "select cast(max(watermark) as varchar), table_name from _ingest_runs group by table_name",
        |v| {
            if v[1] == Some(table) {
                newest = v[0].and_then(govlake::time::parse_ts);
            }
        },
    )
    .await?;
    Ok(newest)
}

/// Where requests start: the newest createdDateTime stored minus the overlap, or the oldest
/// request the lake still holds as unfinished, whichever is earlier.
async fn requests_window(lake: &govlake::lake::Lake, overlap: i64) -> anyhow::Result<Window> {
    let Some(newest) = watermark(lake, "assignment_requests").await? else {
        return Ok(Window::All);
    };
    let mut oldest_open: Option<i64> = None;
    lake.scan_sql(
        "assignment_requests",
        &format!(
            "select cast(min(created_date_time) as varchar) from assignment_requests where state in ({UNFINISHED_REQUEST_STATES})"
        ),
        |v| oldest_open = v[0].and_then(govlake::time::parse_ts),
    )
    .await?;
    let from = newest - overlap;
    Ok(Window::Since(oldest_open.map_or(from, |o| o.min(from))))
}

fn required(value: &Option<String>, what: &str, env: &str) -> anyhow::Result<String> {
    value.clone().filter(|v| !v.is_empty()).with_context(|| {
        format!("`govlake ingest --graph` needs {what}: set {env} (or pass the flag)")
    })
}

/// The credential asked for (`--device-code`, `--managed-identity`), else the one the
/// environment offers: AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or
/// AZURE_FEDERATED_TOKEN_FILE, in that order.
fn credential(live: &LiveArgs) -> anyhow::Result<Credential> {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    if live.device_code {
        let prompt = |message: &str| eprintln!("{message}");
        return Ok(Credential::DeviceCode(DeviceCodePrompt(
            std::sync::Arc::new(prompt),
        )));
    }
    if live.managed_identity {
        return ManagedIdentity::from_env(live.client_id.clone())
            .map(Credential::ManagedIdentity)
            .map_err(anyhow::Error::msg);
    }
    if let Some(secret) = env("AZURE_CLIENT_SECRET") {
        return Ok(Credential::Secret(Secret::new(secret)));
    }
    if let Some(path) = env("AZURE_CLIENT_CERTIFICATE_PATH") {
        let password = env("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(Secret::new);
        let cert = ClientCertificate::from_file(std::path::Path::new(&path), password.as_ref())
            .map_err(anyhow::Error::msg)?;
        return Ok(Credential::Certificate(std::sync::Arc::new(cert)));
    }
    if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
        return Ok(Credential::FederatedTokenFile(PathBuf::from(file)));
    }
    anyhow::bail!(
        "`govlake ingest` needs a credential in the environment: AZURE_CLIENT_SECRET (client secret), AZURE_CLIENT_CERTIFICATE_PATH (PEM certificate and key) or AZURE_FEDERATED_TOKEN_FILE (workload identity federation), or `--managed-identity`; never a secret on the command line"
    )
}

/// Client settings for `endpoint` (Graph, or the Log Analytics API).
pub(super) fn client_settings(
    live: &LiveArgs,
    endpoint: &str,
    flag: &str,
) -> anyhow::Result<ClientSettings> {
    let parse_url =
        |s: &str, flag: &str| Url::parse(s).with_context(|| format!("`{flag} {s}` is not a URL"));
    let credential = credential(live)?;
    let managed = matches!(credential, Credential::ManagedIdentity(_));
    Ok(ClientSettings {
        endpoint: parse_url(endpoint, flag)?,
        authority: parse_url(&live.authority_host, "--authority-host")?,
        tenant: if managed {
            live.tenant.clone().unwrap_or_default()
        } else {
            required(&live.tenant, "a tenant", "AZURE_TENANT_ID")?
        },
        client_id: if managed {
            live.client_id.clone().unwrap_or_default()
        } else {
            required(
                &live.client_id,
                "an application (client) id",
                "AZURE_CLIENT_ID",
            )?
        },
        credential,
        max_attempts: live.max_attempts.max(1),
        backoff_base: Duration::from_millis(live.backoff_ms),
        request_timeout: Duration::from_secs(120),
        deadline: Duration::from_secs(live.deadline_minutes * 60),
        audit_rate_limit: (!live.no_rate_limit).then_some((5, Duration::from_secs(10))),
    })
}

fn timestamp(s: &str, flag: &str) -> anyhow::Result<i64> {
    govlake::time::parse_ts(s)
        .with_context(|| format!("`{flag} {s}` is not a timestamp (RFC 3339)"))
}

/// Runs a live ingest.
pub async fn run(
    lake: &govlake::lake::Lake,
    args: &IngestArgs,
    observed_at: Option<i64>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    if let Some(workspace) = &args.log_analytics {
        return run_log_analytics(lake, args, workspace, observed_at, printer).await;
    }
    let (fetched, summary, _) = graph(lake, args, observed_at, printer).await?;
    report(&fetched, &summary, args, printer)
}

/// What a live Graph run did: what it fetched, what it stored, and the audit window Graph
/// could no longer serve (since, until: UTC micros), when its window reached past Graph's
/// retention — the window a Log Analytics backfill fills.
pub type GraphOutcome = (
    crawl::CrawlSummary,
    govlake::ingest::IngestSummary,
    Option<(i64, i64)>,
);

/// Reads the tenant live from Graph into the lake (`ingest --graph`, and `job run`), without
/// printing the summary.
pub async fn graph(
    lake: &govlake::lake::Lake,
    args: &IngestArgs,
    observed_at: Option<i64>,
    printer: &Printer,
) -> anyhow::Result<GraphOutcome> {
    let live = &args.live;
    let settings = client_settings(live, &live.graph_endpoint, "--graph-endpoint")?;
    let overlap = live.overlap_minutes as i64 * MINUTE_MICROS;
    let (requests, audits) = if live.full {
        (Window::All, Window::All)
    } else {
        let audits = match &live.since {
            Some(s) => Window::Since(timestamp(s, "--since")?),
            None => match watermark(lake, "audit_events").await? {
                Some(w) => Window::Since(w - overlap),
                None => Window::All,
            },
        };
        (requests_window(lake, overlap).await?, audits)
    };
    // A window that starts before Graph's retention misses what aged out.
    let horizon = chrono::Utc::now().timestamp_micros()
        - live.graph_retention_days as i64 * 1440 * MINUTE_MICROS;
    let aged_out = match audits {
        Window::Since(t) if t < horizon => Some((t, horizon)),
        _ => None,
    };
    let retention_gap = match audits {
        Window::Since(t) if t < horizon => Some(CoverageGap {
            collection: "auditLogs/directoryAudits".into(),
            table: "audit_events".into(),
            reason: format!(
                "the window starts at {} but Graph keeps audit events {} days (until {}): events in between may be missing; backfill them with `govlake ingest --log-analytics WORKSPACE_ID --since {0} --until {2}` or from a diagnostic-settings archive",
                govlake::time::fmt_ts(t),
                live.graph_retention_days,
                govlake::time::fmt_ts(horizon),
            ),
        }),
        _ => None,
    };
    let run = LiveRun {
        source: Source::Graph(Plan {
            requests,
            audits,
            page_size: live.page_size,
            approval_stages: live.device_code,
            concurrency: live.concurrency.max(1),
        }),
        spool: live.spool.clone(),
        observed_at,
        chunk_rows: args.chunk_rows.max(1),
        endpoint: live.graph_endpoint.clone(),
        extra_gaps: retention_gap.into_iter().collect(),
    };
    let (fetched, summary) = fetch_and_ingest(lake, settings, run, printer).await?;
    Ok((fetched, summary, aged_out))
}

/// Runs a Log Analytics backfill.
async fn run_log_analytics(
    lake: &govlake::lake::Lake,
    args: &IngestArgs,
    workspace: &str,
    observed_at: Option<i64>,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let (fetched, summary) = log_analytics(lake, args, workspace, observed_at, printer).await?;
    report(&fetched, &summary, args, printer)
}

/// Backfills audit events from a Log Analytics workspace (`ingest --log-analytics`, and a
/// job's backfill of a retention gap), without printing the summary.
pub async fn log_analytics(
    lake: &govlake::lake::Lake,
    args: &IngestArgs,
    workspace: &str,
    observed_at: Option<i64>,
    printer: &Printer,
) -> anyhow::Result<(crawl::CrawlSummary, govlake::ingest::IngestSummary)> {
    let live = &args.live;
    let settings = client_settings(
        live,
        &live.log_analytics_endpoint,
        "--log-analytics-endpoint",
    )?;
    let since = timestamp(live.since.as_deref().unwrap_or_default(), "--since")?;
    let until = match &live.until {
        Some(u) => timestamp(u, "--until")?,
        None => chrono::Utc::now().timestamp_micros(),
    };
    anyhow::ensure!(since < until, "`--since` must be before `--until`");
    let run = LiveRun {
        source: Source::LogAnalytics {
            workspace: workspace.to_string(),
            since,
            until,
        },
        spool: live.spool.clone(),
        observed_at,
        chunk_rows: args.chunk_rows.max(1),
        endpoint: live.log_analytics_endpoint.clone(),
        extra_gaps: vec![],
    };
    fetch_and_ingest(lake, settings, run, printer).await
}

/// Prints a live run's summary; the exit status.
fn report(
    fetched: &crawl::CrawlSummary,
    summary: &govlake::ingest::IngestSummary,
    args: &IngestArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let gaps = !fetched.coverage_gaps.is_empty()
        || (!summary.snapshot_gaps.is_empty() && !args.allow_gaps);
    let failed = gaps || (summary.rejected > 0 && !args.allow_rejects);
    if !fetched.write_roles.is_empty() && printer.quiet == 0 {
        eprintln!(
            "warning: the token carries permissions beyond reading ({}); govlake needs only EntitlementManagement.Read.All, AccessReview.Read.All, AuditLog.Read.All, Directory.Read.All and GroupMember.Read.All: grant those instead (least privilege)",
            fetched.write_roles.join(", ")
        );
    }
    if printer.format == OutputFormat::Json {
        let status = if failed { "incomplete" } else { "ok" };
        printer.json(
            "ingest",
            status,
            &serde_json::json!({"graph": fetched, "ingest": summary}),
        )?;
    } else {
        print_summary("ingest", summary, printer, failed)?;
        if printer.quiet == 0 {
            let since = |what: &str, s: &Option<String>| {
                s.as_ref()
                    .map_or(String::new(), |s| format!("; {what} since {s}"))
            };
            println!(
                "Fetched: {} pages, {} records, {} requests ({} throttled, {} retries, {:.1} s waiting){}{}.",
                fetched.pages,
                fetched.records,
                fetched.requests,
                fetched.throttled,
                fetched.retries,
                fetched.waited_secs,
                since("requests created", &fetched.requests_since),
                since("audit events", &fetched.audit_events_since),
            );
        }
        for g in &fetched.coverage_gaps {
            println!(
                "Coverage gap in {}: {}: {}.",
                g.table, g.collection, g.reason
            );
        }
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// What a live run reads.
pub enum Source {
    /// Graph, as planned.
    Graph(Plan),
    /// A Log Analytics workspace's `AuditLogs` between two times (UTC micros).
    LogAnalytics {
        /// Workspace id.
        workspace: String,
        /// From (inclusive).
        since: i64,
        /// To (exclusive).
        until: i64,
    },
}

/// What one live run reads and how.
pub struct LiveRun {
    /// What to read.
    pub source: Source,
    /// Keep the pages here (else a temporary folder, removed after success).
    pub spool: Option<PathBuf>,
    /// Observation time of the snapshots (default: now).
    pub observed_at: Option<i64>,
    /// Append rows per commit.
    pub chunk_rows: usize,
    /// The endpoint, for messages.
    pub endpoint: String,
    /// Gaps known before fetching (audit events past Graph's retention).
    pub extra_gaps: Vec<CoverageGap>,
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
    let bars = EntityBars::new(printer.progress);
    let stats = &client.stats;
    let progress = |name: &str, pages: u64, records: u64| {
        bars.update(
            name,
            pages,
            records,
            stats.throttled.load(std::sync::atomic::Ordering::Relaxed),
        );
    };
    let fetched = match &run.source {
        Source::Graph(plan) => crawl::crawl(&client, &spool, *plan, &progress).await,
        Source::LogAnalytics {
            workspace,
            since,
            until,
        } => {
            crawl::crawl_log_analytics(&client, &spool, workspace, *since, *until, &progress).await
        }
    };
    bars.finish();
    let mut fetched = fetched.with_context(|| {
        format!(
            "Failed to read from {}; nothing was written to the lake and the watermarks are unchanged (pages so far: {})",
            run.endpoint,
            spool.display()
        )
    })?;
    fetched.coverage_gaps.extend(run.extra_gaps);
    std::fs::write(
        spool.join("_export.json"),
        serde_json::json!({"exportedAt": govlake::time::fmt_ts(observed_at), "source": run.endpoint})
            .to_string(),
    )?;
    let ingest_settings = IngestSettings {
        inputs: vec![spool.clone()],
        observed_at: Some(observed_at),
        chunk_rows: run.chunk_rows,
        coverage_gaps: fetched
            .coverage_gaps
            .iter()
            .map(|g| (g.table.clone(), format!("{}: {}", g.collection, g.reason)))
            .collect(),
        ..IngestSettings::default()
    };
    let summary = ingest_with_progress(lake, &ingest_settings, printer).await?;
    if temporary {
        let _ = std::fs::remove_dir_all(&spool);
    }
    Ok((fetched, summary))
}

/// One progress bar per entity on stderr: pages, records and the run's throttled waits.
struct EntityBars {
    multi: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl EntityBars {
    fn new(show: bool) -> Self {
        Self {
            multi: show.then(indicatif::MultiProgress::new),
            bars: std::sync::Mutex::default(),
        }
    }

    fn update(&self, name: &str, pages: u64, records: u64, throttled: u64) {
        let Some(multi) = &self.multi else { return };
        let mut bars = self.bars.lock().expect("not poisoned");
        let bar = bars.entry(name.to_string()).or_insert_with(|| {
            let b = multi.add(indicatif::ProgressBar::new_spinner());
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {prefix:<24} {msg}")
                    .expect("valid template"),
            );
            b.set_prefix(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        bar.set_message(format!(
            "{pages} pages, {records} records ({throttled} throttled waits so far)"
        ));
    }

    fn finish(&self) {
        for b in self.bars.lock().expect("not poisoned").values() {
            b.finish_and_clear();
        }
    }
}
