//! The two-host topology itself: a frame exactly as long as the backend
//! MTU crosses the VXLAN tunnel to the far host, one byte more is refused
//! at the sender, nothing crosses while the wire is cut and frames cross
//! again once it is back, and nothing is left behind.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ipcs_common::sys::{netns, root_or_skip, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::frame::ETHERNET_LEN;
use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Request, ETHERTYPE};
use ipcs_common::Op;
use ipcs_testbed::topology::BRIDGE;
use ipcs_testbed::Topology;

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A frame of exactly `len` bytes to `dst`: one request record tagged
/// `tag`, then zeros (which end the record list).
fn frame_of(len: usize, dst: MacAddr, src: MacAddr, tag: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    FrameRepr {
        dst,
        src,
        tag,
        body: FrameBody::Request(Request {
            a: 6,
            b: 7,
            op: Op::Mul,
        }),
    }
    .emit_into(&mut buf);
    buf
}

#[test]
fn a_frame_at_the_tunnel_mtu_crosses_and_a_cut_wire_stops_frames() {
    if !root_or_skip(
        "a_frame_at_the_tunnel_mtu_crosses_and_a_cut_wire_stops_frames",
        "network namespaces, veths, VXLAN, raw sockets",
    ) {
        return;
    }
    const MTU: usize = 300;
    let topology = Topology::builder()
        .servers(1)
        .far_servers(1)
        .link_mtu(MTU)
        .build()
        .unwrap();
    let prefix = topology.prefix().to_owned();
    assert!(!topology.is_far(0) && topology.is_far(1));
    let far = topology.server(1).unwrap().clone();
    assert_eq!(far.ip.octets()[3], Topology::server_id(1));

    // The far server's side: every IPCS frame it sees, as (length, tag).
    let (mac_tx, mac_rx) = mpsc::channel();
    let (frame_tx, frame_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (netns_name, stop) = (far.netns.clone(), stop.clone());
        std::thread::spawn(move || {
            netns::enter_for_thread(&netns_name).unwrap();
            let eth0 = Interface::lookup("eth0").unwrap();
            let socket = PacketSocket::bind(&eth0, ETHERTYPE).unwrap();
            mac_tx.send((eth0.mac, eth0.mtu)).unwrap();
            let mut batch = MsgBatch::new(8, 2048);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if batch.recv_from(&socket).is_ok() {
                    for d in batch.iter() {
                        if let Ok(repr) = FrameRepr::parse_bytes(d.data) {
                            frame_tx.send((d.data.len(), repr.tag)).unwrap();
                        }
                    }
                } else {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let (far_mac, far_mtu) = mac_rx.recv().unwrap();
    assert_eq!(far_mtu, MTU, "the far server's eth0 has the backend MTU");

    // The core's side, where the load balancer sits.
    let core = topology.core_netns().unwrap().to_owned();
    let (send_tx, send_rx) = mpsc::channel::<(usize, u64)>();
    let (sent_tx, sent_rx) = mpsc::channel();
    let sender = std::thread::spawn(move || {
        netns::enter_for_thread(&core).unwrap();
        let bridge = Interface::lookup(BRIDGE).unwrap();
        sent_tx.send(Ok(bridge.mtu)).unwrap();
        let socket = PacketSocket::bind(&bridge, ETHERTYPE).unwrap();
        for (len, tag) in send_rx {
            let frame = frame_of(len, far_mac, bridge.mac, tag);
            sent_tx
                .send(socket.send(&frame).map_err(|e| e.raw_os_error()))
                .unwrap();
        }
    });
    assert_eq!(sent_rx.recv().unwrap(), Ok(MTU), "the bridge has it too");
    let send = |len: usize, tag: u64| {
        send_tx.send((len, tag)).unwrap();
        sent_rx.recv().unwrap()
    };
    let arrived = |tag: u64, within: Duration| {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match frame_rx.recv_timeout(left) {
                Ok((len, t)) if t == tag => return Some(len),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        None
    };

    // Exactly the MTU after the Ethernet header: sent and received whole.
    // (The bridge learns the far MAC only from traffic; the first frames
    // are flooded, which reaches it all the same.)
    let limit = ETHERNET_LEN + MTU;
    assert_eq!(send(limit, 1), Ok(limit));
    assert_eq!(arrived(1, Duration::from_secs(3)), Some(limit));
    // One byte more is refused by the kernel before it leaves.
    assert_eq!(send(limit + 1, 2), Err(Some(libc::EMSGSIZE)));

    // The wire cut: nothing crosses.
    topology.set_tunnel(false).unwrap();
    assert_eq!(send(limit, 3), Ok(limit));
    assert_eq!(arrived(3, Duration::from_millis(500)), None);
    // Back: frames cross again.
    topology.set_tunnel(true).unwrap();
    let back = Instant::now();
    let mut tag = 4;
    loop {
        assert_eq!(send(limit, tag), Ok(limit));
        if arrived(tag, Duration::from_millis(100)).is_some() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "never crossed again"
        );
        tag += 1;
    }

    drop(send_tx);
    sender.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    drop(topology);
    let left = namespaces();
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
}

#[test]
fn the_default_backend_mtu_of_two_hosts_is_the_overlays() {
    if !root_or_skip(
        "the_default_backend_mtu_of_two_hosts_is_the_overlays",
        "network namespaces, veths, VXLAN",
    ) {
        return;
    }
    let topology = Topology::builder().far_servers(1).build().unwrap();
    let far = topology.far_host().unwrap();
    assert_eq!(far.link_mtu, 1450);
    let mtu_of = |ns: &str, dev: &str| {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "link", "show", dev])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "mtu");
        words.next().unwrap_or_default().to_owned()
    };
    let core = topology.core_netns().unwrap();
    assert_eq!(mtu_of(core, BRIDGE), "1450");
    assert_eq!(mtu_of(core, "vx0"), "1450");
    assert_eq!(mtu_of(core, "wire0"), "1500");
    assert_eq!(mtu_of(&far.netns, BRIDGE), "1450");
    assert_eq!(mtu_of(&topology.server(0).unwrap().netns, "eth0"), "1450");
    // A second host needs a core namespace of its own.
    assert!(Topology::builder()
        .far_servers(1)
        .core(ipcs_testbed::Core::Root)
        .build()
        .is_err());
}
