//! Replaying the lake's history through today's mapping: the heart of `govlake rebuild` and
//! of migrations that change what a table holds.
//!
//! `_raw` keeps every distinct JSON version of every top-level object with the run that first
//! saw it; `<table>_history` keeps when each typed version was valid. Together they say, for
//! every observation time, which objects a snapshot held and which JSON each had. The replay
//! walks those times in order and feeds the objects through the same [`Run`] an ingest uses,
//! into a scratch lake: snapshot tables get every object present at that time (and their
//! scopes count as read whole, so what the history closed then is closed again), upserted
//! ones the objects that changed, append-only ones the records first fetched then. Child
//! tables fill from their parents' JSON, as in an ingest.
//!
//! Which JSON a version had: the newest raw version of the object observed by then whose
//! typed row, under this mapping, hashes to the history's `row_hash`; if none does (the
//! mapping changed), the newest raw version observed by then, counted as `unverified`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deltalake::arrow::array::{Array, AsArray};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::{IngestSettings, Result, Run, snapshot};
use crate::catalog::{self, Ctx, EntitySpec, Source, Storage};
use crate::lake::Lake;
use crate::lake::bookkeeping::{INGEST_RUNS, RAW};
use crate::lake::history::{self, Versioning};
use crate::time::fmt_ts;

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Observation times replayed.
    pub observations: usize,
    /// Objects fed through the mapping (counting each time an object was fed).
    pub objects_fed: u64,
    /// Versions whose JSON could not be confirmed by the history's row hash.
    pub unverified: u64,
    /// Records the current mapping rejects (quarantined in the scratch lake's `_rejects`).
    pub rejected: u64,
    /// First observation replayed.
    pub from: Option<String>,
    /// Last observation replayed.
    pub to: Option<String>,
    /// `_raw` records of entities this govlake does not map, by entity (kept in `_raw`,
    /// not replayed).
    pub unknown_raw: BTreeMap<String, u64>,
}

/// One typed version of an object, as the history holds it.
struct Version {
    from: i64,
    to: Option<i64>,
    row_hash: String,
    scope: String,
    parents: Vec<String>,
}

/// Everything known of one versioned entity.
#[derive(Default)]
struct EntityHistory {
    /// id → versions by `valid_from`.
    versions: BTreeMap<String, Vec<Version>>,
    /// id → raw versions (observed at, record hash) by time.
    raw: HashMap<String, Vec<(i64, String)>>,
    /// Record hash → the raw JSON.
    json: HashMap<String, String>,
    /// Times something happened to this entity.
    events: BTreeSet<i64>,
}

