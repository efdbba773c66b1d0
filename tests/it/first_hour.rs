//! What a new user meets in the first hour: a read-only command pointed at a path with no
//! lake (a typo in `--lake`) says so and creates nothing; an unknown table or view names the
//! closest ones; an unknown period or config key names the spelling to use.

use std::path::Path;

use crate::common::{govlake, ingest, run, sample_data, sample_lake};

/// Every file and folder under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn read_only_commands_on_a_path_without_a_lake_create_nothing_and_say_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("typo").join("lake");
    // An existing empty folder is no lake either, and stays empty.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let pack = out.path().join("pack");
    let pack = pack.to_str().unwrap();
    let report_out = out.path().to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["sql", "-c", "select 1"],
        vec!["sql", "--list"],
        vec!["tables"],
        vec![
            "report",
            "--package",
            "Finance",
            "--period",
            "2026Q3",
            "--out",
            report_out,
        ],
        vec!["pack", "--period", "2026Q3", "--out", pack, "--unsigned"],
        vec![
            "sample",
            "--view",
            "approval_trail",
            "--size",
            "2",
            "--seed",
            "1",
        ],
        vec!["vacuum", "--dry-run"],
        vec!["vacuum"],
    ];
    for lake in [&typo, &empty] {
        for args in &commands {
            let r = run(govlake().arg("--lake").arg(lake).args(args));
            assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
            let canonical = std::fs::canonicalize(tmp.path()).unwrap();
            let shown = canonical.join(lake.strip_prefix(tmp.path()).unwrap());
            assert!(
                r.stderr
                    .contains(&format!("error: no govlake lake at {}", shown.display())),
                "{args:?}: {}",
                r.stderr
            );
            assert!(
                r.stderr.contains("ingest --from") && r.stderr.contains("govlake demo"),
                "{args:?}: {}",
                r.stderr
            );
            assert!(
                !tmp.path().join("typo").exists(),
                "{args:?} created the typo path"
            );
            assert!(tree(&empty).is_empty(), "{args:?} wrote {:?}", tree(&empty));
        }
    }
    // The JSON envelope carries the same message.
    let r = run(govlake()
        .arg("--lake")
        .arg(&typo)
        .args(["--format", "json", "tables"]));
    assert_eq!(r.code, 2);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no govlake lake at ")
    );
    // It names the command clap matched: `job run` is the `job` command (its config file is
    // missing, so it stops before anything is made).
    assert_eq!(r.json()["command"], "tables");
    let r = run(govlake()
        .arg("--config")
        .arg(tmp.path().join("missing.toml"))
        .args(["--format", "json", "job", "run"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.json()["command"], "job", "{}", r.stdout);
    assert_eq!(r.json()["status"], "error", "{}", r.stdout);
    // The default location (./govlake-data) is not created either.
    let r = run(govlake()
        .current_dir(tmp.path())
        .args(["sql", "-c", "select 1"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!tmp.path().join("govlake-data").exists());
    // A file:// URL the same.
    let url = format!("file://{}/", canonical_missing(&typo));
    let r = run(govlake().args(["--lake", &url, "tables"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no govlake lake at"), "{}", r.stderr);
    assert!(!tmp.path().join("typo").exists());
    // Ingest is what creates a lake; then the same commands work.
    let r = ingest(&typo, &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(govlake().arg("--lake").arg(&typo).arg("tables"));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `path` made absolute through its nearest existing (canonical) parent.
fn canonical_missing(path: &Path) -> String {
    let mut existing = path;
    let mut rest = vec![];
    while !existing.exists() {
        rest.push(existing.file_name().unwrap());
        existing = existing.parent().unwrap();
    }
    let mut p = std::fs::canonicalize(existing).unwrap();
    for part in rest.iter().rev() {
        p.push(part);
    }
    p.display().to_string()
}

#[test]
fn unknown_tables_periods_and_config_keys_name_what_was_meant() {
    let lake = sample_lake();
    let sql = |query: &str| {
        run(govlake()
            .arg("--lake")
            .arg(lake.path())
            .args(["sql", "-c", query]))
    };

    // A misspelt table: the closest names, and where to list them all.
    let r = sql("select count(*) from acess_packages");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "No table or view is called `acess_packages`: did you mean `access_packages`"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`govlake sql --list`"), "{}", r.stderr);
    assert!(!r.stderr.contains("read-only: no DDL"), "{}", r.stderr);
    // A misspelt view likewise (sod_violations is a view of queries/).
    let r = sql("select * from sod_violation");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("did you mean `sod_violations`"),
        "{}",
        r.stderr
    );
    // Nothing close: no guess, still the pointer to --list.
    let r = sql("select * from zzzzqqqq");
    assert!(
        r.stderr
            .contains("No table or view is called `zzzzqqqq`: `govlake sql --list`"),
        "{}",
        r.stderr
    );
    // Any other planning error keeps its cause, shown once.
    let r = sql("select no_such_column from users");
    assert_eq!(r.code, 2);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "a line repeats: {}", r.stderr);
    assert!(r.stderr.contains("no_such_column"), "{}", r.stderr);

    // A period spelt quarter-first.
    let out = tempfile::tempdir().unwrap();
    let r = run(govlake().arg("--lake").arg(lake.path()).args([
        "report",
        "--package",
        "Finance",
        "--period",
        "Q3 2026",
        "--out",
        out.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`Q3 2026` is not a quarter: did you mean 2026Q3?"),
        "{}",
        r.stderr
    );

    // A config key that does not exist.
    let config = out.path().join("govlake.toml");
    std::fs::write(&config, "[lake]\nlocaton = \"/srv/lake\"\n").unwrap();
    let r = run(govlake()
        .arg("--config")
        .arg(&config)
        .arg("--lake")
        .arg(lake.path())
        .arg("tables"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`locaton` is not a config key: did you mean `location`?"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&config.display().to_string()),
        "{}",
        r.stderr
    );
}
