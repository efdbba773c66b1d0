//! What a live run reads from Graph, and where it lands. Every collection the file ingest
//! knows is listed with the `$expand` Graph allows and the largest `$top`; children are
//! listed per parent (sponsors per connected organization, instances per review
//! definition, decisions per instance, members per incompatible group), a bounded number at
//! once (`--concurrency`), spooled in a fixed order whatever order they finish in. Two
//! collections are read incrementally, as the caller's [`Plan`] says: requests from a
//! `createdDateTime` (the last run's newest, or the oldest request still unfinished,
//! whichever is earlier, so requests that changed state are re-read), and audit events from
//! the last run's watermark minus an overlap (late events land inside it and are deduped by
//! id), or from `--since`; `--full` reads everything. With delegated sign-in (`--device-code`) the approval stages
//! of every request read are listed too: app-only tokens cannot read them, and the approval
//! trail is then rebuilt from audit events alone (`queries/approval_trail.sql` holds the
//! link rules).
//!
//! `crawl_log_analytics` reads the `AuditLogs` table of a Log Analytics workspace in
//! day-sized windows (a window the service answers only in part is split in halves) and
//! spools the rows as directoryAudit pages, for history older than Graph's retention.
//!
//! Pages are written verbatim to a spool folder (one file per page, exactly as an export
//! would hold them, Zstandard-compressed: `0000001.json.zst`) and the file ingest then reads
//! that folder: the same parser, the same
//! dedupe, the same typed tables as `govlake ingest --from`, and a record of what Graph
//! returned. A 403 on a collection (a missing permission) is a coverage gap, not a crash.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::Value;

use super::client::{Error, GraphClient, Result};

const EM: &str = "identityGovernance/entitlementManagement";

/// The top-level collections a crawl lists (name, Graph path), each with the application
/// permission that reads it (`govlake doctor` asks each for one item). Their children (sponsors, review instances
/// and decisions, group members) need the same permissions as their parents, except group
/// members (Directory.Read.All or GroupMember.Read.All).
pub const COLLECTIONS: &[(&str, &str, &str)] = &[
    (
        "catalogs",
        "identityGovernance/entitlementManagement/catalogs",
        "EntitlementManagement.Read.All",
    ),
    (
        "accessPackages",
        "identityGovernance/entitlementManagement/accessPackages",
        "EntitlementManagement.Read.All",
    ),
    (
        "assignmentPolicies",
        "identityGovernance/entitlementManagement/assignmentPolicies",
        "EntitlementManagement.Read.All",
    ),
    (
        "assignmentRequests",
        "identityGovernance/entitlementManagement/assignmentRequests",
        "EntitlementManagement.Read.All",
    ),
    (
        "assignments",
        "identityGovernance/entitlementManagement/assignments",
        "EntitlementManagement.Read.All",
    ),
    (
        "connectedOrganizations",
        "identityGovernance/entitlementManagement/connectedOrganizations",
        "EntitlementManagement.Read.All",
    ),
    (
        "accessReviews",
        "identityGovernance/accessReviews/definitions",
        "AccessReview.Read.All",
    ),
    (
        "directoryAudits",
        "auditLogs/directoryAudits",
        "AuditLog.Read.All",
    ),
];
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
    /// Lower bound of the requests' `createdDateTime` window (RFC 3339), when incremental.
    pub requests_since: Option<String>,
    /// Permissions beyond reading that the token carried (least privilege warning).
    pub write_roles: Vec<String>,
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

/// Where an incremental listing starts.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// Everything Graph still holds.
    All,
    /// From this time (UTC micros), inclusive.
    Since(i64),
}

impl Window {
    fn filter(self, field: &str) -> Option<(String, String)> {
        match self {
            Window::All => None,
            Window::Since(t) => {
                let since = crate::time::fmt_ts(t);
                Some((format!("{field} ge {since}"), since))
            }
        }
    }
}

