//! Runtime access data: members of groups and bindings of roles to subjects, which admins
//! change while Switchyard runs. The store keeps them as opaque text — what a role, group or
//! subject means is the engine's business — and adds nothing on its own: every change is made
//! in a [`Tx`] so the caller audits it in the same transaction.

use sqlx::Row;

use crate::{Store, StoreError, Tx, query_err};

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The group's name.
    pub group: String,
    /// The member (a user id, `usergroup:S…`).
    pub member: String,
    /// When it was added, Unix ms.
    pub added_at_ms: i64,
}

/// One role bound to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    /// The role's name.
    pub role: String,
    /// Who has it (a user id, `group:<name>`, `usergroup:S…`).
    pub subject: String,
    /// When it was bound, Unix ms.
    pub added_at_ms: i64,
}

impl Tx<'_> {
    /// Adds `member` to `group`; `false` if it was there already (nothing changes).
    pub async fn access_group_add(
        &mut self,
        group: &str,
        member: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO access_group_members (group_name, member, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(member)
        .bind(now_ms)
        .execute(self.conn())
        .await
        .map_err(query_err("access group add"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes `member` from `group`; `false` if it was not there.
    pub async fn access_group_remove(
        &mut self,
        group: &str,
        member: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM access_group_members WHERE group_name = $1 AND member = $2")
                .bind(group)
                .bind(member)
                .execute(self.conn())
                .await
                .map_err(query_err("access group remove"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Binds `role` to `subject`; `false` if it was bound already.
    pub async fn access_bind(
        &mut self,
        role: &str,
        subject: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO access_bindings (role, subject, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(role)
        .bind(subject)
        .bind(now_ms)
        .execute(self.conn())
        .await
        .map_err(query_err("access bind"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Unbinds `role` from `subject`; `false` if it was not bound.
    pub async fn access_unbind(&mut self, role: &str, subject: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM access_bindings WHERE role = $1 AND subject = $2")
            .bind(role)
            .bind(subject)
            .execute(self.conn())
            .await
            .map_err(query_err("access unbind"))?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Every group member, by group then member.
    pub async fn access_group_members(&self) -> Result<Vec<GroupMember>, StoreError> {
        const OP: &str = "access groups";
        let rows = sqlx::query(
            "SELECT group_name, member, added_at FROM access_group_members \
             ORDER BY group_name, member",
        )
        .fetch_all(&self.read_pool)
        .await
        .map_err(query_err(OP))?;
        rows.iter()
            .map(|row| {
                Ok(GroupMember {
                    group: row.try_get("group_name")?,
                    member: row.try_get("member")?,
                    added_at_ms: row.try_get("added_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_err(OP))
    }

    /// Every binding, by role then subject.
    pub async fn access_bindings(&self) -> Result<Vec<RoleBinding>, StoreError> {
        const OP: &str = "access bindings";
        let rows = sqlx::query(
            "SELECT role, subject, added_at FROM access_bindings ORDER BY role, subject",
        )
        .fetch_all(&self.read_pool)
        .await
        .map_err(query_err(OP))?;
        rows.iter()
            .map(|row| {
                Ok(RoleBinding {
                    role: row.try_get("role")?,
                    subject: row.try_get("subject")?,
                    added_at_ms: row.try_get("added_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_err(OP))
    }
}
