//! From the kernel's link messages to the port table: message dispatch,
//! the old-interface rule and reconciliation after a dump. No I/O; the
//! loop feeds it bytes (through [`crate::engine::netlink::drain`]).
//!
//! Recovery: an `ENOBUFS` means the kernel dropped messages. We then dump
//! every link (`RTM_GETLINK`) and reconcile: each port in the dump is
//! rewritten, and a port that had a netdev before the dump, is not in it
//! and saw no event during it, is gone (its STATE_DB entry is deleted).
//! Which replies are the dump's, and when it must be redone, is the
//! engine's [`DumpTracker`].

use std::sync::Arc;

use crate::engine::metrics::Counters;
use crate::engine::netlink::drain::KernelFollow;
use crate::engine::netlink::dump::{DumpEnd, DumpTracker, Follower};
use crate::engine::netlink::parse::{self, Event, LinkChange, LinkMessage, NlHeader};
use crate::engine::netlink::request::{self, Request};
use crate::engine::probes::{self, port_outcome};
use crate::log_debug;
use crate::port::rules::Skip;
use crate::port::table::{Applied, PortName, PortTable, MAX_PORTS};

/// Follows the kernel's link messages into the port table.
pub struct LinkSync {
    /// The port table.
    pub ports: PortTable,
    counters: Arc<Counters>,
    dump: DumpTracker,
}

/// The old-interface rule looks at this prefix only (SONiC's `INTFS_PREFIX`).
const OLD_INTERFACE_PREFIX: &[u8] = b"Ethernet";

/// Whether a link in the start-up snapshot is an old interface (on a cold
/// start): an existing netdev named `Ethernet*`. Returns its ifindex and
/// name.
pub fn old_interface(link: &LinkMessage<'_>) -> Option<(i32, PortName)> {
    if link.change != LinkChange::New || !link.name.starts_with(OLD_INTERFACE_PREFIX) {
        return None;
    }
    Some((link.ifindex, PortName::new(link.name)?))
}

/// The port side of a [`LinkSync`], borrowed while the dump tracker walks
/// a datagram.
struct PortLinks<'a> {
    ports: &'a mut PortTable,
    counters: &'a Counters,
}

impl LinkSync {
    pub fn new(ports: PortTable, counters: Arc<Counters>) -> LinkSync {
        LinkSync {
            ports,
            counters,
            dump: DumpTracker::default(),
        }
    }

    /// Ignore these ifindexes for good: the old interfaces of a cold start,
    /// from the snapshot taken before subscribing. A netdev created later
    /// is a port, whatever Redis is doing meanwhile.
    pub fn ignore_old_interfaces(&mut self, ifindexes: impl IntoIterator<Item = i32>) {
        for ifindex in ifindexes {
            if self.ports.old_interfaces() < MAX_PORTS {
                self.ports.add_old_interface(ifindex);
            }
        }
    }

    /// The counters it updates.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Whether a dump is running.
    pub fn dump_running(&self) -> bool {
        self.dump.running()
    }

    /// Whether a dump is owed and not running (it may wait for a backoff).
    pub fn dump_wanted(&self) -> bool {
        self.dump.wanted()
    }

    /// Whether a dump request should be sent at `now_ns`.
    pub fn dump_due(&self, now_ns: u64) -> bool {
        self.dump.due(now_ns)
    }

    /// A dump request with sequence `seq` was sent at `now_ns`.
    pub fn dump_started(&mut self, seq: u32, now_ns: u64) {
        let (dump, mut links) = self.split();
        let counters = links.counters;
        dump.started(seq, now_ns, counters, &mut links);
    }

    /// Our dump request could not be sent: try again after a backoff.
    pub fn dump_failed(&mut self, now_ns: u64) {
        let (dump, mut links) = self.split();
        let counters = links.counters;
        dump.failed(now_ns, counters, &mut links);
    }

    /// Give up a dump past its deadline; the next instant to look again.
    pub fn dump_timer(&mut self, now_ns: u64) -> Option<u64> {
        let (dump, mut links) = self.split();
        let counters = links.counters;
        dump.on_timer(now_ns, counters, &mut links);
        dump.next_timer()
    }

    /// Ask for a complete dump (self-verification); see
    /// [`DumpTracker::want`].
    pub fn want_dump(&mut self) {
        self.dump.want();
    }

    /// Dumps that ended complete and consistent so far.
    pub fn dumps_completed(&self) -> u64 {
        self.dump.completed()
    }

