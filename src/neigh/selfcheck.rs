//! neighsyncd's self-verification (`[verify] interval_s`), one run at a
//! time: a dump of links and neighbors (every neighbor decided again: a
//! change whose event never came is written, a neighbor gone is deleted),
//! then, once every write is acknowledged, a read-back of APPL_DB
//! `NEIGH_TABLE` as orchagent will have it (the table, then the
//! ProducerStateTable's pending deletes and sets). Every entry that
//! differs from what was sent for it is written again; an entry nothing in
//! the kernel stands for is deleted. Entries written after the read was
//! sent are left to the next run.
//!
//! The judgement ([`judge`]) is pure; the reads go out on the APPL_DB
//! session (`session/appl.rs`), whose replies come back here.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::metrics::Counters;
use crate::log_notice;
use crate::neigh::check::{effective, Entry};
use crate::neigh::links::LinkNames;
use crate::neigh::rules::{family_text, ip_text};
use crate::neigh::table::{NeighKey, NeighTable, Sent};
use crate::neigh::text;
use crate::neigh::warm::Snapshot;

/// What the read-back asks, in its first round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `KEYS NEIGH_TABLE:*`.
    Table,
    /// `KEYS _NEIGH_TABLE:*`.
    Staging,
    /// `SMEMBERS NEIGH_TABLE_KEY_SET`.
    Pending,
    /// `SMEMBERS NEIGH_TABLE_DEL_SET`.
    Deleted,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// The dump runs; the read follows once it completed (more neighbor
    /// dumps than this) and everything is acknowledged.
    Dumping {
        dumps_before: u64,
    },
    Settling,
    /// Reads in flight; `since` is the table's write count when sent.
    Reading {
        since: u64,
        pending: usize,
    },
}

/// One verification's reads, as they come back.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub table: Snapshot,
    pub staging: Snapshot,
    pub pending: BTreeSet<Vec<u8>>,
    pub deleted: BTreeSet<Vec<u8>>,
}

/// The verification's state between loop turns.
#[derive(Debug, Default)]
pub struct SelfCheck {
    interval_ns: u64,
    next_ns: u64,
    state: State,
    pub read: ReadBack,
    /// Entries to write again and keys to delete, for the session.
    pub repairs: Repairs,
}

/// What a run found to repair.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Entries whose APPL_DB entry is not what was sent.
    pub rewrite: Vec<NeighKey>,
    /// `<ifname>:<ip>` keys APPL_DB holds and nothing in the kernel wants.
    pub delete: Vec<Vec<u8>>,
}

impl SelfCheck {
    /// Runs every `interval_s` (0: never), the first right after the
    /// initial sync.
    pub fn new(interval_s: u64) -> SelfCheck {
        SelfCheck {
            interval_ns: interval_s * 1_000_000_000,
            ..SelfCheck::default()
        }
    }

    /// When it next wants a turn.
    pub fn next_timer(&self) -> Option<u64> {
        (self.interval_ns > 0 && matches!(self.state, State::Idle)).then_some(self.next_ns)
    }

    /// Start a run when one is due: ask for the dump.
    pub fn on_timer(&mut self, now: u64, dumps: u64, want_dump: impl FnOnce()) {
        if self.interval_ns == 0 || dumps == 0 {
            return;
        }
        if matches!(self.state, State::Idle) && now >= self.next_ns {
            want_dump();
            self.state = State::Dumping {
                dumps_before: dumps,
            };
        }
    }

    /// Whether the reads should go out now (the dump completed and every
    /// write is settled); the caller then sends them and calls
    /// [`reading`](Self::reading).
    pub fn read_due(&mut self, dumps: u64, settled: bool) -> bool {
        if let State::Dumping { dumps_before } = self.state {
            if dumps > dumps_before {
                self.state = State::Settling;
            }
        }
        matches!(self.state, State::Settling) && settled
    }

    /// The reads went out (`lists` first-round commands) at write count
    /// `since`.
    pub fn reading(&mut self, since: u64, lists: usize) {
        self.read = ReadBack::default();
        self.state = State::Reading {
            since,
            pending: lists,
        };
    }

    /// More reads went out (the second round's `HGETALL`s).
    pub fn more_reads(&mut self, n: usize) {
        if let State::Reading { pending, .. } = &mut self.state {
            *pending += n;
        }
    }

