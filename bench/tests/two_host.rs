//! IPCS across two (simulated) hosts: servers on both sides of a VXLAN
//! tunnel (`ipcs_testbed::two_host`), the registry and the load balancer on
//! the first. A steady load with the tunnel cut for 2 s part-way is answered
//! in full, the far servers taken out and back; a reply frame packed to the
//! link's MTU crosses the tunnel whole, and the load balancer packs to it.

use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use ipcs_bench::chaos::{run_with, ChaosConfig, Fault};
use ipcs_bench::loadgen::Loadgen;
use ipcs_common::sys::{netns, root_or_skip, Interface, MsgBatch, PacketSocket};
use ipcs_common::wire::frame::ETHERNET_LEN;
use ipcs_common::wire::records::{records, Record, DATA_RECORD_LEN};
use ipcs_common::wire::{FrameBody, FrameRepr, Request, ETHERTYPE};
use ipcs_common::Op;
use ipcs_testbed::topology::BRIDGE;
use ipcs_testbed::{binary, Topology};

/// The tests measure timing-sensitive behaviour on a small machine: one at
/// a time, not side by side.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn steady_load_across_two_hosts_survives_a_cut_tunnel() {
    if !root_or_skip(
        "steady_load_across_two_hosts_survives_a_cut_tunnel",
        "network namespaces, VXLAN, raw sockets",
    ) {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = std::env::temp_dir().join(format!("ipcs-two-host-{}", std::process::id()));
    let config = ChaosConfig {
        duration: Duration::from_secs(8),
        rps: 5_000,
        servers: 2,
        far_servers: 2,
        lbs: 1,
        out_dir: out_dir.clone(),
    };
    let cut = Duration::from_secs(2);
    let plan = [
        (cut, Fault::CutTunnel),
        (cut + Duration::from_secs(2), Fault::RestoreTunnel),
    ];
    let report = run_with(&config, &plan).expect("two-host run");
    println!("{}", report.render());
    if report.clean() {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    let load = &report.load;
    assert!(load.sent >= 35_000, "loadgen offered the load: {load:?}");
    assert_eq!(
        (load.answered, load.wrong, load.lost, load.errors),
        (load.sent, 0, 0, 0),
        "{}",
        report.render()
    );
    // Servers 11, 12 near, 13, 14 far: all of them answered.
    for id in 11..=14u8 {
        assert!(
            load.per_server.get(&id).copied().unwrap_or(0) > 500,
            "server {id}: {:?}",
            load.per_server
        );
    }
    let tunnel = report.faults[0].tunnel.clone().expect("tunnel record");
    assert_eq!(tunnel.far_ids, vec![13, 14]);
    // Taken out of rotation well within the cut ...
    assert!(
        tunnel
            .traffic_stopped_after
            .is_none_or(|d| d < Duration::from_millis(1500)),
        "{}",
        report.render()
    );
    // ... and back in it after the repair, before the run ended.
    assert!(
        tunnel
            .traffic_back_after
            .is_some_and(|d| d < Duration::from_secs(4)),
        "{}",
        report.render()
    );
}

#[test]
fn frames_packed_to_the_mtu_cross_the_tunnel() {
    if !root_or_skip(
        "frames_packed_to_the_mtu_cross_the_tunnel",
        "network namespaces, VXLAN, raw sockets",
    ) {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 298 bytes: 16 request records (288 bytes) fit; so do 16 replies and
    // the capability record (298 bytes, exactly the limit).
    const MTU: usize = 298;
    const FIT: usize = 16;
    let mut topology = Topology::builder()
        .far_servers(1)
        .link_mtu(MTU)
        .build()
        .expect("topology");
    topology.start_registry(&[]).unwrap();
    let server = topology.start_server(0, &[]).unwrap();
    assert!(topology.is_far(0));
    let far_ns = topology.server(0).unwrap().netns.clone();
    let far_mac = std::thread::spawn(move || {
        netns::enter_for_thread(&far_ns).unwrap();
        Interface::lookup("eth0").unwrap().mac
    })
    .join()
    .unwrap();

    // Straight to the far server from the core, before any load balancer:
    // a frame of 16 requests, answered with one frame of exactly the MTU.
    let core = topology.core_netns().unwrap().to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        netns::enter_for_thread(&core).unwrap();
        let bridge = Interface::lookup(BRIDGE).unwrap();
        let socket = PacketSocket::bind(&bridge, ETHERTYPE).unwrap();
        let mut frame = vec![0u8; ETHERNET_LEN + FIT * DATA_RECORD_LEN];
        let mut len = 0;
        for tag in 1..=FIT as u64 {
            let repr = FrameRepr {
                dst: far_mac,
                src: bridge.mac,
                tag,
                body: FrameBody::Request(Request {
                    a: tag as u32,
                    b: 1000,
                    op: Op::Mul,
                }),
            };
            len += if len == 0 {
                repr.emit_into(&mut frame).len()
            } else {
                repr.emit_record(&mut frame[len..])
            };
        }
        assert_eq!(len, frame.len());
        let mut batch = MsgBatch::new(8, 2048);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The server registers (and so listens) shortly after it starts:
        // ask every 200 ms until the answer comes.
        let mut next_send = Instant::now();
        while Instant::now() < deadline {
            if Instant::now() >= next_send {
                socket.send(&frame).unwrap();
                next_send += Duration::from_millis(200);
            }
            if batch.recv_from(&socket).is_ok() {
                for d in batch.iter() {
                    if d.data[6..12] == far_mac.0 {
                        tx.send(d.data.to_vec()).unwrap();
                        return;
                    }
                }
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
    .join()
    .unwrap();
    let answer = rx
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_else(|_| panic!("no answer:\n{}", topology.logs()));
    assert_eq!(answer.len(), ETHERNET_LEN + MTU, "the frame fills the MTU");
    let items: Vec<_> = records(&answer).collect();
    assert_eq!(items.len(), FIT + 1);
    for (i, item) in items[..FIT].iter().enumerate() {
        match item {
            Ok(Record::Frame(FrameRepr {
                tag,
                body: FrameBody::Reply(reply),
                ..
            })) => assert_eq!(reply.result, *tag * 1000, "record {i}"),
            other => panic!("record {i}: {other:?}"),
        }
    }
    assert!(matches!(
        items[FIT],
        Ok(Record::Capability {
            max_records: 16,
            ..
        })
    ));
    assert!(topology.process(server).log().contains("MTU 298"));

    // Through the load balancer, which reads the same MTU: every request
    // answered, many of them sharing frames, none longer than the MTU.
    let lb = topology
        .start_lb(&[
            "--listen",
            "127.0.0.1:8080",
            "--admin",
            "127.0.0.1:7071",
            "--frame-records",
            "64",
        ])
        .unwrap();
    let loadgen = Loadgen {
        program: binary("loadgen"),
        netns: topology.core_netns().map(str::to_owned),
        sockets: 4,
        threads: 1,
    };
    let hgrm = std::env::temp_dir().join(format!("ipcs-two-host-mtu-{}.hgrm", std::process::id()));
    let target = "127.0.0.1:8080".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while loadgen
        .fixed(target, 500, Duration::from_secs(1), &hgrm)
        .map_or(true, |m| m.answered < m.sent || m.sent == 0)
    {
        assert!(Instant::now() < deadline, "{}", topology.logs());
    }
    let m = loadgen
        .fixed(target, 10_000, Duration::from_secs(2), &hgrm)
        .expect("loadgen");
    let _ = std::fs::remove_file(&hgrm);
    assert_eq!(
        (m.answered, m.wrong, m.lost, m.errors),
        (m.sent, 0, 0, 0),
        "{m:?}\n{}",
        topology.logs()
    );
    let log = topology.process(lb).log();
    assert!(
        log.contains("MTU 298: at most 16 requests per frame"),
        "{log}"
    );
    let core = topology.core_netns().unwrap().to_owned();
    let coalesced = std::thread::spawn(move || {
        netns::enter_for_thread(&core).unwrap();
        let (_, page) = ipcs_common::admin_http::get(
            "127.0.0.1:7071".parse().unwrap(),
            "/metrics",
            Duration::from_secs(2),
        )
        .unwrap();
        page.lines()
            .find_map(|l| l.strip_prefix("ipcs_lb_requests_coalesced_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    })
    .join()
    .unwrap();
    assert!(coalesced > 0.0, "requests shared frames");
}
