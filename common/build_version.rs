// The one implementation of the git commit in `--version`, shared by the
// build scripts of the five binary crates (each `build.rs` includes this
// file and calls `emit_git_commit()`). Sets `IPCS_GIT_COMMIT` to the short
// hash of HEAD (`unknown` outside a git checkout, or without git) and asks
// cargo to run the script again when HEAD, the branch it points to or the
// packed refs change.

fn emit_git_commit() {
    use std::path::Path;
    use std::process::Command;

    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    let commit = git(&["rev-parse", "--short=7", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=IPCS_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        let path = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]);
        // A path that does not exist would make cargo rerun every build.
        if let Some(path) = path.filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
