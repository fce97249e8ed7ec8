//! The `ipcs-lb` command line (issue 19): durations with units, the old
//! `-ms` spelling as a hidden alias, `IPCS_LB_*` variables, and the git
//! commit in `--version`. Nothing here needs root: a run that gets past
//! the command line stops at the (missing) backend interface.

use std::process::{Command, Output};

const LB: &str = env!("CARGO_BIN_EXE_ipcs-lb");

fn lb(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(LB)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ipcs-lb runs");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (status.code(), text(stdout), text(stderr))
}

/// Flags that get any run past the command line quickly, to the interface.
const NOWHERE: [&str; 8] = [
    "--iface",
    "ipcs-nosuch0",
    "--admin",
    "off",
    "--listen",
    "127.0.0.1:0",
    "--registry",
    "127.0.0.1:9",
];

#[test]
fn version_names_the_commit() {
    let (code, out, _) = lb(&["--version"], &[]);
    assert_eq!(code, Some(0));
    let line = out.trim();
    assert!(
        ipcs_common::cli::version_commit(line, "ipcs-lb", env!("CARGO_PKG_VERSION")).is_some(),
        "{line}"
    );
}

#[test]
fn help_shows_durations_and_variables() {
    let (code, help, _) = lb(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for needle in [
        "--timeout <DURATION>",
        "[default: 20ms]",
        "[env: IPCS_LB_TIMEOUT=]",
        "--eject-cooldown-max <DURATION>",
        "[default: 60s]",
        "--summary-every <DURATION>",
        "[env: IPCS_LB_SUMMARY_EVERY=]",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    // The old names work but are not advertised.
    assert!(!help.contains("--timeout-ms"), "{help}");
    assert!(!help.contains("--summary-secs"), "{help}");
}

#[test]
fn durations_take_units_and_bad_ones_are_usage_errors() {
    let mut args = NOWHERE.to_vec();
    args.extend(["--timeout", "20ms", "--eject-cooldown-max", "1h"]);
    let (code, _, err) = lb(&args, &[]);
    assert_eq!(code, Some(1), "past the command line: {err}");
    assert!(err.contains("ipcs-nosuch0"), "{err}");
    for (bad, why) in [
        ("20parsecs", "unknown unit"),
        ("20", "has no unit"),
        ("2d", "unknown unit"),
    ] {
        let (code, _, err) = lb(&["--timeout", bad], &[]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains("--timeout <DURATION>") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn the_old_ms_and_secs_flags_still_work_but_not_with_the_new_ones() {
    let mut args = NOWHERE.to_vec();
    args.extend(["--timeout-ms", "20", "--summary-secs", "1"]);
    // `none`, the other old spelling of off.
    args[3] = "none";
    let (code, _, err) = lb(&args, &[]);
    assert_eq!(code, Some(1), "the old names parse: {err}");
    assert!(err.contains("ipcs-nosuch0"), "{err}");
    let (code, _, err) = lb(&["--timeout", "1s", "--timeout-ms", "20"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn flags_come_from_ipcs_lb_variables() {
    // A valid one is used: the interface named in the environment.
    let env = [
        ("IPCS_LB_IFACE", "ipcs-envonly0"),
        ("IPCS_LB_ADMIN", "off"),
        ("IPCS_LB_LISTEN", "127.0.0.1:0"),
        ("IPCS_LB_TIMEOUT", "20ms"),
    ];
    let (code, _, err) = lb(&[], &env);
    assert_eq!(code, Some(1));
    assert!(err.contains("ipcs-envonly0"), "{err}");
    // A bad one is a usage error naming the variable.
    let (code, _, err) = lb(&NOWHERE, &[("IPCS_LB_TIMEOUT", "soon")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("IPCS_LB_TIMEOUT"), "{err}");
    // The command line wins.
    let mut args = NOWHERE.to_vec();
    args.extend(["--timeout", "20ms"]);
    let (code, _, err) = lb(&args, &[("IPCS_LB_TIMEOUT", "soon")]);
    assert_eq!(code, Some(1), "{err}");
}
