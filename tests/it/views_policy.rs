//! Group SoD (`sod_group_violations`), external access (`external_access`) and policy findings
//! (`policy_findings`), issue 14 section 2: each rule stated in the views' header comments is
//! checked on edited copies of the sample tenant against an oracle that reads the exported
//! JSON pages itself (packages, group members pages, assignments, sponsors, policies) and
//! applies the rule directly.
//!
//! The SQL is the working tree's `queries/` (`--queries`); `GOVLAKE_IT_QUERIES=DIR` replays
//! these tests against another copy of the queries (the previous views fail them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const APPROVER_NAME: &str = "Vendor Payment - Approver";
const EXTERNAL_POLICY: &str = "d4f36bf2-56b5-47fe-ae64-aefe4296d6b8";

fn queries() -> PathBuf {
    std::env::var_os("GOVLAKE_IT_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("queries"))
}

/// Text of a JSON value; JSON null and the string "null" (Graph sends both) are None.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s != "null" && !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Graph boolean: true only when it is JSON true (or the text "true", any case).
fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn lower(v: &Value) -> String {
    text(v).unwrap_or_default().to_lowercase()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON page")
}

fn write_json(path: &Path, doc: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(doc).expect("json")).expect("write");
}

/// The JSON pages under `export/sub`, in path order.
fn pages(export: &Path, sub: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(export.join(sub))
        .into_iter()
        .map(|e| e.expect("walk").into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    out
}

/// The records of every page under `export/sub` (with each page's `@odata.context`).
fn records(export: &Path, sub: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for page in pages(export, sub) {
        let doc = read_json(&page);
        let context = text(&doc["@odata.context"]).unwrap_or_default();
        for r in doc["value"].as_array().expect("value") {
            out.push((context.clone(), r.clone()));
        }
    }
    out
}

/// The id inside `segment('…')` of an `@odata.context`.
fn context_id(context: &str, segment: &str) -> Option<String> {
    let lower = context.to_lowercase();
    let at = lower.find(&format!("{}('", segment.to_lowercase()))? + segment.len() + 2;
    let end = context[at..].find('\'')?;
    Some(context[at..at + end].to_string())
}

/// A copy of the sample tenant in a new temporary folder.
fn sample_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&sample_data(), dir.path());
    dir
}

// ---------------------------------------------------------------------------------------
// Running the views.
// ---------------------------------------------------------------------------------------

type Row = serde_json::Map<String, Value>;

