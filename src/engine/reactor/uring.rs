//! io_uring: readiness for every fd, and — where the kernel allows — the
//! I/O itself, so that a loop turn costs one `io_uring_enter`.
//!
//! **Readiness.** One multishot `POLL_ADD` per registered fd posts a
//! completion on each wake-up of the fd, like an edge-triggered epoll;
//! when the kernel ends one (no `IORING_CQE_F_MORE`), it is armed again.
//! The signalfd, Redis sockets while they connect, and everything on a
//! kernel without the features below use it.
//!
//! **Completions** (`DEFER_TASKRUN`, multishot receive, provided-buffer
//! rings; Linux 6.0+):
//! - netlink: [`UringReactor::receive_netlink`] registers the reader's
//!   mlocked ring as a provided-buffer ring and arms one multishot
//!   `RECVMSG`; each datagram completes into a buffer the kernel picked,
//!   and the reader parses it there ([`take_datagrams`], [`give_back`]).
//! - Redis: [`UringReactor::start_stream`] swaps a connected socket's poll
//!   for a multishot `RECV` into reactor-owned buffers, and sends go as
//!   `SEND` requests, one at a time ([`stream::Stream`]). Requests are
//!   queued and submitted by the next wait: the turn's write and the next
//!   wait are one call.
//!
//! `user_data` is `generation << 32 | kind << 24 | token`: after an fd is
//! deregistered, completions still in flight for it carry an old
//! generation; they are dropped, except that buffers they carry are given
//! back and a send's memory is kept until its completion.
//!
//! [`take_datagrams`]: UringReactor::take_datagrams
//! [`give_back`]: UringReactor::give_back

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{CancelBuilder, RecvMsgOut};
use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use memmap2::{MmapMut, MmapOptions};

use super::{Readiness, Token};

pub mod bufring;
pub mod stream;

use bufring::BufRing;
use stream::{Received, Stream};

/// Submission queue size: fds, re-arms, sends and removals of one turn.
const ENTRIES: u32 = 256;
/// Completion queue size: at least every buffer of both rings (each
/// receive completion holds one) and a turn's other completions.
const CQ_ENTRIES: u32 = 4096;

/// Bytes per netlink buffer: a link message stays under 64 KiB and a dump
/// datagram under 32 KiB (see `netlink::reader`), plus the 16-byte
/// `io_uring_recvmsg_out` header. A datagram cut anyway is counted and
/// resynced, and the reader stops using the ring.
pub const NETLINK_BUFFER_BYTES: usize = 64 << 10;
/// The most netlink buffers registered (the ring's capacity may allow more).
const MAX_NETLINK_BUFFERS: usize = 1024;
/// Redis reply buffers: replies to one turn's batch are small.
const STREAM_BUFFER_BYTES: usize = 16 << 10;
const STREAM_BUFFERS: u16 = 32;

const NETLINK_GROUP: u16 = 0;
const STREAM_GROUP: u16 = 1;

const POLL_MASK: u32 =
    (libc::POLLIN | libc::POLLOUT | libc::POLLERR | libc::POLLHUP | libc::POLLRDHUP) as u32;

/// What a request is, in its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Poll = 0,
    Netlink = 1,
    Recv = 2,
    Send = 3,
}

impl Kind {
    fn of(user_data: u64) -> Option<Kind> {
        match (user_data >> 24) & 0xff {
            0 => Some(Kind::Poll),
            1 => Some(Kind::Netlink),
            2 => Some(Kind::Recv),
            3 => Some(Kind::Send),
            _ => None,
        }
    }
}

fn encode(generation: u32, kind: Kind, token: Token) -> u64 {
    (u64::from(generation) << 32) | ((kind as u64) << 24) | (token as u64 & 0xff_ffff)
}

fn with_kind(user_data: u64, kind: Kind) -> u64 {
    (user_data & !(0xff << 24)) | ((kind as u64) << 24)
}

fn token_of(user_data: u64) -> Token {
    (user_data & 0xff_ffff) as Token
}

