//! `ipcs-bench`: IPCS vs nginx vs the direct path, side by side in one run.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use ipcs_bench::plot::{draw, read_hgrm};
use ipcs_bench::report::markdown;
use ipcs_bench::run::{run_all, BenchConfig, Scenario};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark IPCS against nginx's UDP proxy and the direct path on a netns topology (run as root)"
)]
struct Cli {
    /// Rate of the fixed-rate run of every scenario, requests per second.
    #[arg(long, default_value_t = 100_000)]
    rps: u64,
    /// Length of each fixed-rate run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// p99 bound of a "clean" rate for --find-max, in microseconds.
    #[arg(long, default_value_t = 1000)]
    p99_max_us: u64,
    /// Rate at which --find-max starts stepping up.
    #[arg(long, default_value_t = 20_000)]
    find_max_start: u64,
    /// How many servers the topology runs.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// loadgen's --sockets.
    #[arg(long, default_value_t = 8)]
    sockets: u32,
    /// loadgen's --threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Directory for .hgrm files, nginx configs and the plot.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Markdown file the table is written into (between the BENCH-TABLE markers).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    markdown: PathBuf,
    /// Only these scenarios (keys A-F, comma-separated); the table and plot
    /// are written only when all run.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the latency plot (SVG) goes.
    #[arg(long, default_value = "docs/bench-latency.svg")]
    plot: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = BenchConfig {
        servers: cli.servers,
        fixed_rps: cli.rps,
        duration: Duration::from_secs(cli.duration_s),
        p99_max: Duration::from_micros(cli.p99_max_us),
        find_max_start: cli.find_max_start,
        out_dir: cli.out_dir.clone(),
        loadgen_sockets: cli.sockets,
        loadgen_threads: cli.threads,
    };
    let scenarios = [
        (
            "A",
            Scenario::Ipcs {
                workers: 1,
                coalesce: true,
            },
        ),
        ("B", Scenario::Nginx { workers: 1 }),
        ("C", Scenario::Direct),
        (
            "D",
            Scenario::Ipcs {
                workers: 2,
                coalesce: true,
            },
        ),
        ("E", Scenario::Nginx { workers: 2 }),
        (
            "F",
            Scenario::Ipcs {
                workers: 1,
                coalesce: false,
            },
        ),
    ];
    let chosen: Vec<_> = scenarios
        .iter()
        .filter(|(k, _)| cli.only.is_empty() || cli.only.iter().any(|o| o == k))
        .copied()
        .collect();
    let rows = run_all(&config, &chosen)?;
    let table = markdown(&rows, cli.rps);
    println!("{table}");
    if chosen.len() != scenarios.len() {
        return Ok(());
    }

    let curves: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            read_hgrm(
                &cli.out_dir.join(format!("{}.hgrm", r.key)),
                &format!("{}: {}", r.key, r.name),
            )
            .ok()
        })
        .collect();
    if !curves.is_empty() {
        draw(
            &curves,
            &format!("Latency at {} rps offered", cli.rps),
            &cli.plot,
        )?;
        println!("plot: {}", cli.plot.display());
    }
    ipcs_bench::report::write_into_markdown(&cli.markdown, &table, &config_summary(&cli))?;
    println!("table written to {}", cli.markdown.display());
    Ok(())
}

fn config_summary(cli: &Cli) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "Run {date} on {cores} cores, kernel {}, {} servers; command: `deploy/bench.sh` \
         (`ipcs-bench --rps {} --duration-s {} --p99-max-us {} --sockets {} --threads {}`).",
        kernel.trim(),
        cli.servers,
        cli.rps,
        cli.duration_s,
        cli.p99_max_us,
        cli.sockets,
        cli.threads
    )
}
