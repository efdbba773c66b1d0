//! The benchmark's second export layout (`bench/relayout.py`, measured by `bench/suite.sh
//! neutral:SIZE`): an export rewritten to neutral file names (`export-000001.json`, the entity
//! told only by `@odata.context`), other page sizes and another order of collections must
//! ingest to the same lake as the original, with every list's page chain whole — else the
//! benchmark would compare two layouts doing different work.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Pages of an export folder that are Graph list pages: (file name, context, records, has a
/// next link), in file name order.
fn list_pages(dir: &Path) -> Vec<(String, String, usize, bool)> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name() != "_export.json")
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let page: serde_json::Value = serde_json::from_str(&text).ok()?;
            let context = page.get("@odata.context")?.as_str()?.to_string();
            let records = page["value"].as_array().expect("a list page").len();
            let name = e.path().strip_prefix(dir).unwrap().display().to_string();
            Some((
                name,
                context,
                records,
                page.get("@odata.nextLink").is_some(),
            ))
        })
        .collect()
}

fn relayout(out: &Path, args: &[&str]) {
    let python = std::env::var("GOVLAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let r = Command::new(&python)
        .arg(root().join("bench/relayout.py"))
        .arg(sample_data())
        .arg(out)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): run this test with tests/run.sh"));
    assert!(
        r.status.success(),
        "relayout.py failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[test]
#[ignore = "needs Python 3 for bench/relayout.py: tests/run.sh runs the ignored tests"]
fn an_export_relaid_out_with_neutral_names_ingests_to_the_same_lake() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original-lake");
    let r = ingest(&original, &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut per_context: BTreeMap<String, usize> = BTreeMap::new();
    for (_, context, n, _) in list_pages(&sample_data()) {
        *per_context.entry(context).or_default() += n;
    }
    let audit = |c: &str| c.ends_with("/directoryAudits");

    for (name, page, args) in [
        (
            "audit-last",
            3,
            vec!["--page", "3", "--order", "audit-last"],
        ),
        (
            "interleaved",
            50,
            vec!["--page", "50", "--order", "interleaved", "--seed", "7"],
        ),
    ] {
        let export = dir.path().join(name);
        relayout(&export, &args);

        // The layout, checked from the files: neutral names numbered without a gap, pages of at
        // most `page` records, every collection's records all there, exactly one page of each
        // without a next link and that one its last.
        let pages = list_pages(&export);
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        let mut lasts_of: BTreeMap<String, usize> = BTreeMap::new();
        for (i, (file, context, n, next)) in pages.iter().enumerate() {
            assert_eq!(file, &format!("export-{:06}.json", i + 1), "{name}");
            assert!(*n <= page, "{name}: {file} holds {n} records");
            *got.entry(context.clone()).or_default() += n;
            let lasts = lasts_of.entry(context.clone()).or_default();
            assert!(
                *lasts == 0,
                "{name}: {file} follows the last page of {context}"
            );
            *lasts += usize::from(!next);
        }
        assert_eq!(got, per_context, "{name}: records per collection");
        assert!(lasts_of.values().all(|n| *n == 1), "{name}");
        if name == "audit-last" {
            let first_audit = pages.iter().position(|p| audit(&p.1)).unwrap();
            assert!(pages[first_audit..].iter().all(|p| audit(&p.1)), "{name}");
            assert!(
                pages.len() > per_context.len(),
                "{name}: collections split into pages"
            );
        } else {
            // Interleaved: some collection's pages are not contiguous.
            let runs = pages.windows(2).filter(|w| w[0].1 != w[1].1).count();
            assert!(
                runs >= per_context.len(),
                "{name}: {runs} changes of collection"
            );
        }

        let lake = dir.path().join(format!("{name}-lake"));
        let r = ingest(&lake, &[&export], &[]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let summary = &r.json()["summary"];
        assert_eq!(summary["snapshot_gaps"], serde_json::json!([]), "{name}");
        assert_eq!(summary["rejected"], 0, "{name}");
        assert_same_lake(&original, &lake);
    }
}
