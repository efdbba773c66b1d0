-- access_as_of: who held each access package at a given time?
--
-- Answers: "Everyone who held Financial Analyst - Standard on 30 September."
-- Parameter: $as_of (a timestamp, e.g. --param as_of=2026-09-30T23:59:59Z).
-- Columns: access_package_id, access_package_name, user_object_id, user_principal_name,
--   assignment_id, state, schedule_start_date_time, schedule_expiration_end_date_time,
--   observed_from, observed_to.
-- Caveats: built from the assignment history as observed by govlake's snapshots
--   (valid_from/valid_to are observation times); an assignment's first observed version
--   counts from its scheduled start. Expired assignments count until expired_date_time.
SELECT
    h.access_package_id,
    h.access_package_display_name AS access_package_name,
    h.target_object_id AS user_object_id,
    h.target_principal_name AS user_principal_name,
    h.id AS assignment_id,
    h.state,
    h.schedule_start_date_time,
    h.schedule_expiration_end_date_time,
    h.valid_from AS observed_from,
    h.valid_to AS observed_to
FROM assignments_history h
WHERE h.state IN ('delivered', 'partiallyDelivered')
  -- A version counts from when it was observed; the first version of an assignment counts
  -- from its scheduled start, so access granted before govlake's first snapshot is covered.
  AND (h.valid_from <= CAST($as_of AS TIMESTAMP)
       OR (h.schedule_start_date_time <= CAST($as_of AS TIMESTAMP)
           AND NOT EXISTS (SELECT 1 FROM assignments_history e
                           WHERE e.id = h.id AND e.valid_from < h.valid_from)))
  AND (h.valid_to IS NULL OR h.valid_to > CAST($as_of AS TIMESTAMP))
  AND (h.expired_date_time IS NULL OR h.expired_date_time > CAST($as_of AS TIMESTAMP))
ORDER BY access_package_name, user_principal_name, assignment_id