/// What a crawl reads.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Requests created from here (plus the unfinished ones, which the caller folds in).
    pub requests: Window,
    /// Audit events from here.
    pub audits: Window,
    /// `$top`.
    pub page_size: u32,
    /// List each request's approval stages (delegated sign-in only).
    pub approval_stages: bool,
    /// Child listings (per parent) fetched at once.
    pub concurrency: usize,
}

struct Crawler<'a> {
    client: &'a GraphClient,
    spool: PathBuf,
    page_size: u32,
    summary: CrawlSummary,
    /// Pages per collection name, for progress.
    pages: BTreeMap<String, u64>,
    /// Child listings fetched at once.
    concurrency: usize,
    /// Ids of the objects listed under this collection name (when wanted).
    ids_of: Option<&'static str>,
    ids: Vec<String>,
    progress: &'a Progress<'a>,
}

/// `progress(collection, pages, records)`, totals per collection name so far.
pub type Progress<'a> = dyn Fn(&str, u64, u64) + Sync + 'a;

impl<'a> Crawler<'a> {
    fn new(
        client: &'a GraphClient,
        spool: &Path,
        page_size: u32,
        progress: &'a Progress<'a>,
    ) -> Result<Self> {
        std::fs::create_dir_all(spool).map_err(|source| Error::Spool {
            path: spool.to_path_buf(),
            source,
        })?;
        // Pages left by an earlier run (plain `.json` before pages were compressed) would be
        // ingested again as this run's: refused.
        let earlier = std::fs::read_dir(spool)
            .map_err(|source| Error::Spool {
                path: spool.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| is_spooled_page(p));
        if let Some(page) = earlier {
            return Err(Error::SpoolNotEmpty {
                path: spool.to_path_buf(),
                page,
            });
        }
        Ok(Crawler {
            client,
            spool: spool.to_path_buf(),
            page_size,
            summary: CrawlSummary::default(),
            pages: BTreeMap::new(),
            concurrency: 1,
            ids_of: None,
            ids: vec![],
            progress,
        })
    }

    /// Writes one page to the spool and counts it.
    fn spool_page(&mut self, name: &str, page: &Value) -> Result<()> {
        let values = page["value"].as_array().map_or(0, Vec::len) as u64;
        self.spool_text(name, &page.to_string(), values)
    }

    /// Writes one page, already as text, holding `values` records.
    fn spool_text(&mut self, name: &str, text: &str, values: u64) -> Result<()> {
        self.summary.pages += 1;
        self.summary.records += values;
        let records = self
            .summary
            .per_collection
            .entry(name.to_string())
            .or_default();
        *records += values;
        let records = *records;
        let pages = self.pages.entry(name.to_string()).or_default();
        *pages += 1;
        // Compressed (Zstandard, the fastest level): the spool of a large tenant is its whole
        // download, and JSON pages shrink about tenfold. The file ingest reads `.json.zst`.
        let file = self
            .spool
            .join(format!("{:07}.json.zst", self.summary.pages));
        zstd::stream::encode_all(text.as_bytes(), 1)
            .and_then(|packed| std::fs::write(&file, packed))
            .map_err(|source| Error::Spool { path: file, source })?;
        (self.progress)(name, *pages, records);
        Ok(())
    }

    fn finish(mut self) -> CrawlSummary {
        let s = &self.client.stats;
        self.summary.requests = s.requests.load(Ordering::Relaxed);
        self.summary.throttled = s.throttled.load(Ordering::Relaxed);
        self.summary.retries = s.retries.load(Ordering::Relaxed);
        self.summary.waited_secs = s.waited_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        self.summary.write_roles = super::credential::write_roles(&self.client.token_roles());
        self.summary
    }
}

/// Whether the file is a page a crawl spooled (`0000001.json.zst`, or `.json` as spooled
/// before pages were compressed).
fn is_spooled_page(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let stem = name
        .strip_suffix(".json.zst")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or("");
    stem.len() == 7 && stem.bytes().all(|b| b.is_ascii_digit())
}

/// Lists everything into `spool` (created), in a fixed order: the catalog and its policies,
/// requests (with their approval stages under delegated sign-in), assignments, connected
/// organizations and their sponsors, access reviews down to decisions, members of the
/// groups packages declare incompatible, and last the audit events.
pub async fn crawl(
    client: &GraphClient,
    spool: &Path,
    plan: Plan,
    progress: &Progress<'_>,
) -> Result<CrawlSummary> {
    let mut c = Crawler::new(client, spool, plan.page_size, progress)?;
    c.concurrency = plan.concurrency.max(1);
    let packages = c.catalog().await?;
    c.requests(plan.requests, plan.approval_stages).await?;
    c.list(
        "assignments",
        &format!("{EM}/assignments"),
        Some("target,accessPackage,assignmentPolicy"),
        None,
    )
    .await?;
    c.connected_organizations().await?;
    c.access_reviews().await?;
    c.incompatible_group_members(&packages).await?;
    let filter = plan.audits.filter("activityDateTime").map(|(f, since)| {
        c.summary.audit_events_since = Some(since);
        f
    });
    c.list("directoryAudits", "auditLogs/directoryAudits", None, filter)
        .await?;
    Ok(c.finish())
}

impl Crawler<'_> {
    /// Catalogs, access packages and assignment policies; returns the packages.
    async fn catalog(&mut self) -> Result<Vec<Value>> {
        self.list("catalogs", &format!("{EM}/catalogs"), None, None)
            .await?;
        let packages = self
            .list(
                "accessPackages",
                &format!("{EM}/accessPackages"),
                Some("catalog,incompatibleAccessPackages,incompatibleGroups,resourceRoleScopes($expand=role,scope)"),
                None,
            )
            .await?;
        self.list(
            "assignmentPolicies",
            &format!("{EM}/assignmentPolicies"),
            Some("accessPackage,customExtensionStageSettings($expand=customExtension)"),
            None,
        )
        .await?;
        Ok(packages)
    }

