//! What happens in the tenant over time: requests walking their approval flow, admin grants,
//! assignments and their expiry, each step leaving the audit events Entra writes (and, for
//! the last two months, the diagnostic-settings archive's copy of them).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::catalog::Package;
use super::people::User;
use super::policies::Policy;
use super::writer::PageWriter;
use super::{
    ARCHIVE_FROM, CTX_EM, DAY, EM_APP, EM_APP_ID, EXPORTED_AT, HOUR, Result, Rng, TENANT_ID,
    TenantWriter, at, guid, ts,
};

/// The justifications requestors type; some are hostile on purpose.
const JUSTIFICATIONS: &[&str] = &[
    "Month-end close support for the EMEA ledger.",
    "Quarterly forecasting for the retail division.",
    "Backfilling for a colleague on leave.",
    "New joiner, finance operations team.",
    "Need access <script>alert('xss')</script> for =HYPERLINK(\"http://evil.example\",\"report\")",
    "+cmd|' /C calc'!A0 urgent {{ 7*7 }} {% raw %}",
];

/// How a request goes.
pub(super) enum Flow<'a> {
    Approved { approvers: Vec<&'a User> },
    Escalated { approver: &'a User },
    Denied { approver: &'a User },
    TimedOut,
}

/// Who asks for which package under which policy, when, and whether the archive keeps a
/// copy of its audit events.
#[derive(Clone, Copy)]
pub(super) struct Ask<'a> {
    pub user: &'a User,
    pub pkg: &'a Package,
    pub pol: &'a Policy,
    pub t: i64,
    pub archive: bool,
}

/// What the audit events of one request share: the request id, the targets, the
/// correlation id and whether the archive keeps them.
pub(super) struct Trail<'a> {
    pub request: Option<&'a str>,
    pub targets: &'a [(String, &'a str, String)],
    pub correlation: &'a str,
    pub archive: bool,
}

/// The writers of requests, assignments and audit events, the archive's hourly blobs, and
/// the random stream that decides the population's choices.
pub(super) struct Activity {
    requests: PageWriter,
    assignments: PageWriter,
    audits: PageWriter,
    archive: BTreeMap<String, String>,
    pub rng: Rng,
    seq: u64,
}

