//! The neighbor modes' JSON document and human summary. Each mode builds
//! its figures as JSON; [`finish`] adds what every document holds and
//! [`summary`] prints from the document, so the two never disagree.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::neigh::cli::NeighOptions;
use crate::neigh::table::Verdict;
use crate::report::figures;

/// `{p50, p90, p99, p999, max, mean, count}` in µs; null when empty.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let mut m = Map::new();
    for (n, v) in figures(h) {
        m.insert(n.into(), json!(v));
    }
    m.insert("mean".into(), json!((h.mean() / 100.0).round() / 10.0));
    m.insert("count".into(), json!(h.len()));
    Value::Object(m)
}

/// Daemon ÷ floor, per percentile.
pub fn ratios(daemon: &Histogram<u64>, floor: &Histogram<u64>) -> Value {
    if daemon.is_empty() || floor.is_empty() {
        return Value::Null;
    }
    let mut m = Map::new();
    for ((n, a), (_, b)) in figures(daemon).into_iter().zip(figures(floor)) {
        let r = (b > 0.0).then(|| (a / b * 100.0).round() / 100.0);
        m.insert(n.into(), json!(r));
    }
    Value::Object(m)
}

pub fn verdict_json(v: &Verdict) -> Value {
    json!({
        "kernel": v.kernel,
        "appl": v.appl,
        "missing": v.missing,
        "wrong_mac": v.wrong_mac,
        "wrong_family": v.wrong_family,
        "extra": v.extra,
        "samples": v.samples,
    })
}

/// Add what every document holds.
pub fn finish(doc: &mut Value, o: &NeighOptions, setup: &str, totals: &[(String, u64)]) {
    let Some(m) = doc.as_object_mut() else { return };
    m.insert("tool".into(), json!("flood"));
    m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    m.insert("command".into(), json!(o.argv.join(" ")));
    m.insert("setup".into(), json!(setup));
    m.insert("ports".into(), json!(o.ports.len()));
    m.insert(
        "families".into(),
        json!(if o.ipv6 { "IPv4+IPv6" } else { "IPv4" }),
    );
    m.insert("attach".into(), json!(o.attach));
    m.insert(
        "daemon_totals".into(),
        if totals.is_empty() {
            Value::Null
        } else {
            Value::Object(totals.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        },
    );
}

fn f(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// The human summary of a document.
pub fn summary(doc: &Value) -> String {
    let mut s = String::new();
    let g = |k: &str| f(&doc[k]);
    let mode = doc["mode"].as_str().unwrap_or("");
    let _ = writeln!(
        s,
        "\n== {mode}: {} ports, {} ==",
        g("ports"),
        doc["families"].as_str().unwrap_or("")
    );
    match mode {
        "neigh initial" => {
            let _ = writeln!(
                s,
                "{} neighbors loaded in {} ms; daemon spawn → first key {} ms, → all keys {} ms ({} neighbors/s)",
                g("neighbors"),
                g("kernel_load_ms"),
                g("spawn_to_first_ms"),
                g("spawn_to_all_ms"),
                g("neighbors_per_s")
            );
            let _ = writeln!(
                s,
                "daemon CPU {} ms ({} µs per neighbor); RSS {} kB, peak (VmHWM) {} kB",
                g("daemon_cpu_ms"),
                g("daemon_cpu_us_per_neighbor"),
                g("daemon_rss_kb"),
                g("daemon_rss_peak_kb")
            );
        }
        "neigh latency" => {
            let _ = writeln!(
                s,
                "{} changes over {} neighbors, one at a time, {} rounds",
                g("changes"),
                g("neighbors"),
                g("rounds")
            );
            let _ = writeln!(
                s,
                "{:<30}{:>9}{:>9}{:>9}{:>9}{:>9}",
                "µs (kernel message → write)", "p50", "p90", "p99", "p99.9", "max"
            );
            for (name, key) in [
                ("daemon", &doc["latency_us"]),
                ("floor", &doc["floor_latency_us"]),
                ("ratio daemon / floor", &doc["ratio_to_floor"]),
                ("daemon, from the ack", &doc["ack_latency_us"]),
                ("floor, from the ack", &doc["floor_ack_latency_us"]),
            ] {
                if key.is_null() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "{name:<30}{:>9}{:>9}{:>9}{:>9}{:>9}",
                    f(&key["p50"]),
                    f(&key["p90"]),
                    f(&key["p99"]),
                    f(&key["p999"]),
                    f(&key["max"])
                );
            }
            let _ = writeln!(
                s,
                "daemon CPU {} µs per kernel event ({} wake-ups per event); unsettled {}; RSS {} kB, peak {} kB",
                g("daemon_cpu_us_per_event"),
                g("daemon_wakeups_per_event"),
                g("unsettled_changes"),
                g("daemon_rss_kb"),
                g("daemon_rss_peak_kb")
            );
        }
        "neigh burst" => {
            let _ = writeln!(
                s,
                "{} synced, then {} neigh replace ({} changed, {} new) in one ip -batch: sent in {} ms",
                g("base"),
                g("changes"),
                g("base"),
                g("new"),
                g("send_ms")
            );
            let settled = if doc["settled"] == json!(true) {
                format!(
                    "APPL_DB matched the kernel {} ms after the batch started",
                    g("settle_ms")
                )
            } else {
                "APPL_DB never matched the kernel before the deadline".into()
            };
            let _ = writeln!(
                s,
                "{settled}; last write read back at {} ms",
                g("last_write_ms")
            );
            let _ = writeln!(
                s,
                "{} kernel events; daemon CPU {} ms, {} µs per event, {} wake-ups per event; kernel drops {}; RSS {} kB, peak {} kB",
                g("kernel_events"),
                g("daemon_cpu_ms"),
                g("daemon_cpu_us_per_event"),
                g("daemon_wakeups_per_event"),
                g("kernel_drops"),
                g("daemon_rss_kb"),
                g("daemon_rss_peak_kb")
            );
            let fl = &doc["floor"];
            if fl.is_object() {
                let settled = match fl["settle_ms"].as_f64() {
                    Some(ms) => format!("matched its kernel {ms} ms after the batch started"),
                    None => "never matched its kernel before the deadline".into(),
                };
                let _ = writeln!(
                    s,
                    "floor ({}): {settled}; {} kernel events, CPU {} µs per event, kernel drops {}, wrong entries {}; daemon CPU per event {}× the floor's",
                    fl["kind"].as_str().unwrap_or(""),
                    f(&fl["kernel_events"]),
                    f(&fl["cpu_us_per_event"]),
                    f(&fl["kernel_drops"]),
                    f(&fl["wrong_entries"]),
                    g("cpu_ratio_to_floor")
                );
            }
        }
        _ => {}
    }
    let v = &doc["verify"];
    let _ = writeln!(
        s,
        "APPL_DB vs ip -j neigh show: {} of flood's neighbors in the kernel, {} in APPL_DB; wrong entries {} (missing {}, wrong MAC {}, wrong family {}, extra {})",
        f(&v["kernel"]),
        f(&v["appl"]),
        g("wrong_entries"),
        f(&v["missing"]),
        f(&v["wrong_mac"]),
        f(&v["wrong_family"]),
        f(&v["extra"])
    );
    for sample in v["samples"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "  {}", sample.as_str().unwrap_or(""));
    }
    s
}
