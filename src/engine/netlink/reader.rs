//! Reading link datagrams off the event socket into the ring.
//!
//! Two ways, chosen per reader:
//!
//! - **batch** (the ring holds at least two slots): one `recvmmsg` reads up
//!   to [`BATCH`] datagrams straight into [`SLOT_BYTES`] slots of the ring.
//!   A slot is twice the largest datagram the kernel can send a link
//!   socket: a multicast link message is one message (1.5 KB for a veth),
//!   a dump datagram is at most 32 KiB (netlink's `max_recvmsg_len`) or one
//!   message, and one link message stays under 64 KiB, because attribute
//!   lengths are 16-bit and the one list a user can grow without bound
//!   (alternative names) is refused before it overflows its attribute (496
//!   names of 108 bytes made a 57 KB message here, the most it allowed).
//!   A batch shorter than asked means the queue was empty at that instant,
//!   so no extra read is needed to see `EAGAIN`. This costs one syscall per
//!   batch, where peeking every size first cost two per datagram (40 % of
//!   the daemon's CPU in a burst).
//! - **peek** (small rings, and for good after a cut): peek each datagram's
//!   size (`MSG_PEEK | MSG_TRUNC`), read it whole into a region that size,
//!   or into the overflow buffer when it is larger than the ring.
//!
//! - **ring** (io_uring with completions): the reactor's multishot receive
//!   puts datagrams into buffers carved from this reader's ring and reports
//!   where ([`RingRecv`]); the loop queues them here
//!   ([`LinkReader::ring_queue`]) and gives the buffers back once read
//!   ([`LinkReader::read_buffers`]). No system call per read.
//!
//! Should a datagram ever exceed a slot, `MSG_TRUNC` in its flags says so:
//! it is counted (`truncations`), the caller resyncs with a dump (which
//! restores whatever it held), and the reader switches to peeking for good,
//! so the same datagram is read whole the next time. (After the ring was
//! lent to the kernel, peeked datagrams go to the overflow buffer: the
//! kernel may still hold buffers in the ring.)

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;

use super::ring::RecvRing;
use super::socket::{NetlinkSocket, Recv};
use crate::engine::metrics::Counters;
use crate::engine::reactor::uring::RingRecv;
use crate::engine::sys::retry_eintr;
use crate::{log_debug, log_warn};

/// Bytes given to each datagram in batch mode.
pub const SLOT_BYTES: usize = 128 << 10;
/// Datagrams read per `recvmmsg`, at most.
pub const BATCH: usize = 32;

/// Where one received datagram lies.
#[derive(Debug, Clone, Copy)]
enum Span {
    Ring { at: usize, len: usize },
    Overflow { len: usize },
}

/// What one [`LinkReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `count` datagrams, available through [`LinkReader::datagram`];
    /// `truncated` more were cut and are gone (resync); `drained`: the
    /// queue was empty when the read ended.
    Datagrams {
        count: usize,
        truncated: usize,
        drained: bool,
    },
    /// Nothing queued.
    Empty,
    /// `ENOBUFS`: the kernel dropped messages.
    Overrun,
}

/// Reads the event socket into the ring.
pub struct LinkReader {
    sock: NetlinkSocket,
    ring: RecvRing,
    slot: usize,
    peek: bool,
    /// `recvmmsg` headers and their buffers, re-pointed at each read.
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    spans: Vec<Span>,
    /// Datagrams the reactor received into the ring, not read yet.
    ring_queue: VecDeque<RingRecv>,
    /// Ring buffers read, for the reactor to give back to the kernel.
    read_buffers: Vec<u16>,
    /// Datagrams come through the reactor's ring.
    in_ring: bool,
    /// The ring's memory was lent to the kernel: read nothing into it.
    lent: bool,
}

impl LinkReader {
    /// A reader over `sock` receiving into `ring`.
    pub fn new(sock: NetlinkSocket, ring: RecvRing) -> LinkReader {
        LinkReader::with_slot(sock, ring, SLOT_BYTES)
    }

