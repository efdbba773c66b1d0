-- approval_latency: how long requests waited for a decision and for completion, per package and quarter.
--
-- Answers: "Are approvers keeping up? How long does access take to arrive?"
-- Columns: access_package_id, access_package_name, quarter, requests, decided,
--   median_hours_to_decision, p90_hours_to_decision, max_hours_to_decision, completed,
--   median_hours, p90_hours, max_hours.
-- Rules:
--   * Population: user requests (userAdd, onBehalfAdd, userUpdate, userExtend), grouped by
--     the package and the quarter (UTC) of their creation; requests counts them all.
--   * Two intervals, both in hours from the request's createdDateTime:
--     - to decision (decided, *_hours_to_decision): to the first successful audit event
--       linked to the request that decides it: 'Approve access package assignment request'
--       (any stage), 'Deny access package assignment request', 'Auto approve access package
--       assignment request' or '... timed out ...'. Requests without such an event are not
--       in these figures (decided counts those that are).
--     - to completion (completed, median_hours, p90_hours, max_hours): to the request's
--       completedDateTime (delivery, denial, timeout or cancellation), for requests that
--       have one.
--   * Percentiles are exact (percentile_cont, linear interpolation); hours are rounded to
--     one decimal.
-- Link rule: as in approval_trail (a target resource of type
--   AccessPackageAssignmentRequest carrying the request id, or additionalDetails RequestId),
--   stored per event in audit_event_requests with the event's activity, time and result.
-- Caveats: decision times come from the audit log: requests whose events were not captured
--   (older than the 30-day retention and not backfilled) have no decision time. As in
--   approval_trail, events are read from audit_event_requests' copy of their columns.
WITH decisions AS (
    -- Each linked event's activity, time and result as stored with its link.
    SELECT request_id, min(activity_date_time) AS decided_at
    FROM audit_event_requests
    WHERE result = 'success'
      AND (activity_display_name IN ('Approve access package assignment request',
               'Deny access package assignment request',
               'Auto approve access package assignment request')
           OR activity_display_name LIKE '%timed out%')
    GROUP BY request_id
),
requests AS (
    SELECT r.id, r.access_package_id, r.access_package_display_name,
           concat(CAST(date_part('year', r.created_date_time) AS BIGINT), 'Q',
                  CAST(date_part('quarter', r.created_date_time) AS BIGINT)) AS quarter,
           date_part('epoch', d.decided_at - r.created_date_time) / 3600 AS hours_to_decision,
           date_part('epoch', r.completed_date_time - r.created_date_time) / 3600 AS hours_to_completion
    FROM assignment_requests r
    LEFT JOIN decisions d ON d.request_id = r.id
    WHERE r.request_type IN ('userAdd', 'onBehalfAdd', 'userUpdate', 'userExtend')
)
SELECT access_package_id, max(access_package_display_name) AS access_package_name, quarter,
       count(*) AS requests,
       count(hours_to_decision) AS decided,
       round(median(hours_to_decision), 1) AS median_hours_to_decision,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY hours_to_decision), 1) AS p90_hours_to_decision,
       round(max(hours_to_decision), 1) AS max_hours_to_decision,
       count(hours_to_completion) AS completed,
       round(median(hours_to_completion), 1) AS median_hours,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY hours_to_completion), 1) AS p90_hours,
       round(max(hours_to_completion), 1) AS max_hours
FROM requests
GROUP BY access_package_id, quarter
ORDER BY access_package_name, quarter, access_package_id
