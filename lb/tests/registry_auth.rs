//! The registry's authenticated membership with the real registry, server
//! and load balancer in network namespaces (issue 16). From the bridge (the
//! core namespace, the LB host's own address), an attacker without the key
//! sends registrations for the real server's MAC: without proof, with a
//! wrong key, replayed, and (as a key holder) for an address that is not
//! its own; and opens 1,000 idle connections. Each is refused and counted
//! in the registry's /metrics, the real server stays listed and answers
//! every request, a restarted server registers again, and a new list
//! reader gets its list.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ipcs_common::registry_auth::Key;
use ipcs_common::registry_client::{connect, fetch_list_as, ServerList};
use ipcs_common::registry_proto::{ClientLine, SignedLine};
use ipcs_testbed::Signal;
use support::{assert_all_answered, in_netns, paced_load, root_or_skip, wait_until, Rig};

const IO: Duration = Duration::from_secs(3);

/// Sends one line on a fresh connection and returns the registry's answer.
fn answer_to(registry: SocketAddr, line: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&registry, IO).expect("connect");
    stream.set_read_timeout(Some(IO)).unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = BufReader::new(stream).read_line(&mut answer);
    answer.trim_end().to_owned()
}

fn list(registry: SocketAddr, key: &Key) -> ServerList {
    let mut stream = connect(&registry.to_string(), IO).expect("connect");
    fetch_list_as(&mut stream, Some(key), IO).expect("list")
}

/// `ipcs_registry_refusals_total{reason="<reason>"}` from the registry's
/// /metrics, read inside its namespace.
fn refusals(rig: &Rig, reason: &str) -> u64 {
    let netns = rig.topo.registry().netns.clone();
    let page = in_netns(&netns, || {
        let addr = "127.0.0.1:7072".parse().unwrap();
        ipcs_common::admin_http::get(addr, "/metrics", IO)
            .expect("registry /metrics")
            .1
    });
    let name = format!("ipcs_registry_refusals_total{{reason=\"{reason}\"}}");
    ipcs_common::admin_http::sample(&page, &name).unwrap_or_else(|| panic!("no {name} in\n{page}"))
        as u64
}

#[test]
fn forged_registrations_are_refused_and_the_real_server_keeps_serving() {
    if !root_or_skip(
        "forged_registrations_are_refused_and_the_real_server_keeps_serving",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut rig = Rig::start(1, &[]);
    let registry = rig.topo.registry_addr();
    let key = rig.topo.key().clone();
    let real = list(registry, &key).servers[0];
    let version = list(registry, &key).version;
    let attacker_ip = rig.topo.lb_ip();
    let hello = |ip| ClientLine::Hello {
        id: real.id,
        mac: real.mac,
        ip,
        udp: real.udp,
    };

    // The real server's MAC, claimed from the attacker's own address ...
    // ... without proof,
    let bare = SignedLine::bare(hello(attacker_ip)).to_string();
    assert!(answer_to(registry, &bare).starts_with("ERR proof required"));
    // ... with a wrong key,
    let wrong = Key::from_bytes([0x5a; 32])
        .sign(hello(attacker_ip))
        .to_string();
    assert!(answer_to(registry, &wrong).starts_with("ERR bad proof"));
    // ... with the key but naming the real server's address,
    let elsewhere = key.sign(hello(real.ip)).to_string();
    assert_eq!(
        answer_to(registry, &elsewhere),
        "ERR ip is not the connection's address"
    );
    // ... and that line replayed.
    assert_eq!(answer_to(registry, &elsewhere), "ERR replayed proof");
    // A list request without proof is refused too.
    assert!(answer_to(registry, "LIST").starts_with("ERR proof required"));

    // /metrics shows what the registry's loop last published (it turns
    // at least once a second).
    let counted = [
        ("proof_missing", 2),
        ("proof_bad", 1),
        ("hello_ip_mismatch", 1),
        ("proof_replayed", 1),
    ];
    assert!(
        wait_until(IO, || counted
            .iter()
            .all(|&(reason, n)| refusals(&rig, reason) == n)),
        "refusals: {:?}",
        counted.map(|(reason, _)| (reason, refusals(&rig, reason)))
    );
    let now = list(registry, &key);
    assert_eq!(now.servers, vec![real], "the real server was displaced");
    assert_eq!(now.version, version);

    // 1,000 idle connections from the bridge address ...
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect_timeout(&registry, IO).expect("connect"))
        .collect();
    // ... do not stop a new list reader from the same address,
    assert_eq!(list(registry, &key).servers, vec![real]);
    // ... nor a restarted server from registering, and the LB follows.
    let server = rig.servers[0];
    rig.topo.process(server).signal(Signal::Kill).unwrap();
    assert!(wait_until(Duration::from_secs(5), || rig.listed_servers() == Some(0)));
    rig.servers[0] = rig.topo.start_server(0, &[]).expect("restart server");
    assert!(
        rig.wait_for_servers(1, Duration::from_secs(10)),
        "the restarted server never came back:\n{}",
        rig.topo.logs()
    );
    assert_eq!(list(registry, &key).servers, vec![real]);
    drop(idle);

    // And every request through the LB is answered by the real server.
    let out = paced_load(rig.lb_addr(), 2_000, 2_000, |_| {});
    assert_all_answered(&out, &rig);
}
