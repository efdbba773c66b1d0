//! Retention: `govlake vacuum` deletes old files but keeps every table version an evidence
//! pack pinned, so the pack regenerates byte for byte; a version nobody pinned, once its
//! files are gone, is refused as "no longer available" instead of being read as whatever
//! is left. Vacuum is safe beside an ingest on every backend (RELIABILITY G.44): a file no
//! commit references yet is kept for an hour, and a retention under 7 days needs
//! `--allow-short-retention`.

use std::path::Path;
use std::process::Stdio;

use crate::backends::Backend;
use crate::common::{assert_same_dump, dump, govlake, ingest, run, sample_data, sample_page};

/// An export of the assignments alone, holding only the first `keep` of page one.
fn assignments_export(keep: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/assignments/assignments-0001.json");
    doc["value"].as_array_mut().unwrap().truncate(keep);
    doc.as_object_mut().unwrap().remove("@odata.nextLink");
    std::fs::write(dir.path().join("assignments.json"), doc.to_string()).unwrap();
    dir
}

/// A later export of the assignments holding only the first `keep` of page one.
fn later_assignments(lake: &Path, keep: usize, observed_at: &str) {
    let later = assignments_export(keep);
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
        "--allow-short-retention",
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

/// `vacuum --full --retain-hours 0 --allow-short-retention`: the most aggressive vacuum.
const AGGRESSIVE: [&str; 7] = [
    "--format",
    "json",
    "vacuum",
    "--full",
    "--retain-hours",
    "0",
    "--allow-short-retention",
];

#[test]
#[ignore = "needs Azurite and moto: tests/run.sh starts them and runs the ignored tests"]
fn vacuum_in_a_loop_beside_an_ingest_breaks_no_table_on_any_backend() {
    // The lake starts with an earlier, partial export of the assignments, so the sample's
    // ingest rewrites that current table and leaves files for vacuum to delete.
    let earlier = assignments_export(8);
    let earlier_args = ["--observed-at", "2026-09-24T06:00:00Z"];
    let clean = tempfile::tempdir().unwrap();
    assert_eq!(
        ingest(clean.path(), &[earlier.path()], &earlier_args).code,
        0
    );
    assert_eq!(ingest(clean.path(), &[&sample_data()], &[]).code, 0);
    let expected = dump(clean.path());
    // The backends run side by side, each on its own lake.
    std::thread::scope(|s| {
        for backend in Backend::all() {
            let (earlier, expected) = (earlier.path(), &expected);
            s.spawn(move || vacuum_beside_ingest(&backend, earlier, &earlier_args, expected));
        }
    });
}

/// Ingests the sample into a lake holding `earlier` while vacuums run back to back.
fn vacuum_beside_ingest(
    backend: &Backend,
    earlier: &Path,
    earlier_args: &[&str],
    expected: &[(String, Vec<String>)],
) {
    let (name, started) = (backend.name(), std::time::Instant::now());
    let lake = backend.new_lake("vacuum-beside");
    let r = lake.ingest(earlier, earlier_args);
    assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    let log = lake.scratch().join("ingest.log");
    // Many small commits: every one uploads files before its log entry.
    let mut ingest = lake
        .govlake()
        .args([
            "ingest",
            "--chunk-rows",
            "100",
            "--commit-rows",
            "100",
            "--from",
        ])
        .arg(sample_data())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (mut beside, mut deleted) = (0, 0);
    let mut vacuum = || {
        let r = run(lake.govlake().args(AGGRESSIVE));
        assert_eq!(r.code, 0, "{name}: vacuum: {}", r.stderr);
        deleted += r.json()["summary"]["files_deleted"].as_u64().unwrap();
    };
    let status = loop {
        vacuum();
        match ingest.try_wait().unwrap() {
            None => beside += 1,
            Some(status) => break status,
        }
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: ingest beside vacuum: {stderr}"
    );
    assert!(
        beside > 0,
        "{name}: no vacuum finished while the ingest ran"
    );

    // One more vacuum after the ingest; between them they deleted what the ingest's
    // rewrites removed, and every table still reads exactly what a clean ingest stores.
    vacuum();
    assert!(deleted > 0, "{name}: the vacuums deleted nothing");
    assert_same_dump(&lake.dump(), expected);

    // A rerun succeeds and stores nothing new.
    let r = lake.ingest(&sample_data(), &[]);
    assert_eq!(r.code, 0, "{name}: rerun: {}", r.stderr);
    for (table, c) in r.json()["summary"]["tables"].as_object().unwrap() {
        assert_eq!(
            c["fetched"], c["duplicates"],
            "{name}: rerun stored into `{table}`: {c}"
        );
    }
    eprintln!(
        "{name}: {beside} vacuums ran beside the ingest, {deleted} files deleted, {:.0?}",
        started.elapsed()
    );
}

#[test]
fn vacuum_below_seven_days_needs_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &[&sample_data()], &[]).code, 0);
    let vacuum = |extra: &[&str]| run(govlake().arg("--lake").arg(&lake).arg("vacuum").args(extra));
    let r = vacuum(&["--retain-hours", "167"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("below the safe minimum of 168 h")
            && r.stderr.contains("--allow-short-retention"),
        "names the minimum and the override: {}",
        r.stderr
    );
    // The default (7 days), an explicit 168 h, a dry run and the override are accepted.
    for ok in [
        &[][..],
        &["--retain-hours", "168"],
        &["--retain-hours", "0", "--dry-run"],
        &["--retain-hours", "0", "--allow-short-retention"],
    ] {
        let r = vacuum(ok);
        assert_eq!(r.code, 0, "{ok:?}: {}", r.stderr);
    }
}

#[test]
fn full_vacuum_keeps_unreferenced_files_younger_than_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &[&sample_data()], &[]).code, 0);
    // Two Parquet files no commit references: one a writer uploaded just now (about to
    // commit it), one left two hours ago by a writer that crashed.
    let table = lake.join("assignments");
    let data = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    let fresh = table.join("part-00000-fresh-upload.snappy.parquet");
    let stale = table.join("part-00000-crashed-writer.snappy.parquet");
    std::fs::copy(&data, &fresh).unwrap();
    std::fs::copy(&data, &stale).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    let vacuum = |extra: &[&str]| {
        let r = run(govlake()
            .arg("--lake")
            .arg(&lake)
            .args(["vacuum", "--retain-hours", "0", "--allow-short-retention"])
            .args(extra));
        assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
    };
    // Without --full, files no commit references are left alone.
    vacuum(&[]);
    assert!(fresh.exists() && stale.exists());
    vacuum(&["--full"]);
    assert!(
        fresh.exists(),
        "a file younger than an hour may be about to be committed"
    );
    assert!(!stale.exists(), "the crashed writer's file is deleted");
    let r = run(govlake().arg("--lake").arg(&lake).args([
        "sql",
        "-c",
        "select count(*) from assignments",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}
