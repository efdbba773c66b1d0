//! The lake on every backend: local disk, Azure Blob through Azurite and S3 through a moto
//! server (both started on 127.0.0.1 by tests/services/start.sh, which tests/run.sh
//! sources). The same conformance story runs on each: ingest → sql → pack → verify, a
//! `kill -9` mid-ingest then a rerun, and two ingests at once. Without the emulators (a bare
//! `cargo test`) the cloud backends are skipped with a note on stderr; tests/run.sh sets
//! GOVLAKE_TEST_SERVICES=required, under which a missing emulator fails the test instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{assert_same_dump, dump, dump_lake, govlake, run, sample_data, sorted_rows};

/// Azurite's published development account key.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Debug, Clone)]
pub enum Backend {
    Local,
    Azurite { endpoint: String },
    S3 { endpoint: String },
}

impl Backend {
    /// Local disk, plus every emulator tests/services/start.sh started.
    pub fn all() -> Vec<Backend> {
        let required = std::env::var("GOVLAKE_TEST_SERVICES").as_deref() == Ok("required");
        let mut out = vec![Backend::Local];
        for (var, make) in [
            (
                "GOVLAKE_TEST_AZURITE",
                (|e| Backend::Azurite { endpoint: e }) as fn(String) -> Backend,
            ),
            ("GOVLAKE_TEST_S3", |e| Backend::S3 { endpoint: e }),
        ] {
            match std::env::var(var) {
                Ok(e) => {
                    assert!(
                        e.starts_with("http://127.0.0.1:"),
                        "{var} must be a loopback address, got {e}"
                    );
                    out.push(make(e));
                }
                Err(_) if required => panic!("{var} is not set: run the tests with tests/run.sh"),
                Err(_) => {
                    eprintln!("note: {var} not set, skipping that backend (tests/run.sh starts it)")
                }
            }
        }
        out
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Azurite { .. } => "azurite",
            Backend::S3 { .. } => "s3",
        }
    }

    /// A fresh, empty lake (its own bucket or container).
    pub fn new_lake(&self, label: &str) -> TestLake {
        let tmp = tempfile::tempdir().unwrap();
        let unique = format!(
            "govlake-{label}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
        .replace('_', "-");
        let (url, env, options): (String, Vec<(&str, String)>, Vec<(&str, String)>) = match self {
            Backend::Local => (
                tmp.path().join("lake").to_string_lossy().into_owned(),
                vec![],
                vec![],
            ),
            Backend::Azurite { endpoint } => {
                helper(&["container", endpoint, &unique]);
                (
                    format!("az://{unique}/lake"),
                    // Emulator mode: the development account and key, path-style URLs at
                    // AZURITE_BLOB_STORAGE_URL, and listings without `startFrom` (which
                    // Azurite ignores). The key still travels the way a real one would.
                    vec![
                        ("AZURITE_BLOB_STORAGE_URL", endpoint.clone()),
                        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.into()),
                    ],
                    vec![("azure_storage_use_emulator", "true".into())],
                )
            }
            Backend::S3 { endpoint } => {
                helper(&["bucket", endpoint, &unique]);
                (
                    format!("s3://{unique}/lake"),
                    vec![
                        ("AWS_ACCESS_KEY_ID", "govlake-test".into()),
                        ("AWS_SECRET_ACCESS_KEY", "govlake-test".into()),
                        ("AWS_REGION", "us-east-1".into()),
                        ("AWS_EC2_METADATA_DISABLED", "true".into()),
                    ],
                    vec![
                        ("aws_endpoint", endpoint.clone()),
                        ("aws_allow_http", "true".into()),
                    ],
                )
            }
        };
        // The command line gets the endpoint through a config file (as a user would) and the
        // credentials through the environment.
        let config = tmp.path().join("govlake.toml");
        let mut text = format!("[lake]\nlocation = {url:?}\n[lake.storage_options]\n");
        for (k, v) in &options {
            text.push_str(&format!("{k} = {v:?}\n"));
        }
        std::fs::write(&config, text).unwrap();
        TestLake {
            backend: self.clone(),
            url,
            config,
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            options: options
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tmp,
        }
    }
}

