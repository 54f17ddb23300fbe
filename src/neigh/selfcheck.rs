//! neighsyncd's self-verification (`[verify] interval_s`), one run at a
//! time: a dump of links and neighbors (every neighbor decided again: a
//! change whose event never came is written, a neighbor gone is deleted),
//! then, once every write is acknowledged, a read-back of APPL_DB
//! `NEIGH_TABLE`:
//!
//! 1. `SCARD NEIGH_TABLE_KEY_SET`: how many keys orchagent has not
//!    consumed yet; more than [`PENDING_MAX`] and the run is put off to the
//!    next interval (orchagent is behind: nothing can be judged);
//! 2. `SMEMBERS NEIGH_TABLE_KEY_SET`: those keys, in transit, left alone;
//! 3. `SCAN … MATCH NEIGH_TABLE:* COUNT 1000`, step by step, each step
//!    judged as its reply is read: a key no entry of the table stands for
//!    is deleted;
//! 4. `HMGET NEIGH_TABLE:<key> neigh family` of every entry settled when
//!    the read began, a few thousand per loop turn (as the write buffer
//!    has room), each answer judged as it comes: an entry that differs
//!    from what was sent is written again.
//!
//! Nothing is copied out of Redis' answers, and no answer is large: at 64k
//! neighbors a run holds the keys in transit and two cursors, not the
//! table. The judgements are
//! pure functions here; the reads go out on the APPL_DB session
//! (`session/appl.rs`), whose replies come back here.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::engine::metrics::Counters;
use crate::engine::netlink::neigh::{AF_INET, AF_INET6};
use crate::log_notice;
use crate::neigh::links::{IfName, LinkNames};
use crate::neigh::rules::family_text;
#[cfg(test)]
use crate::neigh::table::Want;
use crate::neigh::table::{NeighKey, NeighTable, Sent, Slot};
use crate::neigh::text;

/// Keys in transit above which a run is put off.
pub const PENDING_MAX: u64 = 4096;

/// The next read-back command the session should send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextRead {
    /// `SMEMBERS NEIGH_TABLE_KEY_SET`.
    Members,
    /// `SCAN <cursor> MATCH NEIGH_TABLE:* COUNT 1000`.
    Scan(Vec<u8>),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    /// The dump runs; the read follows once it completed (more neighbor
    /// dumps than this) and everything is acknowledged.
    Dumping {
        dumps_before: u64,
    },
    Settling,
    /// Reads out; `since` is the table's write count when they began,
    /// `listed` once the SCAN is done, `cursor` the next slot to ask
    /// about, `waiting` the answers due.
    Reading {
        since: u64,
        listed: bool,
        cursor: Slot,
        waiting: usize,
    },
}

/// The verification's state between loop turns.
#[derive(Debug, Default)]
pub struct SelfCheck {
    interval_ns: u64,
    next_ns: u64,
    state: State,
    /// Keys orchagent has yet to consume (left alone this run).
    pending: HashSet<Vec<u8>>,
    /// Interface name → ifindex, for reading keys back.
    names: HashMap<IfName, i32>,
    /// Entries to write again and keys to delete, for the session.
    pub repairs: Repairs,
    /// What this run found (the repairs are taken as they come).
    found_rewrite: usize,
    found_delete: usize,
    /// The next list read to send (the session takes it).
    pub next: Option<NextRead>,
}

