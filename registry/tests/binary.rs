//! The `ipcs-registry` binary itself: its `--help`, its refusal of bad flags,
//! bounded memory under abuse (read from /proc), a clean exit on SIGINT
//! and SIGTERM, and, with a key, refusing (and counting in /metrics)
//! forged, stale, replayed and misaddressed lines while a real heartbeat
//! stays registered, also through 1,000 idle connections.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipcs_common::registry_auth::{unix_ms_now, Key};
use ipcs_common::registry_client::{fetch_list, fetch_list_as, Heartbeat, HeartbeatConfig};
use ipcs_common::registry_proto::ClientLine;
use ipcs_common::wire::MacAddr;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ipcs-registry");

/// Kills the child if the test fails before it exits on its own.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl ChildGuard {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "registry did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory of the child in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// Starts the binary on a free loopback port and waits until it answers.
fn spawn(extra: &[&str]) -> (ChildGuard, SocketAddr) {
    for _ in 0..5 {
        // Bind port 0 to find a free port, release it, hand it over; retry
        // in the unlikely case someone else took it meanwhile.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut command = Command::new(BIN);
        command.arg("--listen").arg(addr.to_string());
        // Tests of other things than the key run without one.
        if !extra.contains(&"--key-file") {
            command.arg("--insecure-no-auth");
        }
        // Several registries run at once here: none takes the default
        // admin port unless the test asks for it.
        if !extra.contains(&"--admin") {
            command.args(["--admin", "off"]);
        }
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ipcs-registry");
        let mut guard = ChildGuard(child);
        let key = extra
            .iter()
            .position(|a| *a == "--key-file")
            .map(|i| Key::load(extra[i + 1].as_ref()).unwrap());
        // A real exchange, not just a connect: with nothing listening yet, a
        // loopback connect can land on itself (TCP simultaneous open) when
        // the kernel picks the same port as the client's ephemeral port.
        let up = wait_until(IO_TIMEOUT, || {
            guard.0.try_wait().unwrap().is_none()
                && TcpStream::connect(addr).is_ok_and(|mut s| {
                    fetch_list_as(&mut s, key.as_ref(), Duration::from_millis(500)).is_ok()
                })
        });
        if up {
            return (guard, addr);
        }
        let _ = guard.wait_exit(IO_TIMEOUT);
    }
    panic!("could not start ipcs-registry");
}

#[test]
fn help_explains_every_flag_and_its_default() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--ttl",
        "--allow",
        "--max-connections",
        "--max-line-bytes",
        "--first-line-timeout",
        "--max-servers",
        "--max-output-bytes",
        "--watch-timeout",
        "--admin",
        "--sd-server-admin-port",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    for default in [
        "[default: 0.0.0.0:7070]",
        "[default: 1500ms]",
        "[default: 1000]",
        "[default: 256]",
        "[default: 2s]",
        "[default: 255]",
        "[default: 65536]",
        "[default: 5s]",
        "[default: 0.0.0.0:7072]",
        "[default: 7073]",
        "[env: IPCS_REGISTRY_TTL=]",
        "Default: none",
    ] {
        assert!(help.contains(default), "--help does not show {default}");
    }
}

#[test]
fn bad_flags_are_refused() {
    for args in [
        &["--listen", "nowhere"][..],
        &["--ttl", "-5ms"],
        &["--ttl", "1500"],
        &["--ttl", "1s", "--ttl-ms", "1000"],
        &["--ttl", "0ms"],
        &["--allow", "10.0.0.1/8"],
        &["--allow", "10.0.0.0/40"],
        &["--max-line-bytes", "100000"],
        &["--max-servers", "1000"],
        &["--max-output-bytes", "10"],
        &["--max-connections", "0"],
        &["--no-such-flag"],
    ] {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--insecure-no-auth"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no explanation");
    }
}

#[test]
fn exits_cleanly_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let (mut child, addr) = spawn(&[]);
        let mut server = Peer::connect(addr);
        assert_eq!(server.hello(1, 1), "OK ttl_ms=1500");
        let mut lb = TcpStream::connect(addr).unwrap();
        assert_eq!(ids(&fetch_list(&mut lb, IO_TIMEOUT).unwrap()), vec![1]);
        child.signal(signal);
        let status = child.wait_exit(IO_TIMEOUT);
        assert!(status.success(), "SIG{signal}: {status}");
        // Its connections were closed on the way out.
        assert_eq!(server.until_closed(), "");
    }
}

