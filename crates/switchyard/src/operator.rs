//! The operator's commands that read the config: `check-config`, `config show`, `manifest`,
//! `doctor`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use switchyard_engine::config::ProcessEnv;
use switchyard_engine::{CheckOptions, Config, ConfigError};

use crate::{ConfigArgs, ManifestArgs, ManifestFormat, ShowArgs, ShowFormat};

pub(crate) async fn doctor(args: &ConfigArgs) -> Result<ExitCode> {
    let config = match load_checked(&args.config, false) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            println!(
                "FAIL  config: {} has errors (above) — fix: correct them; `switchyard check-config` lists them",
                args.config.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let declarations: Vec<_> = switchyard_apps::builtin(&config)?
        .iter()
        .map(|app| app.declaration())
        .collect();
    let report = switchyard_engine::doctor::run(&config, &declarations).await;
    print!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The config with the built-in apps' sections checked too; every error, one per line.
pub(crate) fn load_checked(
    path: &Path,
    without_credentials: bool,
) -> Result<Config, Vec<ConfigError>> {
    let sections = switchyard_apps::config_sections();
    let options = CheckOptions {
        apps: Some(&sections),
        without_credentials,
    };
    Config::check_file(path, &ProcessEnv, &options)
}

pub(crate) fn config_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ConfigError::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn check_config(args: &ConfigArgs) -> ExitCode {
    match load_checked(&args.config, false) {
        Ok(config) => {
            let transport = if config.slack.socket_mode() {
                "Socket Mode".to_string()
            } else {
                format!("HTTP on {}", config.server.listen)
            };
            let apps = match switchyard_apps::builtin(&config) {
                Ok(apps) => apps
                    .iter()
                    .map(|a| a.declaration().name)
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "{}: ok: {transport}; store {}; apps: {}",
                config.source,
                switchyard_store::redact(&config.store.url),
                if apps.is_empty() { "none" } else { &apps },
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn show_config(args: &ShowArgs) -> Result<ExitCode> {
    let config = match load_checked(&args.config.config, false) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    // Secrets serialize as `[redacted]`, URLs without passwords (see `switchyard_engine::config`).
    let shown = match args.format {
        ShowFormat::Toml => format!(
            "# {}: the effective configuration (file, environment, defaults); secrets redacted\n{}",
            config.source,
            toml::to_string_pretty(&config).context("rendering the config as TOML")?
        ),
        ShowFormat::Json => {
            serde_json::to_string_pretty(&config).context("rendering the config as JSON")? + "\n"
        }
    };
    print!("{shown}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_manifest(args: &ManifestArgs) -> Result<ExitCode> {
    let default_path = Path::new("switchyard.toml");
    let loaded = match &args.config {
        Some(path) => load_checked(path, true),
        None if default_path.exists() => load_checked(default_path, true),
        // No file: the defaults and the environment, as `Config::check` reads an empty file.
        None => {
            let sections = switchyard_apps::config_sections();
            let options = CheckOptions {
                apps: Some(&sections),
                without_credentials: true,
            };
            Config::check("", "(defaults)", &ProcessEnv, &options)
        }
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    let request_base = args
        .request_url
        .as_deref()
        .or(config.server.public_url.as_deref())
        .map(switchyard_engine::manifest::request_base)
        .transpose()?;
    if args.request_url.is_some() && config.slack.socket_mode() {
        eprintln!(
            "note: --request-url is not used: {} has an app token, so the app uses Socket Mode",
            config.source
        );
    }
    let declarations: Vec<_> = switchyard_apps::builtin(&config)?
        .iter()
        .map(|app| app.declaration())
        .collect();
    let manifest =
        switchyard_engine::manifest::manifest(&config, &declarations, request_base.as_deref());
    let text = match args.format {
        ManifestFormat::Json => serde_json::to_string_pretty(&manifest)? + "\n",
        ManifestFormat::Yaml => serde_yaml_ng::to_string(&manifest)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
