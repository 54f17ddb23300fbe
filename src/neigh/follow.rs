//! From the kernel's neighbor and link messages to the neighbor table: the
//! rules per message, the interface names, and the dumps. No I/O; the loop
//! feeds it bytes (through [`crate::engine::netlink::drain`]).
//!
//! Dumps come in two steps on the one event socket: links first (so every
//! neighbor of the neighbor dump is named by its interface's current name,
//! and links deleted while messages were lost are found), then neighbors.
//! A complete neighbor dump reconciles the table: what neither the dump nor
//! an event reported is deleted. A loss (overrun, cut datagram) starts over
//! from the links; a neighbor dump interrupted without a loss is redone
//! alone. Which replies are the dump's, and when it must be redone, is the
//! engine's [`DumpTracker`].

use std::sync::Arc;

use crate::engine::metrics::Counters;
use crate::engine::netlink::drain::KernelFollow;
use crate::engine::netlink::dump::{DumpEnd, DumpTracker, Follower};
use crate::engine::netlink::neigh::{parse_neigh, NeighChange, RTM_DELNEIGH, RTM_NEWNEIGH};
use crate::engine::netlink::parse::{
    self, LinkChange, NlHeader, NLMSG_DONE, NLMSG_ERROR, RTM_DELLINK, RTM_NEWLINK,
};
use crate::engine::netlink::request::{self, Request};
use crate::engine::probes::{self, neigh_want};
use crate::log_debug;
use crate::neigh::context::NeighConfig;
use crate::neigh::links::{LinkEvent, LinkNames};
use crate::neigh::rules::{decide, Decision, Skip};
use crate::neigh::table::{Applied, NeighKey, NeighTable, Want};

/// Which table a dump request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Links,
    Neighbors,
}

/// Follows the kernel's neighbor (and link) messages into the table.
pub struct NeighSync {
    pub table: NeighTable,
    pub links: LinkNames,
    /// What the rules read from CONFIG_DB.
    pub config: NeighConfig,
    counters: Arc<Counters>,
    dump: DumpTracker,
    /// What the next dump request asks for.
    next: Phase,
    /// What the running dump asks for.
    running: Phase,
    /// Neighbor dumps that ended complete and consistent.
    neighbor_dumps: u64,
}

/// The table side of a [`NeighSync`], borrowed while the tracker walks a
/// datagram.
struct NeighFollower<'a> {
    table: &'a mut NeighTable,
    links: &'a mut LinkNames,
    config: &'a NeighConfig,
    counters: &'a Counters,
    running: Phase,
    /// The link dump completed: the neighbor dump is next.
    links_done: bool,
}

impl NeighSync {
    /// A follower that owes its first dump (links, then neighbors).
    pub fn new(table: NeighTable, config: NeighConfig, counters: Arc<Counters>) -> NeighSync {
        let mut dump = DumpTracker::default();
        dump.want();
        NeighSync {
            table,
            links: LinkNames::default(),
            config,
            counters,
            dump,
            next: Phase::Links,
            running: Phase::Links,
            neighbor_dumps: 0,
        }
    }

    /// Neighbor dumps that ended complete and consistent so far (the first
    /// one is the initial sync).
    pub fn neighbor_dumps(&self) -> u64 {
        self.neighbor_dumps
    }

    /// Whether a dump is running or owed.
    pub fn dump_pending(&self) -> bool {
        self.dump.running() || self.dump.wanted()
    }

    /// Ask for a complete dump (links, then neighbors) that re-applies the
    /// rules to every neighbor: CONFIG_DB changed, or self-verification.
    pub fn want_dump(&mut self) {
        if !self.dump.running() {
            self.next = Phase::Links;
        }
        self.dump.want();
    }

    fn split(&mut self) -> (&mut DumpTracker, NeighFollower<'_>) {
        (
            &mut self.dump,
            NeighFollower {
                table: &mut self.table,
                links: &mut self.links,
                config: &self.config,
                counters: &self.counters,
                running: self.running,
                links_done: false,
            },
        )
    }
}

