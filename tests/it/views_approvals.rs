//! Approvals (`approval_trail`, `approval_latency`, `direct_admin_grants`, issue 14 section 2)
//! and policy control changes (`control_changes`, section 3): each rule stated in the views'
//! header comments is checked on edited copies of the sample tenant against an oracle that
//! reads the exported JSON pages (policies, requests, assignments, packages, directoryAudits)
//! and applies the rule directly, never through the views.
//!
//! The SQL is the working tree's `queries/` (only these four files, through `--queries`);
//! `GOVLAKE_IT_QUERIES=DIR` replays the tests against another copy of the queries (the
//! previous views fail them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};

use crate::common::*;

/// "Employees - manager approval": one approval stage, Financial Analyst - Standard.
const MANAGER_POLICY: &str = "c7ebddc5-ce59-4be3-a570-60bedb88890e";
/// "External auditors - sponsor and control owner": two approval stages.
const EXTERNAL_POLICY: &str = "d4f36bf2-56b5-47fe-ae64-aefe4296d6b8";
/// "Payments staff" (Vendor Payment - Initiator).
const STAFF_POLICY: &str = "e48bc0ad-3662-4d30-ac76-c85460a01d9d";
/// "Payment approvers" (Vendor Payment - Approver).
const APPROVERS_POLICY: &str = "13316f90-9759-4045-a8d1-baa84baa6832";
const APPROVER_PACKAGE: &str = "a21343ac-b420-471d-af35-3111a2d57cb7";
const INITIATOR_PACKAGE: &str = "c324b927-2c69-4d4b-a46a-607448310321";

const APPROVE: &str = "Approve access package assignment request";
const AUTO_APPROVE: &str = "Auto approve access package assignment request";
const ADMIN_ASSIGN: &str = "Administrator directly assigns user to access package";
const ADMIN_REMOVE: &str = "Administrator directly removes user access package assignment";

const VIEWS: &[&str] = &[
    "approval_trail",
    "approval_latency",
    "direct_admin_grants",
    "control_changes",
];

type Ts = DateTime<Utc>;
type Row = serde_json::Map<String, Value>;

// ---------------------------------------------------------------------------------------
// JSON helpers.
// ---------------------------------------------------------------------------------------

/// Text of a JSON value; JSON null and the string "null" (Graph sends both) are None.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s != "null" && !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn lower(v: &Value) -> String {
    text(v).unwrap_or_default().to_lowercase()
}

/// A Graph boolean (JSON true or the text "true", any case); None when absent.
fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn ts(s: &str) -> Ts {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn time(v: &Value) -> Option<Ts> {
    text(v).map(|s| ts(&s))
}

fn show(t: Ts) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON page")
}

fn write_json(path: &Path, doc: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(doc).expect("json")).expect("write");
}

/// The Graph pages under `export/dir` whose file name starts with `prefix`, in path order.
fn pages(export: &Path, dir: &str, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(export.join(dir))
        .into_iter()
        .map(|e| e.expect("walk").into_path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    out.sort();
    out
}

fn records(export: &Path, dir: &str, prefix: &str) -> Vec<Value> {
    pages(export, dir, prefix)
        .iter()
        .flat_map(|p| read_json(p)["value"].as_array().expect("value").clone())
        .collect()
}

fn policies(export: &Path) -> Vec<Value> {
    records(export, "entitlementManagement", "assignmentPolicies")
}
fn requests(export: &Path) -> Vec<Value> {
    records(export, "entitlementManagement", "assignmentRequests")
}
fn assignments(export: &Path) -> Vec<Value> {
    records(export, "entitlementManagement", "assignments")
}
fn packages(export: &Path) -> Vec<Value> {
    records(export, "entitlementManagement", "accessPackages")
}
fn audits(export: &Path) -> Vec<Value> {
    records(export, "auditLogs", "directoryAudits")
}

/// Edits every record of the matching pages in place; `edit` returns false to drop one.
fn edit_records(export: &Path, dir: &str, prefix: &str, mut edit: impl FnMut(&mut Value) -> bool) {
    for page in pages(export, dir, prefix) {
        let mut doc = read_json(&page);
        doc["value"]
            .as_array_mut()
            .expect("value")
            .retain_mut(|r| edit(r));
        write_json(&page, &doc);
    }
}

/// Appends records to the last matching page.
fn append_records(export: &Path, dir: &str, prefix: &str, new: Vec<Value>) {
    let page = pages(export, dir, prefix).pop().expect("a page");
    let mut doc = read_json(&page);
    doc["value"].as_array_mut().expect("value").extend(new);
    write_json(&page, &doc);
}

/// An editable copy of the sample tenant. Its diagnostic-settings archive repeats the audit
/// pages' events, so it is left out: the tests edit the pages.
fn export_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&sample_data(), dir.path());
    std::fs::remove_dir_all(dir.path().join("insights-logs-auditlogs")).expect("archive");
    dir
}

// ---------------------------------------------------------------------------------------
// Running the views.
// ---------------------------------------------------------------------------------------

fn queries_source() -> PathBuf {
    std::env::var_os("GOVLAKE_IT_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("queries"))
}

/// A folder with only this module's views (so other views being edited cannot break it).
fn my_queries() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for v in VIEWS {
        let from = queries_source().join(format!("{v}.sql"));
        if from.exists() {
            std::fs::copy(&from, dir.path().join(format!("{v}.sql"))).expect("copy");
        }
    }
    dir
}

fn ingest_ok(lake: &Path, export: &Path, observed_at: Option<&str>) {
    let mut extra = vec![];
    if let Some(t) = observed_at {
        extra = vec!["--observed-at", t];
    }
    let r = ingest(lake, &[export], &extra);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn lake_of(export: &Path) -> tempfile::TempDir {
    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), export, None);
    lake
}

fn query(lake: &Path, sql: &str) -> Vec<Row> {
    let q = my_queries();
    let r = run(govlake()
        .arg("--lake")
        .arg(lake)
        .arg("sql")
        .arg("--queries")
        .arg(q.path())
        .args(["-o", "json", "-c", sql]));
    assert_eq!(r.code, 0, "`{sql}`: {}", r.stderr);
    if r.stdout.trim().is_empty() {
        return vec![];
    }
    match serde_json::from_str::<Value>(&r.stdout).expect("JSON rows") {
        Value::Array(rows) => rows
            .into_iter()
            .map(|v| v.as_object().expect("row").clone())
            .collect(),
        other => panic!("not an array of rows: {other}"),
    }
}

fn cell(r: &Row, column: &str) -> Option<String> {
    text(r.get(column).unwrap_or(&Value::Null))
}

fn number(r: &Row, column: &str) -> Option<f64> {
    r.get(column).and_then(Value::as_f64)
}

// ---------------------------------------------------------------------------------------
// The oracle: audit events linked to requests, and the approval rule.
// ---------------------------------------------------------------------------------------

/// The link rule: request ids in targets of type AccessPackageAssignmentRequest, and in
/// additionalDetails RequestId.
fn linked_requests(event: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in event["targetResources"].as_array().into_iter().flatten() {
        // Graph's letter case of a target type is not guaranteed: compare without it.
        if lower(&t["type"]) == "accesspackageassignmentrequest" {
            out.extend(text(&t["id"]));
        }
    }
    for d in event["additionalDetails"].as_array().into_iter().flatten() {
        if text(&d["key"]).as_deref() == Some("RequestId") {
            out.extend(text(&d["value"]));
        }
    }
    out
}

fn detail(event: &Value, key: &str) -> Option<String> {
    event["additionalDetails"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| text(&d["key"]).is_some_and(|k| k.eq_ignore_ascii_case(key)))
        .and_then(|d| text(&d["value"]))
}

fn succeeded(event: &Value) -> bool {
    lower(&event["result"]) == "success"
}

fn activity(event: &Value) -> String {
    text(&event["activityDisplayName"]).unwrap_or_default()
}

fn actor(event: &Value) -> Option<String> {
    text(&event["initiatedBy"]["user"]["userPrincipalName"])
        .or_else(|| text(&event["initiatedBy"]["app"]["displayName"]))
}

