//! Command-line interface (clap derive). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// govlake: Entra ID Governance history as a Delta Lake, governance SQL and examiner evidence.
///
/// Ingest Entitlement Management exports (Graph pages, JSON Lines, diagnostic-settings
/// archives) into Delta tables, query them, and turn them into auditor reports and signed
/// evidence packs. Exit codes: 0 success, 1 finished with a failure (rejected records, a
/// coverage gap such as a partial snapshot, a pack that does not verify), 2 error, 3 (verify)
/// a whole pack whose signer is not pinned, 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "govlake",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Lake location: a folder (created by `ingest`, `demo` or `job run` if missing; every
    /// other command needs an existing lake), or a URL: s3://BUCKET/PATH,
    /// az://CONTAINER/PATH, abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH,
    /// gs://BUCKET/PATH, file://, memory://. Credentials come from the environment (README,
    /// "Object storage"). Default: [lake] location of the config file, else ./govlake-data
    /// (./govlake-demo for `govlake demo`).
    #[arg(long, global = true, env = "GOVLAKE_LAKE", value_name = "PATH|URL")]
    pub lake: Option<String>,
    /// An object_store option of the lake's backend, e.g. aws_endpoint=http://127.0.0.1:9000
    /// or allow_http=true (repeatable; overrides the config file's [lake.storage_options]).
    /// Secrets (keys, SAS tokens) are refused here: set them in the environment.
    #[arg(long = "storage-option", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub storage_options: Vec<(String, String)>,
    /// Config file (TOML). Default: ./govlake.toml when it exists.
    #[arg(long, global = true, env = "GOVLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format on stdout: human-readable text, or one JSON document for scripts.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Print less (repeat for errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Print more logs on stderr (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Hide progress bars (env GOVLAKE_NO_PROGRESS=1).
    #[arg(long, global = true, env = "GOVLAKE_NO_PROGRESS", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
}

/// A `--storage-option` without a key and `=`.
#[derive(Debug, thiserror::Error)]
#[error("expected KEY=VALUE, got `{0}`")]
pub struct NotKeyValue(String);

fn parse_key_value(s: &str) -> Result<(String, String), NotKeyValue> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(NotKeyValue(s.to_string())),
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Text,
    /// One JSON document: {"schema_version":1,"command":…,"status":…,"summary":…}.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read export files and folders into the lake (exactly once: reruns add nothing twice).
    Ingest(IngestArgs),
    /// List the lake's tables with row counts, Delta versions and the last run's reconciliation.
    Tables,
    /// Ingest the bundled sample tenant into a local lake, show what it holds and write its
    /// signed evidence pack.
    Demo(DemoArgs),
    /// Write a synthetic tenant in export-directory form (the sample tenant's shape, any size).
    Generate(GenerateArgs),
    /// Read-only SQL over the lake, with the governance views of queries/*.sql registered.
    Sql(SqlArgs),
    /// One access package's auditor report for a period (HTML, Markdown or CSV).
    Report(ReportArgs),
    /// The quarterly examiner evidence pack: index, package reports, populations, SQL,
    /// reconciliation, coverage gaps, SHA-256 manifest, signature; a tar of it with --archive.
    Pack(PackArgs),
    /// Check an evidence pack: every hash, extra and missing files, and the signature
    /// (exit 0 verified, 1 failed, 3 whole but the signer not pinned).
    Verify(VerifyArgs),
    /// Make a signing key pair for evidence packs (minisign-compatible public key).
    Keygen(KeygenArgs),
    /// Delete old data files no current table version reads, keeping every version an
    /// evidence pack pinned (so packs stay reproducible).
    Vacuum(VacuumArgs),
    /// Rewrite tables' small data files into few large ones (Delta OPTIMIZE), so views read
    /// few files; rows and earlier versions are unchanged. A large ingest does this itself.
    Optimize(OptimizeArgs),
    /// A reproducible random sample of a view's rows, for auditors' testing.
    Sample(SampleArgs),
    /// Upgrade a lake written by an older govlake to this govlake's format (back it up
    /// first; README "Upgrading").
    Migrate(MigrateArgs),
    /// Rebuild typed tables and their _history from the raw layer with this govlake's
    /// mapping, as new Delta versions (old versions stay readable by time travel).
    Rebuild(RebuildArgs),
    /// Check a deployment before its first scheduled run: config, lake, sign-in, permissions,
    /// Graph (exit 0 ok, 1 warnings, 2 a failure).
    ///
    /// One line per check, ok / warning / failed and what to do: the config file and the
    /// lake's location; the lake readable and writable (a probe object, removed again; no lake
    /// is created); with --graph, sign-in, the token's roles (every read permission a run
    /// needs; a write permission is a warning), one item of every collection (a 403 names the
    /// missing permission), the lake's newest audit event against Graph's retention, and the
    /// clock against the token endpoint's; with --log-analytics, the workspace.
    // Of the options shared with `ingest --graph`, the ones about what a run reads are hidden.
    #[command(
        mut_arg("page_size", |a| a.hide(true)),
        mut_arg("overlap_minutes", |a| a.hide(true)),
        mut_arg("since", |a| a.hide(true)),
        mut_arg("until", |a| a.hide(true)),
        mut_arg("full", |a| a.hide(true)),
        mut_arg("concurrency", |a| a.hide(true)),
        mut_arg("spool", |a| a.hide(true)),
        mut_arg("no_rate_limit", |a| a.hide(true)),
    )]
    Doctor(DoctorArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout (`govlake manpage > govlake.1`), or write one
    /// page per command into a folder.
    Manpage(ManpageArgs),
    /// What changed in the finding views (SoD, expiration, policy findings, …) between the
    /// end of an ingest run and now (or another run): rows added, removed and changed
    /// (exit 1 with --fail-on when there are any).
    Changes(ChangesArgs),
    /// The unattended job a scheduler runs: ingest, changes, notifications, the quarter's
    /// evidence pack, one job at a time per lake ([job] and [notify] of the config file).
    #[command(subcommand)]
    Job(JobCommand),
}

