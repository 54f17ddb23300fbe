//! A small non-blocking Redis connection for the watcher: pipelined
//! commands out, every complete reply handed over as soon as it is read,
//! so one thread can wait on several sockets at once.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use syncd::engine::redis::encode;
use syncd::engine::redis::reply::{self, Reply};
use syncd::engine::redis::socket::{self, Transfer};
use syncd::engine::sonic::dbconfig::Address;

use crate::Error;

/// One connection: an output buffer and an input buffer.
pub struct RespConn {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    start: usize,
    /// Commands not yet sent.
    pub out: Vec<u8>,
    /// What it is, for messages.
    pub role: &'static str,
}

impl RespConn {
    pub fn connect(addr: &Address, role: &'static str, timeout: Duration) -> Result<Self, Error> {
        let fd = socket::connect_wait(addr, timeout)
            .map_err(|e| Error::failed(format!("{role}: connecting to Redis at {addr}: {e}")))?;
        Ok(RespConn {
            fd,
            inbuf: Vec::with_capacity(64 << 10),
            start: 0,
            out: Vec::with_capacity(64 << 10),
            role,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Queue one command.
    pub fn command(&mut self, args: &[&[u8]]) {
        encode::command(&mut self.out, args);
    }

    /// Send everything queued. Redis reads far faster than we write, so a
    /// full socket buffer is waited out (bounded), not queued.
    pub fn flush(&mut self) -> Result<(), Error> {
        let mut at = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while at < self.out.len() {
            match socket::send(self.fd(), &self.out[at..])
                .map_err(|e| Error::failed(format!("{}: send to Redis: {e}", self.role)))?
            {
                Transfer::Bytes(n) => at += n,
                Transfer::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let ok = socket::wait_fd(self.fd(), libc::POLLOUT, left)
                        .map_err(|e| Error::failed(format!("{}: poll: {e}", self.role)))?;
                    if !ok {
                        return Err(Error::failed(format!(
                            "{}: Redis accepted nothing for 10 s",
                            self.role
                        )));
                    }
                }
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Read what the socket holds (without blocking).
    pub fn fill(&mut self) -> Result<(), Error> {
        if self.start > 0 && self.start == self.inbuf.len() {
            self.inbuf.clear();
            self.start = 0;
        }
        loop {
            let len = self.inbuf.len();
            if self.inbuf.capacity() - len < (16 << 10) {
                if self.start > 0 {
                    self.inbuf.drain(..self.start);
                    self.start = 0;
                    continue;
                }
                self.inbuf.reserve(64 << 10);
            }
            let cap = self.inbuf.capacity();
            self.inbuf.resize(cap, 0);
            let got = socket::recv(self.fd(), &mut self.inbuf[len..]);
            match got {
                Ok(Transfer::Bytes(0)) => {
                    self.inbuf.truncate(len);
                    return Err(Error::failed(format!(
                        "{}: Redis closed the connection",
                        self.role
                    )));
                }
                Ok(Transfer::Bytes(n)) => self.inbuf.truncate(len + n),
                Ok(Transfer::WouldBlock) => {
                    self.inbuf.truncate(len);
                    return Ok(());
                }
                Err(e) => {
                    self.inbuf.truncate(len);
                    return Err(Error::failed(format!(
                        "{}: recv from Redis: {e}",
                        self.role
                    )));
                }
            }
        }
    }

    /// Hand every complete reply read so far to `f`, in order.
    pub fn replies(
        &mut self,
        mut f: impl FnMut(&Reply<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        loop {
            match reply::decode(&self.inbuf[self.start..]) {
                Ok(Some((r, used))) => {
                    f(&r)?;
                    self.start += used;
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(Error::failed(format!("{}: {e}", self.role))),
            }
        }
    }

    /// Send `args` and wait for `n` replies (set-up only), checking none is
    /// an error.
    pub fn call_wait(&mut self, args: &[&[u8]], n: usize, timeout: Duration) -> Result<(), Error> {
        self.command(args);
        self.flush()?;
        let deadline = Instant::now() + timeout;
        let mut got = 0;
        let what = String::from_utf8_lossy(args.first().copied().unwrap_or_default()).into_owned();
        while got < n {
            let role = self.role;
            self.replies(|r| {
                got += 1;
                match r.error() {
                    Some(e) => Err(Error::failed(format!(
                        "{role}: {what}: {}",
                        String::from_utf8_lossy(e)
                    ))),
                    None => Ok(()),
                }
            })?;
            if got >= n {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = socket::wait_fd(self.fd(), libc::POLLIN, left)
                .map_err(|e| Error::failed(format!("{role}: poll: {e}")))?;
            if !ready {
                return Err(Error::failed(format!(
                    "{role}: no reply to {what} within {timeout:?}"
                )));
            }
            self.fill()?;
        }
        Ok(())
    }
}
