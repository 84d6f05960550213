//! Who may do what: roles, groups, bindings and channel gates (`[access]`).
//!
//! Every input a person sends an app has a *permission name*, `<app>.<verb>` (see
//! [`default_name`]; an app may rename or exempt inputs with [`crate::App::permission`]). A
//! *role* grants names by pattern (`*` matches any run of characters, dots included:
//! `*.status`, `alerts.*`, `*`). People get roles through *bindings*: a role is bound to
//! *subjects* — a Slack user id (`U0ADMIN`), a group (`group:oncall`) or a Slack user group
//! (`usergroup:S0123`, its members resolved with `usergroups.users.list`). Someone with no role
//! bound has the `default_role`, if there is one. A *gate* confines names to channels, whatever
//! the role: elsewhere the input is refused, or ignored without a word.
//!
//! ```toml
//! [access]
//! default_role = "viewer"
//! [access.roles]
//! admin    = ["*"]
//! operator = ["*.status", "*.search", "*.report", "alerts.ack", "alerts.comment"]
//! viewer   = ["*.status", "*.search", "*.view", "ping"]
//! [access.groups]
//! oncall = ["U0AAA", "U0BBB", "usergroup:S0123"]
//! [access.bind]
//! admin    = ["U0ADMIN"]
//! operator = ["group:oncall"]
//! [[access.gates]]
//! actions   = ["machines.*"]
//! channels  = ["C0CONTROL"]
//! elsewhere = "refuse"          # or "ignore"
//! ```
//!
//! Without an `[access]` section nothing is checked (every input is allowed). Roles live only
//! in the config; groups and bindings also live in the store, where admins change them at run
//! time, and the two combine. This module is the pure part: the config's shape and checks,
//! and [`Policy::decide`]. [`AccessControl`] holds what the store and Slack add, refreshed in
//! the background, so a decision never waits for I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use switchyard_store::{GroupMember, RoleBinding};

use crate::app::{Declaration, Input};

/// `[access]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// The role of anyone with no role bound; none: they may do nothing that is checked.
    pub default_role: Option<String>,
    /// Role → the permission names it grants, as patterns (`*.status`, `alerts.ack`, `*`).
    pub roles: BTreeMap<String, Vec<String>>,
    /// Static groups: name → members (Slack user ids, `usergroup:S…`). Runtime members are
    /// added in the store (`switchyard access group add`).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Role → subjects bound to it: `U…` (a user), `group:<name>`, `usergroup:S…`.
    pub bind: BTreeMap<String, Vec<String>>,
    /// Names confined to channels.
    pub gates: Vec<GateConfig>,
}

/// One `[[access.gates]]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Permission-name patterns the gate covers.
    pub actions: Vec<String>,
    /// Channel ids (`C0CONTROL`) where they may be used.
    pub channels: Vec<String>,
    /// What happens elsewhere (and to inputs with no channel, like modal submissions).
    #[serde(default)]
    pub elsewhere: Elsewhere,
}

/// What a gate does to an input outside its channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Elsewhere {
    /// The person is told why (an ephemeral), and the refusal is audited.
    #[default]
    Refuse,
    /// Nothing is said (the bot does not answer there at all); still audited as refused.
    Ignore,
}

/// Characters of role, group and name patterns: lowercase, digits, `_ - .` (and `*` in
/// patterns).
fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
}

