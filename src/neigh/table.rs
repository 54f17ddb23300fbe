//! What neighsyncd owes APPL_DB `NEIGH_TABLE`, neighbor by neighbor.
//!
//! Each neighbor the rules decided about has an entry: what the kernel
//! wants for it now (a set with its MAC, or a delete) and what was last
//! sent to Redis (and under which interface name). An entry whose wish
//! differs from what was sent is queued once; the writer takes the queue
//! each loop turn, so a neighbor that changed ten times in a turn is
//! written once, with its latest state. A set equal to what was sent is not
//! sent again (SONiC's daemon re-sends it and orchagent ignores it).
//!
//! Reconciliation: during a dump every entry the dump or an event touches
//! is marked; when the dump completes, a neighbor sent as present and not
//! touched is gone from the kernel and is deleted. A deleted interface
//! deletes its neighbors. An entry whose delete Redis acknowledged is
//! forgotten, so the table holds what the kernel has plus what is in
//! flight.
//!
//! Names: an entry only ever holds something in Redis under its
//! interface's current name. A rename (or a refused write under a name no
//! longer current) moves the old key to a queue of its own, `stale`: those
//! deletes go out first in every batch, each retried until acknowledged,
//! and are dropped when the name became current again (the entry then owns
//! that key). So one write is always one command.
//!
//! No I/O; the follower feeds it decisions, the APPL_DB session takes its
//! writes and hands back the replies.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::neigh::links::{IfName, LinkNames};

/// Entries at most; a neighbor beyond it is refused and counted (the
/// kernel's own `gc_thresh3` is far below on any real switch).
pub const MAX_NEIGHBORS: usize = 1 << 20;

/// A neighbor as the kernel keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighKey {
    pub ifindex: i32,
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// The address; IPv4 in the first four bytes, the rest zero.
    pub addr: [u8; 16],
}

/// What the kernel wants for a neighbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Present with this MAC (zero for dual-ToR's unresolved neighbors).
    Set([u8; 6]),
    Del,
}

/// What was last sent to Redis for a neighbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Nothing known to be there (never sent).
    Nothing,
    /// Something may be there under this name (a write refused, or Redis
    /// reconnected): the current state is owed, under the current name.
    Unknown {
        name: IfName,
    },
    Set {
        mac: [u8; 6],
        name: IfName,
    },
    Del {
        name: IfName,
    },
}

impl Sent {
    /// The name it was sent under.
    fn name(self) -> Option<IfName> {
        match self {
            Sent::Nothing => None,
            Sent::Unknown { name } | Sent::Set { name, .. } | Sent::Del { name } => Some(name),
        }
    }

    /// What may be in Redis after this write's fate became unknown.
    fn unknown(self) -> Sent {
        match self {
            Sent::Nothing => Sent::Nothing,
            Sent::Unknown { name } | Sent::Set { name, .. } | Sent::Del { name } => {
                Sent::Unknown { name }
            }
        }
    }
}

/// An entry's slot number, stable while the entry lives.
pub type Slot = u32;

#[derive(Debug, Clone)]
struct Entry {
    key: NeighKey,
    want: Want,
    sent: Sent,
    queued: bool,
    /// Receive stamp of the oldest change not yet written.
    since_ns: u64,
    /// The dump epoch that last touched it.
    seen: u32,
    /// Bumped on every write taken, to match replies to the latest.
    generation: u32,
    /// The table's write count (its low 32 bits) when its last write was
    /// taken; compared within 2^31 writes of a read.
    written_at: u32,
    /// In use (else on the free list).
    live: bool,
}

/// One ProducerStateTable command for `<name>:<ip>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set(IfName, [u8; 6]),
    Del(IfName),
}

impl Op {
    pub fn name(self) -> IfName {
        match self {
            Op::Set(n, _) | Op::Del(n) => n,
        }
    }
}

/// One neighbor's write, as the writer encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub slot: Slot,
    pub generation: u32,
    pub key: NeighKey,
    pub op: Op,
    pub since_ns: u64,
}

/// How a decision changed the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A write is owed (or already was).
    Queued,
    /// Already what was sent: nothing to write.
    Same,
    /// The table is full.
    Refused,
}

/// The neighbor table.
#[derive(Debug, Default)]
pub struct NeighTable {
    entries: Vec<Entry>,
    free: Vec<Slot>,
    /// Key → slot. Only the slot is stored: the key is the entry's (at
    /// 64k neighbors, 0.6 MB instead of the 3.8 MB a map holding a copy of
    /// each key takes).
    index: HashTable<Slot>,
    hasher: KeyHasher,
    queue: VecDeque<Slot>,
    /// Keys under names no longer current, owed a delete.
    stale: VecDeque<(NeighKey, IfName)>,
    /// Live entries (slots minus free ones).
    live: usize,
    /// The current dump epoch; 0 while no dump runs.
    epoch: u32,
    resyncing: bool,
    /// Writes are held (warm start until reconciliation).
    held: bool,
    /// Writes taken, ever.
    writes: u64,
}