/// `govlake changes`.
#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// The earlier state: a run id (the lake at the end of that ingest run, its tables at the
    /// Delta versions `_ingest_runs` recorded) or an RFC 3339 time (the end of the last run
    /// finished by then).
    #[arg(long, value_name = "RUN_ID|TIMESTAMP")]
    pub since: String,
    /// The later state, in the same forms; `now` is the lake as it is.
    #[arg(long, value_name = "RUN_ID|TIMESTAMP|now", default_value = "now")]
    pub until: String,
    /// Compare only this view (repeatable). It must declare its row key (a `-- Key: col, …`
    /// line in its leading comment). Default: every view that declares one.
    #[arg(long = "view", value_name = "NAME")]
    pub views: Vec<String>,
    /// The result's format (`--format json` alone also selects json):
    /// {"since":…,"until":…,"views":{"<view>":{"added":[…],"removed":[…],"changed":[…]}}}.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = ChangesFormat::Table)]
    pub output: ChangesFormat,
    /// Exit 1 when rows were added (`new`) or anything changed (`any`), so a scheduler can
    /// alert on the exit code alone.
    #[arg(long, value_enum, value_name = "WHEN")]
    pub fail_on: Option<FailOn>,
    /// Also send the changes to the config file's [notify] webhooks.
    #[arg(long)]
    pub notify: bool,
    /// Read the views from this folder instead of the embedded queries/.
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,
    /// Memory each query may hold, as `govlake sql --memory-limit`.
    #[arg(long, env = "GOVLAKE_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,
}

/// Formats of `govlake changes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChangesFormat {
    /// Per view, the keys of the rows added, removed and changed.
    Table,
    /// One JSON document with every row.
    Json,
    /// One line per row: view, change, key, changed columns, the row (and the row before)
    /// as JSON; cells a spreadsheet would run as formulas prefixed with `'`.
    Csv,
}

/// When `changes` exits 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    /// A row was added to a finding view.
    New,
    /// A row was added, removed or changed.
    Any,
}

/// `govlake job`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run the config file's [job] once: take the lake's lease, ingest, report the changes
    /// since the previous run, notify, build the quarter's pack when due. Exit 0 done, 1
    /// done but something needs a person (new findings, rejects, a coverage gap, a failed
    /// notification), 2 error (another job holds the lease, bad config).
    Run(JobRunArgs),
}

/// `govlake job run`.
#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// Print the plan (steps, sources, targets) without touching the tenant or the lake.
    #[arg(long)]
    pub dry_run: bool,
    /// When another job holds the lake's lease, wait up to this many seconds for it to
    /// finish or its lease to expire (`--wait` alone: an hour). Without it: exit 2 at once,
    /// naming the holder.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "3600")]
    pub wait: Option<u64>,
    /// The time the job takes as now when deciding which quarter has closed (RFC 3339;
    /// default: now). For catch-up runs and tests.
    #[arg(long, value_name = "TIMESTAMP")]
    pub at: Option<String>,
}

