//! The quarterly examiner evidence pack: a BagIt-style folder (and a tar archive of it) with
//! an index, per-package reports in HTML and Markdown, every view's population as CSV and
//! Parquet, the SQL behind every figure, reconciliation and coverage gaps, a SHA-256
//! manifest and a minisign signature.
//!
//! The populations are written first, then registered as tables, and the package reports
//! and the index read a view's population where it holds the rows they show instead of
//! running the view again (see [`package::Populations`]).
//!
//! Reproducible by construction: every table is pinned to a recorded Delta version, every
//! query is ordered by all its columns, every time printed comes from the period (never the
//! clock), and the archive's entries are sorted with fixed owners and times. The pack is
//! written beside `<out>` to `<out>.partial-<random>`, a folder this run creates and alone
//! removes (when it fails), and renamed to `<out>` when complete; an existing folder is
//! never removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::digest::{Digests, FileDigest};
use super::package::{self, PackageReport};
use super::render::{Templates, safe, serde_value};
use super::sign::SecretKey;
use super::{Error, Period, Result, Table, io_err};
use crate::lake::{Lake, TablePin};
use crate::query::AsOf;
use crate::query::views::QueryFile;

/// Tag files at the pack root, besides `data/`.
pub const BAGIT: &str = "bagit.txt";
/// Bag metadata.
pub const BAG_INFO: &str = "bag-info.txt";
/// SHA-256 of every payload file.
pub const MANIFEST: &str = "manifest-sha256.txt";
/// SHA-256 of the tag files.
pub const TAG_MANIFEST: &str = "tagmanifest-sha256.txt";
/// minisign signature of the tag manifest.
pub const SIGNATURE: &str = "tagmanifest-sha256.txt.minisig";
/// The signer's public key (for convenience; pin the expected key with `--public-key`).
pub const SIGNER: &str = "signer.pub";

/// What to build.
pub struct PackSettings {
    /// Pack folder (must not exist, or be empty).
    pub out: PathBuf,
    /// The period.
    pub period: Period,
    /// Versions to pin (tables not named: their newest version, recorded).
    pub as_of: AsOf,
    /// Queries (embedded or `--queries`).
    pub queries: Vec<QueryFile>,
    /// Templates folder overriding the embedded ones.
    pub templates: Option<PathBuf>,
    /// Signing key.
    pub key: Option<SecretKey>,
    /// Also write `<out>.tar`.
    pub archive: bool,
    /// Random samples to draw and record: (view, size, seed).
    pub samples: Vec<(String, usize, u64)>,
    /// Memory the pack's queries may hold (beyond it they spill).
    pub memory: crate::query::MemoryLimit,
}

/// A drawn sample, as recorded in the pack.
#[derive(Debug, Clone, serde::Serialize)]
struct SampleRecord {
    view: String,
    size: usize,
    seed: u64,
    population: usize,
    file: String,
}

/// What was built.
#[derive(Debug, serde::Serialize)]
pub struct PackSummary {
    /// The pack folder.
    pub dir: PathBuf,
    /// Its index page.
    pub index: PathBuf,
    /// The archive, if written.
    pub archive: Option<PathBuf>,
    /// Payload files.
    pub files: usize,
    /// Payload bytes.
    pub bytes: u64,
    /// Packages reported.
    pub packages: usize,
    /// Rows of `sod_violations`.
    pub sod_violations: usize,
    /// Signing key id, if signed.
    pub signed_by: Option<String>,
    /// Pinned versions, to regenerate with `--as-of`.
    pub versions: BTreeMap<String, i64>,
    /// SHA-256 of the tag manifest: names this pack's exact content.
    pub pack_id: String,
}

/// The Delta version of every existing table: pinned ones as given, the rest at newest.
pub async fn pin_versions(lake: &Lake, as_of: &AsOf) -> Result<BTreeMap<String, i64>> {
    let mut versions = BTreeMap::new();
    for name in crate::query::table_names() {
        match as_of.pin(&name) {
            TablePin::Version(v) => {
                versions.insert(name, v);
            }
            // Read through another table's pins (request links of a format-1 pack).
            TablePin::Absent => {}
            TablePin::Latest | TablePin::Time(_) => {
                if let Some(v) = lake.version(&name).await? {
                    versions.insert(name, v);
                }
            }
        }
    }
    Ok(versions)
}

/// The pack folder being written, and the digest of every file written into it (computed
/// while writing, for the manifest).
struct Payload {
    root: PathBuf,
    digests: Digests,
}

impl Payload {
    /// The path of a file inside the pack, its folders created; `relative` is always built
    /// from fixed names and slugs, and is checked to stay inside the root.
    fn path(&self, relative: &str) -> Result<PathBuf> {
        if relative
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
            || relative.starts_with('/')
        {
            return Err(Error::Invalid(format!(
                "refusing to write `{relative}` outside the pack"
            )));
        }
        let path = self.root.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        Ok(path)
    }

    /// Writes a file inside the pack with `fill`, hashing it as it is written, and records
    /// its digest.
    fn write_with(
        &mut self,
        relative: &str,
        fill: impl FnOnce(&mut super::digest::HashingFile) -> Result<()>,
    ) -> Result<()> {
        let mut file = super::digest::HashingFile::create(&self.path(relative)?)?;
        fill(&mut file)?;
        let digest = file.finish()?;
        self.digests.insert(relative.to_string(), digest);
        Ok(())
    }

    /// Writes a file inside the pack and records its digest.
    fn write(&mut self, relative: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(relative)?;
        std::fs::write(&path, bytes).map_err(io_err("write", &path))?;
        self.digests
            .insert(relative.to_string(), FileDigest::of(bytes));
        Ok(())
    }

    /// The digest of a file, as recorded while writing it (or read back if it was not).
    fn digest(&self, relative: &str) -> Result<FileDigest> {
        match self.digests.get(relative) {
            Some(d) => Ok(d.clone()),
            None => {
                let (sha256, bytes) = sha256_file(&self.root.join(relative))?;
                Ok(FileDigest { sha256, bytes })
            }
        }
    }
}

