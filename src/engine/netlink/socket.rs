//! The `NETLINK_ROUTE` sockets: one non-blocking event socket subscribed to
//! link changes, and a blocking request socket for acked changes.

use std::io;
use std::mem;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::parse::{self, Event, NlHeader};
use super::request::Request;
use crate::engine::sys::{cvt, retry_eintr};

/// `RTMGRP_LINK`: the link multicast group, as a bind mask.
pub const RTMGRP_LINK: u32 = 1;
/// `RTMGRP_NEIGH`: the neighbor multicast group (`RTNLGRP_NEIGH`, 3), as a
/// bind mask. It also carries the bridge's FDB events.
pub const RTMGRP_NEIGH: u32 = 4;

/// Errors of the netlink sockets; each names the call that failed.
#[derive(Debug)]
pub enum NetlinkError {
    /// A socket call failed.
    Sys {
        call: &'static str,
        source: io::Error,
    },
    /// The kernel refused a request with this errno.
    Refused { what: String, errno: i32 },
    /// The kernel sent something we could not read while waiting for an ack.
    Malformed(parse::ParseError),
    /// No ack arrived in time.
    AckTimeout { what: String },
    /// A reply of `len` bytes did not fit the `room` given to it.
    Truncated { len: usize, room: usize },
}

impl std::fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetlinkError::Sys { call, source } => write!(f, "netlink {call}: {source}"),
            NetlinkError::Refused { what, errno } => {
                write!(
                    f,
                    "kernel refused {what}: {}",
                    io::Error::from_raw_os_error(*errno)
                )
            }
            NetlinkError::Malformed(e) => write!(f, "malformed netlink reply: {e}"),
            NetlinkError::AckTimeout { what } => write!(f, "no netlink ack for {what}"),
            NetlinkError::Truncated { len, room } => {
                write!(f, "netlink reply of {len} bytes cut to {room}")
            }
        }
    }
}

impl std::error::Error for NetlinkError {}

fn sys(call: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Sys { call, source }
}

/// How the receive buffer request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcvBufOutcome {
    /// What the configuration asked for.
    pub requested: usize,
    /// What the kernel reports (`SO_RCVBUF` reads back twice the set value).
    pub effective: usize,
    /// `SO_RCVBUFFORCE` worked; otherwise `SO_RCVBUF`, capped by `net.core.rmem_max`.
    pub forced: bool,
}

/// Result of one receive on the event socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// A datagram of this many bytes.
    Data(usize),
    /// Nothing queued.
    WouldBlock,
    /// `ENOBUFS`: the kernel dropped messages because the buffer was full.
    Overrun,
}

/// A `NETLINK_ROUTE` socket.
pub struct NetlinkSocket {
    fd: OwnedFd,
    port_id: u32,
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `fd` is a live socket owned by the caller; the option value is a
    // valid `c_int` on the stack whose size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    } as isize)
    .map(drop)
}

fn get_int_opt(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `fd` is a live socket; `value` and `len` are valid for writes
    // of the sizes the kernel is told.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    cvt(r as isize)?;
    Ok(value)
}

impl NetlinkSocket {
    fn open(groups: u32, nonblocking: bool) -> Result<NetlinkSocket, NetlinkError> {
        let mut ty = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if nonblocking {
            ty |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: plain socket(2) call; the returned fd is checked and then
        // owned by `OwnedFd`.
        let raw = cvt(unsafe { libc::socket(libc::AF_NETLINK, ty, libc::NETLINK_ROUTE) } as isize)
            .map_err(sys("socket(AF_NETLINK)"))?;
        // SAFETY: `raw` was just returned by socket(2) and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: `addr` is a valid sockaddr_nl for the length passed.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        } as isize)
        .map_err(sys("bind"))?;
        let mut bound: libc::sockaddr_nl = addr;
        let mut len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `bound` and `len` are valid for writes of the sizes given.
        cvt(unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut bound as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        } as isize)
        .map_err(sys("getsockname"))?;
        Ok(NetlinkSocket {
            fd,
            port_id: bound.nl_pid,
        })
    }

