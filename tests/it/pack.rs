//! Evidence packs and auditor reports over the sample tenant: the demo's pack tells the
//! sample story and verifies; every kind of tampering fails verification with its reason;
//! regeneration from the recorded versions is byte-identical under another TZ, locale and
//! thread count; hostile strings come out escaped; golden reports.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Runs the demo into `dir` (lake `dir/lake`, pack `dir/pack`) and returns the pack folder.
pub(crate) fn demo_pack(dir: &Path) -> PathBuf {
    let pack = dir.join("pack");
    let r = run(govlake()
        .arg("--lake")
        .arg(dir.join("lake"))
        .arg("demo")
        .arg("--pack")
        .arg(&pack)
        .current_dir(root()));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let index = pack.join("data/index.html");
    assert_eq!(
        r.stdout.lines().last().unwrap(),
        index.to_str().unwrap(),
        "the demo ends with the index path"
    );
    pack
}

/// `govlake --lake LAKE pack --period 2026Q3 --unsigned --out OUT`.
fn pack_unsigned(lake: &Path, out: &Path) -> Run {
    run(govlake()
        .arg("--lake")
        .arg(lake)
        .args(["pack", "--period", "2026Q3", "--unsigned", "--out"])
        .arg(out))
}

fn verify(pack: &Path, key: Option<&Path>) -> Run {
    let mut c = govlake();
    c.arg("verify").arg(pack);
    if let Some(k) = key {
        c.arg("--public-key").arg(k);
    }
    run(&mut c)
}

#[test]
fn the_demo_pack_tells_the_story_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let index = std::fs::read_to_string(pack.join("data/index.html")).unwrap();
    assert!(
        index.contains("<tr><th>Separation-of-duties violations</th><td>11</td></tr>"),
        "the eleven"
    );
    let sod_rows = index
        .split("<section id=\"sod\">")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert_eq!(sod_rows.matches("<tr><td>").count(), 11);
    assert!(
        index.contains("Vendor Payment - Approver") && index.contains("Vendor Payment - Initiator")
    );
    assert!(
        index.contains("external users without approval") || index.contains("no expiration"),
        "findings shown"
    );
    for f in [
        "populations/sod_violations.csv",
        "populations/sod_violations.parquet",
        "queries/sod_violations.sql",
        "populations/access_as_of.csv",
        "provenance.json",
        "reconciliation.csv",
        "coverage-gaps.csv",
    ] {
        assert!(pack.join("data").join(f).is_file(), "{f}");
    }
    // The demo records a sample of the approval trail for testing, listed in the index.
    let sample =
        std::fs::read_to_string(pack.join("data/samples/approval_trail-n25-seed7.csv")).unwrap();
    assert_eq!(sample.lines().count(), 26);
    assert!(index.contains("href=\"samples&#x2f;approval_trail-n25-seed7.csv\""));
    let csv = std::fs::read_to_string(pack.join("data/populations/sod_violations.csv")).unwrap();
    assert_eq!(csv.lines().count(), 12, "header + eleven");
    assert!(PathBuf::from(format!("{}.tar", pack.display())).is_file());

    // The demo's public key pins the signer.
    let key = dir.path().join("pack.pub");
    let r = verify(&pack, Some(&key));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("(pinned)"), "{}", r.stdout);

    // A second, independent minisign implementation accepts the signature.
    let public =
        minisign_verify::PublicKey::decode(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let signature = minisign_verify::Signature::decode(
        &std::fs::read_to_string(pack.join("tagmanifest-sha256.txt.minisig")).unwrap(),
    )
    .unwrap();
    public
        .verify(
            &std::fs::read(pack.join("tagmanifest-sha256.txt")).unwrap(),
            &signature,
            false,
        )
        .unwrap();
}

