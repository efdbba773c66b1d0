-- approval_trail: every step of every access package request, who acted, when and why.
--
-- Answers: "For each grant of Financial Analyst - Standard, who approved it and why?"
-- One row per request step, rebuilt from the audit log (app-only Graph access cannot read
-- approval stages): submitted, approved (stage n), escalated, denied, timed out,
-- auto-approved, stage completed, approvals complete, fulfilled, partially fulfilled,
-- scheduled, canceled, failed, removal requested, removed, custom extension; other activity
-- names are kept as they are.
-- Link rule (approval_latency and direct_admin_grants share it): an audit event belongs to
--   a request when one of its target resources of type AccessPackageAssignmentRequest (any
--   case) carries the request id, or when its additionalDetails key RequestId does; an
--   event may belong to several requests. The ingest stores each event's links in
--   audit_event_requests, with the event's columns the trail shows (a lake of format 1 or 2
--   is read through the same rules in SQL until `govlake migrate` stores them).
-- Columns: request_id, request_type, requestor_principal_name, target_object_id,
--   access_package_id, access_package_name, assignment_policy_id, created_date_time,
--   completed_date_time, request_state, requestor_justification, step, stage, actor,
--   step_time, step_justification, external_correlation_id, self_approved,
--   admin_direct_grant, approval_missing, step_result, stages_required, stages_approved.
-- Rules:
--   * An audit event whose result is not `success` (failure, timeout, none recorded) is shown
--     as a step with its result appended ('approved (failure)'), and it counts for nothing:
--     it approves no stage and is never self_approved.
--   * Policy version in force: each assignment_policies_history version is in force from
--     its own modifiedDateTime when that lies between the previous version's observation
--     and its own (the change is dated), else from its observation (valid_from), until the
--     next version's start. A request is judged by the version in force when it was created;
--     one older than govlake's first observation of the policy by the earliest version; one
--     newer than the policy's last version (policy deleted) by the last. Its stages are the
--     policy_approval_stages_history rows observed at the request's creation (at that
--     version's first observation when the request falls outside the version's observed
--     interval).
--   * Which requests need approval: add requests (userAdd, onBehalfAdd) when that version has
--     isApprovalRequiredForAdd; update and extend requests (userUpdate, userExtend) when it
--     has isApprovalRequiredForUpdate. Administrator (adminAdd, adminUpdate) and system
--     requests bypass approval by design; adminAdd is flagged admin_direct_grant.
--   * stages_required: the number of approval stages of that version (at least 1 when
--     approval is required; 0 when it is not). stages_approved: distinct stage numbers
--     1..stages_required carried (additionalDetails ApprovalStage) by successful
--     'Approve access package assignment request' events, plus successful approval events
--     without a stage number, each filling one more stage.
--   * approval_missing: the request needs approval, was granted (state delivered,
--     partiallyDelivered, delivering or scheduled), has no successful
--     'Auto approve access package assignment request' event, and stages_approved is less
--     than stages_required (a two-stage policy with only stage 1 approved is missing).
--   * self_approved: a successful approval by the target or the requestor (false, never NULL,
--     when an id is unknown or an app approved).
--   * 'Administrator directly removes user access package assignment', 'Entitlement
--     Management removes access package assignment request for user' and 'Remove access
--     package assignment ...' are the step 'removed'.
-- A request with no linked audit event still appears, once, with step
--   'no audit events captured' (an evidence gap, not a pass).
-- Caveats: requests older than Graph's 3-month retention are kept only if govlake captured
--   them; audit events older than 30 days only if captured or backfilled. Policy versions are
--   as observed (valid_from/valid_to are observation times): a change between two snapshots
--   whose modifiedDateTime is not in that window is dated at the later snapshot. A request
--   whose policy govlake never observed needs no approval here (stages_required 0).
--   'Approval stage completed ...' events are shown but do not count as approvals.
--   Steps are read from audit_event_requests alone: the link of an event whose own commit
--   an ingest killed midway did not make is shown from its copy of the event's columns
--   until the rerun stores the event (a lake of format 1 or 2 shows only stored events).
WITH steps AS (
    -- Each linked event's step, as audit_event_requests stores it with the link (the event's
    -- columns, and the greatest value of each of its additionalDetails ApprovalStage,
    -- Justification, ExternalCorrelationId and Escalation).
    SELECT request_id, audit_event_id AS event_id, activity_display_name, activity_date_time,
           initiated_by_user_id, result,
           coalesce(result = 'success', false) AS succeeded,
           coalesce(initiated_by_user_user_principal_name, initiated_by_app_display_name) AS actor,
           approval_stage AS stage, TRY_CAST(trim(approval_stage) AS BIGINT) AS stage_number,
           justification, external_correlation_id, escalation
    FROM audit_event_requests
),
-- Each policy version's effective interval: from its own modifiedDateTime when that falls
-- between the previous observation and this one (the change is dated), else from the
-- observation (valid_from); until the next version's start.
policy_versions AS (
    SELECT id, valid_from, valid_to,
           request_approval_settings_is_approval_required_for_add AS approval_add,
           request_approval_settings_is_approval_required_for_update AS approval_update,
           CASE WHEN modified_date_time > lag(valid_from) OVER (PARTITION BY id ORDER BY valid_from)
                 AND modified_date_time < valid_from
                THEN modified_date_time ELSE valid_from END AS effective_from
    FROM assignment_policies_history
),
policy_effective AS (
    SELECT *,
           coalesce(lead(effective_from) OVER (PARTITION BY id ORDER BY valid_from), valid_to)
               AS effective_to
    FROM policy_versions
),
-- The version each request is judged by: the one in force at its creation, else the last
-- one begun before it (policy deleted), else the first one observed.
-- Each request's candidate policy versions, best first; the first row of each request is
-- the one it is read against. (One window over all rows ordered by request rather than
-- row_number() PARTITION BY request: the same first row, without a window state per
-- request, which cost ~5 µs each.)
request_version AS (
    SELECT r.id AS request_id, r.request_type, r.created_date_time, v.id AS policy_id,
           v.valid_from, v.valid_to, v.approval_add, v.approval_update,
           coalesce(lag(r.id) OVER (
               ORDER BY r.id,
                        CASE WHEN v.effective_from <= r.created_date_time
                              AND (v.effective_to IS NULL OR v.effective_to > r.created_date_time) THEN 0
                             WHEN v.effective_from <= r.created_date_time THEN 1
                             ELSE 2 END,
                        CASE WHEN v.effective_from <= r.created_date_time THEN v.effective_from END DESC NULLS LAST,
                        v.effective_from, v.valid_from) <> r.id, true) AS first_of_request
    FROM assignment_requests r
    JOIN policy_effective v ON v.id = r.assignment_policy_id
),
request_policy AS (
    SELECT request_id, policy_id,
           -- When the stages are read: the request's creation if that version was observed
           -- then, else the version's first observation.
           CASE WHEN created_date_time >= valid_from
                 AND (valid_to IS NULL OR created_date_time < valid_to)
                THEN created_date_time ELSE valid_from END AS stages_at,
           coalesce(CASE
               WHEN request_type IN ('userAdd', 'onBehalfAdd') THEN approval_add
               WHEN request_type IN ('userUpdate', 'userExtend') THEN approval_update
               ELSE false END, false) AS approval_required
    FROM request_version
    WHERE first_of_request
),
-- Each request's stages required: the number of that version's stages observed at
-- stages_at (at least 1 when approval is required; 0 when it is not). One reference to
-- request_policy, so its window over every request runs once.
requirement AS (
    SELECT rp.request_id,
           CASE WHEN coalesce(rp.approval_required, false)
                THEN greatest(count(DISTINCT s.stage_number), 1) ELSE 0 END AS stages_required
    FROM request_policy rp
    LEFT JOIN policy_approval_stages_history s ON s.policy_id = rp.policy_id
        AND s.valid_from <= rp.stages_at AND (s.valid_to IS NULL OR s.valid_to > rp.stages_at)
    GROUP BY rp.request_id, rp.approval_required
),
-- Per request, distinct: auto-approved, each approved stage number, and each approval that
-- names no stage (counted against the stages required in approvals). (Distinct rows first,
-- then plain counts: count(DISTINCT ...) per request kept a set per request, ~50 µs each.)
approval_keys AS (
    SELECT DISTINCT s.request_id,
           CASE WHEN s.activity_display_name = 'Auto approve access package assignment request'
                THEN 1 ELSE 0 END AS auto,
           CASE WHEN s.activity_display_name = 'Approve access package assignment request'
                THEN s.stage_number END AS stage_number,
           CASE WHEN s.activity_display_name = 'Approve access package assignment request'
                 AND s.stage_number IS NULL
                THEN s.event_id END AS unstaged_event
    FROM steps s
    WHERE s.succeeded
      AND s.activity_display_name IN ('Approve access package assignment request',
          'Auto approve access package assignment request')
),
-- Requirement and approvals side by side (a request whose policy was never observed has
-- approvals but no requirement; one with no approval event, a requirement only).
approvals AS (
    SELECT coalesce(q.request_id, k.request_id) AS request_id,
           q.stages_required,
           max(k.auto) = 1 AS auto_approved,
           count(CASE WHEN k.stage_number BETWEEN 1 AND coalesce(q.stages_required, 0)
                        OR k.unstaged_event IS NOT NULL THEN 1 END) AS stages_approved
    FROM requirement q
    FULL JOIN approval_keys k ON k.request_id = q.request_id
    GROUP BY coalesce(q.request_id, k.request_id), q.stages_required
),
labelled AS (
    SELECT s.*,
        CASE
            WHEN s.activity_display_name IN ('User requests access package assignment',
                'User requests an access package assignment on behalf of service principal',
                'User requests to extend access package assignment',
                'Create access package assignment user update request',
                'Administrator directly assigns user to access package',
                'Entitlement Management creates access package assignment request for user') THEN 'submitted'
            WHEN s.activity_display_name = 'User requests to remove access package assignment' THEN 'removal requested'
            WHEN s.activity_display_name = 'Approve access package assignment request' THEN 'approved'
            WHEN s.activity_display_name = 'Deny access package assignment request' THEN 'denied'
            WHEN s.activity_display_name = 'Auto approve access package assignment request' THEN 'auto-approved'
            WHEN s.activity_display_name LIKE '%timed out%' THEN 'timed out'
            WHEN s.activity_display_name = 'Add approver to request approval' AND s.escalation = 'true' THEN 'escalated'
            WHEN s.activity_display_name = 'Approval stage completed for access package assignment request' THEN 'stage completed'
            WHEN s.activity_display_name = 'Ready to fulfill access package assignment request' THEN 'approvals complete'
            WHEN s.activity_display_name LIKE 'Fulfill access package%' THEN 'fulfilled'
            WHEN s.activity_display_name LIKE 'Partially fulfill access package%' THEN 'partially fulfilled'
            WHEN s.activity_display_name = 'Schedule a future access package assignment' THEN 'scheduled'
            WHEN s.activity_display_name = 'Cancel access package assignment request' THEN 'canceled'
            WHEN s.activity_display_name = 'Failed access package assignment request' THEN 'failed'
            WHEN s.activity_display_name LIKE '%directly removes%'
              OR s.activity_display_name LIKE '%removes access package assignment%'
              OR s.activity_display_name LIKE 'Remove access package assignment%' THEN 'removed'
            WHEN s.activity_display_name = 'Execute custom extension' THEN 'custom extension'
            ELSE s.activity_display_name
        END AS label
    FROM steps s
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
        WHEN s.event_id IS NULL THEN 'no audit events captured'
        WHEN s.succeeded THEN s.label
        ELSE concat(s.label, ' (', coalesce(s.result, 'no result'), ')')
    END AS step,
    s.stage,
    s.actor,
    s.activity_date_time AS step_time,
    s.justification AS step_justification,
    s.external_correlation_id,
    coalesce(s.succeeded
        AND s.activity_display_name = 'Approve access package assignment request'
        AND (s.initiated_by_user_id = r.assignment_target_object_id
             OR s.initiated_by_user_id = r.requestor_object_id), false) AS self_approved,
    r.request_type = 'adminAdd' AS admin_direct_grant,
    coalesce(a.stages_required, 0) > 0
        AND r.state IN ('delivered', 'partiallyDelivered', 'delivering', 'scheduled')
        AND NOT coalesce(a.auto_approved, false)
        AND coalesce(a.stages_approved, 0) < a.stages_required AS approval_missing,
    s.result AS step_result,
    coalesce(a.stages_required, 0) AS stages_required,
    coalesce(a.stages_approved, 0) AS stages_approved
-- (Requests with their approvals first, one row each, then their steps: the steps are a scan
-- whose estimated size DataFusion reads from the whole table's files, and joined to the
-- bare requests they were taken for the smaller side and hashed, 3.6 GB at 10M audit events.)
FROM assignment_requests r
LEFT JOIN approvals a ON a.request_id = r.id
LEFT JOIN labelled s ON s.request_id = r.id
ORDER BY r.created_date_time, r.id, s.activity_date_time, s.event_id
