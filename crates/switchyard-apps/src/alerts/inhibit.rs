//! Inhibition, as in Alertmanager: `[[apps.alerts.inhibit_rules]]` with `source_matchers`,
//! `target_matchers` and `equal`. While an alert matching a rule's source matchers is not
//! resolved, a new alert matching its target matchers — with the same values of the `equal`
//! labels (missing on both counts as equal) — is muted: stored and findable, not posted.
//! When the last such source resolves, the muted alerts still firing are posted.
//!
//! The firing sources are kept in `alerts_inhibitors` (rule, the `equal` values, the source's
//! key), so checking a new alert is an indexed look-up, not a scan of every alert; a request
//! reads the sources of all its new alerts at once and writes its changes to them at its end
//! ([`Sources`], held by the request's unit of work). As in
//! Alertmanager, an alert that matches both sides of a rule is not muted by another that also
//! does (nor by itself).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use switchyard_engine::AppMigration;
use switchyard_engine::sqlx::{self, AnyConnection, Row};
use switchyard_engine::{AppError, Backend, Placeholders, StoreError};

use super::intake::Alert;
use super::matchers::{self, Matcher};
use super::state::ROWS_PER_STATEMENT;

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

/// What a source is filed under: a rule's name and the source's `equal` values (JSON).
type Pair = (String, String);

/// Pairs per statement when reading sources (each is two values and a condition).
const PAIRS_PER_READ: usize = 100;

/// The inhibiting sources as one unit of work sees them (`Unit`): the stored rows of the pairs
/// it looked at — a request's new alerts' pairs read together, a statement per
/// [`PAIRS_PER_READ`], not a query per alert —, and the sources it recorded or forgot, kept
/// here (so the request's later alerts see them) and written at its end ([`Sources::write`]).
#[derive(Default)]
pub struct Sources {
    /// Stored rows by pair: the source's key and whether it also matches the rule's target.
    read: HashMap<Pair, BTreeMap<String, bool>>,
    /// Sources recorded in this unit: each key's pairs now (none: forgotten, it resolved).
    /// Their stored rows no longer count.
    tracked: BTreeMap<String, Vec<(Pair, bool)>>,
}