/// Provenance common to every page.
#[derive(Debug, Clone, serde::Serialize)]
struct Provenance {
    govlake_version: &'static str,
    versions: Vec<(String, i64)>,
    /// DataFusion settings from `DATAFUSION_*` variables the queries ran with (usually none).
    engine_settings: Vec<(String, String)>,
}

impl Provenance {
    fn new(versions: &BTreeMap<String, i64>) -> Result<Self> {
        Ok(Self {
            govlake_version: env!("CARGO_PKG_VERSION"),
            versions: versions.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            engine_settings: crate::query::environment_settings()?,
        })
    }
}

/// A population file entry for the index and provenance.
#[derive(Debug, Clone, serde::Serialize)]
struct Population {
    name: String,
    description: String,
    rows: usize,
    sha256: String,
    parameters: Vec<(String, String)>,
    /// The period rule, when the population is scoped (see [`SCOPES`]).
    scope: Option<String>,
    /// The query that selected the scoped rows.
    scope_sql: Option<String>,
}

/// Charts of one package report.
fn package_charts(report: &PackageReport) -> BTreeMap<&'static str, minijinja::Value> {
    let mut charts = BTreeMap::new();
    let coverage = report.section("coverage").map(|s| {
        let table = s.table.to_table();
        table
            .rows
            .iter()
            .map(|r| {
                let label = format!(
                    "{} {}",
                    table.cell(r, "quarter"),
                    table.cell(r, "review_start")
                );
                (label, table.cell(r, "coverage").parse().unwrap_or(0.0))
            })
            .collect::<Vec<_>>()
    });
    let latency = report.section("latency").map(|s| {
        let table = s.table.to_table();
        table
            .rows
            .iter()
            .map(|r| {
                (
                    table.cell(r, "quarter").to_string(),
                    table.cell(r, "median_hours").parse().unwrap_or(0.0),
                )
            })
            .collect::<Vec<_>>()
    });
    let trend = report.section("trend").map(|s| {
        let table = s.table.to_table();
        table
            .rows
            .iter()
            .map(|r| {
                (
                    table.cell(r, "as_of").chars().take(10).collect::<String>(),
                    table.cell(r, "holders").parse().unwrap_or(0.0),
                )
            })
            .collect::<Vec<_>>()
    });
    let svg = |items: Option<Vec<(String, f64)>>, title: &str, max: Option<f64>, unit: &str| {
        match items {
            Some(items) if !items.is_empty() => {
                safe(super::chart::bars(title, &items, max, |v| match unit {
                    "%" => format!("{:.1} %", v * 100.0),
                    "h" => format!("{v:.1} h"),
                    _ => format!("{v:.0}"),
                }))
            }
            _ => minijinja::Value::from(""),
        }
    };
    charts.insert(
        "coverage",
        svg(
            coverage,
            "Recertification coverage (reviewed / in scope)",
            Some(1.0),
            "%",
        ),
    );
    charts.insert(
        "latency",
        svg(
            latency,
            "Median hours from request to completion",
            None,
            "h",
        ),
    );
    charts.insert("trend", svg(trend, "Holders over time", None, ""));
    charts
}

/// The template context of one package report, for both the HTML and the Markdown (its
/// sections' rows are template objects, each row made as a template reads it).
fn package_context(
    report: &PackageReport,
    period: &Period,
    versions: &BTreeMap<String, i64>,
    index_href: &str,
) -> Result<minijinja::Value> {
    // The sections' tables are template objects whose rows are made as they are read, not
    // copied into the context (a package's trail can be a million rows).
    let sections: Vec<minijinja::Value> = report
        .sections
        .iter()
        .map(|s| {
            minijinja::context! {
                key => s.key,
                title => s.title,
                about => s.about,
                sql => &s.sql,
                sql_sha256 => &s.sql_sha256,
                table => minijinja::Value::from_object(s.table.clone()),
            }
        })
        .collect();
    Ok(minijinja::context! {
        report => minijinja::context! {
            id => &report.id,
            name => &report.name,
            file_stem => &report.file_stem,
            parameters => &report.parameters,
            sections => sections,
        },
        period => serde_value(period),
        as_of => period.end_inclusive_text(),
        index_href => index_href,
        provenance => serde_value(Provenance::new(versions)?),
        charts => package_charts(report),
    })
}

/// Renders one package report's HTML and Markdown.
pub fn render_package(
    templates: &Templates,
    report: &PackageReport,
    period: &Period,
    versions: &BTreeMap<String, i64>,
    index_href: &str,
) -> Result<(String, String)> {
    let context = package_context(report, period, versions, index_href)?;
    Ok((
        templates.render("package.html", &context)?,
        templates.render("package.md", &context)?,
    ))
}

/// Stretches of the period without audit events: before the first captured event, and runs
/// of four or more days without any.
async fn coverage_gaps(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    period: &Period,
) -> Result<Table> {
    let days = super::table::query(
        ctx,
        "coverage gaps",
        "SELECT DISTINCT CAST(date_trunc('day', activity_date_time) AS VARCHAR) AS day FROM audit_events
         WHERE activity_date_time >= CAST($from AS TIMESTAMP) AND activity_date_time < CAST($to AS TIMESTAMP)",
        &[("from", &period.from_text), ("to", &period.to_text)],
    )
    .await?;
    let seen: std::collections::BTreeSet<String> = days
        .rows
        .iter()
        .map(|r| r[0].chars().take(10).collect())
        .collect();
    let mut gaps = Table {
        columns: vec!["from".into(), "to".into(), "days".into(), "reason".into()],
        rows: Vec::new(),
    };
    let day = 86_400_000_000i64;
    let first_seen = seen.iter().next().cloned();
    let mut run_start: Option<i64> = None;
    let mut t = period.from;
    let mut before_capture = true;
    while t <= period.to {
        let label = crate::time::fmt_ts(t).chars().take(10).collect::<String>();
        let missing = t < period.to && !seen.contains(&label);
        if missing {
            run_start.get_or_insert(t);
        } else if let Some(start) = run_start.take() {
            let n = (t - start) / day;
            let reason = if before_capture && first_seen.is_some() {
                "before the first captured audit event"
            } else if first_seen.is_none() {
                "no audit events captured in the period"
            } else {
                "no audit events captured"
            };
            if n >= 4 || (before_capture && start == period.from) {
                gaps.rows.push(vec![
                    crate::time::fmt_ts(start),
                    crate::time::fmt_ts(t),
                    n.to_string(),
                    reason.into(),
                ]);
            }
        }
        if !missing {
            before_capture = false;
        }
        t += day;
    }
    Ok(gaps)
}

