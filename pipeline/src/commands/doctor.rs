//! `govlake doctor`: before the first scheduled run, checks what a run needs, one line each
//! with ok / warning / failed and what to do — the config file and the lake's location; that
//! the lake is readable and writable (a probe object, removed again; no lake is created);
//! with `--graph`, sign-in, the token's app roles (the read permissions needed; any write
//! permission is a warning), a one-item request to every collection a run lists (a 403
//! names the missing permission), the lake's newest audit event against Graph's retention,
//! and the clock against the token endpoint's; with `--log-analytics`, sign-in and a
//! one-row query of the workspace. Exit 0 all ok, 1 warnings, 2 a failure.

use std::time::Duration;

use govlake::graph::client::{Error as GraphError, GraphClient};
use serde::Serialize;

use super::{ExitStatus, Printer};
use crate::cli::{DoctorArgs, GlobalArgs, OutputFormat};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warning,
    Failed,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failed => "failed",
        }
    }
}

/// One line of the report: what was checked, how it went, and what to do about it.
#[derive(Debug, Serialize)]
struct Check {
    check: String,
    status: Status,
    detail: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.0.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
        });
    }

    fn worst(&self) -> Status {
        self.0.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
    }
}

/// Skew beyond which Entra refuses client assertions (and tokens look expired): 5 minutes.
const SKEW_FAILED_SECS: i64 = 300;
/// Skew worth fixing before it grows.
const SKEW_WARNING_SECS: i64 = 60;

/// The application permissions a run needs, each with what it reads. Group members are
/// read with either of the last two.
const NEEDED_ROLES: &[(&[&str], &str)] = &[
    (
        &["EntitlementManagement.Read.All"],
        "catalogs, packages, policies, requests, assignments, connected organisations",
    ),
    (&["AccessReview.Read.All"], "access reviews and decisions"),
    (&["AuditLog.Read.All"], "audit events"),
    (
        &["Directory.Read.All", "GroupMember.Read.All"],
        "members of incompatible groups",
    ),
];

/// Whether `roles` grant `read` (`X.Read.All`), directly or through `X.ReadWrite.All`.
fn grants(roles: &[String], read: &str) -> bool {
    let write = read.replace(".Read.", ".ReadWrite.");
    roles.iter().any(|r| r == read || *r == write)
}

/// Runs `govlake doctor`.
pub async fn run(
    global: &GlobalArgs,
    args: &DoctorArgs,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let mut report = Report::default();
    let lake = check_lake(global, &mut report).await;
    if args.graph {
        check_graph(args, lake.as_ref(), &mut report).await;
    }
    if let Some(workspace) = &args.log_analytics {
        check_log_analytics(args, workspace, &mut report).await;
    }
    let worst = report.worst();
    if printer.format == OutputFormat::Json {
        printer.json("doctor", worst.word(), &report.0)?;
    } else {
        let width = report.0.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in &report.0 {
            println!("{:<8} {:<width$}  {}", c.status.word(), c.check, c.detail);
        }
    }
    Ok(match worst {
        Status::Ok => ExitStatus::Success,
        Status::Warning => ExitStatus::Failure,
        Status::Failed => ExitStatus::Error,
    })
}

