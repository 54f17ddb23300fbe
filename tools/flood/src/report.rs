//! Totals per mode and writer, the human summary, and the JSON document.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::cli::{Mode, ModePlan};
use crate::drive::{histogram, PhaseResult};
use crate::procfs::Cpu;
use crate::watch::{Counts, Side};

/// RSS samples in the first seconds of a mode are warm-up.
const RSS_WARMUP_NS: u64 = 10_000_000_000;

/// Every phase of one mode.
pub struct ModeResult {
    pub plan: ModePlan,
    pub phases: Vec<PhaseResult>,
}

/// One writer's phases of one mode, added up.
pub struct Totals {
    pub phases: usize,
    pub changes: u64,
    pub hist: Histogram<u64>,
    pub lost: u64,
    pub early: u64,
    pub coalesced: u64,
    pub matched_writes: u64,
    pub other_writes: u64,
    pub overtaken_reads: u64,
    pub unsettled: u64,
    pub counts: Counts,
    pub wrong_final_states: u64,
    /// "round N: <port and what is wrong>".
    pub wrong_ports: Vec<String>,
    pub drive_ns: u64,
    pub settle_ns_max: u64,
    pub cpu: Option<Cpu>,
    pub memory_kb: Option<(u64, u64)>,
    pub netlink_drops: Option<u64>,
    pub floor_overruns: u64,
    /// System calls (`--syscalls`), over every phase.
    pub syscalls: Option<u64>,
}

fn add_opt<T>(a: Option<T>, b: Option<T>, f: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        _ => None,
    }
}

impl Totals {
    /// The phases of `side`; `None` if it had none.
    pub fn of(m: &ModeResult, side: Side) -> Option<Totals> {
        let mut t: Option<Totals> = None;
        for (round, p) in m.phases.iter().filter(|p| p.side == side).enumerate() {
            let tt = t.get_or_insert_with(|| Totals {
                phases: 0,
                changes: 0,
                hist: histogram(),
                lost: 0,
                early: 0,
                coalesced: 0,
                matched_writes: 0,
                other_writes: 0,
                overtaken_reads: 0,
                unsettled: 0,
                counts: Counts::default(),
                wrong_final_states: 0,
                wrong_ports: Vec::new(),
                drive_ns: 0,
                settle_ns_max: 0,
                cpu: Some(Cpu::default()),
                memory_kb: None,
                netlink_drops: Some(0),
                floor_overruns: 0,
                syscalls: Some(0),
            });
            tt.phases += 1;
            tt.changes += p.changes;
            // Same bounds and precision: adding cannot fail.
            let _ = tt.hist.add(&p.hist);
            tt.lost += p.lost;
            tt.early += p.early;
            tt.coalesced += p.coalesced;
            tt.matched_writes += p.matched_writes;
            tt.other_writes += p.other_writes;
            tt.overtaken_reads += p.overtaken_reads;
            tt.unsettled += p.unsettled;
            tt.counts.kernel_events += p.counts.kernel_events;
            tt.counts.kernel_port_events += p.counts.kernel_port_events;
            tt.counts.listener_overruns += p.counts.listener_overruns;
            tt.counts.redis_writes += p.counts.redis_writes;
            tt.counts.redis_deletes += p.counts.redis_deletes;
            tt.wrong_final_states += p.wrong.len() as u64;
            tt.wrong_ports
                .extend(p.wrong.iter().map(|w| format!("round {}: {w}", round + 1)));
            tt.drive_ns += p.drive_ns;
            tt.settle_ns_max = tt.settle_ns_max.max(p.settle_ns);
            tt.cpu = add_opt(tt.cpu, p.cpu, |a, b| Cpu {
                stat_ns: a.stat_ns + b.stat_ns,
                sched_ns: a.sched_ns + b.sched_ns,
                slices: a.slices + b.slices,
            });
            tt.memory_kb = p.memory_kb.or(tt.memory_kb);
            tt.netlink_drops = add_opt(tt.netlink_drops, p.netlink_drops, |a, b| a + b);
            tt.floor_overruns += p.floor_overruns;
            tt.syscalls = add_opt(tt.syscalls, p.syscalls, |a, b| a + b);
        }
        t
    }

    /// System calls per kernel event (`--syscalls`).
    pub fn syscalls_per_event(&self) -> Option<f64> {
        let n = self.counts.kernel_events;
        (n > 0).then(|| self.syscalls.map(|c| c as f64 / n as f64))?
    }