/// Why a role or group name is not usable, if it is not.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(is_name_char) {
        return Err(format!(
            "{:?}: use 1 to 64 lowercase letters, digits, _ - .",
            name.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// Why a permission pattern is not usable, if it is not.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty()
        || pattern.len() > 128
        || !pattern.chars().all(|c| c == '*' || is_name_char(c))
    {
        return Err(format!(
            "{:?}: a pattern is lowercase letters, digits, _ - . and * (any run of characters)",
            pattern.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// A Slack user id: `U…` or `W…` (Enterprise Grid), uppercase letters and digits.
fn is_user_id(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 32
        && (s.starts_with('U') || s.starts_with('W'))
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_usergroup_id(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 32
        && s.starts_with('S')
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Who a binding or a group membership is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A Slack user id.
    User(String),
    /// A group, static or in the store.
    Group(String),
    /// A Slack user group's id (`S…`).
    Usergroup(String),
}

impl Subject {
    /// Reads `U0ADMIN`, `group:oncall` or `usergroup:S0123`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{:?}: use a Slack user id (U0ADMIN), group:<name> or usergroup:<id> (usergroup:S0123)",
                text.chars().take(64).collect::<String>()
            )
        };
        if let Some(group) = text.strip_prefix("group:") {
            check_name(group).map_err(|_| bad())?;
            Ok(Self::Group(group.to_string()))
        } else if let Some(id) = text.strip_prefix("usergroup:") {
            is_usergroup_id(id)
                .then(|| Self::Usergroup(id.to_string()))
                .ok_or_else(bad)
        } else if is_user_id(text) {
            Ok(Self::User(text.to_string()))
        } else {
            Err(bad())
        }
    }

    /// Reads a group member: a user or a Slack user group (groups do not nest).
    pub fn parse_member(text: &str) -> Result<Self, String> {
        match Self::parse(text)? {
            Self::Group(_) => Err(format!(
                "{:?}: a group's members are Slack user ids or usergroup:<id>; groups do not nest",
                text.chars().take(64).collect::<String>()
            )),
            member => Ok(member),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(id) => f.write_str(id),
            Self::Group(name) => write!(f, "group:{name}"),
            Self::Usergroup(id) => write!(f, "usergroup:{id}"),
        }
    }
}

/// Every error in `[access]`, as `(key, reason)`; keys are relative to `access`.
pub fn check_config(config: &AccessConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (role, patterns) in &config.roles {
        if let Err(e) = check_name(role) {
            errors.push((format!("roles.{role}"), format!("role name {e}")));
        }
        for (i, pattern) in patterns.iter().enumerate() {
            if let Err(e) = check_pattern(pattern) {
                errors.push((format!("roles.{role}[{i}]"), e));
            }
        }
    }
    let role_names = || {
        config
            .roles
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(role) = &config.default_role
        && !config.roles.contains_key(role)
    {
        errors.push((
            "default_role".into(),
            format!("{role:?} is not a role; the roles are {}", role_names()),
        ));
    }
    for (group, members) in &config.groups {
        if let Err(e) = check_name(group) {
            errors.push((format!("groups.{group}"), format!("group name {e}")));
        }
        for (i, member) in members.iter().enumerate() {
            if let Err(e) = Subject::parse_member(member) {
                errors.push((format!("groups.{group}[{i}]"), e));
            }
        }
    }
    for (role, subjects) in &config.bind {
        if !config.roles.contains_key(role) {
            errors.push((
                format!("bind.{role}"),
                format!("{role:?} is not a role; the roles are {}", role_names()),
            ));
        }
        for (i, subject) in subjects.iter().enumerate() {
            if let Err(e) = Subject::parse(subject) {
                errors.push((format!("bind.{role}[{i}]"), e));
            }
        }
    }
    for (g, gate) in config.gates.iter().enumerate() {
        if gate.actions.is_empty() {
            errors.push((
                format!("gates[{g}].actions"),
                "a gate needs at least one pattern".into(),
            ));
        }
        for (i, pattern) in gate.actions.iter().enumerate() {
            if let Err(e) = check_pattern(pattern) {
                errors.push((format!("gates[{g}].actions[{i}]"), e));
            }
        }
        if gate.channels.is_empty() {
            errors.push((
                format!("gates[{g}].channels"),
                "a gate needs at least one channel id".into(),
            ));
        }
        for (i, channel) in gate.channels.iter().enumerate() {
            let looks_like_id = channel.len() >= 2
                && (channel.starts_with('C') || channel.starts_with('G'))
                && channel
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !looks_like_id {
                errors.push((
                    format!("gates[{g}].channels[{i}]"),
                    format!(
                        "{:?} is not a channel id: use the id (C0CONTROL, from the channel's details), not its name",
                        channel.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    errors
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters (none included).
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // Iterative glob with one backtrack point: linear-ish, never recursive on input.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The permission name the engine gives an input of app `declaration`, before the app's own
/// say ([`crate::App::permission`]):
/// - a mention `@bot <word>`: `<app>.<word>`, or `<app>` when the word is the app's name
///   (`@bot ping` is `ping`);
/// - a slash command: `<app>.<sub>` when its text starts with one of the declaration's
///   `subcommands` (`/machines enable laser` is `machines.enable`), else `<app>`;
/// - a button or menu: `<app>.<verb>`, the verb being the `action_id` after the app's prefix,
///   up to the next `:` (`alerts:ack:42` with prefix `alerts:` is `alerts.ack`);
/// - a modal submission: the same from its `callback_id`;
/// - anything else (messages matched by pattern, events, HTTP routes): `None`, not checked.
pub fn default_name(declaration: &Declaration, input: &Input) -> Option<String> {
    let app = declaration.name;
    let dotted = |verb: &str| {
        let verb = verb.to_lowercase();
        if verb.is_empty() || verb == app {
            app.to_string()
        } else {
            format!("{app}.{verb}")
        }
    };
    let after_prefix = |id: &str, prefixes: &[&str]| {
        let rest = prefixes
            .iter()
            .filter(|p| id.starts_with(**p))
            .map(|p| &id[p.len()..])
            .min_by_key(|rest| rest.len())
            .unwrap_or(id);
        let rest = rest.trim_start_matches([':', '.', '_', '-']);
        dotted(rest.split(':').next().unwrap_or(""))
    };
    match input {
        Input::Mention { command, .. } => Some(dotted(command)),
        Input::Command { text, .. } => {
            let first = text.split_whitespace().next().unwrap_or("").to_lowercase();
            if declaration.subcommands.contains(&first.as_str()) {
                Some(dotted(&first))
            } else {
                Some(app.to_string())
            }
        }
        Input::Action { action_id, .. } => {
            Some(after_prefix(action_id, &declaration.action_prefixes))
        }
        Input::ViewSubmission { callback_id, .. } => {
            Some(after_prefix(callback_id, &declaration.view_prefixes))
        }
        Input::Message { .. } | Input::Event { .. } | Input::Http { .. } => None,
    }
}

/// What the store and Slack add to the config: runtime group members and bindings, and the
/// members of the Slack user groups referred to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// Group → members, from the store.
    pub groups: BTreeMap<String, BTreeSet<Subject>>,
    /// `(role, subject)` bindings from the store.
    pub bindings: Vec<(String, Subject)>,
    /// Slack user group id → its members' user ids, as last resolved.
    pub usergroups: HashMap<String, HashSet<String>>,
}

impl Dynamic {
    /// The store's rows (malformed ones skipped: the store takes only what the `access`
    /// commands checked), with the Slack user groups as last resolved.
    pub fn from_rows(
        members: &[GroupMember],
        bindings: &[RoleBinding],
        usergroups: HashMap<String, HashSet<String>>,
    ) -> Self {
        let mut groups: BTreeMap<String, BTreeSet<Subject>> = BTreeMap::new();
        for m in members {
            if let Ok(member) = Subject::parse_member(&m.member) {
                groups.entry(m.group.clone()).or_default().insert(member);
            }
        }
        let bindings = bindings
            .iter()
            .filter_map(|b| Some((b.role.clone(), Subject::parse(&b.subject).ok()?)))
            .collect();
        Self {
            groups,
            bindings,
            usergroups,
        }
    }
}

/// The compiled `[access]`: what [`Policy::decide`] evaluates.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    default_role: Option<String>,
    roles: BTreeMap<String, Vec<String>>,
    groups: BTreeMap<String, BTreeSet<Subject>>,
    bindings: Vec<(String, Subject)>,
    gates: Vec<GateConfig>,
}

/// How [`Policy::decide`] came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused: tell the person `reason` (and audit it).
    Refuse(String),
    /// Refused by an `elsewhere = "ignore"` gate: say nothing (but audit `reason`).
    Ignore(String),
}

impl Policy {
    /// Compiles a config that passed [`check_config`]; malformed subjects (there are none
    /// then) are skipped.
    pub fn new(config: &AccessConfig) -> Self {
        let groups = config
            .groups
            .iter()
            .map(|(g, members)| {
                let members = members
                    .iter()
                    .filter_map(|m| Subject::parse_member(m).ok())
                    .collect();
                (g.clone(), members)
            })
            .collect();
        let bindings = config
            .bind
            .iter()
            .flat_map(|(role, subjects)| {
                subjects
                    .iter()
                    .filter_map(|s| Subject::parse(s).ok())
                    .map(|s| (role.clone(), s))
            })
            .collect();
        Self {
            default_role: config.default_role.clone(),
            roles: config.roles.clone(),
            groups,
            bindings,
            gates: config.gates.clone(),
        }
    }

    /// Whether `role` is defined (bindings in the store must name one).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// The roles, by name.
    pub fn role_names(&self) -> Vec<&str> {
        self.roles.keys().map(String::as_str).collect()
    }

    /// The config's bindings.
    pub fn config_bindings(&self) -> &[(String, Subject)] {
        &self.bindings
    }

    /// The config's static groups.
    pub fn config_groups(&self) -> &BTreeMap<String, BTreeSet<Subject>> {
        &self.groups
    }

    /// Every Slack user group the config and `dynamic` refer to: those to resolve.
    pub fn usergroups(&self, dynamic: &Dynamic) -> BTreeSet<String> {
        let members = self
            .groups
            .values()
            .chain(dynamic.groups.values())
            .flatten();
        let bound = self
            .bindings
            .iter()
            .chain(&dynamic.bindings)
            .map(|(_, s)| s);
        members
            .chain(bound)
            .filter_map(|s| match s {
                Subject::Usergroup(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// The roles `user` has: every role bound to them, a group they are in, or a Slack user
    /// group they are in; the default role when none is.
    pub fn roles_of(&self, dynamic: &Dynamic, user: &str) -> BTreeSet<String> {
        let in_usergroup = |id: &str| {
            dynamic
                .usergroups
                .get(id)
                .is_some_and(|members| members.contains(user))
        };
        let is_member = |member: &Subject| match member {
            Subject::User(id) => id == user,
            Subject::Usergroup(id) => in_usergroup(id),
            Subject::Group(_) => false,
        };
        let in_group = |group: &str| {
            let members = self.groups.get(group).into_iter().flatten();
            let runtime = dynamic.groups.get(group).into_iter().flatten();
            members.chain(runtime).any(is_member)
        };
        let mut roles: BTreeSet<String> = self
            .bindings
            .iter()
            .chain(&dynamic.bindings)
            .filter(|(role, _)| self.roles.contains_key(role))
            .filter(|(_, subject)| match subject {
                Subject::Group(group) => in_group(group),
                other => is_member(other),
            })
            .map(|(role, _)| role.clone())
            .collect();
        if roles.is_empty()
            && let Some(default) = &self.default_role
        {
            roles.insert(default.clone());
        }
        roles
    }

    /// May `user` use `name` in `channel` (`None`: no channel, like a modal submission)?
    /// Gates first (they hold whatever the role), then roles.
    pub fn decide(
        &self,
        dynamic: &Dynamic,
        user: &str,
        channel: Option<&str>,
        name: &str,
    ) -> Decision {
        for gate in &self.gates {
            if !gate.actions.iter().any(|p| matches(p, name)) {
                continue;
            }
            if channel.is_some_and(|c| gate.channels.iter().any(|g| g == c)) {
                continue;
            }
            let places: Vec<String> = gate.channels.iter().map(|c| format!("<#{c}>")).collect();
            let reason = format!("`{name}` works only in {}", places.join(" or "));
            return match gate.elsewhere {
                Elsewhere::Refuse => Decision::Refuse(reason),
                Elsewhere::Ignore => Decision::Ignore(reason),
            };
        }
        let roles = self.roles_of(dynamic, user);
        let allowed = roles.iter().any(|role| {
            self.roles
                .get(role)
                .is_some_and(|patterns| patterns.iter().any(|p| matches(p, name)))
        });
        if allowed {
            return Decision::Allow;
        }
        let had = if roles.is_empty() {
            "you have no role".to_string()
        } else {
            let names: Vec<String> = roles.iter().map(|r| format!("`{r}`")).collect();
            format!("you have {}", names.join(", "))
        };
        Decision::Refuse(format!("`{name}` needs a role that allows it; {had}"))
    }
}

/// The engine's access check: the compiled config (`None`: no `[access]`, nothing checked)
/// and the latest [`Dynamic`], swapped in whole by the refresher so a check only reads memory.
#[derive(Debug, Default)]
pub struct AccessControl {
    policy: Option<Policy>,
    dynamic: RwLock<Arc<Dynamic>>,
    /// Held while a new [`Dynamic`] is read and swapped in, so an older read never replaces
    /// a newer one.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// Wakes the refresher (a binding to a Slack user group not yet resolved, say).
    pub(crate) changed: tokio::sync::Notify,
}

impl AccessControl {
    pub fn new(config: Option<&AccessConfig>) -> Self {
        Self {
            policy: config.map(Policy::new),
            ..Self::default()
        }
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// The runtime part as last refreshed.
    pub fn dynamic(&self) -> Arc<Dynamic> {
        // A poisoned lock still holds a whole value (it is only ever swapped).
        match self.dynamic.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_dynamic(&self, dynamic: Dynamic) {
        let mut slot = match self.dynamic.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(dynamic);
    }

    /// The decision for `name` by `user` in `channel`; everything is allowed without `[access]`.
    pub fn decide(&self, user: &str, channel: Option<&str>, name: &str) -> Decision {
        match &self.policy {
            None => Decision::Allow,
            Some(policy) => policy.decide(&self.dynamic(), user, channel, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmdb() -> AccessConfig {
        toml::from_str(
            r#"
default_role = "viewer"
[roles]
admin    = ["*"]
operator = ["*.status", "*.search", "*.report", "alerts.ack", "alerts.comment", "alerts.assign"]
viewer   = ["*.status", "*.search", "*.view", "ping"]
[groups]
oncall = ["U0AAA", "usergroup:S0123"]
[bind]
admin = ["U0ADMIN"]
operator = ["group:oncall", "group:night"]
[[gates]]
actions = ["machines.enable", "machines.disable"]
channels = ["C0CONTROL"]
[[gates]]
actions = ["incidents.*"]
channels = ["C0INC1", "C0INC2"]
elsewhere = "ignore"
"#,
        )
        .unwrap()
    }

    #[test]
    fn patterns_match_with_wildcards() {
        assert!(matches("*", "anything.at.all"));
        assert!(matches("*.status", "machines.status"));
        assert!(!matches("*.status", "machines.statuses"));
        assert!(matches("alerts.*", "alerts.ack"));
        assert!(!matches("alerts.*", "alerts"));
        assert!(matches("a*b*c", "a.x.b.y.c"));
        assert!(!matches("a*b*c", "a.x.b.y"));
        assert!(matches("ping", "ping"));
        assert!(!matches("ping", "ping.x"));
        assert!(matches("**", ""));
    }

    #[test]
    fn the_cmdb_model_in_a_few_lines() {
        let config = cmdb();
        assert!(
            check_config(&config).is_empty(),
            "{:?}",
            check_config(&config)
        );
        let policy = Policy::new(&config);
        let mut dynamic = Dynamic::default();
        dynamic
            .usergroups
            .insert("S0123".into(), HashSet::from(["U0SLACKGRP".to_string()]));
        let d = |user: &str, name: &str| policy.decide(&dynamic, user, Some("C0GEN"), name);
        // admin: everything.
        assert_eq!(d("U0ADMIN", "cmdb.update"), Decision::Allow);
        // operator, directly in the group and through the Slack user group.
        for op in ["U0AAA", "U0SLACKGRP"] {
            assert_eq!(d(op, "alerts.ack"), Decision::Allow, "{op}");
            assert_eq!(d(op, "cmdb.report"), Decision::Allow, "{op}");
            assert_eq!(
                d(op, "cmdb.view"),
                Decision::Refuse(
                    "`cmdb.view` needs a role that allows it; you have `operator`".into()
                ),
                "bound users do not get the default role too"
            );
        }
        // anyone else: the default role.
        assert_eq!(d("U0NOBODY", "ping"), Decision::Allow);
        assert_eq!(d("U0NOBODY", "cmdb.view"), Decision::Allow);
        assert_eq!(
            d("U0NOBODY", "alerts.ack"),
            Decision::Refuse("`alerts.ack` needs a role that allows it; you have `viewer`".into())
        );
    }

    #[test]
    fn no_default_role_means_no_role() {
        let mut config = cmdb();
        config.default_role = None;
        let policy = Policy::new(&config);
        assert_eq!(
            policy.decide(&Dynamic::default(), "U0X", None, "ping"),
            Decision::Refuse("`ping` needs a role that allows it; you have no role".into())
        );
    }

    #[test]
    fn runtime_groups_and_bindings_combine_with_the_config() {
        let policy = Policy::new(&cmdb());
        let mut dynamic = Dynamic::default();
        assert_eq!(
            policy.roles_of(&dynamic, "U0NIGHT"),
            BTreeSet::from(["viewer".to_string()])
        );
        // `night` exists only in the store; the config binds it to operator already.
        dynamic.groups.insert(
            "night".into(),
            BTreeSet::from([Subject::User("U0NIGHT".into())]),
        );
        dynamic
            .bindings
            .push(("admin".into(), Subject::User("U0BOSS".into())));
        // A binding to a role the config no longer has grants nothing.
        dynamic
            .bindings
            .push(("gone".into(), Subject::User("U0GONE".into())));
        // Runtime members join a static group too.
        dynamic.groups.insert(
            "oncall".into(),
            BTreeSet::from([Subject::User("U0NEW".into())]),
        );
        assert_eq!(
            policy.roles_of(&dynamic, "U0NIGHT"),
            BTreeSet::from(["operator".to_string()])
        );
        assert_eq!(
            policy.roles_of(&dynamic, "U0NEW"),
            BTreeSet::from(["operator".to_string()])
        );
        assert_eq!(
            policy.roles_of(&dynamic, "U0BOSS"),
            BTreeSet::from(["admin".to_string()])
        );
        assert_eq!(
            policy.roles_of(&dynamic, "U0GONE"),
            BTreeSet::from(["viewer".to_string()])
        );
        assert_eq!(
            policy.usergroups(&dynamic),
            BTreeSet::from(["S0123".to_string()])
        );
    }

    #[test]
    fn gates_hold_whatever_the_role() {
        let policy = Policy::new(&cmdb());
        let dynamic = Dynamic::default();
        assert_eq!(
            policy.decide(&dynamic, "U0ADMIN", Some("C0GEN"), "machines.enable"),
            Decision::Refuse("`machines.enable` works only in <#C0CONTROL>".into())
        );
        assert_eq!(
            policy.decide(&dynamic, "U0ADMIN", Some("C0CONTROL"), "machines.enable"),
            Decision::Allow
        );
        // In the gate's channel the role still decides.
        assert!(matches!(
            policy.decide(&dynamic, "U0VIEW", Some("C0CONTROL"), "machines.enable"),
            Decision::Refuse(r) if r.contains("needs a role")
        ));
        assert_eq!(
            policy.decide(&dynamic, "U0ADMIN", None, "incidents.resolve"),
            Decision::Ignore("`incidents.resolve` works only in <#C0INC1> or <#C0INC2>".into())
        );
        assert_eq!(
            policy.decide(&dynamic, "U0ADMIN", Some("C0INC2"), "incidents.resolve"),
            Decision::Allow
        );
    }

    #[test]
    fn without_access_everything_is_allowed() {
        assert_eq!(
            AccessControl::new(None).decide("U0X", None, "machines.enable"),
            Decision::Allow
        );
    }

    #[test]
    fn config_errors_name_their_keys() {
        let config: AccessConfig = toml::from_str(
            r##"
default_role = "guest"
[roles]
admin = ["*"]
"Bad Role" = ["x"]
viewer = ["ok", "not ok", ""]
[groups]
oncall = ["U0AAA", "group:nested", "alice"]
[bind]
admin = ["U0ADMIN", "usergroup:oncall"]
root = ["U0ROOT"]
[[gates]]
actions = []
channels = ["#control"]
"##,
        )
        .unwrap();
        let keys: Vec<String> = check_config(&config).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "roles.Bad Role",
                "roles.viewer[1]",
                "roles.viewer[2]",
                "default_role",
                "groups.oncall[1]",
                "groups.oncall[2]",
                "bind.admin[1]",
                "bind.root",
                "gates[0].actions",
                "gates[0].channels[0]",
            ]
        );
    }

    #[test]
    fn subjects_read_and_show_the_same() {
        for text in ["U0ADMIN", "W012", "group:oncall", "usergroup:S0123"] {
            assert_eq!(Subject::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "alice",
            "u0admin",
            "group:",
            "group:Bad",
            "usergroup:X1",
            "S0123",
        ] {
            assert!(Subject::parse(bad).is_err(), "{bad}");
        }
        assert!(Subject::parse_member("group:x").is_err());
    }

    fn declaration() -> Declaration {
        Declaration {
            name: "machines",
            subcommands: vec!["enable", "disable"],
            action_prefixes: vec!["machines:"],
            view_prefixes: vec!["machines_view"],
            ..Declaration::default()
        }
    }

    #[test]
    fn default_names() {
        let d = declaration();
        let message = crate::app::MessageEvent {
            channel: "C1".into(),
            user: "U1".into(),
            text: String::new(),
            ts: "1.0".into(),
            thread_ts: None,
        };
        let mention = |word: &str| Input::Mention {
            command: word.into(),
            args: vec![],
            message: message.clone(),
        };
        assert_eq!(
            default_name(&d, &mention("status")).unwrap(),
            "machines.status"
        );
        assert_eq!(default_name(&d, &mention("machines")).unwrap(), "machines");
        let command = |text: &str| Input::Command {
            command: "/machines".into(),
            text: text.into(),
            user: "U1".into(),
            channel: "C1".into(),
            response_url: String::new(),
            trigger_id: String::new(),
            raw: serde_json::Value::Null,
        };
        assert_eq!(
            default_name(&d, &command("Enable laser")).unwrap(),
            "machines.enable"
        );
        assert_eq!(default_name(&d, &command("laser")).unwrap(), "machines");
        assert_eq!(default_name(&d, &command("")).unwrap(), "machines");
        let action = |id: &str| Input::Action {
            action_id: id.into(),
            value: None,
            user: "U1".into(),
            channel: None,
            message_ts: None,
            response_url: None,
            trigger_id: None,
            raw: serde_json::Value::Null,
        };
        assert_eq!(
            default_name(&d, &action("machines:disable:laser-1")).unwrap(),
            "machines.disable"
        );
        let submission = Input::ViewSubmission {
            callback_id: "machines_view".into(),
            user: "U1".into(),
            private_metadata: String::new(),
            values: serde_json::Value::Null,
            raw: serde_json::Value::Null,
        };
        assert_eq!(default_name(&d, &submission).unwrap(), "machines");
        assert_eq!(default_name(&d, &Input::Message { message }), None);
    }
}
