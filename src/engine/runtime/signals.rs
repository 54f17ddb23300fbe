//! Signals delivered through a `signalfd`, so the loop handles them like
//! any other event, between two turns, never in the middle of one.
//!
//! SIGTERM, SIGINT and SIGHUP (or the set a tool asks for) are blocked in
//! the calling thread (and thus in every thread spawned after) and read
//! from the fd. SIGPIPE is ignored: writes use `MSG_NOSIGNAL`, but nothing
//! should ever die of it.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::engine::sys::{cvt, retry_eintr};

/// A signal the daemon acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: finish the batch in flight and exit 0.
    Stop(i32),
    /// SIGHUP: reload what can change at run time.
    Reload,
}

/// The signalfd.
pub struct Signals {
    fd: OwnedFd,
}

impl AsRawFd for Signals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What the daemon reads from its signalfd.
const DAEMON_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn signal_set(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &signo in signals {
        // SAFETY: `set` is a valid, initialised sigset_t; a bad number is
        // refused with EINVAL, nothing else.
        cvt(unsafe { libc::sigaddset(&mut set, signo) } as isize)?;
    }
    Ok(set)
}

impl Signals {
    /// Block SIGTERM, SIGINT and SIGHUP in this thread and open the fd.
    /// Call it before spawning any thread so that they inherit the mask.
    pub fn install() -> io::Result<Signals> {
        Signals::install_for(&DAEMON_SIGNALS)
    }

    /// Block `signals` in this thread and open a non-blocking fd that
    /// reads them; SIGPIPE is ignored. Call it before spawning any thread
    /// so that they inherit the mask.
    pub fn install_for(signals: &[i32]) -> io::Result<Signals> {
        // SAFETY: setting SIGPIPE's disposition to SIG_IGN has no memory
        // safety preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let set = signal_set(signals)?;
        // SAFETY: `set` is a valid, initialised sigset_t.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: `set` is valid; the returned fd is checked and then owned.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        let raw = cvt(raw as isize)?;
        // SAFETY: `raw` is a fresh fd owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        Ok(Signals { fd })
    }

    /// The next pending signal, if any.
    pub fn read(&self) -> io::Result<Option<Signal>> {
        // SAFETY: signalfd_siginfo is plain data; zero is valid.
        let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
        let size = mem::size_of::<libc::signalfd_siginfo>();
        let (fd, ptr) = (
            self.fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
        );
        // SAFETY: `info` is valid for writes of `size` bytes during the call.
        match retry_eintr(|| unsafe { libc::read(fd, ptr, size) }) {
            Ok(n) if n == size => Ok(Some(match info.ssi_signo as i32 {
                libc::SIGHUP => Signal::Reload,
                other => Signal::Stop(other),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_set_is_read_from_the_fd() {
        // Blocked in this test's thread only; sent to this thread only.
        let signals = Signals::install_for(&[libc::SIGUSR2]).unwrap();
        assert_eq!(signals.read().unwrap(), None);
        // SAFETY: pthread_kill to the calling thread, with a signal it blocks.
        let r = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) };
        assert_eq!(r, 0);
        assert_eq!(signals.read().unwrap(), Some(Signal::Stop(libc::SIGUSR2)));
        assert_eq!(signals.read().unwrap(), None);
    }

    #[test]
    fn a_number_that_is_no_signal_is_refused() {
        let e = Signals::install_for(&[libc::SIGUSR1, 100_000])
            .err()
            .unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
