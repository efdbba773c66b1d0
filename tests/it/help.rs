//! Every command's and subcommand's `--help`, as a reviewed snapshot: the CLI reference a
//! user reads. Commands are found by walking the `Commands:` section of each help page, so
//! a new command (or a new subcommand of a group) cannot go without one.

use std::process::Command;

use crate::common::run;

/// `govlake` with an empty environment (clap shows `[env: NAME=value]`), 100 columns wide.
fn govlake() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_govlake"));
    c.env_clear().env("COLUMNS", "100");
    c
}

/// Command names listed under `Commands:` in `govlake --help`.
fn commands() -> Vec<String> {
    let top = run(govlake().arg("--help"));
    assert_eq!(top.code, 0, "{}", top.stderr);
    listed(&top.stdout)
}

/// The names a help page lists under `Commands:` (none for a leaf command), `help` left out.
fn listed(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented further than the names.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path under `path` (depth first, `path` itself first), with its help.
fn walk(path: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let r = run(govlake().args(&path).arg("--help"));
    assert_eq!(r.code, 0, "{path:?}: {}", r.stderr);
    assert!(
        r.stdout.contains("Usage: govlake"),
        "{path:?}: {}",
        r.stdout
    );
    let children = listed(&r.stdout);
    out.push((path.clone(), r.stdout));
    for c in children {
        let mut child = path.clone();
        child.push(c);
        walk(child, out);
    }
}

#[test]
fn every_command_and_subcommand_has_a_reviewed_help() {
    let mut pages = Vec::new();
    walk(vec![], &mut pages);
    let snapshot = |path: &[String]| {
        std::iter::once("help")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("_")
    };
    let mut names: Vec<String> = pages.iter().map(|(p, _)| snapshot(p)).collect();
    assert!(names.contains(&"help_job_run".to_string()), "{names:?}");
    for (path, help) in &pages {
        insta::assert_snapshot!(snapshot(path), help);
    }
    // No snapshot is left of a command that is gone (insta fails for a new one without).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let mut stored: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("it__help__")?
                .strip_suffix(".snap")
                .map(str::to_string)
        })
        .collect();
    stored.sort();
    names.sort();
    assert_eq!(
        stored, names,
        "help snapshots without a command, or the reverse"
    );
}

#[test]
fn completions_and_the_man_page_mention_every_command() {
    let commands = commands();
    assert!(commands.contains(&"doctor".to_string()), "{commands:?}");
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let r = run(govlake().args(["completions", shell]));
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        for c in &commands {
            assert!(
                r.stdout.contains(c.as_str()),
                "{shell} completions lack `{c}`"
            );
        }
        // And options of a command, not just the names (fish writes `-l graph-endpoint`).
        assert!(r.stdout.contains("graph-endpoint"), "{shell}");
    }
    let r = run(govlake().arg("manpage"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with(".ie") || r.stdout.contains(".TH govlake"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    for c in &commands {
        assert!(
            r.stdout.contains(&format!("govlake\\-{c}")) || r.stdout.contains(&format!("\n{c}")),
            "the man page lacks `{c}`"
        );
    }
    // One page per command with --out.
    let dir = tempfile::tempdir().unwrap();
    let r = run(govlake().arg("manpage").arg("--out").arg(dir.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(dir.path().join("govlake.1").is_file());
    for c in &commands {
        let page = dir.path().join(format!("govlake-{c}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".TH govlake-"), "{c}");
    }
}
