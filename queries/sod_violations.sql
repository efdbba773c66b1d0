-- sod_violations: who holds both sides of an incompatible pair of access packages now?
--
-- Answers: "Prove nobody can both initiate and approve a vendor payment — and list who can."
-- One row per (user, pair), whichever package declared the incompatibility, ordered so each
-- conflict appears once (access_package_id < incompatible_access_package_id).
--
-- Columns: user_object_id, user_principal_name, access_package_id, access_package_name,
--   incompatible_access_package_id, incompatible_access_package_name, both_held_since (the
--   later of the two assignments' start), incompatibility_declared_at (the audit event
--   "Create incompatible access package" when captured, else when govlake first observed the
--   incompatibility), grandfathered (both were held before the incompatibility existed).
-- Caveats: "now" is the latest ingested snapshot; an assignment counts while delivered or
--   partially delivered (any letter case), whatever its scheduled end (see
--   expiration_compliance), as in the holding rule of access_as_of.sql and sod_history.
-- Key: user_object_id, access_package_id, incompatible_access_package_id
WITH pairs AS (
    -- Incompatibilities declared now, and when govlake first observed each.
    SELECT
        least(c.access_package_id, c.incompatible_access_package_id) AS package_a,
        greatest(c.access_package_id, c.incompatible_access_package_id) AS package_b,
        min(h.valid_from) AS first_observed
    FROM incompatible_access_packages c
    JOIN incompatible_access_packages_history h ON h.id = c.id
    WHERE c.access_package_id <> c.incompatible_access_package_id
    GROUP BY 1, 2
),
-- The access packages each incompatibility-declaring event names (its targets read once for
-- both sides of the pair).
declaring_targets AS (
    SELECT e.id AS event_id, e.activity_date_time, t.target_id
    FROM audit_events e
    JOIN audit_event_target_resources t ON t.audit_event_id = e.id
        AND lower(t.type) = 'accesspackage'
    WHERE e.activity_display_name = 'Create incompatible access package'
),
declared_in_audit AS (
    SELECT
        least(a.target_id, b.target_id) AS package_a,
        greatest(a.target_id, b.target_id) AS package_b,
        min(a.activity_date_time) AS declared_at
    FROM declaring_targets a
    JOIN declaring_targets b ON b.event_id = a.event_id AND a.target_id < b.target_id
    GROUP BY 1, 2
),
-- Who holds each package of a pair (only those: every holder of every package is millions of
-- groups at 10M audit events, where the pairs name a handful of packages).
held AS (
    SELECT
        target_object_id AS user_object_id,
        max(target_principal_name) AS user_principal_name,
        access_package_id,
        max(access_package_display_name) AS access_package_name,
        min(schedule_start_date_time) AS since
    FROM assignments
    WHERE lower(state) IN ('delivered', 'partiallydelivered')
      AND access_package_id IN (SELECT package_a FROM pairs UNION ALL SELECT package_b FROM pairs)
    GROUP BY target_object_id, access_package_id
)
SELECT
    x.user_object_id,
    x.user_principal_name,
    p.package_a AS access_package_id,
    coalesce(x.access_package_name, pa.display_name) AS access_package_name,
    p.package_b AS incompatible_access_package_id,
    coalesce(y.access_package_name, pb.display_name) AS incompatible_access_package_name,
    greatest(x.since, y.since) AS both_held_since,
    coalesce(d.declared_at, p.first_observed) AS incompatibility_declared_at,
    greatest(x.since, y.since) < coalesce(d.declared_at, p.first_observed) AS grandfathered
FROM pairs p
JOIN held x ON x.access_package_id = p.package_a
JOIN held y ON y.access_package_id = p.package_b AND y.user_object_id = x.user_object_id
LEFT JOIN declared_in_audit d ON d.package_a = p.package_a AND d.package_b = p.package_b
LEFT JOIN access_packages pa ON pa.id = p.package_a
LEFT JOIN access_packages pb ON pb.id = p.package_b
ORDER BY x.user_object_id, p.package_a, p.package_b
