use std::collections::BTreeMap;

use super::*;
use crate::engine::metrics::flaps::PortFlaps;
use crate::engine::metrics::series::LATENCY_BOUNDS_NS;

/// Each field of `Counters` portsyncd exports and the series it is
/// exported as.
const PORTSYNCD: &[(&str, &str)] = &[
    (
        "msgs_newlink",
        "portsyncd_netlink_messages_total{type=\"newlink\"}",
    ),
    (
        "msgs_dellink",
        "portsyncd_netlink_messages_total{type=\"dellink\"}",
    ),
    (
        "msgs_done",
        "portsyncd_netlink_messages_total{type=\"done\"}",
    ),
    (
        "msgs_error",
        "portsyncd_netlink_messages_total{type=\"error\"}",
    ),
    (
        "msgs_other",
        "portsyncd_netlink_messages_total{type=\"other\"}",
    ),
    ("datagrams", "portsyncd_netlink_datagrams_total"),
    ("malformed", "portsyncd_netlink_malformed_total"),
    ("enobufs", "portsyncd_netlink_enobufs_total"),
    ("truncations", "portsyncd_netlink_truncations_total"),
    ("resyncs", "portsyncd_netlink_resyncs_total"),
    ("dump_restarts", "portsyncd_netlink_dump_restarts_total"),
    ("dump_requests", "portsyncd_netlink_dump_requests_total"),
    (
        "drift_kernel",
        "portsyncd_drift_repaired_total{source=\"kernel\"}",
    ),
    (
        "drift_redis",
        "portsyncd_drift_repaired_total{source=\"redis\"}",
    ),
    ("verify_runs", "portsyncd_verify_runs_total"),
    (
        "change_lines_suppressed",
        "portsyncd_port_change_lines_suppressed_total",
    ),
    (
        "dump_busy",
        "portsyncd_netlink_dump_failures_total{reason=\"ebusy\"}",
    ),
    (
        "dump_refused",
        "portsyncd_netlink_dump_failures_total{reason=\"refused\"}",
    ),
    (
        "dump_enobufs",
        "portsyncd_netlink_dump_failures_total{reason=\"enobufs\"}",
    ),
    (
        "dump_timeouts",
        "portsyncd_netlink_dump_failures_total{reason=\"timeout\"}",
    ),
    ("ports_vanished", "portsyncd_ports_vanished_total"),
    (
        "skipped_not_port",
        "portsyncd_messages_skipped_total{reason=\"not_port\"}",
    ),
    (
        "skipped_team",
        "portsyncd_messages_skipped_total{reason=\"team\"}",
    ),
    (
        "skipped_del_with_master",
        "portsyncd_messages_skipped_total{reason=\"del_with_master\"}",
    ),
    (
        "skipped_old_interface",
        "portsyncd_messages_skipped_total{reason=\"old_interface\"}",
    ),
    ("refused_names", "portsyncd_port_names_refused_total"),
    ("ports_written", "portsyncd_ports_written_total"),
    ("ports_deleted", "portsyncd_ports_deleted_total"),
    ("batches", "portsyncd_batches_total"),
    ("loop_turns", "portsyncd_loop_turns_total"),
    ("redis_reconnects", "portsyncd_redis_reconnects_total"),
    ("redis_error_replies", "portsyncd_redis_error_replies_total"),
    ("fd_exhausted", "portsyncd_fd_exhausted_total"),
    ("samples_dropped", "portsyncd_samples_dropped_total"),
    ("log_lines_dropped", "portsyncd_log_lines_dropped_total"),
    ("log_lines_to_stderr", "portsyncd_log_lines_to_stderr_total"),
    (
        "log_syslog_reconnects",
        "portsyncd_log_syslog_reconnects_total",
    ),
    ("known_ports", "portsyncd_known_ports"),
    ("pending_ports", "portsyncd_pending_ports"),
    ("dirty_ports", "portsyncd_dirty_ports"),
    ("rcvbuf_bytes", "portsyncd_netlink_rcvbuf_bytes"),
    ("redis_up", "portsyncd_redis_up"),
    // Special forms, checked by their own tests below.
    ("reactor", "portsyncd_reactor{reactor=\"io_uring\"}"),
    ("loop_cpu_ns", "portsyncd_loop_cpu_seconds_total"),
];