    /// Assignment requests created in `window`, and (delegated sign-in) each one's approval
    /// stages: one first, since refused once (app-only rights) is refused for every request.
    async fn requests(&mut self, window: Window, approval_stages: bool) -> Result<()> {
        if approval_stages {
            self.ids_of = Some("assignmentRequests");
        }
        let filter = window.filter("createdDateTime").map(|(f, since)| {
            self.summary.requests_since = Some(since);
            f
        });
        self.list(
            "assignmentRequests",
            &format!("{EM}/assignmentRequests"),
            Some("requestor,accessPackage,assignment"),
            filter,
        )
        .await?;
        if !approval_stages {
            return Ok(());
        }
        let stages = |id: &str| format!("{EM}/accessPackageAssignmentApprovals('{id}')/stages");
        let requests = std::mem::take(&mut self.ids);
        let paths: Vec<String> = self
            .usable_ids(&format!("{EM}/assignmentRequests"), requests, stages)
            .iter()
            .map(|id| stages(id))
            .collect();
        let (first, rest) = paths.split_at(paths.len().min(1));
        self.list_children("approvalStages", first.to_vec()).await?;
        if !self
            .summary
            .coverage_gaps
            .iter()
            .any(|g| g.table == "approval_stages")
        {
            self.list_children("approvalStages", rest.to_vec()).await?;
        }
        Ok(())
    }

    /// Connected organizations, and each one's internal and external sponsors.
    async fn connected_organizations(&mut self) -> Result<()> {
        let orgs = self
            .list(
                "connectedOrganizations",
                &format!("{EM}/connectedOrganizations"),
                None,
                None,
            )
            .await?;
        let sponsors = |org: &str| format!("{EM}/connectedOrganizations('{org}')/internalSponsors");
        let sponsor_lists: Vec<String> = self
            .usable_ids(
                &format!("{EM}/connectedOrganizations"),
                ids(&orgs),
                sponsors,
            )
            .iter()
            .flat_map(|org| {
                ["internalSponsors", "externalSponsors"]
                    .map(|kind| format!("{EM}/connectedOrganizations('{org}')/{kind}"))
            })
            .collect();
        self.list_children("sponsors", sponsor_lists).await?;
        Ok(())
    }

