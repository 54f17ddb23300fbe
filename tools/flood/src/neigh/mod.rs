//! `flood neigh`: real kernel neighbors against neighsyncd (issue 13).
//! See `flood neigh --help` and PERF.md.
//!
//! The data flow: [`plan`] says which neighbors (address, port, MAC per
//! version); [`setup`] makes the namespaces, ports and daemon and loads
//! neighbors with `ip -batch`; the kernel tells the daemon (and the
//! [`floor`]) and flood's [`watch`]er; the watcher reads back each staging
//! hash Redis notifies; the modes ([`initial`], [`latency`], [`burst`])
//! match what was read to what was asked; [`table`] compares APPL_DB with
//! `ip -j neigh show` at the end; [`report`] prints and writes it.

pub mod burst;
pub mod cli;
pub mod floor;
pub mod initial;
pub mod latency;
pub mod plan;
pub mod report;
pub mod setup;
pub mod table;
pub mod watch;

use std::time::Duration;

use crossbeam_channel::select;
use syncd::engine::redis::client::Client;
use syncd::engine::sys::monotonic_ns;

use crate::procfs::{self, Cpu};
use crate::progress::Progress;
use crate::signal::Stop;
use crate::watch::Side;
use crate::Error;
use cli::{NeighMode, NeighOptions};
use setup::NeighBench;
use table::Verdict;
use watch::{Note, Watcher, STAGING};

/// How often the pre-run sync compares APPL_DB with the kernel while it
/// waits (attach: flood's neighbors may already be there, unchanged, so
/// no write would come to say so).
const VERIFY_EVERY: Duration = Duration::from_secs(1);

/// Everything one neighbor run holds.
pub struct Run<'a> {
    pub o: &'a NeighOptions,
    pub bench: NeighBench,
    pub stop: &'a Stop,
    pub progress: Progress,
    /// APPL_DB (the daemon's database), for the comparisons.
    check: Client,
    /// The floor's database, once a floor's table is compared.
    floor_check: Option<Client>,
}

impl<'a> Run<'a> {
    fn new(o: &'a NeighOptions, bench: NeighBench, stop: &'a Stop) -> Result<Run<'a>, Error> {
        let check = Client::connect_db(&bench.address, bench.appl_db, Duration::from_secs(10))
            .map_err(|e| Error::failed(format!("connecting to Redis at {}: {e}", bench.address)))?;
        Ok(Run {
            o,
            bench,
            stop,
            progress: Progress::new(o.progress),
            check,
            floor_check: None,
        })
    }

    /// APPL_DB beside the kernel, for the daemon's namespace. Redis first,
    /// then the kernel: whatever changes in between shows as wrong and is
    /// looked at again.
    pub fn verify(&mut self) -> Result<Verdict, Error> {
        self.verify_side(Side::Daemon)
    }

    /// The same for `side`'s writer: its database beside its namespace.
    pub fn verify_side(&mut self, side: Side) -> Result<Verdict, Error> {
        let client = match side {
            Side::Daemon => &mut self.check,
            Side::Floor => match &mut self.floor_check {
                Some(c) => c,
                None => {
                    let (addr, db) = (&self.bench.address, self.bench.floor_db);
                    let c = Client::connect_db(addr, db, Duration::from_secs(10)).map_err(|e| {
                        Error::failed(format!("connecting to Redis at {addr}: {e}"))
                    })?;
                    self.floor_check.insert(c)
                }
            },
        };
        let appl = table::appl_table(client, STAGING)?;
        let kernel = table::kernel_table(self.bench.netns(side))?;
        Ok(table::compare(&kernel, &appl))
    }

    /// Compare until nothing is wrong or `deadline_ns` passes; the last
    /// verdict.
    pub fn verify_until(&mut self, deadline_ns: u64) -> Result<Verdict, Error> {
        loop {
            let v = self.verify()?;
            if v.wrong() == 0 || monotonic_ns() >= deadline_ns {
                return Ok(v);
            }
            self.bench.check_daemon()?;
            if !self.stop.sleep(Duration::from_millis(200)) {
                return Err(Error::Interrupted);
            }
        }
    }

    /// The daemon's CPU time so far, when its pid is known.
    pub fn daemon_cpu(&self) -> Option<Cpu> {
        self.bench.daemon_pid.and_then(procfs::process_cpu)
    }

    /// The daemon's VmRSS and VmHWM, in kB.
    pub fn daemon_memory(&self) -> Option<(u64, u64)> {
        self.bench.daemon_pid.and_then(procfs::memory_kb)
    }

    pub fn daemon_drops(&self) -> Option<u64> {
        self.bench.daemon_pid.and_then(procfs::netlink_drops)
    }
}

