//! One non-blocking Redis connection owned by the event loop.
//!
//! It holds a bounded write buffer (a turn's commands, written with one
//! `send`), a receive buffer decoded incrementally, and a FIFO of tags, one
//! per command in flight, so each reply is matched to what caused it. When
//! the connection breaks it goes `Down` and retries with capped exponential
//! backoff; the loop decides what to replay.
//!
//! A Redis `hostname` that is a name, not an IP literal, is resolved on a
//! helper thread ([`Lookup`]): first when the connection is made, again
//! whenever a connection fails or is lost (the name may point elsewhere
//! now). `getaddrinfo` can take seconds; the loop only looks whether the
//! answer is there at its retry times, and connects to an address.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use super::reply::{self, Reply};
use super::socket::{self, Connecting, Endpoint, StreamIo, Transfer};
use crate::engine::metrics::fds;
use crate::engine::probes;
use crate::engine::sonic::dbconfig::{Address, Instance};
use crate::engine::sys::monotonic_ns;

/// Largest reply accepted on a loop connection; a bigger one is a protocol
/// error (the loop only ever asks for small things).
pub const MAX_IN_BYTES: usize = 4 << 20;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; try again at this monotonic time.
    Down { retry_at_ns: u64 },
    /// `connect` in progress: wait for writability.
    Connecting,
    /// Usable.
    Up,
}

/// What [`RedisConn::poll_connect`] did.
#[derive(Debug)]
pub enum ConnectStep {
    /// Nothing to do now.
    Idle,
    /// A socket now exists and must be registered with the reactor; it is
    /// `Up` already if `ready`, else `Connecting`.
    Started { fd: RawFd, ready: bool },
    /// The attempt failed at once; the connection stays down.
    Failed(io::Error),
}

/// Why a connection was dropped.
#[derive(Debug)]
pub enum Lost {
    Io(io::Error),
    Closed,
    Protocol(String),
    /// A reply arrived that no command asked for.
    Unexpected,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Io(e) => write!(f, "{e}"),
            Lost::Closed => f.write_str("closed by Redis"),
            Lost::Protocol(e) => write!(f, "protocol error: {e}"),
            Lost::Unexpected => f.write_str("a reply nobody asked for"),
        }
    }
}

/// What the loop does with any connection, whatever its tag type.
pub trait Connection {
    /// The database it serves, for logs.
    fn role(&self) -> &'static str;
    fn state(&self) -> LinkState;
    fn fd(&self) -> Option<RawFd>;
    /// The address of the current or last attempt.
    fn address(&self) -> Option<&Address>;
    fn poll_connect(&mut self, now_ns: u64) -> ConnectStep;
    fn finish_connect(&mut self) -> Result<bool, Lost>;
    fn flush(&mut self, io: &mut dyn StreamIo) -> Result<bool, Lost>;
    /// One more failed attempt to connect since the last success; returns
    /// how many in a row (for logging the first and then fewer).
    fn note_failed_attempt(&mut self) -> u32;
}

impl<T> Connection for RedisConn<T> {
    fn role(&self) -> &'static str {
        self.role
    }
    fn state(&self) -> LinkState {
        RedisConn::state(self)
    }
    fn fd(&self) -> Option<RawFd> {
        RedisConn::fd(self)
    }
    fn address(&self) -> Option<&Address> {
        RedisConn::address(self)
    }
    fn poll_connect(&mut self, now_ns: u64) -> ConnectStep {
        RedisConn::poll_connect(self, now_ns)
    }
    fn finish_connect(&mut self) -> Result<bool, Lost> {
        RedisConn::finish_connect(self)
    }
    fn flush(&mut self, io: &mut dyn StreamIo) -> Result<bool, Lost> {
        RedisConn::flush(self, io)
    }
    fn note_failed_attempt(&mut self) -> u32 {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.failed_attempts
    }
}

/// A host name being resolved on a thread of its own.
struct Lookup {
    host: String,
    handle: JoinHandle<std::io::Result<SocketAddr>>,
}

impl Lookup {
    fn start(host: &str, port: u16) -> io::Result<Lookup> {
        let name = host.to_string();
        let handle = std::thread::Builder::new()
            .name("redis-resolve".into())
            .spawn(move || socket::resolve(&name, port))?;
        Ok(Lookup {
            host: host.to_string(),
            handle,
        })
    }
}

