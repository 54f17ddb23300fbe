//! Log lines, to syslog (`/dev/log`, [`syslog`](super::syslog)), stderr or
//! stdout; the daemon's name is a parameter, so every syncer shares this.
//!
//! Levels follow SONiC's names. On stderr and stdout, under systemd
//! (`JOURNAL_STREAM` naming stderr, [`under_journal`]) each line starts with a `<N>` priority prefix
//! that journald turns into the record's priority; otherwise it starts
//! with a UTC timestamp. A line is formatted into one `String` and written
//! with one `write(2)` (one datagram for syslog), so lines from two
//! threads never interleave.
//!
//! Where lines go ([`Output`]) is chosen at start ([`init`], from
//! `[log] output`), and changed later by CONFIG_DB `LOGGER|<daemon>
//! LOGOUTPUT` ([`change_output`]).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::runtime::syslog::{self, Sent, Syslog};

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Level {
    /// Parse a level name: ours (`error`, `warn`, `notice`, `info`, `debug`)
    /// or SONiC's `LOGLEVEL` values (`ERROR`, `WARN`, `NOTICE`, `INFO`,
    /// `DEBUG`, and the more severe `EMERG`, `ALERT`, `CRIT` read as `error`).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "emerg" | "alert" | "crit" | "error" | "err" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "notice" => Some(Level::Notice),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Notice => "NOTICE",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Output {
    Stderr = 0,
    Stdout = 1,
    /// Datagrams on `/dev/log`; stderr while it is gone.
    Syslog = 2,
}

impl Output {
    /// `[log] output = "auto"`: journald's stderr protocol under systemd
    /// (`journal`: stderr is the stream `JOURNAL_STREAM` names), else syslog when `/dev/log`
    /// exists, else stderr.
    pub fn auto(journal: bool, dev_log_exists: bool) -> Output {
        if journal {
            Output::Stderr
        } else if dev_log_exists {
            Output::Syslog
        } else {
            Output::Stderr
        }
    }

    /// CONFIG_DB `LOGOUTPUT`'s values, exactly as swss-common spells them.
    pub fn from_sonic(value: &[u8]) -> Option<Output> {
        match value {
            b"SYSLOG" => Some(Output::Syslog),
            b"STDOUT" => Some(Output::Stdout),
            b"STDERR" => Some(Output::Stderr),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Output::Stderr => "stderr",
            Output::Stdout => "stdout",
            Output::Syslog => "syslog",
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Notice as u8);
static OUTPUT: AtomicU8 = AtomicU8::new(Output::Stderr as u8);
static JOURNAL: AtomicBool = AtomicBool::new(false);
/// The syslog writer, made by [`init`]; locked only around a
/// non-blocking send.
static SYSLOG: Mutex<Option<Syslog>> = Mutex::new(None);

/// Whether stderr is journald's stream. systemd sets `JOURNAL_STREAM` to
/// the `<device>:<inode>` of the stream it connected stdout or stderr to,
/// and the variable is inherited by every child, also one whose stderr is
/// no longer that stream (a pipe, a file, a terminal); so, as
/// systemd.exec(5) says to, it counts only when stderr's own device and
/// inode (fstat(2)) are the ones it names.
pub fn under_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(var) = var.to_str() else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        // dev_t and ino_t are u64 here, narrower on some targets.
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => names_stream(var, st.st_dev as u64, st.st_ino as u64),
        Err(_) => false,
    }
}

/// Whether a `JOURNAL_STREAM` value (`<device>:<inode>`, both decimal)
/// names the stream with this device and inode.
pub fn names_stream(var: &str, dev: u64, ino: u64) -> bool {
    match var.trim().split_once(':') {
        Some((d, i)) => d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino),
        None => false,
    }
}

/// Set up for `daemon` (the syslog identifier): journald prefixes when
/// stderr is the journal, the level and where lines go.
pub fn init(daemon: &str, level: Level, output: Output) {
    JOURNAL.store(under_journal(), Ordering::Relaxed);
    let dev_log = Path::new(syslog::DEV_LOG);
    *lock_syslog() = Some(Syslog::new(daemon, syslog::FACILITY_USER, dev_log));
    set_level(level);
    OUTPUT.store(output as u8, Ordering::Relaxed);
}

fn lock_syslog() -> std::sync::MutexGuard<'static, Option<Syslog>> {
    // A panic while holding it leaves nothing half-done worth refusing.
    SYSLOG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where lines go now.
pub fn output() -> Output {
    match OUTPUT.load(Ordering::Relaxed) {
        1 => Output::Stdout,
        2 => Output::Syslog,
        _ => Output::Stderr,
    }
}

