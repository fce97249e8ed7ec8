//! The LB tier with the real keepalived: two LB nodes share the VIP; the
//! one holding it is SIGKILLed; the other must hold it within 1 s, a `calc`
//! script running through the VIP must lose nothing, and the killed node,
//! restarted, must come back as a standby (the address stays where it is).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipcs_common::sys::root_or_skip;
use ipcs_testbed::vrrp::{read_master_log, KEEPALIVED, LB_PORT, VIP};
use ipcs_testbed::{binary, Signal, Topology};

/// Like `root_or_skip`, for the keepalived binary (deploy/install-deps.sh
/// installs it): a loud skip, an error under CI=true.
fn keepalived_or_skip(test: &str) -> bool {
    if Path::new(KEEPALIVED).is_file() {
        return true;
    }
    let line = format!("SKIPPED: {test} needs {KEEPALIVED} (apt install keepalived)");
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{line}, and CI=true forbids skipping"
    );
    eprintln!("{line}");
    false
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls until `f` holds or `limit` passes.
fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// `calc` in the core asking `target` for `1+1`; whether it answered 2.
fn answers(topology: &Topology, target: &str) -> bool {
    topology
        .command_in_core(&binary("calc"))
        .args(["--timeout", "300ms", "--attempts", "2", target, "1+1"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "2")
}

#[test]
fn the_vip_moves_within_a_second_when_its_lb_is_killed_and_calc_loses_nothing() {
    let name = "the_vip_moves_within_a_second_when_its_lb_is_killed_and_calc_loses_nothing";
    if !root_or_skip(name, "network namespaces, keepalived") || !keepalived_or_skip(name) {
        return;
    }
    let mut t = Topology::builder().servers(2).build().unwrap();
    t.start_registry(&[]).unwrap();
    for slot in t.server_slots() {
        t.start_server(slot, &[]).unwrap();
    }
    let mut lbs = Vec::new();
    for _ in 0..2 {
        let n = t.add_lb_node().unwrap();
        lbs.push(t.start_lb_node(n, &[]).unwrap());
        t.start_keepalived(n).unwrap();
    }
    // The supervisor's part: a node is up once its own LB answers.
    for n in 1..=2 {
        let own = format!("{}:{LB_PORT}", t.lb_node(n).unwrap().ip);
        assert!(
            wait_for(Duration::from_secs(10), || answers(&t, &own)),
            "LB {n} never answered on {own}\n{}",
            t.logs()
        );
        t.set_lb_down(n, false).unwrap();
    }
    let vip = format!("{VIP}:{LB_PORT}");
    assert!(
        wait_for(Duration::from_secs(5), || t.vip_holder().is_some()),
        "no node took the VIP\n{}",
        t.logs()
    );
    assert!(answers(&t, &vip), "no answer through the VIP\n{}", t.logs());
    let active = t.vip_holder().unwrap();
    let standby = 3 - active;

    // A calc script through the VIP across the failover: 60 expressions,
    // one every 25 ms; calc resends a request after its timeout.
    let script: String = (0..60).map(|i| format!("{i}+1\n")).collect();
    let mut calc = t
        .command_in_core(&binary("calc"))
        .args(["--timeout", "300ms", "--attempts", "5", &vip])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = calc.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for line in script.lines() {
            writeln!(stdin, "{line}").unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    // SIGKILL the LB holding the address; its supervisor (here: the test)
    // marks the node down the moment it is gone.
    let killed_at = now_s();
    t.process(lbs[active - 1]).signal(Signal::Kill).unwrap();
    t.process_mut(lbs[active - 1])
        .wait_timeout(Duration::from_secs(1));
    t.set_lb_down(active, true).unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || t.vip_holder() == Some(standby)),
        "LB {standby} did not take the VIP\n{}",
        t.logs()
    );
    // keepalived runs the notify script after it has set the address.
    let log = t.lb_master_log(standby);
    assert!(
        wait_for(Duration::from_secs(2), || !read_master_log(&log).is_empty()),
        "LB {standby} never recorded becoming master"
    );
    let took_at = *read_master_log(&log).last().unwrap();
    let failover = took_at - killed_at;
    eprintln!(
        "failover: LB {standby} became master {:.0} ms after LB {active} was killed",
        failover * 1e3
    );
    assert!(failover < 1.0, "failover took {failover:.3} s");

    feeder.join().unwrap();
    let out = calc.wait_with_output().unwrap();
    let results: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = (0..60).map(|i| (i + 1).to_string()).collect();
    assert!(
        out.status.success() && results == want,
        "calc lost or garbled answers across the failover: {results:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The killed node comes back (its supervisor restarts the LB and marks
    // it up once it answers) and stays a standby: nopreempt.
    let n = active;
    lbs[n - 1] = t.start_lb_node(n, &[]).unwrap();
    let own = format!("{}:{LB_PORT}", t.lb_node(n).unwrap().ip);
    assert!(wait_for(Duration::from_secs(10), || answers(&t, &own)));
    t.set_lb_down(n, false).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        t.vip_holder(),
        Some(standby),
        "the restarted node took the VIP back"
    );
    assert!(answers(&t, &vip));
}
