//! `govlake sql` and the governance views over the sample tenant: the story's numbers,
//! golden results of every view, read-only enforcement and parameter binding.

use std::path::Path;

use crate::common::*;

fn sql_cli(lake: &Path, args: &[&str]) -> Run {
    run(govlake().arg("--lake").arg(lake).arg("sql").args(args))
}

/// `govlake sql -c SQL -o csv EXTRA...`
fn csv_query(lake: &Path, sql: &str, extra: &[&str]) -> Run {
    let mut args = vec!["-c", sql, "-o", "csv"];
    args.extend_from_slice(extra);
    sql_cli(lake, &args)
}

#[test]
fn the_eleven_dual_holders_are_sod_violations() {
    let lake = sample_lake();
    let r = csv_query(lake.path(), "select count(*) as n from sod_violations", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "n\n11\n");
    let r = csv_query(
        lake.path(),
        "select count(*) as n from sod_violations where grandfathered",
        &[],
    );
    assert_eq!(
        r.stdout, "n\n11\n",
        "all eleven predate the incompatibility (declared 2026-03-01)"
    );
    let r = csv_query(
        lake.path(),
        "select distinct incompatibility_declared_at from sod_violations",
        &[],
    );
    assert_eq!(
        r.stdout,
        "incompatibility_declared_at\n2026-03-01T10:00:00.000001Z\n"
    );
}

#[test]
fn every_view_has_a_golden_result_on_the_sample_tenant() {
    let lake = sample_lake();
    let list = sql_cli(lake.path(), &["--list", "--format", "json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let items = list.json()["summary"].as_array().unwrap().clone();
    let mut views = 0;
    for item in items.iter().filter(|i| i["kind"] == "view") {
        let name = item["name"].as_str().unwrap();
        // The query file itself, so its ORDER BY is what the snapshot shows (`select *`
        // over a view is not bound by the view's ORDER BY). One thread and four must agree:
        // the order is total, not an accident of partitioning.
        let file = root().join(format!("queries/{name}.sql"));
        let ordered = |threads: &str| {
            let r = run(govlake()
                .env("GOVLAKE_THREADS", threads)
                .arg("--lake")
                .arg(lake.path())
                .args(["sql", "-o", "csv", "-f"])
                .arg(&file));
            assert_eq!(r.code, 0, "{name}: {}", r.stderr);
            r.stdout
        };
        let one = ordered("1");
        assert_eq!(
            one,
            ordered("4"),
            "{name}: the order depends on the threads"
        );
        // The view holds the same rows.
        let r = sql_cli(
            lake.path(),
            &["-c", &format!("select * from {name}"), "-o", "csv"],
        );
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let sorted = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines[1..].sort();
            lines
        };
        assert_eq!(
            sorted(&r.stdout),
            sorted(&one),
            "{name}: the view and its file differ"
        );
        insta::assert_snapshot!(format!("view_{name}"), one.trim_end_matches('\n'));
        views += 1;
    }
    // Every query file without `$name` parameters is a view, and every view was checked.
    let mut expected: Vec<String> = std::fs::read_dir(root().join("queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .any(|l| {
                    l.match_indices('$').any(|(i, _)| {
                        l[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    })
                })
        })
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    let mut listed: Vec<String> = items
        .iter()
        .filter(|i| i["kind"] == "view")
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(
        listed, expected,
        "views listed vs parameter-free query files"
    );
    assert_eq!(views, expected.len());
    assert!(
        items
            .iter()
            .all(|i| i["kind"] != "view (unavailable: the lake lacks a table it reads)"),
        "{items:?}"
    );
}

#[test]
fn access_as_of_takes_a_bound_timestamp() {
    let lake = sample_lake();
    let file = root().join("queries/access_as_of.sql");
    let count = |as_of: &str| {
        let r = run(govlake()
            .arg("--lake")
            .arg(lake.path())
            .args(["sql", "-o", "csv", "-f"])
            .arg(&file)
            .arg("--param")
            .arg(format!("as_of={as_of}")));
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.lines().count() - 1
    };
    let (before, during, end) = (
        count("2025-12-31T00:00:00Z"),
        count("2026-03-01T00:00:00Z"),
        count("2026-09-30T23:59:59Z"),
    );
    assert_eq!(before, 0, "nothing was granted before 2026");
    assert!(
        during >= 22,
        "the eleven clerks hold two packages each by March: {during}"
    );
    assert!(end > during, "{end} > {during}");
    let missing = run(govlake()
        .arg("--lake")
        .arg(lake.path())
        .args(["sql", "-f"])
        .arg(&file));
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("--param as_of="),
        "{}",
        missing.stderr
    );
}

