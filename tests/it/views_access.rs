//! Holding access over time (`access_as_of`, `sod_history`) and expiration
//! (`expiration_compliance`), issue 14 section 2: each rule is checked on the sample tenant and
//! on edited copies of it (one or two exports) against an oracle that reads the exported
//! assignment pages itself and applies the rule as stated in the views' header comments.
//!
//! The SQL is the working tree's `queries/` (`--queries`, `-f`); `GOVLAKE_IT_QUERIES=DIR`
//! replays these tests against another copy of the queries (the previous views fail them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde_json::Value;

use crate::common::*;

type Ts = DateTime<Utc>;

const INITIATOR: &str = "c324b927-2c69-4d4b-a46a-607448310321";
const APPROVER: &str = "a21343ac-b420-471d-af35-3111a2d57cb7";
/// Delivered at the 2026-10-01 snapshot although its schedule ended on 2026-08-15.
const OVERDUE: &str = "e647e9c8-a392-4fd7-af34-65cd4edcafd8";
/// Scheduled to end 2026-10-08T10:48:35Z, delivered at the 2026-10-01 snapshot.
const ENDS_OCT_8: &str = "1dfe141c-7c7f-4fd4-a069-f10e3fc7bf5a";

fn queries() -> PathBuf {
    std::env::var_os("GOVLAKE_IT_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("queries"))
}

fn ts(s: &str) -> Ts {
    parse_ts(s).unwrap_or_else(|| panic!("not a timestamp: {s}"))
}

/// A timestamp as Graph or `govlake sql -o json` writes it (RFC 3339, or naive UTC).
fn parse_ts(s: &str) -> Option<Ts> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f).ok())
        .map(|n| n.and_utc())
}

/// Text of a JSON value; JSON null and the string "null" (Graph sends both) are None.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s != "null" && !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn time(v: &Value) -> Option<Ts> {
    text(v).and_then(|s| parse_ts(&s))
}

// ---------------------------------------------------------------------------------------
// The oracle: assignments as exported, and the rules applied to them directly.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Held,
    Expired,
    NotHeld,
}

/// One exported assignment record.
#[derive(Debug, Clone)]
struct Assignment {
    id: String,
    state: String,
    start: Option<Ts>,
    end: Option<Ts>,
    expiration_type: Option<String>,
    duration: Option<String>,
    expired: Option<Ts>,
    package: String,
    user: String,
    connected_organization: Option<String>,
}

impl Assignment {
    fn from_json(r: &Value) -> Self {
        let e = &r["schedule"]["expiration"];
        Assignment {
            id: text(&r["id"]).expect("id"),
            state: text(&r["state"]).unwrap_or_default().to_lowercase(),
            start: time(&r["schedule"]["startDateTime"]),
            end: time(&e["endDateTime"]),
            expiration_type: text(&e["type"]).map(|t| t.to_lowercase()),
            duration: text(&e["duration"]),
            expired: time(&r["expiredDateTime"]),
            package: text(&r["accessPackage"]["id"]).expect("package"),
            user: text(&r["target"]["objectId"]).expect("target"),
            connected_organization: text(&r["target"]["connectedOrganization"]["id"]),
        }
    }

    fn kind(&self) -> Kind {
        match self.state.as_str() {
            "delivered" | "partiallydelivered" => Kind::Held,
            "expired" => Kind::Expired,
            _ => Kind::NotHeld,
        }
    }
}

/// One export: when it was observed and the assignments it lists.
struct Snapshot {
    at: Ts,
    assignments: BTreeMap<String, Assignment>,
}

fn assignment_pages(export: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> =
        walkdir::WalkDir::new(export.join("entitlementManagement/assignments"))
            .into_iter()
            .map(|e| e.expect("walk").into_path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
    pages.sort();
    assert!(
        !pages.is_empty(),
        "no assignment pages in {}",
        export.display()
    );
    pages
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON page")
}

/// Reads an export's assignment pages, observed at `at`.
fn snapshot(export: &Path, at: &str) -> Snapshot {
    let mut assignments = BTreeMap::new();
    for page in assignment_pages(export) {
        for r in read_json(&page)["value"].as_array().expect("value") {
            let a = Assignment::from_json(r);
            assignments.insert(a.id.clone(), a);
        }
    }
    Snapshot {
        at: ts(at),
        assignments,
    }
}

/// The sample's observation time (`_export.json`).
fn sample_observed_at() -> String {
    text(&read_json(&sample_data().join("_export.json"))["exportedAt"]).expect("exportedAt")
}

/// An interval in which a user held a package through one assignment.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    package: String,
    user: String,
    from: Ts,
    to: Option<Ts>,
}

