//! Fault injection on the real binary: `--fault-delay` holds every answer
//! (backend frames and UDP datagrams) at least that long, SIGUSR1 with
//! `--fault-delay-file` turns it off and on again on the running server, and
//! a full delay queue drops and counts rather than grows.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipcs_common::wire::{MacAddr, Reply, Request, Response};
use ipcs_common::Op;
use ipcs_testbed::{Signal, Topology};
use support::{
    counter, in_netns, mac_in, reply, root_or_skip, start_server, terminate_for_stats,
    wait_for_log, Bridge,
};

const DELAY: Duration = Duration::from_millis(30);

/// Round trips of `count` single requests to `mac`, one at a time.
fn round_trips(core: &str, mac: MacAddr, id: u8, first_tag: u32, count: u32) -> Vec<Duration> {
    in_netns(core, move || {
        let mut bridge = Bridge::open();
        (first_tag..first_tag + count)
            .map(|tag| {
                let sent = Instant::now();
                bridge.request(mac, u64::from(tag), tag, 2, Op::Add);
                let got = bridge.receive_until(u64::from(tag), Duration::from_secs(2));
                let took = sent.elapsed();
                assert_eq!(
                    got,
                    [reply(
                        bridge.mac,
                        mac,
                        u64::from(tag),
                        u64::from(tag) + 2,
                        id
                    )]
                );
                took
            })
            .collect()
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Writes `delay` to the server's delay file, sends SIGUSR1 and waits until
/// the server says it applied it (its `n`th such line).
fn set_delay(topology: &Topology, index: usize, file: &std::path::Path, text: &str, n: usize) {
    std::fs::write(file, text).expect("write delay file");
    topology
        .process(index)
        .signal(Signal::Usr1)
        .expect("SIGUSR1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while topology
        .process(index)
        .log()
        .matches("fault delay set to")
        .count()
        < n
    {
        assert!(
            Instant::now() < deadline,
            "no 'fault delay set to' line after SIGUSR1:\n{}",
            topology.process(index).log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn answers_wait_the_delay_which_can_be_turned_off_and_on_at_run_time() {
    if !root_or_skip("fault_delay", "network namespaces, raw sockets") {
        return;
    }
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    // In the topology's own log directory: unique, and removed with it.
    let file = topology.log_dir().join("fault-delay");
    let file_arg = file.to_str().unwrap().to_owned();
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
            "--fault-delay",
            "30ms",
            "--fault-delay-file",
            &file_arg,
        ],
    );
    let core = topology.core_netns().unwrap().to_owned();
    let mac = mac_in(&topology.server(0).unwrap().netns);
    let id = Topology::server_id(0);

    // Slow from the start: no answer sooner than the delay.
    let slow = round_trips(&core, mac, id, 0x100, 10);
    assert!(slow.iter().all(|t| *t >= DELAY), "{slow:?}");

    // UDP answers are held too.
    let server = SocketAddr::from((topology.server(0).unwrap().ip, 9000));
    let udp_took = in_netns(&core, move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sent = Instant::now();
        let request = Request {
            a: 6,
            b: 7,
            op: Op::Mul,
        };
        socket.send_to(&request.to_bytes(), server).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).expect("UDP answer within 2 s");
        assert_eq!(
            Response::parse_bytes(&buf[..n]),
            Ok(Response::Reply(Reply {
                result: 42,
                server_id: id
            }))
        );
        sent.elapsed()
    });
    assert!(udp_took >= DELAY, "{udp_took:?}");

    // Turned off on the running server: answers are prompt again.
    set_delay(&topology, index, &file, "0\n", 1);
    let fast = round_trips(&core, mac, id, 0x200, 20);
    assert!(median(fast.clone()) < Duration::from_millis(10), "{fast:?}");

    // And on again, longer.
    set_delay(&topology, index, &file, "50ms", 2);
    let slower = round_trips(&core, mac, id, 0x300, 5);
    assert!(
        slower.iter().all(|t| *t >= Duration::from_millis(50)),
        "{slower:?}"
    );

    // A malformed file changes nothing and is said so.
    set_delay(&topology, index, &file, "soon", 2);
    assert!(wait_for_log(
        &topology,
        index,
        "fault delay unchanged at 50000 us",
        Duration::from_secs(5)
    )
    .is_some());
    let still = round_trips(&core, mac, id, 0x400, 3);
    assert!(
        still.iter().all(|t| *t >= Duration::from_millis(50)),
        "{still:?}"
    );

    let stats = terminate_for_stats(&mut topology, index);
    assert_eq!(counter(&stats, "frames_answered"), 10 + 20 + 5 + 3);
    assert_eq!(counter(&stats, "udp_answered"), 1);
    assert_eq!(counter(&stats, "dropped_delay_queue_full"), 0);
    println!("delayed {slow:?}\nprompt {fast:?}\n50 ms {slower:?}\nUDP {udp_took:?}");
}

#[test]
fn a_full_delay_queue_drops_and_counts() {
    if !root_or_skip("fault_delay", "network namespaces, raw sockets") {
        return;
    }
    let mut topology = Topology::builder().servers(1).build().expect("topology");
    let index = start_server(
        &mut topology,
        0,
        &[
            "--iface",
            "eth0",
            "--registry",
            "off",
            "--fault-delay",
            "1s",
            "--fault-queue",
            "4",
        ],
    );
    let core = topology.core_netns().unwrap().to_owned();
    let mac = mac_in(&topology.server(0).unwrap().netns);
    const BURST: u32 = 10;
    let answered = in_netns(&core, move || {
        let mut bridge = Bridge::open();
        for tag in 1..=BURST {
            bridge.request(mac, u64::from(tag), 1, 1, Op::Add);
        }
        // One more after the held ones are out, so receiving stops there.
        std::thread::sleep(Duration::from_millis(1500));
        bridge.request(mac, 0x99, 1, 1, Op::Add);
        bridge.receive_until(0x99, Duration::from_secs(3)).len() - 1
    });
    let stats = terminate_for_stats(&mut topology, index);
    let dropped = counter(&stats, "dropped_delay_queue_full");
    // The burst takes far less than the 1 s delay, so only 4 fit.
    assert_eq!(answered, 4, "{stats}");
    assert_eq!(dropped, u64::from(BURST) - 4, "{stats}");
    assert_eq!(counter(&stats, "frames_answered"), u64::from(BURST) + 1);
}
