//! `docs/metrics.md`, written from the counters table ([`Counters`]) and
//! the metrics thread's own families ([`render::THREAD_FAMILIES`]), one
//! section per [`Daemon`], so the reference cannot drift from what each
//! daemon's `/metrics` serves.
//!
//! A test compares the file with [`markdown`] and fails when they differ.
//! After changing the table or a family, regenerate the file and commit it:
//!
//! ```text
//! UPDATE_DOCS=1 cargo test --lib engine::metrics::docs
//! ```

use std::fmt::Write;

use super::daemon::Daemon;
use super::http::Status;
use super::render;
use super::table::{CountersTable, MetricType, Shape};
use super::Counters;

/// The file, relative to the crate root.
pub const PATH: &str = "docs/metrics.md";

/// A table cell: `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The whole of `docs/metrics.md`. (Long: most of it is the page's own text.)
pub fn markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Metrics

> Generated from `src/engine/metrics/` (the counters table in `mod.rs`, the
> metrics thread's families in `render.rs`); do not edit by hand. After
> changing them, run `UPDATE_DOCS=1 cargo test --lib engine::metrics::docs`
> and commit the result; without `UPDATE_DOCS` that test fails while this
> file is out of date.

Each daemon serves its metrics at `GET /metrics` on `metrics.listen`, in
the Prometheus text format 0.0.4, in the order listed in its section.
What the engine counts (netlink, dumps, the loop, Redis, latency, the
endpoint) every daemon exports under its own prefix
(`portsyncd_netlink_datagrams_total`, `neighsyncd_netlink_datagrams_total`);
the rest is one daemon's. The standard `process_*` families have no
prefix. Counters end `_total`; times are in seconds.
"
    );
    for d in Daemon::ALL {
        let _ = writeln!(out, "- [{0}](#{0})", d.name());
    }
    for d in Daemon::ALL {
        out.push('\n');
        section(&mut out, d);
    }
    out
}

