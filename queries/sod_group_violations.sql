-- sod_group_violations: who holds a package while a member of one of its incompatible groups, nested groups included?
--
-- Answers: "Does anyone in the legacy PAY-Initiators group, or in a group inside it, also hold
-- Vendor Payment - Approver?"
-- One row per (user, package, incompatible group).
-- Columns: user_object_id, user_principal_name, access_package_id, access_package_name,
--   incompatible_group_id, incompatible_group_name, holds_since (the earliest start of the
--   user's held assignments of the package), via_group_id and via_group_name (the group whose
--   members page lists the user: the incompatible group itself, or the nested group through
--   which membership is inherited), nesting_depth (0 = direct member, 1 = member of a group
--   inside the incompatible group, ...), membership_path (group display names from the
--   incompatible group down to via_group, joined with ' > ').
-- Rules:
--   - Held: an assignment counts while its state is delivered or partiallyDelivered (any
--     letter case), whatever its scheduled end (see expiration_compliance).
--   - Membership is transitive: the members of a group listed on an incompatible group's
--     members page (a nested group, @odata.type group) are members of the incompatible group,
--     to any depth. A nested group's members come from its own exported
--     `groups('<nested id>')/members` page(s) (incompatible_group_members.group_id = the nested
--     group's id); a member is expanded whenever such a page exists, whatever its type says.
--   - Cycles (a group nested in itself, directly or through others) are cut: a path never
--     visits a group twice, so the recursion (WITH RECURSIVE) ends whatever the nesting, with
--     no depth limit.
--   - When a user is reachable by several paths, the row reports the shortest one (fewest
--     groups), ties broken by the path's group ids in text order.
-- Caveats: group membership is the latest exported members pages
--   (incompatible_group_members); without that export this view is empty, and a nested group
--   whose members page was not exported contributes nobody (export `transitiveMembers`, or
--   each nested group's `members`).
-- Key: user_object_id, access_package_id, incompatible_group_id, via_group_id
WITH RECURSIVE
edges AS (
    -- One row per (group, member) as the members pages list them.
    SELECT group_id, member_id, max(display_name) AS member_name
    FROM incompatible_group_members
    GROUP BY group_id, member_id
),
expanded AS (
    -- Groups whose own members were exported: the ones membership can be inherited through.
    SELECT DISTINCT group_id FROM incompatible_group_members
),
roots AS (
    SELECT group_id, max(group_display_name) AS group_name
    FROM incompatible_groups
    GROUP BY group_id
),
reach (root_group_id, group_id, group_name, depth, path_ids, path_names) AS (
    -- Every group inside an incompatible group (the group itself at depth 0), by simple paths.
    SELECT group_id AS root_group_id, group_id, group_name, CAST(0 AS BIGINT) AS depth,
           concat('/', group_id, '/') AS path_ids, coalesce(group_name, group_id) AS path_names
    FROM roots
    UNION ALL
    SELECT r.root_group_id, e.member_id, e.member_name, r.depth + 1,
           concat(r.path_ids, e.member_id, '/'),
           concat(r.path_names, ' > ', coalesce(e.member_name, e.member_id))
    FROM reach r
    JOIN edges e ON e.group_id = r.group_id
    JOIN expanded x ON x.group_id = e.member_id
    WHERE strpos(r.path_ids, concat('/', e.member_id, '/')) = 0
),
member_of AS (
    -- Each member of each incompatible group, through its shortest path.
    SELECT root_group_id, member_id, via_group_id, via_group_name, nesting_depth, membership_path
    FROM (
        SELECT r.root_group_id, e.member_id, r.group_id AS via_group_id,
               r.group_name AS via_group_name, r.depth AS nesting_depth,
               r.path_names AS membership_path,
               row_number() OVER (PARTITION BY r.root_group_id, e.member_id
                                  ORDER BY r.depth, r.path_ids) AS pick
        FROM reach r
        JOIN edges e ON e.group_id = r.group_id
    ) m
    WHERE pick = 1
)
SELECT
    a.target_object_id AS user_object_id,
    max(a.target_principal_name) AS user_principal_name,
    a.access_package_id,
    max(a.access_package_display_name) AS access_package_name,
    g.group_id AS incompatible_group_id,
    max(g.group_display_name) AS incompatible_group_name,
    min(a.schedule_start_date_time) AS holds_since,
    m.via_group_id,
    m.via_group_name,
    m.nesting_depth,
    m.membership_path
FROM assignments a
JOIN incompatible_groups g ON g.access_package_id = a.access_package_id
JOIN member_of m ON m.root_group_id = g.group_id AND m.member_id = a.target_object_id
WHERE lower(a.state) IN ('delivered', 'partiallydelivered')
GROUP BY a.target_object_id, a.access_package_id, g.group_id, m.via_group_id, m.via_group_name,
         m.nesting_depth, m.membership_path
ORDER BY user_object_id, access_package_id, incompatible_group_id
