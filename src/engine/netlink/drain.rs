//! Draining the netlink event socket into the port table, and asking the
//! kernel for dumps: the I/O half of following the kernel, shared by
//! start-up and the loop (the pure half is `sync.rs`).

use std::io;

use crate::engine::metrics::Counters;
use crate::engine::netlink::reader::{LinkReader, Read};
use crate::engine::netlink::request;
use crate::engine::sys::monotonic_ns;
use crate::port::follow::{DumpEnd, LinkSync};
use crate::{log_debug, log_info, log_notice, log_warn};

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
    sync: &mut LinkSync,
    counters: &Counters,
    dump_seq: &mut u32,
    max: usize,
) -> io::Result<Drained> {
    let own_pid = reader.socket().port_id();
    let mut seen = 0;
    let mut drained = Drained::Capped;
    while seen < max {
        match reader.read(counters)? {
            Read::Datagrams {
                count,
                truncated,
                drained: empty,
            } => {
                let rx = monotonic_ns();
                for i in 0..count {
                    match sync.on_datagram(reader.datagram(i), rx, own_pid) {
                        Some(DumpEnd::Complete { vanished }) => {
                            if vanished > 0 {
                                log_notice!("resync: {vanished} ports vanished during the gap, deleting them");
                            }
                            log_info!("link dump {dump_seq} complete");
                        }
                        Some(DumpEnd::Redo) => {
                            log_info!("link dump {dump_seq} inconsistent, redoing it")
                        }
                        None => {}
                    }
                }
                if truncated > 0 {
                    sync.on_lost_messages();
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
                sync.on_overrun();
            }
        }
    }
    if sync.dump_wanted() {
        request_dump(reader, sync, dump_seq);
    }
    Ok(drained)
}

/// Send the next `RTM_GETLINK` dump request. A refusal (`EBUSY` while the
/// kernel still runs one) leaves the dump wanted, for the next drain.
pub fn request_dump(reader: &LinkReader, sync: &mut LinkSync, dump_seq: &mut u32) {
    let seq = dump_seq.wrapping_add(1);
    match reader.socket().send(&request::getlink_dump(seq)) {
        Ok(()) => {
            *dump_seq = seq;
            sync.dump_started(seq);
        }
        Err(e) => {
            log_debug!("RTM_GETLINK dump request: {e}");
            sync.dump_failed();
        }
    }
}
