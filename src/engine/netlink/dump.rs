//! Our own dump requests, tracked among the events: one small state
//! machine that every syncer uses to get back in step with the kernel.
//!
//! Every syncer follows the kernel the same way: events on a multicast
//! socket, plus a dump of the whole table at start-up and after messages
//! were lost (an overrun or a datagram cut short). The promise is that a
//! loss always ends in a complete, consistent dump, however the kernel
//! answers:
//!
//! ```text
//!            loss ─▶ wanted ──(due: backoff over)──▶ request seq N
//!   Running(N) ── DONE(N), no loss, no DUMP_INTR ──▶ Idle, reconciled
//!              ── DONE(N) after a loss or DUMP_INTR ──▶ wanted (redo)
//!              ── error ENOBUFS ──▶ still Running(N), redo after it
//!              ── error EBUSY ──▶ Busy: an earlier dump still runs
//!              ── other error, or no reply for DEADLINE ──▶ wanted, backoff
//!   Busy ── DONE/error of an earlier request, or DEADLINE ──▶ wanted (due now)
//! ```
//!
//! Why the kernel answers that way (net/netlink/af_netlink.c): a dump
//! request marks the socket's dump running and fills the first reply at
//! once; if the receive buffer is full it answers `ENOBUFS` yet the dump
//! stays marked running and goes on, with the request's sequence, as we
//! read. A request while one runs is answered `EBUSY`. The dump's own
//! replies are never dropped (the kernel pauses the dump while the buffer
//! is full); what an overrun can lose is multicast events and the error
//! answer to a request, and that loss is itself reported as `ENOBUFS` on
//! `recv`, which leads here to a redo. That is why one socket carries both
//! events and dumps: a separate dump socket would protect nothing that can
//! be lost, and it would lose the order between the two streams (a dump
//! reply read after a newer event would write an older state).
//!
//! A reply is ours when it carries our port id; it is the running dump's
//! when it also carries the request's sequence. The tracker knows nothing
//! about links or neighbors: each message that is not a dump's end goes to
//! a [`Follower`], told whether it came from the running dump, and the
//! follower hears when a dump starts, completes (so it can reconcile what
//! the dump did not report) or is given up.

use crate::engine::metrics::Counters;
use crate::engine::netlink::parse::{self, NlHeader, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP_INTR};
use crate::{log_debug, log_notice};

/// A running dump that sends nothing for this long is given up (another
/// is requested; if the kernel still runs the old one, `EBUSY` says so).
/// Dumping 64k neighbors takes ~0.2 s; this bounds silence, not length.
pub const DEADLINE_NS: u64 = 3_000_000_000;
/// Backoff before asking again after a refusal or a timeout: doubling from
/// the first to the last.
const BACKOFF_FIRST_NS: u64 = 10_000_000;
const BACKOFF_MAX_NS: u64 = 1_000_000_000;

/// What a syncer does with the kernel's messages and its dumps.
pub trait Follower {
    /// One message that is not a dump's end (`NLMSG_DONE`/`NLMSG_ERROR` of
    /// our requests), received at `rx_ns`; `from_dump` when it answers the
    /// running dump request.
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
enum State {
    Idle,
    /// Our request `seq` is being answered; given up at `deadline_ns`
    /// unless a reply moves it on.
    Running {
        seq: u32,
        interrupted: bool,
        overrun: bool,
        deadline_ns: u64,
    },
    /// Refused with `EBUSY`: an earlier dump of ours still runs in the
    /// kernel. Wait for its end, or the deadline.
    Busy {
        deadline_ns: u64,
    },
}

/// The state of our dump requests.
#[derive(Debug)]
pub struct DumpTracker {
    state: State,
    /// A complete dump is owed.
    wanted: bool,
    /// No request before this instant (backoff after a failure).
    not_before_ns: u64,
    backoff_ns: u64,
    /// Dumps that ended complete and consistent, ever.
    completed: u64,
}

impl Default for DumpTracker {
    fn default() -> Self {
        DumpTracker {
            state: State::Idle,
            wanted: false,
            not_before_ns: 0,
            backoff_ns: BACKOFF_FIRST_NS,
            completed: 0,
        }
    }
}

impl DumpTracker {
    /// Whether a dump is running (ours, or one we wait for to end).
    pub fn running(&self) -> bool {
        self.state != State::Idle
    }

