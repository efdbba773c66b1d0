//! The entity catalogue: which Graph objects govlake ingests, into which tables, with which
//! columns — read by ingest (to extract rows), query (to register tables) and upgrade (to
//! rebuild them); `value` reads Graph's lenient JSON into typed cells. Each column is declared as `name=graph/path|betaAlternate:conversion`; without a
//! `name=` the column is the snake_case of its first path (`target/objectId` →
//! `target_object_id`). Special paths: `@parent` / `@parent2` (ids from the `@odata.context`
//! or the enclosing object), `@position` (1-based index in the parent's list), `@const` (the
//! child list's constant, e.g. `internal` for internal sponsors).

use std::sync::LazyLock;

use serde_json::Value;

pub mod value;

use crate::lake::history::{VersionedTable, Versioning};
use crate::lake::{Cell, Column, ColumnType, TableSchema};
use value::{Conv, convert, get_path};

/// Why a record cannot become a row: its quarantine reason in `_rejects`.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The record is not a JSON object.
    #[error("expected an object but found {found}")]
    NotAnObject {
        /// What it is, described.
        found: &'static str,
    },
    /// A nested list that is something else (it would silently store no child rows).
    #[error("`{path}` is {found}, not a list")]
    NotAList {
        /// The property path.
        path: String,
        /// What it is, described.
        found: &'static str,
    },
    /// A value that does not fit its column.
    #[error("column `{column}`: {source}")]
    Column {
        /// The column.
        column: String,
        /// Why it does not fit.
        source: value::ConvertError,
    },
    /// A column of a composite key is empty.
    #[error("column `{column}` is empty but identifies the row")]
    EmptyKey {
        /// The column.
        column: String,
    },
    /// No `id`.
    #[error("the record has no `id`")]
    NoId,
    /// A required column is empty.
    #[error("column `{column}` is required but empty")]
    Required {
        /// The column.
        column: String,
    },
}

/// Where a column's value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Property paths tried in order (each split on `/`).
    Paths(Vec<Vec<String>>),
    /// A parent id: 0 = nearest parent, 1 = the one above.
    Parent(usize),
    /// 1-based position in the parent's list.
    Position,
    /// The child list's constant.
    Const,
}

/// One column of an entity table.
#[derive(Debug, Clone)]
pub struct ColSpec {
    /// Column name.
    pub name: String,
    /// Sources tried in order; the first non-null wins.
    pub sources: Vec<Source>,
    /// Conversion.
    pub conv: Conv,
}

impl ColSpec {
    fn ty(&self) -> ColumnType {
        match self.conv {
            Conv::Ts => ColumnType::Timestamp,
            Conv::Bool => ColumnType::Bool,
            Conv::Int => ColumnType::Int,
            Conv::Json => ColumnType::Json,
            _ => ColumnType::Str,
        }
    }
}

/// How an entity is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Current table + `_history` with validity intervals.
    Versioned(Versioning),
    /// Append-only, deduped by id, partitioned by the month of a timestamp column.
    Append,
}

/// How a row's `id` is formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The object's own `id`.
    Own,
    /// Parent id, child-list constant and these columns joined with `/` (child rows).
    Composite(Vec<&'static str>),
}

/// A list nested inside an entity's objects that feeds another entity's table.
#[derive(Debug, Clone)]
pub struct ChildList {
    /// Property paths of the list (alternates).
    pub paths: Vec<Vec<String>>,
    /// Entity whose table the list's objects go to.
    pub entity: &'static str,
    /// Constant handed to `@const` columns.
    pub constant: Option<&'static str>,
    /// Rows computed from the parent's row and the rows of its other lists rather than
    /// read from a list in it (`paths` is then empty). See [`EntitySpec::derived_rows`].
    pub derive: Option<DeriveRows>,
}

