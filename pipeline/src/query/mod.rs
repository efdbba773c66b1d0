//! Stage 3, query: a DataFusion session over the lake, with every lake table registered
//! under its name; `views` adds the governance views of `queries/*.sql`. Every session runs
//! with a bounded memory pool ([`MemoryLimit`]): sorts, aggregations and joins beyond it
//! spill to the temporary folder (`TMPDIR`), and what cannot spill fails with a clear error
//! instead of growing until the OOM killer ends the process. Its optimizer is DataFusion's
//! with one wrong pushdown removed ([`crate::lake::global_aggregates`]), and a subquery that
//! a query repeats (a view read twice) is computed once ([`crate::lake::shared_subplans`]).

pub mod changes;
mod error;
mod memory;
pub mod parquet_out;
pub mod refused;
pub mod views;

pub use error::{Error, OptionError, Result};

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use deltalake::datafusion::common::config::SpillCompression;
use deltalake::datafusion::execution::memory_pool::MemoryPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::execution::session_state::SessionStateBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::{
    AUDIT_EVENT_REQUESTS, AUDIT_EVENT_REQUESTS_SOURCES, AUDIT_EVENT_REQUESTS_SQL,
    AUDIT_EVENT_STEP_COLUMNS, ENTITIES, audit_event_requests_from_links,
    audit_event_requests_from_links_without_details,
};
use crate::lake::bookkeeping::{INGEST_RUNS, RAW, REJECTS};
use crate::lake::global_aggregates::{optimizer_rules, physical_optimizer_rules};
use crate::lake::shared_subplans::ComputeRepeatsOnce;
use crate::lake::{Lake, TablePin, format};

/// Names of every table the lake holds, in a fixed order: entity tables (with their
/// `_history` companions) then bookkeeping.
pub fn table_names() -> Vec<String> {
    let mut names = Vec::new();
    for e in ENTITIES.iter() {
        names.push(e.table.to_string());
        if e.versioned().is_some() {
            names.push(format!("{}_history", e.table));
        }
    }
    names.extend([RAW, REJECTS, INGEST_RUNS].map(String::from));
    names
}

/// Which state of the lake a session reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AsOf {
    /// Every table at its newest version.
    #[default]
    Latest,
    /// Every table as it was at this Delta commit time (UTC micros); tables created later
    /// are absent.
    Time(i64),
    /// The named tables at exactly these Delta versions (an evidence pack records them);
    /// tables not named at their newest version.
    Versions(BTreeMap<String, i64>),
}

impl AsOf {
    /// Parses `--as-of`: an RFC 3339 timestamp, or `table=version` pairs separated by commas
    /// (Delta versions are per table: `govlake tables` lists them).
    pub fn parse(s: &str) -> std::result::Result<Self, OptionError> {
        let s = s.trim();
        if s.contains('=') {
            let mut pins = BTreeMap::new();
            for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (table, version) = pair
                    .split_once('=')
                    .ok_or_else(|| OptionError::NotTableVersion { pair: pair.into() })?;
                let table = table.trim();
                if !table_names().iter().any(|t| t == table) {
                    return Err(OptionError::UnknownTable {
                        table: table.into(),
                    });
                }
                let version: i64 =
                    version
                        .trim()
                        .parse()
                        .map_err(|source| OptionError::BadVersion {
                            pair: pair.into(),
                            source,
                        })?;
                pins.insert(table.to_string(), version);
            }
            return Ok(Self::Versions(pins));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OptionError::BareVersion { text: s.into() });
        }
        crate::time::parse_ts(s)
            .map(Self::Time)
            .ok_or_else(|| OptionError::NotAsOf { text: s.into() })
    }

    /// The state of `table` a session reads. Versions that name the request links' sources
    /// but not `audit_event_requests` were recorded before the table existed (a pack made on
    /// a lake of format 1): the links are read through the rule over the pinned sources, as
    /// they were then, not from the table's newest version.
    pub fn pin(&self, table: &str) -> TablePin {
        match self {
            Self::Latest => TablePin::Latest,
            Self::Time(t) => TablePin::Time(*t),
            Self::Versions(v) => match v.get(table) {
                Some(version) => TablePin::Version(*version),
                None if table == AUDIT_EVENT_REQUESTS
                    && AUDIT_EVENT_REQUESTS_SOURCES
                        .iter()
                        .all(|s| v.contains_key(*s)) =>
                {
                    TablePin::Absent
                }
                None => TablePin::Latest,
            },
        }
    }
}