/// Config, location, and the lake's being readable and writable. Returns the lake when it
/// exists (the audit retention check reads it).
async fn check_lake(global: &GlobalArgs, report: &mut Report) -> Option<govlake::lake::Lake> {
    let config = match govlake::config::PipelineConfig::load(global.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            report.add("config file", Status::Failed, format!("{e}; fix the file"));
            return None;
        }
    };
    match &config.source {
        Some(p) => report.add("config file", Status::Ok, format!("{} read", p.display())),
        None => report.add(
            "config file",
            Status::Ok,
            "none (./govlake.toml absent, no --config or GOVLAKE_CONFIG): defaults",
        ),
    }
    let options = super::storage_options(global, &config);
    let location = global
        .lake
        .clone()
        .or(config.lake.location.clone())
        .unwrap_or_else(|| "govlake-data".to_string());
    let loc = match govlake::lake::LakeLocation::resolve(&location, options) {
        Ok(l) => l,
        Err(e) => {
            report.add(
                "lake location",
                Status::Failed,
                format!("{e}; fix --lake, GOVLAKE_LAKE or [lake] location"),
            );
            return None;
        }
    };
    let shown = loc.display();
    report.add("lake location", Status::Ok, shown.clone());
    let lake = govlake::lake::Lake::new(loc).with_retention(config.lake.retention);
    let exists = match lake.exists().await {
        Ok(e) => e,
        Err(e) => {
            report.add(
                "lake readable",
                Status::Failed,
                format!(
                    "{e}; check the location, the network path and the storage credentials in the environment"
                ),
            );
            return None;
        }
    };
    if exists {
        report.add(
            "lake readable",
            Status::Ok,
            "a govlake lake (its _ingest_runs table loads)",
        );
    } else {
        report.add(
            "lake readable",
            Status::Ok,
            "no lake here yet: the first `govlake ingest` creates it",
        );
    }
    match probe_write(&lake).await {
        Ok(what) => report.add("lake writable", Status::Ok, what),
        Err(e) => report.add(
            "lake writable",
            Status::Failed,
            format!(
                "{e}; an ingest could not commit: grant write access to the location (e.g. Storage Blob Data Contributor, s3:PutObject and s3:DeleteObject)"
            ),
        ),
    }
    exists.then_some(lake)
}

