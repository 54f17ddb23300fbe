//! The Prometheus text exposition format (version 0.0.4) of everything the
//! daemon counts and measures, and the one-line log summary.
//!
//! The counters and gauges come from the counters table ([`table`], in
//! table order); the histograms and the endpoint's own counters follow
//! ([`THREAD_FAMILIES`]). `docs/metrics.md` lists both. Only the families
//! the daemon exports ([`Daemon::exports`]) are written.
//!
//! Names start with the daemon's prefix (`portsyncd_`, `neighsyncd_`)
//! except the standard `process_*`; times are in seconds; counters end
//! `_total`.
//! Each histogram is `_bucket{le}`/`_sum`/`_count` (exact), plus a `_max`
//! gauge read from its HdrHistogram, all since start. Quantiles are left
//! to PromQL (`histogram_quantile` over the buckets, over any window):
//! since-start quantile gauges froze after a while, could not be
//! aggregated, and their `quantile` label made `promtool check metrics`
//! fail (issue 14).

use std::borrow::Cow;
use std::fmt::Write;

use super::daemon::{Daemon, Scope};
use super::flaps::FlapCounts;
use super::http::Status;
use super::process::ProcessStats;
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
    /// Whose metrics: the prefix and the families written.
    pub daemon: Daemon,
    pub counters: &'a Counters,
    pub recv_to_write: &'a Series,
    pub recv_to_reply: &'a Series,
    pub batch_size: &'a Series,
    pub http: &'a HttpStats,
    /// Per-port oper status changes (portsyncd's).
    pub flaps: &'a dyn FlapCounts,
    /// `None` when `/proc` could not be read: the `process_*` families
    /// are left out.
    pub process: Option<&'a ProcessStats>,
}

/// The crate version, for `<daemon>_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit built (`build.rs`: `SYNCD_COMMIT`, `git rev-parse HEAD`, or
/// `unknown`).
pub const COMMIT: &str = env!("SYNCD_COMMIT");

/// A label value as the text format wants it: `\`, `"` and newline
/// escaped.
struct LabelValue<'a>(&'a [u8]);

impl std::fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in String::from_utf8_lossy(self.0).chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
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

fn histogram(out: &mut String, d: Daemon, family: &Family, s: &Series) {
    let name = &family.name_for(d);
    let help = &family.help_for(d);
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
    /// The name without the daemon's prefix.
    pub name: &'static str,
    pub kind: MetricType,
    /// `{daemon}` stands for the daemon's name.
    pub help: &'static str,
    /// The daemons that export it.
    pub scope: Scope,
    /// Exported as `<daemon>_` + name; false for the standard `process_*`.
    pub prefixed: bool,
}

impl Family {
    /// Its exported name for `d`.
    pub fn name_for(&self, d: Daemon) -> Cow<'static, str> {
        if self.prefixed {
            Cow::Owned(format!("{}{}", d.prefix(), self.name))
        } else {
            Cow::Borrowed(self.name)
        }
    }

    /// Its HELP text for `d`.
    pub fn help_for(&self, d: Daemon) -> Cow<'static, str> {
        if self.help.contains("{daemon}") {
            Cow::Owned(self.help.replace("{daemon}", d.name()))
        } else {
            Cow::Borrowed(self.help)
        }
    }
}

/// A family of the daemon's own (named `<daemon>_` + `name`).
const fn own(name: &'static str, kind: MetricType, scope: Scope, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        scope,
        prefixed: true,
    }
}

/// A standard `process_*` family (named as is, exported by every daemon).
const fn standard(name: &'static str, kind: MetricType, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        scope: Scope::Every,
        prefixed: false,
    }
}

pub const RECV_TO_WRITE: Family = own(
    "recv_to_write_seconds",
    MetricType::Histogram,
    Scope::Every,
    "Netlink receive to the batch holding the change written to Redis.",
);
pub const RECV_TO_REPLY: Family = own(
    "recv_to_reply_seconds",
    MetricType::Histogram,
    Scope::Every,
    "Netlink receive to Redis acknowledging the write.",
);
pub const BATCH_COMMANDS: Family = own(
    "batch_commands",
    MetricType::Histogram,
    Scope::Every,
    "Commands in one batch written to Redis.",
);
/// Labelled by `code`, one sample per [`Status::ALL`].
pub const HTTP_RESPONSES: Family = own(
    "metrics_http_responses_total",
    MetricType::Counter,
    Scope::Every,
    "Responses of the metrics endpoint, by status code.",
);
pub const HTTP_TIMEOUTS: Family = own(
    "metrics_http_timeouts_total",
    MetricType::Counter,
    Scope::Every,
    "Metrics endpoint connections closed at their deadline.",
);

