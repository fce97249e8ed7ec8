//! Processes a topology runs: started inside a namespace, their output sent
//! to a log file, stopped for good when dropped.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A signal a test may send to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Stop,
    Cont,
    Int,
    /// `ipcs-server` re-reads its fault delay (`--fault-delay-file`).
    Usr1,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
            Signal::Int => "INT",
            Signal::Usr1 => "USR1",
        }
    }
}

/// A running process in a topology. Dropping it stops it: SIGCONT (in case it
/// was frozen), SIGTERM, then SIGKILL after a grace period.
#[derive(Debug)]
pub struct ChildProcess {
    label: String,
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    /// Runs `program args` in namespace `netns` (`None`: the caller's);
    /// `detached` puts it in a process group of its own.
    pub fn spawn(
        label: &str,
        netns: Option<&str>,
        program: &Path,
        args: &[String],
        log: PathBuf,
        detached: bool,
    ) -> io::Result<Self> {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if detached {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let child = command.spawn()?;
        Ok(ChildProcess {
            label: label.to_owned(),
            child,
            log,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (through kill(1), so no unsafe code here).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{}", signal.name()))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{} {} failed",
                signal.name(),
                self.pid()
            )))
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; its exit code if it did.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process: SIGCONT, SIGTERM, and SIGKILL if it is still there
    /// after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.has_exited() {
            return;
        }
        let _ = self.signal(Signal::Cont);
        let _ = self.signal(Signal::Term);
        if self.wait_timeout(grace).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(2));
    }
}