impl Held {
    fn at(&self, t: Ts) -> bool {
        self.from <= t && self.to.is_none_or(|to| t < to)
    }
}

/// The holding rule, applied to a series of complete exports (oldest first): a stretch of
/// exports in which an assignment is delivered is held from its schedule's start (when an
/// earlier export listed it, only from just after the export before) until the earliest of its
/// expiredDateTime, the next export (where it was missing, expired or in another state) and
/// its schedule's end if that comes after the last export that showed it delivered. An
/// assignment listed as expired without being delivered in the export before held
/// [start, expiredDateTime).
fn holding(snaps: &[Snapshot]) -> Vec<Held> {
    let ids: BTreeSet<&String> = snaps.iter().flat_map(|s| s.assignments.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        let rec = |k: usize| snaps[k].assignments.get(id);
        let kind = |k: usize| rec(k).map(Assignment::kind);
        let mut seen_before = false;
        let mut k = 0;
        while k < snaps.len() {
            let Some(r) = rec(k) else {
                k += 1;
                continue;
            };
            let bound = |start: Ts| {
                if seen_before {
                    start.max(snaps[k - 1].at + Duration::microseconds(1))
                } else {
                    start
                }
            };
            match r.kind() {
                Kind::NotHeld => k += 1,
                Kind::Expired => {
                    // Listed expired again: the same expiry, already counted.
                    if k == 0 || kind(k - 1) != Some(Kind::Expired) {
                        let from = bound(r.start.unwrap_or(snaps[k].at));
                        let to = [r.expired, r.end, Some(snaps[k].at)]
                            .into_iter()
                            .flatten()
                            .min()
                            .expect("observed");
                        if from < to {
                            out.push(Held {
                                id: id.clone(),
                                package: r.package.clone(),
                                user: r.user.clone(),
                                from,
                                to: Some(to),
                            });
                        }
                    }
                    k += 1;
                }
                Kind::Held => {
                    let from = bound(r.start.unwrap_or(snaps[k].at));
                    let mut ends: Vec<Ts> = vec![];
                    let mut last = r;
                    while k < snaps.len() && kind(k) == Some(Kind::Held) {
                        last = rec(k).expect("held");
                        ends.extend(last.expired);
                        k += 1;
                    }
                    let seen_held = snaps[k - 1].at;
                    let mut scheduled_end = last.end;
                    if k < snaps.len() {
                        ends.push(snaps[k].at);
                        if let Some(e) = rec(k).filter(|e| e.kind() == Kind::Expired) {
                            ends.extend(e.expired);
                            scheduled_end = e.end;
                            k += 1;
                        }
                    }
                    ends.extend(scheduled_end.filter(|&e| e > seen_held));
                    let to = ends.into_iter().min();
                    if to.is_none_or(|to| from < to) {
                        out.push(Held {
                            id: id.clone(),
                            package: r.package.clone(),
                            user: r.user.clone(),
                            from,
                            to,
                        });
                    }
                }
            }
            seen_before = true;
        }
    }
    out
}

/// Ids of the assignments held at `t`, sorted (an id once per interval holding it).
fn held_at(intervals: &[Held], t: &str) -> Vec<String> {
    let t = ts(t);
    let mut ids: Vec<String> = intervals
        .iter()
        .filter(|h| h.at(t))
        .map(|h| h.id.clone())
        .collect();
    ids.sort();
    ids
}

/// Incompatible pairs (a < b) declared by any export's access packages.
fn incompatible_pairs(exports: &[&Path]) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    for export in exports {
        let doc = read_json(&export.join("entitlementManagement/accessPackages-0001.json"));
        for p in doc["value"].as_array().expect("value") {
            let a = text(&p["id"]).expect("id");
            for i in p["incompatibleAccessPackages"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let b = text(&i["id"]).expect("id");
                if a != b {
                    pairs.insert((a.clone().min(b.clone()), a.clone().max(b)));
                }
            }
        }
    }
    pairs
}

/// (user, package a, package b, from, to): the maximal intervals in which a user held both
/// packages of a pair, through any of their assignments.
type SodRow = (String, String, String, Ts, Option<Ts>);

