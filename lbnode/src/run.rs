//! The supervisor's I/O: starts and reaps the node's `ipcs-lb` and
//! keepalived, runs the startup probe (`calc` 1+1 on the node's address),
//! writes the down file keepalived tracks, and carries out what
//! [`NodeCore`](crate::core::NodeCore) decides. Runs inside the node's
//! network namespace (a netns entered with `ip netns exec`, or a container
//! whose init it runs under), so its children share it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child as Process, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::{Action, Backoff, Child, Event, NodeCore};
use crate::vrrp::{self, KeepalivedConfig, MasterLog};

/// How often children are reaped and the core polled: the delay between an
/// LB's death and the down file saying so is at most this.
const TICK: Duration = Duration::from_millis(10);
/// A probe (`calc` with a 200 ms timeout) that has not exited by then is
/// killed and counts as unanswered.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// What one node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node (from 1): its address is `172.16.238.(200 + node)`.
    pub node: usize,
    /// How many nodes the tier has (its peers are the others of 1..=nodes).
    pub nodes: usize,
    /// The node's directory: keepalived.conf, the down file, pid files,
    /// master.log (each takeover's time).
    pub dir: PathBuf,
    /// Where the children's output goes (`lb.log`, `keepalived.log`);
    /// `None`: this process's stdout/stderr (a container's log).
    pub log_dir: Option<PathBuf>,
    pub lb: PathBuf,
    pub calc: PathBuf,
    pub keepalived: PathBuf,
    /// This binary, which keepalived runs as `record-master` on takeover.
    pub recorder: PathBuf,
    /// The registry, `HOST:PORT`.
    pub registry: String,
    pub key_file: PathBuf,
    /// Extra arguments for `ipcs-lb`.
    pub lb_args: Vec<String>,
}

impl NodeConfig {
    pub fn down_file(&self) -> PathBuf {
        self.dir.join("down")
    }
    pub fn master_log(&self) -> PathBuf {
        self.dir.join("master.log")
    }
    fn lb_pid_file(&self) -> PathBuf {
        self.dir.join("lb.pid")
    }
}

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("LB node {0} of {1}: nodes are 1..=N with 2 <= N <= {max}", max = vrrp::MAX_LB_NODES)]
    Node(usize, usize),
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn file_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RunError + 'a {
    move |source| RunError::File {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Runs the node until `stop` is set (SIGTERM/SIGINT), then stops both
/// children and returns.
pub fn run(config: &NodeConfig, stop: &Arc<AtomicBool>) -> Result<(), RunError> {
    if !(2..=vrrp::MAX_LB_NODES).contains(&config.nodes)
        || !(1..=config.nodes).contains(&config.node)
    {
        return Err(RunError::Node(config.node, config.nodes));
    }
    std::fs::create_dir_all(&config.dir).map_err(file_error("cannot make", &config.dir))?;
    let mut keepalived_conf = KeepalivedConfig::new(config.node, &config.calc, &config.down_file());
    keepalived_conf.master_log = Some(MasterLog {
        recorder: config.recorder.clone(),
        file: config.master_log(),
    });
    keepalived_conf.peers = vrrp::peers_of(config.node, config.nodes);
    let conf_path = config.dir.join("keepalived.conf");
    std::fs::write(&conf_path, keepalived_conf.render())
        .map_err(file_error("cannot write", &conf_path))?;
    let mut node = Node {
        config,
        conf_path,
        lb: None,
        keepalived: None,
        probe: None,
        queued: Vec::new(),
    };
    let (mut core, actions) = NodeCore::start(Instant::now(), Backoff::default());
    tracing::info!(
        node = config.node,
        ip = %vrrp::lb_node_ip(config.node),
        vip = %vrrp::VIP,
        "LB node starting: keepalived and ipcs-lb"
    );
    let mut pending = actions;
    let mut stop_sent = false;
    loop {
        for action in pending.drain(..) {
            if node.act(action)? {
                tracing::info!(node = config.node, "LB node stopped");
                return Ok(());
            }
        }
        std::thread::sleep(TICK);
        let now = Instant::now();
        let mut events = node.reap();
        if stop.load(Ordering::Relaxed) && !stop_sent {
            stop_sent = true;
            tracing::info!("stopping: SIGTERM to ipcs-lb and keepalived");
            events.push(Event::Stop);
        }
        for event in events {
            pending.extend(core.handle(event, now));
        }
        pending.extend(core.poll(now));
    }
}

struct Node<'a> {
    config: &'a NodeConfig,
    conf_path: PathBuf,
    lb: Option<Process>,
    keepalived: Option<Process>,
    probe: Option<(Process, Instant)>,
    /// Failures to start a child or a probe, reported on the next reap (as
    /// an exit, or an unanswered probe) so the core retries with back-off.
    queued: Vec<Event>,
}

