-- policy_findings: assignment-policy settings an identity-governance expert would flag.
--
-- Answers: "Which policies let external users in without approval? Where does access never
-- expire or never get reviewed?"
-- One row per (policy, rule[, approval stage]).
-- Columns: policy_id, policy_name, access_package_id, access_package_name, rule, severity,
--   detail.
-- Rules (enum values compared in any letter case; a missing boolean counts as false):
--   - external users without approval (high): the policy admits external users and
--     requestApprovalSettings.isApprovalRequiredForAdd is not true. Scopes that admit
--     external users: specificConnectedOrganizationUsers,
--     allConfiguredConnectedOrganizationUsers, allExternalUsers, allDirectoryUsers ("all
--     users, including guests"), and any other value naming external or connected-organization
--     users.
--   - Per approval stage, only when the policy requires approval (for add or update):
--     approval stage without escalation (medium) when isEscalationEnabled is not true;
--     approver justification not required (low) when isApproverJustificationRequired is not
--     true; single-user approver (medium) when the stage's only primary approver is a
--     singleUser.
--   - requestor justification not required (low): isRequestorJustificationRequired is not
--     true on a policy people can request through (allowedTargetScope is not notSpecified,
--     i.e. not administrator-only, and the policy is not an automatic assignment policy).
--   - no expiration (high): expiration.type = noExpiration.
--   - reviews disabled (high): reviewSettings.isEnabled is not true. When reviews are on:
--     review timeout keeps access (medium) when expirationBehavior = keepAccess; self review
--     (high) when isSelfReview; review recommendations off (low) when isRecommendationEnabled
--     is not true.
-- Caveats: evaluated on the current snapshot of each policy (control_changes has the history).
-- Key: policy_id, access_package_id, rule
WITH p AS (
    SELECT pol.*, pkg.display_name AS access_package_name,
           lower(pol.allowed_target_scope) AS scope,
           coalesce(pol.request_approval_settings_is_approval_required_for_add, false)
               OR coalesce(pol.request_approval_settings_is_approval_required_for_update, false)
               AS approval_required
    FROM assignment_policies pol
    LEFT JOIN access_packages pkg ON pkg.id = pol.access_package_id
),
stages AS (
    SELECT p.id, s.stage_number, s.is_escalation_enabled, s.is_approver_justification_required,
           lower(s.primary_approver_types) AS primary_approver_types
    FROM p JOIN policy_approval_stages s ON s.policy_id = p.id
    WHERE p.approval_required
),
findings AS (
    SELECT id, 'external users without approval' AS rule, 'high' AS severity,
           concat('allowedTargetScope = ', allowed_target_scope) AS detail
    FROM p
    WHERE (scope IN ('specificconnectedorganizationusers', 'allconfiguredconnectedorganizationusers',
                     'allexternalusers', 'alldirectoryusers')
           OR scope LIKE '%external%' OR scope LIKE '%connectedorganization%')
      AND coalesce(request_approval_settings_is_approval_required_for_add, false) = false
    UNION ALL
    SELECT id, 'approval stage without escalation', 'medium',
           concat('stage ', CAST(stage_number AS VARCHAR), ' has no escalation')
    FROM stages
    WHERE coalesce(is_escalation_enabled, false) = false
    UNION ALL
    SELECT id, 'requestor justification not required', 'low', 'requestors may ask without a reason'
    FROM p
    WHERE coalesce(request_approval_settings_is_requestor_justification_required, false) = false
      AND coalesce(scope, '') <> 'notspecified'
      AND coalesce(automatic_request_settings_request_access_for_allowed_targets, false) = false
    UNION ALL
    SELECT id, 'approver justification not required', 'low',
           concat('stage ', CAST(stage_number AS VARCHAR), ' approvers may decide without a reason')
    FROM stages
    WHERE coalesce(is_approver_justification_required, false) = false
    UNION ALL
    SELECT id, 'single-user approver', 'medium',
           concat('stage ', CAST(stage_number AS VARCHAR), ' is approved by one named user; prefer managers, sponsors or a group')
    FROM stages
    WHERE primary_approver_types LIKE '%singleuser' AND strpos(primary_approver_types, ',') = 0
    UNION ALL
    SELECT id, 'no expiration', 'high', 'assignments never expire'
    FROM p WHERE lower(expiration_type) = 'noexpiration'
    UNION ALL
    SELECT id, 'reviews disabled', 'high', 'access under this policy is never recertified'
    FROM p WHERE coalesce(review_settings_is_enabled, false) = false
    UNION ALL
    SELECT id, 'review timeout keeps access', 'medium', 'unreviewed access stays when a review times out'
    FROM p WHERE review_settings_is_enabled AND lower(review_settings_expiration_behavior) = 'keepaccess'
    UNION ALL
    SELECT id, 'self review', 'high', 'holders recertify their own access'
    FROM p WHERE review_settings_is_enabled AND review_settings_is_self_review
    UNION ALL
    SELECT id, 'review recommendations off', 'low', 'reviewers get no sign-in based recommendations'
    FROM p WHERE review_settings_is_enabled AND coalesce(review_settings_is_recommendation_enabled, false) = false
)
SELECT f.id AS policy_id, p.display_name AS policy_name, p.access_package_id, p.access_package_name,
       f.rule, f.severity, f.detail
FROM findings f JOIN p ON p.id = f.id
ORDER BY CASE f.severity WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, access_package_name,
         policy_name, policy_id, rule, detail
