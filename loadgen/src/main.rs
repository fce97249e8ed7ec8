//! `loadgen`: command line of the IPCS load generator (see `loadgen --help`
//! and docs/LOADGEN.md). Parses arguments, wires SIGINT/SIGTERM to a stop
//! flag, runs, prints.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipcs_common::duration::parse_duration;
use ipcs_loadgen::args::resolve_target;
use ipcs_loadgen::findmax::{FindMaxConfig, Growth};
use ipcs_loadgen::mix::Mix;
use ipcs_loadgen::report::{write_hgrm, Micros};
use ipcs_loadgen::{run, search, Progress, Report, RunConfig};

/// Exit status when the target sent wrong or malformed replies.
const EXIT_WRONG: u8 = 3;
/// Exit status under `--require-clean` when the run was not clean (and no
/// reply was wrong, which 3 reports first).
const EXIT_NOT_CLEAN: u8 = 4;

/// Open-loop HSMAP load generator: sends requests at a fixed rate, checks
/// every reply, and reports coordinated-omission-corrected latency.
///
/// Exit status: 0 success, 1 error, 2 bad arguments, 3 the target sent
/// wrong or malformed replies, 4 (with --require-clean) a request was lost
/// or unsent, or answered with an error. SIGINT/SIGTERM stop early and still print
/// the report (a second one exits at once).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version = ipcs_common::version!())]
struct Args {
    /// The load balancer (or server) to load, as HOST:PORT.
    target: String,

    /// Requests per second to offer, sent on schedule whether or not
    /// earlier ones were answered.
    #[arg(short, long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rps: u64,

    /// How long to measure (e.g. 10s, 500ms, 2m).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Load sent before measuring starts, at the same rate, not counted.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,

    /// A request not answered within this time after it was scheduled is lost.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,

    /// UDP sockets (client addresses) the load is spread over: the
    /// connections of wrk2 and hey.
    #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    sockets: u32,

    /// Sending threads (each with its own receiving thread and its share of
    /// the sockets); at most --sockets.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,

    /// Operation mix as NAME=WEIGHT pairs (add, mul).
    #[arg(long, default_value = "add=1,mul=1")]
    mix: Mix,

    /// Most datagrams per sendmmsg/recvmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: u16,

    /// Shortest time between two rounds of sends: requests due in between
    /// leave together (up to this much late, which the latency includes and
    /// the report shows as send lag). Larger ticks cost less CPU at high rates.
    #[arg(long, default_value = "50us", value_parser = parse_duration)]
    tick: Duration,

    /// Send every datagram with its own sendmmsg entry instead of using UDP
    /// segmentation offload (GSO sends each socket's due requests in one
    /// system call; the target sees the same datagrams either way).
    #[arg(long)]
    no_gso: bool,

    /// Read every reply as its own datagram instead of accepting what the
    /// kernel hands over coalesced (UDP GRO: replies the target sent in one
    /// GSO send stay one message, split here). Either way each reply is
    /// checked and timed on its own; coalesced receive only spares the
    /// kernel, on this machine, cutting them apart.
    #[arg(long)]
    no_gro: bool,

    /// Seed for the operands (random by default); the same seed sends the
    /// same requests.
    #[arg(long)]
    seed: Option<u64>,

    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,

    /// Print the report as one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,

    /// Exit with status 4 unless the run was clean: every request of the
    /// measured phase answered correctly within --timeout (none lost, none
    /// unsent), no wrong or malformed reply (warm-up included; those exit 3)
    /// and no HSMAP error reply. Late and duplicate replies alone do not
    /// count. The report is printed either way.
    #[arg(long, conflicts_with = "find_max")]
    require_clean: bool,

    /// Also write the latency distribution to FILE in HdrHistogram's
    /// percentile format (.hgrm, values in milliseconds).
    #[arg(long, value_name = "FILE")]
    hgrm: Option<std::path::PathBuf>,

    /// Search for the highest rate that holds: step the rate up until fewer
    /// than --min-answered of the requests are answered in time or p99
    /// exceeds --p99-max, then bisect (halving first if even --start-rps
    /// fails). Giving --rps or --duration with it is an error (the steps
    /// use --start-rps and --step-duration).
    #[arg(long, conflicts_with_all = ["rps", "duration"])]
    find_max: bool,

    /// find-max: highest acceptable p99 latency.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    p99_max: Duration,

    /// find-max: smallest acceptable share of requests answered in time, in percent.
    #[arg(long, default_value_t = 99.9)]
    min_answered: f64,

