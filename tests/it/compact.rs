//! Compaction (issue 18): a large ingest rewrites the small files its chunks left into few
//! large ones, and `govlake optimize` does it on demand, without changing a row of any table
//! or view. Checked against the same ingest left uncompacted.

use std::path::Path;

use crate::common::{assert_same_dump, assert_same_lake, dump, govlake, ingest, run, sql};

/// `govlake optimize --format json` on `lake` (with `extra` options): table → its report.
fn optimize(lake: &Path, extra: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let r = run(govlake()
        .arg("--lake")
        .arg(lake)
        .args(["--format", "json", "optimize"])
        .args(extra));
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// Every governance view without parameters, as sorted rows.
fn views(lake: &Path) -> Vec<(String, Vec<String>)> {
    govlake::query::views::embedded()
        .into_iter()
        .filter(|q| !q.sql.contains('$'))
        .map(|q| {
            let mut rows = sql(lake, &format!("SELECT * FROM {}", q.name));
            rows.sort();
            (q.name, rows)
        })
        .collect()
}

fn files(report: &serde_json::Map<String, serde_json::Value>, table: &str) -> u64 {
    report[table]["files_before"].as_u64().unwrap()
}

/// The largest data file of `table` (what a compaction wrote) is Zstandard-compressed,
/// with no statistics for the JSON columns: the table's own settings. (delta-rs's default
/// writes statistics on every column; a file does not record the Zstandard level, so the
/// statistics are what tells the two apart.)
fn assert_compacted_with_zstd(table: &Path) {
    use deltalake::parquet::basic::{Compression, ZstdLevel};
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let largest = walkdir::WalkDir::new(table)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        // the log's checkpoints are Parquet too
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_delta_log"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a Parquet file");
    let reader = SerializedFileReader::new(std::fs::File::open(&largest).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    for column in group.columns() {
        assert_eq!(
            column.compression(),
            Compression::ZSTD(ZstdLevel::try_new(1).unwrap()),
            "{}: {}",
            largest.display(),
            column.column_path()
        );
    }
    let raw = group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "target_resources")
        .expect("a target_resources column");
    assert!(raw.statistics().is_none(), "{:?}", raw.statistics());
}

