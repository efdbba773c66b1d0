//! `govlake doctor` end to end against `govlake-graph-sim`: all ok for a well-set-up app
//! (and no lake created by asking); a refused collection and a missing read permission are
//! failures naming the permission, a write permission a warning; clock skew against the
//! token endpoint's `Date`; audit retention against the lake's newest event; exit codes
//! 0 / 1 / 2 follow the worst line.

use std::path::Path;
use std::process::Command;

use crate::common::{Run, govlake, run, sample_data};
use crate::live::{Sim, live_ingest, start_sim};

fn doctor_cmd(lake: &Path, sim: &Sim, extra: &[&str]) -> Command {
    let mut c = govlake();
    c.arg("--lake")
        .arg(lake)
        .args(["doctor", "--graph"])
        .args(["--graph-endpoint", &sim.url, "--authority-host", &sim.url])
        .args(["--tenant", "woodgrove", "--client-id", "govlake-test"])
        .args(["--backoff-ms", "20"])
        .args(extra)
        .env("AZURE_CLIENT_SECRET", "sim-secret")
        .env_remove("GOVLAKE_GRAPH_ENDPOINT")
        .env_remove("AZURE_AUTHORITY_HOST");
    c
}

fn doctor(lake: &Path, sim: &Sim, extra: &[&str]) -> Run {
    run(doctor_cmd(lake, sim, extra).args(["--format", "json"]))
}

/// check name → (status, detail) from the JSON report.
fn checks(r: &Run) -> Vec<(String, String, String)> {
    r.json()["summary"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.stdout))
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of<'a>(checks: &'a [(String, String, String)], name: &str) -> (&'a str, &'a str) {
    checks
        .iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

/// The collections a run lists: the simulator's default app may read every one.
const COLLECTIONS: [&str; 8] = [
    "catalogs",
    "accessPackages",
    "assignmentPolicies",
    "assignmentRequests",
    "assignments",
    "connectedOrganizations",
    "accessReviews",
    "directoryAudits",
];

#[test]
fn doctor_passes_against_the_simulator_and_creates_no_lake() {
    let sim = start_sim(&sample_data(), &[]);
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("not-yet");
    let r = doctor(&lake, &sim, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["status"], "ok");
    let c = checks(&r);
    for (name, status, _) in &c {
        assert_eq!(status, "ok", "{name}: {c:?}");
    }
    for col in COLLECTIONS {
        assert!(
            status_of(&c, &format!("Graph {col}"))
                .1
                .ends_with(" answers")
        );
    }
    for name in [
        "config file",
        "lake location",
        "lake readable",
        "lake writable",
        "Graph sign-in",
        "token roles",
        "least privilege",
        "clock skew",
        "audit retention",
    ] {
        status_of(&c, name);
    }
    assert!(
        status_of(&c, "lake readable")
            .1
            .contains("no lake here yet")
    );
    assert!(!lake.exists(), "doctor created the lake folder");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the probe was left behind"
    );
    // Every Graph request was a one-item request.
    let log = crate::live::sim_log(&sim);
    let graph: Vec<&str> = log
        .iter()
        .filter_map(|e| e["target"].as_str())
        .filter(|t| t.starts_with("/v1.0/"))
        .collect();
    assert_eq!(graph.len(), COLLECTIONS.len(), "{graph:?}");
    assert!(
        graph
            .iter()
            .all(|t| t.contains("%24top=1") || t.contains("$top=1")),
        "{graph:?}"
    );

    // Text output: one line per check, the status first.
    let r = run(&mut doctor_cmd(&lake, &sim, &[]));
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.lines().count(), c.len(), "{}", r.stdout);
    assert!(
        r.stdout.lines().all(|l| l.starts_with("ok ")),
        "{}",
        r.stdout
    );
}

