//! Live ingestion, `govlake ingest --graph` and `--log-analytics` without the printing:
//! where an incremental run starts, what it already knows it will miss, and the
//! spool-then-ingest sequence. Watermarks live in the lake (`_ingest_runs.watermark`),
//! written only when the run's commits are done, so a failed run leaves them where they
//! were. Requests start at the newest `createdDateTime` stored minus the overlap, or at the
//! oldest request still unfinished, whichever is earlier; audit events at their watermark
//! minus the overlap, or `--since`. An audit window that starts before Graph's retention is a
//! coverage gap, named with the Log Analytics backfill that fills it. [`fetch`] lists the
//! source into a spool folder (pages as an export holds them, plus its `_export.json`), and
//! [`Spooled::ingest`] ingests that folder exactly as `--from` would, with the crawl's
//! coverage gaps recorded in the run; a temporary spool is removed once ingested.

use std::path::PathBuf;

use super::client::{ClientSettings, GraphClient};
use super::crawl::{self, CoverageGap, CrawlSummary, Plan, Window};
pub use super::error::LiveError;
use crate::ingest::{IngestSettings, IngestSummary, ProgressFn};
use crate::lake::Lake;

/// Result of live ingestion.
pub type Result<T, E = LiveError> = std::result::Result<T, E>;

/// A minute in UTC micros.
pub const MINUTE_MICROS: i64 = 60_000_000;

/// Request states that can still change; such requests are re-read until they settle.
const UNFINISHED_REQUEST_STATES: &str = "'submitted', 'pendingApproval', 'delivering', 'scheduled'";

/// The newest value any earlier run stored for `table` (UTC micros).
pub async fn watermark(lake: &Lake, table: &str) -> Result<Option<i64>> {
    let mut newest: Option<i64> = None;
    lake.scan_sql(
        crate::lake::bookkeeping::INGEST_RUNS,
        "select cast(max(watermark) as varchar), table_name from _ingest_runs group by table_name",
        |v| {
            if v[1] == Some(table) {
                newest = v[0].and_then(crate::time::parse_ts);
            }
        },
    )
    .await
    .map_err(|source| LiveError::Lake {
        table: table.to_string(),
        source: Box::new(source),
    })?;
    Ok(newest)
}

/// Where requests start: the newest createdDateTime stored minus the overlap, or the oldest
/// request the lake still holds as unfinished, whichever is earlier.
async fn requests_window(lake: &Lake, overlap: i64) -> Result<Window> {
    let table = "assignment_requests";
    let Some(newest) = watermark(lake, table).await? else {
        return Ok(Window::All);
    };
    let mut oldest_open: Option<i64> = None;
    lake.scan_sql(
        table,
        &format!(
            "select cast(min(created_date_time) as varchar) from assignment_requests where state in ({UNFINISHED_REQUEST_STATES})"
        ),
        |v| oldest_open = v[0].and_then(crate::time::parse_ts),
    )
    .await
    .map_err(|source| LiveError::Lake {
        table: table.to_string(),
        source: Box::new(source),
    })?;
    let from = newest - overlap;
    Ok(Window::Since(oldest_open.map_or(from, |o| o.min(from))))
}

/// What a Graph run asks for.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Read everything, ignoring the watermarks.
    pub full: bool,
    /// Audit events from here (UTC micros) instead of the watermark.
    pub since: Option<i64>,
    /// How far before a watermark to start again (late events land inside it).
    pub overlap_minutes: u64,
    /// How many days Graph keeps audit events.
    pub retention_days: u64,
    /// `$top`.
    pub page_size: u32,
    /// List each request's approval stages (delegated sign-in only).
    pub approval_stages: bool,
    /// Child listings fetched at once.
    pub concurrency: usize,
}

/// An audit window that starts before Graph's retention: what Graph can no longer serve.
#[derive(Debug, Clone)]
pub struct RetentionGap {
    /// Start of the window (UTC micros).
    pub since: i64,
    /// The oldest event Graph still keeps (UTC micros): the gap ends here.
    pub until: i64,
    /// The gap as the run records it.
    pub gap: CoverageGap,
}

/// A Graph run's plan, and the gap it knows of before fetching.
#[derive(Debug, Clone)]
pub struct GraphPlan {
    /// What to read.
    pub plan: Plan,
    /// The audit window past Graph's retention, when there is one.
    pub retention_gap: Option<RetentionGap>,
}

/// Plans a Graph run against what the lake holds, at `now` (UTC micros).
pub async fn plan_graph(lake: &Lake, opts: &GraphOptions, now: i64) -> Result<GraphPlan> {
    let overlap = opts.overlap_minutes as i64 * MINUTE_MICROS;
    let (requests, audits) = if opts.full {
        (Window::All, Window::All)
    } else {
        let audits = match opts.since {
            Some(s) => Window::Since(s),
            None => match watermark(lake, "audit_events").await? {
                Some(w) => Window::Since(w - overlap),
                None => Window::All,
            },
        };
        (requests_window(lake, overlap).await?, audits)
    };
    Ok(GraphPlan {
        plan: Plan {
            requests,
            audits,
            page_size: opts.page_size,
            approval_stages: opts.approval_stages,
            concurrency: opts.concurrency.max(1),
        },
        retention_gap: retention_gap(audits, opts.retention_days, now),
    })
}