/// Query parallelism: `GOVLAKE_THREADS`, else the machine's cores. Results never depend on
/// it (reports order every query by all its columns).
pub fn threads() -> usize {
    std::env::var("GOVLAKE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
}

/// Read-only options for every query path: no DDL, DML, COPY or SET.
pub fn read_only() -> deltalake::datafusion::execution::context::SQLOptions {
    deltalake::datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// How much memory a session's queries may hold (DataFusion's memory pool, in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit(pub usize);

impl MemoryLimit {
    /// Half of the machine's memory (the smaller of `MemTotal` and the cgroup's
    /// `memory.max`), or 4 GiB when neither can be read.
    pub fn machine_default() -> Self {
        Self(machine_memory().map_or(4 << 30, |total| (total / 2) as usize))
    }

    /// Parses `--memory-limit`: bytes (`1073741824`), a size with a binary unit (`512M`,
    /// `512MiB`, `2G`, `2GB`: K/M/G/T are powers of 1024), or a share of the machine's
    /// memory (`25%`).
    pub fn parse(text: &str) -> std::result::Result<Self, OptionError> {
        let t = text.trim();
        let bad = || OptionError::NotMemorySize { text: text.into() };
        if let Some(pct) = t.strip_suffix('%') {
            let pct: f64 = pct.trim().parse().map_err(|_| bad())?;
            if !(pct > 0.0 && pct <= 100.0) {
                return Err(OptionError::ShareOutOfRange { text: text.into() });
            }
            let total =
                machine_memory().ok_or_else(|| OptionError::MemoryUnknown { text: text.into() })?;
            return Ok(Self((total as f64 * pct / 100.0) as usize));
        }
        let digits = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(digits);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            _ => return Err(bad()),
        };
        let bytes = number * (1u64 << shift) as f64;
        if !(bytes >= 1.0 && bytes < usize::MAX as f64) {
            return Err(bad());
        }
        Ok(Self(bytes as usize))
    }

    /// The size as people read it (`512.0 MiB`).
    pub fn display(self) -> String {
        let mut size = self.0 as f64;
        for unit in ["B", "KiB", "MiB", "GiB"] {
            if size < 1024.0 {
                return format!("{size:.1} {unit}");
            }
            size /= 1024.0;
        }
        format!("{size:.1} TiB")
    }
}

/// The machine's memory in bytes: `MemTotal` of `/proc/meminfo`, capped by the cgroup v2
/// limit when one is set.
fn machine_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())?
        * 1024;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

/// DataFusion settings govlake changes from DataFusion's defaults, for every session (a
/// `DATAFUSION_*` environment variable still decides). Each changes plans, never rows.
/// Measured at 10M audit events (one run each, peak RSS; times within this machine's noise,
/// at 1M too; bench/ANALYSIS.md, session 34):
/// - no round-robin repartitions: DataFusion adds one wherever a single stream could be
///   split over the cores, and each buffers whatever its consumer has not yet taken; the
///   fair pool gives every such buffer a small share, so past it they spill (a pack of 1M
///   audit events wrote 1.9 GB of such spills beside a 0.75 GB pack). Worse, one after a
///   window scatters the window's sorted output, so the aggregation that follows must hold
///   every group at once instead of finishing each as its key changes.
/// - keep an existing sort through a repartition (`prefer_existing_sort`): with the above,
///   the aggregations over `assignment_holdings`' islands run on input sorted by assignment
///   and hold one assignment's groups at a time. With all three, in the suite at 10M:
///   `assignment_holdings` 2,498 -> 1,561 MiB, `remediation_timeliness` 2,466 -> 1,838,
///   `recertification_coverage` 2,467 -> 2,080, `approval_trail` 3,167 -> 2,857,
///   `review_completeness` 2,161 -> 2,177 (1,980 by hand).
/// - skip the partial aggregation once half its first rows are new groups (DataFusion: 80
///   %): a partial aggregation that groups little holds every group a second time before
///   the final one does; `approval_trail`'s pivot of additional details (8.35M rows into
///   5.52M groups; since format 3 read only from lakes of format 1 or 2, and by
///   `direct_admin_grants`' and `control_changes`' smaller pivots) 2.0 -> 1.4 GB on its
///   own, and faster.
/// - keep a hash partitioning on some of an aggregation's keys (`subset_repartition_threshold`
///   2, DataFusion: 4, so from two partitions instead of from four): `assignment_holdings`
///   windows its versions partitioned by a prefix of the assignment id and groups them by
///   that prefix, id and island; repartitioned again, its groups arrived out of order and
///   were all held at once (1.2 GB at 10M audit events) where now they are grouped in place,
///   in order (session 39).
pub const GOVLAKE_DEFAULTS: [(&str, &str); 4] = [
    (
        "datafusion.optimizer.enable_round_robin_repartition",
        "false",
    ),
    ("datafusion.optimizer.prefer_existing_sort", "true"),
    (
        "datafusion.execution.skip_partial_aggregation_probe_ratio_threshold",
        "0.5",
    ),
    ("datafusion.optimizer.subset_repartition_threshold", "2"),
];

