-- control_changes: who changed an approval, expiry, review or separation-of-duties control, when, from what to what, and which grants were made while it was weaker.
--
-- Answers: "Did anyone switch approval off, lengthen expiry, turn reviews off or drop an
--   incompatibility during the period, and who got access while it was so?"
-- Columns: changed_at, changed_at_source, changed_by, change_source, object_type, object_id,
--   object_name, access_package_id, access_package_name, setting, subject_id, subject_name,
--   before_value, after_value, weaker, weaker_until, observed_from, observed_at,
--   audit_event_id, grants_while_weaker, grants.
-- Rules:
--   * Observations: the times govlake read the policies (or, for incompatibilities, the
--     access packages): observed_at of `_ingest_runs` rows for that table.
--   * change_source 'policy history': at every observation at which a policy's version in
--     assignment_policies_history or its stages in policy_approval_stages_history changed,
--     the policy as observed then is compared with the policy as observed at the previous
--     observation (observed_from); one row per setting that differs, before_value /
--     after_value as text:
--       'approval required for add', 'approval required for update' (true -> false is
--       weaker); 'approval stages' (number of stages; compared only while approval is
--       required for add or update on both sides; fewer is weaker); 'requestor justification
--       required' (true -> false is weaker); 'expiration' ('type duration end'; to
--       noExpiration, to a longer duration or to a later end date is weaker; durations
--       compare as days with Y=365, M=30, W=7, H=1/24); 'reviews enabled' (true -> false
--       is weaker); 'review timeout behaviour' (removeAccess > acceptAccessRecommendation >
--       keepAccess; lower is weaker); 'self review' (false -> true is weaker). weaker is
--       NULL when the direction is unknown.
--   * change_source 'incompatibility history': an incompatible_access_packages_history or
--     incompatible_groups_history pair that appeared at an observation after the first
--     ('added', after_value = the other package or group) or whose version was closed
--     ('removed', before_value = it; weaker). subject_id / subject_name: the other package
--     or the group; object: the package that declares it.
--   * Who and when: the successful audit events in the observation window
--     (observed_from, observed_at] that target the object: for policies 'Create / Update /
--     Delete access package assignment policy' with a target resource of type
--     AccessPackageAssignmentPolicy carrying the policy id; for incompatibilities 'Create /
--     Delete incompatible access package' naming both packages, 'Create / Delete
--     incompatible group' naming the package and the group. changed_at is the latest such
--     event, audit_event_id its id, changed_by every distinct initiator of those events
--     ('; '-joined, in order). Without an event, changed_at is the policy's modifiedDateTime
--     when it falls in the window ('policy modifiedDateTime'), else observed_from
--     ('observation window start': the earliest the change can have happened).
--   * change_source 'audit event': a successful control event of those kinds that explains
--     no history row (made before govlake first observed the object, or undone before the
--     next observation). setting from the event: IsApprovalRequiredForAdd /
--     IsApprovalRequiredForUpdate in additionalDetails, else the newValue of that name in the
--     policy target's modifiedProperties; 'incompatible access package' / 'incompatible
--     group' for incompatibility events; else the activity name. before_value is unknown
--     (NULL). weaker: approval set to false, an incompatibility deleted; false for one
--     created; NULL otherwise.
--   * weaker_until (only when weaker): changed_at of the next change of the same object,
--     setting and subject (NULL: still weaker at the last observation).
--   * grants_while_weaker / grants (only when weaker; NULL otherwise): for a policy, its
--     granted requests (state delivered, partiallyDelivered, delivering or scheduled; add:
--     userAdd, adminAdd, onBehalfAdd, systemAdd; update: userUpdate, userExtend, adminUpdate,
--     systemUpdate) created in [changed_at, weaker_until), plus its assignments
--     (assignments_history) whose schedule starts in that interval and that no captured add
--     request names; 'approval required for add' counts add grants only, 'approval required
--     for update' update grants only. For an incompatibility: the same grants of either
--     package. grants lists 'request:<id>' / 'assignment:<id>' by time, then id.
-- Caveats: versions are as observed; a change made and undone between two observations
--   leaves no history, only its audit events (if captured). Audit events record what changed
--   only in part. A policy created or deleted is not a settings change here (its events are
--   listed as change_source 'audit event' when captured).
-- Key: change_source, object_type, object_id, setting, subject_id, observed_at, audit_event_id
WITH observations AS (
    SELECT DISTINCT table_name, observed_at
    FROM _ingest_runs
    WHERE table_name IN ('assignment_policies', 'access_packages')
),
-- Planning cost: DataFusion inlines a CTE at every reference, so a CTE read n times is planned
-- n times (and the CTEs it reads with it). Keep each CTE read once where possible: the settings
-- are compared in one pass over policy_pairs, events are matched to history rows with one full
-- join, and the next change comes from a window, not a self-join.
-- Times at which a policy's observed settings (its version or its stages) changed.
policy_points AS (
    SELECT id AS policy_id, valid_from AS t FROM assignment_policies_history
    UNION
    SELECT policy_id, valid_from FROM policy_approval_stages_history
    UNION
    SELECT policy_id, valid_to FROM policy_approval_stages_history WHERE valid_to IS NOT NULL
),
policy_windows AS (
    SELECT p.policy_id, p.t AS observed_at, max(o.observed_at) AS observed_from
    FROM policy_points p
    JOIN observations o ON o.table_name = 'assignment_policies' AND o.observed_at < p.t
    GROUP BY p.policy_id, p.t
),
-- Stages in force at both ends of each window, counted in one pass.
policy_window_stages AS (
    SELECT w.policy_id, w.observed_from, w.observed_at,
           count(DISTINCT CASE WHEN st.valid_from <= w.observed_from
                                AND (st.valid_to IS NULL OR st.valid_to > w.observed_from)
                               THEN st.stage_number END) AS b_stages,
           count(DISTINCT CASE WHEN st.valid_from <= w.observed_at
                                AND (st.valid_to IS NULL OR st.valid_to > w.observed_at)
                               THEN st.stage_number END) AS a_stages
    FROM policy_windows w
    LEFT JOIN policy_approval_stages_history st ON st.policy_id = w.policy_id
    GROUP BY w.policy_id, w.observed_from, w.observed_at
),
policy_versions AS (
    SELECT v.id, v.valid_from, v.valid_to,
           v.display_name, v.access_package_id, v.modified_date_time,
           v.request_approval_settings_is_approval_required_for_add AS approval_add,
           v.request_approval_settings_is_approval_required_for_update AS approval_update,
           v.request_approval_settings_is_requestor_justification_required AS justification,
           v.expiration_type,
           concat_ws(' ', v.expiration_type, v.expiration_duration,
                     CAST(v.expiration_end_date_time AS VARCHAR)) AS expiration,
           v.expiration_end_date_time,
           coalesce(CAST(regexp_match(split_part(v.expiration_duration, 'T', 1), '(\d+)Y')[1] AS DOUBLE), 0) * 365
         + coalesce(CAST(regexp_match(split_part(v.expiration_duration, 'T', 1), '(\d+)M')[1] AS DOUBLE), 0) * 30
         + coalesce(CAST(regexp_match(split_part(v.expiration_duration, 'T', 1), '(\d+)W')[1] AS DOUBLE), 0) * 7
         + coalesce(CAST(regexp_match(split_part(v.expiration_duration, 'T', 1), '(\d+)D')[1] AS DOUBLE), 0)
         + coalesce(CAST(regexp_match(split_part(v.expiration_duration, 'T', 2), '(\d+)H')[1] AS DOUBLE), 0) / 24
           AS expiration_days,
           v.review_settings_is_enabled AS reviews,
           v.review_settings_expiration_behavior AS review_timeout,
           v.review_settings_is_self_review AS self_review
    FROM assignment_policies_history v
),
-- The policy as observed at both ends of each window (b: observed_from, a: observed_at).
policy_pairs AS (
    SELECT w.policy_id AS id, a.display_name, a.access_package_id, a.modified_date_time,
           w.observed_from, w.observed_at,
           b.approval_add AS b_add, a.approval_add AS a_add,
           b.approval_update AS b_update, a.approval_update AS a_update,
           b.justification AS b_just, a.justification AS a_just,
           b.expiration_type AS b_exp_type, a.expiration_type AS a_exp_type,
           b.expiration_days AS b_exp_days, a.expiration_days AS a_exp_days,
           b.expiration_end_date_time AS b_exp_end, a.expiration_end_date_time AS a_exp_end,
           b.expiration AS b_exp, a.expiration AS a_exp,
           b.reviews AS b_reviews, a.reviews AS a_reviews,
           b.review_timeout AS b_timeout, a.review_timeout AS a_timeout,
           b.self_review AS b_self, a.self_review AS a_self,
           w.b_stages, w.a_stages
    FROM policy_window_stages w
    JOIN policy_versions a ON a.id = w.policy_id
        AND a.valid_from <= w.observed_at AND (a.valid_to IS NULL OR a.valid_to > w.observed_at)
    JOIN policy_versions b ON b.id = w.policy_id
        AND b.valid_from <= w.observed_from AND (b.valid_to IS NULL OR b.valid_to > w.observed_from)
),
-- One row per window and compared setting (a single pass over the pairs), kept when it differs.
policy_setting_values AS (
    SELECT p.id, p.display_name, p.access_package_id, p.modified_date_time, p.observed_from,
           p.observed_at, s.setting,
           CASE s.setting
               WHEN 'approval required for add' THEN p.b_add IS DISTINCT FROM p.a_add
               WHEN 'approval required for update' THEN p.b_update IS DISTINCT FROM p.a_update
               WHEN 'approval stages' THEN p.b_stages <> p.a_stages
                   AND coalesce(p.b_add OR p.b_update, false)
                   AND coalesce(p.a_add OR p.a_update, false)
               WHEN 'requestor justification required' THEN p.b_just IS DISTINCT FROM p.a_just
               WHEN 'expiration' THEN p.b_exp IS DISTINCT FROM p.a_exp
               WHEN 'reviews enabled' THEN p.b_reviews IS DISTINCT FROM p.a_reviews
               WHEN 'review timeout behaviour' THEN p.b_timeout IS DISTINCT FROM p.a_timeout
               WHEN 'self review' THEN p.b_self IS DISTINCT FROM p.a_self
           END AS differs,
           CASE s.setting
               WHEN 'approval required for add' THEN CAST(p.b_add AS VARCHAR)
               WHEN 'approval required for update' THEN CAST(p.b_update AS VARCHAR)
               WHEN 'approval stages' THEN CAST(p.b_stages AS VARCHAR)
               WHEN 'requestor justification required' THEN CAST(p.b_just AS VARCHAR)
               WHEN 'expiration' THEN p.b_exp
               WHEN 'reviews enabled' THEN CAST(p.b_reviews AS VARCHAR)
               WHEN 'review timeout behaviour' THEN p.b_timeout
               WHEN 'self review' THEN CAST(p.b_self AS VARCHAR)
           END AS before_value,
           CASE s.setting
               WHEN 'approval required for add' THEN CAST(p.a_add AS VARCHAR)
               WHEN 'approval required for update' THEN CAST(p.a_update AS VARCHAR)
               WHEN 'approval stages' THEN CAST(p.a_stages AS VARCHAR)
               WHEN 'requestor justification required' THEN CAST(p.a_just AS VARCHAR)
               WHEN 'expiration' THEN p.a_exp
               WHEN 'reviews enabled' THEN CAST(p.a_reviews AS VARCHAR)
               WHEN 'review timeout behaviour' THEN p.a_timeout
               WHEN 'self review' THEN CAST(p.a_self AS VARCHAR)
           END AS after_value,
           CASE s.setting
               WHEN 'approval required for add' THEN
                   CASE WHEN p.b_add IS NULL OR p.a_add IS NULL THEN CAST(NULL AS BOOLEAN)
                        ELSE p.b_add AND NOT p.a_add END
               WHEN 'approval required for update' THEN
                   CASE WHEN p.b_update IS NULL OR p.a_update IS NULL THEN CAST(NULL AS BOOLEAN)
                        ELSE p.b_update AND NOT p.a_update END
               WHEN 'approval stages' THEN p.a_stages < p.b_stages
               WHEN 'requestor justification required' THEN
                   CASE WHEN p.b_just IS NULL OR p.a_just IS NULL THEN CAST(NULL AS BOOLEAN)
                        ELSE p.b_just AND NOT p.a_just END
               WHEN 'expiration' THEN
                   CASE
                       WHEN p.a_exp_type = 'noExpiration' THEN p.b_exp_type IS DISTINCT FROM 'noExpiration'
                       WHEN p.b_exp_type = 'noExpiration' THEN false
                       WHEN p.a_exp_type = 'afterDuration' AND p.b_exp_type = 'afterDuration'
                           THEN p.a_exp_days > p.b_exp_days
                       WHEN p.a_exp_type = 'afterDateTime' AND p.b_exp_type = 'afterDateTime'
                           THEN p.a_exp_end > p.b_exp_end
                       ELSE CAST(NULL AS BOOLEAN)
                   END
               WHEN 'reviews enabled' THEN
                   CASE WHEN p.b_reviews IS NULL OR p.a_reviews IS NULL THEN CAST(NULL AS BOOLEAN)
                        ELSE p.b_reviews AND NOT p.a_reviews END
               WHEN 'review timeout behaviour' THEN
                   CASE WHEN p.a_timeout = 'removeAccess' THEN false
                        WHEN p.b_timeout = 'removeAccess' THEN p.a_timeout IS NOT NULL
                        WHEN p.b_timeout = 'acceptAccessRecommendation' AND p.a_timeout = 'keepAccess' THEN true
                        WHEN p.b_timeout = 'keepAccess' AND p.a_timeout = 'acceptAccessRecommendation' THEN false
                        ELSE CAST(NULL AS BOOLEAN) END
               WHEN 'self review' THEN
                   CASE WHEN p.b_self IS NULL OR p.a_self IS NULL THEN CAST(NULL AS BOOLEAN)
                        ELSE p.a_self AND NOT p.b_self END
           END AS weaker
    FROM policy_pairs p
    CROSS JOIN (VALUES ('approval required for add'), ('approval required for update'),
                       ('approval stages'), ('requestor justification required'),
                       ('expiration'), ('reviews enabled'), ('review timeout behaviour'),
                       ('self review')) AS s(setting)
),
policy_settings AS (
    SELECT id, display_name, access_package_id, modified_date_time, observed_from, observed_at,
           setting, before_value, after_value, weaker
    FROM policy_setting_values
    WHERE differs
),
package_names AS (
    SELECT id, display_name
    FROM (SELECT id, display_name,
                 row_number() OVER (PARTITION BY id ORDER BY valid_from DESC) AS n
          FROM access_packages_history) x
    WHERE n = 1
),
policy_packages AS (
    SELECT id, max(access_package_id) AS access_package_id
    FROM assignment_policies_history
    GROUP BY id
),
incompat_versions AS (
    SELECT access_package_id, 'incompatible access package' AS setting,
           incompatible_access_package_id AS subject_id,
           incompatible_access_package_display_name AS subject_name, valid_from, valid_to
    FROM incompatible_access_packages_history
    UNION ALL
    SELECT access_package_id, 'incompatible group', group_id, group_display_name,
           valid_from, valid_to
    FROM incompatible_groups_history
),
incompat_points AS (
    SELECT access_package_id, setting, subject_id, subject_name, 'added' AS kind,
           valid_from AS t
    FROM incompat_versions
    UNION ALL
    SELECT access_package_id, setting, subject_id, subject_name, 'removed', valid_to
    FROM incompat_versions
    WHERE valid_to IS NOT NULL
),
incompat_changes AS (
    SELECT i.access_package_id, i.setting, i.subject_id, i.subject_name, i.kind,
           max(o.observed_at) AS observed_from, i.t AS observed_at
    FROM incompat_points i
    JOIN observations o ON o.table_name = 'access_packages' AND o.observed_at < i.t
    GROUP BY i.access_package_id, i.setting, i.subject_id, i.subject_name, i.kind, i.t
),
-- Successful control events and the objects they name. (DISTINCT: an event stored once is
-- listed once; and a distinct result is computed once and counted, so the joins below see
-- that it is a handful of rows and look the events' targets and details up by its ids,
-- where an estimate from the whole audit log had the targets of every event hashed.)
control_events AS (
    SELECT DISTINCT e.id, e.activity_display_name, e.activity_date_time,
           coalesce(e.initiated_by_user_user_principal_name, e.initiated_by_app_display_name) AS actor
    FROM audit_events e
    WHERE e.result = 'success'
      AND e.activity_display_name IN (
          'Create access package assignment policy', 'Update access package assignment policy',
          'Delete access package assignment policy',
          'Create incompatible access package', 'Delete incompatible access package',
          'Create incompatible group', 'Delete incompatible group')
),
-- The control events' targets (read once for the two below).
control_targets AS (
    SELECT t.audit_event_id, lower(t.type) AS type, t.position, t.target_id, t.display_name,
           t.modified_properties
    FROM control_events e
    JOIN audit_event_target_resources t ON t.audit_event_id = e.id
),
first_package_target AS (
    SELECT audit_event_id, min(position) AS position
    FROM control_targets
    WHERE type = 'accesspackage'
    GROUP BY audit_event_id
),
event_objects AS (
    SELECT e.id AS event_id,
           min(CASE WHEN t.type = 'accesspackageassignmentpolicy' THEN t.target_id END) AS policy_id,
           min(CASE WHEN t.type = 'accesspackageassignmentpolicy' THEN t.display_name END) AS policy_name,
           min(CASE WHEN t.type = 'accesspackageassignmentpolicy' THEN t.modified_properties END) AS modified_properties,
           min(CASE WHEN t.type = 'accesspackage' AND t.position = f.position THEN t.target_id END) AS package_id,
           min(CASE WHEN t.type = 'accesspackage' AND t.position > f.position THEN t.target_id END) AS other_package_id,
           min(CASE WHEN t.type = 'accesspackage' AND t.position > f.position THEN t.display_name END) AS other_package_name,
           min(CASE WHEN t.type = 'group' THEN t.target_id END) AS group_id,
           min(CASE WHEN t.type = 'group' THEN t.display_name END) AS group_name
    FROM control_events e
    JOIN control_targets t ON t.audit_event_id = e.id
    LEFT JOIN first_package_target f ON f.audit_event_id = e.id
    GROUP BY e.id
),
event_details AS (
    SELECT audit_event_id,
           max(CASE WHEN lower(key) = 'isapprovalrequiredforadd' THEN lower(trim(value)) END) AS approval_add,
           max(CASE WHEN lower(key) = 'isapprovalrequiredforupdate' THEN lower(trim(value)) END) AS approval_update
    FROM audit_event_additional_details
    WHERE lower(key) IN ('isapprovalrequiredforadd', 'isapprovalrequiredforupdate')
      AND audit_event_id IN (SELECT id FROM control_events)
    GROUP BY audit_event_id
),
events AS (
    SELECT e.id, e.activity_display_name, e.activity_date_time, e.actor,
           o.policy_id, o.policy_name, o.package_id, o.other_package_id, o.other_package_name,
           o.group_id, o.group_name,
           coalesce(d.approval_add,
               lower(regexp_match(o.modified_properties,
                   '"displayName":"IsApprovalRequiredForAdd","newValue":"\\"?([A-Za-z]+)')[1])) AS approval_add,
           coalesce(d.approval_update,
               lower(regexp_match(o.modified_properties,
                   '"displayName":"IsApprovalRequiredForUpdate","newValue":"\\"?([A-Za-z]+)')[1])) AS approval_update
    FROM control_events e
    LEFT JOIN event_objects o ON o.event_id = e.id
    LEFT JOIN event_details d ON d.audit_event_id = e.id
),
-- Each event as the change it is on its own (change_source 'audit event'): what is listed when
-- it explains no history row.
event_changes AS (
    SELECT e.id, e.activity_display_name, e.activity_date_time, e.actor, e.policy_id,
           e.package_id, e.other_package_id, e.group_id,
           row_number() OVER () AS event_row,
           e.policy_name AS object_name,
           coalesce(pp.access_package_id, e.package_id) AS access_package_id,
           CASE
               WHEN e.activity_display_name LIKE '% incompatible access package' THEN 'incompatible access package'
               WHEN e.activity_display_name LIKE '% incompatible group' THEN 'incompatible group'
               WHEN e.approval_add IS NOT NULL THEN 'approval required for add'
               WHEN e.approval_update IS NOT NULL THEN 'approval required for update'
               ELSE e.activity_display_name
           END AS setting,
           CASE WHEN e.activity_display_name LIKE '% incompatible access package' THEN e.other_package_id
                WHEN e.activity_display_name LIKE '% incompatible group' THEN e.group_id END AS subject_id,
           CASE WHEN e.activity_display_name LIKE '% incompatible access package' THEN e.other_package_name
                WHEN e.activity_display_name LIKE '% incompatible group' THEN e.group_name END AS subject_name,
           CASE WHEN e.activity_display_name = 'Delete incompatible access package' THEN e.other_package_name
                WHEN e.activity_display_name = 'Delete incompatible group' THEN e.group_name END AS before_value,
           CASE
               WHEN e.activity_display_name = 'Create incompatible access package' THEN e.other_package_name
               WHEN e.activity_display_name = 'Create incompatible group' THEN e.group_name
               WHEN e.activity_display_name LIKE 'Delete incompatible%' THEN CAST(NULL AS VARCHAR)
               WHEN e.approval_add IS NOT NULL THEN e.approval_add
               ELSE e.approval_update
           END AS after_value,
           CASE
               WHEN e.activity_display_name LIKE 'Delete incompatible%' THEN true
               WHEN e.activity_display_name LIKE 'Create incompatible%' THEN false
               WHEN e.approval_add = 'false' THEN true
               WHEN e.approval_add IS NULL AND e.approval_update = 'false' THEN true
               ELSE CAST(NULL AS BOOLEAN)
           END AS weaker
    FROM events e
    LEFT JOIN policy_packages pp ON pp.id = e.policy_id
),
history_changes AS (
    SELECT 'policy history' AS change_source, 'assignment policy' AS object_type,
           s.id AS object_id, s.display_name AS object_name, s.access_package_id,
           s.setting, CAST(NULL AS VARCHAR) AS subject_id, CAST(NULL AS VARCHAR) AS subject_name,
           s.before_value, s.after_value, s.weaker, s.modified_date_time,
           s.observed_from, s.observed_at
    FROM policy_settings s
    UNION ALL
    SELECT 'incompatibility history', 'access package', c.access_package_id,
           CAST(NULL AS VARCHAR), c.access_package_id AS package_id, c.setting, c.subject_id,
           c.subject_name,
           CASE WHEN c.kind = 'removed' THEN c.subject_name END,
           CASE WHEN c.kind = 'added' THEN c.subject_name END,
           c.kind = 'removed', CAST(NULL AS TIMESTAMP), c.observed_from, c.observed_at
    FROM incompat_changes c
),
history_rows AS (
    SELECT h.*, row_number() OVER () AS history_row
    FROM history_changes h
),
-- Which events explain which history row (same object, inside its observation window). A full
-- join, so that one pass also yields the history rows no event explains and the events that
-- explain none (each alone: no history_row, or no event_row); the view reads every CTE once,
-- which keeps it quick to plan.
explained AS (
    SELECT h.history_row, e.event_row, e.id AS event_id, e.activity_date_time, e.actor,
           CASE WHEN h.history_row IS NULL THEN e.id END AS lone_event_id,
           CASE WHEN h.history_row IS NULL THEN e.event_row END AS lone_event_row,
           -- An event alone is listed if its id is NOT IN the ids of the events that explain a
           -- history row (evaluated as SQL evaluates NOT IN, NULLs included).
           CASE WHEN h.history_row IS NULL THEN
               NOT coalesce(bool_or(h.history_row IS NOT NULL AND e.event_row IS NOT NULL) OVER (), false)
               OR (e.id IS NOT NULL
                   AND NOT bool_or(h.history_row IS NOT NULL AND e.event_row IS NOT NULL)
                           OVER (PARTITION BY e.id)
                   AND NOT bool_or(h.history_row IS NOT NULL AND e.event_row IS NOT NULL
                                   AND e.id IS NULL) OVER ())
           END AS unexplained,
           CASE WHEN h.history_row IS NULL THEN 'audit event'
                WHEN h.change_source = 'policy history' THEN 'policy history'
                ELSE 'incompatibility history' END AS change_source,
           CASE WHEN h.change_source = 'policy history'
                  OR (h.history_row IS NULL AND e.policy_id IS NOT NULL) THEN 'assignment policy'
                ELSE 'access package' END AS object_type,
           CASE WHEN h.history_row IS NULL THEN coalesce(e.policy_id, e.package_id)
                ELSE h.object_id END AS object_id,
           CASE WHEN h.history_row IS NULL THEN e.object_name ELSE h.object_name END AS object_name,
           CASE WHEN h.history_row IS NULL THEN e.access_package_id
                ELSE h.access_package_id END AS access_package_id,
           CASE WHEN h.history_row IS NULL THEN e.setting ELSE h.setting END AS setting,
           CASE WHEN h.history_row IS NULL THEN e.subject_id ELSE h.subject_id END AS subject_id,
           CASE WHEN h.history_row IS NULL THEN e.subject_name ELSE h.subject_name END AS subject_name,
           CASE WHEN h.history_row IS NULL THEN e.before_value ELSE h.before_value END AS before_value,
           CASE WHEN h.history_row IS NULL THEN e.after_value ELSE h.after_value END AS after_value,
           CASE WHEN h.history_row IS NULL THEN e.weaker ELSE h.weaker END AS weaker,
           h.modified_date_time,
           -- Timestamp(ns, UTC), as the columns have always been typed.
           arrow_cast(h.observed_from, 'Timestamp(Nanosecond, Some("UTC"))') AS observed_from,
           arrow_cast(h.observed_at, 'Timestamp(Nanosecond, Some("UTC"))') AS observed_at
    FROM history_rows h
    FULL JOIN event_changes e
      ON e.activity_date_time > h.observed_from AND e.activity_date_time <= h.observed_at
     AND ((h.change_source = 'policy history' AND e.policy_id = h.object_id
           AND e.activity_display_name LIKE '% access package assignment policy')
       OR (h.setting = 'incompatible access package'
           AND e.activity_display_name LIKE '% incompatible access package'
           AND ((e.package_id = h.object_id AND e.other_package_id = h.subject_id)
             OR (e.package_id = h.subject_id AND e.other_package_id = h.object_id)))
       OR (h.setting = 'incompatible group'
           AND e.activity_display_name LIKE '% incompatible group'
           AND e.package_id = h.object_id AND e.group_id = h.subject_id))
),
-- One row per history row (with the events that explain it) and per event alone.
explanation AS (
    SELECT history_row, lone_event_row, unexplained, change_source, object_type, object_id,
           object_name, access_package_id, setting, subject_id, subject_name, before_value,
           after_value, weaker, modified_date_time, observed_from, observed_at,
           max(activity_date_time) AS event_time,
           string_agg(DISTINCT actor, '; ' ORDER BY actor) AS actors,
           first_value(event_id ORDER BY activity_date_time DESC, event_id DESC) AS event_id
    FROM explained
    GROUP BY history_row, lone_event_row, unexplained, change_source, object_type, object_id,
             object_name, access_package_id, setting, subject_id, subject_name, before_value,
             after_value, weaker, modified_date_time, observed_from, observed_at
),
-- An event alone: changed_at is its time, changed_by its initiator, audit_event_id its id.
changes AS (
    SELECT coalesce(x.event_time,
               CASE WHEN x.modified_date_time > x.observed_from
                     AND x.modified_date_time <= x.observed_at THEN x.modified_date_time END,
               x.observed_from) AS changed_at,
           CASE WHEN x.event_time IS NOT NULL OR x.history_row IS NULL THEN 'audit event'
                WHEN x.modified_date_time > x.observed_from
                 AND x.modified_date_time <= x.observed_at THEN 'policy modifiedDateTime'
                ELSE 'observation window start' END AS changed_at_source,
           CAST(x.actors AS VARCHAR) AS changed_by,
           x.change_source, x.object_type, x.object_id, x.object_name, x.access_package_id,
           x.setting, x.subject_id, x.subject_name, x.before_value, x.after_value, x.weaker,
           x.observed_from, x.observed_at, x.event_id AS audit_event_id
    FROM explanation x
    WHERE x.history_row IS NOT NULL OR x.unexplained
),
keyed AS (
    SELECT c.*,
           concat_ws('|', c.change_source, c.object_id, c.setting, coalesce(c.subject_id, ''),
                     coalesce(CAST(c.observed_at AS VARCHAR), ''),
                     coalesce(c.audit_event_id, '')) AS change_key,
           concat_ws('|', c.object_id, c.setting, coalesce(c.subject_id, '')) AS setting_key
    FROM changes c
),
-- The weaker setting lasts until the same object's same setting changes again: the earliest
-- later changed_at of the same setting_key (a window, not a self-join).
windows AS (
    SELECT c.*,
           CASE WHEN c.changed_at IS NOT NULL THEN
               min(c.changed_at) OVER (PARTITION BY c.setting_key ORDER BY c.changed_at
                                       RANGE BETWEEN INTERVAL '1 nanosecond' FOLLOWING
                                             AND UNBOUNDED FOLLOWING)
           END AS weaker_until
    FROM keyed c
),
grants AS (
    SELECT concat('request:', r.id) AS grant_ref, r.assignment_policy_id, r.access_package_id,
           r.created_date_time AS granted_at,
           CASE WHEN r.request_type IN ('userUpdate', 'userExtend', 'adminUpdate', 'systemUpdate')
                THEN 'update' ELSE 'add' END AS kind
    FROM assignment_requests r
    WHERE r.request_type IN ('userAdd', 'adminAdd', 'onBehalfAdd', 'systemAdd',
                             'userUpdate', 'userExtend', 'adminUpdate', 'systemUpdate')
      AND r.state IN ('delivered', 'partiallyDelivered', 'delivering', 'scheduled')
    UNION ALL
    SELECT concat('assignment:', a.id), max(a.assignment_policy_id), max(a.access_package_id),
           min(a.schedule_start_date_time), 'add'
    FROM assignments_history a
    WHERE a.id NOT IN (SELECT assignment_id FROM assignment_requests
                       WHERE assignment_id IS NOT NULL
                         AND request_type IN ('userAdd', 'adminAdd', 'onBehalfAdd', 'systemAdd'))
    GROUP BY a.id
),
weak_grants AS (
    SELECT w.change_key, g.grant_ref, g.granted_at
    FROM windows w
    JOIN grants g
      ON g.granted_at >= w.changed_at
     AND (w.weaker_until IS NULL OR g.granted_at < w.weaker_until)
    WHERE w.weaker
      AND ((w.object_type = 'assignment policy' AND g.assignment_policy_id = w.object_id
            AND (w.setting <> 'approval required for add' OR g.kind = 'add')
            AND (w.setting <> 'approval required for update' OR g.kind = 'update'))
        OR (w.object_type = 'access package'
            AND (g.access_package_id = w.object_id
                 OR (w.setting = 'incompatible access package' AND g.access_package_id = w.subject_id))))
),
weak_grant_lists AS (
    SELECT change_key, count(*) AS grants_while_weaker,
           string_agg(grant_ref, ', ' ORDER BY granted_at, grant_ref) AS grants
    FROM weak_grants
    GROUP BY change_key
)
SELECT w.changed_at, w.changed_at_source, w.changed_by, w.change_source, w.object_type,
       w.object_id,
       coalesce(w.object_name,
                CASE WHEN w.object_type = 'access package' THEN pn.display_name END) AS object_name,
       w.access_package_id, pn.display_name AS access_package_name,
       w.setting, w.subject_id, w.subject_name, w.before_value, w.after_value, w.weaker,
       CASE WHEN w.weaker THEN w.weaker_until END AS weaker_until,
       w.observed_from, w.observed_at, w.audit_event_id,
       CASE WHEN w.weaker THEN coalesce(g.grants_while_weaker, 0) END AS grants_while_weaker,
       g.grants
FROM windows w
LEFT JOIN package_names pn ON pn.id = w.access_package_id
LEFT JOIN weak_grant_lists g ON g.change_key = w.change_key
ORDER BY w.changed_at, w.object_id, w.setting, w.subject_id, w.change_source, w.audit_event_id,
         w.observed_at