impl Sources {
    /// The pairs `alert` is looked up under: those of the rules whose target it matches.
    fn target_pairs<'r>(rules: &'r Rules, alert: &Alert) -> Vec<(&'r Rule, Pair)> {
        rules
            .list
            .iter()
            .filter(|rule| matchers::all_match(&rule.target, alert))
            .map(|rule| (rule, (rule.name.clone(), rule.equal_values(alert))))
            .collect()
    }

    /// Reads the stored sources of every pair `alerts` may be looked up under and that this
    /// unit has not read: a statement per [`PAIRS_PER_READ`] pairs.
    pub async fn preload(
        &mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        rules: &Rules,
        alerts: &[&Alert],
    ) -> Result<(), AppError> {
        let mut missing: Vec<Pair> = alerts
            .iter()
            .flat_map(|a| Self::target_pairs(rules, a))
            .map(|(_, pair)| pair)
            .filter(|pair| !self.read.contains_key(pair))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(PAIRS_PER_READ) {
            let mut marks = Placeholders::new(backend);
            let conditions: Vec<String> = chunk
                .iter()
                .map(|_| {
                    let (rule, values) = (marks.mark(), marks.mark());
                    format!("(rule = {rule} AND equal_values = {values})")
                })
                .collect();
            let sql = format!(
                "SELECT rule, equal_values, dedup_key, also_target FROM alerts_inhibitors
                 WHERE {}",
                conditions.join(" OR ")
            );
            let mut query = sqlx::query(&sql);
            for (rule, values) in chunk {
                query = query.bind(rule.as_str()).bind(values.as_str());
            }
            let rows = query.fetch_all(&mut *conn).await.map_err(db_err)?;
            for pair in chunk {
                self.read.entry(pair.clone()).or_default();
            }
            for row in rows {
                let pair: Pair = (
                    row.try_get(0).map_err(db_err)?,
                    row.try_get(1).map_err(db_err)?,
                );
                let key: String = row.try_get(2).map_err(db_err)?;
                let also_target: i64 = row.try_get(3).map_err(db_err)?;
                self.read
                    .entry(pair)
                    .or_default()
                    .insert(key, also_target != 0);
            }
        }
        Ok(())
    }

    /// The first rule that mutes `alert` now, and the source alert's key (the least key, as
    /// a stored look-up ordered by key gave it). An alert matching both sides of a rule is not
    /// muted by another that does too, nor by itself.
    pub async fn inhibited_by(
        &mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        rules: &Rules,
        alert: &Alert,
    ) -> Result<Option<(String, String)>, AppError> {
        self.preload(conn, backend, rules, &[alert]).await?;
        let key = alert.dedup_key.as_str();
        for (rule, pair) in Self::target_pairs(rules, alert) {
            let also_source = matchers::all_match(&rule.source, alert);
            let counts =
                |source: &str, also_target: bool| source != key && !(also_target && also_source);
            let stored = self
                .read
                .get(&pair)
                .into_iter()
                .flatten()
                .filter(|(source, _)| !self.tracked.contains_key(source.as_str()));
            let recorded = self.tracked.iter().flat_map(|(source, pairs)| {
                pairs
                    .iter()
                    .filter(|(p, _)| *p == pair)
                    .map(move |(_, also)| (source, also))
            });
            let found = stored
                .chain(recorded)
                .filter(|(source, also)| counts(source, **also))
                .map(|(source, _)| source)
                .min();
            if let Some(source) = found {
                return Ok(Some((rule.name.clone(), source.clone())));
            }
        }
        Ok(None)
    }

    /// Records `alert` as a source of the rules it matches while it is not resolved, and forgets
    /// it once it is (written by [`Sources::write`]).
    pub fn track(&mut self, rules: &Rules, alert: &Alert, resolved: bool) {
        let pairs = if resolved {
            Vec::new()
        } else {
            rules
                .list
                .iter()
                .filter(|rule| matchers::all_match(&rule.source, alert))
                .map(|rule| {
                    (
                        (rule.name.clone(), rule.equal_values(alert)),
                        matchers::all_match(&rule.target, alert),
                    )
                })
                .collect()
        };
        self.tracked.insert(alert.dedup_key.clone(), pairs);
    }

    /// Whether anything was tracked (to be written).
    pub fn changed(&self) -> bool {
        !self.tracked.is_empty()
    }

    /// Writes what [`Sources::track`] recorded: the tracked keys' rows replaced, a statement
    /// per few hundred keys or rows.
    pub async fn write(&self, conn: &mut AnyConnection, backend: Backend) -> Result<(), AppError> {
        let keys: Vec<&str> = self.tracked.keys().map(String::as_str).collect();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let mut marks = Placeholders::new(backend);
            let sql = format!(
                "DELETE FROM alerts_inhibitors WHERE dedup_key IN ({})",
                marks.list(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(*key);
            }
            query.execute(&mut *conn).await.map_err(db_err)?;
        }
        let rows: Vec<(&str, &Pair, bool)> = self
            .tracked
            .iter()
            .flat_map(|(key, pairs)| pairs.iter().map(move |(p, also)| (key.as_str(), p, *also)))
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut marks = Placeholders::new(backend);
            let sql = format!(
                "INSERT INTO alerts_inhibitors (rule, equal_values, dedup_key, also_target)
                 VALUES {} ON CONFLICT DO NOTHING",
                marks.rows(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (key, (rule, values), also) in chunk {
                query = query
                    .bind(rule.as_str())
                    .bind(values.as_str())
                    .bind(*key)
                    .bind(i64::from(*also));
            }
            query.execute(&mut *conn).await.map_err(db_err)?;
        }
        Ok(())
    }
}
