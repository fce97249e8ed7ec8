//! Hostile and broken clients: binary garbage, a 1 MiB line, a half-sent
//! line then silence, 2,000 idle connections, a client that never reads.
//! Each must be refused or closed while the registry keeps serving a
//! registered server (kept alive by a real `Heartbeat`) and a list reader.

mod support;

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use ipcs_common::registry_client::{fetch_list, Heartbeat, HeartbeatConfig};
use ipcs_common::wire::MacAddr;
use ipcs_registry::Config;
use support::*;

/// A well-behaved server beating every 50 ms, registered before returning.
fn live_server(registry: &TestRegistry, id: u8) -> Heartbeat {
    let heartbeat = Heartbeat::spawn(HeartbeatConfig {
        registry: registry.addr.to_string(),
        id,
        mac: MacAddr([2, 0xaa, 0, 0, 0, id]),
        ip: Ipv4Addr::new(10, 1, 0, id),
        udp: None,
        beat_interval: Duration::from_millis(50),
        key: None,
    });
    assert!(wait_until(IO_TIMEOUT, || heartbeat.is_registered()));
    heartbeat
}

/// The registry still answers and still lists the live server.
fn still_serving(lb: &mut TcpStream, id: u8) {
    let list = fetch_list(lb, IO_TIMEOUT).expect("registry stopped answering");
    assert_eq!(ids(&list), vec![id]);
}

#[test]
fn binary_garbage_is_refused() {
    let registry = TestRegistry::start();
    let _server = live_server(&registry, 1);
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    still_serving(&mut lb, 1);
    let mut rng = fastrand::Rng::with_seed(0x1bc5);
    for round in 0..20 {
        let len = rng.usize(1..2048);
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if round % 2 == 0 {
            garbage.push(b'\n');
        }
        let mut peer = registry.connect();
        // The registry may close before taking it all; that is fine.
        let _ = peer.stream().write_all(&garbage);
        let answer = peer.until_closed();
        assert!(
            answer.is_empty() || answer.starts_with("ERR "),
            "{answer:?}"
        );
        assert!(answer.lines().count() <= 1, "{answer:?}");
    }
    still_serving(&mut lb, 1);
    // Every garbage connection is gone again.
    assert!(wait_until(IO_TIMEOUT, || registry.stat("connections_open") == 3));
}

#[test]
fn megabyte_line_is_cut_off() {
    let registry = TestRegistry::start();
    let _server = live_server(&registry, 2);
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    let line = vec![b'A'; 1 << 20];
    for with_hello_prefix in [false, true] {
        let mut peer = registry.connect();
        let mut stream = peer.stream().try_clone().unwrap();
        let mut payload = Vec::new();
        if with_hello_prefix {
            // A plausible start does not buy more room.
            payload.extend_from_slice(b"HELLO id=1 mac=02:00:00:00:00:01 ip=10.0.0.1 udp=");
        }
        payload.extend_from_slice(&line);
        payload.push(b'\n');
        let writer = std::thread::spawn(move || {
            let _ = stream.write_all(&payload);
        });
        let answer = peer.until_closed();
        assert!(
            answer.is_empty() || answer == "ERR line longer than 256 bytes\n",
            "{answer:?}"
        );
        writer.join().unwrap();
        still_serving(&mut lb, 2);
    }
    assert_eq!(registry.stat("lines_too_long_total"), 2);
}

#[test]
fn half_sent_line_then_silence_is_closed() {
    let registry = TestRegistry::start();
    let _server = live_server(&registry, 3);
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    still_serving(&mut lb, 3);

    // A new connection gets the first-line timeout (300 ms).
    let mut fresh = registry.connect();
    fresh.stream().write_all(b"HELLO id=9 mac=02:").unwrap();
    let start = Instant::now();
    assert_eq!(fresh.until_closed(), "");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(registry.stat("first_line_timeouts_total"), 1);

    // A registered server that stalls mid-line misses its beats and expires.
    let mut stalled = registry.connect();
    assert_eq!(stalled.hello(9, 9), "OK ttl_ms=300");
    stalled.stream().write_all(b"BE").unwrap();
    let start = Instant::now();
    assert_eq!(stalled.until_closed(), "");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(registry.stat("expired_total"), 1);
    still_serving(&mut lb, 3);
}