    /// Changes per second while sending.
    pub fn change_rate(&self) -> f64 {
        if self.drive_ns == 0 {
            0.0
        } else {
            self.changes as f64 * 1e9 / self.drive_ns as f64
        }
    }

    /// Times the writer was put on a CPU, per kernel event.
    pub fn wakeups_per_event(&self) -> Option<f64> {
        let n = self.counts.kernel_events;
        (n > 0).then(|| self.cpu.map(|c| c.slices as f64 / n as f64))?
    }

    /// CPU µs per kernel event: (exact, by `utime + stime`). Exact is the
    /// scheduler's run time (`schedstat`); `stat` counts 10 ms ticks and
    /// reads 0 for short phases.
    pub fn cpu_per_event(&self) -> Option<(f64, f64)> {
        let cpu = self.cpu?;
        let n = self.counts.kernel_events;
        if n == 0 {
            return None;
        }
        Some((
            cpu.exact_ns() as f64 / 1e3 / n as f64,
            cpu.stat_ns as f64 / 1e3 / n as f64,
        ))
    }
}

/// The daemon's RSS over one mode's daemon phases.
pub struct RssSummary {
    pub start_kb: u64,
    /// The first sample after [`RSS_WARMUP_NS`] (the start when the mode
    /// is too short to have a warm-up).
    pub warm_kb: u64,
    pub end_kb: u64,
    pub max_kb: u64,
    /// End minus warm.
    pub growth_kb: i64,
    /// (seconds since the first sample, kB).
    pub samples: Vec<(f64, u64)>,
}

