//! Tenancy built into the storage keys. Every item a team owns lives in a partition
//! whose key starts with its tenant id, and the only way to name one is through a
//! `Tenant`, which only verified credentials produce. A handler cannot build a key
//! into another team's data because it never holds another team's `Tenant`.

use crate::ids::TenantId;
use sextant_storage::kv::Key;

/// A team proven by a verified credential (or just created by sign-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tenant(TenantId);

impl Tenant {
    /// Only auth code may vouch for a tenant.
    pub(crate) fn verified(id: TenantId) -> Self {
        Self(id)
    }

    pub fn id(&self) -> TenantId {
        self.0
    }

    /// The team's root partition: team, members, keys, invites, projects.
    pub fn root(&self) -> String {
        self.0.to_string()
    }

    /// A key in the team's root partition.
    pub fn key(&self, sort_key: impl Into<String>) -> Key {
        Key::new(self.root(), sort_key)
    }

    /// A partition of its own under the team, for data that grows (a run's series).
    pub fn partition(&self, name: &str) -> String {
        format!("{}#{name}", self.0)
    }

    /// The prefix every blob of the team starts with.
    pub fn blob_prefix(&self) -> String {
        format!("{}/", self.0)
    }
}
