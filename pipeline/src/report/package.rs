//! One access package's auditor report: the sections an examiner reads, each one SQL query
//! over the lake and the governance views, bound to `$package`, `$from`, `$to` and `$as_of`
//! (never pasted into the SQL). Each section keeps its SQL and row count for provenance.

use deltalake::datafusion::prelude::SessionContext;
use sha2::Digest as _;

use deltalake::arrow::array::{Array as _, AsArray as _, RecordBatch};

use super::table::TextRows;
use super::{Period, Result};
use crate::query::views::QueryFile;

/// A report section: its title, what it shows, and the query behind it.
#[derive(Debug, Clone)]
pub struct Section {
    /// Short key (`holders`), also the CSV file name.
    pub key: &'static str,
    /// Heading.
    pub title: &'static str,
    /// What the section shows and how to read it.
    pub about: &'static str,
    /// The SQL that produced it.
    pub sql: String,
    /// SHA-256 of the SQL.
    pub sql_sha256: String,
    /// The rows.
    pub table: TextRows,
}

/// The package report's data.
#[derive(Debug, Clone)]
pub struct PackageReport {
    /// Package id.
    pub id: String,
    /// Display name (hostile: rendered escaped only).
    pub name: String,
    /// File stem inside a pack: slug of the name + short hash of the id.
    pub file_stem: String,
    /// Parameters bound to every section.
    pub parameters: Vec<(String, String)>,
    /// Sections, in reading order.
    pub sections: Vec<Section>,
}

impl PackageReport {
    /// A section by key.
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.key == key)
    }
}