/// Replays `source`'s history into `scratch` (an empty lake) with the current mapping.
pub async fn replay(
    source: &Lake,
    scratch: &Lake,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ReplaySummary> {
    let mut summary = ReplaySummary::default();
    let observed = run_times(source).await?;

    // Raw index: entity → id → (observed at, hash); JSON of versioned entities by hash.
    let mut histories: BTreeMap<&'static str, EntityHistory> = BTreeMap::new();
    let mut append_runs: BTreeSet<String> = BTreeSet::new();
    let mut unknown_raw: BTreeMap<String, u64> = BTreeMap::new();
    source
        .scan_strings(
            RAW,
            &["entity", "id", "record_hash", "run_id", "json"],
            |v| {
                let (Some(entity), Some(id), Some(hash)) = (v[0], v[1], v[2]) else {
                    return;
                };
                let Some(spec) = catalog::entity(entity) else {
                    *unknown_raw.entry(entity.to_string()).or_default() += 1;
                    return;
                };
                let at = v[3]
                    .and_then(|r| observed.get(r))
                    .copied()
                    .unwrap_or(i64::MIN);
                match spec.storage {
                    Storage::Versioned(_) => {
                        let h = histories.entry(spec.table).or_default();
                        h.raw
                            .entry(id.to_string())
                            .or_default()
                            .push((at, hash.to_string()));
                        if at != i64::MIN {
                            h.events.insert(at);
                        }
                        h.json
                            .insert(hash.to_string(), v[4].unwrap_or("null").to_string());
                    }
                    Storage::Append => {
                        append_runs.insert(v[3].unwrap_or("").to_string());
                    }
                }
            },
        )
        .await?;
    summary.unknown_raw = unknown_raw;
    for h in histories.values_mut() {
        for list in h.raw.values_mut() {
            list.sort();
        }
    }
    // Every versioned entity's history, also of the lists only ever seen inside their
    // parents (their changes are times at which the parents must be fed again).
    for spec in catalog::ENTITIES.iter().filter(|e| e.versioned().is_some()) {
        let h = histories.entry(spec.table).or_default();
        load_versions(source, spec, h).await?;
    }

    let versioned_times: BTreeSet<i64> = histories
        .values()
        .flat_map(|h| h.events.iter().copied())
        .collect();
    // Append-only records carry no observation time of their own; those of a run that never
    // reached its bookkeeping (killed, then completed by a rerun) go with the first time.
    let first = versioned_times
        .iter()
        .copied()
        .chain(append_runs.iter().filter_map(|r| observed.get(r).copied()))
        .min()
        .unwrap_or(0);
    let mut appends_at: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for r in append_runs {
        let at = observed.get(&r).copied().unwrap_or(first);
        appends_at.entry(at).or_default().push(r);
    }
    let mut times: BTreeSet<i64> = appends_at.keys().copied().collect();
    times.extend(versioned_times.iter().copied());
    summary.observations = times.len();
    summary.from = times.first().map(|t| fmt_ts(*t));
    summary.to = times.last().map(|t| fmt_ts(*t));

    let settings = IngestSettings::default();
    for (i, &t) in times.iter().enumerate() {
        progress(i, times.len());
        let mut run = Run::new(
            scratch,
            &settings,
            uuid::Uuid::new_v4().to_string(),
            chrono::Utc::now().timestamp_micros(),
            t,
            snapshot::Completeness::new(&[]),
        );
        run.keep_raw = false;
        for spec in catalog::ENTITIES.iter() {
            let Some(h) = histories.get(spec.table).filter(|h| !h.raw.is_empty()) else {
                // Known only from its parents' records: the parents' replay brings it back.
                continue;
            };
            // Snapshots are fed whenever anything versioned changed, so the lists they hold
            // (a package's policies) come back with them; the rest only at their own events.
            let snapshot = matches!(spec.storage, Storage::Versioned(Versioning::Snapshot));
            if !h.events.contains(&t) && !(snapshot && versioned_times.contains(&t)) {
                continue;
            }
            feed_versioned(&mut run, spec, h, t, &mut summary).await?;
        }
        if let Some(runs) = appends_at.get(&t) {
            let runs: Vec<String> = runs
                .iter()
                .map(|r| format!("'{}'", r.replace('\'', "''")))
                .collect();
            feed_appends(&mut run, source, &runs, &mut summary).await?;
        }
        let outcome = run.finish(0, 0).await?;
        summary.rejected += outcome.rejected;
    }
    progress(times.len(), times.len());
    Ok(summary)
}

/// Run id → observed at (UTC micros), from `_ingest_runs`.
async fn run_times(source: &Lake) -> Result<HashMap<String, i64>> {
    let mut observed = HashMap::new();
    let sql = format!("select distinct run_id, cast(observed_at as bigint) from \"{INGEST_RUNS}\"");
    source
        .scan_sql(INGEST_RUNS, &sql, |v| {
            if let (Some(r), Some(t)) = (v[0], v[1].and_then(|t| t.parse::<i64>().ok())) {
                observed.insert(r.to_string(), t);
            }
        })
        .await?;
    Ok(observed)
}

/// Loads an entity's history: versions per id, with the parent ids their rows name.
async fn load_versions(source: &Lake, spec: &EntitySpec, h: &mut EntityHistory) -> Result<()> {
    // Columns filled from parent ids: parents[k] comes back from them.
    let mut parent_cols: Vec<(usize, &str)> = vec![];
    for c in &spec.columns {
        for s in &c.sources {
            if let Source::Parent(k) = s {
                parent_cols.push((*k, c.name.as_str()));
            }
        }
    }
    let table = format!("{}_history", spec.table);
    // A lake written by an older govlake may lack a parent column: the scope still names
    // the nearest parent.
    let have = source.column_names(&table).await?.unwrap_or_default();
    parent_cols.retain(|(_, c)| have.iter().any(|h| h == c));
    let mut cols = vec![
        "id".to_string(),
        history::ROW_HASH.to_string(),
        history::SCOPE.to_string(),
        format!("cast({} as bigint)", history::VALID_FROM),
        format!("cast({} as bigint)", history::VALID_TO),
    ];
    cols.extend(parent_cols.iter().map(|(_, c)| format!("\"{c}\"")));
    let sql = format!("select {} from \"{table}\"", cols.join(", "));
    source
        .scan_sql(&table, &sql, |v| {
            let (Some(id), Some(row_hash), Some(from)) =
                (v[0], v[1], v[3].and_then(|s| s.parse::<i64>().ok()))
            else {
                return;
            };
            let scope = v[2].unwrap_or("").to_string();
            let to = v[4].and_then(|s| s.parse::<i64>().ok());
            let mut parents: Vec<String> = vec![];
            for (i, (k, _)) in parent_cols.iter().enumerate() {
                if let Some(p) = v[5 + i] {
                    if parents.len() <= *k {
                        parents.resize(k + 1, String::new());
                    }
                    parents[*k] = p.to_string();
                }
            }
            // The scope is what the ingest keyed the snapshot by: it names the nearest parent.
            if spec.scoped_by_parent {
                let parent = constant_of(spec, &scope)
                    .and_then(|k| scope.strip_suffix(&format!("/{k}")))
                    .unwrap_or(&scope);
                if parents.is_empty() {
                    parents.push(String::new());
                }
                parents[0] = parent.to_string();
            }
            h.events.insert(from);
            if let Some(t) = to {
                h.events.insert(t);
            }
            h.versions.entry(id.to_string()).or_default().push(Version {
                from,
                to,
                row_hash: row_hash.to_string(),
                scope,
                parents,
            });
        })
        .await?;
    for list in h.versions.values_mut() {
        list.sort_by_key(|v| v.from);
    }
    Ok(())
}

/// The child-list constant a scope ends with (`<org>/internal`).
fn constant_of(spec: &EntitySpec, scope: &str) -> Option<&'static str> {
    catalog::ENTITIES
        .iter()
        .flat_map(|e| e.children.iter())
        .filter(|l| l.entity == spec.table)
        .filter_map(|l| l.constant)
        .find(|k| scope.ends_with(&format!("/{k}")))
}

