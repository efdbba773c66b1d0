//! Stage 3, query: a DataFusion session over the lake, with every lake table registered
//! under its name; `views` adds the governance views of `queries/*.sql`.

pub mod views;

use std::collections::BTreeMap;

use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use crate::ingest::spec::ENTITIES;
use crate::lake::bookkeeping::{INGEST_RUNS, RAW, REJECTS};
use crate::lake::{Lake, Result, TablePin};

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
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.contains('=') {
            let mut pins = BTreeMap::new();
            for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (table, version) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not table=version"))?;
                let table = table.trim();
                if !table_names().iter().any(|t| t == table) {
                    return Err(format!(
                        "`{table}` is not a lake table (`govlake tables` lists them)"
                    ));
                }
                let version: i64 = version
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{pair}`: the version must be a whole number"))?;
                pins.insert(table.to_string(), version);
            }
            return Ok(Self::Versions(pins));
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "a bare version `{s}` is ambiguous: Delta versions are per table; write table={s} (e.g. audit_events={s}), or give an RFC 3339 time"
            ));
        }
        crate::ingest::value::parse_ts(s)
            .map(Self::Time)
            .ok_or_else(|| format!("`{s}` is neither an RFC 3339 time (e.g. 2026-10-01T06:00:00Z) nor table=version pairs"))
    }

    fn pin(&self, table: &str) -> TablePin {
        match self {
            Self::Latest => TablePin::Latest,
            Self::Time(t) => TablePin::Time(*t),
            Self::Versions(v) => v
                .get(table)
                .map_or(TablePin::Latest, |v| TablePin::Version(*v)),
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

/// A session with every existing lake table registered. Tables not yet created are skipped.
pub async fn session(lake: &Lake) -> Result<SessionContext> {
    session_as_of(lake, &AsOf::Latest).await
}

/// Like [`session`], with every table at the state `as_of` names.
pub async fn session_as_of(lake: &Lake, as_of: &AsOf) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(threads());
    let ctx = SessionContext::new_with_config(config);
    for name in table_names() {
        lake.register(&ctx, &name, as_of.pin(&name)).await?;
    }
    Ok(ctx)
}
