//! `ipcs-chaos`: the chaos soak on a netns topology (run as root).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ipcs_bench::chaos::{
    allowed_losses, load_is_clean, render_schedule, run, schedule_for, ChaosConfig,
};
use ipcs_bench::loadgen::Measurement;

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
    /// Judge a load run elsewhere (deploy/chaos.sh's, on Docker) by this
    /// soak's rule and exit: FILE is loadgen's --json report; prints
    /// `clean` or `dirty` and why, exits 0 when clean, 1 otherwise. Needs no
    /// root.
    #[arg(long, value_name = "FILE")]
    judge_load: Option<PathBuf>,
    /// With --judge-load: the failover the run had, as `AT_S,AFTER_S`
    /// (the kill, seconds into loadgen's measured phase, and the time to
    /// the new master); requests may then be lost from 100 ms before the
    /// kill to 100 ms after the new master.
    #[arg(long, value_name = "AT_S,AFTER_S", requires = "judge_load")]
    failover: Option<String>,
}

/// `--judge-load`: the verdict on loadgen's report, by the soak's rule.
fn judge(file: &std::path::Path, failover: Option<&str>) -> Result<bool> {
    let text = std::fs::read_to_string(file)?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let m = Measurement::from_json(&value).map_err(anyhow::Error::msg)?;
    let allowed = match failover {
        None => None,
        Some(s) => {
            let secs = |x: &str| -> Result<Duration> {
                Ok(Duration::try_from_secs_f64(x.trim().parse::<f64>()?)?)
            };
            let (at, after) = s
                .split_once(',')
                .ok_or_else(|| anyhow::anyhow!("--failover {s:?}: want AT_S,AFTER_S"))?;
            Some(allowed_losses(secs(at)?, secs(after)?))
        }
    };
    let clean = load_is_clean(&m, allowed);
    let show = |w: Option<(Duration, Duration)>| {
        w.map_or("none".to_owned(), |(a, b)| {
            format!("{:.3}-{:.3} s", a.as_secs_f64(), b.as_secs_f64())
        })
    };
    println!(
        "{} sent {} answered {} lost {} wrong {} error replies {}; losses allowed {}; loss window {}",
        if clean { "clean" } else { "dirty" },
        m.sent,
        m.answered,
        m.lost,
        m.wrong,
        m.errors,
        show(allowed),
        show(m.loss_window)
    );
    Ok(clean)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(file) = &cli.judge_load {
        if judge(file, cli.failover.as_deref())? {
            return Ok(());
        }
        std::process::exit(1);
    }
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