fn events_by_request(audit: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in audit {
        for r in linked_requests(e) {
            out.entry(r).or_default().push(e.clone());
        }
    }
    out
}

fn granted(request: &Value) -> bool {
    matches!(
        lower(&request["state"]).as_str(),
        "delivered" | "partiallydelivered" | "delivering" | "scheduled"
    )
}

/// (stages_required, stages_approved, approval_missing) of a request judged by `policy`.
fn approval_status(request: &Value, policy: Option<&Value>, events: &[Value]) -> (i64, i64, bool) {
    let kind = lower(&request["requestType"]);
    let required = policy.is_some_and(|p| {
        let settings = &p["requestApprovalSettings"];
        match kind.as_str() {
            "useradd" | "onbehalfadd" => boolean(&settings["isApprovalRequiredForAdd"]),
            "userupdate" | "userextend" => boolean(&settings["isApprovalRequiredForUpdate"]),
            _ => None,
        }
        .unwrap_or(false)
    });
    let stages_required = if required {
        let n = policy
            .and_then(|p| p["requestApprovalSettings"]["stages"].as_array())
            .map_or(0, Vec::len) as i64;
        n.max(1)
    } else {
        0
    };
    let mut staged = BTreeSet::new();
    let mut unstaged = 0;
    let mut auto = false;
    for e in events.iter().filter(|e| succeeded(e)) {
        if activity(e) == AUTO_APPROVE {
            auto = true;
        }
        if activity(e) == APPROVE {
            match detail(e, "ApprovalStage").and_then(|s| s.trim().parse::<i64>().ok()) {
                Some(n) if (1..=stages_required).contains(&n) => {
                    staged.insert(n);
                }
                Some(_) => {}
                None => unstaged += 1,
            }
        }
    }
    let approved = staged.len() as i64 + unstaged;
    let missing = stages_required > 0 && granted(request) && !auto && approved < stages_required;
    (stages_required, approved, missing)
}

/// Every request of a single export: id → (stages_required, stages_approved, missing).
fn expected_approvals(export: &Path) -> BTreeMap<String, (i64, i64, bool)> {
    let by_id: BTreeMap<String, Value> = policies(export)
        .into_iter()
        .map(|p| (text(&p["id"]).expect("id"), p))
        .collect();
    let linked = events_by_request(&audits(export));
    requests(export)
        .iter()
        .map(|r| {
            let id = text(&r["id"]).expect("id");
            let policy = text(&r["assignment"]["assignmentPolicyId"]).and_then(|p| by_id.get(&p));
            let events = linked.get(&id).cloned().unwrap_or_default();
            (id, approval_status(r, policy, &events))
        })
        .collect()
}

fn view_approvals(lake: &Path) -> BTreeMap<String, (i64, i64, bool)> {
    query(
        lake,
        "select distinct request_id, stages_required, stages_approved, approval_missing \
         from approval_trail",
    )
    .iter()
    .map(|r| {
        (
            cell(r, "request_id").expect("request_id"),
            (
                r["stages_required"].as_i64().expect("stages_required"),
                r["stages_approved"].as_i64().expect("stages_approved"),
                r["approval_missing"].as_bool().expect("approval_missing"),
            ),
        )
    })
    .collect()
}

/// The view agrees with the oracle: first on the flagged requests (a column the view always
/// had), then on every request's stages required and approved.
fn assert_approvals(lake: &Path, expected: &BTreeMap<String, (i64, i64, bool)>) {
    let flagged: BTreeSet<String> = query(
        lake,
        "select distinct request_id from approval_trail where approval_missing",
    )
    .iter()
    .filter_map(|r| cell(r, "request_id"))
    .collect();
    assert_eq!(
        flagged,
        missing(expected),
        "requests flagged approval_missing"
    );
    assert_eq!(&view_approvals(lake), expected);
}

fn missing(m: &BTreeMap<String, (i64, i64, bool)>) -> BTreeSet<String> {
    m.iter()
        .filter(|(_, s)| s.2)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The delivered userAdd requests of a policy whose successful approvals are exactly one
/// event per stage, with those approval events.
fn approved_requests(export: &Path, policy: &str) -> Vec<(String, Vec<Value>)> {
    let linked = events_by_request(&audits(export));
    requests(export)
        .into_iter()
        .filter(|r| {
            text(&r["assignment"]["assignmentPolicyId"]).as_deref() == Some(policy)
                && lower(&r["requestType"]) == "useradd"
                && lower(&r["state"]) == "delivered"
        })
        .map(|r| {
            let id = text(&r["id"]).expect("id");
            let approvals = linked
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|e| activity(e) == APPROVE)
                .cloned()
                .collect();
            (id, approvals)
        })
        .collect()
}

fn audit_event(id: &str, at: &str, name: &str, by: &str, targets: Value, details: Value) -> Value {
    json!({
        "activityDateTime": at,
        "activityDisplayName": name,
        "additionalDetails": details,
        "category": "EntitlementManagement",
        "correlationId": format!("corr-{id}"),
        "id": id,
        "initiatedBy": {"app": null, "user": {
            "displayName": by, "id": format!("user-{by}"), "userPrincipalName": by}},
        "loggedByService": "Entitlement Management",
        "operationType": "",
        "result": "success",
        "resultReason": "",
        "targetResources": targets,
    })
}

/// A request like `base` with a new id, type, state and creation time.
fn request_like(base: &Value, id: &str, kind: &str, state: &str, created: &str) -> Value {
    let mut r = base.clone();
    r["id"] = json!(id);
    r["requestType"] = json!(kind);
    r["state"] = json!(state);
    r["status"] = json!(state);
    r["createdDateTime"] = json!(created);
    r["completedDateTime"] = json!(created);
    r
}

fn a_request_of(export: &Path, policy: &str, kind: &str) -> Value {
    requests(export)
        .into_iter()
        .find(|r| {
            text(&r["assignment"]["assignmentPolicyId"]).as_deref() == Some(policy)
                && lower(&r["requestType"]) == kind
        })
        .expect("a sample request")
}

// ---------------------------------------------------------------------------------------
// approval_trail
// ---------------------------------------------------------------------------------------

#[test]
fn the_sample_oracle_agrees_with_the_trail_and_flags_nothing() {
    let export = export_copy();
    let lake = lake_of(export.path());
    let expected = expected_approvals(export.path());
    assert_eq!(expected.len(), 190, "the sample's requests");
    assert!(
        missing(&expected).is_empty(),
        "the sample's grants are approved"
    );
    assert_approvals(lake.path(), &expected);
}

