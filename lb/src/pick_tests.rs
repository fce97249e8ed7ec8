use std::net::Ipv4Addr;

use super::*;
use crate::outlier::EjectionPolicy;

fn backend(id: u8) -> Backend {
    Backend {
        id,
        mac: MacAddr([2, 0, 0, 0, 0, id]),
        ip: Ipv4Addr::new(172, 16, 238, 10 + id),
        udp: None,
    }
}

fn snapshot(version: u64, ids: &[u8]) -> ServerSnapshot {
    ServerSnapshot::new(version, ids.iter().map(|id| backend(*id)).collect())
}

fn ids(rr: &mut RoundRobin, snap: &ServerSnapshot, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| rr.next(&snap.servers, |_| true).unwrap().id)
        .collect()
}

const SEC: Duration = Duration::from_secs(1);

/// Takes the servers `ids` out of rotation at `now` (a first ejection).
fn eject(table: &mut HealthTable, ids: &[u8], now: Instant) {
    for id in ids {
        let policy = EjectionPolicy::default();
        table
            .get_mut(backend(*id).mac)
            .unwrap()
            .health
            .eject(now, &policy);
    }
}

#[test]
fn rotation_visits_each_server_in_turn_and_spreads_exactly() {
    let snap = snapshot(1, &[3, 1, 2]);
    let mut rr = RoundRobin::new();
    assert_eq!(ids(&mut rr, &snap, 7), [1, 2, 3, 1, 2, 3, 1]);
    let mut rr = RoundRobin::new();
    let mut count = [0usize; 4];
    for id in ids(&mut rr, &snap, 300) {
        count[id as usize] += 1;
    }
    assert_eq!(count, [0, 100, 100, 100]);
}

#[test]
fn empty_list_picks_nothing() {
    let mut rr = RoundRobin::new();
    assert!(rr.next(&[], |_| true).is_none());
    assert_eq!(rr.last(), None);
}

#[test]
fn list_change_continues_after_the_last_served() {
    let mut rr = RoundRobin::new();
    assert_eq!(ids(&mut rr, &snapshot(1, &[1, 2, 3]), 2), [1, 2]);
    // Server 2 (just served) leaves: the rotation goes on with 3, not 1.
    assert_eq!(ids(&mut rr, &snapshot(2, &[1, 3]), 3), [3, 1, 3]);
    // A server joins between: it is not skipped.
    assert_eq!(ids(&mut rr, &snapshot(3, &[1, 2, 3]), 3), [1, 2, 3]);
    // A new server after the last: it comes next, not a restart at 1.
    assert_eq!(ids(&mut rr, &snapshot(4, &[1, 2, 3, 4]), 2), [4, 1]);
    // A reordered or re-versioned list with the same members: no jump.
    assert_eq!(ids(&mut rr, &snapshot(5, &[4, 3, 2, 1]), 2), [2, 3]);
}

#[test]
fn list_change_when_the_last_served_was_the_highest_wraps() {
    let mut rr = RoundRobin::new();
    assert_eq!(ids(&mut rr, &snapshot(1, &[1, 2, 3]), 3), [1, 2, 3]);
    assert_eq!(ids(&mut rr, &snapshot(2, &[1, 2]), 1), [1]);
}

#[test]
fn pick_skips_ejected_and_falls_back_when_all_are() {
    let t0 = Instant::now();
    let snap = snapshot(1, &[1, 2, 3]);
    let mut table = HealthTable::new();
    table.sync(&snap);
    eject(&mut table, &[2], t0);
    let mut rr = RoundRobin::new();
    let picks: Vec<u8> = (0..4)
        .map(|_| rr.pick(&snap.servers, &table, t0).unwrap().id)
        .collect();
    assert_eq!(picks, [1, 3, 1, 3]);
    eject(&mut table, &[1, 3], t0);
    assert_eq!(table.available_count(t0), 0);
    assert_eq!(rr.pick(&snap.servers, &table, t0).unwrap().id, 1);
    assert_eq!(rr.pick(&snap.servers, &table, t0).unwrap().id, 2);
    // After the cool-down they are back.
    assert_eq!(table.available_count(t0 + 5 * SEC), 3);
}