/// Each field of `Counters` neighsyncd exports and the series it is
/// exported as.
const NEIGHSYNCD: &[(&str, &str)] = &[
    (
        "msgs_newlink",
        "neighsyncd_netlink_messages_total{type=\"newlink\"}",
    ),
    (
        "msgs_dellink",
        "neighsyncd_netlink_messages_total{type=\"dellink\"}",
    ),
    (
        "msgs_done",
        "neighsyncd_netlink_messages_total{type=\"done\"}",
    ),
    (
        "msgs_error",
        "neighsyncd_netlink_messages_total{type=\"error\"}",
    ),
    (
        "msgs_other",
        "neighsyncd_netlink_messages_total{type=\"other\"}",
    ),
    ("datagrams", "neighsyncd_netlink_datagrams_total"),
    ("malformed", "neighsyncd_netlink_malformed_total"),
    ("enobufs", "neighsyncd_netlink_enobufs_total"),
    ("truncations", "neighsyncd_netlink_truncations_total"),
    ("resyncs", "neighsyncd_netlink_resyncs_total"),
    ("dump_restarts", "neighsyncd_netlink_dump_restarts_total"),
    ("dump_requests", "neighsyncd_netlink_dump_requests_total"),
    (
        "drift_kernel",
        "neighsyncd_drift_repaired_total{source=\"kernel\"}",
    ),
    (
        "drift_redis",
        "neighsyncd_drift_repaired_total{source=\"redis\"}",
    ),
    ("verify_runs", "neighsyncd_verify_runs_total"),
    (
        "dump_busy",
        "neighsyncd_netlink_dump_failures_total{reason=\"ebusy\"}",
    ),
    (
        "dump_refused",
        "neighsyncd_netlink_dump_failures_total{reason=\"refused\"}",
    ),
    (
        "dump_enobufs",
        "neighsyncd_netlink_dump_failures_total{reason=\"enobufs\"}",
    ),
    (
        "dump_timeouts",
        "neighsyncd_netlink_dump_failures_total{reason=\"timeout\"}",
    ),
    ("batches", "neighsyncd_batches_total"),
    ("loop_turns", "neighsyncd_loop_turns_total"),
    ("redis_reconnects", "neighsyncd_redis_reconnects_total"),
    (
        "redis_error_replies",
        "neighsyncd_redis_error_replies_total",
    ),
    ("fd_exhausted", "neighsyncd_fd_exhausted_total"),
    ("samples_dropped", "neighsyncd_samples_dropped_total"),
    ("log_lines_dropped", "neighsyncd_log_lines_dropped_total"),
    (
        "log_lines_to_stderr",
        "neighsyncd_log_lines_to_stderr_total",
    ),
    (
        "log_syslog_reconnects",
        "neighsyncd_log_syslog_reconnects_total",
    ),
    ("rcvbuf_bytes", "neighsyncd_netlink_rcvbuf_bytes"),
    ("redis_up", "neighsyncd_redis_up"),
    (
        "msgs_newneigh",
        "neighsyncd_netlink_messages_total{type=\"newneigh\"}",
    ),
    (
        "msgs_delneigh",
        "neighsyncd_netlink_messages_total{type=\"delneigh\"}",
    ),
    (
        "skipped_neigh_family",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"family\"}",
    ),
    (
        "skipped_neigh_bad_destination",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"bad_destination\"}",
    ),
    (
        "skipped_neigh_ipv4_link_local_dual_tor",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"ipv4_link_local_dual_tor\"}",
    ),
    (
        "skipped_neigh_ipv6_link_local_mode_off",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"ipv6_link_local_mode_off\"}",
    ),
    (
        "skipped_neigh_ipv6_link_local_multicast",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"ipv6_link_local_multicast\"}",
    ),
    (
        "skipped_neigh_noarp",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"noarp\"}",
    ),
    (
        "skipped_neigh_mac_none",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"mac_none\"}",
    ),
    (
        "skipped_neigh_mac_not_ethernet",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"mac_not_ethernet\"}",
    ),
    (
        "skipped_neigh_broadcast",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"broadcast\"}",
    ),
    (
        "neigh_before_links",
        "neighsyncd_neighbor_messages_skipped_total{reason=\"before_link_dump\"}",
    ),
    ("neighbors_vanished", "neighsyncd_neighbors_vanished_total"),
    ("neighbors_refused", "neighsyncd_neighbors_refused_total"),
    ("neighbors_written", "neighsyncd_neighbors_written_total"),
    ("neighbors_deleted", "neighsyncd_neighbors_deleted_total"),
    (
        "neighbor_config_changes",
        "neighsyncd_neighbor_config_changes_total",
    ),
    (
        "warm_new",
        "neighsyncd_warm_reconciled_total{state=\"new\"}",
    ),
    (
        "warm_same",
        "neighsyncd_warm_reconciled_total{state=\"same\"}",
    ),
    (
        "warm_stale",
        "neighsyncd_warm_reconciled_total{state=\"stale\"}",
    ),
    (
        "warm_delete",
        "neighsyncd_warm_reconciled_total{state=\"delete\"}",
    ),
    ("known_neighbors", "neighsyncd_known_neighbors"),
    ("dirty_neighbors", "neighsyncd_dirty_neighbors"),
    // Special forms, checked by their own tests below.
    ("reactor", "neighsyncd_reactor{reactor=\"io_uring\"}"),
    ("loop_cpu_ns", "neighsyncd_loop_cpu_seconds_total"),
];

