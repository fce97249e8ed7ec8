//! The real server binary in plain-UDP mode, in a server namespace of the
//! testbed, asked across the bridge from the core namespace (as a UDP load
//! balancer would): every boundary operand for both ops, error replies for
//! malformed datagrams and unknown ops, windowed bursts from many clients,
//! and a clean exit on SIGTERM with counters that match what was sent.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipcs_common::wire::{Reply, Request, Response, Status};
use ipcs_common::Op;
use ipcs_testbed::Topology;
use support::{counter, in_netns, root_or_skip, start_server, terminate_for_stats};

const PORT: u16 = 9000;

/// A topology with one server serving UDP on port 9000; its address and id.
fn udp_server() -> (Topology, usize, SocketAddr, u8) {
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let index = start_server(
        &mut topology,
        0,
        &[
            "--iface",
            "eth0",
            "--registry",
            "off",
            "--udp",
            "0.0.0.0:9000",
            "--summary-every",
            "1s",
        ],
    );
    let addr = SocketAddr::from((topology.server(0).unwrap().ip, PORT));
    (topology, index, addr, Topology::server_id(0))
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

fn ask(socket: &UdpSocket, server: SocketAddr, datagram: &[u8]) -> Vec<u8> {
    socket.send_to(datagram, server).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = socket.recv_from(&mut buf).expect("answer within 2 s");
    assert_eq!(from, server);
    buf[..n].to_vec()
}

#[test]
fn boundary_values_errors_and_clean_exit() {
    if !root_or_skip(
        "boundary_values_errors_and_clean_exit",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let (mut topology, index, addr, id) = udp_server();
    let core = topology.core_netns().unwrap().to_owned();
    let (answered, errors) = in_netns(&core, move || {
        let socket = client();
        let mut answered = 0u64;
        for op in Op::ALL {
            for a in [0, 1, u32::MAX] {
                for b in [0, 1, u32::MAX] {
                    let got = ask(&socket, addr, &Request { a, b, op }.to_bytes());
                    assert_eq!(got.len(), 9, "{a} {op} {b}: {got:?}");
                    assert_eq!(
                        Response::parse_bytes(&got),
                        Ok(Response::Reply(Reply {
                            result: op.apply(a, b),
                            server_id: id
                        })),
                        "{a} {op} {b}"
                    );
                    answered += 1;
                }
            }
        }
        // The worked example of docs/PROTOCOL.md, byte for byte.
        let max_product = ask(
            &socket,
            addr,
            &[0xff; 8].iter().chain(&[2]).copied().collect::<Vec<_>>(),
        );
        assert_eq!(max_product, [0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x0b]);
        answered += 1;

        let mut errors = 0u64;
        for len in [1usize, 8, 10, 63, 64, 65, 1000] {
            let got = ask(&socket, addr, &vec![1u8; len]);
            assert_eq!(got, [Status::Malformed.to_u8()], "length {len}");
            errors += 1;
        }
        for op in [0u8, 3, 0xff] {
            let got = ask(&socket, addr, &[0, 0, 0, 1, 0, 0, 0, 2, op]);
            assert_eq!(got, [Status::UnknownOp.to_u8()], "op {op}");
            errors += 1;
        }
        // An empty datagram gets nothing (any answer would be longer than
        // it): the next thing to arrive is the answer to the next request.
        socket.send_to(&[], addr).unwrap();
        let got = ask(
            &socket,
            addr,
            &Request {
                a: 2,
                b: 3,
                op: Op::Add,
            }
            .to_bytes(),
        );
        assert_eq!(got.len(), 9, "{got:?}");
        answered += 1;
        (answered, errors)
    });

    // The periodic line reports the same counts (within its 1 s period).
    let deadline = Instant::now() + Duration::from_secs(3);
    let periodic = loop {
        let log = topology.process(index).log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains(" stats frames_answered=") && !l.contains("final stats"))
            .map(str::to_owned);
        match line {
            Some(l) if counter(&l, "udp_answered") == answered => break l,
            _ if Instant::now() > deadline => panic!("no periodic stats line:\n{log}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(counter(&periodic, "udp_errors"), errors, "{periodic}");

    let stats = terminate_for_stats(&mut topology, index);
    assert_eq!(counter(&stats, "udp_answered"), answered);
    assert_eq!(counter(&stats, "udp_errors"), errors);
    assert_eq!(counter(&stats, "udp_empty"), 1);
    assert_eq!(counter(&stats, "udp_send_failed"), 0);
}

#[test]
fn bursts_from_many_clients_are_answered_in_full() {
    if !root_or_skip(
        "bursts_from_many_clients_are_answered_in_full",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let (topology, _index, addr, id) = udp_server();
    let core = topology.core_netns().unwrap().to_owned();
    in_netns(&core, move || {
        const CLIENTS: u32 = 8;
        const ROUNDS: u32 = 12;
        // 8 x 16 = 128 requests in flight per round: enough for the server
        // to move full batches, few enough to fit default socket buffers
        // (UDP drops on overflow; this test is about answers, not buffers).
        const BURST: u32 = 16;
        let sockets: Vec<UdpSocket> = (0..CLIENTS).map(|_| client()).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        for round in 0..ROUNDS {
            for (c, socket) in (0u32..).zip(&sockets) {
                for i in 0..BURST {
                    let request = Request {
                        a: round * BURST + i,
                        b: c << 16,
                        op: Op::Add,
                    };
                    socket.send_to(&request.to_bytes(), addr).unwrap();
                }
            }
            for (c, socket) in (0u32..).zip(&sockets) {
                let mut seen: HashMap<u64, u32> = HashMap::new();
                let mut buf = [0u8; 64];
                while seen.len() < BURST as usize && Instant::now() < deadline {
                    let Ok((n, _)) = socket.recv_from(&mut buf) else {
                        break;
                    };
                    match Response::parse_bytes(&buf[..n]) {
                        Ok(Response::Reply(reply)) => {
                            assert_eq!(reply.server_id, id);
                            *seen.entry(reply.result).or_default() += 1;
                        }
                        other => panic!("client {c}: {other:?}"),
                    }
                }
                let expected: HashMap<u64, u32> = (0..BURST)
                    .map(|i| (u64::from(round * BURST + i) + (u64::from(c) << 16), 1))
                    .collect();
                assert_eq!(seen, expected, "client {c} round {round}");
            }
        }
    });
}
