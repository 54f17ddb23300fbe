//! A one-line progress display on stderr: redrawn in place on a terminal,
//! plain lines (less often) when forced on elsewhere.

use std::io::Write;

use syncd::engine::sys::monotonic_ns;

pub struct Progress {
    enabled: bool,
    tty: bool,
    last_ns: u64,
    shown: bool,
}

impl Progress {
    /// `Some(on)` forces it; `None`: only when stderr is a terminal.
    pub fn new(forced: Option<bool>) -> Progress {
        // SAFETY: isatty(3) on fd 2 has no memory-safety preconditions.
        let tty = unsafe { libc::isatty(2) } == 1;
        Progress {
            enabled: forced.unwrap_or(tty),
            tty,
            last_ns: 0,
            shown: false,
        }
    }

    /// Show `line()` unless something was shown very recently.
    pub fn show(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let now = monotonic_ns();
        let every = if self.tty { 100_000_000 } else { 2_000_000_000 };
        if now.saturating_sub(self.last_ns) < every {
            return;
        }
        self.last_ns = now;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", line());
            self.shown = true;
        } else {
            let _ = writeln!(err, "flood: {}", line());
        }
        let _ = err.flush();
    }

    /// Print a line that stays (a phase done), clearing the progress line.
    pub fn note(&mut self, line: &str) {
        self.clear();
        if self.enabled {
            eprintln!("flood: {line}");
        }
    }

    /// Remove the progress line.
    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