/// The field names of `Counters`, from its `Debug` output.
fn counter_fields() -> Vec<String> {
    let text = format!("{:?}", Counters::default());
    let inner = text
        .trim_start_matches("Counters {")
        .trim_end_matches('}')
        .to_string();
    inner
        .split("), ")
        .map(|f| f.trim().split(':').next().unwrap().trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// Set every counter and gauge to a distinct value: field i gets 1000 + i.
fn numbered() -> Counters {
    let c = Counters::default();
    let fields = counter_fields();
    let v = |name: &str| 1000 + fields.iter().position(|f| f == name).unwrap() as u64;
    c.msgs_newlink.add(v("msgs_newlink"));
    c.msgs_dellink.add(v("msgs_dellink"));
    c.msgs_done.add(v("msgs_done"));
    c.msgs_error.add(v("msgs_error"));
    c.msgs_other.add(v("msgs_other"));
    c.datagrams.add(v("datagrams"));
    c.malformed.add(v("malformed"));
    c.enobufs.add(v("enobufs"));
    c.truncations.add(v("truncations"));
    c.resyncs.add(v("resyncs"));
    c.dump_restarts.add(v("dump_restarts"));
    c.dump_requests.add(v("dump_requests"));
    c.drift_kernel.add(v("drift_kernel"));
    c.drift_redis.add(v("drift_redis"));
    c.verify_runs.add(v("verify_runs"));
    c.change_lines_suppressed.set(v("change_lines_suppressed"));
    c.dump_busy.add(v("dump_busy"));
    c.dump_refused.add(v("dump_refused"));
    c.dump_enobufs.add(v("dump_enobufs"));
    c.dump_timeouts.add(v("dump_timeouts"));
    c.ports_vanished.add(v("ports_vanished"));
    c.skipped_not_port.add(v("skipped_not_port"));
    c.skipped_team.add(v("skipped_team"));
    c.skipped_del_with_master.add(v("skipped_del_with_master"));
    c.skipped_old_interface.add(v("skipped_old_interface"));
    c.refused_names.add(v("refused_names"));
    c.ports_written.add(v("ports_written"));
    c.ports_deleted.add(v("ports_deleted"));
    c.batches.add(v("batches"));
    c.loop_turns.add(v("loop_turns"));
    c.redis_reconnects.add(v("redis_reconnects"));
    c.redis_error_replies.add(v("redis_error_replies"));
    c.fd_exhausted.set(v("fd_exhausted"));
    c.samples_dropped.add(v("samples_dropped"));
    c.log_lines_dropped.set(v("log_lines_dropped"));
    c.log_lines_to_stderr.set(v("log_lines_to_stderr"));
    c.log_syslog_reconnects.set(v("log_syslog_reconnects"));
    c.known_ports.set(v("known_ports"));
    c.pending_ports.set(v("pending_ports"));
    c.dirty_ports.set(v("dirty_ports"));
    c.rcvbuf_bytes.set(v("rcvbuf_bytes"));
    c.reactor.set(1);
    c.loop_cpu_ns.set(2_000_000_123);
    c.redis_up.set(v("redis_up"));
    c.msgs_newneigh.add(v("msgs_newneigh"));
    c.msgs_delneigh.add(v("msgs_delneigh"));
    c.skipped_neigh_family.add(v("skipped_neigh_family"));
    c.skipped_neigh_bad_destination
        .add(v("skipped_neigh_bad_destination"));
    c.skipped_neigh_ipv4_link_local_dual_tor
        .add(v("skipped_neigh_ipv4_link_local_dual_tor"));
    c.skipped_neigh_ipv6_link_local_mode_off
        .add(v("skipped_neigh_ipv6_link_local_mode_off"));
    c.skipped_neigh_ipv6_link_local_multicast
        .add(v("skipped_neigh_ipv6_link_local_multicast"));
    c.skipped_neigh_noarp.add(v("skipped_neigh_noarp"));
    c.skipped_neigh_mac_none.add(v("skipped_neigh_mac_none"));
    c.skipped_neigh_mac_not_ethernet
        .add(v("skipped_neigh_mac_not_ethernet"));
    c.skipped_neigh_broadcast.add(v("skipped_neigh_broadcast"));
    c.neigh_before_links.add(v("neigh_before_links"));
    c.neighbors_vanished.add(v("neighbors_vanished"));
    c.neighbors_refused.add(v("neighbors_refused"));
    c.neighbors_written.add(v("neighbors_written"));
    c.neighbors_deleted.add(v("neighbors_deleted"));
    c.neighbor_config_changes.add(v("neighbor_config_changes"));
    c.warm_new.add(v("warm_new"));
    c.warm_same.add(v("warm_same"));
    c.warm_stale.add(v("warm_stale"));
    c.warm_delete.add(v("warm_delete"));
    c.known_neighbors.set(v("known_neighbors"));
    c.dirty_neighbors.set(v("dirty_neighbors"));
    c
}

struct Fixture {
    daemon: Daemon,
    counters: Counters,
    write: Series,
    reply: Series,
    batch: Series,
    http: HttpStats,
    flaps: PortFlaps<4>,
    process: Option<ProcessStats>,
}

impl Fixture {
    /// portsyncd's.
    fn new(counters: Counters) -> Fixture {
        Fixture::of(Daemon::Portsyncd, counters)
    }

    fn of(daemon: Daemon, counters: Counters) -> Fixture {
        Fixture {
            daemon,
            counters,
            write: Series::latency(false).unwrap(),
            reply: Series::latency(true).unwrap(),
            batch: Series::batch_size().unwrap(),
            http: HttpStats::default(),
            flaps: PortFlaps::new(),
            process: None,
        }
    }

    fn render(&self) -> String {
        let mut out = String::from("LEFTOVER text that must go");
        render(
            &mut out,
            &Snapshot {
                daemon: self.daemon,
                counters: &self.counters,
                recv_to_write: &self.write,
                recv_to_reply: &self.reply,
                batch_size: &self.batch,
                http: &self.http,
                flaps: &self.flaps,
                process: self.process.as_ref(),
            },
        );
        out
    }
}

/// Every sample line of portsyncd's text as series → value; panics on a
/// line that is not well-formed exposition text.
fn samples(text: &str) -> BTreeMap<String, String> {
    samples_of(Daemon::Portsyncd, text)
}

/// [`samples`] of `d`'s text: every name starts with its prefix or is a
/// standard `process_*`.
fn samples_of(d: Daemon, text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let kind = it.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice for {name}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with(d.prefix()) || name.starts_with("process_"),
            "{line}"
        );
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        let family = [
            name,
            name.trim_end_matches("_bucket"),
            name.trim_end_matches("_sum"),
            name.trim_end_matches("_count"),
        ];
        assert!(
            family.iter().any(|f| typed.contains(*f)),
            "no TYPE before {line}"
        );
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "bad value in {line}"
        );
        assert!(
            map.insert(series.to_string(), value.to_string()).is_none(),
            "series twice: {series}"
        );
    }
    map
}

