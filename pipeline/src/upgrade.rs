//! Upgrading a lake across govlake releases: `govlake migrate` walks the format steps of
//! [`crate::lake::format::STEPS`] from the lake's version to this govlake's, and `govlake
//! rebuild` replays `_raw` and the histories through today's mapping
//! ([`crate::ingest::replay`]) into a scratch lake, then replaces each typed table and its
//! `_history` with the result as a new Delta version (older versions stay readable by time
//! travel, so packs pinned to them still regenerate).
//!
//! Both are idempotent and resumable: a step's changes are recorded in `_govlake` only once
//! they are all committed, so a run killed midway starts that step again, and a rebuild of
//! a rebuilt table gives the same rows.

use std::collections::HashMap;

use serde::Serialize;

use crate::catalog;
use crate::ingest::replay::{self, ReplaySummary};
use crate::lake::format::{self, FORMAT_VERSION, Found, STEPS};
use crate::lake::{ColumnType, Lake, LakeLocation, bookkeeping, failpoint};

/// What stops a migration or a rebuild.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No lake at the location.
    #[error(
        "No govlake lake at `{0}`: nothing to upgrade (create one with `govlake ingest --from …` or `govlake demo`)"
    )]
    NoLake(String),
    /// A table named on the command line is not a typed table.
    #[error("`{name}` is not a table `govlake rebuild` can rebuild{}; typed tables are listed by `govlake tables`", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownTable {
        /// The name given.
        name: String,
        /// The closest table name.
        suggestion: Option<String>,
    },
    /// The scratch lake could not be made.
    #[error("Cannot create the scratch lake `{path}` for the rebuild")]
    Scratch {
        /// Folder.
        path: String,
        /// Cause.
        #[source]
        source: crate::lake::Error,
    },
    /// The replay would lose objects the lake holds: nothing was replaced.
    #[error("The rebuild would lose objects the lake holds, so nothing was replaced: {}. `_raw` lacks their JSON (members and sponsors listed under several parents share one raw record); the tables keep their rows", lost.iter().map(|(t, n, ex)| format!("{n} in `{t}` (e.g. {})", ex.join(", "))).collect::<Vec<_>>().join("; "))]
    WouldLose {
        /// Table, count and example ids.
        lost: Vec<(String, u64, Vec<String>)>,
    },
    /// Today's mapping rejects records the lake holds: nothing was replaced.
    #[error("Today's mapping rejects {count} record(s) the lake holds, so nothing was replaced (a rebuild would drop them): {}", examples.join("; "))]
    Rejected {
        /// How many.
        count: u64,
        /// A few `entity id: reason` lines.
        examples: Vec<String>,
    },
    /// Another writer committed while the rebuild replayed.
    #[error(
        "Table `{table}` changed while the rebuild was replaying (version {before} → {after}): another govlake wrote to the lake, and replacing the table now would drop its rows. Nothing more was replaced; rerun `govlake rebuild` when no ingest is running"
    )]
    Concurrent {
        /// Table.
        table: String,
        /// Version when the replay started.
        before: String,
        /// Version found before replacing.
        after: String,
    },
    /// A lake read or write failed.
    #[error(transparent)]
    Lake(#[from] crate::lake::Error),
    /// The replay failed.
    #[error("Replaying the lake's history failed")]
    Replay(#[from] crate::ingest::Error),
}

/// Result of upgrade operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildOutcome {
    /// The replay's counts.
    pub replay: ReplaySummary,
    /// Where the scratch lake was (removed afterwards).
    #[serde(skip)]
    pub scratch: String,
    /// Tables replaced, with their new Delta version.
    pub tables: Vec<(String, i64)>,
}

/// What a migration did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct MigrateOutcome {
    /// The lake's format before.
    pub from: i64,
    /// The format after (this govlake's).
    pub to: i64,
    /// The steps, as `migrate --dry-run` lists them.
    pub steps: Vec<String>,
    /// Whether anything was done (false: already current, or a dry run).
    pub changed: bool,
    /// Columns added to bookkeeping tables (`table.column`).
    pub columns_added: Vec<String>,
    /// The rebuild a step ran.
    pub rebuild: Option<RebuildOutcome>,
    /// Why a step's rebuild was not done (the tables keep their rows).
    pub rebuild_skipped: Option<String>,
}

