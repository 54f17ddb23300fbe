//! The event loop's readiness source: epoll (through `mio`) or io_uring.
//!
//! Both report edge-style readiness per registered fd: after an event the
//! owner reads or writes until `EAGAIN`. Every fd is registered once for
//! reading and writing.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub mod epoll;
pub mod uring;

use crate::engine::redis::socket::{self, StreamIo, Transfer};
use crate::engine::runtime::config::ReactorKind;
use crate::{log_notice, log_warn};

/// Identifies a registered fd in readiness reports.
pub type Token = usize;

/// What an fd is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: the owner should read to find out which.
    pub error: bool,
}

/// The backend in use.
pub enum Reactor {
    Epoll(epoll::EpollReactor),
    Uring(Box<uring::UringReactor>),
}

impl Reactor {
    /// The backend `kind` asks for. io_uring refused by the kernel (too old,
    /// `kernel.io_uring_disabled`, a seccomp filter) falls back to epoll
    /// with a warning; `auto` says which one it chose.
    pub fn build(kind: ReactorKind) -> io::Result<Reactor> {
        let epoll = || epoll::EpollReactor::new().map(Reactor::Epoll);
        match kind {
            ReactorKind::Epoll => epoll(),
            ReactorKind::IoUring => match uring::UringReactor::new() {
                Ok(r) => Ok(Reactor::Uring(Box::new(r))),
                Err(e) => {
                    log_warn!("runtime.reactor = io_uring: refused by the kernel ({e}); falling back to epoll");
                    epoll()
                }
            },
            ReactorKind::Auto => match uring::UringReactor::new() {
                Ok(r) => {
                    log_notice!("runtime.reactor = auto: using io_uring");
                    Ok(Reactor::Uring(Box::new(r)))
                }
                Err(e) => {
                    log_notice!("runtime.reactor = auto: using epoll (io_uring unavailable: {e})");
                    epoll()
                }
            },
        }
    }

    /// Name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Reactor::Epoll(_) => "epoll",
            Reactor::Uring(r) if r.completions() => "io_uring",
            Reactor::Uring(_) => "io_uring (readiness only)",
        }
    }

    /// 0 for epoll, 1 for io_uring (the metrics gauge).
    pub fn gauge(&self) -> u64 {
        match self {
            Reactor::Epoll(_) => 0,
            Reactor::Uring(_) => 1,
        }
    }

    pub fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.register(fd, token),
            Reactor::Uring(r) => r.register(fd, token),
        }
    }

    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.deregister(fd),
            Reactor::Uring(r) => r.deregister(fd),
        }
    }

    /// A connected stream socket (a Redis connection): with io_uring its
    /// bytes go through the ring from now on ([`StreamIo`]).
    pub fn start_stream(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        match self {
            Reactor::Epoll(_) => Ok(()),
            Reactor::Uring(r) => r.start_stream(fd, token),
        }
    }

    /// With io_uring, receive the netlink socket `fd`'s datagrams into
    /// `memory` through the ring ([`uring::UringReactor::receive_netlink`]);
    /// `Ok(false)`: keep reading on readiness.
    ///
    /// # Safety
    ///
    /// `memory` must outlive the reactor and be read only at the offsets
    /// [`take_datagrams`](Self::take_datagrams) reports, until they are
    /// given back.
    pub unsafe fn receive_netlink(
        &mut self,
        fd: RawFd,
        token: Token,
        memory: &mut [u8],
    ) -> io::Result<bool> {
        match self {
            Reactor::Epoll(_) => Ok(false),
            // SAFETY: the caller's promise, passed on.
            Reactor::Uring(r) => unsafe { r.receive_netlink(fd, token, memory) },
        }
    }

    /// Netlink datagrams the ring completed since the last call.
    pub fn take_datagrams(&mut self, out: &mut impl Extend<uring::RingRecv>) {
        if let Reactor::Uring(r) = self {
            r.take_datagrams(out);
        }
    }

    /// The netlink buffers in `bids` are read: the kernel may reuse them.
    pub fn give_back(&mut self, bids: &mut Vec<u16>) {
        match self {
            Reactor::Epoll(_) => bids.clear(),
            Reactor::Uring(r) => r.give_back(bids),
        }
    }

    /// Stop receiving netlink through the ring; readiness from now on.
    pub fn stop_netlink(&mut self) -> io::Result<()> {
        match self {
            Reactor::Epoll(_) => Ok(()),
            Reactor::Uring(r) => r.stop_netlink(),
        }
    }

    /// Whether netlink datagrams come through the ring.
    pub fn netlink_in_ring(&self) -> bool {
        match self {
            Reactor::Epoll(_) => false,
            Reactor::Uring(r) => r.netlink_in_ring(),
        }
    }

    /// Wait for readiness (at most `timeout`; `None` waits without limit)
    /// and append it to `out`.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.wait(timeout, out),
            Reactor::Uring(r) => r.wait(timeout, out),
        }
    }
}

impl Reactor {
    /// The coalescing pause of a burst, then what is ready: `window`
    /// spent gathering events for a bigger batch. With io_uring this is
    /// one wait that also returns early once a full batch of completions
    /// is in; with epoll, a sleep and a poll.
    pub fn wait_coalescing(
        &mut self,
        window: Duration,
        out: &mut Vec<Readiness>,
    ) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => {
                std::thread::sleep(window);
                r.wait(Some(Duration::ZERO), out)
            }
            Reactor::Uring(r) => r.wait_for_batch(window, out),
        }
    }
}

impl StreamIo for Reactor {
    fn send(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<Transfer> {
        match self {
            Reactor::Uring(r) if r.is_stream(fd) => match r.send(fd, buf)? {
                0 if !buf.is_empty() => Ok(Transfer::WouldBlock),
                n => Ok(Transfer::Bytes(n)),
            },
            _ => socket::send(fd, buf),
        }
    }

    fn recv(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<Transfer> {
        match self {
            Reactor::Uring(r) if r.is_stream(fd) => Ok(match r.recv(fd, buf)? {
                Some(n) => Transfer::Bytes(n),
                None => Transfer::WouldBlock,
            }),
            _ => socket::recv(fd, buf),
        }
    }
}