#[test]
fn each_audit_event_is_stored_with_every_request_it_names_once() {
    // The sample, plus an event naming two requests (a target and another RequestId), one
    // naming one request both ways, and one naming a request in a key of another case
    // (`requestid` is not the rule's `RequestId`).
    let export = export_copy();
    let request = |id: &str| json!({"id": id, "type": "AccessPackageAssignmentRequest", "modifiedProperties": []});
    append_records(
        export.path(),
        "auditLogs",
        "directoryAudits",
        vec![
            audit_event(
                "TEST_two_requests",
                "2026-09-12T10:00:00Z",
                APPROVE,
                "iris.holm@woodgrovebank.example",
                json!([request("TEST_request_a")]),
                json!([{"key": "RequestId", "value": "TEST_request_b"}]),
            ),
            audit_event(
                "TEST_named_twice",
                "2026-09-12T11:00:00Z",
                APPROVE,
                "iris.holm@woodgrovebank.example",
                json!([request("TEST_request_c")]),
                json!([{"key": "RequestId", "value": "TEST_request_c"}]),
            ),
            audit_event(
                "TEST_other_case",
                "2026-09-12T12:00:00Z",
                APPROVE,
                "iris.holm@woodgrovebank.example",
                json!([]),
                json!([{"key": "requestid", "value": "TEST_request_d"}]),
            ),
            // Two stages named (the greatest is stored with the link), one in a key of
            // another case (not the rule's `ApprovalStage`), and a justification that is a
            // spreadsheet formula (stored as it is).
            audit_event(
                "TEST_stages_named_twice",
                "2026-09-12T13:00:00Z",
                APPROVE,
                "iris.holm@woodgrovebank.example",
                json!([request("TEST_request_e")]),
                json!([
                    {"key": "ApprovalStage", "value": "1"},
                    {"key": "ApprovalStage", "value": "2"},
                    {"key": "approvalstage", "value": "9"},
                    {"key": "Justification", "value": "=HYPERLINK(\"x\")"}
                ]),
            ),
        ],
    );
    let expected: BTreeSet<(String, String)> = audits(export.path())
        .iter()
        .flat_map(|e| {
            let id = text(&e["id"]).expect("event id");
            linked_requests(e).into_iter().map(move |r| (id.clone(), r))
        })
        .collect();
    assert!(
        expected.len() > 600,
        "the sample's links: {}",
        expected.len()
    );
    for (event, request) in [
        ("TEST_two_requests", "TEST_request_a"),
        ("TEST_two_requests", "TEST_request_b"),
        ("TEST_named_twice", "TEST_request_c"),
    ] {
        assert!(expected.contains(&(event.into(), request.into())));
    }
    let lake = lake_of(export.path());
    let pairs = |sql: &str| -> Vec<(String, String)> {
        query(lake.path(), sql)
            .iter()
            .map(|r| {
                (
                    cell(r, "audit_event_id").expect("event"),
                    cell(r, "request_id").expect("request"),
                )
            })
            .collect()
    };
    let stored = pairs("select audit_event_id, request_id from audit_event_requests");
    assert_eq!(stored.len(), expected.len(), "one row per link");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), expected);
    // The same rule in SQL over the child tables (what a lake of format 1 is read through,
    // and what `govlake migrate` stores) gives the same links.
    let by_rule = pairs(&format!(
        "select audit_event_id, request_id from ({})",
        govlake::catalog::AUDIT_EVENT_REQUESTS_SQL
    ));
    assert_eq!(by_rule.into_iter().collect::<BTreeSet<_>>(), expected);

    // Each link carries its event's step columns: the event's own values, and for each
    // detail key (exact case) the greatest of the event's values.
    let events: BTreeMap<String, Value> = audits(export.path())
        .into_iter()
        .map(|e| (text(&e["id"]).expect("event id"), e))
        .collect();
    let greatest = |e: &Value, key: &str| -> Option<String> {
        e["additionalDetails"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| text(&d["key"]).as_deref() == Some(key))
            .filter_map(|d| text(&d["value"]))
            .max()
    };
    let rows = query(lake.path(), "select * from audit_event_requests");
    assert_eq!(rows.len(), expected.len());
    let mut staged = 0;
    for r in &rows {
        let id = cell(r, "audit_event_id").expect("event");
        let e = &events[&id];
        let user = &e["initiatedBy"]["user"];
        for (column, want) in [
            ("activity_display_name", text(&e["activityDisplayName"])),
            ("initiated_by_user_id", text(&user["id"])),
            (
                "initiated_by_user_user_principal_name",
                text(&user["userPrincipalName"]),
            ),
            (
                "initiated_by_app_display_name",
                text(&e["initiatedBy"]["app"]["displayName"]),
            ),
            ("approval_stage", greatest(e, "ApprovalStage")),
            ("justification", greatest(e, "Justification")),
            (
                "external_correlation_id",
                greatest(e, "ExternalCorrelationId"),
            ),
            ("escalation", greatest(e, "Escalation")),
        ] {
            assert_eq!(cell(r, column), want, "{id}: {column}");
        }
        assert_eq!(
            cell(r, "activity_date_time").map(|t| ts(&t)),
            time(&e["activityDateTime"]),
            "{id}"
        );
        assert_eq!(
            cell(r, "result").map(|t| t.to_lowercase()),
            text(&e["result"]).map(|t| t.to_lowercase()),
            "{id}"
        );
        staged += usize::from(cell(r, "approval_stage").is_some());
    }
    assert!(staged > 100, "the sample's staged approvals: {staged}");
    let two = rows
        .iter()
        .find(|r| cell(r, "audit_event_id").as_deref() == Some("TEST_stages_named_twice"))
        .expect("the event naming two stages");
    assert_eq!(cell(two, "approval_stage").as_deref(), Some("2"));
    assert_eq!(
        cell(two, "justification").as_deref(),
        Some("=HYPERLINK(\"x\")")
    );

    // The rules in SQL over the events' own tables (what a lake of format 1 or 2 is read
    // through, and what `govlake migrate` stores) give the same rows, every column.
    let every_row = |sql: &str| -> Vec<String> {
        let mut rows: Vec<String> = query(lake.path(), sql)
            .iter()
            .map(|r| serde_json::to_string(r).expect("row"))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        every_row("select * from audit_event_requests"),
        every_row(&format!(
            "select * from ({})",
            govlake::catalog::audit_event_requests_from_links(
                govlake::catalog::AUDIT_EVENT_REQUESTS_SQL
            )
        ))
    );
}

#[test]
fn target_types_in_another_letter_case_still_link_events_to_requests() {
    // The sample, with every audit target type lowercased and the RequestId details (the
    // link rule's fallback) removed: events link to requests by target type alone.
    let export = export_copy();
    let expected = expected_approvals(export.path());
    edit_records(export.path(), "auditLogs", "directoryAudits", |e| {
        for t in e["targetResources"].as_array_mut().into_iter().flatten() {
            if let Some(kind) = text(&t["type"]) {
                t["type"] = json!(kind.to_lowercase());
            }
        }
        if let Some(details) = e["additionalDetails"].as_array_mut() {
            details.retain(|d| text(&d["key"]).as_deref() != Some("RequestId"));
        }
        true
    });
    assert_eq!(
        expected_approvals(export.path()),
        expected,
        "the oracle links by type whatever its case"
    );
    let lake = lake_of(export.path());
    assert_approvals(lake.path(), &expected);
    // Admin grants keep their package and target from the events' typed targets.
    let grants = query(
        lake.path(),
        "select count(*) AS n from direct_admin_grants where access_package_id is null or target_object_id is null",
    );
    assert_eq!(number(&grants[0], "n"), Some(0.0));
    // The incompatibility is dated by its audit event, found by its (lowercased) targets.
    let declared: BTreeSet<String> = audits(export.path())
        .iter()
        .filter(|e| activity(e) == "Create incompatible access package" && succeeded(e))
        .filter_map(|e| time(&e["activityDateTime"]))
        .map(show)
        .collect();
    assert_eq!(declared.len(), 1, "{declared:?}");
    let seen: BTreeSet<String> = sql(
        lake.path(),
        "select distinct incompatibility_declared_at from sod_violations",
    )
    .iter()
    .map(|t| show(ts(t)))
    .collect();
    assert_eq!(seen, declared);
}

#[test]
fn a_two_stage_request_with_only_stage_one_approved_is_missing() {
    let export = export_copy();
    let (request, approvals) = approved_requests(export.path(), EXTERNAL_POLICY)
        .into_iter()
        .find(|(_, a)| a.len() == 2)
        .expect("a two-stage grant");
    let stage_two: Vec<String> = approvals
        .iter()
        .filter(|e| detail(e, "ApprovalStage").as_deref() == Some("2"))
        .map(|e| text(&e["id"]).expect("id"))
        .collect();
    assert_eq!(stage_two.len(), 1);
    edit_records(export.path(), "auditLogs", "directoryAudits", |e| {
        text(&e["id"]) != Some(stage_two[0].clone())
    });

    let expected = expected_approvals(export.path());
    assert_eq!(expected[&request], (2, 1, true), "the oracle sees the gap");
    assert_eq!(missing(&expected), BTreeSet::from([request.clone()]));
    let lake = lake_of(export.path());
    assert_approvals(lake.path(), &expected);
}