#[test]
fn every_kind_of_tampering_fails_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let key = dir.path().join("pack.pub");
    let other = tempfile::tempdir().unwrap();
    let r = run(govlake()
        .arg("keygen")
        .arg("--out")
        .arg(other.path().join("other")));
    assert_eq!(r.code, 0, "{}", r.stderr);

    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "flip one byte",
            Box::new(|p: &Path| {
                let f = p.join("data/populations/sod_violations.csv");
                let mut b = std::fs::read(&f).unwrap();
                b[10] ^= 1;
                std::fs::write(f, b).unwrap();
            }),
            "data/populations/sod_violations.csv: changed",
        ),
        (
            "edit the manifest",
            Box::new(|p: &Path| {
                let f = p.join("manifest-sha256.txt");
                let t = std::fs::read_to_string(&f).unwrap();
                let first = t.lines().next().unwrap().to_string();
                let edited = format!("{}{}", "0".repeat(64), &first[64..]);
                std::fs::write(f, t.replacen(&first, &edited, 1)).unwrap();
            }),
            "manifest-sha256.txt: changed",
        ),
        (
            "edit bag-info",
            Box::new(|p: &Path| {
                let f = p.join("bag-info.txt");
                let t = std::fs::read_to_string(&f).unwrap();
                std::fs::write(f, t.replace("Bagging-Date: 2026", "Bagging-Date: 2027")).unwrap();
            }),
            "bag-info.txt: changed",
        ),
        (
            "replace the signature",
            Box::new(|p: &Path| {
                let other_key = std::fs::read_to_string(p.join("../other.key")).unwrap();
                let key = govlake::report::sign::SecretKey::parse(&other_key).unwrap();
                let manifest = std::fs::read(p.join("tagmanifest-sha256.txt")).unwrap();
                std::fs::write(
                    p.join("tagmanifest-sha256.txt.minisig"),
                    key.sign(&manifest, "forged"),
                )
                .unwrap();
            }),
            "tagmanifest-sha256.txt.minisig: signed by key",
        ),
        (
            "add a file",
            Box::new(|p: &Path| {
                std::fs::write(p.join("data/populations/extra.csv"), "a,b\n").unwrap();
            }),
            "data/populations/extra.csv: extra",
        ),
        (
            "delete a file",
            Box::new(|p: &Path| {
                std::fs::remove_file(p.join("data/queries/sod_violations.sql")).unwrap();
            }),
            "data/queries/sod_violations.sql: missing",
        ),
        (
            "reorder the manifest",
            Box::new(|p: &Path| {
                let f = p.join("manifest-sha256.txt");
                let t = std::fs::read_to_string(&f).unwrap();
                let mut lines: Vec<&str> = t.lines().collect();
                lines.reverse();
                std::fs::write(f, lines.join("\n") + "\n").unwrap();
            }),
            "manifest-sha256.txt: changed",
        ),
        (
            "swap a payload file for a link to an identical file outside the pack",
            Box::new(|p: &Path| {
                let f = p.join("data/populations/sod_violations.csv");
                let outside = p.join("../outside.csv");
                std::fs::rename(&f, &outside).unwrap();
                std::os::unix::fs::symlink(&outside, &f).unwrap();
            }),
            "data/populations/sod_violations.csv: a symbolic link",
        ),
        (
            "add an empty folder",
            Box::new(|p: &Path| {
                std::fs::create_dir(p.join("data/populations/empty")).unwrap();
            }),
            "data/populations/empty: extra: an empty folder",
        ),
        (
            "delete bagit.txt",
            Box::new(|p: &Path| {
                std::fs::remove_file(p.join("bagit.txt")).unwrap();
            }),
            "bagit.txt: missing",
        ),
    ];
    for (name, tamper, reason) in cases {
        let work = tempfile::tempdir().unwrap();
        let copy = work.path().join("pack");
        copy_dir(&pack, &copy);
        std::fs::copy(
            other.path().join("other.key"),
            work.path().join("other.key"),
        )
        .unwrap();
        tamper(&copy);
        let r = verify(&copy, Some(&key));
        assert_eq!(
            r.code, 1,
            "{name}: verification must fail\n{}{}",
            r.stdout, r.stderr
        );
        assert!(
            r.stdout.contains(&format!("FAIL {reason}")),
            "{name}: expected `{reason}` in\n{}",
            r.stdout
        );
    }
}

/// SHA-256 of a file, as the manifests write it.
fn sha256_hex(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Edits a payload file of `pack`, updates both manifests to match, and signs it anew with
/// `key` (a govlake secret key file), putting that key's public half in `signer.pub`.
fn forge(pack: &Path, key: &Path) {
    let victim = "data/populations/sod_violations.csv";
    std::fs::write(pack.join(victim), "nothing,to,see\n").unwrap();
    let rehash = |manifest: &str, names: &[&str]| {
        let f = pack.join(manifest);
        let mut text = std::fs::read_to_string(&f).unwrap();
        for name in names {
            let line = text
                .lines()
                .find(|l| l.ends_with(&format!("  {name}")))
                .unwrap()
                .to_string();
            let fresh = format!("{}  {name}", sha256_hex(&pack.join(name)));
            text = text.replace(&line, &fresh);
        }
        std::fs::write(f, text).unwrap();
    };
    let key =
        govlake::report::sign::SecretKey::parse(&std::fs::read_to_string(key).unwrap()).unwrap();
    std::fs::write(pack.join("signer.pub"), key.public().to_file_text()).unwrap();
    rehash("manifest-sha256.txt", &[victim]);
    rehash(
        "tagmanifest-sha256.txt",
        &["manifest-sha256.txt", "signer.pub"],
    );
    let tags = std::fs::read(pack.join("tagmanifest-sha256.txt")).unwrap();
    std::fs::write(
        pack.join("tagmanifest-sha256.txt.minisig"),
        key.sign(&tags, "govlake evidence pack 2026Q3"),
    )
    .unwrap();
}

#[test]
fn a_forged_pack_never_verifies_without_a_pinned_signer() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let genuine = dir.path().join("pack.pub");
    let r = run(govlake()
        .arg("keygen")
        .arg("--out")
        .arg(dir.path().join("forger")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let forged = dir.path().join("forged");
    copy_dir(&pack, &forged);
    forge(&forged, &dir.path().join("forger.key"));

    // Unpinned: whole and consistent, but nobody vouches for the signer: exit 3, not OK.
    for p in [&pack, &forged] {
        let r = verify(p, None);
        assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
        assert!(!r.stdout.contains("OK"), "{}", r.stdout);
        assert!(r.stdout.contains("signer is not verified"), "{}", r.stdout);
    }
    // Pinned on the command line: the forgery fails, the genuine pack passes.
    let r = verify(&forged, Some(&genuine));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("FAIL tagmanifest-sha256.txt.minisig: signed by key"),
        "{}",
        r.stdout
    );
    assert_eq!(verify(&pack, Some(&genuine)).code, 0);
    // Pinned in the config file: a key file (relative to the config) or the key's line.
    let key_line = std::fs::read_to_string(&genuine)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for trusted in ["\"pack.pub\"".to_string(), format!("\"{key_line}\"")] {
        let config = dir.path().join("govlake.toml");
        std::fs::write(&config, format!("[verify]\ntrusted_keys = [{trusted}]\n")).unwrap();
        let with_config =
            |p: &Path| run(govlake().arg("--config").arg(&config).arg("verify").arg(p));
        let r = with_config(&forged);
        assert_eq!(r.code, 1, "{trusted}: {}{}", r.stdout, r.stderr);
        let r = with_config(&pack);
        assert_eq!(r.code, 0, "{trusted}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("(pinned)"), "{}", r.stdout);
    }
}

#[test]
fn pack_out_with_a_trailing_slash_works_and_foreign_partial_folders_stay() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &[&sample_data()], &[]).code, 0);
    // Someone else's folder where an older govlake staged its pack.
    let out = dir.path().join("pack");
    let foreign = dir.path().join("pack.partial");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "not govlake's").unwrap();
    let r = pack_unsigned(&lake, &out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(foreign.join("keep.txt")).unwrap(),
        "not govlake's"
    );
    // `--out DIR/` is DIR: the pack lands there whole, twice in a row in new folders.
    for name in ["slash", "slash2"] {
        let out = dir.path().join(name);
        let r = pack_unsigned(&lake, Path::new(&format!("{}/", out.display())));
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert!(out.join("data/index.html").is_file());
        let mut top: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(
            top,
            [
                "bag-info.txt",
                "bagit.txt",
                "data",
                "manifest-sha256.txt",
                "tagmanifest-sha256.txt"
            ]
        );
    }
    // Nothing staged is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every file of a folder with its bytes, by relative path.