fn ingest_ok(lake: &Path, export: &Path) {
    let r = ingest(lake, &[export], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `govlake --lake LAKE sql --queries Q -o json -c SQL`, killed (and failed) after `limit`.
fn query_within(lake: &Path, sql: &str, limit: Duration) -> Vec<Row> {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let err = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = govlake()
        .arg("--lake")
        .arg(lake)
        .arg("sql")
        .arg("--queries")
        .arg(queries())
        .args(["-o", "json", "-c", sql])
        .stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"))
        .spawn()
        .expect("govlake starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{sql}` still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(out.path()).expect("stdout");
    let stderr = std::fs::read_to_string(err.path()).expect("stderr");
    assert!(status.success(), "`{sql}`: {stderr}");
    if stdout.trim().is_empty() {
        return vec![];
    }
    match serde_json::from_str::<Value>(&stdout).expect("JSON rows") {
        Value::Array(rows) => rows
            .into_iter()
            .map(|v| v.as_object().expect("row").clone())
            .collect(),
        other => panic!("not an array of rows: {other}"),
    }
}

fn query(lake: &Path, sql: &str) -> Vec<Row> {
    query_within(lake, sql, Duration::from_secs(300))
}

fn cell(r: &Row, column: &str) -> Option<String> {
    text(r.get(column).unwrap_or(&Value::Null))
}

// ---------------------------------------------------------------------------------------
// The oracle: the export's records, and the rules applied to them directly.
// ---------------------------------------------------------------------------------------

/// One exported assignment.
#[derive(Debug, Clone)]
struct Assignment {
    id: String,
    held: bool,
    package: String,
    package_name: String,
    user: String,
    principal_name: Option<String>,
    connected_organization: Option<String>,
}

fn assignments(export: &Path) -> Vec<Assignment> {
    records(export, "entitlementManagement/assignments")
        .into_iter()
        .map(|(_, r)| Assignment {
            id: text(&r["id"]).expect("id"),
            held: matches!(
                lower(&r["state"]).as_str(),
                "delivered" | "partiallydelivered"
            ),
            package: text(&r["accessPackage"]["id"]).expect("package"),
            package_name: text(&r["accessPackage"]["displayName"]).unwrap_or_default(),
            user: text(&r["target"]["objectId"]).expect("target"),
            principal_name: text(&r["target"]["principalName"]),
            connected_organization: text(&r["target"]["connectedOrganization"]["id"]),
        })
        .collect()
}

/// (package id, incompatible group id) pairs declared on the exported packages.
fn incompatible_groups(export: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (_, p) in records(export, "entitlementManagement")
        .into_iter()
        .filter(|(c, _)| c.contains("#identityGovernance/entitlementManagement/accessPackages"))
    {
        for g in p["incompatibleGroups"].as_array().into_iter().flatten() {
            out.insert((
                text(&p["id"]).expect("package id"),
                text(&g["id"]).expect("group id"),
            ));
        }
    }
    out
}

/// Members pages: group id (from `@odata.context`) → (member id, is a group).
fn group_members(export: &Path) -> BTreeMap<String, Vec<(String, bool)>> {
    let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for (context, m) in records(export, "groups") {
        let group = context_id(&context, "groups").expect("members page names its group");
        let is_group = lower(&m["@odata.type"]).ends_with(".group");
        out.entry(group)
            .or_default()
            .push((text(&m["id"]).expect("member id"), is_group));
    }
    out
}

/// Transitive members of `root`: member id → (the group whose page lists it, its depth),
/// by breadth-first search (shortest nesting first, groups visited once, so cycles end).
fn transitive_members(
    members: &BTreeMap<String, Vec<(String, bool)>>,
    root: &str,
) -> BTreeMap<String, (String, i64)> {
    let mut found: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut visited = BTreeSet::from([root.to_string()]);
    let mut queue = VecDeque::from([(root.to_string(), 0_i64)]);
    while let Some((group, depth)) = queue.pop_front() {
        for (member, is_group) in members.get(&group).into_iter().flatten() {
            found
                .entry(member.clone())
                .or_insert_with(|| (group.clone(), depth));
            if *is_group && visited.insert(member.clone()) {
                queue.push_back((member.clone(), depth + 1));
            }
        }
    }
    found
}

/// Expected `sod_group_violations`: (user, package, incompatible group, via group, depth).
type GroupViolation = (String, String, String, String, i64);

fn group_violations_oracle(export: &Path) -> BTreeSet<GroupViolation> {
    let members = group_members(export);
    let held: BTreeSet<(String, String)> = assignments(export)
        .into_iter()
        .filter(|a| a.held)
        .map(|a| (a.user, a.package))
        .collect();
    let mut out = BTreeSet::new();
    for (package, group) in incompatible_groups(export) {
        for (member, (via, depth)) in transitive_members(&members, &group) {
            if held.contains(&(member.clone(), package.clone())) {
                out.insert((member, package.clone(), group.clone(), via, depth));
            }
        }
    }
    out
}

fn group_violations(lake: &Path, limit: Duration) -> BTreeSet<GroupViolation> {
    query_within(lake, "select * from sod_group_violations", limit)
        .iter()
        .map(|r| {
            (
                cell(r, "user_object_id").expect("user"),
                cell(r, "access_package_id").expect("package"),
                cell(r, "incompatible_group_id").expect("group"),
                cell(r, "via_group_id").unwrap_or_default(),
                r.get("nesting_depth").and_then(Value::as_i64).unwrap_or(-1),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Editing exports.
// ---------------------------------------------------------------------------------------

fn approver_package(export: &Path) -> (String, String) {
    let (_, p) = records(export, "entitlementManagement")
        .into_iter()
        .find(|(c, p)| {
            c.contains("#identityGovernance/entitlementManagement/accessPackages")
                && p["displayName"] == APPROVER_NAME
        })
        .expect("the approver package");
    let group = text(&p["incompatibleGroups"][0]["id"]).expect("its incompatible group");
    (text(&p["id"]).expect("id"), group)
}

/// Appends members to the group's exported page, or writes a new page for it.
fn add_members(export: &Path, group: &str, new: &[Value]) {
    let existing = pages(export, "groups").into_iter().find(|p| {
        context_id(
            &text(&read_json(p)["@odata.context"]).unwrap_or_default(),
            "groups",
        )
        .as_deref()
            == Some(group)
    });
    match existing {
        Some(page) => {
            let mut doc = read_json(&page);
            doc["value"]
                .as_array_mut()
                .expect("value")
                .extend_from_slice(new);
            write_json(&page, &doc);
        }
        None => write_json(
            &export.join(format!("groups/{group}-members-0001.json")),
            &json!({
                "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#groups('{group}')/members"),
                "value": new,
            }),
        ),
    }
}

fn group_member(id: &str, name: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.group", "displayName": name, "id": id})
}

fn user_member(export: &Path, id: &str) -> Value {
    let a = assignments(export)
        .into_iter()
        .find(|a| a.user == id)
        .expect("a user of the export");
    json!({
        "@odata.type": "#microsoft.graph.user",
        "displayName": id,
        "id": id,
        "userPrincipalName": a.principal_name,
    })
}

/// Holders of the approver package who are not direct members of its incompatible group,
/// and a user who holds nothing of it.
fn approver_outsiders(export: &Path) -> (Vec<String>, String) {
    let (package, group) = approver_package(export);
    let direct: BTreeSet<String> = group_members(export)
        .remove(&group)
        .unwrap_or_default()
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    let all = assignments(export);
    let holders: BTreeSet<String> = all
        .iter()
        .filter(|a| a.held && a.package == package && !direct.contains(&a.user))
        .map(|a| a.user.clone())
        .collect();
    let bystander = all
        .iter()
        .map(|a| a.user.clone())
        .find(|u| !direct.contains(u) && !all.iter().any(|a| a.user == *u && a.package == package))
        .expect("a user without the approver package");
    (holders.into_iter().collect(), bystander)
}

const CONTRACTORS: &str = "6f1c2a10-0000-4000-8000-00000000c001";
const TEMPS: &str = "6f1c2a10-0000-4000-8000-00000000c002";
const UNEXPORTED: &str = "6f1c2a10-0000-4000-8000-00000000c003";

// ---------------------------------------------------------------------------------------
// sod_group_violations
// ---------------------------------------------------------------------------------------

#[test]
fn the_sample_tenant_has_eleven_direct_group_violations() {
    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), &sample_data());
    let want = group_violations_oracle(&sample_data());
    assert_eq!(
        want.len(),
        11,
        "the eleven clerks are in PAY-Initiators: {want:?}"
    );
    assert!(want.iter().all(|v| v.4 == 0 && v.3 == v.2), "{want:?}");
    assert_eq!(
        group_violations(lake.path(), Duration::from_secs(300)),
        want
    );
}

#[test]
fn members_of_nested_groups_are_violations() {
    let export = sample_copy();
    let e = export.path();
    let (package, pay_initiators) = approver_package(e);
    let (outsiders, bystander) = approver_outsiders(e);
    let (h1, h2) = (outsiders[0].clone(), outsiders[1].clone());
    // PAY-Initiators > PAY-Contractors (h1) > PAY-Temps (h2, and someone without the package);
    // PAY-Contractors also lists a group whose members were not exported.
    add_members(
        e,
        &pay_initiators,
        &[group_member(CONTRACTORS, "PAY-Contractors")],
    );
    add_members(
        e,
        CONTRACTORS,
        &[
            user_member(e, &h1),
            group_member(TEMPS, "PAY-Temps"),
            group_member(UNEXPORTED, "PAY-Unexported"),
        ],
    );
    add_members(e, TEMPS, &[user_member(e, &h2), user_member(e, &bystander)]);

    let want = group_violations_oracle(e);
    assert_eq!(want.len(), 13, "{want:?}");
    assert!(want.contains(&(
        h1.clone(),
        package.clone(),
        pay_initiators.clone(),
        CONTRACTORS.into(),
        1
    )));
    assert!(want.contains(&(
        h2.clone(),
        package.clone(),
        pay_initiators.clone(),
        TEMPS.into(),
        2
    )));

    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), e);
    assert_eq!(
        group_violations(lake.path(), Duration::from_secs(300)),
        want
    );

    // The path names the groups the membership is inherited through.
    let rows = query(
        lake.path(),
        &format!(
            "select via_group_name, membership_path from sod_group_violations where user_object_id = '{h2}'"
        ),
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        cell(&rows[0], "via_group_name").as_deref(),
        Some("PAY-Temps")
    );
    assert_eq!(
        cell(&rows[0], "membership_path").as_deref(),
        Some("PAY-Initiators > PAY-Contractors > PAY-Temps")
    );
}

#[test]
fn nesting_cycles_end_and_keep_the_shortest_path() {
    let export = sample_copy();
    let e = export.path();
    let (_, pay_initiators) = approver_package(e);
    let (outsiders, _) = approver_outsiders(e);
    // PAY-Initiators > PAY-Contractors > PAY-Temps > PAY-Initiators (a cycle through the
    // incompatible group), PAY-Temps > PAY-Contractors (a two-group cycle), and
    // PAY-Contractors inside itself. outsiders[0] is in PAY-Temps; outsiders[1] in both
    // PAY-Temps and PAY-Contractors (the shorter path wins).
    add_members(
        e,
        &pay_initiators,
        &[group_member(CONTRACTORS, "PAY-Contractors")],
    );
    add_members(
        e,
        CONTRACTORS,
        &[
            group_member(TEMPS, "PAY-Temps"),
            group_member(CONTRACTORS, "PAY-Contractors"),
            user_member(e, &outsiders[1]),
        ],
    );
    add_members(
        e,
        TEMPS,
        &[
            group_member(&pay_initiators, "PAY-Initiators"),
            group_member(CONTRACTORS, "PAY-Contractors"),
            user_member(e, &outsiders[0]),
            user_member(e, &outsiders[1]),
        ],
    );
    let want = group_violations_oracle(e);
    assert_eq!(want.len(), 13, "{want:?}");
    assert!(
        want.iter()
            .any(|v| v.0 == outsiders[0] && v.3 == TEMPS && v.4 == 2)
    );
    assert!(
        want.iter()
            .any(|v| v.0 == outsiders[1] && v.3 == CONTRACTORS && v.4 == 1)
    );

    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), e);
    assert_eq!(
        group_violations(lake.path(), Duration::from_secs(120)),
        want
    );
}

