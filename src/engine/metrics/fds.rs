//! File descriptors running out (`EMFILE`, `ENFILE`): counted, logged once
//! per episode, and the reason `/healthz` answers 503 while a connection
//! the daemon needs cannot be opened for lack of them.
//!
//! Process-wide, because whoever opens a socket (a loop connection, the
//! metrics thread's `accept`) reports here and the metrics thread reads
//! it; both sides touch it only when a socket call fails, or on the first
//! success after a failure.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{log_error, log_notice};

/// What is short of fds, and how often that happened.
pub struct Shortage {
    /// Failures for lack of fds so far.
    exhausted: AtomicU64,
    /// What cannot be opened now, and the error that said so.
    short: Mutex<Vec<(&'static str, String)>>,
}

/// The process's record, exported as `portsyncd_fd_exhausted_total` and
/// read by `/healthz`.
pub static SHORTAGE: Shortage = Shortage::new();

/// Whether `e` says the process or the system is out of fds.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// [`Shortage::failed`] on the process's record.
pub fn failed(what: &'static str, e: &io::Error) {
    SHORTAGE.failed(what, e);
}

/// [`Shortage::opened`] on the process's record.
pub fn opened(what: &'static str) {
    SHORTAGE.opened(what);
}

/// [`Shortage::exhausted_total`] of the process's record.
pub fn exhausted_total() -> u64 {
    SHORTAGE.exhausted_total()
}

/// [`Shortage::reason`] of the process's record.
pub fn shortage() -> Option<String> {
    SHORTAGE.reason()
}

impl Shortage {
    pub const fn new() -> Shortage {
        Shortage {
            exhausted: AtomicU64::new(0),
            short: Mutex::new(Vec::new()),
        }
    }

    fn short(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, String)>> {
        self.short.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `what` (a connection's role) failed with `e`. When `e` is fd
    /// exhaustion: counted, and `what` is short until [`opened`]; the
    /// first failure of an episode is logged. Other errors are not noted.
    pub fn failed(&self, what: &'static str, e: &io::Error) {
        if !is_exhaustion(e) {
            return;
        }
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        let mut short = self.short();
        if short.iter().any(|(w, _)| *w == what) {
            return;
        }
        short.push((what, e.to_string()));
        drop(short);
        log_error!(
            "{what}: cannot open a socket: {e} (raise LimitNOFILE / ulimit -n); /healthz says 503 until it can"
        );
    }

    /// `what` opened its socket: no longer short (logged if it was).
    pub fn opened(&self, what: &'static str) {
        let mut short = self.short();
        let Some(i) = short.iter().position(|(w, _)| *w == what) else {
            return;
        };
        short.remove(i);
        drop(short);
        log_notice!("{what}: file descriptors available again");
    }

    /// Failures for lack of fds so far.
    pub fn exhausted_total(&self) -> u64 {
        self.exhausted.load(Ordering::Relaxed)
    }

    /// Why the daemon is unhealthy for lack of fds, if it is.
    pub fn reason(&self) -> Option<String> {
        let short = self.short();
        if short.is_empty() {
            return None;
        }
        let what: Vec<String> = short.iter().map(|(w, e)| format!("{w} ({e})")).collect();
        Some(format!(
            "file descriptors exhausted: cannot open {}\n",
            what.join(", ")
        ))
    }
}

impl Default for Shortage {
    fn default() -> Self {
        Shortage::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortage_lasts_until_the_same_need_opens() {
        let s = Shortage::new();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        s.failed("A", &io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(
            (s.exhausted_total(), s.reason()),
            (0, None),
            "not a shortage"
        );
        s.failed("A", &emfile);
        s.failed("A", &emfile);
        s.failed("B", &io::Error::from_raw_os_error(libc::ENFILE));
        assert_eq!(s.exhausted_total(), 3);
        let why = s.reason().unwrap();
        assert!(
            why.starts_with("file descriptors exhausted: cannot open A (Too many open files"),
            "{why}"
        );
        assert!(why.contains(", B ("), "{why}");
        s.opened("B");
        s.opened("C");
        assert!(!s.reason().unwrap().contains("B ("));
        s.opened("A");
        assert_eq!(s.reason(), None);
        assert_eq!(s.exhausted_total(), 3, "a count, not a state");
    }
}
