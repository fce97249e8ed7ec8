//! Benchmark: `LIST` round-trip latency while the registry is busy with
//! heartbeats. Run with
//!
//! ```text
//! cargo run --release -p ipcs-registry --example list_latency
//! ```
//!
//! The issue asks for 1,000 servers beating every 100 ms (10,000 beats/s).
//! Server ids are 1..=255, so at most 255 can be registered; by default the
//! benchmark registers all 255 and beats each every 25 ms (10,200 beats/s,
//! the same load), and opens 745 more idle client connections so the
//! registry also holds 1,000 connections. A separate client then sends
//! `LIST` and reads the full 255-entry answer, one at a time, and reports
//! the latency distribution.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use ipcs_common::registry_client::{fetch_list, fetch_stats};
use ipcs_registry::{Config, Registry};

#[derive(Debug, Parser)]
struct Args {
    /// Registered servers (1..=255).
    #[arg(long, default_value_t = 255)]
    servers: u8,
    /// Each server beats this often, in milliseconds.
    #[arg(long, default_value_t = 25)]
    beat_ms: u64,
    /// Extra idle client connections (after one LIST each).
    #[arg(long, default_value_t = 745)]
    idle: usize,
    /// LIST round trips to measure (after 1,000 warm-up ones).
    #[arg(long, default_value_t = 20_000)]
    lists: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let registry = Registry::bind(Config {
        listen: "127.0.0.1:0".parse()?,
        max_connections: 2000,
        ..Config::default()
    })?;
    let addr = registry.local_addr();
    let stop = registry.stop_handle();
    let reactor = std::thread::spawn(move || registry.run());

    let mut servers = Vec::new();
    for id in 1..=args.servers {
        let mut s = TcpStream::connect(addr)?;
        writeln!(
            s,
            "HELLO id={id} mac=02:00:00:00:01:{id:02x} ip=10.9.1.{id} udp=9000"
        )?;
        servers.push(s);
    }
    let mut idle = Vec::new();
    for _ in 0..args.idle {
        let mut s = TcpStream::connect(addr)?;
        fetch_list(&mut s, Duration::from_secs(5))?;
        idle.push(s);
    }
    let mut lb = TcpStream::connect(addr)?;
    lb.set_nodelay(true)?;
    let first = fetch_list(&mut lb, Duration::from_secs(5))?;
    anyhow::ensure!(
        first.servers.len() == usize::from(args.servers),
        "not all registered"
    );

    // One thread beats for every server on schedule.
    let beat = Duration::from_millis(args.beat_ms);
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let beater = {
        let beating = beating.clone();
        std::thread::spawn(move || -> std::io::Result<u64> {
            let mut sent = 0u64;
            let mut next = Instant::now();
            while beating.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut servers {
                    s.write_all(b"BEAT\n")?;
                    sent += 1;
                }
                next += beat;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(sent)
        })
    };

    let stat = |s: &mut TcpStream, name: &str| -> anyhow::Result<u64> {
        let stats = fetch_stats(s, Duration::from_secs(5))?;
        Ok(stats
            .into_iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| v))
    };
    let beats_before = stat(&mut lb, "beats_total")?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
    let started = Instant::now();
    for i in 0..1000 + args.lists {
        let t = Instant::now();
        let list = fetch_list(&mut lb, Duration::from_secs(5))?;
        let took = t.elapsed();
        anyhow::ensure!(
            list.servers.len() == usize::from(args.servers),
            "server lost: {}",
            list.servers.len()
        );
        if i >= 1000 {
            histogram.record(took.as_nanos() as u64 / 100)?; // 0.1 µs units
        }
    }
    let elapsed = started.elapsed();
    let beats = stat(&mut lb, "beats_total")? - beats_before;
    beating.store(false, std::sync::atomic::Ordering::Relaxed);
    beater.join().expect("beater")?;
    stop.stop();
    reactor.join().expect("reactor")?;

    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 10.0;
    println!(
        "LIST of {} servers, {} connections, {:.0} beats/s handled meanwhile",
        args.servers,
        usize::from(args.servers) + args.idle + 1,
        beats as f64 / elapsed.as_secs_f64()
    );
    println!(
        "{} round trips: median {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        histogram.len(),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 10.0
    );
    Ok(())
}
