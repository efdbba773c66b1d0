//! Ingest: the sample tenant, exactly-once reruns, crash recovery, lenient parsing of the
//! published Graph payloads, and every kind of bad input.

use std::path::Path;

use crate::common::*;

fn assert_reconciles(summary: &serde_json::Value) {
    for (table, c) in summary["summary"]["tables"].as_object().expect("tables") {
        let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{table}.{k}"));
        assert_eq!(
            n("fetched"),
            n("stored") + n("duplicates") + n("rejected"),
            "{table} does not reconcile: {c}"
        );
    }
}

fn table<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &summary["summary"]["tables"][name]
}

#[test]
fn sample_tenant_lands_in_every_table_and_reconciles() {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let s = r.json();
    assert_eq!(s["status"], "ok");
    assert_reconciles(&s);
    assert_eq!(
        s["summary"]["observed_at"], "2026-10-01T06:00:00Z",
        "the export marker sets the snapshot time"
    );
    for t in [
        "catalogs",
        "access_packages",
        "incompatible_access_packages",
        "assignment_policies",
        "policy_approval_stages",
        "assignments",
        "assignment_requests",
        "audit_events",
        "access_review_decisions",
        "connected_organizations",
        "connected_organization_sponsors",
        "access_review_instances",
        "access_review_definitions",
        "audit_event_target_resources",
        "incompatible_group_members",
        "assignment_request_callouts",
    ] {
        assert!(
            table(&s, t)["stored"].as_u64().unwrap_or(0) > 0,
            "{t} is empty: {}",
            table(&s, t)
        );
    }
    // The archive repeats Graph's audit events: stored once, the rest counted as duplicates.
    assert!(table(&s, "audit_events")["duplicates"].as_u64().unwrap() > 0);

    // The story, as SQL.
    let pkgs = sql(
        lake.path(),
        "select display_name from access_packages order by display_name",
    );
    assert_eq!(
        pkgs,
        [
            "Financial Analyst - Standard",
            "Vendor Payment - Approver",
            "Vendor Payment - Initiator"
        ]
    );
    let incompatible = sql(
        lake.path(),
        "select p.display_name, i.incompatible_access_package_display_name from incompatible_access_packages i join access_packages p on p.id = i.access_package_id",
    );
    assert_eq!(
        incompatible,
        ["Vendor Payment - Approver|Vendor Payment - Initiator"]
    );
    let dual = sql(
        lake.path(),
        "select count(distinct a.target_object_id) from assignments a join assignments b on a.target_object_id = b.target_object_id \
         join incompatible_access_packages i on i.access_package_id = a.access_package_id and i.incompatible_access_package_id = b.access_package_id \
         where a.state = 'delivered' and b.state = 'delivered'",
    );
    assert_eq!(dual, ["11"], "eleven people hold both payment packages");
    let stages = sql(
        lake.path(),
        "select s.stage_number, s.primary_approver_types from policy_approval_stages s join assignment_policies p on p.id = s.policy_id \
         where p.display_name like 'External auditors%' order by s.stage_number",
    );
    assert_eq!(stages, ["1|internalSponsors", "2|singleUser"]);
    let expiry = sql(
        lake.path(),
        "select expiration_duration from assignment_policies where display_name like 'External auditors%'",
    );
    assert_eq!(expiry, ["P90D"]);
    let outcomes = sql(
        lake.path(),
        "select state, count(*) from assignment_requests where request_type = 'userAdd' group by state order by state",
    );
    assert!(
        outcomes.iter().any(|r| r.starts_with("denied|")),
        "{outcomes:?}"
    );
    let expired_delivered = sql(
        lake.path(),
        "select count(*) from assignments where state = 'delivered' and schedule_expiration_end_date_time < timestamp '2026-10-01T00:00:00Z'",
    );
    assert_eq!(expired_delivered, ["1"]);
    let timestamps = sql(
        lake.path(),
        "select arrow_typeof(schedule_start_date_time) from assignments limit 1",
    );
    assert_eq!(timestamps, ["Timestamp(µs, \"UTC\")"]);
    // Every request step is linked to its request in targetResources.
    let unlinked = sql(
        lake.path(),
        "select count(*) from audit_events e where e.activity_display_name like '%access package assignment request%' and not exists \
         (select 1 from audit_event_target_resources t where t.audit_event_id = e.id and t.type = 'AccessPackageAssignmentRequest')",
    );
    assert_eq!(unlinked, ["0"]);
    // Hostile text is stored verbatim (escaping is the reports' job).
    let hostile = sql(
        lake.path(),
        "select count(*) from assignment_requests where justification like '%<script>%'",
    );
    assert_ne!(hostile, ["0"]);
}