pub(crate) fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The table versions a pack read (its provenance), as `--as-of` takes them.
pub(crate) fn pinned_versions(pack: &Path) -> Vec<String> {
    let provenance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("data/provenance.json")).unwrap())
            .unwrap();
    provenance["table_versions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

#[test]
fn regenerating_from_the_recorded_versions_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let provenance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("data/provenance.json")).unwrap())
            .unwrap();
    let samples: Vec<String> = provenance["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{}",
                s["view"].as_str().unwrap(),
                s["size"],
                s["seed"]
            )
        })
        .collect();
    assert_eq!(samples, ["approval_trail:25:7"]);
    let versions = pinned_versions(&pack);

    // More data arrives after the pack was made.
    let later = tempfile::tempdir().unwrap();
    let mut doc = sample_page("entitlementManagement/accessPackages-0001.json");
    for p in doc["value"].as_array_mut().unwrap() {
        p["incompatibleAccessPackages"] = serde_json::json!([]);
    }
    std::fs::write(later.path().join("accessPackages.json"), doc.to_string()).unwrap();
    let lake = dir.path().join("lake");
    let r = ingest(
        &lake,
        &[later.path()],
        &["--observed-at", "2026-10-08T06:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    let again = dir.path().join("again");
    let r = run(govlake()
        .env("TZ", "Asia/Kolkata")
        .env("LC_ALL", "de_DE.UTF-8")
        .env("GOVLAKE_THREADS", "1")
        .env("TOKIO_WORKER_THREADS", "1")
        .arg("--lake")
        .arg(&lake)
        .args(["pack", "--period", "2026Q3", "--archive", "--key"])
        .arg(dir.path().join("pack.key"))
        .arg("--as-of")
        .arg(versions.join(","))
        .arg("--sample")
        .arg(&samples[0])
        .arg("--out")
        .arg(&again));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (a, b) = (contents(&pack), contents(&again));
    for ((pa, ba), (pb, bb)) in a.iter().zip(&b) {
        assert_eq!(pa, pb);
        assert!(ba == bb, "{pa} differs after regeneration");
    }
    assert_eq!(a.len(), b.len());
    assert!(
        std::fs::read(format!("{}.tar", pack.display())).unwrap()
            == std::fs::read(format!("{}.tar", again.display())).unwrap(),
        "the archives differ"
    );

    // The current data (no incompatibilities any more) gives a different pack.
    let current = dir.path().join("current");
    let r = pack_unsigned(&lake, &current);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The archive is opt-in: without `--archive` the pack is the folder alone.
    assert!(current.is_dir() && !dir.path().join("current.tar").exists());
    let index = std::fs::read_to_string(current.join("data/index.html")).unwrap();
    assert!(index.contains("<tr><th>Separation-of-duties violations</th><td>0</td></tr>"));
    let r = verify(&current, None);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("not signed"), "{}", r.stdout);
}

