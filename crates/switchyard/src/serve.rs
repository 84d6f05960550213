//! `switchyard serve` and what a running server answers to: its pid file, SIGHUP (reload),
//! SIGTERM (drain and stop), and `switchyard reload`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use switchyard_engine::config::LogFormat;
use switchyard_engine::{Config, Server, StartOptions};

use crate::operator::{config_errors, load_checked};
use crate::{ReloadArgs, ServeArgs, init_logging};

/// Checks the config first (a server would refuse a broken one anyway), then sends SIGHUP.
pub(crate) fn reload(args: &ReloadArgs) -> Result<ExitCode> {
    let config = match load_checked(&args.config.config, false) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            eprintln!("not reloaded: the server would refuse this config");
            return Ok(ExitCode::FAILURE);
        }
    };
    let pid = match (args.pid, &args.pid_file, &config.server.pid_file) {
        (Some(pid), _, _) => pid,
        (None, Some(file), _) | (None, None, Some(file)) => read_pid(file)?,
        (None, None, None) => bail!(
            "which process? Give --pid or --pid-file, or set [server] pid_file in {}",
            config.source
        ),
    };
    anyhow::ensure!(pid > 0, "{pid} is not a process id");
    // SAFETY: kill(2) with a positive pid and a valid signal number touches no memory of ours.
    let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
    if sent != 0 {
        bail!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    println!("Sent SIGHUP to {pid}: it reloads {}", config.source);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_pid(file: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pid file {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", file.display()))
}

/// Removes the pid file when `serve` ends, however it ends.
pub(crate) struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the pid file {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// SIGHUP: re-read and check the config; apply its `[apps.*]`, or keep the one in force.
pub(crate) fn reload_config(path: &Path, in_force: &mut Config, server: &Server) {
    let next = match load_checked(path, false) {
        Ok(next) => next,
        Err(errors) => {
            for e in &errors {
                tracing::error!(error = %e, "config error");
            }
            tracing::error!(
                errors = errors.len(),
                "reload refused: the config has errors; keeping the one in force"
            );
            return;
        }
    };
    let apps = match switchyard_apps::builtin(&next) {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!(error = %e, "reload refused; keeping the config in force");
            return;
        }
    };
    let restart = in_force.needs_restart(&next);
    if !restart.is_empty() {
        tracing::warn!(keys = %restart.join(", "), "changed, but applied only at the next restart");
    }
    let names: Vec<&str> = apps.iter().map(|a| a.declaration().name).collect();
    server.reload_apps(apps);
    in_force.apps = next.apps;
    tracing::info!(apps = %names.join(","), "config reloaded");
}

pub(crate) async fn serve(args: ServeArgs, log_format: Option<LogFormat>) -> Result<()> {
    let loaded = load_checked(&args.config, false);
    init_logging(
        log_format.unwrap_or_else(|| loaded.as_ref().map(|c| c.log.format).unwrap_or_default()),
    );
    let mut config = match loaded {
        Ok(config) => config,
        Err(errors) => bail!("{}", config_errors(&errors)),
    };
    let apps = switchyard_apps::builtin(&config)?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing a SIGHUP handler")?;
    let options = StartOptions {
        // A test hook, documented in ARCHITECTURE.md: ack and commit, but never handle.
        hold_dispatch: std::env::var("SWITCHYARD_TEST_HOLD_DISPATCH").is_ok_and(|v| v == "1"),
    };
    let server = Server::start(config.clone(), apps, options).await?;
    let _pid_file = config
        .server
        .pid_file
        .as_deref()
        .map(PidFile::write)
        .transpose()?;
    // Read by scripts and tests: keep its shape.
    println!("Switchyard listening on http://{}", server.addr());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => reload_config(&args.config, &mut config, &server),
        }
    }
    tracing::info!("stopping: draining work in flight");
    if !server.shutdown().await {
        tracing::warn!("stopped before all work in flight had finished");
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
