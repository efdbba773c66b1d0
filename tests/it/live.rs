//! Live ingestion through `govlake-graph-sim` on 127.0.0.1: the same typed tables as a file
//! ingest of the same directory, the same tables under a fault storm with every 429's
//! Retry-After honoured, and late audit events picked up exactly once by the next run;
//! requests read incrementally with unfinished ones re-read; every sign-in (secret,
//! certificate assertion, federation, managed identity) and the least-privilege warning; the
//! Log Analytics backfill and saved `az monitor log-analytics query` output; audit windows
//! past Graph's retention reported as coverage gaps.

use std::ffi::OsStr;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::{Run, assert_same_dump, dump, govlake, ingest, run, sample_data, sim_binary};

/// A running simulator; killed when dropped.
pub(crate) struct Sim {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_sim(dir: &Path, faults: &[&str]) -> Sim {
    let mut child = Command::new(sim_binary())
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

pub(crate) fn live_ingest(lake: &Path, sim: &Sim, extra: &[&str]) -> Run {
    run(govlake()
        .arg("--lake")
        .arg(lake)
        .args(["--format", "json", "ingest", "--graph"])
        .args(["--graph-endpoint", &sim.url, "--authority-host", &sim.url])
        .args(["--tenant", "woodgrove", "--client-id", "govlake-test"])
        .args(["--backoff-ms", "20", "--no-rate-limit"])
        // The sample tenant is from 2026; the simulator keeps it all unless told otherwise.
        .args(["--graph-retention-days", "36500"])
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
fn the_live_demo_names_a_simulator_it_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-govlake-graph-sim");
    let r = run(govlake()
        .arg("--lake")
        .arg(dir.path().join("lake"))
        .args(["demo", "--live", "--sample-data"])
        .arg(sample_data())
        .arg("--pack")
        .arg(dir.path().join("pack"))
        .arg("--simulator")
        .arg(&missing));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "cannot start the Graph simulator `{}`",
            missing.display()
        )),
        "{}",
        r.stderr
    );
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
    assert_eq!(gap_tables(lake.path()), ["audit_events"]);
}

/// Tables whose runs recorded a coverage gap in `_ingest_runs`.
fn gap_tables(lake: &Path) -> Vec<String> {
    crate::common::sql(
        lake,
        "select table_name from _ingest_runs where status like 'coverage_gap:%'",
    )
}

/// The audit-event tables of a dump.
fn audit_tables(dump: Vec<(String, Vec<String>)>) -> Vec<(String, Vec<String>)> {
    dump.into_iter()
        .filter(|(t, _)| t.starts_with("audit_events"))
        .collect()
}

