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
            Reactor::Uring(_) => "io_uring",
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

    /// Wait for readiness (at most `timeout`; `None` waits without limit)
    /// and append it to `out`.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        match self {
            Reactor::Epoll(r) => r.wait(timeout, out),
            Reactor::Uring(r) => r.wait(timeout, out),
        }
    }
}
