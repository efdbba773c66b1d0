-- external_access: guests and connected-organization users who hold access, with their
-- organization's sponsors and their expiry.
--
-- Answers: "Which external auditors still have access, who sponsors them, and until when?"
-- Columns: user_object_id, user_principal_name, connected_organization_id,
--   connected_organization_name, internal_sponsors, access_package_name, state,
--   schedule_start_date_time, schedule_expiration_end_date_time.
SELECT a.target_object_id AS user_object_id, a.target_principal_name AS user_principal_name,
       a.target_connected_organization_id AS connected_organization_id,
       o.display_name AS connected_organization_name,
       (SELECT string_agg(s.user_principal_name, ', ')
          FROM connected_organization_sponsors s
         WHERE s.connected_organization_id = a.target_connected_organization_id
           AND s.sponsor_kind = 'internal') AS internal_sponsors,
       a.access_package_display_name AS access_package_name, a.state,
       a.schedule_start_date_time, a.schedule_expiration_end_date_time
FROM assignments a
LEFT JOIN connected_organizations o ON o.id = a.target_connected_organization_id
WHERE a.target_connected_organization_id IS NOT NULL OR a.target_principal_name LIKE '%#EXT#%'
ORDER BY user_principal_name, access_package_name
