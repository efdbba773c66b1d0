//! The tenant's people: employees (the first few carry the story's roles), the external
//! auditors of Fabrikam Audit LLP, and the connected organization they come from.

use serde_json::{Value, json};

use super::writer::PageWriter;
use super::{CTX_EM, DOMAIN, Result, TenantWriter, guid};

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Mei", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen",
    "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Almeida", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Murphy", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt",
    "Tanaka", "Virtanen",
];

/// A user as Graph shows one (the subject of a request, the actor of an audit event).
#[derive(Clone)]
pub(super) struct User {
    pub id: String,
    pub name: String,
    pub upn: String,
    pub external: bool,
}

impl User {
    /// The system (Entitlement Management itself): an audit event by no user.
    pub fn system() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            upn: String::new(),
            external: false,
        }
    }

    /// The `accessPackageSubject` of a request or assignment.
    pub fn subject(&self) -> Value {
        json!({
            "id": guid(&format!("subject-{}", self.id)),
            "objectId": self.id,
            "displayName": self.name,
            "principalName": self.upn,
            "email": self.upn.replace("#EXT#@woodgrovebank.example", ""),
            "subjectType": "user",
            "connectedOrganization": if self.external { json!({"id": guid("org-fabrikam")}) } else { Value::Null },
        })
    }

    /// The `initiatedBy.user` of an audit event.
    pub fn identity(&self) -> Value {
        json!({"id": self.id, "displayName": self.name, "userPrincipalName": self.upn, "ipAddress": "203.0.113.24"})
    }

    /// The user as a directory object (a sponsor, a group member).
    fn directory_object(&self) -> Value {
        json!({"@odata.type": "#microsoft.graph.user", "id": self.id, "displayName": self.name, "userPrincipalName": self.upn})
    }
}

/// Everyone in the tenant, with the story's roles named.
pub(super) struct People {
    /// Employees; index 15 has a hostile display name.
    pub users: Vec<User>,
    /// Fabrikam's auditors.
    pub externals: Vec<User>,
    /// Iris Holm, the identity administrator.
    pub admin: User,
    /// Marcus Webb, the control owner (second-stage approver, payments reviewer).
    pub control_owner: User,
    /// Fatima Rahman, the finance manager (approver, reviewer, internal sponsor).
    pub finance_mgr: User,
    /// Paul Okonkwo, the escalation approver.
    pub escalation: User,
}

impl People {
    /// `n` employees (at least 20) and the three external auditors.
    pub fn new(n: usize) -> Self {
        let mut users: Vec<User> = (0..n)
            .map(|i| {
                let (f, l) = (
                    FIRST[i % FIRST.len()],
                    LAST[(i / FIRST.len() + i * 7) % LAST.len()],
                );
                User {
                    id: guid(&format!("user-{i}")),
                    name: format!("{f} {l}"),
                    upn: format!("{}.{}{}@{DOMAIN}", f.to_lowercase(), l.to_lowercase(), i),
                    external: false,
                }
            })
            .collect();
        let roles = ["Iris Holm", "Marcus Webb", "Fatima Rahman", "Paul Okonkwo"];
        for (i, r) in roles.iter().enumerate() {
            users[i].name = (*r).to_string();
            users[i].upn = format!("{}@{DOMAIN}", r.to_lowercase().replace(' ', "."));
        }
        users[15].name = "Mallory \"><img src=x onerror=alert(1)>".into();
        let externals: Vec<User> = ["Sofia Lind", "Tom Brandt", "Ava Moreau"]
            .iter()
            .enumerate()
            .map(|(i, name)| User {
                id: guid(&format!("external-{i}")),
                name: (*name).to_string(),
                upn: format!(
                    "{}_fabrikamaudit.example#EXT#@{DOMAIN}",
                    name.to_lowercase().replace(' ', ".")
                ),
                external: true,
            })
            .collect();
        Self {
            admin: users[0].clone(),
            control_owner: users[1].clone(),
            finance_mgr: users[2].clone(),
            escalation: users[3].clone(),
            users,
            externals,
        }
    }

    /// Employees then externals: the index a request's requestor is chosen by.
    pub fn everyone(&self) -> Vec<User> {
        self.users.iter().chain(&self.externals).cloned().collect()
    }
}

/// The id of Fabrikam Audit LLP's connected organization.
pub(super) fn org_id() -> String {
    guid("org-fabrikam")
}

/// Writes the connected organization and its internal and external sponsors.
pub(super) fn write_connected_organization(people: &People, w: &mut TenantWriter) -> Result<()> {
    let org_id = org_id();
    let mut orgs = w.pages(
        &w.em(),
        "connectedOrganizations",
        &format!("{CTX_EM}connectedOrganizations"),
    );
    orgs.push(&json!({
        "id": org_id, "displayName": "Fabrikam Audit LLP", "description": "External audit firm", "state": "configured",
        "createdDateTime": "2025-12-01T10:00:00Z", "modifiedDateTime": "2025-12-01T10:00:00Z",
        "identitySources": [{"@odata.type": "#microsoft.graph.azureActiveDirectoryTenant", "tenantId": guid("tenant-fabrikam"), "displayName": "Fabrikam Audit LLP"}],
    }))?;
    w.finish(orgs)?;
    let dir = w.em().join("connectedOrganizations");
    for (stem, sponsor) in [
        ("internalSponsors", &people.finance_mgr),
        ("externalSponsors", &people.externals[0]),
    ] {
        let mut sponsors: PageWriter = w.pages(
            &dir,
            stem,
            &format!("{CTX_EM}connectedOrganizations('{org_id}')/{stem}"),
        );
        sponsors.push(&sponsor.directory_object())?;
        w.finish(sponsors)?;
    }
    Ok(())
}

/// The legacy group PAY-Initiators' member list, written as the grandfathered clerks are.
pub(super) fn legacy_group_members(w: &TenantWriter) -> PageWriter {
    w.pages(
        &w.out_dir().join("groups"),
        "PAY-Initiators-members",
        &format!("groups('{}')/members", guid("group-PAY-Initiators")),
    )
}

/// Adds one clerk to the legacy group's member list.
pub(super) fn add_member(members: &mut PageWriter, user: &User) -> Result<()> {
    members.push(&user.directory_object())
}