#[test]
fn requests_are_read_from_the_watermark_and_unfinished_ones_are_read_again() {
    // Run 1 sees the oldest request still pending approval.
    let pending = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&sample_data(), pending.path());
    let file = pending
        .path()
        .join("entitlementManagement/assignmentRequests/assignmentRequests-0001.json");
    let mut page: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let request = &mut page["value"][0];
    let (id, created) = (
        request["id"].as_str().unwrap().to_string(),
        request["createdDateTime"].as_str().unwrap().to_string(),
    );
    request["state"] = "pendingApproval".into();
    request["completedDateTime"] = serde_json::Value::Null;
    std::fs::write(&file, page.to_string()).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let sim = start_sim(pending.path(), &[]);
    let first = live_ingest(lake.path(), &sim, &["--page-size", "50"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let state = |lake: &Path| {
        crate::common::sql(
            lake,
            &format!("select state from assignment_requests where id = '{id}'"),
        )
    };
    assert_eq!(state(lake.path()), ["pendingApproval"]);
    drop(sim);

    // Run 2: the request was approved since. It is older than the watermark, but unfinished
    // in the lake, so the window reaches back to it.
    let sim = start_sim(&sample_data(), &[]);
    let second = live_ingest(lake.path(), &sim, &["--page-size", "50"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let g = &second.json()["summary"]["graph"];
    assert_eq!(g["requests_since"], created.replace('Z', "Z"), "{g}");
    assert_eq!(state(lake.path()), ["delivered"]);
    let requests = &second.json()["summary"]["ingest"]["tables"]["assignment_requests"];
    assert_eq!(
        requests["stored"], 1,
        "only the changed request: {requests}"
    );

    // Run 3: nothing unfinished, so only the overlap behind the newest request is read.
    let third = live_ingest(lake.path(), &sim, &["--page-size", "50"]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let g = &third.json()["summary"]["graph"];
    let newest = crate::common::sql(
        lake.path(),
        "select max(created_date_time) from assignment_requests",
    );
    let read = g["per_collection"]["assignmentRequests"].as_u64().unwrap();
    let total = crate::common::count(lake.path(), "assignment_requests") as u64;
    assert!(
        read >= 1 && read < total / 10,
        "read {read} of {total} (newest {newest:?}): {g}"
    );
    // The listing asked Graph for exactly that window.
    let log = sim_log(&sim);
    let since = g["requests_since"].as_str().unwrap();
    assert!(
        log.iter().any(|e| {
            let t = e["target"].as_str().unwrap_or_default();
            t.contains("assignmentRequests")
                && t.contains("createdDateTime")
                && t.contains(&since[..10])
        }),
        "no filtered request listing in the simulator's log"
    );
    // And all three runs together equal one file ingest of the final export.
    let file_lake = tempfile::tempdir().unwrap();
    ingest(file_lake.path(), &[&sample_data()], &[]);
    assert_eq!(
        crate::common::sql(
            lake.path(),
            "select id, state from assignment_requests order by id"
        ),
        crate::common::sql(
            file_lake.path(),
            "select id, state from assignment_requests order by id"
        ),
    );
}

/// The simulator's request log.
pub(crate) fn sim_log(sim: &Sim) -> Vec<serde_json::Value> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::get(format!("{}/_sim/log", sim.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// Runs the openssl command.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed RSA certificate and its key, made by openssl: (key + cert PEM, cert PEM).
fn certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=govlake-test",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let both = dir.join(format!("{name}.pem"));
    let text = std::fs::read_to_string(&key).unwrap() + &std::fs::read_to_string(&cert).unwrap();
    std::fs::write(&both, text).unwrap();
    (both, cert)
}

/// `ingest --graph` signing in with the given environment (no client secret).
fn signed_in_ingest(lake: &Path, sim: &Sim, flags: &[&str], env: &[(&str, &OsStr)]) -> Run {
    let mut cmd = govlake();
    cmd.arg("--lake")
        .arg(lake)
        .args(["--format", "json", "ingest", "--graph"])
        .args(["--graph-endpoint", &sim.url, "--authority-host", &sim.url])
        .args([
            "--no-rate-limit",
            "--max-attempts",
            "2",
            "--backoff-ms",
            "20",
        ])
        .args(["--graph-retention-days", "36500"])
        .args(flags)
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_FEDERATED_TOKEN_FILE")
        .env_remove("AZURE_CLIENT_CERTIFICATE_PATH")
        .env_remove("AZURE_CLIENT_CERTIFICATE_PASSWORD")
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("IDENTITY_HEADER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn a_certificate_signs_in_with_a_checked_assertion_and_clock_skew_is_tolerated_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, cert) = certificate(dir.path(), "app");
    let (other_pem, _) = certificate(dir.path(), "other");
    let ids = ["--tenant", "woodgrove", "--client-id", "govlake-test"];
    let cert_s = cert.to_str().unwrap();
    // The simulator checks signature, x5t, aud, iss = sub, jti and the time range.
    for skew in ["0", "290", "-290"] {
        let sim = start_sim(
            &sample_data(),
            &["--client-certificate", cert_s, "--clock-skew", skew],
        );
        let lake = dir.path().join(format!("lake{skew}"));
        let r = signed_in_ingest(
            &lake,
            &sim,
            &ids,
            &[("AZURE_CLIENT_CERTIFICATE_PATH", pem.as_os_str())],
        );
        assert_eq!(r.code, 0, "skew {skew}: {}", r.stderr);
        assert!(crate::common::count(&lake, "audit_events") > 0);
    }
    // Twenty minutes of skew (more than the assertion's 10 minutes and the 5 minutes of
    // leeway): refused, and the message says why.
    let sim = start_sim(
        &sample_data(),
        &["--client-certificate", cert_s, "--clock-skew", "1200"],
    );
    let r = signed_in_ingest(
        &dir.path().join("late"),
        &sim,
        &ids,
        &[("AZURE_CLIENT_CERTIFICATE_PATH", pem.as_os_str())],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not within its valid time range"),
        "{}",
        r.stderr
    );
    // A certificate the app does not have: refused, naming what to check.
    let r = signed_in_ingest(
        &dir.path().join("other"),
        &sim,
        &ids,
        &[("AZURE_CLIENT_CERTIFICATE_PATH", other_pem.as_os_str())],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("AADSTS700027") && r.stderr.contains("AZURE_CLIENT_CERTIFICATE_PATH"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("PRIVATE KEY"),
        "no key material in errors"
    );
    // The same certificate as a password-protected PFX (the password from the environment).
    let pfx = dir.path().join("app.pfx");
    let key = dir.path().join("app.key");
    openssl(&[
        "pkcs12",
        "-export",
        "-passout",
        "pass:pfx-Pa55",
        "-inkey",
        key.to_str().unwrap(),
        "-in",
        cert.to_str().unwrap(),
        "-out",
        pfx.to_str().unwrap(),
    ]);
    let sim = start_sim(&sample_data(), &["--client-certificate", cert_s]);
    let r = signed_in_ingest(
        &dir.path().join("pfx"),
        &sim,
        &ids,
        &[
            ("AZURE_CLIENT_CERTIFICATE_PATH", pfx.as_os_str()),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-Pa55".as_ref()),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = signed_in_ingest(
        &dir.path().join("pfx2"),
        &sim,
        &ids,
        &[
            ("AZURE_CLIENT_CERTIFICATE_PATH", pfx.as_os_str()),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "wrong-Pa55".as_ref()),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("wrong-Pa55"),
        "the password is never printed"
    );
    // A PEM without its key names the file.
    let r = signed_in_ingest(
        &dir.path().join("nokey"),
        &sim,
        &ids,
        &[("AZURE_CLIENT_CERTIFICATE_PATH", cert.as_os_str())],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("app.crt") && r.stderr.contains("PRIVATE KEY"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_managed_identity_signs_in_without_tenant_or_secret() {
    let sim = start_sim(&sample_data(), &["--identity-header", "h-123"]);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("{}/msi/token", sim.url);
    let r = signed_in_ingest(
        &dir.path().join("lake"),
        &sim,
        &["--managed-identity"],
        &[
            ("IDENTITY_ENDPOINT", endpoint.as_ref()),
            ("IDENTITY_HEADER", "h-123".as_ref()),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(crate::common::count(&dir.path().join("lake"), "assignments") > 0);
    let log = sim_log(&sim);
    assert!(
        log.iter()
            .any(|e| e["target"] == "/msi/token" && e["status"] == 200)
    );
    // The wrong identity header is refused.
    let r = signed_in_ingest(
        &dir.path().join("lake2"),
        &sim,
        &["--managed-identity"],
        &[
            ("IDENTITY_ENDPOINT", endpoint.as_ref()),
            ("IDENTITY_HEADER", "nope".as_ref()),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("managed identity"), "{}", r.stderr);
}

#[test]
fn a_token_with_write_permissions_is_warned_about() {
    let sim = start_sim(
        &sample_data(),
        &[
            "--roles",
            "EntitlementManagement.ReadWrite.All,AuditLog.Read.All",
        ],
    );
    let lake = tempfile::tempdir().unwrap();
    let r = live_ingest(lake.path(), &sim, &["--page-size", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: the token carries permissions beyond reading (EntitlementManagement.ReadWrite.All)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.json()["summary"]["graph"]["write_roles"],
        serde_json::json!(["EntitlementManagement.ReadWrite.All"])
    );
    // The read-only roles (the simulator's default) give no warning.
    let sim = start_sim(&sample_data(), &[]);
    let lake = tempfile::tempdir().unwrap();
    let r = live_ingest(lake.path(), &sim, &["--page-size", "200"]);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn audit_history_past_graph_retention_is_a_gap_that_log_analytics_fills() {
    // Graph keeps 30 days; the sample's events are all older.
    let sim = start_sim(
        &sample_data(),
        &["--retention-days", "30", "--log-analytics-row-limit", "4"],
    );
    let lake = tempfile::tempdir().unwrap();
    let r = live_ingest(
        lake.path(),
        &sim,
        &[
            "--since",
            "2026-01-01T00:00:00Z",
            "--graph-retention-days",
            "30",
        ],
    );
    assert_eq!(r.code, 1, "a gap is exit 1: {}", r.stderr);
    let s = r.json();
    assert_eq!(s["status"], "incomplete");
    let gaps = s["summary"]["graph"]["coverage_gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        gaps[0]["reason"]
            .as_str()
            .unwrap()
            .contains("--log-analytics"),
        "{gaps:?}"
    );
    assert_eq!(crate::common::count(lake.path(), "audit_events"), 0);
    assert_eq!(gap_tables(lake.path()), ["audit_events"]);

    // The backfill from Log Analytics, in day windows (split where a day has more than the
    // simulator's 4-row limit), gives the audit events a file ingest gives.
    let backfill = |lake: &Path| {
        run(govlake()
            .arg("--lake")
            .arg(lake)
            .args([
                "--format",
                "json",
                "ingest",
                "--log-analytics",
                "0b1f7c2e-5d1a-4c55-9d4e-3c2b1a0f9e8d",
            ])
            .args([
                "--since",
                "2025-12-30T00:00:00Z",
                "--until",
                "2026-10-02T00:00:00Z",
            ])
            .args([
                "--log-analytics-endpoint",
                &sim.url,
                "--authority-host",
                &sim.url,
            ])
            .args([
                "--tenant",
                "woodgrove",
                "--client-id",
                "govlake-test",
                "--backoff-ms",
                "20",
            ])
            .env("AZURE_CLIENT_SECRET", "sim-secret")
            .env_remove("GOVLAKE_LOG_ANALYTICS_ENDPOINT"))
    };
    let r = backfill(lake.path());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let s = r.json();
    let days = 276;
    assert!(
        s["summary"]["graph"]["requests"].as_u64().unwrap() > days,
        "busy days were split: {}",
        s["summary"]["graph"]
    );
    let file_lake = tempfile::tempdir().unwrap();
    ingest(file_lake.path(), &[&sample_data()], &[]);
    assert_same_dump(
        &audit_tables(dump(lake.path())),
        &audit_tables(dump(file_lake.path())),
    );
    // Again: nothing twice.
    let r = backfill(lake.path());
    assert_eq!(r.code, 0);
    assert_eq!(
        r.json()["summary"]["ingest"]["tables"]["audit_events"]["stored"],
        0
    );
}

#[test]
fn saved_log_analytics_query_output_is_read_by_from() {
    // `az monitor log-analytics query` prints rows as objects; dynamic columns are JSON text.
    let page = crate::common::sample_page("auditLogs/directoryAudits-0001.json");
    let rows: Vec<serde_json::Value> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .take(5)
        .map(|e| {
            let mut row = serde_json::Map::new();
            row.insert("TableName".into(), "PrimaryResult".into());
            for (column, property, dynamic) in govlake::ingest::loganalytics::COLUMNS {
                let v = &e[*property];
                let cell = match v {
                    serde_json::Value::Null => "".into(),
                    v if *dynamic => v.to_string().into(),
                    v => v.clone(),
                };
                row.insert((*column).to_string(), cell);
            }
            serde_json::Value::Object(row)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("auditlogs-query.json");
    std::fs::write(&saved, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    let from_rows = tempfile::tempdir().unwrap();
    let r = ingest(from_rows.path(), &[&saved], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // The same five events as read from the Graph page.
    let graph_page = dir.path().join("directoryAudits.json");
    let first5 = serde_json::json!({
        "@odata.context": page["@odata.context"],
        "value": page["value"].as_array().unwrap()[..5],
    });
    std::fs::write(&graph_page, first5.to_string()).unwrap();
    let from_graph = tempfile::tempdir().unwrap();
    ingest(from_graph.path(), &[&graph_page], &[]);
    assert_same_dump(
        &audit_tables(dump(from_rows.path())),
        &audit_tables(dump(from_graph.path())),
    );
    assert_eq!(crate::common::count(from_rows.path(), "audit_events"), 5);
}

#[test]
fn device_code_sign_in_reads_approval_stages_that_app_only_cannot() {
    // An export holding the approval stages of the first request (as a delegated `az rest`
    // would save them).
    let export = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&sample_data(), export.path());
    let requests = crate::common::sample_page(
        "entitlementManagement/assignmentRequests/assignmentRequests-0001.json",
    );
    let request = requests["value"][0]["id"].as_str().unwrap().to_string();
    let stages = serde_json::json!({
        "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#identityGovernance/entitlementManagement/accessPackageAssignmentApprovals('{request}')/stages"),
        "value": [
            {"id": "stage-1", "displayName": null, "reviewedDateTime": "2026-01-15T09:04:30Z",
             "reviewResult": "Approved", "status": "Completed", "assignedToMe": false,
             "justification": "Finance lead <b>ok</b>", "reviewedBy": {"id": "u-9", "displayName": "Ana Lind"}},
        ],
    });
    std::fs::create_dir_all(export.path().join("approvals")).unwrap();
    std::fs::write(
        export.path().join("approvals/stages.json"),
        stages.to_string(),
    )
    .unwrap();
    let sim = start_sim(export.path(), &["--device-code-polls", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let r = signed_in_ingest(
        &lake,
        &sim,
        &[
            "--device-code",
            "--tenant",
            "woodgrove",
            "--client-id",
            "govlake-cli",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("To sign in, use a web browser to open the page")
            && r.stderr.contains("/devicelogin"),
        "the person is told how to sign in: {}",
        r.stderr
    );
    assert_eq!(
        crate::common::sql(
            &lake,
            "select request_id, review_result, reviewed_by_display_name from approval_stages"
        ),
        [format!("{request}|Approved|Ana Lind")]
    );
    // Every request's stages were asked for, after two pending polls.
    let log = sim_log(&sim);
    let stage_listings = log
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .unwrap_or_default()
                .contains("accessPackageAssignmentApprovals")
        })
        .count();
    assert_eq!(
        stage_listings,
        crate::common::count(&lake, "assignment_requests")
    );
    let polls = log
        .iter()
        .filter(|e| e["target"].as_str().unwrap_or_default().ends_with("/token"))
        .count();
    assert_eq!(polls, 3, "two pending answers, then the token");

    // App-only: the approvals are not asked for, and a direct read is refused (403).
    let app_lake = dir.path().join("app");
    let r = live_ingest(&app_lake, &sim, &["--page-size", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(crate::common::count(&app_lake, "approval_stages"), 0);
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let http = reqwest::Client::new();
        let token: serde_json::Value = http
            .post(format!("{}/woodgrove/oauth2/v2.0/token", sim.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=app&client_secret=sim-secret&scope=x%2F.default")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.get(format!(
            "{}/v1.0/identityGovernance/entitlementManagement/accessPackageAssignmentApprovals('{request}')/stages",
            sim.url
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
    });
    assert_eq!(status, 403);
}

#[test]
fn a_hostile_parent_id_is_a_recorded_gap_not_a_request_outside_graph() {
    // A second connected organization whose id would climb out of `/v1.0` if pasted into
    // its sponsors' path.
    let hostile = "x')/../../../../auditLogs/directoryAudits?$top=1&x=#";
    let export = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&sample_data(), export.path());
    let file = export
        .path()
        .join("entitlementManagement/connectedOrganizations-0001.json");
    let mut page: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut org = page["value"][0].clone();
    org["id"] = hostile.into();
    page["value"].as_array_mut().unwrap().push(org);
    std::fs::write(&file, page.to_string()).unwrap();

    let sim = start_sim(export.path(), &[]);
    let lake = tempfile::tempdir().unwrap();
    let r = live_ingest(lake.path(), &sim, &["--page-size", "100"]);
    // The run goes on: everything else is ingested, the skipped listing is a gap (exit 1).
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let s = r.json();
    assert_eq!(s["status"], "incomplete", "{s}");
    let gaps = s["summary"]["graph"]["coverage_gaps"].as_array().unwrap();
    assert!(
        gaps.iter()
            .any(|g| g["table"] == "connected_organization_sponsors"
                && g["reason"].as_str().unwrap().contains(hostile)),
        "no gap naming the id: {gaps:?}"
    );
    assert_eq!(gap_tables(lake.path()), ["connected_organization_sponsors"]);
    // The other organization's sponsors were read, and audit events as usual.
    assert_eq!(
        crate::common::count(lake.path(), "connected_organization_sponsors"),
        2
    );
    assert!(crate::common::count(lake.path(), "audit_events") > 0);
    // No request left Graph's `/v1.0`.
    for e in sim_log(&sim) {
        let target = e["target"].as_str().unwrap();
        assert!(
            target.starts_with("/v1.0/") || target.ends_with("/oauth2/v2.0/token"),
            "a request outside /v1.0: {target}"
        );
    }
}

#[test]
fn a_live_run_records_its_page_chains_and_closes_what_left() {
    let lake = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let sim = start_sim(&sample_data(), &[]);
    let first = live_ingest(
        lake.path(),
        &sim,
        &[
            "--page-size",
            "7",
            "--observed-at",
            "2026-10-01T06:00:00Z",
            "--spool",
            spool.path().to_str().unwrap(),
        ],
    );
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    // Every spooled page (Zstandard-compressed JSON) says which URL it was fetched from: the
    // chain that proves a snapshot whole.
    let mut pages = 0;
    for e in walkdir::WalkDir::new(spool.path()) {
        let e = e.unwrap();
        if e.file_type().is_file() && e.path().to_string_lossy().ends_with(".json.zst") {
            let text = zstd::stream::decode_all(std::fs::File::open(e.path()).unwrap()).unwrap();
            let page: serde_json::Value = serde_json::from_slice(&text).unwrap();
            if page.get("value").is_some() {
                pages += 1;
                let url = page["@govlake.requestUrl"].as_str().unwrap_or_default();
                assert!(url.starts_with(&sim.url), "{}: {url:?}", e.path().display());
            }
        }
    }
    assert!(pages > 50, "{pages} pages spooled");
    // The same spool folder again: its pages would be read as the new run's, so it is refused.
    let again = live_ingest(
        lake.path(),
        &sim,
        &[
            "--page-size",
            "7",
            "--spool",
            spool.path().to_str().unwrap(),
        ],
    );
    assert_ne!(again.code, 0, "{}", again.stdout);
    assert!(
        again
            .stderr
            .contains("already holds pages of an earlier run")
            && again.stderr.contains(spool.path().to_str().unwrap()),
        "{}",
        again.stderr
    );
    drop(sim);

    // The tenant loses one assignment; the next live run closes it and nothing else.
    let later = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&sample_data(), later.path());
    let gone = crate::common::sample_page(
        "entitlementManagement/assignments/assignments-0003.json",
    )["value"][4]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        crate::common::remove_records(later.path(), |r| r.contains(&gone)
            && r.contains("\"assignmentPolicy\"")),
        1
    );
    let sim = start_sim(later.path(), &[]);
    let second = live_ingest(
        lake.path(),
        &sim,
        &["--page-size", "7", "--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    let s = second.json();
    assert_eq!(
        s["summary"]["ingest"]["snapshot_gaps"],
        serde_json::json!([]),
        "{s}"
    );
    assert_eq!(
        s["summary"]["ingest"]["tables"]["assignments"]["closed"], 1,
        "{s}"
    );
    let ids = crate::common::sql(
        lake.path(),
        &format!("select count(*) from assignments where id = '{gone}'"),
    );
    assert_eq!(ids, ["0"]);
}

/// `govlake job run` with `[job] graph = true`, against the simulator: a lake last fed more
/// than Graph's 30 days ago has an audit window Graph no longer serves; with
/// `log_analytics_workspace` the job backfills exactly that window and finishes clean,
/// without it the gap is left for a person (exit 1).
#[test]
fn a_job_ingests_live_and_backfills_an_aged_out_audit_window() {
    let sim = start_sim(&sample_data(), &["--retention-days", "30"]);
    let job = |workspace: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        assert_eq!(ingest(&lake, &[&sample_data()], &[]).code, 0);
        let newest = crate::common::sql(
            &lake,
            "select CAST(max(activity_date_time) AS BIGINT) from audit_events",
        );
        let newest: i64 = newest[0].parse().unwrap();
        let config = dir.path().join("govlake.toml");
        let mut text = format!(
            "[lake]\nlocation = {:?}\n[job]\ngraph = true\nalert_on = \"never\"\n",
            lake.to_string_lossy()
        );
        if let Some(ws) = workspace {
            text.push_str(&format!("log_analytics_workspace = {ws:?}\n"));
        }
        std::fs::write(&config, text).unwrap();
        let r = run(govlake()
            .arg("--config")
            .arg(&config)
            .args(["--format", "json", "job", "run"])
            .env("GOVLAKE_GRAPH_ENDPOINT", &sim.url)
            .env("AZURE_AUTHORITY_HOST", &sim.url)
            .env("GOVLAKE_LOG_ANALYTICS_ENDPOINT", &sim.url)
            .env("AZURE_TENANT_ID", "woodgrove")
            .env("AZURE_CLIENT_ID", "govlake-test")
            .env("AZURE_CLIENT_SECRET", "sim-secret"));
        (r, newest, dir)
    };
    let (r, newest, _dir) = job(Some("0b1f7c2e-5d1a-4c55-9d4e-3c2b1a0f9e8d"));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let doc = r.json();
    let steps = doc["summary"]["steps"].as_array().unwrap();
    let find = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("{name}: {steps:?}"))
    };
    let graph = find("ingest graph");
    assert_eq!(graph["outcome"], "ok", "{graph}");
    assert!(
        graph["detail"].as_str().unwrap().contains("backfilled"),
        "{graph}"
    );
    let backfill = find("backfill log analytics");
    assert_eq!(backfill["outcome"], "ok", "{backfill}");
    // The window: from the lake's newest event less the 15-minute overlap (to the
    // microsecond the watermark keeps).
    let detail = backfill["detail"].as_str().unwrap();
    let from = detail
        .strip_prefix("audit events from ")
        .and_then(|d| d.split(' ').next())
        .and_then(govlake::time::parse_ts)
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(
        (from - (newest - 15 * 60 * 1_000_000)).abs() < 1_000_000,
        "{detail}: expected from {}",
        govlake::time::fmt_ts(newest - 15 * 60 * 1_000_000)
    );
    assert_eq!(find("changes")["outcome"], "ok");

    let (r, _, _dir) = job(None);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let doc = r.json();
    let graph = doc["summary"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "ingest graph")
        .unwrap()
        .clone();
    assert_eq!(graph["outcome"], "attention", "{graph}");
}
