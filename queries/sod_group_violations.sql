-- sod_group_violations: who holds an access package while being a member of one of the
-- package's incompatible groups?
--
-- Answers: "Does anyone in the legacy PAY-Initiators group also hold Vendor Payment - Approver?"
-- Columns: user_object_id, user_principal_name, access_package_id, access_package_name,
--   incompatible_group_id, incompatible_group_name, holds_since.
-- Caveats: group membership comes from exported `groups('…')/members` pages
--   (incompatible_group_members); without that export this view is empty.
SELECT
    a.target_object_id AS user_object_id,
    max(a.target_principal_name) AS user_principal_name,
    a.access_package_id,
    max(a.access_package_display_name) AS access_package_name,
    g.group_id AS incompatible_group_id,
    max(g.group_display_name) AS incompatible_group_name,
    min(a.schedule_start_date_time) AS holds_since
FROM assignments a
JOIN incompatible_groups g ON g.access_package_id = a.access_package_id
JOIN incompatible_group_members m ON m.group_id = g.group_id AND m.member_id = a.target_object_id
WHERE a.state IN ('delivered', 'partiallyDelivered')
GROUP BY a.target_object_id, a.access_package_id, g.group_id
ORDER BY user_object_id, access_package_id, incompatible_group_id
