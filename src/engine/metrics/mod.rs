//! What the loop counts and measures, and how it hands that to the metrics
//! thread without ever waiting or allocating.
//!
//! Counters and gauges are atomics written only by the loop thread (a
//! relaxed load and store, no locked instruction) and read by the metrics
//! thread. Latency samples travel through a bounded `crossbeam-channel`
//! whose slots are preallocated; when it is full the sample is dropped and
//! counted.
//!
//! [`Counters`] is declared as one table ([`table`]): each field once,
//! with its exported name, TYPE, HELP, the daemons that export it and its
//! word in the `totals:` log line ([`Counters::totals`]); the Prometheus
//! text and `docs/metrics.md` ([`docs`]) are produced from it.
//!
//! One table serves every daemon ([`daemon`]). A family is exported by
//! every daemon (what the engine counts: netlink, dumps, the loop, Redis,
//! samples, CPU) or by one ([`Scope::Port`], [`Scope::Neigh`]). The
//! metrics thread exports the families of the [`Daemon`] it runs for, each
//! name prefixed `<daemon>_` (`portsyncd_`, `neighsyncd_`); the standard
//! `process_*` families keep their names. A daemon chooses by its name:
//! `launch::launch(&cfg, "neighsyncd")`
//! ([`launch`](crate::engine::runtime::launch::launch)) starts the
//! metrics thread for [`Daemon::Neighsyncd`], and its `totals:` line is
//! `counters.totals(Daemon::Neighsyncd)`.
//!
//! The metrics thread ([`export`]) owns everything else: the histograms
//! ([`series`]), the Prometheus text ([`render`]), the HTTP endpoint
//! ([`http`]) and the `process_*` metrics ([`process`]). Per-port flap
//! counts ([`flaps`]) are process-wide, written by the port table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub mod changes;
pub mod daemon;
pub mod docs;
pub mod export;
pub mod fds;
pub mod flaps;
pub mod http;
pub mod process;
pub mod render;
pub mod series;
pub mod table;

pub use daemon::{Daemon, Scope};
pub(crate) use table::counters_table;

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add one. Only one thread writes a given counter, so a relaxed load
    /// and store is exact and cheaper than an atomic add.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