    /// Whether a dump is owed and not yet running (it may be waiting for
    /// its backoff; [`due`](Self::due) says when it may go).
    pub fn wanted(&self) -> bool {
        self.wanted && self.state == State::Idle
    }

    /// Whether a dump request should be sent at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.wanted() && now_ns >= self.not_before_ns
    }

    /// The next instant [`on_timer`](Self::on_timer) has something to do:
    /// a deadline, or the end of a backoff.
    pub fn next_timer(&self) -> Option<u64> {
        match self.state {
            State::Running { deadline_ns, .. } | State::Busy { deadline_ns } => Some(deadline_ns),
            State::Idle if self.wanted => Some(self.not_before_ns),
            State::Idle => None,
        }
    }

    /// Give up what has waited past its deadline.
    pub fn on_timer(&mut self, now_ns: u64, counters: &Counters, follower: &mut impl Follower) {
        match self.state {
            State::Running {
                seq, deadline_ns, ..
            } if now_ns >= deadline_ns => {
                counters.dump_timeouts.inc();
                log_notice!(
                    "dump {seq}: no reply for {} s; asking again",
                    DEADLINE_NS / 1_000_000_000
                );
                follower.dump_aborted();
                self.retry_later(now_ns);
            }
            State::Busy { deadline_ns } if now_ns >= deadline_ns => {
                counters.dump_timeouts.inc();
                log_notice!("the kernel's earlier dump did not end in time; asking again");
                self.state = State::Idle;
                self.wanted = true;
            }
            _ => {}
        }
    }

    /// Dumps that ended complete and consistent so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Ask for a complete dump (self-verification): one that is running
    /// serves, else one is owed. Unlike a loss, it is not a resync.
    pub fn want(&mut self) {
        if self.state == State::Idle {
            self.wanted = true;
        }
    }

    /// Messages were lost (an overrun, or datagrams cut short): a complete
    /// dump is owed, and a running one cannot be it. Counts each resync
    /// asked for once.
    pub fn on_lost_messages(&mut self, counters: &Counters) {
        match &mut self.state {
            State::Running { overrun, .. } => *overrun = true,
            State::Idle | State::Busy { .. } => {
                if !self.wanted {
                    counters.resyncs.inc();
                }
                self.wanted = true;
            }
        }
    }

    /// A dump request with sequence `seq` was sent at `now_ns`.
    pub fn started(
        &mut self,
        seq: u32,
        now_ns: u64,
        counters: &Counters,
        follower: &mut impl Follower,
    ) {
        counters.dump_requests.inc();
        self.state = State::Running {
            seq,
            interrupted: false,
            overrun: false,
            deadline_ns: now_ns + DEADLINE_NS,
        };
        self.wanted = false;
        follower.dump_started();
    }

    /// Our dump request could not be sent: try again after a backoff.
    pub fn failed(&mut self, now_ns: u64, counters: &Counters, follower: &mut impl Follower) {
        counters.dump_refused.inc();
        follower.dump_aborted();
        self.retry_later(now_ns);
    }