///
/// An interval still held at the latest export (`latest`) is open, whatever end the
/// assignments' dates foresee.
fn sod_intervals(
    intervals: &[Held],
    pairs: &BTreeSet<(String, String)>,
    latest: Ts,
) -> Vec<SodRow> {
    let observed: Vec<Held> = intervals
        .iter()
        .map(|h| Held {
            to: h.to.filter(|&to| to <= latest),
            ..h.clone()
        })
        .collect();
    let intervals = &observed[..];
    let mut out = Vec::new();
    let users: BTreeSet<&String> = intervals.iter().map(|h| &h.user).collect();
    for user in users {
        for (a, b) in pairs {
            let of = |p: &str| -> Vec<&Held> {
                intervals
                    .iter()
                    .filter(|h| &h.user == user && h.package == p)
                    .collect()
            };
            let mut both: Vec<(Ts, Option<Ts>)> = vec![];
            for x in of(a) {
                for y in of(b) {
                    let from = x.from.max(y.from);
                    let to = match (x.to, y.to) {
                        (Some(p), Some(q)) => Some(p.min(q)),
                        (p, q) => p.or(q),
                    };
                    if to.is_none_or(|to| from < to) {
                        both.push((from, to));
                    }
                }
            }
            both.sort();
            let mut merged: Vec<(Ts, Option<Ts>)> = vec![];
            for (from, to) in both {
                match merged.last_mut() {
                    Some(last) if last.1.is_none_or(|end| end >= from) => {
                        last.1 = match (last.1, to) {
                            (Some(p), Some(q)) => Some(p.max(q)),
                            _ => None,
                        };
                    }
                    _ => merged.push((from, to)),
                }
            }
            for (from, to) in merged {
                out.push((user.clone(), a.clone(), b.clone(), from, to));
            }
        }
    }
    out.sort();
    out
}

/// (finding, assignment id, days): expiration findings at the last export.
type Finding = (String, String, Option<i64>);

