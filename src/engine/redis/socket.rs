//! Raw stream sockets to Redis: unix or TCP with `TCP_NODELAY`.
//!
//! Writes use `send(MSG_NOSIGNAL)`, so a closed peer is an `EPIPE` error,
//! never a SIGPIPE.
//!
//! Host names: [`connect`] (the loop's) takes an [`Endpoint`], whose TCP
//! address is already resolved, so the loop cannot end up waiting in
//! `getaddrinfo`; [`resolve`] is for threads that may wait (start-up, a
//! helper thread of `RedisConn`), and [`connect_wait`] uses it.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::sonic::dbconfig::Address;
use crate::engine::sys::{cvt, retry_eintr};

/// Result of starting a connection.
pub enum Connecting {
    /// Connected already (unix sockets, loopback TCP sometimes).
    Done(OwnedFd),
    /// `EINPROGRESS`: wait for writability, then [`finish_connect`].
    InProgress(OwnedFd),
}

fn new_socket(domain: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is checked and immediately owned.
    let raw = cvt(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    } as isize)?;
    // SAFETY: `raw` is a fresh fd owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
}

/// A resolved address: what a non-blocking connect is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// `host` as an IP literal, which needs no resolver.
pub fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

/// Resolve `host` (an IP literal, or a name through `getaddrinfo`, which
/// can block for seconds: never call this on the loop thread). The error
/// names the host.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Some(a) = literal(host, port) {
        return Ok(a);
    }
    let cannot = |why: String| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve {host}: {why}"),
        )
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| cannot(e.to_string()))?
        .next()
        .ok_or_else(|| cannot("no address".into()))
}

/// `addr` with its host name resolved; may block (see [`resolve`]).
pub fn resolve_address(addr: &Address) -> io::Result<Endpoint> {
    match addr {
        Address::Unix(path) => Ok(Endpoint::Unix(path.clone())),
        Address::Tcp(host, port) => resolve(host, *port).map(Endpoint::Tcp),
    }
}

fn connect_unix(path: &Path) -> io::Result<Connecting> {
    let fd = new_socket(libc::AF_UNIX)?;
    // SAFETY: sockaddr_un is plain old data; zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unix socket path too long: {}", path.display()),
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `addr` is a valid sockaddr_un for the length passed.
    let r = cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    } as isize);
    match r {
        Ok(_) => Ok(Connecting::Done(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(Connecting::InProgress(fd)),
        Err(e) => Err(e),
    }
}

fn connect_tcp(addr: &SocketAddr) -> io::Result<Connecting> {
    let (domain, storage, len) = sockaddr(addr);
    let fd = new_socket(domain)?;
    set_nodelay(fd.as_raw_fd())?;
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    let r = cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    } as isize);
    match r {
        Ok(_) => Ok(Connecting::Done(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(Connecting::InProgress(fd)),
        Err(e) => Err(e),
    }
}

fn sockaddr(addr: &SocketAddr) -> (i32, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned
            // for a sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            (
                libc::AF_INET,
                storage,
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            (
                libc::AF_INET6,
                storage,
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let one: i32 = 1;
    // SAFETY: `one` is a valid c_int for the length passed; `fd` is live.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    } as isize)
    .map(drop)
}

/// Start a non-blocking connection to `endpoint`. It takes no host name:
/// nothing here waits for a resolver.
pub fn connect(endpoint: &Endpoint) -> io::Result<Connecting> {
    match endpoint {
        Endpoint::Unix(path) => connect_unix(path),
        Endpoint::Tcp(addr) => connect_tcp(addr),
    }
}

/// The outcome of an `EINPROGRESS` connection once the socket is writable.
pub fn finish_connect(fd: RawFd) -> io::Result<()> {
    let mut err: i32 = 0;
    let mut len = mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut i32).cast(),
            &mut len,
        )
    } as isize)?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

/// Connect and wait at most `timeout`; the socket stays non-blocking.
/// A host name is resolved first, on the calling thread.
pub fn connect_wait(addr: &Address, timeout: Duration) -> io::Result<OwnedFd> {
    match connect(&resolve_address(addr)?)? {
        Connecting::Done(fd) => Ok(fd),
        Connecting::InProgress(fd) => {
            if !wait_fd(fd.as_raw_fd(), libc::POLLOUT, timeout)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect to {addr}"),
                ));
            }
            finish_connect(fd.as_raw_fd())?;
            Ok(fd)
        }
    }
}

/// Wait until `fd` has one of `events`; `false` on timeout.
pub fn wait_fd(fd: RawFd, events: i16, timeout: Duration) -> io::Result<bool> {
    let mut pfd = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    Ok(poll(&mut pfd, Some(timeout))? > 0)
}

/// `poll(2)`: wait until one of `fds` has one of its events, at most
/// `timeout` (`None`: for ever); how many are ready, 0 on timeout. A signal
/// restarts the wait (with the whole timeout).
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let (ptr, len) = (fds.as_mut_ptr(), fds.len() as libc::nfds_t);
    // SAFETY: `fds` is a valid array of `len` pollfd, alive for the call.
    retry_eintr(|| unsafe { libc::poll(ptr, len, ms) } as isize)
}

/// Outcome of one non-blocking transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Moved this many bytes (0 on receive: the peer closed).
    Bytes(usize),
    WouldBlock,
}

fn transfer(r: io::Result<usize>) -> io::Result<Transfer> {
    match r {
        Ok(n) => Ok(Transfer::Bytes(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Transfer::WouldBlock),
        Err(e) => Err(e),
    }
}

/// `send(MSG_NOSIGNAL | MSG_DONTWAIT)`.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<Transfer> {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `buf` is valid for reads of its length during the call.
    transfer(retry_eintr(|| unsafe {
        libc::send(fd, buf.as_ptr().cast(), buf.len(), flags)
    }))
}

/// `recv(MSG_DONTWAIT)`.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Transfer> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    // SAFETY: `buf` is valid for writes of its length during the call.
    transfer(retry_eintr(|| unsafe {
        libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT)
    }))
}

/// Where a connection's bytes go: straight through the socket, or through
/// the reactor's ring (`engine::reactor`), which keeps a socket's
/// semantics: a send takes what fits, `WouldBlock` when nothing does or
/// nothing arrived, `Bytes(0)` received at the end of the stream.
pub trait StreamIo {
    fn send(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<Transfer>;
    fn recv(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<Transfer>;
}

/// The socket itself: one system call per transfer.
pub struct Direct;

impl StreamIo for Direct {
    fn send(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<Transfer> {
        send(fd, buf)
    }

    fn recv(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<Transfer> {
        recv(fd, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn poll_says_which_fd_is_ready_and_times_out_with_zero() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (_c, d) = UnixStream::pair().unwrap();
        let pollin = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [pollin(b.as_raw_fd()), pollin(d.as_raw_fd())];
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
        a.write_all(b"x").unwrap();
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
        assert_eq!((fds[0].revents, fds[1].revents), (libc::POLLIN, 0));
        assert!(wait_fd(b.as_raw_fd(), libc::POLLIN, Duration::ZERO).unwrap());
        assert!(!wait_fd(d.as_raw_fd(), libc::POLLIN, Duration::ZERO).unwrap());
    }
}
