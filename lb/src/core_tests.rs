use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;

use ipcs_common::wire::{FrameBody, FrameRepr};
use ipcs_common::Op;

use super::*;
use crate::budget::BudgetPolicy;
use crate::outlier::EjectionPolicy;
use crate::snapshot::{shared_empty, Backend};
use crate::tag::{LbSecret, TagLayout};

pub(super) const LB: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub(super) const MS: Duration = Duration::from_millis(1);
/// The initial 20 ms attempt deadline, rounded up to its lane.
fn first_deadline() -> Duration {
    lane_durations(&TimeoutPolicy::default())
        .into_iter()
        .find(|d| *d >= 20 * MS)
        .unwrap()
}

pub(super) fn mac(id: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, 10 + id])
}

pub(super) fn backend(id: u8) -> Backend {
    Backend {
        id,
        mac: mac(id),
        ip: Ipv4Addr::new(172, 16, 238, 10 + id),
        udp: None,
    }
}

pub(super) fn config() -> CoreConfig {
    CoreConfig {
        worker: 0,
        capacity: 64,
        timeout: TimeoutPolicy::default(),
        request_timeout: 500 * MS,
        attempts: 3,
        budget: BudgetPolicy::default(),
        ejection: EjectionPolicy::default(),
        policy: Policy::RoundRobin,
        seed: 1,
        error_rate: 1e6,
        error_burst: 1e6,
        max_records: 32,
        secret: LbSecret::from_bytes([0x42; 32]),
        source_share: 1.0,
        link_mtu: 1500,
    }
}

struct Rig {
    core: Core,
    shared: SharedSnapshot,
    stats: Arc<WorkerStats>,
    t0: Instant,
}

impl Rig {
    fn new(config: CoreConfig, ids: &[u8]) -> Rig {
        let shared = shared_empty();
        let stats = Arc::new(WorkerStats::default());
        let t0 = Instant::now();
        let rig_shared = shared.clone();
        let core = Core::new(config, LB, shared, stats.clone(), t0).unwrap();
        let mut rig = Rig {
            core,
            shared: rig_shared,
            stats,
            t0,
        };
        rig.servers(1, ids);
        rig
    }

