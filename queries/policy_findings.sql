-- policy_findings: assignment-policy settings an identity-governance expert would flag.
--
-- Answers: "Which policies let any external guest in without approval? Where does access never
-- expire or never get reviewed?"
-- One row per (policy, rule). Rules: external users without approval; approval stage without
-- escalation; requestor justification not required; approver justification not required;
-- single-user approver; no expiration; reviews disabled; review timeout keeps access; self
-- review; review recommendations off.
-- Columns: policy_id, policy_name, access_package_id, access_package_name, rule, severity,
--   detail.
-- Caveats: evaluated on the current snapshot of each policy.
WITH p AS (
    SELECT pol.*, pkg.display_name AS access_package_name
    FROM assignment_policies pol
    LEFT JOIN access_packages pkg ON pkg.id = pol.access_package_id
),
findings AS (
    SELECT id, 'external users without approval' AS rule, 'high' AS severity,
           concat('allowedTargetScope = ', allowed_target_scope) AS detail
    FROM p
    WHERE allowed_target_scope IN ('allExternalUsers', 'allConfiguredConnectedOrganizationUsers')
      AND coalesce(request_approval_settings_is_approval_required_for_add, false) = false
    UNION ALL
    SELECT p.id, 'approval stage without escalation', 'medium',
           concat('stage ', CAST(s.stage_number AS VARCHAR), ' has no escalation')
    FROM p JOIN policy_approval_stages s ON s.policy_id = p.id
    WHERE coalesce(s.is_escalation_enabled, false) = false
    UNION ALL
    SELECT id, 'requestor justification not required', 'low', 'requestors may ask without a reason'
    FROM p WHERE coalesce(request_approval_settings_is_requestor_justification_required, false) = false
    UNION ALL
    SELECT p.id, 'approver justification not required', 'low',
           concat('stage ', CAST(s.stage_number AS VARCHAR), ' approvers may decide without a reason')
    FROM p JOIN policy_approval_stages s ON s.policy_id = p.id
    WHERE coalesce(s.is_approver_justification_required, false) = false
    UNION ALL
    SELECT p.id, 'single-user approver', 'medium',
           concat('stage ', CAST(s.stage_number AS VARCHAR), ' is approved by one named user; prefer managers, sponsors or a group')
    FROM p JOIN policy_approval_stages s ON s.policy_id = p.id
    WHERE s.primary_approver_types = 'singleUser'
    UNION ALL
    SELECT id, 'no expiration', 'high', 'assignments never expire'
    FROM p WHERE expiration_type = 'noExpiration'
    UNION ALL
    SELECT id, 'reviews disabled', 'high', 'access under this policy is never recertified'
    FROM p WHERE coalesce(review_settings_is_enabled, false) = false
    UNION ALL
    SELECT id, 'review timeout keeps access', 'medium', 'unreviewed access stays when a review times out'
    FROM p WHERE review_settings_is_enabled AND review_settings_expiration_behavior = 'keepAccess'
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
ORDER BY CASE f.severity WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, access_package_name, policy_name, rule, detail
