//! The 10-second chaos soak, as part of every test run: the real binaries on
//! a netns topology, faults while loadgen offers 20,000 rps; every request
//! must get a correct answer.

use std::time::Duration;

use ipcs_bench::chaos::{run, ChaosConfig, Fault};

#[test]
fn ten_second_soak_loses_nothing() {
    if !ipcs_common::sys::root_or_skip(
        "ten_second_soak_loses_nothing",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("ipcs-chaos-{}", std::process::id()));
    let report = run(&ChaosConfig {
        duration: Duration::from_secs(10),
        rps: 20_000,
        servers: 4,
        far_servers: 0,
        out_dir: out_dir.clone(),
    })
    .expect("chaos run");
    if report.clean() {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    println!("{}", report.render());
    assert!(
        report.load.sent >= 190_000,
        "loadgen offered the load: {:?}",
        report.load
    );
    assert_eq!(report.load.wrong, 0, "{}", report.render());
    assert_eq!(report.load.lost, 0, "{}", report.render());
    assert_eq!(report.load.errors, 0, "{}", report.render());
    // The killed server stops getting traffic quickly (ejection, then the registry).
    let kill = report
        .faults
        .iter()
        .find(|f| f.fault == Fault::KillServer(0))
        .unwrap();
    assert!(
        kill.traffic_stopped_after.unwrap() < Duration::from_millis(1500),
        "{}",
        report.render()
    );
}
