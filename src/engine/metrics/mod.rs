//! What the loop counts and measures, and how it hands that to the metrics
//! thread without ever waiting or allocating.
//!
//! Counters and gauges are atomics written only by the loop thread (a
//! relaxed load and store, no locked instruction) and read by the metrics
//! thread. Latency samples travel through a bounded `crossbeam-channel`
//! whose slots are preallocated; when it is full the sample is dropped and
//! counted.
//!
//! The metrics thread ([`export`]) owns everything else: the histograms
//! ([`series`]), the Prometheus text ([`render`]) and the HTTP endpoint
//! ([`http`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub mod export;
pub mod http;
pub mod render;
pub mod series;

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

/// Every counter and gauge the daemon exports.
#[derive(Debug, Default)]
pub struct Counters {
    // Netlink messages by type.
    pub msgs_newlink: Counter,
    pub msgs_dellink: Counter,
    pub msgs_done: Counter,
    pub msgs_error: Counter,
    pub msgs_other: Counter,
    /// Datagrams received.
    pub datagrams: Counter,
    /// Messages that could not be parsed (counted and skipped).
    pub malformed: Counter,
    /// `ENOBUFS`: the kernel dropped messages.
    pub enobufs: Counter,
    /// Datagrams larger than the ring, read whole into the overflow buffer.
    pub truncations: Counter,
    /// Dumps started to recover from an overrun.
    pub resyncs: Counter,
    /// Dumps redone because they were interrupted (`NLM_F_DUMP_INTR`) or
    /// overlapped an overrun.
    pub dump_restarts: Counter,
    /// Ports found gone by a resync dump.
    pub ports_vanished: Counter,
    // Messages skipped by SONiC's rules.
    pub skipped_not_port: Counter,
    pub skipped_team: Counter,
    pub skipped_del_with_master: Counter,
    pub skipped_old_interface: Counter,
    /// Port names refused (too long, or the table full).
    pub refused_names: Counter,
    /// STATE_DB writes sent.
    pub ports_written: Counter,
    pub ports_deleted: Counter,
    /// Batches written (one per loop turn with changes).
    pub batches: Counter,
    /// Loop turns: at least one a second (the housekeeping tick), so a
    /// value that stops moving means a stuck loop (`/healthz` says 503).
    pub loop_turns: Counter,
    pub redis_reconnects: Counter,
    pub redis_error_replies: Counter,
    /// Latency samples dropped because the metrics thread fell behind.
    pub samples_dropped: Counter,

    pub known_ports: Gauge,
    /// Ports with a netdev waiting to be known in APPL_DB `PORT_TABLE`.
    pub pending_ports: Gauge,
    /// Ports owing a write that did not fit the Redis write buffer.
    pub dirty_ports: Gauge,
    /// Effective netlink receive buffer in bytes.
    pub rcvbuf_bytes: Gauge,
    /// 0 epoll, 1 io_uring.
    pub reactor: Gauge,
    /// CPU time of the loop thread, nanoseconds.
    pub loop_cpu_ns: Gauge,
    /// 1 while the STATE_DB connection is up.
    pub redis_up: Gauge,
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
        let (tx, rx) = crossbeam_channel::bounded(SAMPLE_CHANNEL_CAPACITY);
        (
            Recorder {
                counters: Arc::new(Counters::default()),
                tx,
            },
            rx,
        )
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
    use super::*;

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