#[test]
fn doctor_weighs_the_lakes_newest_audit_event_against_graph_retention() {
    let sim = start_sim(&sample_data(), &[]);
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let r = live_ingest(&lake, &sim, &["--page-size", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The newest audit event, read independently of doctor.
    let newest = crate::common::sql(
        &lake,
        "select cast(max(activity_date_time) as varchar) from audit_events",
    );
    let newest = newest[0].replace(' ', "T");
    let newest = &newest[..19];

    // Kept a century: fine.
    let r = doctor(&lake, &sim, &["--graph-retention-days", "36500"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let c = checks(&r);
    let (status, detail) = status_of(&c, "audit retention");
    assert_eq!(status, "ok");
    assert!(detail.contains(newest), "{detail} vs {newest}");
    assert!(status_of(&c, "lake readable").1.contains("a govlake lake"));

    // Kept a century, but the next run is further away than that: a warning, exit 1.
    let r = doctor(
        &lake,
        &sim,
        &[
            "--graph-retention-days",
            "36500",
            "--run-every-hours",
            "900000",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    let c = checks(&r);
    let (status, detail) = status_of(&c, "audit retention");
    assert_eq!(status, "warning");
    assert!(detail.contains("before the next run"), "{detail}");

    // Kept one day: the sample's events are older, the gap is already there.
    let r = doctor(&lake, &sim, &["--graph-retention-days", "1"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let c = checks(&r);
    let (status, detail) = status_of(&c, "audit retention");
    assert_eq!(status, "warning");
    assert!(
        detail.contains("are gone from Graph") && detail.contains("--log-analytics"),
        "{detail}"
    );
}

#[test]
fn doctor_names_a_forbidden_collection_a_missing_permission_and_a_write_role() {
    let sim = start_sim(
        &sample_data(),
        &[
            "--forbid",
            "auditLogs/directoryAudits",
            "--roles",
            "EntitlementManagement.ReadWrite.All,AccessReview.Read.All,Directory.Read.All",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let r = doctor(&tmp.path().join("lake"), &sim, &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["status"], "failed");
    let c = checks(&r);
    let (status, detail) = status_of(&c, "Graph directoryAudits");
    assert_eq!(status, "failed");
    assert!(
        detail.contains("403") && detail.contains("AuditLog.Read.All"),
        "{detail}"
    );
    let (status, detail) = status_of(&c, "token roles");
    assert_eq!(status, "failed");
    assert!(detail.contains("missing AuditLog.Read.All"), "{detail}");
    // The write role grants reading, so the packages still answer; it is still a warning.
    let (status, detail) = status_of(&c, "least privilege");
    assert_eq!(status, "warning");
    assert!(
        detail.contains("(EntitlementManagement.ReadWrite.All)"),
        "{detail}"
    );
    assert_eq!(status_of(&c, "Graph accessPackages").0, "ok");
    // Only those three lines are not ok.
    let bad: Vec<&str> = c
        .iter()
        .filter(|c| c.1 != "ok")
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(
        bad,
        ["token roles", "least privilege", "Graph directoryAudits"]
    );

    // A write role alone (every read granted, nothing refused): warnings only, exit 1.
    let sim = start_sim(
        &sample_data(),
        &[
            "--roles",
            "EntitlementManagement.Read.All,AccessReview.Read.All,AuditLog.Read.All,Directory.Read.All,User.ReadWrite.All",
        ],
    );
    let r = doctor(&tmp.path().join("lake"), &sim, &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.json()["status"], "warning");
    let text = run(&mut doctor_cmd(&tmp.path().join("lake"), &sim, &[]));
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("least privilege"))
        .unwrap();
    assert!(
        line.starts_with("warning ") && line.contains("User.ReadWrite.All"),
        "{line}"
    );
}

#[test]
fn doctor_reports_clock_skew_and_a_refused_sign_in() {
    // The token endpoint's clock 10 minutes ahead: beyond the 5 minutes Entra allows.
    let sim = start_sim(&sample_data(), &["--clock-skew", "600"]);
    let tmp = tempfile::tempdir().unwrap();
    let r = doctor(&tmp.path().join("lake"), &sim, &[]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    let c = checks(&r);
    let (status, detail) = status_of(&c, "clock skew");
    assert_eq!(status, "failed");
    // 600 s, give or take the request's own second.
    assert!(
        ["599 s behind", "600 s behind", "601 s behind"]
            .iter()
            .any(|s| detail.contains(s)),
        "{detail}"
    );
    // Two minutes: a warning.
    let sim = start_sim(&sample_data(), &["--clock-skew", "-120"]);
    let r = doctor(&tmp.path().join("lake"), &sim, &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let c = checks(&r);
    let (status, detail) = status_of(&c, "clock skew");
    assert_eq!(status, "warning");
    assert!(detail.contains("ahead of"), "{detail}");

    // A wrong secret: sign-in fails, and the checks that need a token are not run.
    let sim = start_sim(&sample_data(), &[]);
    let r = run(
        doctor_cmd(&tmp.path().join("lake"), &sim, &["--format", "json"])
            .env("AZURE_CLIENT_SECRET", "wrong"),
    );
    assert_eq!(r.code, 2, "{}", r.stdout);
    let c = checks(&r);
    let (status, detail) = status_of(&c, "Graph sign-in");
    assert_eq!(status, "failed");
    assert!(
        !detail.contains("wrong"),
        "the secret is not shown: {detail}"
    );
    assert!(
        c.iter()
            .all(|c| !c.0.starts_with("Graph ") || c.0 == "Graph sign-in")
    );
}
