//! The registry's membership behaviour over real TCP on loopback: register,
//! list, beat, expiry, removal on close, replacement, duplicate ids, WATCH,
//! versions, the allow list and the table cap.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use ipcs_common::registry_client::{fetch_list, fetch_watch};
use ipcs_registry::Config;
use support::*;

#[test]
fn register_list_and_beat_keep_a_server() {
    let registry = TestRegistry::start();
    let empty = registry.list();
    assert!(empty.servers.is_empty());

    let mut server = registry.connect();
    assert_eq!(server.hello(7, 7), "OK ttl_ms=300");
    let mut lb = registry.connect();
    lb.send("LIST");
    let header = lb.line();
    assert!(header.starts_with("SERVERS version="), "{header}");
    assert!(header.ends_with(" count=1"), "{header}");
    assert_eq!(lb.line(), "7 02:00:00:00:00:07 10.0.0.7 9000");
    assert_eq!(lb.line(), "END");

    // Beats every 100 ms keep it listed for well over two TTLs.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        server.send("BEAT");
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = fetch_list(lb.stream(), IO_TIMEOUT).unwrap();
    assert_eq!(ids(&list), vec![7]);
    assert!(list.version > empty.version);
    assert!(registry.stat("beats_total") >= 7);
}

#[test]
fn silent_server_expires_after_ttl_although_connected() {
    let registry = TestRegistry::start();
    let mut server = registry.connect();
    assert_eq!(server.hello(3, 3), "OK ttl_ms=300");
    let registered_at = Instant::now();
    assert_eq!(ids(&registry.list()), vec![3]);
    // No BEAT: the registry drops it after the TTL and closes the
    // connection (a frozen server must register again).
    let rest = server.until_closed();
    let gone_after = registered_at.elapsed();
    assert_eq!(rest, "");
    assert!(gone_after >= Duration::from_millis(290), "{gone_after:?}");
    assert!(gone_after < Duration::from_millis(1500), "{gone_after:?}");
    assert!(registry.list().servers.is_empty());
    assert_eq!(registry.stat("expired_total"), 1);
    // It comes back by registering again.
    let mut again = registry.connect();
    assert_eq!(again.hello(3, 3), "OK ttl_ms=300");
    assert_eq!(ids(&registry.list()), vec![3]);
}

#[test]
fn closing_the_connection_removes_at_once() {
    let registry = TestRegistry::start();
    let mut server = registry.connect();
    assert_eq!(server.hello(4, 4), "OK ttl_ms=300");
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    let before = fetch_list(&mut lb, IO_TIMEOUT).unwrap();
    assert_eq!(ids(&before), vec![4]);
    let closed_at = Instant::now();
    drop(server);
    // WATCH answers on the change, long before the TTL could have run out.
    let after = fetch_watch(&mut lb, before.version, IO_TIMEOUT).unwrap();
    assert!(
        closed_at.elapsed() < Duration::from_millis(150),
        "{:?}",
        closed_at.elapsed()
    );
    assert!(after.servers.is_empty());
    assert!(after.version > before.version);
}

#[test]
fn re_hello_with_the_same_mac_replaces_and_closes_the_old_connection() {
    let registry = TestRegistry::start();
    let mut old = registry.connect();
    assert_eq!(old.hello(5, 5), "OK ttl_ms=300");
    let v1 = registry.list().version;
    // The restarted server, same MAC, new connection.
    let mut new = registry.connect();
    assert_eq!(new.hello(5, 5), "OK ttl_ms=300");
    assert_eq!(old.until_closed(), "");
    let list = registry.list();
    assert_eq!(ids(&list), vec![5]);
    // Nothing a reader sees changed, so the version did not move.
    assert_eq!(list.version, v1);
    // The new connection owns the registration: beats keep it alive.
    for _ in 0..6 {
        new.send("BEAT");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ids(&registry.list()), vec![5]);
    // Same MAC with a new id replaces too, and that is a change.
    let mut moved = registry.connect();
    assert_eq!(moved.hello(6, 5), "OK ttl_ms=300");
    assert_eq!(new.until_closed(), "");
    let list = registry.list();
    assert_eq!(ids(&list), vec![6]);
    assert!(list.version > v1);
}

#[test]
fn duplicate_id_from_another_mac_is_refused() {
    let registry = TestRegistry::start();
    let mut first = registry.connect();
    assert_eq!(first.hello(9, 1), "OK ttl_ms=300");
    let v = registry.list().version;
    let mut second = registry.connect();
    assert_eq!(second.hello(9, 2), "ERR id taken");
    // A connection whose only line was refused is closed.
    assert_eq!(second.until_closed(), "");
    let list = registry.list();
    assert_eq!(list.servers[0].mac.to_string(), "02:00:00:00:00:01");
    assert_eq!(list.version, v);
    assert_eq!(registry.stat("hello_id_taken_total"), 1);
}

