//! Slow is not dead, with the real binaries: servers slowed down at run
//! time (`ipcs-server --fault-delay-file`, the testbed's
//! `set_server_delay`) while a paced load runs through the load balancer.
//! A slow server keeps its share and is never ejected; a whole-pool
//! brownout ejects nobody and answers everyone; a server that answers
//! nothing at all (a delay of a minute: it still heartbeats, so only the
//! LB can take it out) is out of rotation within a second with no request
//! lost, and two such of three leave the third serving everything.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::{assert_all_answered, paced_load, root_or_skip, wait_until, Rig};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MS: Duration = Duration::from_millis(1);
/// Long enough that nothing held is ever answered within the test.
const BLACK_HOLE: Duration = Duration::from_secs(60);

fn server_metric(rig: &Rig, name: &str, slot: usize) -> u64 {
    let id = ipcs_testbed::Topology::server_id(slot);
    rig.metric(&format!("{name}{{id=\"{id}\","))
}

#[test]
fn a_server_2ms_slower_keeps_its_share_and_is_never_ejected() {
    if !root_or_skip("a_server_2ms_slower", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start_slowable(3, &[]);
    rig.topo.set_server_delay(2, 2 * MS).unwrap();
    let out = paced_load(rig.lb_addr(), 15_000, 3_000, |_| {});
    assert_all_answered(&out, &rig);
    assert_eq!(rig.metric("ipcs_lb_ejections_total"), 0, "{}", rig.lb_log());
    // Round-robin: each server a third, the slow one included.
    for slot in 0..3 {
        let n = server_metric(&rig, "ipcs_lb_server_requests_total", slot);
        assert!((4_950..=5_100).contains(&n), "slot {slot}: {n} requests");
    }
    let retries = rig.metric("ipcs_lb_retries_total");
    // A few from scheduling stalls on a shared machine, no more.
    assert!(retries <= 150, "{retries} retries for a 2 ms slower server");
    // Its deadline followed it.
    let deadline = rig.admin("/servers?format=json").unwrap();
    assert!(deadline.contains("\"state\":\"live\""), "{deadline}");
}

#[test]
fn a_brownout_of_every_server_ejects_nobody_and_answers_everyone() {
    if !root_or_skip("a_brownout", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start_slowable(3, &[]);
    const TOTAL: u32 = 20_000;
    let out = paced_load(rig.lb_addr(), TOTAL, 4_000, |sent| {
        if sent == TOTAL / 4 {
            for slot in 0..3 {
                rig.topo.set_server_delay(slot, 30 * MS).unwrap();
            }
        }
        if sent == TOTAL * 3 / 4 {
            for slot in 0..3 {
                rig.topo.set_server_delay(slot, Duration::ZERO).unwrap();
            }
        }
    });
    assert_all_answered(&out, &rig);
    assert_eq!(out.errors, [0; 6]);
    assert_eq!(rig.metric("ipcs_lb_ejections_total"), 0, "{}", rig.lb_log());
    let retries = rig.metric("ipcs_lb_retries_total");
    let failovers = rig.metric("ipcs_lb_failovers_total");
    let budget = u64::from(TOTAL) / 5 + 10 * 10;
    assert!(
        retries - failovers <= budget,
        "{retries} retries ({failovers} failovers) over the budget {budget}"
    );
}

#[test]
fn a_black_holed_server_is_out_within_a_second_and_nothing_is_lost() {
    if !root_or_skip("a_black_holed_server", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start_slowable(3, &[]);
    const TOTAL: u32 = 16_000;
    let mut holed_at = None;
    let mut ejected_after = None;
    let out = paced_load(rig.lb_addr(), TOTAL, 4_000, |sent| {
        if sent == TOTAL / 4 {
            rig.topo.set_server_delay(0, BLACK_HOLE).unwrap();
            holed_at = Some(Instant::now());
        }
        if let (Some(at), None) = (holed_at, ejected_after) {
            if sent % 200 == 0 && server_metric(&rig, "ipcs_lb_server_ejected", 0) == 1 {
                ejected_after = Some(at.elapsed());
            }
        }
    });
    assert_all_answered(&out, &rig);
    assert_eq!(out.errors, [0; 6]);
    let after = ejected_after.expect("the black-holed server was never ejected");
    // The gauge is published once a second, so the ejection itself came
    // up to a second before it showed.
    assert!(after < Duration::from_secs(2), "ejected after {after:?}");
    assert_eq!(server_metric(&rig, "ipcs_lb_server_ejections_total", 0), 1);
    for slot in 1..3 {
        assert_eq!(
            server_metric(&rig, "ipcs_lb_server_ejections_total", slot),
            0
        );
    }
    // It still heartbeats: only the LB took it out.
    assert_eq!(rig.listed_servers(), Some(3));
}

#[test]
fn two_of_three_black_holed_still_serves_from_the_third() {
    if !root_or_skip(
        "two_of_three_black_holed",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start_slowable(3, &[]);
    const TOTAL: u32 = 16_000;
    let out = paced_load(rig.lb_addr(), TOTAL, 4_000, |sent| {
        if sent == TOTAL / 4 {
            rig.topo.set_server_delay(0, BLACK_HOLE).unwrap();
            rig.topo.set_server_delay(1, BLACK_HOLE).unwrap();
        }
    });
    assert_all_answered(&out, &rig);
    assert_eq!(out.errors, [0; 6]);
    assert!(
        wait_until(Duration::from_secs(3), || {
            server_metric(&rig, "ipcs_lb_server_ejected", 0) == 1
                && server_metric(&rig, "ipcs_lb_server_ejected", 1) == 1
        }),
        "both silent servers ejected:\n{}",
        rig.admin("/servers").unwrap_or_default()
    );
    assert_eq!(server_metric(&rig, "ipcs_lb_server_ejected", 2), 0);
}
