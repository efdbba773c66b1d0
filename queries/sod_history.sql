-- sod_history: since when, and until when, did each user hold both sides of an incompatible pair?
--
-- Answers: "Since when did this user hold both Initiator and Approver — and was it ever fixed?"
-- One row per (user, pair, maximal interval in which both were held). Pairs are every
-- incompatibility ever observed (declared now or earlier), each once
-- (access_package_id < incompatible_access_package_id).
-- Columns: user_object_id, user_principal_name (as last observed), access_package_id,
--   incompatible_access_package_id, both_from, both_to (NULL: still both held), open.
-- Rules:
--   * held: see assignment_holdings (an assignment is held on [start, end), half-open; an
--     assignment first observed already expired contributes [start, expiredDateTime), so an
--     interval that ended before govlake's first snapshot still appears, closed).
--   * An interval still held at the latest snapshot is open (both_to NULL), even when a
--     scheduled end lies ahead: that end has not been observed.
--   * A user's assignments of one package are merged; intervals that touch or overlap are one.
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
-- The latest snapshot (as assignment_holdings counts them).
latest AS (
    SELECT max(observed_at) AS latest
    FROM (SELECT observed_at FROM _ingest_runs
          WHERE table_name = 'assignments' AND (fetched > 0 OR closed > 0)
          UNION
          SELECT valid_from FROM assignments_history
          UNION
          SELECT valid_to FROM assignments_history WHERE valid_to IS NOT NULL) o
),
held AS (
    -- Still held at the latest snapshot: open, whatever end its dates foresee.
    SELECT h.user_object_id, h.access_package_id, h.held_from,
           CASE WHEN h.held_to > n.latest THEN NULL ELSE h.held_to END AS held_to
    -- (The one-row side first: DataFusion's cross join emits a batch per row of its left side.)
    FROM latest n
    CROSS JOIN assignment_holdings h
    -- (Only the packages of a pair: the holdings of every package are held once for both
    -- sides of the join.)
    WHERE h.access_package_id IN (SELECT package_a FROM pairs UNION ALL SELECT package_b FROM pairs)
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
-- The latest name of each user with an overlap (only those: an ordered aggregate over every
-- user's versions cost seconds at 10M audit events).
names AS (
    SELECT target_object_id,
           first_value(target_principal_name ORDER BY valid_from DESC, id DESC, row_hash DESC) AS user_principal_name
    FROM assignments_history
    WHERE target_object_id IN (SELECT user_object_id FROM intervals)
    GROUP BY target_object_id
)
SELECT i.user_object_id, n.user_principal_name, i.package_a AS access_package_id,
       i.package_b AS incompatible_access_package_id, i.both_from, i.both_to,
       i.both_to IS NULL AS open
FROM intervals i
LEFT JOIN names n ON n.target_object_id = i.user_object_id
ORDER BY i.user_object_id, i.package_a, i.package_b, i.both_from
