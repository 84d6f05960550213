//! A unit of work on the app's tables: what one request, click or tick reads and changes of
//! `alerts_alerts`, `alerts_members` and `alerts_groups`, batch-shaped. The rows a request
//! needs are read up front with a statement per table (`preload_*`), its changes are kept here
//! and written at its end ([`Unit::write`]) with a multi-row statement per table, the storms
//! it fed are rendered once (not once per alert), and the silences in force are read once.
//! All of it happens in the request's transaction, so it commits, or not, with the outbox rows
//! and audit records. Whatever reads these tables during the request reads through the unit,
//! so it sees the request's own changes.

use std::collections::{BTreeSet, HashMap, HashSet};

use switchyard_engine::{AppError, Backend, Ctx};

use super::groups::{self, Group, GroupId, Member};
use super::inhibit;
use super::intake::Alert;
use super::silences::{self, Silence};
use super::state::{self, AlertRow};
use super::storm;

pub struct Unit {
    backend: Backend,
    /// Row locks (PostgreSQL): rows read are locked until the transaction ends.
    lock: bool,
    /// Known rows by dedup key; `None`: no such alert.
    alerts: HashMap<String, Option<AlertRow>>,
    changed_alerts: BTreeSet<String>,
    /// Alerts whose members (in every channel) were read.
    member_keys: HashSet<String>,
    members: HashMap<(String, String), Member>,
    changed_members: BTreeSet<(String, String)>,
    /// Known groups; `None`: no such group. A group taken out ([`Unit::take_group`]) is not
    /// here until it is put back.
    groups: HashMap<GroupId, Option<Group>>,
    changed_groups: BTreeSet<GroupId>,
    silences: Option<Vec<Silence>>,
    /// The inhibiting sources looked at and recorded.
    inhibitors: inhibit::Sources,
}

impl Unit {
    pub fn new(ctx: &Ctx<'_>) -> Self {
        let backend = ctx.store().backend();
        Self {
            backend,
            lock: backend == Backend::Postgres,
            alerts: HashMap::new(),
            changed_alerts: BTreeSet::new(),
            member_keys: HashSet::new(),
            members: HashMap::new(),
            changed_members: BTreeSet::new(),
            groups: HashMap::new(),
            changed_groups: BTreeSet::new(),
            silences: None,
            inhibitors: inhibit::Sources::default(),
        }
    }

    /// Reads the rows of the alerts `keys` not known yet, in one statement.
    pub async fn preload_alerts(
        &mut self,
        ctx: &mut Ctx<'_>,
        keys: &[&str],
    ) -> Result<(), AppError> {
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !self.alerts.contains_key(*k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found = state::load_many(ctx.db().await?, self.backend, &missing, self.lock).await?;
        for key in missing {
            self.alerts.entry(key.to_string()).or_insert(None);
        }
        for (key, row) in found {
            self.alerts.insert(key, Some(row));
        }
        Ok(())
    }

    /// The alert's row as this unit has it.
    pub async fn alert(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Result<Option<AlertRow>, AppError> {
        if !self.alerts.contains_key(key) {
            self.preload_alerts(ctx, &[key]).await?;
        }
        Ok(self.alerts.get(key).cloned().flatten())
    }

    /// Whether the alert exists, as far as the alerts read so far tell.
    pub fn known(&self, key: &str) -> bool {
        matches!(self.alerts.get(key), Some(Some(_)))
    }

    /// Keeps a new or changed row, written by [`Unit::write`].
    pub fn save_alert(&mut self, row: AlertRow) {
        let key = row.alert.dedup_key.clone();
        self.changed_alerts.insert(key.clone());
        self.alerts.insert(key, Some(row));
    }

    /// Reads the members of the alerts `keys` not read yet, in one statement.
    pub async fn preload_members(
        &mut self,
        ctx: &mut Ctx<'_>,
        keys: &[&str],
    ) -> Result<(), AppError> {
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !self.member_keys.contains(*k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found = groups::load_members(ctx.db().await?, self.backend, &missing).await?;
        self.member_keys
            .extend(missing.into_iter().map(str::to_string));
        for (key, channel, member) in found {
            self.members.entry((key, channel)).or_insert(member);
        }
        Ok(())
    }

    /// The alert's member row in `channel`, as this unit has it.
    pub async fn member(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
        channel: &str,
    ) -> Result<Option<Member>, AppError> {
        if !self.member_keys.contains(key) {
            self.preload_members(ctx, &[key]).await?;
        }
        Ok(self
            .members
            .get(&(key.to_string(), channel.to_string()))
            .cloned())
    }

    /// The group ids of the members read so far of the alert `key`.
    pub fn member_groups(&self, key: &str) -> Vec<GroupId> {
        self.members
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, channel), m)| (m.group_key.clone(), channel.clone()))
            .collect()
    }

