//! The port table: everything portsyncd knows about each port, and which
//! ports owe a write to STATE_DB.
//!
//! Pure data, no I/O: the loop feeds it parsed link messages and Redis
//! answers, and drains the writes it owes. Several messages for one port
//! before the next flush collapse into one write of the latest state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::rules::{decide, is_port_name, Decision, LinkStatus, Membership, Skip};
use crate::engine::metrics::changes::{PortChange, Shown};
use crate::engine::metrics::flaps::PORT_FLAPS;
use crate::engine::netlink::parse::LinkMessage;

/// Status changes kept for change lines between two loop turns.
const MAX_CHANGES: usize = 4096;
/// A port with no status change kept this turn.
const NO_CHANGE: u32 = u32::MAX;

/// Interface names are at most 15 bytes (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// Upper bound on distinct port names kept; beyond it new names are refused
/// and counted, so a flood of odd names cannot grow memory without end.
pub const MAX_PORTS: usize = 65_536;

/// The hasher of the table's maps, which are looked up once or twice per
/// link message: one multiply-rotate per 64-bit word. SipHash was a fifth
/// of the instructions per message (callgrind); its flooding resistance
/// buys nothing here, where the keys are names and ifindexes the kernel or
/// orchagent chose and the table is bounded ([`MAX_PORTS`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    #[inline]
    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    #[inline]
    fn write_i32(&mut self, word: i32) {
        self.write_u64(word as u32 as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type Words = BuildHasherDefault<WordHasher>;

/// A port name stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PortName {
    len: u8,
    bytes: [u8; IFNAME_MAX],
}

impl PortName {
    /// `None` when `name` is empty or longer than an interface name can be.
    pub fn new(name: &[u8]) -> Option<PortName> {
        if name.is_empty() || name.len() > IFNAME_MAX {
            return None;
        }
        let mut bytes = [0u8; IFNAME_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Some(PortName {
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl Hash for PortName {
    /// The 15 name bytes and the length as two words.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut words = [0u8; 16];
        words[..IFNAME_MAX].copy_from_slice(&self.bytes);
        words[IFNAME_MAX] = self.len;
        let (low, high) = words.split_at(8);
        state.write_u64(u64::from_le_bytes(low.try_into().unwrap_or_default()));
        state.write_u64(u64::from_le_bytes(high.try_into().unwrap_or_default()));
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Debug for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Index of a port in the table; stable for the life of the process.
pub type PortId = u32;

/// One port.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: PortName,
    /// Last ifindex seen for it (0: never seen).
    pub ifindex: i32,
    /// The kernel's latest view; `None` if it has no netdev (never seen, or deleted).
    pub netdev: Option<LinkStatus>,
    /// What we know of APPL_DB `PORT_TABLE:<name>`.
    pub membership: Membership,
    /// Listed in CONFIG_DB `PORT` at start-up.
    pub configured: bool,
    /// Its netdev is one the rules skip for good (an old interface, a team
    /// device): its STATE_DB entry, if any, is someone else's.
    ignored: bool,
    /// Its entry in the turn's status changes, or [`NO_CHANGE`].
    change_at: u32,
    /// Still holds `PortInitDone` back.
    awaiting_init: bool,
    /// Its netdev went away and STATE_DB must not hold it.
    deleted: bool,
    pending_del: bool,
    pending_hset: bool,
    queued: bool,
    /// Receive time of the oldest message behind the pending write.
    pending_since_ns: u64,
    /// Resync bookkeeping: generation of the last dump that listed it and
    /// of the last event that touched it.
    dumped_gen: u32,
    touched_gen: u32,
}

impl Port {
    /// It has a netdev but is not known in `PORT_TABLE`: its state waits.
    fn held(&self) -> bool {
        self.netdev.is_some() && self.membership != Membership::Present
    }
}

/// A write the table owes to STATE_DB for one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingWrite {
    pub port: PortId,
    pub name: PortName,
    /// `DEL PORT_TABLE|<name>` first.
    pub del: bool,
    /// Then `HSET PORT_TABLE|<name> …` with this status.
    pub hset: Option<LinkStatus>,
    /// Receive time of the oldest message behind this write.
    pub since_ns: u64,
}

/// What applying one message did, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Skipped(Skip),
    /// A DEL is now owed.
    Deleted,
    /// An HSET is now owed.
    Written,
    /// Status kept until the port is known in `PORT_TABLE`.
    Held,
    /// The name could not be stored (too long, or the table is full).
    Refused,
}

/// The port table.
#[derive(Debug)]
pub struct PortTable {
    ports: Vec<Port>,
    by_name: HashMap<PortName, PortId, Words>,
    old_ifindexes: HashSet<i32, Words>,
    dirty: VecDeque<PortId>,
    queries: Vec<PortId>,
    awaiting_init: usize,
    /// Ports with a netdev and no settled membership ([`Port::held`]),
    /// kept as they change so the loop never scans the table for it.
    held: usize,
    /// Status changes since the loop last took them, for the change lines
    /// the metrics thread writes: one per port and turn (its status before
    /// the turn and its latest), so a burst sends a few, not one per
    /// message; bounded, the rest counted in `changes_lost`.
    changes: Vec<(PortId, Option<LinkStatus>, Option<LinkStatus>)>,
    changes_lost: u64,
    resync_gen: u32,
    resync_active: bool,
}

impl Default for PortTable {
    fn default() -> Self {
        PortTable::with_capacity(256)
    }
}

impl PortTable {
    /// A table with room for `ports` ports before it allocates.
    pub fn with_capacity(ports: usize) -> PortTable {
        PortTable {
            ports: Vec::with_capacity(ports),
            by_name: HashMap::with_capacity_and_hasher(ports, Words::default()),
            old_ifindexes: HashSet::default(),
            dirty: VecDeque::with_capacity(ports),
            queries: Vec::with_capacity(ports),
            awaiting_init: 0,
            held: 0,
            changes: Vec::with_capacity(MAX_CHANGES),
            changes_lost: 0,
            resync_gen: 0,
            resync_active: false,
        }
    }

    /// Number of ports known.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The port with this id.
    pub fn get(&self, id: PortId) -> &Port {
        &self.ports[id as usize]
    }

    /// Look a port up by name.
    pub fn find(&self, name: &[u8]) -> Option<PortId> {
        self.by_name.get(&PortName::new(name)?).copied()
    }

    /// Every port, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (PortId, &Port)> {
        self.ports.iter().enumerate().map(|(i, p)| (i as PortId, p))
    }

    /// Find or add a port.
    pub fn intern(&mut self, name: &[u8]) -> Option<PortId> {
        let key = PortName::new(name)?;
        if let Some(&id) = self.by_name.get(&key) {
            return Some(id);
        }
        if self.ports.len() >= MAX_PORTS {
            return None;
        }
        let id = self.ports.len() as PortId;
        self.ports.push(Port {
            name: key,
            ifindex: 0,
            netdev: None,
            membership: Membership::Unknown,
            configured: false,
            ignored: false,
            change_at: NO_CHANGE,
            awaiting_init: false,
            deleted: false,
            pending_del: false,
            pending_hset: false,
            queued: false,
            pending_since_ns: 0,
            dumped_gen: 0,
            touched_gen: 0,
        });
        self.by_name.insert(key, id);
        Some(id)
    }

    /// Record a port listed in CONFIG_DB `PORT`; it holds `PortInitDone`
    /// back until it is seen, unless `already_up` (its APPL_DB entry
    /// already had `admin_status` at start-up).
    pub fn add_configured(&mut self, name: &[u8], in_port_table: bool, already_up: bool) -> bool {
        let Some(id) = self.intern(name) else {
            return false;
        };
        let port = &mut self.ports[id as usize];
        if !port.configured {
            port.configured = true;
            if !already_up {
                port.awaiting_init = true;
                self.awaiting_init += 1;
            }
        }
        if in_port_table {
            let was_held = port.held();
            port.membership = Membership::Present;
            self.recount_held(id, was_held);
        }
        true
    }

    /// Adjust the held count after port `id`, held before if `was_held`,
    /// changed its netdev or membership.
    fn recount_held(&mut self, id: PortId, was_held: bool) {
        match (was_held, self.ports[id as usize].held()) {
            (false, true) => self.held += 1,
            (true, false) => self.held -= 1,
            _ => {}
        }
    }

    /// Configured ports not yet seen; `PortInitDone` is due when this is 0.
    pub fn awaiting_init(&self) -> usize {
        self.awaiting_init
    }

    /// Mark an ifindex as an old interface (existed before a cold start).
    pub fn add_old_interface(&mut self, ifindex: i32) {
        self.old_ifindexes.insert(ifindex);
    }

    /// Number of old interfaces being ignored.
    pub fn old_interfaces(&self) -> usize {
        self.old_ifindexes.len()
    }

    /// Apply one link message received at `rx_ns`. `from_dump`: it is part
    /// of the answer to our own `RTM_GETLINK` dump.
    pub fn apply(&mut self, msg: &LinkMessage<'_>, rx_ns: u64, from_dump: bool) -> Applied {
        if !is_port_name(msg.name) {
            return Applied::Skipped(Skip::NotAPort);
        }
        let old = self.old_ifindexes.contains(&msg.ifindex);
        let Some(id) = self.intern(msg.name) else {
            return Applied::Refused;
        };
        let was_held = self.ports[id as usize].held();
        let applied = self.apply_to(id, msg, old, rx_ns, from_dump);
        self.recount_held(id, was_held);
        applied
    }

    /// [`apply`](Self::apply) to the port `id`, known by name. (Longer
    /// than a screenful: SONiC's decision and its effect on the port's
    /// pending writes and resync marks are one step, read top to bottom.)
    fn apply_to(
        &mut self,
        id: PortId,
        msg: &LinkMessage<'_>,
        old: bool,
        rx_ns: u64,
        from_dump: bool,
    ) -> Applied {
        let gen = self.resync_gen;
        let resyncing = self.resync_active;
        let port = &mut self.ports[id as usize];
        match decide(msg, old, port.membership) {
            Decision::Skip(why) => {
                if matches!(why, Skip::OldInterface | Skip::Team) {
                    port.ignored = true;
                }
                Applied::Skipped(why)
            }
            Decision::Delete => {
                let was = port.netdev;
                port.ifindex = msg.ifindex;
                port.netdev = None;
                port.deleted = true;
                port.pending_hset = false;
                port.pending_del = true;
                if resyncing {
                    port.touched_gen = gen;
                }
                self.queue(id, rx_ns);
                self.note_change(id, was, None);
                Applied::Deleted
            }
            Decision::Write(status) | Decision::Hold(status) => {
                let was = port.netdev;
                PORT_FLAPS.saw(
                    id,
                    port.name.as_bytes(),
                    was.map(|s| s.oper_up),
                    status.oper_up,
                );
                if was != Some(status) {
                    self.note_change(id, was, Some(status));
                }
                let port = &mut self.ports[id as usize];
                port.ifindex = msg.ifindex;
                port.netdev = Some(status);
                port.deleted = false;
                if resyncing {
                    if from_dump {
                        port.dumped_gen = gen;
                    } else {
                        port.touched_gen = gen;
                    }
                }
                match port.membership {
                    Membership::Present => {
                        self.owe_hset(id, rx_ns);
                        Applied::Written
                    }
                    Membership::Unknown => {
                        port.membership = Membership::Querying;
                        port.pending_since_ns = rx_ns;
                        self.queries.push(id);
                        Applied::Held
                    }
                    Membership::Querying | Membership::Absent => {
                        if port.pending_since_ns == 0 {
                            port.pending_since_ns = rx_ns;
                        }
                        Applied::Held
                    }
                }
            }
        }
    }

    /// Keep a status change of port `id` for its change line (none when
    /// it had no netdev and still has none); a port changed again in the
    /// same turn keeps one entry, with its latest status.
    fn note_change(&mut self, id: PortId, was: Option<LinkStatus>, now: Option<LinkStatus>) {
        if was.is_none() && now.is_none() {
            return;
        }
        let port = &mut self.ports[id as usize];
        if let Some(entry) = self.changes.get_mut(port.change_at as usize) {
            entry.2 = now;
            return;
        }
        if self.changes.len() == MAX_CHANGES {
            self.changes_lost += 1;
            return;
        }
        port.change_at = self.changes.len() as u32;
        self.changes.push((id, was, now));
    }

    /// Hand the turn's status changes over, packed ([`PortChange`]), one
    /// per port whose status differs from before the turn; returns how
    /// many did not fit in the table's bound.
    pub fn take_changes(&mut self, mut hand: impl FnMut(u64)) -> u64 {
        let shown = |s: LinkStatus| Shown {
            admin_up: s.admin_up,
            oper_up: s.oper_up,
            mtu: s.mtu,
        };
        for (id, was, now) in self.changes.drain(..) {
            self.ports[id as usize].change_at = NO_CHANGE;
            if was != now {
                hand(
                    PortChange {
                        port: id,
                        was: was.map(shown),
                        now: now.map(shown),
                    }
                    .pack(),
                );
            }
        }
        std::mem::take(&mut self.changes_lost)
    }

    /// A port known in `PORT_TABLE` with a netdev owes its state: the HSET
    /// is queued and the port no longer holds `PortInitDone` back.
    fn owe_hset(&mut self, id: PortId, rx_ns: u64) {
        let port = &mut self.ports[id as usize];
        port.pending_hset = true;
        if port.awaiting_init {
            port.awaiting_init = false;
            self.awaiting_init -= 1;
        }
        self.queue(id, rx_ns);
    }

    fn queue(&mut self, id: PortId, rx_ns: u64) {
        let port = &mut self.ports[id as usize];
        if !port.queued {
            port.queued = true;
            if port.pending_since_ns == 0 {
                port.pending_since_ns = rx_ns;
            }
            self.dirty.push_back(id);
        }
    }

    /// Ports whose `PORT_TABLE` membership must be asked, taken once each.
    pub fn take_queries(&mut self, out: &mut Vec<PortId>) {
        out.clear();
        out.append(&mut self.queries);
    }

    /// Ports with a netdev that were absent from `PORT_TABLE` when last asked:
    /// ask again. Returns how many were queued.
    pub fn requery_absent(&mut self) -> usize {
        let mut n = 0;
        for (i, port) in self.ports.iter_mut().enumerate() {
            if port.membership == Membership::Absent && port.netdev.is_some() {
                port.membership = Membership::Querying;
                self.queries.push(i as PortId);
                n += 1;
            }
        }
        n
    }

    /// Ports with a netdev and no settled membership: waiting to be written.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The held count the slow way, for tests of the kept one.
    #[cfg(test)]
    fn held_by_scan(&self) -> usize {
        self.ports.iter().filter(|p| p.held()).count()
    }

    /// Record what APPL_DB says about `PORT_TABLE:<name>`. A port that
    /// becomes present with a netdev owes its state now.
    pub fn set_membership(&mut self, id: PortId, present: bool) {
        let port = &mut self.ports[id as usize];
        let was_held = port.held();
        if !present {
            port.membership = Membership::Absent;
        } else {
            let was = port.membership;
            port.membership = Membership::Present;
            if was != Membership::Present && port.netdev.is_some() {
                let since = port.pending_since_ns;
                self.owe_hset(id, since);
            }
        }
        self.recount_held(id, was_held);
    }

    /// Forget what we know of every port's membership and queue a query
    /// for each port that has a netdev (after APPL_DB came back).
    pub fn relearn_membership(&mut self) {
        self.queries.clear();
        for (i, port) in self.ports.iter_mut().enumerate() {
            if port.netdev.is_some() {
                port.membership = Membership::Querying;
                self.queries.push(i as PortId);
            } else {
                port.membership = Membership::Unknown;
            }
        }
        // Every port with a netdev is now waiting for its answer.
        self.held = self.queries.len();
    }

    /// Owe a write of every port's current state (after STATE_DB came back):
    /// an HSET for each port with a netdev known in `PORT_TABLE`, a DEL for
    /// each port whose netdev went away.
    pub fn rewrite_all(&mut self, now_ns: u64) {
        for id in 0..self.ports.len() {
            self.rewrite(id as PortId, now_ns);
        }
    }

    /// Owe a write of one port's current state again (its last write got a
    /// retry-later error).
    pub fn rewrite(&mut self, id: PortId, now_ns: u64) {
        let Some(port) = self.ports.get_mut(id as usize) else {
            return;
        };
        if port.deleted {
            port.pending_del = true;
        } else if port.netdev.is_some() && port.membership == Membership::Present {
            port.pending_hset = true;
        } else {
            return;
        }
        self.queue(id, now_ns);
    }

    /// Number of ports owing a write.
    pub fn dirty(&self) -> usize {
        self.dirty.len()
    }

    /// The next write owed, without taking it.
    pub fn peek_write(&self) -> Option<PendingWrite> {
        let &id = self.dirty.front()?;
        let port = &self.ports[id as usize];
        Some(PendingWrite {
            port: id,
            name: port.name,
            del: port.pending_del,
            hset: if port.pending_hset { port.netdev } else { None },
            since_ns: port.pending_since_ns,
        })
    }

    /// Take the write [`peek_write`](Self::peek_write) returned: it is on its way.
    pub fn pop_write(&mut self) -> Option<PendingWrite> {
        let write = self.peek_write()?;
        self.dirty.pop_front();
        let port = &mut self.ports[write.port as usize];
        port.queued = false;
        port.pending_del = false;
        port.pending_hset = false;
        port.pending_since_ns = 0;
        Some(write)
    }

    /// Start reconciling against a fresh dump: returns its generation.
    pub fn begin_resync(&mut self) -> u32 {
        self.resync_gen = self.resync_gen.wrapping_add(1).max(1);
        self.resync_active = true;
        self.resync_gen
    }

    /// Abandon the dump in progress (interrupted): nothing is concluded.
    pub fn abort_resync(&mut self) {
        self.resync_active = false;
    }

    /// Ports whose STATE_DB entry self-verification reads back: a netdev
    /// known in `PORT_TABLE`, and no write owed (an owed one is about to
    /// change the entry anyway). With the status the entry must hold.
    pub fn verifiable(&self) -> impl Iterator<Item = (PortId, LinkStatus)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.netdev {
                Some(status) if p.membership == Membership::Present && !p.queued => {
                    Some((i as PortId, status))
                }
                _ => None,
            })
    }

    /// Whether a STATE_DB `PORT_TABLE|<name>` entry has no netdev behind
    /// it (deleted while the daemon was down, renamed, or our `DEL`
    /// undone): a name that can be a port, with no netdev the table knows,
    /// not one the rules skip for good (its entry is someone else's), and
    /// no write owed.
    pub fn is_stale_entry(&self, name: &[u8]) -> bool {
        if !is_port_name(name) {
            return false;
        }
        match self.find(name) {
            None => true,
            Some(id) => {
                let p = &self.ports[id as usize];
                p.netdev.is_none() && !p.ignored && !p.queued
            }
        }
    }

    /// The dump is complete and consistent: every port that had a netdev
    /// before it started, was not in it and saw no event since, is gone.
    /// Returns how many ports were found gone.
    pub fn finish_resync(&mut self, now_ns: u64) -> usize {
        let gen = self.resync_gen;
        self.resync_active = false;
        let mut gone = 0;
        for i in 0..self.ports.len() {
            let port = &mut self.ports[i];
            if port.netdev.is_some() && port.dumped_gen != gen && port.touched_gen != gen {
                let was = port.netdev;
                port.netdev = None;
                port.deleted = true;
                port.pending_hset = false;
                port.pending_del = true;
                gone += 1;
                if port.membership != Membership::Present {
                    self.held -= 1;
                }
                self.queue(i as PortId, now_ns);
                self.note_change(i as PortId, was, None);
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests;