    /// The kernel reported `ENOBUFS`: messages were lost.
    pub fn on_overrun(&mut self) {
        self.counters.enobufs.inc();
        self.on_lost_messages();
    }

    /// Messages were lost (an overrun, or datagrams cut short): resync
    /// with a dump, and redo a dump that is running.
    pub fn on_lost_messages(&mut self) {
        self.dump.on_lost_messages(&self.counters);
    }

    /// Apply every message of one datagram received at `rx_ns`. `own_pid`
    /// is the event socket's port id (our dump replies carry it).
    pub fn on_datagram(&mut self, datagram: &[u8], rx_ns: u64, own_pid: u32) -> Option<DumpEnd> {
        let (dump, mut links) = self.split();
        let counters = links.counters;
        dump.on_datagram(datagram, rx_ns, own_pid, counters, &mut links)
    }

    fn split(&mut self) -> (&mut DumpTracker, PortLinks<'_>) {
        (
            &mut self.dump,
            PortLinks {
                ports: &mut self.ports,
                counters: &self.counters,
            },
        )
    }
}

impl KernelFollow for LinkSync {
    fn on_datagram(&mut self, datagram: &[u8], rx_ns: u64, own_pid: u32) -> Option<DumpEnd> {
        LinkSync::on_datagram(self, datagram, rx_ns, own_pid)
    }

    fn on_lost(&mut self, overrun: bool) {
        if overrun {
            self.on_overrun();
        } else {
            self.on_lost_messages();
        }
    }

    fn dump_due(&self, now_ns: u64) -> bool {
        LinkSync::dump_due(self, now_ns)
    }

    fn dump_started(&mut self, seq: u32, now_ns: u64) {
        LinkSync::dump_started(self, seq, now_ns)
    }

    fn dump_failed(&mut self, now_ns: u64) {
        LinkSync::dump_failed(self, now_ns)
    }

    fn dump_timer(&mut self, now_ns: u64) -> Option<u64> {
        LinkSync::dump_timer(self, now_ns)
    }

    fn dump_request(&self, seq: u32) -> Request {
        request::getlink_dump(seq)
    }

    fn entries(&self) -> &'static str {
        "ports"
    }
}

impl Follower for PortLinks<'_> {
    // Inlined into the tracker's walk over a datagram: called per message.
    #[inline]
    fn on_message(&mut self, header: &NlHeader, payload: &[u8], rx_ns: u64, from_dump: bool) {
        let c = self.counters;
        let event = match parse::parse_event(header, payload) {
            Ok(ev) => ev,
            Err(e) => {
                c.malformed.inc();
                log_debug!("malformed netlink message (type {}): {e}", header.msg_type);
                return;
            }
        };
        let link = match event {
            Event::Link(link) => link,
            Event::Done => return c.msgs_done.inc(),
            Event::Ack { .. } => return c.msgs_error.inc(),
            Event::Ignored => return c.msgs_other.inc(),
        };
        match link.change {
            LinkChange::New => c.msgs_newlink.inc(),
            LinkChange::Del => c.msgs_dellink.inc(),
        }
        let applied = self.ports.apply(&link, rx_ns, from_dump);
        match applied {
            Applied::Skipped(Skip::NotAPort) => c.skipped_not_port.inc(),
            Applied::Skipped(Skip::Team) => c.skipped_team.inc(),
            Applied::Skipped(Skip::DelWithMaster) => c.skipped_del_with_master.inc(),
            Applied::Skipped(Skip::OldInterface) => c.skipped_old_interface.inc(),
            Applied::Refused => c.refused_names.inc(),
            Applied::Deleted | Applied::Written | Applied::Held => {}
        }
        let outcome = || match applied {
            Applied::Written => port_outcome::WRITE,
            Applied::Deleted => port_outcome::DELETE,
            Applied::Held => port_outcome::HELD,
            Applied::Skipped(_) => port_outcome::SKIPPED,
            Applied::Refused => port_outcome::REFUSED,
        };
        probes::port_apply(link.ifindex, outcome, rx_ns);
    }

    fn dump_started(&mut self) {
        self.ports.begin_resync();
    }

    fn dump_aborted(&mut self) {
        self.ports.abort_resync();
    }

    fn dump_complete(&mut self, now_ns: u64) -> usize {
        let vanished = self.ports.finish_resync(now_ns);
        self.counters.ports_vanished.add(vanished as u64);
        vanished
    }
}

#[cfg(test)]
mod tests;