/// The part of an audit window older than Graph keeps (`retention_days` before `now`).
pub fn retention_gap(audits: Window, retention_days: u64, now: i64) -> Option<RetentionGap> {
    let horizon = now - retention_days as i64 * 1440 * MINUTE_MICROS;
    let Window::Since(since) = audits else {
        return None;
    };
    (since < horizon).then(|| RetentionGap {
        since,
        until: horizon,
        gap: CoverageGap {
            collection: "auditLogs/directoryAudits".into(),
            table: "audit_events".into(),
            reason: format!(
                "the window starts at {} but Graph keeps audit events {} days (until {}): events in between may be missing; backfill them with `govlake ingest --log-analytics WORKSPACE_ID --since {0} --until {2}` or from a diagnostic-settings archive",
                crate::time::fmt_ts(since),
                retention_days,
                crate::time::fmt_ts(horizon),
            ),
        },
    })
}

/// What a live run reads.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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

/// `on_page(collection, pages, records, throttled)`: totals per collection so far, and the
/// run's 429s.
pub type PageProgress<'a> = dyn Fn(&str, u64, u64, u64) + Sync + 'a;

/// A source listed into a spool folder, ready to ingest.
#[derive(Debug)]
pub struct Spooled {
    /// What was fetched, the known gaps included.
    pub fetched: CrawlSummary,
    /// The folder.
    pub spool: PathBuf,
    temporary: bool,
    observed_at: i64,
    chunk_rows: usize,
}

/// Lists `run`'s source into its spool folder (a temporary one when none is given).
pub async fn fetch(
    settings: ClientSettings,
    run: LiveRun,
    on_page: &PageProgress<'_>,
) -> Result<Spooled> {
    let observed_at = run
        .observed_at
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    let (spool, temporary) = match run.spool {
        Some(p) => (p, false),
        None => (
            std::env::temp_dir().join(format!("govlake-graph-{}", uuid::Uuid::new_v4())),
            true,
        ),
    };
    let client = GraphClient::new(settings)?;
    let stats = &client.stats;
    let progress = |name: &str, pages: u64, records: u64| {
        on_page(
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
    let mut fetched = fetched.map_err(|source| LiveError::Fetch {
        endpoint: run.endpoint.clone(),
        spool: spool.clone(),
        source,
    })?;
    fetched.coverage_gaps.extend(run.extra_gaps);
    let export = spool.join("_export.json");
    let stamp =
        serde_json::json!({"exportedAt": crate::time::fmt_ts(observed_at), "source": run.endpoint});
    std::fs::write(&export, stamp.to_string()).map_err(|source| LiveError::Export {
        path: export,
        source,
    })?;
    Ok(Spooled {
        fetched,
        spool,
        temporary,
        observed_at,
        chunk_rows: run.chunk_rows,
    })
}

impl Spooled {
    /// Ingests the spool folder as `ingest --from` would, recording the crawl's coverage
    /// gaps in the run; a temporary spool is then removed.
    pub async fn ingest(
        self,
        lake: &Lake,
        progress: ProgressFn<'_>,
    ) -> Result<(CrawlSummary, IngestSummary)> {
        let settings = IngestSettings {
            inputs: vec![self.spool.clone()],
            observed_at: Some(self.observed_at),
            chunk_rows: self.chunk_rows,
            coverage_gaps: self
                .fetched
                .coverage_gaps
                .iter()
                .map(|g| (g.table.clone(), format!("{}: {}", g.collection, g.reason)))
                .collect(),
            ..IngestSettings::default()
        };
        let summary = crate::ingest::run(lake, &settings, progress)
            .await
            .map_err(|source| LiveError::Ingest {
                lake: lake.location().display().to_string(),
                spool: self.spool.clone(),
                source: Box::new(source),
            })?;
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.spool);
        }
        Ok((self.fetched, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_older_than_graph_keeps_is_a_gap_that_names_the_backfill() {
        let day = 1440 * MINUTE_MICROS;
        let now = crate::time::parse_ts("2026-10-31T00:00:00Z").unwrap();
        assert!(retention_gap(Window::All, 30, now).is_none());
        assert!(retention_gap(Window::Since(now - 30 * day), 30, now).is_none());
        let g = retention_gap(Window::Since(now - 40 * day), 30, now).unwrap();
        assert_eq!((g.since, g.until), (now - 40 * day, now - 30 * day));
        assert_eq!(g.gap.table, "audit_events");
        assert!(
            g.gap.reason.contains(
                "--log-analytics WORKSPACE_ID --since 2026-09-21T00:00:00Z --until 2026-10-01T00:00:00Z"
            ),
            "{}",
            g.gap.reason
        );
    }
}
