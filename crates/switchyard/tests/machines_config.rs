//! `[apps.machines]` through the operator's commands: `check-config` names file, key and reason
//! for each of the section's errors; `config show` never shows device tokens.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.current_dir(dir).env("RUST_LOG", "warn").args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SLACK_") || name.starts_with("SWITCHYARD_") {
            command.env_remove(name);
        }
    }
    command.output().expect("switchyard runs")
}

const BAD: &str = r#"
[slack]
bot_token = "xoxb-1"
app_token = "xapp-1"

[apps.machines]
enabled = true
oops_channel = "C2"
slash_command = "oops-clear"
device_token = "very-secret-device-token"

[[apps.machines.machines]]
name = "Laser Cutter"
alias = "laser"
token = "laser-secret-token"

[[apps.machines.machines]]
name = "LASER"

[[apps.machines.machines]]
name = "Lathe"
relay = 2

[[apps.machines.users]]
name = "Alice"
fob_codes = ["1"]
expires = "someday"

[[apps.machines.users]]
name = "Bob"
fob_codes = ["1"]
"#;

#[test]
fn check_config_reports_the_machines_sections_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    common::write_private(&path, BAD).unwrap();
    let file = path.display().to_string();
    let out = run(dir.path(), &["check-config", "--config", &file]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "apps.machines.machines",
        "apps.machines.control_channel",
        "apps.machines.slash_command",
    ] {
        assert!(
            stderr.contains(&format!("{file}: {key}")),
            "{key} in {stderr}"
        );
    }
    assert!(!stderr.contains("very-secret-device-token"), "{stderr}");
}

#[test]
fn check_config_reports_collisions_and_fobs_and_show_hides_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    let good_shape = BAD
        .replace("relay = 2\n", "")
        .replace("slash_command = \"oops-clear\"", "control_channel = \"C1\"");
    common::write_private(&path, &good_shape).unwrap();
    let file = path.display().to_string();
    let out = run(dir.path(), &["check-config", "--config", &file]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "apps.machines.machines[1].name",
        "apps.machines.users[0].expires",
        "apps.machines.users[1].fob_codes",
    ] {
        assert!(
            stderr.contains(&format!("{file}: {key}")),
            "{key} in {stderr}"
        );
    }
    assert!(stderr.contains("collides"), "{stderr}");

    let fine = good_shape
        .replace("name = \"LASER\"", "name = \"Band Saw\"")
        .replace("expires = \"someday\"", "expires = \"2030-01-01\"")
        .replace(
            "name = \"Bob\"\nfob_codes = [\"1\"]",
            "name = \"Bob\"\nfob_codes = [\"2\"]",
        );
    common::write_private(&path, &fine).unwrap();
    let out = run(dir.path(), &["check-config", "--config", &file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(dir.path(), &["config", "show", "--config", &file]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Laser Cutter"), "{shown}");
    assert!(!shown.contains("very-secret-device-token"), "{shown}");
    assert!(!shown.contains("laser-secret-token"), "{shown}");
}

#[test]
fn machines_cli_adds_lists_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    common::write_private(
        &path,
        format!(
            "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n[store]\nurl = \"sqlite://{}\"\n\
             [apps.machines]\nenabled = true\ncontrol_channel = \"C1\"\noops_channel = \"C2\"\n\
             [[apps.machines.machines]]\nname = \"Laser Cutter\"\nalias = \"laser\"\ntoken = \"laser-secret-token\"\n",
            dir.path().join("s.db").display()
        ),
    )
    .unwrap();
    let file = path.display().to_string();
    let machines = |args: &[&str]| {
        let mut all = vec!["machines", "--config", &file];
        all.extend_from_slice(args);
        run(dir.path(), &all)
    };
    let out = machines(&[
        "put",
        "machine",
        "Band Saw",
        r#"{"authorizations_or":["wood"]}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = machines(&["put", "machine", "Planer", r#"{"alias":"Laser"}"#]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("collides"));
    let out = machines(&["list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("Band Saw") && listed.contains("Laser Cutter"),
        "{listed}"
    );
    assert!(!listed.contains("laser-secret-token"), "{listed}");
    assert!(
        machines(&["remove", "machine", "band saw"])
            .status
            .success()
    );
    assert!(
        !machines(&["remove", "machine", "band saw"])
            .status
            .success()
    );
    assert!(
        !machines(&["remove", "machine", "Laser Cutter"])
            .status
            .success()
    );
}
