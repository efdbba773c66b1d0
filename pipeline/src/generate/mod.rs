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

mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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
    crate::ingest::value::parse_ts(date).map_or(0, |m| m / 1_000_000)
}

const DAY: i64 = 86_400;
/// The diagnostic-settings archive holds the last two months before the export.
const ARCHIVE_FROM: i64 = 1_785_542_400; // 2026-08-01T00:00:00Z
const HOUR: i64 = 3_600;

#[derive(Clone)]
struct User {
    id: String,
    name: String,
    upn: String,
    external: bool,
}

impl User {
    fn subject(&self) -> Value {
        json!({
            "id": guid(&format!("subject-{}", self.id)),
            "objectId": self.id,
            "displayName": self.name,
            "principalName": self.upn,
            "email": self.upn.replace("#EXT#@woodgrovebank.example", ""),
            "subjectType": "user",
            "connectedOrganization": if self.external { json!({"id": guid("org-fabrikam")}) } else { Value::Null },
        })
    }
    fn identity(&self) -> Value {
        json!({"id": self.id, "displayName": self.name, "userPrincipalName": self.upn, "ipAddress": "203.0.113.24"})
    }
}

struct Package {
    id: String,
    name: String,
    catalog: &'static str,
}

struct Policy {
    id: String,
    package: usize,
    name: &'static str,
    stages: usize,
    expiry_days: Option<i64>,
}

/// Everything written while walking the story.
struct Out {
    requests: PageWriter,
    assignments: PageWriter,
    audits: PageWriter,
    archive: BTreeMap<String, String>,
    rng: Rng,
    seq: u64,
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Mei", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen",
    "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Almeida", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Murphy", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt",
    "Tanaka", "Virtanen",
];

/// The justifications requestors type; some are hostile on purpose.
const JUSTIFICATIONS: &[&str] = &[
    "Month-end close support for the EMEA ledger.",
    "Quarterly forecasting for the retail division.",
    "Backfilling for a colleague on leave.",
    "New joiner, finance operations team.",
    "Need access <script>alert('xss')</script> for =HYPERLINK(\"http://evil.example\",\"report\")",
    "+cmd|' /C calc'!A0 urgent {{ 7*7 }} {% raw %}",
];

