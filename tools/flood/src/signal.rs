//! Ctrl-C and SIGTERM: a thread reads them from the engine's signalfd
//! ([`Signals`]) and tells every other thread, so each unwinds through its
//! normal path and every `Drop` (daemon, namespaces, redis-server,
//! temporary files) runs.
//!
//! Three ways to learn about a stop, for the three kinds of waits: a flag
//! for busy loops, a channel that disconnects for `select!` waits, and an
//! eventfd that stays readable for `poll` waits.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use syncd::engine::redis::socket::wait_fd;
use syncd::engine::runtime::signals::{Signal, Signals};
use syncd::engine::sys::cvt;

/// An eventfd: readable from the first [`notify`](Self::notify) until
/// [`clear`](Self::clear), for threads that wait in `poll`.
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain eventfd(2); the result is checked, then owned.
        let raw =
            cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) } as isize)?;
        // SAFETY: `raw` is a fresh fd owned by no one else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(raw as RawFd) }))
    }

    /// Make it readable.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Make it unreadable again.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reading 8 bytes into a live u64 from our own eventfd.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A stop request, shared by every thread.
#[derive(Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    /// Set when the stop came from a signal (not from a failing thread).
    signalled: Arc<AtomicBool>,
    /// Readable (and never reset) once stopped.
    fd: Arc<EventFd>,
    /// Dropped on stop, which disconnects `rx` for every clone.
    tx: Arc<Mutex<Option<Sender<()>>>>,
    rx: Receiver<()>,
}

impl Stop {
    fn new() -> io::Result<Stop> {
        let fd = EventFd::new()?;
        let (tx, rx) = crossbeam_channel::bounded(0);
        Ok(Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signalled: Arc::new(AtomicBool::new(false)),
            fd: Arc::new(fd),
            tx: Arc::new(Mutex::new(Some(tx))),
            rx,
        })
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Whether a signal asked for the stop.
    pub fn signalled(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }

    /// A receiver that never yields a message and disconnects on stop.
    pub fn channel(&self) -> &Receiver<()> {
        &self.rx
    }

    /// An fd that becomes readable on stop.
    pub fn fd(&self) -> RawFd {
        self.fd.fd()
    }

    /// Ask every thread to stop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.fd.notify();
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    /// Sleep for `d` unless stopped first; `false` when stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        match self.rx.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => !self.requested(),
            _ => false,
        }
    }
}

/// Block SIGINT and SIGTERM in this thread (so in every thread spawned
/// later) and start the thread that reads them. Call it before spawning
/// any thread. Children inherit the mask (`Command` does not reset it, as
/// seen in `/proc/PID/status` `SigBlk`): the floor and redis-server are
/// ended with SIGKILL; the daemon (which may be SONiC's C++ one, without a
/// signalfd) and perf, which must act on SIGTERM and SIGINT, empty their
/// mask before exec.
pub fn install() -> io::Result<Stop> {
    let stop = Stop::new()?;
    let signals = Signals::install_for(&[libc::SIGINT, libc::SIGTERM])?;
    let s = stop.clone();
    std::thread::Builder::new()
        .name("flood-signals".into())
        .spawn(move || {
            let mut count = 0;
            loop {
                // The fd is non-blocking: wait for it, then read.
                let signo = match signals.read() {
                    Ok(Some(Signal::Stop(signo))) => signo,
                    Ok(Some(Signal::Reload)) => continue,
                    Ok(None) | Err(_) => {
                        let _ = wait_fd(signals.as_raw_fd(), libc::POLLIN, Duration::MAX);
                        continue;
                    }
                };
                count += 1;
                match count {
                    1 => eprintln!("\nflood: signal {signo}: cleaning up"),
                    2 => eprintln!(
                        "flood: still cleaning up; signal once more to exit at once \
                         (namespaces flood-* and a redis-server may be left behind)"
                    ),
                    _ => std::process::exit(130),
                }
                s.signalled.store(true, Ordering::Relaxed);
                s.trigger();
            }
        })?;
    Ok(stop)
}
