//! What a live run reads from Graph, and where it lands. Every collection the file ingest
//! knows is listed with the `$expand` Graph allows and the largest `$top`; children are
//! listed per parent (sponsors per connected organization, instances per review
//! definition, decisions per instance, members per incompatible group). Audit events are
//! read incrementally: from the last run's watermark minus an overlap (late events land
//! inside it and are deduped by id), or from `--since`, or all of them with `--full`.
//!
//! Pages are written verbatim to a spool folder (one file per page, exactly as an export
//! would hold them) and the file ingest then reads that folder: the same parser, the same
//! dedupe, the same typed tables as `govlake ingest --from`, and a record of what Graph
//! returned. A 403 on a collection (a missing permission) is a coverage gap, not a crash.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::Value;

use super::client::{Error, GraphClient, Result};

const EM: &str = "identityGovernance/entitlementManagement";
const REVIEWS: &str = "identityGovernance/accessReviews";

/// What a crawl fetched.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CrawlSummary {
    /// Pages fetched.
    pub pages: u64,
    /// Records in them.
    pub records: u64,
    /// Records per collection (top-level name).
    pub per_collection: BTreeMap<String, u64>,
    /// HTTP requests (retries included).
    pub requests: u64,
    /// 429 answers waited out.
    pub throttled: u64,
    /// Retries of any cause.
    pub retries: u64,
    /// Seconds spent waiting (Retry-After, backoff, rate limiter).
    pub waited_secs: f64,
    /// Collections Graph refused (403): what is missing and why.
    pub coverage_gaps: Vec<CoverageGap>,
    /// Lower bound of the audit-event window (RFC 3339), when incremental.
    pub audit_events_since: Option<String>,
}

/// A collection that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageGap {
    /// Collection path.
    pub collection: String,
    /// The table it feeds.
    pub table: String,
    /// Graph's reason.
    pub reason: String,
}

/// Where audit events start.
#[derive(Debug, Clone, Copy)]
pub enum AuditWindow {
    /// Everything Graph still holds.
    All,
    /// From this time (UTC micros), inclusive.
    Since(i64),
}

struct Crawler<'a> {
    client: &'a GraphClient,
    spool: PathBuf,
    page_size: u32,
    summary: CrawlSummary,
    progress: &'a (dyn Fn(&str, u64, u64) + Sync),
}

