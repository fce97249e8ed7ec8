//! The load balancer in network namespaces with the real registry and
//! servers: answers, rotation, malformed input, start-up without a registry,
//! several workers, replies coalesced with UDP GSO.

mod support;

use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

use ipcs_common::sys::{Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::{
    hsmap::REQUEST_LEN, Reply, Request, Response, Status, ETHERTYPE, TAG_LOW_BYTE_OFFSET,
};
use ipcs_common::Op;
use support::{root_or_skip, wait_until, Client, Rig};

#[test]
fn answers_both_ops_and_boundaries_and_spreads_exactly_by_server() {
    if !root_or_skip(
        "answers_both_ops_and_boundaries_and_spreads_exactly_by_server",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    // A generous timeout: this test is about rotation, and a retry on a
    // busy test machine would legitimately shift it.
    let rig = Rig::start(3, &["--timeout", "500ms"]);
    let client = Client::new(rig.lb_addr());
    let pairs = [
        (0, 0),
        (0, u32::MAX),
        (1, 1),
        (50, 1337),
        (u32::MAX, u32::MAX),
        (u32::MAX - 1, 2),
    ];
    for (a, b) in pairs {
        for op in Op::ALL {
            let request = Request { a, b, op };
            match client.ask(request) {
                Response::Reply(Reply { result, server_id }) => {
                    assert_eq!(result, op.apply(a, b), "{request}");
                    assert!((11..=13).contains(&server_id), "server id {server_id}");
                }
                other => panic!("{request}: {other:?}"),
            }
        }
    }
    let mut by_id = [0u32; 256];
    for i in 0..300u32 {
        let request = Request {
            a: i,
            b: 3,
            op: Op::Mul,
        };
        let Response::Reply(reply) = client.ask(request) else {
            panic!("no reply to {request}");
        };
        assert_eq!(reply.result, u64::from(i) * 3);
        by_id[usize::from(reply.server_id)] += 1;
    }
    assert_eq!(&by_id[11..=13], &[100, 100, 100], "spread by server id");
    assert_eq!(rig.metric("ipcs_lb_retries_total"), 0);
    assert_eq!(rig.metric("ipcs_lb_replies_total"), 312);
    for id in 11..=13 {
        let prefix = format!("ipcs_lb_server_requests_total{{id=\"{id}\",");
        assert_eq!(rig.metric(&prefix), 104, "server {id}");
    }
    // Every reply is timed once; workers publish their histogram on a timer
    // (each second), so give it time to catch up.
    let timed = || rig.metric(r#"ipcs_lb_latency_seconds_bucket{le="+Inf"}"#);
    wait_until(Duration::from_secs(5), || timed() == 312);
    assert_eq!(timed(), 312, "replies timed");
}

#[test]
fn malformed_and_unknown_op_get_errors_without_a_server() {
    if !root_or_skip(
        "malformed_and_unknown_op_get_errors_without_a_server",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let rig = Rig::start(3, &[]);
    let client = Client::new(rig.lb_addr());
    // (An empty datagram gets no answer: see hostile_udp.rs.)
    for len in [1usize, 8, 10] {
        let answer = client.exchange(&vec![1u8; len]);
        assert_eq!(answer.as_deref(), Some(&[1u8][..]), "{len}-byte datagram");
    }
    let mut unknown = Request {
        a: 1,
        b: 2,
        op: Op::Add,
    }
    .to_bytes();
    for op in [0u8, 3, 255] {
        unknown[8] = op;
        assert_eq!(
            client.exchange(&unknown).as_deref(),
            Some(&[2u8][..]),
            "op {op}"
        );
    }
    assert_eq!(rig.metric(r#"ipcs_lb_errors_total{code="1""#), 3);
    assert_eq!(rig.metric(r#"ipcs_lb_errors_total{code="2""#), 3);
    // No server was bothered.
    for id in 11..=13 {
        let prefix = format!("ipcs_lb_server_requests_total{{id=\"{id}\",");
        assert_eq!(rig.metric(&prefix), 0);
    }
    // And it still answers properly.
    assert!(matches!(
        client.ask(Request {
            a: 2,
            b: 2,
            op: Op::Add
        }),
        Response::Reply(Reply { result: 4, .. })
    ));
}

#[test]
fn without_a_registry_it_answers_error_3_until_the_list_arrives() {
    if !root_or_skip(
        "without_a_registry_it_answers_error_3_until_the_list_arrives",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let mut topo = ipcs_testbed::Topology::builder()
        .servers(1)
        .build()
        .expect("topology");
    let lb = topo
        .start_lb(&[
            "--listen",
            support::LISTEN,
            "--admin",
            support::ADMIN,
            "--registry-wait",
            "300ms",
        ])
        .expect("lb");
    topo.enter_core().unwrap();
    let client = Client::new(support::LISTEN.parse().unwrap());
    let request = Request {
        a: 20,
        b: 22,
        op: Op::Add,
    };
    // Before the wait is over the LB does not read; after it, error 3.
    assert!(
        wait_until(Duration::from_secs(10), || client
            .exchange(&request.to_bytes())
            == Some(vec![Status::NoServer.to_u8()])),
        "{}",
        topo.logs()
    );
    let log = topo.process(lb).log();
    assert!(log.contains("no server list from the registry"), "{log}");
    // Alive but not ready: no live list to send to.
    let admin: std::net::SocketAddr = support::ADMIN.parse().unwrap();
    let get = |path| ipcs_common::admin_http::get(admin, path, Duration::from_secs(2)).unwrap();
    assert_eq!(get("/healthz"), (200, "ok\n".to_owned()));
    let (status, body) = get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("registry unreachable"), "{body}");
    topo.start_registry(&[]).unwrap();
    topo.start_server(0, &[]).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || matches!(
            client
                .exchange(&request.to_bytes())
                .map(|b| Response::parse_bytes(&b)),
            Some(Ok(Response::Reply(Reply { result: 42, .. })))
        )),
        "{}",
        topo.logs()
    );
    let (status, body) = get("/ready");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ready: 1 servers"), "{body}");
}

#[test]
fn several_workers_share_the_port_and_each_gets_its_replies() {
    if !root_or_skip(
        "several_workers_share_the_port_and_each_gets_its_replies",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let rig = Rig::start(3, &["--workers", "2", "--timeout", "200ms"]);
    // A copy of every frame the servers send back, in the LB's namespace:
    // the byte the fanout splits on says which worker each one reached.
    let bridge = Interface::lookup("ipcs0").expect("bridge");
    let monitor = PacketSocket::bind(&bridge, ETHERTYPE).expect("monitor socket");
    let _ = monitor.set_buffer_sizes(8 << 20, 1 << 16);
    // Many client sockets, so SO_REUSEPORT spreads them over both workers.
    let handles: Vec<_> = (0..8u32)
        .map(|c| {
            let lb = rig.lb_addr();
            thread::spawn(move || {
                let client = Client::new(lb);
                for i in 0..100u32 {
                    let request = Request {
                        a: c * 1000 + i,
                        b: 7,
                        op: Op::Mul,
                    };
                    match client.ask(request) {
                        Response::Reply(reply) => assert_eq!(reply.result, request.answer()),
                        other => panic!("{request}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(rig.metric("ipcs_lb_replies_total"), 800);
    // The fanout handed every reply to the worker that sent the request.
    assert_eq!(
        rig.metric(r#"ipcs_lb_drops_total{reason="foreign_tag"}"#),
        0
    );
    assert_eq!(rig.metric(r#"ipcs_lb_drops_total{reason="stale"}"#), 0);
    let mut per_worker = [0u32; 2];
    let mut batch = MsgBatch::new(64, 256);
    while matches!(batch.recv_from(&monitor), Ok(n) if n > 0) {
        for frame in batch.iter() {
            match frame.data.get(TAG_LOW_BYTE_OFFSET) {
                Some(&worker) if usize::from(worker) < per_worker.len() => {
                    per_worker[usize::from(worker)] += 1
                }
                other => panic!("a reply for no worker: byte {other:?}"),
            }
        }
    }
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers carried traffic: reply frames per worker {per_worker:?}"
    );
}

/// Bursts of 64 requests from each of two sockets, sent with one `sendmmsg`
/// so they reach the LB together; returns (replies by socket, coalesced).
fn bursts_from_two_clients(rig: &Rig) -> ([u32; 2], u64) {
    const BURSTS: u32 = 5;
    const BURST: u32 = 64;
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        })
        .collect();
    let mut got = [0u32; 2];
    let mut batch = MsgBatch::new(BURST as usize, REQUEST_LEN);
    for burst in 0..BURSTS {
        for (c, socket) in sockets.iter().enumerate() {
            for i in 0..BURST {
                // Each socket's operands are its own, so a reply that went
                // to the wrong client would show.
                let a = (c as u32) << 24 | burst << 8 | i;
                let request = Request {
                    a,
                    b: 1,
                    op: Op::Add,
                };
                assert!(batch.push(&request.to_bytes(), Some(rig.lb_addr())));
            }
            assert_eq!(batch.send_to(socket).sent, BURST as usize);
        }
        for (c, socket) in sockets.iter().enumerate() {
            let mut seen = vec![false; BURST as usize];
            let mut buf = [0u8; 64];
            for _ in 0..BURST {
                let (n, from) = socket.recv_from(&mut buf).expect("every reply");
                assert_eq!(from, rig.lb_addr());
                let Ok(Response::Reply(reply)) = Response::parse_bytes(&buf[..n]) else {
                    panic!("not a reply: {:?}", &buf[..n]);
                };
                let a = reply.result - 1;
                assert_eq!(a >> 24, c as u64, "a reply for the other client");
                assert_eq!((a >> 8) & 0xffff, u64::from(burst), "from another burst");
                assert!(
                    !std::mem::replace(&mut seen[(a & 0xff) as usize], true),
                    "duplicate"
                );
                got[c] += 1;
            }
        }
    }
    (got, rig.metric("ipcs_lb_replies_coalesced_total"))
}

fn requests_coalesced(rig: &Rig) -> u64 {
    rig.metric("ipcs_lb_requests_coalesced_total")
}

#[test]
fn bursts_are_answered_in_coalesced_sends_each_reply_to_its_client() {
    // Also: the requests of a burst share frames, each answer still goes
    // to its own client.
    if !root_or_skip(
        "bursts_are_answered_in_coalesced_sends_each_reply_to_its_client",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let rig = Rig::start(3, &[]);
    let (got, coalesced) = bursts_from_two_clients(&rig);
    assert_eq!(got, [320, 320]);
    assert_eq!(rig.metric("ipcs_lb_replies_total"), 640);
    // Replies to one client that a batch holds leave in one GSO send, and
    // requests to one server in one frame once the server announced that
    // it reads several records (in its first reply frame).
    assert!(coalesced > 0, "no reply was coalesced");
    assert!(requests_coalesced(&rig) > 0, "no request shared a frame");
    assert_eq!(
        rig.metric(r#"ipcs_lb_drops_total{reason="send_failed"}"#),
        0
    );
}

#[test]
fn without_coalescing_each_reply_and_request_is_its_own_send() {
    if !root_or_skip(
        "without_coalescing_each_reply_and_request_is_its_own_send",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    let rig = Rig::start(3, &["--no-reply-gso", "--frame-records", "1"]);
    let (got, coalesced) = bursts_from_two_clients(&rig);
    assert_eq!(got, [320, 320]);
    assert_eq!(coalesced, 0);
    assert_eq!(requests_coalesced(&rig), 0);
}

#[test]
fn sigterm_and_sigint_stop_it_cleanly() {
    if !root_or_skip(
        "sigterm_and_sigint_stop_it_cleanly",
        "network namespaces, raw sockets",
    ) {
        return;
    }
    for signal in [ipcs_testbed::Signal::Term, ipcs_testbed::Signal::Int] {
        let mut rig = Rig::start(1, &["--workers", "2"]);
        let lb = rig.lb;
        rig.topo.process(lb).signal(signal).unwrap();
        let status = rig
            .topo
            .process_mut(lb)
            .wait_timeout(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("still running after {signal:?}"));
        assert!(status.success(), "{signal:?}: {status:?}\n{}", rig.lb_log());
        assert!(rig.lb_log().contains("ipcs-lb stopped"));
    }
}
