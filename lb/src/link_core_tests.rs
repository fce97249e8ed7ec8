//! The registry link's rules without sockets or sleeping: events fed with
//! fabricated instants, commands checked as they come. The same behaviours
//! over real loopback sockets are in `registry_link_tests.rs`.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::snapshot::shared_empty;

const MS: Duration = Duration::from_millis(1);
const REGISTRY: &str = "127.0.0.1:7070";

fn list(version: u64, ids: &[u8]) -> Vec<u8> {
    let mut s = format!("SERVERS version={version} count={}\n", ids.len());
    for id in ids {
        s.push_str(&format!("{id} 02:00:00:00:00:{id:02x} 172.16.238.{id} 0\n"));
    }
    s.push_str("END\n");
    s.into_bytes()
}

fn config(addr: &str) -> RegistryLinkConfig {
    RegistryLinkConfig {
        interval: 20 * MS,
        answer_timeout: 500 * MS,
        connect_timeout: 500 * MS,
        backoff_min: 10 * MS,
        backoff_max: 50 * MS,
        resync_grace: 400 * MS,
        ..RegistryLinkConfig::new(addr)
    }
}

struct Rig {
    core: LinkCore,
    snapshot: SharedSnapshot,
    status: Arc<RegistryStatus>,
    t0: Instant,
    out: Vec<Command>,
}