    /// find-max: rate of the first step.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    start_rps: u64,

    /// find-max: multiply the rate by this after each step that held.
    #[arg(long, default_value_t = 1.5, conflicts_with = "step_rps")]
    step_factor: f64,

    /// find-max: add this many rps after each step that held (instead of
    /// --step-factor).
    #[arg(long)]
    step_rps: Option<u64>,

    /// find-max: how long each step runs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    step_duration: Duration,

    /// find-max: never offer more than this.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_rps: u64,

    /// find-max: bisection steps between the last rate that held and the
    /// first that failed.
    #[arg(long, default_value_t = 3)]
    refine: u32,

    /// find-max: run a failed step again at the same rate up to this many
    /// times; the rate fails only if every attempt failed (so one blip on a
    /// shared machine does not end the ramp). Wrong replies are never retried.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=5))]
    step_retries: u32,
}

fn print_progress(p: &Progress) {
    eprintln!(
        "[{:>6.1}s]{} offered {:>9} answered {:>9} lost {:>7} wrong {:>5} p50 {:>9} p99 {:>9}",
        p.elapsed.as_secs_f64(),
        if p.in_warmup { " (warm-up)" } else { "" },
        p.issued,
        p.answered,
        p.lost,
        p.wrong,
        Micros(p.p50_us).to_string(),
        Micros(p.p99_us).to_string(),
    );
}

fn main() -> anyhow::Result<ExitCode> {
    ipcs_common::logging::init();
    let args: Args = ipcs_common::cli::parse("IPCS_LOADGEN");
    let target = resolve_target(&args.target)?;
    anyhow::ensure!(
        args.threads <= args.sockets,
        "--threads ({}) cannot exceed --sockets ({})",
        args.threads,
        args.sockets
    );
    anyhow::ensure!(
        (0.0..=100.0).contains(&args.min_answered),
        "--min-answered is a percentage from 0 to 100"
    );
    anyhow::ensure!(
        args.step_factor > 1.0 && args.step_factor <= 100.0,
        "--step-factor must be above 1 (and at most 100)"
    );
    anyhow::ensure!(args.step_rps != Some(0), "--step-rps must be at least 1");
    anyhow::ensure!(
        args.tick <= Duration::from_millis(100),
        "--tick must be at most 100ms"
    );

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The second signal exits at once; the first asks for a clean stop.
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())?;
        signal_hook::flag::register(signal, stop.clone())?;
    }

    let cfg = RunConfig {
        target,
        rps: args.rps,
        duration: args.duration,
        warmup: args.warmup,
        timeout: args.timeout,
        sockets: args.sockets,
        threads: args.threads,
        mix: args.mix,
        batch: usize::from(args.batch),
        tick: args.tick,
        gso: !args.no_gso,
        gro: !args.no_gro,
        key: args.seed,
    };
    let mut progress = print_progress;
    let progress: Option<&mut dyn FnMut(&Progress)> =
        (!args.quiet).then_some(&mut progress as &mut dyn FnMut(&Progress));
    let report: Report = if args.find_max {
        let fm = FindMaxConfig {
            start_rps: args.start_rps,
            growth: match args.step_rps {
                Some(n) => Growth::Increment(n),
                None => Growth::Factor(args.step_factor),
            },
            max_rps: args.max_rps,
            step_duration: args.step_duration,
            p99_max: args.p99_max,
            min_answered: args.min_answered / 100.0,
            refine_steps: args.refine,
            retries: args.step_retries,
        };
        let quiet = args.quiet;
        let mut on_step = move |r: &Report| {
            if !quiet {
                eprintln!(
                    "step {:>9} rps: achieved {:.1}, answered {:.3} %, p99 {}",
                    r.offered_rps,
                    r.achieved_rps,
                    r.answered_share() * 100.0,
                    Micros(r.latency_us.p99)
                );
            }
        };
        search::find_max(&cfg, fm, &stop, &mut on_step, progress)?
    } else {
        run(&cfg, &stop, progress)?
    };

    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if let Some(path) = &args.hgrm {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        write_hgrm(&report.latency, &mut out)
            .and_then(|_| out.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.saw_wrong() {
        ExitCode::from(EXIT_WRONG)
    } else if args.require_clean && !report.is_clean() {
        eprintln!(
            "loadgen: not clean: {} lost, {} unsent of {} scheduled, errors {:?}",
            report.lost, report.unsent, report.scheduled, report.errors
        );
        ExitCode::from(EXIT_NOT_CLEAN)
    } else {
        ExitCode::SUCCESS
    })
}