/// Reconciliation per table over the ingest runs up to the pinned versions.
async fn reconciliation(ctx: &deltalake::datafusion::prelude::SessionContext) -> Result<Table> {
    let mut t = super::table::query(
        ctx,
        "reconciliation",
        "SELECT table_name, sum(fetched) AS fetched, sum(stored) AS stored, sum(duplicates) AS duplicates,
                sum(rejected) AS rejected, sum(fetched) = sum(stored) + sum(duplicates) + sum(rejected) AS reconciles,
                count(*) AS runs
         FROM _ingest_runs GROUP BY table_name",
        &[],
    )
    .await?;
    t.columns.push("rows_in_lake".into());
    for r in &mut t.rows {
        let n = super::table::query(
            ctx,
            "reconciliation",
            &format!("SELECT count(*) FROM \"{}\"", r[0].replace('"', "")),
            &[],
        )
        .await
        .map(|c| c.rows.first().map(|x| x[0].clone()).unwrap_or_default())
        .unwrap_or_else(|_| "-".into());
        r.push(n);
    }
    Ok(t)
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(io_err("read", path))?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(io_err("read", path))?;
    Ok((hex::encode(h.finalize()), n))
}

/// Every file under `dir`, as sorted `/`-separated paths relative to `root`.
pub fn files_under(root: &Path, dir: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root.join(dir)).sort_by_file_name() {
        let e = e.map_err(|e| Error::Invalid(format!("cannot list `{}`: {e}", root.display())))?;
        if e.file_type().is_file() || e.file_type().is_symlink() {
            out.push(relative_path(root, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to `root`, `/`-separated.
pub(crate) fn relative_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The rows of view `name` for the index, ordered (none when the queries do not define
/// it): from its population where the pack has one that holds them (the whole view, or,
/// with `period_rule_applied`, the view under the period rule the caller applies too), else
/// the view.
async fn view(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    queries: &[QueryFile],
    populations: &package::Populations,
    name: &str,
    period_rule_applied: bool,
) -> Result<Table> {
    let population = populations
        .tables
        .get(name)
        .filter(|_| period_rule_applied || !populations.scoped.contains(name));
    match (queries.iter().find(|q| q.name == name), population) {
        (Some(_), Some(table)) => {
            super::table::query(ctx, name, &format!("SELECT * FROM {table}"), &[]).await
        }
        (Some(q), None) => super::table::query(ctx, name, &q.sql, &[]).await,
        (None, _) => Ok(Table::default()),
    }
}

/// Registers each population file the package reports and the index can read instead of
/// running its view again: those of views without parameters (whole, or scoped to the
/// period by [`SCOPES`]) and `review_completeness`, bound to the period as the reports bind
/// it. Returns the table of each view.
async fn register_populations(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    populations: &[Population],
    partial: &Payload,
) -> Result<package::Populations> {
    let mut registered = package::Populations::default();
    for p in populations {
        if !p.parameters.iter().all(|(k, _)| k == "from" || k == "to") {
            continue;
        }
        let path = partial.path(&format!("data/populations/{}.parquet", p.name))?;
        // An absolute path (a relative `--out` such as `q3:2026` would read as a URL), in
        // UTF-8, without `*`, `?` or `[` (DataFusion reads them as a glob); a population
        // that cannot be registered is not read: its view runs again instead.
        let Some(path) = super::shared_views::readable_location(&path) else {
            continue;
        };
        let table = format!("pack_population_{}", p.name);
        if let Err(e) = ctx
            .register_parquet(
                deltalake::datafusion::common::TableReference::bare(table.as_str()),
                &path,
                deltalake::datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
        {
            tracing::debug!(population = p.name, error = %e, "Population not registered; its view runs again");
            continue;
        }
        registered.tables.insert(
            p.name.clone(),
            format!("\"{}\"", table.replace('"', "\"\"")),
        );
        if p.scope.is_some() {
            registered.scoped.insert(p.name.clone());
        }
    }
    Ok(registered)
}

/// Builds the pack.
pub async fn build(lake: &Lake, settings: &PackSettings) -> Result<PackSummary> {
    // `out/` and `out` are the same folder (a trailing slash once put the staging folder
    // inside the pack).
    let out: PathBuf = settings.out.components().collect();
    if out.file_name().is_none() {
        return Err(Error::Invalid(format!(
            "`{}` names no new folder: give a new folder for the pack",
            settings.out.display()
        )));
    }
    if out.exists()
        && std::fs::read_dir(&out)
            .map_err(io_err("read", &out))?
            .next()
            .is_some()
    {
        return Err(Error::Invalid(format!(
            "`{}` exists and is not empty: give a new folder for the pack",
            out.display()
        )));
    }
    let partial = PathBuf::from(format!(
        "{}.partial-{}",
        out.display(),
        uuid::Uuid::new_v4().simple()
    ));
    if let Some(parent) = partial.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    let folder = partial
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let estimate = estimate_bytes(lake, settings.archive).await?;
    ensure_room(folder, estimate, free_bytes(folder), settings.archive)?;
    std::fs::create_dir(&partial).map_err(io_err("create", &partial))?;
    let mut payload = Payload {
        root: partial.clone(),
        digests: Digests::new(),
    };
    let built = write_pack(lake, settings, &out, &mut payload).await;
    if built.is_err() {
        // Only the folder this run created.
        let _ = std::fs::remove_dir_all(&partial);
    }
    built
}

/// Bytes the pack is expected to write: about the size of the lake's tables (the pinned
/// snapshot's data files) for the folder, as much again for the archive. Populations are
/// CSV and Parquet of views over those tables, mostly scoped to the period, so the folder
/// rarely exceeds them (measured over nine months of history: 0.9× at 100k audit events,
/// 0.81× at 1M; without `_raw` the tables would be 0.68× the folder at 1M, too little).
/// On a lake of many years the estimate grows with the lake, not the quarter.
async fn estimate_bytes(lake: &Lake, archive: bool) -> Result<u64> {
    let mut tables = 0u64;
    for name in crate::query::table_names() {
        if lake.version(&name).await?.is_none() {
            continue;
        }
        let table = lake.open(&name).await?;
        if let Ok(snapshot) = table.snapshot() {
            tables += snapshot
                .log_data()
                .iter()
                .map(|f| f.size().max(0) as u64)
                .sum::<u64>();
        }
    }
    Ok(if archive { tables * 2 } else { tables })
}

/// Free bytes on the file system of `folder` (`None` where that cannot be told).
fn free_bytes(folder: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::fs::statvfs(folder)
            .ok()
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = folder;
        None
    }
}

/// Refuses to start a pack that would not fit: `needed` bytes (the estimate, the archive
/// included when `archive`) against `free` bytes in `folder`.
fn ensure_room(folder: &Path, needed: u64, free: Option<u64>, archive: bool) -> Result<()> {
    let (estimate, fix) = if archive {
        (
            "the archive included",
            ", or leave out --archive to write the folder only",
        )
    } else {
        ("the folder alone", "")
    };
    match free {
        Some(free) if free < needed => Err(Error::Invalid(format!(
            "Not enough free disk for the pack in `{}`: about {needed} bytes needed (an estimate from the lake's table sizes, {estimate}), {free} free. Free some space or give --out on a larger disk{fix}",
            folder.display()
        ))),
        _ => Ok(()),
    }
}

/// Writes the pack into the partial folder, then renames it to `out`.
async fn write_pack(
    lake: &Lake,
    settings: &PackSettings,
    out: &Path,
    partial: &mut Payload,
) -> Result<PackSummary> {
    let period = &settings.period;
    let versions = pin_versions(lake, &settings.as_of).await?;
    let ctx = crate::query::session_for_whole_results(
        lake,
        &AsOf::Versions(versions.clone()),
        settings.memory,
    )
    .await?;
    let registered = crate::query::views::register(&ctx, &settings.queries).await?;
    let templates = Templates::load(settings.templates.as_deref())?;
    let as_of = period.end_inclusive_text();

    let started = std::time::Instant::now();
    // Removed when the queries are done, or when this function returns early.
    let shared = compute_shared_views(&ctx, settings, &registered, partial).await?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "Shared views computed"
    );
    let populations = write_populations(&ctx, settings, &registered, &as_of, partial).await?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "Populations written"
    );
    let from_populations = register_populations(&ctx, &populations, partial).await?;
    let package_rows = write_packages(
        &ctx,
        settings,
        &templates,
        &versions,
        &from_populations,
        partial,
    )
    .await?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "Package reports written"
    );

    // Index: the story an examiner reads first.
    let (sod, findings, coverage) = index_views(&ctx, settings, &from_populations).await?;
    let samples = write_samples(&ctx, settings, &registered, partial).await?;
    let gaps = coverage_gaps(&ctx, period).await?;
    let reconciliation = reconciliation(&ctx).await?;
    // The last query has run: the scratch files go before the bag (and the archive) is
    // written.
    drop(shared);
    partial.write(
        "data/coverage-gaps.csv",
        super::csv::table_to_csv(&gaps).as_bytes(),
    )?;
    partial.write(
        "data/reconciliation.csv",
        super::csv::table_to_csv(&reconciliation).as_bytes(),
    )?;
    let index = Index {
        sod: &sod,
        findings: &findings,
        coverage: &coverage,
        gaps: &gaps,
        reconciliation: &reconciliation,
        package_rows: &package_rows,
        populations: &populations,
        samples: &samples,
    };
    let signed_by = settings.key.as_ref().map(|k| k.public().id_text());
    let provenance = Provenance::new(&versions)?;
    let html = templates.render(
        "index.html",
        &index.context(period, &as_of, &provenance, signed_by.as_deref()),
    )?;
    partial.write("data/index.html", html.as_bytes())?;
    write_provenance(partial, period, &as_of, &provenance, &index)?;

    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "Index written");
    let bag = write_bag(partial, settings, &as_of)?;
    let archive = move_into_place(&partial.root, out, settings)?;
    Ok(PackSummary {
        index: out.join("data/index.html"),
        dir: out.to_path_buf(),
        archive,
        files: bag.files,
        bytes: bag.bytes,
        packages: package_rows.len(),
        sod_violations: sod.rows.len(),
        signed_by,
        versions,
        pack_id: bag.pack_id,
    })
}

/// Computes once the views the pack's queries read more than once, in a scratch folder
/// beside the partial pack (see [`super::shared_views`]).
async fn compute_shared_views(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &PackSettings,
    registered: &[String],
    partial: &Payload,
) -> Result<super::shared_views::SharedViews> {
    super::shared_views::compute_once(
        ctx,
        &settings.queries,
        registered,
        &package::sections_beside_populations(&settings.queries)?,
        partial
            .root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
    .await
}

/// The rows the index shows: SoD violations, policy findings and the recertification
/// coverage of the period.
async fn index_views(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &PackSettings,
    populations: &package::Populations,
) -> Result<(Table, Table, Table)> {
    let queries = &settings.queries;
    let sod = view(ctx, queries, populations, "sod_violations", false).await?;
    let findings = view(ctx, queries, populations, "policy_findings", false).await?;
    // `in_period` applies recertification_coverage's period rule.
    let coverage = in_period(
        &view(ctx, queries, populations, "recertification_coverage", true).await?,
        &settings.period,
    );
    Ok((sod, findings, coverage))
}

/// A view with a time dimension, whose population in a pack is scoped to the period: the
/// rows `filter` keeps (`$from` and `$to` are the period's bounds; the package reports'
/// sections use the same rules).
pub struct Scope {
    /// The view.
    pub view: &'static str,
    /// The columns the rule reads (a `--queries` view without them is written whole).
    pub columns: &'static [&'static str],
    /// The rule, for people (README of the populations, provenance).
    pub rule: &'static str,
    /// The rule, as SQL over the view's rows.
    pub filter: &'static str,
}

/// The populations scoped to the period. The others are written whole: they are small
/// (one row per package, policy or current finding) or already bound to the period
/// (`access_as_of` at its end, `review_completeness` over it).
pub const SCOPES: &[Scope] = &[
    Scope {
        view: "approval_trail",
        columns: &["created_date_time"],
        rule: "every step of the requests created in the period: created_date_time >= from and < to",
        filter: "created_date_time >= CAST($from AS TIMESTAMP) AND created_date_time < CAST($to AS TIMESTAMP)",
    },
    Scope {
        view: "direct_admin_grants",
        columns: &["created_date_time"],
        rule: "grants created in the period: created_date_time >= from and < to",
        filter: "created_date_time >= CAST($from AS TIMESTAMP) AND created_date_time < CAST($to AS TIMESTAMP)",
    },
    Scope {
        view: "control_changes",
        columns: &["changed_at", "weaker", "weaker_until"],
        rule: "changes made in the period (changed_at >= from and < to), and earlier changes to a weaker setting still in force during it (weaker, and weaker_until empty or after from)",
        filter: "changed_at < CAST($to AS TIMESTAMP) AND (changed_at >= CAST($from AS TIMESTAMP) OR (weaker AND (weaker_until IS NULL OR weaker_until > CAST($from AS TIMESTAMP))))",
    },
    Scope {
        view: "assignment_holdings",
        columns: &["held_from", "held_to"],
        rule: "holdings that overlap the period: held_from < to, and held_to empty (still held) or >= from",
        filter: "held_from < CAST($to AS TIMESTAMP) AND (held_to IS NULL OR held_to >= CAST($from AS TIMESTAMP))",
    },
    Scope {
        view: "sod_history",
        columns: &["both_from", "both_to"],
        rule: "stretches of both packages held that overlap the period: both_from < to, and both_to empty (still held) or >= from",
        filter: "both_from < CAST($to AS TIMESTAMP) AND (both_to IS NULL OR both_to >= CAST($from AS TIMESTAMP))",
    },
    Scope {
        view: "recertification_coverage",
        columns: &["start_date_time", "end_date_time", "never_reviewed"],
        rule: "review instances that overlap the period (start_date_time < to and end_date_time >= from), and packages never reviewed",
        filter: "never_reviewed OR (start_date_time < CAST($to AS TIMESTAMP) AND end_date_time >= CAST($from AS TIMESTAMP))",
    },
    Scope {
        view: "remediation_timeliness",
        columns: &["review_start", "review_closed"],
        rule: "decisions of reviews that overlap the period: review_start < to and review_closed >= from",
        filter: "review_start < CAST($to AS TIMESTAMP) AND review_closed >= CAST($from AS TIMESTAMP)",
    },
];

/// How a population was chosen: the query run, its bound parameters, and the period rule
/// when it is scoped.
struct PopulationQuery {
    sql: String,
    parameters: Vec<(String, String)>,
    scope: Option<&'static Scope>,
}

/// The population query of `q`: a view scoped to the period when it has a rule and the
/// columns it reads, else the whole view; a query with parameters bound to the period.
/// `None` when it takes a parameter the period does not give, or is not registered.
async fn population_query(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    q: &QueryFile,
    registered: &[String],
    period: &Period,
    as_of: &str,
) -> Result<Option<PopulationQuery>> {
    let parameters: Vec<(String, String)> = q
        .parameters()
        .iter()
        .map(|p| {
            (
                p.clone(),
                match p.as_str() {
                    "as_of" => as_of.to_string(),
                    "from" => period.from_text.clone(),
                    "to" => period.to_text.clone(),
                    _ => String::new(),
                },
            )
        })
        .collect();
    if parameters.iter().any(|(_, v)| v.is_empty())
        || (parameters.is_empty() && !registered.contains(&q.name))
    {
        return Ok(None);
    }
    let scope = match SCOPES.iter().find(|s| s.view == q.name) {
        Some(scope) if parameters.is_empty() => {
            let columns = ctx
                .table(q.name.as_str())
                .await
                .map_err(|source| Error::Query {
                    what: q.name.clone(),
                    source: Box::new(source),
                })?
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>();
            scope
                .columns
                .iter()
                .all(|c| columns.iter().any(|x| x == c))
                .then_some(scope)
        }
        _ => None,
    };
    Ok(Some(match scope {
        Some(scope) => PopulationQuery {
            sql: format!("SELECT * FROM \"{}\" WHERE {}", q.name, scope.filter),
            parameters: vec![
                ("from".into(), period.from_text.clone()),
                ("to".into(), period.to_text.clone()),
            ],
            scope: Some(scope),
        },
        // A parameterless query is registered under its name (as a view, or as the file a
        // view computed once was written to).
        None if parameters.is_empty() => PopulationQuery {
            sql: format!("SELECT * FROM \"{}\"", q.name),
            parameters,
            scope: None,
        },
        None => PopulationQuery {
            sql: q.sql.clone(),
            parameters,
            scope: None,
        },
    }))
}

/// Writes the SQL behind every figure and the populations, each streamed batch by batch
/// into its CSV and Parquet files: every view (scoped to the period where [`SCOPES`] has a
/// rule), and each parameterised query the period binds (`access_as_of` at the period's
/// end).
async fn write_populations(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &PackSettings,
    registered: &[String],
    as_of: &str,
    partial: &mut Payload,
) -> Result<Vec<Population>> {
    let period = &settings.period;
    for q in &settings.queries {
        partial.write(&format!("data/queries/{}.sql", q.name), q.sql.as_bytes())?;
    }
    let mut populations = Vec::new();
    for q in &settings.queries {
        let Some(query) = population_query(ctx, q, registered, period, as_of).await? else {
            continue;
        };
        let bound: Vec<(&str, &str)> = query
            .parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (csv, parquet) = (
            format!("data/populations/{}.csv", q.name),
            format!("data/populations/{}.parquet", q.name),
        );
        let started = std::time::Instant::now();
        let written = super::table::stream_to_files(
            ctx,
            &q.name,
            &query.sql,
            &bound,
            &partial.path(&csv)?,
            &partial.path(&parquet)?,
        )
        .await?;
        tracing::debug!(
            population = q.name,
            rows = written.rows,
            seconds = started.elapsed().as_secs_f64(),
            "Population written"
        );
        partial.digests.insert(csv, written.csv);
        partial.digests.insert(parquet, written.parquet);
        populations.push(Population {
            name: q.name.clone(),
            description: q.description(),
            rows: written.rows,
            sha256: package::sha256_hex(&q.sql),
            parameters: query.parameters,
            scope: query.scope.map(|s| s.rule.to_string()),
            scope_sql: query.scope.map(|_| query.sql.clone()),
        });
    }
    partial.write(
        "data/queries/parameters.json",
        serde_json::to_string_pretty(
            &populations
                .iter()
                .map(|p| (p.name.clone(), p.parameters.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
        .unwrap_or_default()
        .as_bytes(),
    )?;
    partial.write(
        "data/populations/README.md",
        populations_readme(period, &populations).as_bytes(),
    )?;
    Ok(populations)
}

/// `data/populations/README.md`: which populations are scoped to the period and by which
/// rule, so an examiner can recompute each from the view.
fn populations_readme(period: &Period, populations: &[Population]) -> String {
    let mut text = format!(
        "# Populations, {}\n\nEach file holds the rows of one governance view (its SQL is in `../queries/`), ordered by every column, as CSV (formula cells neutralised with a leading `'`) and Parquet.\n\nViews with a time dimension are scoped to the period, from {} (inclusive) to {} (exclusive): the file holds the view's rows the rule keeps, and `SELECT * FROM <view> WHERE <rule>` with `$from` and `$to` bound to those bounds recomputes it. The other views are whole.\n\n| population | rows | scope |\n|---|---|---|\n",
        period.label, period.from_text, period.to_text
    );
    for p in populations {
        let scope = match (&p.scope, &p.scope_sql) {
            (Some(rule), Some(sql)) => format!("{rule} (`{sql}`)"),
            _ if p.parameters.is_empty() => "whole view".to_string(),
            _ => format!(
                "query bound to {}",
                p.parameters
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        text.push_str(&format!(
            "| {} | {} | {} |\n",
            p.name,
            p.rows,
            scope.replace('|', "\\|")
        ));
    }
    text
}

/// Writes each access package's report (HTML and Markdown); the rows the index lists.
async fn write_packages(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &PackSettings,
    templates: &Templates,
    versions: &BTreeMap<String, i64>,
    populations: &package::Populations,
    partial: &mut Payload,
) -> Result<Vec<serde_json::Value>> {
    let period = &settings.period;
    // Each section runs once over all packages.
    let mut package_rows = Vec::new();
    let mut rendering = std::time::Duration::ZERO;
    package::build_all(ctx, &settings.queries, period, populations, |report| {
        let started = std::time::Instant::now();
        let context = package_context(&report, period, versions, "../index.html")?;
        for (template, extension) in [("package.html", "html"), ("package.md", "md")] {
            partial.write_with(
                &format!("data/packages/{}.{extension}", report.file_stem),
                |file| templates.render_to(template, context.clone(), file),
            )?;
        }
        rendering += started.elapsed();
        let count = |k: &str| report.section(k).map_or(0, |s| s.table.len());
        package_rows.push(serde_json::json!({
            "id": report.id, "name": report.name, "file_stem": report.file_stem,
            "holders": count("holders"), "sod": count("sod"), "findings": count("findings"),
        }));
        Ok(())
    })
    .await?;
    tracing::debug!(
        seconds = rendering.as_secs_f64(),
        packages = package_rows.len(),
        "Package reports rendered and written"
    );
    // The index lists the packages by name (then id), as `package::packages` orders them.
    package_rows.sort_by(|a, b| {
        (a["name"].as_str(), a["id"].as_str()).cmp(&(b["name"].as_str(), b["id"].as_str()))
    });
    Ok(package_rows)
}

/// The review instances of `recertification_coverage` that overlap the period, and the
/// packages never reviewed.
fn in_period(coverage_all: &Table, period: &Period) -> Table {
    Table {
        columns: coverage_all.columns.clone(),
        rows: coverage_all
            .rows
            .iter()
            .filter(|r| {
                let (s, e) = (
                    coverage_all.cell(r, "start_date_time"),
                    coverage_all.cell(r, "end_date_time"),
                );
                // Review instances overlapping the period, and packages never reviewed.
                coverage_all.cell(r, "never_reviewed") == "true"
                    || (crate::time::parse_ts(s).is_some_and(|s| s < period.to)
                        && crate::time::parse_ts(e).is_some_and(|e| e >= period.from))
            })
            .cloned()
            .collect(),
    }
}

/// Draws the `--sample`s from the populations and writes each to `data/samples/`.
async fn write_samples(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    settings: &PackSettings,
    registered: &[String],
    partial: &mut Payload,
) -> Result<Vec<SampleRecord>> {
    let mut samples = Vec::new();
    for (name, size, seed) in &settings.samples {
        if !registered.contains(name) {
            return Err(Error::Invalid(format!(
                "`--sample {name}:…`: `{name}` is not a view"
            )));
        }
        // Drawn from the population the pack holds (scoped like it), so anyone can redraw
        // the sample from the population file.
        let q = settings.queries.iter().find(|q| &q.name == name);
        let population = match q {
            Some(q) => match population_query(ctx, q, registered, &settings.period, "").await? {
                Some(p) => {
                    let bound: Vec<(&str, &str)> = p
                        .parameters
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    super::table::query(ctx, name, &p.sql, &bound).await?
                }
                None => Table::default(),
            },
            None => Table::default(),
        };
        let drawn = super::sample::draw(&population, *size, *seed);
        let file = format!("samples/{name}-n{size}-seed{seed}.csv");
        partial.write(
            &format!("data/{file}"),
            super::csv::table_to_csv(&drawn).as_bytes(),
        )?;
        samples.push(SampleRecord {
            view: name.clone(),
            size: drawn.rows.len(),
            seed: *seed,
            population: population.rows.len(),
            file,
        });
    }
    Ok(samples)
}

/// What the index and the provenance show.
struct Index<'a> {
    sod: &'a Table,
    findings: &'a Table,
    coverage: &'a Table,
    gaps: &'a Table,
    reconciliation: &'a Table,
    package_rows: &'a [serde_json::Value],
    populations: &'a [Population],
    samples: &'a [SampleRecord],
}

impl Index<'_> {
    /// The headline figures, in the order the index shows them.
    fn summary(&self) -> Vec<(String, String)> {
        let Index {
            sod,
            findings,
            coverage,
            gaps,
            reconciliation,
            package_rows,
            ..
        } = self;
        let holders: usize = package_rows
            .iter()
            .map(|p| p["holders"].as_u64().unwrap_or(0) as usize)
            .sum();
        let severity = |s: &str| {
            findings
                .rows
                .iter()
                .filter(|r| findings.cell(r, "severity") == s)
                .count()
        };
        vec![
            (
                "Access packages".to_string(),
                package_rows.len().to_string(),
            ),
            ("Assignments held at period end".into(), holders.to_string()),
            (
                "Separation-of-duties violations".into(),
                sod.rows.len().to_string(),
            ),
            (
                "Policy findings (high / medium / low)".into(),
                format!(
                    "{} / {} / {}",
                    severity("high"),
                    severity("medium"),
                    severity("low")
                ),
            ),
            (
                "Review instances in the period".into(),
                coverage.rows.len().to_string(),
            ),
            ("Coverage gaps".into(), gaps.rows.len().to_string()),
            (
                "Tables reconciling".into(),
                format!(
                    "{} of {}",
                    reconciliation
                        .rows
                        .iter()
                        .filter(|r| reconciliation.cell(r, "reconciles") == "true")
                        .count(),
                    reconciliation.rows.len()
                ),
            ),
        ]
    }

    /// The context of `index.html`.
    fn context(
        &self,
        period: &Period,
        as_of: &str,
        provenance: &Provenance,
        signed_by: Option<&str>,
    ) -> minijinja::Value {
        let Index {
            sod,
            findings,
            coverage,
            gaps,
            reconciliation,
            package_rows,
            populations,
            samples,
        } = self;
        let summary = self.summary();
        let coverage_items: Vec<(String, f64)> = coverage
            .rows
            .iter()
            .map(|r| {
                (
                    coverage.cell(r, "access_package_name").to_string(),
                    coverage.cell(r, "coverage").parse().unwrap_or(0.0),
                )
            })
            .collect();
        let chart = if coverage_items.is_empty() {
            minijinja::Value::from("")
        } else {
            safe(super::chart::bars(
                "Coverage per review instance",
                &coverage_items,
                Some(1.0),
                |v| format!("{:.1} %", v * 100.0),
            ))
        };
        minijinja::context! {
            period => serde_value(period),
            as_of => as_of,
            provenance => serde_value(provenance),
            summary => serde_value(summary),
            // Names for people; the ids are in the population files.
            sod => serde_value(&sod.select(&[
                "user_principal_name", "access_package_name", "incompatible_access_package_name",
                "both_held_since", "incompatibility_declared_at", "grandfathered",
            ])),
            findings => serde_value(&findings.select(&[
                "severity", "rule", "access_package_name", "policy_name", "detail",
            ])),
            coverage => serde_value(&coverage.select(&[
                "access_package_name", "quarter", "start_date_time", "end_date_time", "in_scope",
                "reviewed", "dont_know", "not_reviewed", "not_in_review", "coverage", "approved",
                "denied", "removal_due", "remediated", "failed_remediation", "never_reviewed",
            ])),
            gaps => serde_value(gaps),
            reconciliation => serde_value(reconciliation),
            packages => serde_value(package_rows),
            populations => serde_value(populations),
            samples => serde_value(samples),
            signed_by => signed_by.unwrap_or_default(),
            charts => minijinja::context! { coverage => chart },
        }
    }
}

/// Writes `data/provenance.json`: the pinned versions and the command that rebuilds the pack.
fn write_provenance(
    partial: &mut Payload,
    period: &Period,
    as_of: &str,
    provenance: &Provenance,
    index: &Index<'_>,
) -> Result<()> {
    let (populations, samples, package_rows) =
        (index.populations, index.samples, index.package_rows);
    let versions: BTreeMap<&str, i64> = provenance
        .versions
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    // The same DATAFUSION_* variables, before the command.
    let environment: String = provenance
        .engine_settings
        .iter()
        .map(|(k, v)| format!("{}={} ", k.replace('.', "_").to_ascii_uppercase(), v))
        .collect();
    let provenance_doc = serde_json::json!({
        "govlake_version": provenance.govlake_version,
        "period": period,
        "as_of": as_of,
        "table_versions": versions,
        "engine_settings": provenance.engine_settings.iter().cloned().collect::<BTreeMap<_, _>>(),
        // What govlake sets in place of DataFusion's defaults (the same for this version
        // of govlake; the environment's settings above still win).
        "engine_defaults": crate::query::GOVLAKE_DEFAULTS.iter().copied().collect::<BTreeMap<_, _>>(),
        "regenerate": format!(
            "{environment}govlake pack --period {} --as-of {}{} --out DIR",
            period.label,
            versions.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            samples.iter().map(|s| format!(" --sample {}:{}:{}", s.view, s.size, s.seed)).collect::<String>()
        ),
        "populations": populations,
        "samples": samples,
        "packages": package_rows,
    });
    partial.write(
        "data/provenance.json",
        serde_json::to_string_pretty(&provenance_doc)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// What the bag's manifests hold.
struct Bag {
    /// Payload files.
    files: usize,
    /// Payload bytes.
    bytes: u64,
    /// SHA-256 of the tag manifest.
    pack_id: String,
}

/// Makes the folder a BagIt bag: the payload's manifest, bag-info, the tag manifest and,
/// with a key, the signer and the signature.
fn write_bag(partial: &mut Payload, settings: &PackSettings, as_of: &str) -> Result<Bag> {
    let period = &settings.period;
    let mut manifest = String::new();
    let (mut files, mut bytes) = (0usize, 0u64);
    for rel in files_under(&partial.root, "data")? {
        let digest = partial.digest(&rel)?;
        manifest.push_str(&format!("{}  {rel}\n", digest.sha256));
        files += 1;
        bytes += digest.bytes;
    }
    partial.write(MANIFEST, manifest.as_bytes())?;
    partial.write(
        BAGIT,
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
    )?;
    let bag_info = format!(
        "Source-Organization: govlake evidence pack\nBagging-Date: {}\nExternal-Description: Entra ID Governance (Entitlement Management) evidence for {}\nExternal-Identifier: govlake-pack-{}\nPayload-Oxum: {bytes}.{files}\nGovlake-Version: {}\nGovlake-As-Of: {as_of}\n",
        &as_of[..10.min(as_of.len())],
        period.label,
        period.label,
        env!("CARGO_PKG_VERSION"),
    );
    partial.write(BAG_INFO, bag_info.as_bytes())?;
    let mut tag_files = vec![BAGIT, BAG_INFO, MANIFEST];
    if let Some(key) = &settings.key {
        partial.write(SIGNER, key.public().to_file_text().as_bytes())?;
        tag_files.push(SIGNER);
    }
    tag_files.sort_unstable();
    let mut tag_manifest = String::new();
    for name in &tag_files {
        tag_manifest.push_str(&format!("{}  {name}\n", partial.digest(name)?.sha256));
    }
    partial.write(TAG_MANIFEST, tag_manifest.as_bytes())?;
    let pack_id = hex::encode(sha2::Sha256::digest(tag_manifest.as_bytes()));
    if let Some(key) = &settings.key {
        let signature = key.sign(
            tag_manifest.as_bytes(),
            &format!("govlake evidence pack {} as of {as_of}", period.label),
        );
        partial.write(SIGNATURE, signature.as_bytes())?;
    }
    Ok(Bag {
        files,
        bytes,
        pack_id,
    })
}

/// Renames the finished pack to `out`, then writes its archive when asked (the archive's
/// path).
fn move_into_place(partial: &Path, out: &Path, settings: &PackSettings) -> Result<Option<PathBuf>> {
    let period = &settings.period;
    if out.exists() {
        std::fs::remove_dir(out).map_err(io_err("replace", out))?;
    }
    std::fs::rename(partial, out).map_err(io_err("rename the finished pack to", out))?;
    Ok(if settings.archive {
        let path = PathBuf::from(format!("{}.tar", out.display()));
        // The pack is complete from here: an archive that fails leaves it in place.
        write_archive(
            out,
            &path,
            &format!("govlake-pack-{}", file_safe(&period.label)),
            period.to / 1_000_000,
        )?;
        Some(path)
    } else {
        None
    })
}

/// A period label as a file name part (`2026Q3`; explicit ranges lose `:`).
fn file_safe(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect()
}

/// A deterministic tar of the pack: sorted entries under `prefix/` (not the folder's own
/// name, so a pack regenerated elsewhere archives identically), owner 0, mode 0644,
/// modification time the period's end. Each file is copied into the archive as a stream, so
/// memory stays flat however large the populations are.
pub fn write_archive(dir: &Path, path: &Path, prefix: &str, mtime: i64) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io_err("create", path))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut entries = files_under(dir, "")?;
    entries.sort();
    for rel in entries {
        let source = dir.join(&rel);
        let file = std::fs::File::open(&source).map_err(io_err("read", &source))?;
        let size = file.metadata().map_err(io_err("read", &source))?.len();
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime.max(0) as u64);
        header.set_entry_type(tar::EntryType::Regular);
        // `take`: a file that grew since its size was read cannot overrun its entry.
        tar.append_data(
            &mut header,
            format!("{prefix}/{rel}"),
            std::io::Read::take(std::io::BufReader::new(file), size),
        )
        .map_err(io_err("write", path))?;
    }
    tar.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(io_err("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_that_would_not_fit_is_refused_naming_the_folder_and_the_bytes() {
        let folder = Path::new("/evidence/2026Q3");
        let err = ensure_room(folder, 5_000, Some(4_999), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`/evidence/2026Q3`"), "{err}");
        assert!(err.contains("5000 bytes needed"), "{err}");
        assert!(err.contains("4999 free"), "{err}");
        assert!(err.contains("the archive included"), "{err}");
        assert!(err.contains("leave out --archive"), "{err}");
        // Without the archive there is no archive to leave out.
        let err = ensure_room(folder, 5_000, Some(4_999), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the folder alone"), "{err}");
        assert!(!err.contains("--archive"), "{err}");
        assert!(ensure_room(folder, 5_000, Some(5_000), true).is_ok());
        // Where free space cannot be told, the pack is attempted.
        assert!(ensure_room(folder, 5_000, None, true).is_ok());
    }

    #[test]
    fn free_space_is_read_from_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        if cfg!(unix) {
            assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        }
    }
}
