-- access_as_of: who held each access package at a given time?
--
-- Answers: "Everyone who held Financial Analyst - Standard on 30 September."
-- Parameter: $as_of (a timestamp, e.g. --param as_of=2026-09-30T23:59:59Z).
-- Columns: access_package_id, access_package_name, user_object_id, user_principal_name,
--   assignment_id, state, schedule_start_date_time, schedule_expiration_end_date_time,
--   observed_from, observed_to (the assignment's version in force at $as_of, or its first
--   version when $as_of precedes it), held_from, held_to (the holding interval found below;
--   held_to NULL: still held).
-- Rules (the holding rule; sod_history applies the same one):
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
--   only the assignment's own dates, so the answer is everyone who may have held access then:
--   only a date or a snapshot that proves otherwise excludes an assignment.
WITH observations AS (
    SELECT observed_at FROM _ingest_runs
    WHERE table_name = 'assignments' AND (fetched > 0 OR closed > 0)
    UNION
    SELECT valid_from FROM assignments_history
    UNION
    SELECT valid_to FROM assignments_history WHERE valid_to IS NOT NULL
),
versions AS (
    SELECT h.*,
           CASE WHEN lower(h.state) IN ('delivered', 'partiallydelivered') THEN 'held'
                WHEN lower(h.state) = 'expired' THEN 'expired'
                ELSE 'not held' END AS kind
    FROM assignments_history h
),
ordered AS (
    SELECT v.*,
           lag(kind) OVER (PARTITION BY id ORDER BY valid_from, row_hash) AS prev_kind,
           lag(valid_to) OVER (PARTITION BY id ORDER BY valid_from, row_hash) AS prev_valid_to,
           row_number() OVER (PARTITION BY id ORDER BY valid_from, row_hash) AS n
    FROM versions v
),
islands AS (
    -- One island per stretch of held versions observed back to back, followed by the expired
    -- version that ended it, if any; an expired version after anything else stands alone.
    SELECT o.*,
           sum(CASE WHEN kind <> 'not held' AND prev_kind = 'held' AND prev_valid_to = valid_from
                    THEN 0 ELSE 1 END)
               OVER (PARTITION BY id ORDER BY valid_from, row_hash
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS island,
           -- The observation that ended this version's holding: a held version holds until
           -- its valid_to; an expired one was seen not held from its valid_from.
           CASE WHEN kind = 'held' THEN valid_to ELSE valid_from END AS seen_ending
    FROM ordered o
),
spans AS (
    SELECT id, island,
           min(n) AS first_n,
           min(valid_from) AS first_seen,
           first_value(schedule_start_date_time ORDER BY valid_from, row_hash) AS scheduled_start,
           last_value(schedule_expiration_end_date_time ORDER BY valid_from, row_hash) AS scheduled_end,
           last_value(seen_ending ORDER BY valid_from, row_hash) AS gone_at,
           min(expired_date_time) AS expired_at,
           max(CASE WHEN kind = 'held' THEN valid_from END) AS last_held_version_from
    FROM islands
    WHERE kind <> 'not held'
    GROUP BY id, island
),
-- The latest snapshot strictly before a time, looked up on one sorted timeline: before the
-- island's first observation (seen_before) and before the one that showed it gone (the last
-- snapshot that still showed it held).
probes AS (
    SELECT id, island, 'before' AS probe, first_seen AS t FROM spans
    UNION ALL
    SELECT id, island, 'gone' AS probe, gone_at AS t FROM spans WHERE gone_at IS NOT NULL
),
timeline AS (
    SELECT id, island, probe, t, 0 AS is_observation FROM probes
    UNION ALL
    SELECT CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT), CAST(NULL AS VARCHAR), observed_at, 1
    FROM observations
),
looked_up AS (
    SELECT id, island, probe,
           max(CASE WHEN is_observation = 1 THEN t END)
               OVER (ORDER BY t, is_observation
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS observed_before
    FROM timeline
),
bounds AS (
    SELECT s.id, s.island,
           max(CASE WHEN l.probe = 'before' THEN l.observed_before END) AS seen_before,
           -- The last snapshot that showed the island held.
           CASE WHEN s.last_held_version_from IS NOT NULL
                THEN greatest(s.last_held_version_from,
                              CASE WHEN s.gone_at IS NULL THEN max(n.latest)
                                   ELSE max(CASE WHEN l.probe = 'gone' THEN l.observed_before END) END)
                END AS seen_held
    FROM spans s
    JOIN looked_up l ON l.id = s.id AND l.island = s.island
    CROSS JOIN (SELECT max(observed_at) AS latest FROM observations) n
    GROUP BY s.id, s.island, s.gone_at, s.last_held_version_from
),
held AS (
    SELECT s.id, s.island,
           CASE WHEN s.first_n > 1
                THEN greatest(coalesce(s.scheduled_start, s.first_seen),
                              b.seen_before + INTERVAL '1 microsecond')
                ELSE coalesce(s.scheduled_start, s.first_seen) END AS held_from,
           least(s.expired_at, s.gone_at,
                 CASE WHEN b.seen_held IS NULL OR s.scheduled_end > b.seen_held
                      THEN s.scheduled_end END) AS held_to
    FROM spans s
    JOIN bounds b ON b.id = s.id AND b.island = s.island
),
at_as_of AS (
    SELECT i.*, h.held_from, h.held_to,
           row_number() OVER (
               PARTITION BY i.id, i.island
               ORDER BY CASE WHEN i.valid_from <= CAST($as_of AS TIMESTAMP) THEN i.valid_from END DESC NULLS LAST,
                        i.valid_from, i.row_hash) AS pick
    FROM held h
    JOIN islands i ON i.id = h.id AND i.island = h.island AND i.kind <> 'not held'
    WHERE h.held_from <= CAST($as_of AS TIMESTAMP)
      AND (h.held_to IS NULL OR h.held_to > CAST($as_of AS TIMESTAMP))
)
SELECT
    access_package_id,
    access_package_display_name AS access_package_name,
    target_object_id AS user_object_id,
    target_principal_name AS user_principal_name,
    id AS assignment_id,
    state,
    schedule_start_date_time,
    schedule_expiration_end_date_time,
    valid_from AS observed_from,
    valid_to AS observed_to,
    held_from,
    held_to
FROM at_as_of
WHERE pick = 1
ORDER BY access_package_name, user_principal_name, assignment_id, held_from