impl Rig {
    fn new(config: RegistryLinkConfig) -> Rig {
        let snapshot = shared_empty();
        let status = Arc::new(RegistryStatus::default());
        let t0 = Instant::now();
        Rig {
            core: LinkCore::new(config, snapshot.clone(), status.clone(), t0),
            snapshot,
            status,
            t0,
            out: Vec::new(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// The commands issued since the last call.
    fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    fn timer(&mut self, ms: u64) -> Vec<Command> {
        self.core.on_timer(self.at(ms), &mut self.out);
        self.take()
    }

    fn connected(&mut self, ms: u64) -> Vec<Command> {
        self.core.on_connected(self.at(ms), &mut self.out);
        self.take()
    }

    fn bytes(&mut self, bytes: &[u8], ms: u64) -> Vec<Command> {
        self.core.on_bytes(bytes, self.at(ms), &mut self.out);
        self.take()
    }

    fn failed(&mut self, why: &str, ms: u64) -> Vec<Command> {
        self.core
            .on_failed(why.to_owned(), self.at(ms), &mut self.out);
        self.take()
    }

    /// Connects at `ms` and answers the `LIST` with `answer`.
    fn up_with(&mut self, answer: &[u8], ms: u64) {
        let addr: SocketAddr = REGISTRY.parse().unwrap();
        assert_eq!(self.timer(ms), [Command::Connect(addr)]);
        assert_eq!(self.connected(ms), [send("LIST")]);
        assert!(self.bytes(answer, ms).is_empty());
    }

    fn ids(&self) -> Vec<u8> {
        self.snapshot.load().servers.iter().map(|b| b.id).collect()
    }

    /// Offset of the core's next deadline from the start, in whole ms
    /// rounded up (jittered delays fall between milliseconds).
    fn next_ms(&self) -> u64 {
        (self.core.next_deadline() - self.t0)
            .as_nanos()
            .div_ceil(1_000_000) as u64
    }
}

fn send(line: &str) -> Command {
    Command::Send(format!("{line}\n").into_bytes())
}

#[test]
fn loads_the_list_then_watches_with_its_version_one_interval_later() {
    let mut rig = Rig::new(config(REGISTRY));
    rig.up_with(&list(3, &[12, 11]), 5);
    let snap = rig.snapshot.load_full();
    assert_eq!(snap.version, 3);
    assert_eq!(rig.ids(), [11, 12]);
    assert_eq!(snap.servers[0].mac.to_string(), "02:00:00:00:00:0b");
    assert!(rig.core.has_list() && rig.core.is_up());
    assert!(rig.status.reachable.load(Relaxed));
    assert_eq!(rig.status.version.load(Relaxed), 3);
    assert_eq!(rig.status.connects.load(Relaxed), 1);
    // The next request no sooner than one interval after the LIST.
    assert_eq!(rig.next_ms(), 25);
    assert!(rig.timer(24).is_empty());
    assert_eq!(rig.timer(25), [send("WATCH 3")]);
}

#[test]
fn a_change_announced_by_watch_is_published_and_watched_next() {
    let mut rig = Rig::new(config(REGISTRY));
    rig.up_with(&list(3, &[11]), 0);
    assert_eq!(rig.timer(20), [send("WATCH 3")]);
    // The answer may come in pieces.
    let answer = list(4, &[11, 13]);
    let (a, b) = answer.split_at(10);
    assert!(rig.bytes(a, 30).is_empty());
    assert_eq!(
        rig.snapshot.load().version,
        3,
        "half an answer is not a list"
    );
    assert!(rig.bytes(b, 31).is_empty());
    assert_eq!(rig.snapshot.load().version, 4);
    assert_eq!(rig.ids(), [11, 13]);
    assert_eq!(rig.timer(40), [send("WATCH 4")]);
    assert_eq!(rig.status.lists.load(Relaxed), 2);
}

#[test]
fn a_closed_connection_keeps_the_list_and_reconnects_with_list() {
    let mut rig = Rig::new(config(REGISTRY));
    rig.up_with(&list(5, &[11, 12]), 0);
    assert_eq!(rig.timer(20), [send("WATCH 5")]);
    assert_eq!(
        rig.failed("the registry closed the connection", 21),
        [Command::Disconnect]
    );
    assert!(!rig.status.reachable.load(Relaxed));
    assert_eq!(rig.snapshot.load().len(), 2, "last list kept");
    assert_eq!(
        rig.core.last_error(),
        Some("the registry closed the connection")
    );
    // The first retry within [backoff_min / 2, backoff_min).
    let retry = rig.next_ms();
    assert!((26..=31).contains(&retry), "retry at {retry} ms");
    assert!(rig.timer(retry - 1).is_empty());
    // A new connection asks LIST again, not WATCH: a restarted registry
    // may reuse an old version number.
    rig.up_with(&list(5, &[11, 12]), retry);
    assert_eq!(rig.status.connects.load(Relaxed), 2);
    assert!(rig.status.reachable.load(Relaxed));
    assert_eq!(rig.core.last_error(), None);
}

#[test]
fn an_unreachable_registry_is_retried_with_a_growing_capped_backoff() {
    let mut rig = Rig::new(config(REGISTRY));
    let addr: SocketAddr = REGISTRY.parse().unwrap();
    let mut now = 0;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        assert_eq!(rig.timer(now), [Command::Connect(addr)]);
        rig.core
            .on_connect_failed("connect to x: refused".into(), rig.at(now), &mut rig.out);
        assert_eq!(rig.take(), [Command::Disconnect]);
        let next = rig.next_ms();
        gaps.push(next - now);
        now = next;
    }
    // Steps 10, 20, 40, 50, 50, 50 ms; each delay in the step's upper half.
    for (gap, step) in gaps.iter().zip([10, 20, 40, 50, 50, 50]) {
        assert!(
            *gap >= step / 2 && *gap <= step,
            "gap {gap} for step {step}: {gaps:?}"
        );
    }
    assert!(!rig.core.has_list());
    assert!(rig.core.last_error().unwrap().contains("refused"));
    assert!(!rig.status.reachable.load(Relaxed));
    assert!(rig.snapshot.load().is_empty());
    // A success resets the backoff.
    rig.up_with(&list(1, &[11]), now);
    assert_eq!(rig.failed("read: reset", now + 1), [Command::Disconnect]);
    assert!(rig.next_ms() - (now + 1) <= 10);
}

#[test]
fn a_connect_that_never_completes_times_out() {
    let mut rig = Rig::new(config(REGISTRY));
    assert_eq!(rig.timer(0).len(), 1);
    assert_eq!(rig.next_ms(), 500);
    assert!(rig.timer(499).is_empty());
    assert_eq!(rig.timer(500), [Command::Disconnect]);
    assert_eq!(rig.core.last_error(), Some("connect timed out"));
}

#[test]
fn a_garbage_answer_drops_the_connection_and_publishes_nothing() {
    let mut rig = Rig::new(config(REGISTRY));
    let addr: SocketAddr = REGISTRY.parse().unwrap();
    assert_eq!(rig.timer(0), [Command::Connect(addr)]);
    assert_eq!(rig.connected(0), [send("LIST")]);
    let garbage = b"SERVERS version=1 count=1\nthis is not a server\n";
    assert_eq!(rig.bytes(garbage, 1), [Command::Disconnect]);
    assert!(rig.core.last_error().unwrap().starts_with("bad answer"));
    assert!(!rig.core.has_list());
    assert!(rig.snapshot.load().is_empty());
    let retry = rig.next_ms();
    rig.up_with(&list(2, &[11]), retry);
    assert_eq!(rig.snapshot.load().version, 2, "only the good list counts");
}

#[test]
fn a_silent_registry_is_declared_dead_after_the_answer_timeout() {
    let mut rig = Rig::new(config(REGISTRY));
    rig.up_with(&list(1, &[11]), 0);
    assert_eq!(rig.timer(20), [send("WATCH 1")]);
    assert_eq!(rig.next_ms(), 520);
    assert!(rig.timer(519).is_empty());
    assert_eq!(rig.timer(520), [Command::Disconnect]);
    assert!(!rig.status.reachable.load(Relaxed));
    assert_eq!(rig.core.last_error(), Some("no answer within 500 ms"));
    assert_eq!(rig.snapshot.load().len(), 1);
}

#[test]
fn a_host_name_is_resolved_and_each_address_tried() {
    let mut rig = Rig::new(config("registry.batata:7070"));
    assert_eq!(
        rig.timer(0),
        [Command::Resolve("registry.batata:7070".into())]
    );
    assert!(rig.core.is_resolving());
    let v6: SocketAddr = "[::1]:7070".parse().unwrap();
    let v4: SocketAddr = "127.0.0.1:7070".parse().unwrap();
    rig.core
        .on_resolved(Ok(vec![v6, v4]), rig.at(3), &mut rig.out);
    assert_eq!(rig.take(), [Command::Connect(v6)]);
    rig.core
        .on_connect_failed("connect: refused".into(), rig.at(4), &mut rig.out);
    assert_eq!(rig.take(), [Command::Connect(v4)]);
    assert_eq!(rig.connected(5), [send("LIST")]);
    assert!(rig.bytes(&list(9, &[11]), 6).is_empty());
    assert_eq!(rig.snapshot.load().version, 9);
}

#[test]
fn a_name_that_does_not_resolve_in_time_or_at_all_is_a_failure() {
    let mut rig = Rig::new(config("no-such-host.invalid:7070"));
    assert_eq!(rig.timer(0).len(), 1);
    assert_eq!(rig.timer(500), [Command::Disconnect]);
    assert_eq!(rig.core.last_error(), Some("name resolution timed out"));
    let retry = rig.next_ms();
    assert_eq!(rig.timer(retry).len(), 1);
    rig.core
        .on_resolved(Ok(Vec::new()), rig.at(retry + 1), &mut rig.out);
    assert_eq!(rig.take(), [Command::Disconnect]);
    assert_eq!(
        rig.core.last_error(),
        Some("the name resolves to no address")
    );
    assert!(!rig.core.has_list());
}

#[test]
fn a_restarted_registry_does_not_empty_the_rotation_before_the_grace_ends() {
    let mut rig = Rig::new(config(REGISTRY));
    // The registry knows 11 and 12, then dies.
    rig.up_with(&list(5, &[11, 12]), 0);
    assert_eq!(rig.failed("read: reset", 10), [Command::Disconnect]);
    // Restarted, it has heard from 11 only so far.
    let back = rig.next_ms();
    rig.up_with(&list(900, &[11]), back);
    assert_eq!(rig.snapshot.load().version, 900);
    assert_eq!(rig.ids(), [11, 12], "12 is kept while the registry refills");
    // Until the grace ends, exactly.
    let grace_end = back + 400;
    assert_eq!(rig.next_ms(), back + 20, "the next WATCH comes first");
    assert_eq!(rig.timer(back + 20), [send("WATCH 900")]);
    assert_eq!(rig.timer(grace_end - 1), []);
    assert_eq!(rig.ids(), [11, 12]);
    assert_eq!(rig.timer(grace_end), []);
    assert_eq!(rig.ids(), [11], "the registry's own list after the grace");
    assert_eq!(rig.snapshot.load().version, 900);
}

#[test]
fn the_first_connection_has_no_grace() {
    let mut rig = Rig::new(config(REGISTRY));
    rig.up_with(&list(5, &[11, 12]), 0);
    assert_eq!(rig.timer(20), [send("WATCH 5")]);
    assert!(rig.bytes(&list(6, &[11]), 21).is_empty());
    assert_eq!(rig.ids(), [11], "a server leaving is published at once");
}

#[test]
fn the_union_keeps_only_servers_the_fresh_list_does_not_contradict() {
    let backend = |id: u8, mac: u8| Backend {
        id,
        mac: ipcs_common::wire::MacAddr([2, 0, 0, 0, 0, mac]),
        ip: Ipv4Addr::new(172, 16, 238, id),
        udp: None,
    };
    let known = ServerSnapshot::new(5, vec![backend(11, 1), backend(12, 2), backend(13, 3)]);
    // 11 is back; id 12 now belongs to another MAC (a restarted container).
    let fresh = ServerSnapshot::new(900, vec![backend(11, 1), backend(12, 9)]);
    let merged = resync_union(&known, &fresh);
    assert_eq!(merged.version, 900);
    let got: Vec<(u8, u8)> = merged.servers.iter().map(|b| (b.id, b.mac.0[5])).collect();
    assert_eq!(got, [(11, 1), (12, 9), (13, 3)]);
    assert_eq!(resync_union(&ServerSnapshot::empty(), &fresh), fresh);
}
