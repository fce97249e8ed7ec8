//! The operator's run-time control, with the real binaries under a paced
//! load: a drained server's traffic stops within 100 ms with no request
//! lost and comes back on undrain; SIGTERM answers every request the LB
//! had taken before it and exits 0 within the drain timeout; the log
//! level changes at run time.

mod support;

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipcs_testbed::{Signal, Topology};
use support::{assert_all_answered, paced_load, root_or_skip, wait_until, Rig, ADMIN};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MS: Duration = Duration::from_millis(1);

fn admin() -> SocketAddr {
    ADMIN.parse().unwrap()
}

/// POSTs a control verb; the status code and body.
fn post(path: &str) -> (u16, String) {
    ipcs_common::admin_http::post(admin(), path, Duration::from_secs(2)).unwrap()
}

fn requests_to(rig: &Rig, slot: usize) -> u64 {
    let id = Topology::server_id(slot);
    rig.metric(&format!("ipcs_lb_server_requests_total{{id=\"{id}\","))
}

#[test]
fn a_drained_server_loses_its_traffic_within_100ms_and_gets_it_back() {
    if !root_or_skip("a_drained_server", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start(3, &[]);
    let id = Topology::server_id(0);
    const TOTAL: u32 = 12_000;
    const RATE: u32 = 4_000;
    let mut drained_at = None;
    let mut at_drain = 0;
    let mut after_100ms = None;
    let mut before_undrain = 0;
    let out = paced_load(rig.lb_addr(), TOTAL, RATE, |sent| {
        if sent == TOTAL / 4 {
            let (status, body) = post(&format!("/servers/{id}/drain"));
            assert_eq!(status, 200, "{body}");
            drained_at = Some(Instant::now());
            at_drain = requests_to(&rig, 0);
        }
        if let (Some(at), None) = (drained_at, after_100ms) {
            if at.elapsed() >= 100 * MS {
                after_100ms = Some(requests_to(&rig, 0));
            }
        }
        if sent == TOTAL * 5 / 8 {
            before_undrain = requests_to(&rig, 0);
            let (status, body) = post(&format!("/servers/{id}/undrain"));
            assert_eq!(status, 200, "{body}");
        }
    });
    assert_all_answered(&out, &rig);
    assert_eq!(out.errors, [0; 6]);
    let after_100ms = after_100ms.expect("the load outlasted the drain by 100 ms");
    // The core applies a drain before its next pick: what grew after the
    // POST returned can only be a request picked while it was being stored.
    assert!(
        after_100ms - at_drain <= 1,
        "{at_drain} requests at the drain, {after_100ms} 100 ms later"
    );
    assert_eq!(
        before_undrain, after_100ms,
        "traffic to a drained server after 100 ms"
    );
    let end = requests_to(&rig, 0);
    eprintln!(
        "drained server: {at_drain} requests at the drain, {after_100ms} 100 ms later, \
         {before_undrain} at undrain, {end} at the end"
    );
    // Undrained for the last 3/8 of the load: about a third of it.
    let back = end - before_undrain;
    assert!(
        back > u64::from(TOTAL) * 3 / 8 / 3 / 2,
        "{back} requests after undrain"
    );
    let json = rig.admin("/servers?format=json").unwrap();
    assert!(!json.contains("\"state\":\"draining\""), "{json}");
}

#[test]
fn drain_and_eject_show_in_servers_and_metrics_and_bad_commands_are_4xx() {
    if !root_or_skip("drain_and_eject_show", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start(2, &[]);
    let (a, b) = (Topology::server_id(0), Topology::server_id(1));
    assert_eq!(post(&format!("/servers/{a}/drain")).0, 200);
    assert_eq!(post(&format!("/servers/{b}/eject?for=1h")).0, 200);
    let json = rig.admin("/servers?format=json").unwrap();
    assert!(json.contains("\"state\":\"draining\""), "{json}");
    assert!(json.contains("\"state\":\"ejected-by-operator\""), "{json}");
    assert!(json.contains("\"operator_eject_left_ms\":"), "{json}");
    assert_eq!(
        rig.metric(&format!("ipcs_lb_server_draining{{id=\"{a}\",")),
        1
    );
    assert_eq!(
        rig.metric(&format!("ipcs_lb_server_operator_ejected{{id=\"{b}\",")),
        1
    );
    // Nobody left to send to: error 3, as with no server at all.
    let client = support::Client::new(rig.lb_addr());
    let request = ipcs_common::wire::Request {
        a: 1,
        b: 2,
        op: ipcs_common::Op::Add,
    };
    assert_eq!(
        client.ask(request),
        ipcs_common::wire::Response::Error(ipcs_common::wire::Status::NoServer)
    );
    assert_eq!(post("/servers/250/drain").0, 404);
    assert_eq!(post(&format!("/servers/{a}/explode")).0, 400);
    assert_eq!(post(&format!("/servers/{a}/eject?for=never")).0, 400);
    let (status, _) = ipcs_common::admin_http::get(
        admin(),
        &format!("/servers/{a}/drain"),
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(status, 405, "GET must not change anything");
    assert_eq!(post(&format!("/servers/{a}/ready")).0, 200);
    assert_eq!(post(&format!("/servers/{b}/ready")).0, 200);
    assert!(matches!(
        client.ask(request),
        ipcs_common::wire::Response::Reply(_)
    ));
}

#[test]
fn sigterm_under_load_answers_every_request_taken_and_exits_0() {
    if !root_or_skip("sigterm_under_load", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::start_slowable(3, &["--drain-timeout", "3s"]);
    // Slow servers, so hundreds of requests are in flight at the signal.
    for slot in 0..3 {
        rig.topo.set_server_delay(slot, 30 * MS).unwrap();
    }
    const TOTAL: u32 = 8_000;
    const AT: u32 = TOTAL / 2;
    let mut signalled = None;
    let mut in_flight_at_signal = 0;
    let out = paced_load(rig.lb_addr(), TOTAL, 4_000, |sent| {
        if sent == AT {
            in_flight_at_signal = rig.metric("ipcs_lb_in_flight");
            rig.topo.process(rig.lb).signal(Signal::Term).unwrap();
            signalled = Some(Instant::now());
        }
    });
    let signalled = signalled.unwrap();
    eprintln!(
        "SIGTERM after {AT} of {TOTAL} requests: {in_flight_at_signal} in flight, \
         first {} answered",
        out.answered_prefix
    );
    let status = rig
        .topo
        .process_mut(rig.lb)
        .wait_timeout(Duration::from_secs(10))
        .expect("the LB did not exit after SIGTERM");
    let log = rig.lb_log();
    assert!(status.success(), "exit {status:?}:\n{log}");
    // Every request sent before the signal was taken and answered, with
    // its correct result (status 4 would not count).
    assert!(
        out.answered_prefix >= AT,
        "only the first {} of {AT} requests sent before SIGTERM were answered \
         ({in_flight_at_signal} in flight at the signal); {out:?}\n{log}",
        out.answered_prefix
    );
    assert_eq!(out.wrong + out.duplicates, 0, "{out:?}");
    assert!(
        in_flight_at_signal > 0,
        "nothing was in flight at the signal"
    );
    // The drain ended because everything was answered, well inside the
    // 3 s drain timeout (the 30 ms servers need a few round trips).
    assert!(!log.contains("left unanswered"), "{log}");
    assert!(log.contains("ipcs-lb stopped"), "{log}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_second_signal_stops_at_once() {
    if !root_or_skip("a_second_signal", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Servers that never answer: the drain could only end at its timeout.
    let mut rig = Rig::start_slowable(1, &["--drain-timeout", "30s", "--request-timeout", "20s"]);
    rig.topo
        .set_server_delay(0, Duration::from_secs(60))
        .unwrap();
    let client = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    for a in 0..10u32 {
        let request = ipcs_common::wire::Request {
            a,
            b: 1,
            op: ipcs_common::Op::Add,
        };
        client.send_to(&request.to_bytes(), rig.lb_addr()).unwrap();
    }
    assert!(wait_until(Duration::from_secs(2), || rig
        .metric("ipcs_lb_in_flight")
        == 10));
    let lb = rig.lb;
    rig.topo.process(lb).signal(Signal::Term).unwrap();
    assert!(wait_until(Duration::from_secs(2), || rig
        .metric("ipcs_lb_stopping")
        == 1));
    let (status, body) =
        ipcs_common::admin_http::get(admin(), "/ready", Duration::from_secs(2)).unwrap();
    assert_eq!(status, 503, "{body}");
    let started = Instant::now();
    rig.topo.process(lb).signal(Signal::Int).unwrap();
    let status = rig
        .topo
        .process_mut(lb)
        .wait_timeout(Duration::from_secs(5))
        .expect("a second signal did not stop the LB");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(rig.lb_log().contains("abandoned=10"), "{}", rig.lb_log());
}

#[test]
fn the_log_level_changes_at_run_time() {
    if !root_or_skip("the_log_level_changes", "network namespaces, raw sockets") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::start(1, &[]);
    // A client that connects and sends nothing is cut off after the admin
    // read timeout, which the responder logs at debug level.
    let idle_client = || {
        let mut s = TcpStream::connect(admin()).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    };
    let debug_lines = || rig.lb_log().matches("admin request:").count();
    // Whatever RUST_LOG the test runs under, start from info.
    assert_eq!(post("/logging?level=info").0, 200);
    idle_client();
    assert_eq!(debug_lines(), 0, "a debug line at the default level");
    let (status, body) = post("/logging?level=debug");
    assert_eq!(status, 200, "{body}");
    let (_, shown) =
        ipcs_common::admin_http::get(admin(), "/logging", Duration::from_secs(2)).unwrap();
    assert_eq!(shown, "debug\n");
    idle_client();
    assert!(
        wait_until(Duration::from_secs(2), || debug_lines() == 1),
        "no debug line after POST /logging?level=debug:\n{}",
        rig.lb_log()
    );
    assert_eq!(post("/logging?level=info,[{").0, 400);
    assert_eq!(post("/logging?level=info").0, 200);
    idle_client();
    std::thread::sleep(200 * MS);
    assert_eq!(debug_lines(), 1, "debug lines after going back to info");
}
