//! Start-up of the real binary: it refuses to start, with a clear error,
//! when it cannot tell its id (no IPv4 and no --id, or last octet 0) or its
//! interface does not exist; `--help` explains every flag.

mod support;

use std::process::Command;
use std::time::Duration;

use ipcs_testbed::Topology;
use support::{root_or_skip, wait_for_log};

/// Runs the server in server slot 0 after `setup` (ip commands in that
/// namespace) and returns (exit success, log) — it must exit on its own.
fn run_in_server_ns(setup: &[&[&str]], args: &[&str]) -> (bool, String) {
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let ns = topology.server(0).unwrap().netns.clone();
    for cmd in setup {
        let status = Command::new("ip")
            .args(["-n", &ns])
            .args(*cmd)
            .status()
            .expect("run ip");
        assert!(status.success(), "ip -n {ns} {cmd:?}");
    }
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let index = topology
        .spawn(
            "server",
            Some(&ns),
            &ipcs_testbed::binary("ipcs-server"),
            &args,
        )
        .unwrap();
    let status = topology
        .process_mut(index)
        .wait_timeout(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("server should refuse to start:\n{}", topology.logs()));
    (status.success(), topology.process(index).log())
}

#[test]
fn no_ipv4_and_no_id_is_refused_but_id_is_enough() {
    if !root_or_skip(
        "no_ipv4_and_no_id_is_refused_but_id_is_enough",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let flush: &[&str] = &["addr", "flush", "dev", "eth0"];
    let (ok, log) = run_in_server_ns(&[flush], &["--iface", "eth0", "--registry", "off"]);
    assert!(!ok, "{log}");
    assert!(log.contains("has no IPv4 address"), "{log}");
    assert!(log.contains("pass --id"), "{log}");

    // With --id it serves (standalone: nothing to announce an address to).
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let ns = topology.server(0).unwrap().netns.clone();
    assert!(Command::new("ip")
        .args(["-n", &ns])
        .args(flush)
        .status()
        .unwrap()
        .success());
    let args: Vec<String> = ["--iface", "eth0", "--registry", "off", "--id", "9"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let index = topology
        .spawn(
            "server",
            Some(&ns),
            &ipcs_testbed::binary("ipcs-server"),
            &args,
        )
        .unwrap();
    let line = wait_for_log(
        &topology,
        index,
        "serving backend frames",
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("{}", topology.logs()));
    assert!(line.contains("server 9 on eth0"), "{line}");
    assert!(line.contains("ip=none"), "{line}");
    // SIGINT ends it as cleanly as SIGTERM.
    let process = topology.process_mut(index);
    process.signal(ipcs_testbed::Signal::Int).unwrap();
    let status = process.wait_timeout(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(process.log().contains("final stats"), "{}", process.log());

    // A registry needs an address to announce: refused, and says why.
    let (ok, log) = run_in_server_ns(
        &[flush],
        &[
            "--iface",
            "eth0",
            "--id",
            "9",
            "--registry",
            "10.0.0.1:7070",
        ],
    );
    assert!(!ok, "{log}");
    assert!(log.contains("no IPv4 address to announce"), "{log}");
    assert!(log.contains("--registry off"), "{log}");
}

#[test]
fn last_octet_zero_is_refused() {
    if !root_or_skip(
        "last_octet_zero_is_refused",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let (ok, log) = run_in_server_ns(
        &[
            &["addr", "flush", "dev", "eth0"],
            &["addr", "add", "10.1.1.0/23", "dev", "eth0"],
        ],
        &["--iface", "eth0", "--registry", "off"],
    );
    assert!(!ok, "{log}");
    assert!(log.contains("last octet of 10.1.1.0"), "{log}");
    assert!(log.contains("pass --id"), "{log}");
}

#[test]
fn unknown_interface_is_a_clear_error() {
    let output = Command::new(ipcs_testbed::binary("ipcs-server"))
        .args(["--iface", "ipcs-nosuch0", "--registry", "off"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ipcs-nosuch0"), "{stderr}");
}

#[test]
fn bad_id_is_refused_and_help_explains_every_flag() {
    let output = Command::new(ipcs_testbed::binary("ipcs-server"))
        .args(["--id", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--id"));

    let output = Command::new(ipcs_testbed::binary("ipcs-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--iface",
        "--registry",
        "--id",
        "--udp",
        "--beat",
        "--summary-every",
        "--batch",
        "--admin",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(help.contains("[default: eth0]"));
    assert!(help.contains("[default: registry.batata:7070]"));
}
