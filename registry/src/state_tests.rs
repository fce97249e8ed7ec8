use super::*;
use std::net::Ipv4Addr;

const TTL: Duration = Duration::from_millis(1500);

fn entry(id: u8, mac_last: u8) -> ServerEntry {
    ServerEntry {
        id,
        mac: MacAddr([2, 0, 0, 0, 0, mac_last]),
        ip: Ipv4Addr::new(10, 0, 0, mac_last),
        udp: None,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fresh() -> (Membership, Instant) {
    (Membership::new(TTL, MAX_IDS, 100), Instant::now())
}

#[test]
fn register_list_and_version() {
    let (mut m, t0) = fresh();
    assert_eq!(m.version(), 100);
    assert!(m.is_empty());
    let r = m.hello(1, entry(9, 9), t0).unwrap();
    assert_eq!(
        r,
        Registered {
            replaced: None,
            changed: true
        }
    );
    assert_eq!(m.version(), 101);
    m.hello(2, entry(3, 3), t0).unwrap();
    assert_eq!(m.version(), 102);
    // Listed in id order, whatever the order of registration.
    assert_eq!(m.list(), vec![entry(3, 3), entry(9, 9)]);
    assert_eq!(m.entry(1), Some(entry(9, 9)));
    assert!(m.is_registered(2));
    assert!(!m.is_registered(3));
}

#[test]
fn beats_keep_a_server_alive_and_silence_expires_it() {
    let (mut m, t0) = fresh();
    m.hello(1, entry(1, 1), t0).unwrap();
    m.hello(2, entry(2, 2), t0).unwrap();
    assert_eq!(m.next_expiry(), Some(t0 + TTL));
    // Server 1 beats every 500 ms, server 2 goes silent.
    for step in 1..=2 {
        assert!(m.beat(1, t0 + ms(500 * step)));
        assert!(m.expire(t0 + ms(500 * step)).is_empty());
    }
    let v = m.version();
    assert!(m.expire(t0 + TTL - ms(1)).is_empty(), "not a moment early");
    assert_eq!(m.expire(t0 + TTL), vec![(2, entry(2, 2))]);
    assert_eq!(m.version(), v + 1);
    assert_eq!(m.list(), vec![entry(1, 1)]);
    assert_eq!(m.next_expiry(), Some(t0 + ms(1000) + TTL));
    // The expired connection's BEATs no longer count: it must HELLO again.
    assert!(!m.beat(2, t0 + TTL + ms(1)));
    assert_eq!(m.expire(t0 + ms(1000) + TTL), vec![(1, entry(1, 1))]);
    assert!(m.is_empty());
    assert_eq!(m.next_expiry(), None);
    // One expiry pass removing several servers moves the version once.
    let (mut m, t0) = fresh();
    m.hello(1, entry(1, 1), t0).unwrap();
    m.hello(2, entry(2, 2), t0).unwrap();
    let v = m.version();
    assert_eq!(m.expire(t0 + TTL), vec![(1, entry(1, 1)), (2, entry(2, 2))]);
    assert_eq!(m.version(), v + 1);
}

#[test]
fn beat_from_the_past_does_not_shorten_life() {
    let (mut m, t0) = fresh();
    m.hello(1, entry(1, 1), t0 + ms(1000)).unwrap();
    assert!(m.beat(1, t0));
    assert_eq!(m.next_expiry(), Some(t0 + ms(1000) + TTL));
}

#[test]
fn close_removes_at_once() {
    let (mut m, t0) = fresh();
    m.hello(1, entry(1, 1), t0).unwrap();
    let v = m.version();
    assert_eq!(m.closed(1), Some(entry(1, 1)));
    assert_eq!(m.version(), v + 1);
    assert!(m.list().is_empty());
    // Closing a connection that never registered changes nothing.
    assert_eq!(m.closed(1), None);
    assert_eq!(m.closed(77), None);
    assert_eq!(m.version(), v + 1);
    // Its id and MAC are free again.
    m.hello(2, entry(1, 1), t0).unwrap();
    assert_eq!(m.list(), vec![entry(1, 1)]);
}

#[test]
fn same_mac_on_a_new_connection_replaces_the_old() {
    let (mut m, t0) = fresh();
    m.hello(1, entry(5, 5), t0).unwrap();
    let v = m.version();
    // The restarted server comes back with the same address: nothing a list
    // reader sees changes, but the old connection must go.
    let r = m.hello(2, entry(5, 5), t0 + ms(10)).unwrap();
    assert_eq!(
        r,
        Registered {
            replaced: Some(1),
            changed: false
        }
    );
    assert_eq!(m.version(), v);
    assert!(!m.is_registered(1));
    assert!(!m.beat(1, t0 + ms(20)));
    assert!(m.beat(2, t0 + ms(20)));
    // Closing the replaced connection afterwards is a no-op.
    assert_eq!(m.closed(1), None);
    assert_eq!(m.version(), v);
    // Same MAC, new id and new IP: replaced and the version moves.
    let moved = ServerEntry {
        id: 6,
        ip: Ipv4Addr::new(10, 9, 9, 9),
        ..entry(5, 5)
    };
    let r = m.hello(3, moved, t0 + ms(30)).unwrap();
    assert_eq!(
        r,
        Registered {
            replaced: Some(2),
            changed: true
        }
    );
    assert_eq!(m.version(), v + 1);
    assert_eq!(m.list(), vec![moved]);
}

#[test]
fn duplicate_id_from_another_mac_is_refused() {
    let (mut m, t0) = fresh();
    m.hello(1, entry(5, 5), t0).unwrap();
    let v = m.version();
    let err = m.hello(2, entry(5, 6), t0).unwrap_err();
    assert_eq!(
        err,
        HelloError::IdTaken {
            id: 5,
            holder: entry(5, 5).mac
        }
    );
    assert_eq!(err.to_string(), "id taken");
    assert_eq!(m.version(), v);
    assert_eq!(m.list(), vec![entry(5, 5)]);
    assert!(!m.is_registered(2));
    // Once the holder is gone, the id is free for the new MAC.
    m.closed(1);
    m.hello(2, entry(5, 6), t0).unwrap();
    assert_eq!(m.list(), vec![entry(5, 6)]);
}

#[test]
fn re_hello_on_the_same_connection_updates_it() {
    let (mut m, t0) = fresh();
    m.hello(1, entry(5, 5), t0).unwrap();
    m.hello(2, entry(7, 7), t0).unwrap();
    let v = m.version();
    // Same connection, same entry: a no-op apart from the beat.
    let r = m.hello(1, entry(5, 5), t0 + ms(1000)).unwrap();
    assert_eq!(
        r,
        Registered {
            replaced: None,
            changed: false
        }
    );
    assert_eq!(m.version(), v);
    assert_eq!(m.expire(t0 + TTL), vec![(2, entry(7, 7))]);
    // Same connection, new id: the old id is released.
    m.hello(1, entry(9, 5), t0 + ms(1000)).unwrap();
    assert_eq!(m.list(), vec![entry(9, 5)]);
    // Same connection taking an id held by another MAC: refused, and the
    // connection keeps what it had.
    m.hello(3, entry(4, 4), t0 + ms(1000)).unwrap();
    assert!(matches!(
        m.hello(1, entry(4, 5), t0 + ms(1000)),
        Err(HelloError::IdTaken { .. })
    ));
    assert_eq!(m.entry(1), Some(entry(9, 5)));
}

#[test]
fn table_is_capped() {
    let t0 = Instant::now();
    let mut m = Membership::new(TTL, 2, 0);
    m.hello(1, entry(1, 1), t0).unwrap();
    m.hello(2, entry(2, 2), t0).unwrap();
    assert_eq!(
        m.hello(3, entry(3, 3), t0),
        Err(HelloError::TableFull { cap: 2 })
    );
    assert_eq!(m.len(), 2);
    // A full table still accepts replacements and re-registrations.
    assert_eq!(m.hello(3, entry(2, 2), t0).unwrap().replaced, Some(2));
    m.hello(1, entry(4, 1), t0).unwrap();
    assert_eq!(m.list(), vec![entry(2, 2), entry(4, 1)]);
    // The cap never exceeds the id space.
    let all = Membership::new(TTL, 10_000, 0);
    assert_eq!(all.max_servers, MAX_IDS);
    let mut m = Membership::new(TTL, 10_000, 0);
    for id in 1..=255u8 {
        m.hello(u64::from(id), entry(id, id), t0).unwrap();
    }
    assert_eq!(m.len(), 255);
}

#[test]
fn zero_id_is_refused() {
    let (mut m, t0) = fresh();
    assert_eq!(m.hello(1, entry(0, 1), t0), Err(HelloError::ZeroId));
    assert!(m.is_empty());
}

#[test]
fn versions_strictly_increase_over_any_history() {
    // A fixed pseudo-random event history: the version never goes down and
    // moves exactly when the list changes.
    let (mut m, t0) = fresh();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut now = t0;
    for _ in 0..5_000 {
        now += ms(rng.u64(0..200));
        let before_version = m.version();
        let before_list = m.list();
        let conn = rng.u64(1..40);
        match rng.u8(0..4) {
            0 => {
                let _ = m.hello(conn, entry(rng.u8(1..20), rng.u8(1..20)), now);
            }
            1 => {
                m.beat(conn, now);
            }
            2 => {
                m.closed(conn);
            }
            _ => {
                m.expire(now);
            }
        }
        let changed = m.list() != before_list;
        assert!(m.version() >= before_version);
        assert_eq!(m.version() > before_version, changed);
        // Indexes agree with the table.
        for e in m.list() {
            assert_eq!(m.by_mac.get(&e.mac).map(|c| m.by_conn[c].entry), Some(e));
        }
        assert_eq!(m.by_mac.len(), m.len());
        assert_eq!(m.by_id.iter().flatten().count(), m.len());
    }
}
