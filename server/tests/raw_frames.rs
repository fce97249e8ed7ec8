//! The real server binary on the testbed's bridge: two servers in their own
//! namespaces, backend frames sent from the bridge (where the load balancer
//! sits) on a raw socket. Replies carry the right result, tag and id, go to
//! the sender's MAC, and come only from the addressed server; frames to other
//! MACs and malformed frames get no reply, are counted, and do not stop the
//! server.

mod support;

use std::time::Duration;

use ipcs_common::wire::{FrameBody, FrameRepr, MacAddr, Request, Status, ETHERTYPE};
use ipcs_common::Op;
use ipcs_testbed::Topology;
use support::{
    counter, in_netns, mac_in, reply, root_or_skip, start_server, terminate_for_stats, Bridge,
};

#[test]
fn replies_are_right_and_only_from_the_addressed_server() {
    if !root_or_skip(
        "replies_are_right_and_only_from_the_addressed_server",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(2).build().expect("topology");
    let args = ["--iface", "eth0", "--registry", "off"];
    let first = start_server(&mut topology, 0, &args);
    let second = start_server(&mut topology, 1, &args);
    let mac_a = mac_in(&topology.server(0).unwrap().netns);
    let mac_b = mac_in(&topology.server(1).unwrap().netns);
    let (id_a, id_b) = (Topology::server_id(0), Topology::server_id(1));
    let core = topology.core_netns().unwrap().to_owned();

    let (answered_a, not_for_us_min) = in_netns(&core, move || {
        let mut bridge = Bridge::open();
        let lb = bridge.mac;
        let mut tag = 0x1000_0000u64;
        let mut answered_a = 0;

        // Every boundary operand, both ops, to server A.
        for op in Op::ALL {
            for a in [0, 1, 50, u32::MAX] {
                for b in [0, 1, 1337, u32::MAX] {
                    tag += 1;
                    bridge.request(mac_a, tag, a, b, op);
                    let got = bridge.receive_until(tag, Duration::from_secs(2));
                    assert_eq!(got, [reply(lb, mac_a, tag, op.apply(a, b), id_a)]);
                    answered_a += 1;
                }
            }
        }

        // A burst: all answered, each with its own tag, in order.
        let first_tag = tag + 1;
        for i in 0..200u32 {
            tag += 1;
            bridge.request(mac_a, tag, i, 3, Op::Mul);
        }
        let got = bridge.receive_until(tag, Duration::from_secs(5));
        let expected: Vec<FrameRepr> = (0..200u32)
            .map(|i| reply(lb, mac_a, first_tag + u64::from(i), u64::from(i) * 3, id_a))
            .collect();
        assert_eq!(got, expected);
        answered_a += 200;

        // Server B answers its own frames, as id 12; A stays silent.
        tag += 1;
        bridge.request(mac_b, tag, 6, 7, Op::Mul);
        let got = bridge.receive_until(tag, Duration::from_secs(2));
        assert_eq!(got, [reply(lb, mac_b, tag, 42, id_b)]);

        // Unknown op: an error frame with status 2 and the same tag.
        tag += 1;
        let mut frame = [0u8; 64];
        let len = FrameRepr {
            dst: mac_a,
            src: lb,
            tag,
            body: FrameBody::Request(Request {
                a: 1,
                b: 2,
                op: Op::Add,
            }),
        }
        .emit_into(&mut frame)
        .len();
        frame[len - 1] = 7;
        bridge.send(&frame[..len]);
        let got = bridge.receive_until(tag, Duration::from_secs(2));
        assert_eq!(
            got,
            [FrameRepr {
                dst: lb,
                src: mac_a,
                tag,
                body: FrameBody::Error(Status::UnknownOp),
            }]
        );

        // Frames to an unknown MAC and to broadcast are flooded to both
        // servers; neither answers. The marker frame after them proves that
        // nothing came back first (one path, so order is kept).
        let nobody = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
        for dst in [nobody, nobody, MacAddr::BROADCAST] {
            tag += 1;
            bridge.request(dst, tag, 1, 1, Op::Add);
        }
        tag += 1;
        bridge.request(mac_a, tag, 2, 2, Op::Add);
        let got = bridge.receive_until(tag, Duration::from_secs(2));
        assert_eq!(got, [reply(lb, mac_a, tag, 4, id_a)]);
        answered_a += 1;
        (answered_a, 3)
    });

    let stats = terminate_for_stats(&mut topology, first);
    assert_eq!(counter(&stats, "frames_answered"), answered_a);
    assert_eq!(counter(&stats, "frames_unknown_op"), 1);
    // B's request may or may not have been flooded to A as well.
    let not_for_us = counter(&stats, "dropped_not_for_us");
    assert!(
        (not_for_us_min..=not_for_us_min + 1).contains(&not_for_us),
        "{stats}"
    );
    let stats_b = terminate_for_stats(&mut topology, second);
    assert_eq!(counter(&stats_b, "frames_answered"), 1);
}

#[test]
fn malformed_frames_get_no_reply_are_counted_and_do_not_stop_the_server() {
    if !root_or_skip(
        "malformed_frames_get_no_reply_are_counted_and_do_not_stop_the_server",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let index = start_server(
        &mut topology,
        0,
        &["--iface", "eth0", "--registry", "off", "--id", "77"],
    );
    let mac = mac_in(&topology.server(0).unwrap().netns);
    let core = topology.core_netns().unwrap().to_owned();

    let (short, unknown_kind, not_a_request) = in_netns(&core, move || {
        let mut bridge = Bridge::open();
        let lb = bridge.mac;
        let mut header = [0u8; 32];
        header[..6].copy_from_slice(&mac.0);
        header[6..12].copy_from_slice(&lb.0);
        header[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        header[14] = 1;

        // Too short for the header or for a request body. (The kernel does
        // not send frames shorter than an Ethernet header.)
        let mut short = 0;
        for len in [14usize, 15, 22, 23, 24, 31] {
            bridge.send(&header[..len]);
            short += 1;
        }
        // Unknown kinds, full length.
        let mut unknown_kind = 0;
        for kind in [0u8, 4, 0xff] {
            let mut frame = header;
            frame[14] = kind;
            bridge.send(&frame);
            unknown_kind += 1;
        }
        // A reply and an error frame: servers only answer requests.
        let mut not_a_request = 0;
        for (kind, len) in [(2u8, 32usize), (3, 24)] {
            let mut frame = header;
            frame[14] = kind;
            frame[23] = 1;
            bridge.send(&frame[..len]);
            not_a_request += 1;
        }
        // Still serving, and nothing came back before this reply.
        for round in 0..3u32 {
            let tag = 0xabcd_0000 + u64::from(round);
            bridge.request(mac, tag, u32::MAX, u32::MAX, Op::Add);
            let got = bridge.receive_until(tag, Duration::from_secs(2));
            assert_eq!(got, [reply(lb, mac, tag, 8_589_934_590, 77)]);
        }
        (short, unknown_kind, not_a_request)
    });

    let stats = terminate_for_stats(&mut topology, index);
    assert_eq!(counter(&stats, "frames_answered"), 3, "{stats}");
    assert_eq!(counter(&stats, "dropped_short"), short, "{stats}");
    assert_eq!(
        counter(&stats, "dropped_unknown_kind"),
        unknown_kind,
        "{stats}"
    );
    assert_eq!(
        counter(&stats, "dropped_not_a_request"),
        not_a_request,
        "{stats}"
    );
}

#[test]
fn a_frame_of_70_requests_gets_64_replies_in_order_and_6_counted() {
    if !root_or_skip(
        "a_frame_of_70_requests_gets_64_replies_in_order_and_6_counted",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let index = start_server(
        &mut topology,
        0,
        &["--iface", "eth0", "--registry", "off", "--id", "5"],
    );
    let mac = mac_in(&topology.server(0).unwrap().netns);
    let core = topology.core_netns().unwrap().to_owned();
    in_netns(&core, move || {
        let mut bridge = Bridge::open();
        let lb = bridge.mac;
        let request = |tag: u64| FrameRepr {
            dst: mac,
            src: lb,
            tag,
            body: FrameBody::Request(Request {
                a: tag as u32,
                b: 3,
                op: Op::Mul,
            }),
        };
        // 14 + 70 * 18 = 1274 bytes: well within one Ethernet frame.
        let mut frame = vec![0u8; 1400];
        let mut len = request(1).emit_into(&mut frame).len();
        for tag in 2..=70 {
            len += request(tag).emit_record(&mut frame[len..]);
        }
        bridge.send(&frame[..len]);
        let got = bridge.receive_until(64, Duration::from_secs(2));
        let want: Vec<FrameRepr> = (1..=64)
            .map(|tag| reply(lb, mac, tag, tag * 3, 5))
            .collect();
        assert_eq!(got, want);
    });
    let stats = terminate_for_stats(&mut topology, index);
    assert_eq!(counter(&stats, "frames_answered"), 64, "{stats}");
    assert_eq!(counter(&stats, "dropped_too_many_records"), 6, "{stats}");
}

#[test]
fn two_load_balancers_share_a_server_and_each_gets_its_own_replies() {
    if !root_or_skip(
        "two_load_balancers_share_a_server_and_each_gets_its_own_replies",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let index = start_server(&mut topology, 0, &["--iface", "eth0", "--registry", "off"]);
    let server = mac_in(&topology.server(0).unwrap().netns);
    let id = Topology::server_id(0);
    // One balancer on the bridge in the core, another on the registry
    // host's eth0: different MACs, nothing about either configured in the
    // server.
    let core = topology.core_netns().unwrap().to_owned();
    let other = topology.registry().netns.clone();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let second = std::thread::spawn(move || {
        ipcs_common::sys::netns::enter_for_thread(&other).unwrap();
        let mut lb = Bridge::on("eth0");
        go_rx.recv().unwrap();
        for i in 0..100u32 {
            lb.request(server, 0x2000_0000 + u64::from(i), i, 2, Op::Add);
        }
        let got = lb.receive_until(0x2000_0000 + 99, Duration::from_secs(5));
        let expected: Vec<FrameRepr> = (0..100u32)
            .map(|i| {
                reply(
                    lb.mac,
                    server,
                    0x2000_0000 + u64::from(i),
                    u64::from(i) + 2,
                    id,
                )
            })
            .collect();
        assert_eq!(got, expected, "second balancer");
    });
    in_netns(&core, move || {
        let mut lb = Bridge::open();
        go_tx.send(()).unwrap();
        for i in 0..100u32 {
            lb.request(server, 0x1000_0000 + u64::from(i), i, 5, Op::Mul);
        }
        let got = lb.receive_until(0x1000_0000 + 99, Duration::from_secs(5));
        let expected: Vec<FrameRepr> = (0..100u32)
            .map(|i| {
                reply(
                    lb.mac,
                    server,
                    0x1000_0000 + u64::from(i),
                    u64::from(i) * 5,
                    id,
                )
            })
            .collect();
        assert_eq!(got, expected, "first balancer");
    });
    second.join().unwrap();
    let stats = terminate_for_stats(&mut topology, index);
    assert_eq!(counter(&stats, "frames_answered"), 200, "{stats}");
}
