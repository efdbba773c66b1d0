//! What changed between two states of the lake, per finding view (`govlake changes`).
//!
//! A state is the lake at the end of an ingest run, or now. A run's end is rebuilt from its
//! bookkeeping: every table the run (or an earlier one) recorded in `_ingest_runs` is read at
//! the Delta version recorded there, the tables runs do not record (the `_history`
//! companions, `_rejects`) as they were at the run's `finished_at` (Delta time travel), a
//! table created later as an empty table, and `_ingest_runs` itself as the rows of the runs
//! finished by then. Each finding view (a `queries/*.sql` file whose leading comment
//! declares `-- Key: col, …`) runs over both states, and its rows are matched by that key:
//! a key only in the later state is *added*, only in the earlier one *removed*, in both with
//! other values *changed* (columns declared `-- Volatile: col, …`, which move with every
//! snapshot, such as days overdue, are not compared). A key that names several rows on a
//! side is compared as a set of whole rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;
use serde_json::{Map, Value};

use super::views::QueryFile;
use super::{MemoryLimit, TablePin};
use crate::lake::Lake;
use crate::lake::bookkeeping::INGEST_RUNS;
use crate::time::fmt_ts;

/// Errors of `changes`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `_ingest_runs` row carries this run id.
    #[error(
        "No run `{run_id}` in the lake's `_ingest_runs` (`govlake sql -c \"select distinct run_id, finished_at from _ingest_runs order by finished_at\"` lists them)"
    )]
    NoSuchRun {
        /// The id asked for.
        run_id: String,
    },
    /// No run had finished by the time asked for.
    #[error("No ingest run had finished at {}{}", fmt_ts(*at), first.map(|f| format!(": the first finished at {}", fmt_ts(f))).unwrap_or_else(|| ": the lake has no runs yet".into()))]
    NoRunBefore {
        /// The time asked for (UTC micros).
        at: i64,
        /// When the first run finished, if any did.
        first: Option<i64>,
    },
    /// A view named with `--view` that is not a query file.
    #[error("`{view}` is not a view (`govlake sql --list` shows them)")]
    NotAView {
        /// The name given.
        view: String,
    },
    /// A view without a `-- Key:` line.
    #[error(
        "View `{view}` declares no row key, so a changed row cannot be told from a new one: add a line `-- Key: column, …` to the leading comment of queries/{view}.sql (with `--queries DIR`), or leave the view out"
    )]
    NoKey {
        /// The view.
        view: String,
    },
    /// A view whose query needs parameters.
    #[error(
        "`{view}` needs parameters ({}), so it has no rows of its own to compare",
        params.join(", ")
    )]
    Parameters {
        /// The view.
        view: String,
        /// Its parameters.
        params: Vec<String>,
    },
    /// The key names a column the view does not return.
    #[error(
        "View `{view}` declares the key column `{column}`, which its query does not return (fix the `-- Key:` line of queries/{view}.sql)"
    )]
    KeyColumn {
        /// The view.
        view: String,
        /// The missing column.
        column: String,
    },
    /// The view could not be run over one of the states.
    #[error("Failed to run view `{view}` over the lake as of {state}")]
    Query {
        /// The view.
        view: String,
        /// Which state (`run …` or `now`).
        state: String,
        /// Cause.
        #[source]
        source: Box<deltalake::datafusion::error::DataFusionError>,
    },
    /// Rows could not be turned into JSON.
    #[error("Failed to read the rows of view `{view}`")]
    Rows {
        /// The view.
        view: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lake could not be read.
    #[error(transparent)]
    Lake(#[from] crate::lake::Error),
    /// A view or the query session failed.
    #[error(transparent)]
    Views(#[from] super::Error),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A point in the lake's history, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    /// The lake now (every table at its newest version).
    Now,
    /// The end of this ingest run.
    Run(String),
    /// The end of the last run finished at or before this time (UTC micros).
    Time(i64),
}

impl Point {
    /// `now`, an RFC 3339 time, else a run id.
    pub fn parse(text: &str) -> std::result::Result<Self, EmptyPoint> {
        let t = text.trim();
        if t.is_empty() {
            return Err(EmptyPoint);
        }
        if t.eq_ignore_ascii_case("now") {
            return Ok(Self::Now);
        }
        Ok(crate::time::parse_ts(t).map_or_else(|| Self::Run(t.to_string()), Self::Time))
    }
}

/// An empty `--from`/`--to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("give a run id (`_ingest_runs`, or an ingest's JSON summary) or an RFC 3339 time")]
pub struct EmptyPoint;

/// One ingest run's end, as read from `_ingest_runs`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct State {
    /// The run (`None`: the lake now).
    pub run_id: Option<String>,
    /// When the run finished, RFC 3339.
    pub finished_at: Option<String>,
    /// When its snapshots were taken, RFC 3339.
    pub observed_at: Option<String>,
    /// The run's end in UTC micros.
    #[serde(skip)]
    pub end: Option<i64>,
    /// Table → the Delta version recorded by the newest run finished by then.
    #[serde(skip)]
    pub versions: BTreeMap<String, i64>,
}

impl State {
    /// The lake now.
    pub fn now() -> Self {
        Self {
            run_id: None,
            finished_at: None,
            observed_at: None,
            end: None,
            versions: BTreeMap::new(),
        }
    }

    fn label(&self) -> String {
        match &self.run_id {
            Some(r) => format!("the end of run `{r}`"),
            None => "now".into(),
        }
    }
}

/// One `_ingest_runs` row, as much of it as `changes` needs.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// Run id.
    pub run_id: String,
    /// When the run finished (UTC micros).
    pub finished_at: i64,
    /// When its snapshots were taken (UTC micros).
    pub observed_at: i64,
    /// The table.
    pub table: String,
    /// Its Delta version after the run (`None`: not written).
    pub version: Option<i64>,
}

