-- approval_latency: how long requests waited for a decision, per package and quarter.
--
-- Answers: "Are approvers keeping up? How long does access take to arrive?"
-- Columns: access_package_id, access_package_name, quarter, requests, median_hours,
--   p90_hours, max_hours.
-- Caveats: from request creation to completion (delivery, denial or timeout) of completed
--   user requests.
SELECT access_package_id, max(access_package_display_name) AS access_package_name,
       concat(CAST(date_part('year', created_date_time) AS BIGINT), 'Q',
              CAST(date_part('quarter', created_date_time) AS BIGINT)) AS quarter,
       count(*) AS requests,
       round(median(date_part('epoch', completed_date_time - created_date_time) / 3600), 1) AS median_hours,
       round(approx_percentile_cont(date_part('epoch', completed_date_time - created_date_time) / 3600, 0.9), 1) AS p90_hours,
       round(max(date_part('epoch', completed_date_time - created_date_time) / 3600), 1) AS max_hours
FROM assignment_requests
WHERE request_type = 'userAdd' AND completed_date_time IS NOT NULL
GROUP BY access_package_id, 3
ORDER BY access_package_name, quarter
