//! The session rules with fabricated instants and a recording outbox: no
//! socket, no clock, no sleeping.

use std::net::Ipv4Addr;

use super::*;
use crate::cidr::Cidr;

const MS: Duration = Duration::from_millis(1);

/// What the state machine asked for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Did {
    Send(ConnId, String),
    Close(ConnId, bool),
}

/// An outbox that records, with a settable output bound per connection.
#[derive(Debug, Default)]
struct Recorder {
    did: Vec<Did>,
    /// Connections whose peer stopped reading: sends to them are refused.
    full: Vec<ConnId>,
}

impl Outbox for Recorder {
    fn send(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), OutputFull> {
        if self.full.contains(&conn) {
            return Err(OutputFull { pending: 4096 });
        }
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        self.did.push(Did::Send(conn, text));
        Ok(())
    }

    fn close(&mut self, conn: ConnId, finish: bool) {
        self.did.push(Did::Close(conn, finish));
    }
}

impl Recorder {
    /// Everything recorded since the last call.
    fn take(&mut self) -> Vec<Did> {
        std::mem::take(&mut self.did)
    }
}

/// The wall clock when a test starts (proof times are checked against it).
const UNIX_T0: u64 = 1_767_225_600_000;

struct Rig {
    sessions: Sessions,
    out: Recorder,
    t0: Instant,
}

fn config() -> Config {
    Config {
        ttl: 1500 * MS,
        first_line_timeout: 300 * MS,
        watch_timeout: 1000 * MS,
        max_connections: 4,
        max_pending: 4,
        max_line: 64,
        ..Config::default()
    }
}

fn peer(last: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(172, 16, 238, last), 40000))
}

fn hello(id: u8) -> String {
    format!("HELLO id={id} mac=02:00:00:00:00:{id:02x} ip=172.16.238.{id}\n")
}

fn list_of(version: u64, ids: &[u8]) -> String {
    let mut s = format!("SERVERS version={version} count={}\n", ids.len());
    for id in ids {
        s.push_str(&format!("{id} 02:00:00:00:00:{id:02x} 172.16.238.{id} 0\n"));
    }
    s + "END\n"
}

