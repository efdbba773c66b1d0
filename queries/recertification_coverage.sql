-- recertification_coverage: how much of each package's access each review recertified, and were its removals carried out?
--
-- Answers: "Who recertified the holders of Financial Analyst - Standard last quarter, how many
-- were never reviewed, and did the people the reviewers denied actually lose access?"
-- One row per (access package, review instance), plus one row per access package that no
-- review instance covers (never_reviewed: no instance, nothing reviewed, coverage 0).
-- Columns: access_package_id, access_package_name, definition_id, instance_id, quarter,
--   start_date_time, end_date_time, in_scope, reviewed, approved, denied, dont_know,
--   not_reviewed, removed_on_timeout, denied_still_delivered, coverage, assignment_policy_id,
--   not_in_review, decisions, dont_know_decisions, removal_due, remediated,
--   timeout_still_delivered, failed_remediation, never_reviewed.
--   Population columns (distinct principals): in_scope, reviewed, dont_know, not_reviewed,
--   not_in_review, coverage. Decision columns (decision records of the instance, whoever they
--   are about): decisions, approved, denied, dont_know_decisions, removal_due, remediated,
--   removed_on_timeout, denied_still_delivered, timeout_still_delivered, failed_remediation.
-- Rules:
--   * Held (access_as_of's rule, inlined): an assignment is held on [start, end), half-open.
--     Held states: delivered and partiallyDelivered (any letter case); expired is held before
--     its expiry. start = the schedule's startDateTime, failing that its first observation (no
--     earlier than a snapshot that showed it not held). end = the earliest of expiredDateTime,
--     the observation that it was gone (missing from a complete snapshot, or in a state that is
--     not held) and the schedule's end, unless a later snapshot still showed it held.
--   * Population (in_scope): the principals who held the package at the instance's start,
--     within the review's scope: the definition's scope query names the package and, when it
--     does, the assignment policy (assignment_policy_id; NULL = the whole package). It is not
--     the list of decisions the review produced.
--   * Of the population, a principal is reviewed when the instance has an Approve or Deny
--     decision for them; dont_know when their only answers are DontKnow (Don't know is not a
--     recertification: counted apart); not_reviewed otherwise (NotReviewed, or no decision at
--     all: not_in_review). reviewed + dont_know + not_reviewed = in_scope;
--     coverage = reviewed / in_scope, 4 decimals (NULL when in_scope = 0).
--   * Removal due (removal_due): a Deny decision, or a NotReviewed one whose timeout removes
--     access: the definition (version in force when the instance ended, else the earliest
--     observed) auto-applies decisions (autoApplyDecisionsEnabled) with a default decision
--     (defaultDecisionEnabled not false) of Deny, or of Recommendation and the recommendation
--     was Deny; or the policy's review timeout
--     (review_settings_expiration_behavior, version in force when the instance ended) is
--     removeAccess, or acceptAccessRecommendation and the recommendation was Deny. Decision
--     values are compared case-insensitively.
--   * Pre-review access of a decision: the principal's assignments of the package (of the
--     decision's policy, else the scope policy) held at some time while the instance ran.
--   * remediated: removal due and every pre-review assignment stopped being held (expired,
--     removed, gone from a later snapshot) — or, with none in the history, a removal request or
--     event for the principal and package after the instance started; removed_on_timeout: the
--     remediated timeouts. denied_still_delivered / timeout_still_delivered: a pre-review
--     assignment is still held at the lake's latest snapshot of the assignments, whatever
--     applyResult says; failed_remediation: those of them Graph reported as
--     AppliedSuccessfully (a removal reported done that did not happen).
--     remediation_timeliness has the per-decision detail (when, how, days after close).
--   * A package with no review instance (its policies have reviews off, or none was captured)
--     has one row: in_scope = its holders at the latest snapshot, all of them not reviewed and
--     not in review, coverage 0, never_reviewed true.
-- Caveats: decisions name a principal, not an assignment: a principal with several
--   assignments is counted once in the population and remediated only when all of them ended.
--   Decisions about principals outside the population (granted after the instance started)
--   count in the decision columns only.
-- Sources: decisions as access_review_decisions lists them (each instance's latest snapshot);
--   instances, definitions, policies and packages from their _history tables (an instance
--   Graph no longer lists is kept as last seen).
--   The latest snapshot is the newest `_ingest_runs` observation of the assignments.
WITH observations AS (
    SELECT observed_at FROM _ingest_runs
    WHERE table_name = 'assignments' AND (fetched > 0 OR closed > 0)
    UNION
    SELECT valid_from FROM assignments_history
    UNION
    SELECT valid_to FROM assignments_history WHERE valid_to IS NOT NULL
),
-- The holding rule, as access_as_of.sql implements it (kept in step with that file; computed
-- in one pass here because every reference to a CTE recomputes it).
versions AS (
    SELECT h.*,
           CASE WHEN lower(h.state) IN ('delivered', 'partiallydelivered') THEN 'held'
                WHEN lower(h.state) = 'expired' THEN 'expired'
                ELSE 'not held' END AS kind
    FROM assignments_history h
),
ordered AS (
    SELECT v.*,
           lag(kind) OVER (PARTITION BY id ORDER BY valid_from, row_hash) AS prev_kind,
           lag(valid_to) OVER (PARTITION BY id ORDER BY valid_from, row_hash) AS prev_valid_to,
           row_number() OVER (PARTITION BY id ORDER BY valid_from, row_hash) AS n
    FROM versions v
),
islands AS (
    -- One island per stretch of held versions observed back to back, followed by the expired
    -- version that ended it, if any; an expired version after anything else stands alone.
    SELECT o.*,
           sum(CASE WHEN kind <> 'not held' AND prev_kind = 'held' AND prev_valid_to = valid_from
                    THEN 0 ELSE 1 END)
               OVER (PARTITION BY id ORDER BY valid_from, row_hash
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS island,
           -- The observation that ended this version's holding: a held version holds until
           -- its valid_to; an expired one was seen not held from its valid_from.
           CASE WHEN kind = 'held' THEN valid_to ELSE valid_from END AS seen_ending
    FROM ordered o
),
spans AS (
    SELECT id, island,
           min(n) AS first_n,
           min(valid_from) AS first_seen,
           first_value(schedule_start_date_time ORDER BY valid_from, row_hash) AS scheduled_start,
           last_value(schedule_expiration_end_date_time ORDER BY valid_from, row_hash) AS scheduled_end,
           last_value(seen_ending ORDER BY valid_from, row_hash) AS gone_at,
           min(expired_date_time) AS expired_at,
           max(CASE WHEN kind = 'held' THEN valid_from END) AS last_held_version_from,
           last_value(access_package_id ORDER BY valid_from, row_hash) AS access_package_id,
           last_value(assignment_policy_id ORDER BY valid_from, row_hash) AS assignment_policy_id,
           last_value(target_object_id ORDER BY valid_from, row_hash) AS target_object_id,
           last_value(target_principal_name ORDER BY valid_from, row_hash) AS target_principal_name
    FROM islands
    WHERE kind <> 'not held'
    GROUP BY id, island
),
bounds AS (
    SELECT s.id, s.island, s.first_n, s.first_seen, s.scheduled_start, s.scheduled_end,
           s.gone_at, s.expired_at, s.access_package_id, s.assignment_policy_id,
           s.target_object_id, s.target_principal_name,
           max(CASE WHEN o.observed_at < s.first_seen THEN o.observed_at END) AS seen_before,
           greatest(s.last_held_version_from,
                    max(CASE WHEN s.last_held_version_from IS NOT NULL
                              AND o.observed_at >= s.first_seen
                              AND (s.gone_at IS NULL OR o.observed_at < s.gone_at)
                             THEN o.observed_at END)) AS seen_held
    FROM spans s
    LEFT JOIN observations o ON o.observed_at IS NOT NULL
    GROUP BY s.id, s.island, s.first_n, s.first_seen, s.scheduled_start, s.scheduled_end,
             s.gone_at, s.expired_at, s.last_held_version_from, s.access_package_id,
             s.assignment_policy_id, s.target_object_id, s.target_principal_name
),
held_spans AS (
    SELECT b.*,
           CASE WHEN first_n > 1
                THEN greatest(coalesce(scheduled_start, first_seen), seen_before)
                ELSE coalesce(scheduled_start, first_seen) END AS held_from,
           least(expired_at, gone_at,
                 CASE WHEN seen_held IS NULL OR scheduled_end > seen_held
                      THEN scheduled_end END) AS held_to
    FROM bounds b
),
-- Each stretch of holding of each assignment, with who held what and what ended it.
held AS (
    SELECT id AS assignment_id, access_package_id, assignment_policy_id, target_object_id,
           target_principal_name, held_from, held_to,
           CASE WHEN held_to IS NULL THEN NULL
                WHEN held_to = expired_at THEN 'expiry'
                WHEN held_to = scheduled_end THEN 'schedule end'
                ELSE 'snapshot' END AS ended_by
    FROM held_spans
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
    ) x
    WHERE x.removal_reason IS NOT NULL
),
-- Each holding stretch with its assignment's end: still held at the latest snapshot, or
-- when and how its last stretch ended.
held_ends AS (
    SELECT h.*,
           max(CASE WHEN h.held_to IS NULL OR h.held_to > l.observed_at THEN 1 ELSE 0 END)
               OVER (PARTITION BY h.assignment_id) = 1 AS still_held,
           first_value(h.held_to) OVER (PARTITION BY h.assignment_id
               ORDER BY h.held_to DESC NULLS FIRST, h.held_from DESC) AS last_held_to,
           first_value(h.ended_by) OVER (PARTITION BY h.assignment_id
               ORDER BY h.held_to DESC NULLS FIRST, h.held_from DESC) AS last_ended_by
    FROM held h
    CROSS JOIN latest l
),
-- The assignments each removal was about: held at some time while the instance ran.
pre_review AS (
    SELECT DISTINCT r.instance_id, r.decision_id, r.start_date_time, h.assignment_id,
           h.still_held, h.last_held_to AS held_to, h.last_ended_by AS ended_by
    FROM removals r
    JOIN held_ends h ON h.target_object_id = r.principal_id
        AND h.access_package_id = r.access_package_id
        AND (r.policy_id IS NULL OR h.assignment_policy_id = r.policy_id)
        AND h.held_from < r.end_date_time
        AND (h.held_to IS NULL OR h.held_to > r.start_date_time)
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
    SELECT e.event_id, e.at, q.assignment_id
    FROM removal_events e
    JOIN audit_event_additional_details a ON a.audit_event_id = e.event_id
        AND lower(a.key) = 'requestid'
    JOIN assignment_requests q ON q.id = a.value
    UNION
    SELECT e.event_id, e.at, q.assignment_id
    FROM removal_events e
    JOIN audit_event_target_resources t ON t.audit_event_id = e.event_id
        AND lower(t.type) = 'accesspackageassignmentrequest'
    JOIN assignment_requests q ON q.id = t.target_id
),
event_principals AS (
    SELECT e.event_id, e.at, u.target_id AS principal_id, p.target_id AS access_package_id
    FROM removal_events e
    JOIN audit_event_target_resources u ON u.audit_event_id = e.event_id
        AND lower(u.type) = 'user'
    JOIN audit_event_target_resources p ON p.audit_event_id = e.event_id
        AND lower(p.type) = 'accesspackage'
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
           string_agg(assignment_id, ' ' ORDER BY assignment_id) AS assignment_ids,
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
),
remediation AS (
    SELECT r.instance_id, r.decision_id, r.verdict, r.removal_reason, r.apply_result,
           coalesce(o.still_open, false) AS still_open,
           NOT coalesce(o.still_open, false) AND (o.decision_id IS NOT NULL OR pe.at IS NOT NULL)
               AS remediated
    FROM removals r
    LEFT JOIN decision_outcome o ON o.instance_id = r.instance_id AND o.decision_id = r.decision_id
    LEFT JOIN principal_evidence pe ON pe.instance_id = r.instance_id
        AND pe.decision_id = r.decision_id AND pe.k = 1 AND o.decision_id IS NULL
),
remediation_counts AS (
    SELECT instance_id,
           count(*) AS removal_due,
           sum(CASE WHEN remediated THEN 1 ELSE 0 END) AS remediated,
           sum(CASE WHEN remediated AND removal_reason = 'timeout removes access' THEN 1 ELSE 0 END)
               AS removed_on_timeout,
           sum(CASE WHEN still_open AND removal_reason = 'denied' THEN 1 ELSE 0 END)
               AS denied_still_delivered,
           sum(CASE WHEN still_open AND removal_reason = 'timeout removes access' THEN 1 ELSE 0 END)
               AS timeout_still_delivered,
           sum(CASE WHEN still_open AND lower(apply_result) = 'appliedsuccessfully' THEN 1 ELSE 0 END)
               AS failed_remediation
    FROM remediation
    GROUP BY instance_id
),
decision_counts AS (
    SELECT instance_id,
           count(*) AS decisions,
           sum(CASE WHEN verdict = 'approve' THEN 1 ELSE 0 END) AS approved,
           sum(CASE WHEN verdict = 'deny' THEN 1 ELSE 0 END) AS denied,
           sum(CASE WHEN verdict = 'dontknow' THEN 1 ELSE 0 END) AS dont_know_decisions
    FROM decided
    GROUP BY instance_id
),
-- Who held what at each moment that is counted: each instance's start (within its scope),
-- and the latest snapshot for packages that no review instance covers. One pass over `held`.
checkpoints AS (
    SELECT instance_id, access_package_id, scope_policy_id, start_date_time AS at
    FROM review_instances
    WHERE access_package_id IS NOT NULL
    UNION ALL
    SELECT CAST(NULL AS VARCHAR), p.id, CAST(NULL AS VARCHAR), l.observed_at
    FROM access_packages p
    CROSS JOIN latest l
    WHERE p.id NOT IN (SELECT access_package_id FROM review_instances
                       WHERE access_package_id IS NOT NULL)
),
population AS (
    SELECT DISTINCT c.instance_id, c.access_package_id, h.target_object_id AS principal_id
    FROM checkpoints c
    LEFT JOIN held h ON h.access_package_id = c.access_package_id
        AND (c.scope_policy_id IS NULL OR h.assignment_policy_id = c.scope_policy_id)
        AND h.held_from <= c.at
        AND (h.held_to IS NULL OR h.held_to > c.at)
),
answers AS (
    SELECT instance_id, principal_id,
           max(CASE WHEN verdict IN ('approve', 'deny') THEN 1 ELSE 0 END) AS recertified,
           max(CASE WHEN verdict = 'dontknow' THEN 1 ELSE 0 END) AS dont_know
    FROM decided
    GROUP BY instance_id, principal_id
),
population_counts AS (
    SELECT p.instance_id, p.access_package_id,
           count(p.principal_id) AS in_scope,
           sum(CASE WHEN a.recertified = 1 THEN 1 ELSE 0 END) AS reviewed,
           sum(CASE WHEN coalesce(a.recertified, 0) = 0 AND a.dont_know = 1 THEN 1 ELSE 0 END)
               AS dont_know,
           sum(CASE WHEN p.principal_id IS NOT NULL AND coalesce(a.recertified, 0) = 0
                     AND coalesce(a.dont_know, 0) = 0 THEN 1 ELSE 0 END) AS not_reviewed,
           sum(CASE WHEN p.principal_id IS NOT NULL AND a.principal_id IS NULL THEN 1 ELSE 0 END)
               AS not_in_review
    FROM population p
    LEFT JOIN answers a ON a.instance_id = p.instance_id AND a.principal_id = p.principal_id
    GROUP BY p.instance_id, p.access_package_id
)
SELECT
    pc.access_package_id,
    coalesce(pn.access_package_name, dp.access_package_name) AS access_package_name,
    ri.definition_id,
    pc.instance_id,
    CASE WHEN ri.start_date_time IS NOT NULL
         THEN concat(CAST(date_part('year', ri.start_date_time) AS BIGINT), 'Q',
                     CAST(date_part('quarter', ri.start_date_time) AS BIGINT)) END AS quarter,
    ri.start_date_time,
    ri.end_date_time,
    CAST(pc.in_scope AS BIGINT) AS in_scope,
    CAST(coalesce(pc.reviewed, 0) AS BIGINT) AS reviewed,
    CAST(coalesce(dc.approved, 0) AS BIGINT) AS approved,
    CAST(coalesce(dc.denied, 0) AS BIGINT) AS denied,
    CAST(coalesce(pc.dont_know, 0) AS BIGINT) AS dont_know,
    CAST(coalesce(pc.not_reviewed, 0) AS BIGINT) AS not_reviewed,
    CAST(coalesce(rc.removed_on_timeout, 0) AS BIGINT) AS removed_on_timeout,
    CAST(coalesce(rc.denied_still_delivered, 0) AS BIGINT) AS denied_still_delivered,
    CASE WHEN pc.instance_id IS NULL THEN CAST(0.0 AS DOUBLE)
         WHEN pc.in_scope = 0 THEN CAST(NULL AS DOUBLE)
         ELSE round(CAST(pc.reviewed AS DOUBLE) / pc.in_scope, 4) END AS coverage,
    ri.scope_policy_id AS assignment_policy_id,
    CAST(coalesce(pc.not_in_review, 0) AS BIGINT) AS not_in_review,
    CAST(coalesce(dc.decisions, 0) AS BIGINT) AS decisions,
    CAST(coalesce(dc.dont_know_decisions, 0) AS BIGINT) AS dont_know_decisions,
    CAST(coalesce(rc.removal_due, 0) AS BIGINT) AS removal_due,
    CAST(coalesce(rc.remediated, 0) AS BIGINT) AS remediated,
    CAST(coalesce(rc.timeout_still_delivered, 0) AS BIGINT) AS timeout_still_delivered,
    CAST(coalesce(rc.failed_remediation, 0) AS BIGINT) AS failed_remediation,
    pc.instance_id IS NULL AS never_reviewed
FROM population_counts pc
LEFT JOIN review_instances ri ON ri.instance_id = pc.instance_id
LEFT JOIN package_names pn ON pn.access_package_id = pc.access_package_id
LEFT JOIN decision_packages dp ON dp.instance_id = pc.instance_id
LEFT JOIN decision_counts dc ON dc.instance_id = pc.instance_id
LEFT JOIN remediation_counts rc ON rc.instance_id = pc.instance_id
ORDER BY access_package_name, access_package_id, start_date_time, instance_id