/// Send lines to `to` from now on and say so, on the old output and on
/// the new one (a reader of either learns where the lines went).
pub fn change_output(to: Output, why: &str) {
    let from = output();
    if to == from {
        return;
    }
    if enabled(Level::Notice) {
        write(
            Level::Notice,
            format_args!("log output {to} ({why}; was {from})"),
        );
    }
    OUTPUT.store(to as u8, Ordering::Relaxed);
    if enabled(Level::Notice) {
        write(
            Level::Notice,
            format_args!("log output {to} ({why}; was {from})"),
        );
    }
}

/// Change the level (config, SIGHUP, CONFIG_DB `LOGGER|portsyncd`).
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Change the level and say so, in a line written under the more verbose
/// of the old and new levels (so lowering the level to `error` still
/// leaves a trace of why the log went quiet).
pub fn change_level(level: Level, why: &str) {
    if level == self::level() {
        return;
    }
    let louder = level > self::level();
    if louder {
        set_level(level);
    }
    if enabled(Level::Notice) {
        write(Level::Notice, format_args!("log level {level} ({why})"));
    }
    if !louder {
        set_level(level);
    }
}

/// The level in force.
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        3 => Level::Error,
        4 => Level::Warn,
        5 => Level::Notice,
        6 => Level::Info,
        _ => Level::Debug,
    }
}

/// Whether a line at `level` would be written.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Write one line. Use the `log_*!` macros.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    match output() {
        Output::Syslog => to_syslog(level, args),
        stream => to_stream(stream, level, args),
    }
}

/// One datagram; stderr when there is no syslog to send to, with a
/// warning at the first such line (see [`syslog`] for why a full queue
/// drops the line instead).
fn to_syslog(level: Level, args: fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(160);
    let _ = text.write_fmt(args);
    let sent = match lock_syslog().as_mut() {
        Some(s) => match s.write(level, &text) {
            Sent::Gone { first: true, error } => Err(Some(format!(
                "syslog {}: {error}; log lines go to stderr until it answers",
                s.path().display()
            ))),
            Sent::Gone { .. } => Err(None),
            Sent::Sent | Sent::Dropped => Ok(()),
        },
        // Not initialised (a test, or before init): nowhere else to go.
        None => Err(None),
    };
    if let Err(why) = sent {
        if let Some(why) = why {
            to_stream(Output::Stderr, Level::Warn, format_args!("{why}"));
        }
        to_stream(Output::Stderr, level, format_args!("{text}"));
    }
}

/// One line on stderr or stdout.
fn to_stream(stream: Output, level: Level, args: fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160);
    if JOURNAL.load(Ordering::Relaxed) {
        let _ = write!(line, "<{}>{}: ", level as u8, level.name());
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() as i64;
        let (y, mo, d) = civil(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let _ = write!(
            line,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z {} ",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60,
            now.subsec_micros(),
            level.name()
        );
    }
    let _ = line.write_fmt(args);
    line.push('\n');
    let _ = match stream {
        Output::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
        _ => std::io::stderr().lock().write_all(line.as_bytes()),
    };
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::engine::runtime::log::enabled($level) {
            $crate::engine::runtime::log::write($level, format_args!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! log_error { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Error, $($arg)*) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! log_notice { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Notice, $($arg)*) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! log_debug { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Debug, $($arg)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_778), (2026, 11, 21));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn auto_is_the_journal_then_syslog_then_stderr() {
        assert_eq!(Output::auto(true, true), Output::Stderr);
        assert_eq!(Output::auto(true, false), Output::Stderr);
        assert_eq!(Output::auto(false, true), Output::Syslog);
        assert_eq!(Output::auto(false, false), Output::Stderr);
    }

    /// `JOURNAL_STREAM` names one stream by device and inode; anything
    /// else (another stream, a malformed value) is not the journal.
    #[test]
    fn journal_stream_must_name_this_device_and_inode() {
        assert!(names_stream("8:12345", 8, 12345));
        assert!(names_stream("64769:3170621\n", 64769, 3170621));
        assert!(!names_stream("8:12345", 8, 12346));
        assert!(!names_stream("8:12345", 9, 12345));
        for bad in ["", "8", "8:", ":12345", "8:12345:1", "x:y", "-8:12345"] {
            assert!(!names_stream(bad, 8, 12345), "{bad:?}");
        }
    }

    /// swss-common's `outputStringMap`: upper case only.
    #[test]
    fn logoutput_values_are_swss_commons() {
        assert_eq!(Output::from_sonic(b"SYSLOG"), Some(Output::Syslog));
        assert_eq!(Output::from_sonic(b"STDOUT"), Some(Output::Stdout));
        assert_eq!(Output::from_sonic(b"STDERR"), Some(Output::Stderr));
        assert_eq!(Output::from_sonic(b"stderr"), None);
        assert_eq!(Output::from_sonic(b"FILE"), None);
        assert_eq!(Output::from_sonic(b""), None);
    }

    #[test]
    fn level_names_ours_and_sonics() {
        assert_eq!(Level::parse("NOTICE"), Some(Level::Notice));
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("CRIT"), Some(Level::Error));
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
    }
}