/// `govlake manpage`.
#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write govlake.1 and a govlake-COMMAND.1 page per command into this folder (created)
    /// instead of printing govlake.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `govlake doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check Microsoft Graph: sign-in (same credentials as `ingest --graph`), the
    /// token's roles, one item of every collection, audit retention and clock skew.
    #[arg(long)]
    pub graph: bool,
    /// Also check this Log Analytics workspace: sign-in and a one-row query of AuditLogs.
    #[arg(long, value_name = "WORKSPACE_ID")]
    pub log_analytics: Option<String>,
    /// Hours until the next scheduled run: audit events that leave Graph's retention
    /// before then are a warning.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub run_every_hours: u64,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// `govlake completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `govlake migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only list the steps from the lake's format to this govlake's; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `govlake rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// A table to rebuild (repeatable; its _history goes with it). Default: every typed
    /// table.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
}

/// `govlake vacuum`.
#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// Keep files removed less than this many hours ago. Default: the config's
    /// [lake.retention] deleted_file_retention_days (7 days). Below 168 (7 days) it needs
    /// --allow-short-retention.
    #[arg(long, value_name = "HOURS")]
    pub retain_hours: Option<u64>,
    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete files no commit references (left by a writer killed between upload and
    /// commit) once they are older than the retention and than one hour, so a file an
    /// ingest running now has uploaded but not yet committed is never taken. Lists every
    /// file of every table.
    #[arg(long)]
    pub full: bool,
    /// Accept a retention below 168 hours (7 days). Files a commit removed are then deleted
    /// sooner, so a reader still on an older version (a long query, a pack regenerated from
    /// versions it did not pin) may fail; files no commit references are still kept for an
    /// hour, so a concurrent ingest is never broken.
    #[arg(long)]
    pub allow_short_retention: bool,
}

/// `govlake optimize`.
#[derive(Debug, Args)]
pub struct OptimizeArgs {
    /// A table to compact (repeatable). Default: every table but `_raw` (which views do
    /// not read; name it to compact it too).
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Compact a table only when it holds at least this many small files (under 16 MiB).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub min_small_files: usize,
    /// Only count each table's files and small files.
    #[arg(long)]
    pub dry_run: bool,
}

/// `govlake sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The view whose population is sampled (e.g. approval_trail).
    #[arg(long, value_name = "NAME")]
    pub view: String,
    /// Rows to draw.
    #[arg(long, value_name = "N")]
    pub size: usize,
    /// Seed; the same population, size and seed give the same sample.
    #[arg(long, value_name = "S")]
    pub seed: u64,
    /// Write the sample (CSV) to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Pin tables to Delta versions or a time, as `govlake sql --as-of`.
    #[arg(long, value_name = "TIMESTAMP|TABLE=VERSION,...")]
    pub as_of: Option<String>,
    /// Queries folder overriding the embedded queries/.
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,
}

/// The period a report covers.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// A calendar quarter, e.g. 2026Q3.
    #[arg(long, value_name = "QUARTER", conflicts_with_all = ["from", "to"], required_unless_present_all = ["from", "to"])]
    pub period: Option<String>,
    /// Start of an explicit period (RFC 3339, inclusive).
    #[arg(long, value_name = "TIMESTAMP", requires = "to")]
    pub from: Option<String>,
    /// End of an explicit period (RFC 3339, exclusive).
    #[arg(long, value_name = "TIMESTAMP", requires = "from")]
    pub to: Option<String>,
}

/// `govlake report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The access package: its id or exact display name.
    #[arg(long, value_name = "NAME|ID")]
    pub package: String,
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Report format: html and md write one file; csv writes one file per section.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = ReportFormat::Html)]
    pub output: ReportFormat,
    /// Folder to write into (created).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Templates folder overriding the embedded report-templates/.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Queries folder overriding the embedded queries/.
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,
    /// Pin tables to Delta versions (`table=version,...`) or a time, as `govlake sql --as-of`.
    #[arg(long, value_name = "TIMESTAMP|TABLE=VERSION,...")]
    pub as_of: Option<String>,
}

/// Formats of `govlake report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML page (inline CSS and SVG, no script).
    Html,
    /// Markdown.
    Md,
    /// One CSV file per section.
    Csv,
}

