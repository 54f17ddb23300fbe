//! Netlink: the sockets, the receive ring, in-place parsing, and requests.

pub mod parse;
pub mod request;
pub mod ring;
pub mod socket;

use std::io;

/// A real kernel capture from `tests/fixtures/netlink` (annotated there).
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/netlink/",
            $name,
            ".bin"
        ))
    };
}
#[cfg(test)]
pub(crate) use fixture;

use crate::metrics::Counters;
use ring::RecvRing;
use socket::{NetlinkSocket, Recv};

/// One receive from the event socket.
pub enum Received<'a> {
    /// A whole datagram, in the ring (or the overflow buffer).
    Datagram(&'a [u8]),
    /// Nothing queued.
    Empty,
    /// `ENOBUFS`: the kernel dropped messages.
    Overrun,
}

/// Receive the next datagram whole: peek its size, take a slot that size
/// from the ring, read it there. A datagram larger than the ring is read
/// into the overflow buffer and counted in `truncations`; none is ever cut.
pub fn receive<'a>(
    sock: &NetlinkSocket,
    ring: &'a mut RecvRing,
    counters: &Counters,
) -> io::Result<Received<'a>> {
    let len = match sock.peek_len()? {
        Recv::Data(n) => n,
        Recv::WouldBlock => return Ok(Received::Empty),
        Recv::Overrun => return Ok(Received::Overrun),
    };
    let (slot, oversize) = ring.slot(len);
    if oversize {
        counters.truncations.inc();
    }
    match sock.recv(slot)? {
        Recv::Data(n) => Ok(Received::Datagram(&slot[..n.min(len)])),
        Recv::WouldBlock => Ok(Received::Empty),
        Recv::Overrun => Ok(Received::Overrun),
    }
}
