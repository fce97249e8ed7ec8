//! The `ipcs-server` command line (issue 19): durations with units, the
//! old spellings as hidden aliases, `IPCS_SERVER_*` variables, and the git
//! commit in `--version`. Nothing here needs root: a run that gets past
//! the command line stops at the (missing) backend interface.

use std::process::{Command, Output};

const SERVER: &str = env!("CARGO_BIN_EXE_ipcs-server");

fn server(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(SERVER)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ipcs-server runs");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (status.code(), text(stdout), text(stderr))
}

#[test]
fn version_names_the_commit() {
    let (code, out, _) = server(&["--version"], &[]);
    assert_eq!(code, Some(0));
    let line = out.trim();
    assert!(
        ipcs_common::cli::version_commit(line, "ipcs-server", env!("CARGO_PKG_VERSION")).is_some(),
        "{line}"
    );
}

#[test]
fn help_shows_durations_off_and_variables() {
    let (code, help, _) = server(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for needle in [
        "--beat <DURATION>",
        "[default: 500ms]",
        "[env: IPCS_SERVER_BEAT=]",
        "--summary-every <DURATION>",
        "[default: 10s]",
        "HOST:PORT|off",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    for old in ["--beat-ms", "--stats-secs", "--no-registry"] {
        assert!(!help.contains(old), "--help shows {old}");
    }
}

#[test]
fn durations_take_units_and_bad_ones_are_usage_errors() {
    let base = ["--iface", "ipcs-nosuch0", "--registry", "off"];
    let (code, _, err) = server(
        &[&base[..], &["--beat", "20ms", "--summary-every", "1h"]].concat(),
        &[],
    );
    assert_eq!(code, Some(1), "past the command line: {err}");
    assert!(err.contains("ipcs-nosuch0"), "{err}");
    for (bad, why) in [
        ("20x", "unknown unit"),
        ("500", "has no unit"),
        ("5ms", "out of range"),
    ] {
        let (code, _, err) = server(&["--beat", bad], &[]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains("--beat <DURATION>") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn the_old_spellings_still_work_but_not_with_the_new_ones() {
    let args = [
        "--iface",
        "ipcs-nosuch0",
        "--no-registry",
        "--beat-ms",
        "50",
        "--stats-secs",
        "2",
    ];
    let (code, _, err) = server(&args, &[]);
    assert_eq!(code, Some(1), "the old names parse: {err}");
    assert!(err.contains("ipcs-nosuch0"), "{err}");
    let (code, _, err) = server(&["--beat", "1s", "--beat-ms", "50"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn flags_come_from_ipcs_server_variables() {
    let env = [
        ("IPCS_SERVER_IFACE", "ipcs-envonly0"),
        ("IPCS_SERVER_REGISTRY", "off"),
        ("IPCS_SERVER_BEAT", "100ms"),
    ];
    let (code, _, err) = server(&[], &env);
    assert_eq!(code, Some(1));
    assert!(err.contains("ipcs-envonly0"), "{err}");
    let (code, _, err) = server(&[], &[("IPCS_SERVER_BEAT", "often")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("IPCS_SERVER_BEAT"), "{err}");
}