/// What `d` exports, by the lists above.
fn exported(d: Daemon) -> &'static [(&'static str, &'static str)] {
    match d {
        Daemon::Portsyncd => PORTSYNCD,
        Daemon::Neighsyncd => NEIGHSYNCD,
    }
}

#[test]
fn every_counter_and_gauge_is_exported_with_its_value() {
    let fields = counter_fields();
    assert_eq!(fields.len(), 67, "{fields:?}");
    for f in &fields {
        assert!(
            Daemon::ALL
                .iter()
                .any(|&d| exported(d).iter().any(|(name, _)| name == f)),
            "Counters::{f} is exported by no daemon (add it to PORTSYNCD or NEIGHSYNCD)"
        );
    }
    for d in Daemon::ALL {
        let fx = Fixture::of(d, numbered());
        let text = fx.render();
        assert!(!text.contains("LEFTOVER"));
        let m = samples_of(d, &text);
        for (f, series) in exported(d) {
            let i = fields.iter().position(|n| n == f).unwrap();
            let want = match *f {
                "reactor" => "1".to_string(),
                "loop_cpu_ns" => "2.000000123".to_string(),
                _ => (1000 + i).to_string(),
            };
            assert_eq!(m.get(*series), Some(&want), "{f} as {series}");
        }
        // And nothing else from the table (the one-hot reactor has a
        // second series).
        let mut table = String::new();
        super::table(&mut table, d, &fx.counters);
        let served = samples_of(d, &table).len();
        assert_eq!(served, exported(d).len() + 1, "{}:\n{table}", d.name());
    }
}