fn expiration_findings(last: &Snapshot) -> BTreeSet<Finding> {
    let days = |d: Duration| d.num_seconds().div_euclid(86_400);
    let mut out = BTreeSet::new();
    for a in last.assignments.values().filter(|a| a.kind() == Kind::Held) {
        if let Some(end) = a.end.filter(|&e| e < last.at) {
            out.insert(("overdue".into(), a.id.clone(), Some(days(last.at - end))));
        }
        let t = a.expiration_type.as_deref();
        if t == Some("noexpiration")
            || (matches!(t, None | Some("notspecified")) && a.end.is_none() && a.duration.is_none())
        {
            out.insert(("no expiration".into(), a.id.clone(), None));
        }
        if let (Some(_), Some(start)) = (&a.connected_organization, a.start) {
            if start < last.at - Duration::days(90) {
                out.insert((
                    "guest over 90 days".into(),
                    a.id.clone(),
                    Some(days(last.at - start) - 90),
                ));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Driving the CLI.
// ---------------------------------------------------------------------------------------

type Row = serde_json::Map<String, Value>;

/// A column of a row (`-o json` leaves out NULL cells).
fn cell<'a>(r: &'a Row, column: &str) -> &'a Value {
    r.get(column).unwrap_or(&Value::Null)
}

fn ingest_ok(lake: &Path, export: &Path, observed_at: Option<&str>) {
    let mut extra = vec![];
    if let Some(at) = observed_at {
        extra.extend(["--observed-at", at]);
    }
    let r = ingest(lake, &[export], &extra);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `govlake --lake LAKE sql --queries Q -o json ARGS...` as rows.
fn query(lake: &Path, args: &[&str]) -> Vec<Row> {
    let r = run(govlake()
        .arg("--lake")
        .arg(lake)
        .arg("sql")
        .arg("--queries")
        .arg(queries())
        .args(["-o", "json"])
        .args(args));
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    if r.stdout.trim().is_empty() {
        return vec![];
    }
    match serde_json::from_str::<Value>(&r.stdout).expect("JSON rows") {
        Value::Array(rows) => rows
            .into_iter()
            .map(|v| v.as_object().expect("row").clone())
            .collect(),
        other => panic!("not an array of rows: {other}"),
    }
}

/// `sql -f queries/access_as_of.sql --param as_of=AT`
fn access_as_of(lake: &Path, at: &str) -> Vec<Row> {
    let file = queries().join("access_as_of.sql");
    query(
        lake,
        &[
            "-f",
            file.to_str().expect("utf-8"),
            "--param",
            &format!("as_of={at}"),
        ],
    )
}

fn ids_at(lake: &Path, at: &str) -> Vec<String> {
    let mut ids: Vec<String> = access_as_of(lake, at)
        .iter()
        .map(|r| text(&cell(r, "assignment_id")).expect("assignment_id"))
        .collect();
    ids.sort();
    ids
}

/// Asserts the view and the oracle agree on who held what at each time.
fn assert_holders(lake: &Path, oracle: &[Held], times: &[&str]) {
    for t in times {
        let want = held_at(oracle, t);
        let got = ids_at(lake, t);
        if got != want {
            let missing: Vec<_> = want.iter().filter(|i| !got.contains(i)).collect();
            let extra: Vec<_> = got.iter().filter(|i| !want.contains(i)).collect();
            panic!(
                "access_as_of at {t}: {} rows, the oracle says {}\nmissing: {missing:?}\nnot held: {extra:?}",
                got.len(),
                want.len()
            );
        }
    }
}

fn sod_history(lake: &Path) -> Vec<SodRow> {
    let mut rows: Vec<SodRow> = query(lake, &["-c", "select * from sod_history"])
        .iter()
        .map(|r| {
            let to = time(&cell(r, "both_to"));
            assert_eq!(cell(r, "open"), &Value::Bool(to.is_none()), "{r:?}");
            (
                text(&cell(r, "user_object_id")).expect("user"),
                text(&cell(r, "access_package_id")).expect("a"),
                text(&cell(r, "incompatible_access_package_id")).expect("b"),
                time(&cell(r, "both_from")).expect("both_from"),
                to,
            )
        })
        .collect();
    rows.sort();
    rows
}

fn expiration(lake: &Path) -> (BTreeSet<Finding>, BTreeSet<Option<Ts>>) {
    let rows = query(lake, &["-c", "select * from expiration_compliance"]);
    let findings = rows
        .iter()
        .map(|r| {
            (
                text(&cell(r, "finding")).expect("finding"),
                text(&cell(r, "assignment_id")).expect("id"),
                cell(r, "days_overdue").as_i64(),
            )
        })
        .collect();
    let observed = rows.iter().map(|r| time(&cell(r, "observed_at"))).collect();
    (findings, observed)
}

fn count(lake: &Path, sql: &str) -> i64 {
    let rows = query(lake, &["-c", sql]);
    rows[0]
        .values()
        .next()
        .and_then(Value::as_i64)
        .expect("a count")
}

// ---------------------------------------------------------------------------------------
// Editing exports.
// ---------------------------------------------------------------------------------------

/// A copy of the sample tenant in a new temporary folder.
fn sample_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&sample_data(), dir.path());
    dir
}

/// Edits (or, when `edit` returns false, removes) the assignment `id` in an export's pages.
fn edit_assignment(export: &Path, id: &str, mut edit: impl FnMut(&mut Value) -> bool) {
    let mut found = false;
    for page in assignment_pages(export) {
        let mut doc = read_json(&page);
        let list = doc["value"].as_array_mut().expect("value");
        let mut here = false;
        list.retain_mut(|r| {
            if r["id"] != id {
                return true;
            }
            here = true;
            edit(r)
        });
        if here {
            found = true;
            std::fs::write(&page, serde_json::to_string_pretty(&doc).expect("json"))
                .expect("write");
        }
    }
    assert!(found, "assignment {id} is not in the export");
}

/// Turns an assignment into one Graph lists as expired at `at` (its schedule ending then).
fn expire(export: &Path, id: &str, at: &str) {
    edit_assignment(export, id, |r| {
        r["state"] = "expired".into();
        r["status"] = "ExpiredNotificationTriggered".into();
        r["expiredDateTime"] = at.into();
        r["schedule"]["expiration"]["type"] = "afterDateTime".into();
        r["schedule"]["expiration"]["endDateTime"] = at.into();
        true
    });
}

/// The sample's assignment of `package` to the first (by id) user who holds both payment
/// packages, with that user.
fn a_clerk_assignment(package: &str) -> (String, String) {
    let s = snapshot(&sample_data(), &sample_observed_at());
    let holds = |u: &str, p: &str| {
        s.assignments
            .values()
            .find(|a| a.user == u && a.package == p && a.kind() == Kind::Held)
    };
    s.assignments
        .values()
        .filter_map(|a| {
            let both = holds(&a.user, INITIATOR).is_some() && holds(&a.user, APPROVER).is_some();
            both.then(|| {
                (
                    a.user.clone(),
                    holds(&a.user, package).expect("held").id.clone(),
                )
            })
        })
        .min()
        .expect("the sample has dual holders")
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn access_as_of_matches_the_oracle_on_the_sample_tenant() {
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), &sample_data(), None);
    let oracle = holding(&[snapshot(&sample_data(), &sample_observed_at())]);
    // The figures, computed from the JSON by the oracle and by the view.
    assert_eq!(held_at(&oracle, "2026-09-30T12:00:00Z").len(), 157);
    assert_eq!(held_at(&oracle, "2026-07-15T00:00:00Z").len(), 120);
    assert!(
        held_at(&oracle, "2026-09-30T12:00:00Z").contains(&OVERDUE.to_string()),
        "the snapshot proves delivery after the schedule's end"
    );
    assert_holders(
        lake.path(),
        &oracle,
        &[
            "2026-09-30T12:00:00Z",
            "2026-07-15T00:00:00Z",
            "2025-12-31T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-08-15T10:00:00Z",
            "2026-09-30T13:30:35Z",
            "2026-09-30T13:30:36Z",
            "2026-09-30T23:59:59Z",
            "2026-10-01T06:00:00Z",
            "2026-10-05T00:00:00Z",
            "2026-12-31T00:00:00Z",
        ],
    );
    // The columns an auditor reads, for the assignment that expired at 13:30 that day.
    let rows = access_as_of(lake.path(), "2026-09-30T12:00:00Z");
    let r = rows
        .iter()
        .find(|r| cell(r, "assignment_id") == "6bc05ec2-6259-421a-a22d-af32e4a1192a")
        .expect("held until 13:30");
    assert_eq!(cell(r, "state"), "expired");
    assert_eq!(time(&cell(r, "held_to")), Some(ts("2026-09-30T13:30:36Z")));
    assert_eq!(
        time(&cell(r, "held_from")),
        Some(ts("2026-07-02T13:30:36Z"))
    );
}

