//! The topology itself: hosts reach each other across the bridge, raw
//! frames from the core reach a server's MAC, and nothing is left behind.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ipcs_common::sys::{netns, root_or_skip, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::{FrameBody, FrameRepr, Request, ETHERTYPE};
use ipcs_common::Op;
use ipcs_testbed::Topology;

fn namespaces() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

#[test]
fn hosts_talk_across_the_bridge_and_everything_is_removed() {
    if !root_or_skip(
        "hosts_talk_across_the_bridge_and_everything_is_removed",
        "network namespaces, veths",
    ) {
        return;
    }
    let topology = Topology::builder().servers(2).build().unwrap();
    let prefix = topology.prefix().to_owned();
    let server = topology.server(1).unwrap().clone();
    assert_eq!(server.ip.octets()[3], Topology::server_id(1));

    // TCP from the core to a listener in a server's namespace.
    let listener_ns = server.netns.clone();
    let addr = format!("{}:7999", server.ip);
    let accept = std::thread::spawn(move || {
        netns::enter_for_thread(&listener_ns).unwrap();
        let listener = TcpListener::bind("0.0.0.0:7999").unwrap();
        listener.set_nonblocking(false).unwrap();
        listener.accept().map(|_| ()).is_ok()
    });
    let core = topology.core_netns().unwrap().to_owned();
    let connect = std::thread::spawn(move || {
        netns::enter_for_thread(&core).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200))
                .is_ok()
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(connect.join().unwrap(), "core reaches the server over TCP");
    assert!(accept.join().unwrap());

    // A raw frame from the bridge reaches the server's eth0.
    let server_ns = server.netns.clone();
    let (mac_tx, mac_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        netns::enter_for_thread(&server_ns).unwrap();
        let eth0 = Interface::lookup("eth0").unwrap();
        let socket = PacketSocket::bind(&eth0, ETHERTYPE).unwrap();
        mac_tx.send(eth0.mac).unwrap();
        let mut batch = MsgBatch::new(8, 64);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if batch.recv_from(&socket).is_ok() {
                return batch
                    .iter()
                    .find_map(|d| FrameRepr::parse_bytes(d.data).ok());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    });
    let server_mac = mac_rx.recv().unwrap();
    let core = topology.core_netns().unwrap().to_owned();
    std::thread::spawn(move || {
        netns::enter_for_thread(&core).unwrap();
        let bridge = Interface::lookup("ipcs0").unwrap();
        let socket = PacketSocket::bind(&bridge, ETHERTYPE).unwrap();
        let repr = FrameRepr {
            dst: server_mac,
            src: bridge.mac,
            tag: 42,
            body: FrameBody::Request(Request {
                a: 2,
                b: 3,
                op: Op::Add,
            }),
        };
        let mut buf = [0u8; 64];
        socket.send(repr.emit_into(&mut buf)).unwrap();
    })
    .join()
    .unwrap();
    let got = receiver.join().unwrap().expect("frame arrives");
    assert_eq!(got.tag, 42);

    drop(topology);
    let left = namespaces();
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
}

#[test]
fn removed_server_loses_its_namespace() {
    if !root_or_skip(
        "removed_server_loses_its_namespace",
        "network namespaces, veths",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(2).build().unwrap();
    let gone = topology.server(0).unwrap().netns.clone();
    topology.remove_server(0).unwrap();
    assert!(topology.server(0).is_none());
    assert_eq!(topology.server_slots(), vec![1]);
    assert!(!namespaces().contains(&gone));
    let slot = topology.add_server().unwrap();
    assert_eq!(slot, 2);
    assert_eq!(topology.server(2).unwrap().ip.octets()[3], 13);
}

/// A bridge takes the lowest MAC of its ports unless one is set; the LB
/// sends from the bridge's MAC, so it must not change when servers come and go.
#[test]
fn the_bridge_keeps_its_mac_when_ports_come_and_go() {
    if !root_or_skip(
        "the_bridge_keeps_its_mac_when_ports_come_and_go",
        "network namespaces, veths",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(2).build().unwrap();
    let core = topology.core_netns().unwrap().to_owned();
    let mac_now = |core: &str| {
        let out = Command::new("ip")
            .args(["-n", core, "-br", "link", "show", "ipcs0"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_owned()
    };
    let before = mac_now(&core);
    topology.remove_server(0).unwrap();
    topology.add_server().unwrap();
    topology.add_server().unwrap();
    topology.remove_server(1).unwrap();
    assert_eq!(mac_now(&core), before);
}