#[test]
fn two_thousand_idle_connections_are_bounded() {
    let registry = TestRegistry::with(Config {
        max_connections: 500,
        max_pending_per_ip: 8,
        first_line_timeout: Duration::from_secs(3),
        // A slow machine must not expire the server during the burst.
        ttl: Duration::from_secs(3),
        ..test_config()
    });
    let _server = live_server(&registry, 4);
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    still_serving(&mut lb, 4);

    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(TcpStream::connect_timeout(&registry.addr, IO_TIMEOUT).unwrap());
    }
    // Every one is accepted, and each displaces the oldest silent one from
    // the same address beyond the 8 allowed: never more than 2 + 8 open.
    assert!(wait_until(IO_TIMEOUT, || {
        stat_of(&mut lb, "connections_accepted_total") == 2 + 2000
    }));
    assert_eq!(stat_of(&mut lb, "connections_open"), 2 + 8);
    assert_eq!(stat_of(&mut lb, "pending_evicted_total"), 2000 - 8);
    assert_eq!(stat_of(&mut lb, "connections_refused_total"), 0);
    // A displaced connection is told why.
    let mut first = Peer {
        reader: std::io::BufReader::new(idle.swap_remove(0)),
    };
    assert_eq!(
        first.until_closed(),
        "ERR displaced: no valid line yet and too many waiting\n"
    );
    // The established clients never noticed, and a new server registers.
    still_serving(&mut lb, 4);
    let _late = live_server(&registry, 5);
    assert_eq!(ids(&fetch_list(&mut lb, IO_TIMEOUT).unwrap()), vec![4, 5]);
    // The idle ones left are closed after the first-line timeout (one of
    // the 8 made room for the new server's connection).
    assert!(wait_until(Duration::from_secs(6), || stat_of(
        &mut lb,
        "connections_open"
    ) == 3));
    assert_eq!(stat_of(&mut lb, "first_line_timeouts_total"), 7);
    assert_eq!(stat_of(&mut lb, "pending_evicted_total"), 2000 - 7);
    drop(idle);
}

#[test]
fn client_that_never_reads_is_closed() {
    let registry = TestRegistry::with(Config {
        ttl: Duration::from_secs(10),
        ..test_config()
    });
    // Forty registrations make each answer ~1.8 KB.
    let mut servers: Vec<Peer> = (1..=40u8)
        .map(|id| {
            let mut peer = registry.connect();
            assert_eq!(peer.hello(id, u16::from(id)), "OK ttl_ms=10000");
            peer
        })
        .collect();
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    assert_eq!(fetch_list(&mut lb, IO_TIMEOUT).unwrap().servers.len(), 40);

    // Ask for lists forever, read nothing.
    let mut greedy = TcpStream::connect(registry.addr).unwrap();
    greedy.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let requests = b"LIST\n".repeat(1000);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0usize;
    let closed = loop {
        if Instant::now() > deadline {
            break false;
        }
        match greedy.write_all(&requests) {
            Ok(()) => sent += requests.len(),
            Err(_) => break true,
        }
    };
    assert!(
        closed,
        "registry kept a non-reading client after {sent} bytes of requests"
    );
    assert_eq!(stat_of(&mut lb, "output_overflows_total"), 1);
    assert_eq!(fetch_list(&mut lb, IO_TIMEOUT).unwrap().servers.len(), 40);
    // Registered servers were not disturbed.
    servers[0].send("BEAT");
    assert_eq!(stat_of(&mut lb, "servers"), 40);
    servers.clear();
}
