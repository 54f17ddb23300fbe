//! systemd's notification protocol without libsystemd: one datagram per
//! message to the unix socket named by `NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`).
//!
//! `READY=1` once the initial dump and config push are done, `STATUS=`
//! lines, `WATCHDOG=1` from the loop thread, `STOPPING=1` on shutdown.

use std::cell::RefCell;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, or nothing when not under one.
///
/// The socket is non-blocking: the loop thread never waits for the
/// manager (a full receive queue blocked the loop for good before). A
/// `STATUS=` or `WATCHDOG=1` that does not fit is dropped (the next one
/// says more); a `READY=1` or `STOPPING=1` that does not fit is kept and
/// sent again by [`flush`](Notifier::flush).
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    pending: RefCell<Option<String>>,
}

impl Notifier {
    /// From the environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_bytes();
            let addr = if let Some(name) = bytes.strip_prefix(b"@") {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            } else {
                SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?
            };
            let sock = UnixDatagram::unbound().ok()?;
            sock.set_nonblocking(true).ok()?;
            Some((sock, addr))
        });
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .filter(|_| match std::env::var("WATCHDOG_PID") {
                Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
                Err(_) => true,
            })
            .map(Duration::from_micros);
        Notifier {
            socket,
            watchdog,
            pending: RefCell::default(),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
            pending: RefCell::default(),
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the manager's timeout.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        self.watchdog.map(|d| d / 2)
    }

    /// Send one message (`READY=1`, `STATUS=…`, several lines allowed).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        if let Some((sock, addr)) = &self.socket {
            sock.send_to_addr(msg.as_bytes(), addr)?;
        }
        Ok(())
    }

    /// Send a message the manager must get; kept for [`flush`](Self::flush)
    /// when the socket is full.
    fn send_surely(&self, msg: String) {
        if let Err(e) = self.send(&msg) {
            if e.kind() == io::ErrorKind::WouldBlock {
                *self.pending.borrow_mut() = Some(msg);
            }
        }
    }

    /// Send again what did not fit before, if anything.
    pub fn flush(&self) {
        let pending = self.pending.borrow_mut().take();
        if let Some(msg) = pending {
            self.send_surely(msg);
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send_surely(format!("READY=1\nSTATUS={status}"));
    }

    /// A `STATUS=` line.
    pub fn status(&self, status: &str) {
        let _ = self.send(&format!("STATUS={status}"));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        let _ = self.send("WATCHDOG=1");
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send_surely("STOPPING=1\nSTATUS=stopping".to_string());
    }
}
