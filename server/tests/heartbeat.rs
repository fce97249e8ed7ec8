//! The server and the real registry (`ipcs-registry`, started by the
//! testbed in its namespace at 172.16.238.100:7070): servers appear in LIST
//! with their id, MAC, IP and UDP port; they keep serving frames while the
//! registry is down and re-register within 2 s of its restart; a SIGTERMed
//! server leaves LIST at once (long before the registry's TTL).
//!
//! Needs the registry binary beside the server's: `cargo build -p
//! ipcs-registry` (deploy/test.sh builds every binary first).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipcs_common::registry_auth::Key;
use ipcs_common::registry_client::{connect, fetch_list_as, ServerList};
use ipcs_common::Op;
use ipcs_testbed::{Signal, Topology};
use support::{in_netns, mac_in, reply, root_or_skip, wait_for_log, wait_serving, Bridge};

/// Long enough that a server leaving LIST quickly cannot be the TTL's doing.
const TTL: &str = "10s";

/// Polls LIST from the core namespace until `done(list)` or `within`
/// passes; returns the last list seen (if any) and when it was fetched.
fn wait_for_list(
    core: &str,
    registry: SocketAddr,
    key: &Key,
    within: Duration,
    done: impl Fn(&ServerList) -> bool + Send + 'static,
) -> (Option<ServerList>, Instant) {
    let key = key.clone();
    in_netns(core, move || {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            // A fresh connection each time: the registry may be restarting.
            if let Ok(mut stream) = connect(&registry.to_string(), Duration::from_millis(200)) {
                if let Ok(list) = fetch_list_as(&mut stream, Some(&key), Duration::from_millis(500))
                {
                    let finished = done(&list);
                    last = Some(list);
                    if finished {
                        return (last, Instant::now());
                    }
                }
            }
            if Instant::now() >= deadline {
                return (last, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

fn ids(list: &ServerList) -> Vec<u8> {
    list.servers.iter().map(|s| s.id).collect()
}

fn start_server(topology: &mut Topology, slot: usize, args: &[&str]) -> usize {
    let index = topology.start_server(slot, args).expect("start server");
    wait_serving(topology, index)
}

#[test]
fn listed_re_registers_after_registry_restart_and_leaves_at_once() {
    if !root_or_skip(
        "listed_re_registers_after_registry_restart_and_leaves_at_once",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(2).build().expect("topology");
    let registry = topology.registry_addr();
    let core = topology.core_netns().unwrap().to_owned();
    let reg = topology.start_registry(&["--ttl", TTL]).unwrap();
    let a = start_server(&mut topology, 0, &["--udp", "0.0.0.0:9000"]);
    start_server(&mut topology, 1, &[]);
    let mac_a = mac_in(&topology.server(0).unwrap().netns);
    let mac_b = mac_in(&topology.server(1).unwrap().netns);

    // Both appear, as they announced themselves.
    let (list, _) = wait_for_list(
        &core,
        registry,
        topology.key(),
        Duration::from_secs(5),
        |l| l.servers.len() == 2,
    );
    let list = list.unwrap_or_else(|| panic!("no LIST answer:\n{}", topology.logs()));
    assert_eq!(ids(&list), [11, 12], "{}", topology.logs());
    let (sa, sb) = (list.servers[0], list.servers[1]);
    assert_eq!(
        (sa.mac, sa.ip, sa.udp),
        (mac_a, Ipv4Addr::new(172, 16, 238, 11), Some(9000))
    );
    assert_eq!(
        (sb.mac, sb.ip, sb.udp),
        (mac_b, Ipv4Addr::new(172, 16, 238, 12), None)
    );

    // The registry dies; the servers keep serving frames meanwhile.
    topology.process(reg).signal(Signal::Kill).unwrap();
    topology
        .process_mut(reg)
        .wait_timeout(Duration::from_secs(5))
        .expect("registry killed");
    in_netns(&core, move || {
        let mut lb = Bridge::open();
        for (i, mac) in [mac_a, mac_b].into_iter().enumerate() {
            for k in 0..5u32 {
                let tag = (i as u64) << 8 | u64::from(k);
                lb.request(mac, tag, k, 10, Op::Mul);
                let got = lb.receive_until(tag, Duration::from_secs(2));
                assert_eq!(
                    got,
                    [reply(lb.mac, mac, tag, u64::from(k) * 10, 11 + i as u8)]
                );
            }
        }
    });
    std::thread::sleep(Duration::from_millis(1000));

    // Restarted, it learns both again within 2 s.
    let restarted = Instant::now();
    topology.start_registry(&["--ttl", TTL]).unwrap();
    let (list, at) = wait_for_list(
        &core,
        registry,
        topology.key(),
        Duration::from_secs(5),
        |l| l.servers.len() == 2,
    );
    let list = list.unwrap_or_else(|| panic!("registry did not answer:\n{}", topology.logs()));
    assert_eq!(ids(&list), [11, 12], "{}", topology.logs());
    let took = at - restarted;
    assert!(
        took <= Duration::from_secs(2),
        "re-registered after {took:?}"
    );
    eprintln!("re-registered {took:?} after the registry restart");

    // SIGTERM: the server closes its registry connection and disappears
    // from LIST at once (the TTL is 10 s); the other stays.
    let process = topology.process_mut(a);
    process.signal(Signal::Term).unwrap();
    let status = process
        .wait_timeout(Duration::from_secs(5))
        .expect("server exits on SIGTERM");
    assert!(status.success(), "{status}");
    let exited = Instant::now();
    let (list, at) = wait_for_list(
        &core,
        registry,
        topology.key(),
        Duration::from_secs(3),
        |l| l.servers.len() == 1,
    );
    assert_eq!(ids(&list.unwrap()), [12]);
    let took = at - exited;
    assert!(
        took < Duration::from_millis(500),
        "left LIST after {took:?}"
    );
    assert!(
        topology.process(reg).log().contains("registry"),
        "registry log"
    );
}

#[test]
fn serves_without_a_registry_and_registers_when_it_comes() {
    if !root_or_skip(
        "serves_without_a_registry_and_registers_when_it_comes",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let registry = topology.registry_addr();
    let core = topology.core_netns().unwrap().to_owned();
    // No registry yet: start-up does not wait for it.
    let server = start_server(&mut topology, 0, &["--beat", "200ms"]);
    let mac = mac_in(&topology.server(0).unwrap().netns);
    in_netns(&core, move || {
        let mut lb = Bridge::open();
        lb.request(mac, 7, 6, 7, Op::Mul);
        let got = lb.receive_until(7, Duration::from_secs(2));
        assert_eq!(got, [reply(lb.mac, mac, 7, 42, 11)]);
    });
    assert!(wait_for_log(&topology, server, "cannot register", Duration::from_secs(3)).is_some());

    let started = Instant::now();
    topology.start_registry(&["--ttl", TTL]).unwrap();
    let (list, at) = wait_for_list(
        &core,
        registry,
        topology.key(),
        Duration::from_secs(5),
        |l| l.servers.len() == 1,
    );
    assert_eq!(ids(&list.expect("registry answers")), [11]);
    let took = at - started;
    assert!(took <= Duration::from_secs(2), "registered after {took:?}");
}