/// Which MAC each of flood's neighbors should have in one writer's
/// APPL_DB, and which it has as the watcher last read it.
#[derive(Debug, Default)]
pub struct Expect {
    want: Vec<Option<[u8; 6]>>,
    have: Vec<Option<[u8; 6]>>,
    right: usize,
    total: usize,
}

impl Expect {
    fn slot(&mut self, i: u32) -> usize {
        let i = i as usize;
        if i >= self.want.len() {
            self.want.resize(i + 1, None);
            self.have.resize(i + 1, None);
        }
        i
    }

    /// Neighbor `i` should end with `mac`.
    pub fn want(&mut self, i: u32, mac: [u8; 6]) {
        let i = self.slot(i);
        let was_right = self.want[i].is_some() && self.want[i] == self.have[i];
        if self.want[i].is_none() {
            self.total += 1;
        }
        self.want[i] = Some(mac);
        let now_right = self.have[i] == Some(mac);
        self.right = self.right + usize::from(now_right) - usize::from(was_right);
    }

    /// The watcher read `mac` for neighbor `i`.
    pub fn seen(&mut self, i: u32, mac: Option<[u8; 6]>) {
        let i = self.slot(i);
        let was_right = self.want[i].is_some() && self.want[i] == self.have[i];
        self.have[i] = mac;
        let now_right = self.want[i].is_some() && self.want[i] == mac;
        self.right = self.right + usize::from(now_right) - usize::from(was_right);
    }

    pub fn complete(&self) -> bool {
        self.right == self.total
    }

    pub fn right(&self) -> usize {
        self.right
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// How a wait for APPL_DB to match ended.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// When it first matched (the notification of the write that made the
    /// read-backs complete, confirmed by a comparison); `None`: never
    /// before the deadline.
    pub at_ns: Option<u64>,
    /// The notification of the last write read back.
    pub last_write_ns: Option<u64>,
    /// The daemon's CPU time when the read-backs were complete (at the
    /// deadline when they never were).
    pub cpu: Option<Cpu>,
    /// Writes of flood's neighbors read back while waiting.
    pub reads: u64,
    pub verdict: Verdict,
}

/// Whose writes [`settle`] waits for: the daemon's (its pid is the
/// bench's) or the floor's process `pid`.
#[derive(Debug, Clone, Copy)]
pub struct WhoseWrites {
    pub side: Side,
    pub pid: Option<i32>,
}

impl WhoseWrites {
    pub const DAEMON: WhoseWrites = WhoseWrites {
        side: Side::Daemon,
        pid: None,
    };

