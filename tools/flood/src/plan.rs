//! Which changes a phase makes, and the shared record of when each was
//! acked and when its write was seen.
//!
//! Changes go round-robin over the ports. On each port they alternate an
//! MTU change (a value not used on that port for the last 7,600 MTU
//! changes) and an admin toggle, so every (admin, mtu) state a port passes
//! through is distinct and a STATE_DB write showing a state names the one
//! change that produced it, even when several are in flight (burst) or the
//! daemon coalesced some of them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Lowest MTU used; the veth default (1500) is below, so never repeated.
const MTU_LOW: u32 = 1501;
/// MTU values cycled through: 1501..=9100.
const MTU_SPAN: u32 = 7600;

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Admin,
    Mtu,
}

/// One link change and the port state it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub port: u32,
    pub kind: Kind,
    /// Admin state after the change.
    pub admin: bool,
    /// MTU after the change.
    pub mtu: u32,
}

/// Where one port's sequence of changes stands.
#[derive(Debug, Clone, Copy)]
pub struct PortCursor {
    pub admin: bool,
    pub mtu: u32,
    steps: u64,
    mtu_counter: u32,
}

impl PortCursor {
    /// A port whose kernel state is `admin`, `mtu`.
    pub fn new(admin: bool, mtu: u32) -> PortCursor {
        PortCursor {
            admin,
            mtu,
            steps: 0,
            mtu_counter: 0,
        }
    }

    fn next(&mut self, port: u32) -> Change {
        let kind = if self.steps % 2 == 0 {
            Kind::Mtu
        } else {
            Kind::Admin
        };
        self.steps += 1;
        match kind {
            Kind::Mtu => loop {
                let mtu = MTU_LOW + self.mtu_counter % MTU_SPAN;
                self.mtu_counter = self.mtu_counter.wrapping_add(1);
                // Setting the MTU it already has makes no event: skip it.
                if mtu != self.mtu {
                    self.mtu = mtu;
                    break;
                }
            },
            Kind::Admin => self.admin = !self.admin,
        }
        Change {
            port,
            kind,
            admin: self.admin,
            mtu: self.mtu,
        }
    }
}

/// The changes of one phase, and what happened to each. Written by the
/// driver (`sent`, `ack_ns`) and the watcher (`done_ns`, counters), without
/// locks.
pub struct Phase {
    pub changes: Vec<Change>,
    /// Indices into `changes`, per port, in order.
    pub per_port: Vec<Vec<u32>>,
    /// How many changes have been (or are being) sent: the watcher matches
    /// writes only against these.
    pub sent: AtomicUsize,
    /// Monotonic time just before each change's request was sent.
    pub send_ns: Vec<AtomicU64>,
    /// Monotonic time of each change's ack; 0 until acked.
    pub ack_ns: Vec<AtomicU64>,
    /// Monotonic time the write showing it (or a later change of its port)
    /// was notified; 0 until then.
    pub done_ns: Vec<AtomicU64>,
    /// Changes overtaken by a later change of their port before a write
    /// showed them (complete with that later write).
    pub coalesced: AtomicU64,
    /// Writes that completed at least one change.
    pub matched_writes: AtomicU64,
    /// Writes that showed no outstanding change (second write of an
    /// admin-up, with RUNNING; rewrites).
    pub other_writes: AtomicU64,
    /// Writes whose read-back already showed a change sent after the write
    /// was notified (a later write overtook the read): they complete
    /// nothing; the later write's own notification does.
    pub overtaken_reads: AtomicU64,
}

impl Phase {
    /// `n` changes over `ports`, continuing each port's sequence.
    pub fn new(n: usize, ports: &mut [PortCursor]) -> Phase {
        let mut changes = Vec::with_capacity(n);
        let mut per_port = vec![Vec::new(); ports.len()];
        for i in 0..n {
            let p = i % ports.len();
            per_port[p].push(i as u32);
            changes.push(ports[p].next(p as u32));
        }
        Phase {
            changes,
            per_port,
            sent: AtomicUsize::new(0),
            send_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ack_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            done_ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
            coalesced: AtomicU64::new(0),
            matched_writes: AtomicU64::new(0),
            other_writes: AtomicU64::new(0),
            overtaken_reads: AtomicU64::new(0),
        }
    }

    /// Record that change `i` is about to be sent (before its request).
    pub fn sending(&self, i: usize, now_ns: u64) {
        self.send_ns[i].store(now_ns, Ordering::Relaxed);
        self.sent.store(i + 1, Ordering::Release);
    }

