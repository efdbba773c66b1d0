//! `govlake generate`: deterministic, and the committed sample tenant is its output.

use std::path::Path;

use crate::common::*;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name() != "README.md")
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_committed_sample_tenant_is_what_generate_writes() {
    let out = tempfile::tempdir().unwrap();
    let spec = govlake::generate::sample_spec(&out.path().join("s"));
    govlake::generate::write_tenant(&spec).unwrap();
    let (want, got) = (files(&sample_data()), files(&out.path().join("s")));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&want), names(&got));
    for ((name, a), (_, b)) in want.iter().zip(&got) {
        assert!(
            a == b,
            "{name} differs from the generator's output; regenerate sample-data (see its README)"
        );
    }
}

#[test]
fn generate_is_deterministic_and_refuses_a_non_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        let r = run(govlake()
            .args(["generate", "--users", "300", "--seed", "11", "--out"])
            .arg(dir.path().join(name)));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    assert_eq!(files(&dir.path().join("a")), files(&dir.path().join("b")));
    let r = run(govlake()
        .args(["generate", "--out"])
        .arg(dir.path().join("a")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
}
