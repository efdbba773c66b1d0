-- expiration_compliance: access that outlived its scheduled end, and grants that never end.
--
-- Answers: "Which grants outlived their expiry? Which policies grant access forever?"
-- One row per finding: `overdue` (delivered past its scheduled end), `no expiration` (a
-- delivered assignment whose policy has none), `guest over 90 days` (a connected-organization
-- user holding access longer than 90 days).
-- Columns: finding, assignment_id, access_package_id, access_package_name, user_object_id,
--   user_principal_name, assignment_policy_id, scheduled_end, days_overdue, observed_at.
-- Caveats: days are counted to the time the snapshot was observed (valid_from of the
--   current version is no later than that), not to today.
WITH now_ AS (SELECT max(valid_from) AS observed_at FROM assignments_history),
current_assignments AS (
    SELECT a.*, n.observed_at FROM assignments a CROSS JOIN now_ n
    WHERE a.state IN ('delivered', 'partiallyDelivered')
)
SELECT 'overdue' AS finding, a.id AS assignment_id, a.access_package_id,
       a.access_package_display_name AS access_package_name, a.target_object_id AS user_object_id,
       a.target_principal_name AS user_principal_name, a.assignment_policy_id,
       a.schedule_expiration_end_date_time AS scheduled_end,
       CAST(date_part('epoch', a.observed_at - a.schedule_expiration_end_date_time) / 86400 AS BIGINT) AS days_overdue,
       a.observed_at
FROM current_assignments a
WHERE a.schedule_expiration_end_date_time < a.observed_at
UNION ALL
SELECT 'no expiration', a.id, a.access_package_id, a.access_package_display_name, a.target_object_id,
       a.target_principal_name, a.assignment_policy_id, CAST(NULL AS TIMESTAMP), CAST(NULL AS BIGINT), a.observed_at
FROM current_assignments a
JOIN assignment_policies p ON p.id = a.assignment_policy_id
WHERE p.expiration_type = 'noExpiration'
UNION ALL
SELECT 'guest over 90 days', a.id, a.access_package_id, a.access_package_display_name, a.target_object_id,
       a.target_principal_name, a.assignment_policy_id, a.schedule_expiration_end_date_time,
       CAST(date_part('epoch', a.observed_at - a.schedule_start_date_time) / 86400 AS BIGINT) - 90, a.observed_at
FROM current_assignments a
WHERE a.target_connected_organization_id IS NOT NULL
  AND a.schedule_start_date_time < a.observed_at - INTERVAL '90 days'
ORDER BY finding, assignment_id