#[test]
fn an_expiry_at_the_period_end_is_held_until_its_last_second() {
    let export = sample_copy();
    let s = snapshot(export.path(), &sample_observed_at());
    let mut delivered = s
        .assignments
        .values()
        .filter(|a| a.kind() == Kind::Held && a.end.is_some())
        .map(|a| a.id.clone());
    let (expires_at_midnight, ends_after_snapshot) = (
        delivered.next().expect("one"),
        delivered.next().expect("two"),
    );
    expire(export.path(), &expires_at_midnight, "2026-10-01T00:00:00Z");
    // Delivered at the snapshot (06:00), scheduled to end at 07:00: held until 07:00.
    edit_assignment(export.path(), &ends_after_snapshot, |r| {
        r["schedule"]["expiration"]["endDateTime"] = "2026-10-01T07:00:00Z".into();
        true
    });
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), export.path(), None);
    let oracle = holding(&[snapshot(export.path(), &sample_observed_at())]);

    let last_second = held_at(&oracle, "2026-09-30T23:59:59Z");
    assert!(last_second.contains(&expires_at_midnight));
    assert!(!held_at(&oracle, "2026-10-01T00:00:00Z").contains(&expires_at_midnight));
    assert!(held_at(&oracle, "2026-10-01T06:59:59Z").contains(&ends_after_snapshot));
    assert!(!held_at(&oracle, "2026-10-01T07:00:00Z").contains(&ends_after_snapshot));
    assert_holders(
        lake.path(),
        &oracle,
        &[
            "2026-09-30T23:59:59Z",
            "2026-09-30T23:59:59.999999Z",
            "2026-10-01T00:00:00Z",
            "2026-10-01T06:59:59Z",
            "2026-10-01T07:00:00Z",
        ],
    );
}

#[test]
fn assignments_first_observed_expired_count_while_they_were_held() {
    let export = sample_copy();
    let (_, initiator) = a_clerk_assignment(INITIATOR);
    expire(export.path(), &initiator, "2026-06-01T00:00:00Z");
    // An expired record without expiredDateTime: held until its schedule's end.
    let (_, approver) = a_clerk_assignment(APPROVER);
    expire(export.path(), &approver, "2026-05-01T00:00:00Z");
    edit_assignment(export.path(), &approver, |r| {
        r["expiredDateTime"] = "null".into();
        true
    });
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), export.path(), None);
    let oracle = holding(&[snapshot(export.path(), &sample_observed_at())]);
    assert!(held_at(&oracle, "2026-05-31T23:59:59Z").contains(&initiator));
    assert!(!held_at(&oracle, "2026-06-01T00:00:00Z").contains(&initiator));
    assert!(held_at(&oracle, "2026-04-30T00:00:00Z").contains(&approver));
    assert!(!held_at(&oracle, "2026-05-01T00:00:00Z").contains(&approver));
    assert_holders(
        lake.path(),
        &oracle,
        &[
            "2026-03-01T00:00:00Z",
            "2026-04-30T00:00:00Z",
            "2026-05-01T00:00:00Z",
            "2026-05-31T23:59:59Z",
            "2026-06-01T00:00:00Z",
            "2026-07-15T00:00:00Z",
        ],
    );
}

