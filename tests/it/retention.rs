//! Retention: `govlake vacuum` deletes old files but keeps every table version an evidence
//! pack pinned, so the pack regenerates byte for byte; a version nobody pinned, once its
//! files are gone, is refused as "no longer available" instead of being read as whatever
//! is left.

use std::path::Path;

use crate::common::{govlake, ingest, run, sample_page};

/// A later export of the assignments holding only the first `keep` of page one.
fn later_assignments(lake: &Path, keep: usize, observed_at: &str) {
    let later = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/assignments/assignments-0001.json");
    doc["value"].as_array_mut().unwrap().truncate(keep);
    doc.as_object_mut().unwrap().remove("@odata.nextLink");
    std::fs::write(later.path().join("assignments.json"), doc.to_string()).unwrap();
    let r = ingest(lake, &[later.path()], &["--observed-at", observed_at]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn version(lake: &Path, table: &str) -> i64 {
    let loc =
        govlake::lake::LakeLocation::resolve(lake.to_str().unwrap(), Default::default()).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(govlake::lake::Lake::new(loc).version(table))
        .unwrap()
        .unwrap()
}

fn pack(lake: &Path, out: &Path, as_of: Option<&str>) -> serde_json::Value {
    let mut c = govlake();
    c.arg("--lake")
        .arg(lake)
        .args([
            "--format",
            "json",
            "pack",
            "--period",
            "2026Q3",
            "--unsigned",
            "--no-archive",
        ])
        .arg("--out")
        .arg(out);
    if let Some(pins) = as_of {
        c.args(["--as-of", pins]);
    }
    let r = run(&mut c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["summary"].clone()
}

#[test]
fn vacuum_keeps_pinned_versions_and_refuses_vanished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &[&crate::common::sample_data()], &[]).code, 0);
    let unpinned = version(&lake, "assignments");
    later_assignments(&lake, 8, "2026-10-08T06:00:00Z");
    let pinned = version(&lake, "assignments");
    assert!(
        pinned > unpinned,
        "the later snapshot rewrote the current table"
    );

    let first = pack(&lake, &dir.path().join("a"), None);
    assert_eq!(first["versions"]["assignments"], pinned);
    let pins: Vec<String> = first["versions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, v)| format!("{t}={v}"))
        .collect();

    // More history arrives, then an aggressive vacuum.
    later_assignments(&lake, 4, "2026-10-15T06:00:00Z");
    let r = run(govlake().arg("--lake").arg(&lake).args([
        "--format",
        "json",
        "vacuum",
        "--retain-hours",
        "0",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.json();
    assert!(
        report["summary"]["files_deleted"].as_u64().unwrap() > 0,
        "{report}"
    );
    let assignments = report["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "assignments")
        .unwrap()
        .clone();
    assert_eq!(assignments["pinned_versions"], serde_json::json!([pinned]));
    assert!(
        assignments["files_deleted"].as_u64().unwrap() > 0,
        "{assignments}"
    );

    // The pinned state still regenerates the same pack, byte for byte.
    let again = pack(&lake, &dir.path().join("b"), Some(&pins.join(",")));
    let manifest =
        |p: &str| std::fs::read_to_string(Path::new(p).join("manifest-sha256.txt")).unwrap();
    assert_eq!(
        manifest(first["dir"].as_str().unwrap()),
        manifest(again["dir"].as_str().unwrap()),
        "regenerated from the pins after vacuum"
    );

    // The version nobody pinned lost its files: refused by name, never read as it stands.
    let r = run(govlake().arg("--lake").arg(&lake).args([
        "sql",
        "--as-of",
        &format!("assignments={unpinned}"),
        "-c",
        "select count(*) from assignments",
    ]));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "Table `assignments` version {unpinned} is no longer available"
        )),
        "{}",
        r.stderr
    );
}
