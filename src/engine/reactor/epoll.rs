//! epoll through `mio`: edge-triggered, one registration per fd.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token as MioToken};

use super::{Readiness, Token};

/// The epoll backend.
pub struct EpollReactor {
    poll: Poll,
    events: Events,
}

impl EpollReactor {
    pub fn new() -> io::Result<EpollReactor> {
        Ok(EpollReactor {
            poll: Poll::new()?,
            events: Events::with_capacity(64),
        })
    }

    pub fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        self.poll.registry().register(
            &mut SourceFd(&fd),
            MioToken(token),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.poll.registry().deregister(&mut SourceFd(&fd))
    }

    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            out.push(Readiness {
                token: ev.token().0,
                readable: ev.is_readable() || ev.is_read_closed(),
                writable: ev.is_writable() || ev.is_write_closed(),
                error: ev.is_error(),
            });
        }
        Ok(())
    }
}