impl RssSummary {
    pub fn of(m: &ModeResult) -> Option<RssSummary> {
        let all: Vec<(u64, u64)> = m
            .phases
            .iter()
            .filter(|p| p.side == Side::Daemon)
            .flat_map(|p| p.rss_samples.iter().copied())
            .collect();
        let &(t0, start_kb) = all.first()?;
        let &(t_end, end_kb) = all.last()?;
        let warm_kb = if t_end >= t0 + 2 * RSS_WARMUP_NS {
            all.iter()
                .find(|s| s.0 >= t0 + RSS_WARMUP_NS)
                .map_or(start_kb, |s| s.1)
        } else {
            start_kb
        };
        Some(RssSummary {
            start_kb,
            warm_kb,
            end_kb,
            max_kb: all.iter().map(|s| s.1).max().unwrap_or(0),
            growth_kb: end_kb as i64 - warm_kb as i64,
            samples: all
                .iter()
                .map(|&(t, kb)| (((t - t0) as f64 / 1e8).round() / 10.0, kb))
                .collect(),
        })
    }
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// Recovery times (ms) of the overflow rounds that overflowed.
fn recoveries(m: &ModeResult) -> (Vec<f64>, Vec<f64>) {
    let mut rec = Vec::new();
    let mut ver = Vec::new();
    for p in &m.phases {
        if let Some(o) = p.overflow.filter(|o| o.kernel_drops > 0) {
            if let Some(r) = o.recovery_ns {
                rec.push(ms(r));
            }
            if let Some(v) = o.verified_ns {
                ver.push(ms(v));
            }
        }
    }
    (rec, ver)
}

/// The percentiles reported, as (name, quantile).
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

/// p50 … max in µs.
pub fn figures(h: &Histogram<u64>) -> Vec<(&'static str, f64)> {
    let mut v: Vec<(&str, f64)> = PERCENTILES
        .iter()
        .map(|&(n, q)| (n, us(h.value_at_quantile(q))))
        .collect();
    v.push(("max", us(h.max())));
    v
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    for (n, v) in figures(h) {
        m.insert(n.into(), json!(v));
    }
    m.insert("mean".into(), json!((h.mean() / 100.0).round() / 10.0));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b * 100.0).round() / 100.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn overflow_json(m: &ModeResult, d: &Totals) -> Value {
    let rounds: Vec<Value> = m
        .phases
        .iter()
        .filter_map(|p| {
            let o = p.overflow?;
            Some(json!({
                "changes": p.changes,
                "kernel_events": p.counts.kernel_events,
                "kernel_drops": o.kernel_drops,
                "stopped_ms": ms(o.stopped_ns),
                "recovery_ms": o.recovery_ns.map(ms),
                "last_write_ms": o.last_write_ns.map(ms),
                "verified_ms": o.verified_ns.map(ms),
                "writes": o.writes,
                "late_writes": o.late_writes,
                "recovery_cpu_ms": o.recovery_cpu_ns.map(ms),
                "flapped": o.flapped,
                "wrong_final_states": p.wrong.len(),
            }))
        })
        .collect();
    let (mut rec, mut ver) = recoveries(m);
    json!({
        "rounds": m.plan.rounds,
        "changes": d.changes,
        "kernel_events": d.counts.kernel_events,
        "redis_writes": d.counts.redis_writes,
        "wrong_final_states": d.wrong_final_states,
        "wrong_ports": d.wrong_ports,
        "rounds_overflowed": m
            .phases
            .iter()
            .filter(|p| p.overflow.is_some_and(|o| o.kernel_drops > 0))
            .count(),
        "recovery_ms_median": median(&mut rec),
        "recovery_ms_max": rec.iter().copied().reduce(f64::max),
        "verified_ms_median": median(&mut ver),
        "daemon_netlink_drops": d.netlink_drops,
        "listener_overruns": d.counts.listener_overruns,
        "daemon_rss_kb": d.memory_kb.map(|m| m.0),
        "round_results": rounds,
    })
}

fn rss_json(m: &ModeResult) -> Value {
    match RssSummary::of(m) {
        Some(r) => json!({
            "start_kb": r.start_kb,
            "warm_kb": r.warm_kb,
            "end_kb": r.end_kb,
            "max_kb": r.max_kb,
            "growth_kb": r.growth_kb,
            "samples": r.samples.iter().map(|&(t, kb)| json!([t, kb])).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    }
}

fn mode_json(m: &ModeResult) -> Value {
    let Some(d) = Totals::of(m, Side::Daemon) else {
        return Value::Null;
    };
    if m.plan.mode == Mode::Overflow {
        return overflow_json(m, &d);
    }
    let f = Totals::of(m, Side::Floor);
    let (cpu_exact, cpu_stat) = match d.cpu_per_event() {
        Some((a, b)) => (json!(round2(a)), json!(round2(b))),
        None => (Value::Null, Value::Null),
    };
    let cpu_per_write = match (d.cpu, d.counts.redis_writes) {
        (Some(c), n) if n > 0 => json!(round2(c.exact_ns() as f64 / 1e3 / n as f64)),
        _ => Value::Null,
    };
    let mut ratios = Map::new();
    if let Some(f) = &f {
        for ((n, a), (_, b)) in figures(&d.hist).into_iter().zip(figures(&f.hist)) {
            ratios.insert(n.into(), json!(ratio(a, b)));
        }
    }
    let floor = f.as_ref().map(|f| {
        let (a, b) = f.cpu_per_event().unwrap_or((0.0, 0.0));
        json!({
            "kind": crate::drive::floor_kind(m.plan.mode),
            "busy": m.plan.floor_busy,
            "changes": f.changes,
            "kernel_events": f.counts.kernel_events,
            "redis_writes": f.counts.redis_writes,
            "wrong_final_states": f.wrong_final_states,
            "lost_changes": f.lost,
            "coalesced_changes": f.coalesced,
            "early_writes": f.early,
            "overtaken_reads": f.overtaken_reads,
            "overruns": f.floor_overruns,
            "cpu_us_per_event": round2(a),
            "cpu_us_per_event_stat": round2(b),
            "wakeups_per_event": f.wakeups_per_event().map(round2),
            "change_rate_per_s": f.change_rate().round(),
            "settle_ms_max": round2(f.settle_ns_max as f64 / 1e6),
            "syscalls": f.syscalls,
            "syscalls_per_event": f.syscalls_per_event().map(round2),
        })
    });
    json!({
        "rounds": m.plan.rounds,
        "changes": d.changes,
        "latency_us": latency_json(&d.hist),
        "floor_latency_us": f.as_ref().map(|f| latency_json(&f.hist)),
        "ratio_to_floor": if ratios.is_empty() { Value::Null } else { Value::Object(ratios) },
        "kernel_events": d.counts.kernel_events,
        "kernel_port_events": d.counts.kernel_port_events,
        "redis_writes": d.counts.redis_writes,
        "redis_deletes": d.counts.redis_deletes,
        "wrong_final_states": d.wrong_final_states,
        "wrong_ports": d.wrong_ports,
        "lost_changes": d.lost,
        "coalesced_changes": d.coalesced,
        "early_writes": d.early,
        "matched_writes": d.matched_writes,
        "other_writes": d.other_writes,
        "overtaken_reads": d.overtaken_reads,
        "unsettled_changes": d.unsettled,
        "change_rate_per_s": d.change_rate().round(),
        "settle_ms_max": round2(d.settle_ns_max as f64 / 1e6),
        "daemon_cpu_us_per_event": cpu_exact,
        "daemon_cpu_us_per_event_stat": cpu_stat,
        "daemon_cpu_us_per_write": cpu_per_write,
        "daemon_wakeups_per_event": d.wakeups_per_event().map(round2),
        "daemon_rss_kb": d.memory_kb.map(|m| m.0),
        "daemon_rss_peak_kb": d.memory_kb.map(|m| m.1),
        "daemon_netlink_drops": d.netlink_drops,
        "listener_overruns": d.counts.listener_overruns,
        "daemon_syscalls": d.syscalls,
        "daemon_syscalls_per_event": d.syscalls_per_event().map(round2),
        "daemon_rss": if m.plan.mode == Mode::Latency { Value::Null } else { rss_json(m) },
        "floor": floor,
    })
}

/// Run-wide facts for the JSON document.
pub struct RunInfo<'a> {
    pub argv: &'a [String],
    pub setup: &'a str,
    pub ports: usize,
    /// The daemon's `totals:` counters at exit (`run`).
    pub daemon_totals: &'a [(String, u64)],
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The JSON document (see `--help`).
pub fn json_document(results: &[ModeResult], info: &RunInfo<'_>) -> Value {
    let main = results
        .iter()
        .find(|m| m.plan.mode == Mode::Latency)
        .or(results.iter().find(|m| m.plan.mode != Mode::Overflow));
    let mut sums = (0u64, 0u64, 0u64, 0u64);
    let mut cpu = (0u64, 0u64, true);
    let mut rss: Option<u64> = None;
    let mut modes = Map::new();
    for m in results {
        if m.plan.mode == Mode::Overflow {
            // Stopped on purpose: its figures are its own, not the sums',
            // except a wrong final state, which is wrong whatever the mode.
            if let Some(d) = Totals::of(m, Side::Daemon) {
                sums.3 += d.wrong_final_states;
            }
            modes.insert(m.plan.mode.name().into(), mode_json(m));
            continue;
        }
        if let Some(d) = Totals::of(m, Side::Daemon) {
            sums.0 += d.changes;
            sums.1 += d.counts.kernel_events;
            sums.2 += d.counts.redis_writes;
            sums.3 += d.wrong_final_states;
            match d.cpu {
                Some(c) => cpu.0 += c.exact_ns(),
                None => cpu.2 = false,
            }
            cpu.1 += d.counts.kernel_events;
            if let Some((r, _)) = d.memory_kb {
                rss = Some(rss.unwrap_or(0).max(r));
            }
        }
        modes.insert(m.plan.mode.name().into(), mode_json(m));
    }
    let (lat, floor_lat) = match main {
        Some(m) => (
            Totals::of(m, Side::Daemon)
                .map(|t| latency_json(&t.hist))
                .unwrap_or(Value::Null),
            Totals::of(m, Side::Floor)
                .map(|t| latency_json(&t.hist))
                .unwrap_or(Value::Null),
        ),
        None => (Value::Null, Value::Null),
    };
    let cpu_per_event = (cpu.2 && cpu.1 > 0).then(|| round2(cpu.0 as f64 / 1e3 / cpu.1 as f64));
    json!({
        "tool": "flood",
        "version": env!("CARGO_PKG_VERSION"),
        "command": info.argv.join(" "),
        "setup": info.setup,
        "ports": info.ports,
        "kernel": kernel_release(),
        "latency_from": main.map(|m| m.plan.mode.name()),
        "latency_us": lat,
        "floor_latency_us": floor_lat,
        "changes": sums.0,
        "kernel_events": sums.1,
        "redis_writes": sums.2,
        "wrong_final_states": sums.3,
        "daemon_cpu_us_per_event": cpu_per_event,
        "daemon_rss_kb": rss,
        "daemon_totals": if info.daemon_totals.is_empty() {
            Value::Null
        } else {
            Value::Object(
                info.daemon_totals
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            )
        },
        "modes": modes,
    })
}

/// A headline figure of the summary. Figures only: the project's own
/// targets are judged in PERF.md, not by a tool others run.
fn figure(what: String) -> String {
    format!("  {what}")
}

fn totals_line(totals: &[(String, u64)], keys: &[&str]) -> Option<String> {
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| totals.iter().find(|(n, _)| n == k))
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The human summary of the overflow mode.
fn overflow_summary(m: &ModeResult, d: &Totals, ports: usize, totals: &[(String, u64)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== overflow: {} changes, {} round(s), {ports} ports, daemon only ==",
        d.changes, m.plan.rounds
    );
    let _ = writeln!(
        s,
        "{:<7}{:>9}{:>9}{:>12}{:>13}{:>15}{:>13}{:>8}{:>6}{:>8}{:>7}",
        "round",
        "events",
        "drops",
        "stopped ms",
        "recovery ms",
        "last write ms",
        "verified ms",
        "writes",
        "late",
        "CPU ms",
        "wrong"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |ns| format!("{:.2}", ms(ns)));
    for (i, p) in m.phases.iter().enumerate() {
        let Some(o) = p.overflow else { continue };
        let _ = writeln!(
            s,
            "{:<7}{:>9}{:>9}{:>12.1}{:>13}{:>15}{:>13}{:>8}{:>6}{:>8}{:>7}{}",
            i + 1,
            p.counts.kernel_events,
            o.kernel_drops,
            ms(o.stopped_ns),
            opt(o.recovery_ns),
            opt(o.last_write_ns),
            opt(o.verified_ns),
            o.writes,
            o.late_writes,
            opt(o.recovery_cpu_ns),
            p.wrong.len(),
            if o.flapped { "  (flapped)" } else { "" }
        );
    }
    let (mut rec, mut ver) = recoveries(m);
    let overflowed = m
        .phases
        .iter()
        .filter(|p| p.overflow.is_some_and(|o| o.kernel_drops > 0))
        .count();
    let _ = writeln!(
        s,
        "recovery: SIGCONT → STATE_DB right for every port, at most: the smaller of last \
         write (SIGCONT → the notification of the daemon's last STATE_DB write, as flood's \
         watcher read it) and verified (SIGCONT → the end of the first comparison of every \
         port that found it right). STATE_DB still matched {} ms later. late: writes \
         notified after that comparison.",
        crate::drive::RECOVERY_QUIET.as_millis()
    );
    if overflowed < m.phases.len() {
        let _ = writeln!(
            s,
            "  {} of {} rounds had no kernel drop: no overflow to recover from (use a smaller \
             --daemon-set netlink.rcvbuf_bytes or a larger --count)",
            m.phases.len() - overflowed,
            m.phases.len()
        );
    }
    let max = rec.iter().copied().reduce(f64::max);
    if let Some(med) = median(&mut rec) {
        let _ = writeln!(
            s,
            "median recovery {med:.2} ms (verified alone {:.2} ms), longest {:.2} ms, over {} \
             rounds that overflowed",
            median(&mut ver).unwrap_or(0.0),
            max.unwrap_or(0.0),
            rec.len()
        );
    }
    if let Some(line) = totals_line(
        totals,
        &[
            "enobufs",
            "resyncs",
            "dump_restarts",
            "truncations",
            "vanished",
        ],
    ) {
        let _ = writeln!(s, "daemon totals at exit (whole run): {line}");
    }
    for w in d.wrong_ports.iter().take(10) {
        let _ = writeln!(s, "  WRONG {w}");
    }
    if overflowed > 0 {
        let all_recovered = rec.len() == overflowed && d.wrong_final_states == 0;
        let worst = max.unwrap_or(f64::INFINITY);
        let _ = writeln!(
            s,
            "{}",
            figure(format!(
                "final state right after resuming, longest over the rounds: {}",
                if all_recovered {
                    format!("{worst:.2} ms")
                } else {
                    "never (some round stayed wrong)".into()
                }
            ))
        );
    }
    s
}

/// The human summary of one mode; `totals`: the daemon's exit counters.
pub fn summary(m: &ModeResult, ports: usize, totals: &[(String, u64)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let Some(d) = Totals::of(m, Side::Daemon) else {
        return s;
    };
    if m.plan.mode == Mode::Overflow {
        return overflow_summary(m, &d, ports, totals);
    }
    let f = Totals::of(m, Side::Floor);
    let _ = writeln!(
        s,
        "\n== {}: {} changes per writer, {} round(s), {ports} ports ==",
        m.plan.mode.name(),
        d.changes,
        m.plan.rounds
    );
    let _ = writeln!(
        s,
        "{:<24}{:>10}{:>10}{:>10}{:>10}{:>10}   µs, kernel ack → STATE_DB write",
        "", "p50", "p90", "p99", "p99.9", "max"
    );
    let row = |name: &str, h: &Histogram<u64>| {
        let mut line = format!("{name:<24}");
        for (_, v) in figures(h) {
            line.push_str(&format!("{v:>10.1}"));
        }
        line
    };
    let _ = writeln!(s, "{}", row("portsyncd", &d.hist));
    if let Some(f) = &f {
        let kind = match m.plan.floor_busy {
            true => format!("busy, {}", crate::drive::floor_kind(m.plan.mode)),
            false => crate::drive::floor_kind(m.plan.mode).to_string(),
        };
        let _ = writeln!(s, "{}", row(&format!("floor ({kind})"), &f.hist));
        let mut line = format!("{:<24}", "ratio");
        for ((_, a), (_, b)) in figures(&d.hist).into_iter().zip(figures(&f.hist)) {
            match ratio(a, b) {
                Some(r) => line.push_str(&format!("{:>9.2}×", r)),
                None => line.push_str(&format!("{:>10}", "-")),
            }
        }
        let _ = writeln!(s, "{line}");
    }
    let describe = |t: &Totals| -> String {
        let mut line = format!(
            "{} changes at {:.0}/s, {} kernel events ({} on ports), {} STATE_DB writes, \
             {} lost, {} coalesced, {} wrong final states",
            t.changes,
            t.change_rate(),
            t.counts.kernel_events,
            t.counts.kernel_port_events,
            t.counts.redis_writes,
            t.lost,
            t.coalesced,
            t.wrong_final_states
        );
        if t.unsettled > 0 {
            line.push_str(&format!(", {} unsettled", t.unsettled));
        }
        if t.counts.listener_overruns > 0 {
            line.push_str(&format!(
                " (our event counter overran {} times: counts are lower bounds)",
                t.counts.listener_overruns
            ));
        }
        line
    };
    let _ = writeln!(s, "portsyncd: {}", describe(&d));
    let mut cost = String::new();
    if let Some((exact, stat)) = d.cpu_per_event() {
        cost.push_str(&format!(
            "CPU {exact:.2} µs per kernel event ({stat:.2} by utime+stime)"
        ));
    }
    if let Some(w) = d.wakeups_per_event() {
        cost.push_str(&format!(", {w:.2} wake-ups per event"));
    }
    if let Some((rss, hwm)) = d.memory_kb {
        cost.push_str(&format!(", RSS {rss} kB (peak {hwm} kB)"));
    }
    if let Some(drops) = d.netlink_drops {
        cost.push_str(&format!(", netlink drops {drops}"));
    }
    if let Some(sc) = d.syscalls_per_event() {
        cost.push_str(&format!(", {sc:.2} syscalls per event"));
    }
    if !cost.is_empty() {
        let _ = writeln!(s, "           {cost}");
    }
    let _ = writeln!(
        s,
        "           settled {:.1} ms after the last ack (longest phase)",
        d.settle_ns_max as f64 / 1e6
    );
    for w in d.wrong_ports.iter().take(10) {
        let _ = writeln!(s, "  WRONG {w}");
    }
    if d.wrong_ports.len() > 10 {
        let _ = writeln!(s, "  … and {} more", d.wrong_ports.len() - 10);
    }
    if let Some(f) = &f {
        let _ = writeln!(s, "floor:     {}", describe(f));
        if let Some((exact, stat)) = f.cpu_per_event() {
            let _ = writeln!(
                s,
                "           CPU {exact:.2} µs per kernel event ({stat:.2} by utime+stime), \
                 {:.2} wake-ups per event, {} overruns{}",
                f.wakeups_per_event().unwrap_or(0.0),
                f.floor_overruns,
                f.syscalls_per_event()
                    .map(|v| format!(", {v:.2} syscalls per event"))
                    .unwrap_or_default()
            );
        }
    }
    if m.plan.mode != Mode::Latency {
        if let Some(r) = RssSummary::of(m) {
            let _ = writeln!(
                s,
                "daemon RSS: start {} kB, after warm-up {} kB, end {} kB, max {} kB; \
                 growth after warm-up {:+} kB",
                r.start_kb, r.warm_kb, r.end_kb, r.max_kb, r.growth_kb
            );
            if m.plan.mode == Mode::Rate {
                let _ = writeln!(
                    s,
                    "{}",
                    figure(format!(
                        "RSS growth after warm-up {:+} kB, {} wrong final states, over {:.0} s",
                        r.growth_kb,
                        d.wrong_final_states,
                        d.drive_ns as f64 / 1e9
                    ))
                );
            }
        }
    }
    // The headline figures of the mode, where it measures them.
    let fig = |t: &Totals, q: f64| t.hist.value_at_quantile(q) as f64;
    match (m.plan.mode, &f) {
        (Mode::Latency, Some(f)) => {
            for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
                if let Some(r) = ratio(fig(&d, q), fig(f, q)) {
                    let _ = writeln!(
                        s,
                        "{}",
                        figure(format!("{name} ratio to the floor {r:.2}×"))
                    );
                }
            }
        }
        (Mode::Burst, _) => {
            let _ = writeln!(
                s,
                "{}",
                figure(format!("wrong final states: {}", d.wrong_final_states))
            );
            if let Some((exact, _)) = d.cpu_per_event() {
                let _ = writeln!(
                    s,
                    "{}",
                    figure(format!("CPU per kernel event: {exact:.2} µs"))
                );
            }
        }
        _ => {}
    }
    s
}

/// `--raw`: one CSV line per change.
pub fn raw_csv(results: &[ModeResult]) -> String {
    use std::fmt::Write;
    let mut s =
        String::from("mode,round,writer,index,port,kind,admin,mtu,ack_ns,write_ns,latency_us\n");
    for m in results {
        let mut rounds = [0u32; 2];
        for p in &m.phases {
            rounds[p.side.index()] += 1;
            let Some(raw) = &p.raw else { continue };
            for (i, c) in raw.iter().enumerate() {
                let latency = if c.done_ns == 0 {
                    String::new()
                } else {
                    format!("{:.1}", c.done_ns.saturating_sub(c.ack_ns) as f64 / 1e3)
                };
                let _ = writeln!(
                    s,
                    "{},{},{},{i},{},{},{},{},{},{},{latency}",
                    m.plan.mode.name(),
                    rounds[p.side.index()],
                    p.side.name(),
                    c.change.port,
                    match c.change.kind {
                        crate::plan::Kind::Admin => "admin",
                        crate::plan::Kind::Mtu => "mtu",
                    },
                    if c.change.admin { "up" } else { "down" },
                    c.change.mtu,
                    c.ack_ns,
                    c.done_ns,
                );
            }
        }
    }
    s
}

/// What landed in STATE_DB for each port, beside the kernel's state:
/// `--show-state`. `state` holds each port's `PORT_TABLE|<port>` fields.
pub fn state_table(
    ports: &[String],
    state: &std::collections::HashMap<String, Vec<(String, String)>>,
    kernel: &std::collections::HashMap<String, crate::kernel::KernelLink>,
) -> String {
    use std::fmt::Write as _;
    let updown = |b: bool| if b { "up" } else { "down" };
    let mut s = String::from(
        "\n== STATE_DB PORT_TABLE after the run, beside the kernel ==\n\
         port           state  oper  admin  mtu    | kernel: oper  admin  mtu\n",
    );
    let mut agree = 0;
    for p in ports {
        let fields = state.get(p).map(Vec::as_slice).unwrap_or(&[]);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("-")
        };
        let k = kernel.get(p);
        let same = match k {
            Some(k) => {
                get("state") == "ok"
                    && get("netdev_oper_status") == updown(k.oper)
                    && get("admin_status") == updown(k.admin)
                    && get("mtu") == k.mtu.to_string()
            }
            None => fields.is_empty(),
        };
        agree += usize::from(same);
        let kernel_part = match k {
            Some(k) => format!("{:<5} {:<6} {}", updown(k.oper), updown(k.admin), k.mtu),
            None => "(no netdev)".to_string(),
        };
        let _ = writeln!(
            s,
            "{p:<14} {:<6} {:<5} {:<6} {:<6} | {:>8}{kernel_part}{}",
            get("state"),
            get("netdev_oper_status"),
            get("admin_status"),
            get("mtu"),
            "",
            if same { "" } else { "   <- differs" }
        );
    }
    let _ = writeln!(s, "{agree} of {} ports agree with the kernel", ports.len());
    s
}
