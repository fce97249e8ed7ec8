//! The load balancer's benchmark, reproducible in one command (as root,
//! after `cargo build --release --workspace --bins`):
//!
//! ```text
//! cargo run --release -p ipcs-lb --example bench -- [LB FLAGS...] [-- LOADGEN FLAGS...]
//! ```
//!
//! Builds the testbed topology (bridge `ipcs0` in a core namespace, the
//! registry and three servers in namespaces of their own), starts the real
//! binaries, starts `ipcs-lb` on `127.0.0.1:8080` in the core with the given
//! flags, and runs `loadgen --find-max` there (default: from 50,000 rps in
//! steps of 1.2x, 8 sockets, held = 99.9 % answered and p99 <= 1 ms). The
//! LB's log and loadgen's report are printed; everything is removed at the
//! end. A 2-second run at 20,000 rps warms everything up first.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ipcs_testbed::{binary, Topology};

fn main() {
    // Errors are returned, not panicked: release builds abort on panic,
    // which would skip the topology's clean-up.
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run() -> Result<i32, String> {
    if !ipcs_common::sys::is_root() {
        return Err("needs root (network namespaces, raw sockets)".into());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (lb_args, loadgen_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let loadgen_args = if loadgen_args.is_empty() {
        [
            "--find-max",
            "--start-rps",
            "50000",
            "--step-factor",
            "1.2",
            "--sockets",
            "8",
        ]
        .map(String::from)
        .to_vec()
    } else {
        loadgen_args
    };

    let err = |e: ipcs_testbed::TopologyError| e.to_string();
    // Dropped at the end of this function: processes stopped, namespaces
    // removed.
    let mut topo = Topology::builder().servers(3).build().map_err(err)?;
    topo.start_registry(&[]).map_err(err)?;
    for slot in topo.server_slots() {
        topo.start_server(slot, &[]).map_err(err)?;
    }
    let mut all = vec!["--listen", "127.0.0.1:8080", "--admin", "127.0.0.1:7071"];
    all.extend(lb_args.iter().map(String::as_str));
    let lb = topo.start_lb(&all).map_err(err)?;

    // Ready when the LB has logged its list of three servers.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !topo.process(lb).log().contains("servers=[11, 12, 13]") {
        if Instant::now() >= deadline {
            return Err(format!("LB not ready:\n{}", topo.logs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A short warm-up, so the first measured step does not pay for
    // first-touch page faults and cold caches in any process.
    let _ = topo
        .command_in_core(&binary("loadgen"))
        .args([
            "--rps",
            "20000",
            "--duration",
            "2s",
            "--quiet",
            "127.0.0.1:8080",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    let status = topo
        .command_in_core(&binary("loadgen"))
        .args(&loadgen_args)
        .arg("127.0.0.1:8080")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("loadgen: {e}"))?;
    println!("--- ipcs-lb log ---\n{}", topo.process(lb).log());
    Ok(status.code().unwrap_or(1))
}