// ---------------------------------------------------------------------------------------
// external_access
// ---------------------------------------------------------------------------------------

fn is_external(a: &Assignment) -> bool {
    a.connected_organization.is_some()
        || a.principal_name
            .as_deref()
            .is_some_and(|p| p.to_uppercase().contains("#EXT#"))
}

/// Expected `external_access`: the held assignments of external users, by id.
fn external_oracle(export: &Path) -> BTreeSet<String> {
    assignments(export)
        .into_iter()
        .filter(|a| a.held && is_external(a))
        .map(|a| a.id)
        .collect()
}

/// (user principal name, package name) of each row: the columns the first version had too.
fn external_pairs(export: &Path) -> Vec<(String, String)> {
    let ids = external_oracle(export);
    let mut out: Vec<(String, String)> = assignments(export)
        .into_iter()
        .filter(|a| ids.contains(&a.id))
        .map(|a| (a.principal_name.unwrap_or_default(), a.package_name))
        .collect();
    out.sort();
    out
}

fn external_rows(lake: &Path) -> Vec<Row> {
    query(lake, "select * from external_access")
}

fn view_pairs(rows: &[Row]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                cell(r, "user_principal_name").unwrap_or_default(),
                cell(r, "access_package_name").unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Edits (or, when `edit` returns false, removes) an assignment in an export's pages.
fn edit_assignment(export: &Path, id: &str, mut edit: impl FnMut(&mut Value) -> bool) {
    let mut found = false;
    for page in pages(export, "entitlementManagement/assignments") {
        let mut doc = read_json(&page);
        let list = doc["value"].as_array_mut().expect("value");
        let mut here = false;
        list.retain_mut(|r| {
            if r["id"] != id {
                return true;
            }
            here = true;
            edit(r)
        });
        if here {
            found = true;
            write_json(&page, &doc);
        }
    }
    assert!(found, "assignment {id} is not in the export");
}

#[test]
fn external_access_lists_only_access_held_now() {
    let export = sample_copy();
    let e = export.path();
    let externals: Vec<Assignment> = assignments(e).into_iter().filter(is_external).collect();
    assert!(
        externals.iter().any(|a| !a.held),
        "the sample has an external assignment that expired: {externals:?}"
    );
    let held: Vec<&Assignment> = externals.iter().filter(|a| a.held).collect();
    // One more expires (Graph's PascalCase), one is delivered as "PartiallyDelivered" to a
    // guest of no connected organization (`#ext#` in lower case), one is a failed delivery.
    let (expiring, template) = (held[0].id.clone(), held[1].id.clone());
    edit_assignment(e, &expiring, |r| {
        r["state"] = json!("Expired");
        r["status"] = json!("ExpiredNotificationTriggered");
        r["expiredDateTime"] = json!("2026-09-29T10:00:00Z");
        true
    });
    let page = pages(e, "entitlementManagement/assignments")[0].clone();
    let mut doc = read_json(&page);
    let original = doc["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|r| r["id"] == template.as_str())
        .cloned()
        .expect("template on the first page");
    for (id, state, principal) in [
        (
            "0e0e0e0e-0000-4000-8000-0000000000a1",
            "PartiallyDelivered",
            "lee.wong_contoso.example#ext#@woodgrovebank.example",
        ),
        (
            "0e0e0e0e-0000-4000-8000-0000000000a2",
            "deliveryFailed",
            "kim.ito_contoso.example#EXT#@woodgrovebank.example",
        ),
    ] {
        let mut r = original.clone();
        r["id"] = json!(id);
        r["state"] = json!(state);
        r["target"]["connectedOrganization"] = Value::Null;
        r["target"]["objectId"] = json!(format!("{id}-user"));
        r["target"]["principalName"] = json!(principal);
        doc["value"].as_array_mut().expect("value").push(r);
    }
    write_json(&page, &doc);

    let want = external_oracle(e);
    assert_eq!(want.len(), held.len(), "one expired, one added: {want:?}");
    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), e);
    let rows = external_rows(lake.path());
    assert_eq!(view_pairs(&rows), external_pairs(e));
    let ids: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| cell(r, "assignment_id"))
        .collect();
    assert_eq!(ids, want);

    // A later export without one of them: removed access is gone from the view.
    let later = tempfile::tempdir().expect("tempdir");
    copy_dir(e, later.path());
    let removed = want.iter().next().expect("a held one").clone();
    edit_assignment(later.path(), &removed, |_| false);
    let mut meta = read_json(&later.path().join("_export.json"));
    meta["exportedAt"] = json!("2026-10-15T06:00:00Z");
    write_json(&later.path().join("_export.json"), &meta);
    ingest_ok(lake.path(), later.path());
    let rows = external_rows(lake.path());
    assert_eq!(view_pairs(&rows), external_pairs(later.path()));
    assert!(
        !rows
            .iter()
            .any(|r| cell(r, "assignment_id").as_deref() == Some(&removed))
    );
}

