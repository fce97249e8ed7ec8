//! Least privilege, checked on the real binaries in network namespaces:
//! once started, the load balancer and every server run as an ordinary
//! user with no capabilities and no-new-privs, in every thread, and still
//! do their work (the packet sockets were opened before the drop).

mod support;

use std::time::Duration;

use ipcs_common::wire::{Reply, Request, Response};
use ipcs_common::Op;
use support::{root_or_skip, wait_until, Client, Rig};

/// The `Key:\tvalue` fields of one `/proc/.../status` file.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(":\t")))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
}

/// Checks every thread of `pid`; returns how many there were.
fn assert_unprivileged(what: &str, pid: u32) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("{what} (pid {pid}) is gone: {e}"));
    let mut threads = 0;
    for task in tasks {
        let path = task.unwrap().path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue; // a thread that just ended
        };
        let name = field(&status, "Name");
        assert_eq!(
            field(&status, "Uid"),
            "65534\t65534\t65534\t65534",
            "{what} thread {name} uids"
        );
        assert_eq!(
            field(&status, "Gid"),
            "65534\t65534\t65534\t65534",
            "{what} thread {name} gids"
        );
        assert_eq!(
            field(&status, "Groups").trim(),
            "",
            "{what} thread {name} groups"
        );
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(
                field(&status, set),
                "0000000000000000",
                "{what} thread {name} {set}"
            );
        }
        assert_eq!(field(&status, "NoNewPrivs"), "1", "{what} thread {name}");
        threads += 1;
    }
    threads
}

/// The nice value of each `ipcs-lb-w*` thread of `pid`, by name.
fn worker_nice(pid: u32) -> Vec<i64> {
    let mut workers: Vec<(String, i64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // pid (comm) state ...: fields after the ')' start at 3; nice is 19.
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let nice = rest.split_whitespace().nth(19 - 3)?.parse().ok()?;
            name.starts_with("ipcs-lb-w").then_some((name, nice))
        })
        .collect();
    workers.sort();
    workers.into_iter().map(|(_, nice)| nice).collect()
}

#[test]
fn the_load_balancer_and_the_servers_run_without_root_or_capabilities() {
    if !root_or_skip(
        "the_load_balancer_and_the_servers_run_without_root_or_capabilities",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    // Two workers: the drop must reach threads made before it too.
    let mut rig = Rig::start(2, &["--workers", "2"]);
    // Requests answered: the sockets opened as root serve after the drop.
    let client = Client::new(rig.lb_addr());
    for i in 0..20 {
        let request = Request {
            a: i,
            b: 7,
            op: Op::Mul,
        };
        match client.ask(request) {
            Response::Reply(Reply { result, .. }) => assert_eq!(result, request.answer()),
            other => panic!("{request:?}: {other:?}"),
        }
    }
    let lb_pid = rig.topo.process(rig.lb).pid();
    let lb_threads = assert_unprivileged("ipcs-lb", lb_pid);
    assert!(
        lb_threads >= 3,
        "main and two workers at least: {lb_threads}"
    );
    // The workers' priority was set before the drop (lowering it needs
    // root): both run at the default --nice -10.
    assert_eq!(worker_nice(lb_pid), [-10, -10], "nice of ipcs-lb-w0, -w1");
    for (i, server) in rig.servers.iter().enumerate() {
        let pid = rig.topo.process(*server).pid();
        assert_unprivileged(&format!("server {i}"), pid);
    }
    assert!(
        rig.lb_log().contains("privileges dropped"),
        "{}",
        rig.lb_log()
    );
    // Heartbeats (made after the drop) keep both servers listed.
    assert!(wait_until(Duration::from_secs(2), || rig.listed_servers() == Some(2)));
    assert!(rig.lb_running(), "{}", rig.lb_log());
}
