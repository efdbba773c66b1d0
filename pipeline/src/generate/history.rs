//! The tenant's history, in the order it happened: the incompatibility declared on the
//! payment packages, the eleven clerks grandfathered from the legacy groups, the story's
//! individual cases, and the population's requests. Returns the assignments live at the
//! export, which the access reviews then decide on.

use super::activity::{Activity, Ask, Flow, Trail};
use super::people::{User, add_member, legacy_group_members};
use super::{DAY, EXPORTED_AT, HOUR, Result, Tenant, TenantWriter, at, guid};

/// An assignment live at the export: (assignment id, requestor index in
/// [`super::people::People::everyone`], policy index).
pub(super) type Live = (String, usize, usize);

/// Writes the history; returns the live assignments.
pub(super) fn write(tenant: &Tenant, o: &mut Activity, w: &mut TenantWriter) -> Result<Vec<Live>> {
    let mut live = Vec::new();
    incompatibility_declared(tenant, o)?;
    grandfathered_clerks(tenant, o, w, &mut live)?;
    story_cases(tenant, o, &mut live)?;
    population(tenant, o, &mut live)?;
    Ok(live)
}

/// The approver package declares the initiator package incompatible (2026-03-01).
fn incompatibility_declared(tenant: &Tenant, o: &mut Activity) -> Result<()> {
    let p = &tenant.packages;
    let targets = [
        (p[2].id.clone(), "AccessPackage", p[2].name.to_string()),
        (p[1].id.clone(), "AccessPackage", p[1].name.to_string()),
    ];
    let correlation = guid("corr-incompatible");
    o.audit(
        at("2026-03-01T10:00:00Z"),
        "Create incompatible access package",
        "CreateIncompatibleAccessPackage",
        &tenant.people.admin,
        &Trail {
            request: None,
            targets: &targets,
            correlation: &correlation,
            archive: true,
        },
        &[],
    )
}

/// Eleven clerks hold both payment packages, migrated from the legacy groups on 2026-01-15,
/// before the incompatibility existed (2026-03-01).
fn grandfathered_clerks(
    tenant: &Tenant,
    o: &mut Activity,
    w: &mut TenantWriter,
    live: &mut Vec<Live>,
) -> Result<()> {
    let (users, policies) = (&tenant.people.users, &tenant.policies);
    let mut members = legacy_group_members(w);
    for u in 4..15 {
        add_member(&mut members, &users[u])?;
        for (p, legacy) in [(2usize, "PAY-Initiators"), (3usize, "PAY-Approvers")] {
            let ask = Ask {
                user: &users[u],
                pkg: &tenant.packages[policies[p].package],
                pol: &policies[p],
                t: at("2026-01-15T09:00:00Z") + (u as i64) * 60,
                archive: true,
            };
            let why = format!("Migrated from legacy group {legacy}");
            let id = o.admin_grant(&tenant.people.admin, &ask, &why, None)?;
            live.push((id, u, p));
        }
    }
    w.finish(members)
}

/// Escalation, denial, timeout, an admin grant, expired access still delivered, and the
/// external auditors' two-stage requests.
fn story_cases(tenant: &Tenant, o: &mut Activity, live: &mut Vec<Live>) -> Result<()> {
    let people = &tenant.people;
    let everyone = &tenant.everyone;
    let (fa, policies) = (&tenant.packages[0], &tenant.policies);
    let ask = |u: usize, p: usize, t: i64| Ask {
        user: &everyone[u],
        pkg: fa,
        pol: &policies[p],
        t,
        archive: true,
    };
    let story_start = at("2026-07-06T09:00:00Z");
    // Approved with escalation: the manager did not act within two days.
    let escalated = Flow::Escalated {
        approver: &people.escalation,
    };
    if let Some(id) = o.request(&ask(16, 0, story_start), escalated, 0)? {
        live.push((id, 16, 0));
    }
    // Denied by the manager.
    let denied = Flow::Denied {
        approver: &people.finance_mgr,
    };
    o.request(&ask(17, 0, story_start + DAY), denied, 1)?;
    // Timed out: nobody approved in 14 days.
    o.request(&ask(18, 0, story_start + 2 * DAY), Flow::TimedOut, 2)?;
    // Admin direct grant outside any request flow.
    let urgent = ask(19, 0, at("2026-08-03T11:00:00Z"));
    let id = o.admin_grant(
        &people.admin,
        &urgent,
        "Urgent audit support (CFO request)",
        None,
    )?;
    live.push((id, 19, 0));
    // Expired access still delivered: the schedule ended on 2026-08-15, state still delivered.
    let cover = ask(15, 0, at("2026-02-15T10:00:00Z"));
    let ended = Some(at("2026-08-15T10:00:00Z"));
    o.admin_grant(&people.admin, &cover, "Temporary cover", ended)?;
    // External auditors: sponsor, then control owner; 90 days.
    let n = people.users.len();
    for k in 0..people.externals.len() {
        let t = at("2026-07-01T08:00:00Z") + k as i64 * DAY;
        let approved = Flow::Approved {
            approvers: vec![&people.finance_mgr, &people.control_owner],
        };
        if let Some(id) = o.request(&ask(n + k, 1, t), approved, 3 + k)? {
            live.push((id, n + k, 1));
        }
    }
    Ok(())
}

/// Each employee past the story cohort requests two to five packages over the year.
fn population(tenant: &Tenant, o: &mut Activity, live: &mut Vec<Live>) -> Result<()> {
    let (people, packages, policies) = (&tenant.people, &tenant.packages, &tenant.policies);
    let export = at(EXPORTED_AT);
    for u in 20..people.users.len() {
        let k = 2 + o.rng.below(4) as usize;
        for j in 0..k {
            // Separation of duties holds for everyone but the eleven: each employee is on one
            // side of payments only.
            let payment_side = if u % 2 == 0 { 2 } else { 3 };
            let p = if packages.len() > 3 && o.rng.chance(50) {
                4 + o.rng.below((policies.len() - 4) as u64) as usize
            } else {
                [0, 0, 0, payment_side][o.rng.below(4) as usize]
            };
            let pol = &policies[p];
            let t = at("2026-01-05T08:00:00Z")
                + o.rng.below(260) as i64 * DAY
                + o.rng.below(9 * HOUR as u64) as i64;
            let flow = population_flow(o, people, pol.stages, p);
            let just = u * 7 + j;
            let ask = Ask {
                user: &people.users[u],
                pkg: &packages[pol.package],
                pol,
                t,
                archive: u < 200,
            };
            if let Some(id) = o.request(&ask, flow, just)?
                && t + pol.expiry_days.unwrap_or(10_000) * DAY > export
            {
                live.push((id, u, p));
            }
        }
    }
    Ok(())
}

/// Three in four requests approved, one in ten denied, one in twenty timed out, the rest
/// approved on escalation.
fn population_flow<'a>(
    o: &mut Activity,
    people: &'a super::people::People,
    stages: usize,
    policy: usize,
) -> Flow<'a> {
    let approver: &'a User = if policy == 2 || policy == 3 {
        &people.control_owner
    } else {
        &people.finance_mgr
    };
    match o.rng.below(100) {
        0..=74 => Flow::Approved {
            approvers: if stages == 2 {
                vec![&people.finance_mgr, &people.control_owner]
            } else {
                vec![approver]
            },
        },
        75..=84 => Flow::Denied {
            approver: &people.finance_mgr,
        },
        85..=89 => Flow::TimedOut,
        _ => Flow::Escalated {
            approver: &people.escalation,
        },
    }
}