/// Checks `--table` names, suggesting the closest known one.
pub fn check_tables(names: &[String]) -> Result<()> {
    let known: Vec<String> = catalog::typed_tables()
        .into_iter()
        .map(|t| t.name)
        .collect();
    for name in names {
        if !known.contains(name) {
            let candidates: Vec<&str> = known.iter().map(String::as_str).collect();
            let suggestion = crate::suggest::closest(name, &candidates, 1)
                .first()
                .map(|s| s.to_string());
            return Err(Error::UnknownTable {
                name: name.clone(),
                suggestion,
            });
        }
    }
    Ok(())
}

/// Rebuilds typed tables from `_raw` (all when `only` is empty; a versioned table's
/// `_history` goes with it). Records the rebuild in `_govlake`.
pub async fn rebuild(
    lake: &Lake,
    only: &[String],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RebuildOutcome> {
    check_tables(only)?;
    if format::found(lake).await? == Found::NoLake {
        return Err(Error::NoLake(lake.location().display()));
    }
    let dir = std::env::temp_dir().join(format!("govlake-rebuild-{}", uuid::Uuid::new_v4()));
    let scratch_dir = dir.display().to_string();
    let scratch = LakeLocation::resolve(&scratch_dir, HashMap::new())
        .map(Lake::new)
        .map_err(|source| Error::Scratch {
            path: scratch_dir.clone(),
            source,
        })?;
    let outcome = rebuild_through(lake, &scratch, only, progress).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map(|o| RebuildOutcome {
        scratch: scratch_dir,
        ..o
    })
}

/// The Delta version of every typed table and of `_ingest_runs`, as text.
async fn versions(lake: &Lake) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    let names = catalog::typed_tables()
        .into_iter()
        .map(|t| t.name)
        .chain([bookkeeping::INGEST_RUNS.to_string()]);
    for name in names {
        let v = match lake.table_exists(&name).await? {
            true => lake
                .version(&name)
                .await?
                .map_or("none".into(), |v| v.to_string()),
            false => "none".into(),
        };
        out.push((name, v));
    }
    Ok(out)
}

/// A few of the scratch lake's rejects, as `entity id: reason`.
async fn reject_examples(scratch: &Lake) -> Result<Vec<String>> {
    let mut out = vec![];
    scratch
        .scan_strings(
            bookkeeping::REJECTS,
            &["entity", "record_id", "reason"],
            |v| {
                if out.len() < 5 {
                    out.push(format!(
                        "`{}` {}: {}",
                        v[0].unwrap_or("?"),
                        v[1].unwrap_or("(no id)"),
                        v[2].unwrap_or("")
                    ));
                }
            },
        )
        .await?;
    Ok(out)
}

