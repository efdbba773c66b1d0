-- direct_admin_grants: access granted by an administrator outside the request-and-approve flow.
--
-- Answers: "Which grants bypassed approval, who made them and why?"
-- Columns: request_id, created_date_time, access_package_id, access_package_name,
--   target_object_id, granted_by, justification, state, assignment_id, source,
--   audit_event_id.
-- Rules:
--   * source 'assignment request': every adminAdd request govlake captured (any state);
--     granted_by is the requestor (the administrator), audit_event_id is NULL.
--   * source 'audit event': a successful 'Administrator directly assigns user to access
--     package' event whose request is not (or no longer) in assignment_requests (Graph
--     deletes requests 3 months after completion, so the event is the only trace left), or
--     that names no request at all. request_id is the linked request id (NULL when none);
--     created_date_time the event's time; the package and target come from its target
--     resources of type AccessPackage and User; granted_by is the initiator; justification
--     and assignment_id from additionalDetails Justification / AssignmentId; state is NULL
--     (unknown once the request aged out).
--   * An event with a result other than success granted nothing and is not listed.
-- Link rule: as in approval_trail (a target resource of type
--   AccessPackageAssignmentRequest carrying the request id, or additionalDetails RequestId),
--   stored per event in audit_event_requests.
-- Caveats: adminAdd requests older than 3 months exist only if govlake captured them; their
--   events only if captured within 30 days or backfilled (diagnostic-settings archives).
-- Key: source, request_id, audit_event_id
WITH linked AS (
    SELECT audit_event_id AS event_id, request_id
    FROM audit_event_requests
),
admin_events AS (
    SELECT e.id, e.activity_date_time,
           coalesce(e.initiated_by_user_user_principal_name, e.initiated_by_app_display_name) AS granted_by
    FROM audit_events e
    WHERE e.activity_display_name = 'Administrator directly assigns user to access package'
      AND e.result = 'success'
),
event_request AS (
    SELECT e.id AS event_id, min(l.request_id) AS request_id,
           max(CASE WHEN r.id IS NOT NULL THEN 1 ELSE 0 END) = 1 AS request_captured
    FROM admin_events e
    LEFT JOIN linked l ON l.event_id = e.id
    LEFT JOIN assignment_requests r ON r.id = l.request_id
    GROUP BY e.id
),
event_targets AS (
    SELECT audit_event_id,
           min(CASE WHEN lower(type) = 'accesspackage' THEN target_id END) AS access_package_id,
           min(CASE WHEN lower(type) = 'accesspackage' THEN display_name END) AS access_package_name,
           min(CASE WHEN lower(type) = 'user' THEN target_id END) AS target_object_id
    FROM audit_event_target_resources
    WHERE lower(type) IN ('accesspackage', 'user')
    GROUP BY audit_event_id
),
event_details AS (
    SELECT audit_event_id,
           max(CASE WHEN key = 'Justification' THEN value END) AS justification,
           max(CASE WHEN key = 'AssignmentId' THEN value END) AS assignment_id
    FROM audit_event_additional_details
    WHERE key IN ('Justification', 'AssignmentId')
    GROUP BY audit_event_id
)
SELECT r.id AS request_id, r.created_date_time, r.access_package_id,
       r.access_package_display_name AS access_package_name,
       r.assignment_target_object_id AS target_object_id,
       r.requestor_principal_name AS granted_by, r.justification, r.state, r.assignment_id,
       'assignment request' AS source, CAST(NULL AS VARCHAR) AS audit_event_id
FROM assignment_requests r
WHERE r.request_type = 'adminAdd'
UNION ALL
SELECT er.request_id, e.activity_date_time, t.access_package_id, t.access_package_name,
       t.target_object_id, e.granted_by, d.justification, CAST(NULL AS VARCHAR),
       d.assignment_id, 'audit event', e.id
FROM admin_events e
JOIN event_request er ON er.event_id = e.id
LEFT JOIN event_targets t ON t.audit_event_id = e.id
LEFT JOIN event_details d ON d.audit_event_id = e.id
WHERE NOT er.request_captured
ORDER BY created_date_time, request_id, audit_event_id
