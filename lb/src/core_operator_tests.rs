//! The operator's overrides as the core applies them: a drained or
//! operator-ejected server gets no new request and no retry, never as a
//! last resort either, and its answers to attempts already sent still
//! answer clients.

use ipcs_common::Op;

use super::tests::{answer, backend, client, config, forwarded_to, mac, request, LB, MS};
use super::*;
use crate::operator::{shared_none, Command, Target};
use crate::snapshot::shared_empty;

fn core(ids: &[u8], now: Instant) -> (Core, SharedOverrides) {
    let shared = shared_empty();
    let list = ids.iter().map(|id| backend(*id)).collect();
    shared.store(Arc::new(ServerSnapshot::new(1, list)));
    let stats = Arc::new(WorkerStats::default());
    let mut core = Core::new(config(), LB, shared, stats, now).unwrap();
    let overrides = shared_none();
    core.follow_overrides(overrides.clone(), now);
    (core, overrides)
}

fn command(overrides: &SharedOverrides, command: Command, now: Instant) {
    let next = overrides.load().apply(command, now).unwrap();
    overrides.store(Arc::new(next));
}

fn ask(core: &mut Core, port: u16, now: Instant) -> Action {
    core.on_request(client(port), &request(1, 2, Op::Add).to_bytes(), now)
}

#[test]
fn a_drained_server_gets_no_new_request_but_its_answers_count() {
    let t0 = Instant::now();
    let (mut core, overrides) = core(&[1, 2], t0);
    let first = ask(&mut core, 1, t0);
    assert_eq!(forwarded_to(first), mac(1));
    // Drained while its request is in flight.
    command(&overrides, Command::Drain(Target::Id(1)), t0);
    for port in 2..12 {
        assert_eq!(
            forwarded_to(ask(&mut core, port, t0)),
            mac(2),
            "port {port}"
        );
    }
    let reply = core.on_frame(&answer(first, mac(1), 1), t0 + MS);
    assert!(matches!(reply, Action::Reply { client: c, .. } if c == client(1)));
    // Back in rotation.
    command(&overrides, Command::Ready(Target::Id(1)), t0);
    let picked: Vec<MacAddr> = (50..54)
        .map(|port| forwarded_to(ask(&mut core, port, t0)))
        .collect();
    assert!(picked.contains(&mac(1)), "{picked:?}");
}

#[test]
fn a_drained_server_is_no_last_resort_nor_a_retry_target() {
    let t0 = Instant::now();
    let (mut core, overrides) = core(&[1, 2], t0);
    command(&overrides, Command::Drain(Target::Mac(mac(2))), t0);
    // Server 1's attempt times out: no retry may go to the drained 2.
    let first = ask(&mut core, 1, t0);
    assert_eq!(forwarded_to(first), mac(1));
    let mut actions = Vec::new();
    core.on_tick(t0 + 300 * MS, |a| actions.push(a));
    assert!(
        actions
            .iter()
            .all(|a| !matches!(a, Action::Forward { server, .. } if *server == mac(2))),
        "{actions:?}"
    );
    // Every server set aside: error 3 (no server), never the drained one.
    command(&overrides, Command::Eject(Target::Id(1), None), t0);
    let action = ask(&mut core, 9, t0 + MS);
    assert!(
        matches!(
            action,
            Action::Error {
                status: Status::NoServer,
                ..
            }
        ),
        "{action:?}"
    );
}

#[test]
fn a_timed_operator_ejection_lapses() {
    let t0 = Instant::now();
    let (mut core, overrides) = core(&[1], t0);
    command(
        &overrides,
        Command::Eject(Target::Id(1), Some(100 * MS)),
        t0,
    );
    let refused = ask(&mut core, 1, t0 + 50 * MS);
    assert!(matches!(
        refused,
        Action::Error {
            status: Status::NoServer,
            ..
        }
    ));
    let taken = ask(&mut core, 2, t0 + 100 * MS);
    assert_eq!(forwarded_to(taken), mac(1));
}

#[test]
fn a_drain_outlives_the_server_leaving_the_list() {
    let t0 = Instant::now();
    let (mut core, overrides) = core(&[1, 2], t0);
    command(&overrides, Command::Drain(Target::Id(1)), t0);
    let shared = core.shared.clone();
    shared.store(Arc::new(ServerSnapshot::new(2, vec![backend(2)])));
    let _ = ask(&mut core, 1, t0);
    shared.store(Arc::new(ServerSnapshot::new(
        3,
        vec![backend(1), backend(2)],
    )));
    for port in 2..6 {
        assert_eq!(forwarded_to(ask(&mut core, port, t0)), mac(2));
    }
}