#[test]
fn memory_stays_bounded_under_abuse() {
    // 50 servers from one address: lift the per-address limits.
    let (mut child, addr) = spawn(&[
        "--max-connections",
        "1500",
        "--ttl",
        "1m",
        "--max-connections-per-ip",
        "1500",
        "--change-burst",
        "100",
    ]);
    // Register some servers so lists are not trivial.
    let mut servers: Vec<Peer> = (1..=50u8)
        .map(|id| {
            let mut peer = Peer::connect(addr);
            assert_eq!(peer.hello(id, u16::from(id)), "OK ttl_ms=60000");
            peer
        })
        .collect();
    let baseline = child.rss_kib();

    for round in 0..3 {
        // 2,000 connections (1,450 fit), a quarter of them part-way through
        // a line; ten 1 MiB lines; ten clients asking for lists and never
        // reading.
        let mut idle = Vec::new();
        for i in 0..2000 {
            let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
            if i % 4 == 0 {
                let _ = s.write_all(b"HELLO id=9 mac=02:00");
            }
            idle.push(s);
        }
        let mut writers = Vec::new();
        for _ in 0..10 {
            idle.pop();
            let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            writers.push(std::thread::spawn(move || {
                let _ = s.write_all(&vec![b'x'; 1 << 20]);
            }));
        }
        for _ in 0..10 {
            idle.pop();
            let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            writers.push(std::thread::spawn(move || {
                let requests = b"LIST\n".repeat(1000);
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && s.write_all(&requests).is_ok() {}
            }));
        }
        for writer in writers {
            writer.join().unwrap();
        }
        let rss = child.rss_kib();
        eprintln!("round {round}: rss {rss} KiB (baseline {baseline} KiB)");
        // Per-connection state is a few hundred bytes, output is capped at
        // 64 KiB per connection and only non-readers fill it (and are
        // closed): the growth must stay far below what was sent (> 30 MiB
        // per round).
        assert!(
            rss < baseline + 8 * 1024,
            "rss {rss} KiB, baseline {baseline} KiB"
        );
        drop(idle);
        let mut lb = TcpStream::connect(addr).unwrap();
        assert_eq!(fetch_list(&mut lb, IO_TIMEOUT).unwrap().servers.len(), 50);
    }
    servers[0].send("BEAT");
    child.signal("TERM");
    assert!(child.wait_exit(IO_TIMEOUT).success());
    servers.clear();
}

/// A heartbeat from 127.0.0.1 (the address its connection comes from).
fn loopback_server(addr: SocketAddr, id: u8, key: &Key) -> Heartbeat {
    let heartbeat = Heartbeat::spawn(HeartbeatConfig {
        registry: addr.to_string(),
        id,
        mac: MacAddr([2, 0, 0, 0, 0, id]),
        ip: [127, 0, 0, 1].into(),
        udp: None,
        beat_interval: Duration::from_millis(100),
        key: Some(key.clone()),
    });
    assert!(wait_until(IO_TIMEOUT, || heartbeat.is_registered()));
    heartbeat
}