/// Writes a tenant.
pub fn write_tenant(spec: &TenantSpec) -> Result<GenerateStats> {
    let out_dir = &spec.out;
    if out_dir.exists() {
        let mut entries = std::fs::read_dir(out_dir).map_err(|source| Error::Io {
            path: out_dir.clone(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(Error::NotEmpty(out_dir.clone()));
        }
    }
    let em = out_dir.join("entitlementManagement");
    let ctx_em = "identityGovernance/entitlementManagement/";
    let mut stats = GenerateStats::default();
    let mut rng = Rng(spec.seed ^ 0x5EED_0F_60F1_A4E);

    // People. The first fifteen employees carry the story; the rest are the population.
    let n = spec.users.max(20) as usize;
    let mut users: Vec<User> = (0..n)
        .map(|i| {
            let (f, l) = (
                FIRST[i % FIRST.len()],
                LAST[(i / FIRST.len() + i * 7) % LAST.len()],
            );
            User {
                id: guid(&format!("user-{i}")),
                name: format!("{f} {l}"),
                upn: format!("{}.{}{}@{DOMAIN}", f.to_lowercase(), l.to_lowercase(), i),
                external: false,
            }
        })
        .collect();
    let roles = ["Iris Holm", "Marcus Webb", "Fatima Rahman", "Paul Okonkwo"];
    for (i, r) in roles.iter().enumerate() {
        users[i].name = (*r).to_string();
        users[i].upn = format!("{}@{DOMAIN}", r.to_lowercase().replace(' ', "."));
    }
    users[15].name = "Mallory \"><img src=x onerror=alert(1)>".into();
    let (admin, control_owner, finance_mgr, escalation) = (
        users[0].clone(),
        users[1].clone(),
        users[2].clone(),
        users[3].clone(),
    );
    let externals: Vec<User> = ["Sofia Lind", "Tom Brandt", "Ava Moreau"]
        .iter()
        .enumerate()
        .map(|(i, name)| User {
            id: guid(&format!("external-{i}")),
            name: (*name).to_string(),
            upn: format!(
                "{}_fabrikamaudit.example#EXT#@{DOMAIN}",
                name.to_lowercase().replace(' ', ".")
            ),
            external: true,
        })
        .collect();

    // Catalogs and packages.
    let catalogs = [
        (
            "Finance Applications",
            "Finance systems: ERP, BI and the finance site.",
            true,
        ),
        (
            "Payment Operations",
            "Treasury payment initiation and approval.",
            false,
        ),
        ("General Access", "Department access packages.", false),
    ];
    let extra_packages = spec
        .extra_packages
        .map_or((n / 500).min(2_000), |p| p as usize);
    let mut packages = vec![
        Package {
            id: guid("pkg-financial-analyst"),
            name: "Financial Analyst - Standard".into(),
            catalog: "Finance Applications",
        },
        Package {
            id: guid("pkg-vendor-payment-initiator"),
            name: "Vendor Payment - Initiator".into(),
            catalog: "Payment Operations",
        },
        Package {
            id: guid("pkg-vendor-payment-approver"),
            name: "Vendor Payment - Approver".into(),
            catalog: "Payment Operations",
        },
    ];
    for i in 0..extra_packages {
        let name = format!("Department {:04} - Member", i + 1);
        packages.push(Package {
            id: guid(&format!("pkg-dept-{i}")),
            name,
            catalog: "General Access",
        });
    }
    let group = |name: &str| json!({"id": guid(&format!("group-{name}")), "displayName": name});
    let role_scope = |pkg: &str, res: &str, role: &str, origin: &str| {
        let rid = guid(&format!("role-{pkg}-{res}-{role}"));
        let sid = guid(&format!("scope-{res}"));
        json!({
            "id": format!("{rid}_{sid}"), "createdDateTime": "2025-11-03T09:00:00Z",
            "role": {"id": rid, "displayName": role, "originSystem": origin, "originId": format!("{role}_{}", guid(res)),
                     "resource": {"id": guid(&format!("res-{res}")), "displayName": res, "originSystem": origin, "originId": guid(res)}},
            "scope": {"id": sid, "displayName": "Root", "description": "Root Scope", "isRootScope": true, "originSystem": origin, "originId": guid(res)},
        })
    };
    let mut catalog_writer = PageWriter::new(
        &em,
        "catalogs",
        &format!("{ctx_em}catalogs"),
        spec.page_size,
    );
    for (name, desc, visible) in catalogs {
        catalog_writer.push(&json!({
            "id": guid(&format!("catalog-{name}")), "displayName": name, "description": desc,
            "catalogType": "userManaged", "state": "published", "isExternallyVisible": visible,
            "createdDateTime": "2025-11-03T08:00:00Z", "modifiedDateTime": "2026-03-01T10:00:00Z",
        }))?;
    }
    let mut pkg_writer = PageWriter::new(
        &em,
        "accessPackages",
        &format!(
            "{ctx_em}accessPackages(catalog(),incompatibleAccessPackages(),incompatibleGroups(),resourceRoleScopes(role(),scope()))"
        ),
        spec.page_size,
    );
    for (i, p) in packages.iter().enumerate() {
        let (scopes, incompatible, incompatible_groups, modified) = match i {
            0 => (
                vec![
                    role_scope(
                        &p.name,
                        "SAP S/4HANA Finance",
                        "Financial Analyst",
                        "AadApplication",
                    ),
                    role_scope(&p.name, "Finance BI Workspace", "Member", "AadGroup"),
                    role_scope(&p.name, "Finance Team Site", "Member", "SharePointOnline"),
                ],
                vec![],
                vec![],
                "2025-11-03T09:00:00Z",
            ),
            1 => (
                vec![role_scope(
                    &p.name,
                    "Treasury Payments",
                    "Payment Initiator",
                    "AadApplication",
                )],
                vec![],
                vec![],
                "2025-11-03T09:00:00Z",
            ),
            2 => (
                vec![role_scope(
                    &p.name,
                    "Treasury Payments",
                    "Payment Approver",
                    "AadApplication",
                )],
                vec![json!({"id": packages[1].id, "displayName": packages[1].name})],
                vec![group("PAY-Initiators")],
                "2026-03-01T10:00:00Z",
            ),
            _ => (
                vec![role_scope(
                    &p.name,
                    &format!("{} group", p.name),
                    "Member",
                    "AadGroup",
                )],
                vec![],
                vec![],
                "2025-11-03T09:00:00Z",
            ),
        };
        pkg_writer.push(&json!({
            "id": p.id, "displayName": p.name, "description": format!("{} access.", p.name), "isHidden": false,
            "createdDateTime": "2025-11-03T09:00:00Z", "modifiedDateTime": modified,
            "catalog": {"id": guid(&format!("catalog-{}", p.catalog)), "displayName": p.catalog},
            "incompatibleAccessPackages": incompatible, "incompatibleGroups": incompatible_groups,
            "resourceRoleScopes": scopes,
        }))?;
    }

    // Policies.
    let org_id = guid("org-fabrikam");
    let mut policies = vec![
        Policy {
            id: guid("policy-fa-employees"),
            package: 0,
            name: "Employees - manager approval",
            stages: 1,
            expiry_days: Some(365),
        },
        Policy {
            id: guid("policy-fa-external-auditors"),
            package: 0,
            name: "External auditors - sponsor and control owner",
            stages: 2,
            expiry_days: Some(90),
        },
        Policy {
            id: guid("policy-vpi-payments-staff"),
            package: 1,
            name: "Payments staff",
            stages: 1,
            expiry_days: None,
        },
        Policy {
            id: guid("policy-vpa-payment-approvers"),
            package: 2,
            name: "Payment approvers",
            stages: 1,
            expiry_days: Some(180),
        },
    ];
    for i in 3..packages.len() {
        policies.push(Policy {
            id: guid(&format!("policy-dept-{i}")),
            package: i,
            name: "Department members",
            stages: 1,
            expiry_days: Some(365),
        });
    }
    let single = |u: &User| json!({"@odata.type": "#microsoft.graph.singleUser", "userId": u.id, "description": u.name});
    let manager = json!({"@odata.type": "#microsoft.graph.requestorManager", "managerLevel": 1});
    let mut policy_writer = PageWriter::new(
        &em,
        "assignmentPolicies",
        &format!(
            "{ctx_em}assignmentPolicies(accessPackage(),customExtensionStageSettings(customExtension()))"
        ),
        spec.page_size,
    );
    for (i, p) in policies.iter().enumerate() {
        let stage = |primary: Value, escalate: bool, escalation_to: Value| {
            json!({
                "durationBeforeAutomaticDenial": "P14D", "isApproverJustificationRequired": true,
                "isEscalationEnabled": escalate, "durationBeforeEscalation": if escalate { "P2D" } else { "PT0S" },
                "approverInformationVisibility": "default",
                "primaryApprovers": primary, "fallbackPrimaryApprovers": [],
                "escalationApprovers": escalation_to, "fallbackEscalationApprovers": [],
            })
        };
        let (scope, targets, stages, review_on, timeout, reviewers) = match i {
            0 => (
                "allMemberUsers",
                json!([]),
                vec![stage(json!([manager]), true, json!([single(&escalation)]))],
                true,
                "removeAccess",
                json!([manager]),
            ),
            1 => (
                "specificConnectedOrganizationUsers",
                json!([{"@odata.type": "#microsoft.graph.connectedOrganizationMembers", "connectedOrganizationId": org_id, "description": "Fabrikam Audit LLP"}]),
                vec![
                    stage(
                        json!([{"@odata.type": "#microsoft.graph.internalSponsors"}]),
                        true,
                        json!([single(&finance_mgr)]),
                    ),
                    stage(json!([single(&control_owner)]), false, json!([])),
                ],
                true,
                "removeAccess",
                json!([single(&finance_mgr)]),
            ),
            2 => (
                "specificDirectoryUsers",
                json!([{"@odata.type": "#microsoft.graph.groupMembers", "groupId": guid("group-Payments staff"), "description": "Payments staff"}]),
                vec![stage(json!([single(&control_owner)]), false, json!([]))],
                true,
                "keepAccess",
                json!([single(&control_owner)]),
            ),
            3 => (
                "specificDirectoryUsers",
                json!([{"@odata.type": "#microsoft.graph.groupMembers", "groupId": guid("group-Payments staff"), "description": "Payments staff"}]),
                vec![stage(json!([single(&control_owner)]), false, json!([]))],
                false,
                "keepAccess",
                json!([]),
            ),
            _ => (
                "allMemberUsers",
                json!([]),
                vec![stage(json!([manager]), true, json!([single(&escalation)]))],
                true,
                "removeAccess",
                json!([manager]),
            ),
        };
        let expiration = match p.expiry_days {
            Some(d) => json!({"type": "afterDuration", "duration": format!("P{d}D")}),
            None => json!({"type": "noExpiration"}),
        };
        let extensions = if i == 1 {
            json!([{"id": guid("ces-servicenow"), "stage": "assignmentRequestApproved",
                    "customExtension": {"id": guid("ext-servicenow"), "displayName": "Open ServiceNow access ticket"}}])
        } else {
            json!([])
        };
        policy_writer.push(&json!({
            "id": p.id, "displayName": p.name, "description": format!("{} for {}", p.name, packages[p.package].name),
            "createdDateTime": "2025-11-03T09:30:00Z", "modifiedDateTime": "2026-03-01T10:00:00Z",
            "allowedTargetScope": scope, "specificAllowedTargets": targets, "expiration": expiration,
            "requestorSettings": {"enableTargetsToSelfAddAccess": true, "enableTargetsToSelfUpdateAccess": true,
                                  "enableTargetsToSelfRemoveAccess": true, "allowCustomAssignmentSchedule": i == 2,
                                  "enableOnBehalfRequestorsToAddAccess": false, "onBehalfRequestors": []},
            "requestApprovalSettings": {"isApprovalRequiredForAdd": true, "isApprovalRequiredForUpdate": false,
                                        "isRequestorJustificationRequired": i != 3, "stages": stages},
            "reviewSettings": {"isEnabled": review_on, "expirationBehavior": timeout, "isRecommendationEnabled": i != 2,
                               "isReviewerJustificationRequired": true, "isSelfReview": false,
                               "schedule": {"startDateTime": "2026-01-01T00:00:00Z", "expiration": {"type": "afterDuration", "duration": "P14D"},
                                            "recurrence": {"pattern": {"type": "absoluteMonthly", "interval": 3}, "range": {"type": "noEnd"}}},
                               "primaryReviewers": reviewers, "fallbackReviewers": []},
            "accessPackage": {"id": packages[p.package].id},
            "customExtensionStageSettings": extensions,
        }))?;
    }

    // The connected organization and its sponsors.
    let mut org_writer = PageWriter::new(
        &em,
        "connectedOrganizations",
        &format!("{ctx_em}connectedOrganizations"),
        spec.page_size,
    );
    org_writer.push(&json!({
        "id": org_id, "displayName": "Fabrikam Audit LLP", "description": "External audit firm", "state": "configured",
        "createdDateTime": "2025-12-01T10:00:00Z", "modifiedDateTime": "2025-12-01T10:00:00Z",
        "identitySources": [{"@odata.type": "#microsoft.graph.azureActiveDirectoryTenant", "tenantId": guid("tenant-fabrikam"), "displayName": "Fabrikam Audit LLP"}],
    }))?;
    let mut internal = PageWriter::new(
        &em.join("connectedOrganizations"),
        "internalSponsors",
        &format!("{ctx_em}connectedOrganizations('{org_id}')/internalSponsors"),
        spec.page_size,
    );
    internal.push(&json!({"@odata.type": "#microsoft.graph.user", "id": finance_mgr.id, "displayName": finance_mgr.name, "userPrincipalName": finance_mgr.upn}))?;
    let mut external = PageWriter::new(
        &em.join("connectedOrganizations"),
        "externalSponsors",
        &format!("{ctx_em}connectedOrganizations('{org_id}')/externalSponsors"),
        spec.page_size,
    );
    external.push(&json!({"@odata.type": "#microsoft.graph.user", "id": externals[0].id, "displayName": externals[0].name, "userPrincipalName": externals[0].upn}))?;
    let mut members = PageWriter::new(
        &out_dir.join("groups"),
        "PAY-Initiators-members",
        &format!("groups('{}')/members", guid("group-PAY-Initiators")),
        spec.page_size,
    );

    let mut o = Out {
        requests: PageWriter::new(
            &em.join("assignmentRequests"),
            "assignmentRequests",
            &format!("{ctx_em}assignmentRequests(requestor(),accessPackage(),assignment())"),
            spec.page_size,
        ),
        assignments: PageWriter::new(
            &em.join("assignments"),
            "assignments",
            &format!("{ctx_em}assignments(target(),accessPackage(),assignmentPolicy())"),
            spec.page_size,
        ),
        audits: PageWriter::new(
            &out_dir.join("auditLogs"),
            "directoryAudits",
            "auditLogs/directoryAudits",
            spec.page_size,
        ),
        archive: BTreeMap::new(),
        rng: Rng(rng.next()),
        seq: 0,
    };
    let export = at(EXPORTED_AT);
    let mut live: Vec<(String, usize, usize)> = Vec::new(); // (assignment id, user idx, policy idx) for reviews
    let all_users: Vec<User> = users.iter().chain(&externals).cloned().collect();

    // Governance events on the packages themselves.
    o.audit(
        at("2026-03-01T10:00:00Z"),
        "Create incompatible access package",
        "CreateIncompatibleAccessPackage",
        &admin,
        None,
        &[
            (
                packages[2].id.clone(),
                "AccessPackage",
                packages[2].name.to_string(),
            ),
            (
                packages[1].id.clone(),
                "AccessPackage",
                packages[1].name.to_string(),
            ),
        ],
        &[],
        &guid("corr-incompatible"),
        true,
    )?;

    // Eleven clerks hold both payment packages, migrated from the legacy groups on 2026-01-15,
    // before the incompatibility existed (2026-03-01).
    for u in 4..15 {
        members.push(&json!({"@odata.type": "#microsoft.graph.user", "id": users[u].id, "displayName": users[u].name, "userPrincipalName": users[u].upn}))?;
        for (p, legacy) in [(2usize, "PAY-Initiators"), (3usize, "PAY-Approvers")] {
            let t = at("2026-01-15T09:00:00Z") + (u as i64) * 60;
            let id = o.admin_grant(
                &admin,
                &users[u],
                &packages[policies[p].package],
                &policies[p],
                t,
                &format!("Migrated from legacy group {legacy}"),
                None,
                true,
            )?;
            live.push((id, u, p));
        }
    }

    // The story's individual cases.
    let fa = &packages[0];
    let story_start = at("2026-07-06T09:00:00Z");
    // Approved with escalation: the manager did not act within two days.
    let id = o.request(
        &all_users,
        16,
        fa,
        &policies[0],
        story_start,
        Flow::Escalated {
            approver: &escalation,
        },
        0,
        true,
    )?;
    live.push((id, 16, 0));
    // Denied by the manager.
    o.request(
        &all_users,
        17,
        fa,
        &policies[0],
        story_start + DAY,
        Flow::Denied {
            approver: &finance_mgr,
        },
        1,
        true,
    )?;
    // Timed out: nobody approved in 14 days.
    o.request(
        &all_users,
        18,
        fa,
        &policies[0],
        story_start + 2 * DAY,
        Flow::TimedOut,
        2,
        true,
    )?;
    // Admin direct grant outside any request flow.
    let id = o.admin_grant(
        &admin,
        &users[19],
        fa,
        &policies[0],
        at("2026-08-03T11:00:00Z"),
        "Urgent audit support (CFO request)",
        None,
        true,
    )?;
    live.push((id, 19, 0));
    // Expired access still delivered: the schedule ended on 2026-08-15, state still delivered.
    o.admin_grant(
        &admin,
        &users[15],
        fa,
        &policies[0],
        at("2026-02-15T10:00:00Z"),
        "Temporary cover",
        Some(at("2026-08-15T10:00:00Z")),
        true,
    )?;
    // External auditors: sponsor, then control owner; 90 days.
    for (k, _) in externals.iter().enumerate() {
        let t = at("2026-07-01T08:00:00Z") + k as i64 * DAY;
        let id = o.request(
            &all_users,
            n + k,
            fa,
            &policies[1],
            t,
            Flow::Approved {
                approvers: vec![&finance_mgr, &control_owner],
            },
            3 + k,
            true,
        )?;
        live.push((id, n + k, 1));
    }

    // The population: each employee past the story cohort requests a few packages.
    for u in 20..n {
        let k = 2 + o.rng.below(4) as usize;
        for j in 0..k {
            // Separation of duties holds for everyone but the eleven: each employee is on one
            // side of payments only.
            let payment_side = if u % 2 == 0 { 2 } else { 3 };
            let p = if packages.len() > 3 && o.rng.chance(50) {
                4 + o.rng.below((policies.len() - 4) as u64) as usize
            } else {
                [0, 0, 0, payment_side][o.rng.below(4) as usize]
            };
            let pol = &policies[p];
            let t = at("2026-01-05T08:00:00Z")
                + o.rng.below(260) as i64 * DAY
                + o.rng.below(9 * HOUR as u64) as i64;
            let flow = match o.rng.below(100) {
                0..=74 => Flow::Approved {
                    approvers: if pol.stages == 2 {
                        vec![&finance_mgr, &control_owner]
                    } else {
                        vec![if p == 2 || p == 3 {
                            &control_owner
                        } else {
                            &finance_mgr
                        }]
                    },
                },
                75..=84 => Flow::Denied {
                    approver: &finance_mgr,
                },
                85..=89 => Flow::TimedOut,
                _ => Flow::Escalated {
                    approver: &escalation,
                },
            };
            let just = (u * 7 + j) % JUSTIFICATIONS.len();
            if let Some(id) = o.request_opt(
                &all_users,
                u,
                &packages[pol.package],
                pol,
                t,
                flow,
                just,
                u < 200,
            )? && t + pol.expiry_days.unwrap_or(10_000) * DAY > export
            {
                live.push((id, u, p));
            }
        }
    }

    // Quarterly access reviews (Q2 and Q3) for the policies with reviews on.
    let reviews = out_dir.join("accessReviews");
    let mut defs = PageWriter::new(
        &reviews,
        "definitions",
        "identityGovernance/accessReviews/definitions",
        spec.page_size,
    );
    let mut review_files = (0u64, 0u64);
    for (pi, pol) in policies.iter().enumerate().filter(|(i, _)| *i != 3) {
        let def_id = guid(&format!("review-def-{}", pol.id));
        let pkg = &packages[pol.package];
        let reviewer = if pi == 2 {
            &control_owner
        } else {
            &finance_mgr
        };
        defs.push(&json!({
            "id": def_id, "displayName": format!("Quarterly review: {} ({})", pkg.name, pol.name),
            "descriptionForAdmins": "Quarterly recertification", "descriptionForReviewers": "Confirm each person still needs this access.",
            "status": "InProgress", "createdDateTime": "2025-12-15T09:00:00Z", "lastModifiedDateTime": "2025-12-15T09:00:00Z",
            "createdBy": {"id": admin.id, "displayName": admin.name, "userPrincipalName": admin.upn},
            "scope": {"@odata.type": "#microsoft.graph.accessReviewQueryScope",
                      "query": format!("/identityGovernance/entitlementManagement/accessPackageAssignments?$filter=(accessPackageId eq '{}' and assignmentPolicyId eq '{}')", pkg.id, pol.id),
                      "queryType": "MicrosoftGraph"},
            "reviewers": [{"query": format!("/users/{}", reviewer.id), "queryType": "MicrosoftGraph"}], "fallbackReviewers": [],
            "settings": {"defaultDecisionEnabled": true, "defaultDecision": if pi == 2 { "None" } else { "Deny" },
                         "autoApplyDecisionsEnabled": true, "recommendationsEnabled": pi != 2, "justificationRequiredOnApproval": true,
                         "instanceDurationInDays": 14, "recurrence": {"pattern": {"type": "absoluteMonthly", "interval": 3}, "range": {"type": "noEnd"}},
                         "applyActions": [{"@odata.type": "#microsoft.graph.removeAccessApplyAction"}]},
        }))?;
        let mut inst_writer = PageWriter::new(
            &reviews.join("instances"),
            &format!("instances-{}", &def_id[..8]),
            &format!("identityGovernance/accessReviews/definitions('{def_id}')/instances"),
            spec.page_size,
        );
        for (q, (start, end)) in [
            ("2026Q2", ("2026-04-01T00:00:00Z", "2026-04-15T00:00:00Z")),
            ("2026Q3", ("2026-07-01T00:00:00Z", "2026-07-15T00:00:00Z")),
        ] {
            let inst_id = guid(&format!("review-inst-{def_id}-{q}"));
            inst_writer.push(&json!({"id": inst_id, "startDateTime": start, "endDateTime": end, "status": "Completed",
                "scope": {"@odata.type": "#microsoft.graph.accessReviewQueryScope", "query": format!("/identityGovernance/entitlementManagement/accessPackageAssignments?$filter=(accessPackageId eq '{}')", pkg.id), "queryType": "MicrosoftGraph"},
                "reviewers": [{"query": format!("/users/{}", reviewer.id), "queryType": "MicrosoftGraph"}]}))?;
            let mut dec = PageWriter::new(
                &reviews.join("decisions"),
                &format!("decisions-{}", &inst_id[..8]),
                &format!(
                    "identityGovernance/accessReviews/definitions('{def_id}')/instances('{inst_id}')/decisions"
                ),
                spec.page_size,
            );
            let (s, e) = (at(start), at(end));
            for (k, (aid, u, _)) in live.iter().filter(|(_, _, p)| *p == pi).enumerate() {
                let user = &all_users[*u];
                let roll = o.rng.below(100);
                // The story: one external auditor's grant denied in Q3 but never removed.
                let stuck = q == "2026Q3" && pi == 1 && k == 2;
                let (decision, apply, reviewed) = if stuck {
                    ("Deny", "AppliedWithUnknownFailure", true)
                } else if roll < 78 {
                    ("Approve", "AppliedSuccessfully", true)
                } else if roll < 86 {
                    ("Deny", "AppliedSuccessfully", true)
                } else if roll < 93 {
                    (
                        "NotReviewed",
                        if pi == 2 {
                            "New"
                        } else {
                            "AppliedSuccessfully"
                        },
                        false,
                    )
                } else {
                    ("DontKnow", "AppliedSuccessfully", true)
                };
                let reviewed_at = s + 2 * DAY + (k as i64 % 10) * HOUR;
                dec.push(&json!({
                    "id": guid(&format!("decision-{inst_id}-{aid}")), "accessReviewId": inst_id,
                    "decision": decision, "recommendation": if roll.is_multiple_of(3) { "Deny" } else { "Approve" },
                    "applyResult": apply, "justification": if reviewed { "Reviewed against the role matrix." } else { "" },
                    "reviewedDateTime": if reviewed { json!(ts(reviewed_at)) } else { Value::Null },
                    "appliedDateTime": ts(e + HOUR),
                    "reviewedBy": if reviewed { json!({"id": reviewer.id, "displayName": reviewer.name, "userPrincipalName": reviewer.upn}) }
                                  else { json!({"id": "00000000-0000-0000-0000-000000000000", "displayName": "", "userPrincipalName": ""}) },
                    "appliedBy": {"id": "00000000-0000-0000-0000-000000000000", "displayName": "", "userPrincipalName": ""},
                    "principalLink": format!("https://graph.microsoft.com/v1.0/users/{}", user.id), "resourceLink": Value::Null,
                    "principal": {"@odata.type": "#microsoft.graph.userIdentity", "id": user.id, "displayName": user.name, "userPrincipalName": user.upn},
                    "resource": {"@odata.type": "#microsoft.graph.accessReviewInstanceDecisionItemAccessPackageAssignmentPolicyResource",
                                 "id": pol.id, "displayName": pol.name, "type": "accessPackageAssignmentPolicy",
                                 "accessPackageId": pkg.id, "accessPackageDisplayName": pkg.name},
                }))?;
            }
            let (r, f) = dec.finish()?;
            review_files = (review_files.0 + r, review_files.1 + f);
        }
        let (r, f) = inst_writer.finish()?;
        review_files = (review_files.0 + r, review_files.1 + f);
    }

    // Diagnostic-settings archive: hourly PT1H.json blobs of JSON lines (CRLF), records repeated.
    let archive_files = o.archive.len() as u64;
    for (path, text) in std::mem::take(&mut o.archive) {
        write_file(&out_dir.join(path), text.as_bytes())?;
    }
    stats.requests = o.requests.records;
    stats.assignments = o.assignments.records;
    stats.audit_events = o.audits.records;
    let mut total = (review_files.0, review_files.1 + archive_files + 1);
    for w in [
        catalog_writer,
        pkg_writer,
        policy_writer,
        org_writer,
        internal,
        external,
        members,
        defs,
        o.requests,
        o.assignments,
        o.audits,
    ] {
        let (r, f) = w.finish()?;
        total = (total.0 + r, total.1 + f);
    }
    write_file(
        &out_dir.join("_export.json"),
        format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({
                "exportedAt": EXPORTED_AT, "tenant": "Woodgrove Bank (synthetic)", "tenantId": TENANT_ID,
                "generator": {"users": spec.users, "seed": spec.seed, "pageSize": spec.page_size},
            }))
            .unwrap_or_default()
        )
        .as_bytes(),
    )?;
    stats.records = total.0;
    stats.files = total.1;
    Ok(stats)
}

