//! The config file, `govlake.toml`: what describes a deployment rather than one run — where
//! the lake lives, the storage options of its backend (emulator endpoints, `allow_http`,
//! regions) and how long old table versions stay readable. Command-line flags and
//! environment variables override it; secrets never live here (they come from the
//! environment, see `lake::backends`).
//!
//! ```toml
//! [lake]
//! location = "s3://governance-evidence/govlake"
//! [lake.storage_options]
//! aws_region = "eu-west-1"
//! [lake.retention]
//! log_retention_days = 2557        # Delta log kept ~7 years: old versions stay loadable
//! deleted_file_retention_days = 7  # vacuum's floor for files no pinned version needs
//! checkpoint_interval_commits = 100  # a log checkpoint every 100 commits
//! [query]
//! memory_limit = "8G"              # or "25%"; --memory-limit / GOVLAKE_MEMORY_LIMIT override it
//! [verify]
//! trusted_keys = ["keys/evidence.pub"]  # or the key's `RW…` line; --public-key replaces them
//!
//! [job]                            # `govlake job run`, for a scheduler
//! graph = true                     # ingest live from Graph (sign-in from the environment)
//! log_analytics_workspace = "0b1f…"  # backfill an audit gap past Graph's retention from it
//! exports = ["/data/em-export"]    # and/or export folders, each run
//! alert_on = "new"                 # exit 1 when a finding view gained rows ("any", "never")
//! vacuum = true                    # vacuum after ingesting (keeps pinned versions)
//! lease_ttl_secs = 600             # the lake's job lease lasts this long unless renewed
//! [job.pack]                       # the quarter's evidence pack, built once after it closes
//! out = "s3://governance-evidence/packs"  # or a folder; the pack goes to <out>/<quarter>
//! key_file = "keys/evidence.key"   # else GOVLAKE_SIGNING_KEY
//!
//! [notify]                         # where `job run` and `changes --notify` report
//! max_attempts = 4                 # per webhook, the first try included
//! [[notify.webhooks]]
//! name = "governance-team"
//! kind = "teams"                   # "generic" JSON, "teams" or "slack"
//! url_env = "GOVLAKE_TEAMS_WEBHOOK"  # the URL (a secret) comes from this variable
//! on = "new"                       # send when rows were added ("any" change, "always")
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the config file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("Failed to read the config file `{}`", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("The config file `{}` is invalid: {source}", path.display())]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong (with line and column).
        #[source]
        source: ParseError,
    },
}

/// The config's text is not valid TOML, or has a key no section takes (named with the
/// closest valid one).
#[derive(Debug, thiserror::Error)]
#[error("{}", with_suggestion(&.source.to_string()))]
pub struct ParseError {
    /// The TOML reader's error (with line and column).
    #[source]
    source: toml::de::Error,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where the lake lives and how it is kept.
    #[serde(default)]
    pub lake: LakeConfig,
    /// How queries run.
    #[serde(default)]
    pub query: QueryConfig,
    /// Whose signatures `govlake verify` accepts.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// What `govlake job run` does.
    #[serde(default)]
    pub job: JobConfig,
    /// Who is told, and how.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The file this was read from (none: defaults).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[query]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Memory `govlake sql` queries may hold (`8G`, `512M`, `25%`); beyond it they spill
    /// to the temporary folder or fail. Default: half of the machine's memory.
    pub memory_limit: Option<String>,
}

/// When a job or a notification counts the changes as news.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertOn {
    /// A finding view gained rows.
    #[default]
    New,
    /// A finding view gained, lost or changed rows.
    Any,
    /// Never (the job exits 0 whatever changed).
    Never,
}

/// `[job]`: what one `govlake job run` does, in this order: ingest (Graph, then each export
/// folder), vacuum, the changes since the previous run, notifications, the quarter's pack.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Ingest live from Microsoft Graph (sign-in and endpoint as `govlake ingest --graph`:
    /// from the environment).
    #[serde(default)]
    pub graph: bool,
    /// A Log Analytics workspace (id) to backfill audit events from when the Graph ingest's
    /// audit window reaches past Graph's retention (a coverage gap: the job was not run for
    /// longer than Graph keeps events). Sign-in as for `graph`; the endpoint from
    /// `GOVLAKE_LOG_ANALYTICS_ENDPOINT` (national clouds). Without it such a gap is left for
    /// a person (exit 1).
    pub log_analytics_workspace: Option<String>,
    /// Export folders (or files) to ingest on every run, as `govlake ingest --from`; a
    /// relative path is taken from the config file's folder.
    #[serde(default)]
    pub exports: Vec<PathBuf>,
    /// Report the changes of the finding views since the previous run.
    #[serde(default = "default_true")]
    pub changes: bool,
    /// Only these finding views (default: every view that declares a row key).
    #[serde(default)]
    pub views: Vec<String>,
    /// Which changes make the job exit 1 ("finished, a person should look").
    #[serde(default)]
    pub alert_on: AlertOn,
    /// Vacuum the lake after ingesting (versions pinned by packs are kept).
    #[serde(default)]
    pub vacuum: bool,
    /// The vacuum's retention in hours (default: `[lake.retention]`'s).
    pub vacuum_retain_hours: Option<u64>,
    /// How long the lake's job lease lasts unless renewed (the running job renews it every
    /// third of this); a lease left by a killed job is taken over after it.
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// The quarter's evidence pack: built, signed, published and pinned by the first run
    /// after a quarter closes, unless a pack of that quarter is pinned already.
    pub pack: Option<JobPackConfig>,
}

