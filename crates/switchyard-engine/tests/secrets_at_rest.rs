//! Secrets at rest: Slack's secrets read from files only their owner may read
//! (`bot_token_file`, `app_token_file`, `signing_secret_file`), and a config file that anyone
//! on the machine can read named by `config::check_exposure` while it holds secrets written in
//! it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use switchyard_engine::{CheckOptions, Config};

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn write(path: &Path, text: &str, mode: u32) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// A folder anyone may enter, as /etc/switchyard would be.
fn open_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Every error `Config::check_file` (what `serve`, `check-config` and `config show` read the
/// file with) reports.
fn errors(path: &Path, env: &BTreeMap<String, String>) -> Vec<String> {
    match Config::check_file(path, env, &CheckOptions::default()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn secrets_come_from_files_only_their_owner_can_read() {
    let dir = open_folder();
    write(&dir.path().join("bot"), "xoxb-from-a-file\n", 0o600);
    write(&dir.path().join("app"), "xapp-from-a-file", 0o400);
    let config = write(
        &dir.path().join("switchyard.toml"),
        // Relative to the config file's folder.
        "[slack]\nbot_token_file = \"bot\"\napp_token_file = \"app\"\n",
        0o644,
    );
    let loaded = Config::load(&config, &no_env()).expect("loads");
    assert_eq!(loaded.slack.bot_token.expose(), "xoxb-from-a-file");
    assert_eq!(
        loaded.slack.app_token.as_ref().unwrap().expose(),
        "xapp-from-a-file"
    );
    let shown = serde_json::to_string(&loaded).unwrap();
    assert!(!shown.contains("from-a-file"), "{shown}");
}

#[test]
fn a_secrets_file_others_can_read_is_refused_naming_the_file_and_the_fix() {
    let dir = open_folder();
    let secret = write(&dir.path().join("bot"), "xoxb-leaky-token\n", 0o644);
    let config = write(
        &dir.path().join("switchyard.toml"),
        &format!(
            "[slack]\nbot_token_file = \"{}\"\napp_token = \"${{APP}}\"\n",
            secret.display()
        ),
        0o600,
    );
    let env: BTreeMap<String, String> = [("APP".to_string(), "xapp-1".to_string())].into();
    let found = errors(&config, &env);
    assert_eq!(found.len(), 1, "one error, not also 'missing': {found:?}");
    let error = &found[0];
    assert!(
        error.contains("slack.bot_token_file")
            && error.contains(&secret.display().to_string())
            && error.contains("0644")
            && error.contains("chmod 600"),
        "{error}"
    );
    assert!(
        !error.contains("leaky"),
        "the error shows the secret: {error}"
    );

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(
        errors(&config, &env)[0].contains("0640"),
        "group-readable too"
    );

    // Not a file, or a token and its file both: said so.
    let both = write(
        &dir.path().join("both.toml"),
        "[slack]\nbot_token = \"xoxb-1\"\nbot_token_file = \"/dev/null\"\napp_token = \"xapp-1\"\n",
        0o600,
    );
    let found = errors(&both, &no_env());
    assert!(found[0].contains("not both"), "{found:?}");
    let device = write(
        &dir.path().join("device.toml"),
        "[slack]\nbot_token_file = \"/dev/zero\"\napp_token = \"xapp-1\"\n",
        0o600,
    );
    let found = errors(&device, &no_env());
    assert!(found[0].contains("not a regular file"), "{found:?}");
}

#[test]
fn a_world_readable_config_with_secrets_in_it_is_named_with_the_fix() {
    let dir = open_folder();
    let text = "[slack]\nbot_token = \"xoxb-literal-secret\"\nsigning_secret = \"s3cr3t-literal\"\n\
                [store]\nurl = \"postgres://sy:hunter2@db/sy\"\n\
                [apps.machines]\ndevice_token = \"dev-literal\"\n";
    let config = write(&dir.path().join("switchyard.toml"), text, 0o644);
    let found = errors(&config, &no_env());
    assert_eq!(found.len(), 1, "refused, and only for that: {found:?}");
    let error = &found[0];
    assert!(
        error.starts_with(&format!("{}: (file): ", config.display()))
            && error.contains("0644")
            && error.contains("slack.bot_token")
            && error.contains("slack.signing_secret")
            && error.contains("store.url")
            && error.contains("apps.machines.device_token")
            && error.contains("chmod 600")
            && error.contains("SLACK_BOT_TOKEN")
            && error.contains("bot_token_file"),
        "{error}"
    );
    for secret in [
        "xoxb-literal-secret",
        "s3cr3t-literal",
        "hunter2",
        "dev-literal",
    ] {
        assert!(!error.contains(secret), "{error}");
    }

    // What loads the config for the server refuses it too, with the same error.
    let refused = Config::load(&config, &no_env()).unwrap_err().to_string();
    assert_eq!(&refused, error);
    // With the file's other errors, it comes first and they are all still there.
    let broken = write(
        &dir.path().join("broken.toml"),
        &format!("{text}[server]\nlisten = \"everywhere\"\n"),
        0o644,
    );
    let found = errors(&broken, &no_env());
    assert!(
        found.len() == 2 && found[0].contains("chmod 600") && found[1].contains("server.listen"),
        "{found:?}"
    );

    // Private, or secrets from the environment: fine.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(errors(&config, &no_env()).is_empty(), "a 0600 file is fine");
    let from_env = write(
        &dir.path().join("env.toml"),
        "[slack]\nbot_token = \"${BOT}\"\nsigning_secret = \"${SIGNING}\"\n",
        0o644,
    );
    let env: BTreeMap<String, String> = [
        ("BOT".to_string(), "xoxb-env".to_string()),
        ("SIGNING".to_string(), "s".to_string()),
    ]
    .into();
    assert!(Config::load(&from_env, &env).is_ok());

    // A readable file in a folder only its owner may enter is not readable by others.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let inside = write(&private.path().join("switchyard.toml"), text, 0o644);
    assert!(
        errors(&inside, &no_env()).is_empty(),
        "a private folder keeps it private"
    );
}