    /// Access review definitions, their instances, and each instance's decisions.
    async fn access_reviews(&mut self) -> Result<()> {
        let definitions = self
            .list(
                "accessReviews",
                &format!("{REVIEWS}/definitions"),
                None,
                None,
            )
            .await?;
        let instances_of = |def: &str| format!("{REVIEWS}/definitions('{def}')/instances");
        let defs = self.usable_ids(
            &format!("{REVIEWS}/definitions"),
            ids(&definitions),
            instances_of,
        );
        let instance_lists = defs.iter().map(|def| instances_of(def)).collect();
        let instances = self
            .list_children("accessReviewInstances", instance_lists)
            .await?;
        let decisions_of = |def: &str, inst: &str| {
            format!("{REVIEWS}/definitions('{def}')/instances('{inst}')/decisions")
        };
        let instances: Vec<Vec<String>> = defs
            .iter()
            .zip(instances)
            .map(|(def, listed)| {
                self.usable_ids(&instances_of(def), listed, |inst| decisions_of(def, inst))
            })
            .collect();
        let decision_lists = defs
            .iter()
            .zip(&instances)
            .flat_map(|(def, instances)| instances.iter().map(move |inst| decisions_of(def, inst)))
            .collect();
        self.list_children("accessReviewDecisions", decision_lists)
            .await?;
        Ok(())
    }

    /// Members of the groups that `packages` declare incompatible.
    async fn incompatible_group_members(&mut self, packages: &[Value]) -> Result<()> {
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
        let members = |g: &str| format!("groups('{g}')/members");
        let member_lists = self
            .usable_ids(&format!("{EM}/accessPackages"), groups, members)
            .iter()
            .map(|g| members(g))
            .collect();
        self.list_children("groupMembers", member_lists).await?;
        Ok(())
    }
}

/// Reads a Log Analytics workspace's `AuditLogs` from `since` to `until` (UTC micros) into
/// `spool` as directoryAudit pages.
pub async fn crawl_log_analytics(
    client: &GraphClient,
    spool: &Path,
    workspace: &str,
    since: i64,
    until: i64,
    progress: &Progress<'_>,
) -> Result<CrawlSummary> {
    use crate::ingest::loganalytics;
    if workspace.is_empty()
        || !workspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::Workspace(workspace.to_string()));
    }
    let url = client.service_url(&format!("v1/workspaces/{workspace}/query"))?;
    let columns: Vec<&str> = std::iter::once("TimeGenerated")
        .chain(loganalytics::COLUMNS.iter().map(|(c, _, _)| *c))
        .collect();
    let query = format!(
        "AuditLogs | project {} | order by TimeGenerated asc",
        columns.join(", ")
    );
    const DAY: i64 = 86_400_000_000;
    const MINUTE: i64 = 60_000_000;
    let mut c = Crawler::new(client, spool, 0, progress)?;
    c.summary.audit_events_since = Some(crate::time::fmt_ts(since));
    // Windows still to read, earliest last (popped first).
    let mut windows: Vec<(i64, i64)> = vec![];
    let mut start = since;
    while start < until {
        windows.push((start, (start + DAY).min(until)));
        start += DAY;
    }
    windows.reverse();
    while let Some((from, to)) = windows.pop() {
        let body = serde_json::json!({
            "query": query,
            "timespan": format!("{}/{}", crate::time::fmt_ts(from), crate::time::fmt_ts(to)),
        });
        let answer = client
            .post_json(&url, &body, |v| {
                v.get("tables").is_some_and(Value::is_array)
            })
            .await?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            // Part of the window only (the row or size limit): read it in halves.
            if to - from > MINUTE {
                let mid = from + (to - from) / 2;
                windows.push((mid, to));
                windows.push((from, mid));
                continue;
            }
            return Err(Error::Status {
                url: url.to_string(),
                status: 200,
                message: format!(
                    "the window {}..{} is answered only in part even one minute wide: {}",
                    crate::time::fmt_ts(from),
                    crate::time::fmt_ts(to),
                    super::scrub::scrub(&error.to_string(), &[])
                ),
            });
        }
        let events: Vec<Value> = loganalytics::answer_rows(&answer)
            .iter()
            .map(loganalytics::row_to_directory_audit)
            .collect();
        let page = serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits",
            "value": events,
        });
        c.spool_page("AuditLogs", &page)?;
    }
    Ok(c.finish())
}

