//! The kernel side: sockets made inside a network namespace, acked link
//! changes, and the kernel's own view of the ports (an `RTM_GETLINK` dump).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use syncd::engine::netlink::parse::{
    self, Event, IFF_RUNNING, IFF_UP, IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINKINFO, NLM_F_ACK,
    NLM_F_DUMP_INTR, NLM_F_REQUEST, RTM_NEWLINK,
};
use syncd::engine::netlink::request;
use syncd::engine::netlink::socket::{NetlinkSocket, Recv};
use syncd::engine::redis::socket::wait_fd;
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
    /// Wait until the socket has something, at most until `deadline`.
    fn wait_readable(&self, deadline: Instant, what: &str) -> Result<(), Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = wait_fd(self.sock.as_raw_fd(), libc::POLLIN, left)
            .map_err(|e| Error::failed(format!("{}: poll: {e}", self.netns)))?;
        if !ready {
            return Err(Error::failed(format!(
                "{}: no {what} within {NETLINK_TIMEOUT:?}",
                self.netns
            )));
        }
        Ok(())
    }

    pub fn set_admin(&mut self, ifindex: i32, up: bool, name: &str) -> Result<u64, Error> {
        let seq = self.next_seq();
        let what = format!("admin {} {name}", if up { "up" } else { "down" });
        self.acked(request::set_admin(seq, ifindex, up).as_bytes(), seq, &what)
    }

    /// Set the MTU of `ifindex`; returns when acked, with the ack's time.
    pub fn set_mtu(&mut self, ifindex: i32, mtu: u32, name: &str) -> Result<u64, Error> {
        let seq = self.next_seq();
        let what = format!("mtu {mtu} on {name}");
        self.acked(request::set_mtu(seq, ifindex, mtu).as_bytes(), seq, &what)
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
        let sent = monotonic_ns();
        let at = self.acked(&veth_request(seq, name, peer), seq, &what)?;
        // A veth cannot be created up: it has no peer yet when it opens.
        let seq = self.next_seq();
        let what = format!("admin up {peer}");
        self.acked(&up_by_name_request(seq, peer), seq, &what)?;
        Ok((sent, at))
    }

    /// Send `req` (one netlink message) to the kernel.
    fn send_bytes(&self, req: &[u8]) -> std::io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; zero is the kernel's address.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `req` is valid for reads of its length and `kernel` is a
        // valid sockaddr_nl for `len`; both outlive the call, and the fd is
        // owned by `self.sock`.
        let r = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                len,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Send `req` and wait for its ack. rtnetlink handles a request inside
    /// `sendmsg`: when `send` returns the change is made, its multicast
    /// messages and our ack are queued. That moment is the ack's time
    /// (monotonic ns); reading the ack afterwards only confirms it.
    fn acked(&mut self, req: &[u8], seq: u32, what: &str) -> Result<u64, Error> {
        let fail = |e: String| Error::failed(format!("{what} in {}: {e}", self.netns));
        self.send_bytes(req)
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
                    self.wait_readable(deadline, "ack")?;
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
                    self.wait_readable(deadline, "reply")?;
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

/// Create flags of `linux/netlink.h` (portsyncd never creates links).
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// `IFLA_INFO_DATA` of `linux/if_link.h`; `VETH_INFO_PEER` of `linux/veth.h`.
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

fn pad4(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// An `ifinfomsg`: family and type 0, index 0, these flags and change mask.
fn ifinfomsg(buf: &mut Vec<u8>, flags: u32, change: u32) {
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&change.to_ne_bytes());
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    pad4(buf);
}

/// Open a nested attribute; `nest_end` writes its length.
fn nest_start(buf: &mut Vec<u8>, ty: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&ty.to_ne_bytes());
    at
}

fn nest_end(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// An `RTM_NEWLINK` header with these flags; its length is set by
/// [`finish`].
fn newlink_header(b: &mut Vec<u8>, flags: u16, seq: u32) {
    b.extend_from_slice(&[0; 4]); // nlmsg_len
    b.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&[0; 4]); // nlmsg_pid: the kernel fills it in
}

fn finish(b: &mut [u8]) {
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
}

/// `ip link set NAME up`, by name (ifindex 0), acked.
pub fn up_by_name_request(seq: u32, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    newlink_header(&mut b, NLM_F_REQUEST | NLM_F_ACK, seq);
    ifinfomsg(&mut b, IFF_UP, IFF_UP);
    attr(&mut b, IFLA_IFNAME, &cstr(name));
    finish(&mut b);
    b
}

/// `ip link add NAME type veth peer name PEER`, acked:
/// RTM_NEWLINK(CREATE|EXCL) { ifinfomsg, IFLA_IFNAME, IFLA_LINKINFO {
/// KIND "veth", DATA { VETH_INFO_PEER { ifinfomsg, IFLA_IFNAME } } } }.
pub fn veth_request(seq: u32, name: &str, peer: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    newlink_header(
        &mut b,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    ifinfomsg(&mut b, 0, 0);
    attr(&mut b, IFLA_IFNAME, &cstr(name));
    let linkinfo = nest_start(&mut b, IFLA_LINKINFO);
    attr(&mut b, IFLA_INFO_KIND, b"veth");
    let data = nest_start(&mut b, IFLA_INFO_DATA);
    let peer_at = nest_start(&mut b, VETH_INFO_PEER);
    ifinfomsg(&mut b, 0, 0);
    attr(&mut b, IFLA_IFNAME, &cstr(peer));
    nest_end(&mut b, peer_at);
    nest_end(&mut b, data);
    nest_end(&mut b, linkinfo);
    finish(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_request_is_well_formed() {
        let b = veth_request(3, "Ethernet4", "p4");
        assert_eq!(b.len() % 4, 0);
        let (hdr, payload) = parse::messages(&b).next().unwrap().unwrap();
        assert_eq!(hdr.len as usize, b.len());
        assert_eq!(hdr.msg_type, RTM_NEWLINK);
        assert_eq!(hdr.seq, 3);
        // The request parses as a link message named Ethernet4.
        let link = parse::parse_link(parse::LinkChange::New, payload).unwrap();
        assert_eq!(link.name, b"Ethernet4");
        // IFLA_LINKINFO nests everything after it, to the end.
        let li = 16 + 4 + 12; // ifinfomsg, IFLA_IFNAME "Ethernet4\0" padded
        assert_eq!(
            u16::from_ne_bytes([payload[li + 2], payload[li + 3]]),
            IFLA_LINKINFO
        );
        assert_eq!(
            u16::from_ne_bytes([payload[li], payload[li + 1]]) as usize,
            payload.len() - li
        );
    }
}
