//! Benchmark: backend frames answered per second by one `ipcs-server`.
//!
//! Builds a testbed topology with one server namespace, starts the server
//! binary found beside this example (build it in the same profile), and
//! from the bridge in the core namespace — where the load balancer sits —
//! keeps `--window` request frames in flight on a raw socket, sent and
//! received in batches (sendmmsg/recvmmsg). Every reply is checked (tag,
//! result, id). Prints frames answered per second, second by second, and the
//! mean. Needs root; everything is removed at the end.
//!
//! ```sh
//! cargo build --release -p ipcs-server --bins --examples
//! target/release/examples/frame_rate --seconds 10
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ipcs_common::sys::{is_root, netns, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Request, ETHERTYPE};
use ipcs_common::Op;
use ipcs_testbed::Topology;

/// Frames answered per second by one ipcs-server (see the module docs).
#[derive(Debug, Parser)]
struct Args {
    /// Seconds to measure (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Request frames kept in flight.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Frames per sendmmsg/recvmmsg on the generator side.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Extra arguments for the server (e.g. `--batch 32`).
    #[arg(long, allow_hyphen_values = true, num_args = 1..)]
    server_args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !is_root() {
        bail!("needs root (network namespaces, raw sockets)");
    }
    let mut topology = Topology::builder().servers(1).build()?;
    let ns = topology.server(0).context("server slot")?.netns.clone();
    let mut server_args: Vec<String> = ["--iface", "eth0", "--registry", "off"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    server_args.extend(args.server_args.iter().cloned());
    let server_bin = ipcs_testbed::binary("ipcs-server");
    println!("server: {}", server_bin.display());
    let index = topology.spawn("server", Some(&ns), &server_bin, &server_args)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !topology
        .process(index)
        .log()
        .contains("serving backend frames")
    {
        if Instant::now() > deadline {
            bail!("server did not start:\n{}", topology.logs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let server_mac = {
        let ns = ns.clone();
        std::thread::spawn(move || -> anyhow::Result<MacAddr> {
            netns::enter_for_thread(&ns)?;
            Ok(Interface::lookup("eth0")?.mac)
        })
        .join()
        .expect("look-up thread")?
    };
    let core = topology.core_netns().context("core namespace")?.to_owned();
    let server_pid = topology.process(index).pid();
    let cpu_before = cpu_seconds(server_pid)?;
    let per_second = std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
        netns::enter_for_thread(&core)?;
        generate(&args, server_mac, Topology::server_id(0))
    })
    .join()
    .expect("generator thread")?;
    let server_cpu = cpu_seconds(server_pid)? - cpu_before;

    let process = topology.process_mut(index);
    process.signal(ipcs_testbed::Signal::Term)?;
    process.wait_timeout(Duration::from_secs(5));
    let final_stats = process
        .log()
        .lines()
        .find(|l| l.contains("final stats"))
        .map(str::to_owned)
        .unwrap_or_default();

    let measured = &per_second[1..];
    let mean = measured.iter().sum::<u64>() as f64 / measured.len() as f64;
    for (s, n) in measured.iter().enumerate() {
        println!("second {:>2}: {n:>9} frames answered", s + 1);
    }
    println!(
        "min {} max {} mean {:.0} frames/s",
        measured.iter().min().unwrap(),
        measured.iter().max().unwrap(),
        mean
    );
    let total: u64 = per_second.iter().sum();
    let wall = per_second.len() as f64;
    println!(
        "server CPU {server_cpu:.2} s in {wall:.0} s ({:.0}% of one core): {:.0} frames per server CPU-second",
        100.0 * server_cpu / wall,
        total as f64 / server_cpu
    );
    println!("server {final_stats}");
    Ok(())
}

/// User + system CPU time of process `pid` so far, from /proc (includes
/// the kernel work done in its system calls, e.g. sending replies).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    let hz: f64 = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    Ok(ticks as f64 / hz)
}

/// Keeps `window` requests in flight for 1 + `seconds` seconds; returns the
/// replies counted in each second (the first is warm-up).
fn generate(args: &Args, server: MacAddr, id: u8) -> anyhow::Result<Vec<u64>> {
    let bridge = Interface::lookup("ipcs0")?;
    let socket = PacketSocket::bind(&bridge, ETHERTYPE)?;
    socket.set_buffer_sizes(8 << 20, 8 << 20)?;
    let batch = args.batch.clamp(1, 1024);
    let mut tx = MsgBatch::new(batch, 64);
    let mut rx = MsgBatch::new(batch, 128);
    // Tags of requests in flight, oldest first; a reply's tag must be one.
    let mut in_flight: VecDeque<u64> = VecDeque::with_capacity(args.window);
    let mut next_tag: u64 = 0;
    let mut counts = vec![0u64; args.seconds as usize + 1];
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds + 1);
    let mut last_progress = Instant::now();
    let mut lost = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        while in_flight.len() < args.window && !tx.is_full() {
            let tag = next_tag;
            next_tag = next_tag.wrapping_add(1);
            let repr = FrameRepr {
                dst: server,
                src: bridge.mac,
                tag,
                body: FrameBody::Request(Request {
                    a: tag as u32,
                    b: 3,
                    op: Op::Mul,
                }),
            };
            tx.push_with(None, |slot| repr.emit_into(slot).len());
            in_flight.push_back(tag);
        }
        let report = tx.send_to(&socket);
        if report.failed > 0 {
            bail!("kernel refused frames: {:?}", report.last_error);
        }
        match rx.recv_from(&socket) {
            Ok(_) => {
                let second = (now - start).as_secs() as usize;
                for d in rx.iter() {
                    let frame = FrameRepr::parse_bytes(d.data)?;
                    let FrameBody::Reply(reply) = frame.body else {
                        bail!("not a reply: {frame:?}");
                    };
                    if reply.server_id != id || reply.result != u64::from(frame.tag as u32) * 3 {
                        bail!("wrong reply {frame:?}");
                    }
                    // Replies come in order; anything older was lost.
                    while let Some(tag) = in_flight.pop_front() {
                        if tag == frame.tag {
                            break;
                        }
                        lost += 1;
                    }
                    counts[second] += 1;
                }
                last_progress = now;
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if now - last_progress > Duration::from_millis(200) && !in_flight.is_empty() {
                    // The window was lost somewhere; start afresh.
                    lost += in_flight.len() as u64;
                    in_flight.clear();
                    last_progress = now;
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    println!("frames lost: {lost}");
    Ok(counts)
}
