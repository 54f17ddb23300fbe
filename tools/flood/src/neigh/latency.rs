//! `flood neigh latency`: one neighbor change at a time, daemon and floor
//! in alternating (ABBA) rounds.
//!
//! A change replaces one of the loaded neighbors' MAC with a new one (an
//! acked `RTM_NEWNEIGH` with `NLM_F_REPLACE`, sent by flood itself). It is
//! done at the first staging hash read back with that MAC whose
//! notification came after the request was sent. Latency: flood's own
//! `RTNLGRP_NEIGH` socket reading the kernel's message (woken by the same
//! multicast as the writer's socket) → that notification. Also the ack's
//! time → the notification; the ack is the later stamp of the two: the
//! kernel queues the message before it finishes the request, and the
//! listener (like the writer) often reads it before `sendmsg` returns.

use std::time::Duration;

use crossbeam_channel::select;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use syncd::engine::sys::monotonic_ns;

use crate::drive::histogram;
use crate::floor::{Floor, FloorKind};
use crate::kernel::Requests;
use crate::neigh::plan::{self, next_version};
use crate::neigh::report::{latency_json, ratios};
use crate::neigh::watch::{Counts, Note, Watcher};
use crate::neigh::{base_version, settle, Expect, Run, WhoseWrites};
use crate::procfs::{self, Cpu};
use crate::watch::Side;
use crate::Error;

/// How long one change may take to show before it is counted as
/// unsettled and the run moves on.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Once the write is seen, how much longer to wait for flood's own
/// socket to read the kernel's message (it normally comes first).
const HEARD_GRACE: Duration = Duration::from_millis(100);

/// One writer's phases, added up.
struct Totals {
    changes: u64,
    /// Listener's read → notification.
    hist: Histogram<u64>,
    /// Ack → notification.
    ack_hist: Histogram<u64>,
    unsettled: u64,
    /// Writes notified before flood's socket read the message (latency 0).
    early: u64,
    /// Read-backs showing the new MAC whose notification came before the
    /// request was sent (another write's): ignored.
    stale_reads: u64,
    /// Changes whose message flood's socket never read.
    unheard: u64,
    counts: Counts,
    cpu: Option<Cpu>,
    netlink_drops: Option<u64>,
    floor_overruns: u64,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            changes: 0,
            hist: histogram(),
            ack_hist: histogram(),
            unsettled: 0,
            early: 0,
            stale_reads: 0,
            unheard: 0,
            counts: Counts::default(),
            cpu: Some(Cpu::default()),
            netlink_drops: Some(0),
            floor_overruns: 0,
        }
    }

    fn cpu_us_per_event(&self) -> Option<f64> {
        let n = self.counts.kernel_events;
        let c = self.cpu?;
        (n > 0).then(|| (c.exact_ns() as f64 / 1e3 / n as f64 * 100.0).round() / 100.0)
    }

    fn wakeups_per_event(&self) -> Option<f64> {
        let n = self.counts.kernel_events;
        let c = self.cpu?;
        (n > 0).then(|| (c.slices as f64 / n as f64 * 100.0).round() / 100.0)
    }
}

/// One writer's kernel side: its request socket and its neighbors'
/// current MAC versions.
struct Writer {
    req: Requests,
    versions: Vec<u16>,
    cursor: usize,
    totals: Totals,
}

pub fn measure(run: &mut Run<'_>) -> Result<Value, Error> {
    let o = run.o;
    let k = o.neighbors as u32;
    let v0 = base_version();
    let loaded: Vec<(u32, [u8; 6])> = (0..k).map(|i| (i, plan::mac(i, v0))).collect();
    let sides: Vec<Side> = run.bench.sides().iter().map(|s| s.side).collect();
    let mut watcher = Watcher::start(&run.bench.address, &run.bench.sides(), true, run.stop)?;
    let result = phases(run, &mut watcher, &sides, &loaded, v0);
    run.stop.trigger();
    let finished = watcher.finish();
    let doc = result?;
    finished?;
    Ok(doc)
}

