//! `govlake tables` and `govlake demo`: what the lake holds, with reconciliation.

use crate::common::*;

#[test]
fn tables_lists_rows_versions_and_reconciliation() {
    let lake = tempfile::tempdir().unwrap();
    assert_eq!(ingest(lake.path(), &[&sample_data()], &[]).code, 0);
    let r = run(govlake()
        .arg("--lake")
        .arg(lake.path())
        .args(["--format", "json", "tables"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    let tables = doc["summary"]["tables"].as_array().unwrap();
    let get = |n: &str| {
        tables
            .iter()
            .find(|t| t["table"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(get("access_packages")["rows"], 3);
    assert_eq!(get("incompatible_access_packages")["rows"], 1);
    for t in tables {
        assert!(t["rows"].is_number(), "every table exists after a run: {t}");
        if let Some(l) = t["last_run"].as_object() {
            assert_eq!(l["reconciles"], true, "{t}");
        }
    }
    let events = get("audit_events");
    assert_eq!(events["rows"], events["last_run"]["stored"]);

    let text = run(govlake().arg("--lake").arg(lake.path()).arg("tables"));
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("audit_events") && text.stdout.contains("reconciles"),
        "{}",
        text.stdout
    );
}

#[test]
fn demo_ingests_the_sample_tenant_and_ends_with_table_counts() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("demo-lake");
    // In a folder of its own: the demo writes its pack (and key) beside where it runs, never
    // into the checkout.
    let r = run(govlake()
        .current_dir(dir.path())
        .arg("--lake")
        .arg(&lake)
        .arg("demo"));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        dir.path().join("govlake-demo-pack").is_dir(),
        "the pack is in the demo's folder"
    );
    assert!(
        r.stdout.contains("Ingested the sample tenant"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("access_packages") && r.stdout.contains("audit_events"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&lake.display().to_string()),
        "says where the lake is"
    );
    // A second demo stores nothing twice.
    let again = run(govlake()
        .current_dir(dir.path())
        .arg("--lake")
        .arg(&lake)
        .args(["--format", "json", "demo"]));
    assert_eq!(again.code, 0);
    for (t, c) in again.json()["summary"]["ingest"]["tables"]
        .as_object()
        .unwrap()
    {
        assert_eq!(c["stored"], 0, "{t}");
    }
}
