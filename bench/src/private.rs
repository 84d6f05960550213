//! Both bench binaries write `switchyard.toml` with the sandbox's tokens in it; `switchyard`
//! refuses such a config when anyone on the machine can read it, so it is written 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// As `std::fs::write`, the file then readable by its owner only.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