    pub fn save_member(&mut self, key: &str, channel: &str, member: Member) {
        let id = (key.to_string(), channel.to_string());
        self.changed_members.insert(id.clone());
        self.members.insert(id, member);
    }

    /// Reads the groups `ids` not known yet, in one statement (on PostgreSQL locking them in
    /// one order).
    pub async fn preload_groups(
        &mut self,
        ctx: &mut Ctx<'_>,
        ids: &[GroupId],
    ) -> Result<(), AppError> {
        let missing: Vec<&GroupId> = ids
            .iter()
            .filter(|id| !self.groups.contains_key(*id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let found = groups::load_groups(ctx.db().await?, self.backend, &missing, self.lock).await?;
        for id in missing {
            self.groups.entry(id.clone()).or_insert(None);
        }
        for group in found {
            self.groups
                .insert((group.key.clone(), group.channel.clone()), Some(group));
        }
        Ok(())
    }

    /// Takes the group out to change it (`None`: there is none yet); give it back with
    /// [`Unit::put_group`].
    pub async fn take_group(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: &GroupId,
    ) -> Result<Option<Group>, AppError> {
        if !self.groups.contains_key(id) {
            self.preload_groups(ctx, std::slice::from_ref(id)).await?;
        }
        Ok(self.groups.remove(id).flatten())
    }

    /// Gives back a group taken out, changed (or new): written by [`Unit::write`].
    pub fn put_group(&mut self, group: Group) {
        let id = (group.key.clone(), group.channel.clone());
        self.changed_groups.insert(id.clone());
        self.groups.insert(id, Some(group));
    }

    /// Gives back a group taken out and left as it was.
    pub fn put_group_unchanged(&mut self, group: Group) {
        self.groups
            .insert((group.key.clone(), group.channel.clone()), Some(group));
    }

    /// The silences in force, read once per unit (a silence made or ended during the request
    /// is made before the unit that sees it starts).
    pub async fn silences(&mut self, ctx: &mut Ctx<'_>) -> Result<&[Silence], AppError> {
        if self.silences.is_none() {
            let now = ctx.now_ms();
            self.silences = Some(silences::in_force(ctx.db().await?, now).await?);
        }
        Ok(self.silences.as_deref().unwrap_or_default())
    }

    /// Reads the inhibiting sources every alert of `alerts` may be muted by, together.
    pub async fn preload_inhibitors(
        &mut self,
        ctx: &mut Ctx<'_>,
        rules: &inhibit::Rules,
        alerts: &[&Alert],
    ) -> Result<(), AppError> {
        if rules.is_empty() || alerts.is_empty() {
            return Ok(());
        }
        self.inhibitors
            .preload(ctx.db().await?, self.backend, rules, alerts)
            .await
    }

    /// The first inhibit rule that mutes `alert` now, and its source's key, as this unit
    /// sees the sources.
    pub async fn inhibited_by(
        &mut self,
        ctx: &mut Ctx<'_>,
        rules: &inhibit::Rules,
        alert: &Alert,
    ) -> Result<Option<(String, String)>, AppError> {
        self.inhibitors
            .inhibited_by(ctx.db().await?, self.backend, rules, alert)
            .await
    }

    /// Records `alert` as an inhibiting source of the rules it matches (or forgets it,
    /// `resolved`); written by [`Unit::write`].
    pub fn track_inhibitor(&mut self, rules: &inhibit::Rules, alert: &Alert, resolved: bool) {
        self.inhibitors.track(rules, alert, resolved);
    }

    /// Renders the storms the unit fed and writes its changes, a statement per table.
    pub async fn write(mut self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        let now = ctx.now_ms();
        for id in &self.changed_groups {
            if let Some(Some(group)) = self.groups.get_mut(id) {
                storm::publish(ctx, group).await?;
            }
        }
        if !self.changed_alerts.is_empty() {
            let rows: Vec<&AlertRow> = self
                .changed_alerts
                .iter()
                .filter_map(|k| self.alerts.get(k).and_then(Option::as_ref))
                .collect();
            state::save_many(ctx.db().await?, self.backend, &rows, now).await?;
        }
        if !self.changed_members.is_empty() {
            let members: Vec<(&str, &str, &Member)> = self
                .changed_members
                .iter()
                .filter_map(|id| {
                    let member = self.members.get(id)?;
                    Some((id.0.as_str(), id.1.as_str(), member))
                })
                .collect();
            groups::save_members(ctx.db().await?, self.backend, &members, now).await?;
        }
        if !self.changed_groups.is_empty() {
            let changed: Vec<&Group> = self
                .changed_groups
                .iter()
                .filter_map(|id| self.groups.get(id).and_then(Option::as_ref))
                .collect();
            groups::save_groups(ctx.db().await?, self.backend, &changed).await?;
        }
        if self.inhibitors.changed() {
            self.inhibitors.write(ctx.db().await?, self.backend).await?;
        }
        Ok(())
    }
}
