//! Phases: one writer (daemon or floor), one mode, a batch of changes; then
//! wait until STATE_DB holds the kernel's final state of every port, and
//! collect what it cost.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::select;
use hdrhistogram::Histogram;
use syncd::engine::redis::client::Client;
use syncd::engine::sys::monotonic_ns;
use testbed::state_fields;

use crate::cli::{Mode, Options};
use crate::floor::Floor;
use crate::kernel::{KernelLink, Requests};
use crate::perf::SyscallCount;
use crate::plan::{Change, Kind, Phase, PortCursor};
use crate::procfs::{self, Cpu};
use crate::progress::Progress;
use crate::setup::Bench;
use crate::signal::Stop;
use crate::watch::{Barrier, Counts, Seen, Side, Watcher};
use crate::Error;

/// How long one change may take to show in latency mode before it is
/// counted as unsettled and the run moves on.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// After an overrun the floor may never get a port right (it does not
/// resync): once it has been idle this long, its final state is final.
const FLOOR_QUIET: Duration = Duration::from_secs(1);
/// How often the daemon's RSS is sampled while changes are sent.
const RSS_EVERY: Duration = Duration::from_secs(1);
/// Overflow mode: how long SIGSTOP may take to stop every thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Overflow mode: how long the kernel may take to settle the ports' oper
/// states (link-watch) after the burst, before the daemon is resumed.
const KERNEL_SETTLE: Duration = Duration::from_secs(5);
/// Overflow mode: after STATE_DB first matches the kernel, it must still
/// match this much later (no stale write after the recovery).
pub const RECOVERY_QUIET: Duration = Duration::from_millis(200);

/// A port whose STATE_DB entry does not match the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongPort {
    pub name: String,
    pub kernel: Option<KernelLink>,
    /// STATE_DB fields, sorted; empty when the key is missing.
    pub redis: Vec<(String, String)>,
}

impl std::fmt::Display for WrongPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ud = |b: bool| if b { "up" } else { "down" };
        match &self.kernel {
            Some(k) => write!(
                f,
                "{}: kernel admin {} oper {} mtu {}, ",
                self.name,
                ud(k.admin),
                ud(k.oper),
                k.mtu
            )?,
            None => write!(f, "{}: not in the kernel, ", self.name)?,
        }
        if self.redis.is_empty() {
            write!(f, "STATE_DB entry missing")
        } else {
            let fields: Vec<String> = self.redis.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "STATE_DB {}", fields.join(" "))
        }
    }
}

/// What one phase measured.
pub struct PhaseResult {
    pub side: Side,
    pub changes: u64,
    /// Ack → write, in ns.
    pub hist: Histogram<u64>,
    /// Changes no write ever showed.
    pub lost: u64,
    /// Writes notified before the change's ack was stamped (latency 0).
    pub early: u64,
    pub coalesced: u64,
    pub matched_writes: u64,
    pub other_writes: u64,
    pub overtaken_reads: u64,
    /// Latency mode: changes that did not settle within the time allowed.
    pub unsettled: u64,
    pub counts: Counts,
    pub wrong: Vec<WrongPort>,
    /// First request sent → last ack.
    pub drive_ns: u64,
    /// Last ack → STATE_DB matched the kernel (or gave up).
    pub settle_ns: u64,
    pub cpu: Option<Cpu>,
    /// VmRSS and VmHWM at the end (daemon only).
    pub memory_kb: Option<(u64, u64)>,
    /// Kernel drops on the daemon's netlink sockets during the phase.
    pub netlink_drops: Option<u64>,
    /// ENOBUFS the floor saw.
    pub floor_overruns: u64,
    /// Every change with its ack and write times (with `--raw`).
    pub raw: Option<Vec<RawChange>>,
    /// The daemon's RSS: (monotonic ns, kB), from the phase's start to
    /// its end (every [`RSS_EVERY`] while changes are sent).
    pub rss_samples: Vec<(u64, u64)>,
    /// System calls of the writer during the phase (`--syscalls`).
    pub syscalls: Option<u64>,
    /// Overflow mode: the round's recovery.
    pub overflow: Option<Overflow>,
}

