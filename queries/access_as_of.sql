-- access_as_of: who held each access package at a given time?
--
-- Answers: "Everyone who held Financial Analyst - Standard on 30 September."
-- Parameter: $as_of (a timestamp, e.g. --param as_of=2026-09-30T23:59:59Z).
-- Columns: access_package_id, access_package_name, user_object_id, user_principal_name,
--   assignment_id, state, schedule_start_date_time, schedule_expiration_end_date_time,
--   observed_from, observed_to (the assignment's version in force at $as_of, or its first
--   version when $as_of precedes it), held_from, held_to (the holding interval, from
--   assignment_holdings; held_to NULL: still held).
-- Rules: held: see assignment_holdings (an assignment is held on [start, end), half-open;
--   held states delivered / partiallyDelivered, expired before its expiry; start and end from
--   the assignment's own dates and the snapshots that showed it held, not held or gone).
--   A row is a holding with held_from <= $as_of < held_to (held_to NULL: still held), shown
--   as its version in force at $as_of.
-- Caveats: between two snapshots govlake knows only the assignment's own dates, so the answer
--   is everyone who may have held access then: only a date or a snapshot that proves
--   otherwise excludes an assignment.
WITH at_as_of AS (
    -- The holding's version in force at $as_of, else its first.
    SELECT v.*, h.held_from, h.held_to,
           row_number() OVER (
               PARTITION BY h.assignment_id, h.first_observed
               ORDER BY CASE WHEN v.valid_from <= CAST($as_of AS TIMESTAMP) THEN v.valid_from END DESC NULLS LAST,
                        v.valid_from, v.row_hash) AS pick
    FROM assignment_holdings h
    JOIN assignments_history v ON v.id = h.assignment_id
        AND v.valid_from >= h.first_observed AND v.valid_from <= h.last_observed
        AND lower(v.state) IN ('delivered', 'partiallydelivered', 'expired')
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
