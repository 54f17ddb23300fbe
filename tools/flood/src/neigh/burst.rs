//! `flood neigh burst BASE NEW`: BASE neighbors loaded and synced, then
//! one unthrottled `ip -batch` of BASE MAC changes and NEW additions
//! (interleaved, all `neigh replace`), timed until APPL_DB holds every
//! neighbor with its final MAC and a comparison with the kernel agrees
//! (or the deadline). Settled is that, not an idle heuristic: the daemon
//! wakes every second by design, and SONiC's C++ one never gets there
//! after it lost messages.
//!
//! Then, after the daemon and never beside it, the batching floor
//! ([`crate::neigh::floor`]) gets the same BASE (loaded in its twin before
//! it starts: it does not dump) and the same batch.

use std::time::Duration;

use serde_json::{json, Value};
use syncd::engine::sys::monotonic_ns;

use crate::floor::{Floor, FloorKind};
use crate::neigh::plan::{self, next_version};
use crate::neigh::watch::{Counts, Watcher};
use crate::neigh::{base_version, settle, Expect, Run, Settled, WhoseWrites};
use crate::procfs::{self, Cpu};
use crate::watch::Side;
use crate::Error;

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

pub fn measure(run: &mut Run<'_>, base: u64, new: u64) -> Result<Value, Error> {
    let sides = run.bench.sides();
    let mut watcher = Watcher::start(&run.bench.address, &sides, false, run.stop)?;
    let result = burst(run, &mut watcher, base, new);
    run.stop.trigger();
    let finished = watcher.finish();
    let doc = result?;
    finished?;
    Ok(doc)
}

fn burst(run: &mut Run<'_>, watcher: &mut Watcher, base: u64, new: u64) -> Result<Value, Error> {
    let o = run.o;
    let v0 = base_version();
    let v1 = next_version(v0);
    let loaded: Vec<(u32, [u8; 6])> = (0..base as u32).map(|i| (i, plan::mac(i, v0))).collect();
    run.progress
        .show(|| format!("burst: loading {base} neighbors with ip -batch"));
    let (_, load) = run.bench.load(Side::Daemon, &loaded)?;
    if run.bench.floor_netns.is_some() {
        run.progress
            .show(|| format!("burst: loading {base} neighbors in the floor's namespace"));
        run.bench.load(Side::Floor, &loaded)?;
    }
    let spawned = if o.attach {
        None
    } else {
        Some(run.bench.start_daemon(o)?)
    };
    let mut expect = Expect::default();
    for &(i, mac) in &loaded {
        expect.want(i, mac);
    }
    let t0 = spawned.unwrap_or_else(monotonic_ns);
    let synced = settle(
        run,
        watcher,
        &mut expect,
        t0 + o.settle_timeout.as_nanos() as u64,
        true,
        "burst: initial sync",
        WhoseWrites::DAEMON,
    )?;
    if synced.at_ns.is_none() {
        return Err(Error::failed(format!(
            "before the burst, APPL_DB does not match the kernel ({} wrong), e.g. {:?}",
            synced.verdict.wrong(),
            synced.verdict.samples
        )));
    }

    // BASE changes and NEW additions, interleaved as bench_neigh.py does.
    let mut changes: Vec<(u32, [u8; 6])> = Vec::with_capacity((base + new) as usize);
    for i in 0..base.max(new) as u32 {
        if u64::from(i) < base {
            changes.push((i, plan::mac(i, v1)));
        }
        if u64::from(i) < new {
            let j = base as u32 + i;
            changes.push((j, plan::mac(j, v1)));
        }
    }
    for &(i, mac) in &changes {
        expect.want(i, mac);
    }
    let Phase {
        start,
        sent,
        settled: s,
        counts,
        cpu,
        drops,
    } = burst_phase(
        run,
        watcher,
        &mut expect,
        &changes,
        WhoseWrites::DAEMON,
        "burst",
    )?;
    let memory = run.daemon_memory();
    let events = counts.kernel_events;
    let per_event = |x: f64| (events > 0).then(|| (x / events as f64 * 100.0).round() / 100.0);
    let floor = match run.bench.floor_netns.clone() {
        Some(ns) => Some(floor_burst(run, watcher, &ns, &changes)?),
        None => None,
    };
    let daemon_cpu_per_event = cpu.and_then(|c| per_event(c.exact_ns() as f64 / 1e3));
    let ratio = daemon_cpu_per_event
        .zip(floor.as_ref().and_then(|f| f["cpu_us_per_event"].as_f64()))
        .filter(|(_, f)| *f > 0.0)
        .map(|(d, f)| (d / f * 100.0).round() / 100.0);
    Ok(json!({
        "mode": "neigh burst",
        "base": base,
        "new": new,
        "changes": changes.len(),
        "kernel_load_ms": ms(load.as_nanos() as u64),
        "initial_sync_ms": spawned.zip(synced.at_ns).map(|(s, a)| ms(a.saturating_sub(s))),
        "send_ms": ms(sent.as_nanos() as u64),
        "send_rate_per_s": (changes.len() as f64 / sent.as_secs_f64().max(1e-9)).round() as u64,
        "settled": s.at_ns.is_some(),
        "settle_ms": s.at_ns.map(|a| ms(a.saturating_sub(start))),
        "last_write_ms": s.last_write_ns.map(|a| ms(a.saturating_sub(start))),
        "kernel_events": events,
        "listener_overruns": counts.listener_overruns,
        "redis_writes": counts.redis_writes,
        "reads_back": counts.reads,
        "daemon_cpu_ms": cpu.map(|c| ms(c.exact_ns())),
        "daemon_cpu_us_per_event": daemon_cpu_per_event,
        "daemon_wakeups_per_event": cpu.and_then(|c| per_event(c.slices as f64)),
        "kernel_drops": drops,
        "daemon_rss_kb": memory.map(|m| m.0),
        "daemon_rss_peak_kb": memory.map(|m| m.1),
        "verify": super::report::verdict_json(&s.verdict),
        "wrong_entries": s.verdict.wrong(),
        "floor": floor,
        "cpu_ratio_to_floor": ratio,
    }))
}