/// `govlake pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Pack folder to create (must not exist or be empty); with `--archive` the archive is
    /// written beside it as DIR.tar.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Secret key file from `govlake keygen` (or the key itself in GOVLAKE_SIGNING_KEY).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Write the pack without a signature (verification will say so).
    #[arg(long, conflicts_with = "key")]
    pub unsigned: bool,
    /// Also write DIR.tar, a deterministic tar of the finished folder (the pack's bytes
    /// written twice; scheduled `govlake job` packs always have one).
    #[arg(long)]
    pub archive: bool,
    /// The default since the archive became opt-in (kept so scripts that pass it still run).
    #[arg(long, hide = true, conflicts_with = "archive")]
    pub no_archive: bool,
    /// Draw and record a random sample of a view for testing: VIEW:SIZE:SEED (repeatable).
    #[arg(long = "sample", value_name = "VIEW:SIZE:SEED")]
    pub samples: Vec<String>,
    /// Templates folder overriding the embedded report-templates/.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Queries folder overriding the embedded queries/.
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,
    /// Pin tables to Delta versions (`table=version,...`; a pack's provenance.json gives the
    /// exact command to regenerate it byte for byte).
    #[arg(long, value_name = "TABLE=VERSION,...")]
    pub as_of: Option<String>,
    /// Memory the pack's queries may hold, as `govlake sql --memory-limit`: beyond it their
    /// sorts and joins spill to the temporary folder. Default: the config file's
    /// `[query] memory_limit`, else half of the machine's memory.
    #[arg(long, env = "GOVLAKE_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,
}

/// `govlake verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The pack folder.
    pub pack: PathBuf,
    /// The expected signer's public key (minisign format); replaces the config file's
    /// `[verify] trusted_keys`. With neither, the pack's own signer.pub is used, which
    /// proves integrity but not who signed: exit 3, never 0.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

/// `govlake keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix: writes PREFIX.key (secret, mode 0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX", default_value = "govlake")]
    pub out: PathBuf,
}

/// `govlake sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL to run.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub command: Option<String>,
    /// A file holding the SQL to run (e.g. queries/access_as_of.sql).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Bind a named parameter (`$name` in the SQL) to a value; repeatable. Values are bound,
    /// never pasted into the SQL.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The result's format (`--format json` alone also selects json).
    #[arg(long = "output", short = 'o', value_enum, default_value_t = SqlFormat::Table)]
    pub output: SqlFormat,
    /// Write the result to this file instead of stdout (replaced if it exists).
    #[arg(long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read the views from this folder instead of the embedded queries/.
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,
    /// Stop after N rows and count the rest without keeping them (the count goes to
    /// stderr). Default: 1000 for the table output (it holds its rows to align them), all
    /// rows for the streamed formats; 0 means all rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Memory the query may hold: bytes, a size (512M, 8G) or a share of the machine's
    /// memory (25%). Beyond it sorts, aggregations and joins spill to the temporary folder,
    /// and a query that still cannot fit fails. Default: the config file's
    /// `[query] memory_limit`, else half of the machine's memory.
    #[arg(long, env = "GOVLAKE_MEMORY_LIMIT", value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// List tables and views with their descriptions.
    #[arg(long)]
    pub list: bool,
    /// Time travel: every table as it was at a time (RFC 3339, Delta commit time; tables
    /// created later are absent), or tables pinned to Delta versions as `table=version`
    /// pairs separated by commas (unnamed tables at their newest version).
    #[arg(long, value_name = "TIMESTAMP|TABLE=VERSION,...")]
    pub as_of: Option<String>,
}

/// Result formats of `govlake sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqlFormat {
    /// An aligned table.
    Table,
    /// CSV (RFC 4180), cells that a spreadsheet would run as formulas prefixed with `'`.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet (needs `--out FILE` or a redirected stdout).
    Parquet,
}

