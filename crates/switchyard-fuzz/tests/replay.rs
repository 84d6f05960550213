//! CI's short run of every fuzz target (`scripts/fuzz` runs the long, coverage-guided ones):
//! each committed seed, then deterministic mutations of the seeds. A failure prints the input.

/// Mutations per target; `SWITCHYARD_FUZZ_MUTATIONS` raises it for a longer stable run.
fn mutations() -> usize {
    std::env::var("SWITCHYARD_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

macro_rules! replay {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let target = switchyard_fuzz::target(stringify!($name)).expect("a target of that name");
            let ran = switchyard_fuzz::replay(target, mutations());
            println!("{}: {ran} inputs", target.name);
        }
    )*};
}

replay!(
    slack_signature,
    events_api,
    slash_command,
    interaction,
    socket_envelope,
    mention,
    cel_condition,
    alert_template,
    silence,
    alert_payload,
    alertmanager_payload,
    grafana_payload,
    device_api,
    http_api,
    config_file,
);

#[test]
fn every_target_is_replayed() {
    let source = include_str!("replay.rs");
    for target in switchyard_fuzz::TARGETS {
        assert!(
            source.contains(&format!("    {},\n", target.name)),
            "{} has no replay test",
            target.name
        );
    }
}