/// Every `_ingest_runs` row, oldest run first.
pub async fn runs(lake: &Lake) -> Result<Vec<RunRow>> {
    let mut out = Vec::new();
    lake.scan_sql(
        INGEST_RUNS,
        "select run_id, CAST(finished_at AS BIGINT), CAST(observed_at AS BIGINT), table_name, table_version from _ingest_runs",
        |r| {
            let int = |i: usize| r.get(i).copied().flatten().and_then(|v| v.parse::<i64>().ok());
            if let (Some(run_id), Some(finished_at), Some(table)) = (r[0], int(1), r[3]) {
                out.push(RunRow {
                    run_id: run_id.to_string(),
                    finished_at,
                    observed_at: int(2).unwrap_or(finished_at),
                    table: table.to_string(),
                    version: int(4),
                });
            }
        },
    )
    .await?;
    out.sort_by(|a, b| (a.finished_at, &a.run_id).cmp(&(b.finished_at, &b.run_id)));
    Ok(out)
}

/// The state a point names.
pub async fn resolve(lake: &Lake, point: &Point) -> Result<State> {
    if *point == Point::Now {
        return Ok(State::now());
    }
    resolve_in(&runs(lake).await?, point)
}

/// [`resolve`] over rows already read.
pub fn resolve_in(rows: &[RunRow], point: &Point) -> Result<State> {
    let run_id = match point {
        Point::Now => return Ok(State::now()),
        Point::Run(id) => id.clone(),
        Point::Time(at) => rows
            .iter()
            .filter(|r| r.finished_at <= *at)
            .max_by_key(|r| r.finished_at)
            .map(|r| r.run_id.clone())
            .ok_or_else(|| Error::NoRunBefore {
                at: *at,
                first: rows.iter().map(|r| r.finished_at).min(),
            })?,
    };
    let mine: Vec<&RunRow> = rows.iter().filter(|r| r.run_id == run_id).collect();
    let (Some(end), Some(observed)) = (
        mine.iter().map(|r| r.finished_at).max(),
        mine.iter().map(|r| r.observed_at).max(),
    ) else {
        return Err(Error::NoSuchRun { run_id });
    };
    let mut versions: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.finished_at <= end) {
        if let Some(v) = r.version {
            let e = versions
                .entry(r.table.clone())
                .or_insert((r.finished_at, v));
            if (r.finished_at, v) >= *e {
                *e = (r.finished_at, v);
            }
        }
    }
    Ok(State {
        run_id: Some(run_id),
        finished_at: Some(fmt_ts(end)),
        observed_at: Some(fmt_ts(observed)),
        end: Some(end),
        versions: versions.into_iter().map(|(t, (_, v))| (t, v)).collect(),
    })
}