/// One registration: its fd and the `user_data` of its requests (the
/// `Poll` kind; a stream's receive and send use the same with their kind).
#[derive(Debug, Clone, Copy)]
struct Registration {
    fd: RawFd,
    user_data: u64,
    /// Its I/O goes through the ring ([`UringReactor::start_stream`]).
    stream: bool,
}

/// One datagram (or an overrun) the netlink receive completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingRecv {
    /// Bytes `at..at + len` of the registered ring memory; `bid` is its
    /// buffer, given back once read.
    Datagram {
        bid: u16,
        at: usize,
        len: usize,
        truncated: bool,
    },
    /// `ENOBUFS` with buffers left: the socket overran, messages are lost.
    Overrun,
}

/// The netlink socket's multishot receive.
struct NetlinkRecv {
    fd: RawFd,
    token: Token,
    user_data: u64,
    bufs: BufRing,
    /// The receive is armed (or queued to be).
    armed: bool,
    /// Stopped for good (a datagram was cut): do not arm again.
    stopped: bool,
    /// The kernel reads `msg_namelen`/`msg_controllen` (both 0) at issue;
    /// boxed so its address is stable while queued.
    msghdr: Box<libc::msghdr>,
}

/// The buffers Redis replies are received into.
struct StreamBuffers {
    bufs: BufRing,
    /// Owns the memory `bufs` points into; dropped after the ring.
    _memory: MmapMut,
}

/// The io_uring backend.
pub struct UringReactor {
    ring: IoUring,
    /// I/O through the ring is possible (else readiness only).
    completions: bool,
    /// By token: the live registration.
    live: HashMap<Token, Registration>,
    generation: u32,
    netlink: Option<NetlinkRecv>,
    /// Datagrams completed since the last [`take_datagrams`](Self::take_datagrams).
    datagrams: Vec<RingRecv>,
    streams: HashMap<Token, Stream>,
    stream_buffers: Option<StreamBuffers>,
    /// Streams deregistered with a send still in flight, by `user_data`:
    /// the kernel reads their memory until it completes.
    closing: HashMap<u64, Stream>,
    /// Requests whose final completion has not come (for a clean drop).
    in_flight: usize,
    /// Scratch, reused every wait: registrations to arm again, and the
    /// completions read.
    rearm: Vec<Registration>,
    cqes: Vec<(u64, i32, u32)>,
}