async fn rebuild_through(
    lake: &Lake,
    scratch: &Lake,
    only: &[String],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RebuildOutcome> {
    let before = versions(lake).await?;
    let replay = replay::replay(lake, scratch, progress).await?;
    if replay.rejected > 0 {
        return Err(Error::Rejected {
            count: replay.rejected,
            examples: reject_examples(scratch).await?,
        });
    }
    let lost = replay::lost_objects(lake, scratch).await?;
    if !lost.is_empty() {
        return Err(Error::WouldLose { lost });
    }
    for ((table, was), (_, now)) in before.iter().zip(versions(lake).await?) {
        if *was != now {
            return Err(Error::Concurrent {
                table: table.clone(),
                before: was.clone(),
                after: now,
            });
        }
    }
    let metadata = HashMap::from([(
        "govlake.operation".to_string(),
        serde_json::Value::String("rebuild".into()),
    )]);
    // A table's `_history` goes with it, and the stored request links with their sources
    // and with the events whose columns they store.
    let wanted = |name: &str| {
        only.is_empty()
            || only.iter().any(|o| {
                name == o
                    || name == format!("{o}_history")
                    || *o == format!("{name}_history")
                    || (name == catalog::AUDIT_EVENT_REQUESTS
                        && (o == "audit_events"
                            || catalog::AUDIT_EVENT_REQUESTS_SOURCES.contains(&o.as_str())))
            })
    };
    let mut tables = vec![];
    for schema in catalog::typed_tables() {
        if !wanted(&schema.name) {
            continue;
        }
        let version = lake
            .overwrite_from_lake(&schema, scratch, &metadata)
            .await?;
        tables.push((schema.name.clone(), version));
        failpoint::hit("rebuild_table");
    }
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    let version = match format::found(lake).await? {
        Found::Version(v) => v,
        Found::NoLake => FORMAT_VERSION,
    };
    format::record(
        lake,
        version,
        &format!("rebuilt from _raw: {}", names.join(", ")),
    )
    .await?;
    Ok(RebuildOutcome {
        replay,
        tables,
        scratch: String::new(),
    })
}

/// Steps 1 → 2 and 2 → 3: fills `audit_event_requests`, with the events' step columns, from
/// its source tables by the link rule (one overwrite, so a migration killed and run again
/// ends the same). The links of events ingested later are written by the ingest itself.
async fn store_request_links(lake: &Lake) -> Result<()> {
    let schema = catalog::entity(catalog::AUDIT_EVENT_REQUESTS)
        .and_then(catalog::EntitySpec::append_schema)
        .expect("audit_event_requests is an append-only entity");
    let sources = ["audit_events"]
        .into_iter()
        .chain(catalog::AUDIT_EVENT_REQUESTS_SOURCES);
    for source in sources.clone() {
        let spec = catalog::entity(source)
            .and_then(catalog::EntitySpec::append_schema)
            .expect("the link sources are append-only entities");
        lake.ensure(&spec).await?;
    }
    // Text is read back as Utf8View; the table stores Utf8. Only the links of events the
    // lake holds (the rule joins `audit_events`): a killed ingest may have left child rows
    // whose event is not committed, and its rerun stores the event's links with it (a link
    // stored now would make the event an orphan of this table, whose other links the rerun
    // then skips).
    let sql = format!(
        "select {} from ({}) links",
        schema
            .columns
            .iter()
            .map(|c| match c.ty {
                ColumnType::Str | ColumnType::Json => {
                    format!("arrow_cast(\"{0}\", 'Utf8') as \"{0}\"", c.name)
                }
                _ => format!("\"{0}\"", c.name),
            })
            .collect::<Vec<_>>()
            .join(", "),
        catalog::audit_event_requests_from_links(catalog::AUDIT_EVENT_REQUESTS_SQL)
    );
    let metadata = HashMap::from([(
        "govlake.operation".to_string(),
        serde_json::Value::String("migrate".into()),
    )]);
    lake.overwrite_from_sql_adding_columns(&schema, &sources.collect::<Vec<_>>(), &sql, &metadata)
        .await?;
    Ok(())
}

/// Migrates the lake to this govlake's format (`dry_run`: lists the steps only).
pub async fn migrate(
    lake: &Lake,
    dry_run: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<MigrateOutcome> {
    let from = match format::found(lake).await? {
        Found::NoLake => return Err(Error::NoLake(lake.location().display())),
        Found::Version(v) if v > FORMAT_VERSION => {
            return Err(crate::lake::Error::FormatTooNew {
                location: lake.location().display(),
                version: v,
                known: FORMAT_VERSION,
            }
            .into());
        }
        Found::Version(v) => v,
    };
    let pending = &STEPS[from.max(0) as usize..];
    let mut outcome = MigrateOutcome {
        from,
        to: FORMAT_VERSION,
        steps: pending
            .iter()
            .map(|s| format!("{} → {}: {}", s.from, s.from + 1, s.does))
            .collect(),
        changed: false,
        columns_added: vec![],
        rebuild: None,
        rebuild_skipped: None,
    };
    if dry_run || pending.is_empty() {
        return Ok(outcome);
    }
    let mut links_stored = false;
    for step in pending {
        match step.from {
            0 => {
                for schema in bookkeeping::schemas() {
                    for c in lake.add_missing_columns(&schema).await? {
                        outcome.columns_added.push(format!("{}.{c}", schema.name));
                    }
                }
                failpoint::hit("migrate_step");
                match rebuild(lake, &[], progress).await {
                    Ok(r) => outcome.rebuild = Some(r),
                    // The tables keep what they hold: readable, and still right for the
                    // mapping that wrote them. Said in the outcome, never hidden.
                    Err(e @ (Error::WouldLose { .. } | Error::Rejected { .. })) => {
                        outcome.rebuild_skipped = Some(e.to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
            // Both steps store the whole table by the rule: from format 1, once.
            1 | 2 if links_stored => {}
            1 | 2 => {
                failpoint::hit("migrate_step");
                store_request_links(lake).await?;
                links_stored = true;
            }
            other => unreachable!("no migration step from format {other}"),
        }
        format::record(
            lake,
            step.from + 1,
            &format!("migrated from format {}", step.from),
        )
        .await?;
    }
    outcome.changed = true;
    Ok(outcome)
}
