//! The real `calc` binary in non-interactive use, against a real UDP
//! responder: what a script sees on stdout and stderr, and exit codes.

mod support;

use std::time::Duration;

use ipcs_common::wire::Status;
use support::{run_calc, run_calc_env, Responder, Step};

/// No run of calc in these tests may take longer.
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn expressions_as_arguments_print_one_number_a_line() {
    let responder = Responder::answering(3);
    let target = responder.addr().to_string();
    let run = run_calc(&[&target, "50*1337", "500 + 350"], None, LIMIT);
    assert_eq!(run.stdout, "66850\n850\n");
    assert_eq!(run.stderr, "");
    assert_eq!(run.code(), 0);
}

#[test]
fn show_server_both_ways() {
    let responder = Responder::answering(3);
    let target = responder.addr().to_string();
    for (flag, want) in [
        ("--show-server", "66850  (server 3)\n"),
        ("--show-server=true", "66850  (server 3)\n"),
        ("--show-server=false", "66850\n"),
        ("--hide-server", "66850\n"),
    ] {
        let run = run_calc(&[&target, "50*1337", flag], None, LIMIT);
        assert_eq!(run.stdout, want, "{flag}");
        assert_eq!(run.code(), 0, "{flag}");
        let run = run_calc(&[flag, &target], Some("50*1337\n"), LIMIT);
        assert_eq!(run.stdout, want, "{flag}, piped");
    }
    let run = run_calc(&[&target, "--show-server", "--hide-server"], None, LIMIT);
    assert_eq!(run.code(), 2, "contradictory flags are a usage error");
}

#[test]
fn piped_lines_print_one_number_a_line() {
    let responder = Responder::answering(1);
    let target = responder.addr().to_string();
    let run = run_calc(&[&target], Some("1+2\n3*4\n\n  10 + 20  \r\n7*6"), LIMIT);
    assert_eq!(run.stdout, "3\n12\n30\n42\n");
    assert_eq!(run.stderr, "");
    assert_eq!(run.code(), 0);
    assert_eq!(responder.received().len(), 4);
}

#[test]
fn rejected_lines_are_explained_never_sent_and_fail_the_run() {
    let responder = Responder::answering(1);
    let target = responder.addr().to_string();
    let input = "1+2\n5-3\n4294967296+1\n2*2\n";
    let run = run_calc(&[&target], Some(input), LIMIT);
    assert_eq!(run.stdout, "3\n4\n");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].starts_with("calc: line 2: 5-3: '-' is not a supported operator"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("calc: line 3: 4294967296+1: 4294967296 is larger than 4294967295"),
        "{}",
        lines[1]
    );
    assert_eq!(run.code(), 1);
    assert_eq!(responder.datagrams(), 2, "only the good lines went out");

    let run = run_calc(&[&target, "6/2", "2*3"], None, LIMIT);
    assert_eq!(run.stdout, "6\n");
    assert!(
        run.stderr
            .starts_with("calc: 6/2: '/' is not a supported operator"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code(), 1);
}

#[test]
fn a_negative_operand_argument_is_explained_not_taken_for_a_flag() {
    let responder = Responder::answering(1);
    let target = responder.addr().to_string();
    let run = run_calc(
        &[&target, "-5+3", "1+2", "-7", "--hide-server"],
        None,
        LIMIT,
    );
    assert_eq!(run.stdout, "3\n");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].starts_with("calc: -5+3: negative numbers are not accepted"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("calc: -7: "), "{}", lines[1]);
    assert_eq!(run.code(), 1);
    assert_eq!(responder.datagrams(), 1, "only 1+2 went out");
    // A negative value of a flag is still the flag's usage error.
    let run = run_calc(&[&target, "--timeout", "-5ms", "1+2"], None, LIMIT);
    assert_eq!(run.code(), 2, "{}", run.stderr);
}

#[test]
fn error_replies_are_words_on_stderr() {
    let responder = Responder::start(1, vec![], Step::error(Status::NoServer));
    let target = responder.addr().to_string();
    let run = run_calc(&[&target, "1+2"], None, LIMIT);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "calc: 1+2: no server is available right now\n");
    assert_eq!(run.code(), 1);
}

#[test]
fn a_dropped_request_is_retried() {
    let responder = Responder::start(1, vec![Step::Drop], Step::ANSWER);
    let target = responder.addr().to_string();
    let run = run_calc(&[&target, "--timeout", "100ms", "1+2"], None, LIMIT);
    assert_eq!(run.stdout, "3\n");
    assert_eq!(run.code(), 0);
    assert_eq!(responder.received().len(), 2);
}

