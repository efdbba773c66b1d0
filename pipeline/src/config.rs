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
    #[error("The config file `{}` is invalid: {message}", path.display())]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong (with line and column).
        message: String,
    },
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
        let mut config = Self::parse(&text).map_err(|message| Error::Parse {
            path: path.clone(),
            message,
        })?;
        config.source = Some(path);
        Ok(config)
    }

    /// Parses the file's text. An unknown key is named with the closest valid one.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| with_suggestion(&e.to_string()))
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
    fn unknown_keys_are_refused_with_their_name_and_the_closest_valid_one() {
        let e = PipelineConfig::parse("[lake]\nlocaton = \"x\"\n").unwrap_err();
        assert!(
            e.starts_with("`locaton` is not a config key: did you mean `location`?"),
            "{e}"
        );
        let e = PipelineConfig::parse("[lake.retention]\nlog_retention = 3\n").unwrap_err();
        assert!(e.contains("did you mean `log_retention_days`?"), "{e}");
        let e = PipelineConfig::parse("[querry]\nmemory_limit = \"1G\"\n").unwrap_err();
        assert!(e.contains("did you mean `query`?"), "{e}");
        // Nothing close: the valid keys are listed instead.
        let e = PipelineConfig::parse("[verify]\nzzzzzzzzzzzz = 1\n").unwrap_err();
        assert!(
            e.starts_with("`zzzzzzzzzzzz` is not a config key; valid here: `trusted_keys`"),
            "{e}"
        );
    }
}
