//! Small helpers shared by the server's integration tests, on top of the
//! project's one topology harness (`ipcs_testbed`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ipcs_common::sys::netns;
use ipcs_testbed::Topology;

/// Whether the test may create namespaces and raw sockets; says why not.
pub fn root_or_skip() -> bool {
    if ipcs_common::sys::is_root() {
        true
    } else {
        eprintln!("skipped: needs root (network namespaces, raw sockets)");
        false
    }
}

/// Starts `ipcs-server` in server slot `slot` with exactly `args` (no
/// registry unless `args` names one) and waits until it serves. Returns
/// the process index.
pub fn start_server(topology: &mut Topology, slot: usize, args: &[&str]) -> usize {
    let netns = topology.server(slot).expect("server slot").netns.clone();
    let label = format!("server{}", Topology::server_id(slot));
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let index = topology
        .spawn(
            &label,
            Some(&netns),
            &ipcs_testbed::binary("ipcs-server"),
            &args,
        )
        .expect("spawn server");
    wait_for_log(
        topology,
        index,
        "serving backend frames",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("server did not start:\n{}", topology.logs()));
    index
}

/// Waits up to `within` for a line containing `needle` in process
/// `index`'s log; returns the line.
pub fn wait_for_log(
    topology: &Topology,
    index: usize,
    needle: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let log = topology.process(index).log();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `work` on a thread inside namespace `ns` and returns its result
/// (the caller's thread stays where it is).
pub fn in_netns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        netns::enter_for_thread(&ns).expect("enter namespace");
        work()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// SIGTERMs process `index`, asserts it exits cleanly within 5 s, and
/// returns its final stats line.
pub fn terminate_for_stats(topology: &mut Topology, index: usize) -> String {
    let process = topology.process_mut(index);
    process
        .signal(ipcs_testbed::Signal::Term)
        .expect("send SIGTERM");
    let status = process
        .wait_timeout(Duration::from_secs(5))
        .expect("exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", process.log());
    wait_for_log(topology, index, "final stats", Duration::from_secs(1))
        .unwrap_or_else(|| panic!("no final stats line:\n{}", topology.process(index).log()))
}

/// Parses `name=value` from a stats line.
pub fn counter(line: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {line:?}"))
}
