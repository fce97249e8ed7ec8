//! CPU time used by a process and its children, from `/proc`, to say what a
//! balancer costs at a given rate.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of `pid` and of every process whose parent is
/// `pid` (nginx's workers), as now.
pub fn cpu_time_of_tree(pid: u32) -> Duration {
    let mut ticks = own_ticks(pid).unwrap_or(0);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_of(child) == Some(pid) {
                ticks += own_ticks(child).unwrap_or(0);
            }
        }
    }
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// Fields after the `(comm)` of `/proc/<pid>/stat`, which may hold spaces.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

fn own_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // After comm: state(0) ppid(1) ... utime(11) stime(12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_up_in_the_reading() {
        // Spin until the reading has grown by 100 ms of CPU; a reading that
        // never moves fails at the wall-clock bound instead of hanging.
        let me = std::process::id();
        let before = cpu_time_of_tree(me);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_time_of_tree(me) < before + Duration::from_millis(100) {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "CPU reading did not move: {before:?}"
            );
        }
        assert!(x != 1);
    }
}
