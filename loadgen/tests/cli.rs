//! The `loadgen` binary as a person or a script uses it: flags, JSON,
//! `.hgrm`, exit status, SIGINT.

use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipcs_loadgen::responder::{Faults, Responder, ResponderConfig};
use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn responder(faults: Faults) -> Responder {
    let mut cfg = ResponderConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.faults = faults;
    cfg.server_ids = 2;
    Responder::spawn(cfg).unwrap()
}

fn loadgen(args: &[&str]) -> Output {
    let out = Command::new(LOADGEN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("loadgen runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn help_explains_every_flag_with_defaults() {
    let out = loadgen(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--rps",
        "--duration",
        "--warmup",
        "--timeout",
        "--sockets",
        "--threads",
        "--mix",
        "--batch",
        "--quiet",
        "--json",
        "--hgrm",
        "--find-max",
        "--p99-max",
        "--min-answered",
        "--start-rps",
        "--step-factor",
        "--step-rps",
        "--step-duration",
        "--max-rps",
        "--refine",
        "--seed",
        "--require-clean",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    for default in [
        "[default: 10s]",
        "[default: 1s]",
        "[default: 4]",
        "[default: 1ms]",
        "[default: add=1,mul=1]",
    ] {
        assert!(help.contains(default), "{default} missing from --help");
    }
}

#[test]
fn json_report_has_the_stable_keys_and_hgrm_is_written() {
    let _guard = exclusive();
    let target = responder(Faults::default());
    let dir = std::env::temp_dir().join(format!("loadgen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hgrm = dir.join("latency.hgrm");
    let addr = target.addr().to_string();
    let out = loadgen(&[
        "--rps",
        "5000",
        "--duration",
        "500ms",
        "--json",
        "--quiet",
        "--mix",
        "add=3,mul=1",
        "--hgrm",
        hgrm.to_str().unwrap(),
        &addr,
    ]);
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    for key in [
        "offered_rps",
        "achieved_rps",
        "sent",
        "answered",
        "lost",
        "wrong",
        "errors",
        "latency_us",
        "per_server",
    ] {
        assert!(v.get(key).is_some(), "key {key} missing: {v}");
    }
    for p in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(v["latency_us"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(v["offered_rps"], 5000.0);
    assert_eq!(v["answered"], 2500);
    assert_eq!(v["wrong"], 0);
    assert_eq!(v["mix"], "add=3,mul=1");
    assert_eq!(
        v["per_server"]["1"].as_u64().unwrap() + v["per_server"]["2"].as_u64().unwrap(),
        2500
    );
    assert!(v.get("find_max").is_none());
    let table = std::fs::read_to_string(&hgrm).unwrap();
    assert!(table.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(table.contains("Total count    =         2500]"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_replies_make_the_exit_status_non_zero() {
    let _guard = exclusive();
    let target = responder(Faults {
        wrong_one_in: 100,
        ..Faults::default()
    });
    let addr = target.addr().to_string();
    let out = loadgen(&[
        "--rps",
        "2000",
        "--duration",
        "500ms",
        "--timeout",
        "200ms",
        "-q",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("FAILED: the target sent wrong replies"),
        "{text}"
    );
}

#[test]
fn require_clean_exits_4_on_a_lost_request_and_0_on_a_clean_run() {
    let _guard = exclusive();
    let run = |target: &Responder| {
        let addr = target.addr().to_string();
        loadgen(&[
            "--rps",
            "2000",
            "--duration",
            "500ms",
            "--timeout",
            "200ms",
            "--json",
            "-q",
            "--require-clean",
            &addr,
        ])
    };
    let clean = run(&responder(Faults::default()));
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    assert_eq!(json(&clean)["lost"], 0);

    let lossy = run(&responder(Faults {
        drop_one_in: 50,
        ..Faults::default()
    }));
    assert_eq!(lossy.status.code(), Some(4), "{lossy:?}");
    let report = json(&lossy);
    assert!(report["lost"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["wrong"], 0);

    // Wrong replies keep their own status, 3, under --require-clean too.
    let wrong = run(&responder(Faults {
        wrong_one_in: 100,
        ..Faults::default()
    }));
    assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
}

#[test]
fn bad_targets_and_arguments_are_refused_clearly() {
    let out = loadgen(&["no-such-host.invalid:8080", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot resolve `no-such-host.invalid:8080`")
    );
    let out = loadgen(&["127.0.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not HOST:PORT"));
    for args in [
        &["--rps", "0", "127.0.0.1:9"][..],
        &["--mix", "div=1", "127.0.0.1:9"],
        &["--duration", "soon", "127.0.0.1:9"],
        &["--step-factor", "2", "--step-rps", "5", "127.0.0.1:9"],
    ] {
        let out = loadgen(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let out = loadgen(&["--threads", "5", "--sockets", "4", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--threads (5) cannot exceed --sockets (4)")
    );
}

#[test]
fn sigint_stops_early_and_still_reports() {
    let _guard = exclusive();
    let target = responder(Faults::default());
    let child = Command::new(LOADGEN)
        .args(["--rps", "2000", "--duration", "30s", "--json", "-q"])
        .arg(target.addr().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not stop promptly"
    );
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    assert_eq!(v["interrupted"], true);
    let secs = v["duration_s"].as_f64().unwrap();
    assert!((0.4..2.0).contains(&secs), "{secs}");
    let answered = v["answered"].as_u64().unwrap();
    assert!(answered > 500, "{v}");
    assert_eq!(v["lost"], 0, "{v}");
    assert_eq!(v["scheduled"].as_u64().unwrap(), answered);
}

#[test]
fn a_stall_of_loadgen_itself_shows_in_the_latency() {
    let _guard = exclusive();
    let target = responder(Faults::default());
    let child = Command::new(LOADGEN)
        .args(["--rps", "5000", "--duration", "1500ms", "--json", "-q"])
        .arg(target.addr().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };
    // Freeze the whole generator for 200 ms in mid-run: requests due
    // meanwhile leave late, and their latency counts from their schedule.
    std::thread::sleep(Duration::from_millis(500));
    signal("-STOP");
    std::thread::sleep(Duration::from_millis(200));
    signal("-CONT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    let p99 = v["latency_us"]["p99"].as_f64().unwrap();
    let lag = v["send_lag_us"]["max"].as_f64().unwrap();
    assert!(p99 >= 100_000.0, "p99 {p99} µs hides the stall: {v}");
    assert!(lag >= 150_000.0, "send lag {lag} µs: {v}");
    assert_eq!(v["answered"], v["scheduled"], "{v}");
}

fn loadgen_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(LOADGEN)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("loadgen runs");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn short_flags_and_ipcs_loadgen_variables() {
    let _guard = exclusive();
    let target = responder(Faults::default());
    let addr = target.addr().to_string();
    // -r, -d, -c and -t as in wrk2 and hey; the mix comes from the environment.
    let env = [("IPCS_LOADGEN_MIX", "add=1")];
    let out = loadgen_env(
        &[
            "-r", "4000", "-d", "250ms", "-c", "2", "-t", "2", "--json", "-q", &addr,
        ],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    let v = json(&out);
    assert_eq!(v["offered_rps"], 4000.0);
    assert_eq!(v["answered"], 1000);
    assert_eq!(v["mix"], "add=1,mul=0");
    // A bad value in the environment is a usage error naming the variable.
    let out = loadgen_env(&["-q", &addr], &[("IPCS_LOADGEN_DURATION", "1 fortnight")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IPCS_LOADGEN_DURATION"), "{stderr}");
    // Durations: a unit is needed (only 0 may go without), hours are fine.
    let out = loadgen(&["-d", "10", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no unit"));
    let out = loadgen(&["--timeout", "1h", "--duration", "25h", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most a day"));
    let help = String::from_utf8(loadgen(&["--help"]).stdout).unwrap();
    for needle in [
        "-r, --rps",
        "-d, --duration",
        "-c, --sockets",
        "-t, --threads",
        "[env: IPCS_LOADGEN_RPS=]",
    ] {
        assert!(help.contains(needle), "{needle} missing from --help");
    }
}

#[test]
fn find_max_refuses_rps_and_duration() {
    for args in [
        &["--find-max", "--rps", "5000", "127.0.0.1:9"][..],
        &["--find-max", "-d", "5s", "127.0.0.1:9"],
    ] {
        let out = loadgen(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot be used with"), "{stderr}");
    }
}

#[test]
fn version_names_the_commit() {
    let out = loadgen(&["--version"]);
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        ipcs_common::cli::version_commit(&line, "loadgen", env!("CARGO_PKG_VERSION")).is_some(),
        "{line}"
    );
}