/// The session's DataFusion settings: [`threads`] partitions, [`GOVLAKE_DEFAULTS`], then
/// any `DATAFUSION_*` environment variable ([`environment_settings`]), so a view's plan can
/// be tuned without a rebuild. Results are not meant to depend on these settings; packs
/// record the environment's anyway (and govlake's defaults, in `provenance.json`).
fn session_config(spill_compression: SpillCompression) -> Result<SessionConfig> {
    let mut config = SessionConfig::new().with_target_partitions(threads());
    // Spill files compressed (LZ4 frames, zstd in a pack: see `session_for_whole_results`):
    // a sort or join over its share of the pool writes its rows to the temporary folder,
    // uncompressed by default; the text columns of the views compress several times over,
    // so the disk written (and read back) shrinks by as much for a little CPU.
    // `DATAFUSION_EXECUTION_SPILL_COMPRESSION` still decides when set.
    config.options_mut().execution.spill_compression = spill_compression;
    let environment = environment_settings()?;
    let defaults = GOVLAKE_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()));
    for (key, value) in defaults.chain(environment) {
        config
            .options_mut()
            .set(&key, &value)
            .map_err(|e| Error::Settings {
                source: Box::new(e),
            })?;
    }
    Ok(config.with_information_schema(true))
}

/// The DataFusion settings that `DATAFUSION_*` environment variables set, in DataFusion's
/// names and key order: `DATAFUSION_EXECUTION_BATCH_SIZE=4096` is
/// (`datafusion.execution.batch_size`, `4096`). An evidence pack records them.
pub fn environment_settings() -> Result<Vec<(String, String)>> {
    let env =
        deltalake::datafusion::config::ConfigOptions::from_env().map_err(|e| Error::Settings {
            source: Box::new(e),
        })?;
    let mut settings: Vec<(String, String)> = env
        .entries()
        .into_iter()
        .filter_map(|entry| {
            let var = entry.key.replace('.', "_").to_ascii_uppercase();
            match (entry.value, std::env::var(&var)) {
                (Some(value), Ok(_)) => Some((entry.key, value)),
                _ => None,
            }
        })
        .collect();
    settings.sort();
    Ok(settings)
}

/// A session with every existing lake table registered. Tables not yet created are skipped.
pub async fn session(lake: &Lake) -> Result<SessionContext> {
    session_as_of(lake, &AsOf::Latest).await
}

/// Like [`session`], with every table at the state `as_of` names, and the machine's
/// default memory limit.
pub async fn session_as_of(lake: &Lake, as_of: &AsOf) -> Result<SessionContext> {
    session_with(lake, as_of, MemoryLimit::machine_default()).await
}

/// Like [`session_as_of`], with queries held to `memory`: a fair spill pool whose sorts
/// also spill past `memory::MOST_BEFORE_SPILLING` each (the five largest consumers are
/// named when it runs out), spilling to the OS temporary folder.
pub async fn session_with(
    lake: &Lake,
    as_of: &AsOf,
    memory: MemoryLimit,
) -> Result<SessionContext> {
    session_pinned(lake, |name| as_of.pin(name), memory).await
}

