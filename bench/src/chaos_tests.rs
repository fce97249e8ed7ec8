//! Tests of the chaos soak's schedule and accounting (`chaos.rs`).

use super::*;

#[test]
fn schedule_is_ordered_and_inside_the_run() {
    for secs in [10, 60] {
        let d = Duration::from_secs(secs);
        let plan = schedule(d, false);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(plan.iter().all(|(t, _)| *t < d));
        let freeze = plan
            .iter()
            .find(|(_, f)| *f == Fault::FreezeServer(1))
            .unwrap()
            .0;
        let thaw = plan
            .iter()
            .find(|(_, f)| *f == Fault::ThawServer(1))
            .unwrap()
            .0;
        assert!(
            thaw - freeze > Duration::from_millis(1500),
            "frozen longer than the TTL"
        );
    }
}

/// The windows in which `plan` has a server out (killed, frozen, cut; a
/// removal as an instant) or, with `slow`, slowed.
fn windows(plan: &[(Duration, Fault)], slow: bool) -> Vec<(Duration, Duration)> {
    let end_of = |f: Fault| match f {
        Fault::KillServer(s) => Some(Fault::RestartServer(s)),
        Fault::FreezeServer(s) => Some(Fault::ThawServer(s)),
        Fault::CutLink(s) => Some(Fault::RestoreLink(s)),
        Fault::RemoveServer(_) => Some(f),
        _ => None,
    };
    plan.iter()
        .filter_map(|&(t, f)| {
            let undo = if slow { f.slowness_undo() } else { end_of(f) }?;
            let end = plan.iter().find(|(u, g)| *g == undo && *u >= t)?.0;
            Some((t, end))
        })
        .collect()
}

#[test]
fn slowness_faults_need_thirty_seconds_and_overlap_no_outage() {
    assert!(windows(&schedule(Duration::from_secs(10), false), true).is_empty());
    assert!(windows(&schedule(Duration::from_secs(29), false), true).is_empty());
    for secs in [30, 45, 60, 120, 600] {
        let d = Duration::from_secs(secs);
        let plan = schedule(d, false);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(plan.iter().all(|(t, _)| *t < d), "{secs} s");
        let slow = windows(&plan, true);
        assert_eq!(slow.len(), 2, "{secs} s");
        assert_eq!(slow[0].1 - slow[0].0, SLOW_FOR);
        assert_eq!(slow[1].1 - slow[1].0, BROWNOUT_FOR);
        // Half a second clear of every outage, either side.
        let margin = Duration::from_millis(500);
        for &(a, b) in &slow {
            for &(c, d) in &windows(&plan, false) {
                assert!(
                    b + margin <= c || d + margin <= a,
                    "{secs} s: {a:?}-{b:?} vs {c:?}-{d:?}"
                );
            }
        }
    }
}

#[test]
fn slowness_window_counts_traffic_and_lb_totals() {
    let ms = Duration::from_millis;
    let scrape = |a: u64, b: u64, retries: u64| Scrape {
        per_server: BTreeMap::from([(11u8, a), (14u8, b)]),
        totals: BTreeMap::from([(RETRIES, retries)]),
    };
    let samples = vec![
        (ms(90), scrape(0, 0, 0)),
        (ms(100), scrape(10, 10, 1)),
        (ms(200), scrape(20, 15, 4)),
        (ms(300), scrape(30, 15, 9)),
        (ms(400), scrape(40, 15, 9)),
        (ms(700), scrape(90, 90, 90)),
    ];
    let record = |at, fault| FaultRecord {
        at,
        fault,
        server_id: None,
        traffic_stopped_after: None,
        slowness: None,
        tunnel: None,
    };
    let mut records = vec![
        record(ms(100), Fault::SlowServer(3)),
        record(ms(400), Fault::SpeedRestored(3)),
    ];
    fill_slowness(&mut records, &[vec![14], vec![]], &samples);
    let w = records[0].slowness.clone().unwrap();
    assert_eq!(w.window, ms(300));
    assert_eq!((w.to_slowed, w.to_all), (5, 35));
    assert_eq!(w.starved, vec![14]);
    assert_eq!(w.retries, Some(8));
    assert_eq!(w.ejections, None);
    assert_eq!(records[1].slowness, None);
}

