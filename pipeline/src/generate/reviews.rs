//! Quarterly access reviews (2026 Q2 and Q3) of every policy with reviews on: definitions,
//! instances, and one decision per assignment live under the policy — approvals, denials,
//! nobody reviewing, and the story's denial that was never applied.

use serde_json::{Value, json};

use super::history::Live;
use super::people::User;
use super::policies::Policy;
use super::{DAY, HOUR, Result, Rng, Tenant, TenantWriter, at, guid, ts};

const QUARTERS: [(&str, (&str, &str)); 2] = [
    ("2026Q2", ("2026-04-01T00:00:00Z", "2026-04-15T00:00:00Z")),
    ("2026Q3", ("2026-07-01T00:00:00Z", "2026-07-15T00:00:00Z")),
];

/// One review definition: policy `pi` of the tenant, reviewed by `reviewer`.
struct Review<'a> {
    pi: usize,
    pol: &'a Policy,
    def_id: String,
    reviewer: &'a User,
}

/// Writes the reviews of every policy but the payment approvers' (index 3, reviews off).
pub(super) fn write(
    tenant: &Tenant,
    live: &[Live],
    rng: &mut Rng,
    w: &mut TenantWriter,
) -> Result<()> {
    let dir = w.out_dir().join("accessReviews");
    let mut defs = w.pages(
        &dir,
        "definitions",
        "identityGovernance/accessReviews/definitions",
    );
    let admin = &tenant.people.admin;
    for (pi, pol) in tenant.policies.iter().enumerate().filter(|(i, _)| *i != 3) {
        let review = Review {
            pi,
            pol,
            def_id: guid(&format!("review-def-{}", pol.id)),
            reviewer: if pi == 2 {
                &tenant.people.control_owner
            } else {
                &tenant.people.finance_mgr
            },
        };
        let (def_id, reviewer) = (&review.def_id, review.reviewer);
        let pkg = &tenant.packages[pol.package];
        defs.push(&json!({
            "id": def_id, "displayName": format!("Quarterly review: {} ({})", pkg.name, pol.name),
            "descriptionForAdmins": "Quarterly recertification", "descriptionForReviewers": "Confirm each person still needs this access.",
            "status": "InProgress", "createdDateTime": "2025-12-15T09:00:00Z", "lastModifiedDateTime": "2025-12-15T09:00:00Z",
            "createdBy": {"id": admin.id, "displayName": admin.name, "userPrincipalName": admin.upn},
            "scope": {"@odata.type": "#microsoft.graph.accessReviewQueryScope",
                      "query": format!("/identityGovernance/entitlementManagement/accessPackageAssignments?$filter=(accessPackageId eq '{}' and assignmentPolicyId eq '{}')", pkg.id, pol.id),
                      "queryType": "MicrosoftGraph"},
            "reviewers": [{"query": format!("/users/{}", reviewer.id), "queryType": "MicrosoftGraph"}], "fallbackReviewers": [],
            "settings": {"defaultDecisionEnabled": true, "defaultDecision": if pi == 2 { "None" } else { "Deny" },
                         "autoApplyDecisionsEnabled": true, "recommendationsEnabled": pi != 2, "justificationRequiredOnApproval": true,
                         "instanceDurationInDays": 14, "recurrence": {"pattern": {"type": "absoluteMonthly", "interval": 3}, "range": {"type": "noEnd"}},
                         "applyActions": [{"@odata.type": "#microsoft.graph.removeAccessApplyAction"}]},
        }))?;
        let mut instances = w.pages(
            &dir.join("instances"),
            &format!("instances-{}", &def_id[..8]),
            &format!("identityGovernance/accessReviews/definitions('{def_id}')/instances"),
        );
        for (q, (start, end)) in QUARTERS {
            let inst_id = guid(&format!("review-inst-{def_id}-{q}"));
            instances.push(&json!({"id": inst_id, "startDateTime": start, "endDateTime": end, "status": "Completed",
                "scope": {"@odata.type": "#microsoft.graph.accessReviewQueryScope", "query": format!("/identityGovernance/entitlementManagement/accessPackageAssignments?$filter=(accessPackageId eq '{}')", pkg.id), "queryType": "MicrosoftGraph"},
                "reviewers": [{"query": format!("/users/{}", reviewer.id), "queryType": "MicrosoftGraph"}]}))?;
            decisions(
                tenant,
                &review,
                (q, at(start), at(end)),
                &inst_id,
                live,
                rng,
                w,
            )?;
        }
        w.finish(instances)?;
    }
    w.finish(defs)
}