    /// Walk one datagram received at `rx_ns`: our dumps' ends are handled
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
        let mut ended = None;
        for item in parse::messages(datagram) {
            let (header, payload) = match item {
                Ok(m) => m,
                Err(e) => {
                    counters.malformed.inc();
                    log_debug!("malformed netlink datagram: {e}");
                    break;
                }
            };
            let ours = header.pid == own_pid;
            let from_dump = ours && self.note_progress(&header, rx_ns);
            let end = match header.msg_type {
                NLMSG_DONE if ours => Some(Answer::Done),
                NLMSG_ERROR if ours => match parse::error_errno(payload) {
                    Some(0) | None => None,
                    Some(errno) => Some(Answer::Refused(errno)),
                },
                _ => None,
            };
            match end {
                Some(answer) => {
                    if let Some(e) = self.on_answer(header.seq, answer, rx_ns, counters, follower) {
                        ended = Some(e);
                    }
                    // Counted as every DONE and error is.
                    follower.on_message(&header, payload, rx_ns, false);
                }
                None => follower.on_message(&header, payload, rx_ns, from_dump),
            }
        }
        ended
    }

    /// A reply of ours: whether it belongs to the running dump (which then
    /// moved on, so its deadline moves too).
    fn note_progress(&mut self, header: &NlHeader, rx_ns: u64) -> bool {
        match &mut self.state {
            State::Running {
                seq,
                interrupted,
                deadline_ns,
                ..
            } if header.seq == *seq => {
                if header.flags & NLM_F_DUMP_INTR != 0 {
                    *interrupted = true;
                }
                *deadline_ns = rx_ns + DEADLINE_NS;
                true
            }
            _ => false,
        }
    }

    /// The kernel ended (or refused) the dump requested with `seq`.
    fn on_answer(
        &mut self,
        seq: u32,
        answer: Answer,
        now_ns: u64,
        counters: &Counters,
        follower: &mut impl Follower,
    ) -> Option<DumpEnd> {
        let running = match self.state {
            State::Running { seq: s, .. } => s == seq,
            State::Busy { .. } => {
                // An earlier dump of ours ended: the kernel is free again.
                log_debug!("an earlier dump ({seq}) ended; asking again");
                self.state = State::Idle;
                self.wanted = true;
                return None;
            }
            State::Idle => false,
        };
        if !running {
            return None;
        }
        match answer {
            Answer::Done => Some(self.end(now_ns, counters, follower)),
            Answer::Refused(libc::ENOBUFS) => {
                // The dump goes on as we read; but the buffer was full, so
                // events were lost meanwhile: it is redone once it ends.
                counters.dump_enobufs.inc();
                if let State::Running { overrun, .. } = &mut self.state {
                    *overrun = true;
                }
                None
            }
            Answer::Refused(libc::EBUSY) => {
                counters.dump_busy.inc();
                log_debug!("dump {seq} refused: EBUSY, an earlier dump still runs");
                follower.dump_aborted();
                self.state = State::Busy {
                    deadline_ns: now_ns + DEADLINE_NS,
                };
                self.wanted = true;
                Some(DumpEnd::Redo)
            }
            Answer::Refused(errno) => {
                counters.dump_refused.inc();
                log_notice!("dump {seq} refused by the kernel: errno {errno}; asking again");
                follower.dump_aborted();
                self.retry_later(now_ns);
                Some(DumpEnd::Redo)
            }
        }
    }

    /// The running dump's `NLMSG_DONE`.
    fn end(&mut self, now_ns: u64, counters: &Counters, follower: &mut impl Follower) -> DumpEnd {
        let State::Running {
            interrupted,
            overrun,
            ..
        } = self.state
        else {
            return DumpEnd::Redo;
        };
        self.state = State::Idle;
        if interrupted || overrun {
            counters.dump_restarts.inc();
            follower.dump_aborted();
            self.wanted = true;
            return DumpEnd::Redo;
        }
        self.backoff_ns = BACKOFF_FIRST_NS;
        self.completed += 1;
        DumpEnd::Complete {
            vanished: follower.dump_complete(now_ns),
        }
    }

    /// Owe a dump, asked for after the backoff, which doubles.
    fn retry_later(&mut self, now_ns: u64) {
        self.state = State::Idle;
        self.wanted = true;
        self.not_before_ns = now_ns + self.backoff_ns;
        self.backoff_ns = (self.backoff_ns * 2).min(BACKOFF_MAX_NS);
    }
}

/// How the kernel answered a dump request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Done,
    Refused(i32),
}

#[cfg(test)]
mod tests;