counters_table! {
    /// Every counter and gauge the daemons export, declared once: the
    /// field, its exported family (name without the `<daemon>_` prefix,
    /// TYPE, which daemons export it, HELP, label) and its word in the
    /// `totals:` log line. Export order is table order.
    pub struct Counters {
        "netlink_datagrams_total" counter "Netlink datagrams received." {
            datagrams: Counter totals "datagrams",
        }
        "netlink_messages_total" counter "Netlink messages received, by type." {
            msgs_newlink: Counter ("type" = "newlink") totals "newlink" only port,
            msgs_dellink: Counter ("type" = "dellink") totals "dellink" only port,
            msgs_newneigh: Counter ("type" = "newneigh") only neigh totals "newneigh",
            msgs_delneigh: Counter ("type" = "delneigh") only neigh totals "delneigh",
            msgs_done: Counter ("type" = "done"),
            msgs_error: Counter ("type" = "error"),
            msgs_other: Counter ("type" = "other"),
        }
        "netlink_malformed_total" counter
            "Netlink messages that could not be parsed (skipped)." {
            malformed: Counter totals "malformed",
        }
        "netlink_enobufs_total" counter
            "ENOBUFS from the netlink socket: the kernel dropped events." {
            enobufs: Counter totals "enobufs",
        }
        "netlink_truncations_total" counter
            "Datagrams larger than the receive ring, read whole into the overflow buffer." {
            truncations: Counter totals "truncations",
        }
        "netlink_resyncs_total" counter
            "Dumps started to recover from lost messages (an overrun or a cut datagram)." {
            resyncs: Counter totals "resyncs",
        }
        "netlink_dump_restarts_total" counter
            "Dumps redone because they were interrupted or overlapped an overrun." {
            /// Interrupted means `NLM_F_DUMP_INTR`.
            dump_restarts: Counter totals "dump_restarts",
        }
        "netlink_dump_requests_total" counter
            "Dump requests sent (at start-up, and to recover after lost messages)." {
            dump_requests: Counter,
        }
        "netlink_dump_failures_total" counter
            "Dump requests that did not end in a complete dump, by reason: the kernel still ran an earlier dump (ebusy), refused it or it could not be sent (refused), the buffer was full when it started (enobufs: it goes on and is redone), or it went silent past its deadline (timeout)." {
            dump_busy: Counter ("reason" = "ebusy"),
            dump_refused: Counter ("reason" = "refused"),
            dump_enobufs: Counter ("reason" = "enobufs"),
            dump_timeouts: Counter ("reason" = "timeout"),
        }
        "drift_repaired_total" counter
            "Differences self-verification found and repaired, by source: the kernel (an entry whose kernel object is gone without its event reaching the daemon) or Redis (an entry lost, changed behind the daemon's back, or standing for nothing in the kernel)." {
            drift_kernel: Counter ("source" = "kernel"),
            drift_redis: Counter ("source" = "redis"),
        }
        "verify_runs_total" counter "Self-verifications completed." {
            verify_runs: Counter,
        }
        "ports_vanished_total" counter only port "Ports found gone by a resync dump." {
            ports_vanished: Counter totals "vanished",
        }
        "messages_skipped_total" counter only port
            "Link messages skipped by SONiC's rules, by reason." {
            skipped_not_port: Counter ("reason" = "not_port"),
            skipped_team: Counter ("reason" = "team"),
            skipped_del_with_master: Counter ("reason" = "del_with_master"),
            skipped_old_interface: Counter ("reason" = "old_interface"),
        }
        "port_names_refused_total" counter only port
            "Port names refused (too long, or the port table full)." {
            refused_names: Counter,
        }
        "ports_written_total" counter only port "STATE_DB PORT_TABLE HSETs sent." {
            ports_written: Counter totals "written",
        }
        "ports_deleted_total" counter only port "STATE_DB PORT_TABLE DELs sent." {
            ports_deleted: Counter totals "deleted",
        }
        // neighsyncd's counterparts of the port families above, in the
        // same order so its `totals:` line reads like portsyncd's.
        "neighbor_messages_skipped_total" counter only neigh
            "Neighbor messages that write nothing by SONiC's rules, by reason: not IPv4/IPv6 (family: bridge FDB events among them), no usable destination (bad_destination), IPv4 link-local on dual-ToR, IPv6 link-local add without the interface's link-local mode, link-local-scope multicast, NOARP without extern_learn, an add without a link-layer address (mac_none) or with one that is not a MAC (mac_not_ethernet), the broadcast MAC; and events read before the first link dump named the interfaces (before_link_dump: the neighbor dump that follows reports them)." {
            skipped_neigh_family: Counter ("reason" = "family"),
            skipped_neigh_bad_destination: Counter ("reason" = "bad_destination"),
            skipped_neigh_ipv4_link_local_dual_tor: Counter ("reason" = "ipv4_link_local_dual_tor"),
            skipped_neigh_ipv6_link_local_mode_off: Counter ("reason" = "ipv6_link_local_mode_off"),
            skipped_neigh_ipv6_link_local_multicast: Counter ("reason" = "ipv6_link_local_multicast"),
            skipped_neigh_noarp: Counter ("reason" = "noarp"),
            skipped_neigh_mac_none: Counter ("reason" = "mac_none"),
            skipped_neigh_mac_not_ethernet: Counter ("reason" = "mac_not_ethernet"),
            skipped_neigh_broadcast: Counter ("reason" = "broadcast"),
            neigh_before_links: Counter ("reason" = "before_link_dump"),
        }
        "neighbors_vanished_total" counter only neigh
            "Neighbors found gone by a resync dump (their delete event was lost) or with their interface." {
            neighbors_vanished: Counter totals "vanished",
        }
        "neighbors_refused_total" counter only neigh
            "Neighbors not tracked because the neighbor table was full." {
            neighbors_refused: Counter,
        }
        "neighbors_written_total" counter only neigh
            "APPL_DB NEIGH_TABLE sets sent (ProducerStateTable set script)." {
            neighbors_written: Counter totals "written",
        }
        "neighbors_deleted_total" counter only neigh
            "APPL_DB NEIGH_TABLE deletes sent (ProducerStateTable del script), old names' included." {
            neighbors_deleted: Counter totals "deleted",
        }
        "neighbor_config_changes_total" counter only neigh
            "CONFIG_DB changes that alter the rules (dual-ToR, an interface's IPv6 link-local mode), each followed by a dump that applies them to every neighbor." {
            neighbor_config_changes: Counter,
        }
        "warm_reconciled_total" counter only neigh
            "Entries of the warm-restart reconciliation, by SONiC's cache state: new (set), same (kept), stale and delete (deleted)." {
            warm_new: Counter ("state" = "new"),
            warm_same: Counter ("state" = "same"),
            warm_stale: Counter ("state" = "stale"),
            warm_delete: Counter ("state" = "delete"),
        }
        "batches_total" counter
            "Batches written to Redis (one per loop turn with changes)." {
            batches: Counter totals "batches",
        }
        "loop_turns_total" counter
            "Event loop turns (at least one a second while the loop runs)." {
            /// The tick is the housekeeping one, so a value that stops
            /// moving means a stuck loop (`/healthz` says 503).
            loop_turns: Counter,
        }
        "redis_reconnects_total" counter
            "Redis connections re-established after a loss." {
            redis_reconnects: Counter totals "reconnects",
        }
        "redis_error_replies_total" counter
            "Redis error replies to the daemon's commands." {
            redis_error_replies: Counter totals "error_replies",
        }
        "fd_exhausted_total" counter
            "Sockets that could not be opened or accepted for lack of file descriptors (EMFILE, ENFILE); /healthz says 503 while a needed one cannot be opened." {
            /// Process-wide (`fds`), copied by the metrics thread.
            fd_exhausted: Gauge,
        }
        "samples_dropped_total" counter
            "Latency samples dropped because the metrics thread fell behind." {
            samples_dropped: Counter totals "samples_dropped",
        }
        "loop_cpu_seconds_total" counter
            "CPU time used by the loop thread (updated once a second)." {
            /// Held in nanoseconds (a gauge, since it is set, not added to)
            /// and exported in seconds.
            loop_cpu_ns: Gauge (seconds),
        }
        "known_ports" gauge only port "Ports in the port table." {
            known_ports: Gauge,
        }
        "pending_ports" gauge only port
            "Ports with a netdev waiting to be known in APPL_DB PORT_TABLE." {
            pending_ports: Gauge,
        }
        "dirty_ports" gauge only port
            "Ports owing a write that did not fit the Redis write buffer." {
            dirty_ports: Gauge,
        }
        "known_neighbors" gauge only neigh "Neighbors in the neighbor table." {
            known_neighbors: Gauge,
        }
        "dirty_neighbors" gauge only neigh
            "Neighbors owing a write that did not fit the Redis write buffer." {
            dirty_neighbors: Gauge,
        }
        "netlink_rcvbuf_bytes" gauge "Effective netlink receive buffer." {
            /// In bytes.
            rcvbuf_bytes: Gauge,
        }
        "reactor" gauge "The reactor in use (1 for the one in use)." {
            /// 0 epoll, 1 io_uring.
            reactor: Gauge (one_hot "reactor" ["epoll", "io_uring"]),
        }
        "redis_up" gauge "1 while the daemon's main Redis connection is up." {
            /// portsyncd's is STATE_DB, neighsyncd's APPL_DB.
            redis_up: Gauge,
        }
        "log_lines_dropped_total" counter
            "Log lines dropped because the syslog socket's queue was full: the daemon never waits for syslog (the next line through says how many)." {
            /// Process-wide (`runtime::syslog`), copied by the metrics thread.
            log_lines_dropped: Gauge,
        }
        "log_lines_to_stderr_total" counter
            "Log lines written to stderr instead of syslog because the syslog socket was gone (no /dev/log, or the syslog daemon restarting)." {
            /// Process-wide (`runtime::syslog`), copied by the metrics thread.
            log_lines_to_stderr: Gauge,
        }
        "log_syslog_reconnects_total" counter
            "Connections to the syslog socket made again after it went away." {
            /// Process-wide (`runtime::syslog`), copied by the metrics thread.
            log_syslog_reconnects: Gauge,
        }
        "port_change_lines_suppressed_total" counter only port
            "Per-port change lines not logged: more than one a second for a port (the next line says how many)." {
            /// Written by the metrics thread, which writes the lines.
            change_lines_suppressed: Gauge,
        }
    }
}