/// `ipcs_registry_<name>` samples of /metrics (`refusals_total{reason=..}`
/// included), as (name after the prefix, value).
fn metrics(admin: SocketAddr) -> Vec<(String, u64)> {
    let (_, page) = ipcs_common::admin_http::get(admin, "/metrics", IO_TIMEOUT).unwrap();
    page.lines()
        .filter_map(|l| l.strip_prefix("ipcs_registry_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn metric(admin: SocketAddr, name: &str) -> u64 {
    metrics(admin)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no ipcs_registry_{name}"))
        .1
}

fn refused(reason: &str) -> String {
    format!("refusals_total{{reason=\"{reason}\"}}")
}

#[test]
fn with_a_key_forged_stale_replayed_and_misaddressed_hellos_are_refused_and_counted() {
    let dir = std::env::temp_dir().join(format!("ipcs-registry-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    let _ = std::fs::remove_file(&key_file);
    let key = Key::generate();
    key.write_new(&key_file).unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (mut child, addr) = spawn(&[
        "--key-file",
        key_file.to_str().unwrap(),
        "--admin",
        &admin.to_string(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    let server = loopback_server(addr, 7, &key);
    let hello = |id: u8, ip: [u8; 4]| ClientLine::Hello {
        id,
        mac: MacAddr([2, 0, 0, 0, 0, id]),
        ip: ip.into(),
        udp: None,
    };
    let refused_with = |line: String, reason: &str| {
        let mut peer = Peer::connect(addr);
        peer.send(&line);
        let answer = peer.until_closed();
        assert!(
            answer.starts_with(&format!("ERR {reason}")),
            "{line}: {answer:?}"
        );
    };
    let loopback = [127, 0, 0, 1];
    // Taking over server 7 (same MAC) without proof, or with another key.
    refused_with(hello(7, loopback).to_string(), "proof required");
    let wrong = Key::from_bytes([0x42; 32]);
    refused_with(wrong.sign(hello(7, loopback)).to_string(), "bad proof");
    // A proof from a minute ago.
    let old = key.sign_at(hello(7, loopback), unix_ms_now() - 60_000, 1);
    refused_with(old.to_string(), "stale proof");
    // A key holder naming an address that is not its connection's.
    refused_with(key.sign(hello(8, [10, 0, 0, 8])).to_string(), "ip is not");
    // A valid HELLO for server 8, then the same line replayed elsewhere.
    let valid = key.sign(hello(8, loopback)).to_string();
    let mut eight = Peer::connect(addr);
    eight.send(&valid);
    assert_eq!(eight.line(), "OK ttl_ms=1500");
    refused_with(valid, "replayed proof");
    drop(eight);

    let mut lb = TcpStream::connect(addr).unwrap();
    let listed = |lb: &mut TcpStream| ids(&fetch_list_as(lb, Some(&key), IO_TIMEOUT).unwrap());
    assert!(wait_until(IO_TIMEOUT, || listed(&mut lb) == vec![7]));
    for reason in [
        "proof_missing",
        "proof_bad",
        "proof_stale",
        "hello_ip_mismatch",
        "proof_replayed",
    ] {
        // /metrics shows what the loop last published (at least once a second).
        assert!(
            wait_until(IO_TIMEOUT, || metric(admin, &refused(reason)) == 1),
            "{reason}: {:?}",
            metrics(admin)
        );
    }
    // Without proof, even the list is refused.
    assert!(matches!(
        fetch_list(&mut TcpStream::connect(addr).unwrap(), IO_TIMEOUT),
        Err(ipcs_common::registry_client::ClientError::Refused(_))
    ));

    // 1,000 idle connections from this address: a new server still
    // registers, a new list reader still lists, server 7 stays.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap())
        .collect();
    let nine = loopback_server(addr, 9, &key);
    let mut reader = TcpStream::connect(addr).unwrap();
    assert_eq!(listed(&mut reader), vec![7, 9]);
    assert!(wait_until(IO_TIMEOUT, || metric(
        admin,
        "pending_evicted_total"
    ) >= 990));
    assert!(metric(admin, "connections_open") <= 2 + 2 + 8);
    drop(idle);
    assert!(server.is_registered() && nine.is_registered());
    drop((server, nine));
    child.signal("TERM");
    assert!(child.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn service_discovery_lists_each_live_server_admin_endpoint() {
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let admin_arg = admin.to_string();
    let (_registry, addr) = spawn(&["--admin", &admin_arg, "--sd-server-admin-port", "9999"]);
    let sd = || ipcs_common::admin_http::get(admin, "/sd/servers", IO_TIMEOUT).unwrap();
    assert_eq!(sd(), (200, "[]\n".to_owned()));
    // A server registers (the protocol's own HELLO): it is listed at once.
    let mut server = TcpStream::connect(addr).unwrap();
    server
        .write_all(b"HELLO id=7 mac=02:00:00:00:00:07 ip=10.0.0.7\n")
        .unwrap();
    let want = concat!(
        r#"[{"targets":["10.0.0.7:9999"],"labels":{"server_id":"7","mac":"02:00:00:00:00:07"}}]"#,
        "\n"
    );
    assert!(wait_until(IO_TIMEOUT, || sd().1 == want), "{:?}", sd());
    // It leaves: gone from the targets.
    drop(server);
    assert!(wait_until(IO_TIMEOUT, || sd().1 == "[]\n"), "{:?}", sd());
}
