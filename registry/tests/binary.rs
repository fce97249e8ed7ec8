//! The `ipcs-registry` binary itself: its `--help`, its refusal of bad flags,
//! bounded memory under abuse (read from /proc), and a clean exit on SIGINT
//! and SIGTERM.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipcs_common::registry_client::fetch_list;
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
        // A real exchange, not just a connect: with nothing listening yet, a
        // loopback connect can land on itself (TCP simultaneous open) when
        // the kernel picks the same port as the client's ephemeral port.
        let up = wait_until(IO_TIMEOUT, || {
            guard.0.try_wait().unwrap().is_none()
                && TcpStream::connect(addr)
                    .is_ok_and(|mut s| fetch_list(&mut s, Duration::from_millis(500)).is_ok())
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
            .args(["--listen", "127.0.0.1:0"])
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
    let (mut child, addr) = spawn(&["--max-connections", "1500", "--ttl", "1m"]);
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