/// What a latency sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// Netlink receive → the batch holding the change was written (ns).
    RecvToWrite,
    /// Netlink receive → Redis acknowledged the write (ns).
    RecvToReply,
    /// Commands in one written batch.
    BatchSize,
    /// A port's netdev status changed: a [`changes::PortChange`], packed.
    PortChange,
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub kind: SampleKind,
    pub value: u64,
}

/// Samples that can wait in the channel before new ones are dropped.
pub const SAMPLE_CHANNEL_CAPACITY: usize = 1 << 16;

/// The loop's end: counters and a non-blocking sample sender.
#[derive(Clone)]
pub struct Recorder {
    pub counters: Arc<Counters>,
    tx: Sender<Sample>,
}

impl Recorder {
    /// A recorder and the receiving end for the metrics thread.
    pub fn new() -> (Recorder, Receiver<Sample>) {
        Recorder::with_capacity(SAMPLE_CHANNEL_CAPACITY)
    }

    /// [`Recorder::new`] with room for `capacity` samples (24 bytes each,
    /// all allocated and touched up front).
    pub fn with_capacity(capacity: usize) -> (Recorder, Receiver<Sample>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (
            Recorder {
                counters: Arc::new(Counters::default()),
                tx,
            },
            rx,
        )
    }

    /// Keep `since_ns` (a written change's receive stamp) for its
    /// recv → write sample, once the batch is sent; when the batch has more
    /// changes than `written_since` has slots, the sample is counted as
    /// dropped, not lost silently. Never allocates.
    #[inline]
    pub fn note_written(&self, written_since: &mut Vec<u64>, since_ns: u64) {
        if written_since.len() < written_since.capacity() {
            written_since.push(since_ns);
        } else {
            self.counters.samples_dropped.inc();
        }
    }