#[test]
fn sod_history_keeps_an_interval_that_closed_before_the_first_snapshot() {
    let export = sample_copy();
    let (clerk, initiator) = a_clerk_assignment(INITIATOR);
    expire(export.path(), &initiator, "2026-06-01T00:00:00Z");
    // Another clerk's approver grant is scheduled to end after the snapshot.
    let s = snapshot(export.path(), &sample_observed_at());
    let (other_clerk, other_approver) = s
        .assignments
        .values()
        .filter(|a| a.package == APPROVER && a.user != clerk && a.kind() == Kind::Held)
        .find(|a| {
            s.assignments
                .values()
                .any(|b| b.user == a.user && b.package == INITIATOR && b.kind() == Kind::Held)
        })
        .map(|a| (a.user.clone(), a.id.clone()))
        .expect("a second dual holder");
    edit_assignment(export.path(), &other_approver, |r| {
        r["schedule"]["expiration"]["type"] = "afterDateTime".into();
        r["schedule"]["expiration"]["endDateTime"] = "2027-01-01T00:00:00Z".into();
        true
    });
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), export.path(), None);
    let oracle = holding(&[snapshot(export.path(), &sample_observed_at())]);
    let want = sod_intervals(
        &oracle,
        &incompatible_pairs(&[export.path()]),
        ts(&sample_observed_at()),
    );
    let closed: Vec<&SodRow> = want.iter().filter(|r| r.0 == clerk).collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].4, Some(ts("2026-06-01T00:00:00Z")));
    assert!(closed[0].3 < ts("2026-06-01T00:00:00Z"));
    let open: Vec<&SodRow> = want.iter().filter(|r| r.0 == other_clerk).collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].4, None, "a scheduled end ahead is not an end yet");
    assert_eq!(sod_history(lake.path()), want);
}

#[test]
fn an_assignment_gone_from_the_next_export_is_held_until_that_export() {
    let first = sample_data();
    let second = sample_copy();
    let (clerk, approver) = a_clerk_assignment(APPROVER);
    // Gone from the second export: held until it (and the clerk's SoD interval closes then).
    edit_assignment(second.path(), &approver, |_| false);
    let s = snapshot(&first, &sample_observed_at());
    let mut others = s
        .assignments
        .values()
        .filter(|a| a.kind() == Kind::Held && a.user != clerk)
        .map(|a| a.id.clone());
    let (expired_between, now_delivering) = (others.next().unwrap(), others.next().unwrap());
    // Expired between the two exports: held until its expiry, not until the second export.
    expire(second.path(), &expired_between, "2026-10-09T12:00:00Z");
    // In a state that is not held at the second export: held until that export.
    edit_assignment(second.path(), &now_delivering, |r| {
        r["state"] = "Delivering".into();
        true
    });
    let later = "2026-10-15T06:00:00Z";
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), &first, None);
    ingest_ok(lake.path(), second.path(), Some(later));
    let oracle = holding(&[
        snapshot(&first, &sample_observed_at()),
        snapshot(second.path(), later),
    ]);
    for id in [&approver, &now_delivering] {
        assert!(held_at(&oracle, "2026-10-15T05:59:59Z").contains(id));
        assert!(!held_at(&oracle, later).contains(id));
    }
    assert!(held_at(&oracle, "2026-10-09T11:59:59Z").contains(&expired_between));
    assert!(!held_at(&oracle, "2026-10-09T12:00:00Z").contains(&expired_between));
    assert_holders(
        lake.path(),
        &oracle,
        &[
            "2026-09-30T12:00:00Z",
            "2026-10-05T00:00:00Z",
            "2026-10-09T11:59:59Z",
            "2026-10-09T12:00:00Z",
            "2026-10-12T00:00:00Z",
            "2026-10-15T05:59:59Z",
            later,
            "2026-11-01T00:00:00Z",
        ],
    );
    let want = sod_intervals(
        &oracle,
        &incompatible_pairs(&[&first, second.path()]),
        ts(later),
    );
    assert!(
        want.iter().any(|r| r.0 == clerk && r.4 == Some(ts(later))),
        "{want:?}"
    );
    assert_eq!(sod_history(lake.path()), want);
}