    fn servers(&mut self, version: u64, ids: &[u8]) {
        let list = ids.iter().map(|id| backend(*id)).collect();
        self.shared
            .store(Arc::new(ServerSnapshot::new(version, list)));
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn server_counter(&self, id: u8, pick: fn(&crate::metrics::ServerCounters) -> u64) -> u64 {
        self.core
            .health()
            .get(mac(id))
            .map_or(0, |s| pick(&s.counters))
    }
}

pub(super) fn client(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

pub(super) fn request(a: u32, b: u32, op: Op) -> Request {
    Request { a, b, op }
}

/// The server's answer to a forward, as frame bytes.
pub(super) fn answer(action: Action, from: MacAddr, server_id: u8) -> Vec<u8> {
    let Action::Forward { tag, request, .. } = action else {
        panic!("not a forward: {action:?}");
    };
    let frame = FrameRepr {
        dst: LB,
        src: from,
        tag,
        body: FrameBody::Reply(Reply {
            result: request.answer(),
            server_id,
        }),
    };
    let mut buf = [0u8; 64];
    frame.emit_into(&mut buf).to_vec()
}

pub(super) fn forwarded_to(action: Action) -> MacAddr {
    match action {
        Action::Forward { server, .. } => server,
        other => panic!("not a forward: {other:?}"),
    }
}

pub(super) fn tag_of(action: Action) -> u64 {
    match action {
        Action::Forward { tag, .. } => tag,
        other => panic!("not a forward: {other:?}"),
    }
}

#[test]
fn request_is_forwarded_and_the_reply_goes_back_to_its_client() {
    let mut rig = Rig::new(config(), &[1]);
    let req = request(50, 1337, Op::Mul);
    let action = rig.core.on_request(client(4000), &req.to_bytes(), rig.t0);
    assert_eq!(forwarded_to(action), mac(1));
    let frame = action.frame(LB).unwrap();
    assert_eq!(frame.src, LB);
    assert_eq!(frame.body, FrameBody::Request(req));
    assert_eq!(rig.core.in_flight(), 1);

    let reply = rig.core.on_frame(&answer(action, mac(1), 1), rig.at(1));
    assert_eq!(
        reply,
        Action::Reply {
            client: client(4000),
            reply: Reply {
                result: 66_850,
                server_id: 1
            }
        }
    );
    assert_eq!(rig.core.in_flight(), 0);
    assert_eq!(rig.stats.replies.load(Relaxed), 1);
    assert_eq!(rig.core.latency().len(), 1);
    assert_eq!(rig.server_counter(1, |c| c.requests.load(Relaxed)), 1);
    assert_eq!(rig.server_counter(1, |c| c.replies.load(Relaxed)), 1);
}

#[test]
fn three_hundred_requests_spread_exactly_by_server() {
    let mut rig = Rig::new(config(), &[2, 3, 1]);
    let mut by_id = [0u32; 4];
    for i in 0..300u32 {
        let now = rig.at(u64::from(i));
        let action = rig
            .core
            .on_request(client(1), &request(i, i, Op::Add).to_bytes(), now);
        let server = forwarded_to(action);
        let id = server.0[5] - 10;
        let reply = rig.core.on_frame(&answer(action, server, id), now);
        let Action::Reply { reply, .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(reply.result, u64::from(i) * 2);
        by_id[usize::from(reply.server_id)] += 1;
    }
    assert_eq!(by_id, [0, 100, 100, 100]);
}

#[test]
fn malformed_and_unknown_op_are_answered_without_a_server() {
    let mut rig = Rig::new(config(), &[1]);
    for len in [1usize, 8, 10, 64] {
        let action = rig.core.on_request(client(1), &vec![1u8; len], rig.t0);
        assert_eq!(
            action,
            Action::Error {
                client: client(1),
                status: Status::Malformed
            },
            "len {len}"
        );
    }
    let mut bytes = request(1, 2, Op::Add).to_bytes();
    bytes[8] = 3;
    assert_eq!(
        rig.core.on_request(client(2), &bytes, rig.t0),
        Action::Error {
            client: client(2),
            status: Status::UnknownOp
        }
    );
    assert_eq!(rig.core.in_flight(), 0);
    assert_eq!(rig.server_counter(1, |c| c.requests.load(Relaxed)), 0);
    assert_eq!(rig.stats.error(Status::Malformed).load(Relaxed), 4);
    assert_eq!(rig.stats.error(Status::UnknownOp).load(Relaxed), 1);
    assert_eq!(rig.stats.requests.load(Relaxed), 5);
}

#[test]
fn an_empty_datagram_gets_no_answer_longer_than_itself() {
    let mut rig = Rig::new(config(), &[1]);
    for _ in 0..3 {
        assert_eq!(rig.core.on_request(client(1), &[], rig.t0), Action::None);
    }
    assert_eq!(rig.stats.drop_count(DropReason::Empty).load(Relaxed), 3);
    assert_eq!(rig.stats.requests.load(Relaxed), 3);
    assert_eq!(rig.stats.error(Status::Malformed).load(Relaxed), 0);
    assert_eq!(rig.stats.errors_suppressed.load(Relaxed), 0);
    // A 1-byte datagram may get its 1-byte error.
    assert_eq!(
        rig.core.on_request(client(1), &[1], rig.t0),
        Action::Error {
            client: client(1),
            status: Status::Malformed
        }
    );
}

#[test]
fn no_server_is_error_3_and_a_full_table_is_error_5() {
    let mut rig = Rig::new(
        CoreConfig {
            capacity: 2,
            ..config()
        },
        &[],
    );
    let bytes = request(1, 2, Op::Add).to_bytes();
    assert_eq!(
        rig.core.on_request(client(1), &bytes, rig.t0),
        Action::Error {
            client: client(1),
            status: Status::NoServer
        }
    );
    rig.servers(2, &[1]);
    forwarded_to(rig.core.on_request(client(1), &bytes, rig.t0));
    forwarded_to(rig.core.on_request(client(2), &bytes, rig.t0));
    assert_eq!(
        rig.core.on_request(client(3), &bytes, rig.t0),
        Action::Error {
            client: client(3),
            status: Status::Overloaded
        }
    );
    assert_eq!(rig.core.in_flight(), 2);
}

#[test]
fn timeout_retries_elsewhere_then_waits_and_gives_up_with_error_4() {
    let mut rig = Rig::new(config(), &[1, 2, 3]);
    let first = rig
        .core
        .on_request(client(9), &request(6, 7, Op::Mul).to_bytes(), rig.t0);
    assert_eq!(forwarded_to(first), mac(1));
    assert_eq!(rig.core.next_deadline(), Some(rig.t0 + first_deadline()));

    let mut out = Vec::new();
    rig.core.on_tick(rig.at(21), |a| out.push(a));
    assert!(out.is_empty(), "not yet");
    rig.core.on_tick(rig.t0 + first_deadline(), |a| out.push(a));
    assert_eq!(out.len(), 1);
    let second = out.pop().unwrap();
    assert_eq!(forwarded_to(second), mac(2));
    assert_eq!(tag_of(second), tag_of(first), "same slot, same tag");
    assert_eq!(
        rig.core.next_deadline(),
        Some(rig.t0 + first_deadline() * 2)
    );

    rig.core
        .on_tick(rig.t0 + first_deadline() * 2, |a| out.push(a));
    assert_eq!(forwarded_to(out.pop().unwrap()), mac(3));
    // Attempts spent: the request waits for any of the three answers
    // until its request deadline.
    rig.core
        .on_tick(rig.t0 + first_deadline() * 3, |a| out.push(a));
    assert_eq!(out, [Action::None]);
    out.clear();
    assert_eq!(rig.core.next_deadline(), Some(rig.at(500)));
    rig.core.on_tick(rig.at(500), |a| out.push(a));
    assert_eq!(
        out,
        [Action::Error {
            client: client(9),
            status: Status::TimedOut
        }]
    );
    assert_eq!(rig.core.in_flight(), 0);
    assert_eq!(rig.stats.retries.load(Relaxed), 2);
    assert_eq!(rig.stats.attempt_timeouts.load(Relaxed), 3);
    // One silent attempt each, within the silence window: nobody ejected,
    // nothing held against anyone yet.
    assert_eq!(rig.stats.ejections.load(Relaxed), 0);
    for id in 1..=3 {
        assert_eq!(rig.server_counter(id, |c| c.failures.load(Relaxed)), 0);
        assert_eq!(rig.server_counter(id, |c| c.in_flight.load(Relaxed)), 0);
    }
    // The requests' original tag is dead now.
    let late = answer(second, mac(2), 2);
    assert_eq!(rig.core.on_frame(&late, rig.at(501)), Action::None);
    assert_eq!(rig.stats.drop_count(DropReason::Stale).load(Relaxed), 1);
}

#[test]
fn with_one_server_the_retry_goes_to_it_again() {
    let mut rig = Rig::new(config(), &[1]);
    let first = rig
        .core
        .on_request(client(9), &request(1, 1, Op::Add).to_bytes(), rig.t0);
    let mut out = Vec::new();
    rig.core.on_tick(rig.t0 + first_deadline(), |a| out.push(a));
    assert_eq!(forwarded_to(out[0]), mac(1));
    // Its answer (to either attempt) is accepted.
    let reply = rig.core.on_frame(&answer(first, mac(1), 1), rig.at(21));
    assert!(matches!(reply, Action::Reply { .. }), "{reply:?}");
}

#[test]
fn late_reply_from_an_earlier_server_is_accepted_once_and_the_other_lingers() {
    let mut rig = Rig::new(config(), &[1, 2]);
    let first = rig
        .core
        .on_request(client(9), &request(3, 4, Op::Add).to_bytes(), rig.t0);
    let mut out = Vec::new();
    rig.core.on_tick(rig.t0 + first_deadline(), |a| out.push(a));
    let second = out[0];
    assert_eq!(forwarded_to(second), mac(2));

    let late = rig.core.on_frame(&answer(first, mac(1), 1), rig.at(25));
    assert_eq!(
        late,
        Action::Reply {
            client: client(9),
            reply: Reply {
                result: 7,
                server_id: 1
            }
        }
    );
    assert_eq!(rig.stats.late_replies.load(Relaxed), 1);
    // Server 1 answered late: that is a success for it, and its 25 ms
    // round trip is its first sample (deadline 25 + 4 * 12.5 = 75 ms).
    let s1 = rig.core.health().get(mac(1)).unwrap();
    assert_eq!(s1.health.silent_events(), 0);
    assert_eq!(s1.rtt.srtt(), Some(25 * MS));
    assert_eq!(s1.rtt.timeout(&config().timeout), 75 * MS);
    // The request lingers for server 2's answer, which is owed: it proves
    // server 2 alive too, and answers nobody.
    assert_eq!(rig.core.in_flight(), 1);
    assert_eq!(
        rig.core.on_frame(&answer(second, mac(2), 2), rig.at(26)),
        Action::None
    );
    assert_eq!(rig.stats.answers_after_reply.load(Relaxed), 1);
    assert_eq!(rig.core.in_flight(), 0);
    assert_eq!(rig.stats.replies.load(Relaxed), 1);
    // Any further copy is stale.
    assert_eq!(
        rig.core.on_frame(&answer(second, mac(2), 2), rig.at(27)),
        Action::None
    );
    assert_eq!(rig.stats.drop_count(DropReason::Stale).load(Relaxed), 1);
}

#[test]
fn replies_that_do_not_match_are_dropped_and_counted() {
    // 48 slots use 6 tag bits, so slots 48..63 exist only in the tag space.
    let mut rig = Rig::new(
        CoreConfig {
            capacity: 48,
            ..config()
        },
        &[1, 2],
    );
    let action = rig
        .core
        .on_request(client(9), &request(3, 4, Op::Add).to_bytes(), rig.t0);
    let now = rig.at(1);
    let count = |rig: &Rig, r: DropReason| rig.stats.drop_count(r).load(Relaxed);

    // From a server the request was never sent to.
    assert_eq!(
        rig.core.on_frame(&answer(action, mac(2), 2), now),
        Action::None
    );
    assert_eq!(count(&rig, DropReason::WrongServer), 1);
    // Garbage, truncated, wrong EtherType.
    let good = answer(action, mac(1), 1);
    assert_eq!(rig.core.on_frame(&good[..20], now), Action::None);
    assert_eq!(rig.core.on_frame(&[], now), Action::None);
    let mut wrong_type = good.clone();
    wrong_type[12] = 0x08;
    assert_eq!(rig.core.on_frame(&wrong_type, now), Action::None);
    assert_eq!(count(&rig, DropReason::BadFrame), 3);
    // Addressed to someone else.
    let mut other_dst = good.clone();
    other_dst[..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    assert_eq!(rig.core.on_frame(&other_dst, now), Action::None);
    assert_eq!(count(&rig, DropReason::NotForUs), 1);
    // A request frame.
    let mut buf = [0u8; 64];
    let req_frame = action.frame(LB).unwrap();
    let req_frame = FrameRepr {
        dst: LB,
        ..req_frame
    };
    assert_eq!(
        rig.core.on_frame(req_frame.emit_into(&mut buf), now),
        Action::None
    );
    assert_eq!(count(&rig, DropReason::NotAReply), 1);
    // Tags of another worker and of a slot that does not exist.
    let mut foreign = good.clone();
    foreign[22] = 7;
    assert_eq!(rig.core.on_frame(&foreign, now), Action::None);
    assert_eq!(count(&rig, DropReason::ForeignTag), 1);
    let mut no_slot = good.clone();
    let tag = TagLayout::new(48, 0).encode(50, 0, 0);
    no_slot[15..23].copy_from_slice(&tag.to_be_bytes());
    assert_eq!(rig.core.on_frame(&no_slot, now), Action::None);
    assert_eq!(count(&rig, DropReason::UnknownTag), 1);

    // None of that disturbed the request: the right answer still lands,
    // once; its duplicate is stale.
    assert!(matches!(
        rig.core.on_frame(&good, now),
        Action::Reply { .. }
    ));
    assert_eq!(rig.core.on_frame(&good, now), Action::None);
    assert_eq!(count(&rig, DropReason::Stale), 1);
    assert_eq!(rig.stats.replies.load(Relaxed), 1);
}

#[test]
fn server_error_frame_retries_at_once() {
    let mut rig = Rig::new(config(), &[1, 2]);
    let first = rig
        .core
        .on_request(client(9), &request(3, 4, Op::Add).to_bytes(), rig.t0);
    let frame = FrameRepr {
        dst: LB,
        src: mac(1),
        tag: tag_of(first),
        body: FrameBody::Error(Status::Overloaded),
    };
    let mut buf = [0u8; 64];
    let action = rig.core.on_frame(frame.emit_into(&mut buf), rig.at(1));
    assert_eq!(forwarded_to(action), mac(2));
    assert_eq!(rig.stats.retries.load(Relaxed), 1);
    assert_eq!(rig.server_counter(1, |c| c.failures.load(Relaxed)), 1);
    assert_eq!(rig.core.next_deadline(), Some(rig.at(1) + first_deadline()));
    // The same refusal again (already answered) changes nothing.
    assert_eq!(rig.core.on_frame(&buf[..24], rig.at(2)), Action::None);
    assert_eq!(rig.stats.drop_count(DropReason::Stale).load(Relaxed), 1);
    assert_eq!(rig.core.in_flight(), 1);
    // When every server asked refused, the client is told at once.
    let frame = FrameRepr {
        src: mac(2),
        ..frame
    };
    // Server 2 refused too: the third attempt goes back to server 1.
    let last = rig.core.on_frame(frame.emit_into(&mut buf), rig.at(3));
    assert_eq!(forwarded_to(last), mac(1));
}

#[test]
fn a_silent_server_is_ejected_then_tried_again_after_the_cool_down() {
    let mut rig = Rig::new(config(), &[1, 2]);
    let bytes = request(1, 1, Op::Add).to_bytes();
    // Every 50 ms, one request to each: server 2 answers, server 1 never.
    let mut now = rig.t0;
    let mut answered = 0;
    for _ in 0..12 {
        for c in 0..2 {
            let a = rig.core.on_request(client(1 + c), &bytes, now);
            if forwarded_to(a) == mac(2) {
                rig.core.on_frame(&answer(a, mac(2), 2), now + MS);
                answered += 1;
            }
        }
        let mut out = Vec::new();
        rig.core.on_tick(now + 30 * MS, |a| out.push(a));
        // Server 1's requests were sent to server 2 at their deadline.
        for a in out
            .into_iter()
            .filter(|a| matches!(a, Action::Forward { .. }))
        {
            assert_eq!(forwarded_to(a), mac(2));
            assert!(matches!(
                rig.core.on_frame(&answer(a, mac(2), 2), now + 31 * MS),
                Action::Reply { .. }
            ));
            answered += 1;
        }
        now += 50 * MS;
    }
    assert_eq!(answered, 24, "every request answered");
    // Silent for the 500 ms window while server 2 answered: ejected once.
    assert_eq!(rig.stats.ejections.load(Relaxed), 1);
    assert_eq!(rig.server_counter(1, |c| c.ejections.load(Relaxed)), 1);
    assert_eq!(rig.server_counter(2, |c| c.ejections.load(Relaxed)), 0);
    // Out of rotation: everything goes to server 2 for the cool-down.
    for _ in 0..4 {
        let a = rig.core.on_request(client(3), &bytes, now);
        assert_eq!(forwarded_to(a), mac(2));
        rig.core.on_frame(&answer(a, mac(2), 2), now);
    }
    now += Duration::from_secs(5);
    let picks: Vec<MacAddr> = (0..2)
        .map(|_| {
            let a = rig.core.on_request(client(3), &bytes, now);
            rig.core.on_frame(&answer(a, forwarded_to(a), 0), now);
            forwarded_to(a)
        })
        .collect();
    assert!(picks.contains(&mac(1)), "back in rotation: {picks:?}");
}

#[test]
fn list_change_mid_rotation_neither_repeats_nor_skips() {
    let mut rig = Rig::new(config(), &[1, 2, 3]);
    let bytes = request(1, 1, Op::Add).to_bytes();
    let next = |rig: &mut Rig| {
        let a = rig.core.on_request(client(1), &bytes, rig.t0);
        rig.core.on_frame(&answer(a, forwarded_to(a), 0), rig.t0);
        forwarded_to(a).0[5] - 10
    };
    assert_eq!([next(&mut rig), next(&mut rig)], [1, 2]);
    rig.servers(2, &[1, 2, 3, 4]);
    assert_eq!([next(&mut rig), next(&mut rig), next(&mut rig)], [3, 4, 1]);
    rig.servers(3, &[2, 4]);
    assert_eq!([next(&mut rig), next(&mut rig)], [2, 4]);
    assert_eq!(rig.core.snapshot().version, 3);
    // The metrics list follows membership.
    let listed: Vec<u8> = rig.stats.servers.load().iter().map(|e| e.id).collect();
    assert_eq!(listed, [2, 4]);
}

#[test]
fn with_no_server_left_to_retry_the_request_waits_then_gets_error_4() {
    let mut rig = Rig::new(config(), &[1]);
    let a = rig
        .core
        .on_request(client(9), &request(1, 1, Op::Add).to_bytes(), rig.t0);
    rig.servers(2, &[]);
    let mut out = Vec::new();
    rig.core.on_tick(rig.t0 + first_deadline(), |a| out.push(a));
    assert_eq!(out, [Action::None]);
    // The server the request went to may still answer...
    let reply = rig.core.on_frame(&answer(a, mac(1), 1), rig.at(100));
    assert!(matches!(reply, Action::Reply { .. }), "{reply:?}");
    // ...and when it does not, the client hears at the request deadline.
    rig.core
        .on_request(client(8), &request(1, 1, Op::Add).to_bytes(), rig.at(101));
    rig.servers(3, &[1]);
    let b = rig
        .core
        .on_request(client(8), &request(1, 1, Op::Add).to_bytes(), rig.at(101));
    forwarded_to(b);
    rig.servers(4, &[]);
    out.clear();
    rig.core.on_tick(rig.at(601), |a| out.push(a));
    assert!(out.contains(&Action::Error {
        client: client(8),
        status: Status::TimedOut
    }));
}

#[test]
fn error_replies_are_rate_limited_and_counted() {
    let mut rig = Rig::new(
        CoreConfig {
            error_rate: 10.0,
            error_burst: 5.0,
            ..config()
        },
        &[1],
    );
    let sent = (0..100)
        .filter(|_| rig.core.on_request(client(1), &[1], rig.t0) != Action::None)
        .count();
    assert_eq!(sent, 5);
    assert_eq!(rig.stats.errors_suppressed.load(Relaxed), 95);
    assert_eq!(rig.stats.error(Status::Malformed).load(Relaxed), 100);
    // 10/s: a second later, 5 more (the burst).
    let later = rig.at(1000);
    let sent = (0..100)
        .filter(|_| rig.core.on_request(client(1), &[1], later) != Action::None)
        .count();
    assert_eq!(sent, 5);
    // Forwarding is not limited.
    let a = rig
        .core
        .on_request(client(1), &request(1, 1, Op::Add).to_bytes(), later);
    assert_eq!(forwarded_to(a), mac(1));
}

#[test]
fn tags_carry_the_worker_and_bad_configs_are_refused() {
    let mut rig = Rig::new(
        CoreConfig {
            worker: 5,
            ..config()
        },
        &[1],
    );
    let a = rig
        .core
        .on_request(client(1), &request(1, 1, Op::Add).to_bytes(), rig.t0);
    assert_eq!(tag_of(a) & 0xff, 5);
    assert!(matches!(
        rig.core.on_frame(&answer(a, mac(1), 1), rig.t0),
        Action::Reply { .. }
    ));
    for (bad, err) in [
        (
            CoreConfig {
                capacity: 0,
                ..config()
            },
            ConfigError::Capacity(0),
        ),
        (
            CoreConfig {
                attempts: 9,
                ..config()
            },
            ConfigError::Attempts(9),
        ),
        (
            CoreConfig {
                timeout: TimeoutPolicy {
                    min: Duration::ZERO,
                    ..TimeoutPolicy::default()
                },
                ..config()
            },
            ConfigError::Timeout {
                min: Duration::ZERO,
                max: 250 * MS,
            },
        ),
        (
            CoreConfig {
                request_timeout: MS,
                ..config()
            },
            ConfigError::RequestTimeout(MS),
        ),
        (
            CoreConfig {
                budget: BudgetPolicy {
                    ratio: 1.5,
                    ..BudgetPolicy::default()
                },
                ..config()
            },
            ConfigError::BudgetRatio(1.5),
        ),
    ] {
        assert_eq!(bad.validate(), Err(err));
    }
}

fn records_of(action: Action) -> u8 {
    match action {
        Action::Forward { records, .. } => records,
        other => panic!("not a forward: {other:?}"),
    }
}

/// `frame` with a capability record announcing `max` appended.
fn with_capability(mut frame: Vec<u8>, max: u8) -> Vec<u8> {
    let mut record = [0u8; ipcs_common::wire::records::CAPABILITY_RECORD_LEN];
    ipcs_common::wire::records::emit_capability(&mut record, max);
    frame.extend_from_slice(&record);
    frame
}

#[test]
fn a_server_that_announces_records_gets_them_up_to_the_configured_most() {
    let mut rig = Rig::new(config(), &[1]);
    let ask = |rig: &mut Rig, i: u16| {
        rig.core
            .on_request(client(4000 + i), &request(1, 2, Op::Add).to_bytes(), rig.t0)
    };
    let first = ask(&mut rig, 0);
    assert_eq!(records_of(first), 1, "nothing announced yet");
    let reply = rig
        .core
        .on_frame(&with_capability(answer(first, mac(1), 1), 64), rig.t0);
    assert!(matches!(reply, Action::Reply { .. }));
    assert_eq!(
        records_of(ask(&mut rig, 1)),
        32,
        "capped by --frame-records"
    );

    // An answer without the record: the server is another (older) one now.
    let second = ask(&mut rig, 2);
    rig.core.on_frame(&answer(second, mac(1), 1), rig.t0);
    assert_eq!(records_of(ask(&mut rig, 3)), 1);
}

#[test]
fn packing_stops_at_the_links_mtu_and_follows_it() {
    // A 300-byte link holds 16 request records (288 bytes); a server that
    // reads 64 still gets no more in one frame.
    let mut rig = Rig::new(
        CoreConfig {
            link_mtu: 300,
            ..config()
        },
        &[1],
    );
    assert_eq!(rig.core.frame_records(), 16);
    let ask = |rig: &mut Rig, i: u16| {
        rig.core
            .on_request(client(4000 + i), &request(1, 2, Op::Add).to_bytes(), rig.t0)
    };
    let first = ask(&mut rig, 0);
    rig.core
        .on_frame(&with_capability(answer(first, mac(1), 1), 64), rig.t0);
    assert_eq!(records_of(ask(&mut rig, 1)), 16);
    rig.core.set_link_mtu(150); // 8 records of 18 bytes
    assert_eq!(records_of(ask(&mut rig, 2)), 8);
    rig.core.set_link_mtu(1450); // an overlay: --frame-records binds again
    assert_eq!(records_of(ask(&mut rig, 3)), 32);
}

#[test]
fn a_forged_capability_without_a_genuine_answer_is_ignored() {
    let mut rig = Rig::new(config(), &[1]);
    let sent = rig
        .core
        .on_request(client(4000), &request(1, 2, Op::Add).to_bytes(), rig.t0);
    // From the server's MAC, a reply with a tag nobody issued.
    let mut forged = answer(sent, mac(1), 1);
    forged[15] ^= 0x80;
    rig.core.on_frame(&with_capability(forged, 64), rig.t0);
    // A genuine answer, but from another MAC than the request went to.
    let stranger = with_capability(answer(sent, mac(9), 9), 64);
    assert_eq!(rig.core.on_frame(&stranger, rig.t0), Action::None);
    let next = rig
        .core
        .on_request(client(4001), &request(1, 2, Op::Add).to_bytes(), rig.t0);
    assert_eq!(records_of(next), 1);
    assert_eq!(
        rig.stats.drop_count(DropReason::WrongServer).load(Relaxed),
        1
    );
}

#[test]
fn attempts_to_servers_that_left_do_not_count_and_need_no_budget() {
    let mut rig = Rig::new(config(), &[1, 2, 3, 4, 5]);
    let first = rig
        .core
        .on_request(client(9), &request(2, 3, Op::Add).to_bytes(), rig.t0);
    assert_eq!(forwarded_to(first), mac(1));
    let mut now = rig.t0;
    let mut last = first;
    // Servers 1, 2 and 3 leave one after another, each while the request
    // waits on it: three attempts spent on departing servers.
    for (version, left) in [(2u64, &[2u8, 3, 4, 5][..]), (3, &[3, 4, 5]), (4, &[4, 5])] {
        now += first_deadline();
        rig.servers(version, left);
        let mut out = Vec::new();
        rig.core.on_tick(now, |a| out.push(a));
        assert_eq!(out.len(), 1, "{out:?}");
        last = out[0];
        assert!(left.contains(&(forwarded_to(last).0[5] - 10)), "{last:?}");
    }
    // The fourth attempt went to a listed server, and its answer counts.
    let id = forwarded_to(last).0[5] - 10;
    let reply = rig
        .core
        .on_frame(&answer(last, forwarded_to(last), id), now);
    assert!(matches!(reply, Action::Reply { .. }), "{reply:?}");
    assert_eq!(rig.stats.failovers.load(Relaxed), 3);
    assert_eq!(rig.stats.retries_over_budget.load(Relaxed), 0);
}

#[test]
fn one_flooding_network_holds_its_share_of_slots_and_others_still_get_in() {
    let mut rig = Rig::new(
        CoreConfig {
            capacity: 64,
            source_share: 0.25,
            ..config()
        },
        &[1],
    );
    let bytes = request(1, 2, Op::Add).to_bytes();
    // One /24, many hosts and ports: one bucket.
    let flooder = |i: u16| SocketAddr::from(([198, 51, 100, (i % 250) as u8], 1000 + i));
    let actions: Vec<Action> = (0..100)
        .map(|i| rig.core.on_request(flooder(i), &bytes, rig.t0))
        .collect();
    let forwarded = actions
        .iter()
        .filter(|a| matches!(a, Action::Forward { .. }))
        .count();
    // Work-conserving: alone it may fill half the table (32 of 64 slots),
    // then, the table contended, no more than its quarter (16).
    assert_eq!(forwarded, 32, "half of 64 slots");
    assert!(actions[32..].iter().all(|a| matches!(
        a,
        Action::Error {
            status: Status::Overloaded,
            ..
        }
    )));
    assert_eq!(rig.stats.source_share_refusals.load(Relaxed), 68);
    // Another network is not starved.
    let other = SocketAddr::from(([203, 0, 113, 5], 4000));
    assert!(matches!(
        rig.core.on_request(other, &bytes, rig.t0),
        Action::Forward { .. }
    ));
    // One answer is not enough: 31 is still over its share of a contended table.
    rig.core.on_frame(&answer(actions[0], mac(1), 1), rig.at(1));
    assert!(matches!(
        rig.core.on_request(flooder(200), &bytes, rig.at(1)),
        Action::Error {
            status: Status::Overloaded,
            ..
        }
    ));
    // Answers that bring the table under half full let it in again.
    for a in &actions[1..16] {
        rig.core.on_frame(&answer(*a, mac(1), 1), rig.at(1));
    }
    assert!(matches!(
        rig.core.on_request(flooder(201), &bytes, rig.at(1)),
        Action::Forward { .. }
    ));
}

#[test]
fn a_flood_of_bad_datagrams_does_not_silence_errors_to_other_networks() {
    let mut rig = Rig::new(
        CoreConfig {
            error_rate: 100.0,
            error_burst: 40.0,
            source_share: 0.25,
            ..config()
        },
        &[1],
    );
    let flooder = SocketAddr::from(([198, 51, 100, 7], 1000));
    let sent = (0..1000)
        .filter(|_| {
            matches!(
                rig.core.on_request(flooder, &[1, 2, 3], rig.t0),
                Action::Error { .. }
            )
        })
        .count();
    assert_eq!(sent, 10, "a quarter of the burst");
    let victim = SocketAddr::from(([203, 0, 113, 5], 4000));
    assert_eq!(
        rig.core.on_request(victim, &[1, 2, 3], rig.t0),
        Action::Error {
            client: victim,
            status: Status::Malformed
        }
    );
}

#[test]
fn forged_error_records_eject_nobody() {
    let mut rig = Rig::new(config(), &[1, 2]);
    let mut rng = fastrand::Rng::with_seed(16);
    for round in 0..50u64 {
        let now = rig.at(round * 10);
        let a = rig
            .core
            .on_request(client(1), &request(1, 1, Op::Add).to_bytes(), now);
        let server = forwarded_to(a);
        // A storm of error records from the server's MAC with made-up checks
        // on the real tag's slot, then the genuine reply.
        for _ in 0..20 {
            let forged = FrameRepr {
                dst: LB,
                src: server,
                tag: tag_of(a) ^ (u64::from(rng.u32(1..)) << 32),
                body: FrameBody::Error(Status::Overloaded),
            };
            let mut buf = [0u8; 64];
            assert_eq!(
                rig.core.on_frame(forged.emit_into(&mut buf), now),
                Action::None
            );
        }
        let id = if server == mac(1) { 1 } else { 2 };
        assert!(matches!(
            rig.core.on_frame(&answer(a, server, id), now + MS),
            Action::Reply { .. }
        ));
        let mut out = Vec::new();
        rig.core.on_tick(now + 5 * MS, |x| out.push(x));
    }
    assert_eq!(
        rig.stats.drop_count(DropReason::BadTag).load(Relaxed),
        50 * 20
    );
    assert_eq!(rig.stats.ejections.load(Relaxed), 0);
    assert_eq!(rig.server_counter(1, |c| c.failures.load(Relaxed)), 0);
    assert_eq!(rig.server_counter(2, |c| c.failures.load(Relaxed)), 0);
}