#[test]
fn the_lb_kill_is_clear_of_every_server_and_registry_outage() {
    let ms = Duration::from_millis;
    for secs in [10, 30, 60, 120] {
        let d = Duration::from_secs(secs);
        assert!(!schedule(d, false)
            .iter()
            .any(|(_, f)| matches!(f, Fault::KillActiveLb | Fault::RestartLb)));
        let plan = schedule(d, true);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        let at = |want: Fault| plan.iter().find(|(_, f)| *f == want).unwrap().0;
        let kill = at(Fault::KillActiveLb);
        assert_eq!(at(Fault::RestartLb) - kill, RESTART_DELAY);
        // Nothing else from 300 ms before the kill to 400 ms after it (a
        // failover takes ~150 ms here).
        let (from, to) = (kill - ms(300), kill + ms(400));
        for &(t, f) in &plan {
            let lb = matches!(f, Fault::KillActiveLb | Fault::RestartLb);
            assert!(
                lb || t < from || t > to,
                "{secs} s: {f:?} at {t:?}, kill at {kill:?}"
            );
            // The registry's list is right when the standby takes over.
            if f.takes_out().is_some() {
                assert!(t + ms(1800) < kill || t > kill, "{secs} s: {f:?} at {t:?}");
            }
            if f == Fault::RestartRegistry {
                assert!(t + ms(3500) < kill || t > kill, "{secs} s: {f:?} at {t:?}");
            }
        }
    }
}

#[test]
fn losses_count_only_inside_the_failover_window() {
    let ms = Duration::from_millis;
    let load = Measurement {
        sent: 1000,
        answered: 990,
        lost: 10,
        loss_window: Some((ms(5050), ms(5100))),
        ..Measurement::default()
    };
    let failover = Failover {
        killed: 1,
        took_over: 2,
        after: ms(150),
        at: Instant::now(),
    };
    let mut report = ChaosReport {
        load,
        faults: Vec::new(),
        failover: Some((ms(5000), failover)),
    };
    assert_eq!(report.failover_window(), Some((ms(4900), ms(5250))));
    assert!(report.clean());
    report.load.loss_window = Some((ms(5050), ms(5300)));
    assert!(!report.clean(), "a loss after the window");
    report.failover = None;
    report.load.loss_window = Some((ms(5050), ms(5100)));
    assert!(!report.clean(), "losses without a failover");
    report.load.lost = 0;
    report.load.answered = 1000;
    assert!(report.clean());
    report.load.wrong = 1;
    assert!(!report.clean());
    // The same rule judges a load from elsewhere (ipcs-chaos --judge-load).
    report.load.wrong = 0;
    assert!(load_is_clean(&report.load, None));
    let nothing = Measurement::default();
    assert!(!load_is_clean(&nothing, None), "nothing sent is not clean");
    assert_eq!(allowed_losses(ms(50), ms(80)), (ms(0), ms(230)));
}

#[test]
fn schedule_renders_for_scripts() {
    let text = render_schedule(&schedule(Duration::from_secs(30), false));
    assert!(text.contains("13.500 SlowServer 3 30ms\n"), "{text}");
    assert!(text.contains("16.000 SpeedRestored 3 0\n"), "{text}");
    assert!(text.contains("27.000 Brownout 30ms\n"), "{text}");
    assert!(text.contains("29.000 BrownoutOver 0\n"), "{text}");
    assert!(text.contains("3.000 KillServer 0\n"), "{text}");
    assert_eq!(
        text.lines().count(),
        schedule(Duration::from_secs(30), false).len()
    );
}

#[test]
fn reads_lb_totals_when_exported() {
    let text = "ipcs_lb_retries_total 12\n\
                ipcs_lb_retries_total_extra 99\n\
                ipcs_lb_ejections_total{reason=\"timeouts\"} 2\n\
                ipcs_lb_ejections_total{reason=\"other\"} 1\n\
                ipcs_lb_server_requests_total{id=\"11\"} 5\n";
    let s = parse_scrape(text);
    assert_eq!(s.totals.get(RETRIES), Some(&12));
    assert_eq!(s.totals.get(EJECTIONS), Some(&3));
    assert_eq!(s.totals.get(ATTEMPT_TIMEOUTS), None);
    assert_eq!(s.per_server.get(&11), Some(&5));
}

