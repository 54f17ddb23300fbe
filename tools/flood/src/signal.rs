//! Ctrl-C and SIGTERM: a thread reads them from a signalfd and tells every
//! other thread, so each unwinds through its normal path and every `Drop`
//! (daemon, namespaces, redis-server, temporary files) runs.
//!
//! Three ways to learn about a stop, for the three kinds of waits: a flag
//! for busy loops, a channel that disconnects for `select!` waits, and an
//! eventfd that stays readable for `poll` waits.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use syncd::engine::sys::cvt;

/// A stop request, shared by every thread.
#[derive(Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    /// Set when the stop came from a signal (not from a failing thread).
    signalled: Arc<AtomicBool>,
    /// Readable (and never reset) once stopped.
    fd: Arc<OwnedFd>,
    /// Dropped on stop, which disconnects `rx` for every clone.
    tx: Arc<Mutex<Option<Sender<()>>>>,
    rx: Receiver<()>,
}

impl Stop {
    fn new() -> io::Result<Stop> {
        // SAFETY: plain eventfd(2); the result is checked, then owned.
        let raw =
            cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) } as isize)?;
        // SAFETY: `raw` is a fresh fd owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
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
        self.fd.as_raw_fd()
    }

    /// Ask every thread to stop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Relaxed);
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
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
/// seen in `/proc/PID/status` `SigBlk`): the daemon blocks both for its own
/// signalfd anyway, the floor and redis-server are ended with SIGKILL, and
/// perf, which must act on SIGINT, empties its mask before exec.
pub fn install() -> io::Result<Stop> {
    let stop = Stop::new()?;
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for these calls.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: `set` is valid; the fd is checked, then owned.
    let raw = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) } as isize)?;
    // SAFETY: `raw` is a fresh fd owned by no one else.
    let sfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let s = stop.clone();
    std::thread::Builder::new()
        .name("flood-signals".into())
        .spawn(move || {
            let mut count = 0;
            loop {
                // SAFETY: signalfd_siginfo is plain data; zero is valid.
                let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
                let size = mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: `info` is valid for writes of `size` bytes; the fd
                // is owned by this thread for its whole life.
                let n = unsafe {
                    libc::read(
                        sfd.as_raw_fd(),
                        (&mut info as *mut libc::signalfd_siginfo).cast(),
                        size,
                    )
                };
                if n != size as isize {
                    continue;
                }
                count += 1;
                match count {
                    1 => eprintln!("\nflood: signal {}: cleaning up", info.ssi_signo),
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