#[test]
fn no_answer_after_the_attempts_never_hangs() {
    let responder = Responder::silent();
    let target = responder.addr().to_string();
    let args = [&target, "--timeout", "100ms", "--attempts", "2", "1+2"];
    let run = run_calc(&args, None, LIMIT);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!("calc: 1+2: no answer from {target} after 2 attempts\n")
    );
    assert_eq!(run.code(), 1);
    assert_eq!(responder.received().len(), 2);
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[test]
fn replies_from_elsewhere_do_not_count() {
    let responder = Responder::start(1, vec![], Step::Elsewhere);
    let target = responder.addr().to_string();
    let args = [&target, "--timeout", "100ms", "--attempts", "1", "1+2"];
    let run = run_calc(&args, None, LIMIT);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("no answer from"), "{}", run.stderr);
    assert_eq!(run.code(), 1);
}

#[test]
fn a_hostname_is_resolved_through_etc_hosts() {
    let responder = Responder::answering(2);
    let target = format!("localhost:{}", responder.addr().port());
    let run = run_calc(&[&target, "--show-server", "50*1337"], None, LIMIT);
    assert_eq!(run.stdout, "66850  (server 2)\n");
    assert_eq!(run.code(), 0);
}

#[test]
fn bad_targets_are_explained_with_exit_2() {
    let run = run_calc(&["no-such-host.invalid:8080", "1+2"], None, LIMIT);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr
            .starts_with("calc: cannot resolve 'no-such-host.invalid': "),
        "{}",
        run.stderr
    );
    let run = run_calc(&["calc.batata", "1+2"], None, LIMIT);
    assert_eq!(run.code(), 2);
    assert!(run.stderr.contains("is not HOST:PORT"), "{}", run.stderr);
    let run = run_calc(&["50*1337"], None, LIMIT);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr.contains("give the target first"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["127.0.0.1:9", "--attempts", "0", "1+2"][..],
        &["127.0.0.1:9", "--timeout", "0", "1+2"],
        &["127.0.0.1:9", "--timeout", "100", "1+2"],
        &["127.0.0.1:9", "--timeout", "2m", "1+2"],
        &[
            "127.0.0.1:9",
            "--timeout",
            "1s",
            "--timeout-ms",
            "100",
            "1+2",
        ],
        &["127.0.0.1:9", "--show-server=maybe", "1+2"],
        &["127.0.0.1:9", "--bogus"],
    ] {
        let run = run_calc(args, None, LIMIT);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error:"), "{}", run.stderr);
    }
}

#[test]
fn help_explains_every_flag() {
    let run = run_calc(&["--help"], None, LIMIT);
    assert_eq!(run.code(), 0);
    for needle in [
        "HOST:PORT",
        "[default: calc.batata:8080]",
        "--timeout <DURATION>",
        "[default: 1s]",
        "[env: IPCS_CALC_TIMEOUT=]",
        "--attempts <N>",
        "[default: 3]",
        "--show-server[=<BOOL>]",
        "--hide-server",
        "Exit status",
    ] {
        assert!(run.stdout.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn the_old_timeout_ms_flag_still_works() {
    let responder = Responder::start(1, vec![Step::Drop], Step::ANSWER);
    let target = responder.addr().to_string();
    let run = run_calc(&[&target, "--timeout-ms", "100", "1+2"], None, LIMIT);
    assert_eq!(run.stdout, "3\n", "{}", run.stderr);
    assert_eq!(run.code(), 0);
    assert_eq!(responder.received().len(), 2);
}

#[test]
fn flags_come_from_ipcs_calc_variables() {
    // A valid one is used: one attempt of 100ms, then "no answer".
    let responder = Responder::silent();
    let target = responder.addr().to_string();
    let env = [("IPCS_CALC_TIMEOUT", "100ms"), ("IPCS_CALC_ATTEMPTS", "1")];
    let run = run_calc_env(&[&target, "1+2"], &env, None, LIMIT);
    assert!(run.stderr.contains("after 1 attempt"), "{}", run.stderr);
    assert_eq!(run.code(), 1);
    assert_eq!(responder.received().len(), 1);
    // A bad one is a usage error that names the variable.
    let env = [("IPCS_CALC_TIMEOUT", "20parsecs")];
    let run = run_calc_env(&[&target, "1+2"], &env, None, LIMIT);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("unknown unit"), "{}", run.stderr);
    assert!(run.stderr.contains("IPCS_CALC_TIMEOUT"), "{}", run.stderr);
    // The command line wins over the environment.
    let env = [("IPCS_CALC_TIMEOUT", "20parsecs")];
    let args = [&target, "--timeout", "100ms", "--attempts", "1", "1+2"];
    let run = run_calc_env(&args, &env, None, LIMIT);
    assert_eq!(run.code(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("after 1 attempt"), "{}", run.stderr);
}

#[test]
fn version_names_the_commit() {
    let run = run_calc(&["--version"], None, LIMIT);
    assert_eq!(run.code(), 0);
    // `calc 0.1.0 (abc1234)`: a short hash, or `unknown` outside git.
    assert!(
        ipcs_common::cli::version_commit(&run.stdout, "calc", env!("CARGO_PKG_VERSION")).is_some(),
        "{}",
        run.stdout
    );
}
