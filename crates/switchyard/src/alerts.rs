//! `switchyard alerts test`: the alerts app's dry run (`switchyard_apps::alerts::dry_run`) on a
//! payload file, with the config's `[apps.alerts]`.

use std::process::ExitCode;

use switchyard_apps::alerts::AlertsConfig;
use switchyard_apps::alerts::dry_run::{self, DryRunError, PayloadKind};

use crate::operator::{config_errors, load_checked};
use crate::{AlertsTestArgs, PayloadArg};

pub(crate) fn test(args: &AlertsTestArgs) -> ExitCode {
    let file = args.file.display();
    // Slack's credentials are not needed to see where an alert would go.
    let config = match load_checked(&args.config, true) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return ExitCode::FAILURE;
        }
    };
    let section: AlertsConfig = match config.app_section("alerts") {
        Ok(section) => section,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let webhooks: switchyard_apps::webhooks::WebhooksConfig = match config.app_section("webhooks") {
        Ok(section) => section,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((key, reason)) = switchyard_apps::alerts::unknown_webhooks(&section, &webhooks)
        .into_iter()
        .next()
    {
        eprintln!("{}: apps.alerts.{key}: {reason}", config.source);
        return ExitCode::FAILURE;
    }
    let claims = match switchyard_apps::alert_hook_claims(&config) {
        Ok(claims) => claims,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let body = match std::fs::read_to_string(&args.file) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("{file}: cannot read it: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kind = match args.format {
        PayloadArg::Auto => PayloadKind::detect(&body),
        PayloadArg::Alerts => PayloadKind::Alerts,
        PayloadArg::Alertmanager => PayloadKind::Alertmanager,
        PayloadArg::Grafana => PayloadKind::Grafana,
    };
    let report = match dry_run::explain(&section, &claims, &body, kind, switchyard_engine::now_ms())
    {
        Ok(report) => report,
        Err(DryRunError::Payload(bad)) => {
            eprintln!(
                "{file}: {}: {} (read as {}'s payload{})",
                bad.field,
                bad.reason,
                kind.as_str(),
                if args.format == PayloadArg::Auto {
                    "; --format names another"
                } else {
                    ""
                }
            );
            return ExitCode::FAILURE;
        }
        Err(DryRunError::Render(e)) => {
            eprintln!("{}: apps.alerts.template: {e}", config.source);
            return ExitCode::FAILURE;
        }
    };
    if !section.enabled {
        eprintln!(
            "note: {}: [apps.alerts] is not enabled; this is what it would do if it were",
            config.source
        );
    }
    if args.json {
        println!("{report}");
    } else {
        print!("{}", dry_run::report_text(&report));
    }
    ExitCode::SUCCESS
}