/// Whether an id can go into a URL path as it is. Graph's ids are GUIDs or tokens of
/// letters, digits, `-` and `_`; anything else (a quote, slash, dot, `%`, `?`, `#`) could
/// change the request's path or query, and names no real object, so it is refused rather
/// than encoded.
fn url_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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
            "directoryAudits" | "assignmentRequests" | "assignments"
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
        loop {
            let mut page = match self.client.get_page(&url).await {
                Ok(p) => p,
                Err(Error::Forbidden { message, .. }) => {
                    self.refused(path, &message);
                    return Ok(kept);
                }
                Err(e) => return Err(e),
            };
            stamp_request_url(&mut page, &url);
            self.spool_page(name, &page)?;
            if let Some(v) = page["value"].as_array() {
                if keep {
                    kept.extend(v.iter().cloned());
                }
                if self.ids_of == Some(name) {
                    self.ids.extend(ids(v));
                }
            }
            match next_link(self.client, &page, &mut seen_links)? {
                Some(next) => url = next,
                None => return Ok(kept),
            }
        }
    }
}

/// Records on a page the URL it was fetched from, so ingestion can walk the listing's page
/// chain from its first page to its last and tell a whole snapshot from a partial one.
fn stamp_request_url(page: &mut Value, url: &url::Url) {
    if let Value::Object(m) = page {
        m.insert(
            crate::ingest::reader::REQUEST_URL_ANNOTATION.to_string(),
            Value::String(url.to_string()),
        );
    }
}

/// The next page's URL: `@odata.nextLink` as given, on the configured host, never seen before.
fn next_link(
    client: &GraphClient,
    page: &Value,
    seen: &mut HashSet<String>,
) -> Result<Option<url::Url>> {
    let Some(link) = page["@odata.nextLink"].as_str() else {
        return Ok(None);
    };
    if !seen.insert(link.to_string()) {
        return Err(Error::LinkCycle(link.to_string()));
    }
    client.check_link(link).map(Some)
}

/// The table a collection path feeds (the path itself when unknown).
fn table_of(path: &str) -> String {
    crate::ingest::context::from_context(&format!(
        "https://graph.microsoft.com/v1.0/$metadata#{path}"
    ))
    .map_or_else(|| path.to_string(), |r| r.entity.to_string())
}

/// One listing fetched whole: its pages (as text: a parsed page takes several times the
/// memory), or Graph's refusal.
enum Listing {
    Pages(Vec<FetchedPage>),
    Refused(String),
}

/// A page held until its turn to be spooled.
struct FetchedPage {
    text: String,
    records: u64,
    ids: Vec<String>,
}

async fn fetch_listing(client: &GraphClient, mut url: url::Url) -> Result<Listing> {
    let mut seen = HashSet::new();
    let mut pages = vec![];
    loop {
        let mut page = match client.get_page(&url).await {
            Ok(p) => p,
            Err(Error::Forbidden { message, .. }) => return Ok(Listing::Refused(message)),
            Err(e) => return Err(e),
        };
        stamp_request_url(&mut page, &url);
        let next = next_link(client, &page, &mut seen)?;
        let values = page["value"].as_array().map_or(&[][..], Vec::as_slice);
        pages.push(FetchedPage {
            text: page.to_string(),
            records: values.len() as u64,
            ids: ids(values),
        });
        match next {
            Some(n) => url = n,
            None => return Ok(Listing::Pages(pages)),
        }
    }
}