/// Writes a probe object into the lake's location and removes it again. A local lake that
/// does not exist yet is probed in its nearest existing parent folder, so nothing is left.
async fn probe_write(lake: &govlake::lake::Lake) -> anyhow::Result<String> {
    use deltalake::logstore::object_store::{ObjectStoreExt as _, PutPayload, path::Path};
    let name = format!("_govlake_doctor_probe_{}", uuid::Uuid::new_v4().simple());
    let url = &lake.location().url;
    if url.scheme() == "memory" {
        return Ok("an in-memory lake (gone when the process ends)".into());
    }
    if let Ok(folder) = url.to_file_path() {
        let mut dir = folder.as_path();
        while !dir.is_dir() {
            dir = dir.parent().ok_or_else(|| {
                anyhow::anyhow!("no parent folder of {} exists", folder.display())
            })?;
        }
        let probe = dir.join(&name);
        std::fs::write(&probe, b"govlake doctor")
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", probe.display()))?;
        std::fs::remove_file(&probe)
            .map_err(|e| anyhow::anyhow!("wrote but cannot remove `{}`: {e}", probe.display()))?;
        return Ok(if dir == folder {
            "a probe file was written and removed".into()
        } else {
            format!(
                "the folder does not exist yet; {} (where the first ingest creates it) took a probe file",
                dir.display()
            )
        });
    }
    let (store, prefix) = govlake::lake::backends::build(url, &lake.location().storage_options)?;
    let path = Path::from(if prefix.as_ref().is_empty() {
        name.clone()
    } else {
        format!("{prefix}/{name}")
    });
    store
        .put(&path, PutPayload::from_static(b"govlake doctor"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot write the probe object `{path}`: {e}"))?;
    store
        .delete(&path)
        .await
        .map_err(|e| anyhow::anyhow!("wrote but cannot delete the probe object `{path}`: {e}"))?;
    Ok(format!("the probe object {path} was written and deleted"))
}

/// An error with its causes (`a: b: c`), as a check's detail.
fn causes(e: impl Into<anyhow::Error>) -> String {
    format!("{:#}", e.into())
}

/// A Graph client for `endpoint`, with few attempts: a check should answer in seconds.
fn client(args: &DoctorArgs, endpoint: &str, flag: &str) -> anyhow::Result<GraphClient> {
    let mut settings = super::live::client_settings(&args.live, endpoint, flag)?;
    settings.max_attempts = settings.max_attempts.min(3);
    settings.deadline = settings.deadline.min(Duration::from_secs(300));
    Ok(GraphClient::new(settings)?)
}

/// Signs in; reports it. `None` when sign-in failed (the checks that need it are skipped).
async fn signed_in(
    args: &DoctorArgs,
    endpoint: &str,
    flag: &str,
    name: &str,
    report: &mut Report,
) -> Option<GraphClient> {
    let client = match client(args, endpoint, flag) {
        Ok(c) => c,
        Err(e) => {
            report.add(name, Status::Failed, causes(e));
            return None;
        }
    };
    match client.sign_in().await {
        Ok(()) => {
            report.add(name, Status::Ok, "a token was issued");
            Some(client)
        }
        Err(e) => {
            report.add(name, Status::Failed, causes(e));
            None
        }
    }
}

/// Sign-in, roles, collections, retention and clock against Graph.
async fn check_graph(args: &DoctorArgs, lake: Option<&govlake::lake::Lake>, report: &mut Report) {
    let live = &args.live;
    let Some(client) = signed_in(
        args,
        &live.graph_endpoint,
        "--graph-endpoint",
        "Graph sign-in",
        report,
    )
    .await
    else {
        return;
    };
    check_clock(&client, report);
    check_roles(&client.token_roles(), report);
    for &(collection, path, permission) in govlake::graph::crawl::COLLECTIONS {
        let name = format!("Graph {collection}");
        let outcome = match client.url(path, &[("$top", "1".to_string())]) {
            Ok(url) => client.get_page(&url).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => report.add(name, Status::Ok, format!("{path} answers")),
            Err(GraphError::Forbidden { message, .. }) => report.add(
                name,
                Status::Failed,
                format!(
                    "{path} is refused (403: {message}): grant the application permission {permission} (with admin consent)"
                ),
            ),
            Err(e) => report.add(name, Status::Failed, causes(e)),
        }
    }
    check_retention(args, lake, report).await;
}

/// The token endpoint's clock against ours.
fn check_clock(client: &GraphClient, report: &mut Report) {
    let name = "clock skew";
    match client.token_clock_skew() {
        None => report.add(
            name,
            Status::Warning,
            "the token endpoint sent no Date header: skew unknown; keep the clock synchronised (NTP)",
        ),
        Some(s) if s.abs() > SKEW_FAILED_SECS => report.add(
            name,
            Status::Failed,
            format!(
                "this machine's clock is {} s {} the token endpoint's: beyond 5 minutes sign-in assertions are refused; synchronise the clock (NTP)",
                s.abs(),
                if s > 0 { "behind" } else { "ahead of" }
            ),
        ),
        Some(s) if s.abs() > SKEW_WARNING_SECS => report.add(
            name,
            Status::Warning,
            format!(
                "this machine's clock is {} s {} the token endpoint's; synchronise it (NTP) before it reaches 5 minutes",
                s.abs(),
                if s > 0 { "behind" } else { "ahead of" }
            ),
        ),
        Some(s) => report.add(
            name,
            Status::Ok,
            format!("within {} s of the token endpoint", s.abs().max(1)),
        ),
    }
}

/// The token's app roles: every needed read permission, and no write permission.
fn check_roles(roles: &[String], report: &mut Report) {
    if roles.is_empty() {
        report.add(
            "token roles",
            Status::Warning,
            "the token names no app roles (delegated or opaque token): the collection checks below show what it may read",
        );
        return;
    }
    let missing: Vec<String> = NEEDED_ROLES
        .iter()
        .filter(|(any_of, _)| !any_of.iter().any(|r| grants(roles, r)))
        .map(|(any_of, what)| format!("{} ({what})", any_of.join(" or ")))
        .collect();
    if missing.is_empty() {
        report.add(
            "token roles",
            Status::Ok,
            "every read permission a run needs is granted",
        );
    } else {
        report.add(
            "token roles",
            Status::Failed,
            format!(
                "missing {}: grant these application permissions (with admin consent)",
                missing.join("; ")
            ),
        );
    }
    let writes = govlake::graph::credential::write_roles(roles);
    if writes.is_empty() {
        report.add(
            "least privilege",
            Status::Ok,
            "the token carries no write permission",
        );
    } else {
        report.add(
            "least privilege",
            Status::Warning,
            format!(
                "the token carries permissions beyond reading ({}): govlake only reads; remove them from the app registration",
                writes.join(", ")
            ),
        );
    }
}

/// The lake's newest audit event against Graph's retention: events older than it are gone
/// from Graph, so a run later than `newest + retention` leaves a gap.
async fn check_retention(
    args: &DoctorArgs,
    lake: Option<&govlake::lake::Lake>,
    report: &mut Report,
) {
    let name = "audit retention";
    let days = args.live.graph_retention_days as i64;
    let Some(lake) = lake else {
        report.add(
            name,
            Status::Ok,
            format!("no lake yet: the first run reads the {days} days Graph keeps (older events: `ingest --log-analytics`)"),
        );
        return;
    };
    let newest = match govlake::graph::live::watermark(lake, "audit_events").await {
        Ok(w) => w,
        Err(e) => {
            report.add(name, Status::Failed, causes(e));
            return;
        }
    };
    let Some(newest) = newest else {
        report.add(
            name,
            Status::Ok,
            format!(
                "the lake holds no audit events yet: the next run reads the {days} days Graph keeps"
            ),
        );
        return;
    };
    const HOUR: i64 = 3_600_000_000;
    let now = chrono::Utc::now().timestamp_micros();
    let ages_out = newest + days * 24 * HOUR;
    let next_run = now + args.run_every_hours as i64 * HOUR;
    let newest_text = govlake::time::fmt_ts(newest);
    if ages_out <= now {
        report.add(
            name,
            Status::Warning,
            format!(
                "the lake's newest audit event is from {newest_text}, more than Graph's {days} days ago: events up to {} are gone from Graph; backfill with `govlake ingest --log-analytics WORKSPACE_ID --since {newest_text} --until {0}`",
                govlake::time::fmt_ts(now - days * 24 * HOUR)
            ),
        );
    } else if ages_out <= next_run {
        report.add(
            name,
            Status::Warning,
            format!(
                "the lake's newest audit event ({newest_text}) leaves Graph's {days} days at {}, before the next run ({} h from now): run `govlake ingest --graph` before then",
                govlake::time::fmt_ts(ages_out),
                args.run_every_hours
            ),
        );
    } else {
        report.add(
            name,
            Status::Ok,
            format!(
                "newest audit event {newest_text}; Graph keeps events after it until {}",
                govlake::time::fmt_ts(ages_out)
            ),
        );
    }
}

/// Sign-in to the Log Analytics API and a one-row query of the workspace.
async fn check_log_analytics(args: &DoctorArgs, workspace: &str, report: &mut Report) {
    let endpoint = &args.live.log_analytics_endpoint;
    let Some(client) = signed_in(
        args,
        endpoint,
        "--log-analytics-endpoint",
        "Log Analytics sign-in",
        report,
    )
    .await
    else {
        return;
    };
    let name = "Log Analytics workspace";
    let url = match client.service_url(&format!("v1/workspaces/{workspace}/query")) {
        Ok(u) => u,
        Err(e) => return report.add(name, Status::Failed, causes(e)),
    };
    let body = serde_json::json!({"query": "AuditLogs | take 1", "timespan": "P30D"});
    match client
        .post_json(&url, &body, |v| v.get("tables").is_some_and(serde_json::Value::is_array))
        .await
    {
        Ok(_) => report.add(name, Status::Ok, format!("{workspace} answers a query of AuditLogs")),
        Err(GraphError::Forbidden { message, .. }) => report.add(
            name,
            Status::Failed,
            format!("{workspace} refuses the query (403: {message}): give the application the Log Analytics Reader role on the workspace"),
        ),
        Err(e) => report.add(name, Status::Failed, causes(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_role_grants_its_read_and_the_worst_status_decides() {
        let roles = vec!["EntitlementManagement.ReadWrite.All".to_string()];
        assert!(grants(&roles, "EntitlementManagement.Read.All"));
        assert!(!grants(&roles, "AuditLog.Read.All"));
        let mut r = Report::default();
        r.add("a", Status::Ok, "");
        r.add("b", Status::Warning, "");
        assert_eq!(r.worst(), Status::Warning);
        r.add("c", Status::Failed, "");
        assert_eq!(r.worst(), Status::Failed);
    }
}