/// `DATAFUSION_*` settings change how queries run, not what they return; a pack records the
/// ones it ran with, and its regeneration command sets them again.
#[test]
fn datafusion_settings_are_recorded_in_the_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let provenance = |pack: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(pack.join("data/provenance.json")).unwrap())
            .unwrap()
    };
    let plain = provenance(&pack);
    assert_eq!(plain["engine_settings"], serde_json::json!({}));
    assert!(
        plain["regenerate"]
            .as_str()
            .unwrap()
            .starts_with("govlake pack ")
    );

    assert_eq!(
        plain["engine_defaults"]["datafusion.optimizer.enable_round_robin_repartition"], "false",
        "the pack records govlake's own defaults"
    );

    // Every session turns round-robin repartitions off, keeps existing sorts through
    // repartitions and skips partial aggregations that group little, unless told
    // otherwise; with DataFusion's defaults back (and partial aggregations probed early
    // enough for a small lake), the plans change and the populations must not.
    let tuned = dir.path().join("tuned");
    let r = run(govlake()
        .env("DATAFUSION_EXECUTION_BATCH_SIZE", "1000")
        .env(
            "DATAFUSION_OPTIMIZER_ENABLE_ROUND_ROBIN_REPARTITION",
            "true",
        )
        .env("DATAFUSION_OPTIMIZER_PREFER_EXISTING_SORT", "false")
        .env(
            "DATAFUSION_EXECUTION_SKIP_PARTIAL_AGGREGATION_PROBE_RATIO_THRESHOLD",
            "0.1",
        )
        .env(
            "DATAFUSION_EXECUTION_SKIP_PARTIAL_AGGREGATION_PROBE_ROWS_THRESHOLD",
            "10",
        )
        .arg("--lake")
        .arg(dir.path().join("lake"))
        .args(["pack", "--period", "2026Q3", "--unsigned", "--as-of"])
        .arg(pinned_versions(&pack).join(","))
        .arg("--out")
        .arg(&tuned));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let recorded = provenance(&tuned);
    assert_eq!(
        recorded["engine_settings"],
        serde_json::json!({
            "datafusion.execution.batch_size": "1000",
            "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold": "0.1",
            "datafusion.execution.skip_partial_aggregation_probe_rows_threshold": "10",
            "datafusion.optimizer.enable_round_robin_repartition": "true",
            "datafusion.optimizer.prefer_existing_sort": "false"
        })
    );
    assert!(
        recorded["regenerate"]
            .as_str()
            .unwrap()
            .starts_with("DATAFUSION_EXECUTION_BATCH_SIZE=1000 DATAFUSION_EXECUTION_SKIP_PARTIAL_AGGREGATION_PROBE_RATIO_THRESHOLD=0.1 DATAFUSION_EXECUTION_SKIP_PARTIAL_AGGREGATION_PROBE_ROWS_THRESHOLD=10 DATAFUSION_OPTIMIZER_ENABLE_ROUND_ROBIN_REPARTITION=true DATAFUSION_OPTIMIZER_PREFER_EXISTING_SORT=false govlake pack "),
        "{}",
        recorded["regenerate"]
    );
    let index = std::fs::read_to_string(tuned.join("data/index.html")).unwrap();
    assert!(
        index.contains("<td>DataFusion setting datafusion.execution.batch_size</td><td>1000</td>"),
        "the index shows the setting"
    );
    // The same populations, byte for byte.
    let populations = plain["populations"].as_array().unwrap();
    assert!(!populations.is_empty());
    for population in populations {
        let file = format!(
            "data/populations/{}.csv",
            population["name"].as_str().unwrap()
        );
        assert!(
            std::fs::read(pack.join(&file)).unwrap() == std::fs::read(tuned.join(&file)).unwrap(),
            "{file} differs with another batch size and round-robin repartitions"
        );
    }
}

#[test]
fn hostile_strings_stay_escaped_and_file_names_inside_the_pack() {
    let export = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), export.path());
    let page = export
        .path()
        .join("entitlementManagement/accessPackages-0001.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&page).unwrap()).unwrap();
    let hostile = "../../<script>alert(1)</script>\"><img src=x onerror=alert(2)> {{ 7*7 }}";
    doc["value"][0]["displayName"] = serde_json::json!(hostile);
    std::fs::write(&page, doc.to_string()).unwrap();
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[export.path()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = tempfile::tempdir().unwrap();
    let pack = out.path().join("pack");
    let r = pack_unsigned(lake.path(), &pack);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (path, bytes) in contents(&pack) {
        assert!(
            path.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
            "unsafe file name {path}"
        );
        if path.ends_with(".html") {
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains("<script"), "{path} has a script tag");
            assert!(!text.contains("<img"), "{path} has an injected tag");
        }
        if path.ends_with(".csv") {
            let text = String::from_utf8(bytes).unwrap();
            for cell in text.lines().flat_map(|l| l.split(',')) {
                let c = cell.trim_start_matches('"').trim_start();
                assert!(
                    !c.starts_with("=HYPERLINK") && !c.starts_with("+cmd"),
                    "{path}: formula cell {cell}"
                );
            }
        }
    }
    let index = std::fs::read_to_string(pack.join("data/index.html")).unwrap();
    assert!(
        index.contains("..&#x2f;..&#x2f;&lt;script&gt;alert(1)&lt;&#x2f;script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt; {{ 7*7 }}"),
        "the hostile package name appears escaped, its template expression unevaluated"
    );
    // The report's justification column carries the sample's own payloads, escaped.
    let reports = contents(&pack.join("data/packages"));
    assert!(
        reports
            .iter()
            .any(|(_, b)| String::from_utf8_lossy(b)
                .contains("&lt;script&gt;alert(&#x27;xss&#x27;)"))
    );
}

