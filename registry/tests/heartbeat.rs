//! `ipcs_common::registry_client::Heartbeat` against the real registry:
//! registration, steady beating, prompt unregistration on stop, retry while
//! refused, and re-registration after the registry restarts.

mod support;

use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use ipcs_common::registry_client::{fetch_list, fetch_watch, Heartbeat, HeartbeatConfig};
use ipcs_common::wire::MacAddr;
use ipcs_registry::Config;
use support::*;

fn config(registry: &str, id: u8, mac_last: u8) -> HeartbeatConfig {
    HeartbeatConfig {
        registry: registry.to_string(),
        id,
        mac: MacAddr([2, 0xbb, 0, 0, 0, mac_last]),
        ip: Ipv4Addr::new(10, 2, 0, mac_last),
        udp: Some(7000),
        beat_interval: Duration::from_millis(100),
        key: None,
    }
}

#[test]
fn registers_beats_and_stop_removes_at_once() {
    let registry = TestRegistry::start();
    let heartbeat = Heartbeat::spawn(config(&registry.addr.to_string(), 11, 11));
    assert!(wait_until(IO_TIMEOUT, || heartbeat.is_registered()));
    let flag = heartbeat.registered_flag();
    let mut lb = TcpStream::connect(registry.addr).unwrap();
    let list = fetch_list(&mut lb, IO_TIMEOUT).unwrap();
    assert_eq!(list.servers.len(), 1);
    let entry = list.servers[0];
    assert_eq!((entry.id, entry.udp), (11, Some(7000)));
    assert_eq!(entry.mac.to_string(), "02:bb:00:00:00:0b");
    assert_eq!(entry.ip, Ipv4Addr::new(10, 2, 0, 11));

    // Three TTLs later it is still there on its first registration.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(ids(&fetch_list(&mut lb, IO_TIMEOUT).unwrap()), vec![11]);
    assert_eq!(registry.stat("registrations_total"), 1);
    assert!(registry.stat("beats_total") >= 6);

    // stop() does not wait out a beat interval, and the registry drops the
    // server on the spot rather than after the TTL.
    let start = Instant::now();
    heartbeat.stop();
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert!(!flag.load(std::sync::atomic::Ordering::SeqCst));
    let after = fetch_watch(&mut lb, list.version, IO_TIMEOUT).unwrap();
    assert!(after.servers.is_empty());
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn retries_while_refused_and_registers_once_the_id_is_free() {
    let registry = TestRegistry::with(Config {
        ttl: Duration::from_secs(10),
        ..test_config()
    });
    let mut holder = registry.connect();
    assert_eq!(holder.hello(12, 1), "OK ttl_ms=10000");
    let heartbeat = Heartbeat::spawn(config(&registry.addr.to_string(), 12, 12));
    // Refused again and again ("id taken"), with backoff: a handful of
    // attempts in a second, not hundreds.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!heartbeat.is_registered());
    let attempts = registry.stat("hello_id_taken_total");
    assert!((2..=10).contains(&attempts), "{attempts} attempts");
    drop(holder);
    assert!(wait_until(Duration::from_secs(4), || heartbeat.is_registered()));
    let list = registry.list();
    assert_eq!(list.servers[0].mac.to_string(), "02:bb:00:00:00:0c");
}

#[test]
fn re_registers_after_a_registry_restart() {
    let first = TestRegistry::start();
    let addr = first.addr;
    let heartbeat = Heartbeat::spawn(config(&addr.to_string(), 13, 13));
    assert!(wait_until(IO_TIMEOUT, || heartbeat.is_registered()));
    // The registry goes away: the heartbeat notices within a beat or two.
    drop(first);
    assert!(wait_until(IO_TIMEOUT, || !heartbeat.is_registered()));
    std::thread::sleep(Duration::from_millis(300));
    // A new registry on the same port, with no state: the server is back
    // within the backoff cap (2 s) without anyone's help.
    let second = TestRegistry::with(Config {
        listen: addr,
        ..test_config()
    });
    let start = Instant::now();
    assert!(wait_until(Duration::from_secs(5), || heartbeat.is_registered()));
    assert!(
        start.elapsed() < Duration::from_millis(2600),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ids(&second.list()), vec![13]);
}

#[test]
fn unreachable_registry_is_retried_until_it_appears() {
    // A port with nothing listening (bound, noted, released).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let heartbeat = Heartbeat::spawn(config(&addr.to_string(), 14, 14));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!heartbeat.is_registered());
    let registry = TestRegistry::with(Config {
        listen: addr,
        ..test_config()
    });
    assert!(wait_until(Duration::from_secs(5), || heartbeat.is_registered()));
    assert_eq!(ids(&registry.list()), vec![14]);
    // Dropping the handle stops it like stop() does.
    drop(heartbeat);
    assert!(wait_until(Duration::from_millis(500), || registry
        .list()
        .servers
        .is_empty()));
}

#[test]
fn unresolvable_registry_name_is_retried_not_fatal() {
    let heartbeat = Heartbeat::spawn(config("no-such-host.invalid:7070", 15, 15));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!heartbeat.is_registered());
    let start = Instant::now();
    heartbeat.stop();
    assert!(start.elapsed() < Duration::from_millis(1500));
}