    /// The link event socket: [`NetlinkSocket::events_in`] `RTMGRP_LINK`.
    pub fn events(rcvbuf: usize) -> Result<(NetlinkSocket, RcvBufOutcome), NetlinkError> {
        NetlinkSocket::events_in(RTMGRP_LINK, rcvbuf)
    }

    /// An event socket: non-blocking, bound to the multicast `groups` (a
    /// mask of `RTMGRP_*`), with a receive buffer of `rcvbuf` bytes
    /// (`SO_RCVBUFFORCE`, else `SO_RCVBUF`).
    pub fn events_in(
        groups: u32,
        rcvbuf: usize,
    ) -> Result<(NetlinkSocket, RcvBufOutcome), NetlinkError> {
        let sock = NetlinkSocket::open(groups, true)?;
        let fd = sock.fd.as_raw_fd();
        let want = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
        let forced = set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_ok();
        if !forced {
            set_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want).map_err(sys("SO_RCVBUF"))?;
        }
        let effective = get_int_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map_err(sys("getsockopt(SO_RCVBUF)"))?;
        // Overruns must be reported (ENOBUFS) so we can resync: never set
        // NETLINK_NO_ENOBUFS. Extended acks are harmless and help errors.
        let _ = set_int_opt(fd, libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        Ok((
            sock,
            RcvBufOutcome {
                requested: rcvbuf,
                effective: effective.max(0) as usize,
                forced,
            },
        ))
    }

    /// A blocking socket with no multicast groups, for requests that are
    /// acked (link changes). `timeout` bounds every wait for an ack.
    pub fn requests(timeout: Duration) -> Result<NetlinkSocket, NetlinkError> {
        let sock = NetlinkSocket::open(0, false)?;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval for the length passed.
        cvt(unsafe {
            libc::setsockopt(
                sock.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        } as isize)
        .map_err(sys("SO_RCVTIMEO"))?;
        Ok(sock)
    }

    /// The port id the kernel gave this socket (`nlmsg_pid` of our replies).
    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// Send one request to the kernel.
    pub fn send(&self, req: &Request) -> io::Result<()> {
        let bytes = req.as_bytes();
        // SAFETY: `sockaddr_nl` is plain old data; zero is the kernel's address.
        let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let addr = (&kernel as *const libc::sockaddr_nl).cast();
        let addr_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        let fd = self.fd.as_raw_fd();
        // SAFETY: `bytes` is valid for reads of its length and `kernel` is a
        // valid sockaddr_nl for the length passed, both alive for the call.
        retry_eintr(|| unsafe {
            libc::sendto(fd, bytes.as_ptr().cast(), bytes.len(), 0, addr, addr_len)
        })
        .map(drop)
    }

    fn recv_flags(&self, buf: &mut [u8], flags: i32) -> io::Result<Recv> {
        let (fd, ptr, len) = (self.fd.as_raw_fd(), buf.as_mut_ptr(), buf.len());
        // SAFETY: `buf` is valid for writes of its length for the duration of
        // the call; the kernel writes at most that many bytes.
        match retry_eintr(|| unsafe { libc::recv(fd, ptr.cast(), len, flags) }) {
            Ok(n) => Ok(Recv::Data(n)),
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(Recv::WouldBlock),
                Some(libc::ENOBUFS) => Ok(Recv::Overrun),
                _ => Err(e),
            },
        }
    }

    /// The size of the next queued datagram, without taking it
    /// (`MSG_PEEK | MSG_TRUNC` returns the full length whatever the buffer).
    pub fn peek_len(&self) -> io::Result<Recv> {
        self.recv_flags(
            &mut [],
            libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    }

    /// Take the next datagram into `buf`, which the caller sized with
    /// [`peek_len`](Self::peek_len) so that nothing is cut.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Recv> {
        self.recv_flags(buf, libc::MSG_DONTWAIT)
    }

    /// Send `req` and wait for its ack; `what` names it in errors.
    /// Only for the blocking request socket.
    pub fn request_acked(&self, req: &Request, seq: u32, what: &str) -> Result<(), NetlinkError> {
        self.send(req).map_err(sys("sendto"))?;
        self.await_ack(seq, &mut [0u8; 8192], what)
    }

