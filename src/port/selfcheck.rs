//! Self-verification (anti-entropy): right after start-up and then every
//! `verify.interval_s`, portsyncd checks that STATE_DB holds what it owes,
//! without blocking the loop:
//!
//! 1. **Dump**: a complete dump of the kernel's links (the engine's dump
//!    state machine). It rewrites every port, and a port the dump does not
//!    report is gone: deleted, counted as drift from the kernel.
//! 2. **Settle**: wait until every write owed is acknowledged, so what is
//!    read back is what the daemon last wrote.
//! 3. **Read back**, pipelined on the loop's connections: `HMGET` of the
//!    four fields of every port it owns, `KEYS PORT_TABLE|*` for entries
//!    with no netdev behind them, and `EXISTS` in APPL_DB `PORT_TABLE` for
//!    every port it writes (a port removed there is noticed even with
//!    keyspace notifications off).
//! 4. **Repair**: a field lost or changed behind the daemon's back (another
//!    writer's `HSET`, a `FLUSHDB`) is written again with the same `HSET`
//!    an event makes — only its own four fields, another writer's fields in
//!    the hash stay; an entry for a netdev that is gone (deleted while the
//!    daemon was down, renamed) loses its four fields (`HDEL`: a hash left
//!    empty is gone; orchagent's fields in it stay). Each repair is logged once per
//!    port at NOTICE and counted by source: the kernel (a netdev gone
//!    without its event reaching the daemon) or Redis (its fields lost or
//!    changed there).
//!
//! The cycle is driven by the port syncer: timers, the turn's writes and
//! the replies; this type holds only its phase and counts.

use crate::engine::metrics::Counters;
use crate::engine::redis::reply::Reply;
use crate::engine::runtime::repeat::cut;
use crate::port::follow::LinkSync;
use crate::port::rules::LinkStatus;
use crate::port::table::{PortId, PortName, PortTable};
use crate::port::verify::{show, Field};
use crate::{log_info, log_notice};

/// Bytes of a value quoted in a log line.
const MAX_QUOTE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Off,
    /// The next run starts at this instant.
    Waiting {
        at_ns: u64,
    },
    /// A dump was asked for; done once more dumps completed than `before`.
    Dumping {
        before: u64,
        vanished_before: u64,
    },
    /// Waiting for the writes owed to be acknowledged.
    Settling,
    /// Read-back commands in flight.
    Reading {
        outstanding: usize,
    },
}

/// The self-verification cycle.
#[derive(Debug)]
pub struct SelfCheck {
    interval_ns: u64,
    phase: Phase,
    /// Repairs of the run in progress, for its summary line.
    repaired: u64,
    /// Entries with no netdev behind them, whose four fields are owed an
    /// `HDEL` (another writer's fields in the hash stay).
    stale: Vec<PortName>,
}

impl SelfCheck {
    /// A cycle every `interval_s` seconds (0: never), the first due at
    /// `first_ns` (right after start-up).
    pub fn new(interval_s: u64, first_ns: u64) -> SelfCheck {
        SelfCheck {
            interval_ns: interval_s * 1_000_000_000,
            phase: if interval_s == 0 {
                Phase::Off
            } else {
                Phase::Waiting { at_ns: first_ns }
            },
            repaired: 0,
            stale: Vec::new(),
        }
    }

    /// The stale entries found, to remove our fields from (taken once).
    pub fn take_stale(&mut self) -> Vec<PortName> {
        std::mem::take(&mut self.stale)
    }

    /// When the cycle next wants a turn by itself, if it waits for a time.
    pub fn next_timer(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { at_ns } => Some(at_ns),
            _ => None,
        }
    }

    /// Start a run when due; notice the end of its dump.
    pub fn on_timer(&mut self, now_ns: u64, sync: &mut LinkSync, counters: &Counters) {
        match self.phase {
            Phase::Waiting { at_ns } if now_ns >= at_ns => {
                sync.want_dump();
                self.repaired = 0;
                self.phase = Phase::Dumping {
                    before: sync.dumps_completed(),
                    vanished_before: counters.ports_vanished.get(),
                };
            }
            Phase::Dumping {
                before,
                vanished_before,
            } if sync.dumps_completed() > before => {
                let gone = counters.ports_vanished.get() - vanished_before;
                if gone > 0 {
                    counters.drift_kernel.add(gone);
                    self.repaired += gone;
                    log_notice!("self-verification: {gone} ports had no netdev any more; deleted");
                }
                self.phase = Phase::Settling;
            }
            _ => {}
        }
    }

    /// Whether the read-back should be queued now: the dump is done and
    /// `settled` (every write owed was acknowledged).
    pub fn read_due(&self, settled: bool) -> bool {
        self.phase == Phase::Settling && settled
    }

    /// The read-back of `commands` commands was queued.
    pub fn reading(&mut self, commands: usize) {
        self.phase = Phase::Reading {
            outstanding: commands,
        };
    }

    /// A connection carrying read-back commands was lost: give this run up
    /// and try again at the next interval.
    pub fn abandon(&mut self, now_ns: u64) {
        if matches!(self.phase, Phase::Reading { .. } | Phase::Settling) {
            self.phase = Phase::Waiting {
                at_ns: now_ns + self.interval_ns,
            };
        }
    }

    /// The reply to `HMGET PORT_TABLE|<port> state netdev_oper_status
    /// admin_status mtu`, read back while the table said `expected`.
    pub fn on_fields(
        &mut self,
        port: PortId,
        expected: LinkStatus,
        reply: &Reply<'_>,
        ports: &mut PortTable,
        counters: &Counters,
        now_ns: u64,
    ) {
        // An error reply (BUSY, LOADING, …) tells nothing about the entry:
        // no repair; the next run reads it again.
        if reply.error().is_some() {
            return self.answered(now_ns, counters);
        }
        if let Some(diff) = difference(expected, reply) {
            counters.drift_redis.inc();
            self.repaired += 1;
            log_notice!(
                "self-verification: STATE_DB PORT_TABLE|{} {diff}; written again",
                ports.get(port).name
            );
            ports.rewrite(port, now_ns);
        }
        self.answered(now_ns, counters);
    }

    /// The reply to `KEYS PORT_TABLE|*` (`prefix` is `PORT_TABLE|`).
    pub fn on_keys(
        &mut self,
        prefix: &[u8],
        reply: &Reply<'_>,
        ports: &PortTable,
        counters: &Counters,
        now_ns: u64,
    ) {
        if let Reply::Array(keys) = reply {
            for key in keys {
                let Some(name) = key.as_bytes().and_then(|k| k.strip_prefix(prefix)) else {
                    continue;
                };
                if !ports.is_stale_entry(name) {
                    continue;
                }
                let Some(name) = PortName::new(name) else {
                    continue;
                };
                counters.drift_kernel.inc();
                self.repaired += 1;
                log_notice!(
                    "self-verification: STATE_DB PORT_TABLE|{name} has no netdev behind it; its fields removed"
                );
                self.stale.push(name);
            }
        }
        self.answered(now_ns, counters);
    }

    /// One read-back reply handled; the run ends with the last.
    fn answered(&mut self, now_ns: u64, counters: &Counters) {
        let Phase::Reading { outstanding } = &mut self.phase else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        if *outstanding == 0 {
            counters.verify_runs.inc();
            log_info!(
                "self-verification done: {} differences repaired",
                self.repaired
            );
            self.phase = Phase::Waiting {
                at_ns: now_ns + self.interval_ns,
            };
        }
    }
}

