//! Which entity a file holds: told by `@odata.context` first (including nested contexts such
//! as `definitions('…')/instances('…')/decisions` and expanded ones such as
//! `assignments(target(),accessPackage())`), then by the file name. The result also carries
//! the parent ids a nested context names, and the child list a context points into
//! (`accessPackages('…')/incompatibleAccessPackages` feeds `incompatible_access_packages`).

use std::path::Path;

/// What a file (or one page of it) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Entity (table) name.
    pub entity: &'static str,
    /// Parent ids, nearest first.
    pub parents: Vec<String>,
    /// Child-list constant (`internal` / `external` sponsors).
    pub constant: Option<&'static str>,
    /// Objects are Azure Monitor envelopes whose `properties` hold the directoryAudit.
    pub envelope: bool,
}

/// Segment name (lower-case) → (entity, constant, needs a parent id).
fn by_segment(seg: &str, prev: Option<&str>) -> Option<(&'static str, Option<&'static str>, bool)> {
    Some(match seg {
        "catalogs" | "accesspackagecatalogs" => ("catalogs", None, false),
        "accesspackages" => ("access_packages", None, false),
        "incompatibleaccesspackages" => ("incompatible_access_packages", None, true),
        "incompatiblegroups" => ("incompatible_groups", None, true),
        "resourcerolescopes" | "accesspackageresourcerolescopes" => {
            ("access_package_resource_role_scopes", None, true)
        }
        "assignmentpolicies" | "accesspackageassignmentpolicies" => {
            ("assignment_policies", None, false)
        }
        "assignments" | "accesspackageassignments" => ("assignments", None, false),
        "assignmentrequests" | "accesspackageassignmentrequests" => {
            ("assignment_requests", None, false)
        }
        "connectedorganizations" => ("connected_organizations", None, false),
        "internalsponsors" => ("connected_organization_sponsors", Some("internal"), true),
        "externalsponsors" => ("connected_organization_sponsors", Some("external"), true),
        "definitions" | "accessreviewdefinitions" => ("access_review_definitions", None, false),
        "instances" | "accessreviewinstances" => ("access_review_instances", None, prev.is_some()),
        "decisions" | "accessreviewdecisions" => ("access_review_decisions", None, prev.is_some()),
        "stages" | "approvalstages" if prev.is_none_or(|p| p.contains("approval")) => {
            ("approval_stages", None, true)
        }
        "directoryaudits" | "auditlogs" | "pt1h" => ("audit_events", None, false),
        "members" | "transitivemembers" if prev.is_some_and(|p| p == "groups") => {
            ("incompatible_group_members", None, true)
        }
        "users" => ("users", None, false),
        _ => return None,
    })
}

/// Splits `name('id')` into (`name`, `Some(id)`), and `name(a(),b())` into (`name`, None).
fn split_segment(seg: &str) -> (String, Option<String>) {
    match seg.find('(') {
        Some(i) => {
            let name = seg[..i].to_ascii_lowercase();
            let args = seg[i + 1..].trim_end_matches(')');
            let id = args
                .strip_prefix('\'')
                .and_then(|a| a.strip_suffix('\''))
                .filter(|a| !a.contains('\''))
                .map(str::to_string);
            (name, id)
        }
        None => (seg.to_ascii_lowercase(), None),
    }
}