impl UringReactor {
    /// Set up a ring and check the kernel supports what we use. Multishot
    /// poll (5.13+) is the minimum; the completion I/O needs 6.0+
    /// (`DEFER_TASKRUN`, multishot receive, buffer rings, cancel by fd)
    /// and is left off without it. An error here means: use epoll.
    pub fn new() -> io::Result<UringReactor> {
        let (ring, completions) = match IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(ENTRIES)
        {
            Ok(ring) => (ring, true),
            Err(_) => (
                IoUring::builder().setup_cqsize(CQ_ENTRIES).build(ENTRIES)?,
                false,
            ),
        };
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::PollRemove::CODE, "POLL_REMOVE"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring without {name}"),
                ));
            }
        }
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without EXT_ARG (timeouts)",
            ));
        }
        let completions = completions
            && [
                opcode::RecvMsgMulti::CODE,
                opcode::RecvMulti::CODE,
                opcode::Send::CODE,
                opcode::AsyncCancel2::CODE,
            ]
            .iter()
            .all(|code| probe.is_supported(*code));
        let mut reactor = UringReactor {
            ring,
            completions,
            live: HashMap::new(),
            generation: 0,
            netlink: None,
            datagrams: Vec::with_capacity(256),
            streams: HashMap::new(),
            stream_buffers: None,
            closing: HashMap::new(),
            in_flight: 0,
            rearm: Vec::new(),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
        };
        if reactor.completions {
            reactor.completions = reactor.set_up_stream_buffers().is_ok();
        }
        Ok(reactor)
    }

    /// Whether I/O goes through the ring (else it is readiness only).
    pub fn completions(&self) -> bool {
        self.completions
    }

    fn set_up_stream_buffers(&mut self) -> io::Result<()> {
        let bytes = usize::from(STREAM_BUFFERS) * STREAM_BUFFER_BYTES;
        let mut memory = MmapOptions::new().len(bytes).populate().map_anon()?;
        // SAFETY: `memory` is `STREAM_BUFFERS * STREAM_BUFFER_BYTES` bytes,
        // owned next to the ring in `StreamBuffers` and dropped only with
        // the reactor, after every receive has ended (Drop) — and after
        // `ring`, which is declared first.
        let bufs = unsafe {
            BufRing::register(
                &self.ring.submitter(),
                STREAM_GROUP,
                memory.as_mut_ptr(),
                STREAM_BUFFER_BYTES,
                STREAM_BUFFERS,
            )?
        };
        self.stream_buffers = Some(StreamBuffers {
            bufs,
            _memory: memory,
        });
        Ok(())
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1).max(1);
        self.generation
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry we push points only at memory the
            // reactor keeps alive until the request's final completion:
            // the netlink msghdr, send buffers (kept in `closing` when
            // deregistered early) and buffer rings (see `BufRing`).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            match pushed {
                Ok(()) => return Ok(()),
                // Full: hand what is queued to the kernel, then retry.
                Err(_) => {
                    self.ring.submit()?;
                }
            }
        }
    }

    fn arm_poll(&mut self, reg: Registration) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(reg.fd), POLL_MASK)
            .multi(true)
            .build()
            .user_data(reg.user_data);
        self.in_flight += 1;
        self.push(entry)
    }

    pub fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        let generation = self.next_generation();
        let reg = Registration {
            fd,
            user_data: encode(generation, Kind::Poll, token),
            stream: false,
        };
        if let Some(old) = self.live.insert(token, reg) {
            self.end(old)?;
        }
        self.arm_poll(reg)?;
        self.ring.submit()?;
        Ok(())
    }

    /// End what a registration has in flight: its poll, or a stream's
    /// receive and send (their memory kept until they complete).
    fn end(&mut self, reg: Registration) -> io::Result<()> {
        if !reg.stream {
            // The removal's own completion carries user_data 0 (never a live one).
            return self.push(opcode::PollRemove::new(reg.user_data).build().user_data(0));
        }
        let token = token_of(reg.user_data);
        if let Some(mut s) = self.streams.remove(&token) {
            self.give_back_received(&mut s);
            if s.sending {
                self.closing.insert(with_kind(reg.user_data, Kind::Send), s);
            }
        }
        self.push(
            opcode::AsyncCancel2::new(CancelBuilder::fd(types::Fd(reg.fd)).all())
                .build()
                .user_data(0),
        )
    }

    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let Some((&token, &reg)) = self.live.iter().find(|(_, r)| r.fd == fd) else {
            return Ok(());
        };
        self.live.remove(&token);
        self.end(reg)?;
        self.ring.submit()?;
        Ok(())
    }

    /// A connected stream socket registered as `token`: from now on its
    /// bytes go through the ring ([`send`](Self::send),
    /// [`recv`](Self::recv)). Without completions, nothing changes.
    pub fn start_stream(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        if !self.completions {
            return Ok(());
        }
        let Some(reg) = self
            .live
            .get_mut(&token)
            .filter(|r| r.fd == fd && !r.stream)
        else {
            return Ok(());
        };
        reg.stream = true;
        let reg = *reg;
        self.push(opcode::PollRemove::new(reg.user_data).build().user_data(0))?;
        let mut s = Stream::new(fd, reg.user_data);
        s.receiving = true;
        self.streams.insert(token, s);
        self.arm_stream_recv(fd, reg.user_data)
    }

    fn arm_stream_recv(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(fd), STREAM_GROUP)
            .build()
            .user_data(with_kind(user_data, Kind::Recv));
        self.in_flight += 1;
        self.push(entry)
    }

    /// Whether `fd`'s bytes go through the ring.
    pub fn is_stream(&self, fd: RawFd) -> bool {
        self.streams.values().any(|s| s.fd == fd)
    }

    fn stream_mut(&mut self, fd: RawFd) -> Option<(Token, &mut Stream)> {
        self.streams
            .iter_mut()
            .find(|(_, s)| s.fd == fd)
            .map(|(t, s)| (*t, s))
    }

    /// Queue `buf` on stream `fd` (see [`Stream::accept`]); `Ok(0)` means
    /// full. The send request goes with the next wait.
    pub fn send(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        let Some((_, s)) = self.stream_mut(fd) else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        if let Some(errno) = s.error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let n = s.accept(buf);
        if n > 0 && !s.sending {
            self.submit_send(fd)?;
        }
        Ok(n)
    }

    fn submit_send(&mut self, fd: RawFd) -> io::Result<()> {
        let Some((_, s)) = self.stream_mut(fd) else {
            return Ok(());
        };
        let bytes = s.to_send();
        let len = bytes.len().min(u32::MAX as usize) as u32;
        let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(with_kind(s.user_data, Kind::Send));
        s.sending = true;
        self.in_flight += 1;
        self.push(entry)
    }

    /// Copy what stream `fd` received into `buf`: `Ok(Some(0))` at the end
    /// of the stream, `Ok(None)` when nothing is there yet.
    pub fn recv(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(bufs) = self.stream_buffers.as_mut().map(|b| &mut b.bufs) else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        let Some(s) = self.streams.values_mut().find(|s| s.fd == fd) else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = s.received.front_mut() else {
                break;
            };
            let data = &bufs.bytes(front.bid, front.at + front.len)[front.at..];
            let k = data.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&data[..k]);
            n += k;
            front.at += k;
            front.len -= k;
            if front.len == 0 {
                let bid = front.bid;
                s.received.pop_front();
                bufs.give_back(bid);
            }
        }
        bufs.publish();
        if n > 0 {
            return Ok(Some(n));
        }
        if let Some(errno) = s.error {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if s.eof {
            return Ok(Some(0));
        }
        Ok(None)
    }

    fn give_back_received(&mut self, s: &mut Stream) {
        if let Some(b) = self.stream_buffers.as_mut() {
            for r in s.received.drain(..) {
                b.bufs.give_back(r.bid);
            }
            b.bufs.publish();
        }
    }

    /// Receive netlink datagrams on `fd` (reported as `token`) through the
    /// ring: `memory` is carved into buffers of [`NETLINK_BUFFER_BYTES`].
    /// `Ok(false)` when it cannot (no completions, too little memory): the
    /// caller keeps reading on readiness, which [`register`] sets up.
    ///
    /// # Safety
    ///
    /// `memory` must stay valid, and be neither read nor written by anyone
    /// but through [`take_datagrams`] offsets, for as long as this reactor
    /// lives: the kernel writes into it until the reactor is dropped.
    ///
    /// [`register`]: Self::register
    /// [`take_datagrams`]: Self::take_datagrams
    pub unsafe fn receive_netlink(
        &mut self,
        fd: RawFd,
        token: Token,
        memory: &mut [u8],
    ) -> io::Result<bool> {
        let count = (memory.len() / NETLINK_BUFFER_BYTES).min(MAX_NETLINK_BUFFERS);
        if !self.completions || self.netlink.is_some() || count < 2 {
            return Ok(false);
        }
        // A power of two, as the buffer ring requires.
        let count = 1u16 << (usize::BITS - 1 - count.leading_zeros());
        // SAFETY: the caller's promise on `memory`, which holds at least
        // `count * NETLINK_BUFFER_BYTES` bytes.
        let bufs = unsafe {
            BufRing::register(
                &self.ring.submitter(),
                NETLINK_GROUP,
                memory.as_mut_ptr(),
                NETLINK_BUFFER_BYTES,
                count,
            )?
        };
        let generation = self.next_generation();
        // SAFETY: msghdr is plain data; all-zero is an empty header (no
        // name, no control data), which is what the receive reports.
        let msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
        self.netlink = Some(NetlinkRecv {
            fd,
            token,
            user_data: encode(generation, Kind::Netlink, token),
            bufs,
            armed: false,
            stopped: false,
            msghdr: Box::new(msghdr),
        });
        self.arm_netlink()?;
        self.ring.submit()?;
        Ok(true)
    }

    /// Whether netlink datagrams come through the ring.
    pub fn netlink_in_ring(&self) -> bool {
        self.netlink.as_ref().is_some_and(|n| !n.stopped)
    }

    fn arm_netlink(&mut self) -> io::Result<()> {
        let Some(n) = self.netlink.as_mut().filter(|n| !n.armed && !n.stopped) else {
            return Ok(());
        };
        n.armed = true;
        let entry = opcode::RecvMsgMulti::new(types::Fd(n.fd), &*n.msghdr, NETLINK_GROUP)
            .build()
            .user_data(n.user_data);
        self.in_flight += 1;
        self.push(entry)
    }

    /// Stop receiving netlink through the ring (a datagram was cut):
    /// cancel the receive and watch the fd for readiness instead. The
    /// buffers stay the kernel's until the reactor is dropped.
    pub fn stop_netlink(&mut self) -> io::Result<()> {
        let Some(n) = self.netlink.as_mut().filter(|n| !n.stopped) else {
            return Ok(());
        };
        n.stopped = true;
        let (fd, token, user_data) = (n.fd, n.token, n.user_data);
        self.push(
            opcode::AsyncCancel2::new(CancelBuilder::user_data(user_data))
                .build()
                .user_data(0),
        )?;
        self.register(fd, token)
    }

    /// The datagrams completed since the last call, in order.
    pub fn take_datagrams(&mut self, out: &mut impl Extend<RingRecv>) {
        out.extend(self.datagrams.drain(..));
    }

    /// The reader is done with these netlink buffers.
    pub fn give_back(&mut self, bids: &mut Vec<u16>) {
        let Some(n) = self.netlink.as_mut() else {
            bids.clear();
            return;
        };
        for bid in bids.drain(..) {
            n.bufs.give_back(bid);
        }
        n.bufs.publish();
    }

    /// Submit what is queued and wait (with the timeout), then turn
    /// completions into readiness, datagrams and stream bytes.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        self.wait_for(timeout, 1, out)
    }

    /// Wait `window` for completions to gather — returning early once as
    /// many are in as there are netlink buffers — then handle them: a
    /// burst's coalescing pause and the next turn's wait in one call.
    pub fn wait_for_batch(&mut self, window: Duration, out: &mut Vec<Readiness>) -> io::Result<()> {
        let want = self
            .netlink
            .as_ref()
            .map_or(1, |n| usize::from(n.bufs.count()));
        self.wait_for(Some(window), want, out)
    }

    /// Arm what starved, submit, wait for `want` completions (or the
    /// timeout) and handle what came.
    fn wait_for(
        &mut self,
        timeout: Option<Duration>,
        want: usize,
        out: &mut Vec<Readiness>,
    ) -> io::Result<()> {
        self.arm_starved()?;
        self.enter(timeout, want)?;
        self.complete(out)
    }

    /// Turn the completions in the queue into readiness, datagrams and
    /// stream bytes.
    fn complete(&mut self, out: &mut Vec<Readiness>) -> io::Result<()> {
        let mut netlink_ready = false;
        let mut cq = std::mem::take(&mut self.rearm);
        cq.clear();
        // Collect first: handling a completion may push new requests.
        let mut completions = std::mem::take(&mut self.cqes);
        completions.clear();
        completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(user_data, result, flags) in &completions {
            if user_data == 0 {
                continue; // a cancel's or removal's own completion
            }
            let last = !cqueue::more(flags);
            if last {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            match Kind::of(user_data) {
                Some(Kind::Poll) => self.on_poll(user_data, result, last, out, &mut cq),
                Some(Kind::Netlink) => {
                    netlink_ready |= self.on_netlink(user_data, result, flags, last)
                }
                Some(Kind::Recv) => self.on_stream_recv(user_data, result, flags, last, out)?,
                Some(Kind::Send) => self.on_send(user_data, result, out)?,
                None => {}
            }
        }
        if netlink_ready {
            if let Some(n) = &self.netlink {
                out.push(Readiness {
                    token: n.token,
                    readable: true,
                    writable: false,
                    error: false,
                });
            }
        }
        for reg in cq.drain(..) {
            self.arm_poll(reg)?;
        }
        self.rearm = cq;
        self.cqes = completions;
        Ok(())
    }

    /// Arm again the receives that ended for want of buffers, now that
    /// buffers are back (they go with this wait's submission).
    fn arm_starved(&mut self) -> io::Result<()> {
        if self
            .netlink
            .as_ref()
            .is_some_and(|n| !n.armed && !n.stopped && !n.bufs.empty())
        {
            self.arm_netlink()?;
        }
        let Some(sb) = &self.stream_buffers else {
            return Ok(());
        };
        if sb.bufs.empty() {
            return Ok(());
        }
        let mut starved = [(0, 0); 8];
        let mut k = 0;
        for s in self.streams.values_mut() {
            if !s.receiving && !s.eof && s.error.is_none() && k < starved.len() {
                s.receiving = true;
                starved[k] = (s.fd, s.user_data);
                k += 1;
            }
        }
        for &(fd, user_data) in &starved[..k] {
            self.arm_stream_recv(fd, user_data)?;
        }
        Ok(())
    }

    fn enter(&mut self, timeout: Option<Duration>, want: usize) -> io::Result<()> {
        let waited = match timeout {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submit_and_wait(want),
        };
        match waited {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn on_poll(
        &mut self,
        user_data: u64,
        result: i32,
        last: bool,
        out: &mut Vec<Readiness>,
        rearm: &mut Vec<Registration>,
    ) {
        let token = token_of(user_data);
        let Some(&reg) = self.live.get(&token) else {
            return;
        };
        if reg.user_data != user_data || reg.stream {
            return; // stale: deregistered, or now a stream
        }
        if last && result != -libc::ECANCELED {
            rearm.push(reg);
        }
        if result < 0 {
            if result != -libc::ECANCELED {
                // Report it: the owner reads or writes and learns the error.
                out.push(Readiness {
                    token,
                    readable: true,
                    writable: true,
                    error: true,
                });
            }
            return;
        }
        let mask = result as u32;
        let hangup = mask & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) as u32 != 0;
        out.push(Readiness {
            token,
            readable: mask & libc::POLLIN as u32 != 0 || hangup,
            writable: mask & libc::POLLOUT as u32 != 0,
            error: mask & libc::POLLERR as u32 != 0,
        });
    }

    /// One netlink receive completion; whether it brought something.
    fn on_netlink(&mut self, user_data: u64, result: i32, flags: u32, last: bool) -> bool {
        let Some(n) = self.netlink.as_mut().filter(|n| n.user_data == user_data) else {
            return false;
        };
        if last {
            n.armed = false;
        }
        let mut brought = false;
        if let Some(bid) = cqueue::buffer_select(flags) {
            n.bufs.taken();
            let len = usize::try_from(result).unwrap_or(0);
            let buffer = n.bufs.bytes(bid, len);
            let at = usize::from(bid % n.bufs.count()) * n.bufs.buffer_len();
            match RecvMsgOut::parse(buffer, &n.msghdr) {
                Ok(msg) => {
                    let payload = msg.payload_data();
                    let offset = payload.as_ptr() as usize - buffer.as_ptr() as usize;
                    self.datagrams.push(RingRecv::Datagram {
                        bid,
                        at: at + offset,
                        len: payload.len(),
                        truncated: msg.is_payload_truncated(),
                    });
                }
                // Shorter than its own header: nothing to read, but the
                // buffer is ours to give back.
                Err(()) => self.datagrams.push(RingRecv::Datagram {
                    bid,
                    at,
                    len: 0,
                    truncated: true,
                }),
            }
            brought = true;
        } else if result == -libc::ENOBUFS && !n.bufs.empty() {
            self.datagrams.push(RingRecv::Overrun);
            brought = true;
        }
        // Else ENOBUFS with every buffer ours: the ring ran dry. Whatever
        // ended it (that, an error, a full completion queue), it is armed
        // again before the next wait, once buffers are back.
        brought
    }

    fn on_stream_recv(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        last: bool,
        out: &mut Vec<Readiness>,
    ) -> io::Result<()> {
        let token = token_of(user_data);
        let Some(sb) = self.stream_buffers.as_mut() else {
            return Ok(());
        };
        let live = self
            .streams
            .get_mut(&token)
            .filter(|s| with_kind(s.user_data, Kind::Recv) == user_data);
        let bid = cqueue::buffer_select(flags);
        if bid.is_some() {
            sb.bufs.taken();
        }
        let Some(s) = live else {
            // A stale receive: its buffer goes back at once.
            if let Some(bid) = bid {
                sb.bufs.give_back(bid);
                sb.bufs.publish();
            }
            return Ok(());
        };
        if last {
            s.receiving = false;
        }
        match (result, bid) {
            (n, Some(bid)) if n > 0 => s.received.push_back(Received {
                bid,
                at: 0,
                len: n as usize,
            }),
            (0, _) => s.eof = true,
            // Out of buffers (all are ours): armed again before a wait
            // once the reader gives some back.
            (e, _) if e == -libc::ENOBUFS && sb.bufs.empty() => {}
            (e, _) if e == -libc::ECANCELED => {}
            (e, _) if e < 0 => s.error = Some(-e),
            _ => {}
        }
        out.push(Readiness {
            token,
            readable: true,
            writable: false,
            error: false,
        });
        Ok(())
    }

    fn on_send(&mut self, user_data: u64, result: i32, out: &mut Vec<Readiness>) -> io::Result<()> {
        if self.closing.remove(&user_data).is_some() {
            return Ok(()); // its memory is free now
        }
        let token = token_of(user_data);
        let Some(s) = self
            .streams
            .get_mut(&token)
            .filter(|s| with_kind(s.user_data, Kind::Send) == user_data)
        else {
            return Ok(());
        };
        if result < 0 {
            s.sending = false;
            s.error = Some(-result);
            out.push(Readiness {
                token,
                readable: true,
                writable: true,
                error: true,
            });
            return Ok(());
        }
        let more = s.sent(result as usize);
        let fd = s.fd;
        if std::mem::take(&mut s.blocked) {
            out.push(Readiness {
                token,
                readable: false,
                writable: true,
                error: false,
            });
        }
        if more {
            self.submit_send(fd)?;
        }
        Ok(())
    }
}

impl Drop for UringReactor {
    /// End every request before the memory they use goes: the netlink
    /// buffers (the reader's ring) and the send and reply buffers.
    fn drop(&mut self) {
        if self.in_flight == 0 && self.closing.is_empty() {
            return;
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any().all())
            .build()
            .user_data(0);
        if self.push(cancel).is_err() {
            return;
        }
        // Bounded: a kernel that never completes a cancelled request must
        // not hang the exit (the process is ending anyway).
        for _ in 0..100 {
            if self.enter(Some(Duration::from_millis(10)), 1).is_err() {
                return;
            }
            let mut ended = 0;
            for c in self.ring.completion() {
                if c.user_data() != 0 && !cqueue::more(c.flags()) {
                    ended += 1;
                }
            }
            self.in_flight = self.in_flight.saturating_sub(ended);
            if self.in_flight == 0 {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