/// portsyncd exports no neighbor family and neighsyncd no port family;
/// each names everything with its own prefix.
#[test]
fn each_daemon_exports_its_own_families_under_its_own_prefix() {
    let port = Fixture::of(Daemon::Portsyncd, numbered()).render();
    let neigh = Fixture::of(Daemon::Neighsyncd, numbered()).render();
    assert!(!port.contains("neigh"), "{port}");
    let family = |series: &str| series.split('{').next().unwrap().to_string();
    let port_families: Vec<String> = PORTSYNCD.iter().map(|(_, s)| family(s)).collect();
    let neigh_families: Vec<String> = NEIGHSYNCD.iter().map(|(_, s)| family(s)).collect();
    for f in &port_families {
        let shared = format!("neighsyncd_{}", f.trim_start_matches("portsyncd_"));
        if !neigh_families.contains(&shared) {
            assert!(!neigh.contains(&shared), "{shared} in neighsyncd's text");
        }
    }
    assert!(!neigh.contains("port_flaps_total"));
    assert!(!neigh.contains("portsyncd"), "{neigh}");
    for (d, text) in [(Daemon::Portsyncd, &port), (Daemon::Neighsyncd, &neigh)] {
        for line in text.lines() {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            assert!(
                name.starts_with(d.prefix()) || name.starts_with("process_"),
                "{line}"
            );
        }
    }
    // The shared histograms, under neighsyncd's name.
    let m = samples_of(Daemon::Neighsyncd, &neigh);
    for h in [
        "recv_to_write_seconds",
        "recv_to_reply_seconds",
        "batch_commands",
    ] {
        assert_eq!(m[&format!("neighsyncd_{h}_count")], "0");
    }
    assert!(neigh.contains("# HELP neighsyncd_build_info The version and commit neighsyncd was built from (always 1).\n"));
    assert!(port.contains(
        "# HELP portsyncd_build_info The version and commit portsyncd was built from (always 1).\n"
    ));
}

#[test]
fn counters_end_in_total_and_gauges_do_not() {
    let text = Fixture::new(Counters::default()).render();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{line}"),
                _ => assert!(!name.ends_with("_total"), "{line}"),
            }
        }
    }
}

#[test]
fn the_reactor_in_use_is_the_one_set_to_1() {
    let fx = Fixture::new(Counters::default());
    let m = samples(&fx.render());
    assert_eq!(m["portsyncd_reactor{reactor=\"epoll\"}"], "1");
    assert_eq!(m["portsyncd_reactor{reactor=\"io_uring\"}"], "0");
}