    /// A batch of `commands` was encoded (none: no batch).
    #[inline]
    pub fn batch_encoded(&self, commands: u64) {
        if commands > 0 {
            self.counters.batches.inc();
            self.record(SampleKind::BatchSize, commands);
        }
    }

    /// The batch went out at `now`: a recv → write sample per stamp kept.
    #[inline]
    pub fn record_written(&self, written_since: &[u64], now: u64) {
        for &since in written_since {
            self.record(SampleKind::RecvToWrite, now.saturating_sub(since));
        }
    }

    /// Hand a sample over; never blocks. A full channel drops it and counts.
    #[inline]
    pub fn record(&self, kind: SampleKind, value: u64) {
        match self.tx.try_send(Sample { kind, value }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.samples_dropped.inc()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::table::{check, CountersTable};
    use super::*;

    #[test]
    fn the_table_can_be_exported() {
        assert_eq!(check::<Counters>(), Ok(()));
        assert_eq!(Counters::ENTRIES.len(), 67);
        let exported_by = |d: Daemon| {
            Counters::ENTRIES
                .iter()
                .filter(|e| d.exports(e.scope))
                .count()
        };
        assert_eq!(exported_by(Daemon::Portsyncd), 44);
        assert_eq!(exported_by(Daemon::Neighsyncd), 55);
    }

    /// The text `log_totals` in src/port/daemon.rs wrote by hand before the
    /// table, word for word (tests/util `total` parses it).
    #[test]
    fn totals_is_the_line_portsyncd_logs() {
        let d = Daemon::Portsyncd;
        let c = Counters::default();
        let fields = [
            &c.datagrams,
            &c.msgs_newlink,
            &c.msgs_dellink,
            &c.malformed,
            &c.enobufs,
            &c.truncations,
            &c.resyncs,
            &c.dump_restarts,
            &c.ports_vanished,
            &c.ports_written,
            &c.ports_deleted,
            &c.batches,
            &c.redis_reconnects,
            &c.redis_error_replies,
            &c.samples_dropped,
        ];
        for (i, f) in fields.iter().enumerate() {
            f.add(100 + i as u64);
        }
        // Not in the line: these must not show up.
        c.msgs_done.add(7);
        c.skipped_team.add(7);
        c.loop_turns.add(7);
        c.known_ports.set(7);
        c.loop_cpu_ns.set(7);
        // neighsyncd's.
        c.msgs_newneigh.add(7);
        c.neighbors_vanished.add(7);
        c.neighbors_written.add(7);
        c.neighbors_deleted.add(7);
        let old = format!(
            "totals: datagrams {} newlink {} dellink {} malformed {} enobufs {} truncations {} resyncs {} dump_restarts {} vanished {} written {} deleted {} batches {} reconnects {} error_replies {} samples_dropped {}",
            c.datagrams.get(),
            c.msgs_newlink.get(),
            c.msgs_dellink.get(),
            c.malformed.get(),
            c.enobufs.get(),
            c.truncations.get(),
            c.resyncs.get(),
            c.dump_restarts.get(),
            c.ports_vanished.get(),
            c.ports_written.get(),
            c.ports_deleted.get(),
            c.batches.get(),
            c.redis_reconnects.get(),
            c.redis_error_replies.get(),
            c.samples_dropped.get()
        );
        assert_eq!(c.totals(d).to_string(), old);
        assert_eq!(
            Counters::default().totals(d).to_string(),
            "totals: datagrams 0 newlink 0 dellink 0 malformed 0 enobufs 0 truncations 0 resyncs 0 dump_restarts 0 vanished 0 written 0 deleted 0 batches 0 reconnects 0 error_replies 0 samples_dropped 0"
        );
    }

    /// portsyncd's line with neighbor messages for link messages and
    /// neighbors for ports (tests/util `total` parses it the same way).
    #[test]
    fn totals_is_the_line_neighsyncd_logs() {
        let c = Counters::default();
        let fields = [
            &c.datagrams,
            &c.msgs_newneigh,
            &c.msgs_delneigh,
            &c.malformed,
            &c.enobufs,
            &c.truncations,
            &c.resyncs,
            &c.dump_restarts,
            &c.neighbors_vanished,
            &c.neighbors_written,
            &c.neighbors_deleted,
            &c.batches,
            &c.redis_reconnects,
            &c.redis_error_replies,
            &c.samples_dropped,
        ];
        for (i, f) in fields.iter().enumerate() {
            f.add(100 + i as u64);
        }
        // portsyncd's: these must not show up.
        c.msgs_newlink.add(7);
        c.msgs_dellink.add(7);
        c.ports_vanished.add(7);
        c.ports_written.add(7);
        c.ports_deleted.add(7);
        assert_eq!(
            c.totals(Daemon::Neighsyncd).to_string(),
            "totals: datagrams 100 newneigh 101 delneigh 102 malformed 103 enobufs 104 truncations 105 resyncs 106 dump_restarts 107 vanished 108 written 109 deleted 110 batches 111 reconnects 112 error_replies 113 samples_dropped 114"
        );
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        let (rec, rx) = Recorder::new();
        for i in 0..SAMPLE_CHANNEL_CAPACITY as u64 + 10 {
            rec.record(SampleKind::BatchSize, i);
        }
        assert_eq!(rec.counters.samples_dropped.get(), 10);
        assert_eq!(rx.len(), SAMPLE_CHANNEL_CAPACITY);
        assert_eq!(rx.try_recv().unwrap().value, 0, "the oldest are kept");
        drop(rx);
        rec.record(SampleKind::BatchSize, 1);
        assert_eq!(
            rec.counters.samples_dropped.get(),
            11,
            "no receiver: dropped"
        );
    }
}