#[test]
fn package_reports_match_their_golden_output() {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = tempfile::tempdir().unwrap();
    for format in ["md", "html"] {
        let r = run(govlake()
            .arg("--lake")
            .arg(lake.path())
            .args([
                "report",
                "--package",
                "Vendor Payment - Approver",
                "--period",
                "2026Q3",
                "-o",
                format,
                "--out",
            ])
            .arg(out.path()));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let path = PathBuf::from(r.stdout.trim());
        let text = std::fs::read_to_string(&path).unwrap();
        insta::assert_snapshot!(format!("report_vendor_payment_approver_{format}"), text);
    }
    // The package may be named by id, and an unknown one is a clear error.
    let r = run(govlake()
        .arg("--lake")
        .arg(lake.path())
        .args([
            "report",
            "--package",
            "x' OR '1'='1",
            "--period",
            "2026Q3",
            "--out",
        ])
        .arg(out.path()));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("No access package has the id or name `x' OR '1'='1`"),
        "{}",
        r.stderr
    );
}

#[test]
#[ignore = "needs Chromium: tests/run.sh installs it and runs the ignored tests"]
fn reports_open_in_headless_chromium_without_errors_and_print_to_pdf() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("Debian's chromium is needed (tests/run.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let report = contents(&pack.join("data/packages"))
        .into_iter()
        .find(|(p, _)| p.ends_with(".html"))
        .map(|(p, _)| pack.join("data/packages").join(p))
        .unwrap();
    for page in [pack.join("data/index.html"), report] {
        let pdf = dir.path().join("page.pdf");
        let _ = std::fs::remove_file(&pdf);
        let profile = tempfile::tempdir().unwrap();
        let r = run(std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
                "--no-pdf-header-footer",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--print-to-pdf={}", pdf.display()))
            .arg(format!("file://{}", page.display())));
        assert_eq!(r.code, 0, "{}", r.stderr);
        let console: Vec<&str> = r.stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
        assert!(
            console.is_empty(),
            "{}: console messages {console:#?}",
            page.display()
        );
        let bytes = std::fs::read(&pdf).expect("a PDF was printed");
        assert!(
            bytes.starts_with(b"%PDF") && bytes.len() > 5_000,
            "{}",
            page.display()
        );
    }
}

