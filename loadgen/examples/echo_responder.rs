//! A trivial batched HSMAP responder, to measure loadgen alone:
//!
//! ```text
//! cargo run --release -p ipcs-loadgen --example echo_responder -- --bind 127.0.0.1:9000
//! loadgen --rps 200000 127.0.0.1:9000
//! ```
//!
//! It answers every request with `Op::apply` (optionally misbehaving) until
//! SIGINT/SIGTERM, then prints what it did.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ipcs_common::duration::parse_duration;
use ipcs_loadgen::responder::{bind, serve, Faults, ResponderConfig, Stall};

/// A trivial HSMAP responder over UDP (for benchmarking loadgen itself).
#[derive(Debug, Parser)]
struct Args {
    /// Address to answer on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: SocketAddr,
    /// Reply with server ids 1..=N in turn.
    #[arg(long, default_value_t = 1)]
    servers: u8,
    /// Ignore every N-th request (0: never).
    #[arg(long, default_value_t = 0)]
    drop_one_in: u64,
    /// Answer every N-th request wrongly (0: never).
    #[arg(long, default_value_t = 0)]
    wrong_one_in: u64,
    /// Answer at most N requests per second, drop the rest (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_rps: u64,
    /// Stop answering this long after the first request...
    #[arg(long, value_parser = parse_duration, requires = "stall_for")]
    stall_after: Option<Duration>,
    /// ...for this long, then answer everything held back.
    #[arg(long, value_parser = parse_duration)]
    stall_for: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    ipcs_common::logging::init();
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let cfg = ResponderConfig {
        bind: args.bind,
        server_ids: args.servers.max(1),
        faults: Faults {
            drop_one_in: args.drop_one_in,
            wrong_one_in: args.wrong_one_in,
            stall: args.stall_after.map(|after| Stall {
                after,
                length: args.stall_for.unwrap_or_default(),
            }),
            max_rps: args.max_rps,
        },
    };
    let socket = bind(cfg.bind)?;
    tracing::info!(addr = %socket.local_addr()?, "answering HSMAP requests");
    let stats = serve(socket, &cfg, &stop)?;
    tracing::info!(?stats, "stopped");
    Ok(())
}
