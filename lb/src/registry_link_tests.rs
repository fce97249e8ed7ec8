//! The link's I/O half against a scripted registry on loopback TCP: real
//! sockets, with answers chosen per test so failures (closing, garbage,
//! silence) can be produced on cue. The same rules without sockets, with
//! fabricated instants, are in `link_core_tests.rs`; the real registry is
//! exercised by the netns tests.

use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;
use std::thread::JoinHandle;

use super::*;
use crate::snapshot::shared_empty;

/// What the scripted registry does with a line.
enum Answer {
    Send(String),
    Close,
    Silence,
}

type Script = dyn Fn(&str, usize) -> Answer + Send + Sync;

/// A registry stand-in: accepts connections one at a time and answers each
/// line as the script says. `conn` counts connections from 0.
struct Peer {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    fn start(script: impl Fn(&str, usize) -> Answer + Send + Sync + 'static) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (lines, connections, stop) = (lines.clone(), connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let conn = connections.fetch_add(1, Relaxed);
                            serve(stream, conn, &*script, &lines, &stop);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Peer {
            addr,
            lines,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    conn: usize,
    script: &Script,
    lines: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {
                let got = line.trim_end().to_owned();
                line.clear();
                lines.lock().unwrap().push(got.clone());
                match script(&got, conn) {
                    Answer::Send(text) => {
                        if writer.write_all(text.as_bytes()).is_err() {
                            return;
                        }
                    }
                    Answer::Close => return,
                    Answer::Silence => {}
                }
            }
            Ok(_) => {}
            Err(_) => {} // read timeout: look at the stop flag
        }
    }
}

fn list(version: u64, ids: &[u8]) -> String {
    let mut s = format!("SERVERS version={version} count={}\n", ids.len());
    for id in ids {
        s.push_str(&format!("{id} 02:00:00:00:00:{id:02x} 172.16.238.{id} 0\n"));
    }
    s.push_str("END\n");
    s
}

fn config(addr: &str) -> RegistryLinkConfig {
    RegistryLinkConfig {
        interval: Duration::from_millis(20),
        answer_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..RegistryLinkConfig::new(addr)
    }
}

struct Rig {
    link: RegistryLink,
    poll: Poll,
    snapshot: SharedSnapshot,
    status: Arc<RegistryStatus>,
}

impl Rig {
    fn new(config: RegistryLinkConfig) -> Rig {
        let snapshot = shared_empty();
        let status = Arc::new(RegistryStatus::default());
        let link = RegistryLink::new(config, snapshot.clone(), status.clone());
        Rig {
            link,
            poll: Poll::new().unwrap(),
            snapshot,
            status,
        }
    }

    /// Loads the first list, then drives the link on a poll of the test's
    /// own (as a reactor would) until `done` or 5 s pass.
    fn drive_until(&mut self, mut done: impl FnMut(&Rig) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut events = Events::with_capacity(8);
        while Instant::now() < deadline {
            if done(self) {
                return true;
            }
            let timeout = self
                .link
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(10))
                .min(Duration::from_millis(10));
            self.poll.poll(&mut events, Some(timeout)).unwrap();
            let now = Instant::now();
            for event in events.iter() {
                self.link.on_event(self.poll.registry(), event, now);
            }
            self.link.on_timer(self.poll.registry(), now);
        }
        done(self)
    }

    fn start(&mut self) {
        assert!(self.link.load_initial(Duration::from_secs(3)).unwrap());
        self.link.attach(self.poll.registry(), Token(7)).unwrap();
    }
}

#[test]
fn loads_the_list_then_watches_with_its_version() {
    let peer = Peer::start(|line, _| match line {
        "LIST" => Answer::Send(list(3, &[12, 11])),
        "WATCH 3" => Answer::Silence,
        _ => Answer::Send("ERR unexpected\n".into()),
    });
    let mut rig = Rig::new(config(&peer.addr.to_string()));
    rig.start();
    let snap = rig.snapshot.load_full();
    assert_eq!(snap.version, 3);
    let ids: Vec<u8> = snap.servers.iter().map(|b| b.id).collect();
    assert_eq!(ids, [11, 12]);
    assert_eq!(snap.servers[0].mac.to_string(), "02:00:00:00:00:0b");
    assert!(rig.link.has_list() && rig.link.is_up());
    assert!(rig.status.reachable.load(Relaxed));
    assert_eq!(rig.status.version.load(Relaxed), 3);
    // Moved to another poll (as into worker 0), it goes on to WATCH.
    assert!(rig.drive_until(|_| peer.lines().contains(&"WATCH 3".to_owned())));
    assert_eq!(peer.connections(), 1);
}

#[test]
fn a_change_announced_by_watch_is_published() {
    let peer = Peer::start(|line, _| match line {
        "LIST" => Answer::Send(list(3, &[11])),
        "WATCH 3" => Answer::Send(list(4, &[11, 13])),
        _ => Answer::Silence,
    });
    let mut rig = Rig::new(config(&peer.addr.to_string()));
    rig.start();
    assert!(rig.drive_until(|r| r.snapshot.load().version == 4));
    assert_eq!(rig.snapshot.load().len(), 2);
    assert!(rig.drive_until(|_| peer.lines().contains(&"WATCH 4".to_owned())));
    assert!(rig.status.lists.load(Relaxed) >= 2);
}

