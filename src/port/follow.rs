//! From received datagrams to the port table: message dispatch, dump
//! tracking and overrun recovery. No I/O; the loop feeds it bytes.
//!
//! Recovery: an `ENOBUFS` means the kernel dropped messages. We then dump
//! every link (`RTM_GETLINK`) and reconcile: each port in the dump is
//! rewritten, and a port that had a netdev before the dump, is not in it
//! and saw no event during it, is gone (its STATE_DB entry is deleted).
//! Events keep flowing while the dump runs; they are applied in the order
//! the kernel queued them, so the newest state wins. A dump marked
//! `NLM_F_DUMP_INTR`, or overlapped by another overrun, is done again.

use std::sync::Arc;

use crate::engine::metrics::Counters;
use crate::engine::netlink::parse::{self, Event, LinkChange, NLM_F_DUMP_INTR};
use crate::log_debug;
use crate::port::rules::Skip;
use crate::port::table::{Applied, PortName, PortTable};

/// State of our own dump request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    Idle,
    Running {
        seq: u32,
        interrupted: bool,
        overrun: bool,
    },
}

/// How a datagram ended a dump, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpEnd {
    /// Complete and consistent; this many ports were found gone.
    Complete { vanished: usize },
    /// Inconsistent or overlapped by an overrun: it must be done again.
    Redo,
}

/// Follows the kernel's link messages into the port table.
pub struct LinkSync {
    /// The port table.
    pub ports: PortTable,
    counters: Arc<Counters>,
    dump: Dump,
    /// A dump must be (re)started.
    dump_wanted: bool,
    /// During the first dump of a cold start: every `Ethernet*` link seen is
    /// an old interface.
    marking_old: bool,
    /// Old interfaces found, for the start-up to bring down.
    pub old_found: Vec<(i32, PortName)>,
}

/// The old-interface rule looks at this prefix only (SONiC's `INTFS_PREFIX`).
const OLD_INTERFACE_PREFIX: &[u8] = b"Ethernet";

impl LinkSync {
    pub fn new(ports: PortTable, counters: Arc<Counters>) -> LinkSync {
        LinkSync {
            ports,
            counters,
            dump: Dump::Idle,
            dump_wanted: false,
            marking_old: false,
            old_found: Vec::new(),
        }
    }

    /// Treat every `Ethernet*` link reported before the first dump ends as
    /// an old interface (cold start, not a DPU).
    pub fn mark_old_interfaces_until_first_dump_ends(&mut self) {
        self.marking_old = true;
    }

    /// A dump request with sequence `seq` was sent.
    pub fn dump_started(&mut self, seq: u32) {
        self.dump = Dump::Running {
            seq,
            interrupted: false,
            overrun: false,
        };
        self.dump_wanted = false;
        self.ports.begin_resync();
    }

    /// The counters it updates.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Whether a dump is running.
    pub fn dump_running(&self) -> bool {
        matches!(self.dump, Dump::Running { .. })
    }

    /// Whether a dump must be started now.
    pub fn dump_wanted(&self) -> bool {
        self.dump_wanted && self.dump == Dump::Idle
    }

    /// The kernel reported `ENOBUFS`: messages were lost.
    pub fn on_overrun(&mut self) {
        self.counters.enobufs.inc();
        self.on_lost_messages();
    }

    /// Messages were lost (an overrun, or datagrams cut short): resync
    /// with a dump, and redo a dump that is running.
    pub fn on_lost_messages(&mut self) {
        match &mut self.dump {
            Dump::Idle => {
                if !self.dump_wanted {
                    self.counters.resyncs.inc();
                }
                self.dump_wanted = true;
            }
            Dump::Running { overrun, .. } => *overrun = true,
        }
    }

    /// Our dump request was refused (`send` failed): try again later.
    pub fn dump_failed(&mut self) {
        self.dump = Dump::Idle;
        self.dump_wanted = true;
        self.ports.abort_resync();
    }

