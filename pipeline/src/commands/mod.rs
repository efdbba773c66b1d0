//! Command implementations: each turns parsed arguments into a call of the library and
//! prints its summary. `anyhow` is used at this layer only. Shared here: the exit status and
//! the dispatch; `output` (printer, text tables), `lake_access` (which lake, may we) and
//! `staging` (scratch folders).

pub mod changes;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod ingest;
pub mod job;
mod lake_access;
pub mod live;
mod output;
pub mod report;
pub mod sql;
mod staging;
pub mod summary;
pub mod tables;
pub mod upgrade;

pub use lake_access::{Access, open_lake, resolve_lake, storage_options};
pub use output::{Printer, text_table};
pub use staging::Staging;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// How a command ended; maps to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success.
    Success,
    /// 1: finished, but the outcome is a failure (records rejected).
    Failure,
    /// 2: error.
    Error,
    /// 3: `verify` found the pack whole, but no pinned key vouches for its signer.
    Unverified,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
            ExitStatus::Unverified => 3,
        })
    }
}

/// Dispatches a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let printer = Printer::new(&cli);
    match cli.command {
        Command::Ingest(ref args) => ingest::run(&cli.global, args, &printer).await,
        Command::Tables => tables::run(&cli.global, &printer).await,
        Command::Demo(ref args) => demo::run(&cli.global, args, &printer).await,
        Command::Generate(ref args) => generate::run(args, &printer),
        Command::Sql(ref args) => sql::run(&cli.global, args, &printer).await,
        Command::Report(ref args) => report::report(&cli.global, args, &printer).await,
        Command::Pack(ref args) => report::pack(&cli.global, args, &printer).await,
        Command::Verify(ref args) => report::verify(&cli.global, args, &printer).await,
        Command::Keygen(ref args) => report::keygen(args, &printer),
        Command::Vacuum(ref args) => tables::vacuum(&cli.global, args, &printer).await,
        Command::Optimize(ref args) => tables::optimize(&cli.global, args, &printer).await,
        Command::Sample(ref args) => report::sample(&cli.global, args, &printer).await,
        Command::Migrate(ref args) => upgrade::migrate(&cli.global, args, &printer).await,
        Command::Rebuild(ref args) => upgrade::rebuild(&cli.global, args, &printer).await,
        Command::Doctor(ref args) => doctor::run(&cli.global, args, &printer).await,
        Command::Completions(ref args) => completions::completions(args),
        Command::Manpage(ref args) => completions::manpage(args, &printer),
        Command::Changes(ref args) => changes::run(&cli.global, args, &printer).await,
        Command::Job(crate::cli::JobCommand::Run(ref args)) => {
            job::run(&cli.global, args, &printer).await
        }
    }
}
