//! Fuzz targets for every parser that meets outside input.
//!
//! Each target is a plain `fn(&[u8])` that panics on a finding (a panic inside our code, a 5xx,
//! a secret in an answer, a mention that got through unescaped). Two drivers run them:
//! - `libfuzzer` (feature of the same name, `src/bin/libfuzzer.rs`): coverage-guided, built by
//!   `scripts/fuzz` with stable Rust's sanitizer-coverage flags — no nightly needed;
//! - [`replay`] (`tests/replay.rs`, part of `cargo test`): each committed seed, then a fixed
//!   number of deterministic mutations of the seeds, for CI's short run.
//!
//! The HTTP targets go through the real routers (`receive::http`, the apps' sync routes, the
//! API) in process, on an engine whose store is a temporary SQLite file; inputs are committed to
//! the inbox as they would be, but never handled (the dispatcher is held), so an input's effect
//! is what the receiver decided and answered.

pub mod harness;
pub mod mutate;
pub mod targets;

use std::path::PathBuf;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// What it feeds, for `scripts/fuzz list`.
    pub what: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "slack_signature",
        what: "POST /slack/events with fuzzed X-Slack-Signature / X-Slack-Request-Timestamp headers and body (valid, stale, re-signed and forged)",
        run: targets::slack_signature,
    },
    Target {
        name: "events_api",
        what: "a correctly signed Events API body to POST /slack/events",
        run: targets::events_api,
    },
    Target {
        name: "slash_command",
        what: "a correctly signed slash-command form to POST /slack/commands",
        run: targets::slash_command,
    },
    Target {
        name: "interaction",
        what: "a correctly signed interactivity payload (JSON in the form's `payload`) to POST /slack/interactions",
        run: targets::interaction,
    },
    Target {
        name: "socket_envelope",
        what: "a Socket Mode text frame: receive::socket::parse_frame, then Engine::receive",
        run: targets::socket_envelope,
    },
    Target {
        name: "mention",
        what: "mention-command argument splitting (mention::parse_mention, split_args)",
        run: targets::mention,
    },
    Target {
        name: "cel_condition",
        what: "an alert rule's CEL condition from config: compiled, then routed over sample alerts",
        run: targets::cel_condition,
    },
    Target {
        name: "alert_template",
        what: "an alert message's minijinja template from config, rendered for a sample alert",
        run: targets::alert_template,
    },
    Target {
        name: "silence",
        what: "label matchers as people write them (matchers::parse) and the `@switchyard silence …` mention (silences::parse_mention); a matcher's text reads back as the same matcher",
        run: targets::silence,
    },
    Target {
        name: "alert_payload",
        what: "our alert JSON (intake::parse_alerts), each alert rendered; no Slack markup gets through",
        run: targets::alert_payload,
    },
    Target {
        name: "alertmanager_payload",
        what: "Alertmanager's v4 webhook (intake::parse_alertmanager), each alert rendered; no Slack markup gets through",
        run: targets::alertmanager_payload,
    },
    Target {
        name: "grafana_payload",
        what: "Grafana's alerting webhook (grafana::parse_grafana), each alert rendered; no Slack markup gets through",
        run: targets::grafana_payload,
    },
    Target {
        name: "device_api",
        what: "a device's update body to POST /api/machine/update (the machines app's sync route)",
        run: targets::device_api,
    },
    Target {
        name: "http_api",
        what: "any request (method, path, headers, body; `$TOKEN` is a valid API token) to the whole router: API, apps' routes, sync routes",
        run: targets::http_api,
    },
    Target {
        name: "config_file",
        what: "switchyard.toml with ${VAR}: Config::check with every app's section, then the apps built; no secret in errors or `config show`",
        run: targets::config_file,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The committed seeds of a target: `crates/switchyard-fuzz/corpus/<name>/`.
pub fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// The seeds of `name`, sorted by file name.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(name))
        .map(|dir| dir.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

/// CI's short run of a target: every seed, then `mutations` deterministic mutations of them.
/// Returns how many inputs ran.
pub fn replay(target: &Target, mutations: usize) -> usize {
    let seeds = seeds(target.name);
    assert!(!seeds.is_empty(), "{}: no seeds in its corpus", target.name);
    let run = |input: &[u8]| {
        if let Err(panic) = std::panic::catch_unwind(|| (target.run)(input)) {
            // The input, to replay it: `scripts/fuzz run TARGET FILE` or a regression test.
            eprintln!(
                "{}: finding on input {:?}",
                target.name,
                String::from_utf8_lossy(input)
            );
            std::panic::resume_unwind(panic);
        }
    };
    for seed in &seeds {
        run(seed);
    }
    let mut mutator = mutate::Mutator::new(0x5eed ^ target.name.len() as u64);
    for _ in 0..mutations {
        run(&mutator.next(&seeds));
    }
    seeds.len() + mutations
}