/// Like [`session_with`], with each table at the point `pin` names for it (`changes` pins
/// the tables a run recorded at their versions and the others at the run's end).
pub async fn session_pinned(
    lake: &Lake,
    pin: impl Fn(&str) -> TablePin,
    memory: MemoryLimit,
) -> Result<SessionContext> {
    session_in_pool(lake, pin, memory::pool(memory), SpillCompression::Lz4Frame).await
}

/// Like [`session_with`], for a session that writes whole results to files (the evidence
/// pack): its sorts hold more before they spill
/// (`memory::MOST_BEFORE_SPILLING_WHOLE_RESULTS`) and its spill files are in zstd, which
/// writes less than LZ4 frames, so that what it writes to the temporary folder besides the
/// pack itself stays within the pack's size (see `memory::MOST_BEFORE_SPILLING_WHOLE_RESULTS`
/// for the figures).
pub async fn session_for_whole_results(
    lake: &Lake,
    as_of: &AsOf,
    memory: MemoryLimit,
) -> Result<SessionContext> {
    session_in_pool(
        lake,
        |name| as_of.pin(name),
        memory::pool_for_whole_results(memory),
        SpillCompression::Zstd,
    )
    .await
}

/// A session whose queries run in `pool`, with each table at the point `pin` names.
async fn session_in_pool(
    lake: &Lake,
    pin: impl Fn(&str) -> TablePin,
    pool: Arc<dyn MemoryPool>,
    spill_compression: SpillCompression,
) -> Result<SessionContext> {
    let config = session_config(spill_compression)?;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .with_max_spill_merge_fan_in(memory::SPILL_MERGE_FAN_IN)
        .build_arc()
        .map_err(|e| Error::Runtime {
            source: Box::new(e),
        })?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_optimizer_rules(optimizer_rules())
        .with_physical_optimizer_rules(physical_optimizer_rules())
        .with_analyzer_rule(Arc::new(ComputeRepeatsOnce::default()))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let links_since = format::since(lake, STORED_LINKS_FORMAT).await?;
    // Several tables at once: opening one is mostly waiting for its log's files (about
    // 0.15 s for the fifty tables one after another, of every query's start).
    let pins: Vec<(String, TablePin)> = table_names()
        .into_iter()
        .map(|name| {
            let at = match name == AUDIT_EVENT_REQUESTS {
                true => stored_links_pin(pin(&name), links_since),
                false => pin(&name),
            };
            (name, at)
        })
        .collect();
    use futures::{StreamExt as _, TryStreamExt as _};
    let registered: HashSet<String> = futures::stream::iter(pins)
        .map(|(name, at)| {
            let ctx = &ctx;
            async move { Ok::<_, Error>(lake.register(ctx, &name, at).await?.then_some(name)) }
        })
        .buffer_unordered(8)
        .try_filter_map(|registered| async move { Ok(registered) })
        .try_collect()
        .await?;
    read_request_links_by_rule(&ctx, &registered).await?;
    Ok(ctx)
}

/// The first lake format that stores each audit event's request links.
const STORED_LINKS_FORMAT: i64 = 2;

/// Whether a session reads `audit_event_requests` as stored (`at`) or through the rule
/// (`Absent`). The table holds every link only in a state the lake wrote once it was in
/// format 2 (`since`: when it got there): a lake of format 1 whose migration was killed may
/// hold it empty, and an earlier time has none of it. A version named explicitly is read as
/// named (packs record it only in format 2).
fn stored_links_pin(at: TablePin, since: Option<i64>) -> TablePin {
    match (at, since) {
        (TablePin::Version(_), _) | (TablePin::Latest, Some(_)) => at,
        (TablePin::Time(t), Some(s)) if t >= s => at,
        _ => TablePin::Absent,
    }
}

/// The name a session gives `audit_event_requests` as stored when the state it reads holds
/// the links only (written in format 2, before the table stored the step columns), so that
/// the table's own name can read the links with the step columns added by the rule.
const STORED_LINKS_ONLY: &str = "_audit_event_requests_links_only";