/// How a request goes.
enum Flow<'a> {
    Approved { approvers: Vec<&'a User> },
    Escalated { approver: &'a User },
    Denied { approver: &'a User },
    TimedOut,
}

impl Out {
    #[allow(clippy::too_many_arguments)]
    fn audit(
        &mut self,
        t: i64,
        activity: &str,
        operation: &str,
        actor: &User,
        request_id: Option<&str>,
        targets: &[(String, &str, String)],
        details: &[(&str, String)],
        correlation: &str,
        archive: bool,
    ) -> Result<()> {
        self.seq += 1;
        let id = format!(
            "IGA_{}_{:08}",
            &guid(&format!("audit-{correlation}"))[..8],
            self.seq
        );
        let by_app = actor.id.is_empty();
        let mut target_resources: Vec<Value> = Vec::new();
        if let Some(r) = request_id {
            target_resources.push(json!({"id": r, "displayName": Value::Null, "type": "AccessPackageAssignmentRequest", "modifiedProperties": []}));
        }
        for (tid, ty, name) in targets {
            target_resources.push(
                json!({"id": tid, "displayName": name, "type": ty, "modifiedProperties": []}),
            );
        }
        let mut additional: Vec<Value> = details
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        if let Some(r) = request_id {
            additional.push(json!({"key": "RequestId", "value": r}));
        }
        let event = json!({
            "id": id, "category": "EntitlementManagement", "correlationId": correlation, "result": "success",
            "resultReason": "", "activityDisplayName": activity, "activityDateTime": format!("{}.{:06}Z", ts(t).trim_end_matches('Z'), self.seq % 1_000_000),
            "loggedByService": "Entitlement Management", "operationType": operation,
            "initiatedBy": if by_app { json!({"user": Value::Null, "app": {"appId": EM_APP_ID, "displayName": EM_APP, "servicePrincipalId": guid("sp-em"), "servicePrincipalName": EM_APP}}) }
                           else { json!({"user": actor.identity(), "app": Value::Null}) },
            "targetResources": target_resources, "additionalDetails": additional,
        });
        self.audits.push(&event)?;
        if archive && t >= ARCHIVE_FROM {
            let dt = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
            let path = format!(
                "insights-logs-auditlogs/tenantId={TENANT_ID}/{}/m=00/PT1H.json",
                dt.format("y=%Y/m=%m/d=%d/h=%H")
            );
            let mut props = event.clone();
            props["result"] = json!(0);
            let line = json!({
                "time": format!("{}.{:07}Z", ts(t).trim_end_matches('Z'), (self.seq % 1_000_000) * 10),
                "resourceId": format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam"),
                "operationName": activity, "operationVersion": "1.0", "category": "AuditLogs", "tenantId": TENANT_ID,
                "resultSignature": "None", "durationMs": 0, "correlationId": correlation, "level": "Informational",
                "properties": props,
            })
            .to_string();
            let blob = self.archive.entry(path).or_default();
            blob.push_str(&line);
            blob.push_str("\r\n");
            if self.seq.is_multiple_of(3) {
                // At-least-once delivery: the same record lands twice.
                blob.push_str(&line);
                blob.push_str("\r\n");
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn assignment(
        &mut self,
        id: &str,
        target: &User,
        pkg: &Package,
        pol: &Policy,
        start: i64,
        end: Option<i64>,
        state_override: Option<&str>,
    ) -> Result<()> {
        let export = at(EXPORTED_AT);
        let expired = end.is_some_and(|e| e <= export) && state_override.is_none();
        let state = state_override.unwrap_or(if expired { "expired" } else { "delivered" });
        let expiration = match end {
            Some(e) => {
                json!({"type": "afterDateTime", "endDateTime": ts(e), "duration": Value::Null})
            }
            None => {
                json!({"type": "noExpiration", "endDateTime": Value::Null, "duration": Value::Null})
            }
        };
        self.assignments.push(&json!({
            "id": id, "state": state, "status": if expired { "ExpiredNotificationTriggered" } else { "Delivered" },
            "expiredDateTime": if expired { json!(ts(end.unwrap_or(start))) } else { json!("null") },
            "schedule": {"startDateTime": ts(start), "expiration": expiration},
            "target": target.subject(),
            "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignmentPolicy": {"id": pol.id, "displayName": pol.name},
            "customExtensionCalloutInstances": [],
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn admin_grant(
        &mut self,
        admin: &User,
        target: &User,
        pkg: &Package,
        pol: &Policy,
        t: i64,
        why: &str,
        end: Option<i64>,
        archive: bool,
    ) -> Result<String> {
        let req = guid(&format!("req-admin-{}-{}-{t}", target.id, pkg.id));
        let asg = guid(&format!("asg-{req}"));
        let corr = guid(&format!("corr-{req}"));
        let targets = [
            (pkg.id.clone(), "AccessPackage", pkg.name.to_string()),
            (target.id.clone(), "User", target.upn.clone()),
        ];
        self.audit(
            t,
            "Administrator directly assigns user to access package",
            "CreateEntitlementGrantAdminAddRequest",
            admin,
            Some(&req),
            &targets,
            &[("Justification", why.to_string())],
            &corr,
            archive,
        )?;
        let none = User {
            id: String::new(),
            name: String::new(),
            upn: String::new(),
            external: false,
        };
        self.audit(
            t + 60,
            "Fulfill access package assignment request",
            "FulfillEntitlementGrantRequest",
            &none,
            Some(&req),
            &targets,
            &[],
            &corr,
            archive,
        )?;
        self.requests.push(&json!({
            "id": req, "requestType": "adminAdd", "state": "delivered", "status": "Delivered",
            "createdDateTime": ts(t), "completedDateTime": ts(t + 60), "justification": why,
            "schedule": {"startDateTime": ts(t), "expiration": match end { Some(e) => json!({"type": "afterDateTime", "endDateTime": ts(e)}), None => json!({"type": "noExpiration"}) }},
            "requestor": admin.subject(), "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignment": {"id": asg, "assignmentPolicyId": pol.id, "target": {"objectId": target.id}},
            "answers": [], "customExtensionCalloutInstances": [],
        }))?;
        // Expired-but-delivered is the one grant whose end passed without removal.
        self.assignment(
            &asg,
            target,
            pkg,
            pol,
            t + 60,
            end,
            end.map(|_| "delivered"),
        )?;
        Ok(asg)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        users: &[User],
        u: usize,
        pkg: &Package,
        pol: &Policy,
        t: i64,
        flow: Flow<'_>,
        just: usize,
        archive: bool,
    ) -> Result<String> {
        Ok(self
            .request_opt(users, u, pkg, pol, t, flow, just, archive)?
            .unwrap_or_default())
    }

    /// A user request through its approval flow; returns the assignment id when delivered.
    #[allow(clippy::too_many_arguments)]
    fn request_opt(
        &mut self,
        users: &[User],
        u: usize,
        pkg: &Package,
        pol: &Policy,
        t: i64,
        flow: Flow<'_>,
        just: usize,
        archive: bool,
    ) -> Result<Option<String>> {
        let user = &users[u];
        self.seq += 1;
        let req = guid(&format!("req-{}-{}-{t}-{}", user.id, pkg.id, self.seq));
        let corr = guid(&format!("corr-{req}"));
        let asg = guid(&format!("asg-{req}"));
        let justification = JUSTIFICATIONS[just % JUSTIFICATIONS.len()];
        let targets = [
            (pkg.id.clone(), "AccessPackage", pkg.name.to_string()),
            (user.id.clone(), "User", user.upn.clone()),
        ];
        let system = User {
            id: String::new(),
            name: String::new(),
            upn: String::new(),
            external: false,
        };
        self.audit(
            t,
            "User requests access package assignment",
            "CreateEntitlementGrantUserAddRequest",
            user,
            Some(&req),
            &targets,
            &[("Justification", justification.to_string())],
            &corr,
            archive,
        )?;
        let mut now = t;
        let (state, status, delivered) = match &flow {
            Flow::Approved { approvers } => {
                for (stage, a) in approvers.iter().enumerate() {
                    now +=
                        3 * HOUR + (stage as i64) * HOUR + self.rng.below(20 * HOUR as u64) as i64;
                    self.audit(
                        now,
                        "Approve access package assignment request",
                        "ApproveEntitlementGrantRequest",
                        a,
                        Some(&req),
                        &targets,
                        &[
                            ("ApprovalStage", (stage + 1).to_string()),
                            ("Justification", "Business need confirmed.".into()),
                        ],
                        &corr,
                        archive,
                    )?;
                }
                ("delivered", "Delivered", true)
            }
            Flow::Escalated { approver } => {
                now += 2 * DAY;
                self.audit(
                    now,
                    "Add approver to request approval",
                    "EscalateEntitlementGrantRequest",
                    &system,
                    Some(&req),
                    &targets,
                    &[
                        ("ApprovalStage", "1".into()),
                        ("Escalation", "true".into()),
                        ("ApproverId", approver.id.clone()),
                    ],
                    &corr,
                    archive,
                )?;
                now += 5 * HOUR;
                self.audit(
                    now,
                    "Approve access package assignment request",
                    "ApproveEntitlementGrantRequest",
                    approver,
                    Some(&req),
                    &targets,
                    &[
                        ("ApprovalStage", "1".into()),
                        (
                            "Justification",
                            "Approved on escalation; manager unavailable.".into(),
                        ),
                    ],
                    &corr,
                    archive,
                )?;
                ("delivered", "Delivered", true)
            }
            Flow::Denied { approver } => {
                now += 6 * HOUR;
                self.audit(
                    now,
                    "Deny access package assignment request",
                    "DenyEntitlementGrantRequest",
                    approver,
                    Some(&req),
                    &targets,
                    &[
                        ("ApprovalStage", "1".into()),
                        ("Justification", "Not required for the role.".into()),
                    ],
                    &corr,
                    archive,
                )?;
                ("denied", "Denied", false)
            }
            Flow::TimedOut => {
                now += 14 * DAY;
                self.audit(
                    now,
                    "Access package assignment request timed out (no approver action taken)",
                    "TimeoutEntitlementGrantRequest",
                    &system,
                    Some(&req),
                    &targets,
                    &[],
                    &corr,
                    archive,
                )?;
                ("denied", "TimedOut", false)
            }
        };
        let mut callouts = Vec::new();
        if delivered {
            now += 60;
            self.audit(
                now,
                "Ready to fulfill access package assignment request",
                "ReadyToFulfillEntitlementGrantRequest",
                &system,
                Some(&req),
                &targets,
                &[],
                &corr,
                archive,
            )?;
            now += 60;
            self.audit(
                now,
                "Fulfill access package assignment request",
                "FulfillEntitlementGrantRequest",
                &system,
                Some(&req),
                &targets,
                &[],
                &corr,
                archive,
            )?;
            if pol.name.starts_with("External") {
                let ticket = format!("CHG{:07}", 31_337 + self.seq % 1_000_000);
                self.audit(
                    now + 30,
                    "Execute custom extension",
                    "ExecuteCustomExtension",
                    &system,
                    Some(&req),
                    &[(
                        guid("ext-servicenow"),
                        "CustomExtension",
                        "Open ServiceNow access ticket".into(),
                    )],
                    &[("ExternalCorrelationId", ticket.clone())],
                    &corr,
                    archive,
                )?;
                callouts.push(json!({"id": guid(&format!("callout-{req}")), "customExtensionId": guid("ext-servicenow"),
                    "detail": "Ticket opened", "externalCorrelationId": ticket, "status": "callbackReceived"}));
            }
        }
        let end = pol.expiry_days.map(|d| now + d * DAY);
        self.requests.push(&json!({
            "id": req, "requestType": "userAdd", "state": state, "status": status,
            "createdDateTime": ts(t), "completedDateTime": ts(now), "justification": justification,
            "schedule": {"startDateTime": ts(t), "expiration": match pol.expiry_days { Some(d) => json!({"type": "afterDuration", "duration": format!("P{d}D")}), None => json!({"type": "noExpiration"}) }},
            "requestor": user.subject(), "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignment": if delivered { json!({"id": asg, "assignmentPolicyId": pol.id, "target": {"objectId": user.id}}) } else { json!({"assignmentPolicyId": pol.id, "target": {"objectId": user.id}}) },
            "answers": [], "customExtensionCalloutInstances": callouts,
        }))?;
        if !delivered {
            return Ok(None);
        }
        self.assignment(&asg, user, pkg, pol, now, end, None)?;
        if let Some(e) = end.filter(|e| *e <= at(EXPORTED_AT)) {
            // Expiry: the system removes the assignment.
            let rreq = guid(&format!("req-expire-{asg}"));
            self.audit(
                e,
                "Entitlement Management removes access package assignment request for user",
                "CreateEntitlementGrantSystemRemoveRequest",
                &system,
                Some(&rreq),
                &targets,
                &[("AssignmentId", asg.clone())],
                &corr,
                archive,
            )?;
            self.requests.push(&json!({
                "id": rreq, "requestType": "systemRemove", "state": "delivered", "status": "Delivered",
                "createdDateTime": ts(e), "completedDateTime": ts(e + 60), "justification": Value::Null,
                "requestor": Value::Null, "accessPackage": {"id": pkg.id, "displayName": pkg.name},
                "assignment": {"id": asg}, "answers": [], "customExtensionCalloutInstances": [],
            }))?;
        }
        Ok(Some(asg))
    }
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