impl NeighTable {
    pub fn with_capacity(n: usize) -> NeighTable {
        NeighTable {
            entries: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            queue: VecDeque::with_capacity(n),
            ..NeighTable::default()
        }
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Entries owing a write.
    pub fn dirty(&self) -> usize {
        self.queue.len()
    }

    /// Hold every write (warm start: the cache decides at reconciliation).
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    pub fn held(&self) -> bool {
        self.held
    }

    /// The rules decided `want` for `key`, from a message received at
    /// `rx_ns`.
    pub fn apply(&mut self, key: NeighKey, want: Want, rx_ns: u64, links: &LinkNames) -> Applied {
        let slot = match self.find(&key) {
            Some(slot) => slot,
            None => {
                if self.live >= MAX_NEIGHBORS {
                    return Applied::Refused;
                }
                let entry = Entry {
                    key,
                    want,
                    sent: Sent::Nothing,
                    queued: false,
                    since_ns: rx_ns,
                    seen: 0,
                    generation: 0,
                    written_at: 0,
                    live: true,
                };
                let slot = match self.free.pop() {
                    Some(s) => {
                        self.entries[s as usize] = entry;
                        s
                    }
                    None => {
                        self.entries.push(entry);
                        (self.entries.len() - 1) as Slot
                    }
                };
                self.live += 1;
                let (entries, hasher) = (&self.entries, &self.hasher);
                self.index.insert_unique(hasher.hash(&key), slot, |&s| {
                    hasher.hash(&entries[s as usize].key)
                });
                slot
            }
        };
        let e = &mut self.entries[slot as usize];
        e.want = want;
        e.seen = self.epoch;
        if in_step(e, links) {
            return Applied::Same;
        }
        self.enqueue(slot, rx_ns);
        Applied::Queued
    }

    /// The slot holding `key`.
    fn find(&self, key: &NeighKey) -> Option<Slot> {
        let entries = &self.entries;
        self.index
            .find(self.hasher.hash(key), |&s| entries[s as usize].key == *key)
            .copied()
    }

    /// Forget the entry in `slot`: out of the index, onto the free list.
    fn release(&mut self, slot: Slot) {
        let key = self.entries[slot as usize].key;
        let entries = &self.entries;
        if let Ok(found) = self.index.find_entry(self.hasher.hash(&key), |&s| {
            s == slot && entries[s as usize].key == key
        }) {
            found.remove();
        }
        let e = &mut self.entries[slot as usize];
        e.live = false;
        // Never matched again: a reused slot starts a new generation run.
        e.generation = e.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
    }

    fn enqueue(&mut self, slot: Slot, rx_ns: u64) {
        let e = &mut self.entries[slot as usize];
        if !e.queued {
            e.queued = true;
            e.since_ns = rx_ns;
            self.queue.push_back(slot);
        }
    }

    /// The next write owed, without taking it (to check buffer room).
    pub fn peek_write(&self, links: &LinkNames) -> Option<Write> {
        if self.held {
            return None;
        }
        let slot = *self.queue.front()?;
        Some(self.write_of(slot, links))
    }

    /// Take the next write owed; the entry now counts it as sent.
    pub fn pop_write(&mut self, links: &LinkNames) -> Option<Write> {
        if self.held {
            return None;
        }
        loop {
            let slot = self.queue.pop_front()?;
            let e = &mut self.entries[slot as usize];
            e.queued = false;
            if in_step(e, links) {
                // Changed back before it was written.
                continue;
            }
            e.generation = e.generation.wrapping_add(1);
            self.writes += 1;
            e.written_at = self.writes as u32;
            let w = self.write_of(slot, links);
            self.entries[slot as usize].sent = match w.op {
                Op::Set(name, mac) => Sent::Set { mac, name },
                Op::Del(name) => Sent::Del { name },
            };
            return Some(w);
        }
    }

    fn write_of(&self, slot: Slot, links: &LinkNames) -> Write {
        let e = &self.entries[slot as usize];
        let op = match (e.want, e.sent) {
            (Want::Set(mac), _) => Op::Set(links.name(e.key.ifindex), mac),
            (Want::Del, Sent::Set { name, .. } | Sent::Del { name } | Sent::Unknown { name }) => {
                Op::Del(name)
            }
            (Want::Del, Sent::Nothing) => Op::Del(links.name(e.key.ifindex)),
        };
        Write {
            slot,
            generation: e.generation,
            key: e.key,
            op,
            since_ns: e.since_ns,
        }
    }

    /// The next delete owed under a name no longer current, taken. One
    /// whose name became current again is dropped: the entry owns the key.
    pub fn pop_stale(&mut self, links: &LinkNames) -> Option<(NeighKey, IfName)> {
        if self.held {
            return None;
        }
        while let Some((key, name)) = self.stale.pop_front() {
            if links.name(key.ifindex) != name {
                return Some((key, name));
            }
        }
        None
    }

    /// Deletes owed under old names.
    pub fn stale_len(&self) -> usize {
        self.stale.len()
    }

    /// A delete under an old name was refused: owed again.
    pub fn stale_refused(&mut self, key: NeighKey, name: IfName) {
        self.stale.push_back((key, name));
    }

    /// Redis acknowledged the write `generation` of `slot`: a delete that
    /// is still the latest word on the neighbor lets the entry go.
    pub fn acked(&mut self, slot: Slot, generation: u32) {
        let Some(e) = self.entries.get(slot as usize) else {
            return;
        };
        if e.generation == generation
            && !e.queued
            && e.want == Want::Del
            && matches!(e.sent, Sent::Del { .. })
        {
            self.release(slot);
        }
    }

    /// Redis refused one command of the write `generation` of `slot` (the
    /// delete or the set of `<name>:<ip>`): what is there is unknown, so
    /// the neighbor's current state is owed again, and a refused delete
    /// under an old name is sent again too.
    pub fn refused(
        &mut self,
        slot: Slot,
        generation: u32,
        name: IfName,
        now_ns: u64,
        links: &LinkNames,
    ) {
        let Some(e) = self.entries.get_mut(slot as usize) else {
            return;
        };
        // (No reply can come for an entry already forgotten: it is forgotten
        // on the reply to its last write, after every earlier one.)
        if name != links.name(e.key.ifindex) {
            // Under a name no longer current: that key is deleted, on its own.
            self.stale.push_back((e.key, name));
            return;
        }
        if e.generation != generation && e.sent.name() == Some(name) {
            // A newer write under the same name superseded this one.
            return;
        }
        e.sent = match e.sent {
            Sent::Nothing if e.want != Want::Del => Sent::Nothing,
            _ => Sent::Unknown { name },
        };
        self.enqueue(slot, now_ns);
    }

    /// Redis may have lost everything (a reconnect): every neighbor is owed
    /// again, and deletes not yet acknowledged are sent again.
    pub fn rewrite_all(&mut self, now_ns: u64) {
        for slot in 0..self.entries.len() as Slot {
            if self.is_free(slot) {
                continue;
            }
            let e = &mut self.entries[slot as usize];
            e.sent = e.sent.unknown();
            self.enqueue(slot, now_ns);
        }
    }

    fn is_free(&self, slot: Slot) -> bool {
        !self.entries[slot as usize].live
    }

    /// The interface `ifindex` has a name now, maybe another than its
    /// neighbors were written under (a rename, or a link first named after
    /// its neighbors were keyed by the decimal ifindex): what they hold
    /// under another name is deleted, and they are set under this one.
    pub fn renamed(&mut self, ifindex: i32, now_ns: u64, links: &LinkNames) {
        let current = links.name(ifindex);
        let mut stale = std::mem::take(&mut self.stale);
        self.for_interface(ifindex, now_ns, links, |e| {
            if let Sent::Set { name, .. } | Sent::Unknown { name } = e.sent {
                if name != current {
                    stale.push_back((e.key, name));
                    e.sent = Sent::Nothing;
                }
            }
        });
        self.stale = stale;
    }

    /// The interface `ifindex` is gone, and every neighbor on it.
    pub fn interface_removed(&mut self, ifindex: i32, now_ns: u64, links: &LinkNames) -> usize {
        let mut n = 0;
        self.for_interface(ifindex, now_ns, links, |e| {
            if e.want != Want::Del {
                e.want = Want::Del;
                n += 1;
            }
        });
        n
    }

    fn for_interface(
        &mut self,
        ifindex: i32,
        now_ns: u64,
        links: &LinkNames,
        mut change: impl FnMut(&mut Entry),
    ) {
        for slot in 0..self.entries.len() as Slot {
            if self.entries[slot as usize].key.ifindex != ifindex || self.is_free(slot) {
                continue;
            }
            let e = &mut self.entries[slot as usize];
            change(e);
            if !in_step(e, links) {
                self.enqueue(slot, now_ns);
            }
        }
    }

    /// A dump starts: from now on what it and the events report is current.
    pub fn begin_resync(&mut self) {
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.resyncing = true;
    }

    /// The dump will not complete.
    pub fn abort_resync(&mut self) {
        self.resyncing = false;
    }

    /// The dump completed: every neighbor wanted present that neither the
    /// dump nor an event touched is gone from the kernel. Returns how many.
    pub fn finish_resync(&mut self, now_ns: u64, links: &LinkNames) -> usize {
        if !self.resyncing {
            return 0;
        }
        self.resyncing = false;
        let epoch = self.epoch;
        let mut vanished = 0;
        for slot in 0..self.entries.len() as Slot {
            if self.is_free(slot) {
                continue;
            }
            let e = &mut self.entries[slot as usize];
            if e.seen == epoch || !matches!(e.want, Want::Set(_)) {
                continue;
            }
            e.want = Want::Del;
            vanished += 1;
            if !in_step(e, links) {
                self.enqueue(slot, now_ns);
            }
        }
        vanished
    }

    /// Warm start's reconciliation wrote what the cache held: from now on
    /// what each entry wants counts as sent, and writes flow.
    pub fn reconciled(&mut self, links: &LinkNames) {
        self.queue.clear();
        self.stale.clear();
        for slot in 0..self.entries.len() as Slot {
            if self.is_free(slot) {
                continue;
            }
            let e = &mut self.entries[slot as usize];
            e.queued = false;
            let name = links.name(e.key.ifindex);
            e.sent = match e.want {
                Want::Set(mac) => Sent::Set { mac, name },
                Want::Del => Sent::Del { name },
            };
            if e.want == Want::Del {
                self.release(slot);
            }
        }
        self.held = false;
    }

    /// Every live entry: its key and what the kernel wants.
    pub fn wanted(&self) -> impl Iterator<Item = (NeighKey, Want)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.live)
            .map(|e| (e.key, e.want))
    }

    /// Writes taken so far (self-verification notes it when it reads).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Slots in use or free (the bound of a cursor over the table).
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// From `cursor` on, the next entry that owes nothing and whose last
    /// write was taken at or before write `since`: its slot, generation
    /// and key; the cursor moves past it (to the end when none is left).
    pub fn settled_at(&self, cursor: &mut Slot, since: u64) -> Option<(Slot, u32, NeighKey)> {
        while (*cursor as usize) < self.entries.len() {
            let slot = *cursor;
            *cursor += 1;
            let e = &self.entries[slot as usize];
            let before = (since as u32).wrapping_sub(e.written_at) < 1 << 31;
            if e.live && !e.queued && before {
                return Some((slot, e.generation, e.key));
            }
        }
        None
    }

    /// The entry in `slot` if it is still at `generation` (no write taken
    /// since) and owes nothing: its key and what was sent.
    pub fn entry_at(&self, slot: Slot, generation: u32) -> Option<(NeighKey, Sent)> {
        let e = self.entries.get(slot as usize)?;
        (e.live && !e.queued && e.generation == generation).then_some((e.key, e.sent))
    }

    /// What was last sent for `key`, if it has an entry.
    pub fn sent(&self, key: &NeighKey) -> Option<Sent> {
        let slot = self.find(key)?;
        Some(self.entries[slot as usize].sent)
    }

    /// Owe `key`'s current state again (self-verification found Redis
    /// holding something else).
    pub fn rewrite(&mut self, key: &NeighKey, now_ns: u64) {
        if let Some(slot) = self.find(key) {
            self.entries[slot as usize].sent = Sent::Nothing;
            self.enqueue(slot, now_ns);
        }
    }
}

