//! Shared helpers: run the binary, find fixtures, dump lake tables for comparison.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deltalake::arrow::util::pretty::pretty_format_batches;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The committed sample tenant.
pub fn sample_data() -> PathBuf {
    root().join("sample-data")
}

/// A `govlake` command with progress off.
pub fn govlake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_govlake"));
    c.env("GOVLAKE_NO_PROGRESS", "1")
        .env_remove("GOVLAKE_LAKE")
        .env_remove("RUST_LOG");
    c
}

/// The `govlake-graph-sim` binary: a crate of its own (pipeline/graph-sim), built by cargo into
/// the same folder as `govlake` (plain `cargo test` builds both).
pub fn sim_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_govlake"))
        .with_file_name(format!("govlake-graph-sim{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "`{}` is missing: run `cargo build -p govlake-graph-sim` (plain `cargo test` builds it)",
        path.display()
    );
    path
}

/// An ingest that commits every 1,000 records, followed by its input: many commits, so a
/// kill or a second writer lands between two of them.
pub const SMALL_COMMITS_INGEST: [&str; 6] = [
    "ingest",
    "--chunk-rows",
    "1000",
    "--commit-rows",
    "1000",
    "--from",
];

/// Starts `CMD` [`SMALL_COMMITS_INGEST`] `INPUT` in the background, output discarded (to be
/// killed mid-run).
pub fn spawn_ingest(mut cmd: Command, input: &Path) -> std::process::Child {
    cmd.args(SMALL_COMMITS_INGEST)
        .arg(input)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("govlake starts")
}

/// Result of a finished command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("govlake runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A fresh lake holding the sample tenant (a file ingest of sample-data/).
pub fn sample_lake() -> tempfile::TempDir {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    lake
}

/// `govlake --lake LAKE --format json ingest --from PATHS... EXTRA...`
pub fn ingest(lake: &Path, from: &[&Path], extra: &[&str]) -> Run {
    let mut c = govlake();
    c.arg("--lake")
        .arg(lake)
        .args(["--format", "json", "ingest", "--from"]);
    for f in from {
        c.arg(f);
    }
    c.args(extra);
    run(&mut c)
}

/// Every table of the lake as sorted text rows, without the bookkeeping that differs by run
/// (`_ingest_runs`; run ids and fetch times in `_raw` and `_rejects`).
pub fn dump(lake: &Path) -> Vec<(String, Vec<String>)> {
    let loc = govlake::lake::LakeLocation::resolve(
        lake.to_str().expect("utf-8 path"),
        Default::default(),
    )
    .expect("lake");
    dump_lake(&govlake::lake::Lake::new(loc))
}

/// [`dump`] of a lake anywhere (object storage too).
pub fn dump_lake(lake: &govlake::lake::Lake) -> Vec<(String, Vec<String>)> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = govlake::query::session(lake).await.expect("session");
        let mut out = Vec::new();
        for name in govlake::query::table_names() {
            if name == "_ingest_runs" || !ctx.table_exist(name.as_str()).unwrap_or(false) {
                continue;
            }
            let df = ctx.table(name.as_str()).await.expect("table");
            let cols: Vec<String> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| {
                    !matches!(
                        n.as_str(),
                        "run_id" | "fetched_at" | "rejected_at" | "source"
                    )
                })
                .collect();
            let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
            let batches = df
                .select_columns(&cols)
                .expect("select")
                .collect()
                .await
                .expect("collect");
            out.push((name, sorted_rows(&batches)));
        }
        out
    })
}

/// Record batches as sorted text rows (one per row, as the pretty printer draws them).
pub fn sorted_rows(batches: &[deltalake::arrow::array::RecordBatch]) -> Vec<String> {
    let text = pretty_format_batches(batches).expect("format").to_string();
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

/// Row count of one table.
pub fn count(lake: &Path, table: &str) -> usize {
    dump(lake)
        .into_iter()
        .find(|(n, _)| n == table)
        .map_or(0, |(_, r)| r.len())
}

/// Runs SQL against the lake (governance views registered) and returns rows as `|`-joined
/// text.
pub fn sql(lake: &Path, query: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let loc = govlake::lake::LakeLocation::resolve(
            lake.to_str().expect("utf-8 path"),
            Default::default(),
        )
        .expect("lake");
        let ctx = govlake::query::session(&govlake::lake::Lake::new(loc))
            .await
            .expect("session");
        govlake::query::views::register(&ctx, &govlake::query::views::embedded())
            .await
            .expect("views");
        let batches = ctx
            .sql(query)
            .await
            .expect("sql")
            .collect()
            .await
            .expect("collect");
        let text = pretty_format_batches(&batches).expect("format").to_string();
        text.lines()
            .filter(|l| l.starts_with("| "))
            .skip(1)
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    })
}

/// Copies a folder recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.expect("walk");
        let rel = e.path().strip_prefix(from).expect("prefix");
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Asserts two lakes hold the same rows, naming the first table that differs.
pub fn assert_same_lake(a: &Path, b: &Path) {
    assert_same_dump(&dump(a), &dump(b));
}

/// Asserts two dumps ([`dump`], [`dump_lake`]) hold the same rows.
pub fn assert_same_dump(da: &[(String, Vec<String>)], db: &[(String, Vec<String>)]) {
    let names = |d: &[(String, Vec<String>)]| d.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(da), names(db), "the lakes hold different tables");
    for ((name, ra), (_, rb)) in da.iter().zip(db) {
        if ra != rb {
            let only_a: Vec<_> = ra.iter().filter(|r| !rb.contains(r)).take(3).collect();
            let only_b: Vec<_> = rb.iter().filter(|r| !ra.contains(r)).take(3).collect();
            panic!(
                "table `{name}` differs: {} vs {} rows\nonly in the first:\n{only_a:#?}\nonly in the second:\n{only_b:#?}",
                ra.len(),
                rb.len()
            );
        }
    }
}

/// One page of the sample tenant, parsed, to edit into a later export.
pub fn sample_page(relative: &str) -> serde_json::Value {
    let path = sample_data().join(relative);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample page"))
        .expect("sample page is JSON")
}

/// Removes, from every Graph page and archive line (JSON Lines) under an export folder, the
/// records whose compact JSON text satisfies `drop`. Returns how many were removed.
pub fn remove_records(dir: &Path, drop: impl Fn(&str) -> bool) -> usize {
    let mut removed = 0;
    for e in walkdir::WalkDir::new(dir) {
        let e = e.expect("walk");
        if !e.file_type().is_file() || e.path().extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read");
        let (edited, n) = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut doc) if doc["value"].is_array() => {
                let list = doc["value"].as_array_mut().expect("array");
                let before = list.len();
                list.retain(|r| !drop(&r.to_string()));
                let n = before - list.len();
                (doc.to_string(), n)
            }
            // JSON Lines (diagnostic-settings archives; a one-line file parses as one object).
            _ => {
                let lines: Vec<&str> = text.lines().collect();
                let kept: Vec<&str> = lines.iter().copied().filter(|l| !drop(l)).collect();
                (kept.join("\n") + "\n", lines.len() - kept.len())
            }
        };
        if n > 0 {
            if edited.trim().is_empty() {
                // Nothing left: an archive blob with no lines is not written at all (an empty
                // file is a reject).
                std::fs::remove_file(e.path()).expect("remove");
            } else {
                std::fs::write(e.path(), edited).expect("write");
            }
            removed += n;
        }
    }
    removed
}