    /// A write of `port` showing (`admin`, `mtu`) was notified at `at_ns`:
    /// complete the change it shows and every earlier one of that port.
    /// `cursor` is the port's first incomplete change (index into
    /// `per_port[port]`), kept by the caller. The state is read after the
    /// notification, so it may show a later write: a change sent after
    /// `at_ns` cannot have been in the notified write, and then nothing is
    /// completed (the later write's own notification will).
    pub fn on_write(&self, port: u32, admin: bool, mtu: u32, at_ns: u64, cursor: &mut usize) {
        let Some(list) = self.per_port.get(port as usize) else {
            return;
        };
        let sent = self.sent.load(Ordering::Acquire);
        let mut j = *cursor;
        while let Some(&idx) = list.get(j) {
            if idx as usize >= sent {
                break;
            }
            let c = &self.changes[idx as usize];
            if c.admin == admin && c.mtu == mtu {
                if self.send_ns[idx as usize].load(Ordering::Relaxed) >= at_ns {
                    self.overtaken_reads.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                for &k in &list[*cursor..=j] {
                    self.done_ns[k as usize].store(at_ns, Ordering::Release);
                }
                self.coalesced
                    .fetch_add((j - *cursor) as u64, Ordering::Relaxed);
                self.matched_writes.fetch_add(1, Ordering::Relaxed);
                *cursor = j + 1;
                return;
            }
            j += 1;
        }
        self.other_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether change `i`'s write has been seen.
    pub fn done(&self, i: usize) -> bool {
        self.done_ns[i].load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_of_a_port_are_distinct() {
        let mut ports = vec![PortCursor::new(false, 1500); 2];
        let phase = Phase::new(4 * MTU_SPAN as usize, &mut ports);
        let mut seen = std::collections::HashSet::new();
        for &i in &phase.per_port[0] {
            let c = phase.changes[i as usize];
            assert!(seen.insert((c.admin, c.mtu)), "{c:?} repeats");
        }
        assert_eq!(phase.changes[0].kind, Kind::Mtu);
        assert_eq!(phase.changes[2].kind, Kind::Admin);
        assert!(phase.changes[2].admin);
    }

    #[test]
    fn a_write_completes_its_change_and_the_ones_it_overtook() {
        let mut ports = vec![PortCursor::new(false, 1500)];
        let phase = Phase::new(4, &mut ports);
        for i in 0..4 {
            phase.sending(i, 10 + i as u64);
        }
        let mut cursor = 0;
        // Shows change 2 (mtu 1502, admin down): 0 and 1 are overtaken.
        let c2 = phase.changes[2];
        phase.on_write(0, c2.admin, c2.mtu, 100, &mut cursor);
        assert_eq!(cursor, 3);
        assert!(phase.done(0) && phase.done(1) && phase.done(2) && !phase.done(3));
        assert_eq!(phase.coalesced.load(Ordering::Relaxed), 2);
        // The same state again (a RUNNING update): no change completed.
        phase.on_write(0, c2.admin, c2.mtu, 200, &mut cursor);
        assert_eq!(phase.other_writes.load(Ordering::Relaxed), 1);
        assert_eq!(phase.done_ns[2].load(Ordering::Relaxed), 100);
    }

    #[test]
    fn unsent_changes_are_never_matched() {
        let mut ports = vec![PortCursor::new(false, 1500)];
        let phase = Phase::new(2, &mut ports);
        phase.sending(0, 1);
        let mut cursor = 0;
        let c1 = phase.changes[1];
        phase.on_write(0, c1.admin, c1.mtu, 5, &mut cursor);
        assert!(!phase.done(1));
        assert_eq!(cursor, 0);
    }

    #[test]
    fn a_read_overtaken_by_a_later_change_completes_nothing() {
        let mut ports = vec![PortCursor::new(false, 1500)];
        let phase = Phase::new(2, &mut ports);
        phase.sending(0, 10);
        phase.sending(1, 20);
        let mut cursor = 0;
        // Notified at 15, but the hash already shows change 1 (sent at 20).
        let c1 = phase.changes[1];
        phase.on_write(0, c1.admin, c1.mtu, 15, &mut cursor);
        assert!(!phase.done(0) && !phase.done(1));
        assert_eq!(phase.overtaken_reads.load(Ordering::Relaxed), 1);
        phase.on_write(0, c1.admin, c1.mtu, 25, &mut cursor);
        assert!(phase.done(0) && phase.done(1));
    }
}