fn phases(
    run: &mut Run<'_>,
    watcher: &mut Watcher,
    sides: &[Side],
    loaded: &[(u32, [u8; 6])],
    v0: u16,
) -> Result<Value, Error> {
    let o = run.o;
    let k = loaded.len();
    for &side in sides {
        run.progress
            .show(|| format!("latency: loading {k} neighbors ({})", side.name()));
        run.bench.load(side, loaded)?;
    }
    let mut floor = match &run.bench.floor_netns {
        Some(ns) => {
            let f = Floor::start(
                FloorKind::Neigh,
                ns,
                &run.bench.address,
                run.bench.floor_db,
                b':',
            )?;
            f.place(o.floor_cpu, o.floor_sched)?;
            Some(f)
        }
        None => None,
    };
    let spawned = if o.attach {
        None
    } else {
        Some(run.bench.start_daemon(o)?)
    };
    let mut expect = Expect::default();
    for &(i, mac) in loaded {
        expect.want(i, mac);
    }
    let t0 = spawned.unwrap_or_else(monotonic_ns);
    let deadline = t0 + o.settle_timeout.as_nanos() as u64;
    let synced = settle(
        run,
        watcher,
        &mut expect,
        deadline,
        true,
        "latency: initial sync",
        WhoseWrites::DAEMON,
    )?;
    if synced.at_ns.is_none() {
        return Err(Error::failed(format!(
            "before any change, APPL_DB does not match the kernel ({} wrong), e.g. {:?}",
            synced.verdict.wrong(),
            synced.verdict.samples
        )));
    }
    let mut writers: Vec<Writer> = Vec::new();
    for &side in sides {
        writers.push(Writer {
            req: Requests::open(run.bench.netns(side))?,
            versions: vec![v0; k],
            cursor: 0,
            totals: Totals::new(),
        });
    }
    let rounds = u64::from(o.rounds);
    for round in 0..rounds {
        let n = o.count / rounds + u64::from(round < o.count % rounds);
        let mut order: Vec<usize> = (0..sides.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for w in order {
            let side = sides[w];
            let label = format!("latency round {}/{rounds} {}", round + 1, side.name());
            let pid = match side {
                Side::Daemon => run.bench.daemon_pid,
                Side::Floor => floor.as_ref().map(Floor::pid),
            };
            phase(run, watcher, &mut writers[w], side, pid, n, &label)?;
            if let Some(f) = floor.as_mut() {
                f.check()?;
                writers[w].totals.floor_overruns = f
                    .shared()
                    .overruns
                    .load(std::sync::atomic::Ordering::Relaxed);
            }
            let t = &writers[w].totals;
            run.progress.note(&format!(
                "{label}: {} changes, p50 {:.1} µs, {} unsettled",
                t.changes,
                t.hist.value_at_quantile(0.5) as f64 / 1e3,
                t.unsettled
            ));
        }
    }
    drop(floor);
    run.progress
        .show(|| "latency: comparing APPL_DB with the kernel".into());
    let verdict = run.verify_until(monotonic_ns() + o.settle_timeout.as_nanos() as u64)?;
    let memory = run.daemon_memory();
    let d = &writers[0].totals;
    let f = writers.get(1).map(|w| &w.totals);
    Ok(json!({
        "mode": "neigh latency",
        "neighbors": k,
        "rounds": o.rounds,
        "gap_us": o.gap.as_micros() as u64,
        "initial_sync_ms": spawned
            .zip(synced.at_ns)
            .map(|(s, a)| (a.saturating_sub(s) as f64 / 1e4).round() / 100.0),
        "changes": d.changes,
        "latency_us": latency_json(&d.hist),
        "floor_latency_us": f.map(|f| latency_json(&f.hist)),
        "ratio_to_floor": f.map(|f| ratios(&d.hist, &f.hist)),
        "ack_latency_us": latency_json(&d.ack_hist),
        "floor_ack_latency_us": f.map(|f| latency_json(&f.ack_hist)),
        "ack_ratio_to_floor": f.map(|f| ratios(&d.ack_hist, &f.ack_hist)),
        "unsettled_changes": d.unsettled,
        "early_writes": d.early,
        "floor_early_writes": f.map(|f| f.early),
        "stale_reads": d.stale_reads,
        "unheard_changes": d.unheard,
        "kernel_events": d.counts.kernel_events,
        "redis_writes": d.counts.redis_writes,
        "listener_overruns": d.counts.listener_overruns,
        "daemon_cpu_us_per_event": d.cpu_us_per_event(),
        "daemon_wakeups_per_event": d.wakeups_per_event(),
        "daemon_netlink_drops": d.netlink_drops,
        "daemon_rss_kb": memory.map(|m| m.0),
        "daemon_rss_peak_kb": memory.map(|m| m.1),
        "floor": f.map(|f| json!({
            "changes": f.changes,
            "unsettled_changes": f.unsettled,
            "kernel_events": f.counts.kernel_events,
            "redis_writes": f.counts.redis_writes,
            "cpu_us_per_event": f.cpu_us_per_event(),
            "wakeups_per_event": f.wakeups_per_event(),
            "overruns": f.floor_overruns,
        })),
        "verify": super::report::verdict_json(&verdict),
        "wrong_entries": verdict.wrong(),
    }))
}

/// `n` changes by `side`, one at a time.
#[allow(clippy::too_many_arguments)]
fn phase(
    run: &mut Run<'_>,
    watcher: &mut Watcher,
    w: &mut Writer,
    side: Side,
    pid: Option<i32>,
    n: u64,
    label: &str,
) -> Result<(), Error> {
    let layout = run.bench.layout;
    let ifindex = run.bench.ifindex[side.index()].clone();
    let before = watcher.barrier(run.stop)?[side.index()];
    // Notes of what came before (the sync, the other writer) are done with.
    while watcher.notes.try_recv().is_ok() {}
    let cpu0 = pid.and_then(procfs::process_cpu);
    let drops0 = pid.and_then(procfs::netlink_drops);
    for c in 0..n {
        let j = w.cursor % w.versions.len();
        w.cursor += 1;
        w.versions[j] = next_version(w.versions[j]);
        let mac = plan::mac(j as u32, w.versions[j]);
        let dst = layout.dst(j as u32);
        let (sent, ack) = w
            .req
            .replace_neigh(ifindex[layout.port_of(j as u32)], dst, &mac)?;
        let (seen, heard, stale) = wait_change(run, watcher, side, j as u32, mac, sent, ack)?;
        let t = &mut w.totals;
        t.changes += 1;
        t.stale_reads += stale;
        match seen {
            Some(at) => {
                // Same bounds as the histograms' creation: cannot fail.
                let _ = t.ack_hist.record(at.saturating_sub(ack).max(1));
                match heard {
                    Some(h) => {
                        if at < h {
                            t.early += 1;
                        }
                        let _ = t.hist.record(at.saturating_sub(h).max(1));
                    }
                    None => t.unheard += 1,
                }
            }
            None => {
                // A writer that died would cost the timeout per change.
                run.bench.check_daemon()?;
                watcher.check()?;
                t.unsettled += 1;
            }
        }
        run.progress
            .show(|| format!("{label}: {}/{n} changes", c + 1));
        if !run.o.gap.is_zero() && !run.stop.sleep(run.o.gap) {
            return Err(Error::Interrupted);
        }
    }
    let after = watcher.barrier(run.stop)?[side.index()];
    let cpu = match (cpu0, pid.and_then(procfs::process_cpu)) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    let drops = match (drops0, pid.and_then(procfs::netlink_drops)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let t = &mut w.totals;
    let c = after.since(&before);
    t.counts.kernel_events += c.kernel_events;
    t.counts.listener_overruns += c.listener_overruns;
    t.counts.redis_writes += c.redis_writes;
    t.cpu = match (t.cpu, cpu) {
        (Some(a), Some(b)) => Some(Cpu {
            stat_ns: a.stat_ns + b.stat_ns,
            sched_ns: a.sched_ns + b.sched_ns,
            slices: a.slices + b.slices,
        }),
        _ => None,
    };
    t.netlink_drops = t.netlink_drops.zip(drops).map(|(a, b)| a + b);
    Ok(())
}

/// Wait for neighbor `j` of `side` to show `mac`: (the notification's
/// time, flood's socket's read of the kernel message, stale reads).
fn wait_change(
    run: &Run<'_>,
    watcher: &Watcher,
    side: Side,
    j: u32,
    mac: [u8; 6],
    sent: u64,
    ack: u64,
) -> Result<(Option<u64>, Option<u64>, u64), Error> {
    let mut deadline = ack + CHANGE_TIMEOUT.as_nanos() as u64;
    let (mut seen, mut heard, mut stale) = (None, None, 0);
    while seen.is_none() || heard.is_none() {
        let left = Duration::from_nanos(deadline.saturating_sub(monotonic_ns()));
        let note = select! {
            recv(watcher.notes) -> n => match n {
                Ok(n) => n,
                Err(_) => return Err(Error::failed("the neighbor watcher stopped")),
            },
            recv(run.stop.channel()) -> _ => return Err(Error::Interrupted),
            default(left) => break,
        };
        match note {
            Note::Seen {
                side: s,
                index,
                mac: m,
                at_ns,
            } if s == side && index == j && m == Some(mac) => {
                if at_ns < sent {
                    stale += 1;
                } else if seen.is_none() {
                    seen = Some(at_ns);
                    deadline = deadline.min(monotonic_ns() + HEARD_GRACE.as_nanos() as u64);
                }
            }
            Note::Heard {
                side: s,
                index,
                mac: m,
                at_ns,
            } if s == side && index == j && m == Some(mac) => {
                heard.get_or_insert(at_ns);
            }
            _ => {}
        }
    }
    Ok((seen, heard, stale))
}
