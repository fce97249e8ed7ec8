//! Puts the git commit into `--version` (see common/build_version.rs).

include!("../common/build_version.rs");

fn main() {
    emit_git_commit();
}
