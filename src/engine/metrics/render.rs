//! The Prometheus text exposition format (version 0.0.4) of everything the
//! daemon counts and measures, and the one-line log summary.
//!
//! Names start `portsyncd_`; times are in seconds; counters end `_total`.
//! Each histogram is `_bucket{le}`/`_sum`/`_count` (exact), plus the gauges
//! `_quantile{quantile="0.5"|"0.99"|"0.999"}` and `_max` read from its
//! HdrHistogram. Histograms and quantiles cover the time since start.

use std::fmt::Write;

use super::http::Status;
use super::series::{Quantiles, Series, Unit};
use super::Counters;

/// What the HTTP endpoint itself counts (owned by the metrics thread).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Responses sent, by [`Status::index`].
    pub responses: [u64; Status::ALL.len()],
    /// Connections closed at their deadline.
    pub timeouts: u64,
}

/// Everything one scrape shows.
pub struct Snapshot<'a> {
    pub counters: &'a Counters,
    pub recv_to_write: &'a Series,
    pub recv_to_reply: &'a Series,
    pub batch_size: &'a Series,
    pub http: &'a HttpStats,
}

/// Nanoseconds written as exact decimal seconds (no float rounding).
struct ExactSeconds(u64);

impl std::fmt::Display for ExactSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// Names of the reactor gauge values (`Counters::reactor`).
const REACTORS: [&str; 2] = ["epoll", "io_uring"];

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    head(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    head(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A counter family with one label.
fn labelled(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    head(out, name, kind, help);
    for (v, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{v}\"}} {n}");
    }
}

/// A bucket bound as Prometheus writes `le`: the shortest float text.
fn bound(unit: Unit, raw: u64) -> f64 {
    unit.export(raw as f64)
}

fn histogram(out: &mut String, name: &str, help: &str, s: &Series) {
    head(out, name, "histogram", help);
    let mut cumulative = s.cumulative();
    for &b in s.bounds {
        let n = cumulative.next().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {n}", bound(s.unit, b));
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {}",
        cumulative.next().unwrap_or(0)
    );
    let _ = writeln!(out, "{name}_sum {}", s.unit.export(s.sum() as f64));
    let _ = writeln!(out, "{name}_count {}", s.count());

    let q = s.since_start();
    let unit = s.unit;
    let qname = format!("{name}_quantile");
    head(
        out,
        &qname,
        "gauge",
        &format!("Quantiles of {name} since start (HdrHistogram, 3 significant digits)."),
    );
    for (label, v) in [("0.5", q.p50), ("0.99", q.p99), ("0.999", q.p999)] {
        let _ = writeln!(
            out,
            "{qname}{{quantile=\"{label}\"}} {}",
            unit.export(v as f64)
        );
    }
    gauge(
        out,
        &format!("{name}_max"),
        &format!("Largest {name} since start (HdrHistogram, 3 significant digits)."),
        unit.export(q.max as f64),
    );
}

/// Render every metric into `out` (cleared first).
pub fn render(out: &mut String, s: &Snapshot<'_>) {
    out.clear();
    let c = s.counters;
    labelled(
        out,
        "counter",
        "portsyncd_netlink_messages_total",
        "Netlink messages received, by type.",
        "type",
        &[
            ("newlink", c.msgs_newlink.get()),
            ("dellink", c.msgs_dellink.get()),
            ("done", c.msgs_done.get()),
            ("error", c.msgs_error.get()),
            ("other", c.msgs_other.get()),
        ],
    );
    counter(
        out,
        "portsyncd_netlink_datagrams_total",
        "Netlink datagrams received.",
        c.datagrams.get(),
    );
    counter(
        out,
        "portsyncd_netlink_malformed_total",
        "Netlink messages that could not be parsed (skipped).",
        c.malformed.get(),
    );
    counter(
        out,
        "portsyncd_netlink_enobufs_total",
        "ENOBUFS from the netlink socket: the kernel dropped events.",
        c.enobufs.get(),
    );
    counter(
        out,
        "portsyncd_netlink_truncations_total",
        "Datagrams larger than the receive ring, read whole into the overflow buffer.",
        c.truncations.get(),
    );
    counter(
        out,
        "portsyncd_netlink_resyncs_total",
        "Link dumps started to recover from an overrun.",
        c.resyncs.get(),
    );
    counter(
        out,
        "portsyncd_netlink_dump_restarts_total",
        "Link dumps redone because they were interrupted or overlapped an overrun.",
        c.dump_restarts.get(),
    );
    counter(
        out,
        "portsyncd_ports_vanished_total",
        "Ports found gone by a resync dump.",
        c.ports_vanished.get(),
    );
    labelled(
        out,
        "counter",
        "portsyncd_messages_skipped_total",
        "Link messages skipped by SONiC's rules, by reason.",
        "reason",
        &[
            ("not_port", c.skipped_not_port.get()),
            ("team", c.skipped_team.get()),
            ("del_with_master", c.skipped_del_with_master.get()),
            ("old_interface", c.skipped_old_interface.get()),
        ],
    );
    counter(
        out,
        "portsyncd_port_names_refused_total",
        "Port names refused (too long, or the port table full).",
        c.refused_names.get(),
    );
    counter(
        out,
        "portsyncd_ports_written_total",
        "STATE_DB PORT_TABLE HSETs sent.",
        c.ports_written.get(),
    );
    counter(
        out,
        "portsyncd_ports_deleted_total",
        "STATE_DB PORT_TABLE DELs sent.",
        c.ports_deleted.get(),
    );
    counter(
        out,
        "portsyncd_batches_total",
        "Batches written to STATE_DB (one per loop turn with changes).",
        c.batches.get(),
    );
    counter(
        out,
        "portsyncd_loop_turns_total",
        "Event loop turns (at least one a second while the loop runs).",
        c.loop_turns.get(),
    );
    counter(
        out,
        "portsyncd_redis_reconnects_total",
        "Redis connections re-established after a loss.",
        c.redis_reconnects.get(),
    );
    counter(
        out,
        "portsyncd_redis_error_replies_total",
        "Redis error replies to the daemon's commands.",
        c.redis_error_replies.get(),
    );
    counter(
        out,
        "portsyncd_samples_dropped_total",
        "Latency samples dropped because the metrics thread fell behind.",
        c.samples_dropped.get(),
    );
    counter(
        out,
        "portsyncd_loop_cpu_seconds_total",
        "CPU time used by the loop thread (updated once a second).",
        ExactSeconds(c.loop_cpu_ns.get()),
    );

    gauge(
        out,
        "portsyncd_known_ports",
        "Ports in the port table.",
        c.known_ports.get(),
    );
    gauge(
        out,
        "portsyncd_pending_ports",
        "Ports with a netdev waiting to be known in APPL_DB PORT_TABLE.",
        c.pending_ports.get(),
    );
    gauge(
        out,
        "portsyncd_dirty_ports",
        "Ports owing a write that did not fit the Redis write buffer.",
        c.dirty_ports.get(),
    );
    gauge(
        out,
        "portsyncd_netlink_rcvbuf_bytes",
        "Effective netlink receive buffer.",
        c.rcvbuf_bytes.get(),
    );
    let reactor = c.reactor.get();
    let values: Vec<(&str, u64)> = REACTORS
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, u64::from(i as u64 == reactor)))
        .collect();
    labelled(
        out,
        "gauge",
        "portsyncd_reactor",
        "The reactor in use (1 for the one in use).",
        "reactor",
        &values,
    );
    gauge(
        out,
        "portsyncd_redis_up",
        "1 while the STATE_DB connection is up.",
        c.redis_up.get(),
    );

    histogram(
        out,
        "portsyncd_recv_to_write_seconds",
        "Netlink receive to the batch holding the change written to Redis.",
        s.recv_to_write,
    );
    histogram(
        out,
        "portsyncd_recv_to_reply_seconds",
        "Netlink receive to Redis acknowledging the write.",
        s.recv_to_reply,
    );
    histogram(
        out,
        "portsyncd_batch_commands",
        "Commands in one batch written to STATE_DB.",
        s.batch_size,
    );

    let responses: Vec<(String, u64)> = Status::ALL
        .iter()
        .map(|st| (st.code().to_string(), s.http.responses[st.index()]))
        .collect();
    let refs: Vec<(&str, u64)> = responses.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    labelled(
        out,
        "counter",
        "portsyncd_metrics_http_responses_total",
        "Responses of the metrics endpoint, by status code.",
        "code",
        &refs,
    );
    counter(
        out,
        "portsyncd_metrics_http_timeouts_total",
        "Metrics endpoint connections closed at their deadline.",
        s.http.timeouts,
    );
}