/// The sections of a package report: (key, title, about, SQL). Each SQL covers every package
/// at once, naming the package a row belongs to in its first column `_package` (a row may
/// belong to two, as an SoD pair does), so a pack runs each section once however many
/// packages there are. `{access_as_of}` and `{review_completeness}` are replaced by the text of
/// those query files (they take parameters, so they are not views).
const SECTIONS: &[(&str, &str, &str, &str)] = &[
    ("package", "Package", "The package and its catalog.", "
SELECT p.id AS _package, p.display_name AS access_package, p.description, p.is_hidden,
       c.display_name AS catalog, c.is_externally_visible AS catalog_externally_visible
FROM access_packages p LEFT JOIN catalogs c ON c.id = p.catalog_id"),
    ("resources", "Resources and roles", "What holding the package grants.", "
SELECT access_package_id AS _package, resource_display_name AS resource,
       resource_origin_system AS origin, role_display_name AS role, scope_display_name AS scope
FROM access_package_resource_role_scopes"),
    ("policies", "Assignment policies", "Who may request, approval, expiry and recertification settings.", "
SELECT access_package_id AS _package, display_name AS policy, allowed_target_scope,
       request_approval_settings_is_approval_required_for_add AS approval_required,
       request_approval_settings_is_requestor_justification_required AS justification_required,
       expiration_type, expiration_duration,
       review_settings_is_enabled AS reviews, review_settings_expiration_behavior AS review_timeout,
       review_settings_primary_reviewer_types AS reviewers
FROM assignment_policies"),
    ("stages", "Approval stages", "Each policy's approval stages, timeouts and escalation.", "
SELECT p.access_package_id AS _package, p.display_name AS policy, s.stage_number AS stage,
       s.duration_before_automatic_denial AS auto_deny_after,
       s.is_escalation_enabled AS escalation, s.duration_before_escalation AS escalate_after,
       s.is_approver_justification_required AS approver_justification_required,
       s.primary_approver_types AS approvers
FROM policy_approval_stages s JOIN assignment_policies p ON p.id = s.policy_id"),
    ("incompatible", "Incompatible packages", "Separation-of-duties declarations, either side.", "
SELECT access_package_id AS _package, incompatible_access_package_display_name AS incompatible_with,
       'declared here' AS declared
FROM incompatible_access_packages
UNION ALL
SELECT i.incompatible_access_package_id, p.display_name, 'declared by the other package'
FROM incompatible_access_packages i JOIN access_packages p ON p.id = i.access_package_id"),
    ("holders", "Holders at period end", "Everyone who held the package at the period's last second; how that assignment was granted (approved, auto-approved or an administrator's direct grant), by whom and why, from its request's audit trail; and the latest recertification decision.", "
WITH grants AS (
    SELECT r.assignment_id,
           CASE WHEN t.admin_direct_grant THEN 'admin direct grant' ELSE t.step END AS how_granted,
           t.actor, t.step_justification, t.step_time,
           row_number() OVER (PARTITION BY r.assignment_id
                              ORDER BY t.step_time DESC, t.actor, t.step_justification) AS n
    FROM approval_trail t
    JOIN assignment_requests r ON r.id = t.request_id
    WHERE r.assignment_id IS NOT NULL
      AND (t.step IN ('approved', 'auto-approved') OR (t.admin_direct_grant AND t.step = 'submitted'))
      AND t.step_time <= CAST($as_of AS TIMESTAMP)
),
reviews AS (
    SELECT access_package_id, principal_id, decision, reviewed_by_user_principal_name, reviewed_date_time,
           row_number() OVER (PARTITION BY access_package_id, principal_id
                              ORDER BY reviewed_date_time DESC, id) AS n
    FROM access_review_decisions
    WHERE reviewed_date_time <= CAST($as_of AS TIMESTAMP)
)
SELECT h.access_package_id AS _package, h.user_principal_name, h.state,
       h.schedule_start_date_time AS since, h.schedule_expiration_end_date_time AS expires,
       g.how_granted, g.actor AS granted_by, g.step_justification AS grant_justification,
       r.decision AS last_review, r.reviewed_by_user_principal_name AS reviewed_by,
       r.reviewed_date_time AS reviewed_at
FROM ({access_as_of}) h
LEFT JOIN grants g ON g.assignment_id = h.assignment_id AND g.n = 1
LEFT JOIN reviews r ON r.access_package_id = h.access_package_id
    AND r.principal_id = h.user_object_id AND r.n = 1"),
    ("trend", "Holders over time", "Holders at the period's start, at the start of each of its months and at its end.", "
SELECT h.access_package_id AS _package, CAST($as_of AS VARCHAR) AS as_of, count(*) AS holders
FROM ({access_as_of}) h
GROUP BY h.access_package_id"),
    ("trail", "Approval trail in the period", "Every step of every request created in the period (flags: self-approved, admin direct grant, approval missing).", "
SELECT access_package_id AS _package, created_date_time AS created, request_id, request_type,
       requestor_principal_name AS requestor, requestor_justification, step, stage, actor,
       step_time, step_justification, external_correlation_id AS ticket, self_approved,
       admin_direct_grant, approval_missing
FROM approval_trail
WHERE created_date_time >= CAST($from AS TIMESTAMP) AND created_date_time < CAST($to AS TIMESTAMP)"),
    ("coverage", "Recertification coverage", "Access review instances of the package that overlap the period, measured against the people who held the package when each instance started (a package no review covers has one row, never reviewed). Don't know is counted apart from reviewed; a removal Graph reported as applied while the access is still held is a failed remediation.", "
SELECT access_package_id AS _package, quarter, start_date_time AS review_start,
       end_date_time AS review_end, in_scope, reviewed, dont_know, not_reviewed, not_in_review,
       coverage, approved, denied, removal_due, remediated, denied_still_delivered,
       timeout_still_delivered, failed_remediation, never_reviewed
FROM recertification_coverage
WHERE never_reviewed
   OR (start_date_time < CAST($to AS TIMESTAMP) AND end_date_time >= CAST($from AS TIMESTAMP))"),
    ("completeness", "Review completeness", "People who held the package at some time in the period and were in no review instance of it that overlapped the period (or the package was never reviewed).", "
SELECT c.access_package_id AS _package, c.user_principal_name, c.gap, c.held_from, c.held_to,
       c.instances_in_period, c.assignment_ids
FROM ({review_completeness}) c"),
    ("remediation", "Remediation timeliness", "Each Deny, and each timeout that removes access, of a review that overlapped the period: when the access actually ended, how, and how many days after the review closed; still-open removals are flagged.", "
SELECT access_package_id AS _package, principal_name, review_closed, decision, removal_reason,
       apply_result, status, access_ended_at, ended_by, days_after_close, still_open, days_open,
       failed_remediation
FROM remediation_timeliness
WHERE review_start < CAST($to AS TIMESTAMP) AND review_closed >= CAST($from AS TIMESTAMP)"),
    ("latency", "Approval latency", "Hours from request to completion, per quarter.", "
SELECT access_package_id AS _package, quarter, requests, median_hours, p90_hours, max_hours
FROM approval_latency"),
    ("sod", "Separation of duties", "Users who hold this package and an incompatible one now.", "
SELECT access_package_id AS _package, user_principal_name, access_package_name,
       incompatible_access_package_name, both_held_since, incompatibility_declared_at, grandfathered
FROM sod_violations
UNION ALL
SELECT incompatible_access_package_id, user_principal_name, access_package_name,
       incompatible_access_package_name, both_held_since, incompatibility_declared_at, grandfathered
FROM sod_violations"),
    ("expiration", "Expiration compliance", "Assignments past their end, without expiry, or guests past 90 days.", "
SELECT access_package_id AS _package, finding, user_principal_name, assignment_id, scheduled_end, days_overdue
FROM expiration_compliance"),
    ("findings", "Policy findings", "Settings an identity-governance expert would flag.", "
SELECT access_package_id AS _package, severity, rule, policy_name, detail
FROM policy_findings"),
    ("controls", "Control changes", "Changes to the package's approval, expiry, review and separation-of-duties settings made in the period, or weaker settings still in force during it: who changed what, from what to what, and the grants made while the weaker setting held.", "
SELECT access_package_id AS _package, changed_at, changed_by, changed_at_source, object_name,
       setting, subject_name, before_value, after_value, weaker, weaker_until,
       grants_while_weaker, grants
FROM control_changes
WHERE changed_at < CAST($to AS TIMESTAMP)
  AND (changed_at >= CAST($from AS TIMESTAMP)
       OR (weaker AND (weaker_until IS NULL OR weaker_until > CAST($from AS TIMESTAMP))))"),
];

/// The sections that read one view under the rule of its pack population (the same period
/// rule as [`super::pack::SCOPES`], or the whole view): (section key, view). In a pack they
/// read the population file instead of running the view again (see [`Populations`]).
/// `completeness` reads `review_completeness` bound to the period, as its population is.
const FROM_POPULATIONS: &[(&str, &str)] = &[
    ("trail", "approval_trail"),
    ("coverage", "recertification_coverage"),
    ("completeness", "review_completeness"),
    ("remediation", "remediation_timeliness"),
    ("latency", "approval_latency"),
    ("sod", "sod_violations"),
    ("expiration", "expiration_compliance"),
    ("findings", "policy_findings"),
    ("controls", "control_changes"),
];

/// The tables a pack registered over its population files, by view: a section of
/// [`FROM_POPULATIONS`] whose view is here reads that table instead of the view, and gets
/// the same rows (a population is the view, whole or under the period rule the section
/// applies too, written before the reports), without running the view again. The SQL a
/// report shows is the section's own, over the view, for anyone to rerun on the lake.
#[derive(Debug, Default, Clone)]
pub struct Populations {
    /// The table of each view's population.
    pub tables: std::collections::BTreeMap<String, String>,
    /// The views whose population holds only the rows of the period rule.
    pub scoped: std::collections::BTreeSet<String>,
}

impl Populations {
    /// The SQL to run for section `key`: `sql` (what the report shows), reading the
    /// population table of its view where there is one.
    fn runnable(&self, key: &str, sql: &str, review_completeness: &str) -> String {
        let Some((_, view)) = FROM_POPULATIONS.iter().find(|(k, _)| *k == key) else {
            return sql.to_string();
        };
        let Some(table) = self.tables.get(*view) else {
            return sql.to_string();
        };
        if *view == "review_completeness" {
            return sql.replace(review_completeness, &format!("SELECT * FROM {table}"));
        }
        let from = regex::Regex::new(&format!(r"(?i)\bFROM\s+{}\b", regex::escape(view)))
            .expect("a view name makes a valid pattern");
        from.replace_all(sql, format!("FROM {table}").as_str())
            .into_owned()
    }
}

/// Every package in the lake: (id, display name), ordered by name then id.
pub async fn packages(ctx: &SessionContext) -> Result<Vec<(String, String)>> {
    let t = super::table::query(
        ctx,
        "packages",
        "SELECT id, display_name FROM access_packages",
        &[],
    )
    .await?;
    let mut out: Vec<(String, String)> = t
        .rows
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// Finds a package by id or exact display name (bound, never pasted).
pub async fn find(ctx: &SessionContext, needle: &str) -> Result<(String, String)> {
    let all = packages(ctx).await?;
    let hits: Vec<_> = all
        .iter()
        .filter(|(id, name)| id == needle || name == needle)
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(super::Error::Invalid(format!(
            "No access package has the id or name `{needle}` ({} in the lake; `govlake sql -c \"select id, display_name from access_packages\"` lists them)",
            all.len()
        ))),
        _ => Err(super::Error::Invalid(format!(
            "{} packages are named `{needle}`: give the id",
            hits.len()
        ))),
    }
}

/// A file stem that is safe on every file system: a lowercase ASCII slug of the name (at
/// most 40 characters) and 8 hex digits of the SHA-256 of the id, so names differing only by
/// case, confusables or traversal tricks never collide or escape their folder.
pub fn file_stem(id: &str, name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let hash = hex::encode(&sha2::Sha256::digest(id.as_bytes())[..4]);
    if slug.is_empty() {
        format!("package-{hash}")
    } else {
        format!("{slug}-{hash}")
    }
}

/// SHA-256 of a text, hex.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The times "holders over time" counts at: the period's start, the first instant of each
/// later month inside it, and its last second.
fn checkpoints(period: &Period) -> Vec<String> {
    use chrono::Datelike as _;
    let mut out = vec![period.from_text.clone()];
    let mut t = chrono::DateTime::from_timestamp_micros(period.from).unwrap_or_default();
    loop {
        let (y, m) = if t.month() == 12 {
            (t.year() + 1, 1)
        } else {
            (t.year(), t.month() + 1)
        };
        let Some(next) = chrono::NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
        else {
            break;
        };
        if next.timestamp_micros() >= period.to {
            break;
        }
        out.push(crate::time::fmt_ts(next.timestamp_micros()));
        t = next;
    }
    out.push(period.end_inclusive_text());
    out
}

/// The text of query file `name`, which sections embed (`{access_as_of}`).
fn embedded_query(queries: &[QueryFile], name: &str) -> Result<String> {
    queries
        .iter()
        .find(|q| q.name == name)
        .map(|q| q.sql.trim().trim_end_matches(';').to_string())
        .ok_or_else(|| super::Error::Invalid(format!("queries/{name}.sql is missing")))
}

/// The SQL of the sections that read no population (they read the lake and the views
/// themselves), the queries they embed written out: what a pack runs besides its
/// populations.
pub fn sections_beside_populations(queries: &[QueryFile]) -> Result<Vec<String>> {
    let access_as_of = embedded_query(queries, "access_as_of")?;
    let review_completeness = embedded_query(queries, "review_completeness")?;
    Ok(SECTIONS
        .iter()
        .filter(|(key, ..)| !FROM_POPULATIONS.iter().any(|(k, _)| k == key))
        .map(|(.., sql)| expand(sql, &access_as_of, &review_completeness))
        .collect())
}

/// A section's SQL with the query files it embeds written out.
fn expand(sql: &str, access_as_of: &str, review_completeness: &str) -> String {
    sql.trim()
        .replace("{access_as_of}", access_as_of)
        .replace("{review_completeness}", review_completeness)
}

/// Where a section's rows wait, in `_package` order, until the packages ask for them.
enum Waiting {
    /// Held in memory (one package's report, and a pack's `trend`, a few rows a package).
    Memory(std::collections::VecDeque<RecordBatch>),
    /// In an anonymous scratch file, an Arrow IPC stream read back a batch at a time (every
    /// package's report: a section of a 10M-event tenant is millions of rows, which held
    /// in memory until the last package was written made most of the pack's peak).
    File(deltalake::arrow::ipc::reader::StreamReader<std::io::BufReader<std::fs::File>>),
}

/// One section's SQL and its rows in `_package` order, handed out a package at a time as
/// the packages are assembled (so only one package's rows, and one batch, are held at a
/// time). The section's query has run to its end: its rows wait in memory or in a scratch
/// file (see [`Waiting`]), not as a running plan, so the sections do not hold every sort's
/// memory at once.
struct SectionRows {
    title: &'static str,
    sql: String,
    /// The section's columns, without `_package`.
    columns: Vec<String>,
    waiting: Waiting,
    /// The batch being handed out (its rows from `.2` on) and its `_package` column as text.
    front: Option<(RecordBatch, deltalake::arrow::array::StringArray, usize)>,
}

impl SectionRows {
    /// A section whose rows (from `stream`, `_package` first) wait in memory, or in an
    /// anonymous scratch file when `to_file`.
    async fn wait(
        title: &'static str,
        sql: String,
        columns: &[String],
        mut stream: deltalake::datafusion::physical_plan::SendableRecordBatchStream,
        to_file: bool,
    ) -> Result<Self> {
        use futures::TryStreamExt as _;
        let query_err = |source| super::Error::Query {
            what: title.to_string(),
            source: Box::new(source),
        };
        let arrow_err = |source| super::Error::Arrow {
            what: title.to_string(),
            source,
        };
        let scratch = std::env::temp_dir();
        let scratch_err =
            |e| super::io_err("write a scratch file of a report section in", &scratch)(e);
        let waiting = if to_file {
            let file = tempfile::tempfile().map_err(scratch_err)?;
            let options = deltalake::arrow::ipc::writer::IpcWriteOptions::default()
                .try_with_compression(Some(deltalake::arrow::ipc::CompressionType::ZSTD))
                .map_err(arrow_err)?;
            // A write that fails (a full disk) names the folder, not only the section.
            let write_err = |source| match source {
                deltalake::arrow::error::ArrowError::IoError(_, e) => scratch_err(e),
                other => arrow_err(other),
            };
            let schema = without_views(&stream.schema());
            let mut writer = deltalake::arrow::ipc::writer::StreamWriter::try_new_with_options(
                std::io::BufWriter::new(file),
                &schema,
                options,
            )
            .map_err(write_err)?;
            while let Some(batch) = stream.try_next().await.map_err(query_err)? {
                // A sorted batch's string views point into the buffers of every batch the
                // sort held: written as they are, each batch would carry all of them.
                let columns = batch
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(arrow_err)?;
                let batch = RecordBatch::try_new_with_options(
                    schema.clone(),
                    columns,
                    &deltalake::arrow::array::RecordBatchOptions::new()
                        .with_row_count(Some(batch.num_rows())),
                )
                .map_err(arrow_err)?;
                writer.write(&batch).map_err(write_err)?;
            }
            writer.finish().map_err(write_err)?;
            let mut file = writer
                .into_inner()
                .map_err(write_err)?
                .into_inner()
                .map_err(|e| scratch_err(e.into_error()))?;
            std::io::Seek::rewind(&mut file).map_err(super::io_err(
                "read a scratch file of a report section in",
                &scratch,
            ))?;
            Waiting::File(
                deltalake::arrow::ipc::reader::StreamReader::try_new_buffered(file, None)
                    .map_err(arrow_err)?,
            )
        } else {
            Waiting::Memory(super::table::collect(title, stream).await?.into())
        };
        Ok(Self {
            title,
            sql,
            columns: columns.get(1..).unwrap_or_default().to_vec(),
            waiting,
            front: None,
        })
    }

    /// The next batch that has rows, with its `_package` column as text.
    fn next_batch(
        &mut self,
    ) -> Result<Option<(RecordBatch, deltalake::arrow::array::StringArray, usize)>> {
        let arrow_err = |source| super::Error::Arrow {
            what: self.title.to_string(),
            source,
        };
        loop {
            let batch = match &mut self.waiting {
                Waiting::Memory(batches) => batches.pop_front(),
                Waiting::File(reader) => reader.next().transpose().map_err(arrow_err)?,
            };
            let Some(batch) = batch else {
                return Ok(None);
            };
            if batch.num_rows() == 0 || batch.num_columns() == 0 {
                continue;
            }
            let package = deltalake::arrow::compute::cast(
                batch.column(0),
                &deltalake::arrow::datatypes::DataType::Utf8,
            )
            .map_err(arrow_err)?
            .as_string::<i32>()
            .clone();
            return Ok(Some((batch, package, 0)));
        }
    }

    /// The rows of package `id` (packages must be asked for in ascending id order: rows of
    /// smaller ids that no package asked for, e.g. of a package no longer in the lake, are
    /// skipped; a NULL `_package` sorts last and is never handed out).
    fn take(&mut self, id: &str) -> Result<TextRows> {
        let mut rows = TextRows::new(self.columns.clone());
        loop {
            let (batch, package, from) = match self.front.take() {
                Some(front) => front,
                None => match self.next_batch()? {
                    Some(next) => next,
                    None => break,
                },
            };
            // Rows are in ascending `_package` order, NULLs last (the query wrapper says so;
            // a run of NULLs at the front is skipped all the same): those of `id` are one run.
            let n = batch.num_rows();
            let mut from = from;
            while from < n && package.is_null(from) {
                from += 1;
            }
            let before = |i: usize, inclusive: bool| {
                !package.is_null(i) && {
                    let p = package.value(i);
                    p < id || (inclusive && p == id)
                }
            };
            let start = partition_point(from, n, |i| before(i, false));
            let end = partition_point(start, n, |i| before(i, true));
            if end > start {
                let mine = batch.slice(start, end - start);
                mine.project(&(1..mine.num_columns()).collect::<Vec<_>>())
                    .and_then(|without_package| rows.push(&without_package))
                    .map_err(|source| super::Error::Arrow {
                        what: self.title.to_string(),
                        source,
                    })?;
            }
            if end < n {
                self.front = Some((batch, package, end));
                break;
            }
        }
        Ok(rows)
    }
}

/// `batches` (of one schema) as one stream, ordered as a query wrapped in `ORDER BY` every
/// column orders them (ascending, NULLs last).
fn sorted_by_every_column(
    what: &str,
    schema: deltalake::arrow::datatypes::SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<deltalake::datafusion::physical_plan::SendableRecordBatchStream> {
    use deltalake::arrow::compute::{SortColumn, SortOptions};
    let arrow_err = |source| super::Error::Arrow {
        what: what.to_string(),
        source,
    };
    let all = deltalake::arrow::compute::concat_batches(&schema, &batches).map_err(arrow_err)?;
    let order: Vec<SortColumn> = all
        .columns()
        .iter()
        .map(|c| SortColumn {
            values: c.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        })
        .collect();
    let indices = deltalake::arrow::compute::lexsort_to_indices(&order, None).map_err(arrow_err)?;
    let sorted = deltalake::arrow::compute::take_record_batch(&all, &indices).map_err(arrow_err)?;
    Ok(Box::pin(
        deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter([Ok(sorted)]),
        ),
    ))
}

/// `schema` with string views as plain strings (`Utf8`), whose batches carry only their
/// own text, and every column nullable (the scratch file checks no more than the query did).
fn without_views(
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> deltalake::arrow::datatypes::SchemaRef {
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8View => Field::new(f.name(), DataType::Utf8, true),
                other => Field::new(f.name(), other.clone(), true),
            })
            .collect::<Vec<_>>(),
    ))
}

/// The first index in `lo..hi` where `before` is false (`hi` if none), `before` being true
/// on a prefix of the range.
fn partition_point(mut lo: usize, mut hi: usize, before: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Runs every section once (for one package when `only` is given, else for all), each
/// ordered by `_package` first, its rows waiting in memory for one package and in scratch
/// files for all (but `trend`, whose few rows stay in memory); the rows become text as
/// [`SectionRows::take`] asks for them.
async fn run_sections(
    ctx: &SessionContext,
    queries: &[QueryFile],
    period: &Period,
    only: Option<&str>,
    populations: &Populations,
) -> Result<(Vec<(String, String)>, Vec<SectionRows>)> {
    let access_as_of = embedded_query(queries, "access_as_of")?;
    let review_completeness = embedded_query(queries, "review_completeness")?;
    let as_of = period.end_inclusive_text();
    let mut params: Vec<(&str, &str)> = vec![
        ("from", &period.from_text),
        ("to", &period.to_text),
        ("as_of", &as_of),
    ];
    if let Some(id) = only {
        params.push(("package", id));
    }
    let to_files = only.is_none();
    let as_of_parameter = regex::Regex::new(r"\$as_of\b").expect("a fixed pattern is valid");
    let mut out = Vec::new();
    for (key, title, _, sql) in SECTIONS {
        let mut sql = expand(sql, &access_as_of, &review_completeness);
        if only.is_some() {
            sql = format!("SELECT * FROM (\n{sql}\n) AS section WHERE _package = $package");
        }
        let run = populations.runnable(key, &sql, &review_completeness);
        let needed: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| run.contains(&format!("${k}")))
            .copied()
            .collect();
        let started = std::time::Instant::now();
        let section = if *key == "trend" && to_files {
            // Every package's report: the query at each checkpoint of the period, one
            // after another (each copy's window sorts every holding it reads; run as one
            // UNION ALL, as for one package below, the copies' sorts ran at once and made
            // the 10M pack's peak). A pack has computed `assignment_holdings` once before,
            // so the copies do not compute it again. Their rows, one per package and
            // checkpoint, are few.
            let mut columns = Vec::new();
            let mut schema = None;
            let mut batches = Vec::new();
            for at in checkpoints(period) {
                let bound: Vec<(&str, &str)> = needed
                    .iter()
                    .map(|&(k, v)| {
                        if k == "as_of" {
                            (k, at.as_str())
                        } else {
                            (k, v)
                        }
                    })
                    .collect();
                let (names, stream) = super::table::query_stream(ctx, title, &sql, &bound).await?;
                columns = names;
                schema = Some(stream.schema());
                batches.extend(super::table::collect(title, stream).await?);
            }
            let schema = schema.expect("a period has at least two checkpoints");
            let stream = sorted_by_every_column(title, schema, batches)?;
            SectionRows::wait(title, sql, &columns, stream, false).await?
        } else if *key == "trend" {
            // One package's report: the same query at each checkpoint of the period (one
            // row each), run as one UNION ALL of its copies, `$as_of` of the Nth bound as
            // `$at_N`: the copies read the same `assignment_holdings`, which
            // `lake::shared_subplans` then computes once instead of once per checkpoint.
            // The report shows the query as it is run at one checkpoint.
            let points = checkpoints(period);
            let names: Vec<String> = (0..points.len()).map(|i| format!("at_{i}")).collect();
            let union = names
                .iter()
                .map(|name| {
                    as_of_parameter
                        .replace_all(&sql, regex::NoExpand(&format!("${name}")))
                        .into_owned()
                })
                .collect::<Vec<_>>()
                .join("\nUNION ALL\n");
            let bound: Vec<(&str, &str)> = needed
                .iter()
                .filter(|(k, _)| *k != "as_of")
                .copied()
                .chain(
                    names
                        .iter()
                        .zip(&points)
                        .map(|(name, at)| (name.as_str(), at.as_str())),
                )
                .collect();
            let (columns, stream) = super::table::query_stream(ctx, title, &union, &bound).await?;
            SectionRows::wait(title, sql, &columns, stream, to_files).await?
        } else {
            let (columns, stream) = super::table::query_stream(ctx, title, &run, &needed).await?;
            SectionRows::wait(title, sql, &columns, stream, to_files).await?
        };
        tracing::debug!(
            section = key,
            seconds = started.elapsed().as_secs_f64(),
            "Report section run"
        );
        out.push(section);
    }
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok((params, out))
}

/// One package's report, its section rows read from `sections` (ids in ascending order).
async fn assemble(
    id: &str,
    name: &str,
    parameters: &[(String, String)],
    sections: &mut [SectionRows],
) -> Result<PackageReport> {
    let mut out = Vec::with_capacity(SECTIONS.len());
    for ((key, title, about, _), rows) in SECTIONS.iter().zip(sections.iter_mut()) {
        out.push(Section {
            key,
            title,
            about,
            sql_sha256: sha256_hex(&rows.sql),
            sql: rows.sql.clone(),
            table: rows.take(id)?,
        });
    }
    let mut parameters = parameters.to_vec();
    if !parameters.iter().any(|(k, _)| k == "package") {
        parameters.push(("package".into(), id.to_string()));
    }
    Ok(PackageReport {
        id: id.to_string(),
        name: name.to_string(),
        file_stem: file_stem(id, name),
        parameters,
        sections: out,
    })
}

/// Builds one package's report for a period (each section filtered to the package).
pub async fn build(
    ctx: &SessionContext,
    queries: &[QueryFile],
    id: &str,
    name: &str,
    period: &Period,
) -> Result<PackageReport> {
    let (params, mut sections) =
        run_sections(ctx, queries, period, Some(id), &Populations::default()).await?;
    assemble(id, name, &params, &mut sections).await
}

/// Builds every package's report for a period, running each section once over all packages
/// (reading `populations` where a pack has them) and handing each report to `each` as it is
/// assembled, in ascending order of package id (the order the sections stream their rows
/// in), so one package's rows are held at a time.
pub async fn build_all(
    ctx: &SessionContext,
    queries: &[QueryFile],
    period: &Period,
    populations: &Populations,
    mut each: impl FnMut(PackageReport) -> Result<()>,
) -> Result<()> {
    let (params, mut sections) = run_sections(ctx, queries, period, None, populations).await?;
    let mut all = packages(ctx).await?;
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, name) in all {
        each(assemble(&id, &name, &params, &mut sections).await?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray, StringViewArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::{FROM_POPULATIONS, Populations, SECTIONS, SectionRows, file_stem};
    use crate::report::Table;

    /// A section's rows in `_package` order (NULLs last), in batches that split packages.
    fn section_batches() -> (Arc<Schema>, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_package", DataType::Utf8View, true),
            Field::new("who", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = |packages: Vec<Option<&str>>, who: Vec<Option<&str>>, n: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringViewArray::from(packages)),
                    Arc::new(StringArray::from(who)),
                    Arc::new(Int64Array::from(n)),
                ],
            )
            .expect("batch")
        };
        let batches = vec![
            // "a" belongs to no package asked for; "b" runs on into the next batch.
            batch(
                vec![Some("a"), Some("b"), Some("b")],
                vec![Some("gone"), Some("x"), None],
                vec![Some(1), Some(2), None],
            ),
            batch(vec![], vec![], vec![]),
            batch(
                vec![Some("b"), Some("d"), Some("d"), Some("f"), None],
                vec![
                    Some("y"),
                    Some("<d1>"),
                    Some("d2"),
                    Some("f"),
                    Some("orphan"),
                ],
                vec![Some(3), Some(4), Some(5), Some(6), Some(7)],
            ),
        ];
        (schema, batches)
    }

    /// Each package gets its own rows, in order, whether the section waits in memory or in
    /// a scratch file: across batch boundaries, none for a package without rows, nothing of
    /// a package no one asks for, and never a row whose `_package` is NULL.
    #[tokio::test]
    async fn each_package_gets_its_own_rows_from_memory_and_from_a_scratch_file() {
        let expected: Vec<(&str, Vec<Vec<&str>>)> = vec![
            ("b", vec![vec!["x", "2"], vec!["", ""], vec!["y", "3"]]),
            ("c", vec![]),
            ("d", vec![vec!["<d1>", "4"], vec!["d2", "5"]]),
            ("f", vec![vec!["f", "6"]]),
            ("g", vec![]),
        ];
        for (to_file, nulls_first) in [(false, false), (true, false), (true, true)] {
            let (schema, mut batches) = section_batches();
            if nulls_first {
                // Sorted NULLs first: the orphan row leads instead of trailing.
                let last = batches.pop().expect("batches");
                let n = last.num_rows();
                batches.insert(0, last.slice(n - 1, 1));
                batches.push(last.slice(0, n - 1));
            }
            let stream = Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::iter(batches.into_iter().map(Ok)),
            ));
            let columns = ["_package", "who", "n"].map(String::from);
            let mut section = SectionRows::wait("test", String::new(), &columns, stream, to_file)
                .await
                .expect("waiting");
            for (id, rows) in &expected {
                let got = section.take(id).expect("rows").to_table();
                assert_eq!(got.columns, ["who", "n"], "{id}");
                assert_eq!(
                    got.rows, *rows,
                    "package {id}, to_file {to_file}, nulls_first {nulls_first}"
                );
            }
        }
    }

    /// Rows sorted here (the trend's checkpoints, run one by one) come in the order the
    /// query wrapper's `ORDER BY` every column gives them: NULLs last, strings by bytes.
    #[tokio::test]
    async fn rows_sorted_here_come_in_the_order_of_the_query_wrapper() {
        use futures::TryStreamExt as _;
        let (schema, batches) = section_batches();
        // Out of order: reversed batches, each reversed.
        let shuffled: Vec<RecordBatch> = batches
            .iter()
            .rev()
            .map(|b| {
                let n = b.num_rows() as u32;
                let reversed = deltalake::arrow::array::UInt32Array::from_iter_values((0..n).rev());
                deltalake::arrow::compute::take_record_batch(b, &reversed).expect("take")
            })
            .collect();
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        let table = deltalake::datafusion::datasource::MemTable::try_new(
            schema.clone(),
            vec![shuffled.clone()],
        )
        .expect("table");
        ctx.register_table("t", Arc::new(table))
            .expect("registered");
        let (_, stream) = crate::report::table::query_stream(&ctx, "t", "SELECT * FROM t", &[])
            .await
            .expect("planned");
        let by_engine: Vec<RecordBatch> = stream.try_collect().await.expect("rows");
        let here: Vec<RecordBatch> = super::sorted_by_every_column("t", schema, shuffled)
            .expect("sorted")
            .try_collect()
            .await
            .expect("rows");
        let text = |batches: &[RecordBatch]| {
            let mut rows = Vec::new();
            for b in batches {
                crate::report::table::append_rows(&mut rows, b).expect("text");
            }
            rows
        };
        assert_eq!(text(&here), text(&by_engine));
        assert_eq!(text(&here).last().expect("rows")[1], "orphan");
    }

    /// A template reads a section's rows as it read a table of text cells: the same cells,
    /// count and truthiness, escaped alike.
    #[test]
    fn templates_read_text_rows_as_they_read_a_table() {
        let (_, batches) = section_batches();
        let mut rows = crate::report::table::TextRows::new(
            ["_package", "who", "n"].map(String::from).to_vec(),
        );
        for b in &batches {
            rows.push(b).expect("text");
        }
        let table = rows.to_table();
        assert_eq!(table.rows.len(), 8);
        assert_eq!(table.rows[2], ["b", "", ""]);
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template(
            "t.html",
            "{% if t.rows %}{{ t.columns|join(',') }};{% for r in t.rows %}{% for v in r %}{{ v }}|{% endfor %}{{ r[1] }};{% endfor %}{% endif %}{{ t.rows|length }}",
        )
        .expect("template");
        let render = |t: minijinja::Value| {
            env.get_template("t.html")
                .expect("template")
                .render(minijinja::context! { t => t })
                .expect("rendered")
        };
        let from_table = render(crate::report::render::serde_value(&table));
        assert_eq!(
            from_table,
            render(minijinja::Value::from_object(rows.clone()))
        );
        assert!(from_table.contains("&lt;d1&gt;"), "{from_table}");
        let empty = crate::report::table::TextRows::new(vec!["x".into()]);
        assert_eq!(
            render(minijinja::Value::from_object(empty)),
            render(crate::report::render::serde_value(&Table {
                columns: vec!["x".into()],
                rows: vec![],
            }))
        );
    }

    fn words(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn sections_read_from_populations_apply_the_populations_own_period_rule() {
        // A section that reads a population gets the rows of the view only if the
        // population holds all of them: the whole view, or the view under the same rule.
        for (key, view) in FROM_POPULATIONS {
            let (_, _, _, sql) = SECTIONS
                .iter()
                .find(|(k, ..)| k == key)
                .unwrap_or_else(|| panic!("no section {key}"));
            if let Some(scope) = crate::report::pack::SCOPES.iter().find(|s| s.view == *view) {
                assert!(
                    words(sql).ends_with(&format!("WHERE {}", words(scope.filter))),
                    "section {key} does not apply the rule of {view}'s population"
                );
            } else if *view != "review_completeness" {
                assert!(
                    !words(sql).contains("WHERE"),
                    "section {key} filters {view}"
                );
            }
        }
    }

    #[test]
    fn only_the_sections_of_a_population_read_it() {
        let populations = Populations {
            tables: [
                ("approval_trail".to_string(), "\"pt\"".to_string()),
                ("sod_violations".to_string(), "\"ps\"".to_string()),
                ("review_completeness".to_string(), "\"pc\"".to_string()),
            ]
            .into(),
            scoped: ["approval_trail".to_string()].into(),
        };
        let section = |key: &str| {
            let sql = SECTIONS.iter().find(|(k, ..)| *k == key).expect(key).3;
            sql.replace("{review_completeness}", "SELECT 1 FROM rc WHERE x = $from")
        };
        let trail = populations.runnable("trail", &section("trail"), "");
        assert!(trail.contains("FROM \"pt\"") && !trail.contains("approval_trail"));
        // Both halves of the SoD pairs.
        let sod = populations.runnable("sod", &section("sod"), "");
        assert_eq!(sod.matches("FROM \"ps\"").count(), 2);
        assert!(!sod.contains("sod_violations"));
        // The holders read the whole trail, not the period's population.
        let holders = section("holders");
        assert_eq!(populations.runnable("holders", &holders, ""), holders);
        let completeness = populations.runnable(
            "completeness",
            &section("completeness"),
            "SELECT 1 FROM rc WHERE x = $from",
        );
        assert!(completeness.contains("FROM (SELECT * FROM \"pc\") c"));
        assert!(!completeness.contains("$from"));
        // No population, the view.
        let coverage = section("coverage");
        assert_eq!(populations.runnable("coverage", &coverage, ""), coverage);
    }

    #[test]
    fn file_stems_stay_inside_their_folder_and_are_unique() {
        let hostile = [
            "../../x",
            "/abs/evil",
            "C:\\x",
            "\\\\server\\share",
            "a/b",
            "..",
            ".",
            "con",
            "nul",
            "Vendor Payment",
            "vendor payment",
            "<script>alert(1)</script>",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (i, name) in hostile.iter().enumerate() {
            let stem = file_stem(&format!("id-{i}"), name);
            assert!(
                stem.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{stem}"
            );
            assert!(!stem.starts_with('-') && stem.len() <= 49, "{stem}");
            assert!(seen.insert(stem));
        }
        let long = "x".repeat(5000);
        assert_eq!(file_stem("id", &long).len(), 40 + 1 + 8);
        assert_eq!(file_stem("id", "con"), file_stem("id", "CON"));
        assert_ne!(file_stem("a", "con"), file_stem("b", "con"));
    }
}
