//! Giving up privilege once the sockets are open: a process that needed
//! root (or `CAP_NET_RAW`) only to open its packet socket and set its
//! priority runs the rest of its life as an ordinary user with no
//! capabilities, so a bug in its packet handling hands an attacker nothing.
//!
//! [`drop_privileges`] does, in this order:
//!
//! 1. `PR_SET_NO_NEW_PRIVS`: no `execve` can ever give privilege back
//!    (set-user-id files, file capabilities);
//! 2. drops every capability from the bounding set and the ambient set
//!    (best effort: the bounding set needs `CAP_SETPCAP`, which containers
//!    may lack; with no-new-privs it could not be used anyway);
//! 3. when running as root: `setgroups([])`, `setresgid(g, g, g)`,
//!    `setresuid(u, u, u)`. The C library applies these to every thread of
//!    the process, and the kernel clears a thread's permitted and
//!    effective capabilities when all its user ids leave 0;
//! 4. clears the calling thread's capability sets (`capset`), for a process
//!    started without root but with file capabilities;
//! 5. checks the result: all user ids are the target's and going back to
//!    uid 0 fails.
//!
//! Capabilities and no-new-privs belong to a thread. Threads created after
//! the drop inherit the dropped state; threads that exist before it lose
//! their capabilities by step 3 when the process ran as root, and should
//! call [`clear_thread_capabilities`] themselves otherwise.

use super::check_rc;
use core::fmt;
use core::str::FromStr;
use std::io;

/// The user and group to run as, by number: FROM-scratch images have no
/// `/etc/passwd` to look names up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

impl Credentials {
    /// The conventional unprivileged `nobody:nogroup` (65534:65534).
    pub const NOBODY: Credentials = Credentials {
        uid: 65534,
        gid: 65534,
    };
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// Why a string is not `UID[:GID]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected UID[:GID] as numbers other than 0, like 65534:65534 (names are not resolved)")]
pub struct CredentialsParseError;

impl FromStr for Credentials {
    type Err = CredentialsParseError;

    /// `UID` or `UID:GID`, decimal, neither 0 (dropping to root is not
    /// dropping); the group defaults to the user id.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            part.parse::<u32>()
                .ok()
                .filter(|n| *n != 0 && *n != u32::MAX)
                .ok_or(CredentialsParseError)
        };
        let (uid, gid) = match s.split_once(':') {
            Some((u, g)) => (number(u)?, number(g)?),
            None => (number(s)?, number(s)?),
        };
        Ok(Credentials { uid, gid })
    }
}

/// The `--user` flag of the IPCS daemons: `UID[:GID]`, or `keep` for no
/// drop at all. One parser for every binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFlag(pub Option<Credentials>);

impl FromStr for UserFlag {
    type Err = CredentialsParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(UserFlag(None)),
            user => user.parse().map(|c| UserFlag(Some(c))),
        }
    }
}

/// The `--user` default: nobody.
pub const DEFAULT_USER_FLAG: &str = "65534:65534";

/// What [`drop_privileges`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The user ids were changed (the process ran as root).
    pub switched_user: bool,
    /// Capabilities left in the bounding set (0 when `CAP_SETPCAP` allowed
    /// dropping them all).
    pub bounding_left: u32,
}

/// Drops privilege for good (see the module docs): to `to` when running
/// as root, and in every case clears capabilities and sets no-new-privs.
pub fn drop_privileges(to: Credentials) -> io::Result<Dropped> {
    set_no_new_privs()?;
    let bounding_left = drop_bounding_set();
    clear_ambient();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // SAFETY: a zero-length list; the pointer is not read.
        check_rc(unsafe { libc::setgroups(0, core::ptr::null()) })?;
        // SAFETY: plain integers in; no memory of ours is touched.
        check_rc(unsafe { libc::setresgid(to.gid, to.gid, to.gid) })?;
        // SAFETY: as above.
        check_rc(unsafe { libc::setresuid(to.uid, to.uid, to.uid) })?;
    }
    clear_thread_capabilities()?;
    if root {
        verify(to)?;
    }
    Ok(Dropped {
        switched_user: root,
        bounding_left,
    })
}

