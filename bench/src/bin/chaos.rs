//! `ipcs-chaos`: the chaos soak on a netns topology (run as root).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ipcs_bench::chaos::{render_schedule, run, schedule_for, ChaosConfig};

#[derive(Parser)]
#[command(
    version,
    about = "Steady load through ipcs-lb while servers are killed, frozen, added, removed and cut off and the \
             registry restarts (and, in runs of 30 s or more, one server and then all are slowed by 30 ms; \
             with --lbs 2+, the LB holding the VIP is killed; with --far-servers, the tunnel to the second \
             host is cut for 2 s); fails unless every request is answered correctly or lost inside the \
             measured failover window"
)]
struct Cli {
    /// Length of the soak, in seconds (30 or more to include the
    /// slow-server and brownout faults).
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Offered load, requests per second.
    #[arg(long, default_value_t = 20_000)]
    rps: u64,
    /// Servers at the start (one more is added and one removed during the run).
    #[arg(long, default_value_t = 4)]
    servers: usize,
    /// Servers on a second (simulated) host, whose bridge is joined to the
    /// first's by a VXLAN tunnel over a veth "wire"; with any, the schedule
    /// also cuts that wire for 2 s. 0: one host.
    #[arg(long, default_value_t = 0)]
    far_servers: usize,
    /// Load balancers: 2 or more run an LB tier sharing a VIP through
    /// keepalived (testbed/src/vrrp.rs), and the schedule kills the LB
    /// holding the VIP (losses are then accepted only inside the measured
    /// failover window); 1 runs the single LB, as deploy/chaos.sh's Docker
    /// deployment does.
    #[arg(long, default_value_t = 2)]
    lbs: usize,
    /// Directory for loadgen's latency histogram.
    #[arg(long, default_value = "target/chaos")]
    out_dir: PathBuf,
    /// Print the fault schedule for --duration-s, one `SECONDS FAULT [SLOT]
    /// [DELAY]` line per step in time order (seconds after the load starts;
    /// DELAY ends the slowness steps), and exit: deploy/chaos.sh runs every
    /// fault at the time read from here, typing none. Needs no root.
    #[arg(long)]
    print_schedule: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.print_schedule {
        print!(
            "{}",
            render_schedule(&schedule_for(
                Duration::from_secs(cli.duration_s),
                cli.lbs >= 2,
                cli.far_servers > 0
            ))
        );
        return Ok(());
    }
    let report = run(&ChaosConfig {
        duration: Duration::from_secs(cli.duration_s),
        rps: cli.rps,
        servers: cli.servers,
        far_servers: cli.far_servers,
        lbs: cli.lbs,
        out_dir: cli.out_dir,
    })?;
    print!("{}", report.render());
    if report.clean() {
        println!("chaos: clean: zero wrong, zero error replies, nothing lost outside the failover window");
        Ok(())
    } else {
        anyhow::bail!("chaos: requests were lost, wrong or answered with errors")
    }
}