#[test]
fn a_schedule_end_counts_only_until_a_snapshot_shows_delivery() {
    let first = sample_data();
    let at = sample_observed_at();
    let later = "2026-10-15T06:00:00Z";
    let one = tempfile::tempdir().unwrap();
    ingest_ok(one.path(), &first, None);
    let two = tempfile::tempdir().unwrap();
    ingest_ok(two.path(), &first, None);
    ingest_ok(two.path(), &first, Some(later));

    let oracle_one = holding(&[snapshot(&first, &at)]);
    let oracle_two = holding(&[snapshot(&first, &at), snapshot(&first, later)]);
    // Scheduled to end on 10-08: after the only snapshot that end counts; once a snapshot on
    // 10-15 shows it still delivered, it was held on 10-12.
    assert!(!held_at(&oracle_one, "2026-10-12T00:00:00Z").contains(&ENDS_OCT_8.to_string()));
    assert!(held_at(&oracle_two, "2026-10-12T00:00:00Z").contains(&ENDS_OCT_8.to_string()));
    assert!(held_at(&oracle_one, "2026-09-30T00:00:00Z").contains(&OVERDUE.to_string()));
    let times = [
        "2026-08-15T09:59:59Z",
        "2026-08-15T10:00:00Z",
        "2026-09-30T00:00:00Z",
        "2026-10-08T10:48:34Z",
        "2026-10-08T10:48:35Z",
        "2026-10-12T00:00:00Z",
        "2026-10-20T00:00:00Z",
    ];
    assert_holders(one.path(), &oracle_one, &times);
    assert_holders(two.path(), &oracle_two, &times);
}

#[test]
fn never_expiring_grants_come_from_the_assignment_schedule() {
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), &sample_data(), None);
    let sample = snapshot(&sample_data(), &sample_observed_at());
    let want = expiration_findings(&sample);
    let never = |f: &BTreeSet<Finding>| f.iter().filter(|f| f.0 == "no expiration").count();
    assert_eq!(never(&want), 38, "the issue's figure");
    let (got, observed) = expiration(lake.path());
    assert_eq!(got, want);
    assert_eq!(observed, BTreeSet::from([Some(sample.at)]));
    let overdue = want.iter().filter(|f| f.2.is_some_and(|d| d > 0)).count();
    assert_eq!(overdue, 1, "the issue's figure");
    assert_eq!(
        count(
            lake.path(),
            "select count(*) from expiration_compliance where days_overdue > 0"
        ),
        overdue as i64
    );

    // The policy's expiry does not decide: a grant under a never-expiring policy that carries
    // an end date is not flagged, and grants that carry no end at all are.
    let export = sample_copy();
    let mut payments_staff = sample
        .assignments
        .values()
        .filter(|a| a.expiration_type.as_deref() == Some("noexpiration"))
        .map(|a| a.id.clone());
    let (dated, pascal, untyped) = (
        payments_staff.next().unwrap(),
        sample
            .assignments
            .values()
            .find(|a| a.kind() == Kind::Held && a.end.is_some_and(|e| e > sample.at))
            .map(|a| a.id.clone())
            .unwrap(),
        sample
            .assignments
            .values()
            .filter(|a| a.kind() == Kind::Held && a.end.is_some_and(|e| e > sample.at))
            .nth(1)
            .map(|a| a.id.clone())
            .unwrap(),
    );
    edit_assignment(export.path(), &dated, |r| {
        r["schedule"]["expiration"]["type"] = "afterDateTime".into();
        r["schedule"]["expiration"]["endDateTime"] = "2027-01-01T00:00:00Z".into();
        true
    });
    edit_assignment(export.path(), &pascal, |r| {
        r["schedule"]["expiration"]["type"] = "NoExpiration".into();
        r["schedule"]["expiration"]["endDateTime"] = Value::Null;
        true
    });
    edit_assignment(export.path(), &untyped, |r| {
        r["schedule"]["expiration"] =
            serde_json::json!({"type": "null", "endDateTime": "null", "duration": null});
        true
    });
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), export.path(), None);
    let want = expiration_findings(&snapshot(export.path(), &sample_observed_at()));
    let flagged = |id: &str| want.contains(&("no expiration".to_string(), id.to_string(), None));
    assert!(!flagged(&dated) && flagged(&pascal) && flagged(&untyped));
    assert_eq!(never(&want), 39);
    assert_eq!(expiration(lake.path()).0, want);
}

