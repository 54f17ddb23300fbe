//! io_uring as the readiness source: one multishot `POLL_ADD` per fd.
//!
//! The loop keeps its readiness model (drain to `EAGAIN` after an event), so
//! both backends run the same receive and write code; io_uring replaces
//! `epoll_wait` with `io_uring_enter`. A multishot poll posts a completion on
//! each wake-up of the fd, like an edge-triggered epoll; when the kernel ends
//! one (no `IORING_CQE_F_MORE`), it is armed again.
//!
//! `user_data` is `generation << 32 | token`: after an fd is deregistered,
//! completions still in flight for it carry an old generation and are
//! dropped, so a token reused for a new socket never sees a stale event.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use super::{Readiness, Token};

/// Submission queue size: a handful of fds, re-arms and removals.
const ENTRIES: u32 = 64;

const POLL_MASK: u32 =
    (libc::POLLIN | libc::POLLOUT | libc::POLLERR | libc::POLLHUP | libc::POLLRDHUP) as u32;

/// One registration.
#[derive(Debug, Clone, Copy)]
struct Registration {
    fd: RawFd,
    user_data: u64,
}

/// The io_uring backend.
pub struct UringReactor {
    ring: IoUring,
    /// By token: the live registration.
    live: HashMap<Token, Registration>,
    generation: u32,
}

fn encode(generation: u32, token: Token) -> u64 {
    (u64::from(generation) << 32) | (token as u64 & 0xffff_ffff)
}

impl UringReactor {
    /// Set up a ring and check the kernel supports what we use (multishot
    /// poll, 5.13+). An error here means: use epoll.
    pub fn new() -> io::Result<UringReactor> {
        let ring = IoUring::new(ENTRIES)?;
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
        Ok(UringReactor {
            ring,
            live: HashMap::new(),
            generation: 0,
        })
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entries we push (POLL_ADD, POLL_REMOVE) hold no
            // pointers into our memory, only an fd and plain integers.
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

    fn arm(&mut self, reg: Registration) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(reg.fd), POLL_MASK)
            .multi(true)
            .build()
            .user_data(reg.user_data);
        self.push(entry)
    }

    pub fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        self.generation = self.generation.wrapping_add(1);
        let reg = Registration {
            fd,
            user_data: encode(self.generation, token),
        };
        if let Some(old) = self.live.insert(token, reg) {
            self.remove(old)?;
        }
        self.arm(reg)?;
        self.ring.submit()?;
        Ok(())
    }

    fn remove(&mut self, reg: Registration) -> io::Result<()> {
        // The removal's own completion carries user_data 0 (never a live one).
        self.push(opcode::PollRemove::new(reg.user_data).build().user_data(0))
    }

    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let Some((&token, &reg)) = self.live.iter().find(|(_, r)| r.fd == fd) else {
            return Ok(());
        };
        self.live.remove(&token);
        self.remove(reg)?;
        self.ring.submit()?;
        Ok(())
    }

    /// Submit and wait (with the timeout), then turn completions into
    /// readiness. (Kept whole: the stale-generation check, the multishot
    /// re-arm and the overrun shape are one completion's handling.)
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        let waited = match timeout {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match waited {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        let mut rearm: Vec<Registration> = Vec::new();
        for cqe in self.ring.completion() {
            let user_data = cqe.user_data();
            let token = (user_data & 0xffff_ffff) as Token;
            let Some(&reg) = self.live.get(&token) else {
                continue;
            };
            if reg.user_data != user_data {
                continue; // a stale completion of an fd since deregistered
            }
            let result = cqe.result();
            if !cqueue::more(cqe.flags()) {
                rearm.push(reg);
            }
            if result < 0 {
                if result == -libc::ECANCELED {
                    continue;
                }
                // Report it: the owner reads or writes and learns the error.
                out.push(Readiness {
                    token,
                    readable: true,
                    writable: true,
                    error: true,
                });
                continue;
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
        for reg in rearm {
            self.arm(reg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn wait_for(r: &mut UringReactor, token: Token) -> Readiness {
        for _ in 0..10 {
            let mut out = Vec::new();
            r.wait(Some(Duration::from_secs(1)), &mut out).unwrap();
            if let Some(ev) = out.into_iter().find(|e| e.token == token) {
                return ev;
            }
        }
        panic!("no event for token {token}");
    }

    #[test]
    fn reports_readable_and_writable_edges_and_ignores_stale_tokens() {
        let Ok(mut r) = UringReactor::new() else {
            eprintln!("io_uring refused by this kernel: skipped");
            return;
        };
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        r.register(a.as_raw_fd(), 7).unwrap();
        // A fresh socket is writable.
        assert!(wait_for(&mut r, 7).writable);
        b.write_all(b"x").unwrap();
        let ev = wait_for(&mut r, 7);
        assert!(ev.readable);
        // Nothing new: a short wait times out with no event.
        let mut out = Vec::new();
        r.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(out.is_empty(), "{out:?}");
        // Re-register the token on another fd: only the new fd reports.
        let (c, mut d) = UnixStream::pair().unwrap();
        r.deregister(a.as_raw_fd()).unwrap();
        r.register(c.as_raw_fd(), 7).unwrap();
        b.write_all(b"y").unwrap();
        d.write_all(b"z").unwrap();
        let ev = wait_for(&mut r, 7);
        assert!(ev.readable || ev.writable);
        drop(d);
        let ev = wait_for(&mut r, 7);
        assert!(ev.readable, "hang-up reads as readable: {ev:?}");
    }
}