#[test]
fn watch_wakes_on_change_and_times_out_with_the_same_version() {
    let registry = TestRegistry::start();
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    let v0 = fetch_list(&mut lb, IO_TIMEOUT).unwrap().version;

    // A stale version is answered at once.
    let start = Instant::now();
    let same = fetch_watch(&mut lb, v0 - 1, IO_TIMEOUT).unwrap();
    assert_eq!(same.version, v0);
    assert!(start.elapsed() < Duration::from_millis(100));

    // The current version: no change within the watch timeout (300 ms)
    // gives the same version back after it.
    let start = Instant::now();
    let same = fetch_watch(&mut lb, v0, IO_TIMEOUT).unwrap();
    assert_eq!(same.version, v0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );

    // A registration while parked wakes it well before the timeout.
    let addr = registry.addr;
    let registrar = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut server = Peer::connect(addr);
        assert_eq!(server.hello(1, 1), "OK ttl_ms=300");
        server
    });
    let start = Instant::now();
    let changed = fetch_watch(&mut lb, v0, IO_TIMEOUT).unwrap();
    let waited = start.elapsed();
    assert!(changed.version > v0);
    assert_eq!(ids(&changed), vec![1]);
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_millis(280),
        "{waited:?}"
    );
    drop(registrar.join().unwrap());

    // A second WATCH while one is parked is refused, the first still stands.
    let mut raw = registry.connect();
    let current = registry.list().version;
    raw.send(&format!("WATCH {current}"));
    raw.send(&format!("WATCH {current}"));
    assert_eq!(raw.line(), "ERR watch already pending");
    // LIST is answered at once meanwhile, and does not cancel the WATCH.
    let start = Instant::now();
    raw.send("LIST");
    assert_eq!(raw.line(), format!("SERVERS version={current} count=0"));
    assert_eq!(raw.line(), "END");
    assert!(
        start.elapsed() < Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(raw.line(), format!("SERVERS version={current} count=0"));
    assert_eq!(raw.line(), "END");
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn versions_strictly_increase_on_every_change() {
    // A watch timeout well past the TTL, so every WATCH below ends in a change.
    let registry = TestRegistry::with(Config {
        watch_timeout: Duration::from_secs(2),
        ..test_config()
    });
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    let mut last = fetch_list(&mut lb, IO_TIMEOUT).unwrap();
    let mut servers = Vec::new();
    let mut expect_change = |lb: &mut TcpStream, what: &str| {
        let next = fetch_watch(lb, last.version, IO_TIMEOUT).unwrap();
        assert!(
            next.version > last.version,
            "{what}: {} -> {}",
            last.version,
            next.version
        );
        assert_ne!(next.servers, last.servers, "{what}");
        last = next;
    };
    for id in 1..=4u8 {
        let mut server = registry.connect();
        assert_eq!(server.hello(id, u16::from(id)), "OK ttl_ms=300");
        servers.push(server);
        expect_change(&mut lb, "register");
    }
    servers.remove(1);
    expect_change(&mut lb, "close");
    let mut moved = registry.connect();
    assert_eq!(moved.hello(9, 1), "OK ttl_ms=300");
    expect_change(&mut lb, "replace with new id");
    // The rest fall silent and expire.
    expect_change(&mut lb, "expiry");
    assert!(wait_until(IO_TIMEOUT, || registry
        .list()
        .servers
        .is_empty()));
}

#[test]
fn hello_from_outside_allow_is_refused() {
    let registry = TestRegistry::with(Config {
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..test_config()
    });
    let mut server = registry.connect();
    assert_eq!(server.hello(1, 1), "ERR source address not allowed");
    assert_eq!(server.until_closed(), "");
    // Queries are still answered.
    assert!(registry.list().servers.is_empty());
    assert_eq!(registry.stat("hello_not_allowed_total"), 1);

    let local = TestRegistry::with(Config {
        allow: vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ],
        ..test_config()
    });
    let mut server = local.connect();
    assert_eq!(server.hello(1, 1), "OK ttl_ms=300");
}

#[test]
fn table_is_capped() {
    let registry = TestRegistry::with(Config {
        max_servers: 2,
        ..test_config()
    });
    let mut a = registry.connect();
    let mut b = registry.connect();
    let mut c = registry.connect();
    assert_eq!(a.hello(1, 1), "OK ttl_ms=300");
    assert_eq!(b.hello(2, 2), "OK ttl_ms=300");
    assert_eq!(c.hello(3, 3), "ERR registry full (2 servers)");
    assert_eq!(registry.stat("hello_table_full_total"), 1);
    assert_eq!(ids(&registry.list()), vec![1, 2]);
}

#[test]
fn established_connections_survive_bad_lines_and_beat_needs_hello() {
    let registry = TestRegistry::start();
    let mut lb = registry.connect();
    lb.send("LIST");
    while lb.line() != "END" {}
    // Known connection: a bad line gets ERR and the connection stays.
    lb.send("PING");
    assert_eq!(lb.line(), "ERR unknown command \"PING\"");
    lb.send("BEAT");
    assert_eq!(lb.line(), "ERR not registered");
    lb.send("STATS");
    assert!(lb.line().starts_with("STAT connections_open "));
    // A first line of BEAT closes the connection.
    let mut fresh = registry.connect();
    fresh.send("BEAT");
    assert_eq!(fresh.until_closed(), "ERR not registered\n");
    assert!(registry.stat("bad_lines_total") >= 3);
}