#[test]
fn a_closed_connection_keeps_the_list_and_reconnects() {
    let peer = Peer::start(|line, conn| match (line, conn) {
        ("LIST", _) => Answer::Send(list(5, &[11, 12])),
        (_, 0) => Answer::Close,
        _ => Answer::Silence,
    });
    let mut rig = Rig::new(config(&peer.addr.to_string()));
    rig.start();
    // The first WATCH makes the peer hang up; the link notices.
    assert!(rig.drive_until(|r| !r.status.reachable.load(Relaxed)));
    assert_eq!(rig.snapshot.load().len(), 2, "last list kept");
    // ... and comes back with LIST on a new connection.
    assert!(rig.drive_until(|r| r.status.connects.load(Relaxed) == 2 && r.link.is_up()));
    assert!(rig.drive_until(|_| peer.lines().iter().filter(|l| *l == "LIST").count() == 2));
    assert_eq!(rig.snapshot.load().version, 5);
}

#[test]
fn unreachable_registry_gives_up_the_first_wait_and_says_why() {
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut rig = Rig::new(config(&format!("127.0.0.1:{port}")));
    let started = Instant::now();
    assert!(!rig.link.load_initial(Duration::from_millis(300)).unwrap());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!rig.link.has_list());
    let why = rig.link.last_error().unwrap().to_owned();
    assert!(why.contains("refused") || why.contains("connect"), "{why}");
    assert!(rig.snapshot.load().is_empty());
    assert!(!rig.status.reachable.load(Relaxed));
}

#[test]
fn a_garbage_answer_drops_the_connection() {
    let peer = Peer::start(|line, conn| match (line, conn) {
        ("LIST", 0) => Answer::Send("SERVERS version=1 count=1\nthis is not a server\n".into()),
        ("LIST", _) => Answer::Send(list(2, &[11])),
        _ => Answer::Silence,
    });
    let mut rig = Rig::new(config(&peer.addr.to_string()));
    rig.start();
    assert_eq!(rig.snapshot.load().version, 2, "only the good list counts");
    assert_eq!(peer.connections(), 2);
}

#[test]
fn a_silent_registry_is_declared_dead_after_the_answer_timeout() {
    let peer = Peer::start(|line, _| match line {
        "LIST" => Answer::Send(list(1, &[11])),
        _ => Answer::Silence,
    });
    let mut rig = Rig::new(RegistryLinkConfig {
        answer_timeout: Duration::from_millis(200),
        ..config(&peer.addr.to_string())
    });
    rig.start();
    let started = Instant::now();
    assert!(rig.drive_until(|r| !r.status.reachable.load(Relaxed)));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert_eq!(rig.snapshot.load().len(), 1);
    // It reconnects (the peer accepts again).
    assert!(rig.drive_until(|r| r.status.connects.load(Relaxed) >= 2));
}

#[test]
fn a_host_name_is_resolved_off_the_reactor() {
    let peer = Peer::start(|line, _| match line {
        "LIST" => Answer::Send(list(9, &[11])),
        _ => Answer::Silence,
    });
    let mut rig = Rig::new(config(&format!("localhost:{}", peer.addr.port())));
    // localhost may resolve to ::1 first; the link tries each address.
    assert!(rig.link.load_initial(Duration::from_secs(3)).unwrap());
    assert_eq!(rig.snapshot.load().version, 9);
    let mut bad = Rig::new(config("no-such-host.invalid:7070"));
    assert!(!bad.link.load_initial(Duration::from_millis(500)).unwrap());
    assert!(bad.link.last_error().is_some());
}

#[test]
fn a_restarted_registry_does_not_empty_the_rotation_before_the_grace_ends() {
    // Connection 0: the registry knows 11 and 12, then dies (closes on WATCH).
    // Connection 1: a restarted registry that has heard from 11 only so far.
    let peer = Peer::start(|line, conn| match (line, conn) {
        ("LIST", 0) => Answer::Send(list(5, &[11, 12])),
        (_, 0) => Answer::Close,
        ("LIST", _) => Answer::Send(list(900, &[11])),
        _ => Answer::Silence,
    });
    let mut rig = Rig::new(RegistryLinkConfig {
        resync_grace: Duration::from_millis(400),
        ..config(&peer.addr.to_string())
    });
    rig.start();
    assert!(rig.drive_until(|r| r.snapshot.load().version == 900));
    let ids: Vec<u8> = rig.snapshot.load().servers.iter().map(|b| b.id).collect();
    assert_eq!(ids, [11, 12], "12 is kept while the registry refills");
    let merged_at = Instant::now();
    assert!(rig.drive_until(|r| r.snapshot.load().len() == 1));
    assert!(
        merged_at.elapsed() >= Duration::from_millis(250),
        "kept for the grace"
    );
    assert_eq!(rig.snapshot.load().servers[0].id, 11);
}