/// One overflow round: the daemon stopped through a burst, then resumed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overflow {
    /// Messages the kernel dropped on the daemon's netlink sockets while it
    /// was stopped (`/proc/PID/net/netlink`); 0 means no overflow happened.
    pub kernel_drops: u64,
    /// SIGCONT → STATE_DB right for every port, at most: the smaller of
    /// `last_write_ns` and `verified_ns`, both upper bounds (when STATE_DB
    /// then matched the kernel, and still did [`RECOVERY_QUIET`] later).
    pub recovery_ns: Option<u64>,
    /// SIGCONT → the notification of the daemon's last STATE_DB write
    /// (stamped when flood's watcher read it, so possibly late).
    pub last_write_ns: Option<u64>,
    /// SIGCONT → the end of the first comparison that found every port
    /// right (comparisons run after each write is read back).
    pub verified_ns: Option<u64>,
    /// STATE_DB writes from SIGCONT to the end of the quiet check.
    pub writes: u64,
    /// Of those, notified after the comparison had found every port right.
    pub late_writes: u64,
    /// SIGSTOP → SIGCONT.
    pub stopped_ns: u64,
    /// The daemon's CPU time from SIGCONT to the end of the quiet check.
    pub recovery_cpu_ns: Option<u64>,
    /// STATE_DB was right, then wrong again within the quiet check.
    pub flapped: bool,
}

/// The daemon, stopped with SIGSTOP; resumed on drop if nobody did.
struct Suspended {
    pid: i32,
    resumed: bool,
}

