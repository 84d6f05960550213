//! The commands that change or read the store directly: `token`, `audit`, `access`,
//! `machines`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use switchyard_engine::admin::{
    Actor, create_token, entry_json, format_ms, parse_since, parse_until, revoke_token, token_json,
};
use switchyard_engine::config::ProcessEnv;
use switchyard_engine::{Config, now_ms};
use switchyard_store::{AuditFilter, NewApiToken, Store};

use crate::operator::{config_errors, load_checked};
use crate::{
    AccessArgs, AccessCommand, AuditArgs, GroupCommand, MachinesArgs, MachinesCommand,
    StoreConfigArg, TokenArgs, TokenCommand,
};

pub(crate) async fn open_store(arg: &StoreConfigArg) -> Result<Store> {
    let store_config = Config::load_store(&arg.config, &ProcessEnv)?;
    Ok(Store::connect(&store_config.url).await?)
}

pub(crate) fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), format_ms)
}

pub(crate) async fn machines(args: MachinesArgs) -> Result<ExitCode> {
    use switchyard_apps::machines::{MachinesConfig, catalog};
    let config = match load_checked(&args.config, true) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    let base: MachinesConfig = config.app_section_validated("machines")?;
    let store = Store::connect(&config.store.url).await?;
    store
        .apply_app_migrations("machines", &switchyard_apps::machines::migrations())
        .await?;
    let (kind, name, spec) = match args.command {
        MachinesCommand::List => {
            let cat = catalog::Catalog::load(&base, store.reader()).await?;
            println!("{}", serde_json::to_string_pretty(&cat)?);
            return Ok(ExitCode::SUCCESS);
        }
        MachinesCommand::Put { kind, name, json } => {
            let spec: serde_json::Value =
                serde_json::from_str(&json).context("the entry is not JSON")?;
            (kind, name, Some(spec))
        }
        MachinesCommand::Remove { kind, name } => (kind, name, None),
    };
    let Some(kind) = catalog::Kind::parse(&kind) else {
        bail!("{kind:?}: say `machine` or `user`");
    };
    match catalog::edit_from_cli(&store, &base, kind, &name, spec, now_ms()).await? {
        Ok(()) => {
            println!("Done: {} {name:?}.", kind.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("{reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) async fn token(args: TokenArgs) -> Result<()> {
    let store = open_store(&args.config).await?;
    let now = now_ms();
    match args.command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
        } => {
            let expires_at_ms = match expires {
                Some(text) => {
                    let at = parse_until(&text, now).context("--expires")?;
                    anyhow::ensure!(at > now, "--expires: {text:?} is already past");
                    Some(at)
                }
                None => None,
            };
            let token = NewApiToken {
                name,
                scopes,
                expires_at_ms,
            };
            let created = create_token(&store, &token, &Actor::cli(), now).await?;
            let info = &created.info;
            println!(
                "Created token {} ({}): scopes {}, expires {}.",
                info.id,
                info.name,
                info.scopes.join(" "),
                info.expires_at_ms
                    .map_or_else(|| "never".to_string(), format_ms)
            );
            println!("{}", created.plaintext);
            println!("This is the only time it is shown: store it now.");
        }
        TokenCommand::List { json } => {
            let tokens = store.token_list().await?;
            if json {
                for info in &tokens {
                    println!("{}", token_json(info));
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.scopes.join(" "),
                        format_ms(t.created_at_ms),
                        time_or_dash(t.expires_at_ms),
                        time_or_dash(t.last_used_at_ms),
                        time_or_dash(t.revoked_at_ms),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "NAME",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "REVOKED",
                ],
                &rows,
            );
        }
        TokenCommand::Revoke { token } => {
            let info = revoke_token(&store, &token, &Actor::cli(), now).await?;
            println!("Revoked token {} ({}).", info.id, info.name);
        }
    }
    Ok(())
}

pub(crate) async fn audit(args: AuditArgs) -> Result<()> {
    let store = open_store(&args.config).await?;
    let now = now_ms();
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| parse_since(t, now).with_context(|| format!("--{flag}")))
            .transpose()
    };
    let filter = AuditFilter {
        since_ms: time("since", &args.since)?,
        until_ms: time("until", &args.until)?,
        actor: args.who,
        object: args.object,
        action_prefix: args.action,
        outcome: args
            .outcome
            .as_deref()
            .map(str::parse)
            .transpose()
            .context("--outcome: ok, refused or failed")?,
        limit: args.limit,
        before_id: None,
    };
    let entries = store.audit_query(&filter).await?;
    if args.json {
        for entry in &entries {
            println!("{}", entry_json(entry));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            vec![
                format_ms(r.at_ms),
                format!("{}:{}", r.actor_kind, r.actor),
                r.via.to_string(),
                r.action.clone(),
                r.object.clone(),
                r.outcome.to_string(),
                r.detail.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "TIME", "ACTOR", "VIA", "ACTION", "OBJECT", "OUTCOME", "DETAIL",
        ],
        &rows,
    );
    Ok(())
}

pub(crate) async fn access(args: AccessArgs) -> Result<()> {
    use switchyard_engine::access::Policy;
    use switchyard_engine::admin::{AccessChange, access_json, change_access};
    let access_config = Config::load_access(&args.config.config, &ProcessEnv)
        .map_err(|errors| anyhow::anyhow!(config_errors(&errors)))?;
    let policy = access_config.as_ref().map(Policy::new);
    let store = open_store(&args.config).await?;
    let change = match args.command {
        AccessCommand::Group(GroupCommand::Add { group, member }) => {
            AccessChange::GroupAdd { group, member }
        }
        AccessCommand::Group(GroupCommand::Remove { group, member }) => {
            AccessChange::GroupRemove { group, member }
        }
        AccessCommand::Bind { role, subject } => AccessChange::Bind { role, subject },
        AccessCommand::Unbind { role, subject } => AccessChange::Unbind { role, subject },
        AccessCommand::Group(GroupCommand::List { json }) => {
            let members = store.access_group_members().await?;
            let listed = access_json(policy.as_ref(), &members, &[]);
            let groups = listed["groups"].as_array().cloned().unwrap_or_default();
            if json {
                for g in &groups {
                    println!("{g}");
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    ["group", "member", "source"]
                        .map(|k| text_of(&g[k]))
                        .to_vec()
                })
                .collect();
            print_table(&["GROUP", "MEMBER", "SOURCE"], &rows);
            return Ok(());
        }
        AccessCommand::List { json } => {
            let members = store.access_group_members().await?;
            let bindings = store.access_bindings().await?;
            let listed = access_json(policy.as_ref(), &members, &bindings);
            if json {
                println!("{listed}");
                return Ok(());
            }
            match &access_config {
                None => println!("No [access] section: nothing is checked."),
                Some(c) => println!(
                    "Roles: {}; default role: {}.",
                    listed["roles"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text_of)
                        .collect::<Vec<_>>()
                        .join(", "),
                    c.default_role.as_deref().unwrap_or("none")
                ),
            }
            let rows: Vec<Vec<String>> = listed["bindings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    let mut source = text_of(&b["source"]);
                    if b["role_defined"] == false {
                        source.push_str(" (role not in the config: grants nothing)");
                    }
                    vec![text_of(&b["role"]), text_of(&b["subject"]), source]
                })
                .collect();
            print_table(&["ROLE", "SUBJECT", "SOURCE"], &rows);
            return Ok(());
        }
    };
    let changed = change_access(&store, policy.as_ref(), &change, &Actor::cli(), now_ms()).await?;
    let said = match (&change, changed) {
        (AccessChange::GroupAdd { group, member }, true) => {
            format!("Added {member} to group {group}.")
        }
        (AccessChange::GroupAdd { group, member }, false) => {
            format!("{member} is in group {group} already.")
        }
        (AccessChange::GroupRemove { group, member }, true) => {
            format!("Removed {member} from group {group}.")
        }
        (AccessChange::GroupRemove { group, member }, false) => {
            format!("{member} was not in group {group} (in the store).")
        }
        (AccessChange::Bind { role, subject }, true) => format!("Bound {role} to {subject}."),
        (AccessChange::Bind { role, subject }, false) => {
            format!("{role} is bound to {subject} already.")
        }
        (AccessChange::Unbind { role, subject }, true) => format!("Unbound {role} from {subject}."),
        (AccessChange::Unbind { role, subject }, false) => {
            format!("{role} was not bound to {subject} (in the store).")
        }
    };
    println!("{said}");
    if changed {
        println!("A running Switchyard applies it within 5 seconds.");
    }
    Ok(())
}

pub(crate) fn text_of(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Columns padded to their widest cell; the last one is not padded.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
