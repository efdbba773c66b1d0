-- assignment_holdings: when was each access package assignment held?
--
-- Answers: "Over which intervals did this user hold Financial Analyst - Standard?" — the
-- holding rule that access_as_of, sod_history, recertification_coverage,
-- remediation_timeliness and review_completeness all read from here.
-- One row per holding of an assignment: a stretch of held versions observed back to back,
-- followed by the expired version that ended it, if any (an expired version after anything
-- else is a holding of its own).
-- Columns: assignment_id, access_package_id, access_package_name, user_object_id,
--   user_principal_name, assignment_policy_id, state (as the holding's last version shows
--   them), held_from, held_to (the interval [held_from, held_to); held_to NULL: still held),
--   ended_by ('expiry', 'schedule end' or 'snapshot': what held_to is; NULL when still held),
--   first_observed, last_observed (valid_from of the holding's first and last version in
--   assignments_history), scheduled_start (the schedule's startDateTime, first version),
--   seen_not_held_at (the last snapshot before first_observed, when govlake had seen the
--   assignment before: it was then not held or gone; NULL for its first holding).
-- Rules (the holding rule):
--   * An assignment is held on [start, end), half-open: an expiry at exactly 2026-10-01T00:00Z
--     is still held at 2026-09-30T23:59:59Z and no longer at 00:00.
--   * Held states: delivered and partiallyDelivered (any letter case); expired is held before
--     its expiry; every other state (delivering, pendingApproval, deliveryFailed, ...) is not.
--   * start = the schedule's startDateTime, failing that when govlake first observed the
--     assignment. When govlake had seen the same assignment before, in a state that is not
--     held or gone from a snapshot, it counts again only from just after (1 microsecond, the
--     lake's resolution) the last snapshot that showed so.
--   * end = the earliest of expiredDateTime and the observation that it was gone: the
--     snapshot from which it was missing (a complete snapshot) or in a state that is not held
--     (valid_to of its last held version in assignments_history).
--   * The schedule's end counts as the end only when no snapshot showed the assignment still
--     held after that time (a snapshot that shows it delivered proves delivery).
--   * An assignment first observed already expired still contributes [start, expiredDateTime)
--     (no later than that observation).
-- Caveats: snapshots are the `_ingest_runs` rows of runs that read assignments (observed_at),
--   plus every valid_from/valid_to of assignments_history. Between two snapshots govlake knows
--   only the assignment's own dates, so a holding is the time someone may have held access:
--   only a date or a snapshot that proves otherwise excludes it. A holding whose dates leave
--   no time (held_to <= held_from, e.g. first observed expired after its expiry) is listed
--   too: it was never held; readers asking "held when?" never match it.
WITH observations AS (
    SELECT observed_at FROM _ingest_runs
    WHERE table_name = 'assignments' AND (fetched > 0 OR closed > 0)
    UNION
    SELECT valid_from FROM assignments_history
    UNION
    SELECT valid_to FROM assignments_history WHERE valid_to IS NOT NULL
),
-- The islands are computed over the columns they need (ids, hashes and times); the text of
-- each holding's last version (package, policy, user, state) is joined back at the end by
-- the version's (id, valid_from, valid_to, row_hash), which names one row of the history (a
-- row stored twice over would be a duplicate, which the ingest never writes). Carrying the
-- text through the sort and the windows cost ~1 s of ~8.5 at 10M audit events.
versions AS (
    SELECT h.id, h.valid_from, h.valid_to, h.row_hash, h.schedule_start_date_time,
           h.schedule_expiration_end_date_time, h.expired_date_time,
           substr(h.id, 1, 2) AS bucket,
           CASE WHEN lower(h.state) IN ('delivered', 'partiallydelivered') THEN 'held'
                WHEN lower(h.state) = 'expired' THEN 'expired'
                ELSE 'not held' END AS kind
    FROM assignments_history h
),
-- The windows run over all versions in one order (id, valid_from, row_hash) rather than
-- PARTITION BY id: the same answers (a version's predecessor counts only when it has the same
-- id), without a window state per assignment, which cost ~10 µs per assignment. They are
-- partitioned by `bucket` only (the id's first two characters), which keeps each
-- assignment's versions together and lets every core window its share; the islands are then
-- grouped by bucket too, in the partitions the windows left, as the versions come, sorted
-- (1M audit events: 1.27 -> 0.80 s; 10M: ~10.3 -> ~8.7 s, peak alike).
ordered AS (
    SELECT v.*,
           CASE WHEN lag(id) OVER w = id THEN lag(kind) OVER w END AS prev_kind,
           CASE WHEN lag(id) OVER w = id THEN lag(valid_to) OVER w END AS prev_valid_to,
           -- Whether an earlier version of the assignment exists (row_number() > 1 per id).
           coalesce(lag(id) OVER w = id, false) AS seen_earlier
    FROM versions v
    WINDOW w AS (PARTITION BY bucket ORDER BY id, valid_from, row_hash)
),
islands AS (
    -- One island per stretch of held versions observed back to back, followed by the expired
    -- version that ended it, if any; an expired version after anything else stands alone.
    -- The first version of each assignment starts an island (its prev_kind is NULL), so the
    -- running count over a bucket's versions numbers the islands of each assignment apart.
    SELECT o.*,
           sum(starts) OVER (PARTITION BY bucket ORDER BY id, valid_from, row_hash
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS island,
           -- The island's last version: the next version (in the same order) starts another.
           coalesce(lead(starts) OVER (PARTITION BY bucket ORDER BY id, valid_from, row_hash), 1)
               = 1 AS ends,
           -- The observation that ended this version's holding: a held version holds until
           -- its valid_to; an expired one was seen not held from its valid_from.
           CASE WHEN kind = 'held' THEN valid_to ELSE valid_from END AS seen_ending
    FROM (SELECT o.*,
                 CASE WHEN kind <> 'not held' AND prev_kind = 'held' AND prev_valid_to = valid_from
                      THEN 0 ELSE 1 END AS starts
          FROM ordered o) o
),
-- Each version with the observation before its valid_from and before its seen_ending. Both
-- times are observations themselves (every valid_from and valid_to is one), so "the latest
-- observation before" is the previous one in time order: a lookup by equality. (Pairing each
-- island with every observation grew the view with their product: a lake of daily runs holds
-- hundreds of observations.) The latest observation of all comes along the same lookup:
-- a one-row CTE cross joined to the islands became, with a reader's filter on held_to
-- pushed into it, a nested-loop join that took 4.9 s of `access_as_of`'s 11.6 at 10M audit
-- events.
observation_order AS (
    SELECT observed_at, lag(observed_at) OVER (ORDER BY observed_at) AS previous,
           max(observed_at) OVER () AS latest
    FROM observations
    WHERE observed_at IS NOT NULL
),
islands_observed AS (
    SELECT i.*, b.previous AS observed_before_version, e.previous AS observed_before_ending,
           b.latest AS last_observation
    FROM islands i
    LEFT JOIN observation_order b ON b.observed_at = i.valid_from
    LEFT JOIN observation_order e ON e.observed_at = i.seen_ending
),
-- The values of an island's first (starts) and last (ends) version: one row each, so max()
-- picks that row's value, NULL included (as first_value/last_value ORDER BY valid_from,
-- row_hash would, at ~20 µs per island). The last version's valid_from is last_seen.
spans AS (
    SELECT id, island,
           bool_and(seen_earlier) AS seen_earlier,
           min(valid_from) AS first_seen,
           max(valid_from) AS last_seen,
           max(CASE WHEN starts = 1 THEN schedule_start_date_time END) AS scheduled_start,
           max(CASE WHEN ends THEN schedule_expiration_end_date_time END) AS scheduled_end,
           max(CASE WHEN ends THEN seen_ending END) AS gone_at,
           max(CASE WHEN starts = 1 THEN observed_before_version END) AS seen_before,
           max(CASE WHEN ends THEN observed_before_ending END) AS observed_before_gone,
           min(expired_date_time) AS expired_at,
           max(CASE WHEN kind = 'held' THEN valid_from END) AS last_held_version_from,
           max(CASE WHEN ends THEN valid_to END) AS last_valid_to,
           max(CASE WHEN ends THEN row_hash END) AS last_row_hash,
           max(last_observation) AS last_observation
    FROM islands_observed
    WHERE kind <> 'not held'
    GROUP BY bucket, id, island
),
-- The snapshots around each island: the latest before it was first observed (seen_before)
-- and the last that showed it held (seen_held: before the one that showed it gone, or the
-- latest of all while it is not gone).
bounds AS (
    SELECT s.*,
           greatest(s.last_held_version_from,
                    CASE WHEN s.last_held_version_from IS NULL THEN NULL
                         WHEN s.gone_at IS NULL
                              THEN CASE WHEN s.last_observation >= s.first_seen
                                        THEN s.last_observation END
                         WHEN s.observed_before_gone >= s.first_seen
                              THEN s.observed_before_gone END) AS seen_held
    FROM spans s
),
held AS (
    SELECT b.*,
           CASE WHEN seen_earlier THEN seen_before END AS seen_not_held_at,
           CASE WHEN seen_earlier
                THEN greatest(coalesce(scheduled_start, first_seen),
                              seen_before + INTERVAL '1 microsecond')
                ELSE coalesce(scheduled_start, first_seen) END AS held_from,
           least(expired_at, gone_at,
                 CASE WHEN seen_held IS NULL OR scheduled_end > seen_held
                      THEN scheduled_end END) AS held_to
    FROM bounds b
)
SELECT
    h.id AS assignment_id,
    v.access_package_id,
    v.access_package_display_name AS access_package_name,
    v.target_object_id AS user_object_id,
    v.target_principal_name AS user_principal_name,
    v.assignment_policy_id,
    v.state,
    held_from,
    held_to,
    CASE WHEN held_to IS NULL THEN NULL
         WHEN held_to = expired_at THEN 'expiry'
         WHEN held_to = scheduled_end THEN 'schedule end'
         ELSE 'snapshot' END AS ended_by,
    first_seen AS first_observed,
    last_seen AS last_observed,
    scheduled_start,
    seen_not_held_at
FROM held h
JOIN assignments_history v
  ON v.id = h.id AND v.valid_from = h.last_seen AND v.row_hash = h.last_row_hash
     AND v.valid_to IS NOT DISTINCT FROM h.last_valid_to
ORDER BY assignment_id, first_observed