/// The decisions of one instance (`quarter`: name, start, end): one per assignment live
/// under the review's policy.
fn decisions(
    tenant: &Tenant,
    review: &Review<'_>,
    (q, s, e): (&str, i64, i64),
    inst_id: &str,
    live: &[Live],
    rng: &mut Rng,
    w: &mut TenantWriter,
) -> Result<()> {
    let (pi, pol, def_id, reviewer) = (review.pi, review.pol, &review.def_id, review.reviewer);
    let pkg = &tenant.packages[pol.package];
    let mut pages = w.pages(
        &w.out_dir().join("accessReviews").join("decisions"),
        &format!("decisions-{}", &inst_id[..8]),
        &format!(
            "identityGovernance/accessReviews/definitions('{def_id}')/instances('{inst_id}')/decisions"
        ),
    );
    for (k, (aid, u, _)) in live.iter().filter(|(_, _, p)| *p == pi).enumerate() {
        let user = &tenant.everyone[*u];
        let roll = rng.below(100);
        // The story: one external auditor's grant denied in Q3 but never removed.
        let stuck = q == "2026Q3" && pi == 1 && k == 2;
        let (decision, apply, reviewed) = if stuck {
            ("Deny", "AppliedWithUnknownFailure", true)
        } else if roll < 78 {
            ("Approve", "AppliedSuccessfully", true)
        } else if roll < 86 {
            ("Deny", "AppliedSuccessfully", true)
        } else if roll < 93 {
            let apply = if pi == 2 {
                "New"
            } else {
                "AppliedSuccessfully"
            };
            ("NotReviewed", apply, false)
        } else {
            ("DontKnow", "AppliedSuccessfully", true)
        };
        let reviewed_at = s + 2 * DAY + (k as i64 % 10) * HOUR;
        pages.push(&json!({
            "id": guid(&format!("decision-{inst_id}-{aid}")), "accessReviewId": inst_id,
            "decision": decision, "recommendation": if roll.is_multiple_of(3) { "Deny" } else { "Approve" },
            "applyResult": apply, "justification": if reviewed { "Reviewed against the role matrix." } else { "" },
            "reviewedDateTime": if reviewed { json!(ts(reviewed_at)) } else { Value::Null },
            "appliedDateTime": ts(e + HOUR),
            "reviewedBy": if reviewed { json!({"id": reviewer.id, "displayName": reviewer.name, "userPrincipalName": reviewer.upn}) }
                          else { json!({"id": "00000000-0000-0000-0000-000000000000", "displayName": "", "userPrincipalName": ""}) },
            "appliedBy": {"id": "00000000-0000-0000-0000-000000000000", "displayName": "", "userPrincipalName": ""},
            "principalLink": format!("https://graph.microsoft.com/v1.0/users/{}", user.id), "resourceLink": Value::Null,
            "principal": {"@odata.type": "#microsoft.graph.userIdentity", "id": user.id, "displayName": user.name, "userPrincipalName": user.upn},
            "resource": {"@odata.type": "#microsoft.graph.accessReviewInstanceDecisionItemAccessPackageAssignmentPolicyResource",
                         "id": pol.id, "displayName": pol.name, "type": "accessPackageAssignmentPolicy",
                         "accessPackageId": pkg.id, "accessPackageDisplayName": pkg.name},
        }))?;
    }
    w.finish(pages)
}