    /// One read answered; when it was the last, judge and note the
    /// repairs. Returns true when the run ended.
    pub fn answered(
        &mut self,
        table: &NeighTable,
        links: &LinkNames,
        counters: &Counters,
        now: u64,
    ) -> bool {
        let State::Reading { since, pending } = &mut self.state else {
            return false;
        };
        *pending = pending.saturating_sub(1);
        if *pending > 0 {
            return false;
        }
        let since = *since;
        let read = std::mem::take(&mut self.read);
        let view = effective(read.table, &read.pending, &read.deleted, &read.staging);
        let repairs = judge(table, links, since, &view);
        let n = (repairs.rewrite.len() + repairs.delete.len()) as u64;
        if n > 0 {
            log_notice!(
                "self-verification: APPL_DB NEIGH_TABLE differed for {} neighbors and held {} entries the kernel does not have; repairing",
                repairs.rewrite.len(),
                repairs.delete.len()
            );
            counters.drift_redis.add(n);
        }
        self.repairs = repairs;
        counters.verify_runs.inc();
        self.finish(now);
        true
    }

    /// A read was lost with its connection: this run ends, the next is
    /// due after the interval.
    pub fn abandon(&mut self, now: u64) {
        if matches!(self.state, State::Reading { .. }) {
            self.finish(now);
        }
    }

    fn finish(&mut self, now: u64) {
        self.state = State::Idle;
        self.next_ns = now + self.interval_ns;
    }
}

/// Compare what APPL_DB will hold (`view`) with what was sent for every
/// entry settled at write `since`. Pure.
pub fn judge(
    table: &NeighTable,
    links: &LinkNames,
    since: u64,
    view: &BTreeMap<String, Entry>,
) -> Repairs {
    let mut repairs = Repairs::default();
    // Every key an entry stands for (settled or not): not an extra.
    let mut known: BTreeSet<String> = BTreeSet::new();
    for (key, _) in table.wanted() {
        known.insert(text_key(links, &key));
    }
    for (key, sent) in table.settled_since(since) {
        let k = text_key(links, &key);
        let want = match sent {
            Sent::Set { mac, .. } => Some((
                String::from_utf8_lossy(text::lladdr(Some(&mac)).as_bytes()).into_owned(),
                family_text(key.family).to_string(),
            )),
            Sent::Del { .. } | Sent::Nothing => None,
            Sent::Unknown { .. } => continue,
        };
        if view.get(&k) != want.as_ref() {
            repairs.rewrite.push(key);
        }
    }
    for k in view.keys() {
        if !known.contains(k) {
            repairs.delete.push(k.as_bytes().to_vec());
        }
    }
    repairs
}

fn text_key(links: &LinkNames, key: &NeighKey) -> String {
    format!(
        "{}:{}",
        links.name(key.ifindex),
        String::from_utf8_lossy(ip_text(key.family, &key.addr).as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::neigh::AF_INET;
    use crate::neigh::table::Want;

    fn key(last: u8) -> NeighKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, last]);
        NeighKey {
            ifindex: 5,
            family: AF_INET,
            addr,
        }
    }

    fn entry(mac: &str) -> Entry {
        (mac.to_string(), "IPv4".to_string())
    }

    #[test]
    fn lost_changed_and_foreign_entries_are_repaired_recent_ones_left() {
        let mut links = LinkNames::default();
        links.on_new(5, b"Ethernet0");
        let mut t = NeighTable::default();
        for i in 2..=4 {
            t.apply(key(i), Want::Set([2, 0, 0, 0, 0, i]), 1, &links);
        }
        while t.pop_write(&links).is_some() {}
        let since = t.writes();
        // Written after the read went out: not judged.
        t.apply(key(9), Want::Set([2, 0, 0, 0, 0, 9]), 2, &links);
        t.pop_write(&links);
        let view: BTreeMap<String, Entry> = [
            ("Ethernet0:10.0.0.2".to_string(), entry("02:00:00:00:00:02")),
            // 10.0.0.3 lost, 10.0.0.4 changed behind our back.
            ("Ethernet0:10.0.0.4".to_string(), entry("02:00:00:00:00:ff")),
            ("Ethernet0:10.7.7.7".to_string(), entry("02:00:00:00:00:77")),
        ]
        .into();
        let r = judge(&t, &links, since, &view);
        let mut rewrite = r.rewrite.clone();
        rewrite.sort_by_key(|k| k.addr[3]);
        assert_eq!(rewrite, vec![key(3), key(4)]);
        assert_eq!(r.delete, vec![b"Ethernet0:10.7.7.7".to_vec()]);
    }
}
