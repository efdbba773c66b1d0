-- approval_trail: every step of every access package request, who acted, when and why.
--
-- Answers: "For each grant of Financial Analyst - Standard, who approved it and why?"
-- One row per request step, rebuilt from the audit log (app-only Graph access cannot read
-- approval stages): submitted, approved (stage n), escalated, denied, timed out,
-- auto-approved, approvals complete, fulfilled, removed, custom extension.
-- Link rule (the one place it lives): an audit event belongs to a request when one of its
--   target resources of type AccessPackageAssignmentRequest carries the request id, else
--   when its additionalDetails key RequestId does.
-- Columns: request_id, request_type, requestor_principal_name, target_object_id,
--   access_package_id, access_package_name, assignment_policy_id, created_date_time,
--   completed_date_time, request_state, requestor_justification, step, stage, actor,
--   step_time, step_justification, external_correlation_id, self_approved,
--   admin_direct_grant, approval_missing.
-- Flags: self_approved — the approver is the target or the requestor; admin_direct_grant —
--   an administrator assigned the package directly (adminAdd: no request, no approval);
--   approval_missing — the policy required approval for the request, the request was
--   granted, yet no approval (manual or automatic) is in the audit trail.
-- A request with no linked audit event still appears, once, with step
--   'no audit events captured' (an evidence gap, not a pass).
-- Caveats: requests older than Graph's 3-month retention are kept only if govlake captured
--   them; audit events older than 30 days only if captured or backfilled. The policy's
--   approval setting is the version in force when the request was created, else the
--   earliest version govlake observed.
WITH linked AS (
    SELECT audit_event_id AS event_id, target_id AS request_id
    FROM audit_event_target_resources
    WHERE type = 'AccessPackageAssignmentRequest'
    UNION
    SELECT audit_event_id, value
    FROM audit_event_additional_details
    WHERE key = 'RequestId'
),
details AS (
    SELECT
        audit_event_id,
        max(CASE WHEN key = 'ApprovalStage' THEN value END) AS stage,
        max(CASE WHEN key = 'Justification' THEN value END) AS justification,
        max(CASE WHEN key = 'ExternalCorrelationId' THEN value END) AS external_correlation_id,
        max(CASE WHEN key = 'Escalation' THEN value END) AS escalation
    FROM audit_event_additional_details
    WHERE key IN ('ApprovalStage', 'Justification', 'ExternalCorrelationId', 'Escalation')
    GROUP BY audit_event_id
),
-- Only the columns the trail shows, so the joins below carry narrow rows.
steps AS (
    SELECT l.request_id, e.id AS event_id, e.activity_display_name, e.activity_date_time,
           e.initiated_by_user_id,
           coalesce(e.initiated_by_user_user_principal_name, e.initiated_by_app_display_name) AS actor,
           d.stage, d.justification, d.external_correlation_id, d.escalation
    FROM linked l
    JOIN audit_events e ON e.id = l.event_id
    LEFT JOIN details d ON d.audit_event_id = e.id
),
policy_versions AS (
    SELECT id, valid_from, valid_to,
           request_approval_settings_is_approval_required_for_add AS approval_required,
           row_number() OVER (PARTITION BY id ORDER BY valid_from) AS n
    FROM assignment_policies_history
),
request_policy AS (
    SELECT r.id AS request_id,
           coalesce(
               max(CASE WHEN v.valid_from <= r.created_date_time
                         AND (v.valid_to IS NULL OR v.valid_to > r.created_date_time)
                        THEN CAST(v.approval_required AS INT) END),
               max(CASE WHEN v.n = 1 THEN CAST(v.approval_required AS INT) END)) = 1 AS approval_required
    FROM assignment_requests r
    JOIN policy_versions v ON v.id = r.assignment_policy_id
    GROUP BY r.id
),
approvals AS (
    SELECT request_id, count(*) AS approvals
    FROM steps
    WHERE activity_display_name IN ('Approve access package assignment request',
        'Auto approve access package assignment request')
    GROUP BY request_id
)
SELECT
    r.id AS request_id,
    r.request_type,
    r.requestor_principal_name,
    r.assignment_target_object_id AS target_object_id,
    r.access_package_id,
    r.access_package_display_name AS access_package_name,
    r.assignment_policy_id,
    r.created_date_time,
    r.completed_date_time,
    r.state AS request_state,
    r.justification AS requestor_justification,
    CASE
        WHEN s.activity_display_name IN ('User requests access package assignment',
            'Administrator directly assigns user to access package') THEN 'submitted'
        WHEN s.activity_display_name = 'Approve access package assignment request' THEN 'approved'
        WHEN s.activity_display_name = 'Deny access package assignment request' THEN 'denied'
        WHEN s.activity_display_name = 'Auto approve access package assignment request' THEN 'auto-approved'
        WHEN s.activity_display_name LIKE '%timed out%' THEN 'timed out'
        WHEN s.activity_display_name = 'Add approver to request approval' AND s.escalation = 'true' THEN 'escalated'
        WHEN s.activity_display_name = 'Ready to fulfill access package assignment request' THEN 'approvals complete'
        WHEN s.activity_display_name LIKE 'Fulfill access package%' THEN 'fulfilled'
        WHEN s.activity_display_name LIKE '%removes access package assignment%'
          OR s.activity_display_name LIKE 'Remove access package assignment%' THEN 'removed'
        WHEN s.activity_display_name = 'Execute custom extension' THEN 'custom extension'
        WHEN s.event_id IS NULL THEN 'no audit events captured'
        ELSE s.activity_display_name
    END AS step,
    s.stage,
    s.actor,
    s.activity_date_time AS step_time,
    s.justification AS step_justification,
    s.external_correlation_id,
    s.activity_display_name = 'Approve access package assignment request'
        AND s.initiated_by_user_id IN (r.assignment_target_object_id, r.requestor_object_id) AS self_approved,
    r.request_type = 'adminAdd' AS admin_direct_grant,
    coalesce(rp.approval_required, false)
        AND r.request_type = 'userAdd'
        AND r.state IN ('delivered', 'partiallyDelivered', 'delivering', 'scheduled')
        AND coalesce(a.approvals, 0) = 0 AS approval_missing
FROM assignment_requests r
LEFT JOIN steps s ON s.request_id = r.id
LEFT JOIN request_policy rp ON rp.request_id = r.id
LEFT JOIN approvals a ON a.request_id = r.id
ORDER BY r.created_date_time, r.id, s.activity_date_time, s.event_id
