//! What the binary's suites share: a `switchyard serve` process, and where it listens.

// Each suite uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `switchyard serve` process, killed on drop.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from its first line.
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Runs `command` (a `switchyard serve …`) with its stdout piped, once it says where it
    /// listens.
    pub async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("switchyard serve runs");
        let url = listening_url(&mut child).await;
        Self { child, url }
    }
}

/// Reads the first line `switchyard serve` prints (`Switchyard listening on URL`) and returns
/// the URL. The child's stdout must be piped.
pub async fn listening_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader")
    .expect("a line");
    line.trim()
        .strip_prefix("Switchyard listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string()
}
