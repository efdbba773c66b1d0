-- review_completeness: who held an access package during a period without being in any of its reviews?
--
-- Answers: "Everyone who held Vendor Payment - Approver at some time in 2026Q3 and was never put
-- in front of a reviewer, and which packages were never reviewed at all."
-- Parameters: $from, $to — the period [from, to) (RFC 3339; the evidence pack binds its period's
--   bounds): govlake sql -f queries/review_completeness.sql --param from=2026-07-01T00:00:00Z
--   --param to=2026-10-01T00:00:00Z
-- One row per (access package, principal) who held the package at some time in the period and
-- has no decision in any review instance of that package overlapping the period.
-- Columns: access_package_id, access_package_name, user_object_id, user_principal_name,
--   assignment_ids, held_from, held_to, instances_in_period, package_never_reviewed, gap,
--   period_start, period_end.
--   held_from / held_to: the earliest start and the latest end of the principal's holding that
--   overlaps the period (an end may lie after the period: a scheduled end; NULL: no end known,
--   still held).
--   instances_in_period: review instances of the package overlapping the period.
--   gap: 'package never reviewed' (no review instance of the package in the lake at all),
--   'no review in period' (reviewed at other times, not in this period), 'not in review'
--   (instances overlap the period, none has a decision for this principal).
-- Rules:
--   * Held: see assignment_holdings (an assignment is held on [start, end), half-open),
--     except that a holding that follows a snapshot showing the assignment not held or gone
--     starts no earlier than that snapshot (assignment_holdings: just after it); holdings
--     that leave no time are left out.
--     Held in the period: held at some instant of [from, to).
--   * A review instance belongs to the package its definition's scope query names (else the
--     instance's scope, else its decisions' resource); it overlaps the period when it started
--     before `to` and ended after `from`.
--   * In a review: the instance has a decision (any: Approve, Deny, DontKnow, NotReviewed) for
--     the principal. A decision of another instance, or of an instance outside the period,
--     does not count; a review of another policy of the same package does.
-- Caveats: access granted and removed between two snapshots, and never seen by govlake, is
--   not in the history.
-- Sources: decisions as access_review_decisions lists them (each instance's latest snapshot);
--   instances, definitions and packages from their _history tables (an instance Graph no
--   longer lists is kept as last seen).
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
period AS (
    SELECT arrow_cast(CAST($from AS TIMESTAMP), 'Timestamp(Microsecond, Some("UTC"))') AS period_start,
           arrow_cast(CAST($to AS TIMESTAMP), 'Timestamp(Microsecond, Some("UTC"))') AS period_end
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
           row_number() OVER (PARTITION BY i.instance_id ORDER BY
               CASE WHEN d.valid_from <= i.end_date_time
                     AND (d.valid_to IS NULL OR d.valid_to > i.end_date_time) THEN 0 ELSE 1 END,
               d.valid_from) AS r
    FROM instances i
    JOIN access_review_definitions_history d ON d.id = i.definition_id
),
decision_packages AS (
    SELECT instance_id, min(access_package_id) AS access_package_id
    FROM decisions
    GROUP BY instance_id
),
review_instances AS (
    SELECT i.instance_id, i.start_date_time, i.end_date_time,
           coalesce(
               regexp_match(da.scope_query, '(?i)accessPackageId\s+eq\s+''([^'']+)''')[1],
               regexp_match(i.scope_query, '(?i)accessPackageId\s+eq\s+''([^'']+)''')[1],
               dp.access_package_id) AS access_package_id
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
instances_in_period AS (
    SELECT ri.access_package_id, ri.instance_id
    FROM review_instances ri CROSS JOIN period p
    WHERE ri.start_date_time < p.period_end AND ri.end_date_time > p.period_start
),
reviewed_principals AS (
    SELECT DISTINCT ip.access_package_id, d.principal_id
    FROM instances_in_period ip
    JOIN decisions d ON d.instance_id = ip.instance_id
),
held_in_period AS (
    SELECT h.*
    -- (The one-row side first: DataFusion's cross join emits a batch per row of its left side.)
    FROM period p CROSS JOIN held h
    WHERE h.held_from < p.period_end AND (h.held_to IS NULL OR h.held_to > p.period_start)
),
-- Only the holdings of principals no review of the package in the period put in front of a
-- reviewer (a few percent of them), before anything is grouped: the groupings below then
-- hold those few, not every holder of the period (2.29M assignments at 10M audit events).
-- The anti-join's key is part of both groupings' keys, so dropping rows first or groups
-- afterwards leaves the same groups.
unreviewed_in_period AS (
    SELECT h.*
    FROM held_in_period h
    LEFT JOIN reviewed_principals r ON r.access_package_id = h.access_package_id
        AND r.principal_id = h.target_object_id
    WHERE r.principal_id IS NULL
),
-- One row per (package, principal, assignment) held in the period, then per principal.
unreviewed_assignments AS (
    SELECT access_package_id, target_object_id, assignment_id,
           max(target_principal_name) AS user_principal_name,
           min(held_from) AS held_from,
           CASE WHEN max(CASE WHEN held_to IS NULL THEN 1 ELSE 0 END) = 1 THEN NULL
                ELSE max(held_to) END AS held_to
    FROM unreviewed_in_period
    GROUP BY access_package_id, target_object_id, assignment_id
),
holders AS (
    SELECT access_package_id, target_object_id,
           max(user_principal_name) AS user_principal_name,
           min(held_from) AS held_from,
           CASE WHEN max(CASE WHEN held_to IS NULL THEN 1 ELSE 0 END) = 1 THEN NULL
                ELSE max(held_to) END AS held_to,
           -- The ids in ascending order, space-separated (string_agg(... ORDER BY assignment_id)):
           -- an ordered string_agg keeps a list array per group (an 8 KiB buffer each, 2.2 GB
           -- at 10M audit events) where array_agg without ORDER BY has a grouped accumulator.
           array_to_string(array_sort(array_agg(assignment_id)
               FILTER (WHERE assignment_id IS NOT NULL)), ' ') AS assignment_ids
    FROM unreviewed_assignments
    GROUP BY access_package_id, target_object_id
),
package_reviews AS (
    SELECT access_package_id, count(*) AS instances
    FROM review_instances
    GROUP BY access_package_id
),
period_reviews AS (
    SELECT access_package_id, count(*) AS instances
    FROM instances_in_period
    GROUP BY access_package_id
)
SELECT
    h.access_package_id,
    pn.access_package_name,
    h.target_object_id AS user_object_id,
    h.user_principal_name,
    h.assignment_ids,
    h.held_from,
    h.held_to,
    CAST(coalesce(pr.instances, 0) AS BIGINT) AS instances_in_period,
    ar.instances IS NULL AS package_never_reviewed,
    CASE WHEN ar.instances IS NULL THEN 'package never reviewed'
         WHEN pr.instances IS NULL THEN 'no review in period'
         ELSE 'not in review' END AS gap,
    p.period_start,
    p.period_end
-- (The one-row side first: DataFusion's cross join emits a batch per row of its left side.)
FROM period p
CROSS JOIN holders h
LEFT JOIN package_names pn ON pn.access_package_id = h.access_package_id
LEFT JOIN package_reviews ar ON ar.access_package_id = h.access_package_id
LEFT JOIN period_reviews pr ON pr.access_package_id = h.access_package_id
ORDER BY access_package_name, access_package_id, user_principal_name, user_object_id