/// Feeds one versioned entity's objects at time `t`.
async fn feed_versioned(
    run: &mut Run<'_>,
    spec: &'static EntitySpec,
    h: &EntityHistory,
    t: i64,
    summary: &mut ReplaySummary,
) -> Result<()> {
    let snapshot = matches!(spec.storage, Storage::Versioned(Versioning::Snapshot));
    for (id, versions) in &h.versions {
        // The version valid at t; for snapshots also the scope a version closed at t was in.
        let current = versions
            .iter()
            .rev()
            .find(|v| v.from <= t && v.to.is_none_or(|to| to > t));
        if snapshot {
            for v in versions.iter().filter(|v| v.to == Some(t)) {
                run.completeness.embedded(spec.table, &v.scope);
            }
        }
        let Some(v) = current else { continue };
        let raw = h.raw.get(id).map_or(&[][..], Vec::as_slice);
        let changed_now = v.from == t || raw.iter().any(|(at, _)| *at == t);
        if !snapshot && !changed_now {
            continue;
        }
        let Some((text, value, verified)) = choose_json(spec, v, raw, &h.json, t) else {
            // Known only from its parents' records: the parent's replay brings it back.
            continue;
        };
        if !verified {
            summary.unverified += 1;
        }
        if snapshot {
            run.completeness.embedded(spec.table, &v.scope);
        }
        let location = format!("`{}` `{id}` as observed at {}", spec.table, fmt_ts(t));
        let constant = constant_of(spec, &v.scope);
        feed(
            run, spec, text, value, &location, &v.parents, constant, summary,
        )
        .await?;
    }
    Ok(())
}

/// Feeds one raw record through the mapping, as an ingest reads a top-level record.
async fn feed(
    run: &mut Run<'_>,
    spec: &'static EntitySpec,
    text: String,
    value: Value,
    location: &str,
    parents: &[String],
    constant: Option<&str>,
    summary: &mut ReplaySummary,
) -> Result<()> {
    summary.objects_fed += 1;
    let source = "govlake rebuild (from _raw)";
    let at = super::Placement {
        source,
        location: super::Location::Text(location),
        parents,
        constant,
        parent_is_new: None,
    };
    let ctx = Ctx {
        parents,
        position: 0,
        constant,
        json: None,
    };
    let object = super::prepare::object(
        spec,
        &value,
        Some(&text),
        ctx,
        run.settings.max_record_bytes,
    );
    run.object(spec, object, Some(text), None, &at).await
}

