//! Our own dump requests, tracked among the events: which replies belong
//! to the dump, when it ended, and whether it must be done again.
//!
//! Every syncer follows the kernel the same way: events on a multicast
//! socket, plus a dump of the whole table at start-up and after messages
//! were lost (an overrun or a datagram cut short). The dump's replies arrive
//! on the same socket as the events, in the kernel's order, so the newest
//! state always wins; a reply is ours when it carries our port id and the
//! sequence number of the request. A dump marked `NLM_F_DUMP_INTR`, refused
//! with an error, or overlapped by another loss, is done again.
//!
//! The tracker knows nothing about links or neighbors: each message that is
//! not the dump's end goes to a [`Follower`], told whether it came from our
//! dump, and the follower hears when a dump starts, ends complete (so it can
//! reconcile what the dump did not report) or is aborted.

use crate::engine::metrics::Counters;
use crate::engine::netlink::parse::{self, NlHeader, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP_INTR};
use crate::log_debug;

/// What a syncer does with the kernel's messages and its dumps.
pub trait Follower {
    /// One message that is not our dump's end (`NLMSG_DONE`/`NLMSG_ERROR`
    /// of our request), received at `rx_ns`; `from_dump` when it answers
    /// our dump request.
    fn on_message(&mut self, header: &NlHeader, payload: &[u8], rx_ns: u64, from_dump: bool);
    /// A dump request was sent: what it reports from now on is current.
    fn dump_started(&mut self);
    /// The dump will not complete (refused, interrupted, overlapped).
    fn dump_aborted(&mut self);
    /// The dump ended complete and consistent at `now_ns`: what it did not
    /// report is gone. Returns how many entries that removed.
    fn dump_complete(&mut self, now_ns: u64) -> usize;
}

/// How a datagram ended a dump, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpEnd {
    /// Complete and consistent; this many entries were found gone.
    Complete { vanished: usize },
    /// Inconsistent, refused or overlapped by a loss: it must be done again.
    Redo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dump {
    Idle,
    Running {
        seq: u32,
        interrupted: bool,
        overrun: bool,
    },
}

/// The state of our dump requests.
#[derive(Debug)]
pub struct DumpTracker {
    dump: Dump,
    /// A dump must be (re)started.
    wanted: bool,
}

impl Default for DumpTracker {
    fn default() -> Self {
        DumpTracker {
            dump: Dump::Idle,
            wanted: false,
        }
    }
}

impl DumpTracker {
    /// Whether a dump is running.
    pub fn running(&self) -> bool {
        matches!(self.dump, Dump::Running { .. })
    }

    /// Whether a dump must be started now.
    pub fn wanted(&self) -> bool {
        self.wanted && self.dump == Dump::Idle
    }

    /// Messages were lost (an overrun, or datagrams cut short): resync
    /// with a dump, and redo a dump that is running. Counts each resync
    /// asked for once.
    pub fn on_lost_messages(&mut self, counters: &Counters) {
        match &mut self.dump {
            Dump::Idle => {
                if !self.wanted {
                    counters.resyncs.inc();
                }
                self.wanted = true;
            }
            Dump::Running { overrun, .. } => *overrun = true,
        }
    }

    /// A dump request with sequence `seq` was sent.
    pub fn started(&mut self, seq: u32, follower: &mut impl Follower) {
        self.dump = Dump::Running {
            seq,
            interrupted: false,
            overrun: false,
        };
        self.wanted = false;
        follower.dump_started();
    }

    /// Our dump request could not be sent: try again later.
    pub fn failed(&mut self, follower: &mut impl Follower) {
        self.dump = Dump::Idle;
        self.wanted = true;
        follower.dump_aborted();
    }

    /// Walk one datagram received at `rx_ns`: our dump's end is handled
    /// here, every other message goes to `follower`. `own_pid` is the
    /// socket's port id (our dump replies carry it). A malformed header
    /// ends the walk (the rest of the datagram cannot be framed); counted.
    pub fn on_datagram(
        &mut self,
        datagram: &[u8],
        rx_ns: u64,
        own_pid: u32,
        counters: &Counters,
        follower: &mut impl Follower,
    ) -> Option<DumpEnd> {
        counters.datagrams.inc();
        // Set when this datagram ends our dump: Some(failed).
        let mut dump_ended: Option<bool> = None;
        for item in parse::messages(datagram) {
            let (header, payload) = match item {
                Ok(m) => m,
                Err(e) => {
                    counters.malformed.inc();
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
            match header.msg_type {
                NLMSG_DONE if from_dump => {
                    counters.msgs_done.inc();
                    dump_ended = Some(false);
                }
                NLMSG_ERROR if from_dump => match parse::error_errno(payload) {
                    Some(errno) => {
                        counters.msgs_error.inc();
                        if errno != 0 {
                            log_debug!("dump refused by the kernel: errno {errno}");
                            dump_ended = Some(true);
                        }
                    }
                    None => counters.malformed.inc(),
                },
                _ => follower.on_message(&header, payload, rx_ns, from_dump),
            }
        }
        dump_ended.map(|failed| self.end(rx_ns, failed, counters, follower))
    }

    fn end(
        &mut self,
        now_ns: u64,
        failed: bool,
        counters: &Counters,
        follower: &mut impl Follower,
    ) -> DumpEnd {
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
            counters.dump_restarts.inc();
            follower.dump_aborted();
            self.wanted = true;
            return DumpEnd::Redo;
        }
        DumpEnd::Complete {
            vanished: follower.dump_complete(now_ns),
        }
    }
}
