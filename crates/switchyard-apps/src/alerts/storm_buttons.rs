//! A storm summary's "Acknowledge all" and "Resolve all": every alert folded into that summary
//! and not already in that state changes as the single alert's button changes it — audited
//! alert by alert, every message of it in every channel edited — while the storm's own thread
//! gets one line for all of them and its summary its new counts. Permission-checked by the
//! dispatcher as the single buttons are (`alerts.ack`, `alerts.resolve`: `Alerts::permission`).
//!
//! A storm may hold 10,000 alerts: they are read, changed and written in one unit of work, a
//! statement per few hundred rows and table (`Unit`), in the click's transaction.

use switchyard_engine::{AppError, Ctx, Outcome, Store};

use super::groups::{self, Change, GroupId};
use super::intake::Status;
use super::state::AlertRow;
use super::unit::Unit;
use super::{ACK_ALL_ACTION, Alerts, storm};

/// What a button does: the state it sets and its words.
struct Bulk {
    target: Status,
    change: Change,
    permission: &'static str,
    verb: &'static str,
    verb_cap: &'static str,
    emoji: &'static str,
}

impl Bulk {
    fn of(action_id: &str) -> Self {
        if action_id == ACK_ALL_ACTION {
            Self {
                target: Status::Acknowledged,
                change: Change::Ack,
                permission: "alerts.ack",
                verb: "acknowledged",
                verb_cap: "Acknowledged",
                emoji: ":eyes:",
            }
        } else {
            Self {
                target: Status::Resolved,
                change: Change::Resolve,
                permission: "alerts.resolve",
                verb: "resolved",
                verb_cap: "Resolved",
                emoji: ":white_check_mark:",
            }
        }
    }

    /// Already there: resolved, or (acknowledging) acknowledged.
    fn done(&self, status: Status) -> bool {
        status == Status::Resolved || status == self.target
    }
}

/// When the summary was posted (its `ts`), Unix ms; `None` if it has not been yet.
async fn posted_ms(store: &Store, summary_ref: &str) -> Result<Option<i64>, AppError> {
    let found = store.message_ref(summary_ref).await?;
    Ok(found
        .and_then(|r| r.ts.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as i64))
}

impl Alerts {
    /// Acknowledge all / Resolve all, clicked on the storm summary `fold_ref`.
    pub(super) async fn storm_button(
        &self,
        ctx: &mut Ctx<'_>,
        action_id: &str,
        fold_ref: &str,
        user: &str,
        channel: Option<&str>,
    ) -> Result<(), AppError> {
        let bulk = Bulk::of(action_id);
        let object = format!("storm:{fold_ref}");
        let members = groups::folded_into(ctx.db().await?, fold_ref).await?;
        let Some((_, storm_channel, group_key)) = members.first().cloned() else {
            ctx.audit(bulk.permission, &object, Outcome::Failed, "no such storm");
            if let Some(channel) = channel {
                ctx.ephemeral(channel, user, "I don't know that storm any more.");
            }
            return Ok(());
        };
        // A summary is of one channel, and an alert is in a channel once: each key once.
        let keys: Vec<String> = members.into_iter().map(|(key, _, _)| key).collect();
        groups::lock_for_keys(self, ctx, &keys).await?;
        let mut unit = Unit::new(ctx);
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        unit.preload_alerts(ctx, &key_refs).await?;
        unit.preload_members(ctx, &key_refs).await?;
        let mut group_ids: Vec<GroupId> = key_refs
            .iter()
            .flat_map(|k| unit.member_groups(k))
            .collect();
        group_ids.sort_unstable();
        group_ids.dedup();
        unit.preload_groups(ctx, &group_ids).await?;

        // The single button's line, on the alerts' other messages.
        let line = format!("{} {} by <@{user}>.", bulk.emoji, bulk.verb_cap);
        let (mut changed, mut already) = (0usize, 0usize);
        for key in &keys {
            let Some(mut row) = unit.alert(ctx, key).await? else {
                continue;
            };
            if bulk.done(row.status) {
                already += 1;
                continue;
            }
            let previous = row.status;
            row.status = bulk.target;
            if bulk.target == Status::Acknowledged {
                row.acked_by = Some(user.to_string());
            } else {
                row.resolved_by = Some(user.to_string());
            }
            groups::edit_all(
                self,
                ctx,
                &mut unit,
                &row,
                &line,
                bulk.change,
                previous,
                Some(fold_ref),
            )
            .await?;
            unit.save_alert(row.clone());
            self.after_save(ctx, &mut unit, &row).await?;
            ctx.audit(
                bulk.permission,
                &format!("alert:{key}"),
                Outcome::Ok,
                &format!(
                    "{} with all of its storm ({} message(s))",
                    bulk.verb,
                    row.channels.len()
                ),
            );
            changed += 1;
        }
        if changed == 0 {
            let state = if bulk.target == Status::Acknowledged {
                "acknowledged or resolved"
            } else {
                "resolved"
            };
            ctx.audit(
                bulk.permission,
                &object,
                Outcome::Failed,
                &format!("already {state}: all {already} alert(s)"),
            );
            if let Some(channel) = channel {
                ctx.ephemeral(
                    channel,
                    user,
                    &format!("All {already} alerts of this storm are already {state}."),
                );
            }
            return Ok(());
        }

        let id: GroupId = (group_key, storm_channel.clone());
        let mut group = unit.take_group(ctx, &id).await?;
        if !group
            .as_ref()
            .is_some_and(|g| storm::is_current(g, fold_ref))
        {
            // An earlier storm of the group: the group keeps only its current storm's counts,
            // so this summary's are counted again from its alerts.
            let mut rows: Vec<AlertRow> = Vec::with_capacity(keys.len());
            for key in &keys {
                rows.extend(unit.alert(ctx, key).await?);
            }
            let first_ms = rows.iter().map(|r| r.first_ms).min().unwrap_or_default();
            let started_ms = posted_ms(ctx.store(), fold_ref).await?.unwrap_or(first_ms);
            let label = group.as_ref().map(|g| g.label.clone()).unwrap_or_default();
            let fold = storm::recounted(
                fold_ref,
                &label,
                started_ms,
                &rows.iter().collect::<Vec<_>>(),
            );
            ctx.update_latest(&storm_channel, fold_ref, storm::summary_message(&fold))
                .await?;
        }
        let mut text = format!(
            "{} {} all {changed} by <@{user}>.",
            bulk.emoji, bulk.verb_cap
        );
        if already > 0 {
            text.push_str(&format!(" ({already} already were.)"));
        }
        storm::note(ctx, group.as_mut(), &storm_channel, fold_ref, text).await?;
        if let Some(group) = group {
            unit.put_group(group);
        }
        ctx.audit(
            bulk.permission,
            &object,
            Outcome::Ok,
            &format!("{changed} alert(s) {}; {already} already were", bulk.verb),
        );
        unit.write(ctx).await
    }
}