#[test]
fn parameters_are_bound_not_pasted() {
    let lake = sample_lake();
    let r = csv_query(
        lake.path(),
        "select count(*) as n from access_packages where display_name = $name",
        &["--param", "name=x' OR '1'='1"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "n\n0\n");
    let r = csv_query(
        lake.path(),
        "select count(*) as n from access_packages where display_name = $name",
        &["--param", "name=Vendor Payment - Approver"],
    );
    assert_eq!(r.stdout, "n\n1\n");
}

#[test]
fn a_dollar_in_a_string_or_quoted_name_is_not_a_parameter() {
    let lake = sample_lake(); // `sql` needs a lake, even for queries that read none of it
    let r = csv_query(
        lake.path(),
        "select '$x' as s, \"$y\" as n -- $z\n from (select 1 as \"$y\")",
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "s,n\n$x,1\n");
    // A real one still needs its value.
    let r = csv_query(lake.path(), "select '$x' as s, $v as v", &[]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--param v=") && !r.stderr.contains("--param x"),
        "{}",
        r.stderr
    );
}

/// The data rows of `sql -o table` output.
fn table_rows(stdout: &str) -> Vec<&str> {
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    lines[1..].to_vec()
}

#[test]
fn table_output_stops_at_its_row_limit_and_counts_the_rest() {
    let lake = sample_lake(); // `sql` needs a lake, even for queries that read none of it
    let series = "select value from generate_series(1, 100000)";
    let r = sql_cli(lake.path(), &["-c", series, "--limit", "5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows: Vec<String> = table_rows(&r.stdout)
        .iter()
        .map(|l| l.trim_matches(|c| c == '|' || c == ' ').to_string())
        .collect();
    assert_eq!(rows, ["1", "2", "3", "4", "5"]);
    assert!(r.stderr.contains("99995 row(s) left out"), "{}", r.stderr);
    // The table's default limit; the streamed formats write every row unless told.
    let r = sql_cli(lake.path(), &["-c", series]);
    assert_eq!(table_rows(&r.stdout).len(), 1000);
    assert!(r.stderr.contains("99000 row(s) left out"), "{}", r.stderr);
    let r = sql_cli(lake.path(), &["-c", series, "-o", "csv"]);
    assert_eq!(r.stdout.lines().count(), 100_001);
    assert!(!r.stderr.contains("left out"), "{}", r.stderr);
    let r = sql_cli(lake.path(), &["-c", series, "-o", "csv", "--limit", "3"]);
    assert_eq!(r.stdout, "value\n1\n2\n3\n");
    assert!(r.stderr.contains("99997 row(s) left out"), "{}", r.stderr);
}

#[test]
fn a_query_over_its_memory_limit_fails_with_a_clear_error() {
    let lake = sample_lake(); // `sql` needs a lake, even for queries that read none of it
    let sort = "select value from generate_series(1, 3000000) order by value desc";
    // From the flag, the environment and the config file alike.
    let config = lake.path().join("govlake.toml");
    std::fs::write(&config, "[query]\nmemory_limit = \"1M\"\n").unwrap();
    let mut from_flag = govlake();
    from_flag.args(["sql", "-c", sort, "-o", "csv", "--memory-limit", "1M"]);
    let mut from_env = govlake();
    from_env
        .env("GOVLAKE_MEMORY_LIMIT", "1M")
        .args(["sql", "-c", sort, "-o", "csv"]);
    let mut from_config = govlake();
    from_config
        .env_remove("GOVLAKE_MEMORY_LIMIT")
        .arg("--config")
        .arg(&config)
        .args(["sql", "-c", sort, "-o", "csv"]);
    for mut cmd in [from_flag, from_env, from_config] {
        let r = run(cmd.arg("--lake").arg(lake.path()));
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("needs more memory than its limit of 1.0 MiB")
                && r.stderr.contains("--memory-limit"),
            "{}",
            r.stderr
        );
    }
    let r = sql_cli(lake.path(), &["-c", "select 1", "--memory-limit", "lots"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`lots` is not a memory size"),
        "{}",
        r.stderr
    );
    // Within the limit, the sort runs.
    let r = sql_cli(
        lake.path(),
        &[
            "-c",
            sort,
            "-o",
            "csv",
            "--limit",
            "1",
            "--memory-limit",
            "1G",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "value\n3000000\n");
}

#[test]
fn a_sort_over_its_memory_limit_spills_to_disk_and_finishes() {
    let lake = sample_lake();
    // 3 million BIGINTs (~23 MiB) sorted under a 16 MiB limit: the sort writes runs to the
    // temporary folder and merges them, instead of growing or failing.
    let sort = "select value from generate_series(1, 3000000) order by value desc";
    let spills = |stdout: &str| -> u64 {
        stdout
            .split("spill_count=")
            .skip(1)
            .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    };
    let explain = format!("explain analyze {sort}");
    let r = csv_query(lake.path(), &explain, &["--memory-limit", "16M"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(spills(&r.stdout) > 0, "no spill under 16 MiB: {}", r.stdout);
    let r = csv_query(lake.path(), &explain, &["--memory-limit", "1G"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(spills(&r.stdout), 0, "spilled under 1 GiB: {}", r.stdout);
    // The spilled sort's answer: every value once, in order.
    let r = csv_query(lake.path(), sort, &["--memory-limit", "16M"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let values: Vec<u64> = r
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values.len(), 3_000_000);
    assert!(
        values.iter().rev().copied().eq(1..=3_000_000),
        "not every value in order"
    );
}

#[test]
fn datafusion_settings_come_from_the_environment() {
    let lake = sample_lake();
    let setting = "select value from information_schema.df_settings \
                   where name = 'datafusion.execution.batch_size'";
    let r = csv_query(lake.path(), setting, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "value\n8192\n");
    let with_batch_size = |size: &str, sql: &str| {
        run(govlake()
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", size)
            .arg("--lake")
            .arg(lake.path())
            .args(["sql", "-c", sql, "-o", "csv"]))
    };
    let r = with_batch_size("1024", setting);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "value\n1024\n");
    let r = with_batch_size("many", "select 1");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("DATAFUSION_* environment variable") && r.stderr.contains("many"),
        "{}",
        r.stderr
    );
}

#[test]
fn ddl_dml_copy_and_set_are_refused() {
    let lake = sample_lake();
    for statement in [
        "create table t as select 1",
        "create external table t stored as csv location '/etc/passwd'",
        "insert into access_packages select * from access_packages",
        "drop view sod_violations",
        "copy access_packages to '/tmp/x.csv'",
        "set datafusion.execution.batch_size = 1",
    ] {
        let r = sql_cli(lake.path(), &["-c", statement]);
        assert_eq!(r.code, 2, "{statement} was not refused: {}", r.stdout);
        assert!(r.stderr.contains("read-only"), "{statement}: {}", r.stderr);
    }
}

#[test]
fn bad_queries_exit_2_with_a_clear_message() {
    let lake = sample_lake();
    let cases = [
        ("select * from no_such_table", "no_such_table"),
        (
            "select no_such_column from access_packages",
            "no_such_column",
        ),
        ("selec 1", "SQL"),
    ];
    for (q, needle) in cases {
        let r = sql_cli(lake.path(), &["-c", q]);
        assert_eq!(r.code, 2, "{q}");
        assert!(r.stderr.contains(needle), "{q}: {}", r.stderr);
    }
    let r = sql_cli(lake.path(), &["-c", "select 1", "--param", "novalue"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("name=value"), "{}", r.stderr);
}

#[test]
fn csv_output_neutralises_formulas() {
    let lake = sample_lake();
    let r = csv_query(
        lake.path(),
        "select justification from assignment_requests where justification like '+cmd%' limit 1",
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cell = r.stdout.lines().nth(1).unwrap_or_default().to_string();
    assert!(cell.starts_with("'+cmd|"), "{cell}");
}

#[test]
fn as_of_reads_every_table_as_it_was() {
    let lake = sample_lake();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A later export in which the payment approver package lost its incompatibility.
    let later = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/accessPackages-0001.json");
    for p in doc["value"].as_array_mut().unwrap() {
        p["incompatibleAccessPackages"] = serde_json::json!([]);
    }
    std::fs::write(later.path().join("accessPackages.json"), doc.to_string()).unwrap();
    let r = ingest(
        lake.path(),
        &[later.path()],
        &["--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let count = |extra: &[&str]| {
        let r = csv_query(
            lake.path(),
            "select count(*) as n from sod_violations",
            extra,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    };
    assert_eq!(count(&[]), "n\n0\n", "the incompatibility is gone now");
    assert_eq!(
        count(&["--as-of", &between]),
        "n\n11\n",
        "but it held before the second ingest"
    );
    let r = sql_cli(lake.path(), &["-c", "select 1", "--as-of", "last tuesday"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--as-of"), "{}", r.stderr);
}

/// The Delta version of each table, from `govlake tables --format json`.
fn table_versions(lake: &Path) -> std::collections::BTreeMap<String, i64> {
    let r = run(govlake()
        .arg("--lake")
        .arg(lake)
        .args(["--format", "json", "tables"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json()["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["version"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn as_of_pins_tables_to_delta_versions() {
    let lake = sample_lake();
    let before = table_versions(lake.path());
    let pinned = before["incompatible_access_packages"];
    // A later export in which no package declares an incompatibility any more.
    let later = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/accessPackages-0001.json");
    for p in doc["value"].as_array_mut().unwrap() {
        p["incompatibleAccessPackages"] = serde_json::json!([]);
    }
    std::fs::write(later.path().join("accessPackages.json"), doc.to_string()).unwrap();
    let r = ingest(
        lake.path(),
        &[later.path()],
        &["--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(table_versions(lake.path())["incompatible_access_packages"] > pinned);

    let count = |as_of: &str| {
        csv_query(
            lake.path(),
            "select count(*) as n from sod_violations",
            &["--as-of", as_of],
        )
    };
    let r = count(&format!("incompatible_access_packages={pinned}"));
    assert_eq!((r.code, r.stdout.as_str()), (0, "n\n11\n"), "{}", r.stderr);

    let r = count("incompatible_access_packages=999");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("`incompatible_access_packages` version 999 is no longer available"),
        "{}",
        r.stderr
    );
    let r = count("no_such_table=1");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`no_such_table` is not a lake table"),
        "{}",
        r.stderr
    );
    let r = count("3");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("per table"), "{}", r.stderr);
}

#[test]
fn parquet_output_holds_the_rows_and_types() {
    use deltalake::arrow::datatypes::DataType;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let lake = sample_lake();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("sod.parquet");
    let r = sql_cli(
        lake.path(),
        &[
            "-c",
            "select * from sod_violations",
            "-o",
            "parquet",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("11 row(s) written to"), "{}", r.stderr);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 11);
    let schema = batches[0].schema();
    assert!(matches!(
        schema
            .field_with_name("user_object_id")
            .unwrap()
            .data_type(),
        DataType::Utf8 | DataType::Utf8View
    ));
    assert!(matches!(
        schema
            .field_with_name("both_held_since")
            .unwrap()
            .data_type(),
        DataType::Timestamp(_, _)
    ));
}

#[test]
fn a_granted_request_without_its_approval_is_flagged() {
    let full = sample_lake();
    let flagged = |lake: &Path| {
        sql(
            lake,
            "select distinct request_id from approval_trail where approval_missing order by 1",
        )
    };
    assert_eq!(
        flagged(full.path()),
        Vec::<String>::new(),
        "the sample's grants are approved"
    );
    let request = sql(
        full.path(),
        "select min(request_id) from approval_trail \
         where step = 'approved' and request_type = 'userAdd' and request_state = 'delivered'",
    )
    .remove(0);

    // The same tenant, but the approval events of that one request were never captured.
    let export = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), export.path());
    let removed = remove_records(export.path(), |text| {
        text.contains(request.as_str())
            && text.contains("Approve access package assignment request")
    });
    assert!(removed > 0);
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[export.path()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(flagged(lake.path()), vec![request]);
    let admin = sql(
        lake.path(),
        "select count(distinct request_id) from approval_trail where admin_direct_grant",
    );
    let admin_requests = sql(
        lake.path(),
        "select count(*) from assignment_requests where request_type = 'adminAdd'",
    );
    assert_eq!(admin, admin_requests);
}

/// Shapes the engine answers wrongly whatever the plan are refused, with the way to write
/// them; written that way they run and give the right answer.
#[test]
fn misparsed_and_miscounted_shapes_are_refused_with_the_way_to_write_them() {
    let lake = sample_lake();
    for (sql, says) in [
        (
            "select count(*) from catalogs where id is distinct from 'x' and false",
            "(a IS DISTINCT FROM b) AND c",
        ),
        (
            "select x from (values (1), (1), (2)) a(x) intersect all select 1",
            "INTERSECT (distinct rows)",
        ),
    ] {
        let r = csv_query(lake.path(), sql, &[]);
        assert_eq!(r.code, 2, "{sql}: {}", r.stdout);
        assert!(r.stderr.contains(says), "{sql}: {}", r.stderr);
    }
    // Parenthesized: `false` makes the filter false for every catalog.
    let r = csv_query(
        lake.path(),
        "select count(*) as n from catalogs where (id is distinct from 'x') and false",
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "n\n0");
}
