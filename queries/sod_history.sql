-- sod_history: since when, and until when, did each user hold both sides of an incompatible pair?
--
-- Answers: "Since when did this user hold both Initiator and Approver — and was it ever fixed?"
-- One row per (user, pair, interval in which both were held). Pairs are every incompatibility
-- ever observed (declared now or earlier).
-- Columns: user_object_id, user_principal_name, access_package_id,
--   incompatible_access_package_id, both_from, both_to (NULL: still both held), open.
-- Caveats: intervals come from the assignment history as observed by govlake's snapshots; an
--   assignment's first observed version counts from its scheduled start. Consecutive versions
--   of one assignment (a status change) give consecutive intervals.
WITH pairs AS (
    SELECT DISTINCT
        least(access_package_id, incompatible_access_package_id) AS package_a,
        greatest(access_package_id, incompatible_access_package_id) AS package_b
    FROM incompatible_access_packages_history
    WHERE access_package_id <> incompatible_access_package_id
),
versions AS (
    SELECT
        target_object_id AS user_object_id,
        target_principal_name,
        access_package_id,
        CASE WHEN row_number() OVER (PARTITION BY id ORDER BY valid_from) = 1
             THEN coalesce(least(schedule_start_date_time, valid_from), valid_from)
             ELSE valid_from END AS held_from,
        least(valid_to, expired_date_time) AS held_to,
        state
    FROM assignments_history
),
held AS (
    SELECT * FROM versions WHERE state IN ('delivered', 'partiallyDelivered')
),
both_held AS (
    SELECT
        x.user_object_id,
        x.target_principal_name AS user_principal_name,
        p.package_a AS access_package_id,
        p.package_b AS incompatible_access_package_id,
        greatest(x.held_from, y.held_from) AS both_from,
        least(x.held_to, y.held_to) AS both_to
    FROM pairs p
    JOIN held x ON x.access_package_id = p.package_a
    JOIN held y ON y.access_package_id = p.package_b AND y.user_object_id = x.user_object_id
)
SELECT user_object_id, user_principal_name, access_package_id, incompatible_access_package_id,
       both_from, both_to, both_to IS NULL AS open
FROM both_held
WHERE both_to IS NULL OR both_from < both_to
ORDER BY user_object_id, access_package_id, both_from