#[test]
fn histograms_have_exact_buckets_sum_count_and_max_in_seconds() {
    let mut fx = Fixture::new(Counters::default());
    // 10 samples of 20 µs, 1 of 3 ms.
    for _ in 0..10 {
        fx.reply.record(20_000);
    }
    fx.reply.record(3_000_000);
    fx.batch.record(1);
    fx.batch.record(3);
    fx.batch.record(100_000);
    let m = samples(&fx.render());
    let h = "portsyncd_recv_to_reply_seconds";
    assert_eq!(m[&format!("{h}_count")], "11");
    let sum: f64 = m[&format!("{h}_sum")].parse().unwrap();
    assert!((sum - 0.0032).abs() < 1e-12, "{sum}");
    assert_eq!(m[&format!("{h}_bucket{{le=\"0.00001\"}}")], "0");
    assert_eq!(m[&format!("{h}_bucket{{le=\"0.000025\"}}")], "10");
    assert_eq!(m[&format!("{h}_bucket{{le=\"0.0025\"}}")], "10");
    assert_eq!(m[&format!("{h}_bucket{{le=\"0.005\"}}")], "11");
    assert_eq!(m[&format!("{h}_bucket{{le=\"10\"}}")], "11");
    assert_eq!(m[&format!("{h}_bucket{{le=\"+Inf\"}}")], "11");
    let buckets: Vec<&String> = m
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{h}_bucket")))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(buckets.len(), LATENCY_BOUNDS_NS.len() + 1);

    let near = |got: f64, want: f64| (got - want).abs() <= want * 1e-3;
    let max: f64 = m[&format!("{h}_max")].parse().unwrap();
    assert!(near(max, 3e-3) && max >= 3e-3, "{max}");
    // Issue 14: a `quantile` label outside a summary fails promtool.
    assert!(!m.keys().any(|k| k.contains("quantile")), "{m:?}");

    // Nothing recorded: zeros, every bucket present.
    let w = "portsyncd_recv_to_write_seconds";
    assert_eq!(m[&format!("{w}_count")], "0");
    assert_eq!(m[&format!("{w}_sum")], "0");
    assert_eq!(m[&format!("{w}_bucket{{le=\"+Inf\"}}")], "0");
    assert_eq!(m[&format!("{w}_max")], "0");

    // Batch sizes are counts, not seconds.
    let b = "portsyncd_batch_commands";
    assert_eq!(m[&format!("{b}_count")], "3");
    assert_eq!(m[&format!("{b}_sum")], "100004");
    assert_eq!(m[&format!("{b}_bucket{{le=\"1\"}}")], "1");
    assert_eq!(m[&format!("{b}_bucket{{le=\"2\"}}")], "1");
    assert_eq!(m[&format!("{b}_bucket{{le=\"4\"}}")], "2");
    assert_eq!(m[&format!("{b}_bucket{{le=\"65536\"}}")], "2");
    assert_eq!(m[&format!("{b}_bucket{{le=\"+Inf\"}}")], "3");
}

#[test]
fn histogram_buckets_are_cumulative_and_in_order() {
    let mut fx = Fixture::new(Counters::default());
    for v in [500, 7_000, 80_000, 900_000, 12_000_000, 40_000_000_000] {
        fx.write.record(v);
    }
    let text = fx.render();
    let mut last = (0.0f64, 0u64);
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("portsyncd_recv_to_write_seconds_bucket"))
    {
        let le = line
            .split("le=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(le > last.0 && count >= last.1, "{line}");
        last = (le, count);
        n += 1;
    }
    assert_eq!(n, LATENCY_BOUNDS_NS.len() + 1);
    assert_eq!(last.1, 6);
    assert!(text.contains("portsyncd_recv_to_write_seconds_bucket{le=\"10\"} 5\n"));
}

