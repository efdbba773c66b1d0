//! Synthetic tenants in export-directory form: the sample tenant (`sample-data/`) and the same
//! shape at any size for tests and benchmarks.
//!
//! The story (see `sample-data/README.md`): Woodgrove Bank's *Finance Applications* catalog
//! (*Financial Analyst - Standard*: an ERP app role, a BI workspace group, the finance
//! SharePoint site) and *Payment Operations* (*Vendor Payment - Initiator* / *- Approver*, the
//! approver package declaring the initiator incompatible; eleven clerks hold both,
//! grandfathered from the legacy PAY-Initiators / PAY-Approvers groups before the
//! incompatibility was declared); Fabrikam Audit LLP requesting through a two-stage policy
//! with 90-day expiry; quarterly reviews that remove access on timeout; an escalation, a
//! denial, a timeout, an admin direct grant, expired access still delivered, hostile text in
//! justifications and names; audit events for every request step. Output is a pure function
//! of (users, seed, page size): byte-identical on every run.
//!
//! Layout: [`Tenant::new`] decides who and what exists (`people.rs`, `catalog.rs`,
//! `policies.rs`); one [`TenantWriter`] then writes it page by page: the directory objects,
//! the history of requests, assignments and audit events (`history.rs` drives
//! `activity.rs`), the access reviews (`reviews.rs`) and the diagnostic archive.

mod activity;
mod catalog;
mod history;
mod people;
mod policies;
mod reviews;
mod writer;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use activity::Activity;
use catalog::Package;
use people::{People, User};
use policies::Policy;
use writer::{PageWriter, write_file};

/// Errors while writing a tenant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be written.
    #[error("Cannot write `{}`", path.display())]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The output folder already holds files.
    #[error("The output folder `{}` is not empty; choose a new folder", .0.display())]
    NotEmpty(PathBuf),
}

/// Result of generation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to generate.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    /// Number of employees (at least 20 for the whole story).
    pub users: u32,
    /// Random seed.
    pub seed: u64,
    /// Records per page file.
    pub page_size: usize,
    /// Department packages besides the story's three; `None`: one per 500 users, at most
    /// 2,000.
    pub extra_packages: Option<u32>,
    /// Output folder.
    pub out: PathBuf,
}

/// Counts of what was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerateStats {
    /// Files written.
    pub files: u64,
    /// Records written (all entities).
    pub records: u64,
    /// Audit events (Graph pages; the diagnostic archive repeats some of them).
    pub audit_events: u64,
    /// Assignment requests.
    pub requests: u64,
    /// Assignments.
    pub assignments: u64,
}

/// When the export was taken: the morning after the third quarter of 2026 ended.
pub const EXPORTED_AT: &str = "2026-10-01T06:00:00Z";
const TENANT_ID: &str = "5b1f4c2e-8d3a-4f6b-9c21-0e7d9a4b3c10";
const DOMAIN: &str = "woodgrovebank.example";
const EM_APP: &str = "Azure AD Identity Governance - Entitlement Management";
const EM_APP_ID: &str = "810dcf14-1858-4bf2-8134-4c369fa3235b";

/// A deterministic GUID-shaped id from a name.
pub fn guid(name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    let x = hex::encode(&h[..16]);
    format!(
        "{}-{}-4{}-a{}-{}",
        &x[0..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}

/// SplitMix64: small, fast, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Seconds since the epoch → Graph timestamp text.
fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn at(date: &str) -> i64 {
    crate::time::parse_ts(date).map_or(0, |m| m / 1_000_000)
}

const DAY: i64 = 86_400;
/// The diagnostic-settings archive holds the last two months before the export.
const ARCHIVE_FROM: i64 = 1_785_542_400; // 2026-08-01T00:00:00Z
const HOUR: i64 = 3_600;

/// The `@odata.context` prefix of the Entitlement Management entities.
const CTX_EM: &str = "identityGovernance/entitlementManagement/";

/// Who and what exists in the tenant.
struct Tenant {
    people: People,
    /// Employees then externals (`people.everyone()`), the index requests are made by.
    everyone: Vec<User>,
    packages: Vec<Package>,
    policies: Vec<Policy>,
}

impl Tenant {
    fn new(spec: &TenantSpec) -> Self {
        let n = spec.users.max(20) as usize;
        let people = People::new(n);
        let extra = spec
            .extra_packages
            .map_or((n / 500).min(2_000), |p| p as usize);
        let packages = catalog::packages(extra);
        let policies = policies::policies(&packages);
        Self {
            everyone: people.everyone(),
            people,
            packages,
            policies,
        }
    }
}

/// Writes a tenant's files into the output folder and counts them.
struct TenantWriter {
    out_dir: PathBuf,
    page_size: usize,
    /// (records, files) written so far.
    written: (u64, u64),
}

impl TenantWriter {
    fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The Entitlement Management folder.
    fn em(&self) -> PathBuf {
        self.out_dir.join("entitlementManagement")
    }

    /// A page writer for one entity list.
    fn pages(&self, dir: &Path, stem: &str, context: &str) -> PageWriter {
        PageWriter::new(dir, stem, context, self.page_size)
    }

    /// Writes a list's last pages and counts it.
    fn finish(&mut self, pages: PageWriter) -> Result<()> {
        let (records, files) = pages.finish()?;
        self.written.0 += records;
        self.written.1 += files;
        Ok(())
    }

    /// Writes one file (not a record list) at `path` under the output folder.
    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        write_file(&self.out_dir.join(path), bytes)?;
        self.written.1 += 1;
        Ok(())
    }
}

/// Refuses an output folder that already holds files.
fn ensure_empty(out_dir: &Path) -> Result<()> {
    if out_dir.exists() {
        let mut entries = std::fs::read_dir(out_dir).map_err(|source| Error::Io {
            path: out_dir.to_path_buf(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(Error::NotEmpty(out_dir.to_path_buf()));
        }
    }
    Ok(())
}

/// Writes a tenant.
pub fn write_tenant(spec: &TenantSpec) -> Result<GenerateStats> {
    ensure_empty(&spec.out)?;
    let tenant = Tenant::new(spec);
    let mut w = TenantWriter {
        out_dir: spec.out.clone(),
        page_size: spec.page_size,
        written: (0, 0),
    };
    catalog::write(&tenant.packages, &mut w)?;
    policies::write(&tenant.policies, &tenant.packages, &tenant.people, &mut w)?;
    people::write_connected_organization(&tenant.people, &mut w)?;
    let mut seeds = Rng(spec.seed ^ 0x5EED_0F_60F1_A4E);
    let mut activity = Activity::new(&w, Rng(seeds.next()));
    let live = history::write(&tenant, &mut activity, &mut w)?;
    reviews::write(&tenant, &live, &mut activity.rng, &mut w)?;
    let (requests, assignments, audit_events) = activity.finish(&mut w)?;
    let export = json!({
        "exportedAt": EXPORTED_AT, "tenant": "Woodgrove Bank (synthetic)", "tenantId": TENANT_ID,
        "generator": {"users": spec.users, "seed": spec.seed, "pageSize": spec.page_size},
    });
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(&export).unwrap_or_default()
    );
    w.file("_export.json", text.as_bytes())?;
    Ok(GenerateStats {
        files: w.written.1,
        records: w.written.0,
        audit_events,
        requests,
        assignments,
    })
}

/// The sample tenant's parameters (what `sample-data/` was generated with).
pub fn sample_spec(out: &Path) -> TenantSpec {
    TenantSpec {
        users: 60,
        seed: 7,
        page_size: 50,
        extra_packages: None,
        out: out.to_path_buf(),
    }
}