#[test]
fn a_failed_approval_approves_nothing() {
    let export = export_copy();
    let (request, approvals) = approved_requests(export.path(), MANAGER_POLICY)
        .into_iter()
        .find(|(_, a)| a.len() == 1)
        .expect("a one-stage grant");
    let event = text(&approvals[0]["id"]).expect("id");
    edit_records(export.path(), "auditLogs", "directoryAudits", |e| {
        if text(&e["id"]).as_deref() == Some(event.as_str()) {
            e["result"] = json!("Failure");
            e["resultReason"] = json!("Approver session expired");
        }
        true
    });

    let expected = expected_approvals(export.path());
    assert_eq!(expected[&request], (1, 0, true));
    assert_eq!(missing(&expected), BTreeSet::from([request.clone()]));
    let lake = lake_of(export.path());
    assert_approvals(lake.path(), &expected);
    // The failed event is still a step of the trail, marked, and approves nothing.
    let steps = query(
        lake.path(),
        &format!(
            "select step, step_result, self_approved from approval_trail \
             where request_id = '{request}' and step like 'approved%'"
        ),
    );
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(
        cell(&steps[0], "step").as_deref(),
        Some("approved (failure)")
    );
    assert_eq!(cell(&steps[0], "step_result").as_deref(), Some("failure"));
}

#[test]
fn update_and_extend_requests_need_the_update_approval() {
    let export = export_copy();
    // The policy now requires approval for updates and extensions.
    edit_records(
        export.path(),
        "entitlementManagement",
        "assignmentPolicies",
        |p| {
            if text(&p["id"]).as_deref() == Some(MANAGER_POLICY) {
                p["requestApprovalSettings"]["isApprovalRequiredForUpdate"] = json!(true);
            }
            true
        },
    );
    let base = a_request_of(export.path(), MANAGER_POLICY, "useradd");
    let cases = [
        // (id, type as Graph spells it, state, approved at stage 1?)
        (
            "10000000-0000-4000-8000-000000000001",
            "UserExtend",
            "Delivered",
            false,
        ),
        (
            "10000000-0000-4000-8000-000000000002",
            "userUpdate",
            "delivered",
            false,
        ),
        (
            "10000000-0000-4000-8000-000000000003",
            "userUpdate",
            "delivered",
            true,
        ),
        (
            "10000000-0000-4000-8000-000000000004",
            "userExtend",
            "denied",
            false,
        ),
        (
            "10000000-0000-4000-8000-000000000005",
            "adminUpdate",
            "delivered",
            false,
        ),
    ];
    let mut new_requests = vec![];
    let mut events = vec![];
    for (i, (id, kind, state, approved)) in cases.iter().enumerate() {
        let at = format!("2026-09-2{i}T10:00:00Z");
        new_requests.push(request_like(&base, id, kind, state, &at));
        let targets = json!([{"id": id, "type": "AccessPackageAssignmentRequest",
                              "displayName": null, "modifiedProperties": []}]);
        let submit = if kind.to_lowercase().contains("extend") {
            "User requests to extend access package assignment"
        } else {
            "Create access package assignment user update request"
        };
        events.push(audit_event(
            &format!("TEST_update_{i}_submit"),
            &at,
            submit,
            "someone@woodgrovebank.example",
            targets.clone(),
            json!([{"key": "RequestId", "value": id}]),
        ));
        if *approved {
            events.push(audit_event(
                &format!("TEST_update_{i}_approve"),
                &format!("2026-09-2{i}T12:00:00Z"),
                APPROVE,
                "manager@woodgrovebank.example",
                targets,
                json!([{"key": "ApprovalStage", "value": "1"}, {"key": "RequestId", "value": id}]),
            ));
        }
    }
    append_records(
        export.path(),
        "entitlementManagement/assignmentRequests",
        "assignmentRequests",
        new_requests,
    );
    append_records(export.path(), "auditLogs", "directoryAudits", events);

    let expected = expected_approvals(export.path());
    assert_eq!(
        missing(&expected),
        BTreeSet::from([
            "10000000-0000-4000-8000-000000000001".to_string(),
            "10000000-0000-4000-8000-000000000002".to_string(),
        ]),
        "the oracle flags the unapproved granted update and extension only"
    );
    let lake = lake_of(export.path());
    assert_approvals(lake.path(), &expected);
}

#[test]
fn an_administrator_removal_is_a_removed_step() {
    let export = export_copy();
    let grant = a_request_of(export.path(), STAFF_POLICY, "adminadd");
    let removal_id = "20000000-0000-4000-8000-000000000001";
    let at = "2026-09-25T08:00:00Z";
    let mut removal = request_like(&grant, removal_id, "AdminRemove", "Delivered", at);
    removal["justification"] = json!("Left the payments team");
    append_records(
        export.path(),
        "entitlementManagement/assignmentRequests",
        "assignmentRequests",
        vec![removal],
    );
    let package = grant["accessPackage"].clone();
    append_records(
        export.path(),
        "auditLogs",
        "directoryAudits",
        vec![audit_event(
            "TEST_admin_remove",
            at,
            ADMIN_REMOVE,
            "iris.holm@woodgrovebank.example",
            json!([
                {"id": removal_id, "type": "AccessPackageAssignmentRequest", "displayName": null, "modifiedProperties": []},
                {"id": package["id"], "type": "AccessPackage", "displayName": package["displayName"], "modifiedProperties": []},
                {"id": grant["assignment"]["target"]["objectId"], "type": "User", "displayName": null, "modifiedProperties": []}
            ]),
            json!([{"key": "Justification", "value": "Left the payments team"}]),
        )],
    );

    // The oracle: every removal event (by its activity name) linked to a captured request.
    let captured: BTreeSet<String> = requests(export.path())
        .iter()
        .map(|r| text(&r["id"]).expect("id"))
        .collect();
    let mut expected = BTreeSet::new();
    for e in audits(export.path()) {
        let name = activity(&e);
        if name == ADMIN_REMOVE
            || name == "Entitlement Management removes access package assignment request for user"
            || name.starts_with("Remove access package assignment")
        {
            for r in linked_requests(&e)
                .into_iter()
                .filter(|r| captured.contains(r))
            {
                expected.insert((r, show(time(&e["activityDateTime"]).expect("time"))));
            }
        }
    }
    assert_eq!(
        expected.len(),
        5,
        "four system removals and the administrator's"
    );
    assert!(expected.contains(&(removal_id.to_string(), show(ts(at)))));

    let lake = lake_of(export.path());
    let removed: BTreeSet<(String, String)> = query(
        lake.path(),
        "select request_id, step_time from approval_trail where step = 'removed'",
    )
    .iter()
    .map(|r| {
        (
            cell(r, "request_id").expect("request_id"),
            show(ts(&cell(r, "step_time").expect("step_time"))),
        )
    })
    .collect();
    assert_eq!(removed, expected);
    // A removal needs no approval.
    assert_eq!(view_approvals(lake.path())[removal_id], (0, 0, false));
}

// ---------------------------------------------------------------------------------------
// direct_admin_grants
// ---------------------------------------------------------------------------------------

