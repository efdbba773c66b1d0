//! `govlake ingest --graph` and `--log-analytics`: the command line turned into client
//! settings and a live run, the run made by the library (`govlake::graph::live`: the plan
//! from the lake's watermarks, fetch into a spool folder, ingest it as `--from` would), with
//! a progress bar per collection, and its summary printed. Collections Graph refuses, and
//! audit-event windows that start before Graph's retention, are coverage gaps: recorded,
//! reported, exit 1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use govlake::graph::client::{ClientSettings, Credential, Secret};
use govlake::graph::crawl::CrawlSummary;
use govlake::graph::credential::{ClientCertificate, DeviceCodePrompt, ManagedIdentity};
use govlake::graph::live::{self, GraphOptions, LiveRun, Source};
use govlake::ingest::IngestSummary;
use url::Url;

use super::summary::{IngestBar, print_summary};
use super::{ExitStatus, Printer};
use crate::cli::{IngestArgs, LiveArgs, OutputFormat};

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
        return Ok(Credential::ManagedIdentity(ManagedIdentity::from_env(
            live.client_id.clone(),
        )?));
    }
    if let Some(secret) = env("AZURE_CLIENT_SECRET") {
        return Ok(Credential::Secret(Secret::new(secret)));
    }
    if let Some(path) = env("AZURE_CLIENT_CERTIFICATE_PATH") {
        let password = env("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(Secret::new);
        let cert = ClientCertificate::from_file(std::path::Path::new(&path), password.as_ref())?;
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
pub type GraphOutcome = (CrawlSummary, IngestSummary, Option<(i64, i64)>);

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
    let since = match &live.since {
        Some(s) if !live.full => Some(timestamp(s, "--since")?),
        _ => None,
    };
    let options = GraphOptions {
        full: live.full,
        since,
        overlap_minutes: live.overlap_minutes,
        retention_days: live.graph_retention_days,
        page_size: live.page_size,
        approval_stages: live.device_code,
        concurrency: live.concurrency,
    };
    let now = chrono::Utc::now().timestamp_micros();
    let planned = live::plan_graph(lake, &options, now).await?;
    let aged_out = planned.retention_gap.as_ref().map(|g| (g.since, g.until));
    let run = LiveRun {
        source: Source::Graph(planned.plan),
        spool: live.spool.clone(),
        observed_at,
        chunk_rows: args.chunk_rows.max(1),
        endpoint: live.graph_endpoint.clone(),
        extra_gaps: planned.retention_gap.map(|g| g.gap).into_iter().collect(),
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
) -> anyhow::Result<(CrawlSummary, IngestSummary)> {
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
    fetched: &CrawlSummary,
    summary: &IngestSummary,
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

/// Runs a live ingest (shared by `ingest --graph`, `--log-analytics` and `demo --live`): a
/// progress bar per collection while it fetches, then the ingest's byte bar.
pub async fn fetch_and_ingest(
    lake: &govlake::lake::Lake,
    settings: ClientSettings,
    run: LiveRun,
    printer: &Printer,
) -> anyhow::Result<(CrawlSummary, IngestSummary)> {
    let bars = EntityBars::new(printer.progress);
    let spooled = live::fetch(settings, run, &|name, pages, records, throttled| {
        bars.update(name, pages, records, throttled)
    })
    .await;
    bars.finish();
    let bar = IngestBar::new(printer);
    let out = spooled?
        .ingest(lake, &|d, t, r| bar.update(d, t, r))
        .await?;
    bar.finish();
    Ok(out)
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