/// Sponsor pages: (organization id, kind) → sponsor names as the oracle sorts them.
fn sponsors_oracle(export: &Path) -> BTreeMap<(String, String), String> {
    let mut names: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (context, s) in records(export, "entitlementManagement/connectedOrganizations") {
        let kind = if context.to_lowercase().ends_with("/internalsponsors") {
            "internal"
        } else if context.to_lowercase().ends_with("/externalsponsors") {
            "external"
        } else {
            continue;
        };
        let org =
            context_id(&context, "connectedOrganizations").expect("sponsor page names its org");
        let name = text(&s["userPrincipalName"])
            .or_else(|| text(&s["displayName"]))
            .or_else(|| text(&s["id"]))
            .expect("a sponsor name");
        names.entry((org, kind.into())).or_default().insert(name);
    }
    names
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect::<Vec<_>>().join(", ")))
        .collect()
}

#[test]
fn sponsors_are_listed_once_each_in_sorted_order() {
    let export = sample_copy();
    let e = export.path();
    let sponsor = |name: &str| {
        json!({
            "@odata.type": "#microsoft.graph.user",
            "displayName": name,
            "id": format!("5a0b0c0d-0000-4000-8000-{:012x}", name.len() * 7919 + name.as_bytes()[0] as usize),
            "userPrincipalName": format!("{}@woodgrovebank.example", name.to_lowercase().replace(' ', ".")),
        })
    };
    for (file, names) in [
        (
            "internalSponsors-0001.json",
            ["Zoe Walker", "Adam Berg", "Mia Novak"],
        ),
        (
            "externalSponsors-0001.json",
            ["Yusuf Kaya", "Bea Lund", "Omar Haddad"],
        ),
    ] {
        let page = e
            .join("entitlementManagement/connectedOrganizations")
            .join(file);
        let mut doc = read_json(&page);
        let list = doc["value"].as_array_mut().expect("value");
        // Unsorted, around the existing sponsor, and one listed twice.
        list.insert(0, sponsor(names[0]));
        list.push(sponsor(names[1]));
        list.push(sponsor(names[2]));
        list.push(sponsor(names[0]));
        write_json(&page, &doc);
    }
    let want = sponsors_oracle(e);
    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), e);
    let rows = external_rows(lake.path());
    assert!(!rows.is_empty());
    for r in &rows {
        let org = cell(r, "connected_organization_id").expect("a connected organization");
        let expect = |kind: &str| want.get(&(org.clone(), kind.to_string())).cloned();
        assert_eq!(cell(r, "internal_sponsors"), expect("internal"), "{r:?}");
        assert_eq!(cell(r, "external_sponsors"), expect("external"), "{r:?}");
    }
    assert_eq!(
        cell(&rows[0], "internal_sponsors")
            .expect("sponsors")
            .split(", ")
            .count(),
        4,
        "{want:?}"
    );
    // The same bytes on every run.
    let again = external_rows(lake.path());
    assert_eq!(rows, again);
}