impl Rig {
    fn new(config: Config) -> Rig {
        Rig {
            sessions: Sessions::new(config, 100),
            out: Recorder::default(),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn accept(&mut self, from: SocketAddr, ms: u64) -> ConnId {
        match self.sessions.on_accept(from, self.at(ms), &mut self.out) {
            Admission::Open(id) => id,
            Admission::Refused(words) => panic!("refused: {words:?}"),
        }
    }

    /// The wall clock at `ms` into the test.
    fn unix_ms(ms: u64) -> u64 {
        UNIX_T0 + ms
    }

    /// Feeds `text`; returns whether the connection stays open.
    fn feed(&mut self, id: ConnId, text: &str, ms: u64) -> bool {
        let now = self.at(ms);
        self.sessions
            .on_bytes(id, text.as_bytes(), now, Rig::unix_ms(ms), &mut self.out)
    }

    fn tick(&mut self, ms: u64) {
        let now = self.at(ms);
        self.sessions.on_tick(now, &mut self.out);
    }

    fn stat(&mut self, id: ConnId, name: &str, ms: u64) -> u64 {
        assert!(self.feed(id, "STATS\n", ms));
        let Some(Did::Send(_, text)) = self.out.take().pop() else {
            panic!("no STATS answer");
        };
        let prefix = format!("STAT {name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    }
}

#[test]
fn hello_is_answered_ok_and_listed() {
    let mut rig = Rig::new(config());
    let server = rig.accept(peer(11), 0);
    assert!(rig.feed(server, &hello(11), 1));
    assert_eq!(
        rig.out.take(),
        [Did::Send(server, "OK ttl_ms=1500\n".into())]
    );
    let lb = rig.accept(peer(1), 2);
    assert!(rig.feed(lb, "LIST\n", 3));
    assert_eq!(rig.out.take(), [Did::Send(lb, list_of(101, &[11]))]);
    assert_eq!(rig.sessions.counters().registrations, 1);
    assert_eq!(rig.sessions.counters().lists_sent, 1);
}

#[test]
fn lines_may_arrive_in_pieces_and_several_at_once() {
    let mut rig = Rig::new(config());
    let server = rig.accept(peer(11), 0);
    let text = hello(11) + "BEAT\nBEAT\n";
    let (a, b) = text.split_at(7);
    assert!(rig.feed(server, a, 1));
    assert!(rig.out.take().is_empty(), "half a line is not a line");
    assert!(rig.feed(server, b, 2));
    assert_eq!(rig.out.take().len(), 1, "OK only; a BEAT is not answered");
    assert_eq!(rig.sessions.counters().beats, 2);
}

#[test]
fn hello_from_outside_allow_is_refused_and_an_unknown_connection_closed() {
    let mut rig = Rig::new(Config {
        allow: vec!["172.16.238.0/24".parse::<Cidr>().unwrap()],
        ..config()
    });
    let outsider = rig.accept(SocketAddr::from(([10, 9, 9, 9], 5555)), 0);
    assert!(!rig.feed(outsider, &hello(11), 1));
    assert_eq!(
        rig.out.take(),
        [
            Did::Send(outsider, "ERR source address not allowed\n".into()),
            Did::Close(outsider, true),
        ]
    );
    assert_eq!(rig.sessions.counters().hello_not_allowed, 1);
    assert!(rig.sessions.membership().is_empty());
    let insider = rig.accept(peer(11), 2);
    assert!(rig.feed(insider, &hello(11), 3));
    assert_eq!(rig.sessions.membership().len(), 1);
}

#[test]
fn an_error_closes_an_unknown_connection_but_not_a_known_one() {
    let mut rig = Rig::new(config());
    let stranger = rig.accept(peer(1), 0);
    assert!(!rig.feed(stranger, "BOGUS\nLIST\n", 1), "closed");
    let did = rig.out.take();
    assert!(matches!(&did[0], Did::Send(id, e) if *id == stranger && e.starts_with("ERR ")));
    assert_eq!(did[1], Did::Close(stranger, true));
    assert_eq!(did.len(), 2, "the LIST after the error is not answered");
    assert!(rig.sessions.session(stranger).is_none());

    let lb = rig.accept(peer(1), 2);
    assert!(rig.feed(lb, "LIST\n", 3));
    assert!(rig.feed(lb, "BOGUS\n", 4), "a known connection stays");
    assert!(rig.feed(lb, "BEAT\n", 5), "not registered: an error too");
    let did = rig.out.take();
    assert_eq!(did.len(), 3);
    assert_eq!(did[2], Did::Send(lb, "ERR not registered\n".into()));
    assert_eq!(rig.sessions.counters().bad_lines, 3);
}

#[test]
fn a_line_too_long_closes_even_a_known_connection() {
    let mut rig = Rig::new(config());
    let lb = rig.accept(peer(1), 0);
    assert!(rig.feed(lb, "LIST\n", 1));
    rig.out.take();
    assert!(!rig.feed(lb, &"x".repeat(65), 2));
    let did = rig.out.take();
    assert!(matches!(&did[0], Did::Send(_, e) if e.starts_with("ERR ")));
    assert_eq!(did[1], Did::Close(lb, true));
    assert_eq!(rig.sessions.counters().lines_too_long, 1);
}

#[test]
fn no_valid_line_within_the_first_line_timeout_closes() {
    let mut rig = Rig::new(config());
    let silent = rig.accept(peer(1), 0);
    let talker = rig.accept(peer(2), 0);
    assert!(rig.feed(talker, "LIST\n", 100));
    rig.out.take();
    assert_eq!(rig.sessions.next_deadline(), Some(rig.at(300)));
    rig.tick(299);
    assert!(rig.out.take().is_empty(), "not yet");
    rig.tick(300);
    assert_eq!(rig.out.take(), [Did::Close(silent, false)]);
    assert_eq!(rig.sessions.counters().first_line_timeouts, 1);
    assert_eq!(rig.sessions.len(), 1, "the known one stays");
    // What is left is the known one's idle deadline.
    assert_eq!(
        rig.sessions.next_deadline(),
        Some(rig.at(100) + Config::default().idle_timeout)
    );
}

#[test]
fn one_watch_at_a_time() {
    let mut rig = Rig::new(config());
    let lb = rig.accept(peer(1), 0);
    assert!(rig.feed(lb, "WATCH 100\n", 1));
    assert!(rig.out.take().is_empty(), "parked: the version is current");
    assert!(rig.feed(lb, "WATCH 100\n", 2), "a known connection stays");
    assert_eq!(
        rig.out.take(),
        [Did::Send(lb, "ERR watch already pending\n".into())]
    );
    assert_eq!(rig.sessions.counters().bad_lines, 1);
}

#[test]
fn a_watch_is_answered_at_once_when_old_on_a_change_or_at_its_timeout() {
    let mut rig = Rig::new(config());
    let lb = rig.accept(peer(1), 0);
    // An old version: the list at once.
    assert!(rig.feed(lb, "WATCH 7\n", 1));
    assert_eq!(rig.out.take(), [Did::Send(lb, list_of(100, &[]))]);
    // The current one: parked until the version moves.
    assert!(rig.feed(lb, "WATCH 100\n", 2));
    let server = rig.accept(peer(11), 3);
    assert!(rig.feed(server, &hello(11), 4));
    rig.out.take();
    rig.tick(4);
    assert_eq!(rig.out.take(), [Did::Send(lb, list_of(101, &[11]))]);
    // Parked again, nothing changes: the same list at the watch timeout.
    assert!(rig.feed(lb, "WATCH 101\n", 10));
    rig.tick(1009);
    assert!(rig.out.take().is_empty());
    rig.tick(1010);
    assert_eq!(rig.out.take(), [Did::Send(lb, list_of(101, &[11]))]);
    assert!(rig.sessions.session(lb).unwrap().watch.is_none());
}

#[test]
fn a_restarted_server_replaces_its_old_connection() {
    let mut rig = Rig::new(config());
    let old = rig.accept(peer(11), 0);
    assert!(rig.feed(old, &hello(11), 1));
    let new = rig.accept(peer(11), 2);
    assert!(rig.feed(new, &hello(11), 3));
    assert_eq!(
        rig.out.take()[1..],
        [
            Did::Send(new, "OK ttl_ms=1500\n".into()),
            Did::Close(old, false)
        ]
    );
    assert!(rig.sessions.session(old).is_none());
    assert_eq!(rig.sessions.membership().len(), 1);
    assert_eq!(rig.sessions.counters().registrations, 2);
}

#[test]
fn an_id_of_another_mac_is_refused_and_counted() {
    let mut rig = Rig::new(config());
    let first = rig.accept(peer(11), 0);
    assert!(rig.feed(first, &hello(11), 1));
    let thief = rig.accept(peer(12), 2);
    assert!(!rig.feed(
        thief,
        "HELLO id=11 mac=02:00:00:00:00:99 ip=172.16.238.12\n",
        3
    ));
    assert_eq!(rig.sessions.counters().hello_id_taken, 1);
    assert_eq!(rig.out.take().last(), Some(&Did::Close(thief, true)));
}

#[test]
fn a_silent_server_expires_and_its_connection_is_closed() {
    let mut rig = Rig::new(config());
    let server = rig.accept(peer(11), 0);
    assert!(rig.feed(server, &hello(11), 0));
    assert!(rig.feed(server, "BEAT\n", 1000));
    rig.out.take();
    rig.tick(2499);
    assert!(rig.out.take().is_empty(), "the BEAT renewed it");
    rig.tick(2500);
    assert_eq!(rig.out.take(), [Did::Close(server, false)]);
    assert_eq!(rig.sessions.counters().expired, 1);
    assert!(rig.sessions.membership().is_empty());
}

#[test]
fn a_peer_that_does_not_read_is_closed_and_counted_once() {
    let mut rig = Rig::new(config());
    let lb = rig.accept(peer(1), 0);
    assert!(rig.feed(lb, "LIST\n", 1));
    rig.out.take();
    rig.out.full.push(lb);
    assert!(
        !rig.feed(lb, "LIST\nLIST\nLIST\n", 2),
        "closed at the first"
    );
    assert_eq!(rig.out.take(), [Did::Close(lb, false)]);
    assert_eq!(rig.sessions.counters().output_overflows, 1);
}

#[test]
fn connections_past_the_limit_are_refused_and_counted() {
    let mut rig = Rig::new(config());
    let ids: Vec<ConnId> = (0..4).map(|i| rig.accept(peer(i), 0)).collect();
    assert_eq!(
        ids,
        [FIRST_CONN, FIRST_CONN + 1, FIRST_CONN + 2, FIRST_CONN + 3]
    );
    // Pending connections make room for a newcomer: the oldest goes.
    let fifth = rig.accept(peer(8), 1);
    assert_eq!(
        rig.out.take(),
        [
            Did::Send(
                ids[0],
                "ERR displaced: no valid line yet and too many waiting\n".into()
            ),
            Did::Close(ids[0], true)
        ]
    );
    // Once all four have spoken, the limit refuses.
    for id in [ids[1], ids[2], ids[3], fifth] {
        assert!(rig.feed(id, "LIST\n", 1));
    }
    assert_eq!(
        rig.sessions.on_accept(peer(9), rig.at(1), &mut rig.out),
        Admission::Refused(TOO_MANY_CONNECTIONS)
    );
    rig.sessions.on_closed(ids[1], Close::PeerClosed, rig.at(2));
    let again = rig.accept(peer(9), 3);
    assert_eq!(again, FIRST_CONN + 5, "ids are never reused");
    assert_eq!(rig.stat(again, "connections_refused_total", 4), 1);
    assert_eq!(rig.stat(again, "pending_evicted_total", 4), 1);
    assert_eq!(rig.stat(again, "connections_accepted_total", 4), 6);
    assert_eq!(rig.stat(again, "connections_open", 4), 4);
}

#[test]
fn a_closed_connection_takes_its_registration_with_it() {
    let mut rig = Rig::new(config());
    let server = rig.accept(peer(11), 0);
    assert!(rig.feed(server, &hello(11), 1));
    rig.sessions.on_closed(server, Close::PeerClosed, rig.at(2));
    assert!(rig.sessions.membership().is_empty());
    assert_eq!(rig.sessions.membership().version(), 102);
    assert!(!rig.feed(server, "BEAT\n", 3), "gone");
}

#[test]
fn stats_reports_every_counter() {
    let mut rig = Rig::new(config());
    let probe = rig.accept(peer(1), 0);
    assert!(rig.feed(probe, "STATS\n", 1));
    let Did::Send(_, text) = &rig.out.take()[0] else {
        panic!("no answer");
    };
    assert!(text.ends_with("END\n"), "{text}");
    for (name, _) in Counters::default().named() {
        assert!(text.contains(&format!("STAT {name} ")), "{name} in {text}");
    }
    assert!(text.contains("STAT version 100\n"), "{text}");
}

#[test]
fn the_warn_limiter_lets_one_through_a_second_per_kind() {
    let mut limiter = WarnLimiter::default();
    let t0 = Instant::now();
    assert!(limiter.allow("a", t0));
    assert!(!limiter.allow("a", t0 + 999 * MS));
    assert!(limiter.allow("b", t0 + 999 * MS));
    assert!(limiter.allow("a", t0 + 1000 * MS));
}

// --- with a key (issue 16) ------------------------------------------------

use ipcs_common::registry_auth::Key;
use ipcs_common::registry_proto::SignedLine;

use crate::config::Auth;

fn key() -> Key {
    Key::from_bytes([7; 32])
}

fn auth_config() -> Config {
    Config {
        auth: Some(Auth::with_key(key())),
        max_line: 256,
        max_connections: 16,
        max_pending: 8,
        max_per_ip: 4,
        max_pending_per_ip: 2,
        idle_timeout: 3000 * MS,
        ..config()
    }
}

/// `line` with a proof by `key` made at `ms` into the test with `nonce`.
fn signed_by(key: &Key, line: &str, ms: u64, nonce: u64) -> String {
    let line = ClientLine::parse(line).unwrap();
    format!("{}\n", key.sign_at(line, Rig::unix_ms(ms), nonce))
}

fn signed(line: &str, ms: u64, nonce: u64) -> String {
    signed_by(&key(), line, ms, nonce)
}

impl Rig {
    /// Registers server `id` from its own address with a valid proof.
    fn register(&mut self, id: u8, ms: u64) -> ConnId {
        let conn = self.accept(peer(id), ms);
        assert!(self.feed(conn, &signed(&hello(id), ms, 1000 + u64::from(id)), ms));
        assert_eq!(
            self.out.take(),
            [Did::Send(conn, "OK ttl_ms=1500\n".into())]
        );
        conn
    }

    fn listed(&self) -> Vec<u8> {
        self.sessions
            .membership()
            .list()
            .iter()
            .map(|e| e.id)
            .collect()
    }

    fn refused_with(&mut self, conn: ConnId, reason: &str) {
        let did = self.out.take();
        let expected = Did::Send(conn, format!("ERR {reason}\n"));
        assert!(
            did.first().is_some_and(|d| *d == expected),
            "want ERR {reason}, got {did:?}"
        );
    }
}

#[test]
fn signed_lines_parse_back_exactly() {
    let text = signed(&hello(11), 5, 0xabc);
    let parsed = SignedLine::parse(&text).unwrap();
    assert_eq!(format!("{parsed}\n"), text);
    assert!(key().verify(&parsed.line, &parsed.proof.unwrap()));
}

#[test]
fn with_a_key_a_hello_with_a_valid_proof_registers() {
    let mut rig = Rig::new(auth_config());
    rig.register(11, 0);
    assert_eq!(rig.listed(), [11]);
    // A BEAT needs no proof on a connection registered with one.
    let conn = FIRST_CONN;
    assert!(rig.feed(conn, "BEAT\n", 500));
    assert!(rig.out.take().is_empty());
    assert_eq!(rig.sessions.counters().beats, 1);
}

#[test]
fn lines_without_proof_are_refused_counted_and_close_an_unknown_connection() {
    let mut rig = Rig::new(auth_config());
    let server = rig.register(11, 0);
    for (n, line) in [
        hello(12),
        "LIST\n".into(),
        "WATCH 5\n".into(),
        "STATS\n".into(),
    ]
    .iter()
    .enumerate()
    {
        let c = rig.accept(peer(12), 10 + n as u64);
        assert!(!rig.feed(c, line, 10 + n as u64), "{line}");
        rig.refused_with(
            c,
            "proof required (this registry has a key; see docs/SECURITY.md)",
        );
    }
    // A BEAT on a connection that never registered is refused too.
    let c = rig.accept(peer(12), 20);
    assert!(!rig.feed(c, "BEAT\n", 20));
    rig.refused_with(c, "not registered");
    assert_eq!(rig.sessions.counters().proof_missing, 4);
    assert_eq!(rig.listed(), [11]);
    assert!(rig.sessions.session(server).is_some());
}

#[test]
fn a_wrong_key_stale_or_replayed_proof_never_displaces_the_server() {
    let mut rig = Rig::new(auth_config());
    let server = rig.register(11, 0);
    let version = rig.sessions.membership().version();
    // The same HELLO (same MAC: a replacement) with another key.
    let intruder = rig.accept(peer(11), 100);
    let wrong = signed_by(&Key::from_bytes([8; 32]), &hello(11), 100, 1);
    assert!(!rig.feed(intruder, &wrong, 100));
    rig.refused_with(intruder, "bad proof (not made with this registry's key)");
    // The server's own HELLO, replayed byte for byte on another connection.
    let replay = rig.accept(peer(11), 200);
    assert!(!rig.feed(replay, &signed(&hello(11), 0, 1011), 200));
    rig.refused_with(replay, "replayed proof");
    // A proof from outside the 30 s window, either way.
    for (n, made_at) in [(2u64, 0u64), (3, 61_000)] {
        let c = rig.accept(peer(11), 30_500);
        assert!(!rig.feed(c, &signed(&hello(11), made_at, n), 30_500));
        rig.refused_with(c, "stale proof (clock skew beyond the window, or too old)");
        assert!(rig.feed(server, "BEAT\n", 30_500));
    }
    let c = rig.counters_now();
    assert_eq!((c.proof_bad, c.proof_replayed, c.proof_stale), (1, 1, 2));
    assert_eq!(rig.listed(), [11]);
    assert_eq!(rig.sessions.membership().version(), version);
    assert!(rig.sessions.session(server).is_some());
}

impl Rig {
    fn counters_now(&self) -> Counters {
        self.sessions.counters().clone()
    }
}

#[test]
fn a_hello_must_name_its_own_address() {
    let mut rig = Rig::new(auth_config());
    let c = rig.accept(peer(12), 0);
    // Server 11's entry, sent from .12.
    assert!(!rig.feed(c, &signed(&hello(11), 0, 1), 0));
    rig.refused_with(c, "ip is not the connection's address");
    assert_eq!(rig.sessions.counters().hello_ip_mismatch, 1);
    assert!(rig.listed().is_empty());
}

#[test]
fn a_restarted_server_with_proof_replaces_its_old_connection() {
    let mut rig = Rig::new(auth_config());
    let old = rig.register(11, 0);
    let new = rig.accept(peer(11), 100);
    assert!(rig.feed(new, &signed(&hello(11), 100, 77), 100));
    assert_eq!(
        rig.out.take(),
        [
            Did::Send(new, "OK ttl_ms=1500\n".into()),
            Did::Close(old, false)
        ]
    );
    assert_eq!(rig.listed(), [11]);
    assert_eq!(rig.sessions.membership().entry(new).unwrap().id, 11);
}

#[test]
fn list_and_watch_with_proof_are_answered() {
    let mut rig = Rig::new(auth_config());
    rig.register(11, 0);
    let lb = rig.accept(peer(1), 10);
    assert!(rig.feed(lb, &signed("LIST", 10, 5), 10));
    assert_eq!(rig.out.take(), [Did::Send(lb, list_of(101, &[11]))]);
    assert!(rig.feed(lb, &signed("WATCH 3", 11, 6), 11));
    assert_eq!(rig.out.take(), [Did::Send(lb, list_of(101, &[11]))]);
}

#[test]
fn an_idle_connection_is_closed_and_a_talking_one_kept() {
    let mut rig = Rig::new(auth_config());
    let server = rig.register(11, 0);
    let lb = rig.accept(peer(1), 0);
    assert!(rig.feed(lb, &signed("LIST", 0, 5), 0));
    rig.out.take();
    // The server beats (and its TTL is 1.5 s); the LB says nothing.
    for ms in (500..=3000).step_by(500) {
        assert!(rig.feed(server, "BEAT\n", ms));
        rig.tick(ms);
    }
    assert_eq!(
        rig.out.take(),
        [
            Did::Send(lb, "ERR idle timeout\n".into()),
            Did::Close(lb, true)
        ]
    );
    assert_eq!(rig.sessions.counters().idle_timeouts, 1);
    assert!(rig.sessions.session(server).is_some());
}

#[test]
fn connections_without_a_valid_line_make_room_for_new_ones() {
    let mut rig = Rig::new(auth_config());
    // An attacker's connections from .12 that never prove anything: at most
    // two stay, each newcomer displacing the oldest.
    let idle: Vec<ConnId> = (0..50).map(|i| rig.accept(peer(12), i)).collect();
    assert_eq!(rig.sessions.len(), 2);
    assert_eq!(rig.sessions.counters().pending_evicted, 48);
    assert!(rig.sessions.session(idle[49]).is_some());
    rig.out.take();
    // The real server from the same address still gets in and registers.
    let server = rig.accept(peer(12), 60);
    assert!(rig.feed(server, &signed(&hello(12), 60, 9), 60));
    assert_eq!(rig.listed(), [12]);
    // Proven connections are never displaced; past the per-address cap of
    // proven ones a newcomer is refused instead.
    for n in 0..3 {
        let c = rig.accept(peer(12), 70 + n);
        assert!(rig.feed(c, &signed("LIST", 70 + n, 100 + n), 70 + n));
    }
    assert_eq!(
        rig.sessions.on_accept(peer(12), rig.at(80), &mut rig.out),
        Admission::Refused(TOO_MANY_FROM_ADDRESS)
    );
    assert_eq!(rig.sessions.counters().connections_refused_per_ip, 1);
    assert!(rig.sessions.session(server).is_some());
}

#[test]
fn one_address_cannot_change_the_list_faster_than_its_bucket() {
    let mut rig = Rig::new(Config {
        change_burst: 2,
        change_refill: 1000 * MS,
        ..auth_config()
    });
    // Each HELLO with a new MAC from .11 is a change (it replaces the last).
    let c = rig.accept(peer(11), 0);
    let hello_mac = |n: u8| format!("HELLO id=11 mac=02:00:00:00:01:{n:02x} ip=172.16.238.11");
    assert!(rig.feed(c, &signed(&hello_mac(1), 0, 1), 0));
    assert!(rig.feed(c, &signed(&hello_mac(2), 0, 2), 0));
    rig.out.take();
    let version = rig.sessions.membership().version();
    assert!(rig.feed(c, &signed(&hello_mac(3), 0, 3), 0));
    rig.refused_with(c, "too many changes from this address; retry later");
    assert_eq!(rig.sessions.membership().version(), version);
    // Repeating the very same entry changes nothing and costs nothing.
    assert!(rig.feed(c, &signed(&hello_mac(2), 1, 4), 1));
    assert_eq!(rig.out.take(), [Did::Send(c, "OK ttl_ms=1500\n".into())]);
    // A token comes back after the refill.
    assert!(rig.feed(c, "BEAT\n", 900));
    assert!(rig.feed(c, &signed(&hello_mac(3), 1000, 5), 1000));
    assert_eq!(rig.out.take(), [Did::Send(c, "OK ttl_ms=1500\n".into())]);
    assert_eq!(rig.sessions.counters().hello_rate_limited, 1);
}