/// The two targets of a request's audit events: the package and the user.
fn targets(pkg: &Package, user: &User) -> [(String, &'static str, String); 2] {
    [
        (pkg.id.clone(), "AccessPackage", pkg.name.to_string()),
        (user.id.clone(), "User", user.upn.clone()),
    ]
}

impl Activity {
    /// Writers for the tenant's requests, assignments and audit log.
    pub fn new(w: &TenantWriter, rng: Rng) -> Self {
        Self {
            requests: w.pages(
                &w.em().join("assignmentRequests"),
                "assignmentRequests",
                &format!("{CTX_EM}assignmentRequests(requestor(),accessPackage(),assignment())"),
            ),
            assignments: w.pages(
                &w.em().join("assignments"),
                "assignments",
                &format!("{CTX_EM}assignments(target(),accessPackage(),assignmentPolicy())"),
            ),
            audits: w.pages(
                &w.out_dir().join("auditLogs"),
                "directoryAudits",
                "auditLogs/directoryAudits",
            ),
            archive: BTreeMap::new(),
            rng,
            seq: 0,
        }
    }

    /// One audit event (and its archive line from `ARCHIVE_FROM` on).
    pub fn audit(
        &mut self,
        t: i64,
        activity: &str,
        operation: &str,
        actor: &User,
        trail: &Trail<'_>,
        details: &[(&str, String)],
    ) -> Result<()> {
        self.seq += 1;
        let correlation = trail.correlation;
        let id = format!(
            "IGA_{}_{:08}",
            &guid(&format!("audit-{correlation}"))[..8],
            self.seq
        );
        let by_app = actor.id.is_empty();
        let mut target_resources: Vec<Value> = Vec::new();
        if let Some(r) = trail.request {
            target_resources.push(json!({"id": r, "displayName": Value::Null, "type": "AccessPackageAssignmentRequest", "modifiedProperties": []}));
        }
        for (tid, ty, name) in trail.targets {
            target_resources.push(
                json!({"id": tid, "displayName": name, "type": ty, "modifiedProperties": []}),
            );
        }
        let mut additional: Vec<Value> = details
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        if let Some(r) = trail.request {
            additional.push(json!({"key": "RequestId", "value": r}));
        }
        let event = json!({
            "id": id, "category": "EntitlementManagement", "correlationId": correlation, "result": "success",
            "resultReason": "", "activityDisplayName": activity, "activityDateTime": format!("{}.{:06}Z", ts(t).trim_end_matches('Z'), self.seq % 1_000_000),
            "loggedByService": "Entitlement Management", "operationType": operation,
            "initiatedBy": if by_app { json!({"user": Value::Null, "app": {"appId": EM_APP_ID, "displayName": EM_APP, "servicePrincipalId": guid("sp-em"), "servicePrincipalName": EM_APP}}) }
                           else { json!({"user": actor.identity(), "app": Value::Null}) },
            "targetResources": target_resources, "additionalDetails": additional,
        });
        self.audits.push(&event)?;
        if trail.archive && t >= ARCHIVE_FROM {
            self.archive_line(t, activity, correlation, event);
        }
        Ok(())
    }

    /// The diagnostic-settings copy of an event: a JSON line in the hour's PT1H.json blob,
    /// every third one delivered twice (at-least-once).
    fn archive_line(&mut self, t: i64, activity: &str, correlation: &str, mut props: Value) {
        let dt = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        let path = format!(
            "insights-logs-auditlogs/tenantId={TENANT_ID}/{}/m=00/PT1H.json",
            dt.format("y=%Y/m=%m/d=%d/h=%H")
        );
        props["result"] = json!(0);
        let line = json!({
            "time": format!("{}.{:07}Z", ts(t).trim_end_matches('Z'), (self.seq % 1_000_000) * 10),
            "resourceId": format!("/tenants/{TENANT_ID}/providers/Microsoft.aadiam"),
            "operationName": activity, "operationVersion": "1.0", "category": "AuditLogs", "tenantId": TENANT_ID,
            "resultSignature": "None", "durationMs": 0, "correlationId": correlation, "level": "Informational",
            "properties": props,
        })
        .to_string();
        let blob = self.archive.entry(path).or_default();
        blob.push_str(&line);
        blob.push_str("\r\n");
        if self.seq.is_multiple_of(3) {
            blob.push_str(&line);
            blob.push_str("\r\n");
        }
    }

    /// An assignment of `ask.pkg` to `ask.user` from `ask.t`, ending at `end`.
    fn assignment(
        &mut self,
        id: &str,
        ask: &Ask<'_>,
        end: Option<i64>,
        state_override: Option<&str>,
    ) -> Result<()> {
        let (start, pkg, pol) = (ask.t, ask.pkg, ask.pol);
        let export = at(EXPORTED_AT);
        let expired = end.is_some_and(|e| e <= export) && state_override.is_none();
        let state = state_override.unwrap_or(if expired { "expired" } else { "delivered" });
        let expiration = match end {
            Some(e) => {
                json!({"type": "afterDateTime", "endDateTime": ts(e), "duration": Value::Null})
            }
            None => {
                json!({"type": "noExpiration", "endDateTime": Value::Null, "duration": Value::Null})
            }
        };
        self.assignments.push(&json!({
            "id": id, "state": state, "status": if expired { "ExpiredNotificationTriggered" } else { "Delivered" },
            "expiredDateTime": if expired { json!(ts(end.unwrap_or(start))) } else { json!("null") },
            "schedule": {"startDateTime": ts(start), "expiration": expiration},
            "target": ask.user.subject(),
            "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignmentPolicy": {"id": pol.id, "displayName": pol.name},
            "customExtensionCalloutInstances": [],
        }))
    }

    /// An administrator's direct grant, outside any approval flow; returns the assignment id.
    /// With `end`, the grant's schedule ends then but its state stays delivered (the story's
    /// expired-but-still-delivered access).
    pub fn admin_grant(
        &mut self,
        admin: &User,
        ask: &Ask<'_>,
        why: &str,
        end: Option<i64>,
    ) -> Result<String> {
        let (target, pkg, pol, t) = (ask.user, ask.pkg, ask.pol, ask.t);
        let req = guid(&format!("req-admin-{}-{}-{t}", target.id, pkg.id));
        let asg = guid(&format!("asg-{req}"));
        let corr = guid(&format!("corr-{req}"));
        let targets = targets(pkg, target);
        let trail = Trail {
            request: Some(&req),
            targets: &targets,
            correlation: &corr,
            archive: ask.archive,
        };
        self.audit(
            t,
            "Administrator directly assigns user to access package",
            "CreateEntitlementGrantAdminAddRequest",
            admin,
            &trail,
            &[("Justification", why.to_string())],
        )?;
        self.audit(
            t + 60,
            "Fulfill access package assignment request",
            "FulfillEntitlementGrantRequest",
            &User::system(),
            &trail,
            &[],
        )?;
        self.requests.push(&json!({
            "id": req, "requestType": "adminAdd", "state": "delivered", "status": "Delivered",
            "createdDateTime": ts(t), "completedDateTime": ts(t + 60), "justification": why,
            "schedule": {"startDateTime": ts(t), "expiration": match end { Some(e) => json!({"type": "afterDateTime", "endDateTime": ts(e)}), None => json!({"type": "noExpiration"}) }},
            "requestor": admin.subject(), "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignment": {"id": asg, "assignmentPolicyId": pol.id, "target": {"objectId": target.id}},
            "answers": [], "customExtensionCalloutInstances": [],
        }))?;
        self.assignment(
            &asg,
            &Ask { t: t + 60, ..*ask },
            end,
            end.map(|_| "delivered"),
        )?;
        Ok(asg)
    }

    /// A user's request through its approval flow; returns the assignment id when delivered.
    pub fn request(
        &mut self,
        ask: &Ask<'_>,
        flow: Flow<'_>,
        just: usize,
    ) -> Result<Option<String>> {
        let (user, pkg, pol, t) = (ask.user, ask.pkg, ask.pol, ask.t);
        self.seq += 1;
        let req = guid(&format!("req-{}-{}-{t}-{}", user.id, pkg.id, self.seq));
        let corr = guid(&format!("corr-{req}"));
        let asg = guid(&format!("asg-{req}"));
        let justification = JUSTIFICATIONS[just % JUSTIFICATIONS.len()];
        let targets = targets(pkg, user);
        let trail = Trail {
            request: Some(&req),
            targets: &targets,
            correlation: &corr,
            archive: ask.archive,
        };
        self.audit(
            t,
            "User requests access package assignment",
            "CreateEntitlementGrantUserAddRequest",
            user,
            &trail,
            &[("Justification", justification.to_string())],
        )?;
        let (mut now, state, status, delivered) = self.decide(t, &flow, &trail)?;
        let mut callouts = Vec::new();
        if delivered {
            now = self.fulfil(now, pol, &req, &trail, &mut callouts)?;
        }
        let end = pol.expiry_days.map(|d| now + d * DAY);
        self.requests.push(&json!({
            "id": req, "requestType": "userAdd", "state": state, "status": status,
            "createdDateTime": ts(t), "completedDateTime": ts(now), "justification": justification,
            "schedule": {"startDateTime": ts(t), "expiration": match pol.expiry_days { Some(d) => json!({"type": "afterDuration", "duration": format!("P{d}D")}), None => json!({"type": "noExpiration"}) }},
            "requestor": user.subject(), "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignment": if delivered { json!({"id": asg, "assignmentPolicyId": pol.id, "target": {"objectId": user.id}}) } else { json!({"assignmentPolicyId": pol.id, "target": {"objectId": user.id}}) },
            "answers": [], "customExtensionCalloutInstances": callouts,
        }))?;
        if !delivered {
            return Ok(None);
        }
        self.assignment(&asg, &Ask { t: now, ..*ask }, end, None)?;
        if let Some(e) = end.filter(|e| *e <= at(EXPORTED_AT)) {
            self.expire(e, &asg, pkg, &trail)?;
        }
        Ok(Some(asg))
    }

    /// The approvers' (or the clock's) decision on a request made at `t`: (when it was
    /// decided, state, status, whether it is delivered).
    fn decide(
        &mut self,
        t: i64,
        flow: &Flow<'_>,
        trail: &Trail<'_>,
    ) -> Result<(i64, &'static str, &'static str, bool)> {
        let system = User::system();
        let mut now = t;
        let decided = match flow {
            Flow::Approved { approvers } => {
                for (stage, a) in approvers.iter().enumerate() {
                    now +=
                        3 * HOUR + (stage as i64) * HOUR + self.rng.below(20 * HOUR as u64) as i64;
                    self.approve(now, a, trail, stage + 1, "Business need confirmed.")?;
                }
                ("delivered", "Delivered", true)
            }
            Flow::Escalated { approver } => {
                now += 2 * DAY;
                self.audit(
                    now,
                    "Add approver to request approval",
                    "EscalateEntitlementGrantRequest",
                    &system,
                    trail,
                    &[
                        ("ApprovalStage", "1".into()),
                        ("Escalation", "true".into()),
                        ("ApproverId", approver.id.clone()),
                    ],
                )?;
                now += 5 * HOUR;
                let why = "Approved on escalation; manager unavailable.";
                self.approve(now, approver, trail, 1, why)?;
                ("delivered", "Delivered", true)
            }
            Flow::Denied { approver } => {
                now += 6 * HOUR;
                self.audit(
                    now,
                    "Deny access package assignment request",
                    "DenyEntitlementGrantRequest",
                    approver,
                    trail,
                    &[
                        ("ApprovalStage", "1".into()),
                        ("Justification", "Not required for the role.".into()),
                    ],
                )?;
                ("denied", "Denied", false)
            }
            Flow::TimedOut => {
                now += 14 * DAY;
                self.audit(
                    now,
                    "Access package assignment request timed out (no approver action taken)",
                    "TimeoutEntitlementGrantRequest",
                    &system,
                    trail,
                    &[],
                )?;
                ("denied", "TimedOut", false)
            }
        };
        Ok((now, decided.0, decided.1, decided.2))
    }

    /// An approver's approval at `stage` (1-based), with their justification.
    fn approve(
        &mut self,
        t: i64,
        approver: &User,
        trail: &Trail<'_>,
        stage: usize,
        why: &str,
    ) -> Result<()> {
        self.audit(
            t,
            "Approve access package assignment request",
            "ApproveEntitlementGrantRequest",
            approver,
            trail,
            &[
                ("ApprovalStage", stage.to_string()),
                ("Justification", why.to_string()),
            ],
        )
    }

    /// Delivery of an approved request (and, for the external auditors' policy, the
    /// ServiceNow custom extension's ticket); returns when it was delivered.
    fn fulfil(
        &mut self,
        mut now: i64,
        pol: &Policy,
        req: &str,
        trail: &Trail<'_>,
        callouts: &mut Vec<Value>,
    ) -> Result<i64> {
        let system = User::system();
        now += 60;
        self.audit(
            now,
            "Ready to fulfill access package assignment request",
            "ReadyToFulfillEntitlementGrantRequest",
            &system,
            trail,
            &[],
        )?;
        now += 60;
        self.audit(
            now,
            "Fulfill access package assignment request",
            "FulfillEntitlementGrantRequest",
            &system,
            trail,
            &[],
        )?;
        if pol.name.starts_with("External") {
            let ticket = format!("CHG{:07}", 31_337 + self.seq % 1_000_000);
            let extension = [(
                guid("ext-servicenow"),
                "CustomExtension",
                "Open ServiceNow access ticket".into(),
            )];
            let extension_trail = Trail {
                targets: &extension,
                ..*trail
            };
            self.audit(
                now + 30,
                "Execute custom extension",
                "ExecuteCustomExtension",
                &system,
                &extension_trail,
                &[("ExternalCorrelationId", ticket.clone())],
            )?;
            callouts.push(json!({"id": guid(&format!("callout-{req}")), "customExtensionId": guid("ext-servicenow"),
                "detail": "Ticket opened", "externalCorrelationId": ticket, "status": "callbackReceived"}));
        }
        Ok(now)
    }

    /// Expiry at `e`: the system's remove request for assignment `asg`.
    fn expire(&mut self, e: i64, asg: &str, pkg: &Package, trail: &Trail<'_>) -> Result<()> {
        let rreq = guid(&format!("req-expire-{asg}"));
        self.audit(
            e,
            "Entitlement Management removes access package assignment request for user",
            "CreateEntitlementGrantSystemRemoveRequest",
            &User::system(),
            &Trail {
                request: Some(&rreq),
                ..*trail
            },
            &[("AssignmentId", asg.to_string())],
        )?;
        self.requests.push(&json!({
            "id": rreq, "requestType": "systemRemove", "state": "delivered", "status": "Delivered",
            "createdDateTime": ts(e), "completedDateTime": ts(e + 60), "justification": Value::Null,
            "requestor": Value::Null, "accessPackage": {"id": pkg.id, "displayName": pkg.name},
            "assignment": {"id": asg}, "answers": [], "customExtensionCalloutInstances": [],
        }))
    }

    /// Writes the archive's blobs and the last pages; returns (requests, assignments, audit
    /// events) written.
    pub fn finish(mut self, w: &mut TenantWriter) -> Result<(u64, u64, u64)> {
        for (path, text) in std::mem::take(&mut self.archive) {
            w.file(&path, text.as_bytes())?;
        }
        let counts = (
            self.requests.records,
            self.assignments.records,
            self.audits.records,
        );
        for pages in [self.requests, self.assignments, self.audits] {
            w.finish(pages)?;
        }
        Ok(counts)
    }
}