fn default_true() -> bool {
    true
}

fn default_lease_ttl_secs() -> u64 {
    600
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            graph: false,
            log_analytics_workspace: None,
            exports: vec![],
            changes: true,
            views: vec![],
            alert_on: AlertOn::New,
            vacuum: false,
            vacuum_retain_hours: None,
            lease_ttl_secs: default_lease_ttl_secs(),
            pack: None,
        }
    }
}

/// `[job.pack]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JobPackConfig {
    /// Where packs go: a folder or an object-storage URL (credentials from the
    /// environment); each quarter's pack is `<out>/<quarter>` (and `<out>/<quarter>.tar`).
    pub out: String,
    /// The signing key file (from `govlake keygen`); else `GOVLAKE_SIGNING_KEY`. A job never
    /// builds an unsigned pack.
    pub key_file: Option<PathBuf>,
}

/// `[notify]`: webhooks told after `govlake job run` and `govlake changes --notify`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Requests per webhook and message at most, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The first wait before a retry, in milliseconds (doubling after each attempt).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// The longest wait between attempts, also for a server's Retry-After.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Time allowed for one request.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The webhooks.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

fn default_max_attempts() -> u32 {
    4
}

fn default_backoff_ms() -> u64 {
    2000
}

fn default_max_backoff_ms() -> u64 {
    60_000
}

fn default_timeout_secs() -> u64 {
    30
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            timeout_secs: default_timeout_secs(),
            webhooks: vec![],
        }
    }
}

/// `[[notify.webhooks]]`: one incoming webhook.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name for logs and the job summary.
    pub name: String,
    /// The payload it takes.
    #[serde(default)]
    pub kind: WebhookKind,
    /// The environment variable holding the webhook's URL (its secret is in the URL, so
    /// the URL itself never lives in this file and is never printed).
    pub url_env: String,
    /// When to send.
    #[serde(default)]
    pub on: NotifyOn,
}

/// Payload kinds.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// `{"title", "lines", "pack", "document"}`: the whole changes or job summary.
    #[default]
    Generic,
    /// A Microsoft Teams message carrying an Adaptive Card (Teams workflows' incoming
    /// webhook).
    Teams,
    /// A Slack incoming-webhook message (`text`).
    Slack,
}

/// When a webhook is sent.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Rows were added to a finding view.
    #[default]
    New,
    /// Anything changed.
    Any,
    /// Every run (a heartbeat).
    Always,
}

/// `[verify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// The public keys of trusted pack signers: minisign public key files (a relative path
    /// is taken from the config file's folder) or a key's base64 line (`RW…`). A pack
    /// verifies only when one of them signed it; `--public-key` replaces them.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// `[lake]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Lake location (folder or URL); `--lake` / `GOVLAKE_LAKE` override it.
    pub location: Option<String>,
    /// object_store options of the backend (`aws_endpoint`, `allow_http`, `aws_region`,
    /// `azure_storage_account_name`, …); `--storage-option` overrides them key by key.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// How long old versions stay readable.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[lake.retention]`: how the lake keeps its history. Evidence packs pin table versions, so
/// the lake keeps them readable; checkpoints keep long logs quick to open.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days the Delta log of a table is kept (`delta.logRetentionDuration` of tables
    /// govlake creates). Versions older than this cannot be loaded.
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: u32,
    /// Days a data file stays after a commit removed it before `govlake vacuum` may delete
    /// it (`delta.deletedFileRetentionDuration`). Versions pinned by evidence packs keep
    /// their files regardless.
    #[serde(default = "default_deleted_file_retention_days")]
    pub deleted_file_retention_days: u32,
    /// Commits between checkpoints of a table's log (`delta.checkpointInterval` of tables
    /// govlake creates), so opening a table reads the newest checkpoint and the commits
    /// after it instead of every commit since version 0. An ingest also writes a checkpoint
    /// for any table it wrote to whose newest checkpoint is this many commits behind
    /// (tables from older lakes, or a checkpoint a crash skipped).
    #[serde(default = "default_checkpoint_interval_commits")]
    pub checkpoint_interval_commits: u32,
}

