//! Small helpers shared by the server's integration tests, on top of the
//! project's one topology harness (`ipcs_testbed`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ipcs_common::sys::{netns, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::records::{records, Record, MAX_ETHERNET_FRAME_LEN, MAX_RECORDS};
use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Reply, Request, ETHERTYPE};
use ipcs_common::Op;
use ipcs_testbed::Topology;

/// Skips (loudly; fails under `CI=true`) a test that is not run as root.
pub use ipcs_common::sys::root_or_skip;

/// Starts `ipcs-server` in server slot `slot` with exactly `args` (no
/// registry unless `args` names one) and waits until it serves. Returns
/// the process index.
pub fn start_server(topology: &mut Topology, slot: usize, args: &[&str]) -> usize {
    let netns = topology.server(slot).expect("server slot").netns.clone();
    let label = format!("server{}", Topology::server_id(slot));
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let index = topology
        .spawn(
            &label,
            Some(&netns),
            &ipcs_testbed::binary("ipcs-server"),
            &args,
        )
        .expect("spawn server");
    wait_serving(topology, index)
}

/// Waits until the server at process `index` says it serves; returns
/// `index`.
pub fn wait_serving(topology: &Topology, index: usize) -> usize {
    wait_for_log(
        topology,
        index,
        "serving backend frames",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("server did not start:\n{}", topology.logs()));
    index
}

/// Waits up to `within` for a line containing `needle` in process
/// `index`'s log; returns the line.
pub fn wait_for_log(
    topology: &Topology,
    index: usize,
    needle: &str,
    within: Duration,
) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let log = topology.process(index).log();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `work` on a thread inside namespace `ns` and returns its result
/// (the caller's thread stays where it is).
pub fn in_netns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        netns::enter_for_thread(&ns).expect("enter namespace");
        work()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// SIGTERMs process `index`, asserts it exits cleanly within 5 s, and
/// returns its final stats line.
pub fn terminate_for_stats(topology: &mut Topology, index: usize) -> String {
    let process = topology.process_mut(index);
    process
        .signal(ipcs_testbed::Signal::Term)
        .expect("send SIGTERM");
    let status = process
        .wait_timeout(Duration::from_secs(5))
        .expect("exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", process.log());
    wait_for_log(topology, index, "final stats", Duration::from_secs(1))
        .unwrap_or_else(|| panic!("no final stats line:\n{}", topology.process(index).log()))
}

/// Parses `name=value` from a stats line.
pub fn counter(line: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {line:?}"))
}

/// The MAC of `eth0` in namespace `ns`.
pub fn mac_in(ns: &str) -> MacAddr {
    in_netns(ns, || Interface::lookup("eth0").expect("eth0").mac)
}

/// The load balancer's side of the bridge: a raw socket on `ipcs0`.
pub struct Bridge {
    socket: PacketSocket,
    pub mac: MacAddr,
    rx: MsgBatch,
}

impl Bridge {
    pub fn open() -> Bridge {
        Bridge::on("ipcs0")
    }

    /// A raw socket on `name` in the calling thread's namespace.
    pub fn on(name: &str) -> Bridge {
        let iface = Interface::lookup(name).expect("interface");
        Bridge {
            socket: PacketSocket::bind(&iface, ETHERTYPE).expect("raw socket"),
            mac: iface.mac,
            rx: MsgBatch::new(64, MAX_ETHERNET_FRAME_LEN),
        }
    }

    pub fn send(&self, frame: &[u8]) {
        assert_eq!(self.socket.send(frame).expect("send frame"), frame.len());
    }

    pub fn request(&self, dst: MacAddr, tag: u64, a: u32, b: u32, op: Op) {
        let repr = FrameRepr {
            dst,
            src: self.mac,
            tag,
            body: FrameBody::Request(Request { a, b, op }),
        };
        let mut buf = [0u8; 64];
        self.send(repr.emit_into(&mut buf));
    }

    /// Every reply or error record received until one with tag `until`
    /// arrives (included), or `within` passes. (Capability records, which
    /// end every reply frame, are checked and left out.)
    pub fn receive_until(&mut self, until: u64, within: Duration) -> Vec<FrameRepr> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while Instant::now() < deadline {
            match self.rx.recv_from(&self.socket) {
                Ok(_) => {
                    for d in self.rx.iter() {
                        for record in records(d.data) {
                            match record.expect("well-formed reply") {
                                Record::Frame(frame) => got.push(frame),
                                Record::Capability { max_records, .. } => {
                                    assert_eq!(max_records, MAX_RECORDS)
                                }
                            }
                        }
                    }
                    if got.iter().any(|f| f.tag == until) {
                        return got;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        panic!("no frame with tag {until:#x} within {within:?}; got {got:?}");
    }
}

pub fn reply(to: MacAddr, from: MacAddr, tag: u64, result: u64, id: u8) -> FrameRepr {
    FrameRepr {
        dst: to,
        src: from,
        tag,
        body: FrameBody::Reply(Reply {
            result,
            server_id: id,
        }),
    }
}
