//! Draining the event socket into a syncer, and asking the kernel for
//! dumps: the I/O half of following the kernel, shared by every syncer's
//! start-up and loop (the bookkeeping is [`super::dump`], the rules the
//! syncer's own).

use std::io;

use crate::engine::metrics::Counters;
use crate::engine::netlink::dump::DumpEnd;
use crate::engine::netlink::reader::{LinkReader, Read};
use crate::engine::netlink::request::Request;
use crate::engine::probes;
use crate::engine::sys::monotonic_ns;
use crate::{log_info, log_notice, log_warn};

/// A syncer's view of the kernel: it applies datagrams and tracks its dump.
pub trait KernelFollow {
    /// Apply every message of one datagram received at `rx_ns`.
    fn on_datagram(&mut self, datagram: &[u8], rx_ns: u64, own_pid: u32) -> Option<DumpEnd>;
    /// Messages were lost (`overrun`: the kernel said `ENOBUFS`; else
    /// datagrams were cut short).
    fn on_lost(&mut self, overrun: bool);
    /// Whether a dump request should be sent at `now_ns`.
    fn dump_due(&self, now_ns: u64) -> bool;
    /// The dump request with this sequence was sent at `now_ns`.
    fn dump_started(&mut self, seq: u32, now_ns: u64);
    /// The dump request could not be sent.
    fn dump_failed(&mut self, now_ns: u64);
    /// Give up a dump past its deadline; returns the next instant it
    /// wants to be asked again (a deadline, or the end of a backoff).
    fn dump_timer(&mut self, now_ns: u64) -> Option<u64>;
    /// The request that dumps the table this syncer follows.
    fn dump_request(&self, seq: u32) -> Request;
    /// What the table holds, for the log ("ports", "neighbors").
    fn entries(&self) -> &'static str;
}

/// Where a drain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The socket had nothing more.
    Empty,
    /// `max` datagrams were read; more may be queued.
    Capped,
}

/// Read and apply datagrams until the socket is empty or `max` were read.
/// Overruns and cut datagrams turn into a wanted dump, which is requested
/// before returning (`dump_seq` is the last sequence used).
pub fn drain(
    reader: &mut LinkReader,
    follow: &mut impl KernelFollow,
    counters: &Counters,
    dump_seq: &mut u32,
    max: usize,
) -> io::Result<Drained> {
    let mut seen = 0;
    let mut drained = Drained::Capped;
    while seen < max {
        match reader.read(counters)? {
            Read::Datagrams {
                count,
                truncated,
                drained: empty,
            } => {
                apply_batch(reader, count, follow, *dump_seq);
                if truncated > 0 {
                    follow.on_lost(false);
                }
                seen += count + truncated;
                if empty {
                    drained = Drained::Empty;
                    break;
                }
            }
            Read::Empty => {
                drained = Drained::Empty;
                break;
            }
            Read::Overrun => {
                log_warn!(
                    "netlink receive buffer overrun (ENOBUFS): events lost, resyncing with a dump"
                );
                follow.on_lost(true);
            }
        }
    }
    if follow.dump_due(monotonic_ns()) {
        request_dump(reader, follow, dump_seq);
    }
    Ok(drained)
}

/// Hand the `count` datagrams just read to the follower, all stamped with
/// the same receive time.
fn apply_batch(reader: &LinkReader, count: usize, follow: &mut impl KernelFollow, dump_seq: u32) {
    let own_pid = reader.socket().port_id();
    let rx = monotonic_ns();
    probes::netlink_recv(count, rx);
    for i in 0..count {
        match follow.on_datagram(reader.datagram(i), rx, own_pid) {
            Some(DumpEnd::Complete { vanished }) => {
                if vanished > 0 {
                    log_notice!(
                        "resync: {vanished} {} vanished during the gap, deleting them",
                        follow.entries()
                    );
                }
                log_info!("dump {dump_seq} complete");
            }
            Some(DumpEnd::Redo) => log_info!("dump {dump_seq} inconsistent, redoing it"),
            None => {}
        }
    }
}

/// Send the next dump request. A request that cannot be sent leaves the
/// dump owed, asked again after a backoff.
pub fn request_dump(reader: &LinkReader, follow: &mut impl KernelFollow, dump_seq: &mut u32) {
    let seq = dump_seq.wrapping_add(1);
    let now = monotonic_ns();
    match reader.socket().send(&follow.dump_request(seq)) {
        Ok(()) => {
            *dump_seq = seq;
            follow.dump_started(seq, now);
        }
        Err(e) => {
            log_warn!("dump request: {e}; asking again shortly");
            follow.dump_failed(now);
        }
    }
}
