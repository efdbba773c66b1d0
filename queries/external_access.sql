-- external_access: guests and connected-organization users who hold access now, with their organization's sponsors and their expiry.
--
-- Answers: "Which external auditors still have access, who sponsors them, and until when?"
-- One row per held assignment of an external user.
-- Columns: user_object_id, user_principal_name, connected_organization_id,
--   connected_organization_name, internal_sponsors, access_package_name, state,
--   schedule_start_date_time, schedule_expiration_end_date_time, external_sponsors,
--   access_package_id, assignment_id.
-- Rules:
--   - Held now: the assignment is in the latest snapshot (`assignments`) with state delivered
--     or partiallyDelivered (any letter case). Expired, failed or removed assignments (the
--     latter are gone from the snapshot) are not access.
--   - External: the target belongs to a connected organization, or its principal name is a
--     guest's (`#EXT#`, any letter case).
--   - Sponsors: the connected organization's internal (resp. external) sponsors, each once,
--     by user principal name (else display name, else id), sorted and joined with ', ', so
--     the text is the same on every run.
-- Caveats: "now" is the latest ingested snapshot; an assignment still delivered after its
--   scheduled end is listed (it is access in place; expiration_compliance reports it as
--   overdue). For access at a past time, filter access_as_of (`--param as_of=…`) instead.
-- Key: assignment_id
WITH sponsor_names AS (
    SELECT DISTINCT
        connected_organization_id,
        lower(sponsor_kind) AS kind,
        coalesce(user_principal_name, display_name, sponsor_id) AS name
    FROM connected_organization_sponsors
),
sponsors AS (
    SELECT
        connected_organization_id,
        string_agg(CASE WHEN kind = 'internal' THEN name END, ', ' ORDER BY name) AS internal_sponsors,
        string_agg(CASE WHEN kind = 'external' THEN name END, ', ' ORDER BY name) AS external_sponsors
    FROM sponsor_names
    GROUP BY connected_organization_id
)
SELECT
    a.target_object_id AS user_object_id,
    a.target_principal_name AS user_principal_name,
    a.target_connected_organization_id AS connected_organization_id,
    o.display_name AS connected_organization_name,
    s.internal_sponsors,
    a.access_package_display_name AS access_package_name,
    a.state,
    a.schedule_start_date_time,
    a.schedule_expiration_end_date_time,
    s.external_sponsors,
    a.access_package_id,
    a.id AS assignment_id
FROM assignments a
LEFT JOIN connected_organizations o ON o.id = a.target_connected_organization_id
LEFT JOIN sponsors s ON s.connected_organization_id = a.target_connected_organization_id
WHERE lower(a.state) IN ('delivered', 'partiallydelivered')
  AND (a.target_connected_organization_id IS NOT NULL
       OR upper(a.target_principal_name) LIKE '%#EXT#%')
ORDER BY user_principal_name, access_package_name, assignment_id