impl KernelFollow for NeighSync {
    fn on_datagram(&mut self, datagram: &[u8], rx_ns: u64, own_pid: u32) -> Option<DumpEnd> {
        let (dump, mut follower) = self.split();
        let counters = follower.counters;
        let end = dump.on_datagram(datagram, rx_ns, own_pid, counters, &mut follower);
        let links_done = follower.links_done;
        if let Some(DumpEnd::Complete { .. }) = end {
            if links_done {
                self.next = Phase::Neighbors;
                self.dump.want();
            } else {
                self.neighbor_dumps += 1;
                self.next = Phase::Links;
            }
        }
        end
    }

    fn on_lost(&mut self, overrun: bool) {
        if overrun {
            self.counters.enobufs.inc();
        }
        // Link events may be lost too: start over from the links.
        self.next = Phase::Links;
        self.dump.on_lost_messages(&self.counters);
    }

    fn dump_due(&self, now_ns: u64) -> bool {
        self.dump.due(now_ns)
    }

    fn dump_started(&mut self, seq: u32, now_ns: u64) {
        self.running = self.next;
        let (dump, mut follower) = self.split();
        let counters = follower.counters;
        dump.started(seq, now_ns, counters, &mut follower);
    }

    fn dump_failed(&mut self, now_ns: u64) {
        let (dump, mut follower) = self.split();
        let counters = follower.counters;
        dump.failed(now_ns, counters, &mut follower);
    }

    fn dump_timer(&mut self, now_ns: u64) -> Option<u64> {
        let (dump, mut follower) = self.split();
        let counters = follower.counters;
        dump.on_timer(now_ns, counters, &mut follower);
        dump.next_timer()
    }

    fn dump_request(&self, seq: u32) -> Request {
        match self.next {
            Phase::Links => request::getlink_dump(seq),
            Phase::Neighbors => request::getneigh_dump(seq),
        }
    }

    fn entries(&self) -> &'static str {
        match self.running {
            Phase::Links => "interfaces",
            Phase::Neighbors => "neighbors",
        }
    }
}

impl NeighFollower<'_> {
    fn on_link(&mut self, header: &NlHeader, payload: &[u8], rx_ns: u64) {
        let c = self.counters;
        let change = if header.msg_type == RTM_NEWLINK {
            LinkChange::New
        } else {
            LinkChange::Del
        };
        let link = match parse::parse_link(change, payload) {
            Ok(l) => l,
            Err(e) => {
                c.malformed.inc();
                log_debug!("malformed link message: {e}");
                return;
            }
        };
        let event = match change {
            LinkChange::New => {
                c.msgs_newlink.inc();
                self.links.on_new(link.ifindex, link.name)
            }
            LinkChange::Del => {
                c.msgs_dellink.inc();
                self.links.on_del(link.ifindex)
            }
        };
        match event {
            // A link first seen may have neighbors already, keyed by its
            // ifindex while its own message was lost.
            LinkEvent::Renamed | LinkEvent::Added => {
                self.table.renamed(link.ifindex, rx_ns, self.links)
            }
            LinkEvent::Removed => {
                let n = self
                    .table
                    .interface_removed(link.ifindex, rx_ns, self.links);
                c.neighbors_vanished.add(n as u64);
            }
            LinkEvent::Same => {}
        }
    }

    fn on_neigh(&mut self, header: &NlHeader, payload: &[u8], rx_ns: u64) {
        let c = self.counters;
        let change = if header.msg_type == RTM_NEWNEIGH {
            c.msgs_newneigh.inc();
            NeighChange::New
        } else {
            c.msgs_delneigh.inc();
            NeighChange::Del
        };
        let msg = match parse_neigh(change, payload) {
            Ok(m) => m,
            Err(e) => {
                c.malformed.inc();
                log_debug!("malformed neighbor message: {e}");
                return;
            }
        };
        if !self.links.named() {
            // Read before the first link dump named the links (the socket
            // joins the groups before the dumps are asked for): keyed now,
            // it would be by the decimal ifindex. The neighbor dump, after
            // the link dump, reports it.
            c.neigh_before_links.inc();
            return;
        }
        let name = self.links.name(msg.ifindex);
        let (addr, want) = match decide(&msg, name.as_bytes(), self.config) {
            Decision::Set { addr, mac, .. } => (addr, Want::Set(mac)),
            Decision::Del { addr } => (addr, Want::Del),
            Decision::Skip(why) => {
                probes::neigh_apply(
                    msg.ifindex,
                    msg.family,
                    &[0; 16],
                    neigh_want::SKIPPED,
                    rx_ns,
                );
                return count_skip(c, why);
            }
        };
        let code = match want {
            Want::Set(_) => neigh_want::SET,
            Want::Del => neigh_want::DEL,
        };
        probes::neigh_apply(msg.ifindex, msg.family, &addr, code, rx_ns);
        let key = NeighKey {
            ifindex: msg.ifindex,
            family: msg.family,
            addr,
        };
        if self.table.apply(key, want, rx_ns, self.links) == Applied::Refused {
            c.neighbors_refused.inc();
        }
    }
}

