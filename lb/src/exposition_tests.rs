use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::*;
use crate::metrics::{add, bump, ServerCounters, ServerStatsEntry};
use crate::snapshot::Backend;

/// Two workers with a little of everything counted, and their rendering.
fn rendered() -> String {
    let a = Arc::new(WorkerStats::default());
    let b = Arc::new(WorkerStats::default());
    bump(&a.requests);
    add(&b.requests, 4);
    bump(a.error(Status::UnknownOp));
    b.count_drop(DropReason::Stale);
    let mac = MacAddr([2, 0, 0, 0, 0, 11]);
    for (w, n) in [(&a, 3), (&b, 5)] {
        let counters = Arc::new(ServerCounters::default());
        add(&counters.requests, n);
        add(&counters.srtt_us, 250);
        w.servers.store(Arc::new(vec![ServerStatsEntry {
            id: 1,
            mac,
            counters,
        }]));
    }
    let mut hist = latency_histogram();
    hist.record(80).unwrap();
    hist.record(400).unwrap();
    hist.record(3_000).unwrap();
    a.latency.store(Arc::new(hist));
    let registry = RegistryStatus::default();
    registry.version.store(42, Relaxed);
    registry.reachable.store(true, Relaxed);
    let snapshot = ServerSnapshot::new(
        42,
        vec![Backend {
            id: 1,
            mac,
            ip: Ipv4Addr::new(172, 16, 238, 11),
            udp: None,
        }],
    );
    render(&MetricsView {
        workers: &[a, b],
        registry: &registry,
        snapshot: &snapshot,
        overrides: &crate::operator::Overrides::default(),
        now: std::time::Instant::now(),
    })
}

#[test]
fn render_sums_workers_and_names_every_family() {
    let text = rendered();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("ipcs_lb_requests_total 5"), "{text}");
    assert!(has(
        r#"ipcs_lb_errors_total{code="2",status="unknown_op"} 1"#
    ));
    assert!(has(r#"ipcs_lb_drops_total{reason="stale"} 1"#));
    assert!(has(
        r#"ipcs_lb_server_requests_total{id="1",mac="02:00:00:00:00:0b"} 8"#
    ));
    assert!(has(
        r#"ipcs_lb_server_srtt_seconds{id="1",mac="02:00:00:00:00:0b"} 0.00025"#
    ));
    assert!(has("ipcs_lb_registry_version 42"));
    assert!(has("ipcs_lb_registry_reachable 1"));
    assert!(has("ipcs_lb_servers 1"));
    assert!(has(r#"ipcs_lb_latency_seconds_bucket{le="0.0001"} 1"#));
    assert!(has(r#"ipcs_lb_latency_seconds_bucket{le="0.0005"} 2"#));
    assert!(has(r#"ipcs_lb_latency_seconds_bucket{le="+Inf"} 3"#));
    assert!(has("ipcs_lb_latency_seconds_count 3"));
    // Every sample line belongs to a family of the table.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(family_named(family).is_some(), "{name} not in FAMILIES");
    }
}

#[test]
fn every_family_is_rendered_once_in_table_order_with_its_help_and_type() {
    let text = rendered();
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let expected: Vec<String> = FAMILIES
        .iter()
        .map(|f| format!("{} {}", f.name, f.kind.as_str()))
        .collect();
    assert_eq!(types, expected);
    for f in FAMILIES {
        assert!(
            text.contains(&format!("# HELP {} {}\n", f.name, f.help)),
            "{}",
            f.name
        );
    }
}

#[test]
fn family_names_are_unique_and_prefixed() {
    let mut seen = HashSet::new();
    for f in FAMILIES {
        assert!(f.name.starts_with("ipcs_lb_"), "{}", f.name);
        assert!(seen.insert(f.name), "{} twice", f.name);
        assert!(!f.help.is_empty(), "{} has no help", f.name);
    }
}
