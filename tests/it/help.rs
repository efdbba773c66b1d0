//! Every command's `--help`, as a reviewed snapshot: the CLI reference a user reads. A new
//! command is found from the top-level help, so it cannot go without one.

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
    top.stdout
        .lines()
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

#[test]
fn every_command_has_a_reviewed_help() {
    let commands = commands();
    assert!(commands.len() >= 11, "{commands:?}");
    let top = run(govlake().arg("--help"));
    insta::assert_snapshot!("help", top.stdout);
    for c in commands {
        let r = run(govlake().args([c.as_str(), "--help"]));
        assert_eq!(r.code, 0, "{c}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: govlake"), "{c}: {}", r.stdout);
        insta::assert_snapshot!(format!("help_{c}"), r.stdout);
    }
    // Subcommands of a command group.
    let r = run(govlake().args(["job", "run", "--help"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::assert_snapshot!("help_job_run", r.stdout);
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