/// The index's hash of a key: two folded multiplies of its 21 bytes with a
/// per-process random seed. std's SipHash took 8 % of a burst's CPU for a
/// key this short; seeded, a peer choosing neighbor addresses still cannot
/// aim them at one bucket without knowing the seed.
#[derive(Debug, Clone, Copy)]
struct KeyHasher {
    seed: [u64; 3],
}

impl Default for KeyHasher {
    fn default() -> Self {
        let random = RandomState::new();
        KeyHasher {
            seed: [1u64, 2, 3].map(|i| random.hash_one(i)),
        }
    }
}

impl KeyHasher {
    fn hash(&self, key: &NeighKey) -> u64 {
        let [lo, hi] = [0, 8].map(|at| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&key.addr[at..at + 8]);
            u64::from_ne_bytes(word)
        });
        let rest = u64::from(key.ifindex as u32) << 8 | u64::from(key.family);
        let mixed = folded_multiply(lo ^ self.seed[0], hi ^ self.seed[1]);
        folded_multiply(mixed ^ rest, self.seed[2] | 1)
    }
}

/// The 128-bit product's halves folded together (foldhash's and ahash's
/// mixing step).
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Whether what was sent is what the entry wants, under the current name.
fn in_step(e: &Entry, links: &LinkNames) -> bool {
    match (e.want, e.sent) {
        (Want::Set(mac), Sent::Set { mac: sent, name }) => {
            mac == sent && name == links.name(e.key.ifindex)
        }
        (Want::Del, Sent::Del { .. }) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