    /// A reader with slots of `slot` bytes (tests use small ones to make
    /// the kernel cut datagrams).
    pub fn with_slot(sock: NetlinkSocket, ring: RecvRing, slot: usize) -> LinkReader {
        let slot = slot.max(1);
        let slots = (ring.capacity() / slot).min(BATCH);
        let peek = slots < 2;
        let iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: mmsghdr is plain data (pointers and integers); all-zero is
        // a valid, empty value.
        let header: libc::mmsghdr = unsafe { std::mem::zeroed() };
        LinkReader {
            sock,
            ring,
            slot,
            peek,
            headers: vec![header; slots.max(1)],
            iovecs: vec![iovec; slots.max(1)],
            spans: Vec::with_capacity(BATCH),
            ring_queue: VecDeque::with_capacity(1024),
            read_buffers: Vec::with_capacity(1024),
            in_ring: false,
            lent: false,
        }
    }

    /// The ring's memory, to lend to the reactor for receiving through it
    /// ([`crate::engine::reactor::Reactor::receive_netlink`]); `None` when
    /// the reader peeks (its ring is too small, or a datagram was cut).
    pub fn ring_memory(&mut self) -> Option<&mut [u8]> {
        if self.peek {
            return None;
        }
        Some(self.ring.bytes_mut())
    }

    /// The reactor now receives into the ring: read what it queues.
    pub fn receive_through_ring(&mut self) {
        self.in_ring = true;
        self.lent = true;
    }

    /// Whether datagrams come through the reactor's ring.
    pub fn in_ring(&self) -> bool {
        self.in_ring
    }

    /// Where the loop queues what the reactor received.
    pub fn ring_queue(&mut self) -> &mut VecDeque<RingRecv> {
        &mut self.ring_queue
    }

    /// The ring buffers read since the last call, for the reactor.
    pub fn read_buffers(&mut self) -> &mut Vec<u16> {
        &mut self.read_buffers
    }

    /// The socket (to send dump requests, register with the reactor).
    pub fn socket(&self) -> &NetlinkSocket {
        &self.sock
    }

    /// The ring (for its lock state and size).
    pub fn ring(&self) -> &RecvRing {
        &self.ring
    }

    /// Whether it peeks each datagram's size (small ring, or after a cut).
    pub fn peeking(&self) -> bool {
        self.peek
    }

    /// The `i`-th datagram of the last [`read`](Self::read).
    pub fn datagram(&self, i: usize) -> &[u8] {
        match self.spans[i] {
            Span::Ring { at, len } => &self.ring.bytes()[at..at + len],
            Span::Overflow { len } => self.ring.overflow(len),
        }
    }

    /// Read what is queued: a batch, or one datagram when peeking. Every
    /// datagram larger than its room is counted in `truncations`.
    pub fn read(&mut self, counters: &Counters) -> io::Result<Read> {
        self.spans.clear();
        let read = if !self.ring_queue.is_empty() {
            Ok(self.read_ring_queue())
        } else if self.in_ring {
            Ok(Read::Empty)
        } else if self.peek {
            self.read_peeking(counters)
        } else {
            self.read_batch()
        };
        if let Ok(Read::Datagrams { truncated, .. }) = read {
            counters.truncations.add(truncated as u64);
        }
        read
    }

    fn read_peeking(&mut self, counters: &Counters) -> io::Result<Read> {
        let len = match self.sock.peek_len()? {
            Recv::Data(n) => n,
            Recv::WouldBlock => return Ok(Read::Empty),
            Recv::Overrun => return Ok(Read::Overrun),
        };
        let (got, span) = if len > self.ring.capacity() || self.lent {
            // Read whole all the same, into the overflow buffer.
            counters.truncations.inc();
            (
                self.sock.recv(self.ring.overflow_mut(len))?,
                Span::Overflow { len },
            )
        } else {
            let at = self.ring.take(len);
            (
                self.sock.recv(&mut self.ring.bytes_mut()[at..at + len])?,
                Span::Ring { at, len },
            )
        };
        match got {
            Recv::Data(_) => {
                self.spans.push(span);
                Ok(Read::Datagrams {
                    count: 1,
                    truncated: 0,
                    drained: false,
                })
            }
            Recv::WouldBlock => Ok(Read::Empty),
            Recv::Overrun => Ok(Read::Overrun),
        }
    }

