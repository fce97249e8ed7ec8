//! Finding the IPCS binaries a topology runs.

use std::path::PathBuf;

/// The path of an IPCS binary (`ipcs-server`, `ipcs-lb`, ...): from
/// `$IPCS_BIN_DIR` if set, else beside the running test executable in
/// cargo's target directory (`target/<profile>/`), else from `$PATH`.
///
/// # Panics
/// When the binary is nowhere, with the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("IPCS_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/test-abc -> target/debug; target/debug/ipcs-netns -> target/debug
        for dir in exe.ancestors().skip(1).take(2) {
            let path = dir.join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let path = dir.join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "binary {name} not found: run `cargo build --workspace --bins` first (or set IPCS_BIN_DIR)"
    );
}