/// The section of one daemon: every series its `/metrics` serves.
fn section(out: &mut String, d: Daemon) {
    let name = d.name();
    let _ = writeln!(
        out,
        "## {name}

### Counted by the loop

One row per series. *Field* is the `Counters` field behind it; *totals* is
the word before its value in the `totals:` line logged when {name}
stops; *Exported by* says whether the other daemon has the series too.

| Series | Type | Help | Field | totals | Exported by |
|---|---|---|---|---|---|"
    );
    counter_rows(out, d);
    let flaps = render::PORT_FLAPS;
    let flaps = if d.exports(flaps.scope) {
        format!(
            "`{}` has one series per port whose netdev the\ndaemon has seen. ",
            flaps.name_for(d)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "
### Measured by the metrics thread

Each histogram is `_bucket{{le=\"…\"}}`, `_sum` and `_count`, exact and
since start, beside a `_max` gauge read from its HdrHistogram. For
quantiles, use `histogram_quantile()` over the buckets.

{flaps}The `process_*` families are the standard ones, read
from `/proc/self` at each scrape (left out if it cannot be read;
`process_max_fds` also when the limit is unlimited).

| Series | Type | Help | Exported by |
|---|---|---|---|"
    );
    for f in render::THREAD_FAMILIES
        .iter()
        .filter(|f| d.exports(f.scope))
    {
        let name = f.name_for(d);
        let help = cell(&f.help_for(d));
        let by = f.scope.daemons();
        let kind = f.kind.as_str();
        match f.kind {
            MetricType::Histogram => {
                let _ = writeln!(out, "| `{name}` | histogram | {help} | {by} |");
                let mhelp = cell(&render::max_help(&name));
                let _ = writeln!(out, "| `{name}_max` | gauge | {mhelp} | {by} |");
            }
            _ if *f == render::BUILD_INFO => {
                let _ = writeln!(
                    out,
                    "| `{name}{{version=\"…\",commit=\"…\"}}` | {kind} | {help} | {by} |"
                );
            }
            _ if *f == render::PORT_FLAPS => {
                let _ = writeln!(out, "| `{name}{{port=\"…\"}}` | {kind} | {help} | {by} |");
            }
            _ if *f == render::HTTP_RESPONSES => {
                for st in Status::ALL {
                    let code = st.code();
                    let _ = writeln!(
                        out,
                        "| `{name}{{code=\"{code}\"}}` | {kind} | {help} | {by} |"
                    );
                }
            }
            _ => {
                let _ = writeln!(out, "| `{name}` | {kind} | {help} | {by} |");
            }
        }
    }
}

/// One row per series of the counters table that `d` exports.
fn counter_rows(out: &mut String, d: Daemon) {
    let p = d.prefix();
    for e in <Counters as CountersTable>::ENTRIES
        .iter()
        .filter(|e| d.exports(e.scope))
    {
        let (name, help, field) = (e.name, cell(e.help), e.field);
        let kind = e.kind.as_str();
        let totals = e
            .totals_word(d)
            .map(|w| format!("`{w}`"))
            .unwrap_or_default();
        let by = e.scope.daemons();
        match e.shape {
            Shape::Plain => {
                let _ = writeln!(
                    out,
                    "| `{p}{name}` | {kind} | {help} | `{field}` | {totals} | {by} |"
                );
            }
            Shape::Label(key, value) => {
                let _ = writeln!(
                    out,
                    "| `{p}{name}{{{key}=\"{value}\"}}` | {kind} | {help} | `{field}` | {totals} | {by} |"
                );
            }
            Shape::Seconds => {
                let _ = writeln!(
                    out,
                    "| `{p}{name}` | {kind} | {help} | `{field}` (ns) | {totals} | {by} |"
                );
            }
            Shape::OneHot(key, names) => {
                for (i, n) in names.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "| `{p}{name}{{{key}=\"{n}\"}}` | {kind} | {help} | `{field}` = {i} | {totals} | {by} |"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails while docs/metrics.md differs from what the table says;
    /// `UPDATE_DOCS=1` rewrites it instead.
    #[test]
    fn docs_metrics_md_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
        let want = markdown();
        if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{PATH} is out of date: run `UPDATE_DOCS=1 cargo test --lib engine::metrics::docs`"
        );
    }

    /// `series` with the values of the labels that vary by build or port
    /// replaced by `…`, as the docs write them.
    fn dynamic_labels(d: Daemon, series: &str) -> String {
        let family = series.split('{').next().unwrap();
        let dynamic = [render::BUILD_INFO, render::PORT_FLAPS].map(|f| f.name_for(d));
        if !dynamic.iter().any(|f| f == family) {
            return series.to_string();
        }
        let mut out = String::new();
        for (i, part) in series.split('"').enumerate() {
            out.push_str(if i % 2 == 1 { "…" } else { part });
            if i + 1 < series.split('"').count() {
                out.push('"');
            }
        }
        out
    }

    /// What `/metrics` serves for `d`, every family present.
    fn served(d: Daemon) -> String {
        use super::super::flaps::PortFlaps;
        use super::super::process::ProcessStats;
        use super::super::render::{render, HttpStats, Snapshot};
        use super::super::series::Series;
        let counters = Counters::default();
        let (w, r, b) = (
            Series::latency(false).unwrap(),
            Series::latency(true).unwrap(),
            Series::batch_size().unwrap(),
        );
        let flaps = PortFlaps::<2>::new();
        flaps.saw(0, b"Ethernet0", None, true);
        let mut text = String::new();
        render(
            &mut text,
            &Snapshot {
                daemon: d,
                counters: &counters,
                recv_to_write: &w,
                recv_to_reply: &r,
                batch_size: &b,
                http: &HttpStats::default(),
                flaps: &flaps,
                process: Some(&ProcessStats {
                    max_fds: Some(1024),
                    ..ProcessStats::default()
                }),
            },
        );
        text
    }

    /// In each daemon's section: every family its `/metrics` serves has a
    /// row, and every row names a family it serves.
    #[test]
    fn the_docs_list_every_exported_series() {
        for d in Daemon::ALL {
            let text = served(d);
            let mut doc = String::new();
            section(&mut doc, d);
            assert!(markdown().contains(&doc));
            let documented: Vec<&str> = doc
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split('`').next())
                .collect();
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').unwrap();
                    assert!(
                        doc.contains(&format!("`{name}")),
                        "{name} is not in the docs"
                    );
                    assert!(doc.contains(&cell(help)), "HELP of {name} not in the docs");
                    continue;
                }
                if line.starts_with('#') {
                    continue;
                }
                let series = line.rsplit_once(' ').unwrap().0;
                // Label values known only at run time are written `…`.
                let series = dynamic_labels(d, series);
                let series = series.as_str();
                let histogram_part = ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| series.split('{').next().unwrap().ends_with(s));
                assert!(
                    histogram_part || documented.contains(&series),
                    "{series} is not in {}'s docs",
                    d.name()
                );
            }
            for row in &documented {
                let family = row.split('{').next().unwrap();
                assert!(
                    text.contains(&format!("# TYPE {family} ")),
                    "{row} is documented for {} but not served",
                    d.name()
                );
            }
        }
    }
}
