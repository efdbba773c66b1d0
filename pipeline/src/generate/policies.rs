//! Assignment policies: who may request each package, who approves (one or two stages, with
//! escalation), how long access lasts and how it is recertified.

use serde_json::{Value, json};

use super::catalog::Package;
use super::people::{People, User, org_id};
use super::{CTX_EM, Result, TenantWriter, guid};

/// An assignment policy.
pub(super) struct Policy {
    pub id: String,
    /// Index of its package.
    pub package: usize,
    pub name: &'static str,
    /// Approval stages (1 or 2).
    pub stages: usize,
    /// Days an assignment lasts; `None`: no expiry.
    pub expiry_days: Option<i64>,
}

/// The story's four policies, then one per department package.
pub(super) fn policies(packages: &[Package]) -> Vec<Policy> {
    let mut policies = vec![
        Policy {
            id: guid("policy-fa-employees"),
            package: 0,
            name: "Employees - manager approval",
            stages: 1,
            expiry_days: Some(365),
        },
        Policy {
            id: guid("policy-fa-external-auditors"),
            package: 0,
            name: "External auditors - sponsor and control owner",
            stages: 2,
            expiry_days: Some(90),
        },
        Policy {
            id: guid("policy-vpi-payments-staff"),
            package: 1,
            name: "Payments staff",
            stages: 1,
            expiry_days: None,
        },
        Policy {
            id: guid("policy-vpa-payment-approvers"),
            package: 2,
            name: "Payment approvers",
            stages: 1,
            expiry_days: Some(180),
        },
    ];
    for i in 3..packages.len() {
        policies.push(Policy {
            id: guid(&format!("policy-dept-{i}")),
            package: i,
            name: "Department members",
            stages: 1,
            expiry_days: Some(365),
        });
    }
    policies
}

/// Who may request, the approval stages and the review settings of one policy.
struct Rules {
    scope: &'static str,
    targets: Value,
    stages: Vec<Value>,
    review_on: bool,
    timeout: &'static str,
    reviewers: Value,
}

fn single(u: &User) -> Value {
    json!({"@odata.type": "#microsoft.graph.singleUser", "userId": u.id, "description": u.name})
}

fn stage(primary: Value, escalate: bool, escalation_to: Value) -> Value {
    json!({
        "durationBeforeAutomaticDenial": "P14D", "isApproverJustificationRequired": true,
        "isEscalationEnabled": escalate, "durationBeforeEscalation": if escalate { "P2D" } else { "PT0S" },
        "approverInformationVisibility": "default",
        "primaryApprovers": primary, "fallbackPrimaryApprovers": [],
        "escalationApprovers": escalation_to, "fallbackEscalationApprovers": [],
    })
}

/// The `i`th policy's rules.
fn rules(i: usize, people: &People) -> Rules {
    let manager = json!({"@odata.type": "#microsoft.graph.requestorManager", "managerLevel": 1});
    let payments_staff = json!([{"@odata.type": "#microsoft.graph.groupMembers", "groupId": guid("group-Payments staff"), "description": "Payments staff"}]);
    let control_owner_only = || {
        vec![stage(
            json!([single(&people.control_owner)]),
            false,
            json!([]),
        )]
    };
    match i {
        1 => Rules {
            scope: "specificConnectedOrganizationUsers",
            targets: json!([{"@odata.type": "#microsoft.graph.connectedOrganizationMembers", "connectedOrganizationId": org_id(), "description": "Fabrikam Audit LLP"}]),
            stages: vec![
                stage(
                    json!([{"@odata.type": "#microsoft.graph.internalSponsors"}]),
                    true,
                    json!([single(&people.finance_mgr)]),
                ),
                stage(json!([single(&people.control_owner)]), false, json!([])),
            ],
            review_on: true,
            timeout: "removeAccess",
            reviewers: json!([single(&people.finance_mgr)]),
        },
        2 => Rules {
            scope: "specificDirectoryUsers",
            targets: payments_staff,
            stages: control_owner_only(),
            review_on: true,
            timeout: "keepAccess",
            reviewers: json!([single(&people.control_owner)]),
        },
        3 => Rules {
            scope: "specificDirectoryUsers",
            targets: payments_staff,
            stages: control_owner_only(),
            review_on: false,
            timeout: "keepAccess",
            reviewers: json!([]),
        },
        // 0 (employees) and every department policy: the manager, escalating after two days.
        _ => Rules {
            scope: "allMemberUsers",
            targets: json!([]),
            stages: vec![stage(
                json!([manager]),
                true,
                json!([single(&people.escalation)]),
            )],
            review_on: true,
            timeout: "removeAccess",
            reviewers: json!([manager]),
        },
    }
}

/// Writes the assignment policies.
pub(super) fn write(
    policies: &[Policy],
    packages: &[Package],
    people: &People,
    w: &mut TenantWriter,
) -> Result<()> {
    let mut pages = w.pages(
        &w.em(),
        "assignmentPolicies",
        &format!(
            "{CTX_EM}assignmentPolicies(accessPackage(),customExtensionStageSettings(customExtension()))"
        ),
    );
    for (i, p) in policies.iter().enumerate() {
        let Rules {
            scope,
            targets,
            stages,
            review_on,
            timeout,
            reviewers,
        } = rules(i, people);
        let expiration = match p.expiry_days {
            Some(d) => json!({"type": "afterDuration", "duration": format!("P{d}D")}),
            None => json!({"type": "noExpiration"}),
        };
        let extensions = if i == 1 {
            json!([{"id": guid("ces-servicenow"), "stage": "assignmentRequestApproved",
                    "customExtension": {"id": guid("ext-servicenow"), "displayName": "Open ServiceNow access ticket"}}])
        } else {
            json!([])
        };
        pages.push(&json!({
            "id": p.id, "displayName": p.name, "description": format!("{} for {}", p.name, packages[p.package].name),
            "createdDateTime": "2025-11-03T09:30:00Z", "modifiedDateTime": "2026-03-01T10:00:00Z",
            "allowedTargetScope": scope, "specificAllowedTargets": targets, "expiration": expiration,
            "requestorSettings": {"enableTargetsToSelfAddAccess": true, "enableTargetsToSelfUpdateAccess": true,
                                  "enableTargetsToSelfRemoveAccess": true, "allowCustomAssignmentSchedule": i == 2,
                                  "enableOnBehalfRequestorsToAddAccess": false, "onBehalfRequestors": []},
            "requestApprovalSettings": {"isApprovalRequiredForAdd": true, "isApprovalRequiredForUpdate": false,
                                        "isRequestorJustificationRequired": i != 3, "stages": stages},
            "reviewSettings": {"isEnabled": review_on, "expirationBehavior": timeout, "isRecommendationEnabled": i != 2,
                               "isReviewerJustificationRequired": true, "isSelfReview": false,
                               "schedule": {"startDateTime": "2026-01-01T00:00:00Z", "expiration": {"type": "afterDuration", "duration": "P14D"},
                                            "recurrence": {"pattern": {"type": "absoluteMonthly", "interval": 3}, "range": {"type": "noEnd"}}},
                               "primaryReviewers": reviewers, "fallbackReviewers": []},
            "accessPackage": {"id": packages[p.package].id},
            "customExtensionStageSettings": extensions,
        }))?;
    }
    w.finish(pages)
}