#[test]
fn samples_are_reproducible_and_seeded() {
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let draw = |seed: &str| {
        let r = run(govlake().arg("--lake").arg(lake.path()).args([
            "sample",
            "--view",
            "approval_trail",
            "--size",
            "25",
            "--seed",
            seed,
        ]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("25 of 678 rows of approval_trail drawn with seed"),
            "{}",
            r.stderr
        );
        r.stdout
    };
    let a = draw("7");
    assert_eq!(a.lines().count(), 26);
    assert!(a.starts_with("sample_rank,request_id,"));
    assert_eq!(a, draw("7"));
    assert_ne!(a, draw("8"));
    let r = run(govlake().arg("--lake").arg(lake.path()).args([
        "sample",
        "--view",
        "no_such_view",
        "--size",
        "1",
        "--seed",
        "1",
    ]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("`no_such_view` is not a view"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_month_without_audit_events_is_a_coverage_gap() {
    // The same tenant, but every audit event of August 2026 fell out of retention before
    // capture began (removed from the Graph pages and from the diagnostic-settings archive).
    let export = tempfile::tempdir().unwrap();
    copy_dir(&sample_data(), export.path());
    let in_august = |text: &str| {
        text.contains("\"activityDateTime\":\"2026-08") || text.contains("\"time\":\"2026-08")
    };
    let removed = remove_records(export.path(), in_august);
    assert!(removed > 0, "the sample has August audit events");
    let lake = tempfile::tempdir().unwrap();
    let r = ingest(lake.path(), &[export.path()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pack = lake.path().join("pack");
    let r = pack_unsigned(lake.path(), &pack);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let gaps = std::fs::read_to_string(pack.join("data/coverage-gaps.csv")).unwrap();
    let august = gaps
        .lines()
        .find(|l| l.starts_with("2026-07-3") || l.starts_with("2026-08-01"))
        .unwrap_or_else(|| panic!("no gap over August in\n{gaps}"));
    let fields: Vec<&str> = august.split(',').collect();
    assert!(fields[1] >= "2026-09-01T00:00:00Z", "{august}");
    assert!(fields[2].parse::<i64>().unwrap() >= 31, "{august}");
    let index = std::fs::read_to_string(pack.join("data/index.html")).unwrap();
    assert!(index.contains(fields[0]) && index.contains("no audit events captured"));
}

#[test]
fn the_signing_key_never_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(govlake()
        .arg("keygen")
        .arg("--out")
        .arg(dir.path().join("k")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let key_text = std::fs::read_to_string(dir.path().join("k.key")).unwrap();
    let secret = key_text.lines().nth(1).unwrap().to_string();
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret));
    let lake = dir.path().join("lake");
    assert_eq!(ingest(&lake, &[&sample_data()], &[]).code, 0);
    let pack = dir.path().join("pack");
    let r = run(govlake()
        .env("GOVLAKE_SIGNING_KEY", &secret)
        .env("RUST_LOG", "trace")
        .arg("--lake")
        .arg(&lake)
        .args(["pack", "--period", "2026Q3", "--out"])
        .arg(&pack));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains(&secret) && !r.stderr.contains(&secret),
        "the key was printed"
    );
    for (path, bytes) in contents(&pack) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the key is in {path}"
        );
    }
    // A malformed key is refused without echoing it.
    let bad = format!("{}x", &secret[..secret.len() - 2]);
    let r = run(govlake()
        .env("GOVLAKE_SIGNING_KEY", &bad)
        .arg("--lake")
        .arg(&lake)
        .args(["pack", "--period", "2026Q3", "--out"])
        .arg(dir.path().join("pack2")));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("not a govlake secret key"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&bad[..20]), "{}", r.stderr);
}

/// The rows of a Parquet file in a pack, every column as text (NULL as "").
fn parquet_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    use deltalake::arrow::array::{Array, AsArray};
    let file = std::fs::File::open(path).unwrap();
    let reader =
        deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        columns = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let text: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                deltalake::arrow::compute::cast(c, &deltalake::arrow::datatypes::DataType::Utf8)
                    .unwrap()
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(
                text.iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        if c.is_null(i) {
                            String::new()
                        } else {
                            c.value(i).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    (columns, rows)
}

/// ISO-8601 text in 2026Q3 (`[2026-07-01, 2026-10-01)`); text compares like time here.
fn in_q3(t: &str) -> bool {
    !t.is_empty() && t >= "2026-07-01" && t < "2026-10-01"
}

#[test]
fn populations_with_a_time_column_hold_only_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo_pack(dir.path());
    let lake = dir.path().join("lake");

    // The requests created in the quarter, straight from the ingested requests.
    let requests = sql(
        &lake,
        "SELECT id, CAST(created_date_time AS VARCHAR) FROM assignment_requests",
    );
    let in_period: std::collections::BTreeSet<String> = requests
        .iter()
        .filter_map(|r| r.split_once('|'))
        .filter(|(_, t)| in_q3(t))
        .map(|(id, _)| id.to_string())
        .collect();
    // The whole view: the quarter's steps, and requests outside it (else the test proves
    // nothing).
    let trail = sql(
        &lake,
        "SELECT request_id, CAST(created_date_time AS VARCHAR) FROM approval_trail",
    );
    let steps: Vec<(String, String)> = trail
        .iter()
        .filter_map(|r| r.split_once('|'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let expected_steps = steps.iter().filter(|(_, t)| in_q3(t)).count();
    assert!(expected_steps > 0, "the sample has requests in 2026Q3");
    assert!(
        steps.len() > expected_steps,
        "the sample has requests outside 2026Q3: {} of {}",
        expected_steps,
        steps.len()
    );
    let expected_requests: std::collections::BTreeSet<String> = steps
        .iter()
        .map(|(id, _)| id.clone())
        .filter(|id| in_period.contains(id))
        .collect();

    let (columns, rows) = parquet_rows(&pack.join("data/populations/approval_trail.parquet"));
    let col = |n: &str| columns.iter().position(|c| c == n).unwrap();
    let (id, created) = (col("request_id"), col("created_date_time"));
    assert_eq!(
        rows.len(),
        expected_steps,
        "every step of the quarter's requests"
    );
    assert!(rows.iter().all(|r| in_q3(&r[created])));
    let got: std::collections::BTreeSet<String> = rows.iter().map(|r| r[id].clone()).collect();
    assert_eq!(got, expected_requests);
    // The CSV holds the same rows (header + one line per row; no cell of this view spans
    // lines).
    let csv = std::fs::read_to_string(pack.join("data/populations/approval_trail.csv")).unwrap();
    assert_eq!(csv.lines().count(), expected_steps + 1);

    // Holdings: those overlapping the quarter (held_to NULL: still held).
    let holdings = sql(
        &lake,
        "SELECT CAST(held_from AS VARCHAR), CAST(held_to AS VARCHAR) FROM assignment_holdings",
    );
    let overlapping = holdings
        .iter()
        .filter_map(|r| r.split_once('|'))
        .filter(|(from, to)| {
            *from < "2026-10-01" && (to.is_empty() || *to == "NULL" || *to >= "2026-07-01")
        })
        .count();
    let (_, rows) = parquet_rows(&pack.join("data/populations/assignment_holdings.parquet"));
    assert_eq!(rows.len(), overlapping);

    // The pack says which populations are scoped, by which column, and how to recompute them.
    let readme = std::fs::read_to_string(pack.join("data/populations/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("| approval_trail |"))
        .unwrap();
    assert!(
        line.contains("created_date_time >= from and < to"),
        "{line}"
    );
    assert!(line.contains(&format!("| {expected_steps} |")), "{line}");
    assert!(
        readme
            .lines()
            .any(|l| l.starts_with("| sod_violations |") && l.ends_with("| whole view |")),
        "{readme}"
    );
    let provenance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("data/provenance.json")).unwrap())
            .unwrap();
    let trail = provenance["populations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "approval_trail")
        .unwrap();
    assert!(
        trail["scope"]
            .as_str()
            .unwrap()
            .contains("created_date_time")
    );
    assert_eq!(trail["rows"], expected_steps);
}

/// The sample tenant ingested into a lake in `dir`.
fn sample_lake(dir: &Path) -> govlake::lake::Lake {
    let r = ingest(dir, &[&sample_data()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let location =
        govlake::lake::LakeLocation::resolve(dir.to_str().unwrap(), Default::default()).unwrap();
    govlake::lake::Lake::new(location)
}

/// A session over `lake` with `queries` registered as views; the names registered.
async fn session_with_views(
    lake: &govlake::lake::Lake,
    queries: &[govlake::query::views::QueryFile],
) -> (deltalake::datafusion::prelude::SessionContext, Vec<String>) {
    let ctx = govlake::query::session(lake).await.unwrap();
    let registered = govlake::query::views::register(&ctx, queries)
        .await
        .unwrap();
    (ctx, registered)
}

/// A pack's run of every package (each section once, its rows handed out from scratch
/// files) gives each package the same sections, row for row, as that package's own report
/// (`govlake report`: each section filtered to the package, its rows held in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_package_gets_in_a_pack_the_sections_of_its_own_report() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let queries = govlake::query::views::embedded();
    let (ctx, _) = session_with_views(&lake, &queries).await;
    let period = govlake::report::Period::quarter("2026Q3").unwrap();
    let mut all = Vec::new();
    govlake::report::package::build_all(&ctx, &queries, &period, &Default::default(), |r| {
        all.push(r);
        Ok(())
    })
    .await
    .unwrap();
    assert!(all.len() >= 3, "the sample's three packages: {}", all.len());
    let mut rows = 0;
    for report in &all {
        let own =
            govlake::report::package::build(&ctx, &queries, &report.id, &report.name, &period)
                .await
                .unwrap();
        assert_eq!(own.sections.len(), report.sections.len());
        for (mine, theirs) in own.sections.iter().zip(&report.sections) {
            assert_eq!(mine.key, theirs.key);
            let key = mine.key;
            let (mine, theirs) = (mine.table.to_table(), theirs.table.to_table());
            assert_eq!(mine.columns, theirs.columns, "package {}, {key}", report.id);
            assert_eq!(mine.rows, theirs.rows, "package {}, {key}", report.id);
            rows += mine.rows.len();
        }
    }
    assert!(rows > 100, "the sections hold rows: {rows}");
}

/// "Holders over time" is, per package, the number of rows `access_as_of` gives at each
/// checkpoint of the period (its start, the first of each later month, its last second):
/// checked against `access_as_of` run at each checkpoint on its own, for every package of
/// the sample tenant, in a pack's run of all packages and in one package's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_over_time_counts_access_as_of_at_each_checkpoint() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let queries = govlake::query::views::embedded();
    let (ctx, _) = session_with_views(&lake, &queries).await;
    let period = govlake::report::Period::quarter("2026Q3").unwrap();

    // Expected: access_as_of's rows per package at each checkpoint.
    let access_as_of = &queries
        .iter()
        .find(|q| q.name == "access_as_of")
        .unwrap()
        .sql;
    let checkpoints = [
        "2026-07-01T00:00:00Z",
        "2026-08-01T00:00:00Z",
        "2026-09-01T00:00:00Z",
        "2026-09-30T23:59:59Z",
    ];
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for at in checkpoints {
        let rows =
            govlake::report::table::query(&ctx, "access_as_of", access_as_of, &[("as_of", at)])
                .await
                .unwrap();
        for row in &rows.rows {
            *expected
                .entry((
                    rows.cell(row, "access_package_id").to_string(),
                    at.to_string(),
                ))
                .or_default() += 1;
        }
    }
    assert!(
        expected.values().sum::<usize>() > 0
            && expected
                .keys()
                .map(|(p, _)| p)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1,
        "the sample has holders in several packages"
    );
    let holders = |p: &str, at: &str| {
        expected
            .get(&(p.to_string(), at.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let differ_over_time = expected.keys().any(|(p, _)| {
        checkpoints
            .iter()
            .any(|at| holders(p, at) != holders(p, checkpoints[0]))
    });
    assert!(
        differ_over_time,
        "some package's holders change within the quarter"
    );

    // Every package's section, as a pack builds them all at once.
    let mut shown: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut one = None;
    govlake::report::package::build_all(&ctx, &queries, &period, &Default::default(), |report| {
        let trend = &report.section("trend").unwrap().table.to_table();
        for row in &trend.rows {
            shown.insert(
                (report.id.clone(), trend.cell(row, "as_of").to_string()),
                trend.cell(row, "holders").parse().unwrap(),
            );
        }
        if !trend.rows.is_empty() {
            one = Some((report.id.clone(), report.name.clone(), trend.rows.clone()));
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(shown, expected);

    // One package's report gives that package's rows alike.
    let (id, name, rows) = one.unwrap();
    let report = govlake::report::package::build(&ctx, &queries, &id, &name, &period)
        .await
        .unwrap();
    assert_eq!(report.section("trend").unwrap().table.to_table().rows, rows);
}

/// A pack computes once each view that other queries read (`assignment_holdings`,
/// `remediation_timeliness`, the whole `approval_trail`) into a scratch file and reads that
/// instead. Every query and every package report section must give the same columns, types
/// and rows as over the views themselves: checked on the sample tenant, view by view, for
/// the parameterised queries bound to the period, and section by section for every
/// package; and a view that reads a shared one is planned over its file. (A whole pack's
/// populations of `approval_trail` and `assignment_holdings`, read through the shared
/// files, are checked against the views in `populations_with_a_time_column_hold_only_the_period`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_computed_once_for_a_pack_change_no_row() {
    use govlake::report::{Table, package, shared_views, table};
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path());
    let queries = govlake::query::views::embedded();
    let period = govlake::report::Period::quarter("2026Q3").unwrap();
    let (plain, registered) = session_with_views(&lake, &queries).await;
    let (shared, _) = session_with_views(&lake, &queries).await;
    let scratch = tempfile::tempdir().unwrap();
    let computed = shared_views::compute_once(
        &shared,
        &queries,
        &registered,
        &package::sections_beside_populations(&queries).unwrap(),
        scratch.path(),
    )
    .await
    .unwrap();
    let mut names = computed.views.clone();
    names.sort();
    assert_eq!(
        names,
        [
            "approval_trail",
            "assignment_holdings",
            "remediation_timeliness"
        ]
    );

    let bound = [
        ("as_of", "2026-09-30T23:59:59Z"),
        ("from", "2026-07-01T00:00:00Z"),
        ("to", "2026-10-01T00:00:00Z"),
    ];
    let mut nonempty = 0;
    for q in &queries {
        let sql = if registered.contains(&q.name) {
            format!("SELECT * FROM \"{}\"", q.name)
        } else {
            q.sql.clone()
        };
        let params: Vec<(&str, &str)> = bound
            .iter()
            .filter(|(k, _)| q.parameters().iter().any(|p| p == k))
            .copied()
            .collect();
        // The same column types, not only the same text.
        let types = |ctx: &deltalake::datafusion::prelude::SessionContext| {
            let ctx = ctx.clone();
            let sql = sql.clone();
            async move {
                let df = ctx.sql(&sql).await.unwrap();
                df.schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(types(&shared).await, types(&plain).await, "{}", q.name);
        let expected = table::query(&plain, &q.name, &sql, &params).await.unwrap();
        let got = table::query(&shared, &q.name, &sql, &params).await.unwrap();
        assert_eq!(got.columns, expected.columns, "{}", q.name);
        assert_eq!(got.rows, expected.rows, "{}", q.name);
        nonempty += usize::from(!expected.rows.is_empty());
    }
    assert!(nonempty >= 12, "only {nonempty} queries have rows");
    // A view that reads a shared one reads its file, not the view's plan again.
    let plan = |ctx: &deltalake::datafusion::prelude::SessionContext| {
        let ctx = ctx.clone();
        async move {
            let rows = ctx
                .sql("EXPLAIN SELECT count(*) FROM recertification_coverage")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            format!(
                "{}",
                deltalake::arrow::util::pretty::pretty_format_batches(&rows).unwrap()
            )
        }
    };
    let file = ".govlake-pack-views-";
    assert!(
        plan(&shared).await.contains(file),
        "{}",
        plan(&shared).await
    );
    assert!(!plan(&plain).await.contains(file));

    async fn reports(
        ctx: &deltalake::datafusion::prelude::SessionContext,
        queries: &[govlake::query::views::QueryFile],
        period: &govlake::report::Period,
    ) -> Vec<(String, Vec<(&'static str, Table)>)> {
        let mut out = Vec::new();
        package::build_all(ctx, queries, period, &Default::default(), |report| {
            out.push((
                report.id.clone(),
                report
                    .sections
                    .iter()
                    .map(|s| (s.key, s.table.to_table()))
                    .collect(),
            ));
            Ok(())
        })
        .await
        .unwrap();
        out
    }
    let expected = reports(&plain, &queries, &period).await;
    let got = reports(&shared, &queries, &period).await;
    assert_eq!(got.len(), expected.len());
    let mut holders = 0;
    for ((id, got), (expected_id, expected)) in got.iter().zip(&expected) {
        assert_eq!(id, expected_id);
        assert_eq!(got.len(), expected.len());
        for ((key, got), (_, expected)) in got.iter().zip(expected) {
            assert_eq!(got.columns, expected.columns, "package {id}, section {key}");
            assert_eq!(got.rows, expected.rows, "package {id}, section {key}");
            if *key == "holders" {
                holders += expected.rows.len();
            }
        }
    }
    assert!(holders > 0, "the sample has holders");

    // The scratch files go with the views computed once.
    drop(computed);
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}
