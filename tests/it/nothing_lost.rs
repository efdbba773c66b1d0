//! Nothing lost, nothing closed by mistake: a partial export (a page missing, cut short or
//! out of its chain) never closes history that is still true, and a bad record costs only
//! itself — every good record around it is stored, every lost one is counted and
//! quarantined. Expected answers come from the sample's JSON, read here.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{copy_dir, ingest, sample_data, sample_page, sql};

const ASSIGNMENT_PAGES: [&str; 4] = [
    "entitlementManagement/assignments/assignments-0001.json",
    "entitlementManagement/assignments/assignments-0002.json",
    "entitlementManagement/assignments/assignments-0003.json",
    "entitlementManagement/assignments/assignments-0004.json",
];

/// Ids of a sample page's records.
fn page_ids(relative: &str) -> Vec<String> {
    sample_page(relative)["value"]
        .as_array()
        .expect("a page")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

fn sample_lake() -> tempfile::TempDir {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    lake
}

fn current_ids(lake: &Path, table: &str) -> BTreeSet<String> {
    sql(lake, &format!("select id from {table}"))
        .into_iter()
        .collect()
}

fn table_counts<'a>(s: &'a serde_json::Value, table: &str) -> &'a serde_json::Value {
    &s["summary"]["tables"][table]
}

/// Ingests `export` into `lake` as observed the day after the sample, checks the exit code
/// (`what` says which case failed) and returns the run's JSON output.
fn ingest_next_day(lake: &Path, export: &Path, code: i32, what: &str) -> serde_json::Value {
    let r = ingest(lake, &[export], &["--observed-at", "2026-10-08T06:00:00Z"]);
    assert_eq!(r.code, code, "{what}: {}", r.stdout);
    r.json()
}

#[test]
fn a_partial_assignment_snapshot_closes_nothing() {
    let lake = sample_lake();
    let all: BTreeSet<String> = ASSIGNMENT_PAGES.iter().flat_map(|p| page_ids(p)).collect();
    assert_eq!(current_ids(lake.path(), "assignments"), all);
    let sod_before = sql(lake.path(), "select count(*) from sod_violations");

    // (name, pages copied as (sample page, file name), page cut short)
    let cases: Vec<(&str, Vec<(usize, &str)>, Option<usize>)> = vec![
        ("one middle page", vec![(1, "assignments-0002.json")], None),
        (
            "the last page alone",
            vec![(3, "assignments-0004.json")],
            None,
        ),
        (
            "pages 2-4",
            vec![
                (1, "assignments-0002.json"),
                (2, "assignments-0003.json"),
                (3, "assignments-0004.json"),
            ],
            None,
        ),
        (
            "page 3 missing",
            vec![
                (0, "assignments-0001.json"),
                (1, "assignments-0002.json"),
                (3, "assignments-0004.json"),
            ],
            None,
        ),
        (
            "a middle page, renamed",
            vec![(1, "assignments.json")],
            None,
        ),
        (
            "every page, page 3 cut short",
            vec![
                (0, "assignments-0001.json"),
                (1, "assignments-0002.json"),
                (2, "assignments-0003.json"),
                (3, "assignments-0004.json"),
            ],
            Some(2),
        ),
    ];
    for (name, pages, cut) in cases {
        let export = tempfile::tempdir().unwrap();
        for (i, file) in &pages {
            let text = std::fs::read(sample_data().join(ASSIGNMENT_PAGES[*i])).unwrap();
            let text = if cut == Some(*i) {
                text[..text.len() * 2 / 3].to_vec()
            } else {
                text
            };
            std::fs::write(export.path().join(file), text).unwrap();
        }
        let s = ingest_next_day(
            lake.path(),
            export.path(),
            1,
            &format!("{name}: a coverage gap fails the run"),
        );
        assert_eq!(s["status"], "incomplete", "{name}");
        assert_eq!(table_counts(&s, "assignments")["closed"], 0, "{name}: {s}");
        assert!(
            s["summary"]["snapshot_gaps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["table"] == "assignments"),
            "{name}: the gap is named: {}",
            s["summary"]["snapshot_gaps"]
        );
        assert_eq!(current_ids(lake.path(), "assignments"), all, "{name}");
        assert_eq!(
            sql(lake.path(), "select count(*) from sod_violations"),
            sod_before,
            "{name}"
        );
    }

    // The text summary says why, and --allow-gaps lets a batch job go on (still closing nothing).
    let export = tempfile::tempdir().unwrap();
    std::fs::copy(
        sample_data().join(ASSIGNMENT_PAGES[1]),
        export.path().join("assignments-0002.json"),
    )
    .unwrap();
    let mut cmd = crate::common::govlake();
    cmd.arg("--lake")
        .arg(lake.path())
        .args(["ingest", "--observed-at", "2026-10-09T06:00:00Z", "--from"])
        .arg(export.path());
    let text = crate::common::run(&mut cmd);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("Coverage gap") && text.stdout.contains("assignments"),
        "{}",
        text.stdout
    );
    let r = ingest(
        lake.path(),
        &[export.path()],
        &["--observed-at", "2026-10-09T06:00:00Z", "--allow-gaps"],
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(current_ids(lake.path(), "assignments"), all);
}

#[test]
fn a_whole_chain_closes_exactly_what_left() {
    let lake = sample_lake();
    let export = tempfile::tempdir().unwrap();
    for p in ASSIGNMENT_PAGES {
        let dest = export.path().join(Path::new(p).file_name().unwrap());
        std::fs::copy(sample_data().join(p), dest).unwrap();
    }
    let gone = page_ids(ASSIGNMENT_PAGES[1])[7].clone();
    assert_eq!(
        crate::common::remove_records(export.path(), |r| r.contains(&gone)),
        1
    );
    let s = ingest_next_day(lake.path(), export.path(), 0, "one assignment gone");
    assert_eq!(table_counts(&s, "assignments")["closed"], 1, "{s}");
    let mut want: BTreeSet<String> = ASSIGNMENT_PAGES.iter().flat_map(|p| page_ids(p)).collect();
    want.remove(&gone);
    assert_eq!(current_ids(lake.path(), "assignments"), want);
}

#[test]
fn a_parent_whose_pages_are_partial_keeps_its_children_open() {
    let lake = sample_lake();
    let export = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), export.path());
    let decisions = export.path().join("accessReviews/decisions");
    // Instance a6117238 lost its second page; instance 564ce92e lost one decision for real.
    std::fs::remove_file(decisions.join("decisions-a6117238-0002.json")).unwrap();
    let gone = page_ids("accessReviews/decisions/decisions-564ce92e-0001.json")[0].clone();
    assert_eq!(
        crate::common::remove_records(&decisions, |r| r.contains(&gone)),
        1
    );
    let before = current_ids(lake.path(), "access_review_decisions");
    let s = ingest_next_day(lake.path(), export.path(), 1, "a page missing");
    assert_eq!(
        table_counts(&s, "access_review_decisions")["closed"],
        1,
        "{s}"
    );
    let gaps = s["summary"]["snapshot_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        gaps[0]["scope"].as_str().unwrap().starts_with("a6117238"),
        "{gaps:?}"
    );
    let mut want = before;
    want.remove(&gone);
    assert_eq!(current_ids(lake.path(), "access_review_decisions"), want);
}

