//! The `ipcs-registry` command line (issue 19): durations with units, the
//! old `-ms` spellings as hidden aliases, `IPCS_REGISTRY_*` variables, and
//! the git commit in `--version`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ipcs-registry");

fn registry(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("ipcs-registry runs");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (status.code(), text(stdout), text(stderr))
}

/// Starts the registry on a free loopback port, without its admin endpoint
/// (the tests run in parallel and would fight over its port, and it would
/// log first), and returns its first log line (which states its settings),
/// then stops it.
fn first_line(args: &[&str], env: &[(&str, &str)]) -> String {
    // Without a key unless the test gives one.
    let insecure: &[&str] = if env.iter().any(|(k, _)| k.ends_with("KEY_FILE")) {
        &[]
    } else {
        &["--insecure-no-auth"]
    };
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--admin", "off"])
        .args(insecure)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ipcs-registry starts");
    let mut line = String::new();
    let _ = BufReader::new(child.stderr.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn version_names_the_commit() {
    let (code, out, _) = registry(&["--version"], &[]);
    assert_eq!(code, Some(0));
    let line = out.trim();
    assert!(
        ipcs_common::cli::version_commit(line, "ipcs-registry", env!("CARGO_PKG_VERSION"))
            .is_some(),
        "{line}"
    );
}

#[test]
fn durations_take_units_and_bad_ones_are_usage_errors() {
    let line = first_line(&["--ttl", "2s"], &[]);
    assert!(line.contains("ttl_ms=2000"), "{line}");
    for (bad, why) in [("20x", "unknown unit"), ("1500", "has no unit")] {
        let (code, _, err) = registry(&["--ttl", bad], &[]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains("--ttl <DURATION>") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn the_old_ms_flags_still_work_but_not_with_the_new_ones() {
    let line = first_line(&["--ttl-ms", "700", "--watch-timeout-ms", "900"], &[]);
    assert!(line.contains("ttl_ms=700"), "{line}");
    let (code, _, err) = registry(&["--ttl", "1s", "--ttl-ms", "700"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn flags_come_from_ipcs_registry_variables() {
    let line = first_line(&[], &[("IPCS_REGISTRY_TTL", "1h")]);
    assert!(line.contains("ttl_ms=3600000"), "{line}");
    let (code, _, err) = registry(&[], &[("IPCS_REGISTRY_TTL", "a while")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("IPCS_REGISTRY_TTL"), "{err}");
}

#[test]
fn a_key_file_is_required_unless_insecure_and_must_hold_a_key() {
    let (code, _, err) = registry(&["--listen", "127.0.0.1:0", "--admin", "off"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--key-file"), "{err}");
    let dir = std::env::temp_dir().join(format!("ipcs-registry-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    let missing = dir.join("missing.key");
    for (path, why) in [(&bad, "64 hex digits"), (&missing, "cannot read key file")] {
        let (code, _, err) = registry(
            &[
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "off",
                "--key-file",
                path.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(why), "{err}");
    }
    // From the environment too, as every flag.
    let good = dir.join("good.key");
    std::fs::write(&good, format!("{}\n", "ab".repeat(32))).unwrap();
    let line = first_line(&[], &[("IPCS_REGISTRY_KEY_FILE", good.to_str().unwrap())]);
    assert!(line.contains("auth=true"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}