#[test]
fn an_aged_out_admin_grant_is_still_found_from_its_audit_event() {
    let export = export_copy();
    // Graph deleted one completed adminAdd request (3 months after completion).
    let aged = a_request_of(export.path(), APPROVERS_POLICY, "adminadd");
    let aged_id = text(&aged["id"]).expect("id");
    edit_records(
        export.path(),
        "entitlementManagement/assignmentRequests",
        "assignmentRequests",
        |r| text(&r["id"]).as_deref() != Some(aged_id.as_str()),
    );
    // A failed direct assignment granted nothing; one naming no request is still a grant.
    let package = json!({"id": INITIATOR_PACKAGE, "type": "AccessPackage",
                         "displayName": "Vendor Payment - Initiator", "modifiedProperties": []});
    let user = json!({"id": "30000000-0000-4000-8000-0000000000aa", "type": "User",
                      "displayName": null, "modifiedProperties": []});
    let mut failed = audit_event(
        "TEST_admin_assign_failed",
        "2026-09-10T10:00:00Z",
        ADMIN_ASSIGN,
        "iris.holm@woodgrovebank.example",
        json!([{"id": "30000000-0000-4000-8000-000000000001", "type": "AccessPackageAssignmentRequest",
                "displayName": null, "modifiedProperties": []}, package.clone(), user.clone()]),
        json!([{"key": "Justification", "value": "Urgent"}]),
    );
    failed["result"] = json!("failure");
    let anonymous = audit_event(
        "TEST_admin_assign_no_request",
        "2026-09-11T10:00:00Z",
        ADMIN_ASSIGN,
        "paul.okonkwo@woodgrovebank.example",
        json!([package, user]),
        json!([{"key": "Justification", "value": "Break-glass"},
               {"key": "AssignmentId", "value": "30000000-0000-4000-9000-000000000002"}]),
    );
    append_records(
        export.path(),
        "auditLogs",
        "directoryAudits",
        vec![failed, anonymous],
    );

    // The oracle.
    let captured = requests(export.path());
    let captured_ids: BTreeSet<String> = captured
        .iter()
        .map(|r| text(&r["id"]).expect("id"))
        .collect();
    let mut expected = BTreeSet::new();
    for r in captured
        .iter()
        .filter(|r| lower(&r["requestType"]) == "adminadd")
    {
        expected.insert(
            [
                "assignment request".to_string(),
                text(&r["id"]).unwrap_or_default(),
                String::new(),
                text(&r["requestor"]["principalName"]).unwrap_or_default(),
                text(&r["accessPackage"]["id"]).unwrap_or_default(),
                text(&r["assignment"]["target"]["objectId"]).unwrap_or_default(),
                text(&r["justification"]).unwrap_or_default(),
                text(&r["assignment"]["id"]).unwrap_or_default(),
            ]
            .join("|"),
        );
    }
    for e in audits(export.path())
        .iter()
        .filter(|e| activity(e) == ADMIN_ASSIGN && succeeded(e))
    {
        let linked = linked_requests(e);
        if linked.iter().any(|r| captured_ids.contains(r)) {
            continue;
        }
        let target = |kind: &str| {
            e["targetResources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| text(&t["type"]).as_deref() == Some(kind))
                .and_then(|t| text(&t["id"]))
                .unwrap_or_default()
        };
        expected.insert(
            [
                "audit event".to_string(),
                linked.iter().next().cloned().unwrap_or_default(),
                text(&e["id"]).unwrap_or_default(),
                actor(e).unwrap_or_default(),
                target("AccessPackage"),
                target("User"),
                detail(e, "Justification").unwrap_or_default(),
                detail(e, "AssignmentId").unwrap_or_default(),
            ]
            .join("|"),
        );
    }
    assert_eq!(
        expected.len(),
        25,
        "23 captured adminAdd requests, the aged one, the anonymous one"
    );
    assert!(
        expected
            .iter()
            .any(|row| row.starts_with(&format!("audit event|{aged_id}|")))
    );

    let lake = lake_of(export.path());
    // First on the columns the view always had, then with where each row came from.
    let columns = [
        "request_id",
        "granted_by",
        "access_package_id",
        "target_object_id",
        "justification",
        "assignment_id",
    ];
    let grants: BTreeSet<String> = query(
        lake.path(),
        &format!("select {} from direct_admin_grants", columns.join(", ")),
    )
    .iter()
    .map(|r| {
        columns
            .iter()
            .map(|c| cell(r, c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|")
    })
    .collect();
    let expected_grants: BTreeSet<String> = expected
        .iter()
        .map(|row| {
            let f: Vec<&str> = row.split('|').collect();
            [f[1], f[3], f[4], f[5], f[6], f[7]].join("|")
        })
        .collect();
    assert_eq!(grants, expected_grants);
    let rows: BTreeSet<String> = query(
        lake.path(),
        "select source, request_id, audit_event_id, granted_by, access_package_id, \
         target_object_id, justification, assignment_id from direct_admin_grants",
    )
    .iter()
    .map(|r| {
        [
            "source",
            "request_id",
            "audit_event_id",
            "granted_by",
            "access_package_id",
            "target_object_id",
            "justification",
            "assignment_id",
        ]
        .iter()
        .map(|c| cell(r, c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|")
    })
    .collect();
    assert_eq!(rows, expected);
}

// ---------------------------------------------------------------------------------------
// approval_latency
// ---------------------------------------------------------------------------------------

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let pos = p * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

fn hours(from: Ts, to: Ts) -> f64 {
    (to - from).num_microseconds().expect("span") as f64 / 3.6e9
}

#[test]
fn approval_latency_measures_to_decision_and_to_completion() {
    let export = export_copy();
    // One request still waits (no decision, no completion); one lost its approval event
    // (completed, no decision); one denial was recorded as failed (it decides nothing).
    let base = a_request_of(export.path(), MANAGER_POLICY, "useradd");
    let mut pending = request_like(
        &base,
        "40000000-0000-4000-8000-000000000001",
        "userAdd",
        "pendingApproval",
        "2026-09-29T10:00:00Z",
    );
    pending["completedDateTime"] = Value::Null;
    append_records(
        export.path(),
        "entitlementManagement/assignmentRequests",
        "assignmentRequests",
        vec![pending],
    );
    let (lost, approvals) = approved_requests(export.path(), STAFF_POLICY)
        .into_iter()
        .find(|(_, a)| a.len() == 1)
        .expect("an approved request");
    let lost_event = text(&approvals[0]["id"]).expect("id");
    let denial = audits(export.path())
        .into_iter()
        .find(|e| activity(e) == "Deny access package assignment request")
        .and_then(|e| text(&e["id"]))
        .expect("a denial");
    edit_records(export.path(), "auditLogs", "directoryAudits", |e| {
        let id = text(&e["id"]).unwrap_or_default();
        if id == denial {
            e["result"] = json!("failure");
        }
        id != lost_event
    });
    assert!(!lost.is_empty());

    // The oracle, per package and quarter of creation.
    let linked = events_by_request(&audits(export.path()));
    #[derive(Default)]
    struct Group {
        requests: usize,
        to_decision: Vec<f64>,
        to_completion: Vec<f64>,
    }
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for r in requests(export.path()) {
        if !matches!(
            lower(&r["requestType"]).as_str(),
            "useradd" | "onbehalfadd" | "userupdate" | "userextend"
        ) {
            continue;
        }
        let created = time(&r["createdDateTime"]).expect("created");
        let quarter = format!("{}Q{}", created.year(), (created.month() - 1) / 3 + 1);
        let g = groups
            .entry((text(&r["accessPackage"]["id"]).expect("package"), quarter))
            .or_default();
        g.requests += 1;
        let id = text(&r["id"]).expect("id");
        let decided = linked
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|e| succeeded(e))
            .filter(|e| {
                let a = activity(e);
                a == APPROVE
                    || a == AUTO_APPROVE
                    || a == "Deny access package assignment request"
                    || a.contains("timed out")
            })
            .filter_map(|e| time(&e["activityDateTime"]))
            .min();
        if let Some(d) = decided {
            g.to_decision.push(hours(created, d));
        }
        if let Some(c) = time(&r["completedDateTime"]) {
            g.to_completion.push(hours(created, c));
        }
    }

    let lake = lake_of(export.path());
    let rows = query(lake.path(), "select * from approval_latency");
    assert_eq!(rows.len(), groups.len());
    let close = |view: Option<f64>, oracle: Option<f64>, what: &str| match (view, oracle) {
        (None, None) => {}
        (Some(v), Some(o)) => assert!((v - o).abs() < 0.051, "{what}: view {v}, oracle {o}"),
        other => panic!("{what}: {other:?}"),
    };
    for r in &rows {
        let key = (
            cell(r, "access_package_id").expect("package"),
            cell(r, "quarter").expect("quarter"),
        );
        let g = &groups[&key];
        let what = |c: &str| format!("{key:?} {c}");
        assert_eq!(
            number(r, "requests"),
            Some(g.requests as f64),
            "{}",
            what("requests")
        );
        assert_eq!(
            number(r, "decided"),
            Some(g.to_decision.len() as f64),
            "{}",
            what("decided")
        );
        assert_eq!(
            number(r, "completed"),
            Some(g.to_completion.len() as f64),
            "{}",
            what("completed")
        );
        for (column, hours, p, label) in [
            (
                "median_hours_to_decision",
                &g.to_decision,
                0.5,
                "median to decision",
            ),
            (
                "p90_hours_to_decision",
                &g.to_decision,
                0.9,
                "p90 to decision",
            ),
            (
                "max_hours_to_decision",
                &g.to_decision,
                1.0,
                "max to decision",
            ),
            (
                "median_hours",
                &g.to_completion,
                0.5,
                "median to completion",
            ),
            ("p90_hours", &g.to_completion, 0.9, "p90 to completion"),
            ("max_hours", &g.to_completion, 1.0, "max to completion"),
        ] {
            close(number(r, column), percentile(hours, p), &what(label));
        }
    }
    // The edits show: a request without a decision and one without completion.
    let total = |f: &dyn Fn(&Group) -> usize| groups.values().map(f).sum::<usize>();
    assert_eq!(total(&|g| g.requests), 163);
    assert_eq!(total(&|g| g.to_completion.len()), 162);
    assert_eq!(total(&|g| g.to_decision.len()), 160);
}

// ---------------------------------------------------------------------------------------
// control_changes
// ---------------------------------------------------------------------------------------

const FIRST: &str = "2026-10-01T06:00:00Z";
const SECOND: &str = "2026-10-15T06:00:00Z";

/// The settings control_changes compares, as (name, text, weaker-than-before rule inputs).
fn policy_settings(p: &Value) -> BTreeMap<&'static str, Option<String>> {
    let ras = &p["requestApprovalSettings"];
    let approval = boolean(&ras["isApprovalRequiredForAdd"]).unwrap_or(false)
        || boolean(&ras["isApprovalRequiredForUpdate"]).unwrap_or(false);
    let exp = &p["expiration"];
    let expiration = [text(&exp["type"]), text(&exp["duration"])]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    BTreeMap::from([
        (
            "approval required for add",
            boolean(&ras["isApprovalRequiredForAdd"]).map(|b| b.to_string()),
        ),
        (
            "approval required for update",
            boolean(&ras["isApprovalRequiredForUpdate"]).map(|b| b.to_string()),
        ),
        (
            "approval stages",
            // Compared only while approval is required (on both sides: see below).
            approval.then(|| ras["stages"].as_array().map_or(0, Vec::len).to_string()),
        ),
        (
            "requestor justification required",
            boolean(&ras["isRequestorJustificationRequired"]).map(|b| b.to_string()),
        ),
        ("expiration", Some(expiration).filter(|s| !s.is_empty())),
        (
            "reviews enabled",
            boolean(&p["reviewSettings"]["isEnabled"]).map(|b| b.to_string()),
        ),
        (
            "review timeout behaviour",
            text(&p["reviewSettings"]["expirationBehavior"]),
        ),
        (
            "self review",
            boolean(&p["reviewSettings"]["isSelfReview"]).map(|b| b.to_string()),
        ),
    ])
}

fn days(duration: &str) -> f64 {
    let (date, time) = duration
        .trim_start_matches('P')
        .split_once('T')
        .unwrap_or((duration.trim_start_matches('P'), ""));
    let unit = |part: &str, u: char| -> f64 {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
            } else if c == u {
                return number.parse().unwrap_or(0.0);
            } else {
                number.clear();
            }
        }
        0.0
    };
    unit(date, 'Y') * 365.0
        + unit(date, 'M') * 30.0
        + unit(date, 'W') * 7.0
        + unit(date, 'D')
        + unit(time, 'H') / 24.0
}

fn weaker(setting: &str, before: &Option<String>, after: &Option<String>) -> Option<bool> {
    let (b, a) = (before.as_deref()?, after.as_deref()?);
    match setting {
        "approval required for add"
        | "approval required for update"
        | "requestor justification required"
        | "reviews enabled" => Some(b == "true" && a == "false"),
        "self review" => Some(b == "false" && a == "true"),
        "approval stages" => Some(a.parse::<i64>().ok()? < b.parse::<i64>().ok()?),
        "expiration" => {
            let (bt, bd) = b.split_once(' ').unwrap_or((b, ""));
            let (at, ad) = a.split_once(' ').unwrap_or((a, ""));
            if at == "noExpiration" {
                Some(bt != "noExpiration")
            } else if bt == "noExpiration" {
                Some(false)
            } else if at == "afterDuration" && bt == "afterDuration" {
                Some(days(ad) > days(bd))
            } else {
                None
            }
        }
        "review timeout behaviour" => {
            let rank = |s: &str| match s {
                "removeAccess" => Some(3),
                "acceptAccessRecommendation" => Some(2),
                "keepAccess" => Some(1),
                _ => None,
            };
            Some(rank(a)? < rank(b)?)
        }
        _ => None,
    }
}

/// One expected control_changes row, as comparable text.
#[derive(Debug, Clone)]
struct Change {
    source: &'static str,
    object: String,
    setting: String,
    subject: Option<String>,
    before: Option<String>,
    after: Option<String>,
    weaker: Option<bool>,
    changed_at: Ts,
    changed_at_source: &'static str,
    changed_by: Option<String>,
    /// (object kind, package ids) that grants are counted for.
    grant_scope: Vec<String>,
    grants: Option<Vec<String>>,
}

impl Change {
    fn line(&self) -> String {
        format!(
            "{} {} {} {:?} {:?}->{:?} weaker={:?} at {} ({}) by {:?} grants {:?}",
            self.source,
            self.object,
            self.setting,
            self.subject,
            self.before,
            self.after,
            self.weaker,
            show(self.changed_at),
            self.changed_at_source,
            self.changed_by,
            self.grants
        )
    }
}

/// The scenario: a second export two weeks later in which approval was switched off on the
/// manager policy (by Mallory, per the audit log), reviews were turned off on the payments
/// staff policy (dated only by its modifiedDateTime), the approvers' expiry went from 180
/// to 365 days and the external policy lost its second stage (undated), and the payment
/// packages' incompatibility was deleted (by Carol); requests and an assignment arrive
/// in between.
fn second_export(first: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(first, dir.path());
    let export = dir.path();
    edit_records(export, "entitlementManagement", "assignmentPolicies", |p| {
        match text(&p["id"]).as_deref() {
            Some(MANAGER_POLICY) => {
                p["requestApprovalSettings"]["isApprovalRequiredForAdd"] = json!(false);
                p["requestApprovalSettings"]["stages"] = json!([]);
                p["modifiedDateTime"] = json!("2026-10-05T12:00:00Z");
            }
            Some(STAFF_POLICY) => {
                p["reviewSettings"]["isEnabled"] = json!(false);
                p["modifiedDateTime"] = json!("2026-10-08T08:00:00Z");
            }
            Some(APPROVERS_POLICY) => {
                p["expiration"]["duration"] = json!("P365D");
            }
            Some(EXTERNAL_POLICY) => {
                let first = p["requestApprovalSettings"]["stages"][0].clone();
                p["requestApprovalSettings"]["stages"] = json!([first]);
            }
            _ => {}
        }
        true
    });
    edit_records(export, "entitlementManagement", "accessPackages", |p| {
        if text(&p["id"]).as_deref() == Some(APPROVER_PACKAGE) {
            p["incompatibleAccessPackages"] = json!([]);
        }
        true
    });
    let base = a_request_of(export, MANAGER_POLICY, "useradd");
    let staff = a_request_of(export, STAFF_POLICY, "useradd");
    let new_requests = vec![
        // Before the switch (approval still required, none given): missing.
        request_like(
            &base,
            "50000000-0000-4000-8000-000000000001",
            "userAdd",
            "delivered",
            "2026-10-03T09:00:00Z",
        ),
        // After it: no approval needed, a grant while weaker.
        request_like(
            &base,
            "50000000-0000-4000-8000-000000000002",
            "userAdd",
            "delivered",
            "2026-10-06T09:00:00Z",
        ),
        // Denied: not a grant.
        request_like(
            &base,
            "50000000-0000-4000-8000-000000000003",
            "userAdd",
            "denied",
            "2026-10-07T09:00:00Z",
        ),
        // Payments staff (approved) after reviews went off and the incompatibility was deleted.
        request_like(
            &staff,
            "50000000-0000-4000-8000-000000000004",
            "userAdd",
            "delivered",
            "2026-10-10T09:00:00Z",
        ),
    ];
    let approved = "50000000-0000-4000-8000-000000000004";
    append_records(
        export,
        "entitlementManagement/assignmentRequests",
        "assignmentRequests",
        new_requests,
    );
    let mut assignment = assignments(export)
        .into_iter()
        .find(|a| text(&a["assignmentPolicy"]["id"]).as_deref() == Some(MANAGER_POLICY))
        .expect("an assignment");
    assignment["id"] = json!("50000000-0000-4000-a000-000000000001");
    assignment["schedule"]["startDateTime"] = json!("2026-10-07T10:00:00Z");
    append_records(
        export,
        "entitlementManagement/assignments",
        "assignments",
        vec![assignment],
    );
    append_records(
        export,
        "auditLogs",
        "directoryAudits",
        vec![
            audit_event(
                "TEST_policy_update",
                "2026-10-05T12:00:00Z",
                "Update access package assignment policy",
                "mallory@woodgrovebank.example",
                json!([{"id": MANAGER_POLICY, "type": "AccessPackageAssignmentPolicy",
                        "displayName": "Employees - manager approval",
                        "modifiedProperties": [{"displayName": "IsApprovalRequiredForAdd",
                                                "oldValue": "\"True\"", "newValue": "\"False\""}]}]),
                json!([]),
            ),
            audit_event(
                "TEST_incompatible_delete",
                "2026-10-09T12:00:00Z",
                "Delete incompatible access package",
                "carol@woodgrovebank.example",
                json!([{"id": APPROVER_PACKAGE, "type": "AccessPackage",
                        "displayName": "Vendor Payment - Approver", "modifiedProperties": []},
                       {"id": INITIATOR_PACKAGE, "type": "AccessPackage",
                        "displayName": "Vendor Payment - Initiator", "modifiedProperties": []}]),
                json!([]),
            ),
            audit_event(
                "TEST_staff_approval",
                "2026-10-10T11:00:00Z",
                APPROVE,
                "marcus.webb@woodgrovebank.example",
                json!([{"id": approved, "type": "AccessPackageAssignmentRequest",
                        "displayName": null, "modifiedProperties": []}]),
                json!([{"key": "ApprovalStage", "value": "1"}]),
            ),
        ],
    );
    dir
}

fn target_ids(e: &Value, kind: &str) -> Vec<String> {
    e["targetResources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| text(&t["type"]).is_some_and(|k| k.eq_ignore_ascii_case(kind)))
        .filter_map(|t| text(&t["id"]))
        .collect()
}

/// control_changes computed from the two exports.
fn expected_changes(first: &Path, second: &Path) -> (Vec<Change>, BTreeSet<String>) {
    let (t1, t2) = (ts(FIRST), ts(SECOND));
    let events: Vec<Value> = audits(second).into_iter().filter(succeeded).collect();
    let in_window = |e: &Value| time(&e["activityDateTime"]).is_some_and(|t| t > t1 && t <= t2);
    let mut explained: BTreeSet<String> = BTreeSet::new();
    let mut out = vec![];

    // Policies observed in both exports, setting by setting.
    let before: BTreeMap<String, Value> = policies(first)
        .into_iter()
        .map(|p| (text(&p["id"]).expect("id"), p))
        .collect();
    for p in policies(second) {
        let id = text(&p["id"]).expect("id");
        let Some(old) = before.get(&id) else { continue };
        let (b, a) = (policy_settings(old), policy_settings(&p));
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| {
                activity(e).ends_with(" access package assignment policy")
                    && in_window(e)
                    && target_ids(e, "AccessPackageAssignmentPolicy").contains(&id)
            })
            .collect();
        for (setting, after) in &a {
            let before = &b[setting];
            if before == after
                || (*setting == "approval stages" && (before.is_none() || after.is_none()))
            {
                continue;
            }
            explained.extend(mine.iter().filter_map(|e| text(&e["id"])));
            let modified = time(&p["modifiedDateTime"]).filter(|m| *m > t1 && *m <= t2);
            let (changed_at, source, by) = match mine
                .iter()
                .filter_map(|e| time(&e["activityDateTime"]))
                .max()
            {
                Some(t) => {
                    let actors: BTreeSet<String> = mine.iter().filter_map(|e| actor(e)).collect();
                    (
                        t,
                        "audit event",
                        Some(actors.into_iter().collect::<Vec<_>>().join("; ")),
                    )
                }
                None => match modified {
                    Some(m) => (m, "policy modifiedDateTime", None),
                    None => (t1, "observation window start", None),
                },
            };
            out.push(Change {
                source: "policy history",
                object: id.clone(),
                setting: setting.to_string(),
                subject: None,
                before: before.clone(),
                after: after.clone(),
                weaker: weaker(setting, before, after),
                changed_at,
                changed_at_source: source,
                changed_by: by,
                grant_scope: vec![format!("policy:{id}")],
                grants: None,
            });
        }
    }

    // Incompatible packages declared in one export and not the other.
    let pairs = |export: &Path| -> BTreeMap<(String, String), String> {
        let mut m = BTreeMap::new();
        for p in packages(export) {
            for i in p["incompatibleAccessPackages"]
                .as_array()
                .into_iter()
                .flatten()
            {
                m.insert(
                    (text(&p["id"]).expect("id"), text(&i["id"]).expect("id")),
                    text(&i["displayName"]).unwrap_or_default(),
                );
            }
        }
        m
    };
    let (p1, p2) = (pairs(first), pairs(second));
    let changed = p1
        .iter()
        .filter(|(k, _)| !p2.contains_key(*k))
        .map(|(k, n)| (k, n, true))
        .chain(
            p2.iter()
                .filter(|(k, _)| !p1.contains_key(*k))
                .map(|(k, n)| (k, n, false)),
        );
    for ((package, other), name, removed) in changed {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| {
                let pkgs = target_ids(e, "AccessPackage");
                activity(e).ends_with(" incompatible access package")
                    && in_window(e)
                    && pkgs.len() == 2
                    && ((pkgs[0] == *package && pkgs[1] == *other)
                        || (pkgs[0] == *other && pkgs[1] == *package))
            })
            .collect();
        explained.extend(mine.iter().filter_map(|e| text(&e["id"])));
        let (changed_at, source, by) = match mine
            .iter()
            .filter_map(|e| time(&e["activityDateTime"]))
            .max()
        {
            Some(t) => {
                let actors: BTreeSet<String> = mine.iter().filter_map(|e| actor(e)).collect();
                (
                    t,
                    "audit event",
                    Some(actors.into_iter().collect::<Vec<_>>().join("; ")),
                )
            }
            None => (t1, "observation window start", None),
        };
        out.push(Change {
            source: "incompatibility history",
            object: package.clone(),
            setting: "incompatible access package".into(),
            subject: Some(other.clone()),
            before: removed.then(|| name.clone()),
            after: (!removed).then(|| name.clone()),
            weaker: Some(removed),
            changed_at,
            changed_at_source: source,
            changed_by: by,
            grant_scope: vec![format!("package:{package}"), format!("package:{other}")],
            grants: None,
        });
    }

    // Grants while weaker (no later change of the same setting happens in this scenario's
    // history, so each weaker setting lasts to the end).
    let reqs = requests(second);
    let add_assignments: BTreeSet<String> = reqs
        .iter()
        .filter(|r| {
            matches!(
                lower(&r["requestType"]).as_str(),
                "useradd" | "adminadd" | "onbehalfadd" | "systemadd"
            )
        })
        .filter_map(|r| text(&r["assignment"]["id"]))
        .collect();
    let mut started: BTreeMap<String, (Ts, String, String)> = BTreeMap::new();
    for a in assignments(first).into_iter().chain(assignments(second)) {
        let id = text(&a["id"]).expect("id");
        let Some(start) = time(&a["schedule"]["startDateTime"]) else {
            continue;
        };
        let entry = started.entry(id).or_insert((
            start,
            text(&a["assignmentPolicy"]["id"]).unwrap_or_default(),
            text(&a["accessPackage"]["id"]).unwrap_or_default(),
        ));
        entry.0 = entry.0.min(start);
    }
    for c in out.iter_mut().filter(|c| c.weaker == Some(true)) {
        let in_scope = |policy: &str, package: &str| {
            c.grant_scope.contains(&format!("policy:{policy}"))
                || c.grant_scope.contains(&format!("package:{package}"))
        };
        let mut grants: Vec<(Ts, String)> = vec![];
        for r in &reqs {
            let kind = lower(&r["requestType"]);
            let add = matches!(
                kind.as_str(),
                "useradd" | "adminadd" | "onbehalfadd" | "systemadd"
            );
            let update = matches!(
                kind.as_str(),
                "userupdate" | "userextend" | "adminupdate" | "systemupdate"
            );
            let created = time(&r["createdDateTime"]).expect("created");
            if (add || update)
                && granted(r)
                && created >= c.changed_at
                && in_scope(
                    &text(&r["assignment"]["assignmentPolicyId"]).unwrap_or_default(),
                    &text(&r["accessPackage"]["id"]).unwrap_or_default(),
                )
                && (c.setting != "approval required for add" || add)
                && (c.setting != "approval required for update" || update)
            {
                grants.push((created, format!("request:{}", text(&r["id"]).expect("id"))));
            }
        }
        if c.setting != "approval required for update" {
            for (id, (start, policy, package)) in &started {
                if !add_assignments.contains(id)
                    && *start >= c.changed_at
                    && in_scope(policy, package)
                {
                    grants.push((*start, format!("assignment:{id}")));
                }
            }
        }
        grants.sort();
        c.grants = Some(grants.into_iter().map(|(_, g)| g).collect());
    }

    // Control events that explain no history row are rows of their own.
    let audit_only: BTreeSet<String> = events
        .iter()
        .filter(|e| {
            matches!(
                activity(e).as_str(),
                "Create access package assignment policy"
                    | "Update access package assignment policy"
                    | "Delete access package assignment policy"
                    | "Create incompatible access package"
                    | "Delete incompatible access package"
                    | "Create incompatible group"
                    | "Delete incompatible group"
            )
        })
        .filter_map(|e| text(&e["id"]))
        .filter(|id| !explained.contains(id))
        .collect();
    (out, audit_only)
}