/// A session over the lake as it was in `state`, with the views of `files` registered.
pub async fn session_at(
    lake: &Lake,
    state: &State,
    files: &[QueryFile],
    memory: MemoryLimit,
) -> Result<SessionContext> {
    let Some(end) = state.end else {
        let ctx = super::session_with(lake, &super::AsOf::Latest, memory).await?;
        super::views::register(&ctx, files).await?;
        return Ok(ctx);
    };
    let ctx = super::session_pinned(
        lake,
        |name| match state.versions.get(name) {
            Some(v) => TablePin::Version(*v),
            None if name == INGEST_RUNS => TablePin::Latest,
            None => TablePin::Time(end),
        },
        memory,
    )
    .await?;
    let df_err = |table: &str| {
        let table = table.to_string();
        move |e| crate::lake::Error::Query {
            table,
            source: Box::new(e),
        }
    };
    // A table created after the run was empty then.
    for name in super::table_names() {
        if ctx.table_exist(name.as_str()).map_err(df_err(&name))? {
            continue;
        }
        let probe = SessionContext::new();
        if lake.register(&probe, &name, TablePin::Latest).await? {
            let schema = probe
                .table_provider(name.as_str())
                .await
                .map_err(df_err(&name))?
                .schema();
            let empty = MemTable::try_new(schema, vec![vec![]]).map_err(df_err(&name))?;
            ctx.register_table(name.as_str(), Arc::new(empty))
                .map_err(df_err(&name))?;
        }
    }
    // `_ingest_runs` as it stood: the rows of the runs finished by then.
    if let Some(all) = ctx
        .deregister_table(INGEST_RUNS)
        .map_err(df_err(INGEST_RUNS))?
    {
        ctx.register_table("govlake_all_ingest_runs", all)
            .map_err(df_err(INGEST_RUNS))?;
        // `end` is a number of ours, not user text.
        ctx.sql(&format!(
            "CREATE VIEW {INGEST_RUNS} AS SELECT * FROM govlake_all_ingest_runs WHERE CAST(finished_at AS BIGINT) <= {end}"
        ))
        .await
        .map_err(df_err(INGEST_RUNS))?
        .collect()
        .await
        .map_err(df_err(INGEST_RUNS))?;
    }
    super::views::register(&ctx, files).await?;
    Ok(ctx)
}

/// A changed row: the same key, other values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Changed {
    /// The key columns and their values.
    pub key: Map<String, Value>,
    /// The columns whose values differ.
    pub columns: Vec<String>,
    /// The row before.
    pub before: Map<String, Value>,
    /// The row after.
    pub after: Map<String, Value>,
}

/// What changed in one view.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ViewChanges {
    /// The view's row key (its `-- Key:` columns).
    pub key: Vec<String>,
    /// Rows whose key appeared.
    pub added: Vec<Map<String, Value>>,
    /// Rows whose key went away.
    pub removed: Vec<Map<String, Value>>,
    /// Rows whose key stayed and whose other columns changed.
    pub changed: Vec<Changed>,
}

impl ViewChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What `govlake changes` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Changes {
    /// The earlier state.
    pub since: State,
    /// The later state.
    pub until: State,
    /// View → its changes, for every view compared (empty ones included).
    pub views: BTreeMap<String, ViewChanges>,
}

impl Changes {
    /// Rows added over all views.
    pub fn added(&self) -> usize {
        self.views.values().map(|v| v.added.len()).sum()
    }

    /// Rows added, removed or changed over all views.
    pub fn total(&self) -> usize {
        self.views
            .values()
            .map(|v| v.added.len() + v.removed.len() + v.changed.len())
            .sum()
    }
}

/// A view to compare: its file, key columns and volatile columns.
pub type FindingView<'a> = (&'a QueryFile, Vec<String>, Vec<String>);

/// The views to compare: the named ones (each must declare a key), else every query file
/// that declares one. Returns (file, key columns, volatile columns).
pub fn finding_views<'a>(files: &'a [QueryFile], names: &[String]) -> Result<Vec<FindingView<'a>>> {
    let chosen: Vec<&QueryFile> = if names.is_empty() {
        files.iter().filter(|f| f.key().is_some()).collect()
    } else {
        names
            .iter()
            .map(|n| {
                files
                    .iter()
                    .find(|f| f.name == *n)
                    .ok_or_else(|| Error::NotAView { view: n.clone() })
            })
            .collect::<Result<_>>()?
    };
    chosen
        .into_iter()
        .map(|f| {
            let params = f.parameters();
            if !params.is_empty() {
                return Err(Error::Parameters {
                    view: f.name.clone(),
                    params,
                });
            }
            let key = f.key().ok_or_else(|| Error::NoKey {
                view: f.name.clone(),
            })?;
            Ok((f, key, f.volatile()))
        })
        .collect()
}