/// Audit events of the sample as compact JSON lines.
fn audit_lines(n: usize) -> Vec<String> {
    sample_page("auditLogs/directoryAudits-0001.json")["value"]
        .as_array()
        .unwrap()
        .iter()
        .take(n)
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn a_bad_json_lines_line_costs_only_that_line() {
    let lines = audit_lines(10);
    // Line 2 is garbage, line 5 is not UTF-8, line 8 has a lone surrogate escape.
    let mut file: Vec<u8> = Vec::new();
    let mut good = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        match i + 1 {
            2 => file.extend_from_slice(b"<html>502 Bad Gateway</html>"),
            5 => {
                let mut bytes = l.clone().into_bytes();
                let at = l.find("\"activityDisplayName\":\"").unwrap() + 24;
                bytes[at] = 0xff;
                file.extend_from_slice(&bytes);
            }
            8 => file.extend_from_slice(
                l.replacen(
                    "\"activityDisplayName\":\"",
                    "\"activityDisplayName\":\"\\ud800",
                    1,
                )
                .as_bytes(),
            ),
            _ => {
                file.extend_from_slice(l.as_bytes());
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                good.insert(v["id"].as_str().unwrap().to_string());
            }
        }
        file.push(b'\n');
    }
    for name in ["directoryAudits.jsonl", "directoryAudits.json"] {
        let lake = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), &file).unwrap();
        let r = ingest(lake.path(), &[dir.path()], &[]);
        assert_eq!(r.code, 1, "{name}: {}", r.stdout);
        let s = r.json();
        let c = table_counts(&s, "audit_events");
        assert_eq!(c["fetched"], 10, "{name}: {c}");
        assert_eq!(c["stored"], 7, "{name}: {c}");
        assert_eq!(c["rejected"], 3, "{name}: {c}");
        assert_eq!(current_ids(lake.path(), "audit_events"), good, "{name}");
        let mut at = sql(lake.path(), "select location from _rejects");
        at.sort();
        assert_eq!(at.len(), 3, "{name}: {at:?}");
        for (loc, line) in at.iter().zip(["line 2", "line 5", "line 8"]) {
            assert!(loc.contains(line), "{name}: {loc} names {line}");
        }
    }
}

