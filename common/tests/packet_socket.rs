//! Real raw sockets over a real veth pair: frames sent on one end arrive on
//! the other, only the IPCS EtherType is delivered, and a fanout group
//! splits frames by a byte of the tag. Needs root (CI runs as root).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipcs_common::sys::{root_or_skip, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Request, ETHERTYPE, TAG_LOW_BYTE_OFFSET};
use ipcs_common::Op;

/// A veth pair removed on drop, also when the test panics.
struct VethPair {
    a: String,
    b: String,
}

impl VethPair {
    fn new() -> VethPair {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("ipt{}x{}", std::process::id() % 100_000, n);
        let pair = VethPair {
            a: format!("{base}a"),
            b: format!("{base}b"),
        };
        ip(&[
            "link", "add", &pair.a, "type", "veth", "peer", "name", &pair.b,
        ]);
        ip(&["link", "set", &pair.a, "up"]);
        ip(&["link", "set", &pair.b, "up"]);
        pair
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.a]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

fn frame(dst: MacAddr, src: MacAddr, tag: u64) -> Vec<u8> {
    let repr = FrameRepr {
        dst,
        src,
        tag,
        body: FrameBody::Request(Request {
            a: 50,
            b: 1337,
            op: Op::Mul,
        }),
    };
    let mut buf = [0u8; 64];
    repr.emit_into(&mut buf).to_vec()
}

fn receive_all(socket: &PacketSocket, want: usize, within: Duration) -> Vec<FrameRepr> {
    let mut batch = MsgBatch::new(64, 128);
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && got.len() < want {
        match batch.recv_from(socket) {
            Ok(_) => got.extend(
                batch
                    .iter()
                    .filter_map(|d| FrameRepr::parse_bytes(d.data).ok()),
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    got
}

#[test]
fn frames_cross_a_veth_pair() {
    if !root_or_skip("frames_cross_a_veth_pair", "veths, raw sockets") {
        return;
    }
    let pair = VethPair::new();
    let a = Interface::lookup(&pair.a).unwrap();
    let b = Interface::lookup(&pair.b).unwrap();
    let tx = PacketSocket::bind(&a, ETHERTYPE).unwrap();
    let rx = PacketSocket::bind(&b, ETHERTYPE).unwrap();
    let mut out = MsgBatch::new(64, 64);
    for tag in 0..20 {
        assert!(out.push(&frame(b.mac, a.mac, tag), None));
    }
    // Another EtherType on the same link must not reach the IPCS socket.
    let mut ipv4 = frame(b.mac, a.mac, 999);
    ipv4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    tx.send(&ipv4).unwrap();
    assert_eq!(out.send_to(&tx).sent, 20);

    let got = receive_all(&rx, 20, Duration::from_secs(2));
    assert!(
        receive_all(&rx, 1, Duration::from_millis(100)).is_empty(),
        "only 0x88b5 frames are delivered"
    );
    let tags: Vec<u64> = got.iter().map(|f| f.tag).collect();
    assert_eq!(tags, (0..20).collect::<Vec<_>>());
    assert!(got.iter().all(|f| f.src == a.mac && f.dst == b.mac));
    // The sender does not hear its own frames.
    assert!(receive_all(&tx, 1, Duration::from_millis(100)).is_empty());
}

#[test]
fn fanout_splits_frames_by_tag_byte() {
    if !root_or_skip("fanout_splits_frames_by_tag_byte", "veths, raw sockets") {
        return;
    }
    let pair = VethPair::new();
    let a = Interface::lookup(&pair.a).unwrap();
    let b = Interface::lookup(&pair.b).unwrap();
    let tx = PacketSocket::bind(&a, ETHERTYPE).unwrap();
    let (_group, members) = fanout_group(&b, 2);
    for tag in 0..40u64 {
        tx.send(&frame(b.mac, a.mac, tag)).unwrap();
    }
    assert_split_by_tag(&members, 40);
}

/// A fanout group of `n` sockets on `iface` split by the tag's low byte,
/// made the way the load balancer makes it: the first member creates it
/// under a kernel-chosen id, the others join that id.
fn fanout_group(iface: &Interface, n: u32) -> (u16, Vec<PacketSocket>) {
    let first = PacketSocket::bind(iface, ETHERTYPE).unwrap();
    let group = first
        .create_fanout_by_byte(TAG_LOW_BYTE_OFFSET as u16, n)
        .unwrap();
    let mut members = vec![first];
    for _ in 1..n {
        let s = PacketSocket::bind(iface, ETHERTYPE).unwrap();
        s.join_fanout_by_byte(group, TAG_LOW_BYTE_OFFSET as u16, n)
            .unwrap();
        members.push(s);
    }
    (group, members)
}

/// Each member got exactly its share of `sent` frames (tags 0..sent): those
/// whose tag is its index modulo the member count.
fn assert_split_by_tag(members: &[PacketSocket], sent: u32) {
    let n = members.len() as u32;
    for (i, member) in members.iter().enumerate() {
        let share = (sent / n) as usize;
        let got = receive_all(member, share, Duration::from_secs(2));
        assert_eq!(
            got.len(),
            share,
            "member {i}: {:?}",
            got.iter().map(|f| f.tag).collect::<Vec<_>>()
        );
        assert!(
            got.iter().all(|f| f.tag % u64::from(n) == i as u64),
            "member {i} got {got:?}"
        );
        assert!(
            receive_all(member, 1, Duration::from_millis(50)).is_empty(),
            "member {i} got more than its share"
        );
    }
}

#[test]
fn two_fanout_groups_on_one_interface_stay_apart() {
    if !root_or_skip(
        "two_fanout_groups_on_one_interface_stay_apart",
        "veths, raw sockets",
    ) {
        return;
    }
    let pair = VethPair::new();
    let a = Interface::lookup(&pair.a).unwrap();
    let b = Interface::lookup(&pair.b).unwrap();
    let tx = PacketSocket::bind(&a, ETHERTYPE).unwrap();
    // Two load balancers on one bridge, each with two workers.
    let (first, first_members) = fanout_group(&b, 2);
    let (second, second_members) = fanout_group(&b, 2);
    assert_ne!(first, second, "the kernel gave both groups one id");
    for tag in 0..40u64 {
        tx.send(&frame(b.mac, a.mac, tag)).unwrap();
    }
    // Merged into one group of four, each frame would reach one socket of
    // the four; apart, each group sees every frame, split between its two.
    assert_split_by_tag(&first_members, 40);
    assert_split_by_tag(&second_members, 40);
}