impl Crawler<'_> {
    /// The ids of `parent`'s objects whose children can be listed: each id that is not
    /// [`url_safe_id`] is left out and recorded as a coverage gap of the table its
    /// children (`child(id)`'s listing) feed, naming it. No request is made for it.
    fn usable_ids(
        &mut self,
        parent: &str,
        ids: Vec<String>,
        child: impl Fn(&str) -> String,
    ) -> Vec<String> {
        let (usable, hostile): (Vec<String>, Vec<String>) =
            ids.into_iter().partition(|id| url_safe_id(id));
        if hostile.is_empty() {
            return usable;
        }
        let example = child("00000000-0000-0000-0000-000000000000");
        let table = table_of(&example);
        let what = example.rsplit('/').next().unwrap_or(&example).to_string();
        for id in hostile {
            // Bounded, and no control characters reach a terminal.
            let mut shown: String = id
                .chars()
                .take(300)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            if id.chars().count() > 300 {
                shown.push('…');
            }
            tracing::warn!(collection = %parent, table = %table, "Skipped an object whose id is not a Graph id: `{shown}`.");
            self.summary.coverage_gaps.push(CoverageGap {
                collection: parent.to_string(),
                table: table.clone(),
                reason: format!(
                    "the id `{shown}` of an object listed there is not a Graph id (letters, digits, `-` and `_` only), so its {what} were not requested; the object itself is stored as listed"
                ),
            });
        }
        usable
    }

    /// Records a collection Graph refused (403) as a coverage gap of its table (once per
    /// table).
    fn refused(&mut self, path: &str, message: &str) {
        tracing::warn!(collection = %path, "Graph refused the collection (403): {message}");
        let table = table_of(path);
        if self.summary.coverage_gaps.iter().any(|g| g.table == table) {
            return;
        }
        self.summary.coverage_gaps.push(CoverageGap {
            collection: path.to_string(),
            table,
            reason: format!(
                "Graph refused it (403: {message}); grant the app its read permission and rerun"
            ),
        });
    }

    /// Lists many small collections (children of parents), up to `concurrency` at once;
    /// their pages are spooled in the order of `paths`. Returns the ids each listing held
    /// (not the objects: decisions alone can be millions).
    async fn list_children(&mut self, name: &str, paths: Vec<String>) -> Result<Vec<Vec<String>>> {
        use futures::StreamExt as _;
        let client = self.client;
        let top = [("$top", self.page_size.to_string())];
        let listings = paths
            .into_iter()
            .map(|path| Ok((client.url(&path, &top)?, path)))
            .collect::<Result<Vec<_>>>()?;
        let mut fetched = futures::stream::iter(listings)
            .map(|(url, path)| async move { (path, fetch_listing(client, url).await) })
            .buffered(self.concurrency);
        let mut out = vec![];
        while let Some((path, listing)) = fetched.next().await {
            let mut listed = vec![];
            match listing? {
                Listing::Refused(message) => self.refused(&path, &message),
                Listing::Pages(pages) => {
                    for page in pages {
                        self.spool_text(name, &page.text, page.records)?;
                        listed.extend(page.ids);
                    }
                }
            }
            out.push(listed);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_graph_shaped_ids_go_into_paths() {
        for ok in [
            "a8ed9031-b4e0-45bd-a712-ed849715b00c",
            "IGA_007af2b6_00000415",
            "abc",
        ] {
            assert!(url_safe_id(ok), "{ok}");
        }
        for bad in [
            "",
            "x')/../../../../auditLogs/directoryAudits?$top=1&x=#",
            "..",
            "a/b",
            "a%2Fb",
            "a'b",
            "a b",
            "a?b",
            "a#b",
            "a.b",
            "é",
        ] {
            assert!(!url_safe_id(bad), "{bad}");
        }
        assert!(!url_safe_id(&"a".repeat(257)));
    }
}
