//! deploy/chaos.sh takes every fault and its time from `ipcs-chaos
//! --print-schedule` and refuses a fault it does not know, which would only
//! show in the Docker soak. This catches a fault added to the schedule
//! without its case in the script, on every test run.

use std::time::Duration;

use ipcs_bench::chaos::{render_schedule, schedule};

#[test]
fn chaos_sh_has_a_case_for_every_fault_of_the_schedule() {
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/chaos.sh"))
            .expect("deploy/chaos.sh is readable");
    // The long run with an LB tier has every kind of fault (the short one
    // lacks slowness).
    let text = render_schedule(&schedule(Duration::from_secs(60), true));
    for line in text.lines() {
        let fault = line.split_whitespace().nth(1).expect("SECONDS FAULT ...");
        let case = format!("    {fault})");
        assert!(
            script.lines().any(|l| l.starts_with(&case)),
            "deploy/chaos.sh has no `{fault})` case for: {line}"
        );
    }
}
