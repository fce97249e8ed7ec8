//! The one place where IPCS calls the kernel through `unsafe` code: raw
//! `AF_PACKET` sockets, batched `recvmmsg`/`sendmmsg`, interface look-up and
//! `PACKET_FANOUT`, dropping privileges. Everything above this module is safe Rust.
//!
//! * [`iface`]: an interface's index, MAC and IPv4 address.
//! * [`packet`]: a non-blocking raw socket bound to one interface and one
//!   EtherType.
//! * [`netns`]: moving one thread into a named network namespace.
//! * [`batch`]: fixed buffers for moving many datagrams or frames per system
//!   call, for any socket (UDP or raw).
//! * [`timer`]: a thread's timer slack (how precisely its sleeps end).
//! * [`sched`]: a thread's nice value (scheduling priority).
//! * [`udp`]: UDP segmentation offload (many datagrams per send).
//! * [`privs`]: giving up root and every capability once the sockets are
//!   open.
//! * [`signal`]: SIGTERM to a child (the LB node's supervisor).

pub mod batch;
pub mod iface;
pub mod netns;
pub mod packet;
pub mod privs;
pub mod sched;
pub mod signal;
pub mod timer;
pub mod udp;

pub use batch::MsgBatch;
pub use iface::Interface;
pub use packet::PacketSocket;
pub use sched::set_thread_nice;
pub use timer::set_timer_slack;
pub use udp::{set_udp_gro, set_udp_segment};

/// A libc call's `0 on success, -1 and errno on failure` as a `Result`.
pub(crate) fn check_rc(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the process runs with root's effective user id (tests that need
/// namespaces or raw sockets skip themselves otherwise).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root (namespaces, veths, raw sockets): true when the
/// test may go on. Otherwise it says so loudly on stderr, since a test that
/// returns early passes without having run, and with `CI=true` it panics:
/// CI runs as root, so a skip there means the run proves nothing.
/// `test` names the test, `needs` what root is needed for.
pub fn root_or_skip(test: &str, needs: &str) -> bool {
    if is_root() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let line = format!("SKIPPED: {test} needs root ({needs})");
    assert!(!ci, "{line}, and CI=true forbids skipping");
    // Straight to the process's stderr: the test harness captures what
    // eprintln! prints and shows it only for failures, which would hide
    // the skip of a passing test.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
    false
}

/// Clock ticks per second (`_SC_CLK_TCK`, the unit of `/proc`'s CPU times),
/// or `None` if the kernel does not say.
pub fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 on failure.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0)
}

/// The page size in bytes (the unit of `/proc`'s resident set size), or
/// `None` if the kernel does not say.
pub fn page_size() -> Option<u64> {
    // SAFETY: sysconf has no preconditions; it returns -1 on failure.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0)
}