/// The JSON of version `v` at time `t` (text and parsed), and whether its typed row hash
/// confirms it.
fn choose_json(
    spec: &EntitySpec,
    v: &Version,
    raw: &[(i64, String)],
    json: &HashMap<String, String>,
    t: i64,
) -> Option<(String, Value, bool)> {
    let candidates: Vec<&String> = raw
        .iter()
        .filter(|(at, _)| *at <= t)
        .rev()
        .filter_map(|(_, hash)| json.get(hash))
        .collect();
    let constant = constant_of(spec, &v.scope);
    let ctx = Ctx {
        parents: &v.parents,
        position: 0,
        constant,
        json: None,
    };
    for text in &candidates {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if let Ok(row) = spec.extract(&value, ctx)
            && history::row_hash(&row) == v.row_hash
        {
            return Some(((*text).clone(), value, true));
        }
    }
    // A raw version whose run never recorded its observation time sorts first (as
    // `i64::MIN`): a candidate at any time. Failing a match, an entity that parents also
    // hold inside their records (review instances in definitions) is left to them: its
    // version may have been seen only there. Otherwise the newest raw version by then.
    if is_embedded_somewhere(spec) {
        return None;
    }
    candidates.first().map(|text| {
        let value = serde_json::from_str(text).unwrap_or(Value::Null);
        ((*text).clone(), value, false)
    })
}

/// Whether some entity's records hold lists of this one.
fn is_embedded_somewhere(spec: &EntitySpec) -> bool {
    catalog::ENTITIES
        .iter()
        .flat_map(|e| e.children.iter())
        .any(|l| l.entity == spec.table)
}

/// Tables whose objects the replay did not bring back, with how many and a few ids: a
/// rebuild that would lose them must not replace anything.
pub async fn lost_objects(
    source: &Lake,
    scratch: &Lake,
) -> Result<Vec<(String, u64, Vec<String>)>> {
    let mut lost = vec![];
    for spec in catalog::ENTITIES.iter() {
        let table = match spec.versioned() {
            Some(v) => v.history.name,
            None => spec.table.to_string(),
        };
        let mut rebuilt = std::collections::HashSet::new();
        scratch
            .scan_strings(&table, &["id"], |v| {
                if let Some(id) = v[0] {
                    rebuilt.insert(super::key128(&[id]));
                }
            })
            .await?;
        let (mut missing, mut examples) = (std::collections::HashSet::new(), vec![]);
        source
            .scan_strings(&table, &["id"], |v| {
                if let Some(id) = v[0] {
                    let key = super::key128(&[id]);
                    if !rebuilt.contains(&key) && missing.insert(key) && examples.len() < 5 {
                        examples.push(id.to_string());
                    }
                }
            })
            .await?;
        if !missing.is_empty() {
            lost.push((table, missing.len() as u64, examples));
        }
    }
    Ok(lost)
}

/// A failed `_raw` read, as the lake reports it.
fn lake_query_error(e: deltalake::datafusion::error::DataFusionError) -> super::Error {
    crate::lake::Error::Query {
        table: RAW.to_string(),
        source: Box::new(e),
    }
    .into()
}

/// Feeds the append-only records first fetched by `runs`, streamed from `_raw` batch by
/// batch (a first bulk ingest is one observation time of millions of events).
async fn feed_appends(
    run: &mut Run<'_>,
    source: &Lake,
    runs: &[String],
    summary: &mut ReplaySummary,
) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let appends: Vec<String> = catalog::ENTITIES
        .iter()
        .filter(|e| e.storage == Storage::Append && e.key == catalog::Key::Own)
        .map(|e| format!("'{}'", e.table))
        .collect();
    let sql = format!(
        "select entity, json from \"{RAW}\" where run_id in ({}) and entity in ({})",
        runs.join(", "),
        appends.join(", ")
    );
    let Some(mut stream) = source.stream_sql(RAW, &sql).await? else {
        return Ok(());
    };
    let mut n = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| lake_query_error(e))?;
        // Strings may come back as views or large strings: one type to read.
        let text_column = |i: usize| {
            deltalake::arrow::compute::cast(
                batch.column(i),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .map_err(|source| crate::lake::Error::Arrow {
                table: RAW.to_string(),
                source,
            })
        };
        let (entities, texts) = (text_column(0)?, text_column(1)?);
        let (entities, texts) = (entities.as_string::<i32>(), texts.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if entities.is_null(row) || texts.is_null(row) {
                continue;
            }
            let entity = entities.value(row);
            let text = texts.value(row).to_string();
            let spec = catalog::entity(entity).expect("filtered to known entities");
            n += 1;
            let location = format!("`{entity}` raw record {n}");
            let value = serde_json::from_str(&text).unwrap_or(Value::Null);
            feed(run, spec, text, value, &location, &[], None, summary).await?;
            run.flush_if_full().await?;
        }
    }
    Ok(())
}