    /// Wait for the ack of request `seq`, already sent, reading into `buf`
    /// (kept by callers that send many, so no buffer is set up per ack).
    /// Only for the blocking request socket.
    pub fn await_ack(&self, seq: u32, buf: &mut [u8], what: &str) -> Result<(), NetlinkError> {
        self.replies(seq, buf, what, |_, event| match event {
            Event::Ack { .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
    }

    /// Read the kernel's replies to request `seq` into `buf`, one datagram
    /// at a time, and hand each message to `on_reply` until it breaks with
    /// a value: an ack, or a dump's `NLMSG_DONE`. Messages of other
    /// sequences are skipped; an error ack is [`NetlinkError::Refused`].
    /// Each wait is bounded by the receive timeout of
    /// [`requests`](Self::requests): only for the blocking request socket.
    pub fn replies<T>(
        &self,
        seq: u32,
        buf: &mut [u8],
        what: &str,
        mut on_reply: impl FnMut(&NlHeader, Event<'_>) -> ControlFlow<T>,
    ) -> Result<T, NetlinkError> {
        loop {
            // MSG_TRUNC: the datagram's whole length, to tell a cut one.
            let n = match self.recv_flags(buf, libc::MSG_TRUNC) {
                Ok(Recv::Data(n)) => n,
                Ok(Recv::WouldBlock) => {
                    return Err(NetlinkError::AckTimeout {
                        what: what.to_string(),
                    })
                }
                Ok(Recv::Overrun) => continue,
                Err(e) => {
                    return Err(NetlinkError::Sys {
                        call: "recv",
                        source: e,
                    })
                }
            };
            if n > buf.len() {
                return Err(NetlinkError::Truncated {
                    len: n,
                    room: buf.len(),
                });
            }
            for msg in parse::messages(&buf[..n]) {
                let (hdr, payload) = msg.map_err(NetlinkError::Malformed)?;
                if hdr.seq != seq {
                    continue;
                }
                match parse::parse_event(&hdr, payload).map_err(NetlinkError::Malformed)? {
                    Event::Ack { errno } if errno != 0 => {
                        return Err(NetlinkError::Refused {
                            what: what.to_string(),
                            errno,
                        })
                    }
                    event => {
                        if let ControlFlow::Break(value) = on_reply(&hdr, event) {
                            return Ok(value);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::netlink::request;

    #[test]
    fn a_dump_read_through_replies_ends_at_done_and_holds_lo() {
        let sock = NetlinkSocket::requests(Duration::from_secs(5)).unwrap();
        sock.send(&request::getlink_dump(11)).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut names = Vec::new();
        sock.replies(11, &mut buf, "link dump", |_, event| match event {
            Event::Link(l) => {
                names.push(l.name.to_vec());
                ControlFlow::Continue(())
            }
            Event::Done => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
        assert!(names.iter().any(|n| n == b"lo"), "{names:?}");
    }

    #[test]
    fn a_refused_request_is_refused_with_its_errno() {
        let sock = NetlinkSocket::requests(Duration::from_secs(5)).unwrap();
        // No link has this index; unprivileged, EPERM comes first.
        let req = request::set_admin(12, i32::MAX, true);
        match sock.request_acked(&req, 12, "admin up of nothing") {
            Err(NetlinkError::Refused { what, errno }) => {
                assert_eq!(what, "admin up of nothing");
                assert!(errno == libc::ENODEV || errno == libc::EPERM, "{errno}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_larger_than_the_buffer_is_an_error_not_a_cut_parse() {
        let sock = NetlinkSocket::requests(Duration::from_secs(5)).unwrap();
        sock.send(&request::getlink_dump(13)).unwrap();
        let r = sock.replies(13, &mut [0u8; 16], "link dump", |_, _| {
            ControlFlow::Break(())
        });
        assert!(
            matches!(r, Err(NetlinkError::Truncated { room: 16, .. })),
            "{r:?}"
        );
    }
}
