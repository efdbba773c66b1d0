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
--   * Held: see assignment_holdings (an assignment is held on [start, end), half-open),
--     except that a holding that follows a snapshot showing the assignment not held or gone
--     starts no earlier than that snapshot (assignment_holdings: just after it); holdings
--     that leave no time are left out.
--   * Population (in_scope): the principals who held the package at the instance's start,
--     within the review's scope: the definition's scope query names the package and, when it
--     does, the assignment policy (assignment_policy_id; NULL = the whole package). It is not
--     the list of decisions the review produced.
--   * Of the population, a principal is reviewed when the instance has an Approve or Deny
--     decision for them; dont_know when their only answers are DontKnow (Don't know is not a
--     recertification: counted apart); not_reviewed otherwise (NotReviewed, or no decision at
--     all: not_in_review). reviewed + dont_know + not_reviewed = in_scope;
--     coverage = reviewed / in_scope, 4 decimals (NULL when in_scope = 0).
--   * Removals: the rows of remediation_timeliness (its rules: which decisions require
--     removing access, the pre-review assignments, when access ended). removal_due: its rows
--     for the instance (a Deny, or a NotReviewed decision whose timeout removes access);
--     remediated: status 'remediated'; removed_on_timeout: the remediated timeouts;
--     denied_still_delivered / timeout_still_delivered: still_open (a pre-review assignment
--     still held at the lake's latest snapshot of the assignments, whatever applyResult says);
--     failed_remediation: still open although Graph reported the decision
--     AppliedSuccessfully (a removal reported done that did not happen).
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
-- Each removal due and what became of it: remediation_timeliness has one row per removal.
remediation AS (
    SELECT instance_id, decision_id, removal_reason, apply_result, still_open,
           status = 'remediated' AS remediated
    FROM remediation_timeliness
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