#[test]
fn http_responses_are_counted_by_code() {
    let mut fx = Fixture::new(Counters::default());
    fx.http.responses[Status::BadRequest.index()] = 3;
    fx.http.responses[Status::Ok.index()] = 7;
    fx.http.timeouts = 2;
    let m = samples(&fx.render());
    assert_eq!(
        m["portsyncd_metrics_http_responses_total{code=\"200\"}"],
        "7"
    );
    assert_eq!(
        m["portsyncd_metrics_http_responses_total{code=\"400\"}"],
        "3"
    );
    assert_eq!(
        m["portsyncd_metrics_http_responses_total{code=\"503\"}"],
        "0"
    );
    assert_eq!(m["portsyncd_metrics_http_timeouts_total"], "2");
}

#[test]
fn durations_for_people() {
    assert_eq!(human_ns(0), "0ns");
    assert_eq!(human_ns(812), "812ns");
    assert_eq!(human_ns(1_000), "1.00µs");
    assert_eq!(human_ns(35_100), "35.1µs");
    assert_eq!(human_ns(350_000), "350µs");
    assert_eq!(human_ns(1_200_000), "1.20ms");
    assert_eq!(human_ns(2_310_000_000), "2.31s");
    assert_eq!(human_ns(125_000_000_000), "125s");
}

#[test]
fn the_summary_line() {
    let q = Quantiles {
        count: 600,
        p50: 21_000,
        p99: 80_500,
        p999: 1_200_000,
        max: 3_400_000,
    };
    assert_eq!(
        summary_line(60.0, 612, 600, 0, &q),
        "metrics, last 60 s: 10.2 events/s, 10.0 writes/s; recv→reply p50 21.0µs p99 80.5µs p999 1.20ms max 3.40ms (600 samples)"
    );
    assert_eq!(
        summary_line(10.0, 0, 0, 5, &Quantiles::default()),
        "metrics, last 10 s: 0.0 events/s, 0.0 writes/s; recv→reply: no samples; 5 samples dropped"
    );
}

#[test]
fn build_info_is_1_with_the_version_and_commit() {
    let m = samples(&Fixture::new(Counters::default()).render());
    let series = format!("portsyncd_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}}");
    assert_eq!(m[&series], "1");
    assert!(
        COMMIT == "unknown" || COMMIT.bytes().all(|b| b.is_ascii_hexdigit()),
        "{COMMIT}"
    );
}

#[test]
fn port_flaps_are_one_series_per_port_seen() {
    let fx = Fixture::new(Counters::default());
    fx.flaps.saw(1, b"Ethernet4", None, false);
    fx.flaps.saw(0, b"Ethernet0", None, false);
    fx.flaps.saw(0, b"Ethernet0", Some(false), true);
    fx.flaps.saw(3, b"Eth\"x\\", None, true);
    fx.flaps.saw(3, b"Eth\"x\\", Some(true), false);
    let text = fx.render();
    let m = samples(&text);
    assert_eq!(m["portsyncd_port_flaps_total{port=\"Ethernet0\"}"], "1");
    assert_eq!(m["portsyncd_port_flaps_total{port=\"Ethernet4\"}"], "0");
    assert!(
        text.contains("portsyncd_port_flaps_total{port=\"Eth\\\"x\\\\\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE portsyncd_port_flaps_total counter\n"));
}

#[test]
fn process_metrics_come_from_the_stats_given() {
    let mut fx = Fixture::new(Counters::default());
    assert!(!fx.render().contains("process_"), "no stats, no families");
    fx.process = Some(ProcessStats {
        cpu_seconds: 1.25,
        resident_bytes: 4096,
        virtual_bytes: 8192,
        open_fds: 7,
        max_fds: Some(1024),
        start_time_seconds: 1_700_000_000.5,
    });
    let m = samples(&fx.render());
    assert_eq!(m["process_cpu_seconds_total"], "1.25");
    assert_eq!(m["process_resident_memory_bytes"], "4096");
    assert_eq!(m["process_virtual_memory_bytes"], "8192");
    assert_eq!(m["process_open_fds"], "7");
    assert_eq!(m["process_max_fds"], "1024");
    assert_eq!(m["process_start_time_seconds"], "1700000000.5");
    fx.process.as_mut().unwrap().max_fds = None;
    assert!(
        !fx.render().contains("process_max_fds"),
        "unlimited: left out"
    );
}
