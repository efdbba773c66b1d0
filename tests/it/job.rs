//! Scheduled monitoring: `govlake changes` between two runs of the sample tenant (one more
//! clerk holding both payment packages a week later), `govlake job run` with its webhook,
//! its quarter pack built once, and the lake's lease (one job at a time, a killed job's
//! lease taken over) on every backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{copy_dir, govlake, ingest, run, sample_data};

const APPROVER: &str = "Vendor Payment - Approver";
const INITIATOR: &str = "Vendor Payment - Initiator";

/// The sample tenant's assignments, every page.
fn assignments(export: &Path) -> Vec<Value> {
    let mut pages: Vec<PathBuf> =
        std::fs::read_dir(export.join("entitlementManagement/assignments"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    pages.sort();
    pages
        .iter()
        .flat_map(|p| {
            let page: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            page["value"].as_array().unwrap().clone()
        })
        .collect()
}

fn held(a: &Value) -> bool {
    matches!(
        a["state"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("delivered" | "partiallydelivered")
    )
}

/// What the test expects `sod_violations` to gain, computed from the export it wrote.
struct NewConflict {
    user_object_id: String,
    user_principal_name: String,
    package_ids: (String, String),
    package_names: (String, String),
    both_held_since: i64,
}

/// Copies the sample tenant to `dir` and gives one clerk who holds only the initiator package
/// the approver package too (starting 2026-10-05, ending 2027-03-31, so no other finding
/// view has reason to change), observed a week after the sample (`_export.json`).
fn second_export(dir: &Path) -> NewConflict {
    copy_dir(&sample_data(), dir);
    let all = assignments(dir);
    let holds = |user: &str, package: &str| {
        all.iter().any(|a| {
            held(a)
                && a["target"]["objectId"] == user
                && a["accessPackage"]["displayName"] == package
        })
    };
    let mut clerks: Vec<&Value> = all
        .iter()
        .filter(|a| held(a) && a["accessPackage"]["displayName"] == INITIATOR)
        .filter(|a| !holds(a["target"]["objectId"].as_str().unwrap(), APPROVER))
        .collect();
    clerks.sort_by_key(|a| a["target"]["objectId"].as_str().unwrap().to_string());
    let initiator = clerks[0].clone();
    let template = all
        .iter()
        .find(|a| held(a) && a["accessPackage"]["displayName"] == APPROVER)
        .unwrap();
    let mut new = template.clone();
    new["id"] = json!("0f0e0d0c-0b0a-4998-8877-665544332211");
    new["target"] = initiator["target"].clone();
    new["schedule"] = json!({
        "startDateTime": "2026-10-05T09:00:00Z",
        "expiration": {"type": "afterDateTime", "endDateTime": "2027-03-31T00:00:00Z", "duration": null},
    });
    new["expiredDateTime"] = Value::Null;
    new["state"] = json!("delivered");
    new["status"] = json!("Delivered");
    let last = dir.join("entitlementManagement/assignments/assignments-0004.json");
    let mut page: Value = serde_json::from_str(&std::fs::read_to_string(&last).unwrap()).unwrap();
    page["value"].as_array_mut().unwrap().push(new.clone());
    std::fs::write(&last, serde_json::to_string_pretty(&page).unwrap()).unwrap();
    let marker = dir.join("_export.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    m["exportedAt"] = json!("2026-10-08T06:00:00Z");
    std::fs::write(&marker, serde_json::to_string_pretty(&m).unwrap()).unwrap();

    let ts = |v: &Value| govlake::time::parse_ts(v.as_str().unwrap()).unwrap();
    let initiator_since = all
        .iter()
        .filter(|a| {
            held(a)
                && a["target"]["objectId"] == initiator["target"]["objectId"]
                && a["accessPackage"]["displayName"] == INITIATOR
        })
        .map(|a| ts(&a["schedule"]["startDateTime"]))
        .min()
        .unwrap();
    let (i_id, a_id) = (
        initiator["accessPackage"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        new["accessPackage"]["id"].as_str().unwrap().to_string(),
    );
    // The view lists each pair once, the smaller package id first.
    let (package_ids, package_names) = if i_id < a_id {
        ((i_id, a_id), (INITIATOR.to_string(), APPROVER.to_string()))
    } else {
        ((a_id, i_id), (APPROVER.to_string(), INITIATOR.to_string()))
    };
    NewConflict {
        user_object_id: initiator["target"]["objectId"].as_str().unwrap().into(),
        user_principal_name: initiator["target"]["principalName"]
            .as_str()
            .unwrap()
            .into(),
        package_ids,
        package_names,
        both_held_since: initiator_since.max(ts(&new["schedule"]["startDateTime"])),
    }
}

fn assert_is_the_new_conflict(row: &Value, c: &NewConflict) {
    assert_eq!(row["user_object_id"], c.user_object_id.as_str(), "{row}");
    assert_eq!(row["user_principal_name"], c.user_principal_name.as_str());
    assert_eq!(row["access_package_id"], c.package_ids.0.as_str());
    assert_eq!(
        row["incompatible_access_package_id"],
        c.package_ids.1.as_str()
    );
    assert_eq!(row["access_package_name"], c.package_names.0.as_str());
    assert_eq!(
        row["incompatible_access_package_name"],
        c.package_names.1.as_str()
    );
    let since = govlake::time::parse_ts(row["both_held_since"].as_str().unwrap());
    assert_eq!(since, Some(c.both_held_since), "{row}");
    assert_eq!(row["grandfathered"], false);
}

/// Every view's added/removed/changed counts, for messages.
fn counts(doc: &Value) -> Vec<String> {
    doc["views"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}: +{} -{} ~{}",
                v["added"].as_array().unwrap().len(),
                v["removed"].as_array().unwrap().len(),
                v["changed"].as_array().unwrap().len()
            )
        })
        .collect()
}

#[test]
fn changes_since_the_first_run_list_the_one_new_sod_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let first = ingest(&lake, &[&sample_data()], &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let first_run = first.json()["summary"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let export = tmp.path().join("export-2");
    let conflict = second_export(&export);
    let second = ingest(
        &lake,
        &[&export],
        &["--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let second_run = second.json()["summary"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();

    let changes = |extra: &[&str]| {
        run(govlake()
            .arg("--lake")
            .arg(&lake)
            .args(["changes", "--since", &first_run])
            .args(extra))
    };
    let out = changes(&["-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["since"]["run_id"], first_run.as_str());
    assert_eq!(doc["since"]["observed_at"], "2026-10-01T06:00:00Z");
    assert_eq!(doc["until"]["run_id"], Value::Null);
    let sod = &doc["views"]["sod_violations"];
    let added = sod["added"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{sod}");
    assert_is_the_new_conflict(&added[0], &conflict);
    assert_eq!(sod["removed"], json!([]));
    assert_eq!(sod["changed"], json!([]));
    // Elsewhere only what a week's passing explains: the grants whose scheduled end fell
    // between the two snapshots are overdue now (expiration_compliance, as its header says).
    let window = |t: &str| {
        let t = govlake::time::parse_ts(t).unwrap();
        t > govlake::time::parse_ts("2026-10-01T06:00:00Z").unwrap()
            && t <= govlake::time::parse_ts("2026-10-08T06:00:00Z").unwrap()
    };
    let mut ended_in_the_week: Vec<String> = assignments(&export)
        .iter()
        .filter(|a| held(a))
        .filter(|a| {
            a["schedule"]["expiration"]["endDateTime"]
                .as_str()
                .is_some_and(window)
        })
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    ended_in_the_week.sort();
    assert!(!ended_in_the_week.is_empty());
    for (view, v) in doc["views"].as_object().unwrap() {
        let added = v["added"].as_array().unwrap();
        match view.as_str() {
            "sod_violations" => {}
            "expiration_compliance" => {
                let mut overdue: Vec<String> = added
                    .iter()
                    .filter(|r| r["finding"] == "overdue")
                    .map(|r| r["assignment_id"].as_str().unwrap().to_string())
                    .collect();
                overdue.sort();
                assert_eq!(overdue, ended_in_the_week, "{:?}", counts(&doc));
                // Any other new expiration finding is about one of those grants.
                for r in added {
                    assert!(
                        ended_in_the_week
                            .contains(&r["assignment_id"].as_str().unwrap().to_string()),
                        "{r}"
                    );
                }
            }
            _ => assert_eq!(added.len(), 0, "{view}: {:?}", counts(&doc)),
        }
    }
    // Every finding view was compared.
    for view in [
        "sod_violations",
        "sod_group_violations",
        "expiration_compliance",
        "policy_findings",
        "remediation_timeliness",
        "direct_admin_grants",
        "external_access",
        "control_changes",
    ] {
        assert!(doc["views"].get(view).is_some(), "{view} missing");
    }

    // The same by time: the last run finished by the second run's start is the first.
    let by_time = changes(&["-o", "json", "--until", &second_run]);
    assert_eq!(by_time.code, 0, "{}", by_time.stderr);
    assert_eq!(by_time.json()["views"]["sod_violations"], *sod);

    // --fail-on new: exit 1 on that addition; nothing new since the second run: 0.
    assert_eq!(changes(&["--fail-on", "new", "-o", "json"]).code, 1);
    let quiet = run(govlake().arg("--lake").arg(&lake).args([
        "changes",
        "--since",
        &second_run,
        "--fail-on",
        "any",
        "-o",
        "json",
    ]));
    assert_eq!(quiet.code, 0, "{}", quiet.stdout);
    assert_eq!(quiet.json()["views"]["sod_violations"]["added"], json!([]));

    // A week on, the clerk's approver assignment is gone from the export again: the same
    // row is removed, matched by its key.
    let third = ingest(
        &lake,
        &[&sample_data()],
        &["--observed-at", "2026-10-15T06:00:00Z"],
    );
    assert_eq!(third.code, 0, "{}", third.stderr);
    let gone = run(govlake().arg("--lake").arg(&lake).args([
        "changes",
        "--since",
        &second_run,
        "--view",
        "sod_violations",
        "-o",
        "json",
        "--fail-on",
        "new",
    ]));
    assert_eq!(gone.code, 0, "nothing new: {}", gone.stderr);
    let sod_then = &gone.json()["views"]["sod_violations"];
    assert_eq!(sod_then["added"], json!([]));
    let removed = sod_then["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{sod_then}");
    assert_is_the_new_conflict(&removed[0], &conflict);

    // CSV: one line for the added row, its cells guarded.
    let csv = changes(&[
        "-o",
        "csv",
        "--view",
        "sod_violations",
        "--until",
        &second_run,
    ]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines[0], "view,change,key,columns,row,before");
    assert_eq!(lines.len(), 2, "{}", csv.stdout);
    assert!(
        lines[1].starts_with("sod_violations,added,"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(&conflict.user_object_id));

    // A view without a row key is refused, by name.
    let refused = changes(&["--view", "approval_trail"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("approval_trail") && refused.stderr.contains("-- Key:"),
        "{}",
        refused.stderr
    );
    let unknown =
        run(govlake()
            .arg("--lake")
            .arg(&lake)
            .args(["changes", "--since", "no-such-run"]));
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("no-such-run"), "{}", unknown.stderr);
}

/// A webhook receiver on 127.0.0.1: answers the given statuses in turn, then 200; keeps
/// every request's status and body.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/hooks/secret-token-123",
            listener.local_addr().unwrap()
        );
        let hits: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
        let (h, mut statuses) = (hits.clone(), statuses.to_vec());
        statuses.reverse();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = statuses.pop().unwrap_or(200);
                h.lock()
                    .unwrap()
                    .push((status, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self { url, hits }
    }

    fn hits(&self) -> Vec<(u16, Value)> {
        self.hits.lock().unwrap().clone()
    }
}

/// Distinct packs pinned for a period (`_pack_pins` is no query table).
fn pinned_packs(lake: &Path, period: &str) -> usize {
    let loc =
        govlake::lake::LakeLocation::resolve(&lake.to_string_lossy(), Default::default()).unwrap();
    let lake = govlake::lake::Lake::new(loc);
    let mut ids = std::collections::BTreeSet::new();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(lake.scan_sql(
            "_pack_pins",
            "select pack_id, period from _pack_pins",
            |r| {
                if r[1] == Some(period) {
                    ids.insert(r[0].unwrap_or_default().to_string());
                }
            },
        ))
        .unwrap();
    ids.len()
}

fn keygen(dir: &Path) -> PathBuf {
    let prefix = dir.join("signer");
    let k = run(govlake().arg("keygen").arg("--out").arg(&prefix));
    assert_eq!(k.code, 0, "{}", k.stderr);
    dir.join("signer.key")
}

#[test]
fn a_job_reports_the_new_conflict_to_a_webhook_and_builds_the_quarter_pack_once() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let first = ingest(&lake, &[&sample_data()], &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let export = tmp.path().join("export-2");
    let conflict = second_export(&export);
    let key = keygen(tmp.path());
    let hook = Receiver::start(&[500, 503]);
    let config = tmp.path().join("govlake.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nlocation = {:?}\n[job]\nexports = [\"export-2\"]\n[job.pack]\nout = \"packs\"\nkey_file = {:?}\n[notify]\nbackoff_ms = 20\nmax_backoff_ms = 100\n[[notify.webhooks]]\nname = \"governance\"\nurl_env = \"GOVLAKE_TEST_HOOK\"\n",
            lake.to_string_lossy(),
            key.to_string_lossy()
        ),
    )
    .unwrap();
    let job = || {
        run(govlake()
            .arg("--config")
            .arg(&config)
            .env("GOVLAKE_TEST_HOOK", &hook.url)
            .args([
                "--format",
                "json",
                "job",
                "run",
                "--at",
                "2026-10-09T00:00:00Z",
            ]))
    };

    let out = job();
    // Finished, and a person should look: a new SoD conflict.
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("secret-token-123") && !out.stderr.contains("secret-token-123"));
    let doc = out.json();
    assert_eq!(doc["command"], "job");
    assert_eq!(doc["status"], "attention");
    let steps = doc["summary"]["steps"].as_array().unwrap();
    let outcome = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("ingest"), "ok");
    assert_eq!(outcome("changes"), "attention");
    assert_eq!(outcome("pack"), "ok");
    assert_eq!(outcome("notify governance"), "ok");
    // The receiver failed twice, then took the one message, which carries the conflict.
    let hits = hook.hits();
    assert_eq!(
        hits.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    let accepted = &hits[2].1;
    let added = accepted["document"]["views"]["sod_violations"]["added"]
        .as_array()
        .unwrap();
    assert_eq!(added.len(), 1, "{accepted}");
    assert_is_the_new_conflict(&added[0], &conflict);
    // The pack: built, signed, verified, pinned for 2026Q3.
    let pack = tmp.path().join("packs/2026Q3");
    assert_eq!(accepted["pack"], pack.to_string_lossy().as_ref());
    let verify = run(govlake()
        .arg("verify")
        .arg(&pack)
        .arg("--public-key")
        .arg(tmp.path().join("signer.pub")));
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert_eq!(pinned_packs(&lake, "2026Q3"), 1);
    // Each step is recorded in _ingest_runs under the job's id.
    let job_id = doc["summary"]["job_id"].as_str().unwrap();
    let recorded = crate::common::sql(
        &lake,
        &format!(
            "select table_name from _ingest_runs where run_id = '{job_id}' order by table_name"
        ),
    );
    assert!(recorded.iter().any(|l| l == "job:pack"), "{recorded:?}");

    // The next run: the export again (nothing new), the pack pinned already, nobody told.
    let pack_files = std::fs::read_dir(&pack).unwrap().count();
    let again = job();
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let doc = again.json();
    let steps = doc["summary"]["steps"].as_array().unwrap();
    let pack_step = steps.iter().find(|s| s["step"] == "pack").unwrap();
    assert_eq!(pack_step["outcome"], "skipped", "{pack_step}");
    assert!(
        pack_step["detail"]
            .as_str()
            .unwrap()
            .contains("pinned already")
    );
    assert_eq!(std::fs::read_dir(&pack).unwrap().count(), pack_files);
    assert_eq!(hook.hits().len(), 3);
    assert_eq!(pinned_packs(&lake, "2026Q3"), 1);
}

#[test]
fn a_webhook_that_keeps_failing_is_given_up_on_without_showing_its_url() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    assert_eq!(ingest(&lake, &[&sample_data()], &[]).code, 0);
    let hook = Receiver::start(&[500, 500, 500, 500, 500]);
    let config = tmp.path().join("govlake.toml");
    std::fs::write(
        &config,
        "[notify]\nmax_attempts = 3\nbackoff_ms = 10\n[[notify.webhooks]]\nname = \"ops\"\nkind = \"slack\"\nurl_env = \"GOVLAKE_TEST_HOOK\"\non = \"always\"\n",
    )
    .unwrap();
    let out = run(govlake()
        .arg("--config")
        .arg(&config)
        .arg("--lake")
        .arg(&lake)
        .env("GOVLAKE_TEST_HOOK", &hook.url)
        .args(["changes", "--since", "2030-01-01T00:00:00Z", "--notify"]));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(hook.hits().len(), 3, "bounded: max_attempts");
    assert!(
        out.stderr.contains("`ops`") && out.stderr.contains("GOVLAKE_TEST_HOOK"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("secret-token-123"), "{}", out.stderr);
    assert!(
        hook.hits()[0].1["text"]
            .as_str()
            .unwrap()
            .contains("no changes")
    );
}

#[test]
fn a_dry_run_prints_the_plan_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let config = tmp.path().join("govlake.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nlocation = {:?}\n[job]\ngraph = true\nexports = [\"exp\"]\n[job.pack]\nout = \"s3://evidence/packs\"\n[[notify.webhooks]]\nname = \"t\"\nkind = \"teams\"\nurl_env = \"HOOK\"\n",
            lake.to_string_lossy()
        ),
    )
    .unwrap();
    let out = run(govlake()
        .arg("--config")
        .arg(&config)
        .env("GOVLAKE_GRAPH_ENDPOINT", "http://127.0.0.1:9")
        .args([
            "--format",
            "json",
            "job",
            "run",
            "--dry-run",
            "--at",
            "2026-10-02T00:00:00Z",
        ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = out.json()["summary"]["plan"].clone();
    let text = plan.to_string();
    assert!(text.contains("Microsoft Graph"), "{text}");
    assert!(text.contains("s3://evidence/packs/2026Q3"), "{text}");
    assert!(text.contains("HOOK"), "{text}");
    assert!(!lake.exists(), "a dry run created the lake");
}

fn job_config(dir: &Path, lake: &Path) -> PathBuf {
    let config = dir.join("govlake.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\nlocation = {:?}\n[job]\nexports = [{:?}]\nlease_ttl_secs = 3\n",
            lake.to_string_lossy(),
            sample_data().to_string_lossy()
        ),
    )
    .unwrap();
    config
}

#[test]
fn two_jobs_started_together_one_runs_the_other_names_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let config = job_config(tmp.path(), &lake);
    let spawn = || {
        govlake()
            .arg("--config")
            .arg(&config)
            .args(["job", "run"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (pid_a, pid_b) = (a.id(), b.id());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = [a.status.code().unwrap(), b.status.code().unwrap()];
    codes.sort();
    assert_eq!(codes, [0, 2], "{a:?}\n{b:?}");
    let (loser, winner_pid) = if a.status.code() == Some(2) {
        (a, pid_b)
    } else {
        (b, pid_a)
    };
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert!(
        stderr.contains("is in use by job") && stderr.contains(&format!("(pid {winner_pid})")),
        "{stderr}"
    );
    // The lease is given back at the end: the next job runs.
    let next = run(govlake().arg("--config").arg(&config).args(["job", "run"]));
    // (Both streams: the job's summary, on stdout, says which step failed.)
    assert_eq!(next.code, 0, "{}\n{}", next.stdout, next.stderr);
}

#[test]
fn a_killed_jobs_lease_is_taken_over_after_it_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let config = job_config(tmp.path(), &lake);
    // A job that was killed: its lease stays in the lake until it expires.
    let loc =
        govlake::lake::LakeLocation::resolve(&lake.to_string_lossy(), Default::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(govlake::lake::lease::acquire(
        &loc,
        "killed-job",
        Duration::from_secs(4),
        None,
    ))
    .unwrap()
    .abandon();
    let refused = run(govlake().arg("--config").arg(&config).args(["job", "run"]));
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("`killed-job`"),
        "{}",
        refused.stderr
    );
    let waited = run(govlake()
        .arg("--config")
        .arg(&config)
        .args(["job", "run", "--wait", "60"]));
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    assert!(
        waited.stderr.contains("has expired; taking it over"),
        "{}",
        waited.stderr
    );
}

/// The lease on one backend, through the library: one holder, a wait, a takeover of an
/// expired lease, the old holder told it lost it, a release.
fn lease_story(location: &govlake::lake::LakeLocation) {
    use govlake::lake::lease::{Error, acquire, holder};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ttl = Duration::from_secs(2);
        let mut a = acquire(location, "job-a", ttl, None).await.unwrap();
        match acquire(location, "job-b", ttl, None).await {
            Err(Error::Held { holder, .. }) => assert_eq!(holder.job_id, "job-a"),
            other => panic!("expected the lease held, got {other:?}"),
        }
        a.renew().await.unwrap();
        let mut b = acquire(location, "job-b", ttl, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(holder(location).await.unwrap().unwrap().job_id, "job-b");
        assert!(
            matches!(a.renew().await, Err(Error::Lost { by: Some(ref h), .. }) if h.job_id == "job-b")
        );
        b.renew().await.unwrap();
        b.release().await.unwrap();
        assert_eq!(holder(location).await.unwrap(), None);
        // Two takers of an expired lease: one wins.
        acquire(location, "killed", Duration::from_millis(500), None)
            .await
            .unwrap()
            .abandon();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (x, y) = tokio::join!(
            acquire(location, "x", ttl, None),
            acquire(location, "y", ttl, None)
        );
        assert_eq!([x.is_ok(), y.is_ok()].iter().filter(|w| **w).count(), 1, "{x:?} {y:?}");
    });
}

#[test]
fn the_lease_on_local_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = govlake::lake::LakeLocation::resolve(
        &tmp.path().join("lake").to_string_lossy(),
        Default::default(),
    )
    .unwrap();
    lease_story(&loc);
}

#[test]
#[ignore = "needs Azurite and moto: tests/run.sh starts them and runs the ignored tests"]
fn the_lease_on_azurite_and_moto() {
    for backend in crate::backends::Backend::all() {
        if matches!(backend, crate::backends::Backend::Local) {
            continue;
        }
        let lake = backend.new_lake("lease");
        lease_story(lake.lake().location());
    }
}
