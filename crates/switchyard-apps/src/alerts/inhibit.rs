//! Inhibition, as in Alertmanager: `[[apps.alerts.inhibit_rules]]` with `source_matchers`,
//! `target_matchers` and `equal`. While an alert matching a rule's source matchers is not
//! resolved, a new alert matching its target matchers — with the same values of the `equal`
//! labels (missing on both counts as equal) — is muted: stored and findable, not posted.
//! When the last such source resolves, the muted alerts still firing are posted.
//!
//! The firing sources are kept in `alerts_inhibitors` (rule, the `equal` values, the source's
//! key), so checking a new alert is an indexed look-up, not a scan of every alert. As in
//! Alertmanager, an alert that matches both sides of a rule is not muted by another that also
//! does (nor by itself).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use switchyard_engine::AppMigration;
use switchyard_engine::sqlx::{self, AnyConnection, Row};
use switchyard_engine::{AppError, StoreError};

use super::intake::Alert;
use super::matchers::{self, Matcher};

pub const MIGRATIONS: [AppMigration; 2] = [
    AppMigration {
        version: 101,
        sqlite: "CREATE TABLE alerts_inhibitors (
            rule         TEXT NOT NULL,
            equal_values TEXT NOT NULL,
            dedup_key    TEXT NOT NULL,
            also_target  INTEGER NOT NULL,
            PRIMARY KEY (rule, equal_values, dedup_key)
        )",
        postgres: "CREATE TABLE alerts_inhibitors (
            rule         TEXT NOT NULL,
            equal_values TEXT NOT NULL,
            dedup_key    TEXT NOT NULL,
            also_target  BIGINT NOT NULL,
            PRIMARY KEY (rule, equal_values, dedup_key)
        )",
    },
    AppMigration {
        version: 102,
        sqlite: "CREATE INDEX alerts_inhibitors_by_key ON alerts_inhibitors (dedup_key)",
        postgres: "CREATE INDEX alerts_inhibitors_by_key ON alerts_inhibitors (dedup_key)",
    },
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    pub name: String,
    /// Each entry one matcher (`severity="critical"`) or several.
    #[serde(default)]
    pub source_matchers: Vec<String>,
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Labels (or fields) whose values must be the same in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// The problems of `[[apps.alerts.inhibit_rules]]`, keyed as check-config shows them.
pub fn validate(rules: &[InhibitRuleConfig], problems: &mut Vec<(String, String)>) {
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("inhibit_rules[{i}]");
        if rule.name.trim().is_empty() {
            problems.push((format!("{at}.name"), "a rule needs a name".into()));
        } else if rules[..i].iter().any(|r| r.name == rule.name) {
            problems.push((
                format!("{at}.name"),
                format!("rule {:?}: another inhibit rule has this name", rule.name),
            ));
        }
        for (side, list) in [
            ("source_matchers", &rule.source_matchers),
            ("target_matchers", &rule.target_matchers),
        ] {
            if list.is_empty() {
                problems.push((
                    format!("{at}.{side}"),
                    format!("rule {:?}: at least one matcher is required", rule.name),
                ));
            }
            for (j, text) in list.iter().enumerate() {
                if let Err(e) = matchers::parse(text) {
                    problems.push((
                        format!("{at}.{side}[{j}]"),
                        format!("rule {:?}: {e}", rule.name),
                    ));
                }
            }
        }
        for (j, label) in rule.equal.iter().enumerate() {
            if matchers::Matcher::new(label, matchers::Op::Equal, "").is_err() {
                problems.push((
                    format!("{at}.equal[{j}]"),
                    format!("rule {:?}: {label:?} is not a label name", rule.name),
                ));
            }
        }
    }
}

pub struct Rule {
    pub name: String,
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

/// The rules whose matchers compile (check-config reports the others, which never apply).
pub struct Rules {
    list: Vec<Rule>,
    /// Whether the alerts held by rules no longer configured were looked at (once per start
    /// or reload).
    orphans_looked_at: AtomicBool,
}

fn compile_all(list: &[String]) -> Option<Vec<Matcher>> {
    let mut out = Vec::new();
    for text in list {
        out.extend(matchers::parse(text).ok()?);
    }
    (!out.is_empty()).then_some(out)
}

impl Rules {
    pub fn new(config: &[InhibitRuleConfig]) -> Self {
        let list = config
            .iter()
            .filter_map(|r| {
                Some(Rule {
                    name: r.name.clone(),
                    source: compile_all(&r.source_matchers)?,
                    target: compile_all(&r.target_matchers)?,
                    equal: r.equal.clone(),
                })
            })
            .collect();
        Self {
            list,
            orphans_looked_at: AtomicBool::new(false),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn has_rule(&self, name: &str) -> bool {
        self.list.iter().any(|r| r.name == name)
    }

    /// `true` the first time only.
    pub fn first_look_at_orphans(&self) -> bool {
        !self.orphans_looked_at.swap(true, Ordering::Relaxed)
    }
}

impl Rule {
    fn equal_values(&self, alert: &Alert) -> String {
        let values: Vec<String> = self
            .equal
            .iter()
            .map(|l| matchers::value_of(alert, l))
            .collect();
        serde_json::to_string(&values).unwrap_or_default()
    }
}

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "alerts inhibitors",
        source: e,
    })
}

/// Records `alert` as a source of the rules it matches while it is not resolved, and forgets
/// it once it is.
pub async fn track(
    conn: &mut AnyConnection,
    rules: &Rules,
    alert: &Alert,
    resolved: bool,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM alerts_inhibitors WHERE dedup_key = $1")
        .bind(alert.dedup_key.clone())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    if resolved {
        return Ok(());
    }
    for rule in &rules.list {
        if !matchers::all_match(&rule.source, alert) {
            continue;
        }
        sqlx::query(
            "INSERT INTO alerts_inhibitors (rule, equal_values, dedup_key, also_target)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(rule.name.clone())
        .bind(rule.equal_values(alert))
        .bind(alert.dedup_key.clone())
        .bind(i64::from(matchers::all_match(&rule.target, alert)))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// The first rule that mutes `alert` now, and the source alert's key.
pub async fn inhibited_by(
    conn: &mut AnyConnection,
    rules: &Rules,
    alert: &Alert,
) -> Result<Option<(String, String)>, AppError> {
    for rule in &rules.list {
        if !matchers::all_match(&rule.target, alert) {
            continue;
        }
        let also_source = matchers::all_match(&rule.source, alert);
        let row = sqlx::query(
            "SELECT dedup_key FROM alerts_inhibitors
             WHERE rule = $1 AND equal_values = $2 AND dedup_key <> $3
               AND (also_target = 0 OR $4 = 0)
             ORDER BY dedup_key LIMIT 1",
        )
        .bind(rule.name.clone())
        .bind(rule.equal_values(alert))
        .bind(alert.dedup_key.clone())
        .bind(i64::from(also_source))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        if let Some(row) = row {
            return Ok(Some((rule.name.clone(), row.try_get(0).map_err(db_err)?)));
        }
    }
    Ok(None)
}