/// The batching floor's burst: `changes` in its twin `ns`, whose BASE
/// neighbors were loaded before it started.
fn floor_burst(
    run: &mut Run<'_>,
    watcher: &mut Watcher,
    ns: &str,
    changes: &[(u32, [u8; 6])],
) -> Result<Value, Error> {
    let o = run.o;
    let b = &run.bench;
    let floor = Floor::start(FloorKind::NeighBatching, ns, &b.address, b.floor_db, b':')?;
    floor.place(o.floor_cpu, o.floor_sched)?;
    let mut expect = Expect::default();
    for &(i, mac) in changes {
        expect.want(i, mac);
    }
    let who = WhoseWrites {
        side: Side::Floor,
        pid: Some(floor.pid()),
    };
    let Phase {
        start,
        settled: s,
        counts,
        cpu,
        drops,
        ..
    } = burst_phase(run, watcher, &mut expect, changes, who, "burst (floor)")?;
    let events = counts.kernel_events;
    Ok(json!({
        "kind": "batching",
        "settled": s.at_ns.is_some(),
        "settle_ms": s.at_ns.map(|a| ms(a.saturating_sub(start))),
        "kernel_events": events,
        "cpu_ms": cpu.map(|c| ms(c.exact_ns())),
        "cpu_us_per_event": cpu
            .filter(|_| events > 0)
            .map(|c| (c.exact_ns() as f64 / 1e3 / events as f64 * 100.0).round() / 100.0),
        "kernel_drops": drops,
        "wrong_entries": s.verdict.wrong(),
        "verify": super::report::verdict_json(&s.verdict),
    }))
}

/// What one writer's burst measured.
struct Phase {
    /// When the batch started (monotonic ns), and how long sending took.
    start: u64,
    sent: Duration,
    settled: Settled,
    /// flood's counts over the burst: kernel events, writes read back.
    counts: Counts,
    /// The writer's CPU time and its netlink sockets' kernel drops over
    /// the burst.
    cpu: Option<Cpu>,
    drops: Option<u64>,
}

/// Send `changes` in one `ip -batch` to `who`'s namespace and wait until
/// its database holds `expect` (which wants them already), or the
/// deadline.
fn burst_phase(
    run: &mut Run<'_>,
    watcher: &mut Watcher,
    expect: &mut Expect,
    changes: &[(u32, [u8; 6])],
    who: WhoseWrites,
    label: &str,
) -> Result<Phase, Error> {
    let pid = who.process(run);
    let before = watcher.barrier(run.stop)?[who.side.index()];
    // Anything read back so far is in `expect` already.
    while watcher.notes.try_recv().is_ok() {}
    let cpu0 = pid.and_then(procfs::process_cpu);
    let drops0 = pid.and_then(procfs::netlink_drops);
    run.progress
        .show(|| format!("{label}: {} neigh replace in one ip -batch", changes.len()));
    let (start, sent) = run.bench.load(who.side, changes)?;
    let deadline = start + run.o.settle_timeout.as_nanos() as u64;
    let settled = settle(run, watcher, expect, deadline, false, label, who)?;
    let drops1 = pid.and_then(procfs::netlink_drops);
    let after = watcher.barrier(run.stop)?[who.side.index()];
    Ok(Phase {
        start,
        sent,
        counts: after.since(&before),
        cpu: cpu0.zip(settled.cpu).map(|(a, b)| b.since(a)),
        drops: drops0.zip(drops1).map(|(a, b)| b.saturating_sub(a)),
        settled,
    })
}