/// `govlake ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Export files or folders (read recursively): Graph list pages as `az rest` or
    /// `Invoke-MgGraphRequest` save them, JSON Lines, and diagnostic-settings archives
    /// (insights-logs-auditlogs/**/PT1H.json).
    /// Saved Log Analytics results (`az monitor log-analytics query` JSON of `AuditLogs`) are
    /// read as audit events.
    #[arg(long = "from", required_unless_present_any = ["graph", "log_analytics"], conflicts_with_all = ["graph", "log_analytics"], num_args = 1.., value_name = "PATH")]
    pub from: Vec<PathBuf>,
    /// Read live from Microsoft Graph instead. App-only sign-in from the environment:
    /// AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET, or
    /// AZURE_CLIENT_CERTIFICATE_PATH (PEM, or PFX with AZURE_CLIENT_CERTIFICATE_PASSWORD), or AZURE_FEDERATED_TOKEN_FILE (workload identity
    /// federation); or `--managed-identity`. Needs only the read-only application permissions
    /// EntitlementManagement.Read.All, AccessReview.Read.All, AuditLog.Read.All,
    /// Directory.Read.All and GroupMember.Read.All (a warning names any write permission the
    /// token carries). Requests are read from the last run's newest createdDateTime (and
    /// every request still unfinished), audit events from the last run's newest event minus
    /// `--overlap-minutes`.
    #[arg(long, conflicts_with = "log_analytics")]
    pub graph: bool,
    /// Backfill audit events older than Graph's 30 days from a Log Analytics workspace (the
    /// `AuditLogs` table of Entra's diagnostic settings), in day-sized windows from `--since`
    /// to `--until`. Same sign-in as `--graph`; needs the Log Analytics Reader role.
    #[arg(long, value_name = "WORKSPACE_ID", requires = "since")]
    pub log_analytics: Option<String>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// When the exported snapshots were taken (RFC 3339). Default: `exportedAt` of the
    /// export's `_export.json`, else now.
    #[arg(long, value_name = "TIMESTAMP")]
    pub observed_at: Option<String>,
    /// Exit 0 even when records were rejected (they are still quarantined in `_rejects`).
    #[arg(long)]
    pub allow_rejects: bool,
    /// Exit 0 even when a snapshot was not read whole (a page missing or unreadable). Its
    /// objects are kept open either way: a partial snapshot never closes history.
    #[arg(long)]
    pub allow_gaps: bool,
    /// Top-level records (audit events) held in memory before they are written to the
    /// append-only tables' open files; their child rows follow them into the same chunk.
    /// 64 MiB of raw records or of typed rows ends a chunk earlier. Larger chunks hold more
    /// memory.
    #[arg(long, default_value_t = govlake::ingest::DEFAULT_CHUNK_ROWS, value_name = "N")]
    pub chunk_rows: usize,
    /// Top-level records written to the append-only tables before their files are
    /// committed (the rest commit when the run ends). Fewer, larger commits write fewer,
    /// larger files and are faster on big tables; smaller ones lose less to a crash (which
    /// never duplicates: the rerun stores what was not committed).
    #[arg(long, default_value_t = govlake::ingest::DEFAULT_COMMIT_ROWS, value_name = "N")]
    pub commit_rows: usize,
    /// Dedupe keys held in memory per table before they spill to sorted files in TMPDIR
    /// (tests set it low to exercise the spill).
    #[arg(long, default_value_t = govlake::ingest::keyset::DEFAULT_LIMIT, value_name = "N", hide = true)]
    pub dedupe_keys_in_memory: usize,
    /// Small files a table this run wrote may hold before the run compacts it (tests set
    /// it low; `govlake optimize` does the same on demand).
    #[arg(long, default_value_t = govlake::ingest::COMPACT_PAST_SMALL_FILES, value_name = "N", hide = true)]
    pub compact_past_small_files: usize,
    /// Small files one partition of a table this run wrote may hold before the run
    /// compacts the table.
    #[arg(
        long,
        default_value_t = govlake::ingest::COMPACT_PAST_SMALL_FILES_IN_A_PARTITION,
        value_name = "N",
        hide = true
    )]
    pub compact_past_small_files_in_a_partition: usize,
}

