//! Upgrades (issue 19): the lake's format version is checked by every command, a lake from
//! a newer govlake is refused and never written, `govlake migrate` brings the lakes older
//! releases wrote (kept as fixtures under tests/fixtures/lake-format-N) to this format
//! and then they answer exactly like a fresh ingest of the same inputs, a migration killed
//! midway converges, and `govlake rebuild` gives the tables a fresh ingest gives.

use std::path::{Path, PathBuf};

use crate::common::*;

/// The second observation of the sample tenant (a week later) the fixtures were made from.
fn observation_2() -> PathBuf {
    root().join("tests/fixtures/observation-2")
}

/// The sample tenant, then its second observation, ingested by this govlake.
fn two_observations(lake: &Path) {
    for input in [sample_data(), observation_2()] {
        let r = ingest(lake, &[&input], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

/// `govlake --lake LAKE ARGS...`
fn govlake_at(lake: &Path, args: &[&str]) -> Run {
    run(govlake().arg("--lake").arg(lake).args(args))
}

/// Every file of the lake with its size and modification time: a command that writes
/// anything changes this.
fn files_of(lake: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(lake)
        .into_iter()
        .map(Result::unwrap)
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.path().strip_prefix(lake).unwrap().display().to_string(),
                if m.is_dir() { 0 } else { m.len() },
                m.modified().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The lake's format version as `govlake migrate --dry-run --format json` reports it.
fn format_of(lake: &Path) -> i64 {
    let r = govlake_at(lake, &["--format", "json", "migrate", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["summary"]["from"].as_i64().unwrap()
}

/// The parameter-free views, from `sql --list`.
fn views(lake: &Path) -> Vec<String> {
    let r = govlake_at(lake, &["sql", "--list", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = r.json()["summary"].as_array().unwrap().clone();
    let names: Vec<String> = list
        .iter()
        .filter(|i| i["kind"] == "view")
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// Every view's rows on both lakes are the same.
fn assert_same_views(a: &Path, b: &Path) {
    for view in views(a) {
        let q = format!("select * from {view}");
        let (ra, rb) = (sql(a, &q), sql(b, &q));
        let (mut sa, mut sb) = (ra.clone(), rb.clone());
        sa.sort();
        sb.sort();
        assert_eq!(sa, sb, "view `{view}` differs");
    }
}

#[test]
fn every_fixture_lake_migrates_and_answers_like_a_fresh_ingest() {
    let fresh = tempfile::tempdir().unwrap();
    two_observations(fresh.path());
    let current = format_of(fresh.path());
    let fixtures: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("lake-format-")
        })
        .collect();
    assert!(
        fixtures.len() >= 3,
        "the fixtures of formats 0, 1 and 2 are kept: {fixtures:?}"
    );
    for fixture in fixtures {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = name.trim_start_matches("lake-format-").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        copy_dir(&fixture, &lake);
        assert_eq!(format_of(&lake), version, "{name}");
        if version < current {
            // Older: readable as it is, but nothing writes into it before `migrate`.
            let before = files_of(&lake);
            let r = ingest(&lake, &[&observation_2()], &[]);
            assert_eq!(r.code, 2, "{name}: {}", r.stderr);
            assert!(
                r.stderr.contains("govlake") && r.stderr.contains("migrate"),
                "{}",
                r.stderr
            );
            assert!(
                r.stderr.contains(&format!("format {version}")),
                "{}",
                r.stderr
            );
            let r = govlake_at(&lake, &["sql", "-c", "select count(*) from assignments"]);
            assert_eq!(r.code, 0, "{name}: {}", r.stderr);
            let r = govlake_at(&lake, &["migrate", "--dry-run"]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            assert!(
                r.stdout.contains(&format!("{version} → {}", version + 1)),
                "{}",
                r.stdout
            );
            assert_eq!(
                files_of(&lake),
                before,
                "{name}: a refused ingest or a dry run wrote"
            );
        }
        // A lake of format 1 (before `audit_event_requests`) or 2 (before it stored the
        // events' step columns) answers every view as a fresh ingest does before it is
        // migrated too.
        if version == 1 || version == 2 {
            assert_same_views(&lake, fresh.path());
        }
        let r = govlake_at(&lake, &["--format", "json", "migrate"]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let summary = &r.json()["summary"];
        assert_eq!(summary["to"], current);
        if version < current {
            assert_eq!(summary["changed"], true);
        }
        if version == 0 {
            // Step 0 → 1 rebuilds the typed tables from `_raw`.
            let replay = &summary["rebuild"]["replay"];
            assert_eq!(replay["rejected"], 0, "{name}: {summary}");
            assert_eq!(replay["unverified"], 0, "{name}: {summary}");
        }
        assert_eq!(format_of(&lake), current, "{name}");
        let r = govlake_at(&lake, &["migrate"]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("already in format"), "{}", r.stdout);

        // The upgraded lake holds what a fresh ingest of the same inputs holds, and every
        // view answers the same.
        assert_same_lake(&lake, fresh.path());
        assert_same_views(&lake, fresh.path());

        // Its row hashes are today's: observing the same export again stores nothing.
        let r = ingest(&lake, &[&observation_2()], &[]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let tables = r.json()["summary"]["tables"].as_object().unwrap().clone();
        for (table, counts) in tables {
            assert_eq!(counts["stored"], 0, "{name}: `{table}` stored rows again");
            assert_eq!(counts["closed"], 0, "{name}: `{table}` closed rows");
        }
    }
}

#[test]
fn a_lake_from_a_newer_govlake_is_refused_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    two_observations(&lake);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let loc = govlake::lake::LakeLocation::resolve(lake.to_str().unwrap(), Default::default())
            .unwrap();
        govlake::lake::format::record(&govlake::lake::Lake::new(loc), 99, "written by the future")
            .await
            .unwrap();
    });
    let before = files_of(&lake);
    let sample = sample_data();
    let out = dir.path().join("pack");
    let reports = dir.path().join("reports");
    let commands: Vec<Vec<&str>> = vec![
        vec!["sql", "-c", "select 1"],
        vec!["tables"],
        vec!["ingest", "--from", sample.to_str().unwrap()],
        vec![
            "report",
            "--package",
            "Vendor Payment - Initiator",
            "--period",
            "2026Q3",
            "--out",
            reports.to_str().unwrap(),
        ],
        vec![
            "pack",
            "--period",
            "2026Q3",
            "--unsigned",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["vacuum"],
        vec!["migrate"],
        vec!["migrate", "--dry-run"],
        vec!["rebuild"],
    ];
    for args in commands {
        let r = govlake_at(&lake, &args);
        assert_eq!(r.code, 2, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("format 99") && r.stderr.contains("Upgrade govlake"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert_eq!(
        files_of(&lake),
        before,
        "a refused command wrote into the lake"
    );
    assert!(
        !out.exists() && !reports.exists(),
        "a refused command wrote its output"
    );
}

#[test]
fn a_migration_killed_midway_ends_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh");
    two_observations(&fresh);
    let current = format_of(&fresh);
    // Format 0: killed in its step, or in the rebuild between tables. Format 1: killed
    // before the links are stored, once the empty table is created, or once the links'
    // commit is in the log but the step is not yet recorded.
    // Format 2: killed before the links are stored again with their step columns, or once
    // that commit is in the log but the step is not yet recorded.
    let cases: [(i64, &[&str]); 3] = [
        (0, &["migrate_step:1", "rebuild_table:1", "rebuild_table:9"]),
        (1, &["migrate_step:1", "after_commit:1", "after_commit:2"]),
        (2, &["migrate_step:1", "after_commit:1"]),
    ];
    for (version, points) in cases {
        let fixture = root().join(format!("tests/fixtures/lake-format-{version}"));
        let whole = dir.path().join(format!("whole-{version}"));
        copy_dir(&fixture, &whole);
        // Damaged first, so a migration that skipped (part of) its rebuild would show.
        if version == 0 {
            damage(&whole);
        }
        let r = govlake_at(&whole, &["migrate"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        for point in points {
            let lake = dir
                .path()
                .join(format!("{version}-{}", point.replace(':', "-")));
            copy_dir(&fixture, &lake);
            if version == 0 {
                damage(&lake);
            }
            let r = run(govlake()
                .env("GOVLAKE_FAILPOINT", point)
                .arg("--lake")
                .arg(&lake)
                .arg("migrate"));
            assert_ne!(
                r.code, 0,
                "{version} {point}: the failpoint did not fire: {}",
                r.stderr
            );
            assert!(
                r.stderr.contains("aborting"),
                "{version} {point}: {}",
                r.stderr
            );
            // Killed before its step's end, the migration recorded nothing of that step.
            assert_eq!(format_of(&lake), version, "{version} {point}");
            if version >= 1 {
                // Still read through the link rule, whatever the table holds by then.
                assert_same_views(&lake, &fresh);
            }
            let r = govlake_at(&lake, &["migrate"]);
            assert_eq!(r.code, 0, "{version} {point}: {}", r.stderr);
            assert_eq!(format_of(&lake), current, "{version} {point}");
            assert_same_lake(&lake, &whole);
        }
        assert_same_lake(&whole, &fresh);
    }
}

/// Damages the lake the way a wrong mapping would: every assignment version without its
/// `status` (the row hashes stay those of the full rows), no audit events, no current
/// review decisions. Returns the damaged version of `assignments_history`. (A rebuild
/// re-maps versions; their validity intervals come from the histories, which `_raw` alone
/// cannot give: it keeps each distinct version once.)
fn damage(lake: &Path) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let loc = govlake::lake::LakeLocation::resolve(lake.to_str().unwrap(), Default::default())
            .unwrap();
        let l = govlake::lake::Lake::new(loc);
        let spec = |t: &str| govlake::catalog::entity(t).unwrap();
        let meta = Default::default();
        let assignments = spec("assignments").versioned().unwrap();
        let mut v = 0;
        for table in [assignments.current, assignments.history] {
            v = l
                .overwrite_from_sql(
                    &table,
                    &[table.name.as_str()],
                    &format!(
                        "select * replace (cast(null as varchar) as status) from {}",
                        table.name
                    ),
                    &meta,
                )
                .await
                .unwrap();
        }
        let events = spec("audit_events").append_schema().unwrap();
        l.overwrite_from_sql(
            &events,
            &["audit_events"],
            "select * from audit_events where false",
            &meta,
        )
        .await
        .unwrap();
        let decisions = spec("access_review_decisions").versioned().unwrap().current;
        l.overwrite_from_sql(
            &decisions,
            &["access_review_decisions"],
            "select * from access_review_decisions where false",
            &meta,
        )
        .await
        .unwrap();
        v
    })
}

#[test]
fn rebuild_gives_the_tables_a_fresh_ingest_gives() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, fresh) = (dir.path().join("lake"), dir.path().join("fresh"));
    two_observations(&lake);
    two_observations(&fresh);
    assert_same_lake(&lake, &fresh);

    let damaged_version = damage(&lake);
    let without_status = |l: &Path| {
        sql(
            l,
            "select count(*) from assignments_history where status is null",
        )[0]
        .clone()
    };
    // Expected from the exports: one version per assignment of the first observation, plus
    // one per assignment the second observation changed (every one has a status).
    let by_id = |doc: serde_json::Value| -> std::collections::BTreeMap<String, String> {
        doc["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["id"].as_str().unwrap().to_string(), a.to_string()))
            .collect()
    };
    let mut first = std::collections::BTreeMap::new();
    for page in 1..=4 {
        first.extend(by_id(sample_page(&format!(
            "entitlementManagement/assignments/assignments-{page:04}.json"
        ))));
    }
    let second = by_id(
        serde_json::from_str(
            &std::fs::read_to_string(observation_2().join("assignments.json")).unwrap(),
        )
        .unwrap(),
    );
    let changed = second
        .iter()
        .filter(|(id, json)| first.get(*id).is_some_and(|j| j != *json))
        .count();
    assert_eq!(changed, 1, "observation-2 changes one assignment");
    let versions = count(&fresh, "assignments_history");
    assert_eq!(versions, first.len() + changed);
    assert_eq!(without_status(&fresh), "0");
    assert_eq!(without_status(&lake), versions.to_string());
    assert_eq!(count(&lake, "audit_events"), 0);

    // A name that is no table is refused, with the closest one.
    let r = govlake_at(&lake, &["rebuild", "--table", "asignments"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("did you mean `assignments`"),
        "{}",
        r.stderr
    );

    // One table (with its history): the others stay as they are.
    let r = govlake_at(&lake, &["rebuild", "--table", "assignments"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(without_status(&lake), "0");
    assert_eq!(count(&lake, "audit_events"), 0);

    // A table the request links come from brings the stored links with it.
    // What `rebuild --table TABLE` replaced, as its JSON summary lists it.
    let rebuild_only = |table: &str| -> Vec<String> {
        let r = govlake_at(&lake, &["--format", "json", "rebuild", "--table", table]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json()["summary"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[0].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        rebuild_only("audit_event_additional_details"),
        ["audit_event_additional_details", "audit_event_requests"]
    );
    // So do the events, whose columns the links store with them (format 3).
    assert_eq!(
        rebuild_only("audit_events"),
        ["audit_events", "audit_event_requests"]
    );
    assert!(count(&lake, "audit_events") > 0);

    let r = govlake_at(&lake, &["--format", "json", "rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let replay = &r.json()["summary"]["replay"];
    // The two observations (the audit events came with them).
    assert_eq!(replay["observations"], 2, "{replay}");
    assert_eq!(replay["unverified"], 0);
    assert_same_lake(&lake, &fresh);
    assert_same_views(&lake, &fresh);

    // The damaged version is still there for time travel (and for packs pinned to it).
    let r = govlake_at(
        &lake,
        &[
            "sql",
            "-c",
            "select count(*) as n from assignments_history where status is null",
            "-o",
            "csv",
            "--as-of",
            &format!("assignments_history={damaged_version}"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, format!("n\n{versions}\n"));
}

#[test]
fn a_pack_made_before_a_rebuild_still_verifies_and_regenerates_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let pack = super::pack::demo_pack(dir.path());
    let lake = dir.path().join("lake");
    let versions = super::pack::pinned_versions(&pack);
    let regenerate = |out: &str| {
        let again = dir.path().join(out);
        let r = govlake_at(
            &lake,
            &[
                "pack",
                "--period",
                "2026Q3",
                "--key",
                dir.path().join("pack.key").to_str().unwrap(),
                "--as-of",
                &versions.join(","),
                "--sample",
                "approval_trail:25:7",
                "--out",
                again.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let (a, b) = (super::pack::contents(&pack), super::pack::contents(&again));
        assert_eq!(a.len(), b.len());
        for ((pa, ba), (pb, bb)) in a.iter().zip(&b) {
            assert_eq!(pa, pb);
            assert!(ba == bb, "{pa} differs in {out}");
        }
    };
    // Damaged after the pack: the pinned versions still give the same bytes (a pack that
    // read the current tables would not: statuses and audit events are gone).
    damage(&lake);
    regenerate("after-damage");
    let r = govlake_at(&lake, &["rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key = dir.path().join("pack.pub");
    let r = run(govlake()
        .arg("verify")
        .arg(&pack)
        .arg("--public-key")
        .arg(&key));
    assert_eq!(r.code, 0, "{}", r.stdout);
    regenerate("after-rebuild");
}

#[test]
fn a_rebuild_that_would_lose_objects_replaces_nothing_and_migrate_keeps_the_tables() {
    // A member of two groups: `_raw` keeps the member's JSON once (it does not name the
    // group), so one of the two memberships cannot be replayed from it.
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    copy_dir(&sample_data(), &export);
    let mut page = sample_page("groups/PAY-Initiators-members-0001.json");
    let context = page["@odata.context"].as_str().unwrap().replace(
        "4d098322-4d91-4330-a337-4dd3c73d9196",
        "0a0a0a0a-0000-4000-8000-000000000001",
    );
    page["@odata.context"] = context.into();
    let member = page["value"][0].clone();
    page["value"] = serde_json::json!([member]);
    std::fs::write(
        export.join("groups/PAY-Approvers-members-0001.json"),
        page.to_string(),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let r = ingest(&lake, &[&export], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(count(&lake, "incompatible_group_members"), 12);

    let before = files_of(&lake);
    let r = govlake_at(&lake, &["rebuild"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("would lose")
            && r.stderr
                .contains("1 in `incompatible_group_members_history`")
            && r.stderr.contains("beb21809-1d95-4c1c-a52a-8ebe5c69218f"),
        "{}",
        r.stderr
    );
    assert_eq!(files_of(&lake), before, "a refused rebuild wrote");

    // As a lake from before format versions, it still migrates: the rebuild is skipped
    // with the reason, and the tables keep every row.
    std::fs::remove_dir_all(lake.join("_govlake")).unwrap();
    assert_eq!(format_of(&lake), 0);
    let r = govlake_at(&lake, &["--format", "json", "migrate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.json()["summary"];
    assert!(
        summary["rebuild_skipped"]
            .as_str()
            .is_some_and(|s| s.contains("would lose")),
        "{summary}"
    );
    assert_eq!(format_of(&lake), govlake::lake::format::FORMAT_VERSION);
    assert_eq!(count(&lake, "incompatible_group_members"), 12);
    // The later step stored the audit events' request links all the same.
    let links = sql(&lake, "select count(*) from audit_event_requests");
    assert!(links[0].parse::<usize>().unwrap() > 600, "{links:?}");
}