/// What a run found to repair, taken by the daemon each turn.
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
        (self.interval_ns > 0 && self.state == State::Idle).then_some(self.next_ns)
    }

    /// Start a run when one is due: ask for the dump.
    pub fn on_timer(&mut self, now: u64, dumps: u64, want_dump: impl FnOnce()) {
        if self.interval_ns == 0 || dumps == 0 {
            return;
        }
        if self.state == State::Idle && now >= self.next_ns {
            want_dump();
            self.state = State::Dumping {
                dumps_before: dumps,
            };
        }
    }

    /// Whether the first reads should go out now (the dump completed and
    /// every write is settled); the caller then sends them and calls
    /// [`reading`](Self::reading).
    pub fn read_due(&mut self, dumps: u64, settled: bool) -> bool {
        if let State::Dumping { dumps_before } = self.state {
            if dumps > dumps_before {
                self.state = State::Settling;
            }
        }
        self.state == State::Settling && settled
    }

    /// The first read (`SCARD`) went out at write count `since`.
    pub fn reading(&mut self, since: u64, links: &LinkNames) {
        self.pending.clear();
        self.names = links.by_name();
        self.found_rewrite = 0;
        self.found_delete = 0;
        self.next = None;
        self.state = State::Reading {
            since,
            listed: false,
            cursor: 0,
            waiting: 1,
        };
    }

    /// A list read was sent.
    pub fn sent_list(&mut self) {
        if let State::Reading { waiting, .. } = &mut self.state {
            *waiting += 1;
        }
    }

    /// `SCARD` answered: too many keys in transit puts the run off.
    pub fn on_count(&mut self, n: u64, now: u64) {
        if n > PENDING_MAX {
            crate::log_info!(
                "self-verification put off: orchagent has {n} NEIGH_TABLE keys to consume"
            );
            self.finish(now);
        } else {
            self.next = Some(NextRead::Members);
        }
    }

    /// The keys in transit (`SMEMBERS`); the scan follows.
    pub fn on_pending(&mut self, keys: impl Iterator<Item = Vec<u8>>) {
        self.pending.extend(keys);
        self.next = Some(NextRead::Scan(b"0".to_vec()));
    }

    /// One `SCAN` step answered: its next cursor (`0`: the scan is done).
    pub fn on_scan_cursor(&mut self, cursor: &[u8]) {
        if cursor == b"0" {
            if let State::Reading { listed, .. } = &mut self.state {
                *listed = true;
            }
        } else {
            self.next = Some(NextRead::Scan(cursor.to_vec()));
        }
    }

    /// A `SCAN` step's keys (without the prefix): each one no entry
    /// stands for is to be deleted.
    pub fn on_keys<'a>(&mut self, keys: impl Iterator<Item = &'a [u8]>, table: &NeighTable) {
        for key in keys {
            if self.pending.contains(key) {
                continue;
            }
            let stands = parse_key(key, &self.names)
                .and_then(|k| table.sent(&k))
                .is_some_and(|sent| !matches!(sent, Sent::Del { .. }));
            if !stands {
                self.repairs.delete.push(key.to_vec());
                self.found_delete += 1;
            }
        }
    }

    /// The next entries to read back, at most `room` of them: each with
    /// its slot and generation (for the answer) and its text key.
    pub fn next_reads(
        &mut self,
        table: &NeighTable,
        room: usize,
        mut read: impl FnMut(Slot, u32, &NeighKey),
    ) {
        let State::Reading {
            since,
            listed: true,
            cursor,
            waiting,
        } = &mut self.state
        else {
            return;
        };
        let mut sent = 0;
        while sent < room {
            let Some((slot, generation, key)) = table.settled_at(cursor, *since) else {
                break;
            };
            read(slot, generation, &key);
            *waiting += 1;
            sent += 1;
        }
    }

    /// One `HMGET` answered (`neigh`, `family`) for `slot` at `generation`.
    pub fn on_entry(
        &mut self,
        slot: Slot,
        generation: u32,
        neigh: Option<&[u8]>,
        family: Option<&[u8]>,
        table: &NeighTable,
        links: &LinkNames,
    ) {
        let Some((key, sent)) = table.entry_at(slot, generation) else {
            return;
        };
        let text_key = key_text(links, &key);
        if self.pending.contains(text_key.as_slice()) {
            return;
        }
        let wanted = match sent {
            Sent::Set { mac, .. } => Some((
                text::lladdr(Some(&mac)).as_bytes().to_vec(),
                family_text(key.family).as_bytes(),
            )),
            Sent::Del { .. } | Sent::Nothing => None,
            Sent::Unknown { .. } => return,
        };
        let held = neigh.zip(family);
        let same = match (&wanted, held) {
            (Some((m, f)), Some((hm, hf))) => m.as_slice() == hm && *f == hf,
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.repairs.rewrite.push(key);
            self.found_rewrite += 1;
        }
    }

    /// An answer of this run came back: when it was the last and every
    /// entry was asked about, the run ends. True when it ended.
    pub fn answered(&mut self, table: &NeighTable, counters: &Counters, now: u64) -> bool {
        if let State::Reading { waiting, .. } = &mut self.state {
            *waiting = waiting.saturating_sub(1);
        }
        self.finish_if_done(table, counters, now)
    }

    /// End the run if every entry was asked about and answered.
    pub fn finish_if_done(&mut self, table: &NeighTable, counters: &Counters, now: u64) -> bool {
        let State::Reading {
            listed,
            cursor,
            waiting,
            ..
        } = self.state
        else {
            return false;
        };
        if !listed || waiting > 0 || (cursor as usize) < table.slots() {
            return false;
        }
        let found = self.found_rewrite + self.found_delete;
        if found > 0 {
            log_notice!(
                "self-verification: APPL_DB NEIGH_TABLE differed for {} neighbors and held {} entries the kernel does not have; repaired",
                self.found_rewrite,
                self.found_delete
            );
            counters.drift_redis.add(found as u64);
        }
        counters.verify_runs.inc();
        self.finish(now);
        true
    }

    /// Whether a read-back is under way (the session sends its reads).
    pub fn is_reading(&self) -> bool {
        matches!(self.state, State::Reading { .. })
    }

    /// A read was lost with its connection: this run ends, the next is
    /// due after the interval.
    pub fn abandon(&mut self, now: u64) {
        if self.is_reading() {
            self.finish(now);
        }
    }

    fn finish(&mut self, now: u64) {
        self.state = State::Idle;
        self.next = None;
        self.pending = HashSet::new();
        self.names = HashMap::new();
        self.next_ns = now + self.interval_ns;
    }
}