#[test]
fn a_weakened_policy_is_a_control_change_with_the_grants_made_meanwhile() {
    let first = export_copy();
    let second = second_export(first.path());
    let lake = tempfile::tempdir().expect("tempdir");
    ingest_ok(lake.path(), first.path(), None);
    ingest_ok(lake.path(), second.path(), Some(SECOND));

    let (expected, audit_only) = expected_changes(first.path(), second.path());
    // The oracle sees the scenario: four policy settings and one incompatibility weakened.
    assert_eq!(expected.len(), 5, "{expected:#?}");
    assert!(expected.iter().all(|c| c.weaker == Some(true)));
    let mut expected: Vec<String> = expected.iter().map(Change::line).collect();
    expected.sort();

    let rows = query(lake.path(), "select * from control_changes");
    let mut history: Vec<String> = rows
        .iter()
        .filter(|r| cell(r, "change_source").as_deref() != Some("audit event"))
        .map(|r| {
            let source = match cell(r, "change_source").as_deref() {
                Some("policy history") => "policy history",
                Some("incompatibility history") => "incompatibility history",
                other => panic!("unexpected change_source {other:?}"),
            };
            let changed_at_source = match cell(r, "changed_at_source").as_deref() {
                Some("audit event") => "audit event",
                Some("policy modifiedDateTime") => "policy modifiedDateTime",
                Some("observation window start") => "observation window start",
                other => panic!("unexpected changed_at_source {other:?}"),
            };
            Change {
                source,
                object: cell(r, "object_id").expect("object_id"),
                setting: cell(r, "setting").expect("setting"),
                subject: cell(r, "subject_id"),
                before: cell(r, "before_value"),
                after: cell(r, "after_value"),
                weaker: r.get("weaker").and_then(Value::as_bool),
                changed_at: ts(&cell(r, "changed_at").expect("changed_at")),
                changed_at_source,
                changed_by: cell(r, "changed_by"),
                grant_scope: vec![],
                grants: r
                    .get("grants_while_weaker")
                    .and_then(Value::as_i64)
                    .map(|n| {
                        let list: Vec<String> = cell(r, "grants")
                            .map(|g| g.split(", ").map(str::to_string).collect())
                            .unwrap_or_default();
                        assert_eq!(list.len() as i64, n, "grants_while_weaker counts the list");
                        list
                    }),
            }
            .line()
        })
        .collect();
    history.sort();
    assert_eq!(history, expected);

    let listed: BTreeSet<String> = rows
        .iter()
        .filter(|r| cell(r, "change_source").as_deref() == Some("audit event"))
        .filter_map(|r| cell(r, "audit_event_id"))
        .collect();
    assert_eq!(
        listed, audit_only,
        "control events that explain no history row"
    );
    assert_eq!(
        audit_only.len(),
        1,
        "the sample's incompatibility, created before capture"
    );

    // approval_trail judges each request by the policy version in force when it was made:
    // the second version from its modifiedDateTime (2026-10-05T12:00) on.
    let v1: BTreeMap<String, Value> = policies(first.path())
        .into_iter()
        .map(|p| (text(&p["id"]).expect("id"), p))
        .collect();
    let v2: BTreeMap<String, Value> = policies(second.path())
        .into_iter()
        .map(|p| (text(&p["id"]).expect("id"), p))
        .collect();
    let linked = events_by_request(&audits(second.path()));
    let (t1, t2) = (ts(FIRST), ts(SECOND));
    let oracle: BTreeMap<String, (i64, i64, bool)> = requests(second.path())
        .iter()
        .map(|r| {
            let id = text(&r["id"]).expect("id");
            let policy_id = text(&r["assignment"]["assignmentPolicyId"]).unwrap_or_default();
            let created = time(&r["createdDateTime"]).expect("created");
            let policy = v2.get(&policy_id).map(|new| {
                let changed = new != &v1[&policy_id];
                let from = time(&new["modifiedDateTime"])
                    .filter(|m| changed && *m > t1 && *m < t2)
                    .unwrap_or(t2);
                if created >= from {
                    new
                } else {
                    &v1[&policy_id]
                }
            });
            let events = linked.get(&id).cloned().unwrap_or_default();
            (id, approval_status(r, policy, &events))
        })
        .collect();
    assert_eq!(
        missing(&oracle),
        BTreeSet::from(["50000000-0000-4000-8000-000000000001".to_string()])
    );
    assert_approvals(lake.path(), &oracle);
}

#[test]
fn the_sample_has_one_control_change_the_incompatibility_declared_before_capture() {
    let export = export_copy();
    let lake = lake_of(export.path());
    let rows = query(lake.path(), "select * from control_changes");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(cell(r, "change_source").as_deref(), Some("audit event"));
    assert_eq!(
        cell(r, "setting").as_deref(),
        Some("incompatible access package")
    );
    assert_eq!(cell(r, "object_id").as_deref(), Some(APPROVER_PACKAGE));
    assert_eq!(cell(r, "subject_id").as_deref(), Some(INITIATOR_PACKAGE));
    assert_eq!(
        cell(r, "changed_by").as_deref(),
        Some("iris.holm@woodgrovebank.example")
    );
    assert_eq!(r.get("weaker").and_then(Value::as_bool), Some(false));
}
