-- sod_history: since when, and until when, did each user hold both sides of an incompatible pair?
--
-- Answers: "Since when did this user hold both Initiator and Approver — and was it ever fixed?"
-- One row per (user, pair, maximal interval in which both were held). Pairs are every
-- incompatibility ever observed (declared now or earlier), each once
-- (access_package_id < incompatible_access_package_id).
-- Columns: user_object_id, user_principal_name (as last observed), access_package_id,
--   incompatible_access_package_id, both_from, both_to (NULL: still both held), open.
-- Rules: an assignment is held on [start, end) by the holding rule of access_as_of.sql:
--   * held states delivered / partiallyDelivered; expired is held before its expiry; other
--     states are not held;
--   * start = the schedule's startDateTime (failing that, first observation); after a
--     snapshot showed the same assignment not held or gone, only from just after (1 µs) the
--     last such snapshot;
--   * end = the earliest of expiredDateTime and the snapshot that showed it gone (missing
--     from a complete snapshot, or in a state that is not held); the schedule's end counts
--     only when no snapshot showed it still held after that time;
--   * an assignment first observed already expired contributes [start, expiredDateTime), so
--     an interval that ended before govlake's first snapshot still appears, closed;
--   * an interval still held at the latest snapshot is open (both_to NULL), even when a
--     scheduled end lies ahead: that end has not been observed.
--   A user's assignments of one package are merged; intervals that touch or overlap are one.
-- Caveats: snapshots are the `_ingest_runs` rows of runs that read assignments plus the
--   valid_from/valid_to of assignments_history; between them govlake knows only the dates the
--   assignments carry.
WITH pairs AS (
    SELECT DISTINCT
        least(access_package_id, incompatible_access_package_id) AS package_a,
        greatest(access_package_id, incompatible_access_package_id) AS package_b
    FROM incompatible_access_packages_history
    WHERE access_package_id <> incompatible_access_package_id
),
observations AS (
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
    SELECT o.*,
           sum(CASE WHEN kind <> 'not held' AND prev_kind = 'held' AND prev_valid_to = valid_from
                    THEN 0 ELSE 1 END)
               OVER (PARTITION BY id ORDER BY valid_from, row_hash
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS island,
           CASE WHEN kind = 'held' THEN valid_to ELSE valid_from END AS seen_ending
    FROM ordered o
),
spans AS (
    SELECT id, island,
           first_value(target_object_id ORDER BY valid_from, row_hash) AS user_object_id,
           first_value(access_package_id ORDER BY valid_from, row_hash) AS access_package_id,
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
held_until AS (
    SELECT s.user_object_id, s.access_package_id,
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
held AS (
    -- Still held at the latest snapshot: open, whatever end its dates foresee.
    SELECT h.user_object_id, h.access_package_id, h.held_from,
           CASE WHEN h.held_to > n.latest THEN NULL ELSE h.held_to END AS held_to
    FROM held_until h
    CROSS JOIN (SELECT max(observed_at) AS latest FROM observations) n
),
both_held AS (
    SELECT x.user_object_id, p.package_a, p.package_b,
           greatest(x.held_from, y.held_from) AS both_from,
           CASE WHEN x.held_to IS NULL THEN y.held_to
                WHEN y.held_to IS NULL THEN x.held_to
                ELSE least(x.held_to, y.held_to) END AS both_to
    FROM pairs p
    JOIN held x ON x.access_package_id = p.package_a
    JOIN held y ON y.access_package_id = p.package_b AND y.user_object_id = x.user_object_id
),
overlaps AS (
    SELECT * FROM both_held WHERE both_to IS NULL OR both_from < both_to
),
starts AS (
    -- Merge intervals that touch or overlap: a new interval starts where no earlier one
    -- reaches.
    SELECT o.*,
           CASE WHEN sum(CASE WHEN both_to IS NULL THEN 1 ELSE 0 END)
                         OVER (PARTITION BY user_object_id, package_a, package_b
                               ORDER BY both_from, both_to
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > 0
                  OR max(both_to)
                         OVER (PARTITION BY user_object_id, package_a, package_b
                               ORDER BY both_from, both_to
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) >= both_from
                THEN 0 ELSE 1 END AS starts_new
    FROM overlaps o
),
merged AS (
    SELECT s.*,
           sum(starts_new) OVER (PARTITION BY user_object_id, package_a, package_b
                                 ORDER BY both_from, both_to
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS grp
    FROM starts s
),
intervals AS (
    SELECT user_object_id, package_a, package_b, min(both_from) AS both_from,
           CASE WHEN bool_or(both_to IS NULL) THEN NULL ELSE max(both_to) END AS both_to
    FROM merged
    GROUP BY user_object_id, package_a, package_b, grp
),
names AS (
    SELECT target_object_id,
           first_value(target_principal_name ORDER BY valid_from DESC, id DESC, row_hash DESC) AS user_principal_name
    FROM assignments_history
    GROUP BY target_object_id
)
SELECT i.user_object_id, n.user_principal_name, i.package_a AS access_package_id,
       i.package_b AS incompatible_access_package_id, i.both_from, i.both_to,
       i.both_to IS NULL AS open
FROM intervals i
LEFT JOIN names n ON n.target_object_id = i.user_object_id
ORDER BY i.user_object_id, i.package_a, i.package_b, i.both_from