/// Lists everything into `spool` (created). `progress(collection, pages, records)`.
pub async fn crawl(
    client: &GraphClient,
    spool: &Path,
    page_size: u32,
    audits: AuditWindow,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<CrawlSummary> {
    std::fs::create_dir_all(spool)
        .map_err(|e| Error::BadUrl(format!("{}: {e}", spool.display())))?;
    let mut c = Crawler {
        client,
        spool: spool.to_path_buf(),
        page_size,
        summary: CrawlSummary::default(),
        progress,
    };
    c.list("catalogs", &format!("{EM}/catalogs"), None, None)
        .await?;
    let packages = c
        .list(
            "accessPackages",
            &format!("{EM}/accessPackages"),
            Some("catalog,incompatibleAccessPackages,incompatibleGroups,resourceRoleScopes($expand=role,scope)"),
            None,
        )
        .await?;
    c.list(
        "assignmentPolicies",
        &format!("{EM}/assignmentPolicies"),
        Some("accessPackage,customExtensionStageSettings($expand=customExtension)"),
        None,
    )
    .await?;
    c.list(
        "assignmentRequests",
        &format!("{EM}/assignmentRequests"),
        Some("requestor,accessPackage,assignment"),
        None,
    )
    .await?;
    c.list(
        "assignments",
        &format!("{EM}/assignments"),
        Some("target,accessPackage,assignmentPolicy"),
        None,
    )
    .await?;
    let orgs = c
        .list(
            "connectedOrganizations",
            &format!("{EM}/connectedOrganizations"),
            None,
            None,
        )
        .await?;
    for org in ids(&orgs) {
        for kind in ["internalSponsors", "externalSponsors"] {
            c.list(
                kind,
                &format!("{EM}/connectedOrganizations('{org}')/{kind}"),
                None,
                None,
            )
            .await?;
        }
    }
    let definitions = c
        .list(
            "accessReviews",
            &format!("{REVIEWS}/definitions"),
            None,
            None,
        )
        .await?;
    for def in ids(&definitions) {
        let instances = c
            .list(
                "accessReviewInstances",
                &format!("{REVIEWS}/definitions('{def}')/instances"),
                None,
                None,
            )
            .await?;
        for inst in ids(&instances) {
            c.list(
                "accessReviewDecisions",
                &format!("{REVIEWS}/definitions('{def}')/instances('{inst}')/decisions"),
                None,
                None,
            )
            .await?;
        }
    }
    // Members of the groups that packages declare incompatible.
    let mut groups: Vec<String> = packages
        .iter()
        .flat_map(|p| {
            p["incompatibleGroups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|g| g["id"].as_str().map(str::to_string))
        .collect();
    groups.sort();
    groups.dedup();
    for g in groups {
        c.list(
            "groupMembers",
            &format!("groups('{g}')/members"),
            None,
            None,
        )
        .await?;
    }
    let filter = match audits {
        AuditWindow::All => None,
        AuditWindow::Since(t) => {
            let since = crate::lake::fmt_ts(t);
            c.summary.audit_events_since = Some(since.clone());
            Some(format!("activityDateTime ge {since}"))
        }
    };
    c.list("directoryAudits", "auditLogs/directoryAudits", None, filter)
        .await?;

    let s = &client.stats;
    c.summary.requests = s.requests.load(Ordering::Relaxed);
    c.summary.throttled = s.throttled.load(Ordering::Relaxed);
    c.summary.retries = s.retries.load(Ordering::Relaxed);
    c.summary.waited_secs = s.waited_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    Ok(c.summary)
}

/// Ids of listed objects.
fn ids(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_string))
        .collect()
}

impl Crawler<'_> {
    /// Lists one collection to the spool; returns its objects when they are needed for
    /// children (small collections), else an empty list.
    async fn list(
        &mut self,
        name: &str,
        path: &str,
        expand: Option<&str>,
        filter: Option<String>,
    ) -> Result<Vec<Value>> {
        let keep = !matches!(
            name,
            "directoryAudits" | "assignmentRequests" | "assignments" | "accessReviewDecisions"
        );
        let mut query = vec![("$top", self.page_size.to_string())];
        if let Some(e) = expand {
            query.push(("$expand", e.to_string()));
        }
        if let Some(f) = filter {
            query.push(("$filter", f));
        }
        let mut url = self.client.url(path, &query)?;
        let mut seen_links = HashSet::new();
        let mut kept = vec![];
        let (mut pages, mut records) = (0u64, 0u64);
        loop {
            let page = match self.client.get_page(&url).await {
                Ok(p) => p,
                Err(Error::Forbidden { message, .. }) => {
                    tracing::warn!(collection = %path, "Graph refused the collection (403): {message}");
                    let table = crate::ingest::context::from_context(&format!(
                        "https://graph.microsoft.com/v1.0/$metadata#{path}"
                    ))
                    .map_or_else(|| path.to_string(), |r| r.entity.to_string());
                    self.summary.coverage_gaps.push(CoverageGap {
                        collection: path.to_string(),
                        table,
                        reason: message,
                    });
                    return Ok(kept);
                }
                Err(e) => return Err(e),
            };
            self.summary.pages += 1;
            pages += 1;
            let values = page["value"].as_array().map_or(0, Vec::len) as u64;
            records += values;
            self.summary.records += values;
            *self
                .summary
                .per_collection
                .entry(name.to_string())
                .or_default() += values;
            let file = self.spool.join(format!("{:07}.json", self.summary.pages));
            std::fs::write(&file, page.to_string())
                .map_err(|e| Error::BadUrl(format!("cannot write `{}`: {e}", file.display())))?;
            if keep && let Some(v) = page["value"].as_array() {
                kept.extend(v.iter().cloned());
            }
            (self.progress)(name, pages, records);
            match page["@odata.nextLink"].as_str() {
                Some(link) => {
                    if !seen_links.insert(link.to_string()) {
                        return Err(Error::LinkCycle(link.to_string()));
                    }
                    url = self.client.check_link(link)?;
                }
                None => return Ok(kept),
            }
        }
    }
}
