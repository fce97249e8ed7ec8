//! Test support: a real UDP responder on 127.0.0.1 that plays the load
//! balancer's part with `Reply`/`Status` from common, following a script;
//! a runner for the real `calc` binary with a time bound; a temporary
//! directory that removes itself.

#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipcs_common::wire::{Reply, Request, Status};

/// What the responder does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The correct reply, after a delay.
    Answer { after: Duration },
    /// An error reply, after a delay.
    Error { status: Status, after: Duration },
    /// Nothing.
    Drop,
    /// A reply with a wrong result, sent from another socket (another port).
    Elsewhere,
    /// A wrong reply from another socket, then the correct one from ours.
    DecoyThenAnswer,
    /// Datagrams that are not HSMAP responses, then the correct reply.
    JunkThenAnswer,
}

impl Step {
    pub const ANSWER: Step = Step::Answer {
        after: Duration::ZERO,
    };

    pub fn error(status: Status) -> Step {
        Step::Error {
            status,
            after: Duration::ZERO,
        }
    }
}

/// The wrong result the decoy socket claims.
pub const DECOY_RESULT: u64 = 424_242;

/// A UDP responder thread. Request `i` (counting from 0, malformed ones
/// included) gets `script[i]`, or `then` once the script is used up.
pub struct Responder {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Request>>>,
    datagrams: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// No responder outlives a test run by more than this, even if leaked.
const RESPONDER_LIFETIME: Duration = Duration::from_secs(120);

impl Responder {
    pub fn start(server_id: u8, script: Vec<Step>, then: Step) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind responder");
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let decoy = UdpSocket::bind("127.0.0.1:0").expect("bind decoy");
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let datagrams = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, datagrams, stop) = (received.clone(), datagrams.clone(), stop.clone());
            std::thread::spawn(move || {
                serve(
                    socket, decoy, server_id, script, then, received, datagrams, stop,
                )
            })
        };
        Responder {
            addr,
            received,
            datagrams,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers every request correctly.
    pub fn answering(server_id: u8) -> Responder {
        Responder::start(server_id, vec![], Step::ANSWER)
    }

    /// Never answers.
    pub fn silent() -> Responder {
        Responder::start(1, vec![], Step::Drop)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The well-formed requests received so far.
    pub fn received(&self) -> Vec<Request> {
        self.received.lock().unwrap().clone()
    }

    /// Every datagram received so far, well-formed or not.
    pub fn datagrams(&self) -> usize {
        self.datagrams.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    socket: UdpSocket,
    decoy: UdpSocket,
    server_id: u8,
    script: Vec<Step>,
    then: Step,
    received: Arc<Mutex<Vec<Request>>>,
    datagrams: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let started = Instant::now();
    let mut scheduled: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) && started.elapsed() < RESPONDER_LIFETIME {
        let now = Instant::now();
        scheduled.retain(|(at, bytes, to)| {
            if *at <= now {
                let _ = socket.send_to(bytes, to);
                false
            } else {
                true
            }
        });
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let index = datagrams.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = Request::parse_bytes(&buf[..len]) else {
            let _ = socket.send_to(&Status::Malformed.to_bytes(), from);
            continue;
        };
        received.lock().unwrap().push(request);
        let reply = Reply {
            result: request.answer(),
            server_id,
        }
        .to_bytes();
        match script.get(index).copied().unwrap_or(then) {
            Step::Answer { after } => scheduled.push((now + after, reply.to_vec(), from)),
            Step::Error { status, after } => {
                scheduled.push((now + after, status.to_bytes().to_vec(), from))
            }
            Step::Drop => {}
            Step::Elsewhere => {
                let wrong = Reply {
                    result: DECOY_RESULT,
                    server_id: 9,
                };
                let _ = decoy.send_to(&wrong.to_bytes(), from);
            }
            Step::DecoyThenAnswer => {
                let wrong = Reply {
                    result: DECOY_RESULT,
                    server_id: 9,
                };
                let _ = decoy.send_to(&wrong.to_bytes(), from);
                // Give the decoy a head start so it is first in line.
                std::thread::sleep(Duration::from_millis(5));
                let _ = socket.send_to(&reply, from);
            }
            Step::JunkThenAnswer => {
                for junk in [&[0u8; 3][..], &[0u8; 20], &[0xff], &[]] {
                    let _ = socket.send_to(junk, from);
                }
                let _ = socket.send_to(&reply, from);
            }
        }
    }
}

/// What a run of `calc` printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().expect("calc exited by a signal")
    }
}

/// Kills and reaps a child if a test gives up on it.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the real `calc` binary with `args`, feeding `stdin` (closed after)
/// or the null device; panics if it runs longer than `limit`.
pub fn run_calc(args: &[&str], stdin: Option<&str>, limit: Duration) -> Run {
    run_calc_env(args, &[], stdin, limit)
}

/// [`run_calc`] with extra environment variables (`IPCS_CALC_*`).
pub fn run_calc_env(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
    limit: Duration,
) -> Run {
    let home = TempDir::new("run");
    let mut command = Command::new(env!("CARGO_BIN_EXE_calc"));
    command
        .args(args)
        .envs(env.iter().copied())
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = Reaper(command.spawn().expect("spawn calc"));
    if let Some(input) = stdin {
        let mut pipe = child.0.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let mut stdout_pipe = child.0.stdout.take().unwrap();
    let mut stderr_pipe = child.0.stderr.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "calc {args:?} still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Run {
        status,
        stdout: stdout_reader.join().unwrap(),
        stderr: stderr_reader.join().unwrap(),
        elapsed,
    }
}

/// A directory under the system temp dir, unique per process and call,
/// removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("ipcs-calc-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
