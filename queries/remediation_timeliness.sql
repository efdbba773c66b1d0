-- remediation_timeliness: when did access that a review removed actually end?
--
-- Answers: "The reviewers denied nine people in the Q2 review: when did each lose access, how
-- many days after the review closed, and who still has it?"
-- One row per decision that required removing access (a Deny, or a NotReviewed decision whose
-- timeout removes access) in a review instance of an access package.
-- Columns: access_package_id, access_package_name, definition_id, instance_id,
--   review_start, review_closed (the instance's start and end), decision_id, principal_id,
--   principal_name, decision, recommendation, apply_result, removal_reason ('denied' or
--   'timeout removes access'), assignments (pre-review assignments found), assignment_ids,
--   status ('remediated', 'open', 'no access observed'), access_ended_at, ended_by ('expiry',
--   'schedule end', 'removal request', 'removal event', 'snapshot'), days_after_close, still_open,
--   failed_remediation, days_open, latest_snapshot.
-- Rules:
--   * Held: see assignment_holdings (an assignment is held on [start, end), half-open),
--     except that a holding that follows a snapshot showing the assignment not held or gone
--     starts no earlier than that snapshot (assignment_holdings: just after it); holdings
--     that leave no time are left out.
--   * Removal required: decision Deny; or NotReviewed when the definition (the version in
--     force when the instance ended, else the earliest observed) auto-applies decisions
--     (autoApplyDecisionsEnabled) with a default decision (defaultDecisionEnabled not false) of
--     Deny, or of Recommendation and the recommendation was Deny; or when the
--     policy's review timeout (review_settings_expiration_behavior, version in force when the
--     instance ended) is removeAccess, or acceptAccessRecommendation and the recommendation was
--     Deny. Decision values are compared case-insensitively.
--   * Pre-review access: the principal's assignments of the package (of the decision's policy,
--     else of the review's scope policy, if any) held at some time between the instance's
--     start and its end.
--   * Open: a pre-review assignment is still held at the lake's latest snapshot of the
--     assignments (latest_snapshot), whatever applyResult says; failed_remediation = open
--     although Graph reported the decision AppliedSuccessfully. days_open counts from the
--     close to the latest snapshot.
--   * Remediated: every pre-review assignment stopped being held; access_ended_at is the
--     latest of their ends, each end being the earliest of: the end of its holding (expiry,
--     schedule end or snapshot, as in the rule above), a delivered adminRemove, systemRemove,
--     userRemove or approverRemove request for it (removal request, at its completedDateTime),
--     and a successful audit event "... removes access package assignment ..." or "Remove
--     access package assignment" linked to it (removal event: additionalDetails AssignmentId,
--     any case, or a request the event is about by approval_trail's link rule, as
--     audit_event_requests stores it: a target of type AccessPackageAssignmentRequest, any
--     case, or additionalDetails RequestId).
--     Evidence from before the instance started is ignored. days_after_close =
--     (access_ended_at - review_closed) in days, 2 decimals; negative when access ended
--     before the review closed.
--   * No pre-review assignment in the history: remediated when a removal request or event for
--     the principal and package (request target / audit targets User and AccessPackage)
--     happened after the instance started, else 'no access observed' (never counted as
--     remediated or failed).
-- Caveats: decisions name a principal, not an assignment: a principal with several
--   assignments of the package is remediated only when all of them ended. An assignment that
--   was removed before govlake's first snapshot is seen only through requests and audit events.
-- Sources: decisions as access_review_decisions lists them (each instance's latest snapshot);
--   instances, definitions, policies and packages from their _history tables (an instance
--   Graph no longer lists is kept as last seen).
--   The latest snapshot is the newest `_ingest_runs` observation of the assignments.
-- Key: instance_id, decision_id
-- Volatile: days_open, latest_snapshot
WITH held AS (
    -- Each stretch of holding of each assignment, with who held what and what ended it.
    SELECT assignment_id, access_package_id, assignment_policy_id, target_object_id,
           target_principal_name, held_from, held_to, ended_by
    FROM (SELECT h.assignment_id, h.access_package_id, h.assignment_policy_id,
                 h.user_object_id AS target_object_id,
                 h.user_principal_name AS target_principal_name,
                 greatest(coalesce(h.scheduled_start, h.first_observed), h.seen_not_held_at)
                     AS held_from,
                 h.held_to, h.ended_by
          FROM assignment_holdings h) x
    WHERE held_to IS NULL OR held_from < held_to
),
-- The lake's latest snapshot of the assignments.
latest AS (
    SELECT max(observed_at) AS observed_at FROM _ingest_runs
    WHERE table_name = 'assignments' AND (fetched > 0 OR closed > 0)
),
instances AS (
    SELECT id AS instance_id, definition_id, start_date_time, end_date_time, scope_query
    FROM (SELECT i.*,
                 row_number() OVER (PARTITION BY i.definition_id, i.id ORDER BY i.valid_from DESC)
                     AS r
          FROM access_review_instances_history i) x
    WHERE r = 1
),
decisions AS (
    SELECT * FROM access_review_decisions
),
definition_at AS (
    SELECT i.instance_id, d.scope_query,
           d.settings_auto_apply_decisions_enabled AS auto_apply,
           d.settings_default_decision_enabled AS default_enabled,
           lower(d.settings_default_decision) AS default_decision,
           row_number() OVER (PARTITION BY i.instance_id ORDER BY
               CASE WHEN d.valid_from <= i.end_date_time
                     AND (d.valid_to IS NULL OR d.valid_to > i.end_date_time) THEN 0 ELSE 1 END,
               d.valid_from) AS r
    FROM instances i
    JOIN access_review_definitions_history d ON d.id = i.definition_id
),
decision_packages AS (
    SELECT instance_id, min(access_package_id) AS access_package_id,
           min(access_package_display_name) AS access_package_name
    FROM decisions
    GROUP BY instance_id
),
review_instances AS (
    SELECT i.instance_id, i.definition_id, i.start_date_time, i.end_date_time,
           coalesce(
               regexp_match(da.scope_query, '(?i)accessPackageId\s+eq\s+''([^'']+)''')[1],
               regexp_match(i.scope_query, '(?i)accessPackageId\s+eq\s+''([^'']+)''')[1],
               dp.access_package_id) AS access_package_id,
           coalesce(
               regexp_match(da.scope_query, '(?i)assignmentPolicyId\s+eq\s+''([^'']+)''')[1],
               regexp_match(i.scope_query, '(?i)assignmentPolicyId\s+eq\s+''([^'']+)''')[1])
               AS scope_policy_id,
           coalesce(da.auto_apply, false) AS auto_apply,
           coalesce(da.default_enabled, true) AS default_enabled,
           da.default_decision
    FROM instances i
    LEFT JOIN definition_at da ON da.instance_id = i.instance_id AND da.r = 1
    LEFT JOIN decision_packages dp ON dp.instance_id = i.instance_id
),
package_names AS (
    SELECT id AS access_package_id, display_name AS access_package_name
    FROM (SELECT p.id, p.display_name,
                 row_number() OVER (PARTITION BY p.id ORDER BY p.valid_from DESC, p.row_hash) AS r
          FROM access_packages_history p) x
    WHERE r = 1
),
policy_at AS (
    SELECT ri.instance_id, p.id AS policy_id,
           lower(p.review_settings_expiration_behavior) AS timeout_behavior,
           row_number() OVER (PARTITION BY ri.instance_id, p.id ORDER BY
               CASE WHEN p.valid_from <= ri.end_date_time
                     AND (p.valid_to IS NULL OR p.valid_to > ri.end_date_time) THEN 0 ELSE 1 END,
               p.valid_from) AS r
    FROM review_instances ri
    JOIN assignment_policies_history p ON p.access_package_id = ri.access_package_id
),
decided AS (
    SELECT ri.access_package_id,
           coalesce(pn.access_package_name, d.access_package_display_name) AS access_package_name,
           ri.definition_id, ri.instance_id, ri.start_date_time, ri.end_date_time,
           d.id AS decision_id, d.principal_id,
           coalesce(nullif(d.principal_user_principal_name, ''), d.principal_display_name)
               AS principal_name,
           d.decision, d.recommendation, d.apply_result,
           lower(d.decision) AS verdict, lower(d.recommendation) AS recommended,
           coalesce(CASE WHEN lower(d.resource_type) = 'accesspackageassignmentpolicy'
                         THEN d.resource_id END, ri.scope_policy_id) AS policy_id,
           ri.auto_apply, ri.default_enabled, ri.default_decision
    FROM decisions d
    JOIN review_instances ri ON ri.instance_id = d.instance_id
    LEFT JOIN package_names pn ON pn.access_package_id = ri.access_package_id
    WHERE ri.access_package_id IS NOT NULL
),
removals AS (
    SELECT x.*
    FROM (
        SELECT d.*,
               CASE
                   WHEN d.verdict = 'deny' THEN 'denied'
                   WHEN d.verdict = 'notreviewed' AND (
                        (d.auto_apply AND d.default_enabled AND (d.default_decision = 'deny'
                            OR (d.default_decision = 'recommendation' AND d.recommended = 'deny')))
                        OR pa.timeout_behavior = 'removeaccess'
                        OR (pa.timeout_behavior = 'acceptaccessrecommendation'
                            AND d.recommended = 'deny'))
                   THEN 'timeout removes access'
               END AS removal_reason
        FROM decided d
        LEFT JOIN policy_at pa ON pa.instance_id = d.instance_id AND pa.policy_id = d.policy_id
            AND pa.r = 1
        -- (No other decision removes access: filtered here, before the joins of `decided`,
        -- not after them, at 4.3M decisions for 10M audit events.)
        WHERE d.verdict IN ('deny', 'notreviewed')
    ) x
    WHERE x.removal_reason IS NOT NULL
),
-- The assignments each removal was about: held at some time while the instance ran.
pre_review_holdings AS (
    SELECT DISTINCT r.instance_id, r.decision_id, r.start_date_time, h.assignment_id
    FROM removals r
    JOIN held h ON h.target_object_id = r.principal_id
        AND h.access_package_id = r.access_package_id
        AND (r.policy_id IS NULL OR h.assignment_policy_id = r.policy_id)
        AND h.held_from < r.end_date_time
        AND (h.held_to IS NULL OR h.held_to > r.start_date_time)
),
-- Each of those assignments' end: still held at the latest snapshot, or when and how its
-- last stretch ended. (Only the assignments removals were about: an aggregate over every
-- assignment's stretches, first_value ordered per group, cost more than the rest of the
-- view at 1M audit events.)
assignment_ends AS (
    SELECT h.assignment_id,
           max(CASE WHEN h.held_to IS NULL OR h.held_to > l.observed_at THEN 1 ELSE 0 END) = 1
               AS still_held,
           first_value(h.held_to ORDER BY h.held_to DESC NULLS FIRST, h.held_from DESC)
               AS last_held_to,
           first_value(h.ended_by ORDER BY h.held_to DESC NULLS FIRST, h.held_from DESC)
               AS last_ended_by
    -- (The one-row side first: DataFusion's cross join emits a batch per row of its left side.)
    FROM latest l
    CROSS JOIN held h
    JOIN (SELECT DISTINCT assignment_id FROM pre_review_holdings) k
        ON k.assignment_id IS NOT DISTINCT FROM h.assignment_id
    GROUP BY h.assignment_id
),
pre_review AS (
    SELECT p.instance_id, p.decision_id, p.start_date_time, p.assignment_id,
           e.still_held, e.last_held_to AS held_to, e.last_ended_by AS ended_by
    FROM pre_review_holdings p
    JOIN assignment_ends e ON e.assignment_id IS NOT DISTINCT FROM p.assignment_id
),
removal_requests AS (
    SELECT id AS request_id, assignment_id, access_package_id,
           assignment_target_object_id AS principal_id,
           coalesce(completed_date_time, created_date_time) AS at
    FROM assignment_requests
    WHERE lower(request_type) IN ('adminremove', 'systemremove', 'userremove', 'approverremove')
      AND lower(state) = 'delivered'
),
removal_events AS (
    SELECT id AS event_id, activity_date_time AS at
    FROM audit_events
    WHERE (lower(activity_display_name) LIKE '%removes%access package assignment%'
           OR lower(activity_display_name) LIKE 'remove access package assignment%')
      AND (result IS NULL OR lower(result) = 'success')
),
event_assignments AS (
    SELECT e.event_id, e.at, a.value AS assignment_id
    FROM removal_events e
    JOIN audit_event_additional_details a ON a.audit_event_id = e.event_id
        AND lower(a.key) = 'assignmentid'
    UNION
    -- The requests an event is about, as the ingest links them (approval_trail's link rule),
    -- with the event's activity, time and result stored with each link.
    SELECT l.audit_event_id AS event_id, l.activity_date_time AS at, q.assignment_id
    FROM audit_event_requests l
    JOIN assignment_requests q ON q.id = l.request_id
    WHERE (lower(l.activity_display_name) LIKE '%removes%access package assignment%'
           OR lower(l.activity_display_name) LIKE 'remove access package assignment%')
      AND (l.result IS NULL OR lower(l.result) = 'success')
),
-- The users and access packages removal events name (the targets read once for both).
removal_targets AS (
    SELECT e.event_id, e.at, lower(t.type) AS type, t.target_id
    FROM removal_events e
    JOIN audit_event_target_resources t ON t.audit_event_id = e.event_id
        AND lower(t.type) IN ('user', 'accesspackage')
),
event_principals AS (
    SELECT u.event_id, u.at, u.target_id AS principal_id, p.target_id AS access_package_id
    FROM removal_targets u
    JOIN removal_targets p ON p.event_id = u.event_id AND p.type = 'accesspackage'
    WHERE u.type = 'user'
),
-- Removal evidence of an assignment.
assignment_evidence AS (
    SELECT assignment_id, at, 'removal request' AS source FROM removal_requests
    UNION ALL
    SELECT assignment_id, at, 'removal event' AS source FROM event_assignments
),
-- Each pre-review assignment's end: its holding's end, or earlier removal evidence from
-- after the instance started.
assignment_outcome AS (
    SELECT instance_id, decision_id, assignment_id, still_held,
           CASE WHEN still_held THEN NULL
                WHEN ev_at IS NOT NULL AND ev_at < held_to THEN ev_at
                ELSE held_to END AS ended_at,
           CASE WHEN still_held THEN NULL
                WHEN ev_at IS NOT NULL AND ev_at < held_to THEN ev_source
                ELSE ended_by END AS ended_by
    FROM (
        SELECT pr.*, ev.at AS ev_at, ev.source AS ev_source,
               row_number() OVER (PARTITION BY pr.instance_id, pr.decision_id, pr.assignment_id
                                  ORDER BY ev.at NULLS LAST, ev.source) AS k
        FROM pre_review pr
        LEFT JOIN assignment_evidence ev ON ev.assignment_id = pr.assignment_id
            AND ev.at >= pr.start_date_time
    ) x
    WHERE k = 1
),
decision_outcome AS (
    SELECT instance_id, decision_id,
           count(*) AS assignments,
           -- The ids in ascending order, space-separated: see review_completeness for why not
           -- string_agg(... ORDER BY assignment_id).
           array_to_string(array_sort(array_agg(assignment_id)
               FILTER (WHERE assignment_id IS NOT NULL)), ' ') AS assignment_ids,
           max(CASE WHEN still_held THEN 1 ELSE 0 END) = 1 AS still_open,
           max(ended_at) AS ended_at,
           max(CASE WHEN k = 1 THEN ended_by END) AS ended_by
    FROM (SELECT a.*,
                 row_number() OVER (PARTITION BY instance_id, decision_id
                                    ORDER BY ended_at DESC NULLS LAST, ended_by, assignment_id) AS k
          FROM assignment_outcome a) x
    GROUP BY instance_id, decision_id
),
-- Without any pre-review assignment in the history: removals seen for principal and package.
principal_evidence AS (
    SELECT r.instance_id, r.decision_id, ev.at, ev.source,
           row_number() OVER (PARTITION BY r.instance_id, r.decision_id
                              ORDER BY ev.at, ev.source) AS k
    FROM removals r
    JOIN (SELECT principal_id, access_package_id, at, 'removal request' AS source
          FROM removal_requests
          UNION ALL
          SELECT principal_id, access_package_id, at, 'removal event' AS source
          FROM event_principals) ev
        ON ev.principal_id = r.principal_id AND ev.access_package_id = r.access_package_id
       AND ev.at >= r.start_date_time
)
SELECT
    r.access_package_id,
    r.access_package_name,
    r.definition_id,
    r.instance_id,
    r.start_date_time AS review_start,
    r.end_date_time AS review_closed,
    r.decision_id,
    r.principal_id,
    r.principal_name,
    r.decision,
    r.recommendation,
    r.apply_result,
    r.removal_reason,
    coalesce(o.assignments, 0) AS assignments,
    o.assignment_ids,
    CASE WHEN o.still_open THEN 'open'
         WHEN o.decision_id IS NOT NULL OR pe.at IS NOT NULL THEN 'remediated'
         ELSE 'no access observed' END AS status,
    CASE WHEN o.still_open THEN NULL ELSE coalesce(o.ended_at, pe.at) END AS access_ended_at,
    CASE WHEN o.still_open THEN NULL ELSE coalesce(o.ended_by, pe.source) END AS ended_by,
    CASE WHEN o.still_open THEN NULL
         ELSE round(date_part('epoch', coalesce(o.ended_at, pe.at) - r.end_date_time) / 86400.0, 2)
    END AS days_after_close,
    coalesce(o.still_open, false) AS still_open,
    coalesce(o.still_open, false) AND lower(r.apply_result) = 'appliedsuccessfully'
        AS failed_remediation,
    CASE WHEN o.still_open
         THEN round(date_part('epoch', l.observed_at - r.end_date_time) / 86400.0, 2) END AS days_open,
    l.observed_at AS latest_snapshot
-- (The one-row side first: DataFusion's cross join emits a batch per row of its left side.)
FROM latest l
CROSS JOIN removals r
LEFT JOIN decision_outcome o ON o.instance_id = r.instance_id AND o.decision_id = r.decision_id
LEFT JOIN principal_evidence pe ON pe.instance_id = r.instance_id AND pe.decision_id = r.decision_id
    AND pe.k = 1 AND o.decision_id IS NULL
ORDER BY access_package_name, review_closed, instance_id, principal_name, decision_id