/// Sets `PR_SET_NO_NEW_PRIVS` on the calling thread (inherited by threads
/// it creates later).
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; PR_SET_NO_NEW_PRIVS reads
    // no memory.
    check_rc(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

/// Empties the calling thread's effective, permitted and inheritable
/// capability sets.
pub fn clear_thread_capabilities() -> io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and, for version 3, two data
    // structs, both laid out as <linux/capability.h> declares them (repr(C),
    // three u32 each) and alive for the call; pid 0 is the calling thread.
    check_rc(unsafe {
        libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) as libc::c_int
    })
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Capabilities are numbered below this (the kernel has 41 today; the
/// kernel refuses numbers it does not know with EINVAL).
const CAP_NUMBERS: libc::c_ulong = 64;

/// Drops what it can of the bounding set; returns how many it could not.
fn drop_bounding_set() -> u32 {
    let mut left = 0;
    for cap in 0..CAP_NUMBERS {
        // SAFETY: prctl with integer arguments only.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
        if present != 1 {
            continue;
        }
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            left += 1;
        }
    }
    left
}

fn clear_ambient() {
    // SAFETY: prctl with integer arguments only. Kernels before 4.3 have no
    // ambient set and refuse with EINVAL: nothing to clear then.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
}

/// The drop took: every user and group id is the target's, and uid 0 is
/// out of reach.
fn verify(to: Credentials) -> io::Result<()> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are to live locals for the call.
    check_rc(unsafe { libc::getresuid(&mut r, &mut e, &mut s) })?;
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: as above.
    check_rc(unsafe { libc::getresgid(&mut gr, &mut ge, &mut gs) })?;
    if [r, e, s] != [to.uid; 3] || [gr, ge, gs] != [to.gid; 3] {
        return Err(io::Error::other(format!(
            "after dropping to {to}: uids {r}/{e}/{s}, gids {gr}/{ge}/{gs}"
        )));
    }
    // SAFETY: plain integers in. Must fail: a success means the drop did
    // not take.
    if unsafe { libc::setresuid(0, 0, 0) } == 0 {
        return Err(io::Error::other("uid 0 is still reachable after the drop"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_numbers_and_refuse_root_and_names() {
        assert_eq!(
            "65534:65534".parse(),
            Ok(Credentials {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            "1000".parse(),
            Ok(Credentials {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(
            "1000:2000".parse(),
            Ok(Credentials {
                uid: 1000,
                gid: 2000
            })
        );
        for bad in [
            "",
            "0",
            "0:0",
            "1000:0",
            "nobody",
            "1:2:3",
            "-1",
            "4294967295",
            ":5",
        ] {
            assert_eq!(
                bad.parse::<Credentials>(),
                Err(CredentialsParseError),
                "{bad:?}"
            );
        }
        assert_eq!(Credentials::NOBODY.to_string(), "65534:65534");
        assert_eq!("keep".parse(), Ok(UserFlag(None)));
        assert_eq!(
            DEFAULT_USER_FLAG.parse(),
            Ok(UserFlag(Some(Credentials::NOBODY)))
        );
        assert!("root".parse::<UserFlag>().is_err());
    }

    /// Runs in a child process: the drop is for good and would leave the
    /// test harness without root.
    #[test]
    fn a_forked_child_drops_to_nobody_with_no_capabilities() {
        if !crate::sys::root_or_skip(
            "a_forked_child_drops_to_nobody_with_no_capabilities",
            "setresuid",
        ) {
            return;
        }
        // SAFETY: fork has no memory preconditions. The child of this
        // multi-threaded harness has only the forking thread; it makes
        // system calls, reads one /proc file (glibc's fork leaves malloc
        // usable in the child) and leaves with _exit, never returning into
        // the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = drop_privileges(Credentials::NOBODY).is_ok()
                && std::fs::read_to_string("/proc/thread-self/status").is_ok_and(|s| {
                    s.lines().any(|l| l == "CapEff:\t0000000000000000")
                        && s.lines().any(|l| l == "CapPrm:\t0000000000000000")
                        && s.lines()
                            .any(|l| l.starts_with("Uid:\t65534\t65534\t65534"))
                        && s.lines().any(|l| l == "NoNewPrivs:\t1")
                });
            // SAFETY: ends the child at once, without running the parent's
            // exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: pid is our child; status is a live local.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed to drop: status {status:#x}"
        );
    }
}
