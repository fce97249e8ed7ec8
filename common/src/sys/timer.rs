//! Timer precision of the calling thread.

use std::io;
use std::time::Duration;

/// Sets the calling thread's timer slack: how much later than asked the
/// kernel may wake it from a sleep (default 50 µs, to batch wake-ups). A
/// pacing thread such as loadgen's sender lowers it so that its sleeps end
/// within a few microseconds of the schedule. Zero is raised to 1 ns
/// (the kernel reads 0 as "back to the default").
pub fn set_timer_slack(slack: Duration) -> io::Result<()> {
    let nanos = libc::c_ulong::try_from(slack.as_nanos())
        .unwrap_or(libc::c_ulong::MAX)
        .max(1);
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument by value and
    // touches no memory of ours; it only changes this thread's timer slack.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanos, 0, 0, 0) };
    super::check_rc(rc)
}

/// The calling thread's timer slack.
pub fn timer_slack() -> io::Result<Duration> {
    // SAFETY: PR_GET_TIMERSLACK takes no pointer and returns the value.
    let rc = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(Duration::from_nanos(rc as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_is_per_thread_and_settable() {
        std::thread::spawn(|| {
            set_timer_slack(Duration::from_micros(2)).unwrap();
            assert_eq!(timer_slack().unwrap(), Duration::from_micros(2));
            set_timer_slack(Duration::ZERO).unwrap();
            assert_eq!(timer_slack().unwrap(), Duration::from_nanos(1));
        })
        .join()
        .unwrap();
    }
}