/// Compares the views of `files` (or those named) between two points.
pub async fn compare(
    lake: &Lake,
    files: &[QueryFile],
    names: &[String],
    since: &Point,
    until: &Point,
    memory: MemoryLimit,
) -> Result<Changes> {
    let views = finding_views(files, names)?;
    let rows = runs(lake).await?;
    let since = resolve_in(&rows, since)?;
    let until = resolve_in(&rows, until)?;
    let before = session_at(lake, &since, files, memory).await?;
    let after = session_at(lake, &until, files, memory).await?;
    let mut out = BTreeMap::new();
    for (file, key, volatile) in views {
        let old = view_rows(&before, &file.name, &since.label()).await?;
        let new = view_rows(&after, &file.name, &until.label()).await?;
        out.insert(
            file.name.clone(),
            diff(&file.name, &key, &volatile, old, new)?,
        );
    }
    Ok(Changes {
        since,
        until,
        views: out,
    })
}

/// A view's rows as JSON objects (NULLs kept as `null`).
async fn view_rows(
    ctx: &SessionContext,
    view: &str,
    state: &str,
) -> Result<Vec<Map<String, Value>>> {
    let query_err = |e| Error::Query {
        view: view.to_string(),
        state: state.to_string(),
        source: Box::new(e),
    };
    let batches = ctx
        .sql(&format!("SELECT * FROM \"{view}\""))
        .await
        .map_err(query_err)?
        .collect()
        .await
        .map_err(query_err)?;
    batches_to_json(view, &batches)
}

/// Arrow batches as JSON objects, NULLs kept.
pub fn batches_to_json(view: &str, batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    use deltalake::arrow::json::{WriterBuilder, writer::JsonArray};
    let rows_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Rows {
        view: view.to_string(),
        source: e,
    };
    let mut w = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for b in batches {
        w.write(b).map_err(|e| rows_err(Box::new(e)))?;
    }
    w.finish().map_err(|e| rows_err(Box::new(e)))?;
    let bytes = w.into_inner();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(vec![]);
    }
    serde_json::from_slice(&bytes).map_err(|e| rows_err(Box::new(e)))
}