#[test]
fn compaction_by_the_ingest_and_by_optimize_changes_no_row() {
    let data = tempfile::tempdir().unwrap();
    let tenant = data.path().join("t");
    let generated = run(govlake()
        .args(["generate", "--users", "1500", "--seed", "3", "--out"])
        .arg(&tenant));
    assert_eq!(generated.code, 0, "{}", generated.stderr);

    // The same ingest in small chunks, once compacting past 4 small files, once never.
    let compacted = tempfile::tempdir().unwrap();
    let r = ingest(
        compacted.path(),
        &[&tenant],
        &[
            "--chunk-rows",
            "200",
            "--commit-rows",
            "200",
            "--compact-past-small-files",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = r.json();
    let done = summary["summary"]["compacted"].as_array().unwrap();
    let audit = done
        .iter()
        .find(|c| c["table"] == "audit_events")
        .unwrap_or_else(|| panic!("audit_events not compacted: {done:#?}"));
    assert!(
        audit["files_removed"].as_u64().unwrap() > audit["files_added"].as_u64().unwrap(),
        "{audit}"
    );
    assert!(
        done.iter().all(|c| c["table"] != "_raw"),
        "the ingest leaves _raw to optimize"
    );
    assert_compacted_with_zstd(&compacted.path().join("audit_events"));

    let plain = tempfile::tempdir().unwrap();
    let r = ingest(
        plain.path(),
        &[&tenant],
        &[
            "--chunk-rows",
            "200",
            "--commit-rows",
            "200",
            "--compact-past-small-files",
            "1000000",
            "--compact-past-small-files-in-a-partition",
            "1000000",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["summary"].get("compacted").is_none());

    assert_same_lake(compacted.path(), plain.path());
    let plain_views = views(plain.path());
    assert!(plain_views.iter().any(|(_, rows)| !rows.is_empty()));
    assert_eq!(views(compacted.path()), plain_views);
    let (after_ingest, uncompacted) = (
        optimize(compacted.path(), &["--dry-run"]),
        optimize(plain.path(), &["--dry-run"]),
    );
    assert!(
        files(&after_ingest, "audit_events") < files(&uncompacted, "audit_events"),
        "{after_ingest:#?} vs {uncompacted:#?}"
    );

    // On demand: the uncompacted lake, every table but _raw.
    let before = dump(plain.path());
    let first = optimize(plain.path(), &[]);
    assert!(!first.contains_key("_raw"), "{first:#?}");
    assert!(first["audit_events"]["files_removed"].as_u64().unwrap() > 1);
    assert!(first["audit_events"]["version"].is_i64());
    assert_same_dump(&dump(plain.path()), &before);
    assert_eq!(views(plain.path()), plain_views);
    let second = optimize(plain.path(), &[]);
    for (table, c) in &second {
        assert_eq!(c["files_removed"], 0, "{table} compacted twice: {c}");
    }
    let raw = optimize(plain.path(), &["--table", "_raw"]);
    assert!(
        raw["_raw"]["files_removed"].as_u64().unwrap() > 1,
        "{raw:#?}"
    );
    assert_same_dump(&dump(plain.path()), &before);
}

#[test]
fn optimize_names_an_unknown_table() {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&crate::common::sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r =
        run(govlake()
            .arg("--lake")
            .arg(lake.path())
            .args(["optimize", "--table", "audit_event"]));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("`audit_event` is not a lake table"),
        "{}",
        r.stderr
    );
}

/// The most small files any partition folder of `table` holds, counted on disk (a lake
/// never compacted, so every data file is in its current version).
fn most_files_in_a_folder(table: &Path) -> usize {
    let mut per_folder = std::collections::HashMap::<std::path::PathBuf, usize>::new();
    for entry in walkdir::WalkDir::new(table) {
        let path = entry.unwrap().into_path();
        let is_data = path.extension().is_some_and(|e| e == "parquet")
            && !path.components().any(|c| c.as_os_str() == "_delta_log");
        if is_data {
            *per_folder
                .entry(path.parent().unwrap().to_path_buf())
                .or_default() += 1;
        }
    }
    per_folder.into_values().max().unwrap_or(0)
}

/// A large ingest spreads each commit over every month it covers: the run compacts a table
/// once one partition holds `--compact-past-small-files-in-a-partition` small files, even
/// when the table as a whole is below `--compact-past-small-files`, and not one file sooner.
#[test]
fn the_ingest_compacts_a_table_when_one_partition_holds_many_small_files() {
    let data = tempfile::tempdir().unwrap();
    let tenant = data.path().join("t");
    let generated = run(govlake()
        .args(["generate", "--users", "600", "--seed", "5", "--out"])
        .arg(&tenant));
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let ingest_with = |in_a_partition: usize| {
        let lake = tempfile::tempdir().unwrap();
        let r = ingest(
            lake.path(),
            &[&tenant],
            &[
                "--chunk-rows",
                "150",
                "--commit-rows",
                "150",
                "--compact-past-small-files",
                "1000000",
                "--compact-past-small-files-in-a-partition",
                &in_a_partition.to_string(),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let compacted = r.json()["summary"]["compacted"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (lake, compacted)
    };

    let (plain, none) = ingest_with(1_000_000);
    assert!(none.is_empty(), "{none:#?}");
    let most = most_files_in_a_folder(&plain.path().join("audit_events"));
    assert!(
        most >= 3,
        "too few commits to tell: {most} files in a partition"
    );
    let report = optimize(plain.path(), &["--dry-run"]);
    assert_eq!(
        report["audit_events"]["most_small_files_in_a_partition"], most as u64,
        "{report:#?}"
    );
    assert!(report["audit_events"]["small_files"].as_u64().unwrap() > most as u64);

    // One file short of the most any partition holds: audit_events is left as written.
    let (_short, compacted) = ingest_with(most + 1);
    assert!(
        compacted.iter().all(|c| c["table"] != "audit_events"),
        "{compacted:#?}"
    );
    // At it: compacted, and every partition is left in one file.
    let (at, compacted) = ingest_with(most);
    let audit = compacted
        .iter()
        .find(|c| c["table"] == "audit_events")
        .unwrap_or_else(|| panic!("audit_events not compacted: {compacted:#?}"));
    assert_eq!(audit["most_small_files_in_a_partition"], most as u64);
    let after = optimize(at.path(), &["--dry-run"]);
    assert_eq!(
        after["audit_events"]["most_small_files_in_a_partition"], 1,
        "{after:#?}"
    );
    assert_same_lake(at.path(), plain.path());
}