/// A loop-owned Redis connection; `T` tags each command in flight.
pub struct RedisConn<T> {
    /// The database it serves (`STATE_DB`, …), for logs.
    pub role: &'static str,
    instance: Instance,
    address: Option<Address>,
    fd: Option<OwnedFd>,
    state: LinkState,
    out: Vec<u8>,
    sent: usize,
    limit: usize,
    /// Fixed-size receive buffer; `in_start..in_end` holds undecoded bytes.
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    pending: VecDeque<T>,
    /// Replies arrive unasked (pub/sub): no tag is popped for them.
    push_mode: bool,
    backoff_ms: u64,
    retry_min_ms: u64,
    retry_max_ms: u64,
    /// Times the connection was established.
    pub connects: u64,
    /// Failed attempts to connect since it was last up.
    failed_attempts: u32,
    /// The last answer for a host name, and the lookup under way.
    resolved: Option<(String, SocketAddr)>,
    lookup: Option<Lookup>,
}

impl<T> RedisConn<T> {
    /// A connection (down, due now) to `instance`; `limit` bounds its write buffer.
    pub fn new(
        role: &'static str,
        instance: Instance,
        limit: usize,
        retry_min_ms: u64,
        retry_max_ms: u64,
    ) -> RedisConn<T> {
        // Resolve a host name now, off the loop, so the first connect
        // finds the answer.
        let lookup = match instance.address() {
            Address::Tcp(host, port) if socket::literal(&host, port).is_none() => {
                Lookup::start(&host, port).ok()
            }
            _ => None,
        };
        RedisConn {
            lookup,
            resolved: None,
            role,
            instance,
            address: None,
            fd: None,
            state: LinkState::Down { retry_at_ns: 0 },
            out: Vec::with_capacity(limit.min(1 << 20)),
            sent: 0,
            limit,
            inbuf: vec![0; 64 << 10],
            in_start: 0,
            in_end: 0,
            pending: VecDeque::with_capacity(4096),
            push_mode: false,
            backoff_ms: retry_min_ms,
            retry_min_ms,
            retry_max_ms,
            connects: 0,
            failed_attempts: 0,
        }
    }