/// Splits a context path on `/` outside parentheses.
fn segments(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '/' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// Resolves an `@odata.context` URL, e.g.
/// `https://graph.microsoft.com/v1.0/$metadata#identityGovernance/accessReviews/definitions('d')/instances('i')/decisions`.
pub fn from_context(context: &str) -> Option<Resolved> {
    let path = context.split_once("$metadata#").map_or(context, |(_, p)| p);
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<(String, Option<String>)> = segments(path)
        .into_iter()
        .filter(|s| !s.is_empty() && !s.starts_with('$'))
        .map(split_segment)
        .collect();
    // Only the last segment names the entity; earlier ones carry parent ids.
    let i = segs.len().checked_sub(1)?;
    let prev = i.checked_sub(1).map(|j| segs[j].0.as_str());
    let (entity, constant, needs_parent) = by_segment(&segs[i].0, prev)?;
    let parents: Vec<String> = segs[..i]
        .iter()
        .rev()
        .filter_map(|(_, id)| id.clone())
        .collect();
    if needs_parent && parents.is_empty() {
        return None;
    }
    Some(Resolved {
        entity,
        parents,
        constant,
        envelope: false,
    })
}

/// Resolves by file name: the last dotted/dashed token of the name that names an entity
/// (`assignments-page2.json`, `accessReviews.decisions.list.json`); diagnostic-settings
/// archives (`insights-logs-auditlogs/.../PT1H.json`) are audit envelopes. Lists that need a
/// parent id cannot be told by name alone.
pub fn from_file_name(path: &Path) -> Option<Resolved> {
    let (path, _) = super::files::uncompressed_name(path);
    let path = path.as_path();
    let in_archive = path.components().any(|c| {
        c.as_os_str()
            .to_string_lossy()
            .eq_ignore_ascii_case("insights-logs-auditlogs")
    });
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if in_archive || name == "pt1h.json" {
        return Some(Resolved {
            entity: "audit_events",
            parents: vec![],
            constant: None,
            envelope: true,
        });
    }
    let stem = name.split('.').collect::<Vec<_>>();
    let tokens: Vec<&str> = stem
        .iter()
        .flat_map(|t| t.split(['-', '_', ' ']))
        .filter(|t| !t.is_empty())
        .collect();
    for t in tokens.iter().rev() {
        // Longest entity name that the token starts with (assignmentrequests before assignments).
        const NAMES: &[&str] = &[
            "accesspackageassignmentrequests",
            "accesspackageassignmentpolicies",
            "accesspackageassignments",
            "accesspackagecatalogs",
            "assignmentrequests",
            "assignmentpolicies",
            "assignments",
            "accesspackages",
            "catalogs",
            "connectedorganizations",
            "accessreviewdefinitions",
            "accessreviewinstances",
            "accessreviewdecisions",
            "definitions",
            "instances",
            "decisions",
            "directoryaudits",
            "auditlogs",
            "users",
            "incompatibleaccesspackages",
            "incompatiblegroups",
            "internalsponsors",
            "externalsponsors",
            "approvalstages",
            "resourcerolescopes",
        ];
        if let Some(n) = NAMES
            .iter()
            .filter(|n| t.starts_with(**n))
            .max_by_key(|n| n.len())
        {
            let (entity, constant, needs_parent) = by_segment(n, None)?;
            if needs_parent {
                return None;
            }
            return Some(Resolved {
                entity,
                parents: vec![],
                constant,
                envelope: false,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(s: &str) -> Option<(&'static str, Vec<String>)> {
        from_context(s).map(|r| (r.entity, r.parents))
    }

    #[test]
    fn contexts_name_their_entity_and_parents() {
        let base = "https://graph.microsoft.com/v1.0/$metadata#";
        assert_eq!(
            ctx(&format!(
                "{base}identityGovernance/accessReviews/definitions('d1')/instances('i1')/decisions"
            )),
            Some(("access_review_decisions", vec!["i1".into(), "d1".into()]))
        );
        assert_eq!(
            ctx(&format!(
                "{base}identityGovernance/entitlementManagement/assignments(target(),accessPackage())"
            )),
            Some(("assignments", vec![]))
        );
        assert_eq!(
            ctx(&format!(
                "{base}identityGovernance/entitlementManagement/accessPackages('p1')/incompatibleAccessPackages"
            )),
            Some(("incompatible_access_packages", vec!["p1".into()]))
        );
        assert_eq!(
            ctx(&format!("{base}auditLogs/directoryAudits/$entity")),
            Some(("audit_events", vec![]))
        );
        assert_eq!(
            ctx(&format!("{base}groups('g1')/members")),
            Some(("incompatible_group_members", vec!["g1".into()]))
        );
        assert_eq!(
            ctx(&format!("{base}accessPackages/incompatibleAccessPackages")),
            None
        );
        assert_eq!(ctx(&format!("{base}something/else")), None);
    }

    #[test]
    fn file_names_are_the_fallback() {
        let r = |p: &str| from_file_name(Path::new(p)).map(|r| (r.entity, r.envelope));
        assert_eq!(
            r("x/assignmentRequests.list.json"),
            Some(("assignment_requests", false))
        );
        assert_eq!(r("assignments-page-2.json"), Some(("assignments", false)));
        assert_eq!(
            r("accessReviews.decisions.list.example1.json"),
            Some(("access_review_decisions", false))
        );
        assert_eq!(
            r("a/insights-logs-auditlogs/tenantId=t/y=2026/m=07/d=01/h=10/m=00/PT1H.json"),
            Some(("audit_events", true))
        );
        assert_eq!(
            r("accessPackages.incompatibleAccessPackages.list.json"),
            None
        );
        assert_eq!(r("notes.json"), None);
    }
}