#[test]
fn retry_prefers_untried_then_anyone_but_the_last() {
    let t0 = Instant::now();
    let snap = snapshot(1, &[1, 2, 3]);
    let mut table = HealthTable::new();
    table.sync(&snap);
    let mut rr = RoundRobin::new();
    let m = |id: u8| backend(id).mac;
    // Tried 1: the rotation (at the start) would give 1, retry gives 2.
    assert_eq!(
        rr.pick_retry(&snap.servers, &table, &[m(1)], t0)
            .unwrap()
            .id,
        2
    );
    // Tried 2 and 3: 1 is the only untried one.
    assert_eq!(
        rr.pick_retry(&snap.servers, &table, &[m(2), m(3)], t0)
            .unwrap()
            .id,
        1
    );
    // All tried, 3 last: anyone but 3.
    let id = rr
        .pick_retry(&snap.servers, &table, &[m(1), m(2), m(3)], t0)
        .unwrap()
        .id;
    assert_ne!(id, 3);
    // One server only: it is retried.
    let single = snapshot(2, &[3]);
    assert_eq!(
        rr.pick_retry(&single.servers, &table, &[m(3)], t0)
            .unwrap()
            .id,
        3
    );
    // Untried but ejected loses to tried but available (not the last).
    eject(&mut table, &[3], t0);
    assert_eq!(
        rr.pick_retry(&snap.servers, &table, &[m(1), m(2)], t0)
            .unwrap()
            .id,
        1
    );
}

#[test]
fn health_table_sync_keeps_listed_and_forgets_gone() {
    let t0 = Instant::now();
    let mut table = HealthTable::new();
    assert!(table.sync(&snapshot(1, &[1, 2])));
    let counters = table.get(backend(1).mac).unwrap().counters.clone();
    eject(&mut table, &[1, 2], t0);
    // Same members: no change reported, state kept.
    assert!(!table.sync(&snapshot(2, &[2, 1])));
    assert!(table.sync(&snapshot(3, &[1, 3])));
    assert!(!table.available(backend(1).mac, t0));
    assert!(Arc::ptr_eq(
        &counters,
        &table.get(backend(1).mac).unwrap().counters
    ));
    assert!(table.available(backend(3).mac, t0));
    assert!(table.get(backend(2).mac).is_none());
    // Server 2 registers again: it starts healthy.
    table.sync(&snapshot(4, &[1, 2, 3]));
    assert!(table.available(backend(2).mac, t0));
    assert_eq!(table.len(), 3);
    assert!(!table.available(MacAddr([9; 6]), t0), "unknown MAC");
}

#[test]
fn p2c_sends_less_to_a_slow_server_and_skips_ejected_ones() {
    let t0 = Instant::now();
    let snap = snapshot(1, &[1, 2, 3]);
    let mut table = HealthTable::new();
    table.sync(&snap);
    for id in [1, 2] {
        table
            .get_mut(backend(id).mac)
            .unwrap()
            .ewma
            .sample(Duration::from_micros(500), t0);
    }
    table
        .get_mut(backend(3).mac)
        .unwrap()
        .ewma
        .sample(Duration::from_millis(30), t0);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut count = [0usize; 4];
    for _ in 0..3000 {
        count[pick_p2c(&snap.servers, &table, &mut rng, t0).unwrap().id as usize] += 1;
    }
    // Server 3 wins only when drawn twice, which p2c never does.
    assert_eq!(count[3], 0, "{count:?}");
    assert!(count[1] > 1200 && count[2] > 1200, "{count:?}");
    // Ejected servers are skipped; with one left, it gets everything.
    eject(&mut table, &[1, 2], t0);
    for _ in 0..10 {
        assert_eq!(pick_p2c(&snap.servers, &table, &mut rng, t0).unwrap().id, 3);
    }
    assert!(pick_p2c(&[], &table, &mut rng, t0).is_none());
}
