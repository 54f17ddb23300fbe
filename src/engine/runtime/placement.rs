//! Where and how the loop thread runs: CPU pinning, real-time scheduling,
//! locked memory. What the system refuses is a warning naming the missing
//! capability, or an error when `[runtime] strict = true`.

use std::io;

use crate::engine::runtime::config::Sched;
use crate::engine::sys::cvt;

/// A placement request the system refused.
#[derive(Debug)]
pub struct Refused {
    /// The config key behind the request.
    pub key: &'static str,
    /// What was asked.
    pub asked: String,
    /// The capability or limit that would allow it.
    pub needs: &'static str,
    pub source: io::Error,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} = {}: refused ({}); needs {}",
            self.key, self.asked, self.source, self.needs
        )
    }
}

/// Pin the calling thread to `cpu`; `key` names the request in errors.
pub fn pin_current_thread(key: &'static str, cpu: usize) -> Result<(), Refused> {
    pin(0, key, cpu)
}

/// Pin thread or process `pid` (0: the calling thread) to `cpu`.
pub fn pin(pid: libc::pid_t, key: &'static str, cpu: usize) -> Result<(), Refused> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t; CPU_SET ignores a CPU beyond its
    // size, and the kernel then refuses the empty set (EINVAL).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is valid for the size passed.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    cvt(r as isize).map(drop).map_err(|source| Refused {
        key,
        asked: cpu.to_string(),
        needs: "a CPU inside the process's cpuset (see CPUAffinity= / taskset)",
        source,
    })
}

/// Set the calling thread's scheduling policy (`runtime.sched`).
pub fn set_scheduler(sched: Sched) -> Result<(), Refused> {
    set_scheduler_of(0, "runtime.sched", sched)
}

/// Set the scheduling policy of thread or process `pid` (0: the calling
/// thread); `key` names the request in errors.
pub fn set_scheduler_of(pid: libc::pid_t, key: &'static str, sched: Sched) -> Result<(), Refused> {
    let (policy, prio) = match sched {
        Sched::Other => (libc::SCHED_OTHER, 0),
        Sched::Fifo(p) => (libc::SCHED_FIFO, i32::from(p)),
        Sched::RoundRobin(p) => (libc::SCHED_RR, i32::from(p)),
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: `param` is a valid sched_param for the call.
    let r = unsafe { libc::sched_setscheduler(pid, policy, &param) };
    cvt(r as isize).map(drop).map_err(|source| Refused {
        key,
        asked: String::from(sched),
        needs: "CAP_SYS_NICE (or RLIMIT_RTPRIO; CPUSchedulingPolicy= under systemd)",
        source,
    })
}

/// Whether the process holds `CAP_IPC_LOCK` in its effective set.
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
///
/// Refused up front without `CAP_IPC_LOCK` and with a finite
/// `RLIMIT_MEMLOCK`: the call could succeed now and make a later allocation
/// fail once the process outgrows the limit, which would abort the daemon.
pub fn lock_all_memory() -> Result<(), Refused> {
    let refused = |source| Refused {
        key: "runtime.mlock_all",
        asked: "true".into(),
        needs: "CAP_IPC_LOCK (or RLIMIT_MEMLOCK unlimited; LimitMEMLOCK=infinity)",
        source,
    };
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if r == 0 && limit.rlim_cur != libc::RLIM_INFINITY && !has_ipc_lock() {
        return Err(refused(io::Error::other(format!(
            "RLIMIT_MEMLOCK is {} bytes and CAP_IPC_LOCK is missing",
            limit.rlim_cur
        ))));
    }
    // SAFETY: mlockall has no memory-safety preconditions.
    cvt(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } as isize)
        .map(drop)
        .map_err(refused)
}

/// The explanation for a refused ring lock, naming the capability.
pub fn ring_lock_refused(errno: i32, bytes: usize) -> Refused {
    Refused {
        key: "netlink.ring_bytes",
        asked: bytes.to_string(),
        needs: "CAP_IPC_LOCK (or RLIMIT_MEMLOCK above the ring size)",
        source: io::Error::from_raw_os_error(errno),
    }
}