/// Runs tests/services/helper.py with the services' Python.
fn helper(args: &[&str]) {
    let python = std::env::var("GOVLAKE_TEST_PYTHON")
        .expect("GOVLAKE_TEST_PYTHON is set with the emulators");
    let out = Command::new(python)
        .arg(crate::common::root().join("tests/services/helper.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helper.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A lake on one backend, with what a `govlake` process and the library need to reach it.
pub struct TestLake {
    pub backend: Backend,
    pub url: String,
    config: PathBuf,
    env: Vec<(String, String)>,
    options: HashMap<String, String>,
    tmp: tempfile::TempDir,
}

impl TestLake {
    /// `govlake --config <this lake's config> ARGS`, with its credentials in the environment.
    pub fn govlake(&self) -> Command {
        let mut c = govlake();
        c.arg("--config").arg(&self.config);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// A scratch folder that lives as long as the lake.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// Where packs go on this backend: a folder, or a prefix in the bucket/container.
    pub fn pack_target(&self, name: &str) -> String {
        match &self.backend {
            Backend::Local => self.tmp.path().join(name).to_string_lossy().into_owned(),
            _ => format!("{}/packs/{name}", self.url.trim_end_matches("/lake")),
        }
    }

    /// The lake through the library (credentials passed as options, not environment).
    pub fn lake(&self) -> govlake::lake::Lake {
        govlake::lake::backends::register();
        let mut loc = govlake::lake::LakeLocation::resolve(&self.url, self.options.clone())
            .expect("lake location");
        match &self.backend {
            Backend::Local => {}
            Backend::Azurite { endpoint } => {
                // Emulator mode reads the endpoint from the environment only.
                assert_eq!(
                    std::env::var("AZURITE_BLOB_STORAGE_URL").as_deref(),
                    Ok(endpoint.as_str()),
                    "tests/services/start.sh exports AZURITE_BLOB_STORAGE_URL"
                );
                loc.storage_options
                    .insert("azure_storage_account_key".into(), AZURITE_KEY.into());
            }
            Backend::S3 { .. } => {
                for (k, v) in [
                    ("aws_access_key_id", "govlake-test"),
                    ("aws_secret_access_key", "govlake-test"),
                    ("aws_region", "us-east-1"),
                ] {
                    loc.storage_options.insert(k.into(), v.into());
                }
            }
        }
        govlake::lake::Lake::new(loc)
    }

    pub fn dump(&self) -> Vec<(String, Vec<String>)> {
        dump_lake(&self.lake())
    }

    /// The Delta version of a table, `None` while it does not exist.
    pub fn version(&self, table: &str) -> Option<i64> {
        let lake = self.lake();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(lake.version(table))
            .unwrap_or(None)
    }

    pub fn ingest(&self, from: &Path, extra: &[&str]) -> crate::common::Run {
        run(self
            .govlake()
            .args(["--format", "json", "ingest", "--from"])
            .arg(from)
            .args(extra))
    }
}

/// The sample tenant ingested into a local lake: what every backend must match.
fn local_sample_dump() -> Vec<(String, Vec<String>)> {
    let lake = tempfile::tempdir().unwrap();
    let r = crate::common::ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    dump(lake.path())
}

#[test]
fn conformance_ingest_sql_pack_verify_on_every_backend() {
    let expected = local_sample_dump();
    for backend in Backend::all() {
        let name = backend.name();
        let lake = backend.new_lake("conformance");
        let r = lake.ingest(&sample_data(), &[]);
        assert_eq!(r.code, 0, "{name}: ingest: {}", r.stderr);
        assert_eq!(r.json()["status"], "ok", "{name}");
        assert_same_dump(&lake.dump(), &expected);

        // A rerun adds nothing.
        let r = lake.ingest(&sample_data(), &[]);
        assert_eq!(r.code, 0, "{name}: rerun: {}", r.stderr);
        assert_same_dump(&lake.dump(), &expected);

        // The governance views answer the same on every backend.
        let r = run(lake.govlake().args([
            "sql",
            "-o",
            "csv",
            "-c",
            "select count(*) as n from sod_violations",
        ]));
        assert_eq!(r.code, 0, "{name}: sql: {}", r.stderr);
        assert_eq!(
            r.stdout.trim(),
            "n\n11",
            "{name}: the sample's eleven violations"
        );

        // A signed pack, written to the backend itself, verifies there.
        let key = lake.scratch().join("k");
        let r = run(govlake().args(["keygen", "--out"]).arg(&key));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let target = lake.pack_target("2026Q3");
        let r = run(lake
            .govlake()
            .args(["--format", "json", "pack", "--period", "2026Q3", "--key"])
            .arg(key.with_extension("key"))
            .args(["--out", &target]));
        assert_eq!(r.code, 0, "{name}: pack: {}", r.stderr);
        assert_eq!(r.json()["summary"]["dir"], target.as_str(), "{name}");
        let r = run(lake
            .govlake()
            .args(["verify", &target, "--public-key"])
            .arg(key.with_extension("pub")));
        assert_eq!(r.code, 0, "{name}: verify: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.starts_with("OK: "), "{name}: {}", r.stdout);
    }
}

/// A generated tenant big enough for an ingest to make many commits (1,000 rows each).
fn generated_tenant(dir: &Path) -> PathBuf {
    let out = dir.join("tenant");
    let r = run(govlake()
        .args(["generate", "--users", "1500", "--seed", "3", "--out"])
        .arg(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

fn clean_dump(input: &Path) -> Vec<(String, Vec<String>)> {
    let clean = tempfile::tempdir().unwrap();
    let r = crate::common::ingest(clean.path(), &[input], &["--chunk-rows", "1000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    dump(clean.path())
}

#[test]
fn kill_9_mid_ingest_on_object_storage_then_rerun_equals_one_clean_run() {
    let data = tempfile::tempdir().unwrap();
    let input = generated_tenant(data.path());
    let expected = clean_dump(&input);
    let clean_events = expected
        .iter()
        .find(|(n, _)| n == "audit_events")
        .map(|(_, r)| r.len())
        .unwrap();
    for backend in Backend::all() {
        if matches!(backend, Backend::Local) {
            continue; // tests/it/ingest.rs kills local ingests at two points
        }
        let name = backend.name();
        let lake = backend.new_lake("kill9");
        let mut child = crate::common::spawn_ingest(lake.govlake(), &input);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        // Kill once a few chunks of audit events are committed (version 0 is the creation).
        while lake.version("audit_events").unwrap_or(0) < 3 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{name}: ingest finished before it could be killed"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: no commits appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let partial = lake
            .dump()
            .into_iter()
            .find(|(n, _)| n == "audit_events")
            .map_or(0, |(_, r)| r.len());
        assert!(
            partial > 0 && partial < clean_events,
            "{name}: killed mid-ingest with {partial} of {clean_events} events"
        );

        let r = lake.ingest(&input, &["--chunk-rows", "1000"]);
        assert_eq!(r.code, 0, "{name}: rerun: {}", r.stderr);
        assert_same_dump(&lake.dump(), &expected);
    }
}

#[test]
fn two_ingests_at_once_store_nothing_twice() {
    let data = tempfile::tempdir().unwrap();
    let input = generated_tenant(data.path());
    let expected = clean_dump(&input);
    for backend in Backend::all() {
        let name = backend.name();
        let lake = backend.new_lake("concurrent");
        let spawn = || {
            lake.govlake()
                .args(["ingest", "--chunk-rows", "1000", "--from"])
                .arg(&input)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let mut lost = 0;
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {}
                Some(2) => {
                    lost += 1;
                    assert!(
                        stderr.contains("was changed by another writer while this run was writing"),
                        "{name}: a lost race names its cause: {stderr}"
                    );
                }
                other => panic!("{name}: ingest ended with {other:?}: {stderr}"),
            }
        }
        eprintln!("{name}: {lost} of 2 concurrent ingests stopped on a conflict");
        // Whatever the interleaving, one more run completes the lake, and nothing is twice.
        let r = lake.ingest(&input, &["--chunk-rows", "1000"]);
        assert_eq!(r.code, 0, "{name}: final run: {}", r.stderr);
        assert_same_dump(&lake.dump(), &expected);
    }
}

/// Arrow types as a reader-neutral name: string encodings (Utf8, LargeUtf8, Utf8View, and
/// the dictionary a partition column is read as) are one logical type.
fn logical_type(t: &deltalake::arrow::datatypes::DataType) -> String {
    use deltalake::arrow::datatypes::DataType;
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            format!("list<{}>", logical_type(f.data_type()))
        }
        DataType::Dictionary(_, value) => logical_type(value),
        other => format!("{other}"),
    }
}

#[test]
fn another_delta_reader_sees_the_same_rows_and_types() {
    let Ok(python) = std::env::var("GOVLAKE_TEST_PYTHON") else {
        assert!(
            std::env::var("GOVLAKE_TEST_SERVICES").as_deref() != Ok("required"),
            "GOVLAKE_TEST_PYTHON is not set: run the tests with tests/run.sh"
        );
        eprintln!("note: GOVLAKE_TEST_PYTHON not set, skipping (tests/run.sh sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let r = crate::common::ingest(&lake_dir, &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tables: Vec<String> = govlake::query::table_names()
        .into_iter()
        .filter(|t| lake_dir.join(t).join("_delta_log").is_dir())
        .collect();
    assert!(tables.len() > 15, "{tables:?}");
    let exported = dir.path().join("py");
    let out = Command::new(python)
        .arg(crate::common::root().join("tests/services/helper.py"))
        .arg("export")
        .arg(&lake_dir)
        .arg(&exported)
        .args(&tables)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let loc =
        govlake::lake::LakeLocation::resolve(lake_dir.to_str().unwrap(), HashMap::new()).unwrap();
    let lake = govlake::lake::Lake::new(loc);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ctx = govlake::query::session(&lake).await.unwrap();
        let mut compared_rows = 0;
        for table in &tables {
            let ours = ctx.table(table.as_str()).await.unwrap();
            let theirs = ctx
                .read_parquet(
                    exported.join(format!("{table}.parquet")).to_str().unwrap(),
                    Default::default(),
                )
                .await
                .unwrap();
            let types = |df: &deltalake::datafusion::prelude::DataFrame| {
                df.schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), logical_type(f.data_type())))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                types(&ours),
                types(&theirs),
                "`{table}`: column names and types"
            );
            let (a, b) = (
                sorted_rows(&ours.collect().await.unwrap()),
                sorted_rows(&theirs.collect().await.unwrap()),
            );
            assert_eq!(a.len(), b.len(), "`{table}`: row count");
            assert!(a == b, "`{table}`: rows differ");
            compared_rows += a.len();
        }
        assert!(compared_rows > 1000, "{compared_rows} rows compared");
    });
}
