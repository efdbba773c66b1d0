//! Command implementations: each turns parsed arguments into a stage run and prints its
//! summary. `anyhow` is used at this layer only.

pub mod changes;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod ingest;
pub mod job;
pub mod live;
pub mod report;
pub mod sql;
pub mod summary;
pub mod tables;
pub mod upgrade;

use std::process::ExitCode;

use crate::cli::{Cli, Command, OutputFormat};

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

/// Where output goes: results on stdout, progress on stderr.
#[derive(Debug, Clone)]
pub struct Printer {
    /// Output format.
    pub format: OutputFormat,
    /// Show progress bars.
    pub progress: bool,
    /// Quiet level.
    pub quiet: u8,
}

impl Printer {
    fn new(cli: &Cli) -> Self {
        let g = &cli.global;
        Self {
            format: g.format,
            progress: !g.no_progress
                && g.quiet == 0
                && g.verbose == 0
                && g.format == OutputFormat::Text,
            quiet: g.quiet,
        }
    }

    /// A byte progress bar on stderr (hidden when progress is off or stderr is no terminal).
    pub fn bytes_bar(&self, message: &'static str) -> indicatif::ProgressBar {
        self.bar(
            message,
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {prefix} eta {eta}",
        )
    }

    /// A progress bar on stderr drawn with an indicatif `template` (hidden when progress is
    /// off or stderr is no terminal).
    pub fn bar(&self, message: &'static str, template: &str) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(message);
        bar
    }

    /// Prints the JSON envelope of a command's result on stdout.
    pub fn json(
        &self,
        command: &str,
        status: &str,
        summary: &impl serde::Serialize,
    ) -> anyhow::Result<()> {
        let doc = serde_json::json!({
            "schema_version": 1,
            "command": command,
            "status": status,
            "summary": summary,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        Ok(())
    }
}

/// Formats rows as an aligned text table.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i] - c.chars().count();
                // Numbers right-aligned, text left-aligned.
                if i > 0
                    && c.chars()
                        .next()
                        .is_some_and(|ch| ch.is_ascii_digit() || ch == '-')
                {
                    format!("{}{}", " ".repeat(pad), c)
                } else {
                    format!("{}{}", c, " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// What a command does with the lake it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a lake that exists (sql, tables, report, sample). A typo in `--lake` must never
    /// leave a new lake behind; a lake in an older format is read as it is where its
    /// migration steps allow.
    Read,
    /// Write into a lake that exists (pack, vacuum, rebuild).
    Write,
    /// Write, creating the lake if there is none (ingest, demo).
    Create,
}

/// Resolves the lake location of a command (`--lake`, the config file, the default),
/// without looking at what is there.
pub fn resolve_lake(
    global: &crate::cli::GlobalArgs,
    default: &str,
) -> anyhow::Result<govlake::lake::Lake> {
    let config = govlake::config::PipelineConfig::load(global.config.as_deref())?;
    let options = storage_options(global, &config);
    let location = global
        .lake
        .clone()
        .or(config.lake.location)
        .unwrap_or_else(|| default.to_string());
    let loc = govlake::lake::LakeLocation::resolve(&location, options)?;
    Ok(govlake::lake::Lake::new(loc).with_retention(config.lake.retention))
}

/// Resolves the lake for a command and checks it may be used for `access`: a lake must be
/// there unless the command creates one (exit 2 otherwise, saying how to make one), and its
/// format version must allow the use (a lake from a newer govlake is refused; an older one
/// may need `govlake migrate`).
pub async fn open_lake(
    global: &crate::cli::GlobalArgs,
    default: &str,
    access: Access,
) -> anyhow::Result<govlake::lake::Lake> {
    use govlake::lake::format::{self, Found, Intent};
    let lake = resolve_lake(global, default)?;
    let intent = match access {
        Access::Read => Intent::Read,
        Access::Write | Access::Create => Intent::Write,
    };
    if format::check(&lake, intent).await? == Found::NoLake && access != Access::Create {
        anyhow::bail!(
            "no govlake lake at {}: create one with `govlake --lake {} ingest --from EXPORT_DIR` (or `ingest --graph`), or try `govlake demo`; or point --lake, GOVLAKE_LAKE or the config's [lake] location at an existing lake",
            lake.location().display(),
            lake.location().display()
        );
    }
    Ok(lake)
}

/// Storage options: the config file's `[lake.storage_options]`, then `--storage-option`.
pub fn storage_options(
    global: &crate::cli::GlobalArgs,
    config: &govlake::config::PipelineConfig,
) -> std::collections::HashMap<String, String> {
    let mut options: std::collections::HashMap<String, String> = config
        .lake
        .storage_options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    options.extend(global.storage_options.iter().cloned());
    options
}

/// A staging folder under the system temp dir, removed when dropped.
pub struct Staging(pub std::path::PathBuf);

impl Staging {
    /// Creates a fresh staging folder.
    pub fn new(what: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("govlake-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("Cannot create `{}`: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
