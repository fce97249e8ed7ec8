//! Signalling a child process by pid (std's `Child::kill` sends only
//! SIGKILL; a supervisor needs SIGTERM so its children stop cleanly).

use std::io;

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) -> io::Result<()> {
    send(pid, libc::SIGTERM)
}

fn send(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // Pids above i32::MAX do not exist; 0 and negative values would signal
    // process groups, which this API never means.
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
    // SAFETY: kill takes plain integers and touches no memory of ours; the
    // pid is positive, so exactly one process is addressed.
    let rc = unsafe { libc::kill(pid, signal) };
    super::check_rc(rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminates_a_child_and_refuses_group_pids() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        terminate(child.id()).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        assert!(terminate(0).is_err());
        assert!(terminate(u32::MAX).is_err());
    }
}