    /// Mark as a pub/sub connection: replies are not matched to tags.
    pub fn set_push_mode(&mut self, on: bool) {
        self.push_mode = on;
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// The address of the current or last attempt.
    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    /// The socket, while there is one.
    pub fn fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Commands sent or queued whose replies have not arrived.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Bytes queued but not yet accepted by the kernel.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Room left in the write buffer.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.unsent())
    }

    /// When down, the time of the next attempt.
    pub fn retry_at(&self) -> Option<u64> {
        match self.state {
            LinkState::Down { retry_at_ns } => Some(retry_at_ns),
            _ => None,
        }
    }

    /// If down and due, start connecting.
    pub fn poll_connect(&mut self, now_ns: u64) -> ConnectStep {
        match self.state {
            LinkState::Down { retry_at_ns } if now_ns >= retry_at_ns => {}
            _ => return ConnectStep::Idle,
        }
        let address = self.instance.address();
        self.address = Some(address.clone());
        let endpoint = match self.endpoint(&address) {
            Ok(Some(e)) => e,
            Ok(None) => {
                // The name is being resolved: look again soon.
                self.state = LinkState::Down {
                    retry_at_ns: now_ns + self.retry_min_ms * 1_000_000,
                };
                return ConnectStep::Idle;
            }
            Err(e) => {
                self.schedule_retry(now_ns);
                return ConnectStep::Failed(e);
            }
        };
        let connected = socket::connect(&endpoint);
        match &connected {
            Ok(_) => fds::opened(self.role),
            Err(e) => fds::failed(self.role, e),
        }
        match connected {
            Ok(Connecting::Done(fd)) => {
                let raw = fd.as_raw_fd();
                self.fd = Some(fd);
                self.up();
                ConnectStep::Started {
                    fd: raw,
                    ready: true,
                }
            }
            Ok(Connecting::InProgress(fd)) => {
                let raw = fd.as_raw_fd();
                self.fd = Some(fd);
                self.state = LinkState::Connecting;
                ConnectStep::Started {
                    fd: raw,
                    ready: false,
                }
            }
            Err(e) => {
                self.schedule_retry(now_ns);
                self.resolve_again();
                ConnectStep::Failed(e)
            }
        }
    }

    /// Where to connect: `Ok(None)` while a host name is being resolved;
    /// an error when it could not be (the next call starts a new lookup).
    fn endpoint(&mut self, address: &Address) -> io::Result<Option<Endpoint>> {
        let (host, port) = match address {
            Address::Unix(path) => return Ok(Some(Endpoint::Unix(path.clone()))),
            Address::Tcp(host, port) => (host, *port),
        };
        if let Some(a) = socket::literal(host, port) {
            return Ok(Some(Endpoint::Tcp(a)));
        }
        if let Some((h, a)) = &self.resolved {
            if h == host {
                return Ok(Some(Endpoint::Tcp(*a)));
            }
        }
        match self.lookup.take() {
            Some(l) if l.host == *host && !l.handle.is_finished() => {
                self.lookup = Some(l);
                Ok(None)
            }
            // Finished: join() returns at once.
            Some(l) if l.host == *host => match l.handle.join() {
                Ok(Ok(a)) => {
                    self.resolved = Some((host.clone(), a));
                    Ok(Some(Endpoint::Tcp(a)))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::Error::other(format!(
                    "resolving {host}: the lookup thread panicked"
                ))),
            },
            _ => {
                self.lookup = Some(Lookup::start(host, port)?);
                Ok(None)
            }
        }
    }

    /// A connection to a resolved name failed or was lost: forget the
    /// answer and ask again now, off the loop, so the retry finds a fresh
    /// one.
    fn resolve_again(&mut self) {
        let Some((host, addr)) = self.resolved.take() else {
            return;
        };
        if self.lookup.is_none() {
            self.lookup = Lookup::start(&host, addr.port()).ok();
        }
    }

    fn up(&mut self) {
        self.failed_attempts = 0;
        self.state = LinkState::Up;
        self.backoff_ms = self.retry_min_ms;
        self.connects += 1;
    }

    /// The socket became writable while connecting: `Ok(true)` once up.
    pub fn finish_connect(&mut self) -> Result<bool, Lost> {
        if self.state != LinkState::Connecting {
            return Ok(self.state == LinkState::Up);
        }
        let Some(fd) = self.fd() else {
            return Ok(false);
        };
        match socket::finish_connect(fd) {
            Ok(()) => {
                self.up();
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
            Err(e) => Err(Lost::Io(e)),
        }
    }

    fn schedule_retry(&mut self, now_ns: u64) {
        self.state = LinkState::Down {
            retry_at_ns: now_ns + self.backoff_ms * 1_000_000,
        };
        self.backoff_ms = (self.backoff_ms * 2).min(self.retry_max_ms);
    }

    /// Drop the connection: close the socket (the caller deregisters it
    /// first), forget buffers, and schedule a retry. `unanswered` gets the
    /// tag of every command that got no reply; the tag queue keeps its
    /// capacity, so the next connection does not grow it again.
    pub fn drop_connection(&mut self, now_ns: u64, unanswered: impl FnMut(T)) {
        self.fd = None;
        self.resolve_again();
        self.out.clear();
        self.sent = 0;
        self.in_start = 0;
        self.in_end = 0;
        self.schedule_retry(now_ns);
        self.pending.drain(..).for_each(unanswered);
    }

    /// Queue one command: `encode` appends its RESP bytes, `tag` waits for
    /// its reply. The caller checks [`room`](Self::room) first.
    #[inline]
    pub fn push(&mut self, tag: T, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.sent > 0 && self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        encode(&mut self.out);
        if !self.push_mode {
            self.pending.push_back(tag);
        }
    }

    /// Queue a command whose reply is not matched (pub/sub subscriptions).
    pub fn push_untagged(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.out);
    }

    /// Write what is queued with one `send` (through `io`: the socket, or
    /// the reactor's ring). `Ok(true)` when everything went.
    pub fn flush(&mut self, io: &mut dyn StreamIo) -> Result<bool, Lost> {
        if self.state != LinkState::Up || self.sent == self.out.len() {
            return Ok(self.sent == self.out.len());
        }
        let Some(fd) = self.fd() else {
            return Ok(false);
        };
        match io.send(fd, &self.out[self.sent..]) {
            Ok(Transfer::Bytes(n)) => {
                self.sent += n;
                probes::redis_send(n, self.out.len() - self.sent);
                if self.sent == self.out.len() {
                    self.out.clear();
                    self.sent = 0;
                    Ok(true)
                } else {
                    // Keep the buffer from creeping: move the tail down once
                    // more than half of it is already sent.
                    if self.sent > self.out.len() / 2 {
                        self.out.drain(..self.sent);
                        self.sent = 0;
                    }
                    Ok(false)
                }
            }
            Ok(Transfer::WouldBlock) => Ok(false),
            Err(e) => Err(Lost::Io(e)),
        }
    }

    /// Read everything available and hand each reply to `on_reply` with the
    /// tag of the command it answers (`None` in push mode) and the
    /// monotonic time of the `recv` that completed it: one clock read per
    /// `recv`, not one per reply (5 % of neighsyncd's CPU in a burst). (One function
    /// on purpose: decoding, compacting the buffer and reading more share
    /// the buffer's indices, which must stay consistent together.)
    pub fn read_replies(
        &mut self,
        io: &mut dyn StreamIo,
        mut on_reply: impl FnMut(Option<T>, &Reply<'_>, u64),
    ) -> Result<(), Lost> {
        let Some(fd) = self.fd() else { return Ok(()) };
        // Set by each recv; a reply already whole in the buffer (none is
        // left between calls, but a caller's error may cut a call short)
        // is stamped when first seen.
        let mut read_ns = 0;
        // A stream socket that filled less than the room we gave it was
        // empty at that instant; a later arrival raises a new readiness
        // event, so the extra read that would only say EAGAIN is skipped.
        let mut drained = false;
        loop {
            // Decode what we have.
            loop {
                match reply::decode(&self.inbuf[self.in_start..self.in_end]) {
                    Ok(Some((r, used))) => {
                        let tag = if self.push_mode {
                            None
                        } else {
                            match self.pending.pop_front() {
                                Some(t) => Some(t),
                                None => return Err(Lost::Unexpected),
                            }
                        };
                        if read_ns == 0 {
                            read_ns = monotonic_ns();
                        }
                        on_reply(tag, &r, read_ns);
                        self.in_start += used;
                    }
                    Ok(None) => break,
                    Err(e) => return Err(Lost::Protocol(e.0)),
                }
            }
            // Move a partial reply to the front; grow only for a reply
            // larger than the buffer.
            if self.in_start == self.in_end {
                self.in_start = 0;
                self.in_end = 0;
            } else if self.in_start > 0 {
                self.inbuf.copy_within(self.in_start..self.in_end, 0);
                self.in_end -= self.in_start;
                self.in_start = 0;
            }
            if self.in_end == self.inbuf.len() {
                if self.inbuf.len() >= MAX_IN_BYTES {
                    return Err(Lost::Protocol(format!(
                        "reply larger than {MAX_IN_BYTES} bytes"
                    )));
                }
                let bigger = (self.inbuf.len() * 2).min(MAX_IN_BYTES);
                self.inbuf.resize(bigger, 0);
            }
            if drained {
                return Ok(());
            }
            let room = self.inbuf.len() - self.in_end;
            match io.recv(fd, &mut self.inbuf[self.in_end..]) {
                Ok(Transfer::Bytes(0)) => return Err(Lost::Closed),
                Ok(Transfer::Bytes(n)) => {
                    read_ns = monotonic_ns();
                    probes::redis_recv(n, read_ns);
                    self.in_end += n;
                    drained = n < room;
                }
                Ok(Transfer::WouldBlock) => return Ok(()),
                Err(e) => return Err(Lost::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn tcp(host: &str, port: u16) -> RedisConn<()> {
        let instance = Instance {
            unix_socket_path: None,
            hostname: host.into(),
            port,
        };
        RedisConn::new("STATE_DB", instance, 1 << 16, 1, 1)
    }

    /// Poll as the loop does, at most 10 s, until something other than Idle.
    fn step(c: &mut RedisConn<()>) -> ConnectStep {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match c.poll_connect(monotonic_ns()) {
                ConnectStep::Idle => std::thread::sleep(Duration::from_millis(1)),
                other => return other,
            }
        }
        panic!("still idle after 10 s");
    }

    /// Issue 11: a host name was resolved by getaddrinfo on the loop thread
    /// at every connect. The name is resolved on a helper thread; the loop
    /// connects to the address it found (`socket::connect` takes an
    /// `Endpoint`, which has no host name), and resolves again after a loss.
    #[test]
    fn a_host_name_is_resolved_off_the_loop_and_again_after_a_loss() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = tcp("localhost", port);
        assert!(c.lookup.is_some(), "the lookup starts with the connection");
        assert!(matches!(step(&mut c), ConnectStep::Started { .. }));
        let addr = c.resolved.as_ref().map(|(_, a)| *a).unwrap();
        assert_eq!(addr.port(), port);
        assert!(addr.ip().is_loopback());
        c.drop_connection(0, |_| {});
        assert!(c.resolved.is_none() && c.lookup.is_some(), "asked again");
        assert!(matches!(step(&mut c), ConnectStep::Started { .. }));
        // An IP literal needs no lookup.
        let c = tcp("127.0.0.1", port);
        assert!(c.lookup.is_none());
    }
}