/// A duration in nanoseconds for people, three significant digits:
/// `812ns`, `35.1µs`, `1.20ms`, `2.31s`.
pub fn human_ns(ns: u64) -> String {
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    let (v, unit) = if ns < 1_000_000 {
        (ns as f64 / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        (ns as f64 / 1e6, "ms")
    } else {
        (ns as f64 / 1e9, "s")
    };
    let decimals = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.decimals$}{unit}")
}

/// The periodic summary line: rates over `secs`, and end-to-end latency
/// quantiles of the interval.
pub fn summary_line(secs: f64, events: u64, writes: u64, dropped: u64, q: &Quantiles) -> String {
    let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let mut line = format!(
        "metrics, last {secs:.0} s: {:.1} events/s, {:.1} writes/s",
        rate(events),
        rate(writes)
    );
    if q.count > 0 {
        let _ = write!(
            line,
            "; recv→reply p50 {} p99 {} p999 {} max {} ({} samples)",
            human_ns(q.p50),
            human_ns(q.p99),
            human_ns(q.p999),
            human_ns(q.max),
            q.count
        );
    } else {
        line.push_str("; recv→reply: no samples");
    }
    if dropped > 0 {
        let _ = write!(line, "; {dropped} samples dropped");
    }
    line
}

#[cfg(test)]
mod tests;