    /// The writer's process: the bench's daemon, or the floor's `pid`.
    pub fn process(&self, run: &Run<'_>) -> Option<i32> {
        match self.side {
            Side::Daemon => run.bench.daemon_pid,
            Side::Floor => self.pid,
        }
    }
}

/// Wait until `who`'s database holds what `expect` wants: every neighbor
/// read back with its MAC, then confirmed by a comparison with the kernel
/// ([`Run::verify_side`]); or until `deadline_ns`, then compared once
/// more. `periodic`: also compare every [`VERIFY_EVERY`] (not while
/// measuring: a comparison reads the whole table from Redis).
pub fn settle(
    run: &mut Run<'_>,
    watcher: &mut Watcher,
    expect: &mut Expect,
    deadline_ns: u64,
    periodic: bool,
    label: &str,
    who: WhoseWrites,
) -> Result<Settled, Error> {
    let side = who.side;
    let cpu = |run: &Run<'_>| who.process(run).and_then(procfs::process_cpu);
    let mut s = Settled::default();
    let mut verified = false;
    let mut complete_at = None;
    let mut next_verify = monotonic_ns() + VERIFY_EVERY.as_nanos() as u64;
    loop {
        if expect.complete() && !verified {
            verified = true;
            s.cpu = s.cpu.or_else(|| cpu(run));
            s.verdict = run.verify_side(side)?;
            if s.verdict.wrong() == 0 {
                s.at_ns = complete_at.or(Some(monotonic_ns()));
                return Ok(s);
            }
        }
        let now = monotonic_ns();
        if periodic && now >= next_verify {
            next_verify = now + VERIFY_EVERY.as_nanos() as u64;
            s.verdict = run.verify_side(side)?;
            if s.verdict.wrong() == 0 {
                s.cpu = s.cpu.or_else(|| cpu(run));
                s.at_ns = Some(monotonic_ns());
                return Ok(s);
            }
        }
        if now >= deadline_ns {
            // Never complete (a daemon that lost messages): its CPU up to
            // the deadline, idle time costing it nothing.
            s.cpu = s.cpu.or_else(|| cpu(run));
            s.verdict = run.verify_side(side)?;
            if s.verdict.wrong() == 0 {
                s.at_ns = Some(monotonic_ns());
            }
            return Ok(s);
        }
        run.bench.check_daemon()?;
        watcher.check()?;
        let wait = Duration::from_nanos((deadline_ns - now).min(200_000_000));
        let note = select! {
            recv(watcher.notes) -> n => n.ok(),
            recv(run.stop.channel()) -> _ => return Err(stopped(run, watcher)),
            default(wait) => None,
        };
        // Take everything queued before looking again.
        for note in note.into_iter().chain(watcher.notes.try_iter()) {
            if let Note::Seen {
                side: seen,
                index,
                mac,
                at_ns,
            } = note
            {
                if seen != side {
                    continue;
                }
                let before = expect.complete();
                expect.seen(index, mac);
                s.reads += 1;
                s.last_write_ns = Some(at_ns);
                // Newly complete, or complete again after a comparison
                // found something wrong: this write may be the last one.
                if expect.complete() && (!before || verified) {
                    complete_at = Some(at_ns);
                    s.cpu = cpu(run);
                    verified = false;
                }
            }
        }
        run.progress.show(|| {
            format!(
                "{label}: {}/{} neighbors right in APPL_DB",
                expect.right(),
                expect.total()
            )
        });
    }
}

/// Why a wait ended with a stop: a signal, or the watcher's failure.
fn stopped(run: &Run<'_>, watcher: &mut Watcher) -> Error {
    if run.stop.signalled() {
        return Error::Interrupted;
    }
    watcher.check().err().unwrap_or(Error::Interrupted)
}

/// A base MAC version for the run: from the clock, so that neighbors left
/// by an earlier run in a namespace flood attaches to are changed (and
/// written again) rather than replaced by the same MAC, which makes no
/// kernel event.
pub fn base_version() -> u16 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs % 30_000) as u16 * 2 + 1
}

/// `flood neigh …`: the run, its summary and JSON; the number of wrong
/// APPL_DB entries at the end.
pub fn measure(o: &NeighOptions) -> Result<u64, Error> {
    crate::check_output("--json", o.json.as_deref())?;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::failed(
            "flood needs root: it creates network namespaces and neighbors",
        ));
    }
    let stop = crate::signal::install().map_err(|e| Error::failed(format!("signals: {e}")))?;
    let bench = if o.attach {
        NeighBench::attach(o)?
    } else {
        NeighBench::run(o)?
    };
    let mut run = Run::new(o, bench, &stop)?;
    let mut doc = match o.mode {
        NeighMode::Initial { neighbors } => initial::measure(&mut run, neighbors)?,
        NeighMode::Latency => latency::measure(&mut run)?,
        NeighMode::Burst { base, new } => burst::measure(&mut run, base, new)?,
    };
    run.progress.clear();
    let totals = run.bench.stop_daemon();
    report::finish(&mut doc, o, &run.bench.description, &totals);
    print!("{}", report::summary(&doc));
    let wrong = doc["wrong_entries"].as_u64().unwrap_or(0);
    if let Some(path) = &o.json {
        crate::provenance::stamp(&mut doc);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::failed(format!("encoding JSON: {e}")))?;
        crate::write_file("--json", path, &(text + "\n"))?;
    }
    Ok(wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_counts_neighbors_right_whatever_the_order() {
        let mut e = Expect::default();
        e.want(0, [1; 6]);
        e.want(5, [2; 6]);
        assert_eq!((e.right(), e.total()), (0, 2));
        e.seen(5, Some([2; 6]));
        e.seen(7, Some([9; 6]));
        assert_eq!(e.right(), 1);
        e.seen(0, Some([1; 6]));
        assert!(e.complete());
        // A later read showing another MAC undoes it; wanting it fixes it.
        e.seen(0, Some([3; 6]));
        assert!(!e.complete());
        e.want(0, [3; 6]);
        assert!(e.complete());
        // Seen before wanted (a write read back before the change was
        // planned) still counts once wanted.
        e.seen(9, Some([4; 6]));
        e.want(9, [4; 6]);
        assert!(e.complete());
        assert_eq!(e.total(), 3);
        e.seen(9, None);
        assert_eq!(e.right(), 2);
    }
}