// ---------------------------------------------------------------------------------------
// policy_findings
// ---------------------------------------------------------------------------------------

/// Scopes that admit users from outside the directory's members (GRAPH-DATA-MODEL 7.6).
fn admits_external_users(scope: &str) -> bool {
    matches!(
        scope,
        "specificconnectedorganizationusers"
            | "allconfiguredconnectedorganizationusers"
            | "allexternalusers"
            | "alldirectoryusers"
    ) || scope.contains("external")
        || scope.contains("connectedorganization")
}

/// Expected `policy_findings`: (policy id, rule, detail in lower case, since the lake keeps
/// enum values in its own letter case), the rules applied to the JSON.
fn findings_oracle(export: &Path) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (_, p) in records(export, "entitlementManagement")
        .into_iter()
        .filter(|(c, _)| c.contains("#identityGovernance/entitlementManagement/assignmentPolicies"))
    {
        let id = text(&p["id"]).expect("policy id");
        let mut add = |rule: &str, detail: String| {
            out.insert((id.clone(), rule.to_string(), detail.to_lowercase()));
        };
        let scope = lower(&p["allowedTargetScope"]);
        let approval = &p["requestApprovalSettings"];
        let approval_for_add = flag(&approval["isApprovalRequiredForAdd"]);
        if admits_external_users(&scope) && !approval_for_add {
            add(
                "external users without approval",
                format!(
                    "allowedTargetScope = {}",
                    text(&p["allowedTargetScope"]).unwrap_or_default()
                ),
            );
        }
        if approval_for_add || flag(&approval["isApprovalRequiredForUpdate"]) {
            for (i, s) in approval["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let n = i + 1;
                if !flag(&s["isEscalationEnabled"]) {
                    add(
                        "approval stage without escalation",
                        format!("stage {n} has no escalation"),
                    );
                }
                if !flag(&s["isApproverJustificationRequired"]) {
                    add(
                        "approver justification not required",
                        format!("stage {n} approvers may decide without a reason"),
                    );
                }
                let primary = s["primaryApprovers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if primary.len() == 1 && lower(&primary[0]["@odata.type"]).ends_with("singleuser") {
                    add(
                        "single-user approver",
                        format!(
                            "stage {n} is approved by one named user; prefer managers, sponsors or a group"
                        ),
                    );
                }
            }
        }
        let automatic = flag(&p["automaticRequestSettings"]["requestAccessForAllowedTargets"]);
        if !flag(&approval["isRequestorJustificationRequired"])
            && scope != "notspecified"
            && !automatic
        {
            add(
                "requestor justification not required",
                "requestors may ask without a reason".into(),
            );
        }
        if lower(&p["expiration"]["type"]) == "noexpiration" {
            add("no expiration", "assignments never expire".into());
        }
        let review = &p["reviewSettings"];
        if !flag(&review["isEnabled"]) {
            add(
                "reviews disabled",
                "access under this policy is never recertified".into(),
            );
        } else {
            if lower(&review["expirationBehavior"]) == "keepaccess" {
                add(
                    "review timeout keeps access",
                    "unreviewed access stays when a review times out".into(),
                );
            }
            if flag(&review["isSelfReview"]) {
                add("self review", "holders recertify their own access".into());
            }
            if !flag(&review["isRecommendationEnabled"]) {
                add(
                    "review recommendations off",
                    "reviewers get no sign-in based recommendations".into(),
                );
            }
        }
    }
    out
}