/// How a derived list's rows are computed: from the parent's id, its row, and the rows
/// stored for each of its other lists (by entity; items that are not rows left out).
pub type DeriveRows = fn(&str, &[Cell], &[ListRows<'_>]) -> Vec<Vec<Cell>>;

/// The rows stored for one of an object's lists.
pub struct ListRows<'a> {
    /// The list's entity.
    pub entity: &'static str,
    /// Its items that are rows, in order.
    pub rows: Vec<&'a [Cell]>,
}

/// One ingested entity.
#[derive(Debug, Clone)]
pub struct EntitySpec {
    /// Table name.
    pub table: &'static str,
    /// Storage kind.
    pub storage: Storage,
    /// Row key.
    pub key: Key,
    /// Data columns; the first is always `id`.
    pub columns: Vec<ColSpec>,
    /// Nested lists feeding child tables.
    pub children: Vec<ChildList>,
    /// Columns that must not be null (besides `id`).
    pub required: Vec<&'static str>,
    /// Whether a list of these objects under a parent is a complete snapshot of that parent
    /// only (review decisions of one instance), rather than of the whole table.
    pub scoped_by_parent: bool,
    /// One line for `govlake tables` and the README.
    pub about: &'static str,
}

/// Column name of the month partition of append-only tables.
pub const MONTH_COLUMN: &str = "activity_month";

fn snake(path: &str) -> String {
    let mut out = String::new();
    for (i, c) in path.trim_start_matches('@').chars().enumerate() {
        if c == '/' || c == '.' {
            out.push('_');
        } else if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn col(dsl: &str) -> ColSpec {
    let (lhs, conv) = match dsl.rsplit_once(':') {
        Some((l, c)) => (l, c),
        None => (dsl, "str"),
    };
    let conv = match conv {
        "str" => Conv::Str,
        "enum" => Conv::Enum,
        "ts" => Conv::Ts,
        "bool" => Conv::Bool,
        "int" => Conv::Int,
        "json" => Conv::Json,
        "type" => Conv::ODataType,
        "types" => Conv::ODataTypes,
        "result" => Conv::AuditResult,
        other => panic!("unknown conversion `{other}` in column spec `{dsl}`"),
    };
    let (name, paths) = match lhs.split_once('=') {
        Some((n, p)) => (n.to_string(), p),
        None => (snake(lhs.split('|').next().unwrap_or(lhs)), lhs),
    };
    let sources = paths
        .split('|')
        .map(|p| match p {
            "@parent" => Source::Parent(0),
            "@parent2" => Source::Parent(1),
            "@position" => Source::Position,
            "@const" => Source::Const,
            p => Source::Paths(vec![p.split('/').map(str::to_string).collect()]),
        })
        .collect();
    ColSpec {
        name,
        sources,
        conv,
    }
}

fn cols(dsl: &[&str]) -> Vec<ColSpec> {
    dsl.iter().map(|d| col(d)).collect()
}

fn list(paths: &str, entity: &'static str, constant: Option<&'static str>) -> ChildList {
    ChildList {
        paths: paths
            .split('|')
            .map(|p| p.split('/').map(str::to_string).collect())
            .collect(),
        entity,
        constant,
        derive: None,
    }
}

fn snapshot(table: &'static str, about: &'static str, columns: &[&str]) -> EntitySpec {
    EntitySpec {
        table,
        storage: Storage::Versioned(Versioning::Snapshot),
        key: Key::Own,
        columns: cols(columns),
        children: vec![],
        required: vec![],
        scoped_by_parent: false,
        about,
    }
}

fn child(
    table: &'static str,
    about: &'static str,
    key: Vec<&'static str>,
    columns: &[&str],
) -> EntitySpec {
    let mut all = vec!["id"];
    all.extend_from_slice(columns);
    EntitySpec {
        key: Key::Composite(key),
        scoped_by_parent: true,
        ..snapshot(table, about, &all)
    }
}

const SCHEDULE: &[&str] = &[
    "schedule/startDateTime:ts",
    "schedule/expiration/type:enum",
    "schedule/expiration/endDateTime:ts",
    "schedule/expiration/duration",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

fn build() -> Vec<EntitySpec> {
    let mut specs = Vec::new();

    specs.push(snapshot(
        "catalogs",
        "Access package catalogs.",
        &[
            "id",
            "displayName",
            "description",
            "catalogType:enum",
            "state:enum",
            "isExternallyVisible:bool",
            "createdDateTime:ts",
            "modifiedDateTime:ts",
        ],
    ));

    let mut packages = snapshot(
        "access_packages",
        "Access packages with their catalog.",
        &[
            "id",
            "displayName",
            "description",
            "isHidden:bool",
            "createdDateTime:ts",
            "modifiedDateTime:ts",
            "catalog_id=catalog/id|catalogId|accessPackageCatalog/id",
            "catalog_display_name=catalog/displayName|accessPackageCatalog/displayName",
        ],
    );
    packages.children = vec![
        list(
            "incompatibleAccessPackages",
            "incompatible_access_packages",
            None,
        ),
        list("incompatibleGroups", "incompatible_groups", None),
        list(
            "resourceRoleScopes|accessPackageResourceRoleScopes",
            "access_package_resource_role_scopes",
            None,
        ),
        list(
            "assignmentPolicies|accessPackageAssignmentPolicies",
            "assignment_policies",
            None,
        ),
    ];
    specs.push(packages);

    specs.push(child(
        "incompatible_access_packages",
        "Declared incompatibilities: holders of `incompatible_access_package_id` may not get `access_package_id`.",
        vec!["incompatible_access_package_id"],
        &["access_package_id=@parent", "incompatible_access_package_id=id",
          "incompatible_access_package_display_name=displayName"],
    ));
    specs.push(child(
        "incompatible_groups",
        "Groups whose members may not get the access package.",
        vec!["group_id"],
        &[
            "access_package_id=@parent",
            "group_id=id",
            "group_display_name=displayName",
        ],
    ));
    specs.push(child(
        "access_package_resource_role_scopes",
        "Resources and roles an access package grants (app roles, groups, sites).",
        vec!["role_scope_id"],
        &[
            "access_package_id=@parent",
            "role_scope_id=id",
            "createdDateTime:ts",
            "role/id",
            "role/displayName",
            "role/originId",
            "role/originSystem",
            "scope/id",
            "scope/displayName",
            "scope/originId",
            "scope/originSystem",
            "scope/isRootScope:bool",
            "resource_id=role/resource/id|scope/resource/id",
            "resource_display_name=role/resource/displayName|scope/resource/displayName",
            "resource_origin_system=role/resource/originSystem|scope/resource/originSystem",
            "resource_origin_id=role/resource/originId|scope/resource/originId",
        ],
    ));

    let mut policies = snapshot(
        "assignment_policies",
        "Assignment policies: who may request, approval, expiry, reviews.",
        &[
            "id",
            "displayName",
            "description",
            "createdDateTime:ts",
            "modifiedDateTime:ts",
            "access_package_id=accessPackage/id|accessPackageId|@parent",
            "catalog_id=catalog/id|accessPackageCatalog/id|catalogId",
            "allowedTargetScope:enum",
            "specificAllowedTargets:json",
            "specific_allowed_target_types=specificAllowedTargets:types",
            "expiration/type:enum",
            "expiration/duration",
            "expiration/endDateTime:ts",
            "requestorSettings/enableTargetsToSelfAddAccess:bool",
            "requestorSettings/enableTargetsToSelfUpdateAccess:bool",
            "requestorSettings/enableTargetsToSelfRemoveAccess:bool",
            "requestorSettings/allowCustomAssignmentSchedule:bool",
            "requestorSettings/enableOnBehalfRequestorsToAddAccess:bool",
            "requestApprovalSettings/isApprovalRequiredForAdd|requestApprovalSettings/isApprovalRequired:bool",
            "requestApprovalSettings/isApprovalRequiredForUpdate|requestApprovalSettings/isApprovalRequiredForExtension:bool",
            "requestApprovalSettings/isRequestorJustificationRequired|requestorSettings/isRequestorJustificationRequired:bool",
            "reviewSettings/isEnabled|accessReviewSettings/isEnabled:bool",
            "reviewSettings/expirationBehavior|accessReviewSettings/accessReviewTimeoutBehavior:enum",
            "reviewSettings/isRecommendationEnabled|accessReviewSettings/isAccessRecommendationEnabled:bool",
            "reviewSettings/isReviewerJustificationRequired|accessReviewSettings/isApprovalJustificationRequired:bool",
            "reviewSettings/isSelfReview:bool",
            "review_settings_primary_reviewer_types=reviewSettings/primaryReviewers|accessReviewSettings/reviewers:types",
            "reviewSettings/primaryReviewers|accessReviewSettings/reviewers:json",
            "reviewSettings/fallbackReviewers:json",
            "reviewSettings/schedule/startDateTime:ts",
            "reviewSettings/schedule/recurrence/pattern/type:enum",
            "reviewSettings/schedule/recurrence/pattern/interval:int",
            "reviewSettings/schedule/expiration/duration",
            "automaticRequestSettings/requestAccessForAllowedTargets:bool",
            "questions:json",
        ],
    );
    policies.children = vec![
        list(
            "requestApprovalSettings/stages|requestApprovalSettings/approvalStages",
            "policy_approval_stages",
            None,
        ),
        list(
            "customExtensionStageSettings",
            "policy_custom_extension_stage_settings",
            None,
        ),
    ];
    specs.push(policies);

    specs.push(child(
        "policy_approval_stages",
        "Approval stages of each policy, in order (`stage_number` 1..3).",
        vec!["stage_number"],
        &[
            "policy_id=@parent",
            "stage_number=@position:int",
            "durationBeforeAutomaticDenial",
            "durationBeforeEscalation",
            "isApproverJustificationRequired:bool",
            "isEscalationEnabled:bool",
            "approverInformationVisibility:enum",
            "primary_approver_types=primaryApprovers:types",
            "primaryApprovers:json",
            "fallback_primary_approver_types=fallbackPrimaryApprovers:types",
            "fallbackPrimaryApprovers:json",
            "escalation_approver_types=escalationApprovers:types",
            "escalationApprovers:json",
            "fallbackEscalationApprovers:json",
        ],
    ));
    specs.push(child(
        "policy_custom_extension_stage_settings",
        "Custom extensions (Logic Apps) a policy calls at each request stage.",
        vec!["setting_id"],
        &[
            "policy_id=@parent",
            "setting_id=id",
            "stage:enum",
            "custom_extension_id=customExtension/id",
            "custom_extension_display_name=customExtension/displayName",
        ],
    ));

    specs.push(snapshot("assignments", "Access package assignments (who holds what, until when).", &with(&[
        "id", "state:enum", "status", "expiredDateTime:ts",
        "access_package_id=accessPackage/id|accessPackageId",
        "access_package_display_name=accessPackage/displayName",
        "assignment_policy_id=assignmentPolicy/id|assignmentPolicyId|accessPackageAssignmentPolicy/id",
        "target/id", "target_object_id=target/objectId|targetId", "target/displayName",
        "target/principalName", "target/email", "target/subjectType:enum",
        "target_connected_organization_id=target/connectedOrganization/id",
    ], &with(SCHEDULE, &["customExtensionCalloutInstances:json"]))));

    let mut requests = EntitySpec {
        storage: Storage::Versioned(Versioning::Upsert),
        ..snapshot(
            "assignment_requests",
            "Assignment requests, upserted by id; `_history` keeps every state change.",
            &with(
                &[
                    "id",
                    "requestType:enum",
                    "state|requestState:enum",
                    "status|requestStatus",
                    "createdDateTime:ts",
                    "completedDateTime|completedDate:ts",
                    "justification",
                    "access_package_id=accessPackage/id|accessPackageId|assignment/accessPackageId",
                    "access_package_display_name=accessPackage/displayName",
                    "assignment_id=assignment/id|accessPackageAssignment/id",
                    "assignment_policy_id=assignment/assignmentPolicyId|assignment/assignmentPolicy/id|accessPackageAssignment/assignmentPolicyId",
                    "assignment_target_object_id=assignment/target/objectId|assignment/targetId",
                    "requestor/id",
                    "requestor_object_id=requestor/objectId",
                    "requestor/displayName",
                    "requestor/principalName",
                    "requestor/email",
                    "requestor/subjectType:enum",
                    "requestor_connected_organization_id=requestor/connectedOrganization/id",
                ],
                &with(
                    SCHEDULE,
                    &[
                        "answers:json",
                        "custom_extension_callout_instances=customExtensionCalloutInstances|customExtensionHandlerInstances:json",
                    ],
                ),
            ),
        )
    };
    requests.children = vec![
        list(
            "customExtensionCalloutInstances|customExtensionHandlerInstances",
            "assignment_request_callouts",
            None,
        ),
        list("answers", "assignment_request_answers", None),
    ];
    specs.push(requests);

    specs.push(child(
        "assignment_request_callouts",
        "Custom extension callouts of each request (status, external ticket number).",
        vec!["callout_id"],
        &[
            "request_id=@parent",
            "callout_id=id|@position",
            "customExtensionId",
            "custom_extension_stage=stage|customExtensionStage:enum",
            "status:enum",
            "externalCorrelationId",
            "detail",
        ],
    ));
    specs.push(child(
        "assignment_request_answers",
        "Requestors' answers to policy questions.",
        vec!["position"],
        &[
            "request_id=@parent",
            "position=@position:int",
            "value",
            "displayValue",
            "question_id=answeredQuestion/id",
            "question_text=answeredQuestion/text",
        ],
    ));

    let mut orgs = snapshot(
        "connected_organizations",
        "Connected organizations (partner tenants and domains).",
        &[
            "id",
            "displayName",
            "description",
            "state:enum",
            "createdDateTime:ts",
            "modifiedDateTime:ts",
            "identity_source_types=identitySources:types",
        ],
    );
    orgs.children = vec![
        list(
            "identitySources",
            "connected_organization_identity_sources",
            None,
        ),
        list(
            "internalSponsors",
            "connected_organization_sponsors",
            Some("internal"),
        ),
        list(
            "externalSponsors",
            "connected_organization_sponsors",
            Some("external"),
        ),
    ];
    specs.push(orgs);
    specs.push(child(
        "connected_organization_identity_sources",
        "Identity sources (tenants, domains) of each connected organization.",
        vec!["position"],
        &[
            "connected_organization_id=@parent",
            "position=@position:int",
            "type=@odata.type:type",
            "tenantId",
            "domainName",
            "displayName",
            "issuerUri",
        ],
    ));
    specs.push(child(
        "connected_organization_sponsors",
        "Internal and external sponsors of each connected organization.",
        vec!["sponsor_id"],
        &[
            "connected_organization_id=@parent",
            "sponsor_kind=@const",
            "sponsor_id=id",
            "displayName",
            "userPrincipalName",
            "mail",
            "type=@odata.type:type",
        ],
    ));

    let mut definitions = snapshot(
        "access_review_definitions",
        "Access review definitions (recurring reviews).",
        &[
            "id",
            "displayName",
            "descriptionForAdmins",
            "descriptionForReviewers",
            "status",
            "createdDateTime:ts",
            "lastModifiedDateTime:ts",
            "createdBy/id",
            "createdBy/userPrincipalName",
            "scope_type=scope/@odata.type:type",
            "scope/query",
            "scope:json",
            "instanceEnumerationScope:json",
            "reviewers:json",
            "fallbackReviewers:json",
            "settings/defaultDecisionEnabled:bool",
            "settings/defaultDecision",
            "settings/autoApplyDecisionsEnabled:bool",
            "settings/recommendationsEnabled:bool",
            "settings/justificationRequiredOnApproval:bool",
            "settings/instanceDurationInDays:int",
            "settings/recurrence/pattern/type:enum",
            "settings/recurrence/pattern/interval:int",
            "settings_apply_action_types=settings/applyActions:types",
        ],
    );
    definitions.children = vec![list("instances", "access_review_instances", None)];
    specs.push(definitions);

    let mut instances = snapshot(
        "access_review_instances",
        "Access review instances (one per recurrence).",
        &[
            "id",
            "definition_id=@parent",
            "startDateTime:ts",
            "endDateTime:ts",
            "status",
            "scope/query",
            "scope:json",
            "reviewers:json",
        ],
    );
    instances.scoped_by_parent = true;
    instances.children = vec![list("decisions", "access_review_decisions", None)];
    specs.push(instances);

    let mut decisions = snapshot(
        "access_review_decisions",
        "Access review decisions per principal.",
        &[
            "id",
            "instance_id=accessReviewId|@parent",
            "definition_id=@parent2",
            "decision",
            "recommendation",
            "applyResult",
            "justification",
            "reviewedDateTime:ts",
            "appliedDateTime:ts",
            "reviewedBy/id",
            "reviewedBy/displayName",
            "reviewedBy/userPrincipalName",
            "appliedBy/id",
            "appliedBy/displayName",
            "principal_id=principal/id|target/userId",
            "principal_display_name=principal/displayName|target/userDisplayName",
            "principal_user_principal_name=principal/userPrincipalName|target/userPrincipalName",
            "principal_type=principal/@odata.type:type",
            "resource/id",
            "resource/displayName",
            "resource/type",
            "access_package_id=resource/accessPackageId",
            "access_package_display_name=resource/accessPackageDisplayName",
            "principalLink",
            "resourceLink",
        ],
    );
    decisions.scoped_by_parent = true;
    specs.push(decisions);

    specs.push(EntitySpec {
        storage: Storage::Versioned(Versioning::Upsert),
        scoped_by_parent: true,
        ..snapshot(
            "approval_stages",
            "Approval stages of requests (readable with delegated rights only).",
            &[
                "id",
                "request_id=@parent",
                "displayName",
                "reviewResult",
                "status",
                "justification",
                "reviewedDateTime:ts",
                "reviewedBy/id",
                "reviewedBy/displayName",
                "assignedToMe:bool",
            ],
        )
    });

    let mut audits = EntitySpec {
        storage: Storage::Append,
        required: vec!["activity_date_time"],
        ..snapshot(
            "audit_events",
            "Entra audit events (directoryAudits), append-only, deduped by id, partitioned by month.",
            &[
                "id",
                "category",
                "correlationId",
                "result:result",
                "resultReason",
                "activityDisplayName",
                "activityDateTime:ts",
                "loggedByService",
                "operationType",
                "initiatedBy/user/id",
                "initiatedBy/user/displayName",
                "initiatedBy/user/userPrincipalName",
                "initiatedBy/user/ipAddress",
                "initiatedBy/app/appId",
                "initiatedBy/app/displayName",
                "initiatedBy/app/servicePrincipalId",
                "target_resources=targetResources|targetResource:json",
                "additionalDetails:json",
            ],
        )
    };
    audits.children = vec![
        list(
            "targetResources|targetResource",
            "audit_event_target_resources",
            None,
        ),
        list("additionalDetails", "audit_event_additional_details", None),
        ChildList {
            paths: vec![],
            entity: AUDIT_EVENT_REQUESTS,
            constant: None,
            derive: Some(audit_event_request_links),
        },
    ];
    specs.push(audits);
    specs.push(EntitySpec {
        storage: Storage::Append,
        ..child(
            "audit_event_target_resources",
            "Target resources of each audit event (users, packages, requests, ...).",
            vec!["position"],
            &[
                "audit_event_id=@parent",
                "position=@position:int",
                "target_id=id",
                "displayName",
                "type:str",
                "userPrincipalName",
                "groupType:enum",
                "modifiedProperties:json",
            ],
        )
    });
    specs.push(EntitySpec {
        storage: Storage::Append,
        ..child(
            "audit_event_additional_details",
            "Key/value details of each audit event.",
            vec!["position"],
            &[
                "audit_event_id=@parent",
                "position=@position:int",
                "key",
                "value",
            ],
        )
    });

    specs.push(EntitySpec {
        storage: Storage::Append,
        ..child(
            AUDIT_EVENT_REQUESTS,
            "The access package requests each audit event is about (the link the approval views join on), one row per distinct request id, with the event's columns and additional details the approval trail shows.",
            vec!["request_id"],
            &[
                "audit_event_id=@parent",
                "request_id=requestId",
                "activity_display_name=activity_display_name",
                "activity_date_time=activity_date_time:ts",
                "result=result:result",
                "initiated_by_user_id=initiated_by_user_id",
                "initiated_by_user_user_principal_name=initiated_by_user_user_principal_name",
                "initiated_by_app_display_name=initiated_by_app_display_name",
                "approval_stage=approval_stage",
                "justification=justification",
                "external_correlation_id=external_correlation_id",
                "escalation=escalation",
            ],
        )
    });

    let mut members = snapshot(
        "incompatible_group_members",
        "Members of groups (exported for incompatible-group checks).",
        &[
            "id",
            "group_id=@parent",
            "member_id=id",
            "displayName",
            "userPrincipalName",
            "type=@odata.type:type",
        ],
    );
    members.key = Key::Composite(vec!["member_id"]);
    members.scoped_by_parent = true;
    specs.push(members);

    specs.push(snapshot(
        "users",
        "Users (optional export: type, sign-in activity).",
        &[
            "id",
            "displayName",
            "userPrincipalName",
            "mail",
            "userType",
            "accountEnabled:bool",
            "createdDateTime:ts",
            "department",
            "jobTitle",
            "companyName",
            "externalUserState",
            "signInActivity/lastSignInDateTime:ts",
            "signInActivity/lastSuccessfulSignInDateTime:ts",
        ],
    ));

    specs
}

/// The table of each audit event's links to the requests it is about.
pub const AUDIT_EVENT_REQUESTS: &str = "audit_event_requests";

/// The tables the links come from.
pub const AUDIT_EVENT_REQUESTS_SOURCES: [&str; 2] = [
    "audit_event_target_resources",
    "audit_event_additional_details",
];

/// The rows of `audit_event_requests` computed from its two sources by the same rule as
/// [`audit_event_request_links`]: what `govlake migrate` stores for the events a lake of
/// format 1 holds, and what a query over such a lake reads in the table's place. A test
/// checks that the two forms agree on every event of the sample tenant.
pub const AUDIT_EVENT_REQUESTS_SQL: &str = "\
SELECT audit_event_id || '/' || request_id AS id, audit_event_id, request_id
FROM (
    SELECT DISTINCT audit_event_id, request_id
    FROM (
        SELECT audit_event_id, target_id AS request_id
        FROM audit_event_target_resources
        WHERE lower(type) = 'accesspackageassignmentrequest'
        UNION ALL
        SELECT audit_event_id, value AS request_id
        FROM audit_event_additional_details
        WHERE key = 'RequestId'
    ) named
    WHERE request_id IS NOT NULL
) links";

/// The rows of `audit_event_requests`, every column, from a relation of its three link
/// columns (`id`, `audit_event_id`, `request_id`: the table as a lake of format 2 stored it,
/// or [`AUDIT_EVENT_REQUESTS_SQL`] over a lake of format 1) and the events' own tables, by
/// the rule the ingest applies ([`AUDIT_EVENT_STEP_COLUMNS`], [`AUDIT_EVENT_STEP_DETAILS`]).
/// Only the links of events the lake holds: a killed ingest may have left links whose event
/// is not committed (its rerun stores the event); the ingest's own rows of such links stay
/// in the table, with the event's columns. What `govlake migrate` stores, and what a query
/// over an older state of the lake reads in the table's place. A lake without
/// `audit_event_additional_details` (no event had details) is read through
/// [`audit_event_requests_from_links_without_details`].
pub fn audit_event_requests_from_links(links: &str) -> String {
    step_rule(links, true)
}

/// [`audit_event_requests_from_links`] for a lake that has no
/// `audit_event_additional_details` table: the detail columns are empty.
pub fn audit_event_requests_from_links_without_details(links: &str) -> String {
    step_rule(links, false)
}

fn step_rule(links: &str, with_details: bool) -> String {
    let events = AUDIT_EVENT_STEP_COLUMNS
        .iter()
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let details = AUDIT_EVENT_STEP_DETAILS
        .iter()
        .map(|(_, c)| format!("d.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let pivot = AUDIT_EVENT_STEP_DETAILS
        .iter()
        .map(|(k, c)| format!("max(CASE WHEN key = '{k}' THEN value END) AS {c}"))
        .collect::<Vec<_>>()
        .join(",\n           ");
    let keys = AUDIT_EVENT_STEP_DETAILS
        .iter()
        .map(|(k, _)| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if !with_details {
        let empty = AUDIT_EVENT_STEP_DETAILS
            .iter()
            .map(|(_, c)| format!("CAST(NULL AS VARCHAR) AS {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        return format!(
            "SELECT l.id, l.audit_event_id, l.request_id, {events}, {empty}
FROM ({links}) l
JOIN audit_events e ON e.id = l.audit_event_id"
        );
    }
    format!(
        "SELECT l.id, l.audit_event_id, l.request_id, {events}, {details}
FROM ({links}) l
JOIN audit_events e ON e.id = l.audit_event_id
LEFT JOIN (
    SELECT audit_event_id,
           {pivot}
    FROM audit_event_additional_details
    WHERE key IN ({keys})
    GROUP BY audit_event_id
) d ON d.audit_event_id = l.audit_event_id"
    )
}

/// The columns of `audit_events` stored again with each of the event's request links (the
/// approval trail's steps read them there, without joining the events).
pub const AUDIT_EVENT_STEP_COLUMNS: [&str; 6] = [
    "activity_display_name",
    "activity_date_time",
    "result",
    "initiated_by_user_id",
    "initiated_by_user_user_principal_name",
    "initiated_by_app_display_name",
];

/// The `additionalDetails` keys stored with each of an event's request links, and their
/// columns: the greatest value of the event's details of that key (exact case), as
/// `max(CASE WHEN key = … THEN value END)` over the event's rows of
/// `audit_event_additional_details` gives it.
pub const AUDIT_EVENT_STEP_DETAILS: [(&str, &str); 4] = [
    ("ApprovalStage", "approval_stage"),
    ("Justification", "justification"),
    ("ExternalCorrelationId", "external_correlation_id"),
    ("Escalation", "escalation"),
];

/// One list an audit event's request links are read from: its table, and the columns of
/// its rows that say whether an item names a request (`type` / `key`) and which (`id`).
struct LinkSource {
    entity: &'static str,
    kind: usize,
    id: usize,
    names_a_request: fn(&str) -> bool,
    /// Whether its items also carry the step details (`additionalDetails`).
    details: bool,
}

/// The event's lists the links (and the step details) are read from, in the order of
/// `audit_events`' lists.
static LINK_SOURCES: LazyLock<Vec<LinkSource>> = LazyLock::new(|| {
    let events = entity("audit_events").expect("audit events are an entity");
    events
        .children
        .iter()
        .filter_map(|list| {
            let spec = entity(list.entity)?;
            let (kind, id, names_a_request, details): (_, _, fn(&str) -> bool, _) =
                match list.entity {
                    "audit_event_target_resources" => (
                        spec.column_index("type"),
                        spec.column_index("target_id"),
                        |t| t.eq_ignore_ascii_case("accesspackageassignmentrequest"),
                        false,
                    ),
                    "audit_event_additional_details" => (
                        spec.column_index("key"),
                        spec.column_index("value"),
                        |k| k == "RequestId",
                        true,
                    ),
                    _ => return None,
                };
            Some(LinkSource {
                entity: list.entity,
                kind,
                id,
                names_a_request,
                details,
            })
        })
        .collect()
});

/// Where each column of a link row comes from.
enum LinkCell {
    /// `id`: the event's id and the request's, joined with `/`.
    Key,
    /// `audit_event_id`.
    Event,
    /// `request_id`.
    Request,
    /// One of [`AUDIT_EVENT_STEP_COLUMNS`]: the event row's cell of that column.
    Step(usize),
    /// One of [`AUDIT_EVENT_STEP_DETAILS`], by its index there.
    Detail(usize),
}

/// The columns of `audit_event_requests`, in order, with where each comes from.
static LINK_CELLS: LazyLock<Vec<LinkCell>> = LazyLock::new(|| {
    let events = entity("audit_events").expect("audit events are an entity");
    let links = entity(AUDIT_EVENT_REQUESTS).expect("the links are an entity");
    links
        .columns
        .iter()
        .map(|c| match c.name.as_str() {
            "id" => LinkCell::Key,
            "audit_event_id" => LinkCell::Event,
            "request_id" => LinkCell::Request,
            name => match AUDIT_EVENT_STEP_DETAILS
                .iter()
                .position(|(_, n)| *n == name)
            {
                Some(d) => LinkCell::Detail(d),
                None => {
                    assert!(
                        AUDIT_EVENT_STEP_COLUMNS.contains(&name),
                        "link column {name} is a step column"
                    );
                    LinkCell::Step(events.column_index(name))
                }
            },
        })
        .collect()
});

/// The rows of `audit_event_requests` for one audit event (its id and row), from the rows
/// stored for its target resources and additional details. The link rule of the approval
/// views: a target resource whose type is `AccessPackageAssignmentRequest` (any case) names
/// a request by its id, and so does an `additionalDetails` entry of key `RequestId`; each
/// distinct id once, in the order first named. Only items stored as rows count, so an event
/// links to a request exactly when the rows of `audit_event_target_resources` and
/// `audit_event_additional_details` stored for it say so (a rejected item names nothing).
/// Each link carries the event row's cells of [`AUDIT_EVENT_STEP_COLUMNS`] and the greatest
/// value of each detail key of [`AUDIT_EVENT_STEP_DETAILS`] (exact case) among the event's
/// details.
fn audit_event_request_links(
    event_id: &str,
    event: &[Cell],
    lists: &[ListRows<'_>],
) -> Vec<Vec<Cell>> {
    let mut ids: Vec<&str> = Vec::new();
    let mut details: [Option<&str>; AUDIT_EVENT_STEP_DETAILS.len()] = Default::default();
    for source in LINK_SOURCES.iter() {
        let Some(list) = lists.iter().find(|l| l.entity == source.entity) else {
            continue;
        };
        for row in &list.rows {
            let (Cell::Str(kind), value) = (&row[source.kind], &row[source.id]) else {
                continue;
            };
            let Cell::Str(value) = value else {
                continue;
            };
            if source.details
                && let Some(d) = AUDIT_EVENT_STEP_DETAILS.iter().position(|(k, _)| k == kind)
                && details[d].is_none_or(|m| value.as_str() > m)
            {
                details[d] = Some(value);
            }
            if (source.names_a_request)(kind) && !ids.contains(&value.as_str()) {
                ids.push(value);
            }
        }
    }
    ids.into_iter()
        .map(|request| {
            LINK_CELLS
                .iter()
                .map(|c| match c {
                    LinkCell::Key => Cell::Str(format!("{event_id}/{request}")),
                    LinkCell::Event => Cell::Str(event_id.to_string()),
                    LinkCell::Request => Cell::Str(request.to_string()),
                    LinkCell::Step(i) => event[*i].clone(),
                    LinkCell::Detail(d) => details[*d].map_or(Cell::Null, |v| Cell::Str(v.into())),
                })
                .collect()
        })
        .collect()
}

/// All entity specs, in a fixed order.
pub static ENTITIES: LazyLock<Vec<EntitySpec>> = LazyLock::new(build);

/// Looks up an entity by table name.
pub fn entity(table: &str) -> Option<&'static EntitySpec> {
    ENTITIES.iter().find(|e| e.table == table)
}

/// Every typed table (current and `_history`, append-only) with its schema.
pub fn typed_tables() -> Vec<TableSchema> {
    let mut out = vec![];
    for e in ENTITIES.iter() {
        if let Some(v) = e.versioned() {
            out.push(v.current);
            out.push(v.history);
        } else if let Some(s) = e.append_schema() {
            out.push(s);
        }
    }
    out
}

/// The schema of any table govlake writes, by its name: a typed table or a bookkeeping
/// table. `None` for a name govlake does not write.
pub fn table_schema(name: &str) -> Option<TableSchema> {
    typed_tables()
        .into_iter()
        .chain(crate::lake::bookkeeping::schemas())
        .chain([crate::lake::format::govlake_schema()])
        .find(|s| s.name == name)
}

/// Extraction context for one object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx<'a> {
    /// Parent ids, nearest first.
    pub parents: &'a [String],
    /// 1-based position in the parent's list.
    pub position: usize,
    /// Child-list constant.
    pub constant: Option<&'a str>,
    /// The record's text as written, when its JSON columns may be cut from it.
    pub json: Option<&'a value::JsonText<'a>>,
}

impl EntitySpec {
    /// Data columns as lake columns.
    pub fn lake_columns(&self) -> Vec<Column> {
        let mut cols: Vec<Column> = self
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: c.ty(),
            })
            .collect();
        if self.month_partitioned() {
            cols.push(Column {
                name: MONTH_COLUMN.into(),
                ty: ColumnType::Str,
            });
        }
        cols
    }

    /// Top-level append-only tables are partitioned by month; their child tables are not.
    fn month_partitioned(&self) -> bool {
        self.storage == Storage::Append && self.key == Key::Own
    }

    /// The versioned tables of a `Versioned` entity.
    pub fn versioned(&self) -> Option<VersionedTable> {
        match self.storage {
            Storage::Versioned(v) => Some(VersionedTable::new(self.table, self.lake_columns(), v)),
            Storage::Append => None,
        }
    }

    /// The table schema of an `Append` entity.
    pub fn append_schema(&self) -> Option<TableSchema> {
        match self.storage {
            Storage::Append => Some(TableSchema {
                name: self.table.into(),
                columns: self.lake_columns(),
                partition_by: if self.month_partitioned() {
                    vec![MONTH_COLUMN.into()]
                } else {
                    vec![]
                },
            }),
            Storage::Versioned(_) => None,
        }
    }

    /// Extracts the typed row of one object. `Err` is the quarantine reason.
    pub fn extract(&self, obj: &Value, ctx: Ctx<'_>) -> Result<Vec<Cell>, Rejection> {
        if !obj.is_object() {
            return Err(Rejection::NotAnObject {
                found: kind_of(obj),
            });
        }
        // A nested list that is something else would silently store no child rows.
        for c in &self.children {
            for p in &c.paths {
                if let Some(v) = get_path(obj, p)
                    && !v.is_array()
                    && !value::is_null(v)
                {
                    return Err(Rejection::NotAList {
                        path: p.join("."),
                        found: kind_of(v),
                    });
                }
            }
        }
        let mut row = Vec::with_capacity(self.columns.len() + 1);
        for c in &self.columns {
            if c.name == "id" && matches!(self.key, Key::Composite(_)) {
                row.push(Cell::Null); // filled below from the key columns
                continue;
            }
            row.push(Self::cell(c, obj, ctx)?);
        }
        if let Key::Composite(parts) = &self.key {
            let mut key = ctx.parents.first().cloned().unwrap_or_default();
            if let Some(k) = ctx.constant {
                key.push('/');
                key.push_str(k);
            }
            for p in parts {
                let i = self
                    .columns
                    .iter()
                    .position(|c| c.name == *p)
                    .expect("key column exists");
                key.push('/');
                match &row[i] {
                    Cell::Str(s) => key.push_str(s),
                    Cell::Int(n) => key.push_str(&n.to_string()),
                    _ => {
                        return Err(Rejection::EmptyKey {
                            column: p.to_string(),
                        });
                    }
                }
            }
            row[0] = Cell::Str(key);
        }
        match &row[0] {
            Cell::Str(s) if !s.is_empty() => {}
            _ => return Err(Rejection::NoId),
        }
        for r in &self.required {
            let i = self
                .columns
                .iter()
                .position(|c| c.name == *r)
                .expect("required column exists");
            if row[i] == Cell::Null {
                return Err(Rejection::Required {
                    column: r.to_string(),
                });
            }
        }
        if self.month_partitioned() {
            let month = self
                .columns
                .iter()
                .zip(&row)
                .find_map(|(c, v)| match (c.conv, v) {
                    (Conv::Ts, Cell::Ts(t)) => Some(*t),
                    _ => None,
                })
                .and_then(chrono::DateTime::from_timestamp_micros)
                .map(|t| t.format("%Y-%m").to_string());
            row.push(month.map_or(Cell::Str("unknown".into()), Cell::Str));
        }
        Ok(row)
    }

    /// One column's cell: its first source that is not null, converted.
    fn cell(c: &ColSpec, obj: &Value, ctx: Ctx<'_>) -> Result<Cell, Rejection> {
        let mut cell = Cell::Null;
        for s in &c.sources {
            cell = match s {
                Source::Paths(paths) => match paths.iter().find_map(|p| get_path(obj, p)) {
                    Some(v) => match ctx
                        .json
                        .filter(|_| c.conv == Conv::Json)
                        .and_then(|j| j.of(v))
                    {
                        // A list or an object: never null, and the same text `convert` writes.
                        Some(text) => Cell::Str(text.to_string()),
                        None => convert(v, c.conv).map_err(|source| Rejection::Column {
                            column: c.name.clone(),
                            source,
                        })?,
                    },
                    None => Cell::Null,
                },
                Source::Parent(n) => ctx
                    .parents
                    .get(*n)
                    .map_or(Cell::Null, |p| Cell::Str(p.clone())),
                Source::Position => match c.conv {
                    Conv::Int => Cell::Int(ctx.position as i64),
                    _ => Cell::Str(ctx.position.to_string()),
                },
                Source::Const => ctx.constant.map_or(Cell::Null, |k| Cell::Str(k.into())),
            };
            if cell != Cell::Null {
                break;
            }
        }
        Ok(cell)
    }

    /// The column holding the nearest parent's id (child tables).
    pub fn parent_column(&self) -> Option<&str> {
        self.columns
            .iter()
            .find(|c| c.sources.iter().any(|s| matches!(s, Source::Parent(0))))
            .map(|c| c.name.as_str())
    }

    /// The nested lists of one object, with their entity (not the lists derived from it:
    /// see [`Self::derived_rows`]).
    pub fn child_lists<'v>(&self, obj: &'v Value) -> Vec<(&ChildList, &'v [Value])> {
        self.children
            .iter()
            .filter(|c| c.derive.is_none())
            .filter_map(|c| {
                c.paths
                    .iter()
                    .find_map(|p| get_path(obj, p))
                    .and_then(Value::as_array)
                    .map(|a| (c, a.as_slice()))
            })
            .collect()
    }

    /// The lists derived from one object (its id and row), each with its rows, computed
    /// from the rows stored for its other lists.
    pub fn derived_rows(
        &self,
        id: &str,
        row: &[Cell],
        lists: &[ListRows<'_>],
    ) -> Vec<(&ChildList, Vec<Vec<Cell>>)> {
        self.children
            .iter()
            .filter_map(|c| c.derive.map(|derive| (c, derive(id, row, lists))))
            .collect()
    }

    /// The position of the column named `name`.
    ///
    /// # Panics
    /// When the entity has no such column (a spec's own names are meant).
    pub fn column_index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("{} has a column {name}", self.table))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_written_table_has_its_schema_by_name() {
        let history = table_schema("assignments_history").unwrap();
        assert_eq!(history.name, "assignments_history");
        assert!(history.columns.iter().any(|c| c.name == "valid_to"));
        let current = table_schema("assignments").unwrap();
        assert!(!current.columns.iter().any(|c| c.name == "valid_to"));
        for name in [
            "audit_events",
            "_raw",
            "_rejects",
            "_ingest_runs",
            "_pack_pins",
        ] {
            assert_eq!(table_schema(name).map(|s| s.name).as_deref(), Some(name));
        }
        // audit events are append-only: no history table
        for name in ["audit_event", "audit_events_history", "_history", ""] {
            assert!(table_schema(name).is_none(), "{name}");
        }
    }

    #[test]
    fn every_spec_is_well_formed() {
        for e in ENTITIES.iter() {
            assert_eq!(e.columns[0].name, "id", "{}", e.table);
            let mut names: Vec<_> = e.columns.iter().map(|c| c.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                e.columns.len(),
                "duplicate column in {}",
                e.table
            );
            for c in &e.children {
                assert!(entity(c.entity).is_some(), "{} -> {}", e.table, c.entity);
            }
        }
    }

    #[test]
    fn column_names_follow_the_graph_path() {
        let a = entity("assignments").unwrap();
        let names: Vec<_> = a.columns.iter().map(|c| c.name.as_str()).collect();
        for n in [
            "target_object_id",
            "target_principal_name",
            "schedule_start_date_time",
            "schedule_expiration_end_date_time",
            "expired_date_time",
            "access_package_id",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn beta_names_and_pascal_case_are_read() {
        let r = entity("assignment_requests").unwrap();
        let row = r
            .extract(
                &json!({"id": "r1", "RequestType": "AdminAdd", "requestState": "Delivered",
                        "completedDate": "2026-07-01T00:00:00Z"}),
                Ctx::default(),
            )
            .unwrap();
        let get = |n: &str| row[r.columns.iter().position(|c| c.name == n).unwrap()].clone();
        assert_eq!(get("request_type"), Cell::Str("adminAdd".into()));
        assert_eq!(get("state"), Cell::Str("delivered".into()));
        assert!(matches!(get("completed_date_time"), Cell::Ts(_)));
    }

    #[test]
    fn an_audit_event_links_to_each_request_it_names_once() {
        let events = entity("audit_events").unwrap();
        let links = entity("audit_event_requests").unwrap();
        let event = json!({
            "id": "e1",
            "activityDateTime": "2026-07-01T00:00:00Z",
            "activityDisplayName": "Approve access package assignment request",
            "result": "Success",
            "initiatedBy": {"user": {"id": "u1", "userPrincipalName": "a@b.example"}},
            "targetResources": [
                {"id": "p1", "type": "AccessPackage"},
                {"id": "r1", "type": "AccessPackageAssignmentRequest"},
                {"id": "r2", "type": "accesspackageassignmentrequest"},
                {"id": null, "type": "AccessPackageAssignmentRequest"},
                {"id": {"not": "text"}, "type": "AccessPackageAssignmentRequest"},
                {"id": "r5", "type": "AccessPackageAssignmentRequest", "displayName": {"an": "object"}},
                {"id": "p2", "type": {"not": "text"}}
            ],
            "additionalDetails": [
                {"key": "RequestId", "value": "r1"},
                {"key": "RequestId", "value": "r3"},
                {"key": "requestid", "value": "r4"},
                {"key": "ApprovalStage", "value": "1"}
            ]
        });
        let rows = links_of(&event);
        let text = |c: &Cell| c.as_str().unwrap().to_string();
        let got: Vec<[String; 3]> = rows
            .iter()
            .map(|r| [text(&r[0]), text(&r[1]), text(&r[2])])
            .collect();
        // r1 is named twice (a target and a detail) and stored once; the key `requestid`
        // (another case) is not the rule's `RequestId`, and a target whose id is null or
        // not text names nothing. A target that is not a row (r5: its name is an object) links
        // nothing either, and one whose type cannot be read is passed over.
        let want = |r: &str| ["e1/".to_string() + r, "e1".into(), r.into()];
        assert_eq!(got, vec![want("r1"), want("r2"), want("r3")]);
        // Each link carries the event's step columns, converted as `audit_events` converts
        // them, and the event's ApprovalStage detail.
        let step = |row: &Vec<Cell>, name: &str| {
            row[links.columns.iter().position(|c| c.name == name).unwrap()].clone()
        };
        let event_row = events.extract(&event, Ctx::default()).unwrap();
        let event_cell = |name: &str| {
            event_row[events.columns.iter().position(|c| c.name == name).unwrap()].clone()
        };
        for row in &rows {
            assert_eq!(step(row, "approval_stage"), Cell::Str("1".into()));
            for name in AUDIT_EVENT_STEP_COLUMNS {
                assert_eq!(step(row, name), event_cell(name), "{name}");
            }
            assert!(matches!(step(row, "activity_date_time"), Cell::Ts(_)));
            assert_eq!(step(row, "justification"), Cell::Null);
        }
        assert!(
            links_of(&json!({"id": "e2", "activityDateTime": "2026-07-01T00:00:00Z"})).is_empty()
        );
    }

    /// The link rows of one audit event, as the ingest makes them: from the event's row and
    /// the rows of its lists (items that are not rows left out).
    fn links_of(event: &Value) -> Vec<Vec<Cell>> {
        let events = entity("audit_events").unwrap();
        let row = events.extract(event, Ctx::default()).unwrap();
        let id = row[0].as_str().unwrap().to_string();
        let parents = [id.clone()];
        let lists: Vec<(&str, Vec<Vec<Cell>>)> = events
            .child_lists(event)
            .into_iter()
            .map(|(list, items)| {
                let spec = entity(list.entity).unwrap();
                let rows = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        let ctx = Ctx {
                            parents: &parents,
                            position: i + 1,
                            constant: list.constant,
                            json: None,
                        };
                        spec.extract(item, ctx).ok()
                    })
                    .collect();
                (list.entity, rows)
            })
            .collect();
        let stored: Vec<ListRows> = lists
            .iter()
            .map(|(entity, rows)| ListRows {
                entity,
                rows: rows.iter().map(Vec::as_slice).collect(),
            })
            .collect();
        let mut derived = events.derived_rows(&id, &row, &stored);
        assert_eq!(derived.len(), 1);
        let (list, rows) = derived.remove(0);
        assert_eq!(list.entity, AUDIT_EVENT_REQUESTS);
        let links = entity(AUDIT_EVENT_REQUESTS).unwrap();
        for r in &rows {
            assert_eq!(r.len(), links.columns.len());
        }
        rows
    }

    #[test]
    fn a_record_without_id_is_refused() {
        let e = entity("catalogs").unwrap();
        assert_eq!(
            e.extract(&json!({"displayName": "x"}), Ctx::default())
                .unwrap_err()
                .to_string(),
            "the record has no `id`"
        );
    }
}