#[test]
fn overdue_days_count_to_the_latest_snapshot() {
    let later = "2026-10-15T06:00:00Z";
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), &sample_data(), None);
    let (before, _) = expiration(lake.path());
    // The same export, unchanged, two weeks later.
    ingest_ok(lake.path(), &sample_data(), Some(later));
    let latest = snapshot(&sample_data(), later);
    let want = expiration_findings(&latest);
    let (got, observed) = expiration(lake.path());
    assert_eq!(got, want);
    assert_eq!(observed, BTreeSet::from([Some(ts(later))]));

    let days = |f: &BTreeSet<Finding>, id: &str| {
        f.iter()
            .find(|f| f.0 == "overdue" && f.1 == id)
            .and_then(|f| f.2)
    };
    assert_eq!(days(&got, OVERDUE), days(&before, OVERDUE).map(|d| d + 14));
    let overdue = |f: &BTreeSet<Finding>| -> BTreeSet<String> {
        f.iter()
            .filter(|f| f.0 == "overdue")
            .map(|f| f.1.clone())
            .collect()
    };
    let new: Vec<String> = overdue(&got)
        .difference(&overdue(&before))
        .cloned()
        .collect();
    assert_eq!(new.len(), 3, "ended between the two snapshots: {new:?}");
    assert!(new.contains(&ENDS_OCT_8.to_string()));
    assert_eq!(
        count(
            lake.path(),
            "select count(*) from expiration_compliance where days_overdue > 0"
        ),
        want.iter().filter(|f| f.2.is_some_and(|d| d > 0)).count() as i64
    );
}

#[test]
fn an_assignment_held_again_counts_from_just_after_the_snapshot_that_showed_it_not_held() {
    let first = sample_copy();
    let second = sample_copy();
    let third = sample_copy();
    let (clerk, approver) = a_clerk_assignment(APPROVER);
    let s = snapshot(&sample_data(), &sample_observed_at());
    let pending = s
        .assignments
        .values()
        .find(|a| a.kind() == Kind::Held && a.user != clerk && a.end.is_none())
        .map(|a| a.id.clone())
        .unwrap();
    // Delivering at the first export, scheduled from 09-20; delivered at the second.
    edit_assignment(first.path(), &pending, |r| {
        r["state"] = "delivering".into();
        r["schedule"]["startDateTime"] = "2026-09-20T00:00:00Z".into();
        true
    });
    edit_assignment(second.path(), &pending, |r| {
        r["schedule"]["startDateTime"] = "2026-09-20T00:00:00Z".into();
        true
    });
    edit_assignment(third.path(), &pending, |r| {
        r["schedule"]["startDateTime"] = "2026-09-20T00:00:00Z".into();
        true
    });
    // The clerk's approver grant is gone from the second export and back in the third.
    edit_assignment(second.path(), &approver, |_| false);
    let (at2, at3) = ("2026-10-15T06:00:00Z", "2026-11-01T06:00:00Z");
    let lake = tempfile::tempdir().unwrap();
    ingest_ok(lake.path(), first.path(), None);
    ingest_ok(lake.path(), second.path(), Some(at2));
    ingest_ok(lake.path(), third.path(), Some(at3));
    let oracle = holding(&[
        snapshot(first.path(), &sample_observed_at()),
        snapshot(second.path(), at2),
        snapshot(third.path(), at3),
    ]);
    let held = |id: &str, t: &str| held_at(&oracle, t).contains(&id.to_string());
    assert!(!held(&pending, "2026-09-25T00:00:00Z"));
    assert!(!held(&pending, "2026-10-01T06:00:00Z"));
    assert!(held(&pending, "2026-10-01T06:00:00.000001Z"));
    assert!(held(&approver, "2026-10-15T05:59:59Z"));
    assert!(!held(&approver, at2));
    assert!(held(&approver, "2026-10-20T00:00:00Z"));
    assert_holders(
        lake.path(),
        &oracle,
        &[
            "2026-09-25T00:00:00Z",
            "2026-10-01T06:00:00Z",
            "2026-10-01T06:00:00.000001Z",
            "2026-10-05T00:00:00Z",
            "2026-10-15T05:59:59Z",
            at2,
            "2026-10-15T06:00:00.000001Z",
            "2026-10-20T00:00:00Z",
            at3,
        ],
    );
    let want = sod_intervals(
        &oracle,
        &incompatible_pairs(&[first.path(), second.path(), third.path()]),
        ts(at3),
    );
    assert_eq!(want.iter().filter(|r| r.0 == clerk).count(), 2, "{want:?}");
    assert_eq!(sod_history(lake.path()), want);
}
