-- recertification_coverage: how much of each package's access was recertified, per review?
--
-- Answers: "Who recertified the holders of Financial Analyst - Standard last quarter, and how
-- many were never reviewed?"
-- One row per (access package, review instance).
-- Columns: access_package_id, access_package_name, definition_id, instance_id, quarter,
--   start_date_time, end_date_time, in_scope, reviewed, approved, denied, dont_know,
--   not_reviewed, removed_on_timeout, denied_still_delivered, coverage (reviewed / in scope).
-- Caveats: "in scope" is the decisions the review produced (one per reviewed assignment);
--   denied_still_delivered counts denials whose assignment is still delivered in the current
--   snapshot (a failed or missing removal).
WITH decisions AS (
    SELECT d.*, i.start_date_time, i.end_date_time
    FROM access_review_decisions d
    JOIN access_review_instances i ON i.id = d.instance_id
),
still_delivered AS (
    SELECT DISTINCT access_package_id, target_object_id
    FROM assignments
    WHERE state IN ('delivered', 'partiallyDelivered')
)
SELECT
    d.access_package_id,
    max(d.access_package_display_name) AS access_package_name,
    d.definition_id,
    d.instance_id,
    concat(CAST(date_part('year', d.start_date_time) AS BIGINT), 'Q',
           CAST(date_part('quarter', d.start_date_time) AS BIGINT)) AS quarter,
    min(d.start_date_time) AS start_date_time,
    max(d.end_date_time) AS end_date_time,
    count(*) AS in_scope,
    sum(CASE WHEN d.decision IN ('Approve', 'Deny', 'DontKnow') THEN 1 ELSE 0 END) AS reviewed,
    sum(CASE WHEN d.decision = 'Approve' THEN 1 ELSE 0 END) AS approved,
    sum(CASE WHEN d.decision = 'Deny' THEN 1 ELSE 0 END) AS denied,
    sum(CASE WHEN d.decision = 'DontKnow' THEN 1 ELSE 0 END) AS dont_know,
    sum(CASE WHEN d.decision = 'NotReviewed' THEN 1 ELSE 0 END) AS not_reviewed,
    sum(CASE WHEN d.decision = 'NotReviewed' AND d.apply_result = 'AppliedSuccessfully' THEN 1 ELSE 0 END)
        AS removed_on_timeout,
    sum(CASE WHEN d.decision = 'Deny' AND s.target_object_id IS NOT NULL
             AND d.apply_result <> 'AppliedSuccessfully' THEN 1 ELSE 0 END) AS denied_still_delivered,
    round(CAST(sum(CASE WHEN d.decision IN ('Approve', 'Deny', 'DontKnow') THEN 1 ELSE 0 END) AS DOUBLE)
          / count(*), 4) AS coverage
FROM decisions d
LEFT JOIN still_delivered s ON s.access_package_id = d.access_package_id AND s.target_object_id = d.principal_id
GROUP BY d.access_package_id, d.definition_id, d.instance_id, d.start_date_time
ORDER BY access_package_name, start_date_time, instance_id