/// Matches two row sets by key (see the module's rules).
pub fn diff(
    view: &str,
    key: &[String],
    volatile: &[String],
    old: Vec<Map<String, Value>>,
    new: Vec<Map<String, Value>>,
) -> Result<ViewChanges> {
    type Groups = BTreeMap<String, Vec<Map<String, Value>>>;
    let group = |rows: Vec<Map<String, Value>>| -> Result<Groups> {
        let mut out: Groups = BTreeMap::new();
        for row in rows {
            let mut values = Vec::with_capacity(key.len());
            for k in key {
                values.push(row.get(k).ok_or_else(|| Error::KeyColumn {
                    view: view.to_string(),
                    column: k.clone(),
                })?);
            }
            let k = serde_json::to_string(&values).expect("JSON values serialise");
            out.entry(k).or_default().push(row);
        }
        Ok(out)
    };
    let compared = |row: &Map<String, Value>| -> Map<String, Value> {
        row.iter()
            .filter(|(c, _)| !volatile.contains(c))
            .map(|(c, v)| (c.clone(), v.clone()))
            .collect()
    };
    let (mut old, mut new) = (group(old)?, group(new)?);
    let mut keys: Vec<String> = old.keys().chain(new.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut out = ViewChanges {
        key: key.to_vec(),
        ..ViewChanges::default()
    };
    for k in keys {
        match (old.remove(&k), new.remove(&k)) {
            (None, Some(n)) => out.added.extend(n),
            (Some(o), None) => out.removed.extend(o),
            (Some(mut o), Some(mut n)) if o.len() == 1 && n.len() == 1 => {
                let (before, after) = (o.remove(0), n.remove(0));
                let mut columns: Vec<String> = before
                    .keys()
                    .chain(after.keys())
                    .filter(|c| !volatile.contains(c) && before.get(*c) != after.get(*c))
                    .cloned()
                    .collect();
                columns.dedup();
                if !columns.is_empty() {
                    out.changed.push(Changed {
                        key: key
                            .iter()
                            .map(|c| (c.clone(), after.get(c).cloned().unwrap_or(Value::Null)))
                            .collect(),
                        columns,
                        before,
                        after,
                    });
                }
            }
            (Some(o), Some(n)) => {
                let (oc, nc): (Vec<_>, Vec<_>) = (
                    o.iter().map(compared).collect(),
                    n.iter().map(compared).collect(),
                );
                out.added.extend(
                    n.iter()
                        .zip(&nc)
                        .filter(|(_, c)| !oc.contains(c))
                        .map(|(r, _)| r.clone()),
                );
                out.removed.extend(
                    o.iter()
                        .zip(&oc)
                        .filter(|(_, c)| !nc.contains(c))
                        .map(|(r, _)| r.clone()),
                );
            }
            (None, None) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn rows_are_matched_by_key() {
        let key = vec!["u".to_string()];
        let volatile = vec!["days".to_string()];
        let old = vec![
            row(&[("u", "a".into()), ("x", 1.into()), ("days", 3.into())]),
            row(&[("u", "b".into()), ("x", 1.into()), ("days", 3.into())]),
            row(&[("u", "c".into()), ("x", 1.into()), ("days", 3.into())]),
        ];
        let new = vec![
            // a: only a volatile column moved: unchanged.
            row(&[("u", "a".into()), ("x", 1.into()), ("days", 10.into())]),
            // b: changed.
            row(&[("u", "b".into()), ("x", 2.into()), ("days", 3.into())]),
            // c gone, d new.
            row(&[("u", "d".into()), ("x", 1.into()), ("days", 0.into())]),
        ];
        let d = diff("v", &key, &volatile, old, new).unwrap();
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0]["u"], "d");
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0]["u"], "c");
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].key["u"], "b");
        assert_eq!(d.changed[0].columns, ["x"]);
        assert_eq!(d.changed[0].before["x"], 1);
        assert_eq!(d.changed[0].after["x"], 2);
    }

    #[test]
    fn a_key_with_several_rows_is_compared_as_a_set_and_nulls_are_values() {
        let key = vec!["u".to_string()];
        let old = vec![
            row(&[("u", Value::Null), ("x", 1.into())]),
            row(&[("u", Value::Null), ("x", 2.into())]),
        ];
        let new = vec![
            row(&[("u", Value::Null), ("x", 2.into())]),
            row(&[("u", Value::Null), ("x", 3.into())]),
        ];
        let d = diff("v", &key, &[], old, new).unwrap();
        assert_eq!(d.added, vec![row(&[("u", Value::Null), ("x", 3.into())])]);
        assert_eq!(d.removed, vec![row(&[("u", Value::Null), ("x", 1.into())])]);
        assert!(d.changed.is_empty());
    }

    #[test]
    fn a_missing_key_column_is_named() {
        let e = diff(
            "sod",
            &["nope".to_string()],
            &[],
            vec![row(&[("u", "a".into())])],
            vec![],
        )
        .unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn points_resolve_to_runs_and_their_versions() {
        let r = |id: &str, fin: i64, table: &str, v: Option<i64>| RunRow {
            run_id: id.into(),
            finished_at: fin,
            observed_at: fin - 1,
            table: table.into(),
            version: v,
        };
        let rows = vec![
            r("one", 10, "assignments", Some(1)),
            r("one", 10, "users", Some(1)),
            r("two", 20, "assignments", Some(3)),
            r("two", 20, "users", None),
            r("three", 30, "users", Some(5)),
        ];
        let s = resolve_in(&rows, &Point::Run("two".into())).unwrap();
        assert_eq!(s.end, Some(20));
        assert_eq!(s.versions["assignments"], 3);
        // Not written by run two: its last recorded version before.
        assert_eq!(s.versions["users"], 1);
        let t = resolve_in(&rows, &Point::Time(25)).unwrap();
        assert_eq!(t.run_id.as_deref(), Some("two"));
        assert!(matches!(
            resolve_in(&rows, &Point::Time(5)),
            Err(Error::NoRunBefore {
                first: Some(10),
                ..
            })
        ));
        assert!(matches!(
            resolve_in(&rows, &Point::Run("nine".into())),
            Err(Error::NoSuchRun { .. })
        ));
        assert_eq!(Point::parse("now"), Ok(Point::Now));
        assert_eq!(
            Point::parse("2026-10-01T00:00:00Z"),
            Ok(Point::Time(1_790_812_800_000_000))
        );
        assert_eq!(Point::parse("abc-1"), Ok(Point::Run("abc-1".into())));
    }
}