fn findings(lake: &Path) -> BTreeSet<(String, String, String)> {
    let rows = query(lake, "select * from policy_findings");
    let set: BTreeSet<_> = rows
        .iter()
        .map(|r| {
            (
                cell(r, "policy_id").expect("policy"),
                cell(r, "rule").expect("rule"),
                cell(r, "detail").expect("detail").to_lowercase(),
            )
        })
        .collect();
    assert_eq!(set.len(), rows.len(), "a finding is listed twice: {rows:?}");
    set
}

#[test]
fn policy_findings_match_the_policy_json_on_the_sample_tenant() {
    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), &sample_data());
    let want = findings_oracle(&sample_data());
    assert!(!want.is_empty());
    assert_eq!(findings(lake.path()), want);
}

#[test]
fn every_scope_admitting_external_users_needs_approval() {
    let export = sample_copy();
    let e = export.path();
    let page = e.join("entitlementManagement/assignmentPolicies-0001.json");
    let mut doc = read_json(&page);
    let list = doc["value"].as_array_mut().expect("value");
    let base = list
        .iter()
        .find(|p| p["id"] == EXTERNAL_POLICY)
        .cloned()
        .expect("the external auditors' policy");
    // The sample's connected-organization policy, approval switched off.
    for p in list.iter_mut().filter(|p| p["id"] == EXTERNAL_POLICY) {
        p["requestApprovalSettings"]["isApprovalRequiredForAdd"] = json!(false);
    }
    // Variants of it: every external scope (odd letter case too), with and without approval;
    // member-only scopes without approval; approval off but stages left over; an
    // administrator-only policy and an automatic one without requestor justification; a
    // stage approved by two named users.
    let variants: [(&str, &str, Option<bool>, &dyn Fn(&mut Value)); 11] = [
        (
            "allExternalUsers",
            "All external users",
            Some(false),
            &|_| {},
        ),
        (
            "AllConfiguredConnectedOrganizationUsers",
            "Configured orgs",
            None,
            &|_| {},
        ),
        (
            "SPECIFICCONNECTEDORGANIZATIONUSERS",
            "Upper-case scope",
            Some(false),
            &|_| {},
        ),
        (
            "allDirectoryUsers",
            "Everyone incl. guests",
            Some(false),
            &|_| {},
        ),
        (
            "allExternalUsers",
            "External with approval",
            Some(true),
            &|_| {},
        ),
        ("allMemberUsers", "Members only", Some(false), &|_| {}),
        ("specificDirectoryUsers", "Named users", Some(false), &|p| {
            p["requestApprovalSettings"]["isApprovalRequiredForUpdate"] = json!(false);
        }),
        ("notSpecified", "Admin only", Some(true), &|p| {
            p["requestApprovalSettings"]["isRequestorJustificationRequired"] = json!(false);
        }),
        ("specificDirectoryUsers", "Automatic", Some(false), &|p| {
            p["requestApprovalSettings"]["isRequestorJustificationRequired"] = json!(false);
            p["automaticRequestSettings"] = json!({"requestAccessForAllowedTargets": true});
        }),
        (
            "specificDirectoryUsers",
            "Two named approvers",
            Some(true),
            &|p| {
                let one = p["requestApprovalSettings"]["stages"][1]["primaryApprovers"][0].clone();
                let mut two = one.clone();
                two["userId"] = json!("d92b69cf-b82c-4cab-a5c7-53f56002b2c0");
                p["requestApprovalSettings"]["stages"][1]["primaryApprovers"] = json!([one, two]);
                p["reviewSettings"]["isSelfReview"] = json!(true);
                p["reviewSettings"]["expirationBehavior"] = json!("KeepAccess");
                p["expiration"] = json!({"type": "NoExpiration"});
            },
        ),
        (
            "allExternalUsers",
            "No approval settings at all",
            None,
            &|p| {
                p["requestApprovalSettings"] = Value::Null;
                p["reviewSettings"] = Value::Null;
            },
        ),
    ];
    for (i, (scope, name, approval, edit)) in variants.iter().enumerate() {
        let mut p = base.clone();
        p["id"] = json!(format!("7b7b7b7b-0000-4000-8000-{:012}", i + 1));
        p["displayName"] = json!(name);
        p["allowedTargetScope"] = json!(scope);
        match approval {
            Some(b) => p["requestApprovalSettings"]["isApprovalRequiredForAdd"] = json!(b),
            None => {
                p["requestApprovalSettings"]
                    .as_object_mut()
                    .expect("settings")
                    .remove("isApprovalRequiredForAdd");
            }
        }
        edit(&mut p);
        list.push(p);
    }
    write_json(&page, &doc);

    let want = findings_oracle(e);
    let external: BTreeSet<&str> = want
        .iter()
        .filter(|f| f.1 == "external users without approval")
        .map(|f| f.0.as_str())
        .collect();
    assert!(external.contains(EXTERNAL_POLICY), "{want:?}");
    assert_eq!(external.len(), 6, "{external:?}");

    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), e);
    let got = findings(lake.path());
    if got != want {
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        panic!(
            "policy_findings differs from the policy JSON\nmissing: {missing:#?}\nnot expected: {extra:#?}"
        );
    }
}
