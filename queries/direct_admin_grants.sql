-- direct_admin_grants: access granted by an administrator outside the request-and-approve flow.
--
-- Answers: "Which grants bypassed approval, who made them and why?"
-- Columns: request_id, created_date_time, access_package_id, access_package_name,
--   target_object_id, granted_by, justification, state, assignment_id.
-- Caveats: adminAdd requests as captured; Graph keeps completed requests 3 months.
SELECT r.id AS request_id, r.created_date_time, r.access_package_id,
       r.access_package_display_name AS access_package_name,
       r.assignment_target_object_id AS target_object_id,
       r.requestor_principal_name AS granted_by, r.justification, r.state, r.assignment_id
FROM assignment_requests r
WHERE r.request_type = 'adminAdd'
ORDER BY r.created_date_time, r.id