    /// Up to a batch of what the reactor queued, to the first overrun.
    fn read_ring_queue(&mut self) -> Read {
        if self.ring_queue.front() == Some(&RingRecv::Overrun) {
            self.ring_queue.pop_front();
            return Read::Overrun;
        }
        let mut truncated = 0;
        while self.spans.len() + truncated < BATCH {
            let Some(&RingRecv::Datagram {
                bid,
                at,
                len,
                truncated: cut,
            }) = self.ring_queue.front()
            else {
                break;
            };
            self.ring_queue.pop_front();
            self.read_buffers.push(bid);
            if cut {
                truncated += 1;
            } else {
                self.spans.push(Span::Ring { at, len });
            }
        }
        if truncated > 0 {
            log_warn!(
                "netlink: {truncated} datagram(s) larger than a ring buffer were cut; resyncing, and peeking each size from now on"
            );
            self.peek = true;
            self.in_ring = false;
        } else {
            log_debug!("netlink: {} datagrams from the ring", self.spans.len());
        }
        Read::Datagrams {
            count: self.spans.len(),
            truncated,
            drained: self.in_ring && self.ring_queue.is_empty(),
        }
    }

    /// One `recvmmsg` into the ring's slots, then each datagram's verdict.
    /// (Longer than a screenful: the unsafe setup of the message headers
    /// and the reading of what the kernel filled in belong together, so the
    /// SAFETY argument can be checked in one place.)
    fn read_batch(&mut self) -> io::Result<Read> {
        let (slots, slot) = (self.headers.len(), self.slot);
        let region = self.ring.take(slots * slot);
        let base = self.ring.bytes_mut()[region..region + slots * slot].as_mut_ptr();
        for (i, (hdr, iov)) in self
            .headers
            .iter_mut()
            .zip(self.iovecs.iter_mut())
            .enumerate()
        {
            // SAFETY: `base` points at `slots * slot` bytes of the ring;
            // slot `i` lies inside them.
            iov.iov_base = unsafe { base.add(i * slot) }.cast();
            iov.iov_len = slot;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_name = std::ptr::null_mut();
            hdr.msg_hdr.msg_namelen = 0;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let fd = self.sock.as_raw_fd();
        let headers = self.headers.as_mut_ptr();
        // SAFETY: `headers` holds `slots` initialised mmsghdrs whose iovecs
        // point at disjoint `slot`-byte regions of the ring, all owned by
        // `self` and alive for the call; the kernel writes at most that.
        let got = retry_eintr(|| unsafe {
            libc::recvmmsg(
                fd,
                headers,
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            ) as isize
        });
        let count = match got {
            Ok(n) => n,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(Read::Empty),
                    Some(libc::ENOBUFS) => Ok(Read::Overrun),
                    _ => Err(e),
                }
            }
        };
        let mut truncated = 0;
        for (i, hdr) in self.headers[..count].iter().enumerate() {
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                truncated += 1;
                continue;
            }
            self.spans.push(Span::Ring {
                at: region + i * slot,
                len: hdr.msg_len as usize,
            });
        }
        if truncated > 0 {
            log_warn!(
                "netlink: {truncated} datagram(s) larger than {slot} bytes were cut; resyncing, and peeking each size from now on"
            );
            self.peek = true;
        } else {
            log_debug!("netlink: {count} datagrams in one read");
        }
        Ok(Read::Datagrams {
            count: self.spans.len(),
            truncated,
            drained: count < slots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_rings_peek_large_ones_batch() {
        let events = |ring: usize| {
            // A socket that never receives anything: a request socket.
            let sock = NetlinkSocket::requests(std::time::Duration::from_millis(1)).unwrap();
            LinkReader::new(sock, RecvRing::new(ring).unwrap())
        };
        assert!(events(1024).peeking());
        assert!(events(SLOT_BYTES).peeking());
        let r = events(4 << 20);
        assert!(!r.peeking());
        assert_eq!(r.headers.len(), BATCH);
        assert_eq!(events(3 * SLOT_BYTES).headers.len(), 3);
    }
}
