//! Shared fixtures of the registry's integration tests: a real registry on a
//! loopback port (in-process, on its own thread, stopped on drop) and a
//! blocking line client with bounded waits.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipcs_common::registry_client::{fetch_list, fetch_stats, ServerList};
use ipcs_registry::{Config, Registry, StopHandle};

/// Every blocking read in the tests gives up after this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A registry running on a thread, stopped and joined on drop.
pub struct TestRegistry {
    pub addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

/// Short timers so tests that wait for expiry stay fast. Every client here
/// connects from 127.0.0.1, so the per-address limits on proven
/// connections and list changes are lifted (the unauthenticated share stays).
pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ttl: Duration::from_millis(300),
        first_line_timeout: Duration::from_millis(300),
        watch_timeout: Duration::from_millis(300),
        max_per_ip: 100_000,
        change_burst: 100_000,
        ..Config::default()
    }
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        TestRegistry::with(test_config())
    }

    pub fn with(config: Config) -> TestRegistry {
        if std::env::var_os("RUST_LOG").is_some() {
            ipcs_common::logging::init();
        }
        let registry = Registry::bind(config).expect("bind registry");
        let addr = registry.local_addr();
        let stop = registry.stop_handle();
        let thread = std::thread::spawn(move || registry.run().expect("registry loop"));
        TestRegistry {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn connect(&self) -> Peer {
        Peer::connect(self.addr)
    }

    /// The current list, over a fresh connection.
    pub fn list(&self) -> ServerList {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        fetch_list(&mut stream, IO_TIMEOUT).unwrap()
    }

    /// One counter, over a fresh connection.
    pub fn stat(&self, name: &str) -> u64 {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stat_of(&mut stream, name)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result.expect("registry thread panicked");
            }
        }
    }
}

/// One counter, over an existing connection.
pub fn stat_of(stream: &mut TcpStream, name: &str) -> u64 {
    fetch_stats(stream, IO_TIMEOUT)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no stat {name}"))
        .1
}

/// `HELLO` for server `id` with MAC 02:00:00:00:<mac_hi>:<mac_lo>.
pub fn hello(id: u8, mac: u16) -> String {
    let [hi, lo] = mac.to_be_bytes();
    format!("HELLO id={id} mac=02:00:00:00:{hi:02x}:{lo:02x} ip=10.0.{hi}.{lo} udp=9000")
}

/// A blocking line client.
pub struct Peer {
    pub reader: BufReader<TcpStream>,
}

impl Peer {
    pub fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Peer {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(line.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
    }

    /// The next line without its newline; panics on EOF or timeout.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read line");
        assert!(n > 0, "connection closed while expecting a line");
        line.trim_end_matches('\n').to_string()
    }

    /// Sends `HELLO` and returns the answer line.
    pub fn hello(&mut self, id: u8, mac: u16) -> String {
        self.send(&hello(id, mac));
        self.line()
    }

    /// Reads until the registry closes the connection (EOF or reset) and
    /// returns what came before; panics if it stays open for `IO_TIMEOUT`.
    pub fn until_closed(&mut self) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("connection not closed: {e}"),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

/// Polls `cond` every 10 ms until true or `timeout`; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The ids in a list.
pub fn ids(list: &ServerList) -> Vec<u8> {
    list.servers.iter().map(|s| s.id).collect()
}