#[test]
fn ingesting_the_same_input_twice_changes_nothing() {
    let lake = tempfile::tempdir().unwrap();
    let first = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = dump(lake.path());
    // Again with the dedupe keys spilled to disk: still nothing stored twice.
    let second = ingest(
        lake.path(),
        &[&sample_data()],
        &["--dedupe-keys-in-memory", "50"],
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let s = second.json();
    assert_reconciles(&s);
    for (t, c) in s["summary"]["tables"].as_object().unwrap() {
        assert_eq!(c["stored"], 0, "{t} stored rows again: {c}");
        assert_eq!(c["closed"], 0, "{t} closed rows: {c}");
    }
    assert_eq!(before, dump(lake.path()));
}

#[test]
fn file_names_do_not_matter_when_the_context_is_there() {
    let renamed = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in walkdir::WalkDir::new(sample_data()).sort_by_file_name() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if !e.file_type().is_file() || name == "PT1H.json" || !name.ends_with(".json") {
            continue;
        }
        n += 1;
        let dest = if name == "_export.json" {
            renamed.path().join(name)
        } else {
            renamed.path().join(format!("download-{n:04}.json"))
        };
        std::fs::copy(e.path(), dest).unwrap();
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = ingest(a.path(), &[renamed.path()], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The same files under their original names (archive left out on both sides).
    let original = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), original.path());
    std::fs::remove_dir_all(original.path().join("insights-logs-auditlogs")).unwrap();
    let r = ingest(b.path(), &[original.path()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_lake(a.path(), b.path());
}

/// Every file of the sample tenant compressed (Zstandard or gzip, in turn, names kept with
/// `.zst` / `.gz` added: the export marker and the diagnostic-settings archive too) lands the
/// same lake, at the same observation time, as the plain files; a compressed file that is
/// damaged is rejected by name; a missing page of a compressed page family is a gap.
#[test]
fn compressed_input_files_land_the_same_lake_as_plain_ones() {
    let packed = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), packed.path());
    let mut n = 0;
    for e in walkdir::WalkDir::new(packed.path()).sort_by_file_name() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if !e.file_type().is_file() || !name.ends_with(".json") {
            continue;
        }
        n += 1;
        let plain = std::fs::read(e.path()).unwrap();
        let (dest, bytes) = if n % 2 == 0 {
            (
                format!("{name}.zst"),
                zstd::stream::encode_all(&plain[..], 3).unwrap(),
            )
        } else {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &plain).unwrap();
            (format!("{name}.gz"), gz.finish().unwrap())
        };
        std::fs::write(e.path().with_file_name(dest), bytes).unwrap();
        std::fs::remove_file(e.path()).unwrap();
    }
    assert!(n > 20, "{n} files compressed");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = ingest(a.path(), &[packed.path()], &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let plain = ingest(b.path(), &[&sample_data()], &[]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_same_lake(a.path(), b.path());
    assert_eq!(
        r.json()["summary"]["records"],
        plain.json()["summary"]["records"]
    );
    assert_eq!(
        r.json()["summary"]["files"],
        plain.json()["summary"]["files"]
    );
    assert_eq!(
        r.json()["summary"]["observed_at"],
        plain.json()["summary"]["observed_at"]
    );

    // A damaged compressed file is rejected by name; the others still land.
    let damaged = packed.path().join("damaged-assignments.json.zst");
    std::fs::write(&damaged, b"not zstd at all").unwrap();
    let c = tempfile::tempdir().unwrap();
    let r = ingest(c.path(), &[packed.path()], &[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("damaged-assignments.json.zst"),
        "{}",
        r.stdout
    );
    std::fs::remove_file(&damaged).unwrap();

    // Page 2 of the assignments gone: the snapshot is not read whole, nothing is closed.
    let page2 = walkdir::WalkDir::new(packed.path())
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.to_string_lossy().contains("assignments-0002.json."))
        .expect("assignments page 2");
    std::fs::remove_file(&page2).unwrap();
    let d = tempfile::tempdir().unwrap();
    let r = ingest(d.path(), &[packed.path()], &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let gaps = r.json()["summary"]["snapshot_gaps"].to_string();
    assert!(gaps.contains("assignments"), "{gaps}");
}

#[test]
fn a_later_snapshot_closes_what_disappeared_and_keeps_history() {
    let lake = tempfile::tempdir().unwrap();
    assert_eq!(ingest(lake.path(), &[&sample_data()], &[]).code, 0);
    // A later export in which one assignment is gone and one changed state.
    let later = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/assignments/assignments-0001.json");
    let values = doc["value"].as_array_mut().unwrap();
    let gone = values.remove(0)["id"].as_str().unwrap().to_string();
    values[0]["state"] = "expired".into();
    let changed = values[0]["id"].as_str().unwrap().to_string();
    values.truncate(5);
    doc.as_object_mut().unwrap().remove("@odata.nextLink");
    std::fs::write(later.path().join("assignments.json"), doc.to_string()).unwrap();
    let r = ingest(
        lake.path(),
        &[later.path()],
        &["--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.json();
    assert_eq!(
        table(&s, "assignments")["stored"],
        1,
        "one changed version: {s}"
    );
    assert!(table(&s, "assignments")["closed"].as_u64().unwrap() > 1);
    assert_eq!(
        sql(
            lake.path(),
            &format!("select count(*) from assignments where id = '{gone}'")
        ),
        ["0"]
    );
    assert_eq!(
        sql(
            lake.path(),
            &format!(
                "select cast(valid_from as varchar), cast(valid_to as varchar) from assignments_history where id = '{gone}'"
            )
        ),
        ["2026-10-01T06:00:00Z|2026-10-08T06:00:00Z"]
    );
    assert_eq!(
        sql(
            lake.path(),
            &format!(
                "select state from assignments_history where id = '{changed}' order by valid_from"
            )
        ),
        ["delivered", "expired"]
    );
    // An older export after a newer one would rewrite history: refused.
    let older = sample_data().join("entitlementManagement/assignments");
    let r = ingest(
        lake.path(),
        &[&older],
        &["--observed-at", "2026-09-01T00:00:00Z"],
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("in time order"), "{}", r.stderr);
}

/// A tenant written by `govlake generate` (kept while the folder lives).
fn generated_tenant(users: u32, seed: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("t");
    let generated = run(govlake()
        .args([
            "generate",
            "--users",
            &users.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&input));
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    (data, input)
}

/// New versions of snapshot entities are committed with the append chunks when a run holds
/// many (small chunks here), not only when the run ends: the lake is the same as one
/// ingest that commits them all at its end, and the summary counts entities, not their
/// history tables.
#[test]
fn versions_committed_in_chunks_give_the_same_lake() {
    let (_data, input) = generated_tenant(400, 5);

    let whole = tempfile::tempdir().unwrap();
    let r = ingest(whole.path(), &[&input], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let chunked = tempfile::tempdir().unwrap();
    let r = ingest(chunked.path(), &[&input], &["--chunk-rows", "100"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = r.json();
    assert_reconciles(&summary);
    let tables = summary["summary"]["tables"].as_object().unwrap();
    assert!(
        tables.keys().all(|t| !t.ends_with("_history")),
        "{:?}",
        tables.keys()
    );
    // Many history commits, not one: the versions went out with the chunks.
    let commits = std::fs::read_dir(
        chunked
            .path()
            .join("assignment_requests_history/_delta_log"),
    )
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".json")
    })
    .count();
    assert!(commits > 5, "{commits} commits of the requests' history");
    assert_same_lake(chunked.path(), whole.path());
}

/// Append-only rows written over many chunks are committed once `--commit-rows` top-level
/// rows are written, one file per partition and commit: the lake is the one a commit per
/// chunk gives, in fewer commits and files.
#[test]
fn appends_committed_every_commit_rows_give_the_same_lake_in_fewer_files() {
    let (_data, input) = generated_tenant(400, 5);
    let ingest_with = |commit_rows: &str| {
        let lake = tempfile::tempdir().unwrap();
        let r = ingest(
            lake.path(),
            &[&input],
            &[
                "--chunk-rows",
                "100",
                "--commit-rows",
                commit_rows,
                // Files as written, not compacted.
                "--compact-past-small-files",
                "1000000",
                "--compact-past-small-files-in-a-partition",
                "1000000",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let summary = r.json();
        assert_reconciles(&summary);
        (lake, summary)
    };
    let (per_chunk, _) = ingest_with("100");
    let (grouped, summary) = ingest_with("1000");

    // Data files, not the log's checkpoints (also Parquet).
    let data_files = |lake: &Path| {
        walkdir::WalkDir::new(lake.join("audit_events"))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            .filter(|e| !e.path().components().any(|c| c.as_os_str() == "_delta_log"))
            .count()
    };
    let commits = |lake: &Path| {
        std::fs::read_dir(lake.join("audit_events/_delta_log"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".json")
            })
            .count()
    };
    // Every commit but the last holds at least 1,000 top-level rows (raw records; audit
    // events are among them), and the table's creation is one more.
    let raw = table(&summary, "_raw")["stored"].as_u64().unwrap() as usize;
    let events = table(&summary, "audit_events")["stored"].as_u64().unwrap() as usize;
    assert!(events > 1000, "too few audit events to group: {events}");
    assert!(
        commits(grouped.path()) <= raw / 1000 + 2,
        "{} commits of {raw} raw records at 1,000 a commit",
        commits(grouped.path())
    );
    assert!(
        commits(grouped.path()) < commits(per_chunk.path()),
        "grouped {} commits, per chunk {}",
        commits(grouped.path()),
        commits(per_chunk.path())
    );
    assert!(
        data_files(grouped.path()) < data_files(per_chunk.path()),
        "grouped {} files, per chunk {}",
        data_files(grouped.path()),
        data_files(per_chunk.path())
    );
    assert_same_lake(grouped.path(), per_chunk.path());
}

#[test]
fn kill_9_mid_ingest_then_rerun_equals_one_clean_run() {
    let (_data, input) = generated_tenant(1500, 3);

    let clean = tempfile::tempdir().unwrap();
    let r = ingest(clean.path(), &[&input], &["--chunk-rows", "1000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Two crashes at different points (the second one mid-rerun), then a clean finish.
    let crashed = tempfile::tempdir().unwrap();
    let log = crashed.path().join("audit_events/_delta_log");
    for commits in [4, 9] {
        let mut lake = govlake();
        lake.arg("--lake").arg(crashed.path());
        let mut child = crate::common::spawn_ingest(lake, &input);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let seen = std::fs::read_dir(&log).map(|d| d.count()).unwrap_or(0);
            if seen >= commits {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "ingest finished before it could be killed"
            );
            assert!(std::time::Instant::now() < deadline, "no commits appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let partial = count(crashed.path(), "audit_events");
        assert!(
            partial > 0 && partial < count(clean.path(), "audit_events"),
            "killed mid-ingest: {partial} rows"
        );
    }

    // The rerun dedupes against what the crashes stored with its keys spilled to disk
    // (a few hundred in memory), as a lake of tens of millions of records would.
    let r = ingest(
        crashed.path(),
        &[&input],
        &["--chunk-rows", "1000", "--dedupe-keys-in-memory", "300"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_reconciles(&r.json());
    assert_same_lake(crashed.path(), clean.path());
}

#[test]
fn published_graph_payloads_parse_leniently() {
    let lake = tempfile::tempdir().unwrap();
    let examples = root().join("tests/fixtures/graph-examples");
    let r = ingest(
        lake.path(),
        &[&examples],
        &[
            "--allow-rejects",
            "--allow-gaps",
            "--observed-at",
            "2026-10-01T00:00:00Z",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let s = r.json();
    // Separate example listings of one entity are not one whole snapshot.
    assert_eq!(s["status"], "incomplete");
    assert!(
        s["summary"]["snapshot_gaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["table"] == "assignments"
                && g["reason"]
                    .as_str()
                    .unwrap()
                    .contains("pages have no `@odata.nextLink`")),
        "{}",
        s["summary"]["snapshot_gaps"]
    );
    assert_reconciles(&s);
    // `"expiredDateTime": "null"` (a string) is read as null.
    assert_eq!(
        sql(
            lake.path(),
            "select count(*) from assignments where id = '5521fb4f-6a6c-410a-9191-461a65fd39d4' and expired_date_time is null"
        ),
        ["1"]
    );
    // Beta names and PascalCase: `requestState`, `AdminAdd`.
    let beta = sql(
        lake.path(),
        "select request_type, state from assignment_requests where request_type = 'adminAdd'",
    );
    assert!(
        !beta.is_empty()
            && beta
                .iter()
                .all(|r| r.split('|').nth(1).is_some_and(|s| !s.is_empty())),
        "{beta:?}"
    );
    // `Type` with a capital T, and `targetResource` (singular) on the single GET.
    let types = sql(
        lake.path(),
        "select distinct type from audit_event_target_resources order by type",
    );
    assert!(
        types.contains(&"Group".to_string()) && types.contains(&"User".to_string()),
        "{types:?}"
    );
    // Azure Monitor's numeric result.
    assert_eq!(
        sql(
            lake.path(),
            "select result from audit_events where id = 'Directory_VNXV4_28148892'"
        ),
        ["success"]
    );
    // Decisions with duplicate keys: the last value wins, the record is kept.
    assert_eq!(
        sql(
            lake.path(),
            "select reviewed_by_display_name from access_review_decisions where id = '4bde8d40-9224-4aa3-936b-08d73e1baf47'"
        ),
        ["guest example"]
    );
    // Files that are no entity are quarantined with a reason naming them.
    assert!(
        s["summary"]["reject_notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |n| n["source"].as_str().unwrap().ends_with("nsg-example.json")
                    && n["reason"]
                        .as_str()
                        .unwrap()
                        .contains("cannot tell which entity")
            )
    );
}

fn bad_input_case(name: &str, content: &[u8], expect: &str) {
    let lake = tempfile::tempdir().unwrap();
    assert_eq!(ingest(lake.path(), &[&sample_data()], &[]).code, 0);
    let before: Vec<_> = dump(lake.path())
        .into_iter()
        .filter(|(t, _)| !t.starts_with('_'))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, content).unwrap();
    let r = ingest(lake.path(), &[&file], &[]);
    assert_eq!(
        r.code, 1,
        "rejects fail the run: {}\n{}",
        r.stdout, r.stderr
    );
    let s = r.json();
    // A bad record of a snapshot file also leaves that snapshot incomplete.
    assert!(
        matches!(s["status"].as_str(), Some("rejects" | "incomplete")),
        "{}",
        s["status"]
    );
    assert_reconciles(&s);
    let notes = s["summary"]["reject_notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n["source"].as_str().unwrap().ends_with(name)
                && n["reason"].as_str().unwrap().contains(expect)),
        "expected a reject of {name} saying {expect:?}: {notes:?}"
    );
    let reasons = sql(lake.path(), "select reason from _rejects");
    assert!(reasons.iter().any(|r| r.contains(expect)), "{reasons:?}");
    let after: Vec<_> = dump(lake.path())
        .into_iter()
        .filter(|(t, _)| !t.starts_with('_'))
        .collect();
    assert_eq!(before, after, "nothing already in the lake is damaged");
    // The same bad input again is quarantined once, not twice.
    let again = ingest(lake.path(), &[&file], &[]);
    assert_eq!(again.code, 1);
    assert_eq!(
        sql(lake.path(), "select count(*) from _rejects"),
        [reasons.len().to_string()]
    );
    // And --allow-rejects lets a batch job carry on.
    assert_eq!(
        ingest(lake.path(), &[&file], &["--allow-rejects", "--allow-gaps"]).code,
        0
    );
}

#[test]
fn bad_input_not_json() {
    bad_input_case(
        "assignments.json",
        b"<html>502 Bad Gateway</html>",
        "not valid JSON",
    );
}

#[test]
fn bad_input_truncated_json() {
    bad_input_case("catalogs.json", br#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#identityGovernance/entitlementManagement/catalogs","value":[{"id":"c-new","displayName":"Cut"#, "ends too early");
}

#[test]
fn bad_input_value_not_a_list() {
    bad_input_case(
        "assignments.json",
        br#"{"value": {"id": "x"}}"#,
        "is an object, not a list",
    );
}

#[test]
fn bad_input_record_without_id() {
    bad_input_case(
        "assignmentRequests.json",
        br#"{"value": [{"state": "delivered"}]}"#,
        "has no `id`",
    );
}

#[test]
fn bad_input_unknown_entity() {
    bad_input_case(
        "notes.json",
        br#"{"value": [{"id": "1"}]}"#,
        "cannot tell which entity",
    );
}

#[test]
fn bad_input_type_drift_is_quarantined() {
    bad_input_case(
        "assignmentRequests.json",
        br#"{"value": [{"id": "r-drift", "createdDateTime": {"when": "yesterday"}}]}"#,
        "expected a timestamp",
    );
}

#[test]
fn bad_input_50_mb_justification() {
    let big = "A".repeat(50 * 1024 * 1024);
    let doc = format!(
        r#"{{"value": [{{"id": "r-big", "state": "delivered", "justification": "{big}"}}]}}"#
    );
    bad_input_case(
        "assignmentRequests.json",
        doc.as_bytes(),
        "over the 4194304 byte limit",
    );
}

#[test]
fn missing_input_is_an_error_naming_the_path() {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[Path::new("/nonexistent/export")], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/nonexistent/export"), "{}", r.stderr);
    assert_eq!(r.json()["status"], "error");
}

#[test]
fn a_quarantined_record_does_not_count_as_vanished() {
    let lake = tempfile::tempdir().unwrap();
    assert_eq!(ingest(lake.path(), &[&sample_data()], &[]).code, 0);
    let later = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/assignments/assignments-0001.json");
    let values = doc["value"].as_array_mut().unwrap();
    values[0]["expiredDateTime"] = serde_json::json!({"drifted": true});
    let broken = values[0]["id"].as_str().unwrap().to_string();
    let kept = values[1]["id"].as_str().unwrap().to_string();
    std::fs::write(later.path().join("assignments.json"), doc.to_string()).unwrap();
    let r = ingest(
        lake.path(),
        &[later.path()],
        &["--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(r.code, 1, "the drifted record is rejected: {}", r.stdout);
    assert_eq!(
        sql(
            lake.path(),
            &format!("select count(*) from assignments where id in ('{broken}', '{kept}')")
        ),
        ["2"]
    );
}