/// `audit_event_requests` as the views read it: each link with the event's step columns
/// (`catalog::AUDIT_EVENT_STEP_COLUMNS`, `catalog::AUDIT_EVENT_STEP_DETAILS`). A state the
/// lake wrote in format 3 holds them and is read as stored. An older state has them only
/// implicitly, and the session reads the table as a view applying the same rules, so its
/// answers are the ones a migrated lake gives: over the stored links of a state written in
/// format 2 (its schema has no step columns), or, before format 2 stored the links at all
/// (format 1, or a pin older than the table), over the links computed from the two child
/// tables they come from.
async fn read_request_links_by_rule(
    ctx: &SessionContext,
    registered: &HashSet<String>,
) -> Result<()> {
    let rule_error = |e| Error::LinkRule {
        source: Box::new(e),
    };
    if !registered.contains("audit_events") {
        return Ok(());
    }
    let links = if registered.contains(AUDIT_EVENT_REQUESTS) {
        let stored = ctx
            .table_provider(AUDIT_EVENT_REQUESTS)
            .await
            .map_err(rule_error)?;
        if stored
            .schema()
            .column_with_name(AUDIT_EVENT_STEP_COLUMNS[0])
            .is_some()
        {
            return Ok(());
        }
        ctx.deregister_table(AUDIT_EVENT_REQUESTS)
            .map_err(rule_error)?;
        ctx.register_table(STORED_LINKS_ONLY, stored)
            .map_err(rule_error)?;
        format!("SELECT id, audit_event_id, request_id FROM {STORED_LINKS_ONLY}")
    } else if AUDIT_EVENT_REQUESTS_SOURCES
        .iter()
        .all(|s| registered.contains(*s))
    {
        AUDIT_EVENT_REQUESTS_SQL.to_string()
    } else {
        return Ok(());
    };
    let rule = if registered.contains("audit_event_additional_details") {
        audit_event_requests_from_links(&links)
    } else {
        audit_event_requests_from_links_without_details(&links)
    };
    let sql = format!("CREATE VIEW {AUDIT_EVENT_REQUESTS} AS {rule}");
    ctx.sql(&sql).await.map_err(rule_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_links_are_read_from_the_table_only_in_states_written_since_format_2() {
        let links = AUDIT_EVENT_REQUESTS;
        // A pack made on a lake of format 1 named the sources, not the table.
        let old_pack = AsOf::Versions(BTreeMap::from([
            ("audit_event_target_resources".to_string(), 3),
            ("audit_event_additional_details".to_string(), 4),
        ]));
        assert_eq!(old_pack.pin(links), TablePin::Absent);
        assert_eq!(old_pack.pin("audit_events"), TablePin::Latest);
        let mut new_pack = old_pack.clone();
        if let AsOf::Versions(v) = &mut new_pack {
            v.insert(links.to_string(), 2);
        }
        assert_eq!(new_pack.pin(links), TablePin::Version(2));
        // Latest and times: stored only once the lake reached format 2, and not before then.
        let since = Some(1_000);
        assert_eq!(stored_links_pin(TablePin::Latest, None), TablePin::Absent);
        assert_eq!(stored_links_pin(TablePin::Latest, since), TablePin::Latest);
        assert_eq!(
            stored_links_pin(TablePin::Time(999), since),
            TablePin::Absent
        );
        assert_eq!(
            stored_links_pin(TablePin::Time(1_000), since),
            TablePin::Time(1_000)
        );
        assert_eq!(stored_links_pin(TablePin::Time(5), None), TablePin::Absent);
        assert_eq!(
            stored_links_pin(TablePin::Version(7), None),
            TablePin::Version(7)
        );
    }

    #[test]
    fn memory_limits_in_every_form() {
        let bytes = |t: &str| MemoryLimit::parse(t).map(|m| m.0);
        assert_eq!(bytes("1048576"), Ok(1 << 20));
        assert_eq!(bytes("512M"), Ok(512 << 20));
        assert_eq!(bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(bytes("2g"), Ok(2 << 30));
        assert_eq!(bytes("1.5GB"), Ok(3 << 29));
        for bad in ["", "x", "12Q", "-1G", "0", "0%", "101%"] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
        if let Some(total) = machine_memory() {
            assert_eq!(bytes("50%"), Ok((total / 2) as usize));
            assert_eq!(MemoryLimit::machine_default().0, (total / 2) as usize);
        }
        assert_eq!(MemoryLimit(3 << 29).display(), "1.5 GiB");
    }
}