#[test]
fn reads_per_server_counters() {
    let text = "# TYPE ipcs_lb_server_requests_total counter\n\
                ipcs_lb_server_requests_total{id=\"11\",mac=\"02:00:00:00:00:0b\"} 120\n\
                ipcs_lb_server_requests_total{id=\"12\",mac=\"02:00:00:00:00:0c\"} 7\n\
                ipcs_lb_requests_total 127\n";
    let m = parse_server_requests(text);
    assert_eq!(m.get(&11), Some(&120));
    assert_eq!(m.get(&12), Some(&7));
    assert_eq!(m.len(), 2);
}

#[test]
fn traffic_stop_is_the_last_growth_before_the_undo() {
    let ms = Duration::from_millis;
    let mut records = vec![
        FaultRecord {
            at: ms(100),
            fault: Fault::KillServer(0),
            server_id: Some(11),
            traffic_stopped_after: None,
            slowness: None,
            tunnel: None,
        },
        FaultRecord {
            at: ms(500),
            fault: Fault::RestartServer(0),
            server_id: None,
            traffic_stopped_after: None,
            slowness: None,
            tunnel: None,
        },
    ];
    let sample = |t: u64, c: u64| {
        (
            ms(t),
            Scrape {
                per_server: BTreeMap::from([(11u8, c)]),
                totals: BTreeMap::new(),
            },
        )
    };
    let samples = vec![
        sample(90, 10),
        sample(110, 12),
        sample(130, 13),
        sample(150, 13),
        sample(600, 20),
    ];
    fill_traffic_stops(&mut records, &samples);
    assert_eq!(records[0].traffic_stopped_after, Some(ms(30)));
    assert_eq!(records[1].traffic_stopped_after, None);
}

#[test]
fn two_hosts_cut_the_tunnel_for_two_seconds_inside_the_run() {
    assert_eq!(
        schedule_for(Duration::from_secs(10), true, false),
        schedule(Duration::from_secs(10), true)
    );
    for secs in [10, 60] {
        let d = Duration::from_secs(secs);
        let plan = schedule_for(d, false, true);
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(plan.iter().all(|(t, _)| *t < d));
        let at = |fault| plan.iter().find(|(_, f)| *f == fault).unwrap().0;
        assert_eq!(
            at(Fault::RestoreTunnel) - at(Fault::CutTunnel),
            TUNNEL_CUT_FOR
        );
        // Repaired before the freeze: never the far servers and a frozen
        // one out at once.
        assert!(at(Fault::RestoreTunnel) <= at(Fault::FreezeServer(1)));
    }
}

#[test]
fn tunnel_record_has_when_far_traffic_stopped_and_came_back() {
    let ms = Duration::from_millis;
    let sample = |t: u64, near: u64, far1: u64, far2: u64| {
        (
            ms(t),
            Scrape {
                per_server: BTreeMap::from([(11u8, near), (13u8, far1), (14u8, far2)]),
                totals: BTreeMap::new(),
            },
        )
    };
    let mut records = vec![
        FaultRecord {
            at: ms(100),
            fault: Fault::CutTunnel,
            server_id: None,
            traffic_stopped_after: None,
            slowness: None,
            tunnel: Some(TunnelRecord {
                far_ids: vec![13, 14],
                ..TunnelRecord::default()
            }),
        },
        FaultRecord {
            at: ms(500),
            fault: Fault::RestoreTunnel,
            server_id: None,
            traffic_stopped_after: None,
            slowness: None,
            tunnel: None,
        },
    ];
    let samples = vec![
        sample(90, 10, 10, 10),
        sample(120, 20, 12, 10),
        sample(160, 30, 12, 11), // the last far growth: 60 ms after the cut
        sample(300, 40, 12, 11),
        sample(520, 50, 12, 11),
        sample(600, 60, 13, 11), // 13 back 100 ms after the repair
        sample(800, 70, 13, 15), // 14 back 300 ms after
    ];
    fill_tunnel(&mut records, &samples);
    let t = records[0].tunnel.clone().unwrap();
    assert_eq!(t.traffic_stopped_after, Some(ms(60)));
    assert_eq!(t.traffic_back_after, Some(ms(300)));
    // One far server never back: not back.
    fill_tunnel(&mut records, &samples[..6].to_vec());
    assert_eq!(records[0].tunnel.as_ref().unwrap().traffic_back_after, None);
    assert!(ChaosReport {
        load: Measurement::default(),
        faults: records,
        failover: None,
    }
    .render()
    .contains("far servers [13, 14]: traffic stopped after 60 ms, back never"));
}
