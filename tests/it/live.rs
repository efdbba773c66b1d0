//! Live ingestion through `govlake-graph-sim` on 127.0.0.1: the same typed tables as a file
//! ingest of the same directory, the same tables under a fault storm with every 429's
//! Retry-After honoured, and late audit events picked up exactly once by the next run.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::{Run, assert_same_dump, dump, govlake, ingest, run, sample_data};

/// A running simulator; killed when dropped.
struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(dir: &Path, faults: &[&str]) -> Sim {
    let mut child = Command::new(env!("CARGO_BIN_EXE_govlake-graph-sim"))
        .arg("--from")
        .arg(dir)
        .args(faults)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulator starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("simulator prints its address");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected simulator output: {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Sim { child, url }
}

fn live_ingest(lake: &Path, sim: &Sim, extra: &[&str]) -> Run {
    run(govlake()
        .arg("--lake")
        .arg(lake)
        .args(["--format", "json", "ingest", "--graph"])
        .args(["--graph-endpoint", &sim.url, "--authority-host", &sim.url])
        .args(["--tenant", "woodgrove", "--client-id", "govlake-test"])
        .args(["--backoff-ms", "20", "--no-rate-limit"])
        .args(extra)
        .env("AZURE_CLIENT_SECRET", "sim-secret")
        .env_remove("GOVLAKE_GRAPH_ENDPOINT")
        .env_remove("AZURE_AUTHORITY_HOST"))
}

/// The typed tables (and quarantine) of a lake. `_raw` is left out: it keeps each source's
/// document verbatim, and the sample holds some audit events twice in different forms (a
/// Graph page and an Azure Monitor archive envelope), which Graph itself serves once.
fn typed(lake: &Path) -> Vec<(String, Vec<String>)> {
    dump(lake)
        .into_iter()
        .filter(|(t, _)| t != "_raw")
        .collect()
}

fn sample_file_dump() -> Vec<(String, Vec<String>)> {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    typed(lake.path())
}

#[test]
fn live_ingest_of_the_sample_equals_file_ingest() {
    let sim = start_sim(&sample_data(), &[]);
    let lake = tempfile::tempdir().unwrap();
    // Small pages, so every collection is paged; the export's own observation time.
    let r = live_ingest(
        lake.path(),
        &sim,
        &["--page-size", "7", "--observed-at", "2026-10-01T06:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = r.json();
    assert_eq!(s["status"], "ok", "{s}");
    assert!(s["summary"]["graph"]["pages"].as_u64().unwrap() > 50, "{s}");
    assert_same_dump(&typed(lake.path()), &sample_file_dump());
}

#[test]
fn a_fault_storm_changes_nothing_and_retry_after_is_honoured() {
    let sim = start_sim(
        &sample_data(),
        &[
            "--throttle-every",
            "4",
            "--retry-after",
            "1",
            "--unavailable-every",
            "7",
            "--truncate-every",
            "9",
            "--token-lifetime",
            "25",
        ],
    );
    let lake = tempfile::tempdir().unwrap();
    let r = live_ingest(
        lake.path(),
        &sim,
        &["--page-size", "40", "--observed-at", "2026-10-01T06:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let graph = &r.json()["summary"]["graph"];
    assert!(graph["throttled"].as_u64().unwrap() >= 5, "{graph}");
    assert_same_dump(&typed(lake.path()), &sample_file_dump());

    // The simulator's log: no request repeated a throttled one before its Retry-After.
    let log: Vec<serde_json::Value> = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            reqwest::get(format!("{}/_sim/log", sim.url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    };
    let statuses = |code: u64| log.iter().filter(|e| e["status"] == code).count();
    assert!(
        statuses(429) >= 5 && statuses(503) >= 3 && statuses(401) >= 1,
        "429 {} 503 {} 401 {}",
        statuses(429),
        statuses(503),
        statuses(401)
    );
    for (i, e) in log.iter().enumerate() {
        if e["status"] != 429 {
            continue;
        }
        let due = e["at_ms"].as_u64().unwrap() + 1000 * e["retry_after_secs"].as_u64().unwrap();
        let again = log[i + 1..]
            .iter()
            .find(|n| n["target"] == e["target"] && n["method"] == e["method"])
            .unwrap_or_else(|| panic!("a throttled request was never retried: {e}"));
        assert!(
            again["at_ms"].as_u64().unwrap() >= due,
            "retried before its Retry-After: {e} then {again}"
        );
    }
}

/// An export of `n` audit events one minute apart (copies of a sample event).
fn minute_events(dir: &Path, n: usize) {
    let page = crate::common::sample_page("auditLogs/directoryAudits-0001.json");
    let template = page["value"][0].clone();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap();
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let mut e = template.clone();
            e["id"] = format!("IGA_late_{i:04}").into();
            e["activityDateTime"] = (start + chrono::Duration::minutes(i as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into();
            e
        })
        .collect();
    let doc = serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits",
        "value": events,
    });
    std::fs::create_dir_all(dir.join("auditLogs")).unwrap();
    std::fs::write(
        dir.join("auditLogs/directoryAudits-0001.json"),
        doc.to_string(),
    )
    .unwrap();
}

#[test]
fn late_audit_events_are_picked_up_exactly_once() {
    let export = tempfile::tempdir().unwrap();
    minute_events(export.path(), 30);
    // Three events (just before the newest) arrive only after the first listing ended.
    let sim = start_sim(export.path(), &["--late-events", "3"]);
    let lake = tempfile::tempdir().unwrap();
    let count = |lake: &Path| crate::common::count(lake, "audit_events");

    let first = live_ingest(lake.path(), &sim, &["--page-size", "8"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(count(lake.path()), 27);

    let second = live_ingest(lake.path(), &sim, &["--page-size", "8"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let s = second.json();
    assert_eq!(count(lake.path()), 30, "each late event once");
    let events = &s["summary"]["ingest"]["tables"]["audit_events"];
    assert_eq!(events["stored"], 3, "{events}");
    // The overlap (15 minutes behind the newest stored event) re-read events already stored.
    assert!(events["duplicates"].as_u64().unwrap() >= 10, "{events}");
    assert_eq!(
        s["summary"]["graph"]["audit_events_since"], "2026-11-27T10:14:00Z",
        "watermark (10:29) minus 15 minutes"
    );
    let ids = crate::common::sql(
        lake.path(),
        "select count(*) from (select id from audit_events group by id having count(*) > 1)",
    );
    assert_eq!(ids, ["0"], "no id twice");
}

#[test]
fn workload_identity_federation_signs_in_with_the_token_file() {
    let sim = start_sim(&sample_data(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnb3ZsYWtlIn0.c2lnbmF0dXJl\n",
    )
    .unwrap();
    let mut cmd = govlake();
    cmd.arg("--lake")
        .arg(dir.path().join("lake"))
        .args(["--format", "json", "ingest", "--graph"])
        .args(["--graph-endpoint", &sim.url, "--authority-host", &sim.url])
        .args([
            "--tenant",
            "woodgrove",
            "--client-id",
            "govlake-test",
            "--no-rate-limit",
        ])
        .env_remove("AZURE_CLIENT_SECRET")
        .env("AZURE_FEDERATED_TOKEN_FILE", &token);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Without any credential, the error says which variables to set.
    let r = run(govlake()
        .arg("--lake")
        .arg(dir.path().join("lake2"))
        .args([
            "ingest",
            "--graph",
            "--graph-endpoint",
            &sim.url,
            "--authority-host",
            &sim.url,
        ])
        .args(["--tenant", "woodgrove", "--client-id", "govlake-test"])
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_live_demo_reads_the_sample_through_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let r = run(govlake()
        .arg("--lake")
        .arg(&lake)
        .args(["demo", "--live", "--sample-data"])
        .arg(sample_data())
        .arg("--pack")
        .arg(dir.path().join("pack")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("Read the sample tenant live from the Graph simulator"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains(" 0 throttled"),
        "the demo shows 429s waited out: {}",
        r.stdout
    );
    assert_same_dump(&typed(&lake), &sample_file_dump());
}

#[test]
fn a_refused_collection_is_a_coverage_gap_not_a_crash() {
    let sim = start_sim(&sample_data(), &["--forbid", "auditLogs/directoryAudits"]);
    let lake = tempfile::tempdir().unwrap();
    let r = live_ingest(lake.path(), &sim, &["--page-size", "100"]);
    assert_eq!(r.code, 1, "finished, with a gap: {}{}", r.stdout, r.stderr);
    let s = r.json();
    assert_eq!(s["status"], "incomplete");
    let gaps = s["summary"]["graph"]["coverage_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["table"], "audit_events");
    // Everything else arrived, and the lake's bookkeeping names the gap.
    assert_eq!(crate::common::count(lake.path(), "audit_events"), 0);
    assert!(crate::common::count(lake.path(), "assignments") > 0);
    assert_eq!(
        crate::common::sql(
            lake.path(),
            "select table_name from _ingest_runs where status like 'coverage_gap:%'"
        ),
        ["audit_events"]
    );
}