impl Suspended {
    /// SIGSTOP `pid` and wait until every thread of it is stopped.
    fn stop(pid: i32) -> Result<Suspended, Error> {
        // SAFETY: kill(2) on the daemon's pid, which flood started or was given.
        if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
            return Err(Error::failed(format!(
                "SIGSTOP to the daemon ({pid}): {}",
                std::io::Error::last_os_error()
            )));
        }
        let s = Suspended {
            pid,
            resumed: false,
        };
        let deadline = monotonic_ns() + STOP_TIMEOUT.as_nanos() as u64;
        while !procfs::all_stopped(pid) {
            if monotonic_ns() >= deadline {
                return Err(Error::failed(format!(
                    "the daemon ({pid}) did not stop within {STOP_TIMEOUT:?} of SIGSTOP"
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(s)
    }

    /// SIGCONT; the time just before it was sent.
    fn resume(&mut self) -> u64 {
        let at = monotonic_ns();
        // SAFETY: kill(2) on the daemon's pid.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
        self.resumed = true;
        at
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        if !self.resumed {
            // SAFETY: kill(2) on the daemon's pid.
            unsafe { libc::kill(self.pid, libc::SIGCONT) };
        }
    }
}

/// One change as `--raw` reports it.
#[derive(Debug, Clone, Copy)]
pub struct RawChange {
    pub change: Change,
    pub ack_ns: u64,
    /// 0: never seen.
    pub done_ns: u64,
}

/// A new latency histogram (1 ns .. 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}

/// Everything a run drives.
pub struct Driver<'a> {
    pub opts: &'a Options,
    pub bench: &'a mut Bench,
    pub stop: &'a Stop,
    pub watcher: Watcher,
    pub floor: Option<Floor>,
    requests: [Option<Requests>; 2],
    checks: [Option<Client>; 2],
    cursors: [Vec<PortCursor>; 2],
    ifindex: [Vec<i32>; 2],
    /// Latest write read back, per side and port: (admin, oper, mtu).
    last_seen: [Vec<Option<(bool, bool, u32)>>; 2],
    /// The ports' states before the run (attach restores them).
    initial: Vec<KernelLink>,
    pub progress: Progress,
    /// The daemon's RSS samples of the phase running.
    rss_samples: Vec<(u64, u64)>,
    /// When recording (overflow mode): the notification time of every
    /// daemon write read back.
    daemon_writes: Option<Vec<u64>>,
}

impl<'a> Driver<'a> {
    pub fn new(
        opts: &'a Options,
        bench: &'a mut Bench,
        stop: &'a Stop,
        watcher: Watcher,
        floor: Option<Floor>,
    ) -> Result<Driver<'a>, Error> {
        let n = bench.ports.len();
        let mut d = Driver {
            opts,
            stop,
            watcher,
            floor,
            requests: [None, None],
            checks: [None, None],
            cursors: [Vec::new(), Vec::new()],
            ifindex: [Vec::new(), Vec::new()],
            last_seen: [vec![None; n], vec![None; n]],
            initial: Vec::new(),
            progress: Progress::new(opts.progress),
            rss_samples: Vec::new(),
            daemon_writes: None,
            bench,
        };
        for side in d.sides() {
            let netns = match side {
                Side::Daemon => d.bench.dut_netns.clone(),
                Side::Floor => d.bench.floor_netns.clone(),
            };
            let mut req = Requests::open(netns.as_deref())?;
            let links = req.dump()?;
            let mut cursors = Vec::with_capacity(n);
            let mut ifindex = Vec::with_capacity(n);
            for name in &d.bench.ports {
                let Some(l) = links.get(name) else {
                    return Err(Error::failed(format!(
                        "port {name} does not exist in namespace {}",
                        req.netns
                    )));
                };
                cursors.push(PortCursor::new(l.admin, l.mtu));
                ifindex.push(l.ifindex);
                if side == Side::Daemon {
                    d.initial.push(*l);
                }
            }
            let db = match side {
                Side::Daemon => d.bench.state_db,
                Side::Floor => d.bench.floor_db,
            };
            let client = Client::connect_db(&d.bench.address, db, Duration::from_secs(10))
                .map_err(|e| {
                    Error::failed(format!("connecting to Redis at {}: {e}", d.bench.address))
                })?;
            let i = side.index();
            d.requests[i] = Some(req);
            d.checks[i] = Some(client);
            d.cursors[i] = cursors;
            d.ifindex[i] = ifindex;
        }
        Ok(d)
    }

    /// The writers measured: the daemon, and the floor unless disabled.
    pub fn sides(&self) -> Vec<Side> {
        if self.bench.floor_netns.is_some() {
            vec![Side::Daemon, Side::Floor]
        } else {
            vec![Side::Daemon]
        }
    }

    fn note_seen(&mut self, s: Seen) {
        if let Some(slot) = self.last_seen[s.side.index()].get_mut(s.port as usize) {
            *slot = Some((s.admin, s.oper, s.mtu));
        }
        if let (Side::Daemon, Some(log)) = (s.side, self.daemon_writes.as_mut()) {
            log.push(s.at_ns);
        }
    }

    /// Sample the daemon's RSS (daemon phases, when its pid is known).
    fn sample_rss(&mut self, side: Side) -> Option<u64> {
        if side != Side::Daemon {
            return None;
        }
        let (rss, _) = procfs::memory_kb(self.bench.daemon_pid?)?;
        self.rss_samples.push((monotonic_ns(), rss));
        Some(rss)
    }

    fn pid_of(&self, side: Side) -> Result<i32, Error> {
        match side {
            Side::Daemon => self.bench.daemon_pid.ok_or_else(|| {
                Error::Usage("--syscalls needs the daemon's pid (flood attach --pid)".into())
            }),
            Side::Floor => self
                .floor
                .as_ref()
                .map(|f| f.pid())
                .ok_or_else(|| Error::failed("no floor process")),
        }
    }

    /// A thread that died takes the run with it.
    fn check_threads(&mut self) -> Result<(), Error> {
        self.watcher.check()?;
        if let Some(f) = self.floor.as_mut() {
            f.check()?;
        }
        Ok(())
    }

    /// Why a wait ended with a stop: a signal, or a thread that failed
    /// (it stops everyone so that nobody waits for it): its error.
    fn stopped(&mut self) -> Error {
        if self.stop.signalled() {
            return Error::Interrupted;
        }
        if let Err(e) = self.watcher.join() {
            return e;
        }
        if let Some(Err(e)) = self.floor.as_mut().map(|f| f.check()) {
            return e;
        }
        Error::Interrupted
    }

    fn resolve(&mut self, e: Error) -> Error {
        match e {
            Error::Interrupted => self.stopped(),
            e => e,
        }
    }

    fn barrier(&mut self, b: Barrier) -> Result<[Counts; 2], Error> {
        self.watcher
            .barrier(b, self.stop)
            .map_err(|e| self.resolve(e))
    }

    /// Wait for the next write read back (or `deadline`, or a stop).
    /// `Ok(false)` at the deadline.
    fn wait_seen(&mut self, deadline_ns: u64) -> Result<bool, Error> {
        let left = Duration::from_nanos(deadline_ns.saturating_sub(monotonic_ns()));
        let seen = self.watcher.seen.clone();
        let stop = self.stop.channel().clone();
        select! {
            recv(seen) -> s => match s {
                Ok(s) => {
                    self.note_seen(s);
                    Ok(true)
                }
                Err(_) => Err(self.stopped()),
            },
            recv(stop) -> _ => Err(self.stopped()),
            default(left) => Ok(false),
        }
    }

    fn drain_seen(&mut self) {
        while let Ok(s) = self.watcher.seen.try_recv() {
            self.note_seen(s);
        }
    }

    /// STATE_DB entries of `side` that differ from the kernel's view.
    fn compare(&mut self, side: Side) -> Result<Vec<WrongPort>, Error> {
        let i = side.index();
        let sep = self.bench.separator as char;
        let cmds: Vec<Vec<Vec<u8>>> = self
            .bench
            .ports
            .iter()
            .map(|p| {
                vec![
                    b"HGETALL".to_vec(),
                    format!("PORT_TABLE{sep}{p}").into_bytes(),
                ]
            })
            .collect();
        let client = self.checks[i]
            .as_mut()
            .ok_or_else(|| Error::failed("no Redis connection"))?;
        // Redis first, then the kernel: whatever changes in between is
        // written after both reads, and wakes us for another look.
        let replies = client
            .pipeline(&cmds)
            .map_err(|e| Error::failed(format!("reading STATE_DB PORT_TABLE: {e}")))?;
        let req = self.requests[i]
            .as_mut()
            .ok_or_else(|| Error::failed("no request socket"))?;
        let kernel: HashMap<String, KernelLink> = req.dump()?;
        let ud = |b: bool| if b { "up" } else { "down" };
        let mut wrong = Vec::new();
        for (name, reply) in self.bench.ports.iter().zip(replies) {
            let mut redis = reply.pairs();
            redis.sort();
            let k = kernel.get(name).copied();
            let right = match k {
                Some(k) => redis == state_fields(ud(k.admin), ud(k.oper), k.mtu),
                None => redis.is_empty(),
            };
            if !right {
                wrong.push(WrongPort {
                    name: name.clone(),
                    kernel: k,
                    redis,
                });
            }
        }
        Ok(wrong)
    }

    /// Wait until STATE_DB matches the kernel for every port of `side`, at
    /// most `timeout`; the ports still wrong then.
    pub fn settle(
        &mut self,
        side: Side,
        timeout: Duration,
        floor_overruns_before: u64,
    ) -> Result<Vec<WrongPort>, Error> {
        let deadline = monotonic_ns() + timeout.as_nanos() as u64;
        loop {
            self.drain_seen();
            let wrong = self.compare(side)?;
            if wrong.is_empty() {
                return Ok(wrong);
            }
            let now = monotonic_ns();
            if now >= deadline {
                return Ok(wrong);
            }
            let mut wake_at = deadline;
            if let (Side::Floor, Some(f)) = (side, &self.floor) {
                if f.shared().overruns.load(Ordering::Relaxed) > floor_overruns_before {
                    let quiet_at =
                        f.shared().idle_ns.load(Ordering::Acquire) + FLOOR_QUIET.as_nanos() as u64;
                    if now >= quiet_at {
                        return Ok(wrong);
                    }
                    wake_at = wake_at.min(quiet_at);
                }
            }
            self.progress.show(|| {
                format!(
                    "settling {}: {} ports not yet right in STATE_DB",
                    side.name(),
                    wrong.len()
                )
            });
            self.wait_seen(wake_at)?;
        }
    }

    fn cpu(&self, side: Side) -> Option<Cpu> {
        match side {
            Side::Daemon => procfs::process_cpu(self.bench.daemon_pid?),
            Side::Floor => procfs::process_cpu(self.floor.as_ref()?.pid()),
        }
    }

    fn daemon_drops(&self, side: Side) -> Option<u64> {
        match side {
            Side::Daemon => procfs::netlink_drops(self.bench.daemon_pid?),
            Side::Floor => None,
        }
    }

    fn send(&mut self, side: Side, phase: &Phase, i: usize) -> Result<(), Error> {
        let c = phase.changes[i];
        let s = side.index();
        let ifindex = self.ifindex[s][c.port as usize];
        let name = &self.bench.ports[c.port as usize];
        let req = self.requests[s]
            .as_mut()
            .ok_or_else(|| Error::failed("no request socket"))?;
        phase.sending(i, monotonic_ns());
        let acked_at = match c.kind {
            Kind::Admin => req.set_admin(ifindex, c.admin, name)?,
            Kind::Mtu => req.set_mtu(ifindex, c.mtu, name)?,
        };
        phase.ack_ns[i].store(acked_at, Ordering::Release);
        Ok(())
    }

    /// Run one phase of `n` changes.
    /// Tell the floor to spin (`--floor busy`, its phases) or sleep.
    fn set_floor_busy(&self, busy: bool) {
        if let Some(f) = &self.floor {
            f.shared().busy.store(u64::from(busy), Ordering::Release);
        }
    }

    pub fn phase(
        &mut self,
        mode: Mode,
        side: Side,
        n: usize,
        label: &str,
    ) -> Result<PhaseResult, Error> {
        let s = side.index();
        let phase = Arc::new(Phase::new(n, &mut self.cursors[s]));
        let live = mode != Mode::Latency;
        if let (Side::Floor, Some(f)) = (side, &self.floor) {
            // The blocking floor for one change at a time, the batching one
            // where changes come faster than one round trip each.
            f.shared()
                .batching
                .store(u64::from(floor_kind(mode) == "batching"), Ordering::Release);
        }
        // --floor busy: the floor spins in its phases, with the daemon
        // (which spins too, with runtime.busy_poll) stopped meanwhile.
        // (An error return resumes the daemon, Suspended's drop; the floor
        // then spins until flood ends it.)
        let busy = side == Side::Floor && self.opts.floor_busy;
        let stopped_daemon = match self.bench.daemon_pid.filter(|_| busy) {
            Some(pid) => Some(Suspended::stop(pid)?),
            None => None,
        };
        self.set_floor_busy(busy);
        let before = self.barrier(Barrier {
            install: Some((side, phase.clone())),
            clear: None,
            live_kernel: live,
        })?;
        let floor_overruns0 = self
            .floor
            .as_ref()
            .map(|f| f.shared().overruns.load(Ordering::Relaxed))
            .unwrap_or(0);
        let perf = match self.opts.syscalls {
            true => Some(SyscallCount::start(self.pid_of(side)?)?),
            false => None,
        };
        let drops0 = self.daemon_drops(side);
        let cpu0 = self.cpu(side);
        self.rss_samples.clear();
        self.sample_rss(side);
        let t0 = monotonic_ns();
        let unsettled = match mode {
            Mode::Latency => self.drive_latency(side, &phase, label)?,
            Mode::Burst => self.drive_burst(side, &phase, label, None)?,
            Mode::Rate => self.drive_burst(side, &phase, label, Some(self.opts.rate))?,
            Mode::Overflow => {
                return Err(Error::failed("overflow rounds run through overflow_phase"))
            }
        };
        let t_last = monotonic_ns();
        let wrong = self.settle(side, self.opts.settle_timeout, floor_overruns0)?;
        let t_settled = monotonic_ns();
        self.set_floor_busy(false);
        drop(stopped_daemon);
        let after = self.barrier(Barrier {
            install: None,
            clear: Some(side),
            live_kernel: false,
        })?;
        let syscalls = perf.map(SyscallCount::finish).transpose()?;
        self.sample_rss(side);
        let cpu = match (cpu0, self.cpu(side)) {
            (Some(a), Some(b)) => Some(b.since(a)),
            _ => None,
        };
        let netlink_drops = match (drops0, self.daemon_drops(side)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        let memory_kb = match side {
            Side::Daemon => self.bench.daemon_pid.and_then(procfs::memory_kb),
            Side::Floor => None,
        };
        self.bench.check_daemon()?;
        self.check_threads()?;

        let mut hist = histogram();
        let (mut lost, mut early) = (0, 0);
        for i in 0..n {
            let ack = phase.ack_ns[i].load(Ordering::Acquire);
            let done = phase.done_ns[i].load(Ordering::Acquire);
            if done == 0 {
                lost += 1;
            } else if done <= ack {
                early += 1;
                hist.saturating_record(1);
            } else {
                hist.saturating_record(done - ack);
            }
        }
        let raw = self.opts.raw.as_ref().map(|_| {
            (0..n)
                .map(|i| RawChange {
                    change: phase.changes[i],
                    ack_ns: phase.ack_ns[i].load(Ordering::Acquire),
                    done_ns: phase.done_ns[i].load(Ordering::Acquire),
                })
                .collect()
        });
        let b = before[s];
        let a = after[s];
        Ok(PhaseResult {
            side,
            changes: n as u64,
            hist,
            lost,
            early,
            coalesced: phase.coalesced.load(Ordering::Relaxed),
            matched_writes: phase.matched_writes.load(Ordering::Relaxed),
            other_writes: phase.other_writes.load(Ordering::Relaxed),
            overtaken_reads: phase.overtaken_reads.load(Ordering::Relaxed),
            unsettled,
            counts: a.since(&b),
            wrong,
            drive_ns: t_last - t0,
            settle_ns: t_settled - t_last,
            cpu,
            memory_kb,
            netlink_drops,
            floor_overruns: self
                .floor
                .as_ref()
                .map(|f| f.shared().overruns.load(Ordering::Relaxed) - floor_overruns0)
                .unwrap_or(0),
            raw,
            rss_samples: std::mem::take(&mut self.rss_samples),
            syscalls,
            overflow: None,
        })
    }

    /// Wait until the kernel has settled every port's oper state after a
    /// burst (veth ports: RUNNING follows UP through link-watch, up to ~1 s
    /// later), so that what the daemon must catch up with is final.
    fn wait_kernel_settled(&mut self, side: Side) -> Result<(), Error> {
        if side == Side::Daemon && !self.bench.veth_ports {
            return Ok(());
        }
        let deadline = monotonic_ns() + KERNEL_SETTLE.as_nanos() as u64;
        let req = self.requests[side.index()]
            .as_mut()
            .ok_or_else(|| Error::failed("no request socket"))?;
        loop {
            let links = req.dump()?;
            let settled = self
                .bench
                .ports
                .iter()
                .all(|p| links.get(p).is_none_or(|l| l.oper == l.admin));
            if settled || monotonic_ns() >= deadline {
                return Ok(());
            }
            if !self.stop.sleep(Duration::from_millis(2)) {
                return Err(self.stopped());
            }
        }
    }

    /// One overflow round (daemon only): SIGSTOP the daemon, send `n`
    /// changes back to back, let the kernel settle, check that it dropped
    /// messages on the daemon's socket, SIGCONT, and time how long
    /// STATE_DB takes to match the kernel for every port.
    pub fn overflow_phase(&mut self, n: usize, label: &str) -> Result<PhaseResult, Error> {
        let side = Side::Daemon;
        let s = side.index();
        let pid = self.bench.daemon_pid.ok_or_else(|| {
            Error::Usage("overflow mode needs the daemon's pid (flood attach --pid)".into())
        })?;
        let phase = Arc::new(Phase::new(n, &mut self.cursors[s]));
        let before = self.barrier(Barrier {
            install: None,
            clear: None,
            live_kernel: true,
        })?;
        let drops0 = self.daemon_drops(side);
        let cpu0 = self.cpu(side);
        self.rss_samples.clear();
        self.sample_rss(side);
        let mut suspended = Suspended::stop(pid)?;
        let t_stop = monotonic_ns();
        self.drive_burst(side, &phase, label, None)?;
        let t_last = monotonic_ns();
        self.wait_kernel_settled(side)?;
        let netlink_drops = match (drops0, self.daemon_drops(side)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        self.drain_seen();
        self.daemon_writes = Some(Vec::new());
        let cpu_cont = self.cpu(side);
        let t_cont = suspended.resume();
        let mut wrong = self.settle(side, self.opts.settle_timeout, 0)?;
        let t_ok = monotonic_ns();
        let mut flapped = false;
        if wrong.is_empty() {
            if !self.stop.sleep(RECOVERY_QUIET) {
                return Err(self.stopped());
            }
            self.drain_seen();
            if !self.compare(side)?.is_empty() {
                flapped = true;
                wrong = self.settle(side, self.opts.settle_timeout, 0)?;
            }
        }
        let t_settled = monotonic_ns();
        let after = self.barrier(Barrier {
            install: None,
            clear: None,
            live_kernel: false,
        })?;
        self.drain_seen();
        let stamps = self.daemon_writes.take().unwrap_or_default();
        let cpu_end = self.cpu(side);
        self.sample_rss(side);
        self.bench.check_daemon()?;
        self.check_threads()?;
        let right = wrong.is_empty() && !flapped;
        let last_write_ns = stamps
            .iter()
            .copied()
            .max()
            .filter(|_| right)
            .map(|w| w.saturating_sub(t_cont));
        let verified_ns = right.then(|| t_ok - t_cont);
        let overflow = Overflow {
            kernel_drops: netlink_drops.unwrap_or(0),
            recovery_ns: match (last_write_ns, verified_ns) {
                (Some(w), Some(v)) => Some(w.min(v)),
                (w, v) => w.or(v),
            },
            last_write_ns,
            verified_ns,
            writes: stamps.len() as u64,
            late_writes: stamps.iter().filter(|&&t| t > t_ok).count() as u64,
            stopped_ns: t_cont - t_stop,
            recovery_cpu_ns: match (cpu_cont, cpu_end) {
                (Some(a), Some(b)) => Some(b.since(a).exact_ns()),
                _ => None,
            },
            flapped,
        };
        let (b, a) = (before[s], after[s]);
        Ok(PhaseResult {
            side,
            changes: n as u64,
            hist: histogram(),
            lost: 0,
            early: 0,
            coalesced: 0,
            matched_writes: 0,
            other_writes: 0,
            overtaken_reads: 0,
            unsettled: 0,
            counts: a.since(&b),
            wrong,
            drive_ns: t_last - t_stop,
            settle_ns: t_settled - t_cont,
            cpu: match (cpu0, cpu_end) {
                (Some(a), Some(b)) => Some(b.since(a)),
                _ => None,
            },
            memory_kb: self.bench.daemon_pid.and_then(procfs::memory_kb),
            netlink_drops,
            floor_overruns: 0,
            raw: None,
            rss_samples: std::mem::take(&mut self.rss_samples),
            syscalls: None,
            overflow: Some(overflow),
        })
    }

    /// One change at a time: wait until its write is seen and its port has
    /// settled (with veth ports: oper follows admin), then pause.
    fn drive_latency(&mut self, side: Side, phase: &Phase, label: &str) -> Result<u64, Error> {
        let s = side.index();
        let mut unsettled = 0;
        let n = phase.changes.len();
        for i in 0..n {
            self.send(side, phase, i)?;
            let c = phase.changes[i];
            let want = (c.admin, c.admin, c.mtu);
            let deadline = monotonic_ns() + CHANGE_TIMEOUT.as_nanos() as u64;
            loop {
                self.drain_seen();
                // Veth ports (ours always; the daemon's with `run`): oper
                // follows admin, so wait for that write too.
                let settled = if side == Side::Floor || self.bench.veth_ports {
                    self.last_seen[s][c.port as usize] == Some(want)
                } else {
                    true
                };
                if phase.done(i) && settled {
                    break;
                }
                if !self.wait_seen(deadline)? {
                    // A writer that died would cost the timeout per change.
                    self.bench.check_daemon()?;
                    self.check_threads()?;
                    unsettled += 1;
                    break;
                }
            }
            self.progress
                .show(|| format!("{label}: {}/{n} changes", i + 1));
            if !self.opts.gap.is_zero() && !self.stop.sleep(self.opts.gap) {
                return Err(self.stopped());
            }
        }
        Ok(unsettled)
    }

    /// Back to back (`rate` None), or paced at `rate` changes/s.
    fn drive_burst(
        &mut self,
        side: Side,
        phase: &Phase,
        label: &str,
        rate: Option<f64>,
    ) -> Result<u64, Error> {
        let n = phase.changes.len();
        let t0 = monotonic_ns();
        let period_ns = rate.map(|r| 1e9 / r);
        let mut next_rss = t0 + RSS_EVERY.as_nanos() as u64;
        let mut rss = self.rss_samples.last().map(|s| s.1);
        for i in 0..n {
            if let Some(p) = period_ns {
                let due = t0 + (i as f64 * p) as u64;
                let now = monotonic_ns();
                if due > now && !self.stop.sleep(Duration::from_nanos(due - now)) {
                    return Err(self.stopped());
                }
            }
            self.send(side, phase, i)?;
            if i % 512 == 0 {
                if self.stop.requested() {
                    return Err(self.stopped());
                }
                self.drain_seen();
                let now = monotonic_ns();
                if now >= next_rss {
                    next_rss = now + RSS_EVERY.as_nanos() as u64;
                    rss = self.sample_rss(side).or(rss);
                }
                self.progress.show(|| match rss {
                    Some(kb) => format!("{label}: {}/{n} changes, daemon RSS {kb} kB", i + 1),
                    None => format!("{label}: {}/{n} changes", i + 1),
                });
            }
        }
        Ok(0)
    }

    /// Attach: put every port's admin state and MTU back as they were.
    pub fn restore(&mut self) -> Result<(), Error> {
        let Some(req) = self.requests[Side::Daemon.index()].as_mut() else {
            return Ok(());
        };
        for (name, l) in self.bench.ports.iter().zip(&self.initial) {
            req.set_mtu(l.ifindex, l.mtu, name)?;
            req.set_admin(l.ifindex, l.admin, name)?;
        }
        Ok(())
    }

    /// Stop the threads and collect their results.
    pub fn finish(self) -> Result<(), Error> {
        self.stop.trigger();
        drop(self.floor);
        self.watcher.finish()
    }
}

/// Which floor a mode is measured against: `blocking` (one synchronous
/// write per message) for latency, `batching` for burst and rate.
pub fn floor_kind(mode: Mode) -> &'static str {
    match mode {
        Mode::Latency | Mode::Overflow => "blocking",
        Mode::Burst | Mode::Rate => "batching",
    }
}
