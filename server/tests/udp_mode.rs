//! The real server binary in plain-UDP mode on loopback: every boundary
//! operand for both ops, error replies for malformed datagrams and unknown
//! ops, a burst answered in full, and a clean exit on SIGTERM. The raw side
//! is bound to `lo` (it sees no backend frames there), so this needs root.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipcs_common::wire::{Reply, Request, Response, Status};
use ipcs_common::Op;
use support::{counter, root_or_skip, server_bin, Process};

const ID: u8 = 42;

fn start_server() -> (Process, SocketAddr) {
    let id = ID.to_string();
    let server = Process::spawn(
        server_bin(),
        &[
            "--iface",
            "lo",
            "--registry",
            "none",
            "--id",
            &id,
            "--udp",
            "127.0.0.1:0",
        ],
    );
    let line = server
        .wait_for_line("serving HSMAP over UDP on ", Duration::from_secs(10))
        .expect("server announces its UDP address");
    let addr = line
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, addr)
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
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
    if !root_or_skip() {
        return;
    }
    let (mut server, addr) = start_server();
    let socket = client();

    let mut answered = 0;
    for op in Op::ALL {
        for a in [0, 1, u32::MAX] {
            for b in [0, 1, u32::MAX] {
                let got = ask(&socket, addr, &Request { a, b, op }.to_bytes());
                assert_eq!(got.len(), 9, "{a} {op} {b}: {got:?}");
                assert_eq!(
                    Response::parse_bytes(&got),
                    Ok(Response::Reply(Reply {
                        result: op.apply(a, b),
                        server_id: ID
                    })),
                    "{a} {op} {b}"
                );
                answered += 1;
            }
        }
    }
    let max_product = ask(
        &socket,
        addr,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2],
    );
    assert_eq!(
        max_product,
        [0xff, 0xff, 0xff, 0xfe, 0x00, 0x00, 0x00, 0x01, ID]
    );
    answered += 1;

    let mut errors = 0;
    for len in [0usize, 1, 8, 10, 63, 64, 65, 1000] {
        let got = ask(&socket, addr, &vec![1u8; len]);
        assert_eq!(got, [Status::Malformed.to_u8()], "length {len}");
        errors += 1;
    }
    for op in [0u8, 3, 0xff] {
        let got = ask(&socket, addr, &[0, 0, 0, 1, 0, 0, 0, 2, op]);
        assert_eq!(got, [Status::UnknownOp.to_u8()], "op {op}");
        errors += 1;
    }

    let status = server
        .terminate(Duration::from_secs(5))
        .expect("exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    let stats = server
        .wait_for_line("final stats", Duration::from_secs(1))
        .expect("final stats line");
    assert_eq!(counter(&stats, "udp_answered"), answered);
    assert_eq!(counter(&stats, "udp_errors"), errors);
    assert_eq!(counter(&stats, "udp_send_failed"), 0);
}

#[test]
fn bursts_from_many_clients_are_answered_in_full() {
    if !root_or_skip() {
        return;
    }
    let (_server, addr) = start_server();
    const CLIENTS: u32 = 8;
    const ROUNDS: u32 = 12;
    // 8 x 16 = 128 requests in flight per round: enough for the server to
    // move full batches, few enough to fit default socket buffers (UDP
    // drops on overflow, and this test is about answers, not buffers).
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
                        assert_eq!(reply.server_id, ID);
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
}
