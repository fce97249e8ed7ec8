//! Scheduling priority of the calling thread.

use std::io;

/// Sets the calling thread's nice value (-20, most favoured, to 19). On
/// Linux the nice value belongs to the thread, not the process, so other
/// threads keep theirs; threads created afterwards by this one inherit it.
/// Lowering it below the current value needs root (`CAP_SYS_NICE`).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of
    // ours; `who == 0` names the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    super::check_rc(rc)
}

/// The calling thread's nice value.
pub fn thread_nice() -> io::Result<i32> {
    // getpriority may legitimately return -1, so errno tells an error.
    // SAFETY: __errno_location returns this thread's errno slot, valid for
    // the thread's lifetime; writing 0 to it is what the man page asks.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain integers in, the value out; no memory of ours touched.
    let value = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let err = io::Error::last_os_error();
    if value == -1 && err.raw_os_error() != Some(0) {
        Err(err)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_is_per_thread() {
        let before = thread_nice().unwrap();
        let inner = std::thread::spawn(move || {
            // Raising one's own nice value needs no privilege.
            let target = (before + 1).min(19);
            set_thread_nice(target).unwrap();
            thread_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inner, (before + 1).min(19));
        assert_eq!(thread_nice().unwrap(), before, "this thread kept its own");
    }
}