/// Labelled by `version` and `commit`; always 1.
pub const BUILD_INFO: Family = own(
    "build_info",
    MetricType::Gauge,
    Scope::Every,
    "The version and commit {daemon} was built from (always 1).",
);
/// Labelled by `port`, one sample per port whose netdev was seen.
pub const PORT_FLAPS: Family = own(
    "port_flaps_total",
    MetricType::Counter,
    Scope::Port,
    "Oper status changes of the port's netdev seen (a netdev appearing or coming back is not one).",
);
pub const PROCESS_CPU: Family = standard(
    "process_cpu_seconds_total",
    MetricType::Counter,
    "User and system CPU time of every thread, in seconds.",
);
pub const PROCESS_RESIDENT: Family = standard(
    "process_resident_memory_bytes",
    MetricType::Gauge,
    "Resident memory size in bytes.",
);
pub const PROCESS_VIRTUAL: Family = standard(
    "process_virtual_memory_bytes",
    MetricType::Gauge,
    "Virtual memory size in bytes.",
);
pub const PROCESS_OPEN_FDS: Family = standard(
    "process_open_fds",
    MetricType::Gauge,
    "Open file descriptors.",
);
/// Left out when the limit is unlimited.
pub const PROCESS_MAX_FDS: Family = standard(
    "process_max_fds",
    MetricType::Gauge,
    "The soft limit on open file descriptors.",
);
pub const PROCESS_START: Family = standard(
    "process_start_time_seconds",
    MetricType::Gauge,
    "Start time of the process since the Unix epoch, in seconds.",
);

/// The metrics thread's own families, in export order (after the table).
pub const THREAD_FAMILIES: [Family; 13] = [
    RECV_TO_WRITE,
    RECV_TO_REPLY,
    BATCH_COMMANDS,
    HTTP_RESPONSES,
    HTTP_TIMEOUTS,
    BUILD_INFO,
    PORT_FLAPS,
    PROCESS_CPU,
    PROCESS_RESIDENT,
    PROCESS_VIRTUAL,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START,
];

fn family_head(out: &mut String, d: Daemon, f: &Family) {
    head(out, &f.name_for(d), f.kind.as_str(), &f.help_for(d));
}

/// The `process_*` families (the same names for every daemon).
fn process(out: &mut String, d: Daemon, p: &ProcessStats) {
    let plain: [(&Family, &dyn std::fmt::Display); 4] = [
        (&PROCESS_CPU, &p.cpu_seconds),
        (&PROCESS_RESIDENT, &p.resident_bytes),
        (&PROCESS_VIRTUAL, &p.virtual_bytes),
        (&PROCESS_OPEN_FDS, &p.open_fds),
    ];
    for (f, v) in plain {
        family_head(out, d, f);
        let _ = writeln!(out, "{} {v}", f.name);
    }
    if let Some(max) = p.max_fds {
        family_head(out, d, &PROCESS_MAX_FDS);
        let _ = writeln!(out, "{} {max}", PROCESS_MAX_FDS.name);
    }
    family_head(out, d, &PROCESS_START);
    let _ = writeln!(out, "{} {}", PROCESS_START.name, p.start_time_seconds);
}

/// Every entry of a counters table that `d` exports, in table order,
/// named `<daemon>_` + its name; a family's HELP and TYPE come before its
/// first sample.
pub fn table<C: CountersTable>(out: &mut String, d: Daemon, c: &C) {
    let p = d.prefix();
    let mut family = "";
    for e in C::ENTRIES.iter().filter(|e| d.exports(e.scope)) {
        if e.name != family {
            let _ = writeln!(out, "# HELP {p}{} {}", e.name, e.help);
            let _ = writeln!(out, "# TYPE {p}{} {}", e.name, e.kind.as_str());
            family = e.name;
        }
        let name = e.name;
        let v = (e.read)(c);
        let _ = match e.shape {
            Shape::Plain => writeln!(out, "{p}{name} {v}"),
            Shape::Label(key, value) => writeln!(out, "{p}{name}{{{key}=\"{value}\"}} {v}"),
            Shape::Seconds => writeln!(out, "{p}{name} {}", ExactSeconds(v)),
            Shape::OneHot(key, names) => {
                for (i, n) in names.iter().enumerate() {
                    let on = u64::from(i as u64 == v);
                    let _ = writeln!(out, "{p}{name}{{{key}=\"{n}\"}} {on}");
                }
                Ok(())
            }
        };
    }
}

/// Render every metric the snapshot's daemon exports into `out` (cleared
/// first).
pub fn render(out: &mut String, s: &Snapshot<'_>) {
    out.clear();
    let d = s.daemon;
    let p = d.prefix();
    table(out, d, s.counters);

    histogram(out, d, &RECV_TO_WRITE, s.recv_to_write);
    histogram(out, d, &RECV_TO_REPLY, s.recv_to_reply);
    histogram(out, d, &BATCH_COMMANDS, s.batch_size);

    family_head(out, d, &HTTP_RESPONSES);
    for st in Status::ALL {
        let _ = writeln!(
            out,
            "{p}{}{{code=\"{}\"}} {}",
            HTTP_RESPONSES.name,
            st.code(),
            s.http.responses[st.index()]
        );
    }
    family_head(out, d, &HTTP_TIMEOUTS);
    let _ = writeln!(out, "{p}{} {}", HTTP_TIMEOUTS.name, s.http.timeouts);

    family_head(out, d, &BUILD_INFO);
    let _ = writeln!(
        out,
        "{p}{}{{version=\"{}\",commit=\"{}\"}} 1",
        BUILD_INFO.name,
        LabelValue(VERSION.as_bytes()),
        LabelValue(COMMIT.as_bytes())
    );
    if d.exports(PORT_FLAPS.scope) {
        family_head(out, d, &PORT_FLAPS);
        s.flaps.each(&mut |name, n| {
            let _ = writeln!(
                out,
                "{p}{}{{port=\"{}\"}} {n}",
                PORT_FLAPS.name,
                LabelValue(name)
            );
        });
    }
    if let Some(stats) = s.process {
        process(out, d, stats);
    }
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