    /// Apply every message of one datagram received at `rx_ns`. `own_pid`
    /// is the event socket's port id (our dump replies carry it).
    pub fn on_datagram(&mut self, datagram: &[u8], rx_ns: u64, own_pid: u32) -> Option<DumpEnd> {
        let c = &*self.counters;
        c.datagrams.inc();
        // Set when this datagram ends our dump: Some(failed).
        let mut dump_ended: Option<bool> = None;
        for item in parse::messages(datagram) {
            let (header, payload) = match item {
                Ok(m) => m,
                Err(e) => {
                    c.malformed.inc();
                    log_debug!("malformed netlink datagram: {e}");
                    break;
                }
            };
            let from_dump = match &mut self.dump {
                Dump::Running {
                    seq, interrupted, ..
                } if header.seq == *seq && header.pid == own_pid => {
                    if header.flags & NLM_F_DUMP_INTR != 0 {
                        *interrupted = true;
                    }
                    true
                }
                _ => false,
            };
            let event = match parse::parse_event(&header, payload) {
                Ok(ev) => ev,
                Err(e) => {
                    c.malformed.inc();
                    log_debug!("malformed netlink message (type {}): {e}", header.msg_type);
                    continue;
                }
            };
            match event {
                Event::Link(link) => {
                    match link.change {
                        LinkChange::New => c.msgs_newlink.inc(),
                        LinkChange::Del => c.msgs_dellink.inc(),
                    }
                    if self.marking_old && link.name.starts_with(OLD_INTERFACE_PREFIX) {
                        if link.change == LinkChange::New
                            && self.ports.old_interfaces() < crate::port::table::MAX_PORTS
                        {
                            if let Some(name) = PortName::new(link.name) {
                                if !self.old_found.iter().any(|(i, _)| *i == link.ifindex) {
                                    self.old_found.push((link.ifindex, name));
                                }
                            }
                            self.ports.add_old_interface(link.ifindex);
                        }
                        c.skipped_old_interface.inc();
                        continue;
                    }
                    match self.ports.apply(&link, rx_ns, from_dump) {
                        Applied::Skipped(Skip::NotAPort) => c.skipped_not_port.inc(),
                        Applied::Skipped(Skip::Team) => c.skipped_team.inc(),
                        Applied::Skipped(Skip::DelWithMaster) => c.skipped_del_with_master.inc(),
                        Applied::Skipped(Skip::OldInterface) => c.skipped_old_interface.inc(),
                        Applied::Refused => c.refused_names.inc(),
                        Applied::Deleted | Applied::Written | Applied::Held => {}
                    }
                }
                Event::Done => {
                    c.msgs_done.inc();
                    if from_dump {
                        dump_ended = Some(false);
                    }
                }
                Event::Ack { errno } => {
                    c.msgs_error.inc();
                    if from_dump && errno != 0 {
                        log_debug!("dump refused by the kernel: errno {errno}");
                        dump_ended = Some(true);
                    }
                }
                Event::Ignored => c.msgs_other.inc(),
            }
        }
        dump_ended.map(|failed| self.end_dump(rx_ns, failed))
    }

    fn end_dump(&mut self, now_ns: u64, failed: bool) -> DumpEnd {
        let Dump::Running {
            interrupted,
            overrun,
            ..
        } = self.dump
        else {
            return DumpEnd::Redo;
        };
        self.dump = Dump::Idle;
        if failed || interrupted || overrun {
            self.counters.dump_restarts.inc();
            self.ports.abort_resync();
            self.dump_wanted = true;
            return DumpEnd::Redo;
        }
        self.marking_old = false;
        let vanished = self.ports.finish_resync(now_ns);
        self.counters.ports_vanished.add(vanished as u64);
        DumpEnd::Complete { vanished }
    }
}

#[cfg(test)]
mod tests;