/// `<ifname>:<ip>` of `key` under its interface's current name.
pub fn key_text(links: &LinkNames, key: &NeighKey) -> Vec<u8> {
    let ip = crate::neigh::rules::ip_text(key.family, &key.addr);
    [links.name(key.ifindex).as_bytes(), b":", ip.as_bytes()].concat()
}

/// The table key a `<ifname>:<ip>` text stands for, if the interface is
/// known and the address reads as SONiC writes addresses.
pub fn parse_key(text: &[u8], names: &HashMap<IfName, i32>) -> Option<NeighKey> {
    let colon = text.iter().position(|&b| b == b':')?;
    let ifindex = *names.get(&IfName::new(&text[..colon])?)?;
    let ip: IpAddr = std::str::from_utf8(&text[colon + 1..]).ok()?.parse().ok()?;
    let mut addr = [0u8; 16];
    let family = match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            AF_INET
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            AF_INET6
        }
    };
    Some(NeighKey {
        ifindex,
        family,
        addr,
    })
}

/// Whether `want` is what a set would write (for tests).
#[cfg(test)]
fn wants_set(want: Want) -> bool {
    matches!(want, Want::Set(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8) -> NeighKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, last]);
        NeighKey {
            ifindex: 5,
            family: AF_INET,
            addr,
        }
    }

    fn setup() -> (NeighTable, LinkNames) {
        let mut links = LinkNames::default();
        links.on_new(5, b"Ethernet0");
        let mut t = NeighTable::default();
        for i in 2..=4 {
            t.apply(key(i), Want::Set([2, 0, 0, 0, 0, i]), 1, &links);
        }
        while t.pop_write(&links).is_some() {}
        (t, links)
    }

    #[test]
    fn keys_read_back_as_the_table_keys_them() {
        let (_, links) = setup();
        let names = links.by_name();
        assert_eq!(parse_key(b"Ethernet0:10.0.0.3", &names), Some(key(3)));
        let v6 = parse_key(b"Ethernet0:2001:db8::2", &names).unwrap();
        assert_eq!((v6.family, v6.addr[15]), (AF_INET6, 2));
        assert_eq!(parse_key(b"Ethernet9:10.0.0.3", &names), None);
        assert_eq!(parse_key(b"Ethernet0:nonsense", &names), None);
        assert_eq!(parse_key(b"nocolon", &names), None);
    }

    #[test]
    fn lost_changed_and_foreign_entries_are_repaired_recent_and_pending_left() {
        let (mut t, links) = setup();
        let mut c = SelfCheck::new(60);
        c.reading(t.writes(), &links);
        c.on_count(1, 0);
        assert_eq!(c.next.take(), Some(NextRead::Members));
        // Written after the read began: not judged.
        t.apply(key(9), Want::Set([2, 0, 0, 0, 0, 9]), 2, &links);
        t.pop_write(&links);
        c.on_pending([b"Ethernet0:10.0.0.2".to_vec()].into_iter());
        assert_eq!(c.next.take(), Some(NextRead::Scan(b"0".to_vec())));
        let listed: [&[u8]; 3] = [
            b"Ethernet0:10.0.0.2",
            b"Ethernet0:10.0.0.4",
            b"Ethernet0:10.7.7.7",
        ];
        c.on_keys(listed.into_iter(), &t);
        let mut asked = Vec::new();
        c.next_reads(&t, 100, |slot, generation, k| {
            asked.push((slot, generation, *k))
        });
        assert!(asked.is_empty(), "entries are read once the scan is done");
        c.on_scan_cursor(b"0");
        c.next_reads(&t, 100, |slot, generation, k| {
            asked.push((slot, generation, *k))
        });
        assert_eq!(asked.len(), 3, "the settled entries, not 10.0.0.9");
        for (slot, generation, k) in asked {
            let (neigh, family): (Option<&[u8]>, Option<&[u8]>) = match k.addr[3] {
                // Pending: whatever it holds is left alone.
                2 => (None, None),
                // Lost.
                3 => (None, None),
                // Changed behind our back.
                _ => (Some(b"02:00:00:00:00:ff"), Some(b"IPv4")),
            };
            c.on_entry(slot, generation, neigh, family, &t, &links);
        }
        let mut rewrite = c.repairs.rewrite.clone();
        rewrite.sort_by_key(|k| k.addr[3]);
        assert_eq!(rewrite, vec![key(3), key(4)]);
        assert_eq!(c.repairs.delete, vec![b"Ethernet0:10.7.7.7".to_vec()]);
        assert!(wants_set(Want::Set([0; 6])));
    }

    #[test]
    fn a_run_is_put_off_while_orchagent_is_far_behind() {
        let mut c = SelfCheck::new(60);
        c.reading(0, &LinkNames::default());
        c.on_count(PENDING_MAX + 1, 5);
        assert_eq!(c.next, None);
        assert!(!c.is_reading());
        assert_eq!(c.next_timer(), Some(5 + 60_000_000_000));
    }
}
