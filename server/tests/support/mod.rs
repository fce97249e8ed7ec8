//! Test support: the real `ipcs-server` binary as a child process whose log
//! lines the test can wait for, killed on drop (also when the test fails).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Path of the server binary cargo built for these tests.
pub fn server_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ipcs-server"))
}

/// Whether the test may create namespaces and raw sockets; prints why not.
pub fn root_or_skip() -> bool {
    if ipcs_common::sys::is_root() {
        true
    } else {
        eprintln!("skipped: needs root (raw sockets, network namespaces)");
        false
    }
}

#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

/// A running process with its stderr collected line by line.
pub struct Process {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
}

impl Process {
    /// Spawns `program args...` with logs at debug level and no colours.
    pub fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Process {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn process");
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[child] {line}");
                let (lock, cvar) = &*sink;
                lock.lock().unwrap().lines.push(line);
                cvar.notify_all();
            }
            let (lock, cvar) = &*sink;
            lock.lock().unwrap().closed = true;
            cvar.notify_all();
        });
        Process { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `within` for a log line containing `needle`; returns it.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap();
        let mut seen = 0;
        loop {
            if let Some(line) = log.lines[seen..].iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            seen = log.lines.len();
            let now = Instant::now();
            if log.closed || now >= deadline {
                return None;
            }
            log = cvar.wait_timeout(log, deadline - now).unwrap().0;
        }
    }

    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().unwrap().lines.clone()
    }

    /// Sends SIGTERM and waits up to `within` for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.wait_exit(within)
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread collect the last lines.
                let (lock, cvar) = &*self.log;
                let mut log = lock.lock().unwrap();
                let until = Instant::now() + Duration::from_secs(2);
                while !log.closed && Instant::now() < until {
                    log = cvar.wait_timeout(log, Duration::from_millis(50)).unwrap().0;
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `name=value` from a stats line.
pub fn counter(line: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {line:?}"))
}