fn default_log_retention_days() -> u32 {
    // Seven years: the usual retention of audit evidence in regulated industries.
    2557
}

fn default_deleted_file_retention_days() -> u32 {
    7
}

fn default_checkpoint_interval_commits() -> u32 {
    // Delta's default.
    100
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            log_retention_days: default_log_retention_days(),
            deleted_file_retention_days: default_deleted_file_retention_days(),
            checkpoint_interval_commits: default_checkpoint_interval_commits(),
        }
    }
}

impl PipelineConfig {
    /// Reads the config: the given file (which must exist), else `./govlake.toml` when
    /// present, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Self, Error> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("govlake.toml");
                if !p.is_file() {
                    return Ok(Self::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|source| Error::Parse {
            path: path.clone(),
            source,
        })?;
        config.source = Some(path);
        Ok(config)
    }

    /// Parses the file's text. An unknown key is named with the closest valid one.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        toml::from_str(text).map_err(|source| ParseError { source })
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`"), with the
/// valid key closest to `x` added; other messages unchanged.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let line_end = expected.find('\n').unwrap_or(expected.len());
    let valid: Vec<&str> = expected[..line_end].split('`').skip(1).step_by(2).collect();
    let hint = match crate::suggest::closest(unknown, &valid, 1).first() {
        Some(near) => format!("`{unknown}` is not a config key: did you mean `{near}`?"),
        None => format!(
            "`{unknown}` is not a config key; valid here: {}",
            crate::suggest::or_list(&valid)
        ),
    };
    format!("{hint} ({})", message.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = PipelineConfig::parse("").unwrap();
        assert_eq!(c.lake.retention, RetentionConfig::default());
        let c = PipelineConfig::parse(
            "[lake]\nlocation = \"s3://b/p\"\n[lake.storage_options]\naws_endpoint = \"http://127.0.0.1:9\"\n[lake.retention]\nlog_retention_days = 30\n",
        )
        .unwrap();
        assert_eq!(c.lake.location.as_deref(), Some("s3://b/p"));
        assert_eq!(c.lake.storage_options["aws_endpoint"], "http://127.0.0.1:9");
        assert_eq!(c.lake.retention.log_retention_days, 30);
        assert_eq!(c.lake.retention.deleted_file_retention_days, 7);
        assert!(c.verify.trusted_keys.is_empty());
        let c = PipelineConfig::parse("[verify]\ntrusted_keys = [\"a.pub\"]\n").unwrap();
        assert_eq!(c.verify.trusted_keys, ["a.pub"]);
    }

    #[test]
    fn job_and_notify_sections() {
        let c = PipelineConfig::parse(
            "[job]\nexports = [\"x\"]\nalert_on = \"any\"\n[job.pack]\nout = \"s3://b/packs\"\n[notify]\nmax_attempts = 3\n[[notify.webhooks]]\nname = \"t\"\nkind = \"teams\"\nurl_env = \"HOOK\"\n",
        )
        .unwrap();
        assert_eq!(c.job.exports, [PathBuf::from("x")]);
        assert_eq!(c.job.alert_on, AlertOn::Any);
        assert!(c.job.changes);
        assert_eq!(c.job.lease_ttl_secs, 600);
        assert_eq!(c.job.pack.unwrap().out, "s3://b/packs");
        assert_eq!(c.notify.max_attempts, 3);
        assert_eq!(c.notify.webhooks[0].kind, WebhookKind::Teams);
        assert_eq!(c.notify.webhooks[0].on, NotifyOn::New);
        let e = PipelineConfig::parse("[[notify.webhooks]]\nname = \"t\"\nurl = \"https://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("url"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name_and_the_closest_valid_one() {
        let e = PipelineConfig::parse("[lake]\nlocaton = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`locaton` is not a config key: did you mean `location`?"),
            "{e}"
        );
        let e = PipelineConfig::parse("[lake.retention]\nlog_retention = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `log_retention_days`?"), "{e}");
        let e = PipelineConfig::parse("[querry]\nmemory_limit = \"1G\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `query`?"), "{e}");
        // Nothing close: the valid keys are listed instead.
        let e = PipelineConfig::parse("[verify]\nzzzzzzzzzzzz = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`zzzzzzzzzzzz` is not a config key; valid here: `trusted_keys`"),
            "{e}"
        );
    }
}
