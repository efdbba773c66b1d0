//! Catalogs and access packages: the story's three packages (Financial Analyst, the two
//! Vendor Payment packages, the approver one declaring the initiator incompatible) and the
//! department packages that give a large tenant its breadth.

use serde_json::{Value, json};

use super::{CTX_EM, Result, TenantWriter, guid};

/// An access package.
pub(super) struct Package {
    pub id: String,
    pub name: String,
    pub catalog: &'static str,
}

/// (name, description, externally visible).
const CATALOGS: [(&str, &str, bool); 3] = [
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

/// The story's packages then `extra` department packages.
pub(super) fn packages(extra: usize) -> Vec<Package> {
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
    for i in 0..extra {
        packages.push(Package {
            id: guid(&format!("pkg-dept-{i}")),
            name: format!("Department {:04} - Member", i + 1),
            catalog: "General Access",
        });
    }
    packages
}

fn group(name: &str) -> Value {
    json!({"id": guid(&format!("group-{name}")), "displayName": name})
}

/// A resource role scope: `role` of resource `res` (an app, a group, a site) in package `pkg`.
fn role_scope(pkg: &str, res: &str, role: &str, origin: &str) -> Value {
    let rid = guid(&format!("role-{pkg}-{res}-{role}"));
    let sid = guid(&format!("scope-{res}"));
    json!({
        "id": format!("{rid}_{sid}"), "createdDateTime": "2025-11-03T09:00:00Z",
        "role": {"id": rid, "displayName": role, "originSystem": origin, "originId": format!("{role}_{}", guid(res)),
                 "resource": {"id": guid(&format!("res-{res}")), "displayName": res, "originSystem": origin, "originId": guid(res)}},
        "scope": {"id": sid, "displayName": "Root", "description": "Root Scope", "isRootScope": true, "originSystem": origin, "originId": guid(res)},
    })
}

/// What the `i`th package grants and excludes: (role scopes, incompatible packages,
/// incompatible groups, last modified).
fn contents(
    i: usize,
    p: &Package,
    packages: &[Package],
) -> (Vec<Value>, Vec<Value>, Vec<Value>, &'static str) {
    match i {
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
    }
}

/// Writes the catalogs and the access packages.
pub(super) fn write(packages: &[Package], w: &mut TenantWriter) -> Result<()> {
    let mut catalogs = w.pages(&w.em(), "catalogs", &format!("{CTX_EM}catalogs"));
    for (name, desc, visible) in CATALOGS {
        catalogs.push(&json!({
            "id": guid(&format!("catalog-{name}")), "displayName": name, "description": desc,
            "catalogType": "userManaged", "state": "published", "isExternallyVisible": visible,
            "createdDateTime": "2025-11-03T08:00:00Z", "modifiedDateTime": "2026-03-01T10:00:00Z",
        }))?;
    }
    w.finish(catalogs)?;
    let mut pages = w.pages(
        &w.em(),
        "accessPackages",
        &format!(
            "{CTX_EM}accessPackages(catalog(),incompatibleAccessPackages(),incompatibleGroups(),resourceRoleScopes(role(),scope()))"
        ),
    );
    for (i, p) in packages.iter().enumerate() {
        let (scopes, incompatible, incompatible_groups, modified) = contents(i, p, packages);
        pages.push(&json!({
            "id": p.id, "displayName": p.name, "description": format!("{} access.", p.name), "isHidden": false,
            "createdDateTime": "2025-11-03T09:00:00Z", "modifiedDateTime": modified,
            "catalog": {"id": guid(&format!("catalog-{}", p.catalog)), "displayName": p.catalog},
            "incompatibleAccessPackages": incompatible, "incompatibleGroups": incompatible_groups,
            "resourceRoleScopes": scopes,
        }))?;
    }
    w.finish(pages)
}