#[test]
fn a_bad_element_of_a_page_costs_only_that_element() {
    let mut page = sample_page("auditLogs/directoryAudits-0001.json");
    let records = page["value"].as_array_mut().unwrap();
    records.truncate(5);
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let text = page.to_string();
    // Record 2 gets a lone high surrogate in its display name.
    let at = text.find(&ids[1]).unwrap();
    // Keys are in alphabetical order: the display name comes before the id.
    let field = text[..at].rfind("\"activityDisplayName\":\"").unwrap() + 23;
    let text = format!("{}\\ud800{}", &text[..field], &text[field..]);
    let lake = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.json"), text).unwrap();
    let r = ingest(lake.path(), &[dir.path()], &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let s = r.json();
    let c = table_counts(&s, "audit_events");
    assert_eq!(
        (
            c["fetched"].as_u64(),
            c["stored"].as_u64(),
            c["rejected"].as_u64()
        ),
        (Some(5), Some(4), Some(1)),
        "{c}"
    );
    let want: BTreeSet<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(current_ids(lake.path(), "audit_events"), want);
    let reasons = sql(
        lake.path(),
        "select location || ' ' || reason from _rejects",
    );
    assert!(
        reasons[0].contains("record 2") && reasons[0].contains("not valid JSON"),
        "{reasons:?}"
    );
}

#[test]
fn empty_pages_and_windows_encodings() {
    let lake = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("catalogs.json"), b"").unwrap();
    std::fs::write(dir.path().join("accessPackages.json"), b" \r\n\t\n").unwrap();
    let r = ingest(lake.path(), &[dir.path()], &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let notes = r.json()["summary"]["reject_notes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes
            .iter()
            .all(|n| n["reason"].as_str().unwrap().contains("empty")),
        "{notes:?}"
    );

    // The sample's catalogs page as Windows PowerShell's Set-Content/Out-File write it.
    let text =
        std::fs::read_to_string(sample_data().join("entitlementManagement/catalogs-0001.json"))
            .unwrap();
    let want: BTreeSet<String> = page_ids("entitlementManagement/catalogs-0001.json")
        .into_iter()
        .collect();
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    for (name, bytes) in [("utf-8 with BOM", bom), ("UTF-16LE", utf16)] {
        let lake = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalogs.json"), bytes).unwrap();
        let r = ingest(lake.path(), &[dir.path()], &[]);
        assert_eq!(r.code, 0, "{name}: {}", r.stdout);
        assert_eq!(current_ids(lake.path(), "catalogs"), want, "{name}");
    }
}

#[test]
fn symlinks_are_followed_or_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let catalogs = sample_data().join("entitlementManagement/catalogs-0001.json");
    std::os::unix::fs::symlink(&catalogs, d.join("catalogs.json")).unwrap();
    std::os::unix::fs::symlink(sample_data().join("accessReviews"), d.join("reviews")).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere.json"), d.join("assignments-0001.json")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(d, d.join("sub/loop")).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[d], &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let want: BTreeSet<String> = page_ids("entitlementManagement/catalogs-0001.json")
        .into_iter()
        .collect();
    assert_eq!(current_ids(lake.path(), "catalogs"), want);
    let definitions: BTreeSet<String> = page_ids("accessReviews/definitions-0001.json")
        .into_iter()
        .collect();
    assert_eq!(
        current_ids(lake.path(), "access_review_definitions"),
        definitions
    );
    let rejects = sql(
        lake.path(),
        "select source || ': ' || reason from _rejects order by 1",
    );
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert!(
        rejects[0].contains("assignments-0001.json") && rejects[0].contains("No such file"),
        "{rejects:?}"
    );
    assert!(rejects[1].contains("loop"), "{rejects:?}");
}

