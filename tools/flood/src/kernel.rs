//! The kernel side: sockets made inside a network namespace, acked link
//! changes and neighbor replaces, and the kernel's own view of the ports
//! (an `RTM_GETLINK` dump).

use std::collections::HashMap;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::time::Duration;

use syncd::engine::netlink::parse::{Event, IFF_RUNNING, IFF_UP, NLM_F_DUMP_INTR};
use syncd::engine::netlink::request::{self, Request};
use syncd::engine::netlink::socket::NetlinkSocket;
use syncd::engine::sys::monotonic_ns;

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
            // A dump datagram is at most 32 KiB or one link message, and a
            // link message stays under 64 KiB (see the engine's reader).
            buf: vec![0; 64 << 10],
            netns: netns.unwrap_or("(current)").to_string(),
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn failed(&self, e: impl std::fmt::Display) -> Error {
        Error::failed(format!("{}: {e}", self.netns))
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

    /// Create veth `name` with its peer `peer`, then set the peer up (so
    /// the port's oper state follows its admin state, as with
    /// `Netns::add_port`). Returns when the creation request was sent (the
    /// netdev cannot exist before) and when it was acked (creating a link
    /// does more work after its `RTM_NEWLINK` is queued, so a listener can
    /// read that message before the ack's time).
    pub fn create_veth(&mut self, name: &str, peer: &str) -> Result<(u64, u64), Error> {
        let seq = self.next_seq();
        let what = format!("creating veth {name} (peer {peer})");
        let req = request::create_veth(seq, name, peer).map_err(|e| self.failed(e))?;
        let sent = monotonic_ns();
        let at = self.acked(&req, seq, &what)?;
        // A veth cannot be created up: it has no peer yet when it opens.
        let seq = self.next_seq();
        let req =
            request::set_flags_by_name(seq, peer, IFF_UP, IFF_UP).map_err(|e| self.failed(e))?;
        self.acked(&req, seq, &format!("admin up {peer}"))?;
        Ok((sent, at))
    }

    /// `ip neigh replace` of one permanent neighbor (`dst` 4 or 16 bytes)
    /// on `ifindex`; returns when acked, with the time just before the
    /// request was sent and the ack's time.
    pub fn replace_neigh(
        &mut self,
        ifindex: i32,
        dst: std::net::IpAddr,
        lladdr: &[u8; 6],
    ) -> Result<(u64, u64), Error> {
        use syncd::engine::netlink::neigh::{AF_INET, AF_INET6};
        let seq = self.next_seq();
        let req = match dst {
            std::net::IpAddr::V4(a) => {
                request::replace_neigh(seq, AF_INET, ifindex, &a.octets(), lladdr)
            }
            std::net::IpAddr::V6(a) => {
                request::replace_neigh(seq, AF_INET6, ifindex, &a.octets(), lladdr)
            }
        };
        let sent = monotonic_ns();
        let at = self.acked(
            &req,
            seq,
            &format!("neigh replace {dst} on ifindex {ifindex}"),
        )?;
        Ok((sent, at))
    }

    /// Send `req` and wait for its ack. rtnetlink handles a request inside
    /// `sendmsg`: when `send` returns the change is made, its multicast
    /// messages and our ack are queued. That moment is the ack's time
    /// (monotonic ns); reading the ack afterwards only confirms it.
    fn acked(&mut self, req: &Request, seq: u32, what: &str) -> Result<u64, Error> {
        self.sock
            .send(req)
            .map_err(|e| self.failed(format!("{what}: send: {e}")))?;
        let at = monotonic_ns();
        let r = self.sock.await_ack(seq, &mut self.buf, what);
        r.map_err(|e| self.failed(e))?;
        Ok(at)
    }

    /// Every link by name, from one consistent dump (redone when the kernel
    /// marks it interrupted).
    pub fn dump(&mut self) -> Result<HashMap<String, KernelLink>, Error> {
        loop {
            let seq = self.next_seq();
            self.sock
                .send(&request::getlink_dump(seq))
                .map_err(|e| self.failed(format!("link dump: send: {e}")))?;
            let mut links = HashMap::new();
            let mut interrupted = false;
            let r = self
                .sock
                .replies(seq, &mut self.buf, "link dump", |hdr, event| {
                    interrupted |= hdr.flags & NLM_F_DUMP_INTR != 0;
                    match event {
                        Event::Link(l) => {
                            links.insert(
                                String::from_utf8_lossy(l.name).into_owned(),
                                KernelLink {
                                    ifindex: l.ifindex,
                                    admin: l.flags & IFF_UP != 0,
                                    oper: l.flags & IFF_RUNNING != 0,
                                    mtu: l.mtu.unwrap_or(0),
                                },
                            );
                            ControlFlow::Continue(())
                        }
                        Event::Done => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    }
                });
            r.map_err(|e| self.failed(e))?;
            if !interrupted {
                return Ok(links);
            }
        }
    }
}
