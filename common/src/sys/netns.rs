//! Entering a named network namespace (`ip netns add NAME`) from one thread,
//! so a test can talk to a topology's hosts with in-process sockets.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Moves the calling thread (only it) into the network namespace that
/// `ip netns` created under `/run/netns/<name>`. Sockets the thread opens
/// afterwards live in that namespace.
pub fn enter_for_thread(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad namespace name",
        ));
    }
    let file = File::open(format!("/run/netns/{name}"))?;
    // SAFETY: file is an open namespace descriptor for the duration of the
    // call; setns only changes the calling thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