fn count_skip(c: &Counters, why: Skip) {
    match why {
        Skip::Family => c.skipped_neigh_family.inc(),
        Skip::BadDestination => c.skipped_neigh_bad_destination.inc(),
        Skip::Ipv4LinkLocalDualTor => c.skipped_neigh_ipv4_link_local_dual_tor.inc(),
        Skip::Ipv6LinkLocalModeOff => c.skipped_neigh_ipv6_link_local_mode_off.inc(),
        Skip::Ipv6LinkLocalMulticast => c.skipped_neigh_ipv6_link_local_multicast.inc(),
        Skip::NoArp => c.skipped_neigh_noarp.inc(),
        Skip::MacNone => c.skipped_neigh_mac_none.inc(),
        Skip::MacNotEthernet => c.skipped_neigh_mac_not_ethernet.inc(),
        Skip::Broadcast => c.skipped_neigh_broadcast.inc(),
    }
}

impl Follower for NeighFollower<'_> {
    // Inlined into the tracker's walk over a datagram: called per message.
    #[inline]
    fn on_message(&mut self, header: &NlHeader, payload: &[u8], rx_ns: u64, _from_dump: bool) {
        match header.msg_type {
            RTM_NEWNEIGH | RTM_DELNEIGH => self.on_neigh(header, payload, rx_ns),
            RTM_NEWLINK | RTM_DELLINK => self.on_link(header, payload, rx_ns),
            NLMSG_DONE => self.counters.msgs_done.inc(),
            NLMSG_ERROR => self.counters.msgs_error.inc(),
            _ => self.counters.msgs_other.inc(),
        }
    }

    fn dump_started(&mut self) {
        match self.running {
            Phase::Links => self.links.dump_started(),
            Phase::Neighbors => self.table.begin_resync(),
        }
    }

    fn dump_aborted(&mut self) {
        if self.running == Phase::Neighbors {
            self.table.abort_resync();
        }
    }

    fn dump_complete(&mut self, now_ns: u64) -> usize {
        let vanished = match self.running {
            Phase::Links => {
                self.links_done = true;
                let mut n = 0;
                for ifindex in self.links.dump_complete() {
                    n += self.table.interface_removed(ifindex, now_ns, self.links);
                }
                n
            }
            Phase::Neighbors => self.table.finish_resync(now_ns, self.links),
        };
        self.counters.neighbors_vanished.add(vanished as u64);
        vanished
    }
}

#[cfg(test)]
mod tests;
