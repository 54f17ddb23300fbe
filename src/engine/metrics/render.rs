//! The Prometheus text exposition format (version 0.0.4) of everything the
//! daemon counts and measures, and the one-line log summary.
//!
//! The counters and gauges come from the counters table ([`table`], in
//! table order); the histograms and the endpoint's own counters follow
//! ([`THREAD_FAMILIES`]). `docs/metrics.md` lists both.
//!
//! Names start `portsyncd_`; times are in seconds; counters end `_total`.
//! Each histogram is `_bucket{le}`/`_sum`/`_count` (exact), plus a `_max`
//! gauge read from its HdrHistogram, all since start. Quantiles are left
//! to PromQL (`histogram_quantile` over the buckets, over any window):
//! since-start quantile gauges froze after a while, could not be
//! aggregated, and their `quantile` label made `promtool check metrics`
//! fail (issue 14).

use std::fmt::Write;

use super::http::Status;
use super::series::{Quantiles, Series, Unit};
use super::table::{CountersTable, MetricType, Shape};
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

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A bucket bound as Prometheus writes `le`: the shortest float text.
fn bound(unit: Unit, raw: u64) -> f64 {
    unit.export(raw as f64)
}

/// HELP of the `_max` gauge beside histogram `name`.
pub fn max_help(name: &str) -> String {
    format!("Largest {name} since start (HdrHistogram, 3 significant digits).")
}

fn histogram(out: &mut String, family: &Family, s: &Series) {
    let Family { name, help, .. } = *family;
    head(out, name, family.kind.as_str(), help);
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

    let max = s.since_start().max;
    head(out, &format!("{name}_max"), "gauge", &max_help(name));
    let _ = writeln!(out, "{name}_max {}", s.unit.export(max as f64));
}

/// A family the metrics thread owns rather than a counters-table field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

pub const RECV_TO_WRITE: Family = Family {
    name: "portsyncd_recv_to_write_seconds",
    kind: MetricType::Histogram,
    help: "Netlink receive to the batch holding the change written to Redis.",
};
pub const RECV_TO_REPLY: Family = Family {
    name: "portsyncd_recv_to_reply_seconds",
    kind: MetricType::Histogram,
    help: "Netlink receive to Redis acknowledging the write.",
};
pub const BATCH_COMMANDS: Family = Family {
    name: "portsyncd_batch_commands",
    kind: MetricType::Histogram,
    help: "Commands in one batch written to STATE_DB.",
};
/// Labelled by `code`, one sample per [`Status::ALL`].
pub const HTTP_RESPONSES: Family = Family {
    name: "portsyncd_metrics_http_responses_total",
    kind: MetricType::Counter,
    help: "Responses of the metrics endpoint, by status code.",
};
pub const HTTP_TIMEOUTS: Family = Family {
    name: "portsyncd_metrics_http_timeouts_total",
    kind: MetricType::Counter,
    help: "Metrics endpoint connections closed at their deadline.",
};

/// The metrics thread's own families, in export order (after the table).
pub const THREAD_FAMILIES: [Family; 5] = [
    RECV_TO_WRITE,
    RECV_TO_REPLY,
    BATCH_COMMANDS,
    HTTP_RESPONSES,
    HTTP_TIMEOUTS,
];

/// Every entry of a counters table, in table order; a family's HELP and
/// TYPE come before its first sample.
pub fn table<C: CountersTable>(out: &mut String, c: &C) {
    let mut family = "";
    for e in C::ENTRIES {
        if e.name != family {
            head(out, e.name, e.kind.as_str(), e.help);
            family = e.name;
        }
        let name = e.name;
        let v = (e.read)(c);
        let _ = match e.shape {
            Shape::Plain => writeln!(out, "{name} {v}"),
            Shape::Label(key, value) => writeln!(out, "{name}{{{key}=\"{value}\"}} {v}"),
            Shape::Seconds => writeln!(out, "{name} {}", ExactSeconds(v)),
            Shape::OneHot(key, names) => {
                for (i, n) in names.iter().enumerate() {
                    let on = u64::from(i as u64 == v);
                    let _ = writeln!(out, "{name}{{{key}=\"{n}\"}} {on}");
                }
                Ok(())
            }
        };
    }
}

/// Render every metric into `out` (cleared first).
pub fn render(out: &mut String, s: &Snapshot<'_>) {
    out.clear();
    table(out, s.counters);

    histogram(out, &RECV_TO_WRITE, s.recv_to_write);
    histogram(out, &RECV_TO_REPLY, s.recv_to_reply);
    histogram(out, &BATCH_COMMANDS, s.batch_size);

    head(
        out,
        HTTP_RESPONSES.name,
        HTTP_RESPONSES.kind.as_str(),
        HTTP_RESPONSES.help,
    );
    for st in Status::ALL {
        let _ = writeln!(
            out,
            "{}{{code=\"{}\"}} {}",
            HTTP_RESPONSES.name,
            st.code(),
            s.http.responses[st.index()]
        );
    }
    head(
        out,
        HTTP_TIMEOUTS.name,
        HTTP_TIMEOUTS.kind.as_str(),
        HTTP_TIMEOUTS.help,
    );
    let _ = writeln!(out, "{} {}", HTTP_TIMEOUTS.name, s.http.timeouts);
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
