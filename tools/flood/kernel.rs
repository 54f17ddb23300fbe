//! The kernel side: sockets made inside a network namespace, acked link
//! changes, and the kernel's own view of the ports (an `RTM_GETLINK` dump).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use portsyncd::netlink::parse::{self, Event, IFF_RUNNING, IFF_UP, NLM_F_DUMP_INTR};
use portsyncd::netlink::request;
use portsyncd::netlink::socket::{NetlinkSocket, Recv};
use portsyncd::redis::socket::wait_fd;
use portsyncd::sys::monotonic_ns;

use crate::Error;

/// How long one netlink request may wait for its ack or dump.
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Run `f` on a thread that has entered network namespace `netns` (or the
/// current one), so sockets it creates live there. Their fds work from any
/// thread afterwards; the caller's own namespace is never touched.
pub fn in_netns<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> Result<T, Error> {
    let Some(name) = netns else { return f() };
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path)
        .map_err(|e| Error::failed(format!("network namespace {name:?} ({path}): {e}")))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on this thread only, with a namespace fd that
            // `file` keeps open for the duration of the call.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if r != 0 {
                return Err(Error::failed(format!(
                    "entering network namespace {name:?}: {}",
                    std::io::Error::last_os_error()
                )));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::failed("a namespace helper thread panicked")))
    })
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLink {
    pub ifindex: i32,
    /// `IFF_UP`.
    pub admin: bool,
    /// `IFF_RUNNING`, what portsyncd writes as `netdev_oper_status`.
    pub oper: bool,
    pub mtu: u32,
}

/// A blocking request socket in one namespace, with its own sequence.
pub struct Requests {
    sock: NetlinkSocket,
    seq: u32,
    buf: Vec<u8>,
    /// Namespace name, for messages.
    pub netns: String,
}

impl Requests {
    /// A request socket inside `netns` (or the current namespace).
    pub fn open(netns: Option<&str>) -> Result<Requests, Error> {
        let sock = in_netns(netns, || {
            NetlinkSocket::requests(NETLINK_TIMEOUT)
                .map_err(|e| Error::failed(format!("netlink request socket: {e}")))
        })?;
        Ok(Requests {
            sock,
            seq: 0,
            buf: vec![0; 64 << 10],
            netns: netns.unwrap_or("(current)").to_string(),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Set `ifindex` administratively up or down; returns when acked, with
    /// the time of the kernel's ack (see [`Requests::acked`]).
    pub fn set_admin(&mut self, ifindex: i32, up: bool, name: &str) -> Result<u64, Error> {
        let seq = self.next_seq();
        let what = format!("admin {} {name}", if up { "up" } else { "down" });
        self.acked(&request::set_admin(seq, ifindex, up), seq, &what)
    }

    /// Set the MTU of `ifindex`; returns when acked, with the ack's time.
    pub fn set_mtu(&mut self, ifindex: i32, mtu: u32, name: &str) -> Result<u64, Error> {
        let seq = self.next_seq();
        let what = format!("mtu {mtu} on {name}");
        self.acked(&request::set_mtu(seq, ifindex, mtu), seq, &what)
    }

    /// Send `req` and wait for its ack. rtnetlink handles a request inside
    /// `sendmsg`: when `send` returns the change is made, its multicast
    /// messages and our ack are queued. That moment is the ack's time
    /// (monotonic ns); reading the ack afterwards only confirms it.
    fn acked(&mut self, req: &request::Request, seq: u32, what: &str) -> Result<u64, Error> {
        let fail = |e: String| Error::failed(format!("{what} in {}: {e}", self.netns));
        self.sock
            .send(req)
            .map_err(|e| fail(format!("send: {e}")))?;
        let at = monotonic_ns();
        let deadline = Instant::now() + NETLINK_TIMEOUT;
        loop {
            let n = match self
                .sock
                .recv(&mut self.buf)
                .map_err(|e| fail(format!("recv: {e}")))?
            {
                Recv::Data(n) => n.min(self.buf.len()),
                Recv::Overrun => continue,
                Recv::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let ready = wait_fd(self.sock.as_raw_fd(), libc::POLLIN, left)
                        .map_err(|e| fail(format!("poll: {e}")))?;
                    if !ready {
                        return Err(fail(format!("no ack within {NETLINK_TIMEOUT:?}")));
                    }
                    continue;
                }
            };
            for msg in parse::messages(&self.buf[..n]) {
                let (hdr, payload) = msg.map_err(|e| fail(format!("malformed reply: {e}")))?;
                if hdr.seq != seq {
                    continue;
                }
                match parse::parse_event(&hdr, payload) {
                    Ok(Event::Ack { errno: 0 }) => return Ok(at),
                    Ok(Event::Ack { errno }) => {
                        return Err(fail(format!(
                            "refused: {}",
                            std::io::Error::from_raw_os_error(errno)
                        )))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(fail(format!("malformed reply: {e}"))),
                }
            }
        }
    }

    /// Every link by name, from one consistent dump (redone when the kernel
    /// marks it interrupted).
    pub fn dump(&mut self) -> Result<HashMap<String, KernelLink>, Error> {
        loop {
            if let Some(links) = self.try_dump()? {
                return Ok(links);
            }
        }
    }

    fn try_dump(&mut self) -> Result<Option<HashMap<String, KernelLink>>, Error> {
        let seq = self.next_seq();
        let fail = |what: String| Error::failed(format!("link dump in {}: {what}", self.netns));
        self.sock
            .send(&request::getlink_dump(seq))
            .map_err(|e| fail(format!("send: {e}")))?;
        let deadline = Instant::now() + NETLINK_TIMEOUT;
        let mut links = HashMap::new();
        let mut interrupted = false;
        loop {
            let len = match self
                .sock
                .peek_len()
                .map_err(|e| fail(format!("recv: {e}")))?
            {
                Recv::Data(n) => n,
                Recv::Overrun => continue,
                Recv::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let ready = wait_fd(self.sock.as_raw_fd(), libc::POLLIN, left)
                        .map_err(|e| fail(format!("poll: {e}")))?;
                    if !ready {
                        return Err(fail(format!("no reply within {NETLINK_TIMEOUT:?}")));
                    }
                    continue;
                }
            };
            if self.buf.len() < len {
                self.buf.resize(len, 0);
            }
            let n = match self
                .sock
                .recv(&mut self.buf)
                .map_err(|e| fail(format!("recv: {e}")))?
            {
                Recv::Data(n) => n.min(len),
                _ => continue,
            };
            for msg in parse::messages(&self.buf[..n]) {
                let (hdr, payload) = msg.map_err(|e| fail(format!("malformed reply: {e}")))?;
                if hdr.seq != seq {
                    continue;
                }
                interrupted |= hdr.flags & NLM_F_DUMP_INTR != 0;
                match parse::parse_event(&hdr, payload) {
                    Ok(Event::Link(l)) => {
                        links.insert(
                            String::from_utf8_lossy(l.name).into_owned(),
                            KernelLink {
                                ifindex: l.ifindex,
                                admin: l.flags & IFF_UP != 0,
                                oper: l.flags & IFF_RUNNING != 0,
                                mtu: l.mtu.unwrap_or(0),
                            },
                        );
                    }
                    Ok(Event::Done) => return Ok(if interrupted { None } else { Some(links) }),
                    Ok(Event::Ack { errno }) if errno != 0 => {
                        return Err(fail(format!(
                            "refused: {}",
                            std::io::Error::from_raw_os_error(errno)
                        )))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(fail(format!("malformed link message: {e}"))),
                }
            }
        }
    }
}
