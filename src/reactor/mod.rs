//! The event loop's readiness source: epoll (through `mio`) or io_uring.
//!
//! Both report edge-style readiness per registered fd: after an event the
//! owner reads or writes until `EAGAIN`. Every fd is registered once for
//! reading and writing.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub mod epoll;

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
}

impl Reactor {
    /// Name for logs and the metrics gauge.
    pub fn name(&self) -> &'static str {
        match self {
            Reactor::Epoll(_) => "epoll",
        }
    }

    pub fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.register(fd, token),
        }
    }

    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.deregister(fd),
        }
    }

    /// Wait for readiness (at most `timeout`; `None` waits without limit)
    /// and append it to `out`.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.wait(timeout, out),
        }
    }
}