/// What differs between the four fields portsyncd writes for `expected`
/// and an `HMGET` of them (in [`Field::ALL`] order), in words; `None` when
/// they match.
pub fn difference(expected: LinkStatus, reply: &Reply<'_>) -> Option<String> {
    let Reply::Array(got) = reply else {
        return Some(format!(
            "read back as {}",
            cut(&format!("{reply:?}"), MAX_QUOTE)
        ));
    };
    let wrong: Vec<String> = Field::ALL
        .iter()
        .enumerate()
        .filter_map(|(i, field)| {
            let want = field.expected(&expected);
            let have = got.get(i).and_then(|r| r.as_bytes());
            let name = field.name();
            (have != Some(want.as_bytes())).then(|| match have {
                None => format!("{name} missing (kernel: {want})"),
                Some(h) => format!("{name} {} (kernel: {want})", cut(&show(h), MAX_QUOTE)),
            })
        })
        .collect();
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: LinkStatus = LinkStatus {
        admin_up: true,
        oper_up: true,
        mtu: 9100,
    };

    #[test]
    fn the_four_fields_are_compared_and_differences_named() {
        let ok = Reply::Array(vec![
            Reply::Bulk(b"ok"),
            Reply::Bulk(b"up"),
            Reply::Bulk(b"up"),
            Reply::Bulk(b"9100"),
        ]);
        assert_eq!(difference(UP, &ok), None);
        let changed = Reply::Array(vec![
            Reply::Bulk(b"ok"),
            Reply::Bulk(b"up"),
            Reply::Bulk(b"down"),
            Reply::Nil,
        ]);
        assert_eq!(
            difference(UP, &changed).unwrap(),
            "admin_status down (kernel: up), mtu missing (kernel: 9100)"
        );
        let gone = Reply::Array(vec![Reply::Nil, Reply::Nil, Reply::Nil, Reply::Nil]);
        assert!(difference(UP, &gone).unwrap().starts_with("state missing"));
        assert!(difference(UP, &Reply::Error(b"ERR x")).is_some());
    }

    #[test]
    fn a_run_waits_for_its_dump_then_for_the_writes_then_reads() {
        let counters = Counters::default();
        let mut sync = LinkSync::new(PortTable::default(), std::sync::Arc::default());
        let mut c = SelfCheck::new(60, 5);
        assert_eq!(c.next_timer(), Some(5));
        c.on_timer(4, &mut sync, &counters);
        assert!(!sync.dump_wanted(), "not before it is due");
        c.on_timer(5, &mut sync, &counters);
        assert!(sync.dump_wanted(), "a run starts with a dump");
        assert!(!c.read_due(true), "not before the dump completes");
        sync.dump_started(1, 5);
        let done = crate::engine::netlink::parse::NLMSG_DONE;
        let mut msg = vec![0u8; 20];
        msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&done.to_ne_bytes());
        msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
        msg[12..16].copy_from_slice(&9u32.to_ne_bytes());
        sync.on_datagram(&msg, 6, 9);
        c.on_timer(6, &mut sync, &counters);
        assert!(!c.read_due(false), "writes still owed");
        assert!(c.read_due(true));
        c.reading(1);
        let ports = PortTable::default();
        let stale = Reply::Array(vec![
            Reply::Bulk(b"PORT_TABLE|Ethernet7"),
            Reply::Bulk(b"x"),
        ]);
        c.on_keys(b"PORT_TABLE|", &stale, &ports, &counters, 7);
        assert_eq!(
            c.take_stale().len(),
            1,
            "Ethernet7 has no netdev; x is no port"
        );
        assert_eq!(counters.drift_kernel.get(), 1);
        assert_eq!(counters.verify_runs.get(), 1);
        assert_eq!(c.next_timer(), Some(7 + 60_000_000_000));
        assert_eq!(SelfCheck::new(0, 5).next_timer(), None, "0 turns it off");
    }
}
