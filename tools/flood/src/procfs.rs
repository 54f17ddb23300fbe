//! What `/proc` says about a process or thread: CPU time, memory, and the
//! netlink drops of its sockets.

use std::collections::HashSet;

/// CPU time consumed, two ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    /// `utime + stime` from `stat`, in ns (tick resolution, sampled).
    pub stat_ns: u64,
    /// Sum of `schedstat` run time over its threads, in ns (exact).
    pub sched_ns: u64,
    /// Times its threads were put on a CPU (`schedstat` timeslices): about
    /// one per wake-up.
    pub slices: u64,
}

impl Cpu {
    /// The scheduler's figure when there is one, else `stat`'s.
    pub fn exact_ns(self) -> u64 {
        if self.sched_ns > 0 {
            self.sched_ns
        } else {
            self.stat_ns
        }
    }

    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            stat_ns: self.stat_ns.saturating_sub(earlier.stat_ns),
            sched_ns: self.sched_ns.saturating_sub(earlier.sched_ns),
            slices: self.slices.saturating_sub(earlier.slices),
        }
    }
}

fn ticks_ns() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / if hz > 0 { hz as u64 } else { 100 }
}

/// `utime + stime` of a `stat` line, in ticks. Fields counted after the
/// command name, which may itself hold spaces and parentheses.
fn stat_ticks(line: &str) -> Option<u64> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, utime 14, stime 15 (1-based overall).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Run time (ns) and timeslices of a `schedstat` line.
fn schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace();
    let run = f.next()?.parse().ok()?;
    let slices = f.nth(1)?.parse().ok()?;
    Some((run, slices))
}

/// CPU time of process `pid` (every thread).
pub fn process_cpu(pid: i32) -> Option<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (mut sched_ns, mut slices) = (0, 0);
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            let p = task.path().join("schedstat");
            if let Some((ns, n)) = std::fs::read_to_string(p).ok().and_then(|t| schedstat(&t)) {
                sched_ns += ns;
                slices += n;
            }
        }
    }
    Some(Cpu {
        stat_ns: stat_ticks(&stat)? * ticks_ns(),
        sched_ns,
        slices,
    })
}

/// The state letter of a `stat` line (field 3, after the command name).
fn stat_state(line: &str) -> Option<char> {
    line[line.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Whether every thread of `pid` is stopped (state `T`, as after SIGSTOP).
pub fn all_stopped(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in dir.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        if stat_state(&stat) != Some('T') {
            return false;
        }
        any = true;
    }
    any
}

/// `VmRSS` and `VmHWM` of `pid`, in kB.
pub fn memory_kb(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Messages the kernel dropped on `pid`'s `NETLINK_ROUTE` sockets (the
/// `Drops` column of its namespace's `/proc/net/netlink`): what its
/// `ENOBUFS` errors stood for.
pub fn netlink_drops(pid: i32) -> Option<u64> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(ino) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(ino.to_string());
            }
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/netlink")).ok()?;
    let mut header = table.lines().next()?.split_whitespace();
    let drops_col = header.position(|h| h == "Drops")?;
    let mut header = table.lines().next()?.split_whitespace();
    let inode_col = header.position(|h| h == "Inode")?;
    let eth_col = 1;
    let mut drops = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(eth), Some(d), Some(ino)) = (f.get(eth_col), f.get(drops_col), f.get(inode_col))
        else {
            continue;
        };
        if *eth == "0" && inodes.contains(*ino) {
            drops += d.parse::<u64>().unwrap_or(0);
        }
    }
    Some(drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(stat_ticks(line), Some(10));
        assert_eq!(stat_state(line), Some('S'));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id() as i32;
        assert!(process_cpu(pid).is_some());
        assert!(memory_kb(pid).is_some_and(|(rss, _)| rss > 0));
        assert_eq!(netlink_drops(pid), Some(0));
        assert!(!all_stopped(pid));
    }
}