impl Node<'_> {
    fn slot(&mut self, which: Child) -> &mut Option<Process> {
        match which {
            Child::Lb => &mut self.lb,
            Child::Keepalived => &mut self.keepalived,
        }
    }

    /// Carries out one action; `true` when the supervisor should exit.
    fn act(&mut self, action: Action) -> Result<bool, RunError> {
        match action {
            Action::MarkDown(down) => {
                let path = self.config.down_file();
                std::fs::write(&path, if down { "1\n" } else { "0\n" })
                    .map_err(file_error("cannot write", &path))?;
                if !down {
                    tracing::info!(
                        node = self.config.node,
                        "ipcs-lb answers: node up (may hold the VIP)"
                    );
                }
            }
            Action::Start(which) => match self.spawn(which) {
                Ok(process) => {
                    tracing::info!(child = ?which, pid = process.id(), "started");
                    if which == Child::Lb {
                        let path = self.config.lb_pid_file();
                        std::fs::write(&path, format!("{}\n", process.id()))
                            .map_err(file_error("cannot write", &path))?;
                    }
                    *self.slot(which) = Some(process);
                }
                Err(e) => {
                    tracing::error!(child = ?which, error = %e, "cannot start");
                    self.queued.push(Event::Exited(which));
                }
            },
            Action::Probe => {
                self.probe = self.spawn_probe();
                if self.probe.is_none() {
                    self.queued.push(Event::ProbeDone { answered: false });
                }
            }
            Action::Terminate(which) => {
                if let Some(p) = self.slot(which) {
                    if let Err(e) = ipcs_common::sys::signal::terminate(p.id()) {
                        tracing::warn!(child = ?which, error = %e, "SIGTERM failed");
                    }
                }
            }
            Action::Kill(which) => {
                if let Some(p) = self.slot(which) {
                    tracing::warn!(child = ?which, pid = p.id(), "SIGKILL");
                    let _ = p.kill();
                }
            }
            Action::Exit => {
                let _ = std::fs::remove_file(self.config.lb_pid_file());
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Children that exited since the last call, and the probe's result.
    fn reap(&mut self) -> Vec<Event> {
        let mut events: Vec<Event> = std::mem::take(&mut self.queued);
        for which in [Child::Lb, Child::Keepalived] {
            let slot = self.slot(which);
            let Some(process) = slot else { continue };
            let status = match process.try_wait() {
                Ok(None) => continue,
                Ok(Some(status)) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let pid = process.id();
            *slot = None;
            if which == Child::Lb {
                tracing::warn!(pid, %status, "ipcs-lb exited: node down, restarting it");
            } else {
                tracing::warn!(pid, %status, "keepalived exited: restarting it");
            }
            events.push(Event::Exited(which));
        }
        if let Some((probe, started)) = &mut self.probe {
            let answered = match probe.try_wait() {
                Ok(Some(status)) => Some(status.success()),
                Ok(None) if started.elapsed() >= PROBE_DEADLINE => {
                    let _ = probe.kill();
                    let _ = probe.wait();
                    Some(false)
                }
                Ok(None) => None,
                Err(_) => Some(false),
            };
            if let Some(answered) = answered {
                self.probe = None;
                events.push(Event::ProbeDone { answered });
            }
        }
        events
    }

    fn spawn(&self, which: Child) -> io::Result<Process> {
        let c = self.config;
        let (mut command, log) = match which {
            Child::Lb => {
                let mut cmd = Command::new(&c.lb);
                cmd.args(vrrp::lb_node_args(c.node, &c.registry))
                    .arg("--key-file")
                    .arg(&c.key_file)
                    .args(&c.lb_args);
                (cmd, "lb.log")
            }
            Child::Keepalived => {
                let mut cmd = Command::new(&c.keepalived);
                cmd.args(vrrp::keepalived_args(&self.conf_path, &c.dir, c.node));
                (cmd, "keepalived.log")
            }
        };
        command.stdin(Stdio::null());
        if let Some(dir) = &c.log_dir {
            let out = append(&dir.join(log))?;
            command.stderr(out.try_clone()?).stdout(out);
        }
        command.spawn()
    }

    fn spawn_probe(&self) -> Option<(Process, Instant)> {
        let c = self.config;
        let target = format!("{}:{}", vrrp::lb_node_ip(c.node), vrrp::LB_PORT);
        match Command::new(&c.calc)
            .args(["--timeout", "200ms", "--attempts", "1", &target, "1+1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(p) => Some((p, Instant::now())),
            Err(e) => {
                tracing::error!(calc = %c.calc.display(), error = %e, "cannot run the probe");
                None
            }
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `record-master FILE`: appends the time (seconds since the epoch, to the
/// nanosecond) on a line of its own. keepalived runs it on each takeover.
pub fn record_master(file: &Path) -> io::Result<()> {
    use std::io::Write as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(io::Error::other)?;
    let mut f = append(file)?;
    writeln!(f, "{}.{:09}", now.as_secs(), now.subsec_nanos())
}