#[test]
fn hostile_fields_are_rejects_with_bounded_reasons() {
    let mut page = sample_page("auditLogs/directoryAudits-0001.json");
    let records = page["value"].as_array_mut().unwrap();
    records.truncate(3);
    records[1]["targetResources"] = serde_json::json!("not a list");
    let bad_id = records[1]["id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("directoryAudits.json"), page.to_string()).unwrap();
    let huge = format!(
        r#"{{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#{}","value":[{{"id":"x"}}]}}"#,
        "x".repeat(300_000)
    );
    std::fs::write(dir.path().join("other.json"), huge).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[dir.path()], &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.len() < 20_000,
        "the summary stays small: {} bytes",
        r.stdout.len()
    );
    assert!(
        r.stderr.len() < 20_000,
        "the log stays small: {} bytes",
        r.stderr.len()
    );
    let rejects = sql(
        lake.path(),
        "select record_id || ' ' || reason from _rejects where entity = 'audit_events'",
    );
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert!(
        rejects[0].starts_with(&bad_id) && rejects[0].contains("targetResources"),
        "{rejects:?}"
    );
    assert_eq!(count_where(lake.path(), "audit_events", "true"), 2);
    let longest = sql(lake.path(), "select max(length(reason)) from _rejects");
    assert!(longest[0].parse::<usize>().unwrap() <= 2200, "{longest:?}");
}

fn count_where(lake: &Path, table: &str, filter: &str) -> usize {
    sql(
        lake,
        &format!("select count(*) from {table} where {filter}"),
    )[0]
    .parse()
    .unwrap()
}

#[test]
fn a_page_file_that_fails_early_keeps_its_scope_open() {
    let lake = sample_lake();
    let before = current_ids(lake.path(), "access_review_decisions");
    let page1 = "decisions-a6117238-0001.json";
    let text = std::fs::read(sample_data().join("accessReviews/decisions").join(page1)).unwrap();
    // Cut inside its first record (its @odata.context is read), or empty (only the name says
    // what it held): either way instance a6117238's page 2 alone must not close page 1's.
    let cut_at = text.iter().position(|&b| b == b'[').unwrap() + 40;
    for (name, content) in [
        ("cut in record 1", text[..cut_at].to_vec()),
        ("empty", vec![]),
    ] {
        let export = tempfile::tempdir().unwrap();
        copy_dir(&sample_data(), export.path());
        let decisions = export.path().join("accessReviews/decisions");
        std::fs::write(decisions.join(page1), content).unwrap();
        let s = ingest_next_day(lake.path(), export.path(), 1, name);
        assert_eq!(
            table_counts(&s, "access_review_decisions")["closed"],
            0,
            "{name}: {s}"
        );
        assert_eq!(
            current_ids(lake.path(), "access_review_decisions"),
            before,
            "{name}"
        );
    }
}

#[test]
fn a_stage_gone_from_its_policy_closes_that_stage_only() {
    // Approval stages come inside their policy's record: each policy read is a whole
    // snapshot of its stages, an empty list too.
    const POLICIES: &str = "entitlementManagement/assignmentPolicies-0001.json";
    let lake = sample_lake();
    let mut page = sample_page(POLICIES);
    let policies = page["value"].as_array_mut().expect("a page");
    let stages = |p: &serde_json::Value| {
        p["requestApprovalSettings"]["stages"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before: usize = policies.iter().map(stages).sum();
    let cut = policies
        .iter()
        .position(|p| stages(p) >= 2)
        .expect("a policy with two stages");
    policies[cut]["requestApprovalSettings"]["stages"]
        .as_array_mut()
        .expect("stages")
        .pop();
    let emptied = policies
        .iter_mut()
        .enumerate()
        .find(|(i, p)| *i != cut && stages(p) >= 1)
        .map(|(_, p)| p)
        .expect("another policy with a stage");
    let emptied_stages = stages(emptied);
    emptied["requestApprovalSettings"]["stages"] = serde_json::json!([]);
    // Expected from the edited JSON: every (policy, stage number) still listed.
    let want: BTreeSet<String> = policies
        .iter()
        .flat_map(|p| {
            let id = p["id"].as_str().expect("id").to_string();
            (1..=stages(p)).map(move |n| format!("{id}|{n}"))
        })
        .collect();
    assert_eq!(want.len(), before - 1 - emptied_stages);
    let export = tempfile::tempdir().unwrap();
    std::fs::write(
        export.path().join("assignmentPolicies-0001.json"),
        page.to_string(),
    )
    .unwrap();

    let s = ingest_next_day(lake.path(), export.path(), 0, "stages gone");
    assert_eq!(
        table_counts(&s, "policy_approval_stages")["closed"],
        1 + emptied_stages as u64,
        "{s}"
    );
    let now: BTreeSet<String> = sql(
        lake.path(),
        "select policy_id, stage_number from policy_approval_stages",
    )
    .into_iter()
    .collect();
    assert_eq!(now, want);
}