/// Options of `govlake ingest --graph`.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Graph endpoint: national clouds (https://graph.microsoft.us, …) or the simulator.
    #[arg(
        long,
        env = "GOVLAKE_GRAPH_ENDPOINT",
        default_value = "https://graph.microsoft.com",
        value_name = "URL"
    )]
    pub graph_endpoint: String,
    /// Entra authority host for sign-in.
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com",
        value_name = "URL"
    )]
    pub authority_host: String,
    /// Tenant id or domain.
    #[arg(long, env = "AZURE_TENANT_ID", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Application (client) id.
    #[arg(long, env = "AZURE_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// Records per page ($top).
    #[arg(long, default_value_t = 999, value_name = "N")]
    pub page_size: u32,
    /// Audit events are re-read this far behind the last run's newest event (late events
    /// land there; duplicates are dropped by id).
    #[arg(long, default_value_t = 15, value_name = "MIN")]
    pub overlap_minutes: u64,
    /// Read audit events from this time (RFC 3339) instead of the watermark (backfill).
    #[arg(long, value_name = "TIMESTAMP", conflicts_with = "full")]
    pub since: Option<String>,
    /// With `--log-analytics`: read audit events before this time (default: now).
    #[arg(long, value_name = "TIMESTAMP", requires = "log_analytics")]
    pub until: Option<String>,
    /// Log Analytics query API (national clouds: https://api.loganalytics.us, …; or the
    /// simulator).
    #[arg(
        long,
        env = "GOVLAKE_LOG_ANALYTICS_ENDPOINT",
        default_value = "https://api.loganalytics.io",
        value_name = "URL"
    )]
    pub log_analytics_endpoint: String,
    /// Sign in as the managed identity of the Azure resource govlake runs on (App Service,
    /// Functions, Container Apps: IDENTITY_ENDPOINT; VMs: the instance metadata service).
    /// AZURE_CLIENT_ID picks a user-assigned identity.
    #[arg(long, conflicts_with = "device_code")]
    pub managed_identity: bool,
    /// Sign in as a person (delegated) with a code entered on another device, and read the
    /// approval stages of each request, which app-only sign-in cannot read. Needs a public
    /// client app with the delegated permissions, and a person at hand: not for cron.
    #[arg(long)]
    pub device_code: bool,
    /// Days of audit events Graph keeps (30 with Entra ID P1/P2, 7 on Free). A window that
    /// starts earlier is reported as a coverage gap: backfill it with `--log-analytics`.
    #[arg(
        long,
        default_value_t = 30,
        value_name = "DAYS",
        overrides_with = "graph_retention_days"
    )]
    pub graph_retention_days: u64,
    /// Read every request and audit event Graph still holds, ignoring the watermarks.
    #[arg(long)]
    pub full: bool,
    /// Child listings (sponsors, review instances and decisions, group members, approval
    /// stages: one per parent) fetched at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Do not limit directoryAudits to 5 requests per 10 s (simulator benchmarks).
    #[arg(long)]
    pub no_rate_limit: bool,
    /// Attempts per request (429, 5xx, cut-short bodies), first try included.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_attempts: u32,
    /// First backoff step for 5xx and transport errors, in milliseconds (doubles, jittered).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub backoff_ms: u64,
    /// Time allowed for the whole fetch, in minutes.
    #[arg(long, default_value_t = 120, value_name = "MIN")]
    pub deadline_minutes: u64,
    /// Keep the fetched pages in this folder, one Zstandard-compressed file per page
    /// (`0000001.json.zst`; default: a temporary folder, removed after a successful run).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
}

/// `govlake demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The sample tenant to ingest. Default: the repository's sample-data/.
    #[arg(long, value_name = "DIR")]
    pub sample_data: Option<PathBuf>,
    /// Where to write the evidence pack (replaced on each demo run); its signing key pair is
    /// DIR.key / DIR.pub, made on the first run.
    #[arg(long, value_name = "DIR", default_value = "govlake-demo-pack")]
    pub pack: PathBuf,
    /// The quarter the demo pack covers.
    #[arg(long, value_name = "QUARTER", default_value = "2026Q3")]
    pub period: String,
    /// Read the sample tenant live, through the Graph simulator started on 127.0.0.1 (with
    /// a few 429s and 503s to show them being waited out), instead of from its files.
    #[arg(long)]
    pub live: bool,
    /// The Graph simulator binary `--live` runs. Default: `govlake-graph-sim` next to this
    /// govlake, else on PATH (build it with `cargo build -p govlake-graph-sim`).
    #[arg(long, value_name = "PATH", requires = "live")]
    pub simulator: Option<PathBuf>,
}

/// `govlake generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of users in the tenant (the sample tenant has 60; about 13 audit events per user, so ~77,000 gives 1M).
    #[arg(long, default_value_t = 60)]
    pub users: u32,
    /// Random seed; the same seed and size give byte-identical output.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output folder (created; must be empty or absent).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Records per page file.
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    /// Access packages in all (the story's three plus department packages). Default: three
    /// plus one per 500 users, at most 2,003.
    #[arg(long, value_name = "N")]
    pub packages: Option<u32>,
}
