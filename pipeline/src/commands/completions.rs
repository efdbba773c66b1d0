//! `govlake completions SHELL` and `govlake manpage`: the shell completion scripts
//! (clap_complete) and the roff man pages (clap_mangen), both generated from the same clap
//! definition as `--help`, so they list every command and option there is.

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{ExitStatus, Printer};
use crate::cli::{Cli, CompletionsArgs, ManpageArgs};

/// Prints the completion script for the shell.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitStatus> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "govlake", &mut std::io::stdout());
    Ok(ExitStatus::Success)
}

/// Prints govlake.1 (its COMMANDS section names every command), or writes it and a page
/// per command into `--out`.
pub fn manpage(args: &ManpageArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let cmd = Cli::command();
    match &args.out {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("Cannot create `{}`", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("Cannot write the man pages into `{}`", dir.display()))?;
            if printer.quiet == 0 {
                eprintln!("man pages written to {}", dir.display());
            }
        }
    }
    Ok(ExitStatus::Success)
}
